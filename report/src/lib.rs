//! Reports of bounce runs, for the people who can fix the slowness: a
//! markdown page that pastes into an upstream issue, SVG charts it links to,
//! the raw files so anyone can re-analyse, and the comparison of a run with
//! a baseline (before/after an upgrade, cluster A vs cluster B).
//!
//! Input is a [`RunData`], read from an agent's output folder
//! ([`RunData::from_dir`]) or from the collector's store; the report is
//! built from the timelines alone, so both give the same numbers.

pub mod compare;
pub mod input;
pub mod markdown;
pub mod redact;
pub mod svg;

pub use compare::{CompareOptions, Comparison, Verdict};
pub use input::{InputError, RunData};

use bounce_wire::summary::rows_from;
use bounce_wire::{Phase, PhaseHistograms, TimelineRecord};
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
    Input(#[from] InputError),
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

/// What [`write_report`] produced.
#[derive(Debug)]
pub struct Written {
    pub report: PathBuf,
    /// Every file written, relative to the report's folder.
    pub files: Vec<String>,
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

/// The raw files of one run: timelines, histogram log (rebuilt from the
/// timelines: the values the agent recorded), scenario.
fn raw_files(out: &mut Out<'_>, prefix: &str, run: &RunData) -> Result<(), ReportError> {
    let mut lines = String::new();
    for t in &run.timelines {
        lines.push_str(&serde_json::to_string(t).expect("timelines serialize"));
        lines.push('\n');
    }
    out.write(&format!("{prefix}timelines.jsonl"), lines.as_bytes())?;
    let mut hlog = Vec::new();
    let start = UNIX_EPOCH + Duration::from_nanos(run.started_unix_nanos.max(0) as u64);
    let length = Duration::from_nanos(
        (run.finished_unix_nanos.unwrap_or(run.started_unix_nanos) - run.started_unix_nanos).max(0)
            as u64,
    );
    PhaseHistograms::from_timelines(&run.timelines).write_hlog(
        &mut hlog,
        start,
        length,
        &format!(
            "bounce run {} ({} on {})",
            run.run_id, run.scenario, run.deployment
        ),
    )?;
    out.write(&format!("{prefix}histograms.hlog"), &hlog)?;
    if let Some(yaml) = &run.scenario_yaml {
        out.write(&format!("{prefix}scenario.yaml"), yaml.as_bytes())?;
    }
    Ok(())
}

/// The services of a phase, slowest p99 first.
fn services_by_p99(hists: &PhaseHistograms, phase: Phase) -> Vec<&str> {
    let mut v: Vec<(&str, u64)> = hists
        .by_key
        .iter()
        .filter(|((_, p), h)| *p == phase && !h.is_empty())
        .map(|((s, _), h)| (s.as_str(), h.value_at_quantile(0.99)))
        .collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
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
            run.redacted(&r)?,
            baseline.map(|b| b.redacted(&r)).transpose()?,
        )
    } else {
        (run.clone(), baseline.cloned())
    };
    let mut out = Out {
        dir,
        files: Vec::new(),
    };
    let hists = PhaseHistograms::from_timelines(&run.timelines);
    let base_hists = baseline
        .as_ref()
        .map(|b| PhaseHistograms::from_timelines(&b.timelines));
    let rows = rows_from(&run.timelines, &hists);
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
        .filter(|p| hists.by_key.keys().any(|(_, q)| q == p))
        .collect();
    for phase in phases {
        let services = services_by_p99(&hists, phase);
        let shown = &services[..services.len().min(opts.chart_services)];
        let mut lines = Vec::new();
        for (i, s) in shown.iter().enumerate() {
            let color = svg::color(i);
            lines.push(svg::Line {
                label: s.to_string(),
                hist: hists.get(s, phase).expect("listed from hists"),
                dashed: false,
                color,
            });
            if let Some(bh) = base_hists.as_ref().and_then(|b| b.get(s, phase)) {
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
    let bars = service_bars(&run.timelines, &rows);
    if !bars.is_empty() {
        let rel = "charts/services.svg".to_string();
        out.write(
            &rel,
            svg::stacked_bars(
                "p50 per service: where a restart's time goes",
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
            "timelines.jsonl" => {
                "one JSON line per restart: every boundary with its source, phases, probes, events"
            }
            "histograms.hlog" => {
                "HdrHistogram interval log, one histogram per service/phase, values in µs (HdrHistogram's Java, Python or JS readers open it)"
            }
            "scenario.yaml" => "the scenario as the agent read it",
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
    let text = markdown::render(&markdown::Input {
        run: &run,
        rows: &rows,
        baseline: baseline.as_ref(),
        comparison: comparison.as_ref(),
        links: &links,
        slowest: opts.slowest,
    });
    out.write("report.md", text.as_bytes())?;
    Ok(Written {
        report,
        files: out.files,
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
