//! The collector's retention, as a separate process on loopback: watch
//! restarts back-dated a month (a timeline ages by when its restart opened)
//! are folded into hourly histograms while fresh ones are ingested; a
//! kill -9 in the middle leaves a store that opens with every count right;
//! a report over the compacted range still gives the table, from the
//! histograms, and says what was dropped.

use bounce_tests::*;
use bounce_wire::ingest::{Batch, RunHeader, histograms_of};
use bounce_wire::summary::{format_seconds, rows_from_timelines};
use bounce_wire::{
    Boundary, BoundaryName, Cause, Clock, NodeFacts, Origin, Phase, RunIdentity, Source,
    TimelineRecord,
};
use serde_json::Value;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const DAY: i64 = 86_400_000_000_000;
const SERVICES: [&str; 3] = ["nova_api", "keystone", "glance_api"];

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// A watched `docker restart` of `service` that opened at `opened`.
fn watched(run: &str, node: &str, service: &str, opened: i64, i: i64) -> TimelineRecord {
    let b = |name, at, action: &str| Boundary {
        name,
        unix_nanos: at,
        source: Source::DockerEvent {
            action: action.into(),
        },
        clock: Clock::Realtime,
    };
    let exited = opened + 100_000_000 + (i * 7_919_000) % 3_000_000_000;
    let started = exited + 200_000_000 + (i * 104_729) % 900_000_000;
    TimelineRecord {
        origin: Origin::Watch,
        cause: Some(Cause::Restart),
        ..docker_record(
            (run, "lab", "watch"),
            node,
            service,
            vec![
                b(BoundaryName::Requested, opened, "kill"),
                b(BoundaryName::Exited, exited, "die"),
                b(BoundaryName::Started, started, "start"),
            ],
        )
    }
}

fn batch(timelines: Vec<TimelineRecord>, started: i64, seq: u64) -> Batch {
    let t = &timelines[0];
    Batch {
        agent: t.node.clone(),
        run: RunHeader {
            identity: RunIdentity {
                run_id: t.run_id.clone(),
                deployment: t.deployment.clone(),
                scenario: t.scenario.clone(),
                node: NodeFacts {
                    hostname: t.node.clone(),
                    cpus: 8,
                    memory_bytes: 1 << 34,
                    ..Default::default()
                },
            },
            started_unix_nanos: started,
            planned: 0,
            scenario_yaml: None,
        },
        seq,
        histograms: histograms_of(&timelines).unwrap(),
        timelines,
        end: None,
    }
}

/// `nodes` watch days `age` days ago, `per_node` restarts each (one a
/// minute from midnight), in batches of 100; all the timelines sent.
fn ingest_old_days(
    c: &CollectorProcess,
    age: i64,
    nodes: usize,
    per_node: usize,
) -> Vec<TimelineRecord> {
    let day = (now() - age * DAY).div_euclid(DAY) * DAY;
    let mut all = Vec::new();
    for n in 0..nodes {
        let node = format!("cmp{n:02}");
        // One run per node and UTC day, as a watcher's.
        let run = format!("watch-{node}-day{}", day / DAY);
        let timelines: Vec<TimelineRecord> = (0..per_node)
            .map(|i| {
                let service = SERVICES[i % SERVICES.len()];
                watched(
                    &run,
                    &node,
                    service,
                    day + i as i64 * 60_000_000_000,
                    (n * per_node + i) as i64,
                )
            })
            .collect();
        for (seq, chunk) in timelines.chunks(100).enumerate() {
            let (status, body) = c.ingest(AGENT_TOKEN, &batch(chunk.to_vec(), day, seq as u64 + 1));
            assert_eq!(status, 200, "{body}");
        }
        all.extend(timelines);
    }
    all
}

/// POST a batch file to the ingest path: the status (curl, like the harness).
fn post(url: &str, body: &std::path::Path) -> String {
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
        .args(["-H", &format!("Authorization: Bearer {AGENT_TOKEN}")])
        .args(["-H", "Content-Type: application/json", "--data-binary"])
        .arg(format!("@{}", body.display()))
        .arg(format!("{url}/api/v1/ingest"))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn metric(c: &CollectorProcess, name_and_labels: &str) -> Option<f64> {
    let (_, text) = c.http("GET", "/metrics", None, None);
    text.lines()
        .filter(|l| l.starts_with(name_and_labels))
        .map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

fn dropped(c: &CollectorProcess) -> u64 {
    metric(
        c,
        "bounce_collector_retention_dropped_total{what=\"timelines\"}",
    )
    .unwrap_or(0.0) as u64
}

fn collector_cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin("bounce-collector"))
        .args(args)
        .output()
        .expect("run bounce-collector");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn store_facts(store: &std::path::Path) -> Value {
    let (ok, out, err) = collector_cli(&["store", "--store", store.to_str().unwrap(), "--json"]);
    assert!(ok, "the store opens: {err}");
    serde_json::from_str(&out).unwrap()
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

const RETAIN: [&str; 4] = ["--keep-timelines", "14d", "--retention-every", "1s"];

#[test]
fn kill9_mid_compaction_leaves_a_consistent_store_and_loses_nothing_acknowledged() {
    let dir = Scratch::new("retention-kill");
    let c = CollectorProcess::start(&dir.0);
    let old = ingest_old_days(&c, 30, 10, 150);
    let restarts_before = metric(&c, "bounce_restarts_total").unwrap();
    assert_eq!(restarts_before as usize, old.len());
    drop(c);

    // Small steps, so there is a middle to kill it in.
    let mut retain = RETAIN.to_vec();
    retain.extend(["--retention-chunk", "2"]);
    let mut c = CollectorProcess::start_with(&dir.0, &retain);
    // Fresh restarts go on meanwhile; the acknowledged ones must survive.
    let (acked, sent) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = {
        let (acked, sent, stop) = (acked.clone(), sent.clone(), stop.clone());
        let (url, body) = (c.url(), dir.path("fresh-batch.json"));
        std::thread::spawn(move || {
            let mut seq = 0;
            while !stop.load(Ordering::SeqCst) {
                let t = watched(
                    "watch-cmp99-today",
                    "cmp99",
                    "nova_api",
                    now() - 1_000_000_000,
                    seq,
                );
                let b = batch(vec![t], now() - DAY / 2, seq as u64 + 1);
                std::fs::write(&body, serde_json::to_vec(&b).unwrap()).unwrap();
                sent.fetch_add(1, Ordering::SeqCst);
                if post(&url, &body) == "200" {
                    acked.fetch_add(1, Ordering::SeqCst);
                }
                seq += 1;
            }
        })
    };
    wait_for("retention's first step", || dropped(&c) > 0);
    c.kill9();
    stop.store(true, Ordering::SeqCst);
    feeder.join().unwrap();

    let facts = store_facts(&c.store);
    let (kept, gone) = (
        facts["timelines"].as_u64().unwrap(),
        facts["dropped"]["timelines"].as_u64().unwrap(),
    );
    let (acked, sent) = (acked.load(Ordering::SeqCst), sent.load(Ordering::SeqCst));
    assert!(
        gone > 0 && gone < old.len() as u64,
        "killed mid-compaction: {gone} of {} dropped",
        old.len()
    );
    let fresh = kept + gone - old.len() as u64;
    assert!(
        acked <= fresh && fresh <= sent,
        "every acknowledged fresh restart is stored: {acked} acknowledged, {fresh} stored, {sent} sent"
    );

    // Restarted, retention finishes the work; nothing counted twice or lost.
    let c = CollectorProcess::start_with(&dir.0, &RETAIN);
    wait_for("compaction to end", || dropped(&c) == old.len() as u64);
    let (status, body) = c.http(
        "GET",
        "/api/v1/compacted?deployment=lab",
        Some(ADMIN_TOKEN),
        None,
    );
    assert_eq!(status, 200, "{body}");
    let compacted: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        compacted["compacted"]["restarts"].as_u64(),
        Some(old.len() as u64)
    );
    assert_eq!(
        metric(&c, "bounce_restarts_total").unwrap() as u64,
        old.len() as u64 + fresh,
        "/metrics counts every restart once"
    );
    let facts = store_facts(&c.store);
    assert_eq!(
        facts["timelines"].as_u64(),
        Some(fresh),
        "the fresh ones are kept"
    );
    assert_eq!(facts["auto_vacuum"], "incremental");
}

#[test]
fn a_report_over_a_compacted_range_comes_from_histograms_and_says_so() {
    let dir = Scratch::new("retention-report");
    let c = CollectorProcess::start(&dir.0);
    let old = ingest_old_days(&c, 40, 2, 90);
    drop(c);
    let c = CollectorProcess::start_with(&dir.0, &RETAIN);
    wait_for("compaction to end", || dropped(&c) == old.len() as u64);
    let store = c.store.to_str().unwrap().to_string();
    let day = (now() - 40 * DAY).div_euclid(DAY) * DAY;
    let (since, until) = (
        bounce_wire::civil::utc(day).replace(" UTC", ""),
        bounce_wire::civil::utc(day + DAY).replace(" UTC", ""),
    );
    let want = rows_from_timelines(&old);
    let admin = dir.write("admin-token", ADMIN_TOKEN);
    let url = c.url();
    for (name, at) in [
        ("store", vec!["--store", store.as_str()]),
        (
            "collector",
            vec![
                "--collector",
                url.as_str(),
                "--token-file",
                admin.to_str().unwrap(),
            ],
        ),
    ] {
        let out = dir.path(&format!("report-{name}"));
        let mut args = vec![
            "report",
            "--deployment",
            "lab",
            "--since",
            &since,
            "--until",
            &until,
        ];
        args.extend(at.iter().copied());
        args.extend(["--out", out.to_str().unwrap()]);
        let (ok, _, err) = collector_cli(&args);
        assert!(ok, "{name}: {err}");
        assert!(err.contains("retention dropped"), "{name}: {err}");
        let md = std::fs::read_to_string(out.join("report.md")).unwrap();
        let section = md
            .split("## Restarts whose timelines retention dropped")
            .nth(1)
            .unwrap_or_else(|| panic!("{name}: no retention section in\n{md}"));
        assert!(
            section.contains(&format!("{} restart(s) of deployment `lab`", old.len())),
            "{name}: {section}"
        );
        for r in want.iter().filter(|r| r.phase == Phase::Stop) {
            let line = format!(
                "| {} | stop | {} | {} | {} | {} | {} | 0 |",
                r.service,
                r.count,
                format_seconds(r.p50.unwrap()),
                format_seconds(r.p90.unwrap()),
                format_seconds(r.p99.unwrap()),
                format_seconds(r.max.unwrap())
            );
            assert!(section.contains(&line), "{name}: {line} not in\n{section}");
        }
    }

    // One compacted run: its report says how much is missing; `runs` still counts it.
    let (ok, runs, err) = collector_cli(&["runs", "--store", &store]);
    assert!(ok, "{err}");
    let run = old[0].run_id.as_str();
    assert!(
        runs.lines()
            .any(|l| l.starts_with(run) && l.split_whitespace().rev().take(2).all(|n| n == "90")),
        "restarts 90, dropped 90: {runs}"
    );
    let out = dir.path("report-run");
    let (ok, _, err) = collector_cli(&[
        "report",
        run,
        "--store",
        &store,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        md.contains("dropped the timelines of 90 of this run's 90 restarts"),
        "{md}"
    );
    let (ok, text, err) = collector_cli(&["store", "--store", &store]);
    assert!(ok, "{err}");
    assert!(text.contains("dropped 180 timeline(s)"), "{text}");
}

fn dropped_of(c: &CollectorProcess, what: &str) -> u64 {
    metric(
        c,
        &format!("bounce_collector_retention_dropped_total{{what=\"{what}\"}}"),
    )
    .unwrap_or(0.0) as u64
}

#[test]
fn a_short_policy_keeps_a_live_run_whose_resends_stay_duplicates() {
    let dir = Scratch::new("retention-live");
    // A store an older collector made: no incremental auto-vacuum.
    drop(CollectorProcess::start(&dir.0));
    let store = dir.path("store.db");
    let out = Command::new("sqlite3")
        .arg(&store)
        .arg("PRAGMA auto_vacuum = NONE; VACUUM;")
        .output()
        .expect("sqlite3");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(store_facts(&store)["auto_vacuum"], "none");

    // Serving starts at once (no VACUUM at start), with a policy shorter
    // than the run: its restarts opened two hours ago, its day goes on.
    let short = [
        "--keep-timelines",
        "1s",
        "--keep-histograms",
        "1s",
        "--retention-every",
        "1s",
    ];
    let c = CollectorProcess::start_with(&dir.0, &short);
    let run = "watch-cmp01-live";
    let batch_of = |seq: u64| {
        let t = watched(
            run,
            "cmp01",
            "nova_api",
            now() - 2 * 3_600_000_000_000,
            seq as i64,
        );
        batch(vec![t], now() - DAY / 2, seq)
    };
    let first = batch_of(1);
    let (status, body) = c.ingest(AGENT_TOKEN, &first);
    assert!(status == 200 && body.contains("stored"), "{status} {body}");
    // Compacted, and its hour expired: the pass that could expire the run ran.
    wait_for("the timeline compacted, its hour expired", || {
        dropped(&c) == 1 && dropped_of(&c, "hour_rows") > 0
    });
    let (status, body) = c.ingest(AGENT_TOKEN, &first);
    assert!(
        status == 200 && body.contains("duplicate"),
        "a resend after compaction is not stored again: {status} {body}"
    );
    let (status, body) = c.ingest(AGENT_TOKEN, &batch_of(2));
    assert!(status == 200 && body.contains("stored"), "{status} {body}");
    let hours = dropped_of(&c, "hour_rows");
    wait_for("the second compacted and expired", || {
        dropped(&c) == 2 && dropped_of(&c, "hour_rows") > hours
    });
    assert_eq!(dropped_of(&c, "runs"), 0, "the live run is not expired");
    let (status, body) = c.http("GET", "/api/v1/runs", Some(ADMIN_TOKEN), None);
    assert_eq!(status, 200, "{body}");
    let runs: Value = serde_json::from_str(&body).unwrap();
    let listed = runs
        .as_array()
        .or_else(|| runs["runs"].as_array())
        .expect("a list of runs")
        .iter()
        .find(|r| r["run_id"] == run)
        .unwrap_or_else(|| panic!("{run} kept: {body}"))
        .clone();
    assert_eq!(
        (
            listed["restarts"].as_u64(),
            listed["timelines_dropped"].as_u64()
        ),
        (Some(2), Some(2))
    );
    assert_eq!(
        metric(&c, "bounce_restarts_total").unwrap() as u64,
        2,
        "each restart counted once"
    );
    drop(c);

    // Converted offline, when the operator says so.
    let path = store.to_str().unwrap();
    let (ok, _, err) = collector_cli(&["store", "--store", path, "--vacuum"]);
    assert!(ok && err.contains("converted"), "{err}");
    assert_eq!(store_facts(&store)["auto_vacuum"], "incremental");
    let (ok, _, err) = collector_cli(&["store", "--store", path, "--vacuum"]);
    assert!(ok && err.contains("already incremental"), "{err}");
}
