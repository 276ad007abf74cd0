//! What a fleet run's lease book records: every state change is one small
//! [`Event`], appended by the collector in the same transaction as its
//! answer, and replayed after a restart (`LeaseBook::replay`).

use bounce_wire::Outcome;
use bounce_wire::lease::{LeaseId, Restart};
use bounce_wire::limits::Limits;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Milliseconds on the collector's clock (passed in; the book reads no clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Millis(pub u64);

impl Millis {
    pub fn plus(self, ms: u64) -> Millis {
        Millis(self.0.saturating_add(ms))
    }
}

/// A node of the run and its labels (`--label rack=r1`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSpec {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A rendered key of one keyed limit (`limit` indexes `Limits::limits`):
/// two templates that render the same text are still two keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Key {
    pub limit: u16,
    pub value: String,
}

/// Why the fleet stopped granting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "why")]
pub enum PauseReason {
    /// `by`: the operator's credential, as the audit log names it
    /// (`admin token 2`).
    Operator {
        #[serde(default)]
        by: String,
    },
    /// `max_failures` restarts ended not `ok` since the last resume.
    Failures { count: u32 },
    /// A lease of this node expired mid-restart.
    Lost { node: String },
}

/// Why a waiting request left the queue ungranted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Withdrawal {
    /// The agent no longer wants it (its own Ctrl-C, its run ended).
    Agent,
    /// The fleet was aborted: the answer is "abort".
    Abort,
    /// Its node was resolved (lost, then taken out of the run by an
    /// operator): a dead agent's request must not keep its place in a queue.
    Resolved,
}

/// The fleet run as declared when it opens: the first event of its log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetSpec {
    pub run: String,
    pub limits: Limits,
    pub nodes: Vec<NodeSpec>,
    /// Restarts one node may have in flight (the scenario's `concurrency`).
    pub node_concurrency: u32,
    /// A lease not renewed for this long is lost.
    pub lease_ttl_ms: u64,
}

/// One state change of a lease book.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum Event {
    Opened {
        spec: FleetSpec,
        at: Millis,
    },
    Requested {
        lease: LeaseId,
        node: String,
        restart: Restart,
        /// Rendered when asked, so a replay needs no labels or templates.
        keys: Vec<Key>,
        at: Millis,
    },
    Granted {
        lease: LeaseId,
        until: Millis,
        at: Millis,
    },
    Renewed {
        lease: LeaseId,
        until: Millis,
    },
    Returned {
        lease: LeaseId,
        outcome: Outcome,
        at: Millis,
    },
    /// Not renewed in time: the node is lost, its slots stay taken.
    Expired {
        lease: LeaseId,
        at: Millis,
    },
    Withdrawn {
        lease: LeaseId,
        why: Withdrawal,
    },
    /// The operator resolved a lost node: its lost leases' slots are free
    /// and the node is out of the run (its waiting requests were withdrawn
    /// just before, as `resolved`) until an agent of it rejoins.
    Resolved {
        node: String,
        at: Millis,
        /// The operator's credential, as the audit log names it.
        #[serde(default)]
        by: String,
    },
    /// A new agent of a resolved node joined the run again: the node is
    /// back in it under its next epoch (calls of an older epoch are
    /// refused), and asks anew for what it restarts (its earlier requests
    /// stay as they ended).
    Rejoined {
        node: String,
        at: Millis,
    },
    Paused {
        reason: PauseReason,
        at: Millis,
    },
    Resumed {
        at: Millis,
    },
    Aborted {
        at: Millis,
        /// The operator's credential, as the audit log names it.
        #[serde(default)]
        by: String,
    },
    /// The node's agent ended its run.
    Finished {
        node: String,
        at: Millis,
    },
    /// The collector came back: every lease in flight gets a full TTL from
    /// now, since no agent could renew while it was away.
    Recovered {
        at: Millis,
    },
}
