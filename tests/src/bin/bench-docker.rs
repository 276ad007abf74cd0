//! Benchmark of the Docker path (numbers go to BENCHMARKS.md; nothing here is
//! a pass/fail test):
//!
//! 1. overhead: the same container restarted N times by `docker restart` and by
//!    `bounce-agent run` (repeat N), alternating, wall time of each batch;
//! 2. the agent's peak RSS during those runs (wait4's ru_maxrss of the agent process);
//! 3. readiness detection lag: the service records (in the container, with
//!    busybox adjtimex: CLOCK_REALTIME in µs) the moment it becomes ready; the
//!    lag is the agent's `ready` minus that moment, for `tcp` and `exec_health`.
//!
//! Run with `scripts/bench.sh` (release build). BENCH_N sets N (default 30).

use bounce_tests::*;
use bounce_wire::{BoundaryName, Outcome};
use std::time::Instant;

fn main() {
    let n: u32 = std::env::var("BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    docker_up();
    let agent_bin =
        std::env::var("BOUNCE_AGENT").expect("BOUNCE_AGENT: path to a release bounce-agent");
    let dir = Scratch::new("bench");

    // 1 + 2: overhead and RSS.
    let c = TestContainer::start(
        "bench-restart",
        &["--network", "none"],
        "trap 'exit 0' TERM; while true; do sleep 1 & wait; done",
    );
    let scenario = dir.write(
        "overhead.yaml",
        &format!(
            "deployment: bench\nrepeat: {n}\ntargets:\n  - docker: {{names: [{}]}}\n    stop_timeout: 10s\n    timeout: 60s\n",
            c.name
        ),
    );
    let mut docker_secs = Vec::new();
    let mut agent_secs = Vec::new();
    let mut max_rss_kib = 0i64;
    for round in 0..3 {
        let t = Instant::now();
        for _ in 0..n {
            docker(&["restart", &c.id]).expect("docker restart");
        }
        docker_secs.push(t.elapsed().as_secs_f64());

        let out = dir.path(&format!("overhead-{round}"));
        let t = Instant::now();
        let m = run_measured(&agent_bin, &scenario, &out, &[]);
        let (ok, rss) = (m.success, m.max_rss_kib);
        agent_secs.push(t.elapsed().as_secs_f64());
        assert!(ok, "agent run failed");
        max_rss_kib = max_rss_kib.max(rss);
        let tls = read_timelines(&out);
        assert!(tls.iter().all(|t| t.outcome == Outcome::Ok));
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (d, a) = (med(&mut docker_secs.clone()), med(&mut agent_secs.clone()));
    println!("overhead: N={n} restarts per batch, 3 batches each, alternating");
    println!(
        "  docker restart  batches {:?} s  median {d:.3} s ({:.1} ms/restart)",
        rounded(&docker_secs),
        d * 1e3 / n as f64
    );
    println!(
        "  bounce-agent    batches {:?} s  median {a:.3} s ({:.1} ms/restart)",
        rounded(&agent_secs),
        a * 1e3 / n as f64
    );
    println!("  ratio agent/docker (medians): {:.3}", a / d);
    println!("agent peak RSS: {:.1} MiB", max_rss_kib as f64 / 1024.0);
    drop(c);

    // 3: readiness detection lag.
    let port = free_port();
    let stamp = "busybox adjtimex | grep tv_ >> /tmp/ready_at";
    // A random delay (0.4-0.9 s) so the service's readiness is not
    // phase-locked to the probe's tries.
    let jitter = "0.$((RANDOM % 500 + 400))";
    let tcp = TestContainer::start(
        "bench-tcp",
        &["--network", "host"],
        &format!(
            "trap 'exit 0' TERM; sleep {jitter}; {stamp}; httpd -f -p 127.0.0.1:{port} -h /www & wait"
        ),
    );
    let exec = TestContainer::start(
        "bench-exec",
        &[
            "--network",
            "none",
            "--health-cmd",
            "test -f /tmp/ready",
            "--health-interval",
            "30s",
        ],
        &format!(
            "rm -f /tmp/ready; trap 'exit 0' TERM; sleep {jitter}; {stamp}; touch /tmp/ready; while true; do sleep 1 & wait; done"
        ),
    );
    for (label, c, probe) in [
        (
            "tcp every 100ms (default)",
            &tcp,
            format!("tcp: {{port: {port}}}"),
        ),
        (
            "tcp every 20ms",
            &tcp,
            format!("tcp: {{port: {port}, interval: 20ms}}"),
        ),
        (
            "exec_health every 200ms (default)",
            &exec,
            "exec_health: {}".to_string(),
        ),
        (
            "exec_health every 50ms",
            &exec,
            "exec_health: {interval: 50ms}".to_string(),
        ),
    ] {
        let _ = docker(&["exec", &c.id, "rm", "-f", "/tmp/ready_at"]);
        let scenario = dir.write(
            "lag.yaml",
            &format!(
                "deployment: bench\nrepeat: {n}\ntargets:\n  - docker: {{names: [{}]}}\n    stop_timeout: 10s\n    timeout: 60s\n    ready: [{{{probe}}}]\n",
                c.name
            ),
        );
        let out = dir.path(&format!("lag-{}", label.replace(' ', "_")));
        let ok = run_measured(&agent_bin, &scenario, &out, &[]).success;
        assert!(ok, "lag run failed");
        let stamps = ready_stamps(&docker(&["exec", &c.id, "cat", "/tmp/ready_at"]).unwrap());
        let tls = read_timelines(&out);
        assert_eq!(stamps.len(), tls.len(), "one stamp per restart");
        let mut lags_ms: Vec<f64> = tls
            .iter()
            .zip(&stamps)
            .map(|(t, s)| (t.boundary(BoundaryName::Ready).unwrap().unix_nanos - s) as f64 / 1e6)
            .collect();
        let busy: f64 = tls
            .iter()
            .map(|t| t.probes[0].busy_seconds / t.probes[0].tries as f64)
            .sum::<f64>()
            / tls.len() as f64;
        lags_ms.sort_by(f64::total_cmp);
        let q = |p: f64| lags_ms[((lags_ms.len() - 1) as f64 * p).round() as usize];
        println!(
            "readiness lag, {label}: p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms, min {:.1} ms (mean try {:.1} ms)",
            q(0.5),
            q(0.9),
            q(1.0),
            q(0.0),
            busy * 1e3
        );
    }
}

fn rounded(v: &[f64]) -> Vec<f64> {
    v.iter().map(|x| (x * 1000.0).round() / 1000.0).collect()
}

/// `time.tv_sec: S` / `time.tv_usec: U` pairs to unix nanos.
fn ready_stamps(text: &str) -> Vec<i64> {
    let vals: Vec<i64> = text
        .lines()
        .filter_map(|l| l.rsplit(':').next()?.trim().parse().ok())
        .collect();
    vals.chunks(2)
        .map(|c| c[0] * 1_000_000_000 + c[1] * 1_000)
        .collect()
}
