//! Real restarts of real containers through the real agent binary, checked
//! against the engine's own record.

use bounce_tests::*;
use bounce_wire::{BoundaryName, Outcome, Phase, RunSummary, Source};

const MS: i64 = 1_000_000;

#[test]
fn restart_of_a_container_exiting_143_matches_the_engine_record() {
    let c = TestContainer::start(
        "t143",
        &["--network", "none"],
        "trap 'sleep 0.3; exit 143' TERM; while true; do sleep 0.1; done",
    );
    let (dir, out, tls) = run_scenario(
        "t143",
        &format!(
            "deployment: lab\nscenario: t143\nrepeat: 2\ntargets:\n  - docker: {{names: [{}]}}\n    stop_timeout: 5s\n    timeout: 30s\n",
            c.name
        ),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(tls.len(), 2);
    for t in &tls {
        assert_eq!(t.outcome, Outcome::Ok, "{t:?}");
        assert_eq!(t.exit_code, Some(143));
        assert_eq!(t.signals, vec!["SIGTERM".to_string()]);
        assert_eq!(t.deployment, "lab");
        assert_eq!(t.scenario, "t143");
        assert!(
            t.phases[&Phase::Stop] >= 0.3,
            "the trap sleeps 0.3 s: {t:?}"
        );
        let sum = t.phases[&Phase::Stop] + t.phases[&Phase::Start] + t.phases[&Phase::Ready];
        assert!((sum - t.phases[&Phase::Total]).abs() < 1e-6);
    }

    // The last restart against the engine's state and its own event log.
    let last = tls.last().unwrap();
    let state = &c.inspect()["State"];
    let finished = rfc3339_nanos(state["FinishedAt"].as_str().unwrap());
    let started = rfc3339_nanos(state["StartedAt"].as_str().unwrap());
    assert!(
        (at(last, BoundaryName::Exited) - finished).abs() <= MS,
        "exited vs FinishedAt"
    );
    assert!(
        (at(last, BoundaryName::Started) - started).abs() <= MS,
        "started vs StartedAt"
    );
    let engine = c.events(
        at(last, BoundaryName::Requested),
        at(last, BoundaryName::Finished) + 1,
    );
    let engine_actions: Vec<&str> = engine.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(engine_actions, ["kill", "die", "stop", "start", "restart"]);
    let recorded: Vec<(String, i64)> = last
        .events
        .iter()
        .map(|e| (e.action.clone(), e.unix_nanos))
        .collect();
    assert_eq!(
        recorded, engine,
        "the agent saw exactly the engine's events"
    );

    // The summary and the histogram log agree with the timelines.
    let summary: RunSummary =
        serde_json::from_str(&std::fs::read_to_string(dir.path("out/summary.json")).unwrap())
            .unwrap();
    let stop = summary
        .rows
        .iter()
        .find(|r| r.phase == Phase::Stop)
        .unwrap();
    assert_eq!(stop.count, 2);
    let max_stop = tls
        .iter()
        .map(|t| t.phases[&Phase::Stop])
        .fold(0.0, f64::max);
    assert!(
        (stop.max.unwrap() - max_stop).abs() / max_stop < 0.001,
        "HDR keeps 3 digits"
    );
    assert!(summary.identity.node.docker_version.is_some());
    let hlog = std::fs::read(dir.path("out/histograms.hlog")).unwrap();
    let hists = bounce_wire::PhaseHistograms::read_hlog(&hlog).unwrap();
    assert_eq!(hists.get(&c.name, Phase::Total).unwrap().len(), 2);
    assert_eq!(
        std::fs::read_to_string(dir.path("out/scenario.yaml")).unwrap(),
        std::fs::read_to_string(dir.path("t143.yaml")).unwrap()
    );
}

#[test]
fn a_pid1_that_ignores_sigterm_is_killed_after_the_stop_timeout() {
    let c = TestContainer::start("ignore-term", &["--network", "none"], "exec sleep 3600");
    let (_dir, out, tls) = run_scenario(
        "ignore-term",
        &format!(
            "deployment: lab\ntargets:\n  - docker: {{names: [{}]}}\n    action: stop-start\n    stop_timeout: 1s\n    timeout: 20s\n",
            c.name
        ),
    );
    assert!(out.status.success(), "{}", text(&out));
    let t = &tls[0];
    assert_eq!(t.signals, ["SIGTERM", "SIGKILL"]);
    assert_eq!(t.exit_code, Some(137));
    let stop = t.phases[&Phase::Stop];
    assert!(
        (1.0..5.0).contains(&stop),
        "stop waited the 1 s timeout: {stop}"
    );
    let state = &c.inspect()["State"];
    assert!(
        (at(t, BoundaryName::Exited) - rfc3339_nanos(state["FinishedAt"].as_str().unwrap())).abs()
            <= MS
    );
}

#[test]
fn readiness_from_the_health_command_and_from_docker_health() {
    let c = TestContainer::start(
        "slow-healthy",
        &[
            "--network",
            "none",
            "--health-cmd",
            "test -f /tmp/ready",
            "--health-interval",
            "1s",
        ],
        "rm -f /tmp/ready; trap 'exit 0' TERM; (sleep 2; touch /tmp/ready) & while true; do sleep 0.1; done",
    );
    let yaml = |ready: &str| {
        format!(
            "deployment: lab\ntargets:\n  - docker: {{names: [{}]}}\n    stop_timeout: 5s\n    timeout: 30s\n{ready}",
            c.name
        )
    };
    let (_d1, out, tls) = run_scenario(
        "exec-health",
        &yaml("    ready: [{exec_health: {interval: 100ms}}]\n"),
    );
    assert!(out.status.success(), "{}", text(&out));
    let t = &tls[0];
    let ready = t.phases[&Phase::Ready];
    // The lower bound is the point; the upper one only rules out a probe
    // that never polled (a loaded machine slows `docker exec`).
    assert!(
        (2.0..15.0).contains(&ready),
        "ready after the 2 s delay: {ready}"
    );
    let p = &t.probes[0];
    assert_eq!(p.probe, "exec_health");
    assert!(p.failures >= 3, "polled every 100 ms for 2 s: {p:?}");
    let (after, by) = (
        p.ready_after_unix_nanos.unwrap(),
        p.ready_by_unix_nanos.unwrap(),
    );
    // One try wide: the last failed try ended, the successful one ended.
    assert!(
        after < by && by - after < 3_000 * MS,
        "window {after}..{by}"
    );
    assert_eq!(at(t, BoundaryName::Ready), by);

    // Default readiness for a container with a health check: Docker's own event.
    c.wait_healthy(10);
    let (_d2, out, tls) = run_scenario("docker-health", &yaml(""));
    assert!(out.status.success(), "{}", text(&out));
    let t = &tls[0];
    assert!(t.phases[&Phase::Ready] >= 2.0, "{t:?}");
    let b = t.boundary(BoundaryName::Ready).unwrap();
    assert_eq!(
        b.source,
        Source::DockerEvent {
            action: "health_status: healthy".into()
        }
    );
    assert!(
        t.events
            .iter()
            .any(|e| e.action == "health_status: healthy" && e.unix_nanos == b.unix_nanos)
    );
}

#[test]
fn a_container_that_never_becomes_healthy_times_out() {
    let c = TestContainer::start(
        "never-healthy",
        &[
            "--network",
            "none",
            "--health-cmd",
            "false",
            "--health-interval",
            "1s",
        ],
        "trap 'exit 0' TERM; while true; do sleep 0.1; done",
    );
    let (dir, out, tls) = run_scenario(
        "never-healthy",
        &format!(
            "deployment: lab\non_failure: continue\nrepeat: 2\ntargets:\n  - docker: {{names: [{}]}}\n    stop_timeout: 1s\n    timeout: 3s\n",
            c.name
        ),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(tls.len(), 2, "on_failure: continue runs both");
    for t in &tls {
        assert_eq!(t.outcome, Outcome::Timeout);
        assert!(t.phases.contains_key(&Phase::Stop) && t.phases.contains_key(&Phase::Start));
        assert!(!t.phases.contains_key(&Phase::Ready) && !t.phases.contains_key(&Phase::Total));
        assert!(
            t.error.as_deref().unwrap().contains("docker_health"),
            "{t:?}"
        );
    }
    let summary: RunSummary =
        serde_json::from_str(&std::fs::read_to_string(dir.path("out/summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary.outcomes.get(&Outcome::Timeout), Some(&2));
    let ready = summary
        .rows
        .iter()
        .find(|r| r.phase == Phase::Ready)
        .unwrap();
    assert_eq!((ready.count, ready.failures), (0, 2));

    // The default, on_failure: abort, starts nothing after the first failure.
    let (dir, out, tls) = run_scenario(
        "never-healthy-abort",
        &format!(
            "deployment: lab\nrepeat: 3\ntargets:\n  - docker: {{names: [{}]}}\n    stop_timeout: 1s\n    timeout: 3s\n",
            c.name
        ),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(tls.len(), 1);
    assert!(
        text(&out).contains("stopped after a failed restart"),
        "{}",
        text(&out)
    );
    let summary: RunSummary =
        serde_json::from_str(&std::fs::read_to_string(dir.path("out/summary.json")).unwrap())
            .unwrap();
    assert_eq!((summary.planned, summary.not_started), (3, 2));
}

#[test]
fn tcp_and_http_probes_see_the_listener_come_back() {
    let port = free_port();
    let c = TestContainer::start(
        "listener",
        &["--network", "host"],
        &format!("trap 'exit 143' TERM; sleep 0.5; httpd -f -p 127.0.0.1:{port} -h /www & wait"),
    );
    // Wait for the first listener so the run starts from a ready service.
    let addr = format!("127.0.0.1:{port}");
    for _ in 0..50 {
        if std::net::TcpStream::connect(&addr).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (_dir, out, tls) = run_scenario(
        "listener",
        &format!(
            "deployment: lab\ntargets:\n  - docker: {{names: [{}]}}\n    stop_timeout: 5s\n    timeout: 30s\n    ready:\n      - tcp: {{port: {port}, interval: 50ms}}\n      - http: {{url: \"http://127.0.0.1:{port}/index.html\", expect_status: [200], interval: 50ms}}\n",
            c.name
        ),
    );
    assert!(out.status.success(), "{}", text(&out));
    let t = &tls[0];
    assert!(
        t.phases[&Phase::Ready] >= 0.5,
        "listener starts 0.5 s late: {t:?}"
    );
    assert_eq!(t.probes.len(), 2);
    for p in &t.probes {
        assert!(p.failures >= 1, "{p:?}");
        assert!(p.ready_by_unix_nanos.unwrap() >= at(t, BoundaryName::Started));
    }
    assert!(matches!(
        t.boundary(BoundaryName::Ready).unwrap().source,
        Source::Probe { .. }
    ));
}

#[test]
fn concurrency_and_pause_are_respected() {
    let script = "trap 'sleep 0.2; exit 0' TERM; while true; do sleep 0.1; done";
    let cs: Vec<TestContainer> = (0..3)
        .map(|i| TestContainer::start(&format!("conc{i}"), &["--network", "none"], script))
        .collect();
    let prefix = format!("bounce-t-conc*-{}", std::process::id());
    let (_dir, out, tls) = run_scenario(
        "concurrency",
        &format!(
            "deployment: lab\nrepeat: 2\nconcurrency: 2\ntargets:\n  - docker: {{names: [\"{prefix}\"]}}\n    stop_timeout: 5s\n    timeout: 30s\n"
        ),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(tls.len(), 6);
    let spans: Vec<(i64, i64, &str)> = tls
        .iter()
        .map(|t| {
            (
                at(t, BoundaryName::Requested),
                at(t, BoundaryName::Finished),
                t.service.as_str(),
            )
        })
        .collect();
    let mut max_in_flight = 0;
    for (start, _, _) in &spans {
        let in_flight: Vec<_> = spans
            .iter()
            .filter(|(s, e, _)| s <= start && start < e)
            .collect();
        max_in_flight = max_in_flight.max(in_flight.len());
        let mut names: Vec<&str> = in_flight.iter().map(|x| x.2).collect();
        names.sort();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n, "one target restarted twice at once");
    }
    assert!(
        max_in_flight <= 2,
        "concurrency 2 exceeded: {max_in_flight}"
    );
    assert_eq!(max_in_flight, 2, "two workers should overlap");
    drop(cs);

    let c = TestContainer::start("pause", &["--network", "none"], script);
    let (_dir, out, tls) = run_scenario(
        "pause",
        &format!(
            "deployment: lab\nrepeat: 2\npause: 1s\ntargets:\n  - docker: {{names: [{}]}}\n    stop_timeout: 5s\n    timeout: 30s\n",
            c.name
        ),
    );
    assert!(out.status.success(), "{}", text(&out));
    let gap = at(&tls[1], BoundaryName::Requested) - at(&tls[0], BoundaryName::Finished);
    assert!(gap >= 1_000 * MS, "pause 1s between restarts, saw {gap} ns");
}

#[test]
fn kill_crashes_the_container_and_its_restart_policy_brings_it_back() {
    let c = TestContainer::start(
        "crash",
        &["--network", "none", "--restart", "always"],
        "trap 'exit 0' TERM; while true; do sleep 0.1; done",
    );
    let (_dir, out, tls) = run_scenario(
        "crash",
        &format!(
            "deployment: lab\ntargets:\n  - docker: {{names: [{}]}}\n    action: kill\n    timeout: 30s\n",
            c.name
        ),
    );
    assert!(out.status.success(), "{}", text(&out));
    let t = &tls[0];
    assert_eq!(t.signals, ["SIGKILL"]);
    assert_eq!(t.exit_code, Some(137));
    assert!(t.phases.contains_key(&Phase::Start));

    // Without a restart policy, kill is refused before anything happens.
    let d = TestContainer::start("no-policy", &["--network", "none"], "exec sleep 3600");
    let before = d.inspect()["State"]["StartedAt"].clone();
    let (_dir, out, tls) = run_scenario(
        "no-policy",
        &format!(
            "deployment: lab\ntargets:\n  - docker: {{names: [{}]}}\n    action: kill\n",
            d.name
        ),
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("needs a restart policy"),
        "{}",
        text(&out)
    );
    assert!(tls.is_empty());
    assert_eq!(d.inspect()["State"]["StartedAt"], before);
}

#[test]
fn plan_shows_the_targets_and_touches_nothing() {
    let c = TestContainer::start("plan", &["--network", "none"], "exec sleep 3600");
    let before = c.inspect()["State"]["StartedAt"].clone();
    let dir = Scratch::new("plan");
    let scenario = dir.write(
        "plan.yaml",
        &format!(
            "deployment: lab\nrepeat: 3\ntargets:\n  - docker: {{names: [{}]}}\n    stop_timeout: 2s\n",
            c.name
        ),
    );
    let out = agent(&["plan", scenario.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&c.name), "{stdout}");
    assert!(stdout.contains("3 restart(s)"), "{stdout}");
    assert!(stdout.contains("stop timeout 2s"), "{stdout}");
    assert!(stdout.contains("round 3"), "{stdout}");
    assert_eq!(
        c.inspect()["State"]["StartedAt"],
        before,
        "plan restarted nothing"
    );

    let missing = dir.write(
        "missing.yaml",
        "deployment: lab\ntargets:\n  - docker: {names: [\"no-such-container-*\"]}\n",
    );
    let out = agent(&["plan", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("matches no container"), "{err}");
    assert!(err.contains("missing.yaml"), "{err}");
}

#[test]
fn ctrl_c_finishes_the_restart_in_flight_and_writes_what_was_measured() {
    let c = TestContainer::start(
        "sigint",
        &["--network", "none"],
        "trap 'sleep 1; exit 0' TERM; while true; do sleep 0.1; done",
    );
    let dir = Scratch::new("sigint");
    let scenario = dir.write(
        "sigint.yaml",
        &format!(
            "deployment: lab\nrepeat: 20\ntargets:\n  - docker: {{names: [{}]}}\n    stop_timeout: 5s\n    timeout: 30s\n",
            c.name
        ),
    );
    let out_dir = dir.path("out");
    let child = spawn_agent(&run_args(&scenario, &out_dir, &[]));
    // Interrupt once the first restart has been written: the second is then
    // in flight (its stop takes 1 s), and must be let finish.
    let tl = out_dir.join("timelines.jsonl");
    for _ in 0..200 {
        if std::fs::read_to_string(&tl)
            .map(|s| s.lines().count() >= 1)
            .unwrap_or(false)
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("interrupted"), "{}", text(&out));
    let tls = read_timelines(&out_dir);
    assert_eq!(tls.len(), 2, "the first, and the one in flight at Ctrl-C");
    assert!(
        tls.iter().all(|t| t.outcome == Outcome::Ok),
        "in-flight restart finished"
    );
    let summary: RunSummary =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("summary.json")).unwrap())
            .unwrap();
    assert!(summary.interrupted);
    assert_eq!(summary.not_started, 20 - tls.len() as u64);
    assert_eq!(c.inspect()["State"]["Running"], true, "left running");
}

#[test]
fn a_restart_still_in_flight_when_the_drain_time_runs_out_is_recorded_as_aborted() {
    let c = TestContainer::start(
        "drain",
        &["--network", "none"],
        "trap 'sleep 3; exit 0' TERM; while true; do sleep 0.1; done",
    );
    let dir = Scratch::new("drain");
    let scenario = dir.write(
        "drain.yaml",
        &format!(
            "deployment: lab\ntargets:\n  - docker: {{names: [{}]}}\n    stop_timeout: 10s\n    timeout: 60s\n",
            c.name
        ),
    );
    let out_dir = dir.path("out");
    let child = spawn_agent(&run_args(&scenario, &out_dir, &["--drain", "300ms"]));
    // Interrupt once the engine has sent SIGTERM (the stop then takes 3 s).
    let since = now_nanos();
    for _ in 0..100 {
        if c.events(since, now_nanos())
            .iter()
            .any(|(a, _)| a == "kill")
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let tls = read_timelines(&out_dir);
    assert_eq!(tls.len(), 1);
    assert_eq!(tls[0].outcome, Outcome::Aborted, "{:?}", tls[0]);
    assert!(!tls[0].phases.contains_key(&Phase::Total));
    let summary: RunSummary =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("summary.json")).unwrap())
            .unwrap();
    assert!(summary.interrupted);
    assert_eq!(summary.outcomes.get(&Outcome::Aborted), Some(&1));
}
