//! `serve`: the ingest API, the read API and /metrics over one store,
//! with the tokens from files or the environment.

use crate::api::auth::{AgentToken, Tokens};
use crate::api::routes::router;
use crate::api::state::AppState;
use crate::cmd::tokens::tokens;
use crate::store::Store;
use crate::writer::Writer;
use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
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
}

pub fn run(args: Args) -> Result<ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(serve(args))?;
    Ok(ExitCode::SUCCESS)
}

/// Agent tokens (possibly bound to names) and admin tokens; at least one.
fn read_tokens(args: &Args) -> Result<Tokens> {
    let agent = tokens(args.agent_token_file.as_deref(), "BOUNCE_AGENT_TOKEN")?
        .iter()
        .map(|line| AgentToken::parse(line))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("agent tokens: {e}"))?;
    let admin = tokens(args.admin_token_file.as_deref(), "BOUNCE_ADMIN_TOKEN")?;
    if let Some(bound) = admin.iter().find(|t| t.contains(char::is_whitespace)) {
        bail!(
            "admin tokens: {}...: an admin token cannot be bound to agent names (only agent tokens can)",
            bound.chars().take(4).collect::<String>()
        );
    }
    if agent.is_empty() && admin.is_empty() {
        bail!(
            "no tokens: give --agent-token-file/--admin-token-file or BOUNCE_AGENT_TOKEN/BOUNCE_ADMIN_TOKEN (nothing could ingest)"
        );
    }
    Ok(Tokens::new(agent, admin))
}

async fn serve(args: Args) -> Result<()> {
    let tokens = read_tokens(&args)?;
    let open = || {
        Store::open(&args.store)
            .with_context(|| format!("{}: cannot open the store", args.store.display()))
    };
    let state = std::sync::Arc::new(AppState {
        writer: Writer::start(open()?),
        reader: std::sync::Mutex::new(open()?),
        tokens,
        protect_metrics: args.protect_metrics,
        per_node_metrics: args.per_node_metrics,
        counters: Default::default(),
    });
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    eprintln!(
        "bounce-collector: listening on http://{}, store {}",
        listener.local_addr()?,
        args.store.display()
    );
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
