//! `bounce-agent watch` following units of the test suite's real systemd
//! user manager (on its own D-Bus): a `systemctl restart` of a kolla-style
//! unit wrapping a real container appears once, as the unit's restart with
//! the container's boundaries (not again as the container's), with cause
//! `restart`; a stop then a start and a crash `Restart=` undoes are named
//! so. Every boundary is checked against systemd's own realtime stamps and
//! the engine's events.

use bounce_tests::*;
use bounce_wire::{BoundaryName, Cause, Origin, Outcome, Phase, Source, TargetRef, TimelineRecord};
use std::path::Path;
use std::time::{Duration, Instant};

const MS: i64 = 1_000_000;

fn wait_for(dir: &Path, service: &str, n: usize) -> Vec<TimelineRecord> {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let got = watch_records_of(dir, service);
        if got.len() >= n || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// systemd's realtime µs property, in ns.
fn realtime(u: &TestUnit, p: &str) -> i64 {
    u.usec_prop(p) * 1000
}

/// The boundary agrees with systemd's own realtime stamp (ours is its
/// monotonic one placed on the realtime axis: within 2 ms).
fn agrees(r: &TimelineRecord, b: BoundaryName, u: &TestUnit, p: &str) {
    let got = at(r, b);
    let systemd = realtime(u, p);
    assert!(
        (got - systemd).abs() < 2 * MS,
        "{b:?} {got} vs systemd's {p} {systemd}: {r:#?}"
    );
    assert!(
        matches!(r.boundary(b).unwrap().source, Source::Systemd { .. }),
        "{r:?}"
    );
}

#[test]
fn unit_restarts_are_recorded_once_by_cause_against_systemds_own_stamps() {
    docker_up();
    let env = systemd_up();
    let c = TestContainer::start(
        "watch-kolla",
        &["--network", "none"],
        "trap 'sleep 0.2; exit 0' TERM; while true; do sleep 1 & wait; done",
    );
    // kolla's unit: the container attached, stopped through the engine;
    // the stop lingers 0.5 s after the container is gone.
    let kolla = TestUnit::start(
        "watch-kolla",
        &format!(
            "[Service]\nExecStart=/usr/bin/docker start -a {n}\nExecStop=/bin/sh -c '/usr/bin/docker stop {n} -t 10; sleep 0.5'\nRestart=always\nRestartSec=11\n",
            n = c.name
        ),
    );
    let plain = TestUnit::start(
        "watch-plain",
        "[Service]\nExecStart=/bin/sleep 3600\nRestart=always\nRestartSec=300ms\n",
    );
    let dir = Scratch::new("watch-units");
    let config = dir.write(
        "watch.yaml",
        &format!(
            "deployment: lab\nsystemd:\n  - bus: \"{}\"\n    units: [\"{}\", \"bounce-t-watch-plain-*.service\"]\n",
            env.bus, kolla.name
        ),
    );
    let out = dir.path("watch");
    let _w = WatchProcess::start(&out, &["--config", config.to_str().unwrap()]);
    // The cursor says the engine is followed; give the manager's match a moment too.
    std::thread::sleep(Duration::from_secs(1));

    systemctl(&["restart", &kolla.name]).unwrap();
    let got = wait_for(&out, &c.name, 1);
    assert_eq!(got.len(), 1, "{got:#?}");
    let r = &got[0];
    let engine = c.events(
        at(r, BoundaryName::Requested) - 1,
        at(r, BoundaryName::Ready) + 1,
    );
    // systemd's stamps, read before anything else restarts the unit.
    agrees(r, BoundaryName::Requested, &kolla, "ActiveExitTimestamp");
    agrees(r, BoundaryName::Exited, &kolla, "InactiveEnterTimestamp");
    agrees(r, BoundaryName::Started, &kolla, "ActiveEnterTimestamp");
    assert_eq!(
        (r.origin, r.cause, r.outcome),
        (Origin::Watch, Some(Cause::Restart), Outcome::Ok),
        "{r:#?}"
    );
    assert!(
        matches!(&r.target, TargetRef::Systemd { name, container: Some(cn), .. } if *name == kolla.name && *cn == c.name),
        "{:?}",
        r.target
    );
    let stamp = |action: &str| {
        engine
            .iter()
            .filter(|(a, _)| a == action)
            .map(|(_, t)| *t)
            .next_back()
            .unwrap_or_else(|| panic!("no {action} from the engine: {engine:?}"))
    };
    assert_eq!(at(r, BoundaryName::ContainerExited), stamp("die"));
    assert_eq!(at(r, BoundaryName::ContainerStarted), stamp("start"));
    for p in [
        Phase::Stop,
        Phase::Start,
        Phase::Ready,
        Phase::Total,
        Phase::ContainerStop,
        Phase::UnitSettle,
    ] {
        assert!(r.phases.contains_key(&p), "{p:?} missing: {r:#?}");
    }
    assert!(
        r.phases[&Phase::UnitSettle] >= 0.5,
        "ExecStop lingers 0.5 s: {r:#?}"
    );
    assert_eq!(
        r.unit.as_ref().unwrap().stopped_as.as_deref(),
        Some("inactive")
    );
    let words = r.attribution.as_deref().unwrap_or_default();
    assert!(words.starts_with("container exited"), "{words}");

    // A stop, later a start; then a crash Restart= undoes.
    systemctl(&["stop", &plain.name]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    systemctl(&["start", &plain.name]).unwrap();
    let got = wait_for(&out, &plain.name, 1);
    assert_eq!(got.len(), 1, "{got:#?}");
    let ss = &got[0];
    assert_eq!(
        (ss.cause, ss.outcome),
        (Some(Cause::StopStart), Outcome::Ok),
        "{ss:#?}"
    );
    // (A stopped unit nothing references is unloaded: its reloaded self
    // has no InactiveEnterTimestamp to compare with; the signals had it.)
    agrees(ss, BoundaryName::Started, &plain, "ActiveEnterTimestamp");
    assert!(at(ss, BoundaryName::Requested) < at(ss, BoundaryName::Exited));
    assert!(
        ss.phases.get(&Phase::Start).is_some_and(|s| *s >= 0.3),
        "stopped 0.3 s: {ss:#?}"
    );

    let pid = plain.prop("MainPID");
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let got = wait_for(&out, &plain.name, 2);
    assert_eq!(got.len(), 2, "{got:#?}");
    let crash = &got[1];
    assert_eq!(
        (crash.cause, crash.outcome),
        (Some(Cause::Crash), Outcome::Ok),
        "{crash:#?}"
    );
    assert!(
        crash.boundary(BoundaryName::Requested).is_none(),
        "nobody asked: {crash:#?}"
    );
    agrees(crash, BoundaryName::Started, &plain, "ActiveEnterTimestamp");
    let r = crash.unit.as_ref().unwrap();
    assert_eq!(
        (r.main_exit_code, r.main_exit_status),
        (Some(2), Some(9)),
        "{crash:#?}"
    );
    assert!(
        crash.phases.get(&Phase::Start).is_some_and(|s| *s >= 0.3),
        "RestartSec=300ms: {crash:#?}"
    );

    // Nothing more came: the container's restart is the unit's, once.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(watch_records_of(&out, &c.name).len(), 1);
    assert_eq!(watch_records_of(&out, &plain.name).len(), 2);
}

#[test]
fn units_loaded_after_the_watcher_started_are_followed_by_name_and_by_glob() {
    docker_up();
    let env = systemd_up();
    let pid = std::process::id();
    // Named before they exist: TestUnit names them bounce-t-LABEL-PID.service.
    let plain_name = format!("bounce-t-watch-late-{pid}.service");
    let dir = Scratch::new("watch-units-late");
    let config = dir.write(
        "watch.yaml",
        &format!(
            "systemd:\n  - bus: \"{}\"\n    units: [\"{plain_name}\", \"bounce-t-watch-lateglob-*.service\"]\n",
            env.bus
        ),
    );
    let out = dir.path("watch");
    let _w = WatchProcess::start(&out, &["--config", config.to_str().unwrap()]);
    std::thread::sleep(Duration::from_secs(1));

    let c = TestContainer::start(
        "watch-late",
        &["--network", "none"],
        "trap 'exit 0' TERM; while true; do sleep 1 & wait; done",
    );
    let plain = TestUnit::start("watch-late", "[Service]\nExecStart=/bin/sleep 3600\n");
    assert_eq!(plain.name, plain_name);
    let kolla = TestUnit::start(
        "watch-lateglob",
        &format!(
            "[Service]\nExecStart=/usr/bin/docker start -a {n}\nExecStop=/usr/bin/docker stop {n} -t 10\n",
            n = c.name
        ),
    );
    std::thread::sleep(Duration::from_secs(1));
    let log = std::fs::read_to_string(out.join("watch.log")).unwrap_or_default();
    for n in [&plain.name, &kolla.name] {
        assert!(log.contains(&format!("following {n}")), "{n}: {log}");
    }

    systemctl(&["restart", &plain.name]).unwrap();
    systemctl(&["restart", &kolla.name]).unwrap();
    let p = wait_for(&out, &plain.name, 1);
    let k = wait_for(&out, &c.name, 1);
    assert_eq!((p.len(), k.len()), (1, 1), "{p:#?}\n{k:#?}");
    assert_eq!(
        (p[0].cause, p[0].outcome),
        (Some(Cause::Restart), Outcome::Ok),
        "{p:#?}"
    );
    agrees(&p[0], BoundaryName::Started, &plain, "ActiveEnterTimestamp");
    // The container it wraps is timed within the unit's restart, once.
    let r = &k[0];
    assert_eq!(
        (r.cause, r.outcome),
        (Some(Cause::Restart), Outcome::Ok),
        "{r:#?}"
    );
    assert!(
        matches!(&r.target, TargetRef::Systemd { name, container: Some(cn), .. } if *name == kolla.name && *cn == c.name),
        "{:?}",
        r.target
    );
    assert!(
        r.boundary(BoundaryName::ContainerStarted).is_some(),
        "{r:#?}"
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(watch_records_of(&out, &c.name).len(), 1);
    assert_eq!(watch_records_of(&out, &plain.name).len(), 1);
}
