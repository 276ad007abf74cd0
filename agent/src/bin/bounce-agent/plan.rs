//! `bounce-agent plan`: resolve a scenario against the live sources of truth
//! and print what `run` would do, touching nothing. `run` resolves the same
//! way (`resolve`).

use anyhow::{Context, Result};
use bounce_agent::facts;
use bounce_agent::intent::Journal;
use bounce_agent::recover::Mode;
use bounce_agent::scenario::Scenario;
use bounce_agent::sources::Sources;
use bounce_agent::target::ResolvedTarget;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    scenario: PathBuf,
    /// Node name recorded with the results (default: the host name).
    #[arg(long)]
    node: Option<String>,
    /// Where bounce keeps what must survive a crash (Ceph flags it set,
    /// intents of steps that leave a target down): what is open is said first.
    #[arg(long, default_value = "/var/lib/bounce")]
    state_dir: PathBuf,
}

pub async fn plan(args: Args) -> Result<ExitCode> {
    let scenario = Scenario::load(&args.scenario)?;
    // What a killed agent left down or set comes first: `run` would start
    // it again, unset it.
    crate::recover::intents(&args.state_dir, Mode::Report, Duration::ZERO).await?;
    crate::recover::flags(&args.state_dir, Mode::Report).await?;
    let (_sources, targets) = resolve(&scenario, &args.state_dir, None).await?;
    let node = args.node.unwrap_or_else(facts::node_hostname);
    print!("{}", bounce_agent::plan::render(&scenario, &targets, &node));
    Ok(ExitCode::SUCCESS)
}

/// Connects to every source of truth the scenario names and resolves its targets.
/// Restarts write their intents in `journal` (`None` for `plan`).
pub async fn resolve(
    scenario: &Scenario,
    state_dir: &Path,
    journal: Option<Arc<Journal>>,
) -> Result<(Sources, Vec<ResolvedTarget>)> {
    let cannot = || format!("{}: cannot plan", scenario.file.display());
    let sources = Sources::connect(scenario, state_dir, journal)
        .await
        .with_context(cannot)?;
    let targets = sources
        .resolve(&scenario.targets)
        .await
        .with_context(cannot)?;
    Ok((sources, targets))
}
