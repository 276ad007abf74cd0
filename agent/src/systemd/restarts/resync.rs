//! Units read afresh from their manager rather than from its signals:
//! what a followed unit did while the bus was away, from its own stamps
//! once the bus is back (`systemd/away.rs` compares them: a restart still open
//! that is active again since comes back to be followed, a unit that went
//! down meanwhile is opened, a restart wholly inside the outage is recorded
//! from the stamps, saying what could not be observed), and units its
//! patterns name that are loaded later (`UnitNew`, or listed again after
//! an outage), read once and followed from then.

use super::fold::{Open, OpenedAt, UnitState, open_at};
use super::units::{MAX_UNITS, WatchedUnit};
use crate::docker::DockerEngine;
use crate::docker::restarts::RestartKey;
use crate::systemd::SystemdManager;
use crate::systemd::away::{self, Away, Gap, Known};
use crate::systemd::bus::{SERVICE_IFACE, UNIT_IFACE, props, string};
use std::time::Duration;
use zbus::zvariant::OwnedObjectPath;

/// What reading a unit again found.
pub(super) enum Found {
    /// It left `active` during the gap and is down: a restart opened.
    Opened,
    /// Its restart is over (active again): to follow to ready.
    Back(Box<Open>),
}

/// How units are read again.
pub(super) struct Reading<'r> {
    /// What kept the watcher from hearing them; none: nothing to compare
    /// (a unit loaded later).
    pub(super) gap: Option<Gap>,
    pub(super) engine: Option<&'r DockerEngine>,
    /// Whether a restart is recorded already: a watcher killed after
    /// recording one but before its book said so leaves it to be found again.
    pub(super) recorded: &'r dyn Fn(&RestartKey) -> bool,
}

/// How long reading a unit may take (each of a resync's, one that appeared).
const READ_BOUND: Duration = Duration::from_secs(5);

impl SystemdManager {
    /// Each unit's state read now (at start, and after the bus came back:
    /// jobs in flight then are read again), each read bounded; what each
    /// found, by index.
    pub(super) async fn resync(
        &self,
        states: &mut [UnitState],
        how: &Reading<'_>,
    ) -> Vec<(usize, Found)> {
        let mut found = Vec::new();
        for (i, s) in states.iter_mut().enumerate() {
            if let Ok(Some(f)) = tokio::time::timeout(READ_BOUND, self.read_unit(s, how)).await {
                found.push((i, f));
            }
        }
        found
    }

    /// One unit read now. An open restart whose unit is active again since
    /// comes back, to be followed. After a gap, its stamps compared with
    /// what was known tell a unit that went down meanwhile (opened now) or
    /// a restart wholly inside it (back, from its stamps), unless that
    /// restart is recorded already.
    pub(super) async fn read_unit(&self, s: &mut UnitState, how: &Reading<'_>) -> Option<Found> {
        let p = props(&self.link().conn, &s.unit.path).await.ok()?;
        let unit = p.get_all(UNIT_IFACE).await.ok()?;
        let service = p.get_all(SERVICE_IFACE).await.unwrap_or_default();
        let was = s.known;
        s.job = unit
            .get("Job")
            .and_then(|v| <(u32, OwnedObjectPath)>::try_from(v.clone()).ok())
            .map(|(id, _)| id)
            .filter(|id| *id != 0);
        s.active = unit
            .get("ActiveState")
            .and_then(string)
            .is_some_and(|a| a == "active");
        s.known = Known::read(&unit, &service);
        if let Some(mut o) = s.open.take() {
            let since = o.clock.monotonic_us;
            o.seen.apply(UNIT_IFACE, &unit, since);
            if !(s.active && o.seen.active_again) {
                s.open = Some(o);
                return None;
            }
            if let Some(gap) = how.gap {
                o.notes.push(format!(
                    "{} when the unit became active again: the job that started it was not seen",
                    gap.words()
                ));
            }
            return Some(Found::Back(Box::new(o)));
        }
        let gap = how.gap?;
        let (exit_us, crash, back) = match away::while_away(&was, &unit, &service, s.job.is_some())
        {
            Away::Nothing => return None,
            Away::Unloaded => {
                eprintln!(
                    "watch: {} on the {} bus left active while {} and was unloaded since (nothing references it, or its manager started afresh): its stamps went with it, that restart is not timed",
                    s.unit.name,
                    self.bus,
                    gap.words()
                );
                return None;
            }
            Away::Down { exit_us, crash } => (exit_us, crash, None),
            Away::Back {
                exit_us,
                crash,
                rose,
            } => (exit_us, crash, Some(rose)),
        };
        let at = OpenedAt::from_stamps(&unit).unwrap_or(OpenedAt {
            monotonic_us: exit_us,
            realtime_us: None,
        });
        let mut o = open_at(&s.unit, at, s.job, !crash, how.engine);
        if (how.recorded)(&o.key(&s.unit)) {
            return None;
        }
        let since = o.clock.monotonic_us;
        o.seen.apply(UNIT_IFACE, &unit, since);
        o.seen.apply(SERVICE_IFACE, &service, since);
        o.crash_exit_from(&service);
        o.notes.push(gap.jobs_unseen());
        let Some(rose) = back else {
            s.open = Some(o);
            return Some(Found::Opened);
        };
        o.late = Some(gap);
        o.notes.push("its start overwrote how it stopped (inactive or failed), the stop's Result and the old main process's exit".into());
        if crash {
            o.notes.push(format!("a crash: NRestarts rose by {rose}; exited is when the unit left active (ActiveExitTimestamp), its InactiveEnterTimestamp being the restart's own, after the back-off"));
        } else {
            o.notes.push("a restart job or a stop then a start: not told apart without the jobs, recorded as stop-start".into());
        }
        if rose > 1 {
            o.notes.push(format!(
                "Restart= brought it back {rose} times while {}: only the last restart left its stamps",
                gap.words()
            ));
        }
        Some(Found::Back(Box::new(o)))
    }

    /// Units `patterns` name that were loaded after the watcher started
    /// (`found`), followed from now on, up to [`MAX_UNITS`] (said when refused).
    pub(super) async fn add_units(
        &self,
        states: &mut Vec<UnitState>,
        found: Vec<(String, OwnedObjectPath)>,
        appeared: &dyn Fn(&WatchedUnit),
    ) {
        for (name, path) in found {
            if states.iter().any(|s| s.unit.name == name) {
                continue;
            }
            if states.len() >= MAX_UNITS {
                eprintln!(
                    "watch: {name} on the {} bus is not followed: {MAX_UNITS} units are already",
                    self.bus
                );
                continue;
            }
            let read = async {
                // A name asked for that has no unit file is loaded as
                // `not-found`; it is followed once it is loaded for real.
                let unit = props(&self.link().conn, &path).await.ok()?;
                let unit = unit.get_all(UNIT_IFACE).await.ok()?;
                if unit.get("LoadState").and_then(string).as_deref() != Some("loaded") {
                    return None;
                }
                let mut s = UnitState::new(self.unit_of(name.clone(), path).await.ok()?);
                let first = Reading {
                    gap: None,
                    engine: None,
                    recorded: &|_| false,
                };
                self.read_unit(&mut s, &first).await;
                Some(s)
            };
            let Ok(Some(s)) = tokio::time::timeout(READ_BOUND, read).await else {
                continue;
            };
            eprintln!(
                "watch: following {name} on the {} bus (loaded after the watcher started)",
                self.bus
            );
            appeared(&s.unit);
            states.push(s);
        }
    }
}
