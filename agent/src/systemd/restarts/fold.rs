//! One manager signal folded into the units a watcher follows: a unit
//! leaving `active` opens a restart ([`Open`]), its changes are folded by
//! `run`'s own [`UnitSeen`], and it is handed on once active again; its
//! jobs (JobNew/JobRemoved) tell who asked; `UnitNew` names a unit loaded
//! later (followed by `units.rs`).

use super::units::WatchedUnit;
use crate::docker::restarts::RestartKey;
use crate::docker::{ContainerObserver, DockerEngine};
use crate::systemd::away::{Gap, Known};
use crate::systemd::bus::{SERVICE_IFACE, UNIT_IFACE, string, uint};
use crate::systemd::observe::{ClockPair, UnitSeen};
use std::collections::HashMap;
use zbus::zvariant::{OwnedObjectPath, OwnedValue};

/// How long before a crashed unit left `active` its main process's exit
/// may be stamped (systemd handles the SIGCHLD, then changes the state).
const CRASH_MARGIN_US: u64 = 1_000_000;

/// A restart of a unit, from its leaving `active` on.
pub(super) struct Open {
    /// ActiveExitTimestampMonotonic of the stop (µs).
    pub(super) opened_us: u64,
    /// Its ActiveExitTimestamp (realtime, ns): what names the restart.
    pub(super) left_active: i64,
    pub(super) clock: ClockPair,
    pub(super) seen: UnitSeen,
    /// The unit's job when it left `active`; none for a crash.
    pub(super) job: Option<u32>,
    /// Someone asked (a job stopped it); else a crash.
    pub(super) asked: bool,
    /// Found from the unit's stamps after a gap (the bus was away, no
    /// watcher ran), active again already: probes that poll would answer
    /// only for now.
    pub(super) late: Option<Gap>,
    /// What could not be observed, for the record.
    pub(super) notes: Vec<String>,
    pub(super) container: Option<ContainerObserver>,
}

impl Open {
    /// What names the restart, in the day's run and at the collector.
    pub(super) fn key(&self, unit: &WatchedUnit) -> RestartKey {
        RestartKey {
            name: unit.service().to_string(),
            opened_at: self.left_active,
        }
    }

    /// A crash: the main process exited (and was stamped) a moment before
    /// systemd took the unit out of `active`, so its exit is taken from a
    /// little earlier than the restart's other changes.
    pub(super) fn crash_exit_from(&mut self, service_changed: &HashMap<String, OwnedValue>) {
        if !self.asked {
            let not_before = self.opened_us.saturating_sub(CRASH_MARGIN_US);
            self.seen.main_exit_from(service_changed, not_before);
        }
    }
}

/// What is known of one followed unit between signals.
pub(super) struct UnitState {
    pub(super) unit: WatchedUnit,
    pub(super) active: bool,
    /// The job the manager runs for the unit now (JobNew..JobRemoved).
    pub(super) job: Option<u32>,
    /// The last Service-interface change: a crash's main-process exit can
    /// come just before the unit is seen leaving `active`.
    pub(super) last_service: HashMap<String, OwnedValue>,
    /// The unit's own stamps as last known, compared after a gap.
    pub(super) known: Known,
    pub(super) open: Option<Open>,
    /// A restart of it is being followed to ready.
    pub(super) following: bool,
}

impl UnitState {
    pub(super) fn new(unit: WatchedUnit) -> UnitState {
        UnitState {
            unit,
            active: false,
            job: None,
            last_service: HashMap::new(),
            known: Known::default(),
            open: None,
            following: false,
        }
    }
}

/// What one signal did to the followed units.
pub(super) enum Folded {
    /// The unit left `active`: a restart opened.
    Opened(usize),
    /// The unit's restart is over (active again): to follow to ready.
    Back(usize, Box<Open>),
    /// A unit not followed yet was loaded (name, path).
    New(String, OwnedObjectPath),
}

/// One signal folded in.
pub(super) fn fold(
    states: &mut [UnitState],
    msg: &zbus::Message,
    engine: Option<&DockerEngine>,
) -> Option<Folded> {
    let header = msg.header();
    let member = header.member()?.as_str().to_string();
    let body = msg.body();
    match member.as_str() {
        "UnitNew" => {
            let (name, path): (String, OwnedObjectPath) = body.deserialize().ok()?;
            let known = states.iter().any(|s| s.unit.name == name);
            (!known).then_some(Folded::New(name, path))
        }
        "JobNew" => {
            let (id, _, unit): (u32, OwnedObjectPath, String) = body.deserialize().ok()?;
            let s = states.iter_mut().find(|s| s.unit.name == unit)?;
            s.job = Some(id);
            None
        }
        "JobRemoved" => {
            let (id, _, unit, _): (u32, OwnedObjectPath, String, String) =
                body.deserialize().ok()?;
            let s = states.iter_mut().find(|s| s.unit.name == unit)?;
            if s.job == Some(id) {
                s.job = None;
            }
            None
        }
        "PropertiesChanged" => {
            let path = header.path()?.as_str().to_string();
            let i = states.iter().position(|s| s.unit.path.as_str() == path)?;
            let (iface, changed, _): (String, HashMap<String, OwnedValue>, Vec<String>) =
                body.deserialize().ok()?;
            let s = &mut states[i];
            let state = (iface == UNIT_IFACE)
                .then(|| changed.get("ActiveState").and_then(string))
                .flatten();
            // A signal queued before the unit was read (it just appeared,
            // or the bus came back) must not open a restart already known.
            let stale = match (
                changed.get("ActiveExitTimestampMonotonic").and_then(uint),
                s.known.exit_us,
            ) {
                (Some(new), Some(known)) => new <= known,
                _ => false,
            };
            s.known.update(&changed);
            let opened = s.open.is_none()
                && s.active
                && !stale
                && state
                    .as_deref()
                    .is_some_and(|a| a != "active" && a != "reloading");
            if opened {
                let mut o = open(&s.unit, &changed, s.job, engine);
                o.seen
                    .apply(SERVICE_IFACE, &s.last_service, o.clock.monotonic_us);
                o.crash_exit_from(&s.last_service);
                s.open = Some(o);
            }
            if iface == SERVICE_IFACE {
                s.last_service = changed.clone();
            }
            if let Some(a) = &state {
                s.active = a == "active";
            }
            let o = s.open.as_mut()?;
            o.seen.apply(&iface, &changed, o.clock.monotonic_us);
            if iface == SERVICE_IFACE {
                o.crash_exit_from(&changed);
            }
            if !o.seen.active_again {
                return opened.then_some(Folded::Opened(i));
            }
            Some(Folded::Back(
                i,
                Box::new(s.open.take().expect("open above")),
            ))
        }
        _ => None,
    }
}

/// A restart opens: from the stop's own stamp (just before, so the stop's
/// changes are folded), with the wrapped container followed from then on
/// (the engine replays its events from that instant).
fn open(
    unit: &WatchedUnit,
    changed: &HashMap<String, OwnedValue>,
    job: Option<u32>,
    engine: Option<&DockerEngine>,
) -> Open {
    let at = OpenedAt::from_stamps(changed).unwrap_or_else(|| OpenedAt {
        monotonic_us: ClockPair::now().0.monotonic_us,
        realtime_us: None,
    });
    open_at(unit, at, job, job.is_some(), engine)
}

/// When a unit left `active`, as its own stamps say.
#[derive(Debug, Clone, Copy)]
pub(super) struct OpenedAt {
    /// ActiveExitTimestampMonotonic (µs).
    pub(super) monotonic_us: u64,
    /// ActiveExitTimestamp (µs since the epoch): systemd takes both at
    /// once, so the same restart always gets the same key from it.
    pub(super) realtime_us: Option<u64>,
}

impl OpenedAt {
    /// From a unit's properties (or a change of them), if they hold it.
    pub(super) fn from_stamps(props: &HashMap<String, OwnedValue>) -> Option<OpenedAt> {
        let monotonic_us = props
            .get("ActiveExitTimestampMonotonic")
            .and_then(uint)
            .filter(|us| *us > 0)?;
        let realtime_us = props
            .get("ActiveExitTimestamp")
            .and_then(uint)
            .filter(|us| *us > 0);
        Some(OpenedAt {
            monotonic_us,
            realtime_us,
        })
    }
}

/// A restart opened at `at`.
pub(super) fn open_at(
    unit: &WatchedUnit,
    at: OpenedAt,
    job: Option<u32>,
    asked: bool,
    engine: Option<&DockerEngine>,
) -> Open {
    let opened_us = at.monotonic_us;
    let (now, _) = ClockPair::now();
    let clock = now.since(opened_us.saturating_sub(1));
    let left_active = match at.realtime_us {
        Some(us) => us as i64 * 1000,
        None => clock.to_realtime_nanos(opened_us),
    };
    let container = unit
        .container
        .as_deref()
        .zip(engine)
        .map(|(name, e)| e.observe(name, clock.to_realtime_nanos(opened_us)));
    Open {
        opened_us,
        left_active,
        clock,
        seen: UnitSeen::default(),
        job,
        asked,
        late: None,
        notes: Vec::new(),
        container,
    }
}
