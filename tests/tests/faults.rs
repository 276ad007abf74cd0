//! The fault matrix: every action (restart, stop-start, kill) × driver
//! (docker container, systemd unit, unit wrapping a container) × signal to
//! the agent (SIGKILL, SIGTERM) × phase of the restart (during the stop,
//! between stop and start, during the start, during readiness), on the real
//! engine and user manager. After each: the next `run` or `recover` leaves
//! no service down and no intent open, and every timeline written before
//! the signal reads back; after SIGTERM the run also wrote its summary and
//! histograms and exited 1.
//!
//! One more cell: a batch the spool could not take, held only in memory
//! when the agent is SIGKILLed, reaches the collector through `push`,
//! rebuilt from the folder.
//!
//! Phases are reached by watching the engine and manager, not by sleeping:
//! targets stop slowly (a trap that sleeps 2 s), units start slowly
//! (`ExecStartPre=sleep 2`), `kill` units come back after `RestartSec=2`,
//! readiness waits for a file that never comes. "Between stop and start"
//! of stop-start: the agent is frozen (SIGSTOP) while its stop is in flight
//! and signalled once the target is down, so its start was never sent.

use bounce_tests::*;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Driver {
    Docker,
    Unit,
    Wrapped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Stop,
    Between,
    Start,
    Ready,
}

#[derive(Debug, Clone, Copy)]
struct Cell {
    action: &'static str,
    driver: Driver,
    signal: i32,
    phase: Phase,
}

/// Why a cell cannot be reached, or `None` when it can.
fn not_applicable(action: &str, driver: Driver, phase: Phase) -> Option<&'static str> {
    match (action, driver, phase) {
        ("restart", _, Phase::Between) => {
            Some("one request: the engine or manager stops and starts by itself")
        }
        ("kill", _, Phase::Stop) => Some("a SIGKILL is taken at once: no stop to be in"),
        ("kill", Driver::Docker, Phase::Between) => {
            Some("the engine's restart policy starts it again within ~100 ms, no step of bounce")
        }
        (_, Driver::Docker, Phase::Start) => {
            Some("the engine answers a start once the process runs: no window")
        }
        _ => None,
    }
}

fn signal_name(s: i32) -> &'static str {
    if s == libc::SIGKILL {
        "SIGKILL"
    } else {
        "SIGTERM"
    }
}

/// The target of one cell: a container, a unit, or both.
struct Target {
    container: Option<TestContainer>,
    unit: Option<TestUnit>,
}

/// The container's main process: ready only once /ready exists (it never
/// does in the readiness cells), and a stop that takes 2 s.
fn script(phase: Phase) -> String {
    let prep = if phase == Phase::Ready {
        "rm -f /ready"
    } else {
        "touch /ready"
    };
    format!("{prep}; trap 'sleep 2; exit 0' TERM; while true; do sleep 0.1; done")
}

fn make_target(label: &str, cell: &Cell) -> Target {
    let health = ["--health-cmd", "test -f /ready", "--health-interval", "30s"];
    let pre = if cell.phase == Phase::Start {
        "/bin/sleep 2"
    } else {
        "/bin/true"
    };
    match cell.driver {
        Driver::Docker => {
            let mut opts = vec!["--network", "none", "--restart", "always"];
            opts.extend_from_slice(&health);
            Target {
                container: Some(TestContainer::start(label, &opts, &script(cell.phase))),
                unit: None,
            }
        }
        Driver::Unit => {
            let body = format!(
                "[Service]\nExecStartPre={pre}\nExecStart=/bin/sh -c \"trap 'sleep 2; exit 0' TERM; while :; do sleep 1 & wait; done\"\nKillMode=mixed\nRestart=always\nRestartSec=2\n"
            );
            Target {
                container: None,
                unit: Some(TestUnit::start(label, &body)),
            }
        }
        Driver::Wrapped => {
            let mut opts = vec!["--network", "none"];
            opts.extend_from_slice(&health);
            let c = TestContainer::start(label, &opts, &script(cell.phase));
            let body = format!(
                "[Unit]\nDescription=docker {n}\n[Service]\nExecStartPre={pre}\nExecStart=/usr/bin/docker start -a {n}\nExecStop=/usr/bin/docker stop -t 10 {n}\nRestart=always\nRestartSec=2\n",
                n = c.name
            );
            let u = TestUnit::start(label, &body);
            Target {
                container: Some(c),
                unit: Some(u),
            }
        }
    }
}

fn scenario(cell: &Cell, t: &Target) -> String {
    let selector = match (&t.unit, &t.container) {
        (Some(u), _) => format!(
            "systemd: {{units: [\"{}\"], bus: \"{}\"}}",
            u.name,
            systemd_up().bus
        ),
        (None, Some(c)) => format!("docker: {{names: [{}]}}", c.name),
        _ => unreachable!(),
    };
    let ready = match (cell.phase, cell.driver) {
        (Phase::Ready, Driver::Unit) => format!("[{{tcp: {{port: {}}}}}]", free_port()),
        (Phase::Ready, _) => "[{exec_health: {}}]".to_string(),
        _ => "[{running: {}}]".to_string(),
    };
    format!(
        "deployment: lab\ntargets:\n  - {selector}\n    action: {}\n    ready: {ready}\n    timeout: 60s\n",
        cell.action
    )
}

/// What the engine and manager say about the target now.
struct State {
    /// docker: State.Running; unit: ActiveState.
    running: bool,
    active_state: String,
    sub_state: String,
    /// A new start since the cell began (unit: InvocationID; docker: StartedAt).
    started: String,
}

fn state(t: &Target) -> State {
    match &t.unit {
        Some(u) => {
            let show = systemctl(&[
                "show",
                "-p",
                "ActiveState",
                "-p",
                "SubState",
                "-p",
                "InvocationID",
                &u.name,
            ])
            .unwrap_or_default();
            let get = |k: &str| {
                show.lines()
                    .find_map(|l| l.strip_prefix(&format!("{k}=")))
                    .unwrap_or_default()
                    .to_string()
            };
            let container_up = t
                .container
                .as_ref()
                .is_none_or(|c| c.inspect()["State"]["Running"] == true);
            State {
                running: get("ActiveState") == "active" && container_up,
                active_state: get("ActiveState"),
                sub_state: get("SubState"),
                started: get("InvocationID"),
            }
        }
        None => {
            let i = t.container.as_ref().unwrap().inspect();
            State {
                running: i["State"]["Running"] == true && i["State"]["Restarting"] != true,
                active_state: i["State"]["Status"].as_str().unwrap_or("").to_string(),
                sub_state: String::new(),
                started: i["State"]["StartedAt"].as_str().unwrap_or("").to_string(),
            }
        }
    }
}

/// Polls until `cond` holds (true) or `secs` pass (false).
fn until(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Waits until the restart is in the cell's phase, then signals the agent
/// (for "between", freezes it during the stop and signals once the target
/// is down). Err: the phase was not reached.
fn reach_and_signal(cell: &Cell, t: &Target, agent: &Child, began: i64) -> Result<(), String> {
    let pid = agent.id() as i32;
    let before = state(t).started;
    let docker_stopping = || {
        t.container
            .as_ref()
            .unwrap()
            .events(began, now_nanos())
            .iter()
            .any(|(a, _)| a == "kill")
    };
    let reached = match (cell.phase, t.unit.is_some()) {
        (Phase::Stop, false) => until(20, docker_stopping),
        (Phase::Stop, true) => until(20, || state(t).active_state == "deactivating"),
        (Phase::Between, _) if cell.action == "kill" => {
            until(20, || state(t).sub_state == "auto-restart")
        }
        (Phase::Between, unit) => {
            let stopping = if unit {
                until(20, || state(t).active_state == "deactivating")
            } else {
                until(20, docker_stopping)
            };
            // Frozen before its stop is answered: the start is never sent.
            unsafe { libc::kill(pid, libc::SIGSTOP) };
            stopping
                && until(20, || {
                    let s = state(t);
                    !s.running && s.active_state != "deactivating"
                })
        }
        (Phase::Start, _) => until(20, || {
            let s = state(t);
            s.active_state == "activating" && s.sub_state == "start-pre"
        }),
        (Phase::Ready, _) => until(30, || {
            let s = state(t);
            s.running && s.started != before
        }),
    };
    unsafe {
        libc::kill(pid, cell.signal);
        libc::kill(pid, libc::SIGCONT);
    }
    if reached {
        Ok(())
    } else {
        Err(format!("phase {:?} not reached", cell.phase))
    }
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

fn open_intents(state_dir: &Path) -> usize {
    std::fs::read_dir(state_dir.join("intents"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                .count()
        })
        .unwrap_or(0)
}

/// What one cell ended with.
#[derive(Default)]
struct Outcome {
    killed: bool,
    down_after: bool,
    intents_after: usize,
    problems: Vec<String>,
}

fn run_cell(n: usize, cell: Cell) -> Outcome {
    let mut o = Outcome::default();
    let label = format!("f{n}");
    let t = make_target(&label, &cell);
    let dir = Scratch::new(&label);
    let state_dir = dir.path("state");
    let state_arg = state_dir.to_str().unwrap().to_string();
    let scenario_file = dir.write("s.yaml", &scenario(&cell, &t));
    let out_dir = dir.path("out");
    let began = now_nanos();
    let child = spawn_agent(&run_args(
        &scenario_file,
        &out_dir,
        &["--state-dir", &state_arg, "--drain", "4s"],
    ));
    if let Err(e) = reach_and_signal(&cell, &t, &child, began) {
        o.problems.push(e);
    }
    let written_before = lines(&out_dir.join("timelines.jsonl"));
    let out = child.wait_with_output().expect("agent");
    o.killed = true;
    if cell.signal == libc::SIGTERM {
        if out.status.code() != Some(1) {
            o.problems
                .push(format!("SIGTERM: not exit 1: {}", text(&out)));
        }
        if !text(&out).contains("SIGTERM received") {
            o.problems
                .push(format!("SIGTERM not named: {}", text(&out)));
        }
        for f in ["summary.json", "histograms.hlog"] {
            if !out_dir.join(f).exists() {
                o.problems.push(format!("SIGTERM: no {f}: {}", text(&out)));
            }
        }
    }
    // A killed agent leaves what it had written; a torn line fails here.
    if out_dir.join("timelines.jsonl").exists() {
        let read = read_timelines(&out_dir).len();
        if read < written_before {
            o.problems
                .push(format!("{read} timelines read, {written_before} written"));
        }
    }
    // The next start: `run` for a stop-start killed between its stop and
    // start (plan says it first), `recover` for the others.
    let next = if cell.action == "stop-start"
        && cell.phase == Phase::Between
        && cell.signal == libc::SIGKILL
    {
        let plan = agent(&[
            "plan",
            scenario_file.to_str().unwrap(),
            "--state-dir",
            &state_arg,
        ]);
        if !text(&plan).contains("ended before starting it again") {
            o.problems
                .push(format!("plan did not say it: {}", text(&plan)));
        }
        let next = agent(&run_args(
            &scenario_file,
            &dir.path("out2"),
            &["--state-dir", &state_arg],
        ));
        if !text(&next).contains("started it again") {
            o.problems
                .push(format!("the next run did not start it: {}", text(&next)));
        }
        next
    } else {
        agent(&["recover", "--state-dir", &state_arg])
    };
    if !next.status.success() {
        o.problems
            .push(format!("the next start failed: {}", text(&next)));
    }
    // What comes back by itself (a restart job, a restart policy) may take
    // its start-pre and RestartSec.
    o.down_after = !until(15, || state(&t).running);
    if o.down_after {
        let s = state(&t);
        o.problems.push(format!(
            "left down ({} {}): {}",
            s.active_state,
            s.sub_state,
            text(&next)
        ));
    }
    o.intents_after = open_intents(&state_dir);
    o
}

#[test]
fn no_signal_at_any_phase_leaves_a_service_down_or_an_intent_open() {
    docker_up();
    systemd_up();
    let mut cells = Vec::new();
    let mut na = Vec::new();
    for action in ["restart", "stop-start", "kill"] {
        for driver in [Driver::Docker, Driver::Unit, Driver::Wrapped] {
            for phase in [Phase::Stop, Phase::Between, Phase::Start, Phase::Ready] {
                match not_applicable(action, driver, phase) {
                    Some(why) => na.push(format!("{action} {driver:?} {phase:?}: n/a, {why}")),
                    None => {
                        for signal in [libc::SIGKILL, libc::SIGTERM] {
                            cells.push(Cell {
                                action,
                                driver,
                                signal,
                                phase,
                            });
                        }
                    }
                }
            }
        }
    }
    let queue = std::sync::Mutex::new(cells.iter().copied().enumerate().collect::<Vec<_>>());
    let results = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..6 {
            s.spawn(|| {
                loop {
                    let Some((n, cell)) = queue.lock().unwrap().pop() else {
                        break;
                    };
                    let o = run_cell(n, cell);
                    results.lock().unwrap().push((cell, o));
                }
            });
        }
    });
    let results = results.into_inner().unwrap();
    eprintln!("\nfault matrix: action driver signal phase -> down after, intents open after");
    let (mut killed, mut down, mut open, mut failed) = (0, 0, 0, Vec::new());
    for (c, o) in &results {
        eprintln!(
            "  {:<10} {:<8} {:<7} {:<8} -> down {} intents {}{}",
            c.action,
            format!("{:?}", c.driver),
            signal_name(c.signal),
            format!("{:?}", c.phase),
            u8::from(o.down_after),
            o.intents_after,
            if o.problems.is_empty() {
                ""
            } else {
                "  PROBLEM"
            }
        );
        killed += usize::from(o.killed);
        down += usize::from(o.down_after);
        open += o.intents_after;
        for p in &o.problems {
            failed.push(format!(
                "{} {:?} {} {:?}: {p}",
                c.action,
                c.driver,
                signal_name(c.signal),
                c.phase
            ));
        }
    }
    for line in &na {
        eprintln!("  {line}");
    }
    eprintln!(
        "cells {}, signalled {killed}, services down after {down}, intents open after {open}, n/a {}",
        results.len(),
        na.len()
    );
    assert_eq!(results.len(), cells.len());
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
    assert_eq!((down, open), (0, 0));
}

/// An intent file as an agent writes it, for `pid` started at `start_ticks`.
fn intent_file(state_dir: &Path, name: &str, undo: &str, pid: u32, start_ticks: u64) {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let now = now_nanos();
    let dir = state_dir.join("intents");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(format!("{name}.json")),
        format!(
            r#"{{"target":"{name}","action":"stop-start","undo":{undo},"at_unix_nanos":{now},"settle_by_unix_nanos":{now},"run_id":"r-{name}","holder":{{"pid":{pid},"start_ticks":{start_ticks},"boot_id":"{}"}}}}"#,
            boot.trim()
        ),
    )
    .unwrap();
}

/// Field 22 of /proc/self/stat: when this process started.
fn my_start_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 1..];
    after.split_whitespace().nth(19).unwrap().parse().unwrap()
}

#[test]
fn an_unreachable_engine_keeps_the_intent_a_live_writer_keeps_its_own_and_sighup_drains() {
    let c = TestContainer::start(
        "fault-hup",
        &["--network", "none"],
        "trap 'sleep 1; exit 0' TERM; while true; do sleep 0.1; done",
    );
    let dir = Scratch::new("fault-hup");
    let state = dir.path("state");
    let state_arg = state.to_str().unwrap();
    // A writer that is gone (pid of a finished process) whose engine is away,
    // and a writer that runs (this test process, no lock: its pid and start time say it).
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let gone_pid = gone.id();
    gone.wait().unwrap();
    intent_file(
        &state,
        "away",
        r#"{"start_container":{"name":"away","id":"0123","docker_host":"unix:///nonexistent/docker.sock"}}"#,
        gone_pid,
        1,
    );
    intent_file(
        &state,
        "live",
        &format!(
            r#"{{"start_container":{{"name":"live","id":"{}","docker_host":"unix:///var/run/docker.sock"}}}}"#,
            c.id
        ),
        std::process::id(),
        my_start_ticks(),
    );
    let recover = agent(&["recover", "--state-dir", state_arg]);
    assert_eq!(recover.status.code(), Some(1), "{}", text(&recover));
    assert!(
        text(&recover).contains("could NOT start container away"),
        "{}",
        text(&recover)
    );
    assert!(
        text(&recover).contains("stopped live at "),
        "{}",
        text(&recover)
    );
    assert!(
        text(&recover).contains("that agent still runs; left to it"),
        "{}",
        text(&recover)
    );
    assert_eq!(open_intents(&state), 2, "both kept");

    // `run` restarts nothing while a target an earlier run left down cannot
    // be started.
    let scenario = dir.write(
        "s.yaml",
        &format!(
            "deployment: lab\nrepeat: 5\ntargets:\n  - docker: {{names: [{}]}}\n    stop_timeout: 5s\n    timeout: 30s\n",
            c.name
        ),
    );
    let started_at = c.inspect()["State"]["StartedAt"].clone();
    let refused = agent(&run_args(
        &scenario,
        &dir.path("refused"),
        &["--state-dir", state_arg],
    ));
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(
        text(&refused).contains("nothing was restarted"),
        "{}",
        text(&refused)
    );
    assert_eq!(c.inspect()["State"]["StartedAt"], started_at);

    // SIGHUP drains like Ctrl-C, and says which signal it was.
    std::fs::remove_dir_all(state.join("intents")).unwrap();
    let out_dir = dir.path("out");
    let began = now_nanos();
    let child = spawn_agent(&run_args(&scenario, &out_dir, &["--state-dir", state_arg]));
    assert!(until(20, || c
        .events(began, now_nanos())
        .iter()
        .any(|(a, _)| a == "kill")));
    unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("SIGHUP received"), "{}", text(&out));
    assert!(out_dir.join("summary.json").exists() && out_dir.join("histograms.hlog").exists());
    let tls = read_timelines(&out_dir);
    assert!(
        !tls.is_empty() && tls.len() < 5,
        "drained, then stopped: {}",
        tls.len()
    );
    assert_eq!(c.inspect()["State"]["Running"], true);
}

/// The restarts the collector holds for `run_id` (0 when it knows no such run).
fn collector_restarts(collector: &CollectorProcess, run_id: &str) -> u64 {
    let (status, body) = collector.http(
        "GET",
        &format!("/api/v1/runs/{run_id}"),
        Some(ADMIN_TOKEN),
        None,
    );
    if status == 404 {
        return 0;
    }
    assert_eq!(status, 200, "{body}");
    let run: serde_json::Value = serde_json::from_str(&body).unwrap();
    run["restarts"].as_u64().unwrap_or(0)
}

#[test]
fn a_batch_held_in_memory_when_the_agent_is_killed_reaches_the_collector_by_push() {
    let dir = Scratch::new("held-batch");
    // One container done in about a second, one whose stop takes 5 s: the
    // agent is still running (the second restart in flight) once the
    // first timeline is written and its batch held.
    let quick = TestContainer::start(
        "held-quick",
        &["--network", "none"],
        "trap 'sleep 1; exit 0' TERM; while true; do sleep 0.1; done",
    );
    let slow = TestContainer::start(
        "held-slow",
        &["--network", "none"],
        "trap 'sleep 5; exit 0' TERM; while true; do sleep 0.1; done",
    );
    let yaml = format!(
        "deployment: lab\nscenario: held\nconcurrency: 2\ntargets:\n  - docker: {{names: [{}, {}]}}\n    stop_timeout: 10s\n    timeout: 60s\n",
        quick.name, slow.name
    );
    let file = dir.write("held.yaml", &yaml);
    let out = dir.path("out");
    let collector = CollectorProcess::start(&dir.0);
    let token = dir.write("token", AGENT_TOKEN);
    let token = token.to_str().unwrap();
    let mut child = spawn_agent(&run_args(
        &file,
        &out,
        &["--collector", &collector.url(), "--token-file", token],
    ));
    // Once the stream started, the spool can take nothing more (a file
    // where its folder was: every batch write fails, like a full disk).
    assert!(
        until(30, || out.join("stream.json").exists()),
        "the stream never started"
    );
    let spool = out.join("spool");
    std::fs::remove_dir_all(&spool).unwrap();
    std::fs::write(&spool, b"").unwrap();
    assert!(
        until(30, || lines(&out.join("timelines.jsonl")) >= 1),
        "no timeline written"
    );
    child.kill().unwrap();
    let _ = child.wait();
    let written = read_timelines(&out);
    assert!(!written.is_empty());
    let run_id = written[0].run_id.to_string();
    assert_eq!(
        collector_restarts(&collector, &run_id),
        0,
        "the batch was never spooled nor sent"
    );

    // The spool has room again; push rebuilds what it never held.
    std::fs::remove_file(&spool).unwrap();
    let push = |label: &str| {
        let p = agent(&[
            "push",
            out.to_str().unwrap(),
            "--collector",
            &collector.url(),
            "--token-file",
            token,
            "--timeout",
            "30s",
        ]);
        assert!(p.status.success(), "{label}: {}", text(&p));
        text(&p)
    };
    let said = push("push");
    assert!(
        said.contains(&format!(
            "{} batch(es) never reached the spool",
            written.len()
        )),
        "{said}"
    );
    assert_eq!(
        collector_restarts(&collector, &run_id),
        written.len() as u64
    );
    // Pushed again: nothing rebuilt twice, nothing counted twice.
    let again = push("push again");
    assert!(!again.contains("never reached the spool"), "{again}");
    assert_eq!(
        collector_restarts(&collector, &run_id),
        written.len() as u64
    );
    // The killed restart was a `restart`: the engine finished it.
    assert!(until(30, || slow.inspect()["State"]["Running"] == true));
    println!(
        "held batch: {} timeline(s) only in memory at the kill, all at the collector after push",
        written.len()
    );
}
