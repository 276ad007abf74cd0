//! Which engine events the watcher has taken, so that a stream reopened
//! after the engine went away (it replays from a stamp) folds nothing twice
//! while events that arrive out of stamp order are still taken.
//!
//! Out of order is normal under load: dockerd stamps an event before it
//! takes its log's lock, so of many containers restarting at once a later
//! published event can carry an earlier stamp (measured: one restart of 60
//! restarted at once was lost when such an event was dropped as old). Events
//! are therefore told apart by (stamp, container, action), remembered for
//! [`REPLAY`] behind the newest stamp, and a stream reopened by a running
//! watcher starts from there (a watcher started again resumes from its
//! cursor instead: the oldest open restart, else the newest stamp).

use bollard::models::EventMessage;
use std::collections::BTreeSet;

/// How far behind the newest stamp events are remembered, and replayed
/// from when the stream is reopened: far beyond any reordering seen.
pub const REPLAY: i64 = 10_000_000_000;

/// The events taken within [`REPLAY`] of the newest.
pub struct Seen {
    /// Nothing before this is asked for again (the cursor the watcher started from).
    start: i64,
    newest: i64,
    recent: BTreeSet<(i64, String, String)>,
}

impl Seen {
    /// Nothing seen yet; the stream was opened at `since` (unix nanos).
    pub fn new(since: i64) -> Seen {
        Seen {
            start: since,
            newest: since,
            recent: BTreeSet::new(),
        }
    }

    /// True the first time an event is offered; false for its replay.
    pub fn is_new(&mut self, ev: &EventMessage) -> bool {
        let at = ev.time_nano.unwrap_or(0);
        let id = ev.actor.as_ref().and_then(|a| a.id.clone());
        let who = (
            at,
            id.unwrap_or_default(),
            ev.action.clone().unwrap_or_default(),
        );
        if !self.recent.insert(who) {
            return false;
        }
        self.newest = self.newest.max(at);
        let floor = self.newest - REPLAY;
        while self.recent.first().is_some_and(|(t, ..)| *t < floor) {
            self.recent.pop_first();
        }
        true
    }

    /// Where a reopened stream starts: everything since is either
    /// remembered (and not taken twice) or not seen yet.
    pub fn resume_from(&self) -> i64 {
        (self.newest - REPLAY).max(self.start)
    }

    /// The newest stamp taken: what the watcher saves as its cursor when no
    /// restart is open. Not [`Seen::resume_from`]: a watcher started again
    /// remembers nothing, and a replay from 10 s back could cut a finished
    /// restart whose stop took longer in half and record its tail again.
    pub fn newest(&self) -> i64 {
        self.newest
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::EventActor;

    fn ev(at: i64, id: &str, action: &str) -> EventMessage {
        EventMessage {
            time_nano: Some(at),
            action: Some(action.into()),
            actor: Some(EventActor {
                id: Some(id.into()),
                attributes: None,
            }),
            ..Default::default()
        }
    }

    const S: i64 = 1_000_000_000;

    #[test]
    fn an_event_stamped_before_one_already_taken_is_still_taken() {
        let mut seen = Seen::new(100 * S);
        assert!(seen.is_new(&ev(101 * S, "b", "kill")));
        assert!(seen.is_new(&ev(101 * S - 5, "a", "kill")));
        assert!(seen.is_new(&ev(101 * S, "b", "die")));
    }

    #[test]
    fn a_replay_from_resume_from_takes_only_what_was_not_seen() {
        let mut seen = Seen::new(100 * S);
        let first = [ev(101 * S, "a", "kill"), ev(102 * S, "a", "die")];
        for e in &first {
            assert!(seen.is_new(e));
        }
        assert_eq!(seen.resume_from(), 100 * S, "never before the start");
        for e in &first {
            assert!(!seen.is_new(e), "replayed: {e:?}");
        }
        assert!(seen.is_new(&ev(102 * S, "a", "stop")));
    }

    #[test]
    fn memory_stays_within_the_replay_window() {
        let mut seen = Seen::new(0);
        for i in 0..1000 {
            assert!(seen.is_new(&ev(i * S, "a", "kill")));
        }
        assert_eq!(seen.recent.len(), 11);
        assert_eq!(seen.resume_from(), 989 * S);
        assert!(!seen.is_new(&ev(990 * S, "a", "kill")));
    }
}
