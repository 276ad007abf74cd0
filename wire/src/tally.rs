//! A run's numbers folded one timeline at a time: the outcomes, per
//! (service, phase) a sparse histogram with its count, exact sum and
//! failures, and per service what "where the time went" says.
//!
//! Memory grows with the series, not with the restarts and never by a
//! dense ~230 KiB histogram per series: the agent tallies a run of 10,000
//! restarts of 100 services in this form, and the table, the words and the
//! histogram log are made from it at the end, one dense histogram at a time.

use crate::hist::{self, HistError, new_histogram, to_micros};
use crate::sparse::SparseHistogram;
use crate::timeline::{Outcome, Phase, TimelineRecord};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, SystemTime};

/// One (service, phase) of a run.
#[derive(Debug, Clone, Default)]
pub struct Series {
    pub hist: SparseHistogram,
    /// Restarts in which this phase was observed.
    pub count: u64,
    /// Exact sum of the observed durations, seconds, in timeline order.
    pub sum: f64,
    /// Restarts that did not end `ok` and in which this phase was not observed.
    pub failures: u64,
}

/// What [`where_time_went`](crate::summary::where_time_went) says of one
/// service, counted as its timelines come.
#[derive(Debug, Clone, Default)]
pub struct ServiceNotes {
    pub restarts: usize,
    /// Restarts whose unit stopped `failed`, and the first one's `Result`.
    pub failed_units: usize,
    pub first_failed_result: Option<String>,
    /// Stops that needed SIGKILL after the stop timeout: their durations.
    pub killed_stops: Vec<f64>,
    pub oom_killed: usize,
    /// Per outcome other than `ok`: how many, and the first one's error.
    pub not_ok: BTreeMap<Outcome, (usize, Option<String>)>,
}

#[derive(Debug, Clone, Default)]
pub struct RunTally {
    restarts: u64,
    outcomes: BTreeMap<Outcome, u64>,
    series: BTreeMap<(String, Phase), Series>,
    services: BTreeMap<String, ServiceNotes>,
}

impl RunTally {
    /// The tally of these timelines.
    pub fn of<'a>(timelines: impl IntoIterator<Item = &'a TimelineRecord>) -> RunTally {
        let mut t = RunTally::default();
        for rec in timelines {
            t.add(rec);
        }
        t
    }

    pub fn add(&mut self, t: &TimelineRecord) {
        self.restarts += 1;
        *self.outcomes.entry(t.outcome).or_default() += 1;
        for (phase, secs) in &t.phases {
            let s = self.series_mut(&t.service, *phase);
            s.hist.record(to_micros(*secs));
            s.count += 1;
            s.sum += secs;
        }
        if t.outcome != Outcome::Ok {
            // Only where its kind of target would have been measured.
            for phase in t.target.phases() {
                if !t.phases.contains_key(phase) {
                    self.series_mut(&t.service, *phase).failures += 1;
                }
            }
        }
        let notes = match self.services.get_mut(&t.service) {
            Some(n) => n,
            None => self.services.entry(t.service.clone()).or_default(),
        };
        notes.restarts += 1;
        if let Some(u) = t
            .unit
            .as_ref()
            .filter(|u| u.stopped_as.as_deref() == Some("failed"))
        {
            notes.failed_units += 1;
            notes
                .first_failed_result
                .get_or_insert_with(|| u.stop_result.clone().unwrap_or_else(|| "?".into()));
        }
        if t.signals.len() > 1 && t.signals.last().is_some_and(|s| s == "SIGKILL") {
            notes.killed_stops.extend(t.phases.get(&Phase::Stop));
        }
        if t.oom_killed {
            notes.oom_killed += 1;
        }
        if t.outcome != Outcome::Ok {
            let e = notes
                .not_ok
                .entry(t.outcome)
                .or_insert_with(|| (0, t.error.clone()));
            e.0 += 1;
        }
    }

    fn series_mut(&mut self, service: &str, phase: Phase) -> &mut Series {
        self.series.entry((service.to_string(), phase)).or_default()
    }

    /// Timelines tallied.
    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    pub fn outcomes(&self) -> &BTreeMap<Outcome, u64> {
        &self.outcomes
    }

    /// Every (service, phase) observed or failed, in key order.
    pub fn series(&self) -> &BTreeMap<(String, Phase), Series> {
        &self.series
    }

    /// Per service, in name order.
    pub fn services(&self) -> &BTreeMap<String, ServiceNotes> {
        &self.services
    }

    /// Each observed (service, phase) as a dense histogram, in key order,
    /// built one at a time in one reused histogram.
    pub fn each_histogram(&self, mut f: impl FnMut(&(String, Phase), &Series, &Histogram<u64>)) {
        let mut h = new_histogram();
        for (key, s) in self.series.iter().filter(|(_, s)| !s.hist.is_empty()) {
            h.reset();
            for (value, n) in s.hist.iter() {
                h.record_n(value, n).expect("bucket values are in range");
            }
            f(key, s, &h);
        }
    }

    /// The run's histogram log (see [`hist::PhaseHistograms::write_hlog`]),
    /// one dense histogram at a time.
    pub fn write_hlog<W: Write>(
        &self,
        out: &mut W,
        start: SystemTime,
        length: Duration,
        comment: &str,
    ) -> Result<(), HistError> {
        hist::write_log(out, start, length, comment, |emit| {
            let mut result = Ok(());
            self.each_histogram(|key, _, h| {
                if result.is_ok() {
                    result = emit(key, h);
                }
            });
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hist::PhaseHistograms;

    #[test]
    fn the_tally_gives_the_dense_histograms_log_byte_for_byte() {
        let tls = crate::summary::tests::sample_run(300);
        let dense = PhaseHistograms::from_timelines(&tls);
        let tally = RunTally::of(&tls);
        let mut n = 0;
        tally.each_histogram(|(service, phase), s, h| {
            assert_eq!(dense.get(service, *phase), Some(h));
            assert_eq!(s.count, h.len());
            n += 1;
        });
        assert_eq!(n, dense.by_key.len());
        let start = std::time::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        let len = Duration::from_secs(60);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        dense.write_hlog(&mut a, start, len, "x").unwrap();
        tally.write_hlog(&mut b, start, len, "x").unwrap();
        assert_eq!(String::from_utf8(a).unwrap(), String::from_utf8(b).unwrap());
        assert_eq!(tally.restarts(), 300);
        assert_eq!(tally.outcomes()[&Outcome::Timeout], 43);
    }
}
