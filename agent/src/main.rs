//! The command line: thin on purpose; the work is in the library.

use anyhow::{Context, Result};
use bounce_agent::output::{RunInfo, RunOutput, new_run_id};
use bounce_agent::runner::{self, RunOptions, StopReason};
use bounce_agent::scenario::{Scenario, duration};
use bounce_agent::sources::Sources;
use bounce_agent::stream::{Collector, RunJoin, Spool, Streamer, drain};
use bounce_agent::target::ResolvedTarget;
use bounce_agent::timeline::{RunLabels, realtime_nanos};
use bounce_agent::{facts, plan};
use bounce_wire::Outcome;
use bounce_wire::ingest::{RunEnd, RunHeader};
use bounce_wire::summary::render_table;
use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Restart services on this node and measure how long each phase of each restart takes.
///
/// Start with `check` (the scenario is well-formed), then `plan` (what would be
/// restarted, against the live engine, touching nothing), then `run`.
#[derive(Parser)]
#[command(version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate scenario files completely, without contacting any engine.
    Check {
        #[arg(required = true)]
        scenarios: Vec<PathBuf>,
    },
    /// Resolve a scenario against the live Docker engine and systemd managers and print exactly what
    /// `run` would restart, in which order and within which limits. Touches nothing.
    Plan {
        scenario: PathBuf,
        /// Node name recorded with the results (default: the host name).
        #[arg(long)]
        node: Option<String>,
        /// Where bounce keeps what must survive a crash (Ceph flags it set).
        #[arg(long, default_value = "/var/lib/bounce")]
        state_dir: PathBuf,
    },
    /// Carry out a scenario: restart its targets and measure every phase.
    ///
    /// Writes timelines.jsonl (as each restart ends), histograms.hlog and
    /// summary.json into the output folder. Exit status 1 when any restart did
    /// not end `ok` or the run was interrupted. Ctrl-C starts no new restart and
    /// waits up to --drain for those in flight; a second Ctrl-C stops waiting.
    Run {
        scenario: PathBuf,
        /// Folder for the results; must not already hold a run.
        #[arg(long, short)]
        output: PathBuf,
        /// Node name recorded with the results (default: the host name).
        #[arg(long)]
        node: Option<String>,
        /// Join a fleet run: agents given the same id (one per node, each
        /// with its own --node name) land in one run at the collector, and
        /// one report covers them all. Default: a new id for this node.
        #[arg(long, value_parser = parse_run_id)]
        run_id: Option<String>,
        /// After Ctrl-C, how long restarts in flight may take to finish.
        #[arg(long, default_value = "60s", value_parser = parse_duration)]
        drain: Duration,
        /// Print one line per restart instead of a progress bar.
        #[arg(long)]
        no_progress: bool,
        /// Where bounce keeps what must survive a crash (Ceph flags it set,
        /// to unset on the next start if this run is killed).
        #[arg(long, default_value = "/var/lib/bounce")]
        state_dir: PathBuf,
        /// Also send the results to a bounce-collector (http://HOST:PORT).
        /// Batches wait in DIR/spool until acknowledged; the run never depends on the collector.
        #[arg(long)]
        collector: Option<String>,
        #[command(flatten)]
        auth: Auth,
        /// After the run, how long to wait for the collector to acknowledge what is still in the spool.
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        flush: Duration,
        /// Start even if the collector does not answer now (batches wait in the spool).
        #[arg(long)]
        collector_may_be_away: bool,
    },
    /// Send what is left in a run folder's spool to a collector (after the
    /// collector was away during the run). Safe to repeat: the collector
    /// stores each batch once.
    Push {
        /// The run folder (`run --output`).
        dir: PathBuf,
        #[arg(long)]
        collector: String,
        #[command(flatten)]
        auth: Auth,
        /// Give up after this long.
        #[arg(long, default_value = "5m", value_parser = parse_duration)]
        timeout: Duration,
    },
}

#[derive(clap::Args)]
struct Auth {
    /// File holding the collector's agent token (else BOUNCE_TOKEN).
    #[arg(long)]
    token_file: Option<PathBuf>,
}

impl Auth {
    fn token(&self) -> Result<String> {
        let token = match &self.token_file {
            Some(f) => std::fs::read_to_string(f)
                .with_context(|| format!("{}: cannot read the token", f.display()))?
                .trim()
                .to_string(),
            None => std::env::var("BOUNCE_TOKEN").unwrap_or_default(),
        };
        if token.is_empty() {
            anyhow::bail!("no collector token: give --token-file or set BOUNCE_TOKEN");
        }
        Ok(token)
    }
}

/// Connects to every source of truth the scenario names and resolves its targets.
async fn resolve(
    scenario: &Scenario,
    state_dir: &std::path::Path,
) -> Result<(Sources, Vec<ResolvedTarget>)> {
    let cannot = || format!("{}: cannot plan", scenario.file.display());
    let sources = Sources::connect(scenario, state_dir)
        .await
        .with_context(cannot)?;
    let targets = sources
        .resolve(&scenario.targets)
        .await
        .with_context(cannot)?;
    Ok((sources, targets))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    duration::parse(s)
}

/// A run id the collector accepts: letters, digits and `_ . - @ :`.
fn parse_run_id(s: &str) -> Result<String, String> {
    if s.is_empty()
        || s.len() > 128
        || !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-@:".contains(c))
    {
        return Err(format!(
            "{s:?}: a run id is 1-128 letters, digits and _ . - @ : (e.g. upgrade-2026-11-25)"
        ));
    }
    Ok(s.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn dispatch(cmd: Command) -> Result<ExitCode> {
    match cmd {
        Command::Push {
            dir,
            collector,
            auth,
            timeout,
        } => {
            let collector = Collector::new(&collector, auth.token()?)?;
            let spool = Spool::open(&dir)?;
            let before = spool.pending().len();
            let wake = tokio::sync::Notify::new();
            let deadline = tokio::time::sleep(timeout);
            // Stop as soon as the spool is empty, or at the deadline.
            let empty = async {
                while !spool.pending().is_empty() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            };
            let (sent, refused) = drain(&spool, &collector, &wake, async {
                tokio::select! { _ = deadline => {}, _ = empty => {} }
            })
            .await;
            let left = spool.pending().len();
            println!(
                "{sent} of {before} batch(es) acknowledged, {refused} refused, {left} left in the spool"
            );
            Ok(if left == 0 && refused == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Check { scenarios } => {
            let mut bad = 0;
            for path in scenarios {
                match Scenario::load(&path) {
                    Ok(s) => println!(
                        "{}: ok ({} target entr{}, repeat {}, concurrency {})",
                        path.display(),
                        s.targets.len(),
                        if s.targets.len() == 1 { "y" } else { "ies" },
                        s.repeat,
                        s.concurrency
                    ),
                    Err(e) => {
                        eprintln!("{e}");
                        bad += 1;
                    }
                }
            }
            Ok(if bad == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            })
        }
        Command::Plan {
            scenario,
            node,
            state_dir,
        } => {
            let scenario = Scenario::load(&scenario)?;
            let (_sources, targets) = resolve(&scenario, &state_dir).await?;
            let node = node.unwrap_or_else(facts::node_hostname);
            print!("{}", plan::render(&scenario, &targets, &node));
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            scenario,
            output,
            node,
            run_id,
            drain,
            no_progress,
            state_dir,
            collector,
            auth,
            flush,
            collector_may_be_away,
        } => {
            let scenario = Scenario::load(&scenario)?;
            // Checked before anything restarts: the URL, the token, that the
            // collector takes it and, when joining a fleet run, that it would
            // take this node's results (unless told to start without it).
            let collector = match &collector {
                Some(url) => {
                    let c = Collector::new(url, auth.token()?)?;
                    let joining = RunJoin {
                        run_id: run_id.clone(),
                        deployment: scenario.deployment.to_string(),
                        scenario: scenario.name.to_string(),
                        agent: node.clone().unwrap_or_else(facts::node_hostname),
                    };
                    match c.check(Some(&joining)).await {
                        Ok(()) => {}
                        Err(e) if collector_may_be_away => {
                            eprintln!("warning: {e}; measuring anyway, batches wait in the spool")
                        }
                        Err(e) => anyhow::bail!(
                            "{e} (nothing was restarted; --collector-may-be-away starts anyway and spools)"
                        ),
                    }
                    Some(c)
                }
                None => None,
            };
            // A run that was killed may have left flags set: undo that first.
            for line in bounce_agent::ceph::flags::recover(&state_dir)
                .await
                .map_err(|e| anyhow::anyhow!("{e} (nothing was restarted)"))?
            {
                eprintln!("{line}");
            }
            // Everything is resolved and checked before the first restart.
            let (sources, targets) = resolve(&scenario, &state_dir).await?;
            let docker_version = match sources.docker() {
                Some(d) => d.version().await,
                None => None,
            };
            let mut node_facts = facts::gather(docker_version);
            facts::of_targets(&mut node_facts, &targets).await;
            let node = node.unwrap_or_else(|| node_facts.hostname.clone());
            let mut out = RunOutput::create(&output, &scenario.text)?;
            let labels = RunLabels {
                run_id: run_id.unwrap_or_else(new_run_id),
                deployment: scenario.deployment.to_string(),
                scenario: scenario.name.to_string(),
                node: node.clone(),
            };
            let planned = targets.len() as u64 * scenario.repeat as u64;
            eprintln!(
                "run {}: {} restart(s) of {} target(s) on {}, at most {} at once; results in {}",
                labels.run_id,
                planned,
                targets.len(),
                node,
                scenario.concurrency,
                output.display()
            );
            let started = realtime_nanos();
            if let Some(c) = collector {
                out.stream_to(Streamer::start(
                    c,
                    &output,
                    node.clone(),
                    RunHeader {
                        run_id: labels.run_id.clone(),
                        deployment: labels.deployment.clone(),
                        scenario: labels.scenario.clone(),
                        node: bounce_wire::NodeFacts {
                            hostname: node.clone(),
                            ..node_facts.clone()
                        },
                        started_unix_nanos: started,
                        planned,
                        scenario_yaml: Some(scenario.text.clone()),
                    },
                )?);
            }
            let opts = RunOptions {
                drain,
                show_progress: !no_progress && std::io::stderr().is_terminal(),
            };
            let (out, end) = runner::run(&sources, &scenario, &targets, &labels, out, &opts).await;
            // Whatever ended the run: undo what it set, before anything else.
            for line in sources.end_run().await {
                eprintln!("{line}");
            }
            let interrupted = end.stopped == Some(StopReason::Interrupted);
            let (summary, streamer) = out.finish(RunInfo {
                run_id: labels.run_id.clone(),
                deployment: labels.deployment.clone(),
                scenario: labels.scenario.clone(),
                node: bounce_wire::NodeFacts {
                    hostname: node,
                    ..node_facts
                },
                started_unix_nanos: started,
                finished_unix_nanos: realtime_nanos(),
                planned,
                interrupted,
            })?;
            println!("{}", render_table(&summary.rows));
            for (service, lines) in &summary.where_time_went {
                for line in lines {
                    println!("{service}: {line}");
                }
            }
            let not_ok: u64 = summary
                .outcomes
                .iter()
                .filter(|(o, _)| **o != Outcome::Ok)
                .map(|(_, n)| n)
                .sum();
            let ok = summary.outcomes.get(&Outcome::Ok).copied().unwrap_or(0);
            println!(
                "{ok} ok, {not_ok} not ok, {} not started; results in {}",
                summary.not_started,
                output.display()
            );
            if let Some(s) = streamer {
                let report = s
                    .finish(
                        RunEnd {
                            finished_unix_nanos: summary.finished_unix_nanos,
                            not_started: summary.not_started,
                            interrupted: summary.interrupted,
                        },
                        flush,
                    )
                    .await?;
                if report.pending == 0 && report.refused == 0 {
                    println!("collector: all {} batch(es) acknowledged", report.sent);
                } else {
                    println!(
                        "collector: {} batch(es) acknowledged, {} refused, {} still in {} (send them with `bounce-agent push {}`)",
                        report.sent,
                        report.refused,
                        report.pending,
                        report.spool.display(),
                        output.display()
                    );
                }
            }
            match end.stopped {
                Some(StopReason::Interrupted) => {
                    println!(
                        "interrupted: what was measured until then is written above and in the folder"
                    )
                }
                Some(StopReason::Failure) => {
                    println!("stopped after a failed restart (on_failure: abort)")
                }
                Some(StopReason::OutputError) => eprintln!(
                    "error: stopped because the results could not be written: {}",
                    end.output_error.unwrap_or_default()
                ),
                None => {}
            }
            Ok(if not_ok == 0 && end.stopped.is_none() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}
