//! `bounce-agent run`: carry out a scenario, one step after the other:
//! take the stop signals, check the collector, undo what a killed run left
//! (targets down, then flags), resolve every target, open the run folder
//! (and the stream), run, start what the run left down and undo what it
//! set, write the summary, print it, flush the stream, and say how the run
//! ended.

use crate::args::{Auth, parse_duration};
use crate::fleet::FleetArgs;
use crate::plan::resolve;
use crate::recover::UNDO_TIMEOUT;
use crate::signals;
use anyhow::Result;
use bounce_agent::intent::Journal;
use bounce_agent::output::RunOutput;
use bounce_agent::recover::{self, Mode};
use bounce_agent::runner::{self, RunEnd, RunOptions, StopReason, Unleased};
use bounce_agent::scenario::Scenario;
use bounce_agent::sources::Sources;
use bounce_agent::stream::{Collector, RunJoin, Streamer};
use bounce_agent::target::{Action, ResolvedTarget};
use bounce_agent::timeline::realtime_nanos;
use bounce_agent::{ceph, facts};
use bounce_wire::folder::TIMELINES;
use bounce_wire::ingest::RunHeader;
use bounce_wire::summary::render_table;
use bounce_wire::{NodeFacts, Outcome, RunId, RunIdentity, RunSummary};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
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
    #[arg(long)]
    run_id: Option<RunId>,
    /// After Ctrl-C, SIGTERM or SIGHUP, how long restarts in flight may take to finish.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    drain: Duration,
    /// Print one line per restart instead of a progress bar.
    #[arg(long)]
    no_progress: bool,
    /// Where bounce keeps what must survive a crash: Ceph flags it set, and
    /// intents (targets it is about to leave down), undone by the next
    /// start if this run is killed.
    #[arg(long, default_value = "/var/lib/bounce")]
    state_dir: PathBuf,
    /// Also send the results to a bounce-collector (https://HOST:PORT with
    /// --ca-file; http:// only to loopback or with --insecure-plain-http).
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
    #[command(flatten)]
    fleet: FleetArgs,
}

/// Exit status 1 when any restart did not end `ok` or the run stopped early.
pub async fn run(args: Args) -> Result<ExitCode> {
    // From here on Ctrl-C, SIGTERM and SIGHUP ask the runner to stop
    // (first: drain, second: abort) instead of ending the process.
    let mut stop = signals::stop_requests()?;
    let scenario = Scenario::load(&args.scenario)?;
    let collector = check_collector(&args, &scenario).await?;
    let fleet = args.fleet.plan(
        &scenario,
        collector.as_ref(),
        args.run_id.as_ref().map(RunId::as_str),
    )?;
    // What a killed agent left down comes back before anything else.
    recover_intents(&args.state_dir).await?;
    recover_flags(&args.state_dir).await?;
    let run_id = args.run_id.clone().unwrap_or_else(RunId::fresh);
    let journal = Arc::new(Journal::new(&args.state_dir, run_id.clone()));
    // Everything is resolved and checked before the first restart.
    let (sources, targets) = resolve(&scenario, &args.state_dir, Some(journal.clone())).await?;
    // Only stops and kills leave a target down (a restart request does not):
    // then the intents must be writable before the first one.
    if targets.iter().any(|t| t.action != Action::Restart) {
        journal
            .check_writable()
            .map_err(|e| anyhow::anyhow!("{e} (nothing was restarted)"))?;
    }
    // A fleet run starts once every node joined (a stop request meanwhile ends it).
    let node = args.node.clone().unwrap_or_else(facts::node_hostname);
    let gate = match fleet {
        Some(plan) => tokio::select! {
            joined = plan.join(&args.fleet, &scenario, &node, &targets) => Some(joined?),
            _ = stop.recv() => anyhow::bail!("stopped while joining the fleet run (nothing was restarted)"),
        },
        None => None,
    };
    let mut out = RunOutput::create(&args.output, &scenario.text)?;
    let this = begin(&args, run_id, &scenario, &sources, &targets).await;
    if let Some(c) = collector {
        let agent = this.identity.node.hostname.clone();
        // A node rejoined after a resolve numbers its batches apart from
        // those its earlier agents sent or still spool.
        let seq_base = gate.as_ref().map_or(0, |g| u64::from(g.epoch()) << 32);
        let streamer = Streamer::start_from(c, &args.output, agent, this.clone(), seq_base)?;
        out.stream_to(streamer);
    }
    let opts = RunOptions {
        drain: args.drain,
        show_progress: !args.no_progress && std::io::stderr().is_terminal(),
    };
    let labels = &this.identity;
    let (out, end) = match &gate {
        Some(g) => runner::run(&scenario, &targets, labels, out, &opts, stop, g).await,
        None => runner::run(&scenario, &targets, labels, out, &opts, stop, &Unleased).await,
    };
    // Nothing more to ask: what was granted and not started goes back.
    if let Some(g) = &gate
        && let Err(e) = g.finish().await
    {
        eprintln!("fleet: could not tell the collector this node is done: {e}");
    }
    // Whatever ended the run: start what its restarts left down (a restart
    // aborted between stop and start), then undo what it set.
    let left = recover::undo_own(&journal, UNDO_TIMEOUT).await;
    for line in &left.lines {
        eprintln!("{line}");
    }
    for line in sources.end_run().await {
        eprintln!("{line}");
    }
    let interrupted = end.stopped == Some(StopReason::Interrupted);
    // The summary is made, printed and sent even when the folder cannot take it.
    let finished = out.finish(&this, realtime_nanos(), interrupted);
    let summary = &finished.summary;
    let not_ok = print_summary(summary, &args.output);
    if let Some(s) = finished.streamer {
        flush_stream(s, summary, args.flush, &args.output).await;
    }
    print_stop(&end);
    if let Err(e) = &finished.written {
        eprintln!(
            "error: the run's summary and histograms could not be written: {e}; {TIMELINES} holds every timeline written (`bounce-collector summarize {}` reads it)",
            args.output.display()
        );
    }
    let clean = end.stopped.is_none() && left.left_open == 0 && finished.written.is_ok();
    Ok(if not_ok == 0 && clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Checked before anything restarts: the URL, the token, that the collector
/// takes it and, when joining a fleet run, that it would take this node's
/// results (unless told to start without it).
async fn check_collector(args: &Args, scenario: &Scenario) -> Result<Option<Collector>> {
    let Some(url) = &args.collector else {
        return Ok(None);
    };
    let c = args.auth.collector(url)?;
    let joining = RunJoin {
        run_id: args.run_id.clone(),
        deployment: scenario.deployment.to_string(),
        scenario: scenario.name.to_string(),
        agent: args.node.clone().unwrap_or_else(facts::node_hostname),
    };
    match c.check(Some(&joining)).await {
        Ok(()) => {}
        Err(e) if args.collector_may_be_away => {
            eprintln!("warning: {e}; measuring anyway, batches wait in the spool")
        }
        Err(e) => anyhow::bail!(
            "{e} (nothing was restarted; --collector-may-be-away starts anyway and spools)"
        ),
    }
    Ok(Some(c))
}

/// A run that was killed may have left targets down: start them again
/// first; one that cannot be started (its engine or bus is away) stops
/// this run before it restarts anything.
async fn recover_intents(state_dir: &Path) -> Result<()> {
    let open = crate::recover::intents(state_dir, Mode::Undo, UNDO_TIMEOUT).await?;
    if open > 0 {
        anyhow::bail!(
            "{open} target(s) an earlier run left down could not be started again (above); nothing was restarted (`bounce-agent recover --state-dir {}` tries again)",
            state_dir.display()
        );
    }
    Ok(())
}

/// A run that was killed may have left flags set: undo that first.
async fn recover_flags(state_dir: &Path) -> Result<()> {
    for line in ceph::flags::recover(state_dir)
        .await
        .map_err(|e| anyhow::anyhow!("{e} (nothing was restarted)"))?
    {
        eprintln!("{line}");
    }
    Ok(())
}

/// What this run is, fixed before its first restart: its identity (with
/// the node's facts under the node name recorded), when it started, how
/// many restarts it plans, the scenario's text. Gathers the node's facts,
/// names the run, says what is about to happen and starts the run's clock.
async fn begin(
    args: &Args,
    run_id: RunId,
    scenario: &Scenario,
    sources: &Sources,
    targets: &[ResolvedTarget],
) -> RunHeader {
    let docker_version = match sources.docker() {
        Some(d) => d.version().await,
        None => None,
    };
    let mut node_facts = facts::gather(docker_version);
    facts::of_targets(&mut node_facts, targets).await;
    let node = args
        .node
        .clone()
        .unwrap_or_else(|| node_facts.hostname.clone());
    let identity = RunIdentity {
        run_id,
        deployment: scenario.deployment.to_string(),
        scenario: scenario.name.to_string(),
        node: NodeFacts {
            hostname: node,
            ..node_facts
        },
    };
    let planned = targets.len() as u64 * scenario.repeat as u64;
    eprintln!(
        "run {}: {} restart(s) of {} target(s) on {}, at most {} at once; results in {}",
        identity.run_id,
        planned,
        targets.len(),
        identity.node.hostname,
        scenario.concurrency,
        args.output.display()
    );
    RunHeader {
        identity,
        started_unix_nanos: realtime_nanos(),
        planned,
        scenario_yaml: Some(scenario.text.clone()),
    }
}

/// The table, where the time went, and the counts; returns how many
/// restarts did not end `ok`.
fn print_summary(summary: &RunSummary, output: &Path) -> u64 {
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
    not_ok
}

/// Sends the run's end and waits up to `flush` for the collector to
/// acknowledge the spool; says what is left and how to send it.
async fn flush_stream(streamer: Streamer, summary: &RunSummary, flush: Duration, output: &Path) {
    let report = streamer
        .finish(
            bounce_wire::ingest::RunEnd {
                finished_unix_nanos: summary.finished_unix_nanos,
                not_started: summary.not_started,
                interrupted: summary.interrupted,
            },
            flush,
        )
        .await;
    if report.pending == 0 && report.refused == 0 && report.unsent == 0 {
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
    if report.unsent > 0 {
        println!(
            "collector: {} batch(es) could be neither spooled nor sent: their timelines are in {}; `bounce-agent push {}` rebuilds and sends them",
            report.unsent,
            output.join(TIMELINES).display(),
            output.display()
        );
    }
}

/// Why the run stopped early, if it did.
fn print_stop(end: &RunEnd) {
    match end.stopped {
        Some(StopReason::Interrupted) => {
            println!("interrupted: what was measured until then is written above and in the folder")
        }
        Some(StopReason::Failure) => {
            println!("stopped after a failed restart (on_failure: abort)")
        }
        Some(StopReason::FleetAborted) => {
            println!("the fleet run was aborted by an operator: nothing new was started")
        }
        Some(StopReason::FleetError) => eprintln!(
            "error: the fleet gave no more leases: {}",
            end.fleet_error.as_deref().unwrap_or_default()
        ),
        Some(StopReason::OutputError) => eprintln!(
            "error: stopped because the results could not be written: {}",
            end.output_error.as_deref().unwrap_or_default()
        ),
        None => {}
    }
}
