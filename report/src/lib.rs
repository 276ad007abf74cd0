//! Reports of bounce runs, for the people who can fix the slowness: a
//! markdown page that pastes into an upstream issue, SVG charts it links to,
//! the raw files so anyone can re-analyse, and the comparison of a run with
//! a baseline (before/after an upgrade, cluster A vs cluster B).
//!
//! Input is a [`RunData`], read from an agent's output folder
//! (`bounce_wire::RunFolder`) or from the collector's store; the report is
//! built from the timelines alone, so both give the same numbers.

pub mod compare;
pub mod markdown;
pub mod redact;
pub mod svg;

pub use compare::{CompareOptions, Comparison, Verdict};

use bounce_wire::folder::{HISTOGRAMS, SCENARIO, TIMELINES};
use bounce_wire::hist::histogram_of;
use bounce_wire::summary::{rows_from_timelines, where_time_went};
use bounce_wire::{Phase, RunData, SummaryRow, TimelineRecord};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(
        "{0}: already holds a report (report.md); choose a new --out folder, nothing was overwritten"
    )]
    Exists(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Redact(#[from] redact::RedactError),
    #[error("writing the histogram log: {0}")]
    Hist(#[from] bounce_wire::HistError),
}

#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// Replace host names and addresses everywhere (`node-01`, `ip-01`).
    pub redact: bool,
    pub compare: CompareOptions,
    /// How many restarts the "slowest" table lists.
    pub slowest: usize,
    /// How many services a percentile chart draws (the slowest by p99).
    pub chart_services: usize,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            redact: false,
            compare: CompareOptions::default(),
            slowest: 10,
            chart_services: 8,
        }
    }
}

/// The bar chart shows at most this many services (the slowest).
const MAX_BARS: usize = 40;

/// What [`write_report`] produced.
#[derive(Debug)]
pub struct Written {
    pub report: PathBuf,
    /// Every file written, relative to the report's folder.
    pub files: Vec<String>,
    /// The table per service and phase, as in report.md.
    pub rows: Vec<SummaryRow>,
    pub comparison: Option<Comparison>,
}

struct Out<'a> {
    dir: &'a Path,
    files: Vec<String>,
}

impl Out<'_> {
    fn write(&mut self, rel: &str, bytes: &[u8]) -> Result<(), ReportError> {
        let path = self.dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| ReportError::Io {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        std::fs::write(&path, bytes).map_err(|source| ReportError::Io { path, source })?;
        self.files.push(rel.to_string());
        Ok(())
    }
}

/// The raw files of one run, named as in a run folder (so the report's
/// folder reads as one): timelines, histogram log (rebuilt from the
/// timelines: the values the agent recorded), scenario.
fn raw_files(out: &mut Out<'_>, prefix: &str, run: &RunData) -> Result<(), ReportError> {
    let mut lines = String::new();
    for t in &run.timelines {
        lines.push_str(&serde_json::to_string(t).expect("timelines serialize"));
        lines.push('\n');
    }
    out.write(&format!("{prefix}{TIMELINES}"), lines.as_bytes())?;
    let mut hlog = Vec::new();
    let start = UNIX_EPOCH + Duration::from_nanos(run.started_unix_nanos.max(0) as u64);
    let length = Duration::from_nanos(
        (run.finished_unix_nanos.unwrap_or(run.started_unix_nanos) - run.started_unix_nanos).max(0)
            as u64,
    );
    bounce_wire::hist::write_hlog_from_timelines(
        &run.timelines,
        &mut hlog,
        start,
        length,
        &format!(
            "bounce run {} ({} on {})",
            run.run_id, run.scenario, run.deployment
        ),
    )?;
    out.write(&format!("{prefix}{HISTOGRAMS}"), &hlog)?;
    if let Some(yaml) = &run.scenario_yaml {
        out.write(&format!("{prefix}{SCENARIO}"), yaml.as_bytes())?;
    }
    Ok(())
}

/// The services of a phase, slowest p99 first.
fn services_by_p99(rows: &[SummaryRow], phase: Phase) -> Vec<&str> {
    let mut v: Vec<(&str, f64)> = rows
        .iter()
        .filter(|r| r.phase == phase)
        .filter_map(|r| Some((r.service.as_str(), r.p99?)))
        .collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    v.into_iter().map(|(s, _)| s).collect()
}

/// Writes `report.md`, `charts/*.svg`, the raw files (and the baseline's
/// under `baseline/`) and, with a baseline, `comparison.json` into `dir`.
pub fn write_report(
    run: &RunData,
    baseline: Option<&RunData>,
    opts: &ReportOptions,
    dir: &Path,
) -> Result<Written, ReportError> {
    let report = dir.join("report.md");
    if report.exists() {
        return Err(ReportError::Exists(dir.to_path_buf()));
    }
    std::fs::create_dir_all(dir).map_err(|source| ReportError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let (run, baseline) = if opts.redact {
        let hosts: Vec<&str> = run
            .host_names()
            .into_iter()
            .chain(baseline.map(|b| b.host_names()).unwrap_or_default())
            .collect();
        let r = redact::Redactor::new(hosts);
        (
            redact::run(run, &r)?,
            baseline.map(|b| redact::run(b, &r)).transpose()?,
        )
    } else {
        (run.clone(), baseline.cloned())
    };
    let mut out = Out {
        dir,
        files: Vec::new(),
    };
    // The table from one histogram at a time; dense histograms only for
    // what the charts draw (a fleet run can have thousands of series).
    let rows = rows_from_timelines(&run.timelines);
    let comparison = baseline
        .as_ref()
        .map(|b| compare::compare(&run.timelines, &b.timelines, opts.compare));

    let mut links = markdown::Links {
        percentile_charts: Vec::new(),
        services_chart: None,
        files: Vec::new(),
    };
    let phases: Vec<Phase> = Phase::ALL
        .into_iter()
        .filter(|p| rows.iter().any(|r| r.phase == *p && r.count > 0))
        .collect();
    for phase in phases {
        let services = services_by_p99(&rows, phase);
        let shown = &services[..services.len().min(opts.chart_services)];
        let mut drawn = Vec::new();
        for s in shown {
            let base = baseline
                .as_ref()
                .map(|b| histogram_of(&b.timelines, s, phase))
                .filter(|h| !h.is_empty());
            drawn.push((s, histogram_of(&run.timelines, s, phase), base));
        }
        let mut lines = Vec::new();
        for (i, (s, h, base)) in drawn.iter().enumerate() {
            let color = svg::color(i);
            lines.push(svg::Line {
                label: s.to_string(),
                hist: h,
                dashed: false,
                color,
            });
            if let Some(bh) = base {
                lines.push(svg::Line {
                    label: format!("{s} (baseline)"),
                    hist: bh,
                    dashed: true,
                    color,
                });
            }
        }
        let title = if services.len() > shown.len() {
            format!(
                "{phase}: the {} slowest of {} services by p99",
                shown.len(),
                services.len()
            )
        } else {
            format!("{phase}: percentile distribution")
        };
        let rel = format!("charts/percentiles-{phase}.svg");
        out.write(&rel, svg::percentile_chart(&title, &lines).as_bytes())?;
        links.percentile_charts.push((phase, rel));
    }
    let mut bars = service_bars(&run.timelines, &rows);
    let all_bars = bars.len();
    bars.truncate(MAX_BARS);
    if !bars.is_empty() {
        let rel = "charts/services.svg".to_string();
        let title = if all_bars > bars.len() {
            format!("p50 per service: the {} slowest of {all_bars}", bars.len())
        } else {
            "p50 per service: where a restart's time goes".to_string()
        };
        out.write(
            &rel,
            svg::stacked_bars(
                &title,
                &["stop", "start", "ready (Ceph OSD: last milestone)"],
                &bars,
            )
            .as_bytes(),
        )?;
        links.services_chart = Some(rel);
    }
    raw_files(&mut out, "", &run)?;
    if let Some(b) = &baseline {
        raw_files(&mut out, "baseline/", b)?;
    }
    if let Some(c) = &comparison {
        out.write(
            "comparison.json",
            serde_json::to_string_pretty(c)
                .expect("comparisons serialize")
                .as_bytes(),
        )?;
    }
    for f in &out.files {
        if f.starts_with("charts/") {
            continue;
        }
        let what = match f.rsplit('/').next().unwrap_or(f) {
            TIMELINES => {
                "one JSON line per restart: every boundary with its source, phases, probes, events"
            }
            HISTOGRAMS => {
                "HdrHistogram interval log, one histogram per service/phase, values in µs (HdrHistogram's Java, Python or JS readers open it)"
            }
            SCENARIO => "the scenario as the agent read it",
            "comparison.json" => "the comparison, machine-readable",
            _ => "",
        };
        let what = if f.starts_with("baseline/") {
            format!("baseline: {what}")
        } else {
            what.to_string()
        };
        links.files.push((f.clone(), what));
    }
    let words = where_time_went(&run.timelines, &rows);
    if let Some(details) = markdown::render_details(&run, &rows, &words) {
        out.write("details.md", details.as_bytes())?;
        links.files.insert(
            0,
            (
                "details.md".into(),
                "every row of the table and every sentence (report.md shows the slowest)".into(),
            ),
        );
    }
    let text = markdown::render(&markdown::Input {
        run: &run,
        rows: &rows,
        baseline: baseline.as_ref(),
        comparison: comparison.as_ref(),
        links: &links,
        slowest: opts.slowest,
        words: &words,
    });
    out.write("report.md", text.as_bytes())?;
    Ok(Written {
        report,
        files: out.files,
        rows,
        comparison,
    })
}

/// One bar per service, p50 of stop, start, and ready (or the last Ceph
/// milestone), slowest first.
fn service_bars(timelines: &[TimelineRecord], rows: &[bounce_wire::SummaryRow]) -> Vec<svg::Bar> {
    let p50 = |service: &str, phase: Phase| bounce_wire::summary::p50_of(rows, service, phase);
    let mut bars: Vec<svg::Bar> = bounce_wire::summary::services(timelines)
        .into_iter()
        .map(|s| {
            let after = p50(s, Phase::Ready).or_else(|| {
                [
                    Phase::PgsClean,
                    Phase::PgsActive,
                    Phase::OsdUp,
                    Phase::OsdBoot,
                ]
                .into_iter()
                .find_map(|p| p50(s, p))
            });
            svg::Bar {
                label: s.to_string(),
                segments: vec![
                    p50(s, Phase::Stop).unwrap_or(0.0),
                    p50(s, Phase::Start).unwrap_or(0.0),
                    after.unwrap_or(0.0),
                ],
            }
        })
        .filter(|b| b.segments.iter().any(|v| *v > 0.0))
        .collect();
    bars.sort_by(|a, b| {
        let t = |b: &svg::Bar| b.segments.iter().sum::<f64>();
        t(b).total_cmp(&t(a))
    });
    bars
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeline(service: &str, node: &str, secs: f64) -> TimelineRecord {
        let mut t: TimelineRecord = serde_json::from_value(serde_json::json!({
            "run_id": "big", "deployment": "d", "scenario": "s", "node": node,
            "target": {"kind": "docker", "name": service, "id": "x"},
            "service": service, "iteration": 1, "action": "restart", "outcome": "ok",
            "error": null, "exit_code": null, "signals": ["SIGTERM", "SIGKILL"],
            "oom_killed": false, "phases": {}, "timestamps": [], "probes": []
        }))
        .unwrap();
        t.phases.insert(Phase::Stop, secs);
        t.phases.insert(Phase::Start, secs / 10.0);
        t
    }

    #[test]
    fn a_large_fleet_run_still_pastes_into_an_issue_and_details_hold_every_row() {
        let timelines: Vec<TimelineRecord> = (0..600)
            .map(|i| {
                timeline(
                    &format!("svc_{i:03}"),
                    &format!("n{}", i % 50),
                    1.0 + i as f64 / 100.0,
                )
            })
            .collect();
        let run = RunData {
            run_id: bounce_wire::RunId::parse("big").unwrap(),
            deployment: "d".into(),
            scenario: "s".into(),
            scenario_yaml: None,
            nodes: Vec::new(),
            started_unix_nanos: 0,
            finished_unix_nanos: Some(1),
            planned: 600,
            not_started: 0,
            interrupted: false,
            timelines,
            origin: "test".into(),
        };
        let dir = std::env::temp_dir().join(format!("bounce-report-big-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let w = write_report(&run, None, &ReportOptions::default(), &dir).unwrap();
        let md = std::fs::read_to_string(&w.report).unwrap();
        // GitHub's comment limit.
        assert!(md.len() < 65_536, "{} bytes", md.len());
        assert!(md.contains("The 100 slowest of 1200 rows by p99"), "{md}");
        assert!(
            md.contains("| svc_599 | stop | 1 | 6.992s |"),
            "the slowest first: {md}"
        );
        let details = std::fs::read_to_string(dir.join("details.md")).unwrap();
        assert_eq!(details.matches("| stop |").count(), 600);
        assert_eq!(details.matches("stop waited for SIGKILL").count(), 600);
        let svg = std::fs::read_to_string(dir.join("charts/services.svg")).unwrap();
        assert!(svg.contains("the 40 slowest of 600"), "bar chart capped");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
