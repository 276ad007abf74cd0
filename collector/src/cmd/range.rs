//! `report --deployment D [--since T] [--until T] [--origin watch]`: every
//! restart of a deployment that opened inside a time range, gathered from
//! all its runs (a watcher's one run per node and UTC day, bounce's own
//! runs) into one [`RunData`], so the report says per service what, say,
//! the last upgrade cost. Read through the same [`Source`] as one run: a
//! store or a running collector.

use crate::cmd::at::Source;
use crate::store::compact::Compacted;
use anyhow::{Result, bail};
use bounce_wire::civil::parse_utc;
use bounce_wire::{NodeFacts, Origin, RunData, RunId, TimelineRecord};

/// Which restarts a range report holds.
pub struct Range {
    pub deployment: String,
    /// Unix nanoseconds, inclusive.
    pub since: Option<i64>,
    /// Unix nanoseconds, exclusive.
    pub until: Option<i64>,
    pub origin: Option<Origin>,
}

/// `--since`/`--until`: a UTC instant (`2026-11-30`, `2026-11-30T10:15:00Z`).
pub fn parse_instant(s: &str) -> Result<i64, String> {
    parse_utc(s).ok_or_else(|| {
        format!("{s:?} is not a UTC instant (write 2026-11-30, 2026-11-30T10:15:00Z or \"2026-11-30 10:15\")")
    })
}

/// `--origin`: `run` (bounce's own restarts) or `watch` (observed ones).
pub fn parse_origin(s: &str) -> Result<Origin, String> {
    match s {
        "run" => Ok(Origin::Run),
        "watch" => Ok(Origin::Watch),
        _ => Err(format!("{s:?}: give run or watch")),
    }
}

pub use crate::store::opened_at;

/// `20261130T101500Z`, for the report's name.
fn compact(unix_nanos: i64) -> String {
    bounce_wire::civil::utc(unix_nanos)
        .trim_end_matches(" UTC")
        .replace(['-', ':'], "")
        .replace(' ', "T")
        + "Z"
}

impl Range {
    fn holds(&self, t: &TimelineRecord) -> bool {
        let at = opened_at(t);
        self.origin.is_none_or(|o| t.origin == o)
            && self.since.is_none_or(|s| at.is_some_and(|a| a >= s))
            && self.until.is_none_or(|u| at.is_some_and(|a| a < u))
    }

    /// Whether a run (as `runs` lists it) can hold restarts in the range.
    fn may_hold(&self, run: &serde_json::Value) -> bool {
        let started = run["started_unix_nanos"].as_i64().unwrap_or(i64::MIN);
        let finished = run["finished_unix_nanos"].as_i64();
        run["deployment"].as_str() == Some(self.deployment.as_str())
            && self.until.is_none_or(|u| started < u)
            && self.since.is_none_or(|s| finished.is_none_or(|f| f >= s))
    }

    /// The range's restarts from every run of the deployment, in the order
    /// they opened, as one run for the report; with `merged`, what
    /// retention kept of the range's dropped timelines (when some of it
    /// reads, the run may hold no timeline at all). Nothing readable is an
    /// error that names the merged rows that did not read.
    pub fn gather(&self, source: &Source, merged: Option<&Compacted>) -> Result<RunData> {
        let compacted = merged
            .filter(|c| c.readable())
            .map(|c| (c.first_hour_unix_nanos, c.end_unix_nanos));
        let mut timelines = Vec::new();
        let mut nodes: Vec<NodeFacts> = Vec::new();
        let mut scenarios: Vec<String> = Vec::new();
        let mut runs = 0;
        for listed in source.runs()?.iter().filter(|r| self.may_hold(r)) {
            let Some(id) = listed["run_id"].as_str().and_then(|i| RunId::parse(i).ok()) else {
                continue;
            };
            let run = source.run(&id)?;
            let before = timelines.len();
            timelines.extend(run.timelines.into_iter().filter(|t| self.holds(t)));
            if timelines.len() == before {
                continue;
            }
            runs += 1;
            if !scenarios.contains(&run.scenario) {
                scenarios.push(run.scenario);
            }
            for n in run.nodes {
                if !nodes.iter().any(|m| m.hostname == n.hostname) {
                    nodes.push(n);
                }
            }
        }
        let unreadable = merged.map_or(&[][..], |c| &c.left_out[..]);
        if timelines.is_empty() && compacted.is_none() && !unreadable.is_empty() {
            bail!(
                "nothing of deployment {:?} in that range could be read: no timeline, and the {} merged row(s) retention kept do not read: {}",
                self.deployment,
                unreadable.len(),
                unreadable.join("; ")
            );
        }
        if timelines.is_empty() && compacted.is_none() {
            bail!(
                "no restart of deployment {:?}{} in that range (`bounce-collector runs` lists the runs)",
                self.deployment,
                self.origin
                    .map(|o| format!(" with origin {}", o.as_str()))
                    .unwrap_or_default()
            );
        }
        timelines.sort_by_key(opened_at);
        let first = timelines
            .iter()
            .filter_map(opened_at)
            .chain(compacted.map(|c| c.0))
            .min()
            .unwrap_or(0);
        let last = timelines
            .iter()
            .flat_map(|t| t.timestamps.iter().map(|b| b.unix_nanos))
            .chain(compacted.map(|c| c.1))
            .max()
            .unwrap_or(first);
        let (since, until) = (self.since.unwrap_or(first), self.until.unwrap_or(last));
        let id = format!("{}@{}..{}", self.deployment, compact(since), compact(until));
        let run_id = RunId::parse(&id)
            .or_else(|_| RunId::parse(&format!("range@{}..{}", compact(since), compact(until))))
            .map_err(|e| anyhow::anyhow!("{id}: {e}"))?;
        let planned = timelines.iter().filter(|t| t.origin == Origin::Run).count() as u64;
        Ok(RunData {
            run_id,
            deployment: self.deployment.clone(),
            scenario: scenarios.join(", "),
            scenario_yaml: None,
            nodes,
            started_unix_nanos: since,
            finished_unix_nanos: Some(until),
            planned,
            not_started: 0,
            interrupted: false,
            timelines,
            origin: format!("{runs} run(s) of deployment {}", self.deployment),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_is_read_in_utc_and_named_compactly() {
        let at = parse_instant("2026-11-30T10:15:00Z").unwrap();
        assert_eq!(compact(at), "20261130T101500Z");
        assert!(parse_instant("last tuesday").is_err());
        assert_eq!(parse_origin("watch"), Ok(Origin::Watch));
        assert!(parse_origin("both").is_err());
        let r = Range {
            deployment: "lab".into(),
            since: Some(at),
            until: Some(at + 3_600_000_000_000),
            origin: None,
        };
        let run = |started: i64, finished: Option<i64>| {
            serde_json::json!({"deployment": "lab", "started_unix_nanos": started,
                               "finished_unix_nanos": finished})
        };
        assert!(
            r.may_hold(&run(at - 86_400_000_000_000, None)),
            "an open day"
        );
        assert!(r.may_hold(&run(at - 10, Some(at + 10))));
        assert!(!r.may_hold(&run(at - 100, Some(at - 10))), "ended before");
        assert!(
            !r.may_hold(&run(at + 3_600_000_000_000, None)),
            "began after"
        );
    }
}
