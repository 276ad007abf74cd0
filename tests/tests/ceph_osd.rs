//! OSD restarts through the real agent on a real Ceph cluster whose OSDs are
//! units of the test systemd manager: Ceph's milestones, the gates, and
//! `noout` unset on every exit path (success, gate failure, Ctrl-C, and a
//! kill -9 followed by the next start).

use bounce_agent::ceph::cli::CephCli;
use bounce_tests::*;
use bounce_wire::{BoundaryName, Outcome, Phase, TimelineRecord};
use std::path::Path;
use std::time::Duration;

fn cli() -> CephCli {
    CephCli::new(vec![
        "ceph".into(),
        "--conf".into(),
        ceph_up().conf.display().to_string(),
    ])
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

fn wait_healthy() {
    for _ in 0..240 {
        if block(cli().health())
            .map(|h| h.status == "HEALTH_OK")
            .unwrap_or(false)
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("the test cluster did not get back to HEALTH_OK");
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

fn run(dir: &Scratch, yaml: &str, state: &Path) -> (std::process::Output, Vec<TimelineRecord>) {
    let file = dir.write("osd.yaml", yaml);
    let out_dir = dir.path("out");
    let _ = std::fs::remove_dir_all(&out_dir);
    let out = agent(&[
        "run",
        file.to_str().unwrap(),
        "-o",
        out_dir.to_str().unwrap(),
        "--no-progress",
        "--state-dir",
        state.to_str().unwrap(),
    ]);
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
    for t in &tls {
        assert_eq!(t.outcome, Outcome::Ok, "{t:?}");
        assert_eq!(t.service, "ceph-osd");
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
        assert_eq!(
            at(t, BoundaryName::Ready),
            at(t, BoundaryName::PgsActive),
            "ready = wait_for"
        );
        for p in [Phase::OsdBoot, Phase::OsdUp, Phase::PgsActive] {
            assert!(t.phases.contains_key(&p), "{p}");
        }
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
        spawn_agent(&[
            "run",
            file.to_str().unwrap(),
            "-o",
            dir.path(out).to_str().unwrap(),
            "--no-progress",
            "--state-dir",
            state.to_str().unwrap(),
        ])
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
    child.kill().unwrap();
    let _ = child.wait();
    assert!(
        flags().contains(&"noout".to_string()),
        "noout left by the killed run"
    );
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

/// HEALTH_OK, or only the noout flag's warning.
fn wait_healthy_allowing_noout() {
    for _ in 0..240 {
        if let Ok(h) = block(cli().health())
            && (h.status == "HEALTH_OK" || h.checks.iter().all(|c| c.0 == "OSDMAP_FLAGS"))
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("the test cluster did not settle");
}
