//! All the sources of truth a scenario needs, connected before anything is
//! resolved (a bus or engine that is not there is an error before the first
//! restart), behind the one [`Driver`] interface the runner uses.

use crate::abort::Abort;
use crate::ceph::osd::CephOsds;
use crate::docker::DockerEngine;
use crate::scenario::{Bus, Scenario, Selector, TargetSpec};
use crate::systemd::SystemdManager;
use crate::target::{BoxFuture, Driver, PlanError, ResolvedTarget, TargetDetail, not_mine};
use crate::timeline::{Ending, Timeline};
use bounce_wire::TargetRef;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

pub struct Sources {
    docker: Option<Arc<DockerEngine>>,
    systemd: Vec<SystemdManager>,
    ceph: Vec<CephOsds>,
}

impl Sources {
    /// `state_dir` keeps what must survive a crash (Ceph flags bounce set).
    pub async fn connect(scenario: &Scenario, state_dir: &Path) -> Result<Sources, PlanError> {
        let needs_docker = scenario
            .targets
            .iter()
            .any(|t| matches!(t.selector, Selector::Docker(_)));
        let mut buses: Vec<Bus> = Vec::new();
        for t in &scenario.targets {
            if let Selector::Systemd(s) = &t.selector
                && !buses.contains(&s.bus)
            {
                buses.push(s.bus.clone());
            }
        }
        // Units may wrap containers: the engine is then welcome, not required.
        let docker = match DockerEngine::connect().await {
            Ok(d) => Some(Arc::new(d)),
            Err(e) if needs_docker => return Err(PlanError::Engine(e.to_string())),
            Err(_) => None,
        };
        let mut systemd = Vec::new();
        for bus in &buses {
            systemd.push(SystemdManager::connect(bus, docker.clone()).await?);
        }
        let mut ceph = Vec::new();
        for (index, t) in scenario.targets.iter().enumerate() {
            if let Selector::CephOsd(sel) = &t.selector {
                ceph.push(CephOsds::connect(index, t, sel, state_dir, docker.clone()).await?);
            }
        }
        Ok(Sources {
            docker,
            systemd,
            ceph,
        })
    }

    pub fn docker(&self) -> Option<&DockerEngine> {
        self.docker.as_deref()
    }

    fn drivers(&self) -> impl Iterator<Item = &dyn Driver> {
        self.docker
            .as_deref()
            .map(|d| d as &dyn Driver)
            .into_iter()
            .chain(self.systemd.iter().map(|s| s as &dyn Driver))
            .chain(self.ceph.iter().map(|c| c as &dyn Driver))
    }

    /// The end of a run, whatever ended it: undo what the run set (Ceph
    /// flags). Returns what it did, in words.
    pub async fn end_run(&self) -> Vec<String> {
        let mut out = Vec::new();
        for c in &self.ceph {
            out.extend(c.release().await);
        }
        out
    }

    /// Every target entry, in the scenario's order; a target selected twice is an error.
    pub async fn resolve(&self, specs: &[TargetSpec]) -> Result<Vec<ResolvedTarget>, PlanError> {
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        let mut out = Vec::new();
        for (index, spec) in specs.iter().enumerate() {
            for driver in self.drivers() {
                for t in driver.resolve(index, spec).await? {
                    let key = match &t.target {
                        TargetRef::Docker { name, .. }
                        | TargetRef::CephOsd {
                            container: Some(name),
                            ..
                        } => format!("docker {name}"),
                        TargetRef::Systemd { name, bus, .. } => format!("systemd {bus} {name}"),
                        TargetRef::CephOsd { unit, bus, id, .. } => format!(
                            "systemd {} {}",
                            bus.as_deref().unwrap_or("?"),
                            unit.clone().unwrap_or_else(|| format!("osd.{id}"))
                        ),
                    };
                    if let Some(first) = seen.insert(key, index) {
                        return Err(PlanError::Overlap {
                            name: t.name().to_string(),
                            first,
                            second: index,
                        });
                    }
                    out.push(t);
                }
            }
        }
        Ok(out)
    }
}

impl Driver for Sources {
    fn resolve<'a>(
        &'a self,
        index: usize,
        spec: &'a TargetSpec,
    ) -> BoxFuture<'a, Result<Vec<ResolvedTarget>, PlanError>> {
        Box::pin(async move {
            let mut out = Vec::new();
            for driver in self.drivers() {
                out.extend(driver.resolve(index, spec).await?);
            }
            Ok(out)
        })
    }

    fn restart<'a>(
        &'a self,
        target: &'a ResolvedTarget,
        iteration: u32,
        abort: &'a Abort,
    ) -> BoxFuture<'a, (Timeline, Ending)> {
        match &target.detail {
            TargetDetail::Docker(_) => match self.docker.as_deref() {
                Some(d) => d.restart(target, iteration, abort),
                None => Box::pin(async move { not_mine(target) }),
            },
            TargetDetail::CephOsd(d) => {
                match self.ceph.iter().find(|c| c.index() == d.spec_index) {
                    Some(c) => c.restart(target, iteration, abort),
                    None => Box::pin(async move { not_mine(target) }),
                }
            }
            TargetDetail::Systemd(u) => match self.systemd.iter().find(|m| *m.bus() == u.bus) {
                Some(m) => m.restart(target, iteration, abort),
                None => Box::pin(async move { not_mine(target) }),
            },
        }
    }
}
