//! `watch`: times every restart of a container on this node that bounce did
//! not make (`docker restart`, a stop then a start, a crash the restart
//! policy undoes, a recreate under the same name), and of the systemd units
//! its configuration names (`systemctl restart`, stop then start, a crash
//! `Restart=` undoes; kolla's units with the container they wrap), always
//! on. It follows the engine's event stream for every container
//! (`docker/restarts.rs` cuts it into restarts through `run`'s own fold)
//! and each manager's signals (`systemd/restarts.rs`, through `run`'s unit
//! observer), follows each restart to ready (`docker/follow.rs`), and
//! records it with `origin: watch` and its cause in the day's run
//! (`days`). The node's Ceph OSDs its configuration names are followed
//! through their units or containers, and each restart continued to Ceph's
//! milestones (`ceph/osd/follow.rs`), recorded once, as the OSD's. An
//! engine or a manager's bus that goes away is waited for and followed
//! again (the engine replays what happened meanwhile; a manager does not,
//! but its units' own stamps tell what happened to them). It resumes after
//! its own restart from a cursor (`cursor`: the engine replays its events,
//! `seen` takes each once; `replay` says when the engine no longer holds
//! them all). A manager does not replay: a unit or OSD restart still open
//! or followed when the watcher stops is recorded then, `incomplete`, and
//! one while no watcher ran is found at the next start from the units' own
//! stamps against what the last watcher knew (`systemd/restarts/book.rs`).
//! It never restarts, stops or execs anything; only exec probes named in
//! its configuration (`config`) run in a container.
//!
//! Docker API it uses (GET only, unless exec probes are configured):
//! `/_ping`, `/version`, `/events`, `/containers/json` (at start and when the
//! engine is back; a proxy refusing it limits `away` to containers known),
//! `/containers/{id}/json`; exec probes add
//! `POST /containers/{id}/exec`, `POST /exec/{id}/start`, `GET /exec/{id}/json`.

pub mod away;
pub mod book;
pub mod config;
pub mod cursor;
pub mod days;
pub mod replay;
pub mod seen;

use crate::abort::{Abort, abort_pair};
use crate::ceph::osd::follow::WatchedOsds;
use crate::docker::DockerEngine;
use crate::docker::follow::{Followed, WatchReady, unfinished};
use crate::docker::restarts::{RestartKey, RestartTracker, Started};
use crate::durable::WriteError;
use crate::output::OutputError;
use crate::scenario::ProbeSpec;
use crate::systemd::SystemdManager;
use crate::systemd::restarts::{UnitBook, UnitHooks, UnitSet, WatchedUnit};
use crate::timeline::realtime_nanos;
use bollard::query_parameters::EventsOptions;
use book::ContainerBook;
use bounce_wire::{Origin, Outcome, TargetRef, TimelineRecord};
use config::WatchConfig;
use cursor::Cursor;
use days::WatchRuns;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use seen::Seen;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error("{0}: {1}")]
    Cursor(String, std::io::Error),
    #[error(transparent)]
    Units(#[from] WriteError),
}

/// The container events a restart is made of; the rest (exec_*, every
/// health check's own) is filtered out by the engine.
const ACTIONS: [&str; 9] = [
    "kill",
    "die",
    "oom",
    "stop",
    "start",
    "restart",
    "destroy",
    "create",
    "health_status",
];
/// How often open restarts are checked against the bound and the cursor saved.
const TICK: Duration = Duration::from_secs(1);
/// How often an engine that went away is asked whether it is back (each
/// try bounded by this too).
const RECONNECT_EVERY: Duration = Duration::from_secs(1);
/// When the watcher stops, how long what units and OSDs have open may take
/// to be recorded (their waits end at once; this bounds a bus that hangs).
const DRAIN: Duration = Duration::from_secs(10);
/// How far before the last book the day runs are read for the units'
/// restarts already recorded: the book keeps a restart out while it is
/// open or followed to ready (bounded by `incomplete_after` and the
/// readiness timeout, minutes), so it may predate the book by that much.
const UNITS_LOOKBACK: i64 = 3_600 * 1_000_000_000;

fn events_since(engine: &DockerEngine, since: i64) -> EventStream {
    let filters = HashMap::from([
        ("type".to_string(), vec!["container".to_string()]),
        (
            "event".to_string(),
            ACTIONS.iter().map(|a| a.to_string()).collect(),
        ),
    ]);
    let options = EventsOptions {
        since: Some(replay::engine_stamp(since)),
        until: None,
        filters: Some(filters),
    };
    Box::pin(engine.client().events(Some(options)))
}

type EventStream = Pin<
    Box<
        dyn futures_util::Stream<
                Item = Result<bollard::models::EventMessage, bollard::errors::Error>,
            > + Send,
    >,
>;
/// A restart being followed: its key, the container the tracker holds it
/// under (none for a unit's), and how it ended.
type Following<'a> = Pin<Box<dyn Future<Output = (RestartKey, Option<String>, Followed)> + 'a>>;

/// The systemd managers a watcher follows, each with its units.
pub type Managers = Vec<(SystemdManager, UnitSet)>;

/// What a watcher follows besides every container: systemd managers with
/// their units, and the node's Ceph OSDs (through those units or containers).
#[derive(Default)]
pub struct Watched {
    pub managers: Managers,
    pub osds: Vec<WatchedOsds>,
}

/// The OSD entry and id a followed target is, if any.
fn osd_of<'o>(osds: &'o [WatchedOsds], target: &TargetRef) -> Option<(&'o WatchedOsds, u32)> {
    osds.iter().find_map(|o| Some((o, o.osd_of(target)?)))
}

/// No probes: an OSD is ready at its milestones, which its follower waits for.
const AT_MILESTONES: &[ProbeSpec] = &[];

/// What the watcher's parts share while it runs.
struct Shared<'a> {
    /// Containers that followed units wrap: their restarts are the units'.
    wrapped: &'a Mutex<BTreeSet<String>>,
    /// What the units' last watcher knew, and what this one knows.
    book: &'a Mutex<UnitBook>,
    /// Restarts already in the day's runs when the watcher started.
    recorded: &'a HashSet<RestartKey>,
}

/// Follows every manager's units, sending each restart followed to its end
/// (a unit loaded later that wraps a container adds it to `wrapped`);
/// returns once `stop` fired and every manager handed on what it had open
/// (a manager whose first subscription fails is said and left).
async fn watch_managers(
    sources: &Watched,
    engine: &DockerEngine,
    config: &WatchConfig,
    shared: &Shared<'_>,
    stop: &Abort,
    tx: tokio::sync::mpsc::UnboundedSender<(RestartKey, Followed)>,
) {
    let wrapped = shared.wrapped;
    let each = sources.managers.iter().map(|(m, units)| {
        let tx = tx.clone();
        let bus = m.bus().to_string();
        async move {
            // `name`: a unit's, or its service (the container it wraps).
            let osd = |name: &str| {
                let unit = TargetRef::Systemd {
                    name: name.to_string(),
                    bus: bus.clone(),
                    container: Some(name.to_string()),
                };
                osd_of(&sources.osds, &unit)
            };
            let ready_for = |service: &str| match osd(service) {
                Some(_) => WatchReady {
                    probes: Some(AT_MILESTONES),
                    timeout: config.timeout.0,
                },
                None => {
                    let (probes, timeout) = config.ready_for(service);
                    WatchReady { probes, timeout }
                }
            };
            let opened = |name: &str| {
                if let Some((o, id)) = osd(name) {
                    o.opened(id);
                }
            };
            let appeared = |unit: &WatchedUnit| {
                if let Some(c) = &unit.container {
                    wrapped.lock().expect("wrapped").insert(c.clone());
                }
                // What `run` notes before its request, known for its first restart.
                if let Some((o, id)) = osd(&unit.name) {
                    o.start(Some(id));
                }
            };
            let recorded = |k: &RestartKey| shared.recorded.contains(k);
            let hooks = UnitHooks {
                ready_for: &ready_for,
                opened: &opened,
                appeared: &appeared,
                book: shared.book,
                recorded: &recorded,
            };
            let sent = |k, f| {
                let _ = tx.send((k, f));
            };
            let bound = config.incomplete_after.0;
            if let Err(e) = m
                .watch_units(units.clone(), Some(engine), hooks, bound, stop, sent)
                .await
            {
                eprintln!("watch: {e}; its units are no longer followed");
            }
        }
    });
    futures_util::future::join_all(each).await;
    stop.wait().await
}

/// Watches until `stop` resolves; returns when it did.
pub async fn watch(
    engine: &DockerEngine,
    config: &WatchConfig,
    watched: &Watched,
    mut runs: WatchRuns,
    cursor_dir: &std::path::Path,
    stop: impl Future<Output = ()>,
) -> Result<WatchRuns, WatchError> {
    // Containers that units wrap: their restarts are the units'.
    let wrapped: Mutex<BTreeSet<String>> = Mutex::new(
        watched
            .managers
            .iter()
            .flat_map(|(_, set)| set.units.iter().filter_map(|u| u.container.clone()))
            .collect(),
    );
    let is_wrapped = |name: &str| wrapped.lock().expect("wrapped").contains(name);
    let mut cursor = Cursor::open(cursor_dir);
    let book = Mutex::new(UnitBook::open(cursor_dir));
    // An OSD stop replayed from before now was not seen as it happened:
    // the cluster cannot be asked how it was before it.
    let watching_since = realtime_nanos();
    let since = cursor.saved().unwrap_or(watching_since);
    // A unit's restart found from its stamps may have opened before the
    // last book was saved (the book keeps a restart still followed out).
    let book_since = book.lock().expect("the unit book").previous_at();
    let mut containers = ContainerBook::open(cursor_dir);
    let book_since = match (book_since, containers.previous_at()) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let recorded_from = book_since.map_or(since, |b| b.min(since) - UNITS_LOOKBACK);
    let recorded = Arc::new(runs.recorded_since(recorded_from));
    if cursor.saved().is_some() {
        eprintln!(
            "watch: resuming from {} ({} restart(s) already recorded since)",
            bounce_wire::civil::utc(since),
            recorded.len()
        );
        let held = replay::held_since(engine, since).await;
        let again = Again {
            held: held.as_ref(),
            words: "while no watcher ran",
            open: &|n| is_wrapped(n),
            recorded: &|k| recorded.contains(k),
        };
        containers_again(engine, &mut containers, again, &mut runs).await?;
    } else if let Some(read) = away::read_all(engine, Vec::new()).await {
        // A first start: what the next watcher compares with.
        containers.replace(away::book_of(&read));
    }
    containers.save()?;
    let (unit_tx, mut unit_rx) = tokio::sync::mpsc::unbounded_channel();
    // Fired when the watcher stops: units and OSDs hand on what they have.
    let (stopping, stopped) = abort_pair();
    let shared = Shared {
        wrapped: &wrapped,
        book: &book,
        recorded: &recorded,
    };
    let units = watch_managers(watched, engine, config, &shared, &stopped, unit_tx);
    tokio::pin!(units);
    let seen_before = Arc::clone(&recorded);
    let mut tracker = RestartTracker::new(move |k| seen_before.contains(k));
    let abort = Abort::never();
    let bound = config.incomplete_after.0;
    let mut seen = Seen::new(since);
    let mut following: FuturesUnordered<Following<'_>> = FuturesUnordered::new();
    // Units' OSD restarts continued to Ceph's milestones (no manager
    // replays them: recorded when the watcher stops, as far as they got).
    let mut osd_following: FuturesUnordered<Following<'_>> = FuturesUnordered::new();
    let mut in_flight: BTreeSet<RestartKey> = BTreeSet::new();
    // None while the engine is away.
    let mut events = Some(events_since(engine, since));
    let mut retry = tokio::time::interval(RECONNECT_EVERY);
    let mut tick = tokio::time::interval(TICK);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            item = next_event(&mut events) => match item {
                Some(Ok(ev)) => {
                    if !seen.is_new(&ev) {
                        continue;
                    }
                    let id = ev.actor.as_ref().and_then(|a| a.id.clone()).unwrap_or_default();
                    if ev.action.as_deref() == Some("start") {
                        container_started(&mut containers, &ev, &id);
                    }
                    let was_open = tracker.is_open(&id);
                    let started = tracker.apply(&ev);
                    if !was_open && tracker.is_open(&id) && ev.time_nano.unwrap_or(0) >= watching_since {
                        opened_container(&watched.osds, &ev);
                    }
                    if let Some(started) = started {
                        if is_wrapped(&started.facts.key.name) {
                            tracker.close(&started.facts.key, &started.facts.id);
                            continue;
                        }
                        in_flight.insert(started.facts.key.clone());
                        following.push(follow(engine, config, &watched.osds, started, &abort));
                    }
                }
                end => {
                    // The engine went away (or restarted): once it answers
                    // again (on a fresh client), reopen from the last stamp
                    // taken; it replays what happened meanwhile.
                    let why = match end {
                        Some(Err(e)) => crate::docker::cause(&e),
                        _ => "the stream ended".into(),
                    };
                    eprintln!("watch: the Docker engine's event stream ended ({why}); following it again once it answers");
                    events = None;
                }
            },
            _ = retry.tick(), if events.is_none() => {
                let bound = Instant::now() + RECONNECT_EVERY;
                if engine.wait_answering(bound, &abort).await.is_ok() {
                    // Events from before a restart of the engine are gone:
                    // the containers' state says what they hid.
                    let from = seen.resume_from();
                    let held = replay::held_since(engine, from).await;
                    let again = Again {
                        held: held.as_ref(),
                        words: "while the engine was away",
                        open: &|n| is_wrapped(n) || tracker.holds(n),
                        recorded: &|k| recorded.contains(k),
                    };
                    containers_again(engine, &mut containers, again, &mut runs).await?;
                    events = Some(events_since(engine, from));
                }
            }
            Some((key, id, followed)) = following.next() => {
                if let Some(id) = id {
                    tracker.close(&key, &id);
                    in_flight.remove(&key);
                }
                record(&mut runs, &key, followed)?;
            }
            Some((key, followed)) = unit_rx.recv() => {
                unit_restart(&mut runs, &watched.osds, &mut osd_following, &stopped, key, followed)?;
            }
            Some((key, _, followed)) = osd_following.next() => record(&mut runs, &key, followed)?,
            _ = &mut units => {}
            _ = tick.tick() => {
                let older_than = realtime_nanos() - bound.as_nanos() as i64;
                for u in tracker.sweep(older_than) {
                    let key = u.facts.key.clone();
                    if is_wrapped(&key.name) {
                        continue;
                    }
                    record(&mut runs, &key, unfinished(u, bound))?;
                }
                let oldest = tracker.oldest_open().into_iter().chain(in_flight.first().map(|k| k.opened_at)).min();
                let at = oldest.unwrap_or(seen.newest());
                // The book never lags the cursor: a start seen is not
                // found again from the state.
                containers.save()?;
                cursor.save(at).map_err(|e| WatchError::Cursor(cursor_dir.display().to_string(), e))?;
                // Units' restarts handed on are written before the book
                // says the units moved past them.
                while let Ok((key, followed)) = unit_rx.try_recv() {
                    unit_restart(&mut runs, &watched.osds, &mut osd_following, &stopped, key, followed)?;
                }
                book.lock().expect("the unit book").save()?;
            }
        }
    }
    // A manager replays nothing: units' restarts still open or followed
    // end now and are recorded as far as they got (bounded).
    stopping.fire();
    let deadline = Instant::now() + DRAIN;
    let (mut units_done, mut rx_done) = (false, false);
    while !(units_done && rx_done && osd_following.is_empty()) {
        tokio::select! {
            _ = &mut units, if !units_done => units_done = true,
            got = unit_rx.recv(), if !rx_done => match got {
                Some((key, followed)) => unit_restart(&mut runs, &watched.osds, &mut osd_following, &stopped, key, followed)?,
                None => rx_done = true,
            },
            Some((key, _, followed)) = osd_following.next() => record(&mut runs, &key, followed)?,
            _ = tokio::time::sleep_until(deadline) => {
                eprintln!("watch: units and OSDs did not hand on what they had open within {}s", DRAIN.as_secs());
                break;
            }
        }
    }
    // Containers' restarts still being followed are replayed from the cursor next time.
    let oldest = tracker
        .oldest_open()
        .into_iter()
        .chain(in_flight.first().map(|k| k.opened_at))
        .min();
    containers.save()?;
    cursor
        .save(oldest.unwrap_or(seen.newest()))
        .map_err(|e| WatchError::Cursor(cursor_dir.display().to_string(), e))?;
    book.lock().expect("the unit book").save()?;
    Ok(runs)
}

/// How containers are read again after a gap.
struct Again<'a> {
    /// What the engine held since the cursor (none: not known, nothing compared).
    held: Option<&'a replay::Held>,
    words: &'static str,
    /// A container whose restarts are followed otherwise (wrapped by a
    /// unit, or open from its events).
    open: &'a dyn Fn(&str) -> bool,
    recorded: &'a dyn Fn(&RestartKey) -> bool,
}

/// Every container read again and compared with the book: a restart the
/// engine no longer holds is recorded from its state (`away`), then the
/// book moves on.
async fn containers_again(
    engine: &DockerEngine,
    book: &mut ContainerBook,
    again: Again<'_>,
    runs: &mut WatchRuns,
) -> Result<(), WatchError> {
    let Some(held) = again.held else {
        return Ok(());
    };
    let Some(read) = away::read_all(engine, book.names()).await else {
        return Ok(());
    };
    let gap = away::Gap {
        words: again.words,
        held,
    };
    let last = |n: &str| book.last(n).cloned();
    let (found, keep) = away::found(&read, &last, &gap, again.open, again.recorded);
    eprintln!(
        "watch: {} container(s) read {}: {} restarted without their events held by the engine",
        read.len(),
        again.words,
        found.len()
    );
    for (key, followed) in found {
        record(runs, &key, followed)?;
    }
    book.replace(keep);
    Ok(())
}

/// A `start` event: the container's book entry moves on to it.
fn container_started(book: &mut ContainerBook, ev: &bollard::models::EventMessage, id: &str) {
    let attrs = ev.actor.as_ref().and_then(|a| a.attributes.as_ref());
    let attr = |k: &str| attrs.and_then(|m| m.get(k)).map_or("", |v| v.as_str());
    if let Some(at) = ev.time_nano {
        book.started(attr("name"), id, attr("image"), at);
    }
}

/// The next event, or nothing while the engine is away.
async fn next_event(
    events: &mut Option<EventStream>,
) -> Option<Result<bollard::models::EventMessage, bollard::errors::Error>> {
    match events {
        Some(e) => e.next().await,
        None => std::future::pending().await,
    }
}

/// A container restart just opened: if the container is an OSD, its
/// follower notes the cluster as it is before the OSD comes back.
fn opened_container(osds: &[WatchedOsds], ev: &bollard::models::EventMessage) {
    let name = ev
        .actor
        .as_ref()
        .and_then(|a| a.attributes.as_ref())
        .and_then(|m| m.get("name"));
    if let Some(name) = name {
        for o in osds {
            if let Some(id) = o.container_osd(name) {
                o.opened(id);
            }
        }
    }
}

fn follow<'a>(
    engine: &'a DockerEngine,
    config: &'a WatchConfig,
    osds: &'a [WatchedOsds],
    started: Started,
    abort: &'a Abort,
) -> Following<'a> {
    Box::pin(async move {
        let key = started.facts.key.clone();
        let id = started.facts.id.clone();
        let osd = osds
            .iter()
            .find_map(|o| Some((o, o.container_osd(&key.name)?)));
        let ready = match osd {
            Some(_) => WatchReady {
                probes: Some(AT_MILESTONES),
                timeout: config.timeout.0,
            },
            None => {
                let (probes, timeout) = config.ready_for(&key.name);
                WatchReady { probes, timeout }
            }
        };
        let followed = engine.follow_observed(started, ready, abort).await;
        let followed = match osd {
            Some((o, osd)) => o.follow(osd, followed, abort).await,
            None => followed,
        };
        (key, Some(id), followed)
    })
}

/// A unit's restart followed to its end: an OSD's is continued to Ceph's
/// milestones (recorded once, as the OSD's), any other recorded now.
fn unit_restart<'a>(
    runs: &mut WatchRuns,
    osds: &'a [WatchedOsds],
    osd_following: &mut FuturesUnordered<Following<'a>>,
    stopped: &'a Abort,
    key: RestartKey,
    followed: Followed,
) -> Result<(), WatchError> {
    match osd_of(osds, &followed.timeline.target) {
        Some((o, osd)) => osd_following.push(Box::pin(async move {
            (key, None, o.follow(osd, followed, stopped).await)
        })),
        None => record(runs, &key, followed)?,
    }
    Ok(())
}

/// Writes one observed restart into its day's run and says so.
fn record(runs: &mut WatchRuns, key: &RestartKey, mut f: Followed) -> Result<(), WatchError> {
    if f.ending.outcome == Outcome::Aborted {
        // Only the watcher's own stop aborts a wait: what was seen is kept.
        let why = f.ending.error.take().unwrap_or_default();
        f.ending = crate::timeline::Ending::new(
            Outcome::Incomplete,
            format!("the watcher stopped ({why})"),
        );
    }
    let labels = runs.labels(key.opened_at)?;
    let mut rec: TimelineRecord = f.timeline.finish(&labels, f.ending);
    rec.origin = Origin::Watch;
    rec.cause = Some(f.cause);
    rec.recreated = f.recreated;
    eprintln!("{}", describe(&rec));
    // The first engine stamp names the batch: resent after a restart of the
    // watcher, the collector stores it once.
    runs.record(&rec, key.opened_at.max(1) as u64)?;
    Ok(())
}

/// One line per observed restart: `nova_api: restart, ok (stop 1.20s, start 0.31s, ...)`.
fn describe(rec: &TimelineRecord) -> String {
    let phases: Vec<String> = rec
        .phases
        .iter()
        .map(|(p, s)| format!("{p} {s:.3}s"))
        .collect();
    format!(
        "{}: {}, {}{} ({})",
        rec.service,
        rec.cause.map(|c| c.as_str()).unwrap_or("?"),
        rec.outcome,
        rec.error
            .as_deref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default(),
        phases.join(", ")
    )
}
