//! The Docker engine as a source of truth: containers are targets, the
//! engine's own event stream (`timeNano`, CLOCK_REALTIME of this host) gives
//! the phase boundaries.
//!
//! - [`observe`]: the observer, the event stream of one container folded
//!   into boundaries; usable alone, whoever restarted the container;
//! - [`act`]: the actor, one restart (restart, stop-start, kill) handed to
//!   the observer to follow;
//! - [`resolve`]: `docker:` selectors to checked targets;
//! - [`undo`]: a container's state and start, for undoing an intent;
//! - [`engine`]: the connection to the engine (and the journal its
//!   restarts write intents to), and waiting for it to answer again after
//!   it went away.
//!
//! This file: what a target keeps ([`ContainerDetail`]),
//! and the two seams it implements ([`Driver`] for a `docker:` entry,
//! [`Restart`] for a container).

mod act;
mod engine;
pub mod follow;
pub mod observe;
mod resolve;
pub mod restarts;
pub mod undo;

pub use engine::{DockerEngine, DockerError, cause};
pub use observe::{ContainerObserver, Observed, Unobserved};

use crate::probes;
use crate::scenario::{DockerSelector, TargetSpec};
use crate::target::{BoxFuture, Driver, PlanError, ResolvedTarget, Restart, RestartContext};
use crate::timeline::{Ending, Timeline};
use bounce_wire::NodeFacts;
use std::sync::Arc;
use std::time::Duration;

/// Docker's stop timeout when neither the scenario nor the container sets one.
const ENGINE_DEFAULT_STOP_TIMEOUT: u32 = 10;
/// Docker's health check timeout default.
const ENGINE_DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(30);

/// What `plan` and `restart` need to know about one container.
#[derive(Debug, Clone)]
pub struct ContainerDetail {
    pub id: String,
    pub image: String,
    pub restart_policy: String,
    /// The scenario's stop timeout, passed to the engine; `None` lets the
    /// engine use the container's own.
    pub requested_stop_timeout: Option<u32>,
    /// What the engine will wait before SIGKILL.
    pub effective_stop_timeout: u32,
    pub health_cmd: Option<Vec<String>>,
    pub health_timeout: Duration,
}

/// A container's health command (as an argv) and its per-try timeout.
fn health_of(config: &bollard::models::ContainerConfig) -> (Option<Vec<String>>, Duration) {
    let health = config.healthcheck.clone().unwrap_or_default();
    let cmd = probes::health_command(&health.test.unwrap_or_default());
    let timeout = health
        .timeout
        .filter(|ns| *ns > 0)
        .map(|ns| Duration::from_nanos(ns as u64))
        .unwrap_or(ENGINE_DEFAULT_HEALTH_TIMEOUT);
    (cmd, timeout)
}

/// One `docker:` target entry, bound to the engine.
pub struct Containers {
    engine: Arc<DockerEngine>,
    selector: DockerSelector,
}

impl Containers {
    pub fn new(engine: Arc<DockerEngine>, selector: DockerSelector) -> Containers {
        Containers { engine, selector }
    }
}

impl Driver for Containers {
    fn resolve<'a>(
        &'a self,
        index: usize,
        spec: &'a TargetSpec,
    ) -> BoxFuture<'a, Result<Vec<ResolvedTarget>, PlanError>> {
        Box::pin(resolve::resolve_entry(
            &self.engine,
            index,
            &self.selector,
            spec,
        ))
    }
}

/// What restarts one container: the engine and the container's detail.
struct ContainerTarget {
    engine: Arc<DockerEngine>,
    detail: ContainerDetail,
}

impl Restart for ContainerTarget {
    fn restart<'a>(&'a self, cx: RestartContext<'a>) -> BoxFuture<'a, (Timeline, Ending)> {
        Box::pin(self.engine.restart_container(cx, &self.detail))
    }

    /// The container's image: a kolla tag names the release.
    fn facts<'a>(&'a self, service: &'a str, facts: &'a mut NodeFacts) -> BoxFuture<'a, ()> {
        if !self.detail.image.is_empty() {
            facts
                .images
                .insert(service.to_string(), self.detail.image.clone());
        }
        Box::pin(async {})
    }
}
