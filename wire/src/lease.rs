//! What the agents of a fleet run and the collector say about leases:
//! `POST /api/v1/fleets/{run}/agent`, one [`FleetCall`] per request (join
//! with the node's labels and the run's terms, ask for restarts, renew,
//! give back with the outcome, withdraw, finish), one [`FleetAnswer`] each.
//! The collector decides when, never what: a call names restarts of the
//! agent's own scenario. Every list and string is bounded ([`FleetCall::check`]).

use crate::limits::{Kind, Limits};
use crate::timeline::{Outcome, TargetRef};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The largest body either side accepts.
pub const MAX_FLEET_BODY: usize = 256 * 1024;
/// Most restarts one `ask` may name (an agent asks for its pending targets).
pub const MAX_ASKED: usize = 1024;
/// Most labels a node may carry.
pub const MAX_LABELS: usize = 64;
/// Longest name, label or value.
pub const MAX_TEXT: usize = 256;
/// Longest the collector holds an `ask` open before answering "waiting".
pub const MAX_WAIT_MS: u64 = 20_000;

/// The agents' endpoint of one fleet run.
pub fn agent_path(run: &str) -> String {
    format!("/api/v1/fleets/{run}/agent")
}

/// One request, and the lease it becomes when granted: numbered by the
/// collector in the order asked, which is the order served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LeaseId(pub u64);

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "lease {}", self.0)
    }
}

/// One restart as the agent names it; (node, restart) is asked for once.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Restart {
    pub kind: Kind,
    /// The name histograms are grouped by (kolla: the container name).
    pub service: String,
    /// The target's own name (container, unit).
    pub target: String,
    /// 1-based round of the scenario's `repeat`.
    pub iteration: u32,
}

impl fmt::Display for Restart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} #{}",
            self.kind.as_str(),
            self.target,
            self.iteration
        )
    }
}

impl Restart {
    /// Round `iteration` of a target as the agent resolved it.
    pub fn of(target: &TargetRef, service: &str, iteration: u32) -> Restart {
        Restart {
            kind: match target {
                TargetRef::Docker { .. } => Kind::Docker,
                TargetRef::Systemd { .. } => Kind::Systemd,
                TargetRef::CephOsd { .. } => Kind::CephOsd,
            },
            service: service.into(),
            // An OSD by its id, unique in its cluster whichever node's unit
            // or container runs it: the Ceph gate asks `ok-to-stop` by it.
            target: match target {
                TargetRef::CephOsd { id, .. } => format!("osd.{id}"),
                other => other.name().into(),
            },
            iteration,
        }
    }
}

/// What every agent of one fleet run must agree on (each brings its own
/// copy from its scenario and flags; one that differs is refused).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetTerms {
    pub deployment: String,
    pub scenario: String,
    pub limits: Limits,
    /// How many nodes the run has: the fleet opens when that many joined.
    pub nodes: u32,
    /// Restarts one node may have in flight (the scenario's `concurrency`).
    pub node_concurrency: u32,
    /// A lease not renewed for this long is lost.
    pub lease_ttl_ms: u64,
}

/// A node joining a fleet run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Join {
    /// `--label rack=r1`: what `{label.NAME}` keys render from.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub terms: FleetTerms,
}

/// What an agent asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum AgentCall {
    /// Register (idempotent); answered `joining` until every node has.
    Join(Join),
    /// A lease for each of these restarts (asking again for one answers
    /// what it is now); held open up to `wait_ms` until one is granted or
    /// the fleet stops.
    Ask {
        restarts: Vec<Restart>,
        #[serde(default)]
        wait_ms: u64,
    },
    /// The restart is still going.
    Renew { lease: LeaseId },
    /// The restart ended with this outcome.
    Return { lease: LeaseId, outcome: Outcome },
    /// No longer wanted: waiting, or granted and never started.
    Withdraw { lease: LeaseId },
    /// This node's run is over: it asks for nothing more.
    Finish,
}

/// One call, as node `node` (a token bound to names may only act as them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetCall {
    pub node: String,
    /// The node's epoch this agent joined under ([`FleetAnswer::Joined`]):
    /// 0, or how many times an agent of it rejoined after a resolve. A
    /// call from an older epoch is refused (that agent was resolved out).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub epoch: u32,
    pub call: AgentCall,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// What the fleet tells every agent with each answer to `ask`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "fleet")]
pub enum Control {
    /// Grants go on.
    Running,
    /// No grants until an operator resumes; restarts in flight go on.
    Paused { why: String },
    /// No grant ever: end the run cleanly.
    Aborted,
}

/// One asked restart, now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "ticket")]
pub enum Ticket {
    /// Restart now; renew within `ttl_ms`.
    Granted {
        lease: LeaseId,
        ttl_ms: u64,
        /// For a Ceph OSD: as in [`FleetAnswer::Renewed`].
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        alongside: Vec<String>,
    },
    Waiting {
        lease: LeaseId,
    },
    Refused {
        why: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "answer")]
pub enum FleetAnswer {
    /// `open` once every node joined; until then ask nothing.
    Joined {
        joined: u32,
        expected: u32,
        open: bool,
        /// This node's epoch: every later call carries it. Above 0 when
        /// the node rejoined after an operator resolved it: its agent
        /// then numbers its batches from `epoch << 32`, so they never
        /// collide with those its earlier agents sent or still spool.
        #[serde(default, skip_serializing_if = "is_zero")]
        epoch: u32,
    },
    /// One ticket per asked restart, in the order asked.
    Tickets {
        control: Control,
        tickets: Vec<Ticket>,
    },
    Renewed {
        ttl_ms: u64,
        /// For a Ceph OSD's lease: the other OSDs (`osd.N`) whose leases
        /// were granted before this one and are still held, anywhere in the
        /// fleet. The OSD gate asks `ceph osd ok-to-stop` for them together
        /// with its own, so of any OSDs down at once the last one granted
        /// checked them all; renewals keep the list current (it only shrinks).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        alongside: Vec<String>,
    },
    /// Return, withdraw, finish: taken.
    Done,
}

fn text(what: &str, s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > MAX_TEXT || s.chars().any(char::is_control) {
        return Err(format!(
            "{what} {s:?} must be 1-{MAX_TEXT} bytes without control characters"
        ));
    }
    Ok(())
}

impl FleetCall {
    /// Every bound, before anything is looked at.
    pub fn check(&self) -> Result<(), String> {
        text("node", &self.node)?;
        match &self.call {
            AgentCall::Join(j) => {
                if j.labels.len() > MAX_LABELS {
                    return Err(format!("more than {MAX_LABELS} labels"));
                }
                for (k, v) in &j.labels {
                    text("label", k)?;
                    text("label value", v)?;
                }
                text("deployment", &j.terms.deployment)?;
                text("scenario", &j.terms.scenario)?;
                if j.terms.nodes == 0 || j.terms.node_concurrency == 0 || j.terms.lease_ttl_ms == 0
                {
                    return Err(
                        "nodes, node_concurrency and lease_ttl_ms must be at least 1".into(),
                    );
                }
            }
            AgentCall::Ask { restarts, .. } => {
                if restarts.is_empty() || restarts.len() > MAX_ASKED {
                    return Err(format!("ask for 1 to {MAX_ASKED} restarts"));
                }
                for r in restarts {
                    text("service", &r.service)?;
                    text("target", &r.target)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Parses `NAME=VALUE` (`--label rack=r1`).
pub fn parse_label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: a label is NAME=VALUE (e.g. rack=r1)"))?;
    if k.is_empty()
        || !k
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err(format!(
            "{s:?}: a label name is letters, digits and _ . - (what {{label.NAME}} can name)"
        ));
    }
    text("label value", v)?;
    Ok((k.into(), v.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_keep_their_json_shape_and_bounds() {
        let call: FleetCall = serde_json::from_str(
            r#"{"node":"ctl1","call":{"ask":{"restarts":[{"kind":"docker","service":"nova_api","target":"nova_api","iteration":1}],"wait_ms":500}}}"#,
        )
        .unwrap();
        assert!(call.check().is_ok());
        let back: FleetCall = serde_json::from_str(&serde_json::to_string(&call).unwrap()).unwrap();
        assert_eq!(back, call);
        let empty = FleetCall {
            node: "ctl1".into(),
            epoch: 0,
            call: AgentCall::Ask {
                restarts: vec![],
                wait_ms: 0,
            },
        };
        assert!(empty.check().unwrap_err().contains("1 to 1024"));
        let bad = FleetCall {
            node: "a\nb".into(),
            epoch: 0,
            call: AgentCall::Finish,
        };
        assert!(bad.check().is_err());
        assert!(
            serde_json::from_str::<FleetCall>(r#"{"node":"a","call":"finish","x":1}"#).is_err()
        );
        // The epoch travels only once a node rejoined (older collectors
        // refuse unknown fields).
        assert_eq!(
            serde_json::to_string(&bad).unwrap(),
            r#"{"node":"a\nb","call":"finish"}"#
        );
        let rejoined: FleetCall =
            serde_json::from_str(r#"{"node":"a","epoch":2,"call":"finish"}"#).unwrap();
        assert_eq!(rejoined.epoch, 2);
        let a = FleetAnswer::Tickets {
            control: Control::Paused { why: "x".into() },
            tickets: vec![Ticket::Granted {
                lease: LeaseId(3),
                ttl_ms: 30_000,
                alongside: vec!["osd.1".into()],
            }],
        };
        let j = serde_json::to_string(&a).unwrap();
        assert!(
            j.contains(r#""fleet":"paused""#)
                && j.contains(r#""ticket":"granted""#)
                && j.contains(r#""alongside":["osd.1"]"#),
            "{j}"
        );
        assert_eq!(serde_json::from_str::<FleetAnswer>(&j).unwrap(), a);
    }

    #[test]
    fn labels_are_name_equals_value() {
        assert_eq!(
            parse_label("rack=r1").unwrap(),
            ("rack".into(), "r1".into())
        );
        assert!(parse_label("rack").is_err());
        assert!(parse_label("ra ck=1").is_err());
        assert!(parse_label("rack=").is_err());
    }
}
