//! `bounce-agent watch` against the real engine: restarts bounce did not
//! make (docker restart, stop then start, a crash the restart policy undoes,
//! a recreate with another image) each recorded once with its cause,
//! checked against the engine's own events; `run` and `watch` on the same
//! restart agree to the nanosecond; a watcher killed mid-restart and started
//! again loses nothing and repeats nothing.

use bounce_agent::docker::follow::KILL_AFTER_EXIT;
use bounce_tests::*;
use bounce_wire::{BoundaryName, Cause, Origin, Outcome, Phase, Source, TimelineRecord};
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

/// A container that stops on SIGTERM at once and comes back by itself after a crash.
fn policy_container(label: &str, extra: &[&str]) -> TestContainer {
    let mut opts = vec!["--network", "none", "--restart", "unless-stopped"];
    opts.extend_from_slice(extra);
    TestContainer::start(
        label,
        &opts,
        "trap 'exit 0' TERM; while true; do sleep 0.1; done",
    )
}

/// A watcher writing into `dir`, stopped (SIGKILL) when dropped.
struct Watcher(Child);

impl Watcher {
    /// Starts `bounce-agent watch` and waits until it follows the engine
    /// (it saves its cursor once it has opened the stream).
    fn start(dir: &Path, config: Option<&Path>) -> Watcher {
        Watcher::start_with(dir, config, &[])
    }

    fn start_with(dir: &Path, config: Option<&Path>, extra: &[&str]) -> Watcher {
        let mut args: Vec<std::ffi::OsString> = vec![
            "watch".into(),
            "-o".into(),
            dir.into(),
            "--node".into(),
            "wt".into(),
        ];
        if let Some(c) = config {
            args.extend(["--config".into(), c.into()]);
        }
        args.extend(extra.iter().map(|e| e.into()));
        let cursor = dir.join("watch-cursor.json");
        let before = std::fs::metadata(&cursor).and_then(|m| m.modified()).ok();
        let child = spawn_agent(&args);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::fs::metadata(&cursor).and_then(|m| m.modified()).ok() == before {
            assert!(Instant::now() < deadline, "the watcher did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Watcher(child)
    }

    fn kill9(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Every record the watcher wrote, over all its day folders.
fn watched(dir: &Path) -> Vec<TimelineRecord> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().join("timelines.jsonl").exists() {
            out.extend(read_timelines(&e.path()));
        }
    }
    out.sort_by_key(|r| r.events.first().map(|e| e.unix_nanos));
    out
}

/// What the watcher recorded of `name` so far.
fn records_of(dir: &Path, name: &str) -> Vec<TimelineRecord> {
    watched(dir)
        .into_iter()
        .filter(|r| r.service == name)
        .collect()
}

/// Waits (bounded) until the watcher recorded `n` restarts of `name`.
fn wait_for(dir: &Path, name: &str, n: usize) -> Vec<TimelineRecord> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = records_of(dir, name);
        if got.len() >= n || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The engine's own events for the followed container from `since` to
/// now, but `exec_*` (probes).
fn engine_events(events: &EngineEvents, since: i64) -> Vec<EngineEvent> {
    let mut all = events.between(since, now_nanos());
    all.retain(|(a, _)| !a.starts_with("exec_"));
    all
}

/// The engine's event `action` that the boundary stands for, checked: an
/// event source is that event's stamp, a state source is no later. The one
/// exception (scenarios/README.md, watch): `requested` placed at the exit,
/// which the engine's `kill` stamp followed, saying so in a note.
fn check_boundary(r: &TimelineRecord, b: BoundaryName, action: &str, engine: &[(String, i64)]) {
    let got = r.boundary(b).unwrap_or_else(|| panic!("no {b:?} in {r:?}"));
    let first = r.events.iter().map(|e| e.unix_nanos).min().unwrap();
    let ev = engine
        .iter()
        .filter(|(a, t)| a == action && *t >= first)
        .map(|(_, t)| *t)
        .next()
        .unwrap_or_else(|| panic!("the engine logged no {action}: {engine:?}"));
    let noted = r.notes.iter().any(|n| n.starts_with(KILL_AFTER_EXIT));
    if b == BoundaryName::Requested && (noted || got.unix_nanos != ev) {
        assert!(
            noted && Some(got) == r.boundary(BoundaryName::Exited) && got.unix_nanos < ev,
            "requested is neither the kill event nor the exit it followed: {r:?}"
        );
        return;
    }
    match &got.source {
        Source::DockerEvent { action: a } => {
            assert_eq!((a.as_str(), got.unix_nanos), (action, ev), "{b:?} in {r:?}")
        }
        Source::DockerState { .. } => assert!(
            got.unix_nanos <= ev && got.unix_nanos >= first - 1_000_000_000,
            "{b:?} from the state, not before its event: {r:?}"
        ),
        other => panic!("{b:?} from {other:?}"),
    }
}

#[test]
fn every_kind_of_restart_is_recorded_once_with_its_cause() {
    let dir = Scratch::new("watch-kinds");
    let config = dir.write("watch.yaml", "deployment: lab\nincomplete_after: 2s\n");
    let out = dir.path("watch");
    let c = policy_container("watch-kinds", &[]);
    let idle = policy_container("watch-idle", &[]);
    let _w = Watcher::start(&out, Some(&config));
    // By name: both containers of the recreate.
    let events = EngineEvents::follow(&c.name);
    let since = now_nanos();

    docker(&["restart", "-t", "5", &c.name]).unwrap();
    wait_for(&out, &c.name, 1);
    docker(&["stop", "-t", "5", &c.name]).unwrap();
    docker(&["start", &c.name]).unwrap();
    wait_for(&out, &c.name, 2);
    // A crash: SIGKILL to the main process (a `docker kill` counts as a
    // stop the operator asked for, and the engine would not bring it back).
    let pid = c.inspect()["State"]["Pid"].as_i64().unwrap();
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    wait_for(&out, &c.name, 3);
    docker(&["tag", IMAGE, "bounce-test/busybox:watch-new"]).unwrap();
    docker(&["rm", "-f", &c.name]).unwrap();
    let new_id = docker(&[
        "run",
        "-d",
        "--name",
        &c.name,
        "--network",
        "none",
        "bounce-test/busybox:watch-new",
        "sleep",
        "600",
    ])
    .unwrap();
    let _new = TestContainer {
        name: c.name.clone(),
        id: new_id.clone(),
    };
    // Stopped and never started again: closed as incomplete after 2 s.
    docker(&["stop", "-t", "5", &idle.name]).unwrap();

    let got = wait_for(&out, &c.name, 4);
    let idle_got = wait_for(&out, &idle.name, 1);
    std::thread::sleep(Duration::from_millis(1500)); // nothing more may come
    let got_again = records_of(&out, &c.name);
    assert_eq!(got.len(), 4, "{got:#?}");
    assert_eq!(got_again.len(), 4, "recorded twice: {got_again:#?}");
    let engine = engine_events(&events, since);
    let causes: Vec<Cause> = got.iter().map(|r| r.cause.unwrap()).collect();
    assert_eq!(
        causes,
        [
            Cause::Restart,
            Cause::StopStart,
            Cause::Crash,
            Cause::Recreate
        ]
    );
    for r in &got {
        assert_eq!(r.origin, Origin::Watch);
        assert_eq!(r.outcome, Outcome::Ok, "{r:?}");
        assert_eq!(r.deployment, "lab");
        assert_eq!(r.scenario, "watch");
        assert!(
            r.run_id.as_str().starts_with("watch-wt-20"),
            "{}",
            r.run_id.as_str()
        );
        // Every event in the record is one the engine logged, at its stamp.
        for e in &r.events {
            assert!(
                engine.contains(&(e.action.clone(), e.unix_nanos)),
                "{e:?} not in the engine's log {engine:?}"
            );
        }
        check_boundary(r, BoundaryName::Exited, "die", &engine);
        check_boundary(r, BoundaryName::Started, "start", &engine);
        assert!(r.phases.contains_key(&Phase::Start) && r.phases.contains_key(&Phase::Ready));
    }
    for r in [&got[0], &got[1], &got[3]] {
        check_boundary(r, BoundaryName::Requested, "kill", &engine);
        assert!(r.phases.contains_key(&Phase::Stop) && r.phases.contains_key(&Phase::Total));
    }
    let crash = &got[2];
    assert!(
        crash.boundary(BoundaryName::Requested).is_none(),
        "{crash:?}"
    );
    assert_eq!((crash.exit_code, crash.signals.len()), (Some(137), 0));
    let recreate = &got[3];
    check_boundary(recreate, BoundaryName::Removed, "destroy", &engine);
    check_boundary(recreate, BoundaryName::Created, "create", &engine);
    let r = recreate.recreated.as_ref().unwrap();
    assert_eq!(
        (r.old_id.as_str(), r.old_image.as_str()),
        (c.id.as_str(), IMAGE)
    );
    assert_eq!(r.new_image, "bounce-test/busybox:watch-new");
    assert!(matches!(&recreate.target, bounce_wire::TargetRef::Docker { id, .. } if *id == new_id));

    assert_eq!(idle_got.len(), 1, "{idle_got:#?}");
    let i = &idle_got[0];
    assert_eq!(
        (i.outcome, i.cause),
        (Outcome::Incomplete, Some(Cause::StopStart))
    );
    assert!(
        i.boundary(BoundaryName::Exited).is_some() && i.boundary(BoundaryName::Started).is_none()
    );
}

#[test]
fn run_and_watch_on_the_same_restart_agree_to_the_nanosecond() {
    let dir = Scratch::new("watch-agree");
    let out = dir.path("watch");
    let c = policy_container(
        "watch-agree",
        &[
            "--health-cmd",
            "true",
            "--health-interval",
            "1s",
            "--health-start-period",
            "0s",
        ],
    );
    c.wait_healthy(20);
    let _w = Watcher::start(&out, None);
    let events = EngineEvents::follow(&c.id);
    let since = now_nanos();
    let (_d, o, tls) = run_scenario(
        "watch-agree",
        &format!(
            "deployment: lab\ntargets:\n  - docker: {{names: [{}]}}\n    stop_timeout: 5s\n    timeout: 60s\n",
            c.name
        ),
    );
    assert!(o.status.success(), "{}", text(&o));
    let got = wait_for(&out, &c.name, 1);
    assert_eq!((tls.len(), got.len()), (1, 1), "{got:#?}");
    let (run, watch) = (&tls[0], &got[0]);
    assert_eq!(watch.cause, Some(Cause::Restart));
    // The engine's `kill`, or the exit when that preceded the kill's stamp.
    let engine = engine_events(&events, since);
    check_boundary(watch, BoundaryName::Requested, "kill", &engine);
    for b in [
        BoundaryName::Exited,
        BoundaryName::Started,
        BoundaryName::Ready,
    ] {
        assert_eq!(
            run.boundary(b),
            watch.boundary(b),
            "{b:?}: run {run:#?} watch {watch:#?}"
        );
    }
    assert!(matches!(
        watch.boundary(BoundaryName::Ready).unwrap().source,
        Source::DockerEvent { .. }
    ));
}

#[test]
fn a_watcher_killed_mid_restart_loses_nothing_and_repeats_nothing() {
    let dir = Scratch::new("watch-kill9");
    let out = dir.path("watch");
    let col = CollectorProcess::start(&dir.0);
    let token = dir.write("token", AGENT_TOKEN);
    let url = col.url();
    let to_collector = [
        "--collector",
        url.as_str(),
        "--token-file",
        token.to_str().unwrap(),
    ];
    let a = policy_container("watch-k9a", &[]);
    let b = policy_container("watch-k9b", &[]);
    let mut w = Watcher::start_with(&out, None, &to_collector);
    // a is stopped (its restart open), b restarted and recorded meanwhile.
    docker(&["stop", "-t", "5", &a.name]).unwrap();
    docker(&["restart", "-t", "5", &b.name]).unwrap();
    assert_eq!(wait_for(&out, &b.name, 1).len(), 1);
    std::thread::sleep(Duration::from_millis(1500)); // the cursor is saved every second
    w.kill9();
    docker(&["start", &a.name]).unwrap();
    let _w2 = Watcher::start_with(&out, None, &to_collector);
    let got_a = wait_for(&out, &a.name, 1);
    std::thread::sleep(Duration::from_millis(1500));
    let got_b = records_of(&out, &b.name);
    let got_a_again = records_of(&out, &a.name);
    assert_eq!(got_a.len(), 1);
    assert_eq!(got_a_again.len(), 1, "a twice: {got_a_again:#?}");
    assert_eq!(got_b.len(), 1, "b replayed and recorded twice: {got_b:#?}");
    let a_rec = &got_a[0];
    assert_eq!(
        (a_rec.cause, a_rec.outcome),
        (Some(Cause::StopStart), Outcome::Ok)
    );
    for p in [Phase::Stop, Phase::Start, Phase::Total] {
        assert!(a_rec.phases.contains_key(&p), "{p:?} missing: {a_rec:?}");
    }

    // The collector got both through the spool, once each, as watched restarts.
    let export = format!("/api/v1/runs/{}/export", a_rec.run_id);
    let deadline = Instant::now() + Duration::from_secs(20);
    let stored = loop {
        let (status, body) = col.http("GET", &export, Some(ADMIN_TOKEN), None);
        let data: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let tls: Vec<TimelineRecord> =
            serde_json::from_value(data["timelines"].clone()).unwrap_or_default();
        let ours = tls
            .iter()
            .filter(|t| t.service == a.name || t.service == b.name)
            .count();
        if (status == 200 && ours >= 2) || Instant::now() > deadline {
            break tls;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // (Watchers see every container: the other tests' too.)
    let mut names: Vec<(&str, Origin)> = stored
        .iter()
        .filter(|t| t.service == a.name || t.service == b.name)
        .map(|t| (t.service.as_str(), t.origin))
        .collect();
    names.sort();
    let mut want = vec![
        (a.name.as_str(), Origin::Watch),
        (b.name.as_str(), Origin::Watch),
    ];
    want.sort();
    assert_eq!(names, want);
}
