//! `bounce-agent recover`: undo what an agent that was killed left behind
//! (targets it stopped or killed and did not see running again, Ceph flags
//! it set), as the next `run` would before anything else; `--dry-run` only
//! says it. `plan` calls [`intents`] and [`flags`] the same way, `run`
//! [`intents`].

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
    let flags = flags(&args.state_dir, mode).await?;
    if open + flags == 0 {
        println!("nothing left open in {}", args.state_dir.display());
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "{open} intent(s) and {flags} Ceph flag(s) still open in {}",
            args.state_dir.display()
        );
        Ok(ExitCode::from(1))
    }
}

/// Says (and in [`Mode::Undo`] unsets) the Ceph flags a run that ended
/// left set in `state_dir`; returns how many are still set. Undoing that
/// fails is an error (the cluster could not be asked).
pub async fn flags(state_dir: &Path, mode: Mode) -> Result<usize> {
    let (lines, left) = match mode {
        Mode::Report => {
            let r = ceph::flags::report(state_dir).map_err(|e| anyhow::anyhow!("{e}"))?;
            (r.lines, r.left_set)
        }
        Mode::Undo => {
            let lines = ceph::flags::recover(state_dir)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            (lines, 0)
        }
    };
    for line in lines {
        println!("{line}");
    }
    Ok(left)
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
