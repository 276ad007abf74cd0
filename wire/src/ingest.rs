//! What an agent sends the collector: `POST /api/v1/ingest`, one [`Batch`]
//! per request, JSON. A batch is identified by (agent, run, seq): the
//! collector stores each once and acknowledges a resent one without counting
//! it again, so an agent can resend until it hears back.

use crate::hist::{self, HistError};
use crate::run::RunIdentity;
use crate::tally::RunTally;
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

/// The histograms of a batch's timelines (every observed phase, once
/// each), built one at a time.
pub fn histograms_of(timelines: &[TimelineRecord]) -> Result<Vec<EncodedHistogram>, HistError> {
    let mut out = Vec::new();
    let mut failed = None;
    RunTally::of(timelines).each_histogram(|(service, phase), series, h| match hist::encode(h) {
        Ok(v2_deflate) => out.push(EncodedHistogram {
            service: service.clone(),
            phase: *phase,
            sum_seconds: series.sum,
            v2_deflate,
        }),
        Err(e) => {
            failed.get_or_insert(e);
        }
    });
    failed.map_or(Ok(out), Err)
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

    #[test]
    fn a_batch_carries_what_dense_histograms_encode() {
        let tls = crate::summary::tests::sample_run(50);
        let dense = hist::PhaseHistograms::from_timelines(&tls);
        let sent = histograms_of(&tls).unwrap();
        assert_eq!(sent.len(), dense.by_key.len());
        for e in &sent {
            let h = dense.get(&e.service, e.phase).unwrap();
            assert_eq!(e.v2_deflate, hist::encode(h).unwrap());
        }
        let a_stop: f64 = (0..50)
            .filter(|i| i % 3 == 0)
            .map(|i| tls[i].phases[&Phase::Stop])
            .sum();
        assert_eq!(sent[0].sum_seconds, a_stop);
    }
}
