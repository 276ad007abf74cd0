//! All the sources of truth a scenario needs, connected before anything is
//! resolved (a bus or engine that is not there is an error before the first
//! restart): one [`Driver`] per target entry, chosen by its selector kind
//! (the one place that matches on [`Selector`]); resolves every entry in the
//! scenario's order and refuses a target selected twice.

use crate::ceph::osd::CephOsds;
use crate::docker::{Containers, DockerEngine};
use crate::intent::Journal;
use crate::scenario::{Bus, Scenario, Selector, TargetSpec};
use crate::systemd::{SystemdManager, Units};
use crate::target::{Driver, PlanError, ResolvedTarget};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

pub struct Sources {
    docker: Option<Arc<DockerEngine>>,
    /// One per target entry, in the scenario's order.
    entries: Vec<Box<dyn Driver>>,
}

impl Sources {
    /// `state_dir` keeps what must survive a crash (Ceph flags bounce set);
    /// restarts write their intents in `journal` (`None`: `plan`, which
    /// restarts nothing).
    pub async fn connect(
        scenario: &Scenario,
        state_dir: &Path,
        journal: Option<Arc<Journal>>,
    ) -> Result<Sources, PlanError> {
        // Units may wrap containers: the engine is then welcome, not required.
        let (docker, docker_error) = match DockerEngine::connect().await {
            Ok(d) => (Some(Arc::new(d.with_journal(journal.clone()))), None),
            Err(e) => (None, Some(e.to_string())),
        };
        let engine = || {
            docker
                .clone()
                .ok_or_else(|| PlanError::Engine(docker_error.clone().unwrap_or_default()))
        };
        let mut managers = Managers::default();
        let mut entries: Vec<Box<dyn Driver>> = Vec::new();
        for (index, spec) in scenario.targets.iter().enumerate() {
            // A new source of truth is one arm here.
            entries.push(match &spec.selector {
                Selector::Docker(sel) => Box::new(Containers::new(engine()?, sel.clone())),
                Selector::Systemd(sel) => {
                    let manager = managers.on(&sel.bus, &docker, &journal).await?;
                    Box::new(Units::new(manager, sel.clone()))
                }
                Selector::CephOsd(sel) => Box::new(
                    CephOsds::connect(index, spec, sel, state_dir, docker.clone(), journal.clone())
                        .await?,
                ),
            });
        }
        Ok(Sources { docker, entries })
    }

    pub fn docker(&self) -> Option<&DockerEngine> {
        self.docker.as_deref()
    }

    /// The end of a run, whatever ended it: undo what the run set (Ceph
    /// flags). Returns what it did, in words.
    pub async fn end_run(&self) -> Vec<String> {
        let mut out = Vec::new();
        for entry in &self.entries {
            out.extend(entry.end_run().await);
        }
        out
    }

    /// Every target entry, in the scenario's order; a target selected twice is an error.
    pub async fn resolve(&self, specs: &[TargetSpec]) -> Result<Vec<ResolvedTarget>, PlanError> {
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        let mut out = Vec::new();
        for (index, (spec, entry)) in specs.iter().zip(&self.entries).enumerate() {
            for t in entry.resolve(index, spec).await? {
                if let Some(first) = seen.insert(t.claim.clone(), index) {
                    return Err(PlanError::Overlap {
                        name: t.name().to_string(),
                        first,
                        second: index,
                    });
                }
                out.push(t);
            }
        }
        Ok(out)
    }
}

/// One systemd manager per bus, shared by the entries on that bus.
#[derive(Default)]
struct Managers(Vec<Arc<SystemdManager>>);

impl Managers {
    async fn on(
        &mut self,
        bus: &Bus,
        docker: &Option<Arc<DockerEngine>>,
        journal: &Option<Arc<Journal>>,
    ) -> Result<Arc<SystemdManager>, PlanError> {
        if let Some(m) = self.0.iter().find(|m| m.bus() == bus) {
            return Ok(m.clone());
        }
        let m = Arc::new(
            SystemdManager::connect(bus, docker.clone())
                .await?
                .with_journal(journal.clone()),
        );
        self.0.push(m.clone());
        Ok(m)
    }
}
