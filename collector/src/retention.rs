//! The retention policy an operator sets on `serve`, and its upkeep: the
//! single writer calls [`Upkeep::step`] between ingest groups, and each
//! step is one bounded transaction of the store's (`store/compact.rs`):
//! fold old timelines into hourly histograms, expire old hours and runs,
//! give a few free pages back. A backlog (a store converted, a long
//! outage) is worked off one step per group, so an ingest waits at most
//! one step.
//!
//! A timeline's age is the restart's own time (when it opened, by its
//! node's clock), not when it arrived: a range report and retention place
//! a restart at the same instant, and a batch that arrives late with old
//! restarts has them compacted at the next step (counted, merged, never
//! lost).

use crate::store::Store;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long things are kept; `None`: for ever (nothing deleted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub keep_timelines: Option<Duration>,
    pub keep_histograms: Option<Duration>,
    /// How often to look for work when there was none.
    pub every: Duration,
    /// Rows one step handles at most.
    pub chunk: usize,
    /// Free pages one step gives back at most.
    pub vacuum_pages: u32,
}

impl Policy {
    /// Whether the policy deletes anything at all.
    pub fn deletes(&self) -> bool {
        self.keep_timelines.is_some() || self.keep_histograms.is_some()
    }

    /// Refuses histograms kept shorter than the timelines they summarize.
    pub fn check(&self) -> Result<(), String> {
        match (self.keep_timelines, self.keep_histograms) {
            (Some(t), Some(h)) if h < t => Err(format!(
                "--keep-histograms {} is shorter than --keep-timelines {}: the merged histograms are what is left of a restart once its timeline is dropped; keep them at least as long",
                words(h),
                words(t)
            )),
            (None, Some(h)) => Err(format!(
                "--keep-histograms {} without --keep-timelines: histograms are made only from dropped timelines; give --keep-timelines too",
                words(h)
            )),
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

fn now_unix_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// The writer's side of the policy: when to step, and what a pass did.
pub struct Upkeep {
    policy: Policy,
    /// When to look for work next (now while a backlog lasts).
    next: Instant,
    /// What this pass has done so far, said once it ends.
    pass: (u64, u64, u64, u64),
    /// When this pass found its first work.
    began: Option<Instant>,
}

impl Upkeep {
    pub fn new(policy: Policy) -> Upkeep {
        Upkeep {
            policy,
            next: Instant::now(),
            pass: (0, 0, 0, 0),
            began: None,
        }
    }

    /// How long the writer may wait for ingest before the next step is due.
    pub fn wait(&self) -> Duration {
        self.next.saturating_duration_since(Instant::now())
    }

    /// One bounded step if one is due; a failure is said and retried later.
    pub fn step(&mut self, store: &mut Store) {
        if !self
            .next
            .saturating_duration_since(Instant::now())
            .is_zero()
        {
            return;
        }
        let began = *self.began.get_or_insert_with(Instant::now);
        match self.try_step(store, now_unix_nanos()) {
            Ok(true) => self.next = Instant::now(),
            Ok(false) => {
                let (t, h, r, p) = std::mem::take(&mut self.pass);
                self.began = None;
                if t + h + r + p > 0 {
                    eprintln!(
                        "bounce-collector: retention: dropped {t} timeline(s) (kept merged per deployment and hour), {h} hourly row(s), {r} run(s); gave back {:.1} MiB; in {:.1}s",
                        (p * store.page_size()) as f64 / f64::from(1 << 20),
                        began.elapsed().as_secs_f64()
                    );
                }
                self.next = Instant::now() + self.policy.every;
            }
            Err(e) => {
                self.began = None;
                eprintln!("bounce-collector: retention step failed (retried later): {e}");
                self.next = Instant::now() + self.policy.every;
            }
        }
    }

    /// One step at `now`; whether there is more to do right away.
    fn try_step(&mut self, store: &mut Store, now: i64) -> Result<bool, crate::store::StoreError> {
        let chunk = self.policy.chunk;
        let cutoff = |keep: Duration| now.saturating_sub(keep.as_nanos() as i64);
        let mut more = false;
        if let Some(keep) = self.policy.keep_timelines {
            let done = store.compact_timelines(cutoff(keep), chunk)?;
            self.pass.0 += done.timelines;
            more |= done.timelines as usize >= chunk || done.filled as usize >= chunk;
        }
        if let Some(keep) = self.policy.keep_histograms.filter(|_| !more) {
            let done = store.expire(cutoff(keep), chunk)?;
            self.pass.1 += done.hour_rows;
            self.pass.2 += done.runs;
            more |= done.hour_rows as usize >= chunk || done.runs > 0;
        }
        let pages = store.vacuum_step(self.policy.vacuum_pages)?;
        self.pass.3 += pages;
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
            keep_histograms: parse_keep(h).unwrap(),
            every: Duration::from_secs(60),
            chunk: 500,
            vacuum_pages: 256,
        };
        assert!(p("14d", "400d").check().is_ok());
        assert!(p("14d", "forever").check().is_ok());
        assert!(!p("forever", "forever").deletes());
        assert!(p("14d", "7d").check().unwrap_err().contains("shorter"));
        assert!(p("forever", "7d").check().unwrap_err().contains("without"));
    }
}
