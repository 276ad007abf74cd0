//! A batch checked completely before anything of it is written: names,
//! that every timeline belongs to the batch's run and to the node that
//! sends it (the name its credential may send as), durations, and that the
//! histograms count exactly the timelines' phases. The histograms come back
//! decoded (sparse) for the store. The run id was checked when the batch
//! was read (`RunId`).

use crate::store::PhaseHistogram;
use bounce_wire::Phase;
use bounce_wire::ingest::Batch;
use bounce_wire::sparse::SparseHistogram;
use std::collections::BTreeMap;

/// Deepest JSON nesting a batch may have: a real one nests about 6 deep;
/// the limit refuses a crafted body before the decoder recurses into it.
pub const MAX_JSON_DEPTH: usize = 32;

/// Whether `body`'s JSON nests `[` and `{` at most `max` deep, read in one
/// pass over the bytes (strings skipped) before anything decodes it.
pub fn json_depth(body: &[u8], max: usize) -> Result<(), String> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in body {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Err(format!("body nests deeper than {max} levels"));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Most timelines, and most histograms, in one batch.
const MAX_ITEMS: usize = 10_000;

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-@:".contains(c))
}

/// The batch's decoded histograms, or what is wrong with it, in words.
pub fn batch(b: &Batch) -> Result<Vec<PhaseHistogram>, String> {
    let run = &b.run.identity;
    for (what, v) in [
        ("agent", &b.agent),
        ("run.deployment", &run.deployment),
        ("run.scenario", &run.scenario),
    ] {
        if !valid_name(v) {
            return Err(format!("{what}: {v:?} is not a valid name"));
        }
    }
    // Reports group by a timeline's node: a node may file results only
    // under the name it sends as (and its credential was checked for).
    if run.node.hostname != b.agent {
        return Err(format!(
            "run.node.hostname: {:?} is not the sending agent {:?} (a batch carries the sending node's own results)",
            run.node.hostname, b.agent
        ));
    }
    if b.seq == 0 {
        return Err("seq starts at 1".into());
    }
    if b.timelines.len() > MAX_ITEMS || b.histograms.len() > MAX_ITEMS {
        return Err("too many timelines or histograms in one batch".into());
    }
    let mut expected: BTreeMap<(String, Phase), u64> = BTreeMap::new();
    for (i, t) in b.timelines.iter().enumerate() {
        if t.run_id != run.run_id || t.deployment != run.deployment || t.scenario != run.scenario {
            return Err(format!("timelines[{i}] belongs to another run"));
        }
        if t.node != b.agent {
            return Err(format!(
                "timelines[{i}].node: {:?} is not the sending agent {:?} (a batch carries the sending node's own results)",
                t.node, b.agent
            ));
        }
        if !valid_name(&t.service) || t.service.contains('/') {
            return Err(format!(
                "timelines[{i}].service: {:?} is not a valid name",
                t.service
            ));
        }
        for (phase, secs) in &t.phases {
            if !secs.is_finite() || *secs < 0.0 {
                return Err(format!(
                    "timelines[{i}].phases.{phase}: {secs} is not a duration"
                ));
            }
            *expected.entry((t.service.clone(), *phase)).or_default() += 1;
        }
    }
    let mut out = Vec::new();
    let mut seen: BTreeMap<(String, Phase), u64> = BTreeMap::new();
    for (i, e) in b.histograms.iter().enumerate() {
        // Straight to the sparse form: no dense ~230 KiB histogram per value set.
        let h = SparseHistogram::from_v2_deflate(&e.v2_deflate)
            .map_err(|why| format!("histograms[{i}]: {why}"))?;
        if !e.sum_seconds.is_finite() || e.sum_seconds < 0.0 {
            return Err(format!("histograms[{i}].sum_seconds is not a duration"));
        }
        if seen.insert((e.service.clone(), e.phase), h.len()).is_some() {
            return Err(format!(
                "histograms[{i}]: {}/{} appears twice",
                e.service, e.phase
            ));
        }
        out.push((e.service.clone(), e.phase, h, e.sum_seconds));
    }
    if seen != expected {
        return Err("the histograms do not count the batch's timelines' phases".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bounce_wire::TimelineRecord;
    use bounce_wire::ingest::histograms_of;

    fn batch_of(services: &[&str]) -> Batch {
        let timelines: Vec<TimelineRecord> = services
            .iter()
            .map(|s| {
                serde_json::from_value(serde_json::json!({
                    "run_id": "r1", "deployment": "d", "scenario": "s", "node": "n1",
                    "target": {"kind": "docker", "name": s, "id": "x"},
                    "service": s, "iteration": 1, "action": "restart", "outcome": "ok",
                    "error": null, "exit_code": null, "signals": [], "oom_killed": false,
                    "phases": {"stop": 0.5, "start": 0.25}, "timestamps": [], "probes": []
                }))
                .unwrap()
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "agent": "n1",
            "run": {"run_id": "r1", "deployment": "d", "scenario": "s",
                    "node": {"hostname": "n1", "kernel": null, "os": null, "cpus": 1,
                             "memory_bytes": 1, "docker_version": null, "docker_api_version": null},
                    "started_unix_nanos": 1, "planned": 2},
            "seq": 1,
            "timelines": timelines,
            "histograms": histograms_of(&timelines).unwrap(),
            "end": null
        }))
        .unwrap()
    }

    #[test]
    fn a_whole_batch_passes_and_gives_its_histograms() {
        let hs = batch(&batch_of(&["a", "b"])).unwrap();
        assert_eq!(hs.len(), 4);
        assert!(hs.iter().all(|(_, _, h, _)| h.len() == 1));
    }

    #[test]
    fn anything_wrong_refuses_the_whole_batch() {
        let mut b = batch_of(&["a", "b"]);
        b.timelines[1].deployment = "other".into();
        assert_eq!(
            batch(&b).unwrap_err(),
            "timelines[1] belongs to another run"
        );
        let mut b = batch_of(&["a", "b"]);
        b.histograms.pop();
        let err = batch(&b).unwrap_err();
        assert!(err.contains("do not count"), "{err}");
        let mut b = batch_of(&["a"]);
        b.timelines[0].phases.insert(Phase::Ready, f64::NAN);
        assert!(batch(&b).unwrap_err().contains("is not a duration"));
        let mut b = batch_of(&["a"]);
        b.seq = 0;
        assert_eq!(batch(&b).unwrap_err(), "seq starts at 1");
        let mut b = batch_of(&["a/b"]);
        b.histograms.clear();
        assert!(batch(&b).unwrap_err().contains("is not a valid name"));
    }

    #[test]
    fn a_batch_carries_only_the_sending_nodes_results() {
        let mut b = batch_of(&["a", "b"]);
        b.timelines[1].node = "n2".into();
        assert_eq!(
            batch(&b).unwrap_err(),
            "timelines[1].node: \"n2\" is not the sending agent \"n1\" (a batch carries the sending node's own results)"
        );
        let mut b = batch_of(&["a"]);
        b.run.identity.node.hostname = "n2".into();
        assert!(
            batch(&b)
                .unwrap_err()
                .starts_with("run.node.hostname: \"n2\" is not the sending agent \"n1\"")
        );
    }

    #[test]
    fn json_depth_counts_outside_strings() {
        assert!(json_depth(br#"{"a":[{"b":1}]}"#, 3).is_ok());
        assert!(json_depth(br#"{"a":[{"b":1}]}"#, 2).is_err());
        assert!(json_depth(br#"{"a":"[[[[\"[[["}"#, 1).is_ok());
        let deep = "[".repeat(10_000);
        assert!(json_depth(deep.as_bytes(), MAX_JSON_DEPTH).is_err());
    }
}
