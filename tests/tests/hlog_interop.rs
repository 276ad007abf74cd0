//! The histogram log bounce writes is read by another HdrHistogram
//! implementation (PyPI's `hdrhistogram`, installed by scripts/test.sh) with
//! the same counts and quantiles.

use bounce_wire::{Phase, PhaseHistograms};
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, SystemTime};

#[test]
fn python_hdrhistogram_reads_our_hlog_with_the_same_numbers() {
    let mut hs = PhaseHistograms::default();
    // Restart-like values from 1 ms to 20 min, deterministic.
    let mut x: u64 = 12345;
    for _ in 0..5000 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let secs = 0.001 * (1.0 + (x >> 40) as f64 / 16.0);
        hs.record("nova_api", Phase::Stop, secs.min(1200.0));
        hs.record("neutron_l3_agent", Phase::Total, secs * 7.0);
    }
    let dir = std::env::temp_dir().join(format!("bounce-hlog-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("h.hlog");
    let mut buf = Vec::new();
    hs.write_hlog(
        &mut buf,
        SystemTime::now(),
        Duration::from_secs(60),
        "interop",
    )
    .unwrap();
    std::fs::write(&path, &buf).unwrap();

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/harness/read_hlog.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python3 read_hlog.py failed (is PyPI's hdrhistogram installed? scripts/test.sh installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    for line in lines {
        let (service, phase) = bounce_wire::hist::parse_tag(line["tag"].as_str().unwrap()).unwrap();
        let h = hs.get(&service, phase).unwrap();
        assert_eq!(line["count"].as_u64().unwrap(), h.len());
        for (key, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99)] {
            assert_eq!(
                line[key].as_u64().unwrap(),
                h.value_at_quantile(q),
                "{service}/{phase} {key}"
            );
        }
        assert_eq!(line["max"].as_u64().unwrap(), h.max());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
