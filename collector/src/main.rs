//! bounce-collector: where the agents' measurements come together.
//!
//! `serve` runs the ingest API, the embedded store, the read API and
//! /metrics; `summarize` reads an agent's output folder back, independently
//! of the agent's own summary (the timelines and the histogram log must agree).

mod api;
mod metrics;
mod remote;
mod sparse;
mod store;

use anyhow::{Context, Result, bail};
use bounce_report::{CompareOptions, ReportOptions, RunData, Verdict, write_report};
use bounce_wire::summary::{format_seconds, render_table, rows_from};
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
    /// read. An agent token line may name the agents it may send as:
    /// `TOKEN cmp-*,ctl1` (`*` matches anything). /metrics is open unless
    /// --protect-metrics.
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
    /// List the runs a collector holds (newest last): id, deployment,
    /// scenario, start, nodes, restarts. From the store or a running collector.
    Runs {
        #[command(flatten)]
        at: RunsAt,
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
    Report {
        /// A run id from the collector (`bounce-collector runs` lists them).
        run: Option<String>,
        #[command(flatten)]
        at: RunsAt,
        /// An agent's --output folder instead of RUN.
        #[arg(long, conflicts_with = "run")]
        from: Option<PathBuf>,
        /// Compare with this run from the collector.
        #[arg(long)]
        baseline: Option<String>,
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
    },
}

/// Where runs are read from: a collector's store or a running collector.
#[derive(clap::Args)]
struct RunsAt {
    /// The collector's store (the SQLite file `serve --store` uses; read only).
    #[arg(long, conflicts_with = "collector")]
    store: Option<PathBuf>,
    /// Or a running collector (http://HOST:PORT), read with an admin token
    /// from --token-file or BOUNCE_ADMIN_TOKEN.
    #[arg(long)]
    collector: Option<String>,
    /// A file holding the admin token.
    #[arg(long)]
    token_file: Option<PathBuf>,
}

impl RunsAt {
    /// The source named, if any.
    fn open(&self) -> Result<Option<Source>> {
        Ok(match (&self.store, &self.collector) {
            (Some(path), _) => Some(Source::Store(open_store_for_reading(path)?)),
            (None, Some(url)) => Some(Source::Remote(remote::Remote::new(
                url,
                &tokens(self.token_file.as_deref(), "BOUNCE_ADMIN_TOKEN")?,
            )?)),
            (None, None) => None,
        })
    }
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
            ))
            .map(|()| ExitCode::SUCCESS),
        other => run(other),
    };
    match result {
        Ok(code) => code,
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
    if let Some(short) = out
        .iter()
        .map(|t| t.split_whitespace().next().unwrap_or(""))
        .find(|t| t.len() < 16)
    {
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
    let agent_tokens = tokens(agent_token_file.as_deref(), "BOUNCE_AGENT_TOKEN")?
        .iter()
        .map(|line| api::AgentToken::parse(line))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("agent tokens: {e}"))?;
    let admin_tokens = tokens(admin_token_file.as_deref(), "BOUNCE_ADMIN_TOKEN")?;
    if let Some(bound) = admin_tokens
        .iter()
        .find(|t| t.contains(char::is_whitespace))
    {
        bail!(
            "admin tokens: {}...: an admin token cannot be bound to agent names (only agent tokens can)",
            bound.chars().take(4).collect::<String>()
        );
    }
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

fn run(cmd: Command) -> Result<ExitCode> {
    match cmd {
        Command::Serve { .. } => unreachable!("served by main"),
        Command::Runs { at } => {
            let runs = match at.open()? {
                Some(Source::Store(s)) => s.runs()?,
                Some(Source::Remote(r)) => r.runs()?,
                None => bail!("give --store (the collector's SQLite file) or --collector URL"),
            };
            println!(
                "{:<28} {:<16} {:<20} {:<24} {:>6} {:>9}",
                "run", "deployment", "scenario", "started", "nodes", "restarts"
            );
            for r in &runs {
                println!(
                    "{:<28} {:<16} {:<20} {:<24} {:>6} {:>9}",
                    r["run_id"].as_str().unwrap_or("?"),
                    r["deployment"].as_str().unwrap_or("?"),
                    r["scenario"].as_str().unwrap_or("?"),
                    bounce_wire::civil::utc(r["started_unix_nanos"].as_i64().unwrap_or(0)),
                    r["agents"].as_i64().unwrap_or(0),
                    r["restarts"].as_i64().unwrap_or(0)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
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
            Ok(ExitCode::SUCCESS)
        }
        Command::Report {
            run,
            at,
            from,
            baseline,
            baseline_from,
            out,
            redact,
            alpha,
            threshold,
            min_change,
            slowest,
        } => {
            let source = at.open()?;
            if source.is_none() && (run.is_some() || baseline.is_some()) {
                bail!("a run id needs --store (the collector's SQLite file) or --collector URL");
            }
            let load = |id: Option<String>, dir: Option<PathBuf>| -> Result<Option<RunData>> {
                match (id, dir) {
                    (Some(id), _) => match source.as_ref().expect("checked above") {
                        Source::Store(s) => {
                            let mut data = s.run_data(&id)?.with_context(|| {
                                format!("the store has no run {id:?} (`bounce-collector runs` lists them)")
                            })?;
                            data.origin = format!("collector store, run {id}");
                            Ok(Some(data))
                        }
                        Source::Remote(r) => Ok(Some(r.run(&id)?)),
                    },
                    (None, Some(dir)) => Ok(Some(RunData::from_dir(&dir)?)),
                    (None, None) => Ok(None),
                }
            };
            let run_data =
                load(run, from)?.context("which run? give RUN (with --store) or --from DIR")?;
            let base_data = load(baseline, baseline_from)?;
            if !(0.0..1.0).contains(&alpha) || alpha == 0.0 {
                bail!("--alpha {alpha} must be between 0 and 1");
            }
            let opts = ReportOptions {
                redact,
                compare: CompareOptions {
                    alpha,
                    threshold,
                    min_change_seconds: min_change,
                    ..CompareOptions::default()
                },
                slowest,
                ..ReportOptions::default()
            };
            let written = write_report(&run_data, base_data.as_ref(), &opts, &out)?;
            print!("{}", render_table(&written.rows));
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
                out.display()
            );
            Ok(code)
        }
    }
}

/// Where `report RUN` reads runs from.
enum Source {
    Store(store::Store),
    Remote(remote::Remote),
}

/// The store, for reading only: never created by a report (a typo in the
/// path must not make an empty store).
fn open_store_for_reading(path: &Path) -> Result<store::Store> {
    if !path.is_file() {
        bail!(
            "{}: no such store (the file `serve --store` writes)",
            path.display()
        );
    }
    store::Store::open(path).with_context(|| format!("{}: cannot open the store", path.display()))
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
