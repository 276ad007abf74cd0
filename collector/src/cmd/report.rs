//! `report`: a report for an upstream issue from a run in the collector or
//! an agent's folder, compared with a baseline when one is given; the exit
//! status says whether something got significantly slower.

use crate::cmd::at::RunsAt;
use crate::cmd::range::{self, Range};
use crate::cmd::retained;
#[cfg(test)]
use crate::store::Store;
use anyhow::{Context, Result, bail};
use bounce_report::{CompareOptions, ReportOptions, Verdict, write_report};
use bounce_wire::summary::{format_seconds, render_table};
use bounce_wire::{Origin, RunData, RunFolder, RunId};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// A run id from the collector (`bounce-collector runs` lists them).
    run: Option<RunId>,
    #[command(flatten)]
    at: RunsAt,
    /// An agent's --output folder instead of RUN.
    #[arg(long, conflicts_with = "run")]
    from: Option<PathBuf>,
    /// Instead of RUN: every restart of this deployment, from all its runs
    /// (a watcher's run per node and UTC day included), that opened within
    /// --since/--until (needs --store or --collector).
    #[arg(long, conflicts_with_all = ["run", "from"])]
    deployment: Option<String>,
    /// With --deployment: from this UTC instant on (2026-11-30, 2026-11-30T10:15:00Z).
    #[arg(long, requires = "deployment", value_parser = range::parse_instant)]
    since: Option<i64>,
    /// With --deployment: before this UTC instant.
    #[arg(long, requires = "deployment", value_parser = range::parse_instant)]
    until: Option<i64>,
    /// With --deployment: only bounce's own restarts (run) or only observed ones (watch).
    #[arg(long, requires = "deployment", value_parser = range::parse_origin)]
    origin: Option<Origin>,
    /// Compare with this run from the collector.
    #[arg(long)]
    baseline: Option<RunId>,
    /// Compare with the run in this agent --output folder.
    #[arg(long, conflicts_with = "baseline")]
    baseline_from: Option<PathBuf>,
    /// Where to write (created; must not hold a report already).
    #[arg(long)]
    out: PathBuf,
    /// Replace host names and IP addresses everywhere (node-01, ip-01).
    #[arg(long)]
    redact: bool,
    /// Significance level of the Mann-Whitney U test.
    #[arg(long, default_value_t = 0.01)]
    alpha: f64,
    /// A p50 change below this fraction of the baseline is no change (`10%` or `0.1`).
    #[arg(long, default_value = "10%", value_parser = parse_fraction)]
    threshold: f64,
    /// ...and so is one below this duration.
    #[arg(long, default_value = "50ms", value_parser = parse_seconds)]
    min_change: f64,
    /// How many of the slowest restarts to list.
    #[arg(long, default_value_t = 10)]
    slowest: usize,
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    let v = match s.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|v| v / 100.0),
        None => s.trim().parse::<f64>(),
    }
    .map_err(|_| format!("{s:?} is not a fraction (write 10% or 0.1)"))?;
    if !(0.0..10.0).contains(&v) {
        return Err(format!("{s:?} is out of range (0% to 1000%)"));
    }
    Ok(v)
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let (num, unit) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else {
        return Err(format!("{s:?}: give a unit (50ms, 1s)"));
    };
    num.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| *v >= 0.0 && v.is_finite())
        .map(|v| v * unit)
        .ok_or_else(|| format!("{s:?} is not a duration (50ms, 1s)"))
}

/// An agent's folder as a run; a torn last line is skipped and said.
fn from_folder(dir: &std::path::Path) -> Result<RunData> {
    let read = RunFolder::new(dir).read()?;
    if let Some(torn) = &read.torn {
        eprintln!("warning: {torn}");
    }
    Ok(read.run)
}

pub fn run(args: Args) -> Result<ExitCode> {
    let source = args.at.open()?;
    if source.is_none() && (args.run.is_some() || args.baseline.is_some()) {
        bail!("a run id needs --store (the collector's SQLite file) or --collector URL");
    }
    if source.is_none() && args.deployment.is_some() {
        bail!("--deployment needs --store (the collector's SQLite file) or --collector URL");
    }
    let load = |id: Option<RunId>, dir: Option<PathBuf>| -> Result<Option<RunData>> {
        match (id, dir) {
            (Some(id), _) => source.as_ref().expect("checked above").run(&id).map(Some),
            (None, Some(dir)) => from_folder(&dir).map(Some),
            (None, None) => Ok(None),
        }
    };
    // What retention dropped from what the report covers, said at its end.
    let mut dropped = None;
    let run_data = match args.deployment {
        Some(deployment) => {
            let source = source.as_ref().expect("checked above");
            let range = Range {
                deployment,
                since: args.since,
                until: args.until,
                origin: args.origin,
            };
            let compacted = retained::of_range(source, &range)?;
            let data = range.gather(source, compacted.as_ref())?;
            if let Some(c) = compacted.as_ref().filter(|c| !c.left_out.is_empty()) {
                eprintln!(
                    "warning: {} merged row(s) of this range could not be read and are left out (named in the report's last section); the first: {}",
                    c.left_out.len(),
                    c.left_out[0]
                );
            }
            dropped = compacted.map(|c| retained::range_section(&range.deployment, &c));
            data
        }
        None => {
            if let (Some(id), Some(source)) = (&args.run, &source) {
                dropped = retained::of_run(source, id)?
                    .map(|(n, restarts, d)| retained::run_section(n, restarts, &d));
            }
            load(args.run, args.from)?
                .context("which run? give RUN (with --store), --from DIR or --deployment D")?
        }
    };
    let base_data = load(args.baseline, args.baseline_from)?;
    let alpha = args.alpha;
    if !(0.0..1.0).contains(&alpha) || alpha == 0.0 {
        bail!("--alpha {alpha} must be between 0 and 1");
    }
    let opts = ReportOptions {
        redact: args.redact,
        compare: CompareOptions {
            alpha,
            threshold: args.threshold,
            min_change_seconds: args.min_change,
            ..CompareOptions::default()
        },
        slowest: args.slowest,
        ..ReportOptions::default()
    };
    let written = write_report(&run_data, base_data.as_ref(), &opts, &args.out)?;
    print!("{}", render_table(&written.rows));
    if let Some(section) = &dropped {
        retained::append(&written.report, section)?;
        eprintln!(
            "note: retention dropped timelines this report covers: see its last section, {}",
            section
                .lines()
                .next()
                .unwrap_or("")
                .trim_start_matches("## ")
        );
    }
    let mut code = ExitCode::SUCCESS;
    if let Some(c) = &written.comparison {
        println!();
        for ch in c
            .changes
            .iter()
            .filter(|ch| ch.verdict != Verdict::NoSignificantChange)
        {
            println!(
                "{:<8} {}/{}: p50 {} -> {}{}",
                match ch.verdict {
                    Verdict::Slower => "SLOWER",
                    Verdict::Faster => "faster",
                    _ => "note",
                },
                ch.service,
                ch.phase,
                format_seconds(ch.baseline.p50),
                format_seconds(ch.run.p50),
                match (ch.p_adjusted, ch.verdict) {
                    (Some(p), Verdict::Slower | Verdict::Faster) =>
                        format!(" (p = {})", bounce_report::markdown::p_value(p)),
                    _ => format!(" ({})", ch.verdict.as_str()),
                }
            );
        }
        println!("{}", bounce_report::markdown::verdict_line(c));
        if c.regressed() {
            code = ExitCode::from(1);
        }
    }
    eprintln!(
        "report: {} ({} files in {})",
        written.report.display(),
        written.files.len(),
        args.out.display()
    );
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::compact::tests::{
        DAY, NOW, compact_all, month_old_and_fresh, spoil, temp_store,
    };
    use bounce_wire::civil::utc;
    use clap::Parser;

    #[derive(Parser)]
    struct Report {
        #[command(flatten)]
        args: Args,
    }

    /// `report --store S --deployment d` over the month-old restarts, into `out`.
    fn report(store: &std::path::Path, out: &std::path::Path) -> Result<ExitCode> {
        let (since, until) = (utc(NOW - 31 * DAY), utc(NOW - 29 * DAY));
        let cmd = Report::try_parse_from([
            "report",
            "--store",
            store.to_str().unwrap(),
            "--deployment",
            "d",
            "--since",
            &since,
            "--until",
            &until,
            "--out",
            out.to_str().unwrap(),
        ])
        .unwrap();
        run(cmd.args)
    }

    #[test]
    fn a_range_report_goes_on_without_an_unreadable_merged_row_and_says_which() {
        let (path, mut s) = temp_store("report-leftout");
        month_old_and_fresh(&mut s);
        compact_all(&mut s, NOW - 14 * DAY);
        spoil(
            &s,
            "UPDATE compacted_histograms SET histogram = 'garbage' WHERE service = 'keystone'",
        );
        drop(s);
        let out =
            std::env::temp_dir().join(format!("bounce-report-leftout-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        report(&path, &out).expect("the report goes on");
        let text = std::fs::read_to_string(out.join("report.md")).unwrap();
        assert!(text.contains("of deployment `d` in this range"), "{text}");
        assert!(
            text.contains("merged row(s) of this range could not be read and are left out"),
            "{text}"
        );
        assert!(
            text.contains("- compacted_histograms of ") && text.contains("(keystone, stop;"),
            "{text}"
        );
        assert!(text.contains("| nova_api | stop |"), "{text}");

        // Nothing of the range readable: a clear failure, naming the rows.
        let s = Store::open(&path).unwrap();
        spoil(&s, "UPDATE compacted_histograms SET histogram = 'garbage'");
        spoil(
            &s,
            "UPDATE compacted_outcomes SET outcome = CAST(outcome AS BLOB)",
        );
        drop(s);
        let _ = std::fs::remove_dir_all(&out);
        let e = format!("{:#}", report(&path, &out).unwrap_err());
        assert!(
            e.contains("nothing of deployment \"d\" in that range could be read")
                && e.contains("compacted_histograms of "),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&out);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
}
