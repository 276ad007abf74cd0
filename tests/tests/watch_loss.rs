//! `bounce-agent watch` outliving its sources (issues 11 and 13), on real
//! parts no other test shares: a simulated node's own dockerd stopped and
//! started again, and a private systemd user manager's bus taken down and
//! brought back. Once the source answers again, a restart is still timed,
//! and once.

use bounce_tests::*;
use bounce_wire::{BoundaryName, Cause, Outcome, Phase, TimelineRecord};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The simulated node whose engine this test stops and starts.
const NODE: &str = "watch-loss";
/// A private user manager, its units and files under this folder.
const PRIVATE_MANAGER: &str = "/tmp/bounce-systemd-watch-loss";

/// Waits (bounded) for a record of `service` that `pick` accepts.
fn wait_for(dir: &Path, service: &str, pick: impl Fn(&TimelineRecord) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(40);
    while Instant::now() < deadline {
        if watch_records_of(dir, service).iter().any(&pick) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "no such record of {service}: {:#?}",
        watch_records_of(dir, service)
    );
}

/// The node's engine and a container on it: removed and stopped when dropped.
struct NodeContainer {
    host: String,
    name: String,
}

impl Drop for NodeContainer {
    fn drop(&mut self) {
        let _ = docker_on(&self.host, &["rm", "-f", &self.name]);
        docker_node_stop(NODE, "down");
    }
}

#[test]
fn watch_follows_a_restarted_dockerd_again_and_times_the_next_restart_once() {
    docker_up();
    let host = docker_node_up(NODE);
    let c = NodeContainer {
        host: host.clone(),
        name: format!("bounce-t-watch-loss-{}", std::process::id()),
    };
    let _ = docker_on(&host, &["rm", "-f", &c.name]);
    docker_on(
        &host,
        &[
            "run",
            "-d",
            "--name",
            &c.name,
            "--restart",
            "always",
            "--network",
            "none",
            IMAGE,
            "sh",
            "-c",
            "trap 'exit 0' TERM; while :; do sleep 0.1; done",
        ],
    )
    .expect("a container on the node's engine");
    let dir = Scratch::new("watch-loss-docker");
    let out = dir.path("watch");
    let _w = WatchProcess::start_env(&out, &[], &[("DOCKER_HOST", &host)]);

    // The engine goes (its containers with it) and comes back, starting
    // the container again by its restart policy.
    docker_node_stop(NODE, "down");
    std::thread::sleep(Duration::from_secs(1));
    docker_node_up(NODE);
    let running = Instant::now() + Duration::from_secs(30);
    while docker_on(&host, &["inspect", "-f", "{{.State.Running}}", &c.name]).as_deref()
        != Ok("true")
    {
        assert!(Instant::now() < running, "the container did not come back");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The watcher asks every second whether the engine is back.
    std::thread::sleep(Duration::from_secs(3));
    let back = now_nanos();
    docker_on(&host, &["restart", "-t", "2", &c.name]).expect("docker restart");
    let after = |r: &TimelineRecord| {
        r.boundary(BoundaryName::Requested)
            .is_some_and(|b| b.unix_nanos > back)
    };
    wait_for(&out, &c.name, after);
    std::thread::sleep(Duration::from_millis(1500));
    let all = watch_records_of(&out, &c.name);
    let got: Vec<&TimelineRecord> = all.iter().filter(|r| after(r)).collect();
    assert_eq!(got.len(), 1, "once: {all:#?}");
    let r = got[0];
    assert_eq!(
        (r.cause, r.outcome),
        (Some(Cause::Restart), Outcome::Ok),
        "{r:#?}"
    );
    for p in [Phase::Stop, Phase::Start, Phase::Ready, Phase::Total] {
        assert!(r.phases.contains_key(&p), "{p} missing: {r:#?}");
    }
    // Nothing recorded twice, the restart across the engine's own stop included.
    // (one whose stop went with the engine is recorded from the
    // container's state: no events, keyed by its first stamp)
    let key = |r: &TimelineRecord| {
        r.events
            .first()
            .map_or(r.timestamps[0].unix_nanos, |e| e.unix_nanos)
    };
    let mut keys: Vec<i64> = all.iter().map(key).collect();
    keys.dedup();
    assert_eq!(keys.len(), all.len(), "{all:#?}");
}

#[test]
fn watch_follows_a_managers_bus_again_and_times_the_next_unit_restart_once() {
    let unit = PrivateUnit {
        env: systemd_private(Path::new(PRIVATE_MANAGER)),
        name: format!("bounce-t-watch-loss-{}.service", std::process::id()),
    };
    std::fs::write(
        unit.env.unit_dir.join(&unit.name),
        "[Service]\nExecStart=/bin/sleep 3600\n",
    )
    .unwrap();
    unit.env.systemctl(&["daemon-reload"]).unwrap();
    unit.env.systemctl(&["start", &unit.name]).unwrap();
    let dir = Scratch::new("watch-loss-systemd");
    let config = dir.write(
        "watch.yaml",
        &format!(
            "systemd:\n  - bus: \"{}\"\n    units: [\"{}\"]\n",
            unit.env.bus, unit.name
        ),
    );
    let out = dir.path("watch");
    let _w = WatchProcess::start(&out, &["--config", config.to_str().unwrap()]);
    std::thread::sleep(Duration::from_secs(1));

    unit.env
        .systemctl(&["stop", "dbus.socket", "dbus.service"])
        .expect("taking the private bus down");
    std::thread::sleep(Duration::from_millis(1500));
    unit.env
        .systemctl(&["start", "dbus.socket"])
        .expect("bringing the private bus back");
    // The watcher tries every second; the manager joins the new bus too.
    std::thread::sleep(Duration::from_secs(4));
    unit.env.systemctl(&["restart", &unit.name]).unwrap();
    wait_for(&out, &unit.name, |_| true);
    std::thread::sleep(Duration::from_millis(1500));
    let got = watch_records_of(&out, &unit.name);
    assert_eq!(got.len(), 1, "once: {got:#?}");
    let r = &got[0];
    assert_eq!(
        (r.cause, r.outcome),
        (Some(Cause::Restart), Outcome::Ok),
        "{r:#?}"
    );
    for b in [
        BoundaryName::Requested,
        BoundaryName::Exited,
        BoundaryName::Started,
    ] {
        assert!(r.boundary(b).is_some(), "{b:?} missing: {r:#?}");
    }
}

/// Another private user manager, for the units changed while its bus is away.
const RESYNC_MANAGER: &str = "/tmp/bounce-systemd-watch-resync";

#[test]
fn watch_reads_from_the_units_own_stamps_what_they_did_while_the_bus_was_away() {
    let manager = PrivateUnit {
        env: systemd_private(Path::new(RESYNC_MANAGER)),
        name: format!("bounce-t-resync-none-{}.service", std::process::id()),
    };
    let env = &manager.env;
    let name = |what: &str| format!("bounce-t-resync-{what}-{}.service", std::process::id());
    let (down, restarted, crashed) = (name("down"), name("restarted"), name("crashed"));
    // Enabled, as a node's services are: a stopped unit nothing wants is
    // unloaded, its stamps with it.
    let install = "[Install]\nWantedBy=default.target\n";
    let files = UnitFiles {
        env,
        names: vec![down.clone(), restarted.clone(), crashed.clone()],
    };
    for (n, extra) in [
        (&down, ""),
        (&restarted, ""),
        (&crashed, "Restart=always\nRestartSec=300ms\n"),
    ] {
        std::fs::write(
            env.unit_dir.join(n),
            format!("[Service]\nExecStart=/bin/sleep 3600\n{extra}{install}"),
        )
        .unwrap();
    }
    env.systemctl(&["daemon-reload"]).unwrap();
    for n in &files.names {
        env.systemctl(&["enable", "--now", n]).unwrap();
    }
    let dir = Scratch::new("watch-loss-resync");
    let config = dir.write(
        "watch.yaml",
        &format!(
            "systemd:\n  - bus: \"{}\"\n    units: [\"bounce-t-resync-*-{}.service\"]\n",
            env.bus,
            std::process::id()
        ),
    );
    let out = dir.path("watch");
    let _w = WatchProcess::start(&out, &["--config", config.to_str().unwrap()]);
    std::thread::sleep(Duration::from_secs(1));

    env.systemctl(&["stop", "dbus.socket", "dbus.service"])
        .expect("taking the private bus down");
    std::thread::sleep(Duration::from_millis(1500));
    // While away: one stopped, one restarted, one crashed and brought back.
    env.systemctl(&["stop", &down]).unwrap();
    env.systemctl(&["restart", &restarted]).unwrap();
    let pid = env
        .systemctl(&["show", "-p", "MainPID", "--value", &crashed])
        .unwrap();
    let killed = Command::new("kill").args(["-9", &pid]).status().unwrap();
    assert!(killed.success());
    let back = Instant::now() + Duration::from_secs(10);
    while env
        .systemctl(&["show", "-p", "NRestarts", "--value", &crashed])
        .unwrap()
        != "1"
        || env.systemctl(&["is-active", &crashed]).is_err()
    {
        assert!(Instant::now() < back, "{crashed} not brought back");
        std::thread::sleep(Duration::from_millis(100));
    }
    env.systemctl(&["start", "dbus.socket"])
        .expect("bringing the private bus back");
    // The watcher tries every second; the manager joins the new bus too.
    wait_for(&out, &restarted, |_| true);
    wait_for(&out, &crashed, |_| true);

    let r = &watch_records_of(&out, &restarted)[0];
    assert_eq!(
        (r.cause, r.outcome),
        (Some(Cause::StopStart), Outcome::Ok),
        "{r:#?}"
    );
    env.agrees(
        r,
        BoundaryName::Requested,
        &restarted,
        "ActiveExitTimestamp",
    );
    env.agrees(
        r,
        BoundaryName::Exited,
        &restarted,
        "InactiveEnterTimestamp",
    );
    env.agrees(r, BoundaryName::Started, &restarted, "ActiveEnterTimestamp");
    assert!(
        r.notes.iter().any(|n| n.contains("jobs not seen"))
            && r.notes.iter().any(|n| n.contains("not told apart")),
        "{r:#?}"
    );
    assert!(
        r.unit.as_ref().unwrap().stopped_as.is_none(),
        "unseen: {r:#?}"
    );

    let c = &watch_records_of(&out, &crashed)[0];
    assert_eq!(
        (c.cause, c.outcome),
        (Some(Cause::Crash), Outcome::Ok),
        "{c:#?}"
    );
    assert!(c.boundary(BoundaryName::Requested).is_none(), "{c:#?}");
    env.agrees(c, BoundaryName::Exited, &crashed, "ActiveExitTimestamp");
    env.agrees(c, BoundaryName::Started, &crashed, "ActiveEnterTimestamp");
    assert!(
        c.phases.get(&Phase::Start).is_some_and(|s| *s >= 0.3),
        "RestartSec=300ms: {c:#?}"
    );

    // The stopped one was opened when the bus came back; its start ends it.
    assert!(watch_records_of(&out, &down).is_empty());
    std::thread::sleep(Duration::from_millis(500));
    env.systemctl(&["start", &down]).unwrap();
    wait_for(&out, &down, |_| true);
    let d = &watch_records_of(&out, &down)[0];
    assert_eq!(
        (d.cause, d.outcome),
        (Some(Cause::StopStart), Outcome::Ok),
        "{d:#?}"
    );
    env.agrees(d, BoundaryName::Requested, &down, "ActiveExitTimestamp");
    env.agrees(d, BoundaryName::Exited, &down, "InactiveEnterTimestamp");
    env.agrees(d, BoundaryName::Started, &down, "ActiveEnterTimestamp");
    assert!(
        d.notes.iter().any(|n| n.contains("jobs not seen")),
        "{d:#?}"
    );

    // Each once.
    std::thread::sleep(Duration::from_millis(1500));
    for n in &files.names {
        assert_eq!(watch_records_of(&out, n).len(), 1, "{n} once");
    }
}
