//! `serve`: the ingest API, the read API and /metrics over one store,
//! with the tokens from files or the environment, over TLS (the
//! certificate reloaded on SIGHUP) or, on loopback or when told it is
//! insecure, plain HTTP.

use crate::api::audit::Audit;
use crate::api::auth::{AgentToken, Tokens};
use crate::api::limit::FailureLimit;
use crate::api::routes::router;
use crate::api::state::AppState;
use crate::cmd::tokens::token_lines;
use crate::fleet::Fleets;
use crate::net::listen::{self, Deadlines};
use crate::net::tls::{ServerCert, provider, server_config};
use crate::net::trust::ClientTrust;
use crate::retention::{Keep, Policy, Upkeep, parse_keep, words};
use crate::store::Store;
use crate::writer::Writer;
use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{Signal, SignalKind, signal};

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
    /// Tokens that may read /metrics and nothing else (Prometheus's, with
    /// --protect-metrics), one a line; or BOUNCE_METRICS_TOKEN.
    #[arg(long, value_name = "FILE")]
    metrics_token_file: Option<PathBuf>,
    /// Require a metrics or admin token for /metrics too.
    #[arg(long)]
    protect_metrics: bool,
    /// Also export bounce_node_restarts_total with a `node` label (one
    /// series per node, service and outcome: mind the cardinality).
    #[arg(long)]
    per_node_metrics: bool,
    /// Serve HTTPS with this certificate (PEM, chain first); reloaded,
    /// with --tls-key, on SIGHUP (open connections are kept).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Accept node certificates signed by this CA (PEM) as agent
    /// credentials: the agent may send only as a DNS name of its certificate.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    client_ca: Option<PathBuf>,
    /// Refuse node certificates revoked by these CRLs (PEM `X509 CRL`
    /// blocks; one for each CA that signs node certificates: a certificate
    /// whose issuer has none here is refused). Read again, with --client-ca,
    /// on SIGHUP; open connections are kept.
    #[arg(long, value_name = "FILE", requires = "client_ca")]
    tls_client_crl: Option<PathBuf>,
    /// Serve plain HTTP on an address that is not loopback: tokens and
    /// results then cross the network readable by anyone on it.
    #[arg(long)]
    insecure_plain_http: bool,
    /// Where admin requests are recorded, one JSON line each (`-`: stderr).
    #[arg(long, value_name = "FILE|-", default_value = "-")]
    audit_log: PathBuf,
    /// Refused requests per minute before 429 for the rest of the minute:
    /// counted per client address for unknown credentials (401), per
    /// credential for known ones refused (403) (0: no limit).
    #[arg(long, default_value_t = 10)]
    auth_failures_per_minute: u32,
    /// Seconds a client may take for a request's head once it began (and
    /// for the TLS handshake and a new connection's first request).
    #[arg(long, default_value_t = 10)]
    header_timeout_secs: u64,
    /// Seconds a kept-alive connection may wait for its next request
    /// (agents keep theirs for 300 s, so a run's batches share one TLS
    /// handshake).
    #[arg(long, default_value_t = bounce_client::POOL_IDLE.as_secs() + 30)]
    idle_timeout_secs: u64,
    /// Seconds a whole request may take, body and answer included.
    #[arg(long, default_value_t = 60)]
    request_timeout_secs: u64,
    /// Drop restarts' timelines older than this (14d, 36h; by when the
    /// restart opened), keeping them merged per deployment, hour, service
    /// and phase (reports over old ranges read those). Default: keep all.
    #[arg(long, value_name = "AGE", default_value = "forever", value_parser = Keep::parse)]
    keep_timelines: Keep,
    /// Roll the hourly histograms of days older than this up into one per
    /// day (at least --keep-timelines; reports then read whole days there).
    /// Default: keep them hourly.
    #[arg(long, value_name = "AGE", default_value = "forever", value_parser = Keep::parse)]
    keep_hourly: Keep,
    /// Drop the merged histograms (hourly and daily) older than this, and
    /// runs left without timelines once their agents are quiet (at least
    /// --keep-hourly, or --keep-timelines). Default: keep all.
    #[arg(long, value_name = "AGE", default_value = "forever", value_parser = Keep::parse)]
    keep_histograms: Keep,
    /// A run (its batch keys, which make a resent batch a duplicate, and
    /// its fleet log) expires only once no batch of it arrived for this
    /// long; a run some agent never ended, only once quiet past
    /// --keep-histograms too. Its batches' seqs are kept, compactly, for
    /// --keep-histograms after that: a resend then is still a duplicate.
    #[arg(long, value_name = "AGE", default_value = "2d", value_parser = parse_every)]
    resend_window: Duration,
    /// How often retention looks for work when it had none.
    #[arg(long, value_name = "AGE", default_value = "1m", value_parser = parse_every)]
    retention_every: Duration,
    /// Rows one retention step handles (one transaction between ingest groups).
    #[arg(long, default_value_t = 100, hide = true)]
    retention_chunk: usize,
}

fn parse_every(s: &str) -> Result<Duration, String> {
    parse_keep(s)?.ok_or_else(|| format!("{s:?}: give an interval (1m, 30s)"))
}

/// The policy the flags set. A store made without incremental
/// auto-vacuum is served as it is (freed pages are reused, not given back):
/// converting it takes a VACUUM of the whole file, done offline by
/// `store --vacuum`, never at start.
fn retention(args: &Args, store: &Store) -> Result<Option<Upkeep>> {
    let policy = Policy {
        keep_timelines: args.keep_timelines.0,
        keep_hourly: args.keep_hourly.0,
        keep_histograms: args.keep_histograms.0,
        resend_window: args.resend_window,
        every: args.retention_every,
        chunk: args.retention_chunk.max(1),
        vacuum_pages: 256,
    };
    policy.check().map_err(|e| anyhow::anyhow!(e))?;
    if !policy.deletes() {
        return Ok(None);
    }
    let forever = |k: &Keep| k.0.map_or("forever".into(), words);
    eprintln!(
        "bounce-collector: retention: timelines kept {}, hourly histograms {}, all histograms {}; a run expires once quiet for {}",
        forever(&args.keep_timelines),
        forever(&args.keep_hourly),
        forever(&args.keep_histograms),
        words(args.resend_window)
    );
    if store.auto_vacuum()? != "incremental" {
        eprintln!(
            "bounce-collector: {}: made without incremental auto-vacuum: the space retention frees is reused by new rows but not given back to the file system; to give it back, stop the collector and run `bounce-collector store --store {} --vacuum` once (a VACUUM of {} MiB; needs as much free disk again)",
            args.store.display(),
            args.store.display(),
            store.size_on_disk() / (1 << 20)
        );
    }
    Ok(Some(Upkeep::new(policy)))
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

/// Agent tokens (possibly bound to names), admin and metrics tokens; an
/// agent or admin one at least, unless node certificates can ingest.
fn read_tokens(args: &Args, node_certs: bool) -> Result<Tokens> {
    let agent = token_lines(args.agent_token_file.as_deref(), "BOUNCE_AGENT_TOKEN")?
        .iter()
        .map(|line| {
            AgentToken::parse(&line.text)
                .map_err(|e| anyhow::anyhow!("agent tokens: {}: {e}", line.origin))
        })
        .collect::<Result<Vec<_>>>()?;
    let unbound = |file: Option<&std::path::Path>, env: &str, role: &str| -> Result<Vec<String>> {
        let lines = token_lines(file, env)?;
        if let Some(bound) = lines.iter().find(|t| t.text.contains(char::is_whitespace)) {
            bail!(
                "{role} tokens: {}: {role} tokens cannot be bound to agent names (only agent tokens can)",
                bound.origin
            );
        }
        Ok(lines.into_iter().map(|l| l.text).collect())
    };
    let admin = unbound(
        args.admin_token_file.as_deref(),
        "BOUNCE_ADMIN_TOKEN",
        "admin",
    )?;
    let metrics = unbound(
        args.metrics_token_file.as_deref(),
        "BOUNCE_METRICS_TOKEN",
        "metrics",
    )?;
    if agent.is_empty() && admin.is_empty() && !node_certs {
        bail!(
            "no tokens: give --agent-token-file/--admin-token-file or BOUNCE_AGENT_TOKEN/BOUNCE_ADMIN_TOKEN, or --client-ca (nothing could ingest)"
        );
    }
    Ok(Tokens::new(agent, admin, metrics))
}

async fn serve(args: Args) -> Result<()> {
    // Watched from the start: a SIGHUP while the store opens is no end.
    let hangup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    let tls = tls(&args)?;
    if tls.is_none() && !args.listen.ip().is_loopback() && !args.insecure_plain_http {
        bail!(
            "refusing to serve plain HTTP on {} (not loopback: tokens and results would cross the network in clear): give --tls-cert/--tls-key, or say --insecure-plain-http",
            args.listen
        );
    }
    let tokens = read_tokens(&args, tls.as_ref().is_some_and(|t| t.nodes.is_some()))?;
    let open = || {
        Store::open(&args.store)
            .with_context(|| format!("{}: cannot open the store", args.store.display()))
    };
    let audit = Arc::new(
        Audit::open(&args.audit_log)
            .with_context(|| format!("{}: cannot open the audit log", args.audit_log.display()))?,
    );
    let store = open()?;
    // Fleet runs whose log retention expires are forgotten in memory too.
    let (expired, expired_fleet_runs) = std::sync::mpsc::channel();
    let upkeep = retention(&args, &store)?.map(|u| u.telling(expired));
    let writer = Writer::start(store, upkeep);
    let reader = open()?;
    // Fleet runs as their logs left them; leases in flight get a fresh TTL.
    let fleets = Arc::new(Fleets::new(Box::new(writer.clone())));
    fleets.follow_expiry(expired_fleet_runs);
    for line in fleets.recover(reader.fleet_log()?).await {
        eprintln!("bounce-collector: {line}");
    }
    let ticker = fleets.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_millis(250));
        loop {
            every.tick().await;
            ticker.tick().await;
        }
    });
    let state = Arc::new(AppState {
        writer,
        reader: std::sync::Mutex::new(reader),
        tokens,
        protect_metrics: args.protect_metrics,
        per_node_metrics: args.per_node_metrics,
        counters: Default::default(),
        failures: FailureLimit::new(args.auth_failures_per_minute),
        audit,
        fleets,
    });
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    eprintln!(
        "bounce-collector: listening on {}://{}{}, store {}",
        if tls.is_some() { "https" } else { "http" },
        listener.local_addr()?,
        if args.client_ca.is_some() {
            " (node certificates accepted)"
        } else {
            ""
        },
        args.store.display()
    );
    let deadlines = Deadlines {
        handshake: Duration::from_secs(args.header_timeout_secs),
        header: Duration::from_secs(args.header_timeout_secs),
        idle: Duration::from_secs(args.idle_timeout_secs),
        request: Duration::from_secs(args.request_timeout_secs),
    };
    let (acceptor, reload) = match tls {
        Some(t) => (
            Some(listen::Tls {
                acceptor: t.acceptor,
                nodes: t.nodes.clone(),
            }),
            Reload {
                served: Some(t.served),
                nodes: t.nodes,
            },
        ),
        None => (None, Reload::default()),
    };
    on_hangup(hangup, reload, state.audit.clone());
    // Until now SIGTERM ends the process at once (while the store opens).
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    listen::serve(listener, acceptor, router(state), deadlines, async move {
        // systemd stops with SIGTERM, a terminal with Ctrl-C: both stop cleanly.
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    })
    .await;
    Ok(())
}

/// What SIGHUP reads again when serving TLS.
#[derive(Default)]
struct Reload {
    served: Option<Arc<ServerCert>>,
    nodes: Option<Arc<ClientTrust>>,
}

/// On SIGHUP (`systemctl reload`, logrotate): the certificate, and the
/// client CA with the CRLs, read again when serving TLS (each kept as it
/// was when its files are wrong, saying why), and the audit log opened
/// again; a plain collector does the latter only (the signal never ends it).
fn on_hangup(mut hangup: Signal, reload: Reload, audit: Arc<Audit>) {
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            if let Some(served) = &reload.served {
                match served.reload() {
                    Ok(()) => eprintln!("bounce-collector: SIGHUP: certificate reloaded"),
                    Err(e) => {
                        eprintln!("bounce-collector: SIGHUP: kept the old certificate: {e}")
                    }
                }
            }
            if let Some(nodes) = &reload.nodes {
                match nodes.reload() {
                    Ok(()) => eprintln!(
                        "bounce-collector: SIGHUP: node certificate trust reloaded ({})",
                        nodes.files()
                    ),
                    Err(e) => {
                        eprintln!("bounce-collector: SIGHUP: kept the old client CA and CRLs: {e}")
                    }
                }
            }
            if let Err(e) = audit.reopen() {
                eprintln!(
                    "bounce-collector: SIGHUP: {}: cannot open the audit log again, writing on to the old file: {e}",
                    audit.target().display()
                );
            }
        }
    });
}

/// What serving TLS needs: the acceptor, and what SIGHUP reloads: the
/// certificate it serves and, when node certificates are accepted, their
/// CA and CRLs.
struct Tls {
    acceptor: tokio_rustls::TlsAcceptor,
    served: Arc<ServerCert>,
    nodes: Option<Arc<ClientTrust>>,
}

fn tls(args: &Args) -> Result<Option<Tls>> {
    let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else {
        return Ok(None);
    };
    let served = Arc::new(ServerCert::load(cert, key)?);
    let nodes = match &args.client_ca {
        Some(ca) => Some(Arc::new(ClientTrust::load(
            ca,
            args.tls_client_crl.as_deref(),
            provider(),
        )?)),
        None => None,
    };
    let config = server_config(served.clone(), nodes.clone())?;
    Ok(Some(Tls {
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        served,
        nodes,
    }))
}
