//! Real restarts of real units of a real systemd manager over D-Bus, through
//! the real agent binary; kolla-style units wrap real containers.

use bounce_tests::*;
use bounce_wire::{BoundaryName, Outcome, Phase};

const MS: i64 = 1_000_000;

/// A scenario restarting `unit` on the test manager.
fn scenario(unit: &str, extra: &str) -> String {
    format!(
        "deployment: lab\ntargets:\n  - systemd:\n      units: [\"{unit}\"]\n      bus: \"{}\"\n    timeout: 30s\n{extra}",
        systemd_up().bus
    )
}

/// systemd's realtime µs property, in ns.
fn realtime_prop(u: &TestUnit, p: &str) -> i64 {
    u.usec_prop(p) * 1000
}

/// SIGTERM to the main process only (KillMode=mixed): with the default
/// control-group mode, systemd also kills what the trap starts while it is
/// still sweeping the cgroup, and the stop is not reliably slow.
const SLOW_STOP: &str = "[Service]\nExecStart=/bin/sh -c \"trap 'sleep 1; exit 0' TERM; while :; do sleep 1 & wait; done\"\nKillMode=mixed\n";

#[test]
fn a_slow_stopping_unit_is_timed_from_its_own_timestamps() {
    let u = TestUnit::start("slow-stop", SLOW_STOP);
    let (_d, out, tls) = run_scenario("slow-stop", &scenario(&u.name, "    action: restart\n"));
    assert!(out.status.success(), "{}", text(&out));
    let t = &tls[0];
    assert_eq!(t.outcome, Outcome::Ok);
    assert_eq!(t.unit.as_ref().unwrap().job_results, ["done"]);
    let stop = t.phases[&Phase::Stop];
    assert!(
        (1.0..3.0).contains(&stop),
        "the unit takes 1 s to stop: {t:?}"
    );
    // The agent's boundaries (monotonic, placed on the realtime axis) agree
    // with systemd's own realtime stamps of the same transitions.
    assert!(
        (at(t, BoundaryName::Exited) - realtime_prop(&u, "InactiveEnterTimestamp")).abs() < 2 * MS
    );
    assert!(
        (at(t, BoundaryName::Started) - realtime_prop(&u, "ActiveEnterTimestamp")).abs() < 2 * MS
    );
    assert!(at(t, BoundaryName::Requested) < at(t, BoundaryName::Exited));
    assert_eq!(u.prop("ActiveState"), "active");

    // stop-start queues two jobs.
    let (_d, out, tls) = run_scenario(
        "slow-stop-ss",
        &scenario(&u.name, "    action: stop-start\n"),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(tls[0].unit.as_ref().unwrap().job_results, ["done", "done"]);
    assert!(
        tls[0].phases.get(&Phase::Stop).is_some_and(|s| *s >= 1.0),
        "{:?}",
        tls[0]
    );
}

#[test]
fn exit_143_leaves_the_unit_failed_unless_it_is_a_success_status() {
    let body = "[Service]\nExecStart=/bin/sh -c \"trap 'exit 143' TERM; while :; do sleep 1 & wait; done\"\n";
    let u = TestUnit::start("exit143", body);
    let (_d, out, tls) = run_scenario("exit143", &scenario(&u.name, ""));
    assert!(out.status.success(), "{}", text(&out));
    let t = &tls[0];
    let r = t.unit.as_ref().unwrap();
    assert_eq!(r.stopped_as.as_deref(), Some("failed"));
    assert_eq!(r.stop_result.as_deref(), Some("exit-code"));
    assert_eq!(r.main_exit_status, Some(143));
    assert_eq!(t.exit_code, Some(143));
    let words = t.attribution.as_deref().unwrap();
    assert!(words.starts_with("main process exited 143 at +"), "{words}");
    assert!(
        words.contains("unit left `failed` (Result=exit-code) instead of `dead`"),
        "{words}"
    );

    // The fix osism shipped: SuccessExitStatus=143.
    let fixed = TestUnit::start("exit143-fixed", &format!("{body}SuccessExitStatus=143\n"));
    let (_d, out, tls) = run_scenario("exit143-fixed", &scenario(&fixed.name, ""));
    assert!(out.status.success(), "{}", text(&out));
    let r = tls[0].unit.as_ref().unwrap();
    assert_eq!(r.stopped_as.as_deref(), Some("inactive"));
    assert_eq!(r.stop_result.as_deref(), Some("success"));
    assert!(
        !tls[0]
            .attribution
            .as_deref()
            .unwrap_or("")
            .contains("failed")
    );
}

#[test]
fn a_unit_that_fails_to_start_and_one_whose_start_times_out() {
    let dir = Scratch::new("start-fails");
    let marker = dir.write("marker", "");
    let m = marker.display();
    let fails = TestUnit::start(
        "start-fails",
        &format!("[Service]\nExecStartPre=/bin/sh -c 'test -f {m}'\nExecStart=/bin/sleep 3600\n"),
    );
    let slow = TestUnit::start(
        "start-timeout",
        &format!(
            "[Service]\nExecStartPre=/bin/sh -c 'test -f {m} || sleep 10'\nExecStart=/bin/sleep 3600\nTimeoutStartSec=1\n"
        ),
    );
    std::fs::remove_file(&marker).unwrap();

    let (_d, out, tls) = run_scenario("start-fails", &scenario(&fails.name, ""));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(tls[0].outcome, Outcome::Failed);
    assert_eq!(tls[0].unit.as_ref().unwrap().job_results, ["failed"]);
    assert!(
        tls[0]
            .error
            .as_deref()
            .unwrap()
            .contains("restart job ended `failed`")
    );
    assert!(
        tls[0].phases.contains_key(&Phase::Stop),
        "the stop was observed"
    );

    let (_d, out, tls) = run_scenario("start-timeout", &scenario(&slow.name, ""));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    // A unit that does not start in time fails its start job; its Result says why.
    assert_eq!(tls[0].unit.as_ref().unwrap().job_results, ["failed"]);
    assert_eq!(
        tls[0].unit.as_ref().unwrap().final_result.as_deref(),
        Some("timeout")
    );
    assert!(
        tls[0].error.as_deref().unwrap().contains("Result=timeout"),
        "{:?}",
        tls[0].error
    );
}

#[test]
fn kill_lets_the_units_restart_policy_bring_it_back() {
    let u = TestUnit::start(
        "kill",
        "[Service]\nExecStart=/bin/sleep 3600\nRestart=always\nRestartSec=200ms\n",
    );
    let (_d, out, tls) = run_scenario("kill", &scenario(&u.name, "    action: kill\n"));
    assert!(out.status.success(), "{}", text(&out));
    let t = &tls[0];
    assert_eq!(t.signals, ["SIGKILL"]);
    assert!(t.unit.as_ref().unwrap().job_results.is_empty());
    let r = t.unit.as_ref().unwrap();
    assert_eq!(
        (r.main_exit_code, r.main_exit_status),
        (Some(2), Some(9)),
        "killed by SIGKILL"
    );
    assert_eq!(r.stop_result.as_deref(), Some("signal"));
    assert!(t.phases[&Phase::Total] >= 0.2, "RestartSec=200ms: {t:?}");

    let no_restart = TestUnit::start("kill-norestart", "[Service]\nExecStart=/bin/sleep 3600\n");
    let (_d, out, tls) = run_scenario(
        "kill-norestart",
        &scenario(&no_restart.name, "    action: kill\n"),
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("needs a restart policy"));
    assert!(tls.is_empty());
}

#[test]
fn a_kolla_unit_is_timed_at_both_levels_and_the_stall_is_named() {
    docker_up();
    let c = TestContainer::start(
        "kolla-unit",
        &["--network", "none"],
        "trap 'sleep 0.3; exit 143' TERM; while true; do sleep 1 & wait; done",
    );
    // kolla's unit (kolla_systemd_worker.py) without SuccessExitStatus=143,
    // with a stop that lingers 1.5 s after the container is gone. (The linger
    // also keeps the result deterministic: without it, systemd's SIGTERM after
    // ExecStop can reach `docker start -a` before it exits 143, a clean stop.)
    let unit = TestUnit::start(
        "kolla",
        &format!(
            "[Unit]\nDescription=docker {n}\n[Service]\nExecStart=/usr/bin/docker start -a {n}\nExecStop=/bin/sh -c '/usr/bin/docker stop {n} -t 10; sleep 1.5'\nRestart=always\nRestartSec=11\n",
            n = c.name
        ),
    );
    // The unit's start attaches to the already running container.
    let dir = Scratch::new("kolla-plan");
    let plan = agent(&[
        "plan",
        dir.write("p.yaml", &scenario(&unit.name, ""))
            .to_str()
            .unwrap(),
    ]);
    assert!(plan.status.success(), "{}", text(&plan));
    assert!(
        text(&plan).contains(&format!("wraps container {}", c.name)),
        "{}",
        text(&plan)
    );

    let (d, out, tls) = run_scenario("kolla", &scenario(&unit.name, ""));
    assert!(out.status.success(), "{}", text(&out));
    let t = &tls[0];
    assert_eq!(
        t.service, c.name,
        "histograms group by the container (the kolla service)"
    );
    assert_eq!(t.exit_code, Some(143));
    let container_exit = at(t, BoundaryName::ContainerExited);
    assert!(container_exit < at(t, BoundaryName::Exited));
    // The container's boundaries are the engine's own `die`/`start` events,
    // to the nanosecond (not the agent's clock when it saw them; inspect's
    // StartedAt is a different stamp, a few ms earlier on a loaded machine).
    let engine = c.events(
        at(t, BoundaryName::Requested),
        at(t, BoundaryName::Ready) + 1,
    );
    let stamp = |action: &str| {
        engine
            .iter()
            .filter(|(a, _)| a == action)
            .map(|(_, at)| *at)
            .next_back()
            .unwrap_or_else(|| panic!("no {action} event from the engine: {engine:?}"))
    };
    assert_eq!(at(t, BoundaryName::ContainerStarted), stamp("start"));
    assert_eq!(container_exit, stamp("die"));
    assert!(
        t.phases[&Phase::UnitSettle] >= 1.5,
        "ExecStopPost sleeps 1.5 s: {t:?}"
    );
    assert!(t.phases[&Phase::ContainerStop] >= 0.3);
    assert!(
        at(t, BoundaryName::Ready) >= at(t, BoundaryName::ContainerStarted),
        "ready means the container runs"
    );
    let words = t.attribution.as_deref().unwrap();
    assert_eq!(
        t.unit.as_ref().unwrap().main_exit_status,
        Some(143),
        "{t:?}"
    );
    assert!(words.starts_with("container exited 143 at +0."), "{words}");
    assert!(
        words.contains(
            "unit left `failed` (Result=exit-code) instead of `dead` and was stopped only at +"
        ),
        "{words}"
    );
    assert!(words.contains("after its process was gone"), "{words}");
    assert!(words.contains("container running at +"), "{words}");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("unit_settle"), "{table}");
    let summary: bounce_wire::RunSummary =
        serde_json::from_str(&std::fs::read_to_string(d.path("out/summary.json")).unwrap())
            .unwrap();
    let why = summary.where_time_went[&c.name].join("\n");
    assert!(
        why.contains(
            "the unit was left `failed` instead of `dead` in 1 of 1 restarts (Result=exit-code)"
        ),
        "{why}"
    );
    assert!(
        why.contains("the unit ") && why.contains("more after it was gone"),
        "{why}"
    );
}

#[test]
fn bad_unit_selections_and_missing_buses_are_refused_before_anything_restarts() {
    let u = TestUnit::start("bad-input", SLOW_STOP);
    let before = u.prop("ActiveEnterTimestampMonotonic");
    let bus = &systemd_up().bus;
    let cases = [
        (
            format!(
                "deployment: lab\ntargets:\n  - systemd: {{units: [\"{}\"], bus: \"{bus}\"}}\n  - systemd: {{units: [no-such-unit.service], bus: \"{bus}\"}}\n",
                u.name
            ),
            "targets[1].systemd.units: \"no-such-unit.service\" matches no unit",
        ),
        (
            format!(
                "deployment: lab\ntargets:\n  - systemd: {{units: [\"{}\"], bus: \"{bus}\"}}\n  - systemd: {{units: [\"nothing-*-here.service\"], bus: \"{bus}\"}}\n",
                u.name
            ),
            "matches no unit",
        ),
        (
            format!(
                "deployment: lab\ntargets:\n  - systemd: {{units: [\"{}\"], bus: \"{bus}\"}}\n  - systemd: {{units: [a.service], bus: \"unix:path=/nonexistent/bus\"}}\n",
                u.name
            ),
            "systemd manager on the unix:path=/nonexistent/bus bus",
        ),
    ];
    for (i, (yaml, expect)) in cases.iter().enumerate() {
        let (_d, out, tls) = run_scenario(&format!("bad-{i}"), yaml);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(
            text(&out).contains(expect),
            "expected `{expect}`: {}",
            text(&out)
        );
        assert!(tls.is_empty());
    }
    assert_eq!(
        u.prop("ActiveEnterTimestampMonotonic"),
        before,
        "nothing was restarted"
    );
}
