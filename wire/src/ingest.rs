//! What an agent sends the collector: `POST /api/v1/ingest`, one [`Batch`]
//! per request, JSON. A batch is identified by (agent, run, seq): the
//! collector stores each once and acknowledges a resent one without counting
//! it again, so an agent can resend until it hears back.

use crate::hist::{self, HistError, PhaseHistograms};
use crate::run::RunIdentity;
use crate::timeline::{Phase, TimelineRecord};
use serde::{Deserialize, Serialize};

pub const INGEST_PATH: &str = "/api/v1/ingest";
/// The largest body the collector accepts.
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    /// The sending agent (its node name unless set otherwise).
    pub agent: String,
    pub run: RunHeader,
    /// 1, 2, 3... per (agent, run).
    pub seq: u64,
    pub timelines: Vec<TimelineRecord>,
    /// The phases of this batch's timelines, as histograms to merge.
    pub histograms: Vec<EncodedHistogram>,
    /// Present on the last batch of a run.
    pub end: Option<RunEnd>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunHeader {
    /// `run_id`, `deployment`, `scenario`, `node`, as flat fields.
    #[serde(flatten)]
    pub identity: RunIdentity,
    pub started_unix_nanos: i64,
    pub planned: u64,
    /// The scenario as the agent read it (for reports), sent with the first batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario_yaml: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncodedHistogram {
    pub service: String,
    pub phase: Phase,
    /// Exact sum of the recorded durations, seconds.
    pub sum_seconds: f64,
    /// HdrHistogram V2 compressed encoding, base64; values in µs.
    pub v2_deflate: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunEnd {
    pub finished_unix_nanos: i64,
    pub not_started: u64,
    pub interrupted: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    pub seq: u64,
    /// `stored`, or `duplicate` for a batch the collector already had.
    pub status: String,
}

/// The histograms of a batch's timelines (every observed phase, once each).
pub fn histograms_of(timelines: &[TimelineRecord]) -> Result<Vec<EncodedHistogram>, HistError> {
    let hs = PhaseHistograms::from_timelines(timelines);
    let mut sums = std::collections::BTreeMap::new();
    for t in timelines {
        for (phase, secs) in &t.phases {
            *sums.entry((t.service.clone(), *phase)).or_insert(0.0) += secs;
        }
    }
    hs.by_key
        .iter()
        .map(|(key, h)| {
            Ok(EncodedHistogram {
                service: key.0.clone(),
                phase: key.1,
                sum_seconds: sums[key],
                v2_deflate: hist::encode(h)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch as agents have always sent it: flat `run` fields.
    const BATCH: &str = r#"{"agent":"n1","run":{"run_id":"r1","deployment":"d","scenario":"s","node":{"hostname":"n1","kernel":null,"os":null,"cpus":2,"memory_bytes":1,"docker_version":null,"docker_api_version":null},"started_unix_nanos":5,"planned":3,"scenario_yaml":"x: 1"},"seq":1,"timelines":[],"histograms":[],"end":null}"#;

    #[test]
    fn the_header_keeps_its_flat_json_and_refuses_unknown_fields() {
        let b: Batch = serde_json::from_str(BATCH).unwrap();
        assert_eq!(b.run.identity.run_id, "r1");
        assert_eq!(b.run.identity.node.hostname, "n1");
        assert_eq!(serde_json::to_string(&b).unwrap(), BATCH);
        let extra = BATCH.replace(r#""planned":3"#, r#""planned":3,"bogus":1"#);
        let err = serde_json::from_str::<Batch>(&extra)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `bogus`"), "{err}");
        let bad_id = BATCH.replace(r#""run_id":"r1""#, r#""run_id":"r 1""#);
        let err = serde_json::from_str::<Batch>(&bad_id)
            .unwrap_err()
            .to_string();
        assert!(err.contains("a run id is"), "{err}");
    }
}
