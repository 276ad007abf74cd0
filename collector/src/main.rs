//! bounce-collector: where the agents' measurements come together.
//!
//! Today it reads an agent's output folder back (`summarize`), independently
//! of the agent's own summary: the timelines and the histogram log must agree.
//! The ingest API, the store and /metrics come with the collector issue.

use anyhow::{Context, Result, bail};
use bounce_wire::summary::{render_table, rows_from};
use bounce_wire::{PhaseHistograms, TimelineRecord};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Merge and present bounce measurements.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Read an agent's --output folder (timelines.jsonl and histograms.hlog),
    /// check that the two agree, and print the table per service and phase.
    Summarize {
        /// The folder `bounce-agent run --output` wrote.
        dir: PathBuf,
        /// Print the table as JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::Summarize { dir, json } => {
            let timelines = read_timelines(&dir.join("timelines.jsonl"))?;
            let hlog_path = dir.join("histograms.hlog");
            let bytes = std::fs::read(&hlog_path).with_context(|| {
                format!("{}: cannot read (did the run finish?)", hlog_path.display())
            })?;
            let hists = PhaseHistograms::read_hlog(&bytes)
                .with_context(|| format!("{}", hlog_path.display()))?;
            let rows = rows_from(&timelines, &hists);
            for r in &rows {
                let in_hlog = hists.get(&r.service, r.phase).map(|h| h.len()).unwrap_or(0);
                if in_hlog != r.count {
                    bail!(
                        "{}: {}/{} holds {in_hlog} values but timelines.jsonl has {}; the folder is inconsistent",
                        hlog_path.display(),
                        r.service,
                        r.phase,
                        r.count
                    );
                }
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                let runs: std::collections::BTreeSet<&str> =
                    timelines.iter().map(|t| t.run_id.as_str()).collect();
                println!(
                    "{} restart(s) from run(s) {}",
                    timelines.len(),
                    runs.into_iter().collect::<Vec<_>>().join(", ")
                );
                print!("{}", render_table(&rows));
            }
            Ok(())
        }
    }
}

fn read_timelines(path: &Path) -> Result<Vec<TimelineRecord>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .with_context(|| format!("{}:{}: not a timeline", path.display(), i + 1))
        })
        .collect()
}
