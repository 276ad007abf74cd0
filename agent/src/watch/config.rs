//! `watch`'s configuration: which containers get which readiness probes
//! (names or globs to `exec_health`, `tcp`, `http`, as in scenarios), how
//! long a restart may take to be ready, and when a stopped container that
//! did not come back is closed as incomplete; the systemd units and Ceph
//! OSDs it follows besides every container. Read with the scenarios'
//! checked reader: an error names file:line:column and the key path.
//! Without a file, every default holds.

use crate::scenario::duration::Span;
use crate::scenario::{
    CephOsdSelector, Name, NamePattern, NonEmpty, ProbeSpec, ScenarioError, SystemdSelector,
    WaitFor, read_checked,
};
use serde::Deserialize;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchConfig {
    /// The deployment watched restarts are filed under (else `--deployment`).
    #[serde(default)]
    pub deployment: Option<Name>,
    /// A restart not started again within this is closed as `incomplete`.
    #[serde(default = "default_incomplete_after")]
    pub incomplete_after: Span,
    /// From the start, how long readiness may take (containers without their own).
    #[serde(default = "default_timeout")]
    pub timeout: Span,
    /// Readiness probes by container name (a unit's: the container it
    /// wraps, else the unit's name); the first entry that matches wins.
    #[serde(default)]
    pub containers: Vec<ContainerReady>,
    /// The systemd managers to follow and their units (names or globs, as
    /// a scenario's `systemd:` target); none by default.
    #[serde(default)]
    pub systemd: Vec<SystemdSelector>,
    /// The node's Ceph OSDs (named as a scenario's `ceph_osd:` target
    /// names them), each restart followed to Ceph's milestones; none by default.
    #[serde(default)]
    pub osds: Vec<WatchOsds>,
    /// The file as read, for the run's record.
    #[serde(skip)]
    pub text: Option<String>,
}

/// Readiness of the containers some names select.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerReady {
    pub names: NonEmpty<NamePattern>,
    pub ready: NonEmpty<ProbeSpec>,
    #[serde(default)]
    pub timeout: Option<Span>,
}

/// Some OSDs of this node and how far their restarts are followed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchOsds {
    /// Exactly a scenario's `ceph_osd:` selector: ids, via (unit on a bus,
    /// or container), the `ceph` command or librados, the admin socket.
    pub ceph_osd: CephOsdSelector,
    /// The last milestone followed (`osd_up`, `pgs_active`, `pgs_clean`).
    #[serde(default)]
    pub wait_for: WaitFor,
    /// From the start, how long the milestones may take (else `timeout`).
    #[serde(default)]
    pub timeout: Option<Span>,
}

fn default_incomplete_after() -> Span {
    Span::secs(30 * 60)
}

fn default_timeout() -> Span {
    Span::secs(300)
}

impl Default for WatchConfig {
    fn default() -> WatchConfig {
        WatchConfig {
            deployment: None,
            incomplete_after: default_incomplete_after(),
            timeout: default_timeout(),
            containers: Vec::new(),
            systemd: Vec::new(),
            osds: Vec::new(),
            text: None,
        }
    }
}

impl WatchConfig {
    pub fn load(path: &Path) -> Result<WatchConfig, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            file: path.display().to_string(),
            source,
        })?;
        WatchConfig::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<WatchConfig, ScenarioError> {
        let mut c: WatchConfig = read_checked(path, text)?;
        c.text = Some(text.to_string());
        Ok(c)
    }

    /// A container's probes (`None`: its own health check, else running)
    /// and its readiness timeout.
    pub fn ready_for(&self, name: &str) -> (Option<&[ProbeSpec]>, Duration) {
        match self
            .containers
            .iter()
            .find(|c| c.names.0.iter().any(|p| p.matches(name)))
        {
            Some(c) => (Some(&c.ready.0), c.timeout.unwrap_or(self.timeout).0),
            None => (None, self.timeout.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<WatchConfig, ScenarioError> {
        WatchConfig::parse(Path::new("w.yaml"), text)
    }

    #[test]
    fn names_map_to_probes_and_the_first_match_wins() {
        let c = parse(
            "deployment: lab\nincomplete_after: 10m\ncontainers:\n  - names: [\"nova_*\"]\n    ready: [{tcp: {port: 8774}}]\n    timeout: 60s\n  - names: [nova_api, keystone]\n    ready: [{exec_health: {}}]\n",
        )
        .unwrap();
        assert_eq!(c.incomplete_after, Span::secs(600));
        let (p, t) = c.ready_for("nova_api");
        assert!(matches!(p.unwrap()[0], ProbeSpec::Tcp(_)));
        assert_eq!(t, Duration::from_secs(60));
        let (p, t) = c.ready_for("keystone");
        assert!(matches!(p.unwrap()[0], ProbeSpec::ExecHealth(_)));
        assert_eq!(t, Duration::from_secs(300));
        assert!(c.ready_for("glance_api").0.is_none());
        assert!(c.systemd.is_empty());
        let c = parse(
            "systemd:\n  - bus: user\n    units: [\"kolla-*-container.service\"]\n  - units: [ceph-osd@0.service]\n",
        )
        .unwrap();
        assert_eq!(c.systemd.len(), 2);
        assert_eq!(c.systemd[1].bus, crate::scenario::Bus::System);
        assert!(c.systemd[0].units.0[0].matches("kolla-nova_api-container.service"));
    }

    #[test]
    fn osds_are_named_as_in_a_scenario() {
        let c = parse(
            "osds:\n  - ceph_osd: {ids: [0, 2], bus: user, ceph: [ceph, --conf, /c]}\n    wait_for: pgs_clean\n    timeout: 10m\n  - ceph_osd: {via: docker}\n",
        )
        .unwrap();
        assert_eq!(c.osds.len(), 2);
        assert_eq!(c.osds[0].wait_for, WaitFor::PgsClean);
        assert_eq!(c.osds[0].timeout, Some(Span::secs(600)));
        assert_eq!(c.osds[1].wait_for, WaitFor::PgsActive);
        assert!(matches!(
            c.osds[1].ceph_osd.via,
            crate::scenario::OsdVia::Docker { .. }
        ));
        let e = parse("osds:\n  - ceph_osd: {ids: [1, 1]}\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("listed twice") && e.starts_with("w.yaml:2:"),
            "{e}"
        );
        let e = parse("osds:\n  - ceph_osd: {}\n    gates: {}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("gates"), "{e}");
    }

    #[test]
    fn errors_name_the_place() {
        let e = parse("containers:\n  - names: [a]\n    ready: [{tcp: {port: 70000}}]\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("w.yaml:3:"), "{e}");
        assert!(e.contains("containers[0].ready[0].tcp.port"), "{e}");
        let e = parse("containers:\n  - names: [a]\n    redy: []\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("w.yaml:3:") && e.contains("redy"), "{e}");
    }
}
