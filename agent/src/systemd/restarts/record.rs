//! A unit's restart written to its timeline: one active again followed to
//! ready (the wrapped container through `docker::observe`, then the
//! probes, then where the time went), one not active again within the
//! bound (or when the watcher stops) given back `incomplete` as far as it
//! was seen; named by cause (restart, stop-start, crash).

use super::fold::Open;
use super::units::WatchedUnit;
use crate::abort::Abort;
use crate::docker::DockerEngine;
use crate::docker::follow::{Followed, WatchReady};
use crate::docker::restarts::RestartKey;
use crate::readiness::{self, ContainerHealth, ReadyWait};
use crate::scenario::{Empty, ProbeSpec};
use crate::systemd::bus::{SERVICE_IFACE, UNIT_IFACE, props};
use crate::systemd::observe::wrapped_to_timeline;
use crate::systemd::{SystemdManager, attribute};
use crate::timeline::{Ending, Timeline};
use bounce_wire::{Action, BoundaryName, Cause, Outcome, Source, TargetRef, UnitReport};
use std::collections::HashMap;
use tokio::time::Instant;

impl SystemdManager {
    /// A restart that is active again, followed to ready.
    pub(super) async fn follow(
        &self,
        unit: WatchedUnit,
        open: Open,
        job_back: Option<u32>,
        ready: WatchReady<'_>,
        engine: Option<&DockerEngine>,
        abort: &Abort,
    ) -> (RestartKey, Followed) {
        let deadline = Instant::now() + ready.timeout;
        let cause = match (open.asked, open.job, job_back) {
            (false, ..) => Cause::Crash,
            (true, Some(a), Some(b)) if a == b => Cause::Restart,
            _ => Cause::StopStart,
        };
        let mut tl = timeline_of(&unit, &open, &self.bus.to_string(), cause);
        let (unit_props, service_props) = match props(&self.link().conn, &unit.path).await {
            Ok(p) => (
                p.get_all(UNIT_IFACE).await.unwrap_or_default(),
                p.get_all(SERVICE_IFACE).await.unwrap_or_default(),
            ),
            Err(_) => Default::default(),
        };
        if open.late.is_some() && !open.asked {
            // A crash read after the fact: its main process's exit was
            // overwritten by its start, and InactiveEnterTimestamp holds
            // the restart's own pass through `inactive`, after the back-off.
            tl.mark(
                BoundaryName::Exited,
                open.clock.to_realtime_nanos(open.opened_us),
                Source::Systemd {
                    property: "ActiveExitTimestampMonotonic".into(),
                },
            );
        }
        let mut report = UnitReport {
            left_active_unix_nanos: Some(open.left_active),
            ..UnitReport::default()
        };
        open.seen.to_timeline(
            open.clock,
            &unit_props,
            &service_props,
            &mut report,
            &mut tl,
        );
        tl.unit = Some(report);
        crash_exit(&mut tl);
        // A wrapped container runs a moment after its unit is active.
        let detail = match (&open.container, engine, &unit.container) {
            (Some(c), Some(e), Some(name)) => {
                let _ = c.wait(|o| o.started.is_some(), deadline, abort).await;
                wrapped_to_timeline(&c.seen(), &mut tl);
                e.container_detail(name).await.ok()
            }
            _ => None,
        };
        let probes = match (ready.probes, &detail) {
            (Some(p), _) => p.to_vec(),
            (None, Some(d)) if d.health_cmd.is_some() => {
                vec![ProbeSpec::DockerHealth(Empty::default())]
            }
            _ => vec![ProbeSpec::Running(Empty::default())],
        };
        let running = tl
            .boundary(BoundaryName::ContainerStarted)
            .or(tl.boundary(BoundaryName::Started))
            .cloned()
            .filter(|_| tl.at(BoundaryName::Started).is_some());
        // The engine replays a wrapped container's events; a probe that
        // polls answers only for now, long after the start.
        let polls =
            |p: &ProbeSpec| !matches!(p, ProbeSpec::Running(_) | ProbeSpec::DockerHealth(_));
        let ending = match running {
            None => Ending::new(Outcome::Failed, "systemd reported no new activation"),
            Some(_) if open.late.is_some() && probes.iter().any(polls) => {
                let gap = open.late.map_or("", |g| g.words());
                let why = format!(
                    "readiness not observed: the restart ended while {gap}, and its probes would answer only for now"
                );
                Ending::new(Outcome::Incomplete, why)
            }
            Some(started) => {
                let health = open.container.as_ref().zip(detail.as_ref());
                let health = health.map(|(c, d)| c.health(d));
                let health = health.as_ref().map(|h| h as &dyn ContainerHealth);
                let wait = ReadyWait {
                    ready: &probes,
                    timeout: ready.timeout,
                    deadline,
                    abort,
                };
                readiness::wait_probes(wait, &started, health, &mut tl).await
            }
        };
        if let Some(c) = &open.container {
            wrapped_to_timeline(&c.seen(), &mut tl);
        }
        tl.attribution = attribute(&tl);
        let key = open.key(&unit);
        let followed = Followed {
            timeline: tl,
            ending,
            cause,
            recreated: None,
        };
        (key, followed)
    }
}

fn timeline_of(unit: &WatchedUnit, open: &Open, bus: &str, cause: Cause) -> Timeline {
    let target = TargetRef::Systemd {
        name: unit.name.clone(),
        bus: bus.to_string(),
        container: unit.container.clone(),
    };
    // `action` says what bounce would have done to the same effect.
    let action = match cause {
        Cause::Restart => Action::Restart,
        Cause::Crash => Action::Kill,
        Cause::StopStart | Cause::Recreate => Action::StopStart,
    };
    let mut tl = Timeline::new(target, unit.service().to_string(), 1, action);
    tl.notes.extend(open.notes.iter().cloned());
    if open.asked {
        // Asked for: the stop began when the unit left `active`.
        tl.mark(
            BoundaryName::Requested,
            open.clock.to_realtime_nanos(open.opened_us),
            Source::Systemd {
                property: "ActiveExitTimestampMonotonic".into(),
            },
        );
    }
    tl
}

/// A crash `Restart=` undoes takes the unit from `active` straight to
/// `activating` (auto-restart), never `inactive`: its exit is then the
/// main process's, so `start` (exit → active again) holds the back-off,
/// as a container's crash does.
fn crash_exit(tl: &mut Timeline) {
    if tl.boundary(BoundaryName::Exited).is_none()
        && let Some(b) = tl.boundary(BoundaryName::MainExited).cloned()
    {
        tl.mark(BoundaryName::Exited, b.unix_nanos, b.source);
    }
}

/// A unit that left `active` and was not active again within the bound
/// (or before the watcher stopped): `why`.
pub(super) fn record_incomplete(
    unit: &WatchedUnit,
    open: Open,
    bus: &str,
    why: String,
    record: &impl Fn(RestartKey, Followed),
) {
    let cause = if open.asked {
        Cause::StopStart
    } else {
        Cause::Crash
    };
    let mut tl = timeline_of(unit, &open, bus, cause);
    let mut report = UnitReport {
        left_active_unix_nanos: Some(open.left_active),
        ..UnitReport::default()
    };
    open.seen.to_timeline(
        open.clock,
        &HashMap::new(),
        &HashMap::new(),
        &mut report,
        &mut tl,
    );
    tl.unit = Some(report);
    crash_exit(&mut tl);
    if let Some(c) = &open.container {
        wrapped_to_timeline(&c.seen(), &mut tl);
    }
    let ending = Ending::new(Outcome::Incomplete, why);
    let key = open.key(unit);
    record(
        key,
        Followed {
            timeline: tl,
            ending,
            cause,
            recreated: None,
        },
    );
}
