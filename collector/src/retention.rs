//! The retention policy an operator sets on `serve`, and its upkeep: the
//! single writer calls [`Upkeep::step`] between ingest groups, and each
//! step is one bounded transaction of the store's (`store/compact.rs`,
//! `store/expire.rs`): fold old timelines into hourly histograms, roll old
//! hours up into days, expire old rows and finished runs, give a few free
//! pages back. A backlog (a store converted, a long outage) is worked off
//! one step per group, so an ingest waits at most one step.
//!
//! A timeline's age is the restart's own time (when it opened, by its
//! node's clock), not when it arrived: a range report and retention place
//! a restart at the same instant, and a batch that arrives late with old
//! restarts has them compacted at the next step (counted, merged, never
//! lost). A run's expiry also waits for its agents to be quiet for the
//! resend window, on the collector's clock (`store/expire.rs`).

use crate::store::Store;
use crate::store::compact::Done;
use crate::store::expire::{Expiry, RUNS_PER_STEP};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

/// How long things are kept; `None`: for ever (nothing deleted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub keep_timelines: Option<Duration>,
    /// Hourly histograms older than this are rolled up into daily ones.
    pub keep_hourly: Option<Duration>,
    /// Merged histograms (hourly and daily), and runs, older than this expire.
    pub keep_histograms: Option<Duration>,
    /// How long after a run's last batch a resend of it may still come.
    pub resend_window: Duration,
    /// How often to look for work when there was none.
    pub every: Duration,
    /// Rows one step handles at most.
    pub chunk: usize,
    /// Free pages one step gives back at most.
    pub vacuum_pages: u32,
}

impl Policy {
    /// Whether the policy deletes (or merges) anything at all.
    pub fn deletes(&self) -> bool {
        self.keep_timelines.is_some() || self.keep_histograms.is_some()
    }

    /// Refuses what is kept shorter than what it summarizes.
    pub fn check(&self) -> Result<(), String> {
        let (t, h, d) = (self.keep_timelines, self.keep_hourly, self.keep_histograms);
        let shorter = |a: &str, x: Duration, b: &str, y: Duration, why: &str| {
            Err(format!(
                "{a} {} is shorter than {b} {}: {why}; keep them at least as long",
                words(x),
                words(y)
            ))
        };
        const HOURS: &str =
            "the merged histograms are what is left of a restart once its timeline is dropped";
        match (t, h, d) {
            (None, Some(_), _) | (None, _, Some(_)) => Err(format!(
                "{} without --keep-timelines: histograms are made only from dropped timelines; give --keep-timelines too",
                if h.is_some() {
                    "--keep-hourly"
                } else {
                    "--keep-histograms"
                }
            )),
            (Some(t), Some(h), _) if h < t => {
                shorter("--keep-hourly", h, "--keep-timelines", t, HOURS)
            }
            (Some(t), _, Some(d)) if d < t => {
                shorter("--keep-histograms", d, "--keep-timelines", t, HOURS)
            }
            (_, Some(h), Some(d)) if d < h => shorter(
                "--keep-histograms",
                d,
                "--keep-hourly",
                h,
                "the daily histograms are what is left of an hour once it is rolled up",
            ),
            _ => Ok(()),
        }
    }
}

/// A flag's age: `None` is for ever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keep(pub Option<Duration>);

impl Keep {
    pub fn parse(s: &str) -> Result<Keep, String> {
        parse_keep(s).map(Keep)
    }
}

/// `14d`, `36h`, `90m`, `30s`, or `forever`: how long to keep something.
pub fn parse_keep(s: &str) -> Result<Option<Duration>, String> {
    let t = s.trim();
    if t == "forever" {
        return Ok(None);
    }
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(format!("{s:?} is not a duration (14d, 36h, forever)"));
    }
    let unit_secs = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" => 1,
        "" => {
            return Err(format!(
                "{s:?}: give a unit: 14d, 36h (d, h, m, s), or forever"
            ));
        }
        _ => {
            return Err(format!(
                "{s:?}: unknown unit {unit:?} (d, h, m, s), or forever"
            ));
        }
    };
    match num.parse::<u64>() {
        Ok(n) if n > 0 => n
            .checked_mul(unit_secs)
            .filter(|secs| *secs <= 100 * 366 * 86_400)
            .map(|secs| Some(Duration::from_secs(secs)))
            .ok_or_else(|| format!("{s:?}: more than 100 years (say forever)")),
        Ok(_) => Err(format!(
            "{s:?}: keeping nothing is not a policy (the smallest is 1s; say forever to keep everything)"
        )),
        Err(_) => Err(format!("{s:?} is not a duration (14d, 36h, forever)")),
    }
}

/// `14d`, `36h`, `90s`: a duration as the flags take it.
pub fn words(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        _ if s.is_multiple_of(86_400) => format!("{}d", s / 86_400),
        _ if s.is_multiple_of(3_600) => format!("{}h", s / 3_600),
        _ if s.is_multiple_of(60) => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}

/// What a pass (steps until there is no work left) did so far.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Pass {
    timelines: u64,
    rolled_up: u64,
    hour_rows: u64,
    day_rows: u64,
    runs: u64,
    fleet_log_rows: u64,
    set_aside: u64,
    pages: u64,
}

impl Pass {
    fn add(&mut self, d: &Done) {
        self.timelines += d.timelines;
        self.rolled_up += d.rolled_up;
        self.hour_rows += d.hour_rows;
        self.day_rows += d.day_rows;
        self.runs += d.runs;
        self.fleet_log_rows += d.fleet_log_rows;
        self.set_aside += d.set_aside.len() as u64;
    }

    fn did_something(&self) -> bool {
        *self != Pass::default()
    }

    fn words(&self, page_size: u64) -> String {
        format!(
            "dropped {} timeline(s) (kept merged per deployment and hour), rolled {} hourly row(s) up into days, expired {} hourly and {} daily row(s), {} run(s) and {} fleet log row(s); set aside {} unreadable row(s); gave back {:.1} MiB",
            self.timelines,
            self.rolled_up,
            self.hour_rows,
            self.day_rows,
            self.runs,
            self.fleet_log_rows,
            self.set_aside,
            (self.pages * page_size) as f64 / f64::from(1 << 20),
        )
    }
}

/// The writer's side of the policy: when to step, and what a pass did.
pub struct Upkeep {
    policy: Policy,
    /// When to look for work next (now while a backlog lasts).
    next: Instant,
    /// What this pass has done so far, said once it ends.
    pass: Pass,
    /// When this pass found its first work.
    began: Option<Instant>,
    /// Told the fleet runs whose log expired (see [`Upkeep::telling`]).
    expired: Option<Sender<String>>,
}

impl Upkeep {
    pub fn new(policy: Policy) -> Upkeep {
        Upkeep {
            policy,
            next: Instant::now(),
            pass: Pass::default(),
            began: None,
            expired: None,
        }
    }

    /// Tells `expired` each fleet run whose log expiry deleted, so that
    /// the fleet runs held in memory (`fleet/`) drop it too: a running
    /// collector then answers for it as a restarted one would.
    pub fn telling(mut self, expired: Sender<String>) -> Upkeep {
        self.expired = Some(expired);
        self
    }

    /// How long the writer may wait for ingest before the next step is due.
    pub fn wait(&self) -> Duration {
        self.next.saturating_duration_since(Instant::now())
    }

    /// One bounded step if one is due. A pass that ends says what it did;
    /// one that fails says so too, and the next pass starts afresh after
    /// the policy's interval.
    pub fn step(&mut self, store: &mut Store) {
        if !self.wait().is_zero() {
            return;
        }
        let began = *self.began.get_or_insert_with(Instant::now);
        let result = self.try_step(store, crate::store::now_unix_nanos());
        let ended = match &result {
            Ok(true) => {
                self.next = Instant::now();
                return;
            }
            Ok(false) => None,
            Err(e) => Some(e.to_string()),
        };
        let pass = std::mem::take(&mut self.pass);
        self.began = None;
        self.next = Instant::now() + self.policy.every;
        let took = began.elapsed().as_secs_f64();
        match ended {
            None if pass.did_something() => eprintln!(
                "bounce-collector: retention: {}; in {took:.1}s",
                pass.words(store.page_size())
            ),
            None => {}
            Some(e) => eprintln!(
                "bounce-collector: retention step failed (the pass starts again in {}): {e}; before it, this pass {} in {took:.1}s",
                words(self.policy.every),
                pass.words(store.page_size())
            ),
        }
    }

    /// One step at `now`; whether there is more to do right away.
    fn try_step(&mut self, store: &mut Store, now: i64) -> Result<bool, crate::store::StoreError> {
        let chunk = self.policy.chunk;
        let cutoff = |keep: Duration| now.saturating_sub(keep.as_nanos() as i64);
        let full = |n: u64| n as usize >= chunk;
        let mut more = false;
        let said = |done: Done, pass: &mut Pass| {
            for why in &done.set_aside {
                eprintln!(
                    "bounce-collector: retention: set aside an unreadable row (kept in retention_set_aside, counted in `bounce-collector store`): {why}"
                );
            }
            pass.add(&done);
            done
        };
        if let Some(keep) = self.policy.keep_timelines {
            let done = said(
                store.compact_timelines(cutoff(keep), chunk)?,
                &mut self.pass,
            );
            more |= full(done.timelines + done.set_aside.len() as u64) || full(done.filled);
        }
        if let Some(keep) = self.policy.keep_hourly.filter(|_| !more) {
            let done = said(store.roll_up_hours(cutoff(keep), chunk)?, &mut self.pass);
            more |= full(done.rolled_up);
        }
        if let Some(keep) = self.policy.keep_histograms.filter(|_| !more) {
            let expiry = Expiry {
                before: cutoff(keep),
                quiet_since: cutoff(self.policy.resend_window),
            };
            let done = said(store.expire(expiry, chunk)?, &mut self.pass);
            if let Some(expired) = &self.expired {
                for run in &done.fleet_runs {
                    // No receiver: the collector is stopping.
                    let _ = expired.send(run.clone());
                }
            }
            more |= full(done.hour_rows)
                || full(done.day_rows)
                || done.runs as usize >= RUNS_PER_STEP
                || done.fleet_log_rows > 0
                || full(done.tombstones);
        }
        let pages = store.vacuum_step(self.policy.vacuum_pages)?;
        self.pass.pages += pages;
        Ok(more || pages >= u64::from(self.policy.vacuum_pages))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_values_are_read_with_a_unit_or_refused_in_words() {
        assert_eq!(
            parse_keep("14d"),
            Ok(Some(Duration::from_secs(14 * 86_400)))
        );
        assert_eq!(parse_keep("36h"), Ok(Some(Duration::from_secs(36 * 3_600))));
        assert_eq!(parse_keep("forever"), Ok(None));
        for (bad, says) in [
            ("14", "give a unit"),
            ("0d", "keeping nothing"),
            ("2w", "unknown unit"),
            ("-1d", "not a duration"),
            ("99999999d", "100 years"),
        ] {
            let e = parse_keep(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        assert_eq!(words(Duration::from_secs(14 * 86_400)), "14d");
        assert_eq!(words(Duration::from_secs(90)), "90s");
    }

    #[test]
    fn histograms_are_kept_at_least_as_long_as_timelines() {
        let p = |t: &str, h: &str| Policy {
            keep_timelines: parse_keep(t).unwrap(),
            keep_hourly: None,
            keep_histograms: parse_keep(h).unwrap(),
            resend_window: Duration::from_secs(2 * 86_400),
            every: Duration::from_secs(60),
            chunk: 500,
            vacuum_pages: 256,
        };
        assert!(p("14d", "400d").check().is_ok());
        assert!(p("14d", "forever").check().is_ok());
        assert!(!p("forever", "forever").deletes());
        assert!(p("14d", "7d").check().unwrap_err().contains("shorter"));
        assert!(p("forever", "7d").check().unwrap_err().contains("without"));
        let hourly = |t: &str, h: &str, d: &str| Policy {
            keep_hourly: parse_keep(h).unwrap(),
            ..p(t, d)
        };
        assert!(hourly("14d", "90d", "400d").check().is_ok());
        assert!(hourly("14d", "90d", "forever").check().is_ok());
        let e = hourly("14d", "7d", "400d").check().unwrap_err();
        assert!(
            e.contains("--keep-hourly 7d is shorter than --keep-timelines 14d"),
            "{e}"
        );
        let e = hourly("14d", "90d", "30d").check().unwrap_err();
        assert!(
            e.contains("--keep-histograms 30d is shorter than --keep-hourly 90d"),
            "{e}"
        );
        let e = hourly("forever", "90d", "forever").check().unwrap_err();
        assert!(e.contains("--keep-hourly without --keep-timelines"), "{e}");
    }

    #[test]
    fn a_failed_pass_is_said_and_the_next_starts_afresh() {
        use crate::store::compact::tests::{month_old_and_fresh, temp_store};
        let (path, mut s) = temp_store("upkeep");
        month_old_and_fresh(&mut s);
        let mut u = Upkeep::new(Policy {
            keep_timelines: Some(Duration::from_secs(14 * 86_400)),
            keep_hourly: None,
            keep_histograms: None,
            resend_window: Duration::from_secs(2 * 86_400),
            every: Duration::from_secs(60),
            chunk: 7,
            vacuum_pages: 16,
        });
        u.step(&mut s);
        assert_eq!(u.pass.timelines, 7);
        assert!(u.began.is_some() && u.wait().is_zero(), "more to do");
        // The store fails under the pass (a table gone).
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch("DROP TABLE compacted_outcomes")
            .unwrap();
        u.step(&mut s);
        assert_eq!(
            u.pass,
            Pass::default(),
            "what the failed pass did is said, not kept"
        );
        assert!(u.began.is_none());
        assert!(
            !u.wait().is_zero(),
            "tried again after the interval, not in a loop"
        );
        drop(s);
        let mut s = Store::open(&path).unwrap();
        u.next = Instant::now();
        for _ in 0..100 {
            u.step(&mut s);
            if !u.wait().is_zero() {
                break;
            }
        }
        assert_eq!(
            s.dropped().unwrap().timelines,
            30,
            "the next pass did the rest"
        );
        assert_eq!(u.pass, Pass::default());
        drop(s);
        let _ = std::fs::remove_file(&path);
    }
}
