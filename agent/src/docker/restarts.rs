//! The observer of every container at once (what `watch` follows): the
//! engine's event stream for all containers, cut into restarts, each named
//! by its cause. A restart's events are folded by the same
//! [`Observed::apply`] as `run`'s observer of one container, so a restart
//! timed both ways gets the same engine-stamped boundaries.
//!
//! A restart opens at a `kill` (someone asked: `docker restart`, `stop`,
//! `rm -f`) or at a `die` with no `kill` before it (a crash), and is handed
//! on at its `start` ([`Started`]). A `destroy` while stopped keeps it by
//! name: a `create` under that name makes it a recreate. One that is not
//! started again within a bound is given back as incomplete
//! ([`RestartTracker::sweep`]), so memory stays bounded. This file only
//! folds; following a started restart to ready is the caller's.

use super::observe::Observed;
use bollard::models::EventMessage;
use bounce_wire::{Cause, Recreated};
use std::collections::HashMap;
use tokio::sync::watch;

/// Names one observed restart: the container's name and the engine's
/// stamp of the event that opened it. The same events give the same key,
/// however often they are replayed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RestartKey {
    pub name: String,
    pub opened_at: i64,
}

/// What the events said about one restart, besides the fold.
#[derive(Debug, Clone)]
pub struct RestartFacts {
    pub key: RestartKey,
    /// The container now (the new one after a recreate).
    pub id: String,
    /// The image when the restart opened.
    pub image: String,
    /// The engine's `kill` event: someone asked for the stop. The engine
    /// logs it once the signal is delivered, so the exit can precede it
    /// (`follow.rs` then places `requested` at the exit).
    pub requested: Option<i64>,
    /// The `start` event of the instance that stopped, when this watcher
    /// saw it: no exit of this restart precedes it.
    pub instance_started: Option<i64>,
    /// A `stop` event, or a `kill` before the exit: not a crash.
    pub asked: bool,
    /// A recreate: the old container's removal (`destroy`).
    pub removed: Option<i64>,
    /// A recreate: the new container's creation (`create`).
    pub created: Option<i64>,
    pub recreated: Option<Recreated>,
}

impl RestartFacts {
    /// The cause, from the facts and the fold (`docker restart` is told
    /// from a stop then a start only by the `restart` event the engine logs
    /// right after the start).
    pub fn cause(&self, seen: &Observed) -> Cause {
        if self.created.is_some() {
            Cause::Recreate
        } else if !self.asked {
            Cause::Crash
        } else if seen.events.iter().any(|e| e.action == "restart") {
            Cause::Restart
        } else {
            Cause::StopStart
        }
    }
}

/// A restart that reached its start: follow it with `seen`, which the
/// tracker keeps feeding until [`RestartTracker::close`].
pub struct Started {
    pub facts: RestartFacts,
    pub seen: watch::Receiver<Observed>,
}

/// A restart given back unfinished: its facts and what was folded.
pub struct Unfinished {
    pub facts: RestartFacts,
    pub seen: Observed,
}

struct Pending {
    facts: RestartFacts,
    seen: watch::Sender<Observed>,
    started: bool,
    /// Already recorded before (events replayed after the watcher's own
    /// restart): folded so its events are not taken for another, never handed on.
    replayed: bool,
}

impl Pending {
    fn feed(&self, ev: &EventMessage) {
        let since = self.facts.key.opened_at;
        self.seen.send_modify(|o| o.apply(ev, since));
    }
}

/// Open restarts by container id, and stopped-then-removed ones by name.
pub struct RestartTracker {
    by_id: HashMap<String, Pending>,
    removed: HashMap<String, Pending>,
    /// Each container's last `start` seen (forgotten at its `destroy`):
    /// one stamp per container, whatever the number of restarts.
    last_start: HashMap<String, i64>,
    /// A container's last signal not yet followed by its `die` (stamp and
    /// event): many signals stop nothing (a reload, `docker kill -s HUP`,
    /// which the process handles or ignores), so a restart opens at the
    /// `die`, with the kill that asked for it. Forgotten at the die, at
    /// `destroy`, or by `sweep`.
    kills: HashMap<String, (i64, EventMessage)>,
    /// Keys already recorded (whose events may be replayed).
    recorded: Box<dyn Fn(&RestartKey) -> bool + Send>,
}

fn attr(ev: &EventMessage, key: &str) -> Option<String> {
    ev.actor
        .as_ref()
        .and_then(|a| a.attributes.as_ref())
        .and_then(|m| m.get(key).cloned())
}

impl RestartTracker {
    /// `recorded` says whether a restart was already recorded (the watcher's
    /// own restart replays events from its cursor on).
    pub fn new(recorded: impl Fn(&RestartKey) -> bool + Send + 'static) -> RestartTracker {
        RestartTracker {
            by_id: HashMap::new(),
            removed: HashMap::new(),
            last_start: HashMap::new(),
            kills: HashMap::new(),
            recorded: Box::new(recorded),
        }
    }

    /// Whether container `id` has a restart open that has not started yet.
    pub fn is_open(&self, id: &str) -> bool {
        self.by_id.get(id).is_some_and(|p| !p.started)
    }

    /// Whether a restart of container `name` is open or still fed (its
    /// events, not its state, say what happened).
    pub fn holds(&self, name: &str) -> bool {
        self.removed.contains_key(name) || self.by_id.values().any(|p| p.facts.key.name == name)
    }

    /// Folds one container event in; a restart that reached its start comes back.
    pub fn apply(&mut self, ev: &EventMessage) -> Option<Started> {
        let (Some(at), Some(id)) = (ev.time_nano, ev.actor.as_ref().and_then(|a| a.id.clone()))
        else {
            return None;
        };
        let action = ev.action.as_deref().unwrap_or("");
        let name = attr(ev, "name").unwrap_or_else(|| id.clone());
        // A signal is kept until the container dies of it; one logged after
        // the exit it caused (below) still belongs to that restart.
        if action == "kill" && self.by_id.get(&id).is_none_or(|p| p.started) {
            self.kills.insert(id, (at, ev.clone()));
            return None;
        }
        // A die after the start begins the next restart; the previous one
        // gets the exit (as `run`'s observer would) and is let go.
        if action == "die"
            && let Some(p) = self.by_id.get(&id).filter(|p| p.started)
        {
            p.feed(ev);
            self.by_id.remove(&id);
        }
        match action {
            "die" if !self.by_id.contains_key(&id) => {
                let kill = self.kills.remove(&id);
                let asked = kill.is_some();
                let key = RestartKey {
                    name,
                    opened_at: kill.as_ref().map_or(at, |(k, _)| *k),
                };
                let requested = kill.as_ref().map(|(k, _)| *k);
                let pending = Pending {
                    replayed: (self.recorded)(&key),
                    facts: RestartFacts {
                        key,
                        id: id.clone(),
                        image: attr(ev, "image").unwrap_or_default(),
                        requested,
                        instance_started: self.last_start.get(&id).copied(),
                        asked,
                        removed: None,
                        created: None,
                        recreated: None,
                    },
                    seen: watch::channel(Observed::default()).0,
                    started: false,
                };
                if let Some((_, k)) = &kill {
                    pending.feed(k);
                }
                pending.feed(ev);
                self.by_id.insert(id, pending);
                None
            }
            "destroy" => {
                self.last_start.remove(&id);
                self.kills.remove(&id);
                let mut p = self.by_id.remove(&id)?;
                if p.started {
                    return None;
                }
                p.feed(ev);
                p.facts.removed = Some(at);
                self.removed.insert(name, p);
                None
            }
            "create" => {
                let mut p = self.removed.remove(&name)?;
                p.feed(ev);
                p.facts.created = Some(at);
                let new_image = attr(ev, "image").unwrap_or_default();
                p.facts.recreated = Some(Recreated {
                    old_id: std::mem::replace(&mut p.facts.id, id.clone()),
                    old_image: p.facts.image.clone(),
                    new_image,
                });
                self.by_id.insert(id, p);
                None
            }
            _ => {
                if action == "start" {
                    self.last_start.insert(id.clone(), at);
                }
                let p = self.by_id.get_mut(&id)?;
                // A `kill` logged after the exit it caused (the engine logs
                // it once the signal is delivered): still the request.
                if action == "stop" || (action == "kill" && !p.started) {
                    p.facts.asked = true;
                }
                if action == "kill" && !p.started && p.facts.requested.is_none() {
                    p.facts.requested = Some(at);
                }
                p.feed(ev);
                if p.started || p.seen.borrow().started.is_none() {
                    return None;
                }
                p.started = true;
                if p.replayed {
                    self.by_id.remove(&id);
                    return None;
                }
                Some(Started {
                    facts: p.facts.clone(),
                    seen: p.seen.subscribe(),
                })
            }
        }
    }

    /// The caller is done with a started restart: stop feeding it.
    pub fn close(&mut self, key: &RestartKey, id: &str) {
        if self.by_id.get(id).is_some_and(|p| &p.facts.key == key) {
            self.by_id.remove(id);
        }
    }

    /// Restarts not started again since before `older_than` (unix nanos),
    /// given back and forgotten: the bound on what is kept.
    pub fn sweep(&mut self, older_than: i64) -> Vec<Unfinished> {
        let stale = |p: &Pending| !p.started && p.facts.key.opened_at < older_than;
        // A signal the container lived through was no restart.
        self.kills.retain(|_, (at, _)| *at >= older_than);
        let mut out = Vec::new();
        for map in [&mut self.by_id, &mut self.removed] {
            let keys: Vec<String> = map
                .iter()
                .filter(|(_, p)| stale(p))
                .map(|(k, _)| k.clone())
                .collect();
            for k in keys {
                let p = map.remove(&k).expect("listed above");
                if !p.replayed {
                    let seen = p.seen.borrow().clone();
                    out.push(Unfinished {
                        facts: p.facts,
                        seen,
                    });
                }
            }
        }
        out
    }

    /// The engine stamp of the oldest restart still open (the watcher
    /// resumes from there after its own restart).
    pub fn oldest_open(&self) -> Option<i64> {
        self.by_id
            .values()
            .chain(self.removed.values())
            .map(|p| p.facts.key.opened_at)
            .chain(self.kills.values().map(|(at, _)| *at))
            .min()
    }

    /// How many restarts are open (for the bound, and to say so).
    pub fn open(&self) -> usize {
        self.by_id.len() + self.removed.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::EventActor;

    fn ev(id: &str, name: &str, action: &str, at: i64, attrs: &[(&str, &str)]) -> EventMessage {
        let mut map: HashMap<String, String> = attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        map.insert("name".into(), name.into());
        map.entry("image".into()).or_insert_with(|| "img:1".into());
        EventMessage {
            action: Some(action.into()),
            time_nano: Some(at),
            actor: Some(EventActor {
                id: Some(id.into()),
                attributes: Some(map),
            }),
            ..Default::default()
        }
    }

    /// Folds `events` and returns every restart that started, with its cause
    /// once the events after it were folded too.
    fn fold(t: &mut RestartTracker, events: &[EventMessage]) -> Vec<(RestartFacts, Observed)> {
        let mut started = Vec::new();
        for e in events {
            if let Some(s) = t.apply(e) {
                started.push(s);
            }
        }
        started
            .into_iter()
            .map(|s| (s.facts, s.seen.borrow().clone()))
            .collect()
    }

    fn tracker() -> RestartTracker {
        RestartTracker::new(|_| false)
    }

    #[test]
    fn each_kind_of_restart_is_named_by_its_cause() {
        let mut t = tracker();
        let got = fold(
            &mut t,
            &[
                // docker restart of a
                ev("a", "a", "kill", 10, &[("signal", "15")]),
                ev("a", "a", "die", 20, &[("exitCode", "0")]),
                ev("a", "a", "stop", 21, &[]),
                ev("a", "a", "start", 30, &[]),
                ev("a", "a", "restart", 31, &[]),
                // docker stop, later docker start of b
                ev("b", "b", "kill", 40, &[("signal", "15")]),
                ev("b", "b", "die", 50, &[("exitCode", "0")]),
                ev("b", "b", "stop", 51, &[]),
                ev("b", "b", "start", 90, &[]),
                // c crashes, its restart policy brings it back
                ev("c", "c", "oom", 99, &[]),
                ev("c", "c", "die", 100, &[("exitCode", "137")]),
                ev("c", "c", "start", 130, &[]),
                // d removed and created anew with another image
                ev("d", "d", "kill", 200, &[("signal", "9")]),
                ev("d", "d", "die", 210, &[("exitCode", "137")]),
                ev("d", "d", "destroy", 220, &[]),
                ev("d2", "d", "create", 230, &[("image", "img:2")]),
                ev("d2", "d", "start", 240, &[]),
                // a container that is new is no restart
                ev("e", "e", "create", 300, &[]),
                ev("e", "e", "start", 310, &[]),
            ],
        );
        let causes: Vec<(&str, Cause)> = got
            .iter()
            .map(|(f, o)| (f.key.name.as_str(), f.cause(o)))
            .collect();
        assert_eq!(
            causes,
            [
                // the `restart` event came after the hand-over, and was still fed
                ("a", Cause::Restart),
                ("b", Cause::StopStart),
                ("c", Cause::Crash),
                ("d", Cause::Recreate),
            ]
        );
        let (d, o) = &got[3];
        assert_eq!(
            (d.requested, d.removed, d.created),
            (Some(200), Some(220), Some(230))
        );
        assert_eq!((o.exited, o.started), (Some(210), Some(240)));
        assert_eq!(d.id, "d2");
        let r = d.recreated.as_ref().unwrap();
        assert_eq!(
            (
                r.old_id.as_str(),
                r.old_image.as_str(),
                r.new_image.as_str()
            ),
            ("d", "img:1", "img:2")
        );
        let (c, o) = &got[2];
        assert_eq!(
            (c.requested, o.exited, o.exit_code, o.oom),
            (None, Some(100), Some(137), false)
        );
        assert_eq!(t.open(), 4, "started restarts are fed until closed");
        for (f, _) in &got {
            t.close(&f.key, &f.id);
        }
        assert_eq!((t.open(), t.oldest_open()), (0, None));
    }

    #[test]
    fn a_stop_never_followed_by_a_start_is_given_back_after_the_bound() {
        let mut t = tracker();
        for e in [
            ev("a", "a", "kill", 10, &[]),
            ev("a", "a", "die", 20, &[("exitCode", "0")]),
            ev("a", "a", "stop", 21, &[]),
            ev("b", "b", "kill", 500, &[]),
        ] {
            assert!(t.apply(&e).is_none());
        }
        assert_eq!(t.oldest_open(), Some(10));
        assert!(t.sweep(10).is_empty());
        let gone = t.sweep(100);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].facts.key.name, "a");
        assert_eq!(gone[0].seen.exited, Some(20));
        // b's signal opened nothing, but the cursor stays before it.
        assert_eq!((t.open(), t.oldest_open()), (0, Some(500)));
    }

    #[test]
    fn a_signal_the_container_lives_through_is_no_restart() {
        let mut t = tracker();
        // A reload: a HUP the process handles, while its last restart is
        // still followed; then a real stop, whose kill asked for the die.
        for e in [
            ev("a", "a", "kill", 10, &[("signal", "15")]),
            ev("a", "a", "die", 20, &[("exitCode", "0")]),
        ] {
            assert!(t.apply(&e).is_none());
        }
        assert!(t.apply(&ev("a", "a", "start", 30, &[])).is_some());
        assert!(
            t.apply(&ev("a", "a", "kill", 40, &[("signal", "1")]))
                .is_none()
        );
        assert_eq!(t.open(), 1, "the restart still followed is not cut");
        assert!(t.sweep(100).is_empty(), "the HUP is given back as nothing");
        assert_eq!(t.oldest_open(), Some(10));
        t.close(
            &RestartKey {
                name: "a".into(),
                opened_at: 10,
            },
            "a",
        );
        for e in [
            ev("a", "a", "kill", 200, &[("signal", "15")]),
            ev("a", "a", "die", 210, &[("exitCode", "0")]),
        ] {
            assert!(t.apply(&e).is_none());
        }
        let gone = t.sweep(1000);
        assert_eq!(gone.len(), 1);
        let f = &gone[0].facts;
        assert_eq!(
            (f.key.opened_at, f.requested, f.asked),
            (200, Some(200), true)
        );
    }

    #[test]
    fn replayed_restarts_are_folded_but_not_handed_on_again() {
        let mut t = RestartTracker::new(|k| k.opened_at == 10);
        let events = [
            ev("a", "a", "kill", 10, &[]),
            ev("a", "a", "die", 20, &[]),
            ev("a", "a", "start", 30, &[]),
            ev("a", "a", "restart", 31, &[]),
            ev("a", "a", "kill", 40, &[]),
            ev("a", "a", "die", 50, &[]),
            ev("a", "a", "start", 60, &[]),
        ];
        let got = fold(&mut t, &events);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0.key.opened_at, 40);
    }

    #[test]
    fn a_crash_while_starting_ends_that_restart_and_opens_the_next() {
        let mut t = tracker();
        let first = fold(
            &mut t,
            &[
                ev("a", "a", "die", 10, &[("exitCode", "1")]),
                ev("a", "a", "start", 20, &[]),
            ],
        );
        assert_eq!(first.len(), 1);
        let second = fold(
            &mut t,
            &[
                ev("a", "a", "die", 30, &[("exitCode", "1")]),
                ev("a", "a", "start", 40, &[]),
            ],
        );
        assert_eq!(second[0].0.key.opened_at, 30);
        assert_eq!(second[0].0.cause(&second[0].1), Cause::Crash);
    }
}
