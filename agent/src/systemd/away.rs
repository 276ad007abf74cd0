//! What a unit's own stamps say happened while `watch` could not hear its
//! manager (the bus was away, or no watcher ran): systemd keeps, per unit,
//! the last time it left and entered each state (`ActiveExitTimestamp`,
//! `InactiveEnterTimestamp`, `InactiveExitTimestamp`,
//! `ActiveEnterTimestamp`), how often `Restart=` brought it back
//! (`NRestarts`) and which activation runs (`InvocationID`). Compared with
//! what the watcher last knew (in memory, or what the previous watcher
//! left on disk: `book.rs`), they tell a unit that went down meanwhile, or
//! a restart wholly inside the gap (its last one: each stamp holds only
//! the latest transition).

use super::bus::{string, uint};
use std::collections::HashMap;
use zbus::zvariant::{OwnedValue, Value};

type Props = HashMap<String, OwnedValue>;

/// What the watcher last knew of a unit's stamps (none before its first read).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Known {
    /// ActiveExitTimestampMonotonic (µs): when it last left `active`.
    pub(super) exit_us: Option<u64>,
    /// NRestarts: how often `Restart=` brought it back.
    pub(super) n_restarts: Option<u32>,
    /// InvocationID: the activation that runs (or ran last).
    pub(super) invocation: Option<[u8; 16]>,
}

impl Known {
    /// The stamps as read from the unit's properties now.
    pub(super) fn read(unit: &Props, service: &Props) -> Known {
        Known {
            exit_us: unit.get("ActiveExitTimestampMonotonic").and_then(uint),
            n_restarts: n_restarts(service),
            invocation: unit.get("InvocationID").and_then(id128),
        }
    }

    /// Folds a PropertiesChanged of the Unit or Service interface in.
    pub(super) fn update(&mut self, changed: &Props) {
        if let Some(us) = changed.get("ActiveExitTimestampMonotonic").and_then(uint) {
            self.exit_us = Some(self.exit_us.map_or(us, |old| old.max(us)));
        }
        if let Some(n) = n_restarts(changed) {
            self.n_restarts = Some(n);
        }
        if let Some(id) = changed.get("InvocationID").and_then(id128) {
            self.invocation = Some(id);
        }
    }
}

fn n_restarts(service: &Props) -> Option<u32> {
    service
        .get("NRestarts")
        .and_then(uint)
        .and_then(|n| u32::try_from(n).ok())
}

/// A 128-bit id sent as `ay` (a unit's `InvocationID`); all zeros is none.
fn id128(v: &OwnedValue) -> Option<[u8; 16]> {
    let Value::Array(a) = &**v else {
        return None;
    };
    let bytes: Vec<u8> = a
        .iter()
        .filter_map(|b| match b {
            Value::U8(x) => Some(*x),
            _ => None,
        })
        .collect();
    let id: [u8; 16] = bytes.try_into().ok()?;
    (id != [0; 16]).then_some(id)
}

/// Why the watcher could not hear a unit's manager for a while.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Gap {
    /// The manager's bus went away and came back.
    BusAway,
    /// No watcher ran (stopped, killed, upgraded): found at the next one's start.
    WatcherDown,
}

impl Gap {
    /// What was the case while the watcher could not hear: "the manager's bus was away".
    pub(super) fn words(self) -> &'static str {
        match self {
            Gap::BusAway => "the manager's bus was away",
            Gap::WatcherDown => "the watcher was not running",
        }
    }

    /// The note a restart found from the stamps carries: its jobs were not seen.
    pub(super) fn jobs_unseen(self) -> String {
        let found = match self {
            Gap::BusAway => "found afterwards",
            Gap::WatcherDown => "found at the watcher's start",
        };
        format!(
            "{} when the unit left active: {found} from its own stamps, its jobs not seen",
            self.words()
        )
    }
}

/// What happened to a unit since the watcher last heard it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Away {
    /// Its stamps did not move (or no earlier read to compare with).
    Nothing,
    /// Its stamps older than known, down now or another activation than
    /// known: it (or its manager) was unloaded meanwhile (nothing
    /// references a stopped unit) and loaded afresh, its stamps gone.
    Unloaded,
    /// It left `active` at `exit_us` and is not active now.
    Down { exit_us: u64, crash: bool },
    /// It left `active` at `exit_us` and is active again since: a restart
    /// wholly inside the gap. `rose`: how much NRestarts rose.
    Back {
        exit_us: u64,
        crash: bool,
        rose: u32,
    },
}

/// Compares the unit's properties read now with what was known.
///
/// A crash: `Restart=` brought it back (NRestarts rose) or is about to
/// (`auto-restart`), or it went down by itself (no job, a `Result` other
/// than `success`). Otherwise someone asked (a stop or restart job).
pub(super) fn while_away(was: &Known, unit: &Props, service: &Props, job: bool) -> Away {
    let now = Known::read(unit, service);
    let (Some(before), Some(exit_us)) = (was.exit_us, now.exit_us) else {
        return Away::Nothing;
    };
    let text = |p: &str, m: &Props| m.get(p).and_then(string).unwrap_or_default();
    let active = text("ActiveState", unit) == "active";
    let other = matches!((was.invocation, now.invocation), (Some(a), Some(b)) if a != b);
    if exit_us < before && (!active || other) {
        return Away::Unloaded;
    }
    if exit_us <= before {
        return Away::Nothing;
    }
    let rose = match (was.n_restarts, now.n_restarts) {
        (Some(a), Some(b)) => b.saturating_sub(a),
        _ => 0,
    };
    let entered = unit
        .get("ActiveEnterTimestampMonotonic")
        .and_then(uint)
        .unwrap_or(0);
    if active && entered > exit_us {
        return Away::Back {
            exit_us,
            crash: rose > 0,
            rose,
        };
    }
    if active {
        return Away::Nothing;
    }
    let by_itself = !job && !matches!(text("Result", service).as_str(), "" | "success");
    let crash = rose > 0 || text("SubState", unit) == "auto-restart" || by_itself;
    Away::Down { exit_us, crash }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake property map, as `GetAll` answers.
    fn fake(props: &[(&str, Value<'static>)]) -> Props {
        props
            .iter()
            .map(|(k, v)| (k.to_string(), OwnedValue::try_from(v.clone()).unwrap()))
            .collect()
    }

    fn unit(state: &str, sub: &str, exit: u64, enter: u64) -> Props {
        fake(&[
            ("ActiveState", Value::from(state.to_string())),
            ("SubState", Value::from(sub.to_string())),
            ("ActiveExitTimestampMonotonic", Value::from(exit)),
            ("ActiveEnterTimestampMonotonic", Value::from(enter)),
        ])
    }

    fn service(result: &str, n: u32) -> Props {
        fake(&[
            ("Result", Value::from(result.to_string())),
            ("NRestarts", Value::from(n)),
        ])
    }

    const WAS: Known = Known {
        exit_us: Some(100),
        n_restarts: Some(2),
        invocation: Some([1; 16]),
    };

    #[test]
    fn stamps_that_did_not_move_say_nothing() {
        let now = unit("active", "running", 100, 50);
        assert_eq!(
            while_away(&WAS, &now, &service("success", 2), false),
            Away::Nothing
        );
        // Unloaded and loaded afresh: its stamps are gone.
        let fresh = unit("inactive", "dead", 0, 0);
        assert_eq!(
            while_away(&WAS, &fresh, &service("success", 0), false),
            Away::Unloaded
        );
        // Never read before: nothing to compare with.
        let now = unit("inactive", "dead", 300, 50);
        assert_eq!(
            while_away(&Known::default(), &now, &service("success", 2), false),
            Away::Nothing
        );
    }

    #[test]
    fn a_unit_down_now_is_asked_unless_it_went_by_itself() {
        let down = unit("inactive", "dead", 300, 50);
        assert_eq!(
            while_away(&WAS, &down, &service("success", 2), false),
            Away::Down {
                exit_us: 300,
                crash: false
            }
        );
        let waiting = unit("activating", "auto-restart", 300, 50);
        assert_eq!(
            while_away(&WAS, &waiting, &service("signal", 2), false),
            Away::Down {
                exit_us: 300,
                crash: true
            }
        );
        let failed = unit("failed", "failed", 300, 50);
        assert_eq!(
            while_away(&WAS, &failed, &service("exit-code", 2), false),
            Away::Down {
                exit_us: 300,
                crash: true
            }
        );
        // A stop job whose process exited non-zero: still asked.
        assert_eq!(
            while_away(&WAS, &failed, &service("exit-code", 2), true),
            Away::Down {
                exit_us: 300,
                crash: false
            }
        );
    }

    #[test]
    fn a_restart_inside_the_outage_is_back_and_a_crash_when_nrestarts_rose() {
        let back = unit("active", "running", 300, 400);
        assert_eq!(
            while_away(&WAS, &back, &service("success", 2), false),
            Away::Back {
                exit_us: 300,
                crash: false,
                rose: 0
            }
        );
        assert_eq!(
            while_away(&WAS, &back, &service("success", 5), false),
            Away::Back {
                exit_us: 300,
                crash: true,
                rose: 3
            }
        );
        // A manual start resets NRestarts: not a crash.
        assert_eq!(
            while_away(&WAS, &back, &service("success", 0), false),
            Away::Back {
                exit_us: 300,
                crash: false,
                rose: 0
            }
        );
    }

    #[test]
    fn signals_keep_the_newest_exit() {
        let mut k = WAS;
        k.update(&fake(&[(
            "ActiveExitTimestampMonotonic",
            Value::from(50u64),
        )]));
        assert_eq!(k.exit_us, Some(100));
        k.update(&fake(&[
            ("ActiveExitTimestampMonotonic", Value::from(150u64)),
            ("NRestarts", Value::from(3u32)),
        ]));
        assert_eq!(
            k,
            Known {
                exit_us: Some(150),
                n_restarts: Some(3),
                invocation: Some([1; 16]),
            }
        );
    }

    fn with_invocation(mut props: Props, id: u8) -> Props {
        props.extend(fake(&[("InvocationID", Value::from(vec![id; 16]))]));
        props
    }

    #[test]
    fn a_unit_loaded_afresh_is_told_by_its_older_stamps_or_its_invocation() {
        // Active, another activation, its stamps older than known: its
        // manager started afresh (or it was unloaded and started again).
        let fresh = with_invocation(unit("active", "running", 0, 40), 2);
        assert_eq!(
            while_away(&WAS, &fresh, &service("success", 0), false),
            Away::Unloaded
        );
        // The same activation: nothing happened to it.
        let same = with_invocation(unit("active", "running", 100, 50), 1);
        assert_eq!(
            while_away(&WAS, &same, &service("success", 2), false),
            Away::Nothing
        );
        assert_eq!(Known::read(&same, &service("success", 2)), WAS);
    }

    #[test]
    fn what_a_stopped_watcher_knew_finds_one_restart_once() {
        // The stamps the watcher knew when it stopped...
        let before = with_invocation(unit("active", "running", 100, 50), 1);
        let last = Known::read(&before, &service("success", 2));
        // ...read again at the next start, no restart between: nothing.
        assert_eq!(
            while_away(&last, &before, &service("success", 2), false),
            Away::Nothing
        );
        // One restart meanwhile: back, from its stamps.
        let after = with_invocation(unit("active", "running", 300, 400), 3);
        let svc = service("success", 0);
        assert_eq!(
            while_away(&last, &after, &svc, false),
            Away::Back {
                exit_us: 300,
                crash: false,
                rose: 0
            }
        );
        // Started again after recording it: what it knows now finds nothing.
        let now = Known::read(&after, &svc);
        assert_eq!(while_away(&now, &after, &svc, false), Away::Nothing);
        // Stopped while no watcher ran: down, asked (a stop job's Result).
        let stopped = with_invocation(unit("inactive", "dead", 500, 400), 3);
        assert_eq!(
            while_away(&now, &stopped, &svc, false),
            Away::Down {
                exit_us: 500,
                crash: false
            }
        );
    }
}
