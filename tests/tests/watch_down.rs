//! `bounce-agent watch` stopped and started again (issue 13): a unit
//! restarted or stopped while no watcher ran is found at the next start
//! from the unit's own stamps, compared with what the last watcher knew
//! (`watch-units.json`), and recorded once; a watcher started again with
//! nothing new records nothing (on a private systemd user manager). The
//! engine replays containers' events since the cursor, but only its last
//! 256 (and none from before its own restart): a watcher says when more
//! happened while it was stopped, and finds a container restart whose
//! events are gone from the container's own state against what the last
//! watcher knew (`watch-containers.json`), recorded once; one the engine
//! still holds is recorded from its events, once (on a node's own dockerd).

use bounce_tests::*;
use bounce_wire::{BoundaryName, Cause, Outcome, TimelineRecord};
use std::path::Path;
use std::time::{Duration, Instant};

/// A private user manager, its units and files under this folder.
const PRIVATE_MANAGER: &str = "/tmp/bounce-systemd-watch-down";

/// What each watcher says once it has compared its units at start.
const COMPARED: &str = "known to the last watcher";

/// Waits (bounded) for `n` watchers to have compared their units at start.
fn wait_compared(out: &Path, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let log = std::fs::read_to_string(out.join("watch.log")).unwrap_or_default();
        if log.matches(COMPARED).count() >= n {
            return;
        }
        assert!(Instant::now() < deadline, "no start {n} compared: {log}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits (bounded) for a record of `service`.
fn wait_record(out: &Path, service: &str) -> TimelineRecord {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        if let Some(r) = watch_records_of(out, service).pop() {
            return r;
        }
        assert!(Instant::now() < deadline, "no record of {service}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn watch_records_once_what_units_did_while_it_was_stopped() {
    let manager = PrivateUnit {
        env: systemd_private(Path::new(PRIVATE_MANAGER)),
        name: format!("bounce-t-down-none-{}.service", std::process::id()),
    };
    let env = &manager.env;
    let name = |what: &str| format!("bounce-t-down-{what}-{}.service", std::process::id());
    let (idle, restarted, stopped) = (name("idle"), name("restarted"), name("stopped"));
    let files = UnitFiles {
        env,
        names: vec![idle.clone(), restarted.clone(), stopped.clone()],
    };
    // Enabled, as a node's services are: a stopped unit nothing wants is
    // unloaded, its stamps with it.
    for n in &files.names {
        std::fs::write(
            env.unit_dir.join(n),
            "[Service]\nExecStart=/bin/sleep 3600\n[Install]\nWantedBy=default.target\n",
        )
        .unwrap();
    }
    env.systemctl(&["daemon-reload"]).unwrap();
    for n in &files.names {
        env.systemctl(&["enable", "--now", n]).unwrap();
    }
    let dir = Scratch::new("watch-down");
    let config = dir.write(
        "watch.yaml",
        &format!(
            "systemd:\n  - bus: \"{}\"\n    units: [\"bounce-t-down-*-{}.service\"]\n",
            env.bus,
            std::process::id()
        ),
    );
    let out = dir.path("watch");
    let args = ["--config", config.to_str().unwrap()];

    // A first watcher: nothing to compare with; it says what it knows when stopped.
    let mut w = WatchProcess::start(&out, &args);
    wait_compared(&out, 1);
    w.terminate();
    let book = std::fs::read_to_string(out.join("watch-units.json")).expect("the unit book");
    for n in &files.names {
        assert!(book.contains(n.as_str()), "{n} in {book}");
    }

    // While no watcher runs: one restarted, one stopped.
    env.systemctl(&["restart", &restarted]).unwrap();
    env.systemctl(&["stop", &stopped]).unwrap();

    let mut w = WatchProcess::start(&out, &args);
    wait_compared(&out, 2);
    let r = wait_record(&out, &restarted);
    assert_eq!(
        (r.cause, r.outcome),
        (Some(Cause::StopStart), Outcome::Ok),
        "{r:#?}"
    );
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("the watcher was not running") && n.contains("jobs not seen"))
            && r.notes.iter().any(|n| n.contains("not told apart")),
        "{r:#?}"
    );
    env.agrees(
        &r,
        BoundaryName::Requested,
        &restarted,
        "ActiveExitTimestamp",
    );
    env.agrees(
        &r,
        BoundaryName::Exited,
        &restarted,
        "InactiveEnterTimestamp",
    );
    env.agrees(
        &r,
        BoundaryName::Started,
        &restarted,
        "ActiveEnterTimestamp",
    );

    // The stopped one was opened at start (its record came after the
    // units were read); its start now ends it.
    assert!(watch_records_of(&out, &stopped).is_empty());
    env.systemctl(&["start", &stopped]).unwrap();
    let d = wait_record(&out, &stopped);
    assert_eq!(
        (d.cause, d.outcome),
        (Some(Cause::StopStart), Outcome::Ok),
        "{d:#?}"
    );
    assert!(
        d.notes
            .iter()
            .any(|n| n.contains("the watcher was not running")),
        "{d:#?}"
    );
    env.agrees(&d, BoundaryName::Requested, &stopped, "ActiveExitTimestamp");
    env.agrees(&d, BoundaryName::Started, &stopped, "ActiveEnterTimestamp");
    w.terminate();

    // Started again with nothing new: nothing recorded again.
    let mut w = WatchProcess::start(&out, &args);
    wait_compared(&out, 3);
    w.terminate();
    assert_eq!(
        watch_records_of(&out, &restarted).len(),
        1,
        "restarted once"
    );
    assert_eq!(watch_records_of(&out, &stopped).len(), 1, "stopped once");
    assert!(watch_records_of(&out, &idle).is_empty(), "idle: nothing");
    let log = std::fs::read_to_string(out.join("watch.log")).unwrap();
    let last = log.lines().rfind(|l| l.contains(COMPARED)).unwrap();
    assert!(
        last.contains("3 known to the last watcher: 0 restarted and 0 down"),
        "{last}"
    );
}

#[test]
fn a_watcher_says_when_the_engine_no_longer_holds_what_happened_while_it_was_stopped() {
    let c = TestContainer::start(
        "watch-down-flood",
        &["--network", "none"],
        "trap '' USR1; trap 'exit 0' TERM; while :; do sleep 0.1; done",
    );
    let dir = Scratch::new("watch-down-docker");
    let out = dir.path("watch");
    let mut w = WatchProcess::start(&out, &[]);
    w.terminate();
    // While no watcher runs, more events than the engine keeps: each
    // signal is a `kill` event (the container ignores it).
    let mut args = vec!["kill", "-s", "USR1"];
    args.extend(std::iter::repeat_n(c.name.as_str(), 300));
    docker(&args).expect("signalling the container");
    // Said at resume, before the watcher follows the engine again.
    let _w = WatchProcess::start(&out, &[]);
    let log = std::fs::read_to_string(out.join("watch.log")).unwrap();
    assert!(
        log.contains("the Docker engine keeps only its last 256 events"),
        "{log}"
    );
}

/// The simulated node whose engine this test floods and restarts.
const NODE: &str = "watch-down";

/// Containers on the node's engine: removed, and the engine stopped, when dropped.
struct NodeContainers {
    host: String,
    names: Vec<String>,
}

impl Drop for NodeContainers {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = docker_on(&self.host, &["rm", "-f", n]);
        }
        docker_node_stop(NODE, "down");
    }
}

/// A container's state stamp (`StartedAt`, `FinishedAt`) in unix nanos.
fn state_stamp(host: &str, name: &str, field: &str) -> i64 {
    let f = format!("{{{{.State.{field}}}}}");
    let out = docker_on(host, &["inspect", "-f", &f, name]).expect("docker inspect");
    rfc3339_nanos(&out)
}

/// Waits (bounded) until `name` runs.
fn wait_running(host: &str, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while docker_on(host, &["inspect", "-f", "{{.State.Running}}", name]).as_deref() != Ok("true") {
        assert!(Instant::now() < deadline, "{name} did not run again");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits (bounded) until the `n`th start of `name` ignores USR1 (its log says so).
fn wait_ignoring(host: &str, name: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while docker_on(host, &["logs", name]).map_or(0, |l| l.matches("ignoring").count()) < n {
        assert!(Instant::now() < deadline, "{name} did not start {n} times");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What the records of a container restart found from its state say.
const FROM_STATE: &str = "found from the container's own state";

#[test]
fn watch_records_once_from_their_state_the_container_restarts_the_engine_no_longer_holds() {
    docker_up();
    let host = docker_node_up(NODE);
    let pid = std::process::id();
    let c = NodeContainers {
        host: host.clone(),
        names: vec![
            format!("bounce-t-down-lost-{pid}"),
            format!("bounce-t-down-held-{pid}"),
        ],
    };
    let (lost, held) = (c.names[0].as_str(), c.names[1].as_str());
    for n in &c.names {
        let _ = docker_on(&host, &["rm", "-f", n]);
        let script = "trap '' USR1; trap 'exit 0' TERM; echo ignoring; while :; do sleep 0.1; done";
        let run = [
            "run",
            "-d",
            "--name",
            n,
            "--restart",
            "always",
            "--network",
            "none",
            IMAGE,
            "sh",
            "-c",
            script,
        ];
        docker_on(&host, &run).expect("a container on the node's engine");
    }
    let dir = Scratch::new("watch-down-state");
    let out = dir.path("watch");
    let env = [("DOCKER_HOST", host.as_str())];
    // The first watcher leaves what it knew of every container.
    WatchProcess::start_env(&out, &[], &env).terminate();
    assert!(out.join("watch-containers.json").exists());

    // Restarted while no watcher ran, the engine still holding its events:
    // recorded from them when replayed, once.
    docker_on(&host, &["restart", "-t", "2", held]).expect("docker restart");
    let mut w = WatchProcess::start_env(&out, &[], &env);
    let r = wait_record(&out, held);
    assert!(!r.events.is_empty(), "from its events: {r:#?}");
    assert!(!r.notes.iter().any(|n| n.contains(FROM_STATE)), "{r:#?}");
    w.terminate();

    // Restarted, then more events than the engine keeps (each ignored
    // signal is a `kill` event): its stop is no longer held.
    docker_on(&host, &["restart", "-t", "2", lost]).expect("docker restart");
    // A signal before its shell ignores it would end the container.
    wait_ignoring(&host, lost, 2);
    let (exited, started) = (
        state_stamp(&host, lost, "FinishedAt"),
        state_stamp(&host, lost, "StartedAt"),
    );
    let mut args = vec!["kill", "-s", "USR1"];
    args.extend(std::iter::repeat_n(lost, 300));
    docker_on(&host, &args).expect("signalling the container");
    let mut w = WatchProcess::start_env(&out, &[], &env);
    let r = wait_record(&out, lost);
    assert!(r.events.is_empty(), "not from events: {r:#?}");
    assert!(r.notes.iter().any(|n| n.contains(FROM_STATE)), "{r:#?}");
    assert_eq!(
        (r.cause, r.outcome),
        (Some(Cause::StopStart), Outcome::Incomplete),
        "{r:#?}"
    );
    assert_eq!(
        r.boundary(BoundaryName::Exited).map(|b| b.unix_nanos),
        Some(exited)
    );
    assert_eq!(
        r.boundary(BoundaryName::Started).map(|b| b.unix_nanos),
        Some(started)
    );
    w.terminate();

    // Started again with nothing new: still one of each.
    WatchProcess::start_env(&out, &[], &env).terminate();
    assert_eq!(watch_records_of(&out, lost).len(), 1, "lost: once");
    assert_eq!(watch_records_of(&out, held).len(), 1, "held: once");

    // The engine restarted while no watcher ran (its events go with it);
    // its restart policy starts the containers again.
    docker_node_stop(NODE, "down");
    docker_node_up(NODE);
    wait_running(&host, lost);
    wait_running(&host, held);
    let started = state_stamp(&host, lost, "StartedAt");
    let _w = WatchProcess::start_env(&out, &[], &env);
    for n in [lost, held] {
        let all = watch_records_of(&out, n);
        assert_eq!(all.len(), 2, "{n}: one more: {all:#?}");
        let r = &all[1];
        assert!(r.notes.iter().any(|n| n.contains(FROM_STATE)), "{r:#?}");
        if n == lost {
            assert_eq!(
                r.boundary(BoundaryName::Started).map(|b| b.unix_nanos),
                Some(started)
            );
        }
    }
}
