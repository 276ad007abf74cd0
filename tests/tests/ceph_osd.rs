//! OSD restarts through the real agent on a real Ceph cluster whose OSDs are
//! units of the test systemd manager: Ceph's milestones, the gates, and
//! `noout` unset on every exit path (success, gate failure, Ctrl-C, and a
//! kill -9 followed by the next start).

use bounce_agent::ceph::mon::MonClient;
use bounce_tests::*;
use bounce_wire::{BoundaryName, Outcome, Phase, TimelineRecord};
use std::path::Path;
use std::time::Duration;

fn cli() -> MonClient {
    ceph_up().cli()
}

fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn flags() -> Vec<String> {
    block(cli().flags()).unwrap()
}

/// Settled: HEALTH_OK, all OSDs up, every PG active+clean.
fn wait_healthy() {
    ceph_up().wait_settled(&[]);
}

fn scenario(ids: &str, extra_gates: &str, repeat: u32) -> String {
    let env = ceph_up();
    format!(
        "deployment: lab\nscenario: osd\nrepeat: {repeat}\nconcurrency: 1\ntargets:\n  - ceph_osd:\n      ids: {ids}\n      bus: \"{}\"\n      ceph: [ceph, --conf, \"{}\"]\n      admin_socket: \"{}/ceph-osd.{{id}}.asok\"\n    gates: {{wait_for: pgs_active{extra_gates}}}\n    timeout: 120s\n",
        systemd_up().bus,
        env.conf.display(),
        env.run_dir.display()
    )
}

/// Requested, exited, started, osd_boot, osd_up, pgs_active: all there, in
/// that order; their times.
fn milestones_in_order(t: &TimelineRecord) -> Vec<i64> {
    let order = [
        BoundaryName::Requested,
        BoundaryName::Exited,
        BoundaryName::Started,
        BoundaryName::OsdActive,
        BoundaryName::OsdUp,
        BoundaryName::PgsActive,
    ];
    let times: Vec<i64> = order.iter().map(|b| at(t, *b)).collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "milestones in order: {t:?}"
    );
    times
}

fn run(dir: &Scratch, yaml: &str, state: &Path) -> (std::process::Output, Vec<TimelineRecord>) {
    let file = dir.write("osd.yaml", yaml);
    let out_dir = dir.path("out");
    let _ = std::fs::remove_dir_all(&out_dir);
    let out = agent(&run_args(
        &file,
        &out_dir,
        &["--state-dir", state.to_str().unwrap()],
    ));
    let tls = if out_dir.join("timelines.jsonl").exists() {
        read_timelines(&out_dir)
    } else {
        Vec::new()
    };
    (out, tls)
}

#[test]
fn a_rolling_restart_times_ceph_milestones_one_osd_at_a_time_and_unsets_noout() {
    let _one = lock_cluster();
    wait_healthy();
    let dir = Scratch::new("osd-rolling");
    let (out, tls) = run(&dir, &scenario("all", "", 1), &dir.path("state"));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(tls.len(), ceph_up().osds.len());
    let up = tls[0]
        .timestamps
        .iter()
        .find(|b| b.name == BoundaryName::OsdUp);
    assert!(
        serde_json::to_string(&up.unwrap().source)
            .unwrap()
            .contains("osd dump via the ceph CLI, every 250 ms"),
        "{up:?}"
    );
    for t in &tls {
        assert_eq!(t.outcome, Outcome::Ok, "{t:?}");
        assert_eq!(t.service, "ceph-osd");
        milestones_in_order(t);
        assert_eq!(
            at(t, BoundaryName::Ready),
            at(t, BoundaryName::PgsActive),
            "ready = wait_for"
        );
        for p in [Phase::OsdBoot, Phase::OsdUp, Phase::PgsActive] {
            assert!(t.phases.contains_key(&p), "{p}");
        }
    }
    // The OSD's own log agrees with each restart's record.
    for t in &tls {
        osd_log_agrees(t);
    }
    // Never two OSDs down at once: each one's down span ends before the next begins.
    for w in tls.windows(2) {
        assert!(at(&w[0], BoundaryName::Ready) <= at(&w[1], BoundaryName::Requested));
    }
    assert!(
        !flags().contains(&"noout".to_string()),
        "noout unset after success"
    );
    assert!(
        text(&out).contains("unset noout (set by this run)"),
        "{}",
        text(&out)
    );
    assert!(!dir.path("state/ceph-flags.json").exists());
    // The summary names Ceph's version (from an OSD's admin socket) and
    // says where an OSD restart's time went.
    let summary: bounce_wire::RunSummary =
        serde_json::from_str(&std::fs::read_to_string(dir.path("out/summary.json")).unwrap())
            .unwrap();
    let version = summary
        .identity
        .node
        .ceph_version
        .clone()
        .unwrap_or_default();
    assert!(version.starts_with("16.2."), "{version:?}");
    let words = summary.where_time_went["ceph-osd"].join("\n");
    assert!(words.contains("up in the osdmap at"), "{words}");
    assert!(words.contains("its PGs active at"), "{words}");
}

#[test]
fn a_gate_that_does_not_hold_stops_the_restart_and_noout_is_unset() {
    let _one = lock_cluster();
    wait_healthy();
    let dir = Scratch::new("osd-gate");
    let last = *ceph_up().osds.last().unwrap();
    // An OSD down: HEALTH_WARN (OSD_DOWN); restarting another one must be refused.
    systemctl(&["stop", &format!("ceph-osd@{last}.service")]).unwrap();
    for _ in 0..100 {
        if block(cli().health())
            .map(|h| h.checks.iter().any(|c| c.0 == "OSD_DOWN"))
            .unwrap_or(false)
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let before = systemctl(&[
        "show",
        "-p",
        "ActiveEnterTimestampMonotonic",
        "--value",
        "ceph-osd@0.service",
    ])
    .unwrap();
    let (out, tls) = run(
        &dir,
        &scenario("[0]", ", timeout: 3s", 1),
        &dir.path("state"),
    );
    systemctl(&["start", &format!("ceph-osd@{last}.service")]).unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(tls[0].outcome, Outcome::Failed);
    assert!(
        tls[0]
            .error
            .as_deref()
            .unwrap()
            .contains("gates did not hold"),
        "{:?}",
        tls[0].error
    );
    assert!(
        tls[0].error.as_deref().unwrap().contains("OSD_DOWN"),
        "{:?}",
        tls[0].error
    );
    let after = systemctl(&[
        "show",
        "-p",
        "ActiveEnterTimestampMonotonic",
        "--value",
        "ceph-osd@0.service",
    ])
    .unwrap();
    assert_eq!(before, after, "osd.0 was not restarted");
    assert!(
        !flags().contains(&"noout".to_string()),
        "noout unset after a gate failure"
    );
    wait_healthy();
}

#[test]
fn noout_is_unset_after_ctrl_c_and_after_a_kill_9_on_the_next_start() {
    let _one = lock_cluster();
    wait_healthy();
    let dir = Scratch::new("osd-kill");
    let state = dir.path("state");
    let file = dir.write("osd.yaml", &scenario("all", "", 5));
    let start = |out: &str| {
        spawn_agent(&run_args(
            &file,
            &dir.path(out),
            &["--state-dir", state.to_str().unwrap()],
        ))
    };
    let wait_noout = || {
        for _ in 0..200 {
            if flags().contains(&"noout".to_string()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("noout was never set");
    };

    // Ctrl-C: the restart in flight finishes, then noout goes.
    let child = start("o1");
    wait_noout();
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        !flags().contains(&"noout".to_string()),
        "noout unset after Ctrl-C: {}",
        text(&out)
    );
    wait_healthy();

    // kill -9: nothing can clean up; the state file remembers, the next start cleans up.
    let mut child = start("o2");
    wait_noout();
    let killed = child.id();
    child.kill().unwrap();
    let _ = child.wait();
    assert!(
        flags().contains(&"noout".to_string()),
        "noout left by the killed run"
    );
    assert!(state.join("ceph-flags.json").exists());
    // `recover --dry-run` and `plan` say the flag left set, and touch nothing.
    let state_arg = state.to_str().unwrap();
    let left = format!("bounce set noout (pid {killed}) and ended before unsetting it");
    let dry = agent(&["recover", "--dry-run", "--state-dir", state_arg]);
    assert_eq!(dry.status.code(), Some(1), "{}", text(&dry));
    assert!(text(&dry).contains(&left), "{}", text(&dry));
    assert!(text(&dry).contains("osd unset noout`"), "{}", text(&dry));
    let plan_file = dir.write("plan.yaml", &scenario("[0]", "", 1));
    let plan = agent(&[
        "plan",
        plan_file.to_str().unwrap(),
        "--state-dir",
        state_arg,
    ]);
    assert!(text(&plan).contains(&left), "{}", text(&plan));
    assert!(flags().contains(&"noout".to_string()), "only said");
    assert!(state.join("ceph-flags.json").exists());
    // Let the OSD the killed agent was restarting come back before the next run's gates.
    wait_healthy_allowing_noout();
    let (out, tls) = run(&dir, &scenario("[0]", "", 1), &state);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("ended without unsetting noout; unset it now"),
        "{}",
        text(&out)
    );
    assert_eq!(tls.len(), 1);
    assert!(!flags().contains(&"noout".to_string()));
    assert!(!state.join("ceph-flags.json").exists());
}

/// Log stamps are milliseconds, truncated, and (on a cluster made before
/// the harness turned coarse stamps off) up to a jiffy late.
const LOG_SLACK: i64 = 20_000_000;

/// When osd.`id`'s log (from [`osd_log`]) first says `what` between `from`
/// and `to` (unix nanos); a panic showing the lines near `from` otherwise.
fn logged_within(log: &[(i64, String)], id: u32, what: &str, from: i64, to: i64) -> i64 {
    log.iter()
        .find(|(at, line)| *at >= from && *at <= to && line.contains(what))
        .map(|(at, _)| *at)
        .unwrap_or_else(|| {
            let near: Vec<&(i64, String)> = log
                .iter()
                .filter(|(at, _)| (*at - from).abs() < 1_000_000_000)
                .take(5)
                .collect();
            panic!("osd.{id}'s log has no {what:?} between {from} and {to}; near: {near:?}")
        })
}

/// An OSD's log file as (unix nanos, line), oldest first.
fn osd_log(id: u32) -> Vec<(i64, String)> {
    ceph_up().osd_log(id)
}

/// Whether any OSD carries its own noout flag.
fn osds_with_noout() -> Vec<u32> {
    let (_, osds) = block(cli().osd_dump()).unwrap();
    osds.iter()
        .filter(|o| o.state.iter().any(|s| s == "noout"))
        .map(|o| o.id)
        .collect()
}

#[test]
fn per_osd_noout_is_set_on_the_restarting_osd_only_and_removed_on_every_path() {
    let _one = lock_cluster();
    wait_healthy();
    let dir = Scratch::new("osd-per-osd");
    let state = dir.path("state");
    let file = dir.write("osd.yaml", &scenario("all", ", noout: per_osd", 1));
    // Watch the osdmap while the run goes: which OSDs had noout, and whether
    // the cluster-wide flag ever appeared.
    let watching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let watcher = {
        let watching = watching.clone();
        std::thread::spawn(move || {
            let mut seen = std::collections::BTreeSet::new();
            let mut cluster_flag = false;
            while watching.load(std::sync::atomic::Ordering::SeqCst) {
                seen.extend(osds_with_noout());
                cluster_flag |= flags().contains(&"noout".to_string());
                std::thread::sleep(Duration::from_millis(100));
            }
            (seen, cluster_flag)
        })
    };
    let out = agent(&run_args(
        &file,
        &dir.path("o1"),
        &["--state-dir", state.to_str().unwrap()],
    ));
    watching.store(false, std::sync::atomic::Ordering::SeqCst);
    let (seen, cluster_flag) = watcher.join().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let tls = read_timelines(&dir.path("o1"));
    assert_eq!(tls.len(), ceph_up().osds.len());
    assert!(tls.iter().all(|t| t.outcome == Outcome::Ok), "{tls:?}");
    assert!(!cluster_flag, "per_osd never sets the cluster-wide flag");
    assert!(!seen.is_empty(), "noout was seen on the restarting OSDs");
    assert!(
        osds_with_noout().is_empty(),
        "no OSD keeps noout after the run"
    );
    assert!(!state.join("ceph-flags.json").exists());
    let plan = agent(&[
        "plan",
        file.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    assert!(
        text(&plan).contains("set on each OSD while it restarts"),
        "{}",
        text(&plan)
    );

    // kill -9 while an OSD holds its noout: the next start removes it.
    let mut child = spawn_agent(&run_args(
        &file,
        &dir.path("o2"),
        &["--state-dir", state.to_str().unwrap()],
    ));
    let mut flagged = Vec::new();
    for _ in 0..300 {
        flagged = osds_with_noout();
        if !flagged.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(flagged.len(), 1, "one OSD at a time holds noout");
    child.kill().unwrap();
    let _ = child.wait();
    assert_eq!(osds_with_noout(), flagged, "left by the killed run");
    wait_healthy_allowing_noout();
    let (out, _) = run(&dir, &scenario("[0]", ", noout: per_osd", 1), &state);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!(
            "ended without unsetting noout on osd.{}; unset it now",
            flagged[0]
        )),
        "{}",
        text(&out)
    );
    assert!(osds_with_noout().is_empty());
    assert!(!state.join("ceph-flags.json").exists());
}

/// Settled but for the warnings of noout flags (cluster-wide or per OSD).
fn wait_healthy_allowing_noout() {
    ceph_up().wait_settled(&["OSDMAP_FLAGS", "OSD_FLAGS"]);
}

/// The scenario with `ceph:` as a librados session instead of the CLI.
fn through_librados(yaml: &str) -> String {
    let cli = format!(
        "      ceph: [ceph, --conf, \"{}\"]\n",
        ceph_up().conf.display()
    );
    assert!(yaml.contains(&cli), "{yaml}");
    yaml.replace(
        &cli,
        &format!(
            "      ceph: {{librados: {{conf: \"{}\"}}}}\n",
            ceph_up().conf.display()
        ),
    )
}

/// Runs the agent with no `ceph` on its PATH: a call to the CLI would fail.
fn run_without_cli(dir: &Scratch, yaml: &str, state: &Path, out: &str) -> std::process::Child {
    let file = dir.write(&format!("{out}.yaml"), yaml);
    let out = dir.path(out);
    agent_command(&run_args(
        &file,
        &out,
        &["--state-dir", state.to_str().unwrap()],
    ))
    .env("PATH", "/nonexistent")
    .spawn()
    .unwrap()
}

#[test]
fn a_librados_session_follows_the_same_milestones_and_cleans_up_after_a_kill_9() {
    let _one = lock_cluster();
    wait_healthy();
    let dir = Scratch::new("osd-librados");
    let state = dir.path("state");
    let yaml = through_librados(&scenario("[1]", ", noout: per_osd", 1));
    let plan = agent(&["plan", dir.write("plan.yaml", &yaml).to_str().unwrap()]);
    assert!(plan.status.success(), "{}", text(&plan));
    assert!(
        text(&plan).contains("a librados session as client.admin"),
        "{}",
        text(&plan)
    );

    let out = run_without_cli(&dir, &yaml, &state, "o1")
        .wait_with_output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let tls = read_timelines(&dir.path("o1"));
    assert_eq!(tls.len(), 1);
    assert_eq!(tls[0].outcome, Outcome::Ok, "{:?}", tls[0]);
    milestones_in_order(&tls[0]);
    // The timeline says how each Ceph milestone was asked.
    let source = |name: BoundaryName| {
        let b = tls[0].timestamps.iter().find(|b| b.name == name).unwrap();
        serde_json::to_string(&b.source).unwrap()
    };
    assert!(source(BoundaryName::OsdUp).contains("osd dump via librados, every 50 ms"));
    assert!(source(BoundaryName::PgsActive).contains("pg dump pgs via librados"));
    assert!(osds_with_noout().is_empty());
    wait_healthy();

    let yaml = through_librados(&scenario("all", "", 5));
    let wait_noout = || {
        for _ in 0..200 {
            if flags().contains(&"noout".to_string()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("noout was never set");
    };
    // Ctrl-C with a librados session open (its threads must not take the
    // signal): the restart in flight finishes, then noout goes.
    let child = run_without_cli(&dir, &yaml, &state, "o-int");
    wait_noout();
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(!flags().contains(&"noout".to_string()), "{}", text(&out));
    wait_healthy();

    // kill -9 while the run holds the cluster's noout: the state file says
    // how to ask (the session), and the next start (still no CLI) unsets it.
    let mut child = run_without_cli(&dir, &yaml, &state, "o2");
    wait_noout();
    child.kill().unwrap();
    let _ = child.wait();
    let held = std::fs::read_to_string(state.join("ceph-flags.json")).unwrap();
    assert!(held.contains("librados"), "{held}");
    wait_healthy_allowing_noout();
    let out = run_without_cli(
        &dir,
        &through_librados(&scenario("[0]", "", 1)),
        &state,
        "o3",
    )
    .wait_with_output()
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("ended without unsetting noout; unset it now"),
        "{}",
        text(&out)
    );
    assert!(!flags().contains(&"noout".to_string()));
    assert!(!state.join("ceph-flags.json").exists());
}

#[test]
fn an_osd_in_a_container_is_restarted_through_the_engine_and_followed_the_same_way() {
    let _one = lock_cluster();
    wait_healthy();
    let id = *ceph_up().osds.last().unwrap();
    let osd = OsdInContainer::start(id);
    wait_healthy();
    let env = ceph_up();
    let yaml = format!(
        "deployment: lab\nscenario: osd-docker\nconcurrency: 1\ntargets:\n  - ceph_osd:\n      ids: all\n      via: docker\n      container: \"bounce-t-osd-{{id}}\"\n      ceph: [ceph, --conf, \"{}\"]\n      admin_socket: \"{}/ceph-osd.{{id}}.asok\"\n    gates: {{wait_for: pgs_active}}\n    timeout: 120s\n",
        env.conf.display(),
        env.run_dir.display()
    );
    let dir = Scratch::new("osd-docker");
    let file = dir.write("osd.yaml", &yaml);
    let plan = agent(&[
        "plan",
        file.to_str().unwrap(),
        "--state-dir",
        dir.path("state").to_str().unwrap(),
    ]);
    assert!(plan.status.success(), "{}", text(&plan));
    assert!(
        text(&plan).contains(&format!("ceph osd.{id}, container")),
        "{}",
        text(&plan)
    );
    let before = docker(&["inspect", "-f", "{{.State.StartedAt}}", &osd.name]).unwrap();
    let (out, tls) = run(&dir, &yaml, &dir.path("state"));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(tls.len(), 1, "ids: all found the one OSD container");
    let t = &tls[0];
    assert_eq!(t.outcome, Outcome::Ok, "{t:?}");
    assert_eq!(
        t.target,
        bounce_wire::TargetRef::CephOsd {
            id,
            unit: None,
            bus: None,
            container: Some(osd.name.clone())
        }
    );
    // Stop and start come from the engine; the start is the container's new StartedAt.
    let after = docker(&["inspect", "-f", "{{.State.StartedAt}}", &osd.name]).unwrap();
    assert_ne!(before, after, "the container was restarted");
    assert_eq!(at(t, BoundaryName::Started), rfc3339_nanos(after.trim()));
    assert!(matches!(
        t.boundary(BoundaryName::Exited).unwrap().source,
        bounce_wire::Source::DockerState { .. }
    ));
    let times = milestones_in_order(t);
    for p in [
        Phase::Stop,
        Phase::Start,
        Phase::OsdBoot,
        Phase::OsdUp,
        Phase::PgsActive,
    ] {
        assert!(t.phases.contains_key(&p), "{p}: {t:?}");
    }
    // The OSD (logging to its file from inside the container) agrees.
    let log = ceph_up().osd_log(id);
    let active = log
        .iter()
        .find(|(at_, line)| {
            *at_ >= times[2] - 20_000_000 && line.contains("state: booting -> active")
        })
        .expect("the OSD logged its boot");
    assert!(active.0 <= times[3], "osd_boot after the OSD logged it");
    assert!(!flags().contains(&"noout".to_string()));
    drop(osd);
}

/// Two agents of one fleet run, each owning one OSD, with a cluster-wide
/// OSD limit of 2 and no health gate: both are granted at once, and the one
/// granted second asks `ok-to-stop` for its OSD together with the first's
/// (size 3, min_size 2: not ok for the pair), so it waits until the first
/// is back; the two OSDs are never down together.
#[test]
fn two_agents_of_a_fleet_never_pass_ok_to_stop_on_answers_that_leave_each_other_out() {
    let _one = lock_cluster();
    wait_healthy();
    let dir = Scratch::new("ceph-fleet");
    let collector = CollectorProcess::start(&dir.0);
    let fleet = "fleet:\n  max_in_flight: 2\n  lease_ttl: 3s\n  limits:\n    - {key: ceph-osd, max: 2, kinds: [ceph_osd]}\n";
    let mut agents = Vec::new();
    for (node, id) in [("osd-a", 0), ("osd-b", 1)] {
        let yaml = scenario(&format!("[{id}]"), ", health: any, noout: per_osd", 1) + fleet;
        let file = dir.write(&format!("{node}.yaml"), &yaml);
        let out = dir.path(&format!("out-{node}"));
        let state = dir.path(&format!("state-{node}"));
        let extra = [
            "--node",
            node,
            "--run-id",
            "ceph-fleet-1",
            "--collector",
            &collector.url(),
            "--fleet-nodes",
            "2",
            "--state-dir",
            state.to_str().unwrap(),
        ];
        let child = agent_command(&run_args(&file, &out, &extra))
            .env("BOUNCE_TOKEN", AGENT_TOKEN)
            .spawn()
            .expect("start bounce-agent");
        agents.push((child, out));
    }
    let mut tls = Vec::new();
    for (child, out) in agents {
        let done = child.wait_with_output().unwrap();
        assert!(done.status.success(), "{}", text(&done));
        let mut t = read_timelines(&out);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].outcome, Outcome::Ok, "{:?}", t[0]);
        tls.append(&mut t);
    }
    // Down: from the stop's request to the OSD up in the osdmap again.
    let down: Vec<(i64, i64)> = tls
        .iter()
        .map(|t| (at(t, BoundaryName::Requested), at(t, BoundaryName::OsdUp)))
        .collect();
    assert!(
        down[0].1 <= down[1].0 || down[1].1 <= down[0].0,
        "both OSDs down at once: {down:?}"
    );
    // The second asked for both OSDs and was told no.
    let notes: Vec<&String> = tls.iter().flat_map(|t| &t.notes).collect();
    assert!(
        notes
            .iter()
            .any(|n| n.contains("`ceph osd ok-to-stop 1 0` says no")
                || n.contains("`ceph osd ok-to-stop 0 1` says no")),
        "{notes:?}"
    );
    wait_healthy();
}

/// The Ceph fleet test: every OSD of the test cluster owned by its
/// own agent (`ids: [N]`), one fleet run with `ceph-osd` max 1 and neither
/// a health gate nor `ok-to-stop` (so the lease alone keeps them apart):
/// never two OSDs down at once, by the agents' timelines (from the stop's
/// request to the OSD up in the osdmap) and by each OSD's own log (from the
/// SIGTERM it received to `booting -> active`).
#[test]
fn a_fleet_limit_of_one_osd_keeps_every_osd_of_the_cluster_down_alone() {
    let _one = lock_cluster();
    wait_healthy();
    let dir = Scratch::new("ceph-fleet-one");
    let collector = CollectorProcess::start(&dir.0);
    let osds = &ceph_up().osds;
    let nodes = osds.len().to_string();
    let fleet = "fleet:\n  max_in_flight: 100%\n  lease_ttl: 3s\n  limits:\n    - {key: ceph-osd, max: 1, kinds: [ceph_osd]}\n";
    let mut agents = Vec::new();
    for id in osds {
        let node = format!("osd-host-{id}");
        let yaml = scenario(
            &format!("[{id}]"),
            ", health: any, ok_to_stop: false, noout: per_osd",
            1,
        ) + fleet;
        let file = dir.write(&format!("{node}.yaml"), &yaml);
        let out = dir.path(&format!("out-{node}"));
        let state = dir.path(&format!("state-{node}"));
        let extra = [
            "--node",
            &node,
            "--run-id",
            "ceph-fleet-one",
            "--collector",
            &collector.url(),
            "--fleet-nodes",
            &nodes,
            "--state-dir",
            state.to_str().unwrap(),
        ];
        let child = agent_command(&run_args(&file, &out, &extra))
            .env("BOUNCE_TOKEN", AGENT_TOKEN)
            .spawn()
            .expect("start bounce-agent");
        agents.push((*id, child, out));
    }
    // (osd, down by the timeline, down by the OSD's log)
    let mut down = Vec::new();
    for (id, child, out) in agents {
        let done = child.wait_with_output().unwrap();
        assert!(done.status.success(), "osd.{id}: {}", text(&done));
        let t = read_timelines(&out);
        assert_eq!(t.len(), 1, "osd.{id}");
        let t = &t[0];
        assert_eq!(t.outcome, Outcome::Ok, "{t:?}");
        let [requested, exited, started, seen_active, up, _] = milestones_in_order(t)[..] else {
            unreachable!()
        };
        let log = osd_log(id);
        let term = logged_within(
            &log,
            id,
            "received  signal: Terminated",
            requested - LOG_SLACK,
            exited,
        );
        let active = logged_within(
            &log,
            id,
            "state: booting -> active",
            started - LOG_SLACK,
            seen_active,
        );
        down.push((id, (requested, up), (term, active)));
    }
    down.sort_by_key(|(_, timeline, _)| timeline.0);
    for w in down.windows(2) {
        let ((a, ta, la), (b, tb, lb)) = (w[0], w[1]);
        assert!(
            ta.1 <= tb.0,
            "osd.{b} stopped (request at {}) before osd.{a} was up in the osdmap ({})",
            tb.0,
            ta.1
        );
        assert!(
            la.1 < lb.0,
            "osd.{b}'s log has its SIGTERM at {} before osd.{a}'s log has it active at {}",
            lb.0,
            la.1
        );
    }
    assert!(osds_with_noout().is_empty(), "per-OSD noout removed");
    assert!(!flags().contains(&"noout".to_string()));
    wait_healthy();
}
