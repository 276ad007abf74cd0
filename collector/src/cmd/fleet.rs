//! `fleet status|pause|resume|abort|resolve RUN [NODE]`: an operator's
//! control of a fleet run, over a running collector's admin API; the
//! fleet's status after it in words, or as the API's JSON (`--json`).

use crate::cmd::tokens::tokens;
use crate::fleet::{FleetView, now};
use crate::remote::Remote;
use anyhow::Result;
use bounce_wire::RunId;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// status: every node, the queue, each limit's use, failures; pause: no
    /// new lease (restarts in flight finish); resume: grant again (refused
    /// while a node is lost); abort: no new lease ever, every agent ends its
    /// run cleanly; resolve NODE: a lost node's restarts are over (its
    /// slots are freed; the fleet stays paused until resume).
    #[arg(value_enum)]
    action: Action,
    run: RunId,
    /// The lost node (resolve only).
    node: Option<String>,
    /// The running collector (http://HOST:PORT).
    #[arg(long, default_value = "http://127.0.0.1:9465")]
    collector: String,
    /// A file holding the admin token (else BOUNCE_ADMIN_TOKEN).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// The status as the admin API's JSON, for scripts.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    trust: bounce_client::Trust,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Action {
    Status,
    Pause,
    Resume,
    Abort,
    Resolve,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let remote = Remote::new(
        &args.collector,
        &args.trust,
        &tokens(args.token_file.as_deref(), "BOUNCE_ADMIN_TOKEN")?,
    )?;
    let base = format!("/api/v1/fleets/{}", args.run);
    let view = match (args.action, &args.node) {
        (Action::Status, None) => remote.get_json(&base)?,
        (Action::Resolve, Some(node)) => remote.post_json(&format!("{base}/resolve/{node}"))?,
        (Action::Resolve, None) => anyhow::bail!("resolve needs the lost NODE"),
        (Action::Pause, None) => remote.post_json(&format!("{base}/pause"))?,
        (Action::Resume, None) => remote.post_json(&format!("{base}/resume"))?,
        (Action::Abort, None) => remote.post_json(&format!("{base}/abort"))?,
        (_, Some(_)) => anyhow::bail!("only resolve takes a NODE"),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        let view: FleetView = serde_json::from_value(view)
            .map_err(|e| anyhow::anyhow!("the collector's fleet status is not one: {e}"))?;
        print!("{}", words(&view));
    }
    Ok(ExitCode::SUCCESS)
}

fn words(view: &FleetView) -> String {
    match view {
        FleetView::Open { status, .. } => status.words(now()),
        FleetView::Joining {
            run,
            expected,
            joined,
            ..
        } => format!(
            "fleet run {run}: not open yet, {} of {expected} node(s) joined ({}); it opens when all have\n",
            joined.len(),
            joined.join(", ")
        ),
        FleetView::Broken { run, why } => format!("fleet run {run}: broken: {why}\n"),
    }
}
