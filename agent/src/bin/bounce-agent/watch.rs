//! `bounce-agent watch`: time every container restart on this node that
//! bounce did not make, and every restart of the units its configuration
//! names, until SIGINT or SIGTERM. Reads the configuration, connects to the
//! engine and the systemd managers (and checks the collector), then hands
//! over to the library's `watch`.

use crate::args::{Auth, parse_duration};
use anyhow::Result;
use bounce_agent::ceph::osd::follow::WatchedOsds;
use bounce_agent::docker::DockerEngine;
use bounce_agent::facts;
use bounce_agent::scenario::{Bus, NamePattern};
use bounce_agent::systemd::SystemdManager;
use bounce_agent::systemd::restarts::UnitSet;
use bounce_agent::timeline::realtime_nanos;
use bounce_agent::watch::Watched;
use bounce_agent::watch::config::WatchConfig;
use bounce_agent::watch::days::{self, WatchIdentity, WatchRuns};
use bounce_wire::NodeFacts;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};

#[derive(clap::Args)]
pub struct Args {
    /// Folder for the runs (one per node and UTC day: watch-NODE-DATE/)
    /// and the cursor the watcher resumes from.
    #[arg(long, short, default_value = "/var/lib/bounce/watch")]
    output: PathBuf,
    /// Readiness probes by container name, timeouts, the bound on open
    /// restarts (YAML; see scenarios/README.md, "watch").
    #[arg(long)]
    config: Option<PathBuf>,
    /// Node name recorded with the results (default: the host name).
    #[arg(long)]
    node: Option<String>,
    /// Deployment the restarts are filed under (default: the
    /// configuration's `deployment:`, else `default`).
    #[arg(long)]
    deployment: Option<String>,
    /// Also send the results to a bounce-collector (https://HOST:PORT with
    /// --ca-file; http:// only to loopback or with --insecure-plain-http).
    #[arg(long)]
    collector: Option<String>,
    #[command(flatten)]
    auth: Auth,
    /// At exit, how long to wait for the collector to acknowledge the spool.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    flush: Duration,
}

pub async fn watch(args: Args) -> Result<ExitCode> {
    let config = match &args.config {
        Some(path) => WatchConfig::load(path)?,
        None => WatchConfig::default(),
    };
    let collector = match &args.collector {
        Some(url) => {
            let c = args.auth.collector(url)?;
            // Watching never depends on the collector: batches wait in the spool.
            if let Err(e) = c.check(None).await {
                eprintln!("warning: {e}; watching anyway, batches wait in the spool");
            }
            Some(c)
        }
        None => None,
    };
    let engine = DockerEngine::connect().await?;
    let node_facts = facts::gather(engine.version().await);
    let node = args
        .node
        .clone()
        .unwrap_or_else(|| node_facts.hostname.clone());
    let deployment = args
        .deployment
        .clone()
        .or_else(|| config.deployment.as_ref().map(|d| d.to_string()))
        .unwrap_or_else(|| "default".into());
    // The node names every day's run: refused now, not at the first restart.
    days::run_id(&node, &days::day_of(realtime_nanos()))?;
    std::fs::create_dir_all(&args.output)?;
    let identity = WatchIdentity {
        deployment,
        node: NodeFacts {
            hostname: node.clone(),
            ..node_facts
        },
        config_text: config.text.clone(),
    };
    let runs = WatchRuns::new(&args.output, identity, collector);
    eprintln!(
        "watch: every container restart on {node}, into {}",
        args.output.display()
    );
    let mut term = signal(SignalKind::terminate())?;
    let stop = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    let watched = follow(&config).await?;
    let runs =
        bounce_agent::watch::watch(&engine, &config, &watched, runs, &args.output, stop).await?;
    runs.flush(args.flush).await;
    eprintln!("watch: stopped");
    Ok(ExitCode::SUCCESS)
}

/// Connects to the systemd managers and Ceph clusters the configuration
/// names and lists the units to follow (an OSD's unit once, as the OSD's,
/// even when a `systemd:` entry names it too); the names and globs go
/// along, for units loaded later.
async fn follow(config: &WatchConfig) -> Result<Watched> {
    let mut watched = Watched::default();
    for entry in &config.osds {
        let timeout = entry.timeout.unwrap_or(config.timeout).0;
        let osds = WatchedOsds::connect(entry.ceph_osd.clone(), entry.wait_for, timeout)
            .await
            .map_err(|e| anyhow::anyhow!("osds: the cluster: {e}"))?;
        osds.start(None);
        watched.osds.push(osds);
    }
    let mut wanted: Vec<(Bus, Vec<NamePattern>)> = config
        .systemd
        .iter()
        .map(|sel| (sel.bus.clone(), sel.units.0.clone()))
        .collect();
    for o in &watched.osds {
        if let Some((bus, names)) = o.unit_patterns() {
            let patterns = names
                .iter()
                .map(|n| NamePattern::parse(n).map_err(anyhow::Error::msg))
                .collect::<Result<Vec<_>>>()?;
            wanted.push((bus.clone(), patterns));
        }
    }
    for (bus, patterns) in wanted {
        let at = watched.managers.iter().position(|(m, _)| *m.bus() == bus);
        let i = match at {
            Some(i) => i,
            None => {
                let manager = SystemdManager::connect(&bus, None).await?;
                watched.managers.push((manager, UnitSet::default()));
                watched.managers.len() - 1
            }
        };
        let (manager, set) = &mut watched.managers[i];
        for u in manager.watched_units(&patterns).await? {
            if !set.units.iter().any(|x| x.name == u.name) {
                set.units.push(u);
            }
        }
        set.patterns.extend(patterns);
    }
    for (manager, set) in &watched.managers {
        let units = &set.units;
        let bus = manager.bus().to_string();
        let osds = units
            .iter()
            .filter(|u| {
                watched
                    .osds
                    .iter()
                    .any(|o| o.unit_osd(&bus, &u.name).is_some())
            })
            .count();
        let wrapping = units.iter().filter(|u| u.container.is_some()).count();
        eprintln!(
            "watch: {} unit(s) on the {bus} bus ({wrapping} wrapping a container, {osds} Ceph OSD(s))",
            units.len(),
        );
    }
    Ok(watched)
}
