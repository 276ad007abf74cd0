//! Which units a watcher follows on a manager: the loaded units its names
//! and globs match, each with the container it wraps (kolla's units), at
//! most [`MAX_UNITS`] per manager.

use crate::scenario::NamePattern;
use crate::systemd::SystemdManager;
use crate::systemd::bus::{SERVICE_IFACE, bus_error, props};
use crate::target::PlanError;
use zbus::zvariant::OwnedObjectPath;

/// At most this many units followed on one manager: a glob that matches
/// every unit a busy node loads must not grow the watcher without bound.
pub(super) const MAX_UNITS: usize = 1000;

/// One unit a watcher follows.
#[derive(Debug, Clone)]
pub struct WatchedUnit {
    pub name: String,
    pub(super) path: OwnedObjectPath,
    /// The container it runs with `docker start -a NAME`, if any: its
    /// restarts are the unit's, not counted again as the container's.
    pub container: Option<String>,
}

impl WatchedUnit {
    /// The name its restarts are grouped by: the container for kolla's units.
    pub fn service(&self) -> &str {
        self.container.as_deref().unwrap_or(&self.name)
    }
}

/// The units a watcher follows on one manager: the names and globs it was
/// given, and the units they matched when it started (more are followed
/// as they are loaded).
#[derive(Debug, Clone, Default)]
pub struct UnitSet {
    pub patterns: Vec<NamePattern>,
    pub units: Vec<WatchedUnit>,
}

impl SystemdManager {
    /// The loaded units matching `patterns`, each with the container it wraps.
    pub async fn watched_units(
        &self,
        patterns: &[NamePattern],
    ) -> Result<Vec<WatchedUnit>, PlanError> {
        let mut out: Vec<WatchedUnit> = Vec::new();
        for pattern in patterns {
            for (name, _, path) in self.list_units(&pattern.text).await? {
                if out.iter().any(|u| u.name == name) {
                    continue;
                }
                out.push(self.unit_of(name, path).await?);
            }
        }
        Ok(out)
    }

    /// One unit as a watcher follows it: with the container it wraps.
    pub(super) async fn unit_of(
        &self,
        name: String,
        path: OwnedObjectPath,
    ) -> Result<WatchedUnit, PlanError> {
        let service = match props(&self.link().conn, &path).await {
            Ok(p) => p.get_all(SERVICE_IFACE).await.unwrap_or_default(),
            Err(e) => return Err(bus_error(&self.bus, e)),
        };
        let container = service
            .get("ExecStart")
            .and_then(crate::systemd::resolve::wrapped_container);
        Ok(WatchedUnit {
            name,
            path,
            container,
        })
    }
}
