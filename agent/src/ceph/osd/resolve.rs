//! Resolving a `ceph_osd:` entry: the OSDs it names, found as systemd units
//! or containers (running), each checked against the cluster's osdmap, with
//! the gates described for `plan`.

use super::{CephOsds, OsdDetail, OsdRestart, OsdTarget, SERVICE};
use crate::scenario::{CephOsdSelector, HealthGate, Noout, OsdIds, OsdVia, TargetSpec, WaitFor};
use crate::systemd::UnitDetail;
use crate::target::{PlanError, ResolvedTarget};
use bounce_wire::TargetRef;
use std::path::PathBuf;
use std::sync::Arc;

impl CephOsds {
    /// The OSDs the selector names, each with what restarts it.
    async fn find(
        &self,
        sel: &CephOsdSelector,
    ) -> Result<Vec<(u32, String, OsdRestart)>, PlanError> {
        let index = self.index;
        let mut found = Vec::new();
        match &sel.via {
            OsdVia::Systemd { unit, bus } => {
                let manager = self.manager.as_ref().expect("connected for via: systemd");
                let mut units = Vec::new();
                match &sel.ids {
                    OsdIds::All => {
                        let pattern = unit.0.replace("{id}", "*");
                        for (name, state, path) in manager.list_units(&pattern).await? {
                            if let Some(id) = unit.id_of(&name) {
                                units.push((id, name, state, path));
                            }
                        }
                        if units.is_empty() {
                            return Err(PlanError::NoUnit {
                                index,
                                pattern,
                                bus: bus.to_string(),
                            });
                        }
                    }
                    OsdIds::List(ids) => {
                        for id in ids {
                            let name = unit.with(*id);
                            let hits = manager.list_units(&name).await?;
                            let Some((name, state, path)) = hits.into_iter().next() else {
                                return Err(PlanError::NoUnit {
                                    index,
                                    pattern: name,
                                    bus: bus.to_string(),
                                });
                            };
                            units.push((*id, name, state, path));
                        }
                    }
                }
                for (id, name, state, path) in units {
                    if state != "active" {
                        return Err(PlanError::NotRunning { index, name, state });
                    }
                    let detail = UnitDetail {
                        name: name.clone(),
                        bus: bus.clone(),
                        path,
                        container: None,
                    };
                    found.push((id, name, OsdRestart::Unit(detail)));
                }
            }
            OsdVia::Docker { container } => {
                let docker = self.docker.as_ref().expect("connected for via: docker");
                let names = docker
                    .container_names()
                    .await
                    .map_err(|e| PlanError::Engine(format!("Docker engine: {e}")))?;
                let wanted: Vec<(u32, String)> = match &sel.ids {
                    OsdIds::All => {
                        let all: Vec<(u32, String)> = names
                            .iter()
                            .filter_map(|n| Some((container.id_of(n)?, n.clone())))
                            .collect();
                        if all.is_empty() {
                            return Err(PlanError::NoMatch {
                                index,
                                pattern: container.0.replace("{id}", "*"),
                            });
                        }
                        all
                    }
                    OsdIds::List(ids) => {
                        let mut out = Vec::new();
                        for id in ids {
                            let name = container.with(*id);
                            if !names.contains(&name) {
                                return Err(PlanError::NoMatch {
                                    index,
                                    pattern: name,
                                });
                            }
                            out.push((*id, name));
                        }
                        out
                    }
                };
                for (id, name) in wanted {
                    let (state, detail) = docker
                        .osd_container(&name)
                        .await
                        .map_err(|e| PlanError::Engine(format!("Docker engine: {name}: {e}")))?;
                    if state != "running" {
                        return Err(PlanError::NotRunning { index, name, state });
                    }
                    found.push((id, name, OsdRestart::Container(detail)));
                }
            }
        }
        found.sort_by_key(|f| f.0);
        Ok(found)
    }

    pub(super) async fn resolve_all(
        self: &Arc<Self>,
        spec: &TargetSpec,
    ) -> Result<Vec<ResolvedTarget>, PlanError> {
        let index = self.index;
        let sel = &self.selector;
        let found = self.find(sel).await?;
        let (_, osds) = self
            .cli
            .osd_dump()
            .await
            .map_err(|e| PlanError::Engine(e.to_string()))?;
        let mut out = Vec::new();
        for (id, name, restart) in found {
            let up = osds.iter().find(|o| o.id == id);
            let Some(up) = up else {
                return Err(PlanError::Engine(format!(
                    "targets[{index}]: osd.{id} ({name}) is not in the cluster's osdmap"
                )));
            };
            let g = &self.gates;
            let facts = format!(
                "{} running, osd.{id} {} in the osdmap (up_from {}); gates: health {}{}, ok-to-stop {}, noout {}; next OSD after {}; cluster asked through {}",
                match &restart {
                    OsdRestart::Unit(_) => "unit",
                    OsdRestart::Container(_) => "container",
                },
                if up.up { "up" } else { "DOWN" },
                up.up_from,
                match g.health {
                    HealthGate::Ok => "ok",
                    HealthGate::Any => "any",
                },
                if g.allow_warnings.is_empty() {
                    String::new()
                } else {
                    format!(" (allowing {})", g.allow_warnings.join(", "))
                },
                if g.ok_to_stop { "asked" } else { "not asked" },
                match g.noout {
                    Noout::Cluster => "set for the run, unset at its end",
                    Noout::PerOsd => "set on each OSD while it restarts (add-noout/rm-noout)",
                    Noout::Off => "not set",
                },
                match g.wait_for {
                    WaitFor::OsdUp => "osd_up",
                    WaitFor::PgsActive => "pgs_active",
                    WaitFor::PgsClean => "pgs_clean",
                },
                self.cli.how(),
            );
            // Claimed as the unit or container it is, so a `systemd:` or
            // `docker:` entry selecting it too is refused.
            let (target, kind, claim) = match &sel.via {
                OsdVia::Systemd { bus, .. } => (
                    TargetRef::CephOsd {
                        id,
                        unit: Some(name.clone()),
                        bus: Some(bus.to_string()),
                        container: None,
                    },
                    format!("ceph osd.{id}, unit on the {bus} bus"),
                    format!("systemd {bus} {name}"),
                ),
                OsdVia::Docker { .. } => (
                    TargetRef::CephOsd {
                        id,
                        unit: None,
                        bus: None,
                        container: Some(name.clone()),
                    },
                    format!("ceph osd.{id}, container"),
                    format!("docker {name}"),
                ),
            };
            out.push(ResolvedTarget {
                spec_index: index,
                target,
                service: SERVICE.into(),
                action: spec.action,
                ready: Vec::new(),
                timeout: spec.timeout.0,
                kind,
                claim,
                facts,
                handle: Arc::new(OsdTarget {
                    osds: self.clone(),
                    detail: OsdDetail {
                        id,
                        restart,
                        admin_socket: PathBuf::from(sel.admin_socket.with(id)),
                    },
                }),
            });
        }
        Ok(out)
    }
}
