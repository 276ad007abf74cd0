//! bounce-collector: where the agents' measurements come together.
//!
//! `serve` runs the ingest API, the embedded store, the read API and
//! /metrics; `runs` lists what a collector holds; `summarize` reads an
//! agent's output folder back, independently of the agent's own summary;
//! `report` writes a report. This file parses the command line and hands
//! each command to its module in `cmd/`.

mod api;
mod cmd;
mod fleet;
#[cfg(test)]
mod fuzz;
mod metrics;
mod net;
mod remote;
mod retention;
mod series;
mod store;
mod validate;
mod writer;

use clap::{Parser, Subcommand};
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
    /// Serve the ingest API (POST /api/v1/ingest), the read API (/api/v1/runs...)
    /// and /metrics, keeping everything in an embedded SQLite store.
    ///
    /// Tokens: one per line in the files, or BOUNCE_AGENT_TOKEN /
    /// BOUNCE_ADMIN_TOKEN / BOUNCE_METRICS_TOKEN. Agent tokens may only
    /// ingest; admin tokens may read and manage, not ingest; metrics tokens
    /// may only read /metrics. An agent token line may name the agents it
    /// may send as: `TOKEN cmp-*,ctl1` (`*` matches anything). /metrics is
    /// open unless --protect-metrics.
    Serve(cmd::serve::Args),
    /// List the runs a collector holds (newest last): id, deployment,
    /// scenario, start, nodes, restarts. From the store or a running collector.
    Runs(cmd::runs::Args),
    /// Read an agent's --output folder (timelines.jsonl and histograms.hlog),
    /// check that the two agree, and print the table per service and phase.
    Summarize(cmd::summarize::Args),
    /// Write a report for an upstream issue: report.md (GitHub markdown),
    /// SVG charts, the raw timelines, histogram log and scenario; with a
    /// baseline, the comparison per service and phase.
    ///
    /// The run comes from the collector (RUN with --store or --collector)
    /// or from an agent's --output folder (--from); the baseline likewise
    /// (--baseline or --baseline-from). Exit status: 0 report written (no significant
    /// slowdown), 1 report written and some service/phase is significantly
    /// slower than the baseline beyond the threshold, 2 error.
    #[command(verbatim_doc_comment)]
    Report(cmd::report::Args),
    /// What a store holds and what retention dropped from it: size, vacuum
    /// mode, the oldest timeline kept, the hours and days of merged
    /// histograms, rows it could not read; --vacuum converts an older store
    /// to incremental auto-vacuum (offline).
    Store(cmd::store::Args),
    /// A fleet run's status, and an operator's control of it: pause,
    /// resume, abort, resolve a lost node (over a running collector's admin API).
    Fleet(cmd::fleet::Args),
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Serve(args) => cmd::serve::run(args),
        Command::Runs(args) => cmd::runs::run(args),
        Command::Summarize(args) => cmd::summarize::run(args),
        Command::Report(args) => cmd::report::run(args),
        Command::Fleet(args) => cmd::fleet::run(args),
        Command::Store(args) => cmd::store::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
