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
//! again within a bound is given back as incomplete.

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

/// What a watcher is told of its units' restarts besides their records.
pub struct UnitHooks<'r, 'c> {
    /// How to tell a restarted unit ready, by its service name.
    pub ready_for: &'r dyn Fn(&str) -> WatchReady<'c>,
    /// A unit (by name) whose stop was just seen.
    pub opened: &'r dyn Fn(&str),
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
        if self.job.is_none() {
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
    open: Option<Open>,
}

type Following<'a> = Pin<Box<dyn Future<Output = (RestartKey, Followed)> + 'a>>;

/// How long before a crashed unit left `active` its main process's exit
/// may be stamped (systemd handles the SIGCHLD, then changes the state).
const CRASH_MARGIN_US: u64 = 1_000_000;
/// How often restarts not active again are checked against the bound.
const TICK: Duration = Duration::from_secs(1);
/// How often to try a manager whose bus went away (each try bounded by it).
const RECONNECT_EVERY: Duration = Duration::from_secs(1);

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
                let service = match props(&self.link().conn, &path).await {
                    Ok(p) => p.get_all(SERVICE_IFACE).await.unwrap_or_default(),
                    Err(e) => return Err(bus_error(&self.bus, e)),
                };
                let container = service
                    .get("ExecStart")
                    .and_then(super::resolve::wrapped_container);
                out.push(WatchedUnit {
                    name,
                    path,
                    container,
                });
            }
        }
        Ok(out)
    }

    /// Follows `units` until dropped; `opened` is told each unit whose
    /// stop was seen (by name), and each restart, once followed to its end
    /// (or the bound), is handed to `record`. When the manager's bus goes
    /// away it connects again (a new connection, `Subscribe`) and goes on;
    /// returns only if the first subscription fails.
    pub async fn watch_units<'c>(
        &self,
        units: Vec<WatchedUnit>,
        engine: Option<&DockerEngine>,
        hooks: UnitHooks<'_, 'c>,
        incomplete_after: Duration,
        record: impl Fn(RestartKey, Followed),
    ) -> Result<(), PlanError> {
        let mut signals = Some(self.signals().await?);
        let mut states: Vec<UnitState> = units
            .into_iter()
            .map(|unit| UnitState {
                unit,
                active: false,
                job: None,
                last_service: HashMap::new(),
                open: None,
            })
            .collect();
        self.resync(&mut states).await;
        let abort = Abort::never();
        let mut following: FuturesUnordered<Following<'_>> = FuturesUnordered::new();
        let mut tick = tokio::time::interval(TICK);
        let mut retry = tokio::time::interval(RECONNECT_EVERY);
        loop {
            tokio::select! {
                msg = next_signal(&mut signals) => {
                    let Some(Ok(msg)) = msg else {
                        eprintln!("watch: the systemd manager on the {} bus went away; connecting again", self.bus);
                        signals = None;
                        continue;
                    };
                    match fold(&mut states, &msg, engine) {
                        Some(Folded::Opened(i)) => (hooks.opened)(&states[i].unit.name),
                        Some(Folded::Back(i, back)) => {
                            let s = &states[i];
                            let ready = (hooks.ready_for)(s.unit.service());
                            following.push(Box::pin(self.follow(s.unit.clone(), *back, s.job, ready, engine, &abort)));
                        }
                        None => {}
                    }
                }
                _ = retry.tick(), if signals.is_none() => {
                    let bound = Instant::now() + RECONNECT_EVERY;
                    if self.connected(bound, &abort).await.is_ok() && let Ok(s) = self.signals().await {
                        signals = Some(s);
                        // What changed while away: restarts that came back
                        // are followed; one begun and ended then is not seen.
                        for (i, back) in self.resync(&mut states).await {
                            let s = &states[i];
                            let ready = (hooks.ready_for)(s.unit.service());
                            following.push(Box::pin(self.follow(s.unit.clone(), back, None, ready, engine, &abort)));
                        }
                        eprintln!("watch: the systemd manager on the {} bus answers again; following its units", self.bus);
                    }
                }
                Some((key, followed)) = following.next() => record(key, followed),
                _ = tick.tick() => {
                    let (clock, _) = ClockPair::now();
                    let bound = incomplete_after.as_micros() as u64;
                    for s in states.iter_mut() {
                        if s.open.as_ref().is_some_and(|o| o.opened_us + bound < clock.monotonic_us) {
                            let o = s.open.take().expect("checked above");
                            record_incomplete(&s.unit, o, &self.bus.to_string(), incomplete_after, &record);
                        }
                    }
                }
            }
        }
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
    /// jobs in flight then are forgotten). An open restart whose unit is
    /// active again since comes back, to be followed.
    async fn resync(&self, states: &mut [UnitState]) -> Vec<(usize, Open)> {
        let mut back = Vec::new();
        for (i, s) in states.iter_mut().enumerate() {
            s.job = None;
            let unit = match props(&self.link().conn, &s.unit.path).await {
                Ok(p) => p.get_all(UNIT_IFACE).await.ok(),
                Err(_) => None,
            };
            let Some(unit) = unit else { continue };
            s.active = unit
                .get("ActiveState")
                .and_then(string)
                .is_some_and(|a| a == "active");
            if let Some(mut o) = s.open.take() {
                o.seen.apply(UNIT_IFACE, &unit, o.opened_us);
                match s.active && o.seen.active_again {
                    true => back.push((i, o)),
                    false => s.open = Some(o),
                }
            }
        }
        back
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
        let cause = match (open.job, job_back) {
            (None, _) => Cause::Crash,
            (Some(a), Some(b)) if a == b => Cause::Restart,
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
        let ending = match running {
            None => Ending::new(Outcome::Failed, "systemd reported no new activation"),
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
            let opened = s.open.is_none()
                && s.active
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
    if open.job.is_some() {
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

/// A unit that left `active` and was not active again within the bound.
fn record_incomplete(
    unit: &WatchedUnit,
    open: Open,
    bus: &str,
    bound: Duration,
    record: &impl Fn(RestartKey, Followed),
) {
    let cause = if open.job.is_some() {
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
    let ending = Ending::new(
        Outcome::Incomplete,
        format!(
            "not active again within {}s of leaving active",
            bound.as_secs()
        ),
    );
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
