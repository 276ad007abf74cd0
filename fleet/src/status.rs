//! What `bounce-collector fleet status RUN` shows: every node, the queue,
//! each limit's use and the failures, read from a lease book (its words
//! are `words.rs`; `--json` shows these types as they are).

use crate::book::{Check, LeaseBook, ReqState};
use crate::event::{Millis, PauseReason};
use bounce_wire::lease::{LeaseId, Restart};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum FleetState {
    Running,
    Paused {
        reason: PauseReason,
    },
    Aborted {
        /// The operator's credential, as the audit log names it.
        by: String,
    },
    /// Every node has finished its run.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Holds nothing and waits for nothing (between restarts, or not started).
    Idle,
    Waiting,
    Restarting,
    /// A lease expired mid-restart; its slots stay taken until resolved.
    Lost,
    /// Lost, then resolved by an operator: out of the run.
    Resolved,
    Done,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub node: String,
    pub state: NodeState,
    /// What it is restarting now.
    pub restarting: Vec<Held>,
    /// What it was restarting when its lease expired (`since`: the expiry).
    pub lost: Vec<Held>,
    pub waiting: usize,
    /// When its longest-waiting request was asked.
    pub waiting_since: Option<Millis>,
    /// Times an agent of it rejoined the run after a resolve.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub epoch: u32,
    /// Its last resolve by an operator, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved: Option<Resolution>,
}

/// An operator's resolve of a lost node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    pub at: Millis,
    /// The operator's credential, as the audit log names it.
    pub by: String,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A lease held: since when (granted, or lost) and its deadline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    pub lease: LeaseId,
    pub restart: Restart,
    pub since: Millis,
    /// The lease's deadline (renewed while the restart lasts); none once lost.
    pub until: Option<Millis>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Queued {
    pub lease: LeaseId,
    pub node: String,
    pub restart: Restart,
    /// When it was asked.
    pub since: Millis,
    /// What it waits for: `node` (busy, lost), `max_in_flight`, a key such as
    /// `service:nova_api`, or `paused`.
    pub blocked_on: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitUse {
    /// `max_in_flight`, or the template and the rendered key.
    pub limit: String,
    pub key: String,
    pub used: u32,
    pub max: u32,
    pub waiting: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failures {
    pub total: u32,
    pub since_resume: u32,
    pub max: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetStatus {
    pub run: String,
    pub state: FleetState,
    pub nodes: Vec<NodeStatus>,
    /// In the order they will be served.
    pub queue: Vec<Queued>,
    /// `max_in_flight` first, then every key ever asked for.
    pub limits: Vec<LimitUse>,
    pub failures: Failures,
}

impl LeaseBook {
    pub fn status(&self) -> FleetStatus {
        let c = &self.core;
        let state = if let Some(by) = &c.aborted {
            FleetState::Aborted { by: by.clone() }
        } else if let Some(reason) = &c.paused {
            FleetState::Paused {
                reason: reason.clone(),
            }
        } else if c
            .nodes
            .iter()
            .all(|n| n.done || (n.resolved && n.held == 0))
        {
            FleetState::Done
        } else {
            FleetState::Running
        };
        let mut nodes: Vec<NodeStatus> = c
            .nodes
            .iter()
            .map(|n| NodeStatus {
                node: n.spec.name.clone(),
                state: NodeState::Idle,
                restarting: Vec::new(),
                lost: Vec::new(),
                waiting: n.waiting.len(),
                waiting_since: n.waiting.first().map(|&id| c.reqs[id as usize].since),
                epoch: n.epoch,
                resolved: n.resolution.as_ref().map(|(at, by)| Resolution {
                    at: *at,
                    by: by.clone(),
                }),
            })
            .collect();
        for (id, r) in (0..).zip(&c.reqs) {
            let ns = &mut nodes[r.node as usize];
            let held = |until| Held {
                lease: LeaseId(id),
                restart: r.restart.clone(),
                since: r.since,
                until,
            };
            match r.state {
                ReqState::Granted { until } => ns.restarting.push(held(Some(until))),
                ReqState::Lost => ns.lost.push(held(None)),
                _ => {}
            }
        }
        for (ns, n) in nodes.iter_mut().zip(&c.nodes) {
            ns.state = if n.lost > 0 {
                NodeState::Lost
            } else if n.resolved {
                NodeState::Resolved
            } else if n.done {
                NodeState::Done
            } else if !ns.restarting.is_empty() {
                NodeState::Restarting
            } else if ns.waiting > 0 {
                NodeState::Waiting
            } else {
                NodeState::Idle
            };
        }
        let queue = c
            .waiting
            .iter()
            .map(|&id| {
                let r = &c.reqs[id as usize];
                Queued {
                    lease: LeaseId(id),
                    node: c.nodes[r.node as usize].spec.name.clone(),
                    restart: r.restart.clone(),
                    since: r.since,
                    blocked_on: match c.check(id) {
                        Check::Stopped => "paused".into(),
                        Check::Node => "node".into(),
                        Check::Key(k) => c.keys[k as usize].key.value.clone(),
                        Check::InFlight | Check::Grantable => "max_in_flight".into(),
                    },
                }
            })
            .collect();
        let mut limits = vec![LimitUse {
            limit: "max_in_flight".into(),
            key: c.spec.limits.max_in_flight.to_string(),
            used: c.in_flight,
            max: c.in_flight_max,
            waiting: c.waiting.len(),
        }];
        limits.extend(c.keys.iter().map(|k| {
            LimitUse {
                limit: c.spec.limits.limits[usize::from(k.key.limit)]
                    .key
                    .as_str()
                    .into(),
                key: k.key.value.clone(),
                used: k.used,
                max: k.max,
                waiting: k.queue.len(),
            }
        }));
        FleetStatus {
            run: c.spec.run.clone(),
            state,
            nodes,
            queue,
            limits,
            failures: Failures {
                total: c.failures,
                since_resume: c.failures_since_resume,
                max: c.spec.limits.max_failures.get(),
            },
        }
    }
}
