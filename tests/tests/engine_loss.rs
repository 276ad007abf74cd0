//! The engine going away mid-run (issue 11, part 3), on real parts that no
//! other test shares: a simulated node's own dockerd stopped and started
//! again, a private systemd user manager's bus taken down and brought back,
//! and the test cluster's mon paused (under the cluster lock, always resumed).
//! The restart in flight ends `failed` (or `timeout`) saying why, with what it
//! had observed; the run goes on (`on_failure: continue`); the next restart
//! waits for the engine and succeeds; nothing panics.

use bounce_tests::*;
use bounce_wire::{BoundaryName, Outcome, Phase, RunSummary, TimelineRecord};
use std::path::{Path, PathBuf};
use std::process::{Child, Output};
use std::time::{Duration, Instant};

/// The simulated node whose engine this test stops and starts.
const NODE: &str = "engine-loss";

/// What a container or unit runs: its stop takes 2 s and leaves a line in
/// `MARK` when it begins, so the test knows a restart is in flight.
fn slow_stop(mark: &str) -> String {
    format!("trap 'echo term >> {mark}; sleep 2; exit 0' TERM; while :; do sleep 0.1; done")
}

/// Waits (bounded) until `path` has `n` lines.
fn wait_lines(path: &Path, n: usize, secs: u64) {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        let lines = std::fs::read_to_string(path)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if lines >= n {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{} did not get {n} lines in {secs} s", path.display());
}

/// The agent's output, bounded: it must end on its own.
fn finish(child: Child, secs: u64) -> Output {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(out) => out.expect("waiting for bounce-agent"),
        Err(_) => {
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("bounce-agent did not end within {secs} s");
        }
    }
}

/// The run folder's timelines and summary.
fn results(out_dir: &Path) -> (Vec<TimelineRecord>, RunSummary) {
    let summary = std::fs::read_to_string(out_dir.join("summary.json")).expect("summary.json");
    (
        read_timelines(out_dir),
        serde_json::from_str(&summary).expect("a summary"),
    )
}

/// The first restart failed in flight because its engine went away, kept
/// what it had seen, and the run went on to a second restart that waited
/// for the engine and ended `ok`; the table counts the failure only where
/// this kind of target has phases.
fn assert_lost_then_recovered(out: &Output, out_dir: &Path, went_away: &str, waited: &str) {
    assert_eq!(out.status.code(), Some(1), "{}", text(out));
    assert!(!text(out).contains("panicked"), "{}", text(out));
    let (tls, summary) = results(out_dir);
    assert_eq!(tls.len(), 2, "on_failure: continue runs both: {tls:#?}");
    let (lost, next) = (&tls[0], &tls[1]);
    assert_eq!(lost.outcome, Outcome::Failed, "{lost:#?}");
    let why = lost.error.as_deref().unwrap_or_default();
    assert!(
        why.contains(went_away) && why.contains("boundaries seen before are kept"),
        "{why}"
    );
    assert!(
        lost.boundary(BoundaryName::Requested).is_some(),
        "{lost:#?}"
    );
    assert_eq!(next.outcome, Outcome::Ok, "{next:#?}");
    assert!(
        next.notes.iter().any(|n| n.contains(waited)),
        "the next restart waited for the engine: {next:#?}"
    );
    for phase in [Phase::Stop, Phase::Start, Phase::Ready, Phase::Total] {
        assert!(next.phases.contains_key(&phase), "{phase} in {next:#?}");
    }
    let own = lost.target.phases();
    for row in &summary.rows {
        assert!(
            own.contains(&row.phase) || row.failures == 0,
            "a failure counted outside this target's phases: {row:?}"
        );
    }
    let total = summary.rows.iter().find(|r| r.phase == Phase::Total);
    assert_eq!(total.map(|r| (r.count, r.failures)), Some((1, 1)));
}

/// A container on the node's engine, and the engine itself: removed and
/// stopped when dropped.
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
fn dockerd_restarted_mid_run_fails_the_restart_in_flight_and_the_next_waits_for_it() {
    docker_up();
    let host = docker_node_up(NODE);
    let dir = Scratch::new("engine-loss-docker");
    let mark = dir.path("mark");
    std::fs::create_dir_all(&mark).unwrap();
    let c = NodeContainer {
        host: host.clone(),
        name: format!("bounce-t-engine-loss-{}", std::process::id()),
    };
    let _ = docker_on(&host, &["rm", "-f", &c.name]);
    let volume = format!("{}:/mark", mark.display());
    let script = slow_stop("/mark/term");
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
            "-v",
            &volume,
            IMAGE,
            "sh",
            "-c",
            &script,
        ],
    )
    .expect("a container on the node's engine");
    let scenario = dir.write(
        "docker.yaml",
        &format!(
            "deployment: lab\nscenario: engine-loss\nrepeat: 2\non_failure: continue\ntargets:\n  - docker: {{names: [{}]}}\n    timeout: 40s\n",
            c.name
        ),
    );
    let out_dir = dir.path("out");
    let child = agent_command(&run_args(&scenario, &out_dir, &[]))
        .env("DOCKER_HOST", &host)
        .spawn()
        .expect("starting bounce-agent");

    // The first restart is stopping the container: the engine dies (a
    // crash; a `systemctl restart docker` would finish the restart in
    // flight before it goes) and comes back a second later, starting the
    // container again by its restart policy (live-restore off).
    wait_lines(&mark.join("term"), 1, 30);
    docker_node_stop(NODE, "kill");
    std::thread::sleep(Duration::from_secs(1));
    docker_node_up(NODE);
    let out = finish(child, 90);

    assert_lost_then_recovered(
        &out,
        &out_dir,
        "the Docker engine went away during the restart",
        "waited",
    );
    let (tls, _) = results(&out_dir);
    assert_eq!(tls[0].signals, ["SIGTERM"], "kept: {:#?}", tls[0]);
}

/// A private user manager, its units and files under `BASE`: the shared
/// manager of the other tests keeps its bus.
const PRIVATE_MANAGER: &str = "/tmp/bounce-systemd-engine-loss";

#[test]
fn the_managers_bus_dropped_mid_run_fails_the_restart_in_flight_and_the_next_reconnects() {
    let shared = systemd_up();
    let env = systemd_private(Path::new(PRIVATE_MANAGER));
    // Two managers, each on its own bus, both answering.
    assert_ne!(env.bus, shared.bus);
    for m in [shared, &env] {
        m.systemctl(&["show", "-p", "Version", "--value"])
            .expect("both managers answer");
    }
    let dir = Scratch::new("engine-loss-systemd");
    let mark = dir.path("term");
    let unit = PrivateUnit {
        name: format!("bounce-t-engine-loss-{}.service", std::process::id()),
        env,
    };
    std::fs::write(
        unit.env.unit_dir.join(&unit.name),
        format!(
            "[Service]\nExecStart=/bin/sh -c \"{}\"\nKillMode=mixed\n",
            slow_stop(&mark.display().to_string())
        ),
    )
    .unwrap();
    unit.env.systemctl(&["daemon-reload"]).unwrap();
    unit.env.systemctl(&["start", &unit.name]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let scenario = dir.write(
        "systemd.yaml",
        &format!(
            "deployment: lab\nscenario: bus-loss\nrepeat: 2\non_failure: continue\ntargets:\n  - systemd:\n      units: [\"{}\"]\n      bus: \"{}\"\n    timeout: 30s\n",
            unit.name, unit.env.bus
        ),
    );
    let out_dir = dir.path("out");
    let child = spawn_agent(&run_args(&scenario, &out_dir, &[]));

    // The restart job is stopping the unit: the bus goes (dbus-daemon and
    // its socket), and comes back; systemd finishes the job meanwhile.
    wait_lines(&mark, 1, 30);
    unit.env
        .systemctl(&["stop", "dbus.socket", "dbus.service"])
        .expect("taking the private bus down");
    std::thread::sleep(Duration::from_millis(1500));
    unit.env
        .systemctl(&["start", "dbus.socket"])
        .expect("bringing the private bus back");
    let out = finish(child, 90);

    assert_lost_then_recovered(
        &out,
        &out_dir,
        "the systemd manager's bus went away during the restart",
        "connected again",
    );
    // The shared manager never noticed.
    systemctl(&["show", "-p", "Version", "--value"]).expect("the shared manager answers");
}

/// A process stopped with SIGSTOP, continued when dropped (even on a panic).
struct Paused(i32);

impl Paused {
    fn new(pid: i32) -> Paused {
        assert_eq!(
            unsafe { libc::kill(pid, libc::SIGSTOP) },
            0,
            "SIGSTOP {pid}"
        );
        Paused(pid)
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}

#[test]
fn a_mon_paused_mid_restart_ends_it_by_its_timeout_saying_why_and_noout_is_unset_after() {
    let _one = lock_cluster();
    let env = ceph_up();
    env.wait_settled(&[]);
    let mon: i32 = systemctl(&["show", "-p", "MainPID", "--value", "ceph-mon@a.service"])
        .unwrap()
        .parse()
        .expect("the mon's pid");
    let osd = "ceph-osd@0.service";
    let active_since = || {
        systemctl(&[
            "show",
            "-p",
            "ActiveEnterTimestampMonotonic",
            "--value",
            osd,
        ])
        .unwrap()
    };
    let before = active_since();
    let dir = Scratch::new("engine-loss-ceph");
    let scenario = dir.write(
        "osd.yaml",
        &format!(
            "deployment: lab\nscenario: mon-loss\nconcurrency: 1\ntargets:\n  - ceph_osd:\n      ids: [0]\n      bus: \"{}\"\n      ceph: [ceph, --conf, \"{}\"]\n      admin_socket: \"{}/ceph-osd.{{id}}.asok\"\n    gates: {{wait_for: pgs_active}}\n    timeout: 15s\n",
            systemd_up().bus,
            env.conf.display(),
            env.run_dir.display()
        ),
    );
    let out_dir = dir.path("out");
    let state: PathBuf = dir.path("state");
    let child = spawn_agent(&run_args(
        &scenario,
        &out_dir,
        &["--state-dir", state.to_str().unwrap()],
    ));
    // The OSD runs again: the mon stops answering for 25 s, longer than
    // what is left of the restart's timeout, shorter than the CLI's 30 s.
    let end = Instant::now() + Duration::from_secs(60);
    while active_since() == before {
        assert!(Instant::now() < end, "osd.0 was not restarted within 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = {
        let _paused = Paused::new(mon);
        std::thread::sleep(Duration::from_secs(25));
        drop(_paused);
        finish(child, 90)
    };
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(!text(&out).contains("panicked"), "{}", text(&out));
    let (tls, _) = results(&out_dir);
    let t = &tls[0];
    assert_eq!(t.outcome, Outcome::Timeout, "{t:#?}");
    let why = t.error.as_deref().unwrap_or_default();
    assert!(
        why.contains("timeout (15s) while waiting for") && why.contains("last answer:"),
        "{why}"
    );
    for b in [
        BoundaryName::Requested,
        BoundaryName::Exited,
        BoundaryName::Started,
    ] {
        assert!(t.boundary(b).is_some(), "{b:?} kept: {t:#?}");
    }
    // The mon answered again before the run's end gave up on it: noout is gone.
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unset noout"),
        "{}",
        text(&out)
    );
    let flags = env.cli();
    let flags = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(flags.flags())
        .unwrap();
    assert!(!flags.contains(&"noout".to_string()), "{flags:?}");
    env.wait_settled(&[]);
}
