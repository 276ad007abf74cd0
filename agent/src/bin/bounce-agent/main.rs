//! The `bounce-agent` command line: its commands, and which module carries
//! out each. Thin on purpose: each command is one function in its own module
//! (`check`, `plan`, `run`, `push`, `recover`, `watch`), and the work is in
//! the library.

mod args;
mod check;
mod fleet;
mod plan;
mod push;
mod recover;
mod run;
mod signals;
mod watch;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

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

// Each command's doc comment is its help text; its flags are in its module.
#[derive(Subcommand)]
enum Command {
    /// Validate scenario files completely, without contacting any engine.
    Check(check::Args),
    /// Resolve a scenario against the live Docker engine and systemd managers and print exactly what
    /// `run` would restart, in which order and within which limits. Touches nothing.
    Plan(plan::Args),
    /// Carry out a scenario: restart its targets and measure every phase.
    ///
    /// Writes timelines.jsonl (as each restart ends), histograms.hlog and
    /// summary.json into the output folder. Exit status 1 when any restart did
    /// not end `ok` or the run was interrupted.
    ///
    /// Ctrl-C, SIGTERM and SIGHUP start no new restart and wait up to --drain
    /// for those in flight; a second one stops waiting. Either way the run
    /// writes what it measured, unsets the Ceph flags it set, and starts
    /// again what its restarts left stopped.
    ///
    /// Before a step that leaves a target down (the stop of stop-start, a
    /// kill), the run writes its intent into --state-dir; if the agent is
    /// killed, the next `run` (or `recover`) starts that target again before
    /// anything else.
    Run(run::Args),
    /// Undo what a killed agent left: start again the targets it stopped
    /// or killed and did not see running again (its intents in --state-dir),
    /// and unset the Ceph flags it set. `run` does the same first;
    /// `--dry-run` (and `plan`) only say it. Exit status 1 when something
    /// is still open.
    Recover(recover::Args),
    /// Send what is left in a run folder's spool to a collector (after the
    /// collector was away during the run). Safe to repeat: the collector
    /// stores each batch once.
    Push(push::Args),
    /// Time every container restart on this node that bounce did not make
    /// (docker restart, stop then start, a crash the restart policy undoes,
    /// a recreate under the same name), until SIGINT or SIGTERM.
    ///
    /// Follows the engine's events (read-only: it never restarts, stops or
    /// execs anything but exec probes from --config) and writes one run per
    /// node and UTC day into --output (watch-NODE-DATE/timelines.jsonl),
    /// each restart with `origin: watch` and its `cause`.
    Watch(watch::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let done = rt.block_on(async {
        match cli.command {
            Command::Check(a) => check::check(a),
            Command::Plan(a) => plan::plan(a).await,
            Command::Run(a) => run::run(a).await,
            Command::Push(a) => push::push(a).await,
            Command::Recover(a) => recover::recover(a).await,
            Command::Watch(a) => watch::watch(a).await,
        }
    });
    match done {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
