//! The observer of the units a watcher follows on one systemd manager
//! (`watch`): one ordered stream of the manager's signals (its jobs and
//! every unit's PropertiesChanged), cut per unit into restarts named by
//! cause. Each restart is folded by `run`'s own [`UnitSeen`] and written to
//! its timeline by the same code (`observe.rs`); a wrapped container
//! (kolla's `kolla-*-container.service`) is followed through
//! `docker::observe`; then readiness and where the time went. It acts on
//! nothing: no job is queued, nothing is signalled.
//!
//! A restart opens when a unit leaves `active` (its
//! `ActiveExitTimestamp`: the stop began) and is handed on when it is
//! active again. Its cause: a job of the unit ran when it left `active`
//! (someone asked: `systemctl restart`, `stop`), and the same job brought
//! it back (`restart`) or another one (`stop-start`); no job (its process
//! exited by itself, `Restart=` brought it back: `crash`). One not active
//! again within a bound is given back as incomplete, and so is one still
//! open or followed when the watcher stops (a manager replays nothing).
//!
//! After its bus was away, each unit's own stamps are compared with what
//! was last known (`away.rs`): a unit down now is opened as a restart, one
//! restarted wholly inside the outage is recorded from its stamps, saying
//! what could not be observed. A unit its patterns name that is loaded
//! later (`UnitNew`, or listed again after an outage) is followed from then.

use super::away::{self, Away, Known};
use super::bus::{SERVICE_IFACE, UNIT_IFACE, bus_error, props, string, uint};
use super::observe::{ClockPair, UnitSeen, wrapped_to_timeline};
use super::{SystemdManager, attribute};
use crate::abort::Abort;
use crate::docker::follow::{Followed, WatchReady};
use crate::docker::restarts::RestartKey;
use crate::docker::{ContainerObserver, DockerEngine};
use crate::readiness::{self, ContainerHealth, ReadyWait};
use crate::scenario::{Empty, NamePattern, ProbeSpec};
use crate::target::PlanError;
use crate::timeline::{Ending, Timeline};
use bounce_wire::{Action, BoundaryName, Cause, Outcome, Source, TargetRef, UnitReport};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::time::Instant;
use zbus::zvariant::{OwnedObjectPath, OwnedValue};

/// One unit a watcher follows.
#[derive(Debug, Clone)]
pub struct WatchedUnit {
    pub name: String,
    path: OwnedObjectPath,
    /// The container it runs with `docker start -a NAME`, if any: its
    /// restarts are the unit's, not counted again as the container's.
    pub container: Option<String>,
}

impl WatchedUnit {
    /// The name its restarts are grouped by: the container for kolla's units.
    pub fn service(&self) -> &str {
        self.container.as_deref().unwrap_or(&self.name)
    }
}

/// The units a watcher follows on one manager: the names and globs it was
/// given, and the units they matched when it started (more are followed
/// as they are loaded).
#[derive(Debug, Clone, Default)]
pub struct UnitSet {
    pub patterns: Vec<NamePattern>,
    pub units: Vec<WatchedUnit>,
}

/// What a watcher is told of its units' restarts besides their records.
pub struct UnitHooks<'r, 'c> {
    /// How to tell a restarted unit ready, by its service name.
    pub ready_for: &'r dyn Fn(&str) -> WatchReady<'c>,
    /// A unit (by name) whose stop was just seen.
    pub opened: &'r dyn Fn(&str),
    /// A unit loaded after the watcher started, followed from now on.
    pub appeared: &'r dyn Fn(&WatchedUnit),
}

/// The next signal, or nothing while the manager's bus is away.
async fn next_signal(
    signals: &mut Option<zbus::MessageStream>,
) -> Option<zbus::Result<zbus::Message>> {
    match signals {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

impl Open {
    /// A crash: the main process exited (and was stamped) a moment before
    /// systemd took the unit out of `active`, so its exit is taken from a
    /// little earlier than the restart's other changes.
    fn crash_exit_from(&mut self, service_changed: &HashMap<String, OwnedValue>) {
        if !self.asked {
            let not_before = self.opened_us.saturating_sub(CRASH_MARGIN_US);
            self.seen.main_exit_from(service_changed, not_before);
        }
    }
}

/// A restart of a unit, from its leaving `active` on.
struct Open {
    /// ActiveExitTimestampMonotonic of the stop (µs).
    opened_us: u64,
    clock: ClockPair,
    seen: UnitSeen,
    /// The unit's job when it left `active`; none for a crash.
    job: Option<u32>,
    /// Someone asked (a job stopped it); else a crash.
    asked: bool,
    /// Found from the unit's stamps after the bus was away, active again
    /// already: probes that poll would answer only for now.
    late: bool,
    /// What could not be observed, for the record.
    notes: Vec<String>,
    container: Option<ContainerObserver>,
}

/// What is known of one followed unit between signals.
struct UnitState {
    unit: WatchedUnit,
    active: bool,
    /// The job the manager runs for the unit now (JobNew..JobRemoved).
    job: Option<u32>,
    /// The last Service-interface change: a crash's main-process exit can
    /// come just before the unit is seen leaving `active`.
    last_service: HashMap<String, OwnedValue>,
    /// The unit's own stamps as last known, compared after an outage.
    known: Known,
    open: Option<Open>,
}

impl UnitState {
    fn new(unit: WatchedUnit) -> UnitState {
        UnitState {
            unit,
            active: false,
            job: None,
            last_service: HashMap::new(),
            known: Known::default(),
            open: None,
        }
    }
}

/// What reading a unit again found.
enum Found {
    /// It left `active` while the bus was away and is down: a restart opened.
    Opened,
    /// Its restart is over (active again): to follow to ready.
    Back(Box<Open>),
}

type Following<'a> = Pin<Box<dyn Future<Output = (RestartKey, Followed)> + 'a>>;

/// How long before a crashed unit left `active` its main process's exit
/// may be stamped (systemd handles the SIGCHLD, then changes the state).
const CRASH_MARGIN_US: u64 = 1_000_000;
/// How often restarts not active again are checked against the bound.
const TICK: Duration = Duration::from_secs(1);
/// How often to try a manager whose bus went away (each try bounded by it).
const RECONNECT_EVERY: Duration = Duration::from_secs(1);
/// At most this many units followed on one manager: a glob that matches
/// every unit a busy node loads must not grow the watcher without bound.
const MAX_UNITS: usize = 1000;
/// How long reading a unit that just appeared may take.
const READ_BOUND: Duration = Duration::from_secs(5);
/// What a restart found after an outage could not show.
const JOBS_UNSEEN: &str = "the manager's bus was away when the unit left active: found afterwards from its own stamps, its jobs not seen";

impl SystemdManager {
    /// The loaded units matching `patterns`, each with the container it wraps.
    pub async fn watched_units(
        &self,
        patterns: &[NamePattern],
    ) -> Result<Vec<WatchedUnit>, PlanError> {
        let mut out: Vec<WatchedUnit> = Vec::new();
        for pattern in patterns {
            for (name, _, path) in self.list_units(&pattern.text).await? {
                if out.iter().any(|u| u.name == name) {
                    continue;
                }
                out.push(self.unit_of(name, path).await?);
            }
        }
        Ok(out)
    }

    /// One unit as a watcher follows it: with the container it wraps.
    async fn unit_of(&self, name: String, path: OwnedObjectPath) -> Result<WatchedUnit, PlanError> {
        let service = match props(&self.link().conn, &path).await {
            Ok(p) => p.get_all(SERVICE_IFACE).await.unwrap_or_default(),
            Err(e) => return Err(bus_error(&self.bus, e)),
        };
        let container = service
            .get("ExecStart")
            .and_then(super::resolve::wrapped_container);
        Ok(WatchedUnit {
            name,
            path,
            container,
        })
    }

    /// Units `patterns` name that were loaded after the watcher started
    /// (`found`), followed from now on, up to [`MAX_UNITS`].
    async fn add_units(
        &self,
        states: &mut Vec<UnitState>,
        found: Vec<(String, OwnedObjectPath)>,
        hooks: &UnitHooks<'_, '_>,
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
                self.read_unit(&mut s, false, None).await;
                Some(s)
            };
            let Ok(Some(s)) = tokio::time::timeout(READ_BOUND, read).await else {
                continue;
            };
            eprintln!(
                "watch: following {name} on the {} bus (loaded after the watcher started)",
                self.bus
            );
            (hooks.appeared)(&s.unit);
            states.push(s);
        }
    }

    /// Follows `set`'s units until `stop` fires; `opened` is told each unit
    /// whose stop was seen (by name), and each restart, once followed to
    /// its end (or the bound), is handed to `record`. When the manager's
    /// bus goes away it connects again (a new connection, `Subscribe`) and
    /// goes on. When `stop` fires, what is open or followed is handed on
    /// as it is (the followed ones' waits end at once), then it returns;
    /// else it returns only if the first subscription fails.
    pub async fn watch_units<'c>(
        &self,
        set: UnitSet,
        engine: Option<&DockerEngine>,
        hooks: UnitHooks<'_, 'c>,
        incomplete_after: Duration,
        stop: &Abort,
        record: impl Fn(RestartKey, Followed),
    ) -> Result<(), PlanError> {
        let mut signals = Some(self.signals().await?);
        let mut states: Vec<UnitState> = set.units.into_iter().map(UnitState::new).collect();
        self.resync(&mut states, false, engine).await;
        let bus = self.bus.to_string();
        let mut following: FuturesUnordered<Following<'_>> = FuturesUnordered::new();
        let mut tick = tokio::time::interval(TICK);
        let mut retry = tokio::time::interval(RECONNECT_EVERY);
        loop {
            tokio::select! {
                _ = stop.wait() => break,
                msg = next_signal(&mut signals) => {
                    let Some(Ok(msg)) = msg else {
                        eprintln!("watch: the systemd manager on the {bus} bus went away; connecting again");
                        signals = None;
                        continue;
                    };
                    match fold(&mut states, &msg, engine) {
                        Some(Folded::Opened(i)) => (hooks.opened)(&states[i].unit.name),
                        Some(Folded::Back(i, back)) => {
                            let s = &states[i];
                            let ready = (hooks.ready_for)(s.unit.service());
                            following.push(Box::pin(self.follow(s.unit.clone(), *back, s.job, ready, engine, stop)));
                        }
                        Some(Folded::New(name, path)) if set.patterns.iter().any(|p| p.matches(&name)) => {
                            self.add_units(&mut states, vec![(name, path)], &hooks).await;
                        }
                        Some(Folded::New(..)) | None => {}
                    }
                }
                _ = retry.tick(), if signals.is_none() => {
                    let bound = Instant::now() + RECONNECT_EVERY;
                    if self.connected(bound, stop).await.is_ok() && let Ok(s) = self.signals().await {
                        signals = Some(s);
                        // What changed while away, from each unit's stamps.
                        for (i, found) in self.resync(&mut states, true, engine).await {
                            let s = &states[i];
                            match found {
                                Found::Opened => (hooks.opened)(&s.unit.name),
                                Found::Back(back) => {
                                    let ready = (hooks.ready_for)(s.unit.service());
                                    following.push(Box::pin(self.follow(s.unit.clone(), *back, None, ready, engine, stop)));
                                }
                            }
                        }
                        // Units loaded meanwhile (their UnitNew went to the old bus).
                        if let Ok(found) = self.watched_units(&set.patterns).await {
                            let found = found.into_iter().map(|u| (u.name, u.path)).collect();
                            self.add_units(&mut states, found, &hooks).await;
                        }
                        eprintln!("watch: the systemd manager on the {bus} bus answers again; following its units");
                    }
                }
                Some((key, followed)) = following.next() => record(key, followed),
                _ = tick.tick() => {
                    let (clock, _) = ClockPair::now();
                    let bound = incomplete_after.as_micros() as u64;
                    for s in states.iter_mut() {
                        if s.open.as_ref().is_some_and(|o| o.opened_us + bound < clock.monotonic_us) {
                            let o = s.open.take().expect("checked above");
                            let why = format!("not active again within {}s of leaving active", incomplete_after.as_secs());
                            record_incomplete(&s.unit, o, &bus, why, &record);
                        }
                    }
                }
            }
        }
        // A manager replays nothing: what is open is recorded now, as far
        // as it was seen, and the followed ones end at once (`stop`).
        for s in states.iter_mut() {
            if let Some(o) = s.open.take() {
                let why = "the watcher stopped before the unit was active again".to_string();
                record_incomplete(&s.unit, o, &bus, why, &record);
            }
        }
        while let Some((key, followed)) = following.next().await {
            record(key, followed);
        }
        Ok(())
    }

    /// Every signal of the manager on the current connection, in order.
    async fn signals(&self) -> Result<zbus::MessageStream, PlanError> {
        let rule = zbus::MatchRule::builder()
            .msg_type(zbus::message::Type::Signal)
            .path_namespace("/org/freedesktop/systemd1")
            .map_err(|e| bus_error(&self.bus, e))?
            .build();
        zbus::MessageStream::for_match_rule(rule, &self.link().conn, Some(4096))
            .await
            .map_err(|e| bus_error(&self.bus, e))
    }

    /// Each unit's state read now (at start, and after the bus came back:
    /// jobs in flight then are read again); what each found, by index.
    async fn resync(
        &self,
        states: &mut [UnitState],
        after_outage: bool,
        engine: Option<&DockerEngine>,
    ) -> Vec<(usize, Found)> {
        let mut found = Vec::new();
        for (i, s) in states.iter_mut().enumerate() {
            if let Some(f) = self.read_unit(s, after_outage, engine).await {
                found.push((i, f));
            }
        }
        found
    }

    /// One unit read now. An open restart whose unit is active again since
    /// comes back, to be followed. After an outage, its stamps compared
    /// with what was known tell a unit that went down meanwhile (opened
    /// now) or a restart wholly inside it (back, from its stamps).
    async fn read_unit(
        &self,
        s: &mut UnitState,
        after_outage: bool,
        engine: Option<&DockerEngine>,
    ) -> Option<Found> {
        let p = props(&self.link().conn, &s.unit.path).await.ok()?;
        let unit = p.get_all(UNIT_IFACE).await.ok()?;
        let service = p.get_all(SERVICE_IFACE).await.unwrap_or_default();
        let (was_active, was) = (s.active, s.known);
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
            if after_outage {
                o.notes.push("the manager's bus was away when the unit became active again: the job that started it was not seen".into());
            }
            return Some(Found::Back(Box::new(o)));
        }
        if !after_outage || !was_active {
            return None;
        }
        let (exit_us, crash, back) = match away::while_away(&was, &unit, &service, s.job.is_some())
        {
            Away::Nothing => return None,
            Away::Unloaded => {
                eprintln!(
                    "watch: {} left active while the {} bus was away and was unloaded since (nothing references it): its stamps went with it, that restart is not timed",
                    s.unit.name, self.bus
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
        let mut o = open_at(&s.unit, exit_us, s.job, !crash, engine);
        let since = o.clock.monotonic_us;
        o.seen.apply(UNIT_IFACE, &unit, since);
        o.seen.apply(SERVICE_IFACE, &service, since);
        o.crash_exit_from(&service);
        o.notes.push(JOBS_UNSEEN.into());
        let Some(rose) = back else {
            s.open = Some(o);
            return Some(Found::Opened);
        };
        o.late = true;
        o.notes.push("its start overwrote how it stopped (inactive or failed), the stop's Result and the old main process's exit".into());
        if crash {
            o.notes.push(format!("a crash: NRestarts rose by {rose}; exited is when the unit left active (ActiveExitTimestamp), its InactiveEnterTimestamp being the restart's own, after the back-off"));
        } else {
            o.notes.push("a restart job or a stop then a start: not told apart without the jobs, recorded as stop-start".into());
        }
        if rose > 1 {
            o.notes.push(format!("Restart= brought it back {rose} times while away: only the last restart left its stamps"));
        }
        Some(Found::Back(Box::new(o)))
    }

    /// A restart that is active again, followed to ready.
    async fn follow(
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
        if open.late && !open.asked {
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
        let mut report = UnitReport::default();
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
            Some(_) if open.late && probes.iter().any(polls) => Ending::new(
                Outcome::Incomplete,
                "readiness not observed: the restart ended while the manager's bus was away, and its probes would answer only for now",
            ),
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
        let key = RestartKey {
            name: unit.service().to_string(),
            opened_at: open.clock.to_realtime_nanos(open.opened_us),
        };
        let followed = Followed {
            timeline: tl,
            ending,
            cause,
            recreated: None,
        };
        (key, followed)
    }
}

/// What one signal did to the followed units.
enum Folded {
    /// The unit left `active`: a restart opened.
    Opened(usize),
    /// The unit's restart is over (active again): to follow to ready.
    Back(usize, Box<Open>),
    /// A unit not followed yet was loaded (name, path).
    New(String, OwnedObjectPath),
}

/// One signal folded in.
fn fold(
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
    let (now, _) = ClockPair::now();
    let opened_us = changed
        .get("ActiveExitTimestampMonotonic")
        .and_then(uint)
        .filter(|us| *us > 0)
        .unwrap_or(now.monotonic_us);
    open_at(unit, opened_us, job, job.is_some(), engine)
}

/// A restart opened at `opened_us` (the unit's ActiveExitTimestampMonotonic).
fn open_at(
    unit: &WatchedUnit,
    opened_us: u64,
    job: Option<u32>,
    asked: bool,
    engine: Option<&DockerEngine>,
) -> Open {
    let (now, _) = ClockPair::now();
    let clock = now.since(opened_us.saturating_sub(1));
    let container = unit
        .container
        .as_deref()
        .zip(engine)
        .map(|(name, e)| e.observe(name, clock.to_realtime_nanos(opened_us)));
    Open {
        opened_us,
        clock,
        seen: UnitSeen::default(),
        job,
        asked,
        late: false,
        notes: Vec::new(),
        container,
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
fn record_incomplete(
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
    let mut report = UnitReport::default();
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
    let key = RestartKey {
        name: unit.service().to_string(),
        opened_at: open.clock.to_realtime_nanos(open.opened_us),
    };
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
