//! `runs`: the runs a collector holds (oldest first), from its store or
//! over the read API.

use crate::cmd::at::RunsAt;
use anyhow::{Result, bail};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    at: RunsAt,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let Some(source) = args.at.open()? else {
        bail!("give --store (the collector's SQLite file) or --collector URL");
    };
    let runs = source.runs()?;
    // `dropped` (only once retention dropped something): restarts whose
    // timelines retention dropped, counted in `restarts`, kept merged per
    // deployment and hour.
    let dropped = runs
        .iter()
        .any(|r| r["timelines_dropped"].as_i64() > Some(0));
    let column = |n: String| {
        if dropped {
            format!(" {n:>8}")
        } else {
            String::new()
        }
    };
    println!(
        "{:<28} {:<16} {:<20} {:<24} {:>6} {:>9}{}",
        "run",
        "deployment",
        "scenario",
        "started",
        "nodes",
        "restarts",
        column("dropped".into())
    );
    for r in &runs {
        println!(
            "{:<28} {:<16} {:<20} {:<24} {:>6} {:>9}{}",
            r["run_id"].as_str().unwrap_or("?"),
            r["deployment"].as_str().unwrap_or("?"),
            r["scenario"].as_str().unwrap_or("?"),
            bounce_wire::civil::utc(r["started_unix_nanos"].as_i64().unwrap_or(0)),
            r["agents"].as_i64().unwrap_or(0),
            r["restarts"].as_i64().unwrap_or(0),
            column(r["timelines_dropped"].as_i64().unwrap_or(0).to_string())
        );
    }
    Ok(ExitCode::SUCCESS)
}
