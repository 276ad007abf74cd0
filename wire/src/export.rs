//! [`RunData`]: one run, everything a report needs. The collector answers
//! it at `/api/v1/runs/{id}/export` and builds it from its store; the run
//! folder reader builds it from an agent's folder; reports are made from it.

use crate::run::NodeFacts;
use crate::run::RunId;
use crate::timeline::TimelineRecord;
use serde::{Deserialize, Serialize};

/// One run, all its nodes together.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunData {
    pub run_id: RunId,
    pub deployment: String,
    /// The scenario's name.
    pub scenario: String,
    /// The scenario as the agent read it, when known.
    pub scenario_yaml: Option<String>,
    /// One per node (agent) of the run.
    pub nodes: Vec<NodeFacts>,
    pub started_unix_nanos: i64,
    /// None while (or if) the run never finished.
    pub finished_unix_nanos: Option<i64>,
    pub planned: u64,
    pub not_started: u64,
    pub interrupted: bool,
    pub timelines: Vec<TimelineRecord>,
    /// Where it was read from, for the report's footer.
    pub origin: String,
}

impl RunData {
    /// Every name a host goes by in this run (for redaction).
    pub fn host_names(&self) -> Vec<&str> {
        self.nodes
            .iter()
            .map(|n| n.hostname.as_str())
            .chain(self.timelines.iter().map(|t| t.node.as_str()))
            .collect()
    }
}
