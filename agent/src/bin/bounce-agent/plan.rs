//! `bounce-agent plan`: resolve a scenario against the live sources of truth
//! and print what `run` would do, touching nothing. `run` resolves the same
//! way (`resolve`).

use anyhow::{Context, Result};
use bounce_agent::facts;
use bounce_agent::scenario::Scenario;
use bounce_agent::sources::Sources;
use bounce_agent::target::ResolvedTarget;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    scenario: PathBuf,
    /// Node name recorded with the results (default: the host name).
    #[arg(long)]
    node: Option<String>,
    /// Where bounce keeps what must survive a crash (Ceph flags it set).
    #[arg(long, default_value = "/var/lib/bounce")]
    state_dir: PathBuf,
}

pub async fn plan(args: Args) -> Result<ExitCode> {
    let scenario = Scenario::load(&args.scenario)?;
    let (_sources, targets) = resolve(&scenario, &args.state_dir).await?;
    let node = args.node.unwrap_or_else(facts::node_hostname);
    print!("{}", bounce_agent::plan::render(&scenario, &targets, &node));
    Ok(ExitCode::SUCCESS)
}

/// Connects to every source of truth the scenario names and resolves its targets.
pub async fn resolve(
    scenario: &Scenario,
    state_dir: &Path,
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
