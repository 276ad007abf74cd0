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
//! At start, and after its bus was away, each unit's own stamps are
//! compared with what was last known (`systemd/away.rs`; at start, what
//! the last watcher knew: `book.rs`): a restart wholly inside the gap is
//! recorded once, from its stamps, saying what could not be observed; a
//! unit down then is opened as a restart.
//!
//! This file: the loop over the signals, the bus coming and going, the
//! bound on open restarts, what the book is told, and the watcher's stop.
//! `fold.rs` folds one signal in; `record.rs` writes a restart's timeline;
//! `resync.rs` reads units afresh (after a gap, and those loaded later);
//! `units.rs` which units are followed; `book.rs` what is kept for the
//! next watcher.

mod book;
mod fold;
mod record;
mod resync;
mod units;

pub use book::{UNITS_FILE, UnitBook};
pub use units::{UnitSet, WatchedUnit};

use crate::abort::Abort;
use crate::docker::DockerEngine;
use crate::docker::follow::{Followed, WatchReady};
use crate::docker::restarts::RestartKey;
use crate::systemd::SystemdManager;
use crate::systemd::away::Gap;
use crate::systemd::bus::bus_error;
use crate::systemd::observe::ClockPair;
use crate::target::PlanError;
use fold::{Folded, UnitState, fold};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use record::record_incomplete;
use resync::{Found, Reading};
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;
use units::MAX_UNITS;

/// What a watcher's units observer shares with the rest of the watcher
/// besides the records it hands on.
pub struct UnitHooks<'r, 'c> {
    /// How to tell a restarted unit ready, by its service name.
    pub ready_for: &'r dyn Fn(&str) -> WatchReady<'c>,
    /// A unit (by name) whose stop was just seen.
    pub opened: &'r dyn Fn(&str),
    /// A unit loaded after the watcher started, followed from now on.
    pub appeared: &'r dyn Fn(&WatchedUnit),
    /// What earlier watchers knew of the units (compared at start), and
    /// where this one keeps what it knows (saved by the watcher).
    pub book: &'r Mutex<UnitBook>,
    /// Whether a restart is in the day's run already.
    pub recorded: &'r dyn Fn(&RestartKey) -> bool,
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

/// A restart followed to ready: its unit (by index), key and record.
type Following<'a> = Pin<Box<dyn Future<Output = (usize, (RestartKey, Followed))> + 'a>>;

/// How often restarts not active again are checked against the bound
/// (and what is known of the units handed to the book).
const TICK: Duration = Duration::from_secs(1);
/// How often to try a manager whose bus went away (each try bounded by it).
const RECONNECT_EVERY: Duration = Duration::from_secs(1);

impl SystemdManager {
    /// Follows `set`'s units until `stop` fires; `opened` is told each unit
    /// whose stop was seen (by name), and each restart, once followed to
    /// its end (or the bound), is handed to `record`. At start each unit's
    /// stamps are compared with what the last watcher knew (the book): a
    /// restart while none ran is recorded once, from the stamps. When the
    /// manager's bus goes away it connects again (a new connection,
    /// `Subscribe`) and goes on, comparing the stamps again. When `stop`
    /// fires, what is open or followed is handed on as it is (the followed
    /// ones' waits end at once), the book told, then it returns; else it
    /// returns only if the first subscription fails.
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
        let bus = self.bus.to_string();
        let mut states: Vec<UnitState> = set.units.into_iter().map(UnitState::new).collect();
        if states.len() > MAX_UNITS {
            eprintln!(
                "watch: {} units on the {bus} bus match; the first {MAX_UNITS} are followed",
                states.len()
            );
            states.truncate(MAX_UNITS);
        }
        let mut compared = 0;
        {
            let book = hooks.book.lock().expect("the unit book");
            for s in states.iter_mut() {
                if let Some(last) = book.last(&bus, &s.unit.name) {
                    s.known = last;
                    compared += 1;
                }
            }
        }
        let reading = |gap| Reading {
            gap: Some(gap),
            engine,
            recorded: hooks.recorded,
        };
        // What the units did while no watcher ran, from their stamps.
        let mut found = self.resync(&mut states, &reading(Gap::WatcherDown)).await;
        let back = found
            .iter()
            .filter(|(_, f)| matches!(f, Found::Back(_)))
            .count();
        eprintln!(
            "watch: {} unit(s) on the {bus} bus read, {compared} known to the last watcher: {back} restarted and {} down since it stopped",
            states.len(),
            found.len() - back
        );
        let mut following: FuturesUnordered<Following<'_>> = FuturesUnordered::new();
        let mut tick = tokio::time::interval(TICK);
        let mut retry = tokio::time::interval(RECONNECT_EVERY);
        loop {
            for (i, f) in found.drain(..) {
                let s = &mut states[i];
                match f {
                    Found::Opened => (hooks.opened)(&s.unit.name),
                    Found::Back(back) => {
                        let ready = (hooks.ready_for)(s.unit.service());
                        let f = self.follow(s.unit.clone(), *back, None, ready, engine, stop);
                        s.following = true;
                        following.push(Box::pin(async move { (i, f.await) }));
                    }
                }
            }
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
                            let s = &mut states[i];
                            let ready = (hooks.ready_for)(s.unit.service());
                            let f = self.follow(s.unit.clone(), *back, s.job, ready, engine, stop);
                            s.following = true;
                            following.push(Box::pin(async move { (i, f.await) }));
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
                        found = self.resync(&mut states, &reading(Gap::BusAway)).await;
                        // Units loaded meanwhile (their UnitNew went to the old bus).
                        if let Ok(more) = self.watched_units(&set.patterns).await {
                            let more = more.into_iter().map(|u| (u.name, u.path)).collect();
                            self.add_units(&mut states, more, hooks.appeared).await;
                        }
                        eprintln!("watch: the systemd manager on the {bus} bus answers again; following its units");
                    }
                }
                Some((i, (key, followed))) = following.next() => {
                    states[i].following = false;
                    record(key, followed);
                }
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
                    settle(hooks.book, &bus, &states);
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
        while let Some((i, (key, followed))) = following.next().await {
            states[i].following = false;
            record(key, followed);
        }
        settle(hooks.book, &bus, &states);
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

/// Tells the book what is known of each unit with no restart open or
/// followed (every one of its restarts handed on): the stamps the next
/// watcher compares with. A unit whose restart is still open or followed
/// keeps what was known before it.
fn settle(book: &Mutex<UnitBook>, bus: &str, states: &[UnitState]) {
    let mut book = book.lock().expect("the unit book");
    for s in states.iter().filter(|s| s.open.is_none() && !s.following) {
        book.set(bus, &s.unit.name, &s.known);
    }
}
