//! bounce-collector: where the agents' measurements come together.
//!
//! `serve` runs the ingest API, the embedded store, the read API and
//! /metrics; `summarize` reads an agent's output folder back, independently
//! of the agent's own summary (the timelines and the histogram log must agree).

mod api;
mod metrics;
mod store;

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
    /// Serve the ingest API (POST /api/v1/ingest), the read API (/api/v1/runs...)
    /// and /metrics, keeping everything in an embedded SQLite store.
    ///
    /// Tokens: one per line in the files, or BOUNCE_AGENT_TOKEN /
    /// BOUNCE_ADMIN_TOKEN. Agent tokens may only ingest; admin tokens may also
    /// read. /metrics is open unless --protect-metrics.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9465")]
        listen: std::net::SocketAddr,
        /// The store (SQLite database file; created if missing).
        #[arg(long)]
        store: PathBuf,
        #[arg(long)]
        agent_token_file: Option<PathBuf>,
        #[arg(long)]
        admin_token_file: Option<PathBuf>,
        /// Require an admin token for /metrics too.
        #[arg(long)]
        protect_metrics: bool,
        /// Also export bounce_node_restarts_total with a `node` label (one
        /// series per node, service and outcome: mind the cardinality).
        #[arg(long)]
        per_node_metrics: bool,
    },
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
    let result = match Cli::parse().command {
        Command::Serve {
            listen,
            store,
            agent_token_file,
            admin_token_file,
            protect_metrics,
            per_node_metrics,
        } => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime")
            .block_on(serve(
                listen,
                store,
                agent_token_file,
                admin_token_file,
                (protect_metrics, per_node_metrics),
            )),
        other => run(other),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Tokens from a file (one per line, `#` comments) and an environment variable.
fn tokens(file: Option<&Path>, env: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    if let Some(f) = file {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("{}: cannot read", f.display()))?;
        out.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(String::from),
        );
    }
    if let Ok(t) = std::env::var(env)
        && !t.trim().is_empty()
    {
        out.push(t.trim().to_string());
    }
    if let Some(short) = out.iter().find(|t| t.len() < 16) {
        bail!(
            "a token of {} characters is too short to be a secret (at least 16)",
            short.len()
        );
    }
    Ok(out)
}

async fn serve(
    listen: std::net::SocketAddr,
    store_path: PathBuf,
    agent_token_file: Option<PathBuf>,
    admin_token_file: Option<PathBuf>,
    (protect_metrics, per_node_metrics): (bool, bool),
) -> Result<()> {
    let agent_tokens = tokens(agent_token_file.as_deref(), "BOUNCE_AGENT_TOKEN")?;
    let admin_tokens = tokens(admin_token_file.as_deref(), "BOUNCE_ADMIN_TOKEN")?;
    if agent_tokens.is_empty() && admin_tokens.is_empty() {
        bail!(
            "no tokens: give --agent-token-file/--admin-token-file or BOUNCE_AGENT_TOKEN/BOUNCE_ADMIN_TOKEN (nothing could ingest)"
        );
    }
    let open = || {
        store::Store::open(&store_path)
            .with_context(|| format!("{}: cannot open the store", store_path.display()))
    };
    let state = std::sync::Arc::new(api::AppState {
        writer: api::Writer::start(open()?),
        reader: std::sync::Mutex::new(open()?),
        store_path: store_path.clone(),
        agent_tokens,
        admin_tokens,
        protect_metrics,
        per_node_metrics,
        duplicates: Default::default(),
        rejected: Default::default(),
    });
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    eprintln!(
        "bounce-collector: listening on http://{}, store {}",
        listener.local_addr()?,
        store_path.display()
    );
    axum::serve(listener, api::router(state))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::Serve { .. } => unreachable!("served by main"),
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
