//! Fleet simulator for the collector (numbers go to BENCHMARKS.md): N
//! simulated agents post realistic batches (one restart's timeline and its
//! phase histograms each, as `bounce-agent run --collector` sends them) over
//! loopback through C concurrent connections to a release `bounce-collector`.
//!
//! Reports sustained batches/s and histograms merged/s, ingest latency p50/p99,
//! the collector's peak RSS, store growth per 1,000 restarts, and the time to
//! render /metrics with the resulting number of series.
//!
//!   BOUNCE_COLLECTOR=target/release/bounce-collector target/release/bench-collector AGENTS [CONCURRENCY] [SERVICES]

use bounce_tests::{
    AGENT_TOKEN, Scratch, bench_collector, fleet_batch as batch, free_port, listening, send_all,
};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::time::Instant;

fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))?
                .split_whitespace()
                .nth(1)?
                .parse::<f64>()
                .ok()
        })
        .map(|kib| kib / 1024.0)
        .unwrap_or(0.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let agents: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let conns: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(64);
    let services: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(50);
    let dir = Scratch::new("bench-collector");
    let (mut child, port) = bench_collector(&dir);

    let mut x = 42u64;
    let bodies: Vec<(Bytes, usize)> = (0..agents)
        .map(|a| {
            let b = batch(a, services, &mut x);
            (
                Bytes::from(serde_json::to_vec(&b).unwrap()),
                b.histograms.len(),
            )
        })
        .collect();
    let histograms: usize = bodies.iter().map(|b| b.1).sum();
    let mean_bytes = bodies.iter().map(|b| b.0.len()).sum::<usize>() / agents;
    let url = format!("http://127.0.0.1:{port}/api/v1/ingest");
    let requests = bodies
        .into_iter()
        .map(|(body, _)| {
            hyper::Request::post(url.as_str())
                .header("authorization", format!("Bearer {AGENT_TOKEN}"))
                .header("content-type", "application/json")
                .body(Full::new(body))
                .unwrap()
        })
        .collect();
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let (secs, lat) = send_all(&client, conns, requests).await;
    let store_bytes: u64 = ["store.db", "store.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.path(f)).ok().map(|m| m.len()))
        .sum();

    let mut renders = Vec::new();
    let mut series = 0;
    for _ in 0..3 {
        let t0 = Instant::now();
        let out = std::process::Command::new("curl")
            .args(["-s", &format!("http://127.0.0.1:{port}/metrics")])
            .output()
            .unwrap();
        renders.push(t0.elapsed().as_secs_f64() * 1e3);
        series = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("bounce_restart_duration_seconds_count"))
            .count();
    }
    renders.sort_by(f64::total_cmp);
    println!(
        "fleet: {agents} agents, {conns} connections, {services} services, one batch each ({mean_bytes} bytes, {} histograms on average)",
        histograms as f64 / agents as f64
    );
    println!(
        "  sustained: {:.0} batches/s, {:.0} histograms merged/s ({secs:.2} s)",
        agents as f64 / secs,
        histograms as f64 / secs
    );
    println!(
        "  ingest latency: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        lat.value_at_quantile(0.5) as f64 / 1e3,
        lat.value_at_quantile(0.99) as f64 / 1e3,
        lat.max() as f64 / 1e3
    );
    println!("  collector peak RSS: {:.1} MiB", peak_rss_mib(child.id()));
    println!(
        "  store: {:.2} MiB, {:.0} KiB per 1,000 restarts",
        store_bytes as f64 / 1048576.0,
        store_bytes as f64 / 1024.0 / agents as f64 * 1000.0
    );
    println!(
        "  /metrics with {series} histogram series: median {:.0} ms (of {:?} ms)",
        renders[1],
        renders.iter().map(|r| r.round()).collect::<Vec<_>>()
    );
    let _ = child.kill();
    let _ = child.wait();
    if std::env::var_os("BENCH_KEEP_STORE").is_some() {
        // For profiling /metrics on a real fleet's store afterwards.
        println!("  store kept: {}", dir.path("store.db").display());
        std::mem::forget(dir);
        return;
    }

    // The peer an operator might otherwise use: each agent pushes its
    // restart's phase durations to a Prometheus pushgateway (which keeps the
    // last push per group and cannot merge distributions).
    if let Ok(pgw_bin) = std::env::var("PUSHGATEWAY") {
        let pport = free_port();
        let mut pgw = std::process::Command::new(pgw_bin)
            .arg(format!("--web.listen-address=127.0.0.1:{pport}"))
            // In memory only: Debian's build persists to
            // /var/lib/prometheus/pushgateway.data by default, and would
            // load (and keep writing) an earlier run's groups.
            .arg("--persistence.file=")
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start pushgateway");
        assert!(
            listening(pport),
            "the pushgateway did not listen on {pport}"
        );
        let mut x = 42u64;
        let pushes: Vec<(String, Bytes)> = (0..agents)
            .map(|a| {
                let b = batch(a, services, &mut x);
                let t = &b.timelines[0];
                let mut text = String::from("# TYPE bounce_restart_phase_seconds gauge\n");
                for (phase, secs) in &t.phases {
                    text.push_str(&format!(
                        "bounce_restart_phase_seconds{{service=\"{}\",phase=\"{}\"}} {secs}\n",
                        t.service, phase
                    ));
                }
                (b.agent.clone(), Bytes::from(text))
            })
            .collect();
        let requests = pushes
            .into_iter()
            .map(|(node, body)| {
                let url = format!("http://127.0.0.1:{pport}/metrics/job/bounce/instance/{node}");
                hyper::Request::put(url).body(Full::new(body)).unwrap()
            })
            .collect();
        let (psecs, lat) = send_all(&client, conns, requests).await;
        let t0 = Instant::now();
        let out = std::process::Command::new("curl")
            .args(["-s", &format!("http://127.0.0.1:{pport}/metrics")])
            .output()
            .unwrap();
        let render = t0.elapsed().as_secs_f64() * 1e3;
        let pseries = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("bounce_restart_phase_seconds"))
            .count();
        println!("pushgateway, same fleet and connections (a push per agent, last values only):");
        println!(
            "  sustained: {:.0} pushes/s ({psecs:.2} s); ratio collector/pushgateway: {:.2}",
            agents as f64 / psecs,
            psecs / secs
        );
        println!(
            "  push latency: p50 {:.1} ms, p99 {:.1} ms",
            lat.value_at_quantile(0.5) as f64 / 1e3,
            lat.value_at_quantile(0.99) as f64 / 1e3
        );
        println!(
            "  pushgateway peak RSS: {:.1} MiB; /metrics with {pseries} series: {render:.0} ms",
            peak_rss_mib(pgw.id())
        );
        let _ = pgw.kill();
        let _ = pgw.wait();
    }
}
