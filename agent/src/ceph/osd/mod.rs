//! `ceph_osd` targets: the OSDs of this node, restarted through their
//! systemd units or their containers, with Ceph's own milestones after the
//! OSD runs again and the operators' discipline around every restart: gates
//! (health, ok-to-stop) before, `noout`, and the next OSD only after the
//! `wait_for` milestone.
//!
//! - [`observe`]: the observer, Ceph's milestones (admin socket state,
//!   osdmap up, PG states) folded into boundaries;
//! - [`act`]: the actor, flags and gates around a restart through the unit
//!   (`systemd/`) or the container (`docker/`), whose drivers time the stop
//!   and start;
//! - [`gates`]: health and ok-to-stop before each OSD;
//! - [`resolve`]: a `ceph_osd:` entry to checked targets;
//! - [`follow`]: `watch`'s follower of the OSDs it is configured with: a
//!   restart seen through the unit or container, continued to the same
//!   milestones, acting on nothing.
//!
//! This file: the entry's connections, what a target keeps ([`OsdDetail`]),
//! and the two seams it implements ([`Driver`] for the entry, [`Restart`]
//! for one OSD).

mod act;
pub mod follow;
mod gates;
mod observe;
mod resolve;

use super::flags::FlagGuard;
use super::mon::MonClient;
use crate::docker::{ContainerDetail, DockerEngine};
use crate::intent::Journal;
use crate::scenario::{CephOsdSelector, Gates, OsdVia, TargetSpec};
use crate::systemd::{SystemdManager, UnitDetail};
use crate::target::{BoxFuture, Driver, PlanError, ResolvedTarget, Restart, RestartContext};
use crate::timeline::{Ending, Timeline};
use bounce_wire::NodeFacts;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Histograms of all OSDs group under this service name; per-OSD detail is
/// in the timelines.
pub const SERVICE: &str = "ceph-osd";

#[derive(Debug, Clone)]
pub struct OsdDetail {
    pub id: u32,
    pub restart: OsdRestart,
    pub admin_socket: PathBuf,
}

/// What restarts one OSD.
#[derive(Debug, Clone)]
pub enum OsdRestart {
    Unit(UnitDetail),
    Container(ContainerDetail),
}

/// One `ceph_osd` target entry: its manager or engine, its cluster and its flags.
pub struct CephOsds {
    index: usize,
    selector: CephOsdSelector,
    gates: Gates,
    /// via: systemd
    manager: Option<SystemdManager>,
    /// via: docker
    docker: Option<Arc<DockerEngine>>,
    cli: MonClient,
    flags: Arc<FlagGuard>,
}

impl CephOsds {
    pub async fn connect(
        index: usize,
        spec: &TargetSpec,
        selector: &CephOsdSelector,
        state_dir: &std::path::Path,
        docker: Option<Arc<DockerEngine>>,
        journal: Option<Arc<Journal>>,
    ) -> Result<Arc<CephOsds>, PlanError> {
        let (manager, docker) = match &selector.via {
            OsdVia::Systemd { bus, .. } => (
                Some(
                    SystemdManager::connect(bus, None)
                        .await?
                        .with_journal(journal),
                ),
                None,
            ),
            OsdVia::Docker { .. } => match docker {
                Some(d) => (None, Some(d)),
                None => {
                    return Err(PlanError::Engine(format!(
                        "targets[{index}].ceph_osd: via docker, but the Docker engine does not answer"
                    )));
                }
            },
        };
        // A cluster that does not answer is an error before anything restarts.
        let cli = MonClient::open(&selector.ceph).await.map_err(|e| {
            PlanError::Engine(format!(
                "targets[{index}].ceph_osd.ceph: cannot reach the cluster: {e}"
            ))
        })?;
        cli.health().await.map_err(|e| {
            PlanError::Engine(format!(
                "targets[{index}].ceph_osd.ceph: the cluster does not answer: {e}"
            ))
        })?;
        Ok(Arc::new(CephOsds {
            index,
            selector: selector.clone(),
            gates: spec.gates.clone().unwrap_or_default(),
            flags: Arc::new(FlagGuard::new(cli.clone(), state_dir)),
            manager,
            docker,
            cli,
        }))
    }
}

impl Driver for Arc<CephOsds> {
    fn resolve<'a>(
        &'a self,
        _index: usize,
        spec: &'a TargetSpec,
    ) -> BoxFuture<'a, Result<Vec<ResolvedTarget>, PlanError>> {
        Box::pin(self.resolve_all(spec))
    }

    /// Unsets the flags this run set.
    fn end_run(&self) -> BoxFuture<'_, Vec<String>> {
        Box::pin(self.flags.release())
    }
}

/// What restarts one OSD: its entry (connections, gates, flags) and the OSD's detail.
struct OsdTarget {
    osds: Arc<CephOsds>,
    detail: OsdDetail,
}

impl Restart for OsdTarget {
    fn restart<'a>(&'a self, cx: RestartContext<'a>) -> BoxFuture<'a, (Timeline, Ending)> {
        Box::pin(self.osds.restart_osd(cx, &self.detail))
    }

    /// Ceph's version, from the OSD's admin socket.
    fn facts<'a>(&'a self, _service: &'a str, facts: &'a mut NodeFacts) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if facts.ceph_version.is_some() {
                return;
            }
            let cmd = serde_json::json!({"prefix": "version"});
            if let Ok(v) =
                super::asok::command(&self.detail.admin_socket, &cmd, Duration::from_secs(2)).await
            {
                facts.ceph_version = v["version"].as_str().map(String::from);
            }
        })
    }
}
