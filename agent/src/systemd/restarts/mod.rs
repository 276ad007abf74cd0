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
//! This file: the loop over the signals, the bus coming and going, the
//! bound on open restarts and the watcher's stop. `fold.rs` folds one
//! signal in; `record.rs` writes a restart's timeline; `resync.rs` (with
//! `away.rs`) reads what the units' own stamps say happened while the bus
//! was away; `units.rs` which units are followed (also those loaded later).

mod away;
mod fold;
mod record;
mod resync;
mod units;

pub use units::{UnitSet, WatchedUnit};

use crate::abort::Abort;
use crate::docker::DockerEngine;
use crate::docker::follow::{Followed, WatchReady};
use crate::docker::restarts::RestartKey;
use crate::systemd::SystemdManager;
use crate::systemd::bus::bus_error;
use crate::systemd::observe::ClockPair;
use crate::target::PlanError;
use fold::{Folded, UnitState, fold};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use record::record_incomplete;
use resync::Found;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::time::Instant;

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

type Following<'a> = Pin<Box<dyn Future<Output = (RestartKey, Followed)> + 'a>>;

/// How often restarts not active again are checked against the bound.
const TICK: Duration = Duration::from_secs(1);
/// How often to try a manager whose bus went away (each try bounded by it).
const RECONNECT_EVERY: Duration = Duration::from_secs(1);

impl SystemdManager {
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
                            self.add_units(&mut states, vec![(name, path)], hooks.appeared).await;
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
                            self.add_units(&mut states, found, hooks.appeared).await;
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
}
