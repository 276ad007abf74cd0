//! `bounce-collector report --deployment D --since --until [--origin]`
//! on real watch data: a watcher following the real engine streams what it
//! observes to a collector; a second node's watch run from the day before
//! and one of bounce's own runs are ingested beside it. The range report
//! gathers every run of the deployment, holds exactly the restarts that
//! opened in the range (the watcher's own records, boundary for boundary),
//! and tells them per service and cause.

use bounce_tests::*;
use bounce_wire::{BoundaryName, Cause, Clock, Origin, Recreated, Source, TimelineRecord};
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

const DEPLOYMENT: &str = "watch-range";

fn report(dir: &Scratch, url: &str, admin: &Path, name: &str, extra: &[&str]) -> (Output, String) {
    let out_dir = dir.path(name);
    let out = std::process::Command::new(bin("bounce-collector"))
        .args(["report", "--collector", url, "--token-file"])
        .arg(admin)
        .args(["--deployment", DEPLOYMENT, "--out"])
        .arg(&out_dir)
        .args(extra)
        .output()
        .unwrap();
    let md = std::fs::read_to_string(out_dir.join("report.md")).unwrap_or_default();
    (out, md)
}

fn boundary(name: BoundaryName, unix_nanos: i64) -> bounce_wire::Boundary {
    bounce_wire::Boundary {
        name,
        unix_nanos,
        source: Source::Agent,
        clock: Clock::Realtime,
    }
}

/// Every record of `name` in the watcher's day folders.
fn watched(dir: &Path, name: &str) -> Vec<TimelineRecord> {
    let mut out: Vec<TimelineRecord> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("timelines.jsonl").exists())
        .flat_map(|e| read_timelines(&e.path()))
        .filter(|r| r.service == name)
        .collect();
    out.sort_by_key(|r| r.timestamps.iter().map(|b| b.unix_nanos).min());
    out
}

#[test]
fn a_range_report_gathers_every_watched_restart_of_a_deployment_per_service_and_cause() {
    let dir = Scratch::new("watch-range");
    let col = CollectorProcess::start(&dir.0);
    let token = dir.write("token", AGENT_TOKEN);
    let admin = dir.write("admin", ADMIN_TOKEN);
    let url = col.url();
    let c = TestContainer::start(
        "watch-range",
        &["--network", "none", "--restart", "unless-stopped"],
        "trap 'exit 0' TERM; while true; do sleep 0.1; done",
    );
    let out = dir.path("watch");
    let _w = WatchProcess::start(
        &out,
        &[
            "--deployment",
            DEPLOYMENT,
            "--collector",
            &url,
            "--token-file",
            token.to_str().unwrap(),
        ],
    );
    let since = now_nanos();
    docker(&["restart", "-t", "5", &c.name]).unwrap();
    docker(&["stop", "-t", "5", &c.name]).unwrap();
    docker(&["start", &c.name]).unwrap();
    let pid = c.inspect()["State"]["Pid"].as_i64().unwrap();
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());

    // Another node's watch run of the day before (an upgrade recreated
    // nova_api there), and one of bounce's own runs of the deployment.
    let yesterday = since - 86_400_000_000_000;
    let day = |at: i64| bounce_wire::civil::utc(at)[..10].to_string();
    let facts = |host: &str| -> bounce_wire::NodeFacts {
        serde_json::from_value(
            serde_json::json!({"hostname": host, "kernel": null, "os": null,
            "cpus": 1, "memory_bytes": 1, "docker_version": null, "docker_api_version": null}),
        )
        .unwrap()
    };
    let n2_run = format!("watch-n2-{}", day(yesterday));
    let recreate = TimelineRecord {
        origin: Origin::Watch,
        cause: Some(Cause::Recreate),
        recreated: Some(Recreated {
            old_id: "old".into(),
            old_image: "kolla/nova-api:2025.1".into(),
            new_image: "kolla/nova-api:2025.2".into(),
        }),
        ..docker_record(
            (&n2_run, DEPLOYMENT, "watch"),
            "n2",
            "nova_api",
            vec![
                boundary(BoundaryName::Requested, yesterday),
                boundary(BoundaryName::Exited, yesterday + 2_000_000_000),
                boundary(BoundaryName::Started, yesterday + 9_000_000_000),
                boundary(BoundaryName::Ready, yesterday + 12_000_000_000),
            ],
        )
    };
    let ours = docker_record(
        ("range-own-run", DEPLOYMENT, "restart-all"),
        "n2",
        "nova_api",
        vec![
            boundary(BoundaryName::Requested, since - 1000),
            boundary(BoundaryName::Exited, since + 1_000_000_000),
        ],
    );
    let day_start = yesterday - yesterday.rem_euclid(86_400_000_000_000);
    for (t, started, planned) in [(recreate, day_start, 0), (ours, since - 2000, 1)] {
        let (status, body) =
            col.ingest(AGENT_TOKEN, &batch_of(t, facts("n2"), started, planned, 1));
        assert_eq!(status, 200, "{body}");
    }

    // The watcher's three restarts of the container reach the collector.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mine = loop {
        let got = watched(&out, &c.name);
        let export = format!(
            "/api/v1/runs/{}/export",
            got.first().map(|r| r.run_id.as_str()).unwrap_or("none")
        );
        let (_, body) = col.http("GET", &export, Some(ADMIN_TOKEN), None);
        let data: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let stored: Vec<TimelineRecord> =
            serde_json::from_value(data["timelines"].clone()).unwrap_or_default();
        let n = stored.iter().filter(|t| t.service == c.name).count();
        if (got.len() >= 3 && n >= 3) || Instant::now() > deadline {
            break got;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(mine.len(), 3, "{mine:#?}");
    let until = now_nanos();

    // Both days, observed only: the watcher's restarts and n2's recreate.
    let (o, md) = report(
        &dir,
        &url,
        &admin,
        "both-days",
        &["--origin", "watch", "--since", &day(yesterday)],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(md.contains("## Observed restarts by cause"), "{md}");
    for (cause, n) in [("restart", 1), ("stop-start", 1), ("crash", 1)] {
        assert!(
            md.contains(&format!("| {} | {cause} | {n} | 0 |", c.name)),
            "{cause}: {md}"
        );
    }
    assert!(
        md.contains("| nova_api | recreate | 1 | 0 | 12.0s | 12.0s | `kolla/nova-api:2025.1` → `kolla/nova-api:2025.2` |"),
        "{md}"
    );
    assert!(!md.contains("planned"), "only observed restarts: {md}");
    let raw = read_timelines(&dir.path("both-days"));
    assert!(raw.iter().all(|t| t.origin == Origin::Watch));
    let nodes: std::collections::BTreeSet<&str> = raw.iter().map(|t| t.node.as_str()).collect();
    assert!(nodes.contains("wt") && nodes.contains("n2"), "{nodes:?}");
    // The container's restarts in the report are the watcher's own records.
    let in_report: Vec<&TimelineRecord> = raw.iter().filter(|t| t.service == c.name).collect();
    assert_eq!(in_report.len(), 3);
    for (r, w) in in_report.iter().zip(&mine) {
        assert_eq!((&r.timestamps, r.cause), (&w.timestamps, w.cause));
    }

    // Today only, every origin: n2's recreate is out, bounce's own run is in.
    let from = bounce_wire::civil::utc(since - 1_000_000_000);
    let to = bounce_wire::civil::utc(until + 1_000_000_000);
    let (o, md) = report(
        &dir,
        &url,
        &admin,
        "today",
        &["--since", &from, "--until", &to],
    );
    assert!(o.status.success(), "{}", text(&o));
    let raw = read_timelines(&dir.path("today"));
    assert_eq!(raw.iter().filter(|t| t.origin == Origin::Run).count(), 1);
    assert!(
        !raw.iter()
            .any(|t| t.cause == Some(Cause::Recreate) && t.node == "n2")
    );
    assert!(
        md.contains("of 1 planned") && md.contains("observed"),
        "{md}"
    );

    // Bounce's own only.
    let (o, _) = report(&dir, &url, &admin, "own", &["--origin", "run"]);
    assert!(o.status.success(), "{}", text(&o));
    let raw = read_timelines(&dir.path("own"));
    assert_eq!(raw.len(), 1);
    assert_eq!(raw[0].run_id.as_str(), "range-own-run");

    // A range that holds nothing says so.
    let (o, _) = report(
        &dir,
        &url,
        &admin,
        "none",
        &[
            "--since",
            &bounce_wire::civil::utc(until + 3_600_000_000_000),
        ],
    );
    assert!(!o.status.success());
    assert!(
        text(&o).contains("no restart of deployment"),
        "{}",
        text(&o)
    );
}
