//! The seam between the run and the sources of truth: a [`Driver`] resolves
//! one target entry of its own kind to [`ResolvedTarget`]s, each carrying the
//! [`Restart`] handle its driver built for it, so a target can only be
//! restarted by the driver that found it. No driver is named here.

use crate::abort::Abort;
use crate::scenario::{ProbeSpec, TargetSpec};
use crate::timeline::{Ending, Timeline};
pub use bounce_wire::Action;
use bounce_wire::{NodeFacts, TargetRef};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A target found on this node, with the scenario's settings resolved
/// against what the source of truth says about it.
#[derive(Clone)]
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
    /// For `plan`: the kind of target and where it is ("docker 0123abcd4567",
    /// "systemd unit, user bus").
    pub kind: String,
    /// What no other target entry may select as well, named the same way by
    /// every driver that can reach it ("docker NAME", "systemd BUS UNIT").
    pub claim: String,
    /// One line for `plan`: what the source of truth says about the target.
    pub facts: String,
    /// Built by the driver that resolved the target: its engine and its own
    /// detail of the target.
    pub handle: Arc<dyn Restart>,
}

impl fmt::Debug for ResolvedTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResolvedTarget")
            .field("spec_index", &self.spec_index)
            .field("target", &self.target)
            .field("action", &self.action)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl ResolvedTarget {
    pub fn name(&self) -> &str {
        self.target.name()
    }

    /// Restarts the target once through its own driver, recording what was
    /// observed whatever happens.
    pub fn restart<'a>(
        &'a self,
        iteration: u32,
        abort: &'a Abort,
        alongside: &'a Alongside,
    ) -> BoxFuture<'a, (Timeline, Ending)> {
        self.handle
            .restart(RestartContext::new(self, iteration, abort, alongside))
    }
}

/// In a fleet run, the restarts of the same kind elsewhere in the fleet
/// that this one must count as down with it (for a Ceph OSD: the other
/// OSDs granted before it and still held, `osd.N`), kept current by the
/// lease's renewals; empty alone. The OSD gate asks `ok-to-stop` for them
/// together with its own OSD.
#[derive(Debug, Default)]
pub struct Alongside(std::sync::Mutex<Vec<String>>);

impl Alongside {
    pub fn set(&self, names: Vec<String>) {
        *self.0.lock().unwrap() = names;
    }

    pub fn names(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// One restart in progress: the target (what, how, probes, timeout), which
/// round, and its bounds (the deadline from the request, the run's abort).
/// Handed down instead of long argument lists.
#[derive(Clone, Copy)]
pub struct RestartContext<'a> {
    pub target: &'a ResolvedTarget,
    pub iteration: u32,
    pub abort: &'a Abort,
    /// Request + timeout; [`RestartContext::request`] sets it at the request.
    pub deadline: Instant,
    /// What a fleet counts as down with it.
    pub alongside: &'a Alongside,
}

impl<'a> RestartContext<'a> {
    pub fn new(
        target: &'a ResolvedTarget,
        iteration: u32,
        abort: &'a Abort,
        alongside: &'a Alongside,
    ) -> Self {
        RestartContext {
            target,
            iteration,
            abort,
            deadline: Instant::now() + target.timeout,
            alongside,
        }
    }

    /// A new, empty timeline for this restart.
    pub fn timeline(&self) -> Timeline {
        let t = self.target;
        Timeline::new(
            t.target.clone(),
            t.service.clone(),
            self.iteration,
            t.action,
        )
    }

    /// The restart is requested now: the timeout counts from here.
    pub fn request(&mut self) {
        self.deadline = Instant::now() + self.target.timeout;
    }

    /// How a wait of this restart that ended early ends the restart.
    pub fn interrupted(&self, i: crate::abort::Interrupt, doing: &str) -> Ending {
        Ending::interrupted(i, self.target.timeout, doing)
    }
}

/// What the driver that resolved a target keeps for it (its engine, its own
/// detail of the target), and the one thing the run asks of it: restart.
pub trait Restart: Send + Sync {
    /// Restarts the target once and records what was observed, whatever happens.
    fn restart<'a>(&'a self, cx: RestartContext<'a>) -> BoxFuture<'a, (Timeline, Ending)>;

    /// What the target tells about versions (a container's image, Ceph's
    /// version) for the node's facts. Best effort: what cannot be read is
    /// left out.
    fn facts<'a>(&'a self, _service: &'a str, _facts: &'a mut NodeFacts) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}

/// One target entry of the scenario bound to the driver of its selector
/// kind (the driver is given its own selector when it is connected).
pub trait Driver: Send + Sync {
    /// The entry's targets on this node, checked; touches nothing.
    fn resolve<'a>(
        &'a self,
        index: usize,
        spec: &'a TargetSpec,
    ) -> BoxFuture<'a, Result<Vec<ResolvedTarget>, PlanError>>;

    /// The end of a run, whatever ended it: undo what this entry set (Ceph
    /// flags). What it did, in words.
    fn end_run(&self) -> BoxFuture<'_, Vec<String>> {
        Box::pin(async { Vec::new() })
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
