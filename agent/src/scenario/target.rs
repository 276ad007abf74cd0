//! One entry of `targets:`: exactly one selector (its kind decides the source
//! of truth), the action, and the per-target settings that go with that kind.

use super::ceph::{CephOsdSelector, Gates};
use super::docker::{DockerSelector, StopTimeout};
use super::duration::Span;
use super::probes::ProbeSpec;
use super::systemd::SystemdSelector;
use super::values::NonEmpty;
use bounce_wire::Action;
use serde::Deserialize;

/// One entry of `targets:`: exactly one selector (`docker`, `systemd` or `ceph_osd`) and
/// how to restart what it selects.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawTarget")]
pub struct TargetSpec {
    pub selector: Selector,
    pub action: Action,
    /// Docker's stop timeout before SIGKILL; whole seconds (the engine's unit).
    /// Default: the container's own StopTimeout, else the engine's 10 s.
    /// Docker targets only: a unit's stop timeout is its `TimeoutStopSec=`.
    pub stop_timeout: Option<StopTimeout>,
    /// All must hold. Default: `docker_health` when the container has a health
    /// check, else `running`.
    pub ready: Option<NonEmpty<ProbeSpec>>,
    /// Per restart, from the request until ready.
    pub timeout: Span,
    /// Cluster conditions (Ceph OSD targets only).
    pub gates: Option<Gates>,
}

#[derive(Debug, Clone)]
pub enum Selector {
    Docker(DockerSelector),
    Systemd(SystemdSelector),
    CephOsd(CephOsdSelector),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    docker: Option<DockerSelector>,
    systemd: Option<SystemdSelector>,
    ceph_osd: Option<CephOsdSelector>,
    gates: Option<Gates>,
    #[serde(default)]
    action: Action,
    stop_timeout: Option<StopTimeout>,
    ready: Option<NonEmpty<ProbeSpec>>,
    #[serde(default = "default_timeout")]
    timeout: Span,
}

impl TryFrom<RawTarget> for TargetSpec {
    type Error = String;
    fn try_from(raw: RawTarget) -> Result<TargetSpec, String> {
        let mut selectors = Vec::new();
        if let Some(d) = raw.docker {
            selectors.push(Selector::Docker(d));
        }
        if let Some(s) = raw.systemd {
            selectors.push(Selector::Systemd(s));
        }
        if let Some(c) = raw.ceph_osd {
            selectors.push(Selector::CephOsd(c));
        }
        if selectors.len() > 1 {
            return Err("a target has one selector (`docker:`, `systemd:` or `ceph_osd:`); make two entries".into());
        }
        let Some(selector) = selectors.pop() else {
            return Err("a target needs a selector: `docker:`, `systemd:` or `ceph_osd:`".into());
        };
        if raw.stop_timeout.is_some() && !matches!(selector, Selector::Docker(_)) {
            return Err("stop_timeout applies to docker targets; a unit stops within its own TimeoutStopSec=".into());
        }
        if raw.gates.is_some() && !matches!(selector, Selector::CephOsd(_)) {
            return Err("gates apply to ceph_osd targets".into());
        }
        if matches!(selector, Selector::CephOsd(_)) && raw.ready.is_some() {
            return Err("a ceph_osd target is ready at its gates' `wait_for` milestone; `ready:` does not apply".into());
        }
        if matches!(selector, Selector::CephOsd(_)) && raw.action == Action::Kill {
            return Err("action kill is not offered for OSDs: use restart or stop-start".into());
        }
        let gates = match &selector {
            Selector::CephOsd(_) => Some(raw.gates.unwrap_or_default()),
            _ => None,
        };
        Ok(TargetSpec {
            selector,
            action: raw.action,
            stop_timeout: raw.stop_timeout,
            ready: raw.ready,
            timeout: raw.timeout,
            gates,
        })
    }
}

fn default_timeout() -> Span {
    Span::secs(300)
}

#[cfg(test)]
mod tests {
    use crate::scenario::tests::err;

    #[test]
    fn a_target_takes_one_selector_and_only_the_keys_of_its_kind() {
        let e = err(
            "deployment: lab\ntargets:\n  - systemd: {units: [a.service]}\n    stop_timeout: 10s\n",
        );
        assert!(e.starts_with("s.yaml:3:"), "{e}");
        assert!(e.contains("TimeoutStopSec"), "{e}");
        let e = err("deployment: lab\ntargets:\n  - action: restart\n");
        assert!(e.contains("needs a selector"), "{e}");
        let e =
            err("deployment: lab\ntargets:\n  - {docker: {names: [a]}, systemd: {units: [a]}}\n");
        assert!(e.contains("make two entries"), "{e}");
        let e =
            err("deployment: lab\ntargets:\n  - docker: {names: [a]}\n    gates: {noout: true}\n");
        assert!(e.contains("gates apply to ceph_osd"), "{e}");
        let e = err("deployment: lab\ntargets:\n  - ceph_osd: {}\n    ready: [{tcp: {port: 1}}]\n");
        assert!(e.contains("`ready:` does not apply"), "{e}");
        let e = err("deployment: lab\ntargets:\n  - ceph_osd: {}\n    action: kill\n");
        assert!(e.contains("not offered for OSDs"), "{e}");
    }
}
