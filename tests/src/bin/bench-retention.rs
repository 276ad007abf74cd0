//! Retention at fleet scale (numbers go to BENCHMARKS.md): watch-like
//! restarts (one batch each, as `bounce-agent watch` sends them: origin
//! watch, cause, four engine-stamped boundaries, a run per node and UTC day)
//! back-dated a month, ingested over loopback into a release
//! `bounce-collector`; then the collector restarted with
//! `--keep-timelines 14d`, compacting them while fresh restarts arrive.
//!
//! Reports store bytes per 1,000 restarts before and after compaction
//! (checkpointed, after the collector's clean exit), how long compaction
//! took, ingest latency p50/p99 with and without compaction running, and
//! the bytes once the old day's hours are rolled up into days.
//!
//!   BOUNCE_COLLECTOR=target/release/bounce-collector target/release/bench-retention [RESTARTS] [NODES] [HOURS] [CONCURRENCY]

use bounce_tests::{AGENT_TOKEN, Scratch, bench_collector_with, docker_record, send_all};
use bounce_wire::ingest::{Batch, RunHeader, histograms_of};
use bounce_wire::{
    Boundary, BoundaryName, Cause, Clock, NodeFacts, Origin, RunIdentity, Source, TimelineRecord,
};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::process::{Child, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const DAY: i64 = 86_400_000_000_000;
const HOUR: i64 = 3_600_000_000_000;
const SERVICES: usize = 60;
const CAUSES: [Cause; 4] = [
    Cause::Restart,
    Cause::StopStart,
    Cause::Crash,
    Cause::Recreate,
];

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// Restart `i` of the fleet, opened within `hours` hours from `day`:
/// one node's watch day, one batch (seq = its first engine stamp).
fn watched(i: usize, nodes: usize, hours: i64, day: i64, x: &mut u64) -> Batch {
    let mut next = || {
        *x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*x >> 11) as i64
    };
    let node = format!("cmp{:05}", i % nodes);
    let service = format!("kolla_service_{:02}", (i / nodes) % SERVICES);
    let opened = day + next() % (hours * HOUR);
    let exited = opened + 200_000_000 + next() % 10_000_000_000;
    let started = exited + 100_000_000 + next() % 2_000_000_000;
    let healthy = started + next() % 30_000_000_000;
    let event = |name, at, action: &str| Boundary {
        name,
        unix_nanos: at,
        source: Source::DockerEvent {
            action: action.into(),
        },
        clock: Clock::Realtime,
    };
    let run = format!("watch-{node}-day{}", day / DAY);
    let t = TimelineRecord {
        origin: Origin::Watch,
        cause: Some(CAUSES[i % CAUSES.len()]),
        exit_code: Some(143),
        signals: vec!["SIGTERM".into()],
        ..docker_record(
            (&run, "fleet", "watch"),
            &node,
            &service,
            vec![
                event(BoundaryName::Requested, opened, "kill"),
                event(BoundaryName::Exited, exited, "die"),
                event(BoundaryName::Started, started, "start"),
                event(BoundaryName::Ready, healthy, "health_status: healthy"),
            ],
        )
    };
    Batch {
        agent: node.clone(),
        run: RunHeader {
            identity: RunIdentity {
                run_id: t.run_id.clone(),
                deployment: t.deployment.clone(),
                scenario: t.scenario.clone(),
                node: NodeFacts {
                    hostname: node,
                    cpus: 64,
                    memory_bytes: 512 << 30,
                    ..Default::default()
                },
            },
            started_unix_nanos: day,
            planned: 0,
            scenario_yaml: None,
        },
        seq: opened as u64,
        histograms: histograms_of(std::slice::from_ref(&t)).unwrap(),
        timelines: vec![t],
        end: None,
    }
}

fn requests(port: u16, batches: Vec<Batch>) -> Vec<hyper::Request<Full<Bytes>>> {
    let url = format!("http://127.0.0.1:{port}/api/v1/ingest");
    batches
        .into_iter()
        .map(|b| {
            hyper::Request::post(url.as_str())
                .header("authorization", format!("Bearer {AGENT_TOKEN}"))
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(serde_json::to_vec(&b).unwrap())))
                .unwrap()
        })
        .collect()
}

/// Stops the collector, then opens and closes the store once (`store`):
/// the last connection to close checkpoints the write-ahead log into the
/// database and removes it, so the bytes measured are the store's own.
/// Returns what `store` said.
fn stop(mut child: Child, dir: &Scratch) -> String {
    let _ = child.kill();
    let _ = child.wait();
    let out = std::process::Command::new(std::env::var("BOUNCE_COLLECTOR").unwrap())
        .args(["store", "--store"])
        .arg(dir.path("store.db"))
        .output()
        .expect("bounce-collector store");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn store_bytes(dir: &Scratch) -> u64 {
    ["store.db", "store.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.path(f)).ok().map(|m| m.len()))
        .sum()
}

fn dropped(port: u16) -> u64 {
    let out = std::process::Command::new("curl")
        .args(["-s", &format!("http://127.0.0.1:{port}/metrics")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("bounce_collector_retention_dropped_total{what=\"timelines\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

fn ms(h: &hdrhistogram::Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1e3
}

fn mib_per_1000(bytes: u64, restarts: usize) -> f64 {
    bytes as f64 / 1048576.0 / restarts as f64 * 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numbers"))
        .collect();
    let restarts = args.first().copied().unwrap_or(12_000);
    let nodes = args.get(1).copied().unwrap_or(200);
    let hours = args.get(2).copied().unwrap_or(4) as i64;
    let conns = args.get(3).copied().unwrap_or(16);
    let fresh = restarts / 4;
    let dir = Scratch::new("bench-retention");
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut x = 7u64;
    let old_day = (now() - 30 * DAY).div_euclid(DAY) * DAY;
    let today = now().div_euclid(DAY) * DAY;
    let fresh_batches = |x: &mut u64, n: usize| -> Vec<Batch> {
        (0..n).map(|i| watched(i, nodes, 1, today, x)).collect()
    };

    // 1. No retention: a month-old day of the fleet's restarts.
    let (child, port) = bench_collector_with(&dir, &[], Stdio::null());
    let old: Vec<Batch> = (0..restarts)
        .map(|i| watched(i, nodes, hours, old_day, &mut x))
        .collect();
    let mean = old
        .iter()
        .map(|b| serde_json::to_vec(&b.timelines[0]).unwrap().len())
        .sum::<usize>()
        / restarts;
    let (secs, lat_plain) = send_all(&client, conns, requests(port, old)).await;
    stop(child, &dir);
    let before = store_bytes(&dir);
    println!(
        "retention: {restarts} watched restarts ({mean}-byte timelines) of {nodes} nodes x {SERVICES} services over {hours} h, one batch each, {conns} connections"
    );
    println!(
        "  ingest without retention: {:.0} batches/s, latency p50 {:.1} ms, p99 {:.1} ms",
        restarts as f64 / secs,
        ms(&lat_plain, 0.5),
        ms(&lat_plain, 0.99)
    );
    println!(
        "  store before compaction: {:.2} MiB = {:.2} MiB per 1,000 restarts",
        before as f64 / 1048576.0,
        mib_per_1000(before, restarts)
    );

    // 2. --keep-timelines 14d: compaction of the old day while fresh
    // restarts arrive, then the same again with nothing left to compact.
    let retain = ["--keep-timelines", "14d", "--retention-every", "2s"];
    let log = std::fs::File::create(dir.path("serve.log")).unwrap();
    let (child, port) = bench_collector_with(&dir, &retain, Stdio::from(log));
    let (first, second) = (
        requests(port, fresh_batches(&mut x, fresh)),
        requests(port, fresh_batches(&mut x, fresh)),
    );
    let (during_secs, lat_during) = send_all(&client, conns, first).await;
    let compacted_while_ingesting = dropped(port);
    // The pass says what it dropped and gave back, and how long it took.
    let said = loop {
        let log = std::fs::read_to_string(dir.path("serve.log")).unwrap_or_default();
        if let Some(line) = log.lines().find(|l| l.contains("retention: dropped")) {
            break line.to_string();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let compaction: f64 = said
        .rsplit("in ")
        .next()
        .and_then(|s| s.trim_end_matches('s').parse().ok())
        .expect("the pass's duration");
    let (_, lat_after) = send_all(&client, conns, second).await;
    stop(child, &dir);
    let with_fresh = store_bytes(&dir);
    println!(
        "  compaction of {restarts} timelines and vacuum: {compaction:.1} s ({:.0} timelines/s), {compacted_while_ingesting} of them during the {during_secs:.1} s of ingest beside it",
        restarts as f64 / compaction
    );
    println!("    {}", said.trim_start_matches("bounce-collector: "));
    println!(
        "  ingest latency while compacting: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; with nothing to compact: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({fresh} restarts each)",
        ms(&lat_during, 0.5),
        ms(&lat_during, 0.99),
        lat_during.max() as f64 / 1e3,
        ms(&lat_after, 0.5),
        ms(&lat_after, 0.99),
        lat_after.max() as f64 / 1e3
    );

    // 3. Everything compacted (--keep-timelines 1s): bytes per 1,000 restarts.
    let log = std::fs::File::create(dir.path("serve2.log")).unwrap();
    let (child, port) = bench_collector_with(
        &dir,
        &["--keep-timelines", "1s", "--retention-every", "2s"],
        Stdio::from(log),
    );
    let all = restarts + 2 * fresh;
    while dropped(port) < all as u64
        || !std::fs::read_to_string(dir.path("serve2.log"))
            .unwrap_or_default()
            .contains("retention: dropped")
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let said = stop(child, &dir);
    let after = store_bytes(&dir);
    // 4. The old day's hours rolled up into one row per day (--keep-hourly).
    let log = std::fs::File::create(dir.path("serve3.log")).unwrap();
    let (child, _) = bench_collector_with(
        &dir,
        &[
            "--keep-timelines",
            "1s",
            "--keep-hourly",
            "1s",
            "--retention-every",
            "2s",
        ],
        Stdio::from(log),
    );
    while !std::fs::read_to_string(dir.path("serve3.log"))
        .unwrap_or_default()
        .contains("retention: dropped")
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rolled = std::fs::read_to_string(dir.path("serve3.log")).unwrap_or_default();
    let said_daily = stop(child, &dir);
    let daily = store_bytes(&dir);
    println!(
        "  store with the fresh {} kept: {:.2} MiB; all {all} compacted: {:.2} MiB = {:.3} MiB per 1,000 restarts ({:.1}x smaller)",
        2 * fresh,
        with_fresh as f64 / 1048576.0,
        after as f64 / 1048576.0,
        mib_per_1000(after, all),
        mib_per_1000(before, restarts) / mib_per_1000(after, all)
    );
    for line in said.lines() {
        println!("    {line}");
    }
    println!(
        "  the old day's hours rolled up into days: {:.2} MiB = {:.3} MiB per 1,000 restarts",
        daily as f64 / 1048576.0,
        mib_per_1000(daily, all)
    );
    for line in rolled.lines().filter(|l| l.contains("retention: dropped")) {
        println!("    {}", line.trim_start_matches("bounce-collector: "));
    }
    for line in said_daily.lines().filter(|l| l.starts_with("histograms")) {
        println!("    {line}");
    }
    if std::env::var_os("BENCH_KEEP_STORE").is_some() {
        println!("  store kept: {}", dir.path("store.db").display());
        std::mem::forget(dir);
    }
}
