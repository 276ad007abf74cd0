//! The collector as a separate process on loopback, fed by the real agent
//! restarting real containers: nothing measured is lost or counted twice,
//! even when the collector is killed with SIGKILL during the run.

use bounce_tests::*;
use bounce_wire::ingest::{Batch, histograms_of};
use bounce_wire::{
    Boundary, BoundaryName, Clock, NodeFacts, Outcome, PhaseHistograms, RunSummary, Source,
    TimelineRecord,
};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

fn metric(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name_and_labels))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn totals_match_the_agents_exactly_across_collector_kill9s() {
    let c = TestContainer::start(
        "collected",
        &["--network", "none"],
        "trap 'exit 0' TERM; while true; do sleep 1 & wait; done",
    );
    let dir = Scratch::new("collector-kill");
    let collector = Arc::new(Mutex::new(CollectorProcess::start(&dir.0)));
    let url = collector.lock().unwrap().url();
    let token = dir.write("token", AGENT_TOKEN);
    let scenario = dir.write(
        "collected.yaml",
        &format!(
            "deployment: lab\nscenario: collected\nrepeat: 12\ntargets:\n  - docker: {{names: [{}]}}\n    stop_timeout: 5s\n    timeout: 30s\n",
            c.name
        ),
    );
    // Kill -9 and restart the collector over and over while the agent runs.
    let running = Arc::new(AtomicBool::new(true));
    let killer = {
        let (collector, running) = (collector.clone(), running.clone());
        std::thread::spawn(move || {
            let mut kills = 0;
            while running.load(Ordering::SeqCst) && kills < 6 {
                std::thread::sleep(std::time::Duration::from_millis(350));
                collector.lock().unwrap().restart();
                kills += 1;
            }
            kills
        })
    };
    let out_dir = dir.path("out");
    let out = agent(&run_args(
        &scenario,
        &out_dir,
        &["--collector", &url, "--token-file", token.to_str().unwrap()],
    ));
    running.store(false, Ordering::SeqCst);
    let kills = killer.join().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        kills >= 3,
        "the collector was killed during the run ({kills} times)"
    );
    // Whatever the run's flush did not deliver is in the spool: push it.
    let push = agent(&[
        "push",
        out_dir.to_str().unwrap(),
        "--collector",
        &url,
        "--token-file",
        token.to_str().unwrap(),
        "--timeout",
        "30s",
    ]);
    assert!(push.status.success(), "{}", text(&push));

    let agent_summary: RunSummary =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("summary.json")).unwrap())
            .unwrap();
    let col = collector.lock().unwrap();
    let (status, body) = col.http(
        "GET",
        &format!("/api/v1/runs/{}", agent_summary.identity.run_id),
        Some(ADMIN_TOKEN),
        None,
    );
    assert_eq!(status, 200, "{body}");
    let theirs: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(theirs["restarts"], 12);
    let rows: Vec<bounce_wire::SummaryRow> =
        serde_json::from_value(theirs["rows"].clone()).unwrap();
    assert_eq!(rows.len(), agent_summary.rows.len());
    for (a, b) in agent_summary.rows.iter().zip(&rows) {
        assert_eq!(
            (a.service.as_str(), a.phase, a.count),
            (b.service.as_str(), b.phase, b.count)
        );
        assert_eq!(
            (a.p50, a.p99, a.max),
            (b.p50, b.p99, b.max),
            "{}/{}",
            a.service,
            a.phase
        );
        assert!((a.sum - b.sum).abs() < 1e-9);
    }
    // The merged histograms are the agent's, value for value.
    let (status, hlog) = col.http(
        "GET",
        &format!(
            "/api/v1/runs/{}/histograms.hlog",
            agent_summary.identity.run_id
        ),
        Some(ADMIN_TOKEN),
        None,
    );
    assert_eq!(status, 200);
    let merged = PhaseHistograms::read_hlog(hlog.as_bytes()).unwrap();
    let mine = PhaseHistograms::read_hlog(&std::fs::read(out_dir.join("histograms.hlog")).unwrap())
        .unwrap();
    for (key, h) in &mine.by_key {
        assert_eq!(Some(h), merged.by_key.get(key), "{key:?}");
    }
    let hlog_path = dir.write("collector.hlog", &hlog);
    let py = std::process::Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/harness/read_hlog.py"))
        .arg(&hlog_path)
        .output()
        .unwrap();
    assert!(
        py.status.success(),
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );
    assert!(String::from_utf8_lossy(&py.stdout).contains("\"count\": 12"));

    // Counters come from the store: the same after one more restart of the collector.
    drop(col);
    collector.lock().unwrap().restart();
    let col = collector.lock().unwrap();
    let (_, metrics) = col.http("GET", "/metrics", None, None);
    let ok = metric(
        &metrics,
        &format!(
            "bounce_restarts_total{{deployment=\"lab\",scenario=\"collected\",service=\"{}\",origin=\"run\",outcome=\"ok\"}}",
            c.name
        ),
    );
    assert_eq!(ok, Some(12.0), "{metrics}");
    let count = metric(
        &metrics,
        &format!(
            "bounce_restart_duration_seconds_count{{deployment=\"lab\",scenario=\"collected\",service=\"{}\",origin=\"run\",phase=\"total\"}}",
            c.name
        ),
    );
    assert_eq!(count, Some(12.0));
    assert_eq!(
        metric(
            &metrics,
            "bounce_collector_batches_total{result=\"stored\"}"
        ),
        Some(13.0),
        "12 timelines and the end"
    );

    let (status, nodes) = col.http(
        "GET",
        &format!("/api/v1/runs/{}/nodes", agent_summary.identity.run_id),
        Some(ADMIN_TOKEN),
        None,
    );
    assert_eq!(status, 200);
    let nodes: Value = serde_json::from_str(&nodes).unwrap();
    assert_eq!(nodes["nodes"][0]["planned"], 12);
    assert_eq!(nodes["nodes"][0]["not_started"], 0);
}

fn sample_batch(seq: u64) -> Batch {
    let b = |name, unix_nanos| Boundary {
        name,
        unix_nanos,
        source: Source::Agent,
        clock: Clock::Realtime,
    };
    let timestamps = vec![
        b(BoundaryName::Requested, 1_000_000_000),
        b(BoundaryName::Exited, 1_400_000_000),
    ];
    let t = TimelineRecord {
        iteration: seq as u32,
        outcome: Outcome::Timeout,
        ..docker_record(("r-bad-input", "lab", "bad"), "n1", "nova_api", timestamps)
    };
    let node = NodeFacts {
        hostname: "n1".into(),
        ..NodeFacts::default()
    };
    batch_of(t, node, 1, 2, seq)
}

#[test]
fn bad_requests_get_a_4xx_with_a_reason_and_write_nothing() {
    let dir = Scratch::new("collector-bad");
    let col = CollectorProcess::start(&dir.0);
    let good = serde_json::to_vec(&sample_batch(1)).unwrap();
    let ingest = "/api/v1/ingest";

    let (s, b) = col.http("POST", ingest, None, Some(&good));
    assert_eq!(s, 401, "{b}");
    let (s, _) = col.http("POST", ingest, Some("wrong-token-0123456789"), Some(&good));
    assert_eq!(s, 401);
    let (s, b) = col.http(
        "POST",
        ingest,
        Some(AGENT_TOKEN),
        Some(&good[..good.len() / 2]),
    );
    assert_eq!(s, 400, "truncated: {b}");
    assert!(b.contains("not a batch"), "{b}");
    let (s, _) = col.http(
        "POST",
        ingest,
        Some(AGENT_TOKEN),
        Some(b"\x00\x01garbage{{"),
    );
    assert_eq!(s, 400);
    let big = vec![b' '; 5 * 1024 * 1024];
    let (s, _) = col.http("POST", ingest, Some(AGENT_TOKEN), Some(&big));
    assert_eq!(s, 413, "oversized");

    // A histogram that does not count the timelines: refused, nothing stored.
    let mut lying = sample_batch(1);
    lying.histograms =
        histograms_of(&[lying.timelines[0].clone(), lying.timelines[0].clone()]).unwrap();
    let (s, b) = col.http(
        "POST",
        ingest,
        Some(AGENT_TOKEN),
        Some(&serde_json::to_vec(&lying).unwrap()),
    );
    assert_eq!(s, 400, "{b}");
    assert!(b.contains("do not count"), "{b}");
    let mut foreign = sample_batch(1);
    foreign.histograms[0].v2_deflate = "AAAA".into();
    let (s, b) = col.http(
        "POST",
        ingest,
        Some(AGENT_TOKEN),
        Some(&serde_json::to_vec(&foreign).unwrap()),
    );
    assert_eq!(s, 400, "{b}");
    // Another node's restart in n1's batch: reports group by a timeline's node.
    let mut smuggled = sample_batch(1);
    smuggled.timelines[0].node = "n2".into();
    let (s, b) = col.http(
        "POST",
        ingest,
        Some(AGENT_TOKEN),
        Some(&serde_json::to_vec(&smuggled).unwrap()),
    );
    assert_eq!(s, 400, "{b}");
    assert!(
        b.contains(r#"timelines[0].node: \"n2\" is not the sending agent \"n1\""#),
        "{b}"
    );
    let (s, _) = col.http("GET", "/api/v1/runs/r-bad-input", Some(ADMIN_TOKEN), None);
    assert_eq!(s, 404, "nothing of the refused batches was written");

    // A replayed batch is acknowledged and not counted again.
    let (s, b) = col.http("POST", ingest, Some(AGENT_TOKEN), Some(&good));
    assert_eq!((s, b.contains("\"stored\"")), (200, true), "{b}");
    let (s, b) = col.http("POST", ingest, Some(AGENT_TOKEN), Some(&good));
    assert_eq!((s, b.contains("\"duplicate\"")), (200, true), "{b}");
    let (s, b) = col.http("GET", "/api/v1/runs/r-bad-input", Some(ADMIN_TOKEN), None);
    assert_eq!(s, 200);
    assert_eq!(serde_json::from_str::<Value>(&b).unwrap()["restarts"], 1);

    // Agent tokens only ingest; unknown runs are 404.
    let (s, _) = col.http("GET", "/api/v1/runs", Some(AGENT_TOKEN), None);
    assert_eq!(s, 403);
    let (s, _) = col.http("GET", "/api/v1/runs/no-such-run", Some(ADMIN_TOKEN), None);
    assert_eq!(s, 404);

    let (_, metrics) = col.http("GET", "/metrics", None, None);
    assert_eq!(
        metric(
            &metrics,
            "bounce_collector_batches_total{result=\"duplicate\"}"
        ),
        Some(1.0)
    );
    assert!(
        metric(
            &metrics,
            "bounce_collector_batches_total{result=\"rejected\"}"
        )
        .unwrap()
            >= 6.0
    );
    assert_eq!(
        metric(
            &metrics,
            "bounce_restarts_total{deployment=\"lab\",scenario=\"bad\",service=\"nova_api\",origin=\"run\",outcome=\"timeout\"}"
        ),
        Some(1.0)
    );
    assert!(
        !metrics.contains("bounce_node_restarts_total"),
        "no per-node series by default"
    );
    // promtool (scripts/test.sh installs it) lints the page.
    let lint = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(metrics.as_bytes())?;
            child.wait_with_output()
        })
        .expect("promtool (Debian's prometheus package) is installed by scripts/test.sh");
    assert!(
        lint.status.success(),
        "{}{}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );
}

fn run_id(s: &str) -> bounce_wire::RunId {
    bounce_wire::RunId::parse(s).unwrap()
}

/// A batch whose one timeline has a `stop` of `secs`.
fn batch_with_stop(seq: u64, secs: f64) -> Batch {
    let mut b = sample_batch(seq);
    b.run.identity.run_id = run_id("r-prom");
    b.run.identity.scenario = "prom".into();
    let t = &mut b.timelines[0];
    t.run_id = run_id("r-prom");
    t.scenario = "prom".into();
    t.outcome = Outcome::Ok;
    t.timestamps[1].unix_nanos = t.timestamps[0].unix_nanos + (secs * 1e9) as i64;
    t.phases = bounce_wire::timeline::phases_from(&t.timestamps);
    b.histograms = histograms_of(std::slice::from_ref(t)).unwrap();
    b
}

#[test]
fn a_real_prometheus_scrapes_the_collector_and_agrees_with_the_hdr_quantiles() {
    let dir = Scratch::new("prometheus");
    let col = CollectorProcess::start(&dir.0);
    // 120 stops spread from 50 ms to ~100 s.
    let n = 120u64;
    for seq in 1..=n {
        let secs = 0.05 * 1.066f64.powi(seq as i32);
        let (s, b) = col.ingest(AGENT_TOKEN, &batch_with_stop(seq, secs));
        assert_eq!(s, 200, "{b}");
    }
    let prom_port = free_port();
    let config = dir.write(
        "prometheus.yml",
        &format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: bounce\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
            col.port
        ),
    );
    let mut prom = std::process::Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("prometheus (Debian's package) is installed by scripts/test.sh");
    let query = |q: &str| -> Option<f64> {
        let out = std::process::Command::new("curl")
            .args(["-s", "--get", "--data-urlencode"])
            .arg(format!("query={q}"))
            .arg(format!("http://127.0.0.1:{prom_port}/api/v1/query"))
            .output()
            .ok()?;
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    };
    let selector = "{scenario=\"prom\",phase=\"stop\"}";
    let mut scraped = None;
    for _ in 0..120 {
        scraped = query(&format!("bounce_restart_duration_seconds_count{selector}"));
        if scraped == Some(n as f64) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    assert_eq!(scraped, Some(n as f64), "Prometheus scraped the collector");
    let (_, metrics) = col.http("GET", "/metrics", None, None);
    for q in [0.5, 0.9, 0.99] {
        let hdr = metric(
            &metrics,
            &format!("bounce_restart_duration_hdr_seconds{{deployment=\"lab\",scenario=\"prom\",service=\"nova_api\",origin=\"run\",phase=\"stop\",quantile=\"{q}\"}}"),
        )
        .unwrap();
        let promql = query(&format!(
            "histogram_quantile({q}, bounce_restart_duration_seconds_bucket{selector})"
        ))
        .unwrap();
        // Prometheus interpolates inside a bucket: it must land in the bucket
        // that holds the exact (HDR) quantile.
        let bounds = bucket_bounds(&metrics);
        let hi = bounds.iter().copied().find(|b| *b >= hdr).unwrap();
        let lo = bounds
            .iter()
            .copied()
            .rev()
            .find(|b| *b < hdr)
            .unwrap_or(0.0);
        assert!(
            lo <= promql && promql <= hi,
            "q{q}: HDR {hdr}, PromQL {promql}, bucket ({lo}, {hi}]"
        );
    }
    let _ = prom.kill();
    let _ = prom.wait();
}

/// The collector's bucket bounds, read back from its own exposition.
fn bucket_bounds(metrics: &str) -> Vec<f64> {
    let mut v: Vec<f64> = metrics
        .lines()
        .filter(|l| l.starts_with("bounce_restart_duration_seconds_bucket"))
        .filter_map(|l| l.split("le=\"").nth(1)?.split('"').next()?.parse().ok())
        .filter(|b: &f64| b.is_finite())
        .collect();
    v.sort_by(f64::total_cmp);
    v.dedup();
    v
}

#[test]
fn per_node_series_only_when_asked() {
    let dir = Scratch::new("collector-per-node");
    let col = CollectorProcess::start_with(&dir.0, &["--per-node-metrics"]);
    let (s, b) = col.ingest(AGENT_TOKEN, &sample_batch(1));
    assert_eq!(s, 200, "{b}");
    let (_, metrics) = col.http("GET", "/metrics", None, None);
    assert_eq!(
        metric(
            &metrics,
            "bounce_node_restarts_total{deployment=\"lab\",scenario=\"bad\",service=\"nova_api\",origin=\"run\",node=\"n1\",outcome=\"timeout\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
}

#[test]
fn the_agent_checks_the_collector_before_restarting_anything() {
    let c = TestContainer::start(
        "precheck",
        &["--network", "none"],
        "trap 'exit 0' TERM; while true; do sleep 1 & wait; done",
    );
    let dir = Scratch::new("collector-precheck");
    let mut col = CollectorProcess::start(&dir.0);
    let scenario = dir.write(
        "precheck.yaml",
        &format!(
            "deployment: lab\ntargets:\n  - docker: {{names: [{}]}}\n    stop_timeout: 5s\n",
            c.name
        ),
    );
    let started_at = c.inspect()["State"]["StartedAt"].clone();
    let run = |out: &std::path::Path, url: &str, token: &std::path::Path, extra: &[&str]| {
        let mut args = vec![
            "run",
            scenario.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--no-progress",
            "--collector",
            url,
            "--token-file",
            token.to_str().unwrap(),
        ];
        args.extend(extra);
        agent(&args)
    };
    let url = col.url();
    let wrong = dir.write("wrong", "not-the-token-0123456789");
    let good = dir.write("good", AGENT_TOKEN);

    let out = run(&dir.path("o1"), &url, &wrong, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("refused the token"), "{}", text(&out));

    col.kill9();
    let out = run(&dir.path("o2"), &url, &good, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("not reachable"), "{}", text(&out));
    assert_eq!(
        c.inspect()["State"]["StartedAt"],
        started_at,
        "nothing was restarted"
    );

    // Told the collector may be away: it measures, and the spool keeps the batches.
    let o3 = dir.path("o3");
    let out = run(
        &o3,
        &url,
        &good,
        &["--collector-may-be-away", "--flush", "1s"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("still in"), "{}", text(&out));
    col.restart();
    let push = agent(&[
        "push",
        o3.to_str().unwrap(),
        "--collector",
        &col.url(),
        "--token-file",
        good.to_str().unwrap(),
    ]);
    assert!(push.status.success(), "{}", text(&push));
    assert!(
        String::from_utf8_lossy(&push.stdout).contains("2 of 2 batch(es) acknowledged"),
        "{}",
        text(&push)
    );
}

#[test]
fn a_fleet_run_is_one_run_at_the_collector_and_a_contradicting_agent_is_stopped_before_restarting()
{
    let a = TestContainer::start(
        "fleet-a",
        &["--network", "none"],
        "trap 'exit 0' TERM; while true; do sleep 1 & wait; done",
    );
    let b = TestContainer::start(
        "fleet-b",
        &["--network", "none"],
        "trap 'exit 0' TERM; while true; do sleep 1 & wait; done",
    );
    let dir = Scratch::new("fleet");
    let col = CollectorProcess::start(&dir.0);
    let token = dir.write("token", AGENT_TOKEN);
    let url = col.url();
    let scenario = |deployment: &str, name: &str| {
        format!(
            "deployment: {deployment}\nscenario: fleet\nrepeat: 2\ntargets:\n  - docker: {{names: [{name}]}}\n    stop_timeout: 5s\n    timeout: 30s\n"
        )
    };
    let run = |node: &str, yaml: &str, out: &str| {
        let file = dir.write(&format!("{out}.yaml"), yaml);
        agent(&run_args(
            &file,
            &dir.path(out),
            &[
                "--node",
                node,
                "--run-id",
                "upgrade-2026-11-25",
                "--collector",
                &url,
                "--token-file",
                token.to_str().unwrap(),
            ],
        ))
    };
    // Two nodes, one run id: one run with two agents.
    let out = run("node-a", &scenario("lab", &a.name), "oa");
    assert!(out.status.success(), "{}", text(&out));
    let out = run("node-b", &scenario("lab", &b.name), "ob");
    assert!(out.status.success(), "{}", text(&out));
    let (s, body) = col.http("GET", "/api/v1/runs", Some(ADMIN_TOKEN), None);
    assert_eq!(s, 200, "{body}");
    let runs: Value = serde_json::from_str(&body).unwrap();
    let runs = runs["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["run_id"], "upgrade-2026-11-25");
    assert_eq!(runs[0]["agents"], 2);
    assert_eq!(runs[0]["restarts"], 4);
    // `runs` lists it, from the store and from the running collector.
    let admin = dir.write("admin-token", ADMIN_TOKEN);
    for source in [
        vec!["--store".to_string(), col.store.display().to_string()],
        vec![
            "--collector".to_string(),
            url.clone(),
            "--token-file".to_string(),
            admin.display().to_string(),
        ],
    ] {
        let out = std::process::Command::new(bin("bounce-collector"))
            .arg("runs")
            .args(&source)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        let line = String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.starts_with("upgrade-2026-11-25"))
            .unwrap_or_else(|| panic!("{}", text(&out)))
            .to_string();
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols[1..3], ["lab", "fleet"], "{line}");
        assert_eq!(
            cols[cols.len() - 2..],
            ["2", "4"],
            "2 nodes, 4 restarts: {line}"
        );
    }
    // One report for the fleet.
    let rep = dir.path("report");
    let out = std::process::Command::new(bin("bounce-collector"))
        .args(["report", "upgrade-2026-11-25", "--store"])
        .arg(&col.store)
        .arg("--out")
        .arg(&rep)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let md = std::fs::read_to_string(rep.join("report.md")).unwrap();
    assert!(md.contains("| `upgrade-2026-11-25` |"), "{md}");
    assert!(md.contains("| 2 | 4 of 4 planned |"), "two nodes: {md}");
    assert!(md.contains("node-a, node-b"), "{md}");
    assert!(
        md.contains("## Nodes") && md.contains("| node-a | 2 | 0 |"),
        "{md}"
    );
    // The same report from the running collector's read API (admin token).
    let remote = |token: &str, out: &str| {
        let file = dir.write(&format!("{out}.token"), token);
        std::process::Command::new(bin("bounce-collector"))
            .args([
                "report",
                "upgrade-2026-11-25",
                "--collector",
                &url,
                "--token-file",
            ])
            .arg(&file)
            .arg("--out")
            .arg(dir.path(out))
            .output()
            .unwrap()
    };
    let out = remote(ADMIN_TOKEN, "remote");
    assert!(out.status.success(), "{}", text(&out));
    let remote_md = std::fs::read_to_string(dir.path("remote/report.md")).unwrap();
    let table = |m: &str| {
        m.split("## Where the time went")
            .next()
            .unwrap()
            .to_string()
    };
    assert_eq!(table(&remote_md), table(&md), "same numbers from the API");
    let out = remote(AGENT_TOKEN, "remote-agent");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("refused the token"), "{}", text(&out));
    for c in [&a.name, &b.name] {
        assert!(md.contains(&format!("| {c} | stop | 2 |")), "{md}");
    }

    // Another deployment under the same run id, or a node name already used:
    // refused before anything restarts.
    let before = a.inspect()["State"]["StartedAt"].clone();
    for (node, deployment, why) in [
        ("node-c", "other-lab", "is deployment \"lab\""),
        (
            "node-a",
            "lab",
            "already sent results for run upgrade-2026-11-25",
        ),
    ] {
        let out = run(
            node,
            &scenario(deployment, &a.name),
            &format!("o-{node}-{deployment}"),
        );
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(text(&out).contains(why), "{why}: {}", text(&out));
        assert!(
            text(&out).contains("nothing was restarted"),
            "{}",
            text(&out)
        );
    }
    assert_eq!(a.inspect()["State"]["StartedAt"], before, "not restarted");

    // A batch that contradicts the store is refused with 409 even without the check.
    let mut batch = batch_with_stop(1, 1.0);
    batch.run.identity.run_id = run_id("upgrade-2026-11-25");
    for t in &mut batch.timelines {
        t.run_id = run_id("upgrade-2026-11-25");
    }
    let (s, body) = col.ingest(AGENT_TOKEN, &batch);
    assert_eq!(s, 409, "{body}");
    assert!(body.contains("is deployment"), "{body}");
}

#[test]
fn an_agent_token_bound_to_names_sends_only_as_those_agents() {
    let c = TestContainer::start(
        "bound",
        &["--network", "none"],
        "trap 'exit 0' TERM; while true; do sleep 1 & wait; done",
    );
    let dir = Scratch::new("bound-token");
    let bound = "bound-token-0123456789abcdef";
    let col = CollectorProcess::start_with_agent_tokens(
        &dir.0,
        &format!("{AGENT_TOKEN}\n{bound} cmp-*,ctl1\n"),
        &[],
    );
    let token = dir.write("bound.token", bound);
    let file = dir.write(
        "b.yaml",
        &format!(
            "deployment: lab\nscenario: bound\ntargets:\n  - docker: {{names: [{}]}}\n    stop_timeout: 5s\n    timeout: 30s\n",
            c.name
        ),
    );
    let run = |node: &str, out: &str| {
        agent(&run_args(
            &file,
            &dir.path(out),
            &[
                "--node",
                node,
                "--collector",
                &col.url(),
                "--token-file",
                token.to_str().unwrap(),
            ],
        ))
    };
    // Another node's name: refused before anything restarts.
    let before = c.inspect()["State"]["StartedAt"].clone();
    let out = run("ctl2", "o1");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("may only send as cmp-*, ctl1, not as \"ctl2\""),
        "{}",
        text(&out)
    );
    assert_eq!(c.inspect()["State"]["StartedAt"], before, "not restarted");
    // Its own name: measured and stored.
    let out = run("cmp-07", "o2");
    assert!(out.status.success(), "{}", text(&out));
    let (_, metrics) = col.http("GET", "/metrics", None, None);
    assert!(metrics.contains("bounce_restarts_total{deployment=\"lab\",scenario=\"bound\""));
    // A batch as another agent, sent by hand: 403, nothing stored.
    let mut b = sample_batch(1);
    b.agent = "ctl9".into();
    b.run.identity.node.hostname = "ctl9".into();
    b.timelines[0].node = "ctl9".into();
    let (s, body) = col.ingest(bound, &b);
    assert_eq!(s, 403, "{body}");
    let (s, _) = col.ingest(AGENT_TOKEN, &b);
    assert_eq!(s, 200, "an unbound token sends as any agent");
}
