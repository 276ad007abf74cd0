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
//! (`days`), resuming after its own restart from a cursor (`cursor`: the
//! engine replays its events, `seen` takes each once; a manager does not
//! replay, so a unit restart while the watcher is down is not seen). It never restarts, stops or execs
//! anything; only exec probes named in its configuration (`config`) run in
//! a container.
//!
//! Docker API it uses (GET only, unless exec probes are configured):
//! `/_ping`, `/version`, `/events`, `/containers/{id}/json`; exec probes add
//! `POST /containers/{id}/exec`, `POST /exec/{id}/start`, `GET /exec/{id}/json`.

pub mod config;
pub mod cursor;
pub mod days;
pub mod seen;

use crate::abort::Abort;
use crate::docker::DockerEngine;
use crate::docker::follow::{Followed, WatchReady, unfinished};
use crate::docker::restarts::{RestartKey, RestartTracker, Started};
use crate::output::OutputError;
use crate::systemd::SystemdManager;
use crate::systemd::restarts::WatchedUnit;
use crate::timeline::realtime_nanos;
use bollard::query_parameters::EventsOptions;
use bounce_wire::{Origin, TimelineRecord};
use config::WatchConfig;
use cursor::Cursor;
use days::WatchRuns;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use seen::Seen;
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error("{0}: {1}")]
    Cursor(String, std::io::Error),
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
/// The longest wait before reconnecting to an engine that went away.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

fn events_since(engine: &DockerEngine, since: i64) -> EventStream {
    let filters = HashMap::from([
        ("type".to_string(), vec!["container".to_string()]),
        (
            "event".to_string(),
            ACTIONS.iter().map(|a| a.to_string()).collect(),
        ),
    ]);
    let options = EventsOptions {
        since: Some(format!(
            "{}.{:09}",
            since.div_euclid(1_000_000_000),
            since.rem_euclid(1_000_000_000)
        )),
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
type Following<'a> = Pin<Box<dyn Future<Output = (RestartKey, String, Followed)> + 'a>>;

/// The systemd managers a watcher follows, each with its units.
pub type Managers = Vec<(SystemdManager, Vec<WatchedUnit>)>;

/// Follows every manager's units, sending each restart followed to its end;
/// never returns (a manager whose signals end is said and left).
async fn watch_managers(
    managers: &Managers,
    engine: &DockerEngine,
    config: &WatchConfig,
    tx: tokio::sync::mpsc::UnboundedSender<(RestartKey, Followed)>,
) {
    let ready_for = |service: &str| {
        let (probes, timeout) = config.ready_for(service);
        WatchReady { probes, timeout }
    };
    let each = managers.iter().map(|(m, units)| {
        let tx = tx.clone();
        async move {
            let sent = |k, f| {
                let _ = tx.send((k, f));
            };
            let bound = config.incomplete_after.0;
            if let Err(e) = m
                .watch_units(units.clone(), Some(engine), &ready_for, bound, sent)
                .await
            {
                eprintln!("watch: {e}; its units are no longer followed");
            }
        }
    });
    futures_util::future::join_all(each).await;
    std::future::pending().await
}

/// Watches until `stop` resolves; returns when it did.
pub async fn watch(
    engine: &DockerEngine,
    config: &WatchConfig,
    managers: &Managers,
    mut runs: WatchRuns,
    cursor_dir: &std::path::Path,
    stop: impl Future<Output = ()>,
) -> Result<WatchRuns, WatchError> {
    // Containers that units wrap: their restarts are the units'.
    let wrapped: BTreeSet<String> = managers
        .iter()
        .flat_map(|(_, units)| units.iter().filter_map(|u| u.container.clone()))
        .collect();
    let (unit_tx, mut unit_rx) = tokio::sync::mpsc::unbounded_channel();
    let units = watch_managers(managers, engine, config, unit_tx);
    tokio::pin!(units);
    let mut cursor = Cursor::open(cursor_dir);
    let since = cursor.saved().unwrap_or_else(realtime_nanos);
    let recorded = runs.recorded_since(since);
    if cursor.saved().is_some() {
        eprintln!(
            "watch: resuming from {} ({} restart(s) already recorded since)",
            bounce_wire::civil::utc(since),
            recorded.len()
        );
    }
    let mut tracker = RestartTracker::new(move |k| recorded.contains(k));
    let abort = Abort::never();
    let bound = config.incomplete_after.0;
    let mut seen = Seen::new(since);
    let mut following: FuturesUnordered<Following<'_>> = FuturesUnordered::new();
    let mut in_flight: BTreeSet<RestartKey> = BTreeSet::new();
    let mut events = events_since(engine, since);
    let mut backoff = Duration::from_millis(100);
    let mut tick = tokio::time::interval(TICK);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            item = events.next() => match item {
                Some(Ok(ev)) => {
                    backoff = Duration::from_millis(100);
                    if !seen.is_new(&ev) {
                        continue;
                    }
                    if let Some(started) = tracker.apply(&ev) {
                        if wrapped.contains(&started.facts.key.name) {
                            tracker.close(&started.facts.key, &started.facts.id);
                            continue;
                        }
                        in_flight.insert(started.facts.key.clone());
                        following.push(follow(engine, config, started, &abort));
                    }
                }
                end => {
                    // The engine went away (or restarted): reopen from the
                    // last stamp taken; it replays what happened meanwhile.
                    if let Some(Err(e)) = end {
                        eprintln!("watch: event stream ended: {e}; reconnecting");
                    }
                    tokio::select! {
                        _ = &mut stop => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    events = events_since(engine, seen.resume_from());
                }
            },
            Some((key, id, followed)) = following.next() => {
                tracker.close(&key, &id);
                record(&mut runs, &key, followed)?;
                in_flight.remove(&key);
            }
            Some((key, followed)) = unit_rx.recv() => record(&mut runs, &key, followed)?,
            _ = &mut units => {}
            _ = tick.tick() => {
                let older_than = realtime_nanos() - bound.as_nanos() as i64;
                for u in tracker.sweep(older_than) {
                    let key = u.facts.key.clone();
                    if wrapped.contains(&key.name) {
                        continue;
                    }
                    record(&mut runs, &key, unfinished(u, bound))?;
                }
                let oldest = tracker.oldest_open().into_iter().chain(in_flight.first().map(|k| k.opened_at)).min();
                let at = oldest.unwrap_or(seen.resume_from());
                cursor.save(at).map_err(|e| WatchError::Cursor(cursor_dir.display().to_string(), e))?;
            }
        }
    }
    // Restarts still being followed are replayed from the cursor next time.
    let oldest = tracker
        .oldest_open()
        .into_iter()
        .chain(in_flight.first().map(|k| k.opened_at))
        .min();
    cursor
        .save(oldest.unwrap_or(seen.resume_from()))
        .map_err(|e| WatchError::Cursor(cursor_dir.display().to_string(), e))?;
    Ok(runs)
}

fn follow<'a>(
    engine: &'a DockerEngine,
    config: &'a WatchConfig,
    started: Started,
    abort: &'a Abort,
) -> Following<'a> {
    Box::pin(async move {
        let key = started.facts.key.clone();
        let id = started.facts.id.clone();
        let (probes, timeout) = config.ready_for(&key.name);
        let ready = WatchReady { probes, timeout };
        let followed = engine.follow_observed(started, ready, abort).await;
        (key, id, followed)
    })
}

/// Writes one observed restart into its day's run and says so.
fn record(runs: &mut WatchRuns, key: &RestartKey, f: Followed) -> Result<(), WatchError> {
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
