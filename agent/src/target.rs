//! What every source of truth (Docker engine today; systemd manager and Ceph
//! next) offers the runner: resolve the scenario's selectors to concrete
//! targets, and restart one target once while filling a [`Timeline`].

use crate::abort::Abort;
use crate::scenario::{ProbeSpec, TargetSpec};
use crate::timeline::{Ending, Timeline};
pub use bounce_wire::Action;
use bounce_wire::TargetRef;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A target found on this node, with the scenario's settings resolved
/// against what the source of truth says about it.
#[derive(Debug, Clone)]
pub struct ResolvedTarget {
    /// Index into the scenario's `targets:`.
    pub spec_index: usize,
    pub target: TargetRef,
    /// Histograms group by this (for kolla containers: the container name).
    pub service: String,
    pub action: Action,
    /// Readiness probes, defaults applied.
    pub ready: Vec<ProbeSpec>,
    /// Per restart, request → ready.
    pub timeout: Duration,
    /// One line for `plan`: what the source of truth says about the target.
    pub facts: String,
    pub detail: TargetDetail,
}

#[derive(Debug, Clone)]
pub enum TargetDetail {
    Docker(crate::docker::ContainerDetail),
    Systemd(crate::systemd::UnitDetail),
    CephOsd(crate::ceph::osd::OsdDetail),
}

impl ResolvedTarget {
    pub fn name(&self) -> &str {
        self.target.name()
    }
}

/// Why a scenario cannot be carried out on this node. Found before anything restarts.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("targets[{index}].docker.names: {pattern:?} matches no container on this node")]
    NoMatch { index: usize, pattern: String },
    #[error(
        "targets[{index}].systemd.units: {pattern:?} matches no unit loaded by the systemd manager on the {bus} bus"
    )]
    NoUnit {
        index: usize,
        pattern: String,
        bus: String,
    },
    #[error(
        "{name:?} is selected by both targets[{first}] and targets[{second}]; select each target once"
    )]
    Overlap {
        name: String,
        first: usize,
        second: usize,
    },
    #[error(
        "targets[{index}]: {name:?} is not running (state {state}); bounce restarts only running services: narrow the selector"
    )]
    NotRunning {
        index: usize,
        name: String,
        state: String,
    },
    #[error(
        "targets[{index}]: action kill needs a restart policy to bring {name:?} back, and it has {policy:?}"
    )]
    NoRestartPolicy {
        index: usize,
        name: String,
        policy: String,
    },
    #[error("targets[{index}].ready: {probe} needs a health check, and {name:?} has none")]
    NoHealthcheck {
        index: usize,
        name: String,
        probe: &'static str,
    },
    #[error(
        "targets[{index}].timeout: {timeout:?} is not longer than the stop timeout of {name:?} ({stop_timeout}s): the restart could never finish in time"
    )]
    TimeoutTooShort {
        index: usize,
        name: String,
        timeout: Duration,
        stop_timeout: u32,
    },
    #[error("{0}")]
    Engine(String),
}

/// One source of truth for restartable things.
pub trait Driver: Send + Sync {
    /// Resolves one target entry of the scenario against the live system, if
    /// it is of this driver's kind (else nothing); touches nothing.
    fn resolve<'a>(
        &'a self,
        index: usize,
        spec: &'a TargetSpec,
    ) -> BoxFuture<'a, Result<Vec<ResolvedTarget>, PlanError>>;

    /// Restarts `target` once and records what was observed, whatever happens.
    fn restart<'a>(
        &'a self,
        target: &'a ResolvedTarget,
        iteration: u32,
        abort: &'a Abort,
    ) -> BoxFuture<'a, (Timeline, Ending)>;
}

/// A driver handed a target of another kind: a bug, reported as a failed restart.
pub fn not_mine(target: &ResolvedTarget) -> (Timeline, Ending) {
    (
        Timeline::new(
            target.target.clone(),
            target.service.clone(),
            0,
            target.action,
        ),
        Ending::new(
            bounce_wire::Outcome::Failed,
            "internal error: target handed to the wrong driver",
        ),
    )
}
