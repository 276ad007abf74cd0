//! An observed restart (from [`super::restarts`]) followed from its start
//! to ready the way the actor follows bounce's own (`act.rs`): the engine's
//! state stamps, readiness (the container's own health check when it has
//! one, else "running", unless probes are given), the timeline. It acts on
//! nothing; only exec probes, when given, run anything in the container.

use super::DockerEngine;
use super::observe::{Observed, StateStamps};
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
        let state = observer.state_stamps().await;
        let mut tl = stamped(&facts, &observer.seen(), state);
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
    mark_requested(&mut tl, u.facts.requested);
    let ending = Ending::new(
        Outcome::Incomplete,
        format!(
            "not started again within {}s of the first event",
            bound.as_secs()
        ),
    );
    finish(u.facts, &u.seen, tl, ending)
}

/// The timeline of a restart that reached its start, from what the events
/// and the container's state (read after the start) said. The state's exit
/// is bounded below by the start of the instance that stopped, when seen,
/// not by the `kill` stamp, which the exit can precede (then `requested` is
/// placed at the exit: [`mark_requested`]); `die` bounds it above.
fn stamped(facts: &RestartFacts, seen: &Observed, state: Option<StateStamps>) -> Timeline {
    let mut tl = timeline_of(facts);
    if let Some(state) = state {
        state.mark(seen, facts.instance_started.unwrap_or(i64::MIN), &mut tl);
    }
    seen.to_timeline(&mut tl);
    mark_requested(&mut tl, facts.requested);
    tl
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
        (BoundaryName::Removed, facts.removed, "destroy"),
        (BoundaryName::Created, facts.created, "create"),
    ] {
        if let Some(at) = at {
            tl.mark(boundary, at, event(action));
        }
    }
    tl
}

/// Marks `requested` at the engine's `kill` stamp, or at the exit when the
/// exit precedes it: the engine logs `kill` once the signal is delivered,
/// so a process that exits on the signal at once can exit first (by
/// milliseconds, under load). The request came before the exit; the exit
/// is the latest instant it can be placed at, so `stop` reads 0 and the
/// note says by how much the engine's stamp was later.
fn mark_requested(tl: &mut Timeline, kill: Option<i64>) {
    let Some(kill) = kill else { return };
    match tl.boundary(BoundaryName::Exited).cloned() {
        Some(exit) if exit.unix_nanos < kill => {
            tl.mark(BoundaryName::Requested, exit.unix_nanos, exit.source);
            tl.notes.push(format!(
                "{KILL_AFTER_EXIT} (by {:.3} ms; it logs it once the signal is delivered): `requested` placed at the exit",
                (kill - exit.unix_nanos) as f64 / 1e6
            ));
        }
        _ => tl.mark(
            BoundaryName::Requested,
            kill,
            Source::DockerEvent {
                action: "kill".into(),
            },
        ),
    }
}

/// How a timeline's note begins when `requested` was placed at the exit.
pub const KILL_AFTER_EXIT: &str = "the engine logged `kill` after the exit";

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::restarts::RestartTracker;
    use bollard::models::{EventActor, EventMessage};

    const MS: i64 = 1_000_000;

    fn ev(action: &str, at: i64, attrs: &[(&str, &str)]) -> EventMessage {
        let mut map: std::collections::HashMap<String, String> = attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        map.insert("name".into(), "a".into());
        EventMessage {
            action: Some(action.into()),
            time_nano: Some(at),
            actor: Some(EventActor {
                id: Some("c1".into()),
                attributes: Some(map),
            }),
            ..Default::default()
        }
    }

    /// One `docker restart` as the engine stamps it: the process exits on
    /// SIGTERM at once (containerd's exit, `State.FinishedAt`, at 103 ms),
    /// and the engine logs `kill` `kill_after` later (negative: before, as
    /// when nothing is loaded); `run` sent its request at 100 ms. Gives what
    /// `run` and `watch` stamp.
    fn both(kill_after: i64) -> (Timeline, Timeline, i64) {
        let (run_requested, finished) = (100 * MS, 103 * MS);
        let kill = finished + kill_after;
        let die = finished + 20 * MS;
        let (started_at, start) = (die + 5 * MS, die + 7 * MS);
        let mut events = vec![
            ev("kill", kill, &[("signal", "15")]),
            ev("die", die, &[("exitCode", "0")]),
            ev("stop", die + MS, &[]),
            ev("start", start, &[]),
            ev("restart", start + MS, &[]),
        ];
        // Published in stamp order here (`seen.rs` takes them in any order).
        events.sort_by_key(|e| e.time_nano);
        let state = StateStamps {
            finished: Some(finished),
            started: Some(started_at),
        };

        // run: its observer from its request on, bounded by it (act.rs).
        let mut o = Observed::default();
        for e in &events {
            o.apply(e, run_requested);
        }
        let mut run = Timeline::new(
            TargetRef::Docker {
                name: "a".into(),
                id: "c1".into(),
            },
            "a".into(),
            1,
            Action::Restart,
        );
        run.mark(BoundaryName::Requested, run_requested, Source::Agent);
        state.mark(&o, run_requested, &mut run);
        o.to_timeline(&mut run);

        // watch: the tracker saw this instance start, long before.
        let mut t = RestartTracker::new(|_| false);
        assert!(t.apply(&ev("start", 7 * MS, &[])).is_none());
        let mut started = None;
        for e in &events {
            started = started.or(t.apply(e));
        }
        let started = started.expect("the restart reached its start");
        let seen = started.seen.borrow().clone();
        (run, stamped(&started.facts, &seen, Some(state)), kill)
    }

    /// The ordering CI met under load, and every other, given as stamps:
    /// `run` and `watch` agree on every engine-stamped boundary, and
    /// watch's `requested` is the `kill` stamp unless the exit preceded it,
    /// then the exit, saying so.
    #[test]
    fn run_and_watch_agree_whether_the_engine_logs_kill_before_or_after_the_exit() {
        for kill_after in (-3 * MS..=15 * MS).step_by(MS as usize / 2) {
            let (run, watch, kill) = both(kill_after);
            for b in [BoundaryName::Exited, BoundaryName::Started] {
                assert_eq!(run.boundary(b), watch.boundary(b), "{b:?} at {kill_after}");
                assert!(matches!(
                    watch.boundary(b).unwrap().source,
                    Source::DockerState { .. }
                ));
            }
            let requested = watch.boundary(BoundaryName::Requested).unwrap();
            let exited = watch.boundary(BoundaryName::Exited).unwrap();
            let noted = watch.notes.iter().any(|n| n.starts_with(KILL_AFTER_EXIT));
            if kill_after > 0 {
                assert_eq!(
                    (requested.unix_nanos, &requested.source),
                    (exited.unix_nanos, &exited.source)
                );
                assert!(noted, "{:?}", watch.notes);
            } else {
                let kill_event = Source::DockerEvent {
                    action: "kill".into(),
                };
                assert_eq!(
                    (requested.unix_nanos, &requested.source),
                    (kill, &kill_event)
                );
                assert!(!noted, "{:?}", watch.notes);
            }
            assert!(requested.unix_nanos <= exited.unix_nanos);
        }
    }

    #[test]
    fn a_kill_logged_even_after_the_die_is_the_request() {
        let mut t = RestartTracker::new(|_| false);
        let mut started = None;
        for e in [
            ev("start", 5, &[]),
            ev("die", 100, &[("exitCode", "0")]),
            ev("kill", 110, &[("signal", "15")]),
            ev("stop", 111, &[]),
            ev("start", 130, &[]),
        ] {
            started = started.or(t.apply(&e));
        }
        let s = started.unwrap();
        let seen = s.seen.borrow().clone();
        assert_eq!(
            (s.facts.requested, s.facts.instance_started),
            (Some(110), Some(5))
        );
        assert_eq!(s.facts.cause(&seen), Cause::StopStart);
        // No state (the container was gone): the events alone.
        let tl = stamped(&s.facts, &seen, None);
        assert_eq!(tl.at(BoundaryName::Requested), Some(100));
        assert!(tl.notes[0].starts_with(KILL_AFTER_EXIT), "{:?}", tl.notes);
    }

    #[test]
    fn a_state_from_before_the_instance_started_or_after_the_die_is_not_this_exit() {
        let mut t = RestartTracker::new(|_| false);
        let mut started = None;
        for e in [
            ev("start", 50, &[]),
            ev("kill", 100, &[("signal", "15")]),
            ev("die", 120, &[("exitCode", "0")]),
            ev("start", 130, &[]),
        ] {
            started = started.or(t.apply(&e));
        }
        let s = started.unwrap();
        let seen = s.seen.borrow().clone();
        for finished in [40, 125] {
            let state = StateStamps {
                finished: Some(finished),
                started: Some(128),
            };
            let tl = stamped(&s.facts, &seen, Some(state));
            assert_eq!(tl.at(BoundaryName::Exited), Some(120), "{finished}");
            assert_eq!(tl.at(BoundaryName::Started), Some(130), "{finished}");
            assert_eq!(tl.at(BoundaryName::Requested), Some(100), "{finished}");
        }
    }
}
