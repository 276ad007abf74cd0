//! Undoing open intents (`intent.rs`): those an agent that ended left in
//! the state folder (the next `run`, `recover`; `plan` only says them), and
//! those of this run whose restart did not bring the target back (the run's
//! end). Each is brought back as its restart would have: started, unless
//! it is running again already, is gone, or never went down.

use crate::docker::undo::ContainerUndo;
use crate::intent::{Found, Intent, IntentError, Journal, Seen, Undo, UndoTarget};
use crate::systemd::undo::UnitUndo;
use crate::timeline::realtime_nanos;
use bounce_wire::civil::utc;
use std::path::Path;
use std::time::Duration;
use tokio::time::Instant;

/// How often a target on its way down or back is asked again.
const POLL: Duration = Duration::from_millis(200);

/// How an intent's target was found, or brought back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Undone {
    /// Started by this undo.
    Started,
    /// Running again already (its restart policy, a start job, someone).
    AlreadyUp { since_unix_nanos: i64 },
    /// Still up from before the intent once the step must have ended: the
    /// step never took effect.
    NeverWentDown,
    /// The engine or manager no longer knows it: nothing to start.
    Gone,
}

impl Undone {
    fn words(&self) -> String {
        match self {
            Undone::Started => "started it again".into(),
            Undone::AlreadyUp { since_unix_nanos } => format!(
                "it is running again (since {}); nothing to do",
                utc(*since_unix_nanos)
            ),
            Undone::NeverWentDown => "it never went down; nothing to do".into(),
            Undone::Gone => "it no longer exists; nothing to start".into(),
        }
    }
}

/// Brings one intent's target back. While the step it recorded may still be
/// taking effect (a slow stop, a restart policy's delay, a start job), waits;
/// a target down is started and followed until it runs.
pub async fn undo(
    intent: &Intent,
    target: &dyn UndoTarget,
    deadline: Instant,
) -> Result<Undone, String> {
    loop {
        let now = realtime_nanos();
        match target.seen().await? {
            Seen::Gone => return Ok(Undone::Gone),
            Seen::Up { since_unix_nanos } if since_unix_nanos > intent.at_unix_nanos => {
                return Ok(Undone::AlreadyUp { since_unix_nanos });
            }
            Seen::Up { .. } if now >= intent.settle_by_unix_nanos => {
                return Ok(Undone::NeverWentDown);
            }
            Seen::Down(_) => {
                target.start(deadline).await?;
                return Ok(Undone::Started);
            }
            // Still going down, or coming back by itself.
            Seen::Up { .. } | Seen::ComingBack => {}
        }
        if Instant::now() + POLL > deadline {
            return Err("it neither came back nor went down in time".into());
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Connects to the engine or manager the intent names and undoes it.
async fn undo_where_recorded(intent: &Intent, timeout: Duration) -> Result<Undone, String> {
    let deadline = Instant::now() + timeout;
    match &intent.undo {
        Undo::StartContainer {
            id, docker_host, ..
        } => {
            let target = ContainerUndo::connect(docker_host, id).await?;
            undo(intent, &target, deadline).await
        }
        Undo::StartUnit { unit, bus } => {
            let target = UnitUndo::connect(bus, unit).await?;
            undo(intent, &target, deadline).await
        }
    }
}

/// Whether open intents are undone or only said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Undo,
    /// `plan`, `recover --dry-run`.
    Report,
}

/// What was found and done, in words; how many intents are still open
/// (not undone: unreachable engine, a start that failed, or only reported).
#[derive(Debug, Default)]
pub struct Recovery {
    pub lines: Vec<String>,
    pub left_open: usize,
}

/// The intents agents that ended left in `state_dir`: said, and undone in
/// [`Mode::Undo`]. Intents whose writer still runs are left to it.
pub async fn recover(
    state_dir: &Path,
    mode: Mode,
    timeout: Duration,
) -> Result<Recovery, IntentError> {
    let mut r = Recovery::default();
    for found in crate::intent::scan(state_dir)? {
        let i = &found.intent;
        if !found.orphaned() {
            r.lines
                .push(format!("{}: that agent still runs; left to it", i.did()));
            continue;
        }
        if mode == Mode::Report {
            r.lines.push(format!(
                "{}: `bounce-agent run` or `bounce-agent recover` will {}",
                i.left(),
                i.undo
            ));
            r.left_open += 1;
            continue;
        }
        match undo_where_recorded(i, timeout).await {
            Ok(done) => {
                r.lines.push(format!("{}: {}", i.left(), done.words()));
                clear(found, &mut r);
            }
            Err(e) => {
                r.lines.push(format!(
                    "{}: could NOT {} ({e}); the intent is kept for the next `recover` or `run`",
                    i.left(),
                    i.undo
                ));
                r.left_open += 1;
            }
        }
    }
    Ok(r)
}

fn clear(found: Found, r: &mut Recovery) {
    let path = found.path.clone();
    if let Err(e) = found.clear() {
        r.lines
            .push(format!("could not remove {}: {e}", path.display()));
        r.left_open += 1;
    }
}

/// The end of this run: intents its restarts left open (a restart aborted
/// between stop and start, a start that failed, a target its restart policy
/// did not bring back in time) are undone as the next start would.
pub async fn undo_own(journal: &Journal, timeout: Duration) -> Recovery {
    let mut r = Recovery::default();
    for (id, i) in journal.still_open() {
        match undo_where_recorded(&i, timeout).await {
            Ok(done) => {
                r.lines.push(format!(
                    "{} and its restart did not bring it back: {}",
                    i.did(),
                    done.words()
                ));
                if let Err(e) = journal.close(id) {
                    r.lines.push(e.to_string());
                    r.left_open += 1;
                }
            }
            Err(e) => {
                r.lines.push(format!(
                    "{} and its restart did not bring it back; could NOT {} ({e}): `bounce-agent recover` tries again",
                    i.did(),
                    i.undo
                ));
                r.left_open += 1;
            }
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intent::Holder;
    use crate::target::{Action, BoxFuture};
    use std::sync::Mutex;

    /// A fake engine: answers from a script of states, records starts.
    struct FakeTarget {
        states: Mutex<Vec<Seen>>,
        starts: Mutex<u32>,
    }

    impl FakeTarget {
        fn new(mut states: Vec<Seen>) -> FakeTarget {
            states.reverse();
            FakeTarget {
                states: Mutex::new(states),
                starts: Mutex::new(0),
            }
        }
    }

    impl UndoTarget for FakeTarget {
        fn seen(&self) -> BoxFuture<'_, Result<Seen, String>> {
            let mut s = self.states.lock().unwrap();
            let next = if s.len() > 1 {
                s.pop().unwrap()
            } else {
                s[0].clone()
            };
            Box::pin(async move { Ok(next) })
        }
        fn start(&self, _deadline: Instant) -> BoxFuture<'_, Result<(), String>> {
            *self.starts.lock().unwrap() += 1;
            Box::pin(async { Ok(()) })
        }
    }

    fn intent(at: i64, settle_by: i64) -> Intent {
        Intent {
            target: "nova_api".into(),
            action: Action::StopStart,
            undo: Undo::StartUnit {
                unit: "u".into(),
                bus: "user".into(),
            },
            at_unix_nanos: at,
            settle_by_unix_nanos: settle_by,
            run_id: bounce_wire::RunId::parse("r").unwrap(),
            holder: Holder::me(),
        }
    }

    async fn run(i: &Intent, states: Vec<Seen>) -> (Result<Undone, String>, u32) {
        let t = FakeTarget::new(states);
        let r = undo(i, &t, Instant::now() + Duration::from_secs(60)).await;
        let n = *t.starts.lock().unwrap();
        (r, n)
    }

    #[tokio::test(start_paused = true)]
    async fn a_target_down_is_started_and_one_up_again_is_left_alone() {
        let now = realtime_nanos();
        let i = intent(now, now + 60_000_000_000);
        assert_eq!(
            run(&i, vec![Seen::Down("exited".into())]).await,
            (Ok(Undone::Started), 1)
        );
        assert_eq!(
            run(
                &i,
                vec![Seen::Up {
                    since_unix_nanos: now + 1
                }]
            )
            .await,
            (
                Ok(Undone::AlreadyUp {
                    since_unix_nanos: now + 1
                }),
                0
            )
        );
        assert_eq!(run(&i, vec![Seen::Gone]).await, (Ok(Undone::Gone), 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_still_in_flight_is_waited_for_then_the_target_started() {
        let now = realtime_nanos();
        let i = intent(now, now + 60_000_000_000);
        let up_from_before = Seen::Up {
            since_unix_nanos: now - 5,
        };
        assert_eq!(
            run(
                &i,
                vec![
                    up_from_before.clone(),
                    up_from_before,
                    Seen::Down("inactive".into())
                ]
            )
            .await,
            (Ok(Undone::Started), 1)
        );
        // A restart policy on its way: waited for, never started by us.
        assert_eq!(
            run(
                &i,
                vec![
                    Seen::ComingBack,
                    Seen::Up {
                        since_unix_nanos: now + 9
                    }
                ]
            )
            .await,
            (
                Ok(Undone::AlreadyUp {
                    since_unix_nanos: now + 9
                }),
                0
            )
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_target_still_up_after_the_step_must_have_ended_never_went_down() {
        let now = realtime_nanos();
        let i = intent(now - 10, now - 1);
        let up = Seen::Up {
            since_unix_nanos: now - 20,
        };
        assert_eq!(run(&i, vec![up]).await, (Ok(Undone::NeverWentDown), 0));
        // Coming back forever: an error at the deadline, nothing started.
        let (r, n) = run(&i, vec![Seen::ComingBack]).await;
        assert!(r.is_err() && n == 0, "{r:?}");
    }
}
