//! `summary.json`: the run's identity, its outcomes and its table per (service, phase).

use crate::hist::PhaseHistograms;
use crate::tally::{RunTally, ServiceNotes};
use crate::timeline::{Outcome, Phase, TimelineRecord};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One row of the results table. Quantiles are in seconds, read from the HDR
/// histogram (3 significant digits).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryRow {
    pub service: String,
    pub phase: Phase,
    /// Restarts in which this phase was observed.
    pub count: u64,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
    /// Exact sum of the observed durations, seconds.
    pub sum: f64,
    /// Restarts of this service that did not end `ok` and in which this
    /// phase was not observed, among the phases their kind of target goes
    /// through ([`crate::TargetRef::phases`]).
    pub failures: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// `run_id`, `deployment`, `scenario`, `node`, as flat fields.
    #[serde(flatten)]
    pub identity: crate::run::RunIdentity,
    pub started_unix_nanos: i64,
    pub finished_unix_nanos: i64,
    /// Restarts the plan called for.
    pub planned: u64,
    /// Restarts that were never begun (abort on failure, Ctrl-C).
    pub not_started: u64,
    pub outcomes: BTreeMap<Outcome, u64>,
    /// True when the operator interrupted the run (Ctrl-C).
    pub interrupted: bool,
    pub rows: Vec<SummaryRow>,
    /// Per service, where the time went, in words (from the timelines).
    #[serde(default)]
    pub where_time_went: BTreeMap<String, Vec<String>>,
}

/// p50, p90, p99 and max of one (service, phase), seconds.
type Quantiles = [f64; 4];

fn quantiles_of(h: &hdrhistogram::Histogram<u64>) -> Option<Quantiles> {
    (!h.is_empty()).then(|| {
        [
            h.value_at_quantile(0.5) as f64 / 1e6,
            h.value_at_quantile(0.9) as f64 / 1e6,
            h.value_at_quantile(0.99) as f64 / 1e6,
            h.max() as f64 / 1e6,
        ]
    })
}

/// Builds the table from the timelines (for counts, sums, failures) and the
/// histograms (for quantiles). Rows come sorted by service, then phase.
pub fn rows_from(timelines: &[TimelineRecord], hists: &PhaseHistograms) -> Vec<SummaryRow> {
    let quantiles = hists
        .by_key
        .iter()
        .filter_map(|(k, h)| Some((k.clone(), quantiles_of(h)?)))
        .collect();
    assemble(&RunTally::of(timelines), &quantiles)
}

/// The same table from the timelines alone, one histogram in memory at a
/// time: for a fleet run of thousands of (service, phase) series, where one
/// dense histogram per series would take gigabytes.
pub fn rows_from_timelines(timelines: &[TimelineRecord]) -> Vec<SummaryRow> {
    rows_of(&RunTally::of(timelines))
}

/// The table of a run tallied as it went (the agent's way), one dense
/// histogram at a time.
pub fn rows_of(tally: &RunTally) -> Vec<SummaryRow> {
    let mut quantiles = BTreeMap::new();
    tally.each_histogram(|key, _, h| {
        if let Some(q) = quantiles_of(h) {
            quantiles.insert(key.clone(), q);
        }
    });
    assemble(tally, &quantiles)
}

fn assemble(tally: &RunTally, quantiles: &BTreeMap<(String, Phase), Quantiles>) -> Vec<SummaryRow> {
    tally
        .series()
        .iter()
        .map(|(key, s)| {
            let q = quantiles.get(key);
            SummaryRow {
                service: key.0.clone(),
                phase: key.1,
                count: s.count,
                p50: q.map(|q| q[0]),
                p90: q.map(|q| q[1]),
                p99: q.map(|q| q[2]),
                max: q.map(|q| q[3]),
                sum: s.sum,
                failures: s.failures,
            }
        })
        .collect()
}

/// The services of these timelines, sorted, once each.
pub fn services(timelines: &[TimelineRecord]) -> Vec<&str> {
    let mut v: Vec<&str> = timelines.iter().map(|t| t.service.as_str()).collect();
    v.sort();
    v.dedup();
    v
}

/// The table's p50 of one (service, phase), if observed.
pub fn p50_of(rows: &[SummaryRow], service: &str, phase: Phase) -> Option<f64> {
    rows.iter()
        .find(|r| r.service == service && r.phase == phase)
        .and_then(|r| r.p50)
}

/// Per service, sentences that say where the restart time went: the split
/// of a unit's stop between its container and the unit itself, how often a
/// unit was left `failed`, how often a stop needed SIGKILL.
pub fn where_time_went(
    timelines: &[TimelineRecord],
    rows: &[SummaryRow],
) -> BTreeMap<String, Vec<String>> {
    where_time_went_of(&RunTally::of(timelines), rows)
}

/// [`where_time_went`] of a run tallied as it went.
pub fn where_time_went_of(tally: &RunTally, rows: &[SummaryRow]) -> BTreeMap<String, Vec<String>> {
    tally
        .services()
        .iter()
        .map(|(service, notes)| (service.clone(), words(service, notes, rows)))
        .collect()
}

fn words(service: &str, notes: &ServiceNotes, rows: &[SummaryRow]) -> Vec<String> {
    let p50 = |phase: Phase| p50_of(rows, service, phase);
    let n = notes.restarts;
    let mut lines = Vec::new();
    if let (Some(stop), Some(c), Some(u)) = (
        p50(Phase::Stop),
        p50(Phase::ContainerStop),
        p50(Phase::UnitSettle),
    ) {
        lines.push(format!(
            "stop p50 {}: the container took {}, the unit {} more after it was gone",
            format_seconds(stop),
            format_seconds(c),
            format_seconds(u)
        ));
    }
    if let Some(result) = &notes.first_failed_result {
        lines.push(format!(
            "the unit was left `failed` instead of `dead` in {} of {n} restarts (Result={result})",
            notes.failed_units,
        ));
    }
    if !notes.killed_stops.is_empty() {
        lines.push(format!(
            "stop waited for SIGKILL after the stop timeout in {} of {n} restarts of {service} (those stops took {})",
            notes.killed_stops.len(),
            format_seconds(median(&notes.killed_stops))
        ));
    }
    if notes.oom_killed > 0 {
        lines.push(format!(
            "{service} was killed by the OOM killer in {} of {n} restarts",
            notes.oom_killed
        ));
    }
    for outcome in [Outcome::Timeout, Outcome::Failed, Outcome::Aborted] {
        if let Some((count, first_error)) = notes.not_ok.get(&outcome) {
            let what = match outcome {
                Outcome::Timeout => "did not get through its phases within the target's timeout",
                Outcome::Failed => "failed",
                _ => "was interrupted",
            };
            lines.push(format!(
                "{service} {what} in {count} of {n} restarts{}",
                first_error
                    .as_deref()
                    .map(|e| format!(" (first: {e})"))
                    .unwrap_or_default()
            ));
        }
    }
    if let (Some(stop), Some(start), Some(ready)) =
        (p50(Phase::Stop), p50(Phase::Start), p50(Phase::Ready))
    {
        let (name, longest) = [("stop", stop), ("start", start), ("ready", ready)]
            .into_iter()
            .fold(("stop", f64::MIN), |a, b| if b.1 > a.1 { b } else { a });
        lines.push(format!(
            "most of a restart is {name} (p50 {} of stop {} + start {} + ready {})",
            format_seconds(longest),
            format_seconds(stop),
            format_seconds(start),
            format_seconds(ready)
        ));
    }
    if let (Some(boot), Some(up)) = (p50(Phase::OsdBoot), p50(Phase::OsdUp)) {
        let mut line = format!(
            "after its start (p50): the OSD was active {} later, up in the osdmap at {}",
            format_seconds(boot),
            format_seconds(up)
        );
        if let Some(active) = p50(Phase::PgsActive) {
            line.push_str(&format!(", its PGs active at {}", format_seconds(active)));
        }
        if let Some(clean) = p50(Phase::PgsClean) {
            line.push_str(&format!(", clean at {}", format_seconds(clean)));
        }
        lines.push(line);
    }
    lines
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// The table as fixed-width text, for terminals and logs.
pub fn render_table(rows: &[SummaryRow]) -> String {
    let fmt = |v: Option<f64>| v.map(format_seconds).unwrap_or_else(|| "-".into());
    let width = rows
        .iter()
        .map(|r| r.service.len())
        .max()
        .unwrap_or(7)
        .max(7);
    let pw = rows
        .iter()
        .map(|r| r.phase.as_str().len())
        .max()
        .unwrap_or(5)
        .max(5);
    let mut out = format!(
        "{:<width$}  {:<pw$} {:>6} {:>9} {:>9} {:>9} {:>9} {:>8}\n",
        "service", "phase", "count", "p50", "p90", "p99", "max", "failures"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<width$}  {:<pw$} {:>6} {:>9} {:>9} {:>9} {:>9} {:>8}\n",
            r.service,
            r.phase.as_str(),
            r.count,
            fmt(r.p50),
            fmt(r.p90),
            fmt(r.p99),
            fmt(r.max),
            r.failures
        ));
    }
    out
}

/// `0.412s`, `12.3s`, `2m05s`: readable, with the precision a restart deserves.
pub fn format_seconds(s: f64) -> String {
    if s < 10.0 {
        format!("{s:.3}s")
    } else if s < 120.0 {
        format!("{s:.1}s")
    } else {
        let m = (s / 60.0).floor();
        format!("{}m{:02.0}s", m as u64, s - m * 60.0)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `n` timelines of services a, b, c; every 7th timed out before its start.
    pub(crate) fn sample_run(n: u64) -> Vec<TimelineRecord> {
        (0..n)
            .map(|i| record(["a", "b", "c"][(i % 3) as usize], i))
            .collect()
    }

    fn record(service: &str, i: u64) -> TimelineRecord {
        let mut t: TimelineRecord = serde_json::from_value(serde_json::json!({
            "run_id": "r", "deployment": "d", "scenario": "s", "node": "n",
            "target": {"kind": "docker", "name": service, "id": "x"},
            "service": service, "iteration": 1, "action": "restart",
            "outcome": if i.is_multiple_of(7) { "timeout" } else { "ok" },
            "error": null, "exit_code": null, "signals": [], "oom_killed": false,
            "phases": {}, "timestamps": [], "probes": []
        }))
        .unwrap();
        t.phases.insert(Phase::Stop, 0.1 + (i % 13) as f64 * 0.37);
        if !i.is_multiple_of(7) {
            t.phases.insert(Phase::Start, 0.05 * (i % 5) as f64 + 0.001);
        }
        t
    }

    #[test]
    fn one_histogram_at_a_time_gives_the_same_table_and_log() {
        let tls = sample_run(200);
        let dense = PhaseHistograms::from_timelines(&tls);
        assert_eq!(rows_from_timelines(&tls), rows_from(&tls, &dense));
        let start = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_795_000_000);
        let len = std::time::Duration::from_secs(60);
        let mut a = Vec::new();
        dense.write_hlog(&mut a, start, len, "x").unwrap();
        let mut b = Vec::new();
        crate::hist::write_hlog_from_timelines(&tls, &mut b, start, len, "x").unwrap();
        assert_eq!(String::from_utf8(a).unwrap(), String::from_utf8(b).unwrap());
        assert_eq!(
            crate::hist::histogram_of(&tls, "b", Phase::Stop),
            *dense.get("b", Phase::Stop).unwrap()
        );
    }

    #[test]
    fn a_failed_restart_counts_only_in_the_phases_of_its_kind_of_target() {
        let failed = |target: serde_json::Value, service: &str| {
            let mut t = record(service, 1);
            t.target = serde_json::from_value(target).unwrap();
            t.outcome = Outcome::Failed;
            t.phases.retain(|p, _| *p == Phase::Stop);
            t
        };
        let tls = [
            // The engine went away after the container's stop was seen.
            failed(
                serde_json::json!({"kind": "docker", "name": "nova_api", "id": "x"}),
                "nova_api",
            ),
            failed(
                serde_json::json!({"kind": "systemd", "name": "kolla-nova_api.service",
                    "bus": "system", "container": "nova_api"}),
                "kolla-nova_api.service",
            ),
            failed(
                serde_json::json!({"kind": "ceph_osd", "id": 3, "unit": "ceph-osd@3.service"}),
                "ceph-osd",
            ),
        ];
        let rows = rows_from_timelines(&tls);
        let failed_in = |service: &str| -> Vec<&str> {
            rows.iter()
                .filter(|r| r.service == service && r.failures > 0)
                .map(|r| r.phase.as_str())
                .collect()
        };
        assert_eq!(failed_in("nova_api"), ["start", "ready", "total"]);
        assert_eq!(
            failed_in("kolla-nova_api.service"),
            ["start", "ready", "total", "container_stop", "unit_settle"]
        );
        assert_eq!(
            failed_in("ceph-osd"),
            ["start", "ready", "total", "osd_boot", "osd_up"]
        );
        // What was observed still counts, with no failure.
        let stop = rows
            .iter()
            .find(|r| r.service == "nova_api" && r.phase == Phase::Stop)
            .unwrap();
        assert_eq!((stop.count, stop.failures), (1, 0));
        assert_eq!(rows.len(), 4 + 6 + 6, "{rows:#?}");
    }

    #[test]
    fn where_the_time_went_counts_per_service() {
        let mut tls = sample_run(21);
        tls[3].signals = vec!["SIGTERM".into(), "SIGKILL".into()];
        tls[3].oom_killed = true;
        tls[7].error = Some("no start within 30s".into());
        let rows = rows_from_timelines(&tls);
        let words = where_time_went(&tls, &rows);
        assert_eq!(words.keys().collect::<Vec<_>>(), ["a", "b", "c"]);
        let a = words["a"].join("\n");
        // a is timelines 0, 3, ... 18: 0 and 7*3=21 (not here) time out.
        assert!(a.contains("stop waited for SIGKILL after the stop timeout in 1 of 7 restarts of a (those stops took 1.210s)"), "{a}");
        assert!(
            a.contains("a was killed by the OOM killer in 1 of 7 restarts"),
            "{a}"
        );
        assert!(
            a.contains(
                "a did not get through its phases within the target's timeout in 1 of 7 restarts"
            ),
            "{a}"
        );
        let b = words["b"].join("\n");
        assert!(
            b.contains("in 1 of 7 restarts (first: no start within 30s)"),
            "{b}"
        );
    }

    #[test]
    fn seconds_format_by_magnitude() {
        assert_eq!(format_seconds(0.4123), "0.412s");
        assert_eq!(format_seconds(12.34), "12.3s");
        assert_eq!(format_seconds(125.0), "2m05s");
    }

    /// `summary.json` as agents have always written it (pretty, flat).
    const SUMMARY: &str = r#"{
  "run_id": "20261125T130000Z-1a2b",
  "deployment": "lab",
  "scenario": "s1",
  "node": {
    "hostname": "n1",
    "kernel": "6.1",
    "os": null,
    "cpus": 2,
    "memory_bytes": 1024,
    "docker_version": null,
    "docker_api_version": null
  },
  "started_unix_nanos": 1,
  "finished_unix_nanos": 2,
  "planned": 1,
  "not_started": 0,
  "outcomes": {
    "ok": 1
  },
  "interrupted": false,
  "rows": [],
  "where_time_went": {}
}"#;

    #[test]
    fn summary_json_is_byte_for_byte_what_it_was() {
        let s: RunSummary = serde_json::from_str(SUMMARY).unwrap();
        assert_eq!(s.identity.run_id, "20261125T130000Z-1a2b");
        assert_eq!(serde_json::to_string_pretty(&s).unwrap(), SUMMARY);
    }
}
