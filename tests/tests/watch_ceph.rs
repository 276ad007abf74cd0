//! `bounce-agent watch` following the test cluster's OSDs (units of the
//! test systemd manager, as ceph-ansible runs them): a `systemctl restart`
//! of an OSD's unit, then a stop and a start, each appear once, as the
//! OSD's (not again as the unit's, though a `systemd:` entry names the unit
//! too), with their cause and Ceph's milestones in order, checked against
//! systemd's own realtime stamps and the OSD's own log. An OSD moved into
//! a container (`via: docker`, as kolla runs it): a `docker restart`, then
//! a restart of kolla's unit wrapping it, each once, as the OSD's. The
//! watcher stopped while an OSD restart awaits its milestones: recorded
//! then, once, `incomplete`, and not again by the next watcher. Under
//! the cluster lock; the cluster settles before and after.

use bounce_tests::*;
use bounce_wire::{BoundaryName, Cause, Origin, Outcome, Phase, Source, TargetRef, TimelineRecord};
use std::path::Path;
use std::time::{Duration, Instant};

const MS: i64 = 1_000_000;

/// Every record of the test cluster's OSD units in the watcher's day
/// folders, in order (the shared engine's containers restart meanwhile).
fn records(dir: &Path) -> Vec<TimelineRecord> {
    let mut out: Vec<TimelineRecord> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("timelines.jsonl").exists())
        .flat_map(|e| read_timelines(&e.path()))
        .filter(|r| {
            r.service == "ceph-osd"
                || r.service.starts_with("ceph-osd@")
                || r.service.starts_with("bounce-t-osd-")
        })
        .collect();
    out.sort_by_key(|r| r.timestamps.iter().map(|b| b.unix_nanos).min());
    out
}

/// Waits (bounded) for `n` records; past the configs' 120 s restart timeout,
/// so a restart slow under load is recorded (and judged) rather than missed.
fn wait_for(dir: &Path, n: usize) -> Vec<TimelineRecord> {
    let deadline = Instant::now() + Duration::from_secs(150);
    loop {
        let got = records(dir);
        if got.len() >= n || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What the watcher said about the OSDs.
fn said(dir: &Path) -> String {
    let log = std::fs::read_to_string(dir.join("watch.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("ceph-osd")).collect();
    lines.join("\n")
}

/// The boundary agrees with systemd's own realtime stamp of the unit (ours
/// is its monotonic one placed on the realtime axis: within 2 ms).
fn agrees(r: &TimelineRecord, b: BoundaryName, unit: &str, p: &str) {
    let got = at(r, b);
    let systemd = unit_usec_prop(unit, p) * 1000;
    assert!(
        (got - systemd).abs() < 2 * MS,
        "{b:?} {got} vs systemd's {p} {systemd}: {r:#?}"
    );
    assert!(
        matches!(r.boundary(b).unwrap().source, Source::Systemd { .. }),
        "{r:?}"
    );
}

/// One OSD restart as watch recorded it: the OSD's (through `unit` and/or
/// `container`), by cause, with the unit's or container's boundaries and
/// Ceph's milestones in order up to `pgs_active`.
fn is_osd_restart(
    r: &TimelineRecord,
    id: u32,
    (unit, container): (Option<&str>, Option<&str>),
    cause: Cause,
) {
    assert_eq!(
        (r.origin, r.cause, r.outcome),
        (Origin::Watch, Some(cause), Outcome::Ok),
        "{r:#?}"
    );
    assert_eq!(r.service, "ceph-osd");
    assert!(
        matches!(&r.target, TargetRef::CephOsd { id: i, unit: u, container: c, .. }
            if *i == id && u.as_deref() == unit && c.as_deref() == container),
        "{:?}",
        r.target
    );
    let order = [
        BoundaryName::Requested,
        BoundaryName::Exited,
        BoundaryName::Started,
        BoundaryName::OsdActive,
        BoundaryName::OsdUp,
        BoundaryName::PgsActive,
    ];
    let times: Vec<i64> = order.iter().map(|b| at(r, *b)).collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "milestones in order: {r:#?}"
    );
    assert_eq!(at(r, BoundaryName::Ready), at(r, BoundaryName::PgsActive));
    for p in [
        Phase::Stop,
        Phase::Start,
        Phase::OsdBoot,
        Phase::OsdUp,
        Phase::PgsActive,
        Phase::Total,
    ] {
        assert!(r.phases.contains_key(&p), "{p} missing: {r:#?}");
    }
    let up = r.boundary(BoundaryName::OsdUp).unwrap();
    assert!(
        serde_json::to_string(&up.source)
            .unwrap()
            .contains("osd dump via the ceph CLI"),
        "{up:?}"
    );
    osd_log_agrees(r);
}

#[test]
fn an_osd_unit_restart_and_a_stop_start_are_recorded_once_as_the_osds_with_cephs_milestones() {
    let _one = lock_cluster();
    let env = ceph_up();
    env.wait_settled(&[]);
    let bus = &systemd_up().bus;
    let id = *env.osds.last().unwrap();
    let unit = format!("ceph-osd@{id}.service");
    let dir = Scratch::new("watch-ceph");
    let config = dir.write(
        "watch.yaml",
        &format!(
            "deployment: lab\nsystemd:\n  - bus: \"{bus}\"\n    units: [\"ceph-osd@*.service\"]\nosds:\n  - ceph_osd:\n      ids: all\n      bus: \"{bus}\"\n      ceph: [ceph, --conf, \"{}\"]\n      admin_socket: \"{}/ceph-osd.{{id}}.asok\"\n    wait_for: pgs_active\n    timeout: 120s\n",
            env.conf.display(),
            env.run_dir.display()
        ),
    );
    let out = dir.path("watch");
    let _w = WatchProcess::start(&out, &["--config", config.to_str().unwrap()]);
    // The cursor says the engine is followed; give the manager's match a moment too.
    std::thread::sleep(Duration::from_secs(1));

    systemctl(&["restart", &unit]).unwrap();
    let got = wait_for(&out, 1);
    assert_eq!(got.len(), 1, "{got:#?}\n{}", said(&out));
    let r = &got[0];
    // systemd's stamps, read before anything else restarts the unit.
    agrees(r, BoundaryName::Requested, &unit, "ActiveExitTimestamp");
    agrees(r, BoundaryName::Exited, &unit, "InactiveEnterTimestamp");
    agrees(r, BoundaryName::Started, &unit, "ActiveEnterTimestamp");
    is_osd_restart(r, id, (Some(&unit), None), Cause::Restart);
    env.wait_settled(&[]);

    // A stop, later a start: the OSD down a second meanwhile.
    systemctl(&["stop", &unit]).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    systemctl(&["start", &unit]).unwrap();
    let got = wait_for(&out, 2);
    assert_eq!(got.len(), 2, "{got:#?}\n{}", said(&out));
    let ss = &got[1];
    agrees(ss, BoundaryName::Started, &unit, "ActiveEnterTimestamp");
    is_osd_restart(ss, id, (Some(&unit), None), Cause::StopStart);
    assert!(
        ss.phases.get(&Phase::Start).is_some_and(|s| *s >= 1.0),
        "stopped 1 s: {ss:#?}"
    );
    env.wait_settled(&[]);

    // Nothing more came: each restart once, as the OSD's, none as the unit's.
    std::thread::sleep(Duration::from_millis(1500));
    let all = records(&out);
    assert_eq!(all.len(), 2, "{all:#?}");
    assert!(all.iter().all(|r| r.service == "ceph-osd"), "{all:#?}");
}

/// The cluster's last OSD moved into a container (as kolla runs it) and
/// watched `via: docker`: a `docker restart` of its container, then a
/// `systemctl restart` of kolla's unit wrapping that container, each
/// recorded once, as the OSD's (neither as the container's nor as the
/// unit's), with Ceph's milestones; the engine's and systemd's own stamps
/// agree.
#[test]
fn an_osd_in_a_container_is_recorded_once_as_the_osds_through_the_engine_or_its_kolla_unit() {
    let _one = lock_cluster();
    let env = ceph_up();
    env.wait_settled(&[]);
    let bus = &systemd_up().bus;
    let id = *env.osds.last().unwrap();
    let osd = OsdInContainer::start(id);
    env.wait_settled(&[]);
    let dir = Scratch::new("watch-ceph-docker");
    let osds = format!(
        "osds:\n  - ceph_osd:\n      ids: all\n      via: docker\n      container: \"bounce-t-osd-{{id}}\"\n      ceph: [ceph, --conf, \"{}\"]\n      admin_socket: \"{}/ceph-osd.{{id}}.asok\"\n    wait_for: pgs_active\n    timeout: 120s\n",
        env.conf.display(),
        env.run_dir.display()
    );
    let config = dir.write("watch.yaml", &format!("deployment: lab\n{osds}"));
    let out = dir.path("watch");
    let w = WatchProcess::start(&out, &["--config", config.to_str().unwrap()]);

    let started_at = || docker(&["inspect", "-f", "{{.State.StartedAt}}", &osd.name]).unwrap();
    let before = started_at();
    docker(&["restart", "-t", "30", &osd.name]).unwrap();
    let got = wait_for(&out, 1);
    assert_eq!(got.len(), 1, "{got:#?}\n{}", said(&out));
    let r = &got[0];
    let after = started_at();
    assert_ne!(before, after, "the container was restarted");
    // The engine's own stamps: its state, its `kill` (or the exit, which
    // the `kill` stamp followed: scenarios/README.md, watch).
    assert_eq!(at(r, BoundaryName::Started), rfc3339_nanos(after.trim()));
    for b in [BoundaryName::Exited, BoundaryName::Started] {
        let source = &r.boundary(b).unwrap().source;
        assert!(
            matches!(source, Source::DockerState { .. }),
            "{b:?}: {r:#?}"
        );
    }
    let requested = r.boundary(BoundaryName::Requested).unwrap();
    assert!(
        requested.source
            == (Source::DockerEvent {
                action: "kill".into()
            })
            || Some(requested) == r.boundary(BoundaryName::Exited),
        "{r:#?}"
    );
    is_osd_restart(r, id, (None, Some(&osd.name)), Cause::Restart);
    env.wait_settled(&[]);
    assert_eq!(records(&out).len(), 1, "once: {:#?}", records(&out));
    drop(w);

    // kolla's unit: the container attached, stopped through the engine.
    let kolla = TestUnit::start(
        "watch-osd-kolla",
        &format!(
            "[Service]\nExecStart=/usr/bin/docker start -a {n}\nExecStop=/usr/bin/docker stop -t 30 {n}\n",
            n = osd.name
        ),
    );
    let config = dir.write(
        "watch-kolla.yaml",
        &format!(
            "deployment: lab\nsystemd:\n  - bus: \"{bus}\"\n    units: [\"{}\"]\n{osds}",
            kolla.name
        ),
    );
    let out = dir.path("watch-kolla");
    let _w = WatchProcess::start(&out, &["--config", config.to_str().unwrap()]);
    // The cursor says the engine is followed; give the manager's match a moment too.
    std::thread::sleep(Duration::from_secs(1));
    systemctl(&["restart", &kolla.name]).unwrap();
    let got = wait_for(&out, 1);
    assert_eq!(got.len(), 1, "{got:#?}\n{}", said(&out));
    let r = &got[0];
    agrees(
        r,
        BoundaryName::Requested,
        &kolla.name,
        "ActiveExitTimestamp",
    );
    agrees(
        r,
        BoundaryName::Started,
        &kolla.name,
        "ActiveEnterTimestamp",
    );
    is_osd_restart(r, id, (Some(&kolla.name), Some(&osd.name)), Cause::Restart);
    env.wait_settled(&[]);
    // Nothing more came: once, as the OSD's, not as the unit's (whose
    // service is the container's name).
    std::thread::sleep(Duration::from_millis(1500));
    let all = records(&out);
    assert_eq!(all.len(), 1, "{all:#?}");
    drop(kolla);
    drop(osd);
}

/// A cluster flag set for the test, unset when dropped (a failed assertion too).
struct ClusterFlag<'a> {
    env: &'a CephEnv,
    flag: &'static str,
}

impl<'a> ClusterFlag<'a> {
    fn set(env: &'a CephEnv, flag: &'static str) -> ClusterFlag<'a> {
        ceph(env, &["osd", "set", flag]);
        ClusterFlag { env, flag }
    }
}

impl Drop for ClusterFlag<'_> {
    fn drop(&mut self) {
        ceph(self.env, &["osd", "unset", self.flag]);
    }
}

fn ceph(env: &CephEnv, args: &[&str]) {
    let out = std::process::Command::new("ceph")
        .arg("--conf")
        .arg(&env.conf)
        .args(args)
        .output()
        .expect("the ceph CLI");
    assert!(
        out.status.success(),
        "ceph {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_osd_restart_awaiting_its_milestones_when_the_watcher_stops_is_recorded_once_as_incomplete() {
    let _one = lock_cluster();
    let env = ceph_up();
    env.wait_settled(&[]);
    let bus = &systemd_up().bus;
    let id = env.osds[0];
    let unit = format!("ceph-osd@{id}.service");
    let dir = Scratch::new("watch-ceph-stop");
    let config = dir.write(
        "watch.yaml",
        &format!(
            "osds:\n  - ceph_osd:\n      ids: [{id}]\n      bus: \"{bus}\"\n      ceph: [ceph, --conf, \"{}\"]\n      admin_socket: \"{}/ceph-osd.{{id}}.asok\"\n    wait_for: pgs_active\n    timeout: 120s\n",
            env.conf.display(),
            env.run_dir.display()
        ),
    );
    let out = dir.path("watch");
    let args = ["--config", config.to_str().unwrap()];
    let mut w = WatchProcess::start(&out, &args);
    std::thread::sleep(Duration::from_secs(1));

    // With `noup` the OSD boots but the mon does not mark it up: its
    // milestones wait until the watcher is stopped.
    let noup = ClusterFlag::set(env, "noup");
    let before = unit_usec_prop(&unit, "ActiveEnterTimestamp");
    systemctl(&["restart", &unit]).unwrap();
    let active = Instant::now() + Duration::from_secs(30);
    while unit_usec_prop(&unit, "ActiveEnterTimestamp") <= before {
        assert!(Instant::now() < active, "{unit} not active again");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The watcher hands the unit's restart on to the OSD's milestones.
    std::thread::sleep(Duration::from_secs(2));
    assert!(records(&out).is_empty(), "{:#?}", records(&out));
    w.terminate();

    let got = records(&out);
    assert_eq!(got.len(), 1, "{got:#?}\n{}", said(&out));
    let r = &got[0];
    assert_eq!(
        (r.origin, r.cause, r.outcome),
        (Origin::Watch, Some(Cause::Restart), Outcome::Incomplete),
        "{r:#?}"
    );
    assert!(
        matches!(&r.target, TargetRef::CephOsd { id: i, unit: Some(u), .. } if *i == id && *u == unit),
        "{:?}",
        r.target
    );
    agrees(r, BoundaryName::Requested, &unit, "ActiveExitTimestamp");
    agrees(r, BoundaryName::Exited, &unit, "InactiveEnterTimestamp");
    agrees(r, BoundaryName::Started, &unit, "ActiveEnterTimestamp");
    // Nothing it did not see: no milestone, no readiness.
    for b in [
        BoundaryName::OsdUp,
        BoundaryName::PgsActive,
        BoundaryName::Ready,
    ] {
        assert!(r.boundary(b).is_none(), "{b:?} was not observed: {r:#?}");
    }
    assert!(r.phases.contains_key(&Phase::Stop), "{r:#?}");
    assert!(!r.phases.contains_key(&Phase::Total), "{r:#?}");
    let why = r.error.as_deref().unwrap_or_default();
    assert!(
        why.contains("the watcher stopped") && why.contains("osd_"),
        "{why}"
    );

    // Started again, the watcher does not record it again, even as the
    // OSD comes up now.
    let _w = WatchProcess::start(&out, &args);
    drop(noup);
    env.wait_settled(&[]);
    std::thread::sleep(Duration::from_millis(1500));
    let all = records(&out);
    assert_eq!(all.len(), 1, "once: {all:#?}");
}
