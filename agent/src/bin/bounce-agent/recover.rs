//! `bounce-agent recover`: undo what an agent that was killed left behind
//! (targets it stopped or killed and did not see running again, Ceph flags
//! it set), as the next `run` would before anything else; `--dry-run` only
//! says it. `run` and `plan` call [`intents`] the same way.

use crate::args::parse_duration;
use anyhow::Result;
use bounce_agent::ceph;
use bounce_agent::recover::{self, Mode};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// How long one target may take to come back when an intent is undone.
pub const UNDO_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(clap::Args)]
pub struct Args {
    /// The state folder the agents on this node use.
    #[arg(long, default_value = "/var/lib/bounce")]
    state_dir: PathBuf,
    /// Say what is open, undo nothing.
    #[arg(long)]
    dry_run: bool,
    /// How long each target may take to run again.
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    timeout: Duration,
}

/// Exit status 0 when nothing is left open, 1 when something could not be
/// undone (or, with --dry-run, when something is open).
pub async fn recover(args: Args) -> Result<ExitCode> {
    let mode = if args.dry_run {
        Mode::Report
    } else {
        Mode::Undo
    };
    let open = intents(&args.state_dir, mode, args.timeout).await?;
    if !args.dry_run {
        for line in ceph::flags::recover(&args.state_dir)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
        {
            println!("{line}");
        }
    }
    if open == 0 {
        println!("nothing left open in {}", args.state_dir.display());
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "{open} intent(s) still open in {}",
            args.state_dir.display()
        );
        Ok(ExitCode::from(1))
    }
}

/// Says (and in [`Mode::Undo`] undoes) the intents agents that ended left
/// in `state_dir`; returns how many are still open.
pub async fn intents(state_dir: &Path, mode: Mode, timeout: Duration) -> Result<usize> {
    let r = recover::recover(state_dir, mode, timeout).await?;
    for line in &r.lines {
        println!("{line}");
    }
    Ok(r.left_open)
}
