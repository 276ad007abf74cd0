//! An observed restart (from [`super::restarts`]) followed from its start
//! to ready the way the actor follows bounce's own (`act.rs`): the engine's
//! state stamps, readiness (the container's own health check when it has
//! one, else "running", unless probes are given), the timeline. It acts on
//! nothing; only exec probes, when given, run anything in the container.

use super::DockerEngine;
use super::observe::Observed;
use super::restarts::{RestartFacts, Started, Unfinished};
use crate::abort::Abort;
use crate::readiness::{self, ReadyWait};
use crate::scenario::{Empty, ProbeSpec};
use crate::timeline::{Ending, Timeline};
use bounce_wire::{Action, BoundaryName, Cause, Outcome, Recreated, Source, TargetRef};
use std::time::Duration;
use tokio::time::Instant;

/// After the start, how long to wait for the `restart` event that tells
/// `docker restart` from a stop then a start (the engine logs it right
/// after the start, in the same request).
const CAUSE_GRACE: Duration = Duration::from_secs(1);

/// One observed restart, as far as it was followed.
pub struct Followed {
    pub timeline: Timeline,
    pub ending: Ending,
    pub cause: Cause,
    pub recreated: Option<Recreated>,
}

/// How to tell an observed container ready: the probes (`None`: the
/// container's own health check if it has one, else running), bounded by
/// `timeout` from the start.
pub struct WatchReady<'a> {
    pub probes: Option<&'a [ProbeSpec]>,
    pub timeout: Duration,
}

impl DockerEngine {
    /// Follows a restart that reached its start until ready (or the timeout).
    pub async fn follow_observed(
        &self,
        started: Started,
        ready: WatchReady<'_>,
        abort: &Abort,
    ) -> Followed {
        let Started { facts, seen } = started;
        let deadline = Instant::now() + ready.timeout;
        let observer = self.observer_fed(&facts.id, seen);
        let mut tl = timeline_of(&facts);
        // Nobody requested a crash: the state read after this start holds
        // this exit or a later one, which the `die` event bounds.
        let after = facts.requested.unwrap_or(i64::MIN);
        observer.stamp_from_state_after(&mut tl, after).await;
        observer.seen().to_timeline(&mut tl);
        let detail = self.detail_of(&facts.id).await;
        let probes = match (ready.probes, &detail) {
            (Some(p), _) => p.to_vec(),
            (None, Some(d)) if d.health_cmd.is_some() => {
                vec![ProbeSpec::DockerHealth(Empty::default())]
            }
            _ => vec![ProbeSpec::Running(Empty::default())],
        };
        let ending = match (tl.boundary(BoundaryName::Started).cloned(), &detail) {
            (Some(start), Some(d)) => {
                let wait = ReadyWait {
                    ready: &probes,
                    timeout: ready.timeout,
                    deadline,
                    abort,
                };
                let health = observer.health(d);
                readiness::wait_probes(wait, &start, Some(&health), &mut tl).await
            }
            (_, None) => Ending::new(Outcome::Failed, "gone before it could be inspected"),
            (None, _) => Ending::new(Outcome::Failed, "the engine reported no start"),
        };
        let started_at = observer.seen().started.unwrap_or(i64::MAX);
        let _ = observer
            .wait(
                |o| o.events.iter().any(|e| e.unix_nanos > started_at),
                Instant::now() + CAUSE_GRACE,
                abort,
            )
            .await;
        let seen = observer.seen();
        seen.to_timeline(&mut tl);
        finish(facts, &seen, tl, ending)
    }

    /// The container's health check, as `run` reads it; `None` if it is gone.
    async fn detail_of(&self, id: &str) -> Option<super::ContainerDetail> {
        let info = self.client().inspect_container(id, None).await.ok()?;
        let config = info.config.unwrap_or_default();
        let (health_cmd, health_timeout) = super::health_of(&config);
        Some(super::ContainerDetail {
            id: id.to_string(),
            image: config.image.unwrap_or_default(),
            restart_policy: String::new(),
            requested_stop_timeout: None,
            effective_stop_timeout: 0,
            health_cmd,
            health_timeout,
        })
    }
}

/// A restart given back unfinished (stopped and not started again within
/// the bound): the boundaries seen, outcome `incomplete`.
pub fn unfinished(u: Unfinished, bound: Duration) -> Followed {
    let mut tl = timeline_of(&u.facts);
    u.seen.to_timeline(&mut tl);
    let ending = Ending::new(
        Outcome::Incomplete,
        format!(
            "not started again within {}s of the first event",
            bound.as_secs()
        ),
    );
    finish(u.facts, &u.seen, tl, ending)
}

fn timeline_of(facts: &RestartFacts) -> Timeline {
    let name = facts.key.name.clone();
    let target = TargetRef::Docker {
        name: name.clone(),
        id: facts.id.clone(),
    };
    let mut tl = Timeline::new(target, name, 1, Action::Restart);
    let event = |a: &str| Source::DockerEvent { action: a.into() };
    for (boundary, at, action) in [
        (BoundaryName::Requested, facts.requested, "kill"),
        (BoundaryName::Removed, facts.removed, "destroy"),
        (BoundaryName::Created, facts.created, "create"),
    ] {
        if let Some(at) = at {
            tl.mark(boundary, at, event(action));
        }
    }
    tl
}

fn finish(facts: RestartFacts, seen: &Observed, mut tl: Timeline, ending: Ending) -> Followed {
    let cause = facts.cause(seen);
    // `action` says what bounce would have done to the same effect.
    tl.action = match cause {
        Cause::Restart => Action::Restart,
        Cause::StopStart | Cause::Recreate => Action::StopStart,
        Cause::Crash => Action::Kill,
    };
    Followed {
        timeline: tl,
        ending,
        cause,
        recreated: facts.recreated,
    }
}
