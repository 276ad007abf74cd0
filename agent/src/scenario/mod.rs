//! Scenarios: what to restart, how, how many at once, and what "ready" means.
//!
//! A scenario is validated completely while it is read, before the engine is
//! even contacted: every check that can be made on the text is made inside
//! deserialization, so that its error carries the file, line, column and key
//! path. `scenarios/README.md` documents the format. This file reads the
//! document and its top-level keys; each part of a target has its own file
//! (`target`, a selector kind each: `docker`, `systemd`, `ceph`; `probes`;
//! `values`; the run-wide `fleet` limits), all re-exported here.

mod ceph;
mod checked;
mod docker;
pub mod duration;
mod fleet;
mod probes;
mod systemd;
mod target;
mod values;

pub use ceph::{
    CephAccess, CephOsdSelector, Gates, HealthGate, IdTemplate, LibradosAccess, Noout, OsdIds,
    OsdVia, Via, WaitFor,
};
pub use docker::{DockerSelector, StopTimeout};
pub use fleet::{AskOrder, FleetSection};
pub use probes::{
    Empty, ExecHealthSpec, Host, HttpSpec, HttpUrl, Interval, Port, ProbeSpec, StatusMatch, TcpSpec,
};
pub use systemd::{Bus, SystemdSelector};
pub use target::{Selector, TargetSpec};
pub use values::{Name, NamePattern, NonEmpty};

use duration::Span;
use serde::Deserialize;
use serde::de::Deserializer;
use std::path::{Path, PathBuf};

/// A scenario that has been read and checked.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Where it was read from (for messages and for the report).
    pub file: PathBuf,
    /// The text as read, kept so a run's output can carry it verbatim.
    pub text: String,
    pub deployment: Name,
    pub name: Name,
    pub repeat: u32,
    pub concurrency: u32,
    pub pause: Span,
    pub on_failure: OnFailure,
    pub targets: Vec<TargetSpec>,
    /// Cluster-wide limits: present, this is a fleet run (leases from the collector).
    pub fleet: Option<FleetSection>,
}

/// A bad scenario: where, and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}:{line}:{column}: {path}: {message}")]
    Invalid {
        file: String,
        line: usize,
        column: usize,
        /// Key path such as `targets[0].ready[1].tcp.port` (`.` for the document).
        path: String,
        message: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Start no new restart after one that did not end `ok` (the default: this is production).
    #[default]
    Abort,
    /// Record the failure and go on.
    Continue,
}

/// Bounds that keep a typo from becoming an outage.
const MAX_REPEAT: u32 = 100_000;
const MAX_CONCURRENCY: u32 = 256;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    deployment: Name,
    scenario: Option<Name>,
    #[serde(default = "one", deserialize_with = "repeat")]
    repeat: u32,
    #[serde(default = "one", deserialize_with = "concurrency")]
    concurrency: u32,
    #[serde(default)]
    pause: Option<Span>,
    #[serde(default)]
    on_failure: OnFailure,
    targets: NonEmpty<TargetSpec>,
    #[serde(default)]
    fleet: Option<FleetSection>,
}

fn one() -> u32 {
    1
}

fn count_up_to<'de, D: Deserializer<'de>>(d: D, max: u32) -> Result<u32, D::Error> {
    checked::integer(d, "a whole number", |v| {
        if v < 1 || v > max as i64 {
            return Err(format!("{v} is out of range (1-{max})"));
        }
        Ok(v as u32)
    })
}
fn repeat<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    count_up_to(d, MAX_REPEAT)
}
fn concurrency<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    count_up_to(d, MAX_CONCURRENCY)
}

impl Scenario {
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            file: path.display().to_string(),
            source,
        })?;
        Scenario::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Scenario, ScenarioError> {
        let raw: RawScenario = read_checked(path, text)?;
        let invalid = |key: String, message: String| ScenarioError::Invalid {
            file: path.display().to_string(),
            line: 1,
            column: 1,
            path: key,
            message,
        };
        let name = match raw.scenario {
            Some(n) => n,
            None => {
                let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
                Name::parse(stem).map_err(|m| {
                    invalid(
                        "scenario".into(),
                        format!("no `scenario:` given and the file name cannot stand in: {m}"),
                    )
                })?
            }
        };
        Ok(Scenario {
            file: path.to_path_buf(),
            text: text.to_string(),
            deployment: raw.deployment,
            name,
            repeat: raw.repeat,
            concurrency: raw.concurrency,
            pause: raw.pause.unwrap_or(Span::secs(0)),
            on_failure: raw.on_failure,
            targets: raw.targets.0,
            fleet: raw.fleet,
        })
    }
}

/// Reads a YAML document into `T`, every check made inside deserialization:
/// an error names the file, line, column and key path (scenarios, and
/// `watch`'s configuration).
pub fn read_checked<T: serde::de::DeserializeOwned>(
    path: &Path,
    text: &str,
) -> Result<T, ScenarioError> {
    let de = yaml_serde::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key_path = e.path().to_string();
        let inner = e.into_inner();
        let (line, column) = inner
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((1, 1));
        let message = strip_position(&inner.to_string());
        // yaml_serde may lead with (part of) the path; it is already in front.
        let message = match message.split_once(": ") {
            Some((lead, rest)) if key_path.starts_with(lead) => rest.to_string(),
            _ => message,
        };
        ScenarioError::Invalid {
            file: path.display().to_string(),
            line,
            column,
            path: key_path,
            message,
        }
    })
}

/// yaml_serde appends " at line L column C" to messages; the position is
/// already in front of ours.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) if msg[i..].contains(" column ") => msg[..i].to_string(),
        _ => msg.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bounce_wire::Action;

    /// Parses `text` as the file `s.yaml` (shared by every part's tests).
    pub(super) fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        Scenario::parse(Path::new("s.yaml"), text)
    }

    /// The message `text` is refused with.
    pub(super) fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    const GOOD: &str = r#"
deployment: lab
scenario: kolla-api-sample
repeat: 3
concurrency: 1
pause: 2s
on_failure: abort
targets:
  - docker:
      names: ["nova_api", "keystone*"]
    action: restart
    stop_timeout: 10s
    ready:
      - docker_health: {}
      - exec_health: {interval: 200ms}
      - tcp: {host: 127.0.0.1, port: 8774, interval: 100ms}
      - http: {url: "http://127.0.0.1:8774/", expect_status: [200, 300], interval: 200ms}
    timeout: 300s
"#;

    #[test]
    fn the_documented_example_means_what_it_says() {
        let s = parse(GOOD).unwrap();
        assert_eq!(s.deployment.as_str(), "lab");
        assert_eq!(s.name.as_str(), "kolla-api-sample");
        assert_eq!((s.repeat, s.concurrency), (3, 1));
        assert_eq!(s.pause, Span::secs(2));
        assert_eq!(s.on_failure, OnFailure::Abort);
        let t = &s.targets[0];
        let Selector::Docker(d) = &t.selector else {
            panic!("docker")
        };
        assert!(d.names.0[1].matches("keystone_fernet"));
        assert!(!d.names.0[0].matches("nova_api_x"));
        assert_eq!(t.action, Action::Restart);
        assert_eq!(t.stop_timeout, Some(StopTimeout(10)));
        let ready = &t.ready.as_ref().unwrap().0;
        assert_eq!(ready.len(), 4);
        match &ready[3] {
            ProbeSpec::Http(h) => {
                assert_eq!(h.url.authority, "127.0.0.1:8774");
                let m = &h.expect_status.as_ref().unwrap().0;
                assert!(m[0].accepts(200) && !m[0].accepts(201));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(t.timeout, Span::secs(300));
    }

    #[test]
    fn scenario_name_defaults_to_the_file_name() {
        let s = Scenario::parse(
            Path::new("dir/rabbit-only.yaml"),
            "deployment: lab\ntargets: [{docker: {names: [rabbitmq]}}]\n",
        )
        .unwrap();
        assert_eq!(s.name.as_str(), "rabbit-only");
        assert_eq!(s.on_failure, OnFailure::Abort);
        assert_eq!(s.targets[0].timeout, Span::secs(300));
    }

    #[test]
    fn unknown_keys_are_refused_with_position_and_path() {
        let e = err("deployment: lab\ntargets:\n  - docker: {names: [a]}\n    actoin: kill\n");
        assert!(e.starts_with("s.yaml:4:"), "{e}");
        assert!(e.contains("targets[0]"), "{e}");
        assert!(e.contains("actoin"), "{e}");
    }

    #[test]
    fn values_are_checked_where_they_stand() {
        let e = err(
            "deployment: lab\ntargets:\n  - docker: {names: [a]}\n    ready:\n      - tcp: {port: 70000}\n",
        );
        assert!(e.starts_with("s.yaml:5:"), "{e}");
        assert!(e.contains("targets[0].ready[0].tcp.port"), "{e}");
        assert!(e.contains("70000 is not a TCP port"), "{e}");

        let e =
            err("deployment: lab\ntargets:\n  - docker: {names: [a]}\n    stop_timeout: 1500ms\n");
        assert!(e.contains("not whole seconds"), "{e}");

        let e = err("deployment: lab\nconcurrency: 0\ntargets:\n  - docker: {names: [a]}\n");
        assert!(e.starts_with("s.yaml:2:"), "{e}");
        assert!(e.contains("concurrency"), "{e}");
    }

    #[test]
    fn missing_required_keys_are_named() {
        let e = err("targets:\n  - docker: {names: [a]}\n");
        assert!(e.contains("deployment"), "{e}");
        let e = err("deployment: lab\ntargets: []\n");
        assert!(e.contains("at least one"), "{e}");
    }
}
