//! Resolving `systemd:` selectors: the loaded units whose names match, each
//! checked (active, `Restart=` for `kill`), with the container it wraps
//! (kolla's units run `docker start -a NAME`) and what the engine says
//! about that container.

use super::bus::{SERVICE_IFACE, bus_error, props, string};
use super::{SystemdManager, UnitDetail, UnitTarget, WrappedContainer};
use crate::readiness;
use crate::scenario::{SystemdSelector, TargetSpec};
use crate::target::{Action, PlanError, ResolvedTarget};
use bounce_wire::TargetRef;
use std::sync::Arc;
use zbus::zvariant::{OwnedObjectPath, OwnedValue, Value};

impl SystemdManager {
    /// Loaded units matching a name or glob: (name, ActiveState, object path).
    pub(crate) async fn list_units(
        &self,
        pattern: &str,
    ) -> Result<Vec<(String, String, OwnedObjectPath)>, PlanError> {
        let units = self
            .link()
            .manager
            .list_units_by_patterns(&[], &[pattern])
            .await
            .map_err(|e| bus_error(&self.bus, e))?;
        Ok(units
            .into_iter()
            .filter(|u| u.2 != "not-found")
            .map(|u| (u.0, u.3, u.6))
            .collect())
    }
}

/// Every unit one `systemd:` entry selects, in name order.
pub(super) async fn resolve_entry(
    manager: &Arc<SystemdManager>,
    index: usize,
    selector: &SystemdSelector,
    spec: &TargetSpec,
) -> Result<Vec<ResolvedTarget>, PlanError> {
    let mut names = Vec::new();
    for pattern in &selector.units.0 {
        let hits = manager.list_units(&pattern.text).await?;
        if hits.is_empty() {
            return Err(PlanError::NoUnit {
                index,
                pattern: pattern.text.clone(),
                bus: manager.bus.to_string(),
            });
        }
        names.extend(hits);
    }
    names.sort_by(|a, b| a.0.cmp(&b.0));
    names.dedup_by(|a, b| a.0 == b.0);
    let mut out = Vec::new();
    for (name, active, path) in names {
        if active != "active" {
            return Err(PlanError::NotRunning {
                index,
                name,
                state: active,
            });
        }
        out.push(resolve_one(manager, index, spec, name, path).await?);
    }
    Ok(out)
}

async fn resolve_one(
    manager: &Arc<SystemdManager>,
    index: usize,
    spec: &TargetSpec,
    name: String,
    path: OwnedObjectPath,
) -> Result<ResolvedTarget, PlanError> {
    let bus = &manager.bus;
    let props = props(&manager.link().conn, &path)
        .await
        .map_err(|e| bus_error(bus, e))?;
    let service = props.get_all(SERVICE_IFACE).await.unwrap_or_default();
    let restart = service
        .get("Restart")
        .and_then(string)
        .unwrap_or_else(|| "no".into());
    if spec.action == Action::Kill && restart == "no" {
        return Err(PlanError::NoRestartPolicy {
            index,
            name,
            policy: "Restart=no".into(),
        });
    }
    let container_name = service.get("ExecStart").and_then(wrapped_container);
    let container = match (container_name, manager.docker.as_deref()) {
        (Some(c), Some(d)) => Some(WrappedContainer {
            engine: d.container_detail(&c).await.ok(),
            name: c,
        }),
        (Some(c), None) => Some(WrappedContainer {
            name: c,
            engine: None,
        }),
        (None, _) => None,
    };
    let health = container
        .as_ref()
        .and_then(|c| c.engine.as_ref())
        .and_then(|e| e.health_cmd.clone());
    let ready = readiness::probes_for(spec, health.is_some(), index, &name)?;
    let facts = format!(
        "active, Restart={restart}, {}",
        match &container {
            Some(WrappedContainer {
                name,
                engine: Some(_),
            }) => format!("wraps container {name} (timed at both levels)"),
            Some(WrappedContainer { name, engine: None }) => format!(
                "wraps container {name} (Docker engine not reachable: unit-level timing only)"
            ),
            None => "no container".into(),
        }
    );
    Ok(ResolvedTarget {
        spec_index: index,
        target: TargetRef::Systemd {
            name: name.clone(),
            bus: bus.to_string(),
            container: container.as_ref().map(|c| c.name.clone()),
        },
        service: container
            .as_ref()
            .map(|c| c.name.clone())
            .unwrap_or_else(|| name.clone()),
        action: spec.action,
        ready,
        timeout: spec.timeout.0,
        kind: format!("systemd unit, {bus} bus"),
        claim: format!("systemd {bus} {name}"),
        facts,
        handle: Arc::new(UnitTarget {
            manager: manager.clone(),
            detail: UnitDetail {
                name,
                bus: bus.clone(),
                path,
                container,
            },
        }),
    })
}

/// kolla's units run `docker start -a NAME` (or podman): the container is NAME.
pub(super) fn wrapped_container(exec_start: &OwnedValue) -> Option<String> {
    let Value::Array(commands) = &**exec_start else {
        return None;
    };
    let first = commands.iter().next()?;
    let Value::Structure(cmd) = first else {
        return None;
    };
    let Value::Array(argv) = cmd.fields().get(1)? else {
        return None;
    };
    let argv: Vec<String> = argv
        .iter()
        .filter_map(|v| match v {
            Value::Str(s) => Some(s.to_string()),
            _ => None,
        })
        .collect();
    container_of_argv(&argv)
}

fn container_of_argv(argv: &[String]) -> Option<String> {
    let engine = argv.first()?.rsplit('/').next()?;
    if !matches!(engine, "docker" | "podman") || argv.get(1)? != "start" {
        return None;
    }
    argv.iter().skip(2).rfind(|a| !a.starts_with('-')).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn kolla_units_name_their_container() {
        assert_eq!(
            container_of_argv(&v(&["/usr/bin/docker", "start", "-a", "nova_api"])),
            Some("nova_api".into())
        );
        assert_eq!(
            container_of_argv(&v(&["/usr/bin/podman", "start", "--attach", "keystone"])),
            Some("keystone".into())
        );
        assert_eq!(
            container_of_argv(&v(&["/usr/bin/ceph-osd", "-f", "--id", "0"])),
            None
        );
        assert_eq!(
            container_of_argv(&v(&["/usr/bin/docker", "run", "x"])),
            None
        );
    }
}
