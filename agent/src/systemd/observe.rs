//! The observer: a unit's PropertiesChanged signals folded into what the
//! restart did (how the unit stopped, the stop's `Result`, the old main
//! process's exit, active again), and its monotonic timestamps placed on the
//! realtime axis through a [`ClockPair`] read at the request, so they line up
//! with Docker's (realtime) record of the container a kolla unit wraps.
//!
//! The main process's exit (status, time) and the unit's `Result` are
//! overwritten when the unit starts again, so they are caught from the
//! signals while the restart runs; the timestamps are also read back from
//! the unit's properties at the end.

use super::bus::{PropertiesChangedStream, SERVICE_IFACE, UNIT_IFACE, int, string, uint};
use crate::abort::{Abort, Interrupt, bounded};
use crate::docker::Observed;
use crate::timeline::{Timeline, realtime_nanos};
use bounce_wire::{BoundaryName, Source, UnitReport};
use futures_util::StreamExt;
use std::collections::HashMap;
use tokio::sync::watch;
use tokio::time::Instant;
use zbus::zvariant::OwnedValue;

/// CLOCK_REALTIME and CLOCK_MONOTONIC read back to back, so monotonic
/// timestamps can be placed on the realtime axis.
#[derive(Debug, Clone, Copy)]
pub(super) struct ClockPair {
    realtime_ns: i64,
    pub(super) monotonic_us: u64,
}

impl ClockPair {
    /// The pair, and the realtime instant it was read at (the request).
    pub(super) fn now() -> (ClockPair, i64) {
        let mono = monotonic_nanos();
        let real = realtime_nanos();
        (
            ClockPair {
                realtime_ns: real - mono,
                monotonic_us: (mono / 1000) as u64,
            },
            real,
        )
    }

    /// The same clocks, with `monotonic_us` as the instant signals are
    /// folded from (watch: just before a unit was seen leaving `active`).
    pub(super) fn since(self, monotonic_us: u64) -> ClockPair {
        ClockPair {
            monotonic_us,
            ..self
        }
    }

    /// `realtime_ns` holds the offset (realtime − monotonic) in ns.
    pub(super) fn to_realtime_nanos(self, monotonic_us: u64) -> i64 {
        monotonic_us as i64 * 1000 + self.realtime_ns
    }
}

fn monotonic_nanos() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // CLOCK_MONOTONIC is what systemd's *TimestampMonotonic properties use.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// What the unit's PropertiesChanged signals showed since the request.
#[derive(Debug, Clone, Default)]
pub(super) struct UnitSeen {
    /// `inactive` (dead) or `failed`: how the unit stopped.
    stopped_as: Option<String>,
    /// Every `Result` value seen, in order (the stop sets it, the start resets it).
    results: Vec<String>,
    /// The last `Result` seen before the new main process started: the stop's.
    stop_result: Option<String>,
    /// A new main process started after the request.
    restarted: bool,
    /// (ExecMainExitTimestampMonotonic, ExecMainCode, ExecMainStatus) of the old main process.
    main_exit: Option<(u64, Option<i32>, Option<i32>)>,
    /// ActiveEnterTimestampMonotonic moved past the request.
    pub(super) active_again: bool,
    /// Unit timestamps past the request, as signalled: a stopped unit that
    /// nothing references is unloaded, and its reloaded self starts with none.
    timestamps: HashMap<&'static str, u64>,
}

impl UnitSeen {
    /// Folds one PropertiesChanged signal of the unit in (changes at or
    /// before `since_us` belong to an earlier restart).
    pub(super) fn apply(
        &mut self,
        iface: &str,
        changed: &HashMap<String, OwnedValue>,
        since_us: u64,
    ) {
        if iface == UNIT_IFACE {
            for p in [
                "InactiveEnterTimestampMonotonic",
                "ActiveEnterTimestampMonotonic",
            ] {
                if let Some(us) = changed.get(p).and_then(uint).filter(|us| *us > since_us) {
                    self.timestamps.entry(p).or_insert(us);
                }
            }
            if let Some(state) = changed.get("ActiveState").and_then(string)
                && self.stopped_as.is_none()
                && (state == "inactive" || state == "failed")
            {
                self.stopped_as = Some(state);
            }
            if changed
                .get("ActiveEnterTimestampMonotonic")
                .and_then(uint)
                .is_some_and(|us| us > since_us)
            {
                self.active_again = true;
            }
        } else if iface == SERVICE_IFACE {
            // systemd sends every emits-change property of the interface on
            // each change: a batch with a new ExecMainStart belongs to the start.
            if changed
                .get("ExecMainStartTimestampMonotonic")
                .and_then(uint)
                .is_some_and(|us| us > since_us)
            {
                self.restarted = true;
            }
            if let Some(r) = changed.get("Result").and_then(string) {
                if !self.restarted {
                    self.stop_result = Some(r.clone());
                }
                self.results.push(r);
            }
            self.main_exit_from(changed, since_us + 1);
        }
    }

    /// The old main process's exit, from a Service-interface change, if
    /// stamped at or after `not_before_us` (watch: a crashed process exits
    /// a moment before systemd takes its unit out of `active`).
    pub(super) fn main_exit_from(
        &mut self,
        changed: &HashMap<String, OwnedValue>,
        not_before_us: u64,
    ) {
        if let Some(us) = changed
            .get("ExecMainExitTimestampMonotonic")
            .and_then(uint)
            .filter(|us| *us >= not_before_us)
            && self.main_exit.is_none()
        {
            self.main_exit = Some((
                us,
                changed.get("ExecMainCode").and_then(int),
                changed.get("ExecMainStatus").and_then(int),
            ));
        }
    }
}

/// One unit followed from the request on; stops following when dropped.
pub(super) struct UnitObserver {
    clock: ClockPair,
    seen: watch::Receiver<UnitSeen>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for UnitObserver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl UnitObserver {
    /// Folds the unit's property signals from `clock`'s instant on.
    pub(super) fn follow(mut changes: PropertiesChangedStream, clock: ClockPair) -> UnitObserver {
        let since_us = clock.monotonic_us;
        let (tx, rx) = watch::channel(UnitSeen::default());
        let task = tokio::spawn(async move {
            while let Some(signal) = changes.next().await {
                if let Ok(args) = signal.args() {
                    tx.send_modify(|s| s.apply(&args.interface, &args.changed, since_us));
                }
            }
        });
        UnitObserver {
            clock,
            seen: rx,
            task,
        }
    }

    /// Waits until what was seen satisfies `cond`; `Ok(None)` when the
    /// signals were lost (the connection is gone).
    pub(super) async fn wait(
        &self,
        cond: impl Fn(&UnitSeen) -> bool,
        deadline: Instant,
        abort: &Abort,
    ) -> Result<Option<()>, Interrupt> {
        let mut rx = self.seen.clone();
        bounded(
            async move { rx.wait_for(|s| cond(s)).await.ok().map(|_| ()) },
            deadline,
            abort,
        )
        .await
    }

    /// The unit-level boundaries (stopped, active, main process started and
    /// exited) and the unit's report, from the signals and from the unit's
    /// properties read now.
    pub(super) fn to_timeline(
        &self,
        unit_props: &HashMap<String, OwnedValue>,
        service_props: &HashMap<String, OwnedValue>,
        report: &mut UnitReport,
        tl: &mut Timeline,
    ) {
        let seen = self.seen.borrow().clone();
        seen.to_timeline(self.clock, unit_props, service_props, report, tl);
    }
}

impl UnitSeen {
    /// The unit-level boundaries and the unit's report from what the
    /// signals showed and the unit's properties read now (`run`'s observer
    /// and `watch`'s both write a restart's timeline through this).
    pub(super) fn to_timeline(
        &self,
        clock: ClockPair,
        unit_props: &HashMap<String, OwnedValue>,
        service_props: &HashMap<String, OwnedValue>,
        report: &mut UnitReport,
        tl: &mut Timeline,
    ) {
        let seen = self;
        let mark =
            |tl: &mut Timeline, b: BoundaryName, map: &HashMap<String, OwnedValue>, p: &str| {
                let now = map
                    .get(p)
                    .and_then(uint)
                    .filter(|us| *us > clock.monotonic_us);
                if let Some(us) = seen.timestamps.get(p).copied().or(now) {
                    tl.mark(
                        b,
                        clock.to_realtime_nanos(us),
                        Source::Systemd { property: p.into() },
                    );
                }
            };
        mark(
            tl,
            BoundaryName::Exited,
            unit_props,
            "InactiveEnterTimestampMonotonic",
        );
        mark(
            tl,
            BoundaryName::Started,
            unit_props,
            "ActiveEnterTimestampMonotonic",
        );
        mark(
            tl,
            BoundaryName::MainStarted,
            service_props,
            "ExecMainStartTimestampMonotonic",
        );
        if let Some((us, code, status)) = seen.main_exit {
            tl.mark(
                BoundaryName::MainExited,
                clock.to_realtime_nanos(us),
                Source::Systemd {
                    property: "ExecMainExitTimestampMonotonic".into(),
                },
            );
            report.main_exit_code = code;
            report.main_exit_status = status;
            if code == Some(1) {
                tl.exit_code = status.map(i64::from);
            }
        }
        // The state between stop and start can be coalesced away in a restart
        // job; systemd's own rule decides then: a service whose Result is not
        // `success` stops as `failed`.
        report.stopped_as = seen.stopped_as.clone().or_else(|| {
            seen.stop_result
                .as_ref()
                .map(|r| if r == "success" { "inactive" } else { "failed" }.to_string())
        });
        report.stop_result = seen.stop_result.clone();
        report.final_result = seen.results.last().cloned();
    }
}

/// The wrapped container's own boundaries, as its observer saw them.
pub(super) fn wrapped_to_timeline(o: &Observed, tl: &mut Timeline) {
    if let Some(at) = o.exited {
        tl.mark(
            BoundaryName::ContainerExited,
            at,
            Source::DockerEvent {
                action: "die".into(),
            },
        );
        if tl.exit_code.is_none() {
            tl.exit_code = o.exit_code;
        }
    }
    if let Some(at) = o.started {
        tl.mark(
            BoundaryName::ContainerStarted,
            at,
            Source::DockerEvent {
                action: "start".into(),
            },
        );
    }
    tl.events = o.events.clone();
    tl.oom_killed |= o.oom;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_timestamps_land_on_the_realtime_axis() {
        let (clock, requested) = ClockPair::now();
        let back = clock.to_realtime_nanos(clock.monotonic_us);
        // Same instant within the µs truncation and the two clock reads.
        assert!(
            (requested - back).abs() < 1_000_000,
            "{requested} vs {back}"
        );
    }
}
