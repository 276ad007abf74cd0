//! `bounce-agent push`: send what is left in a run folder's spool to a
//! collector, until the spool is empty or the timeout; first, the batches
//! that never reached the spool are rebuilt from the folder into it.

use crate::args::{Auth, parse_duration};
use anyhow::Result;
use bounce_agent::stream::{Spool, drain};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    /// The run folder (`run --output`).
    dir: PathBuf,
    #[arg(long)]
    collector: String,
    #[command(flatten)]
    auth: Auth,
    /// Give up after this long.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    timeout: Duration,
}

/// Exit status 1 unless every batch was acknowledged.
pub async fn push(args: Args) -> Result<ExitCode> {
    let collector = args.auth.collector(&args.collector)?;
    let spool = Spool::open(&args.dir)?;
    // Batches a killed agent held only in memory (its spool was full).
    let restored = spool.restore(&args.dir)?;
    if restored > 0 {
        println!(
            "{restored} batch(es) never reached the spool (the agent ended first): rebuilt from {}",
            args.dir.display()
        );
    }
    let before = spool.pending().len();
    let wake = tokio::sync::Notify::new();
    let deadline = tokio::time::sleep(args.timeout);
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
