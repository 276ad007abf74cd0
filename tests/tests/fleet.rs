//! Fleet runs end to end: real agents, one per simulated node, each with its
//! own Docker engine (`harness/docker-nodes.sh`) so every node runs
//! containers under kolla's real names, and one real collector holding the
//! leases. The limits are checked from the timelines' own timestamps (the
//! nodes share this machine's clock): restarts of one key never overlap more
//! than its max, nor restarts of the fleet more than `max_in_flight`.
//! Then a collector killed mid-fleet, an agent killed mid-restart, an abort,
//! and bad input.

use bounce_tests::{
    ADMIN_TOKEN, AGENT_TOKEN, CollectorProcess, IMAGE, Scratch, agent, agent_command, bin,
    docker_on, read_timelines, run_args, text,
};
use bounce_wire::{BoundaryName, TimelineRecord};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The simulated nodes' engines are shared by the tests of this file: one at a time.
static NODES: Mutex<()> = Mutex::new(());

const NODE_NAMES: [&str; 6] = ["ctl1", "ctl2", "ctl3", "cmp1", "cmp2", "cmp3"];

/// Every simulated node's engine, started if missing: (name, DOCKER_HOST).
fn engines() -> BTreeMap<String, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("harness/docker-nodes.sh");
    let out = Command::new("bash")
        .arg(script)
        .arg("up")
        .args(NODE_NAMES)
        .output()
        .expect("docker-nodes.sh");
    assert!(out.status.success(), "docker-nodes.sh up: {}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Containers on nodes' engines, removed when dropped.
struct Containers(Vec<(String, String)>);

impl Containers {
    /// Runs `name` on the engine at `host`: a service whose stop takes
    /// `stop` seconds (its TERM handler sleeps first), like a real one.
    fn run(&mut self, host: &str, name: &str, stop: f64) {
        let _ = docker_on(host, &["rm", "-f", name]);
        let script = format!("trap 'sleep {stop}; exit 0' TERM; while :; do sleep 0.1; done");
        let args = [
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "none",
            IMAGE,
            "sh",
            "-c",
            &script,
        ];
        docker_on(host, &args).unwrap_or_else(|e| panic!("{name} on {host}: {e}"));
        self.0.push((host.into(), name.into()));
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        for (host, name) in &self.0 {
            let _ = docker_on(host, &["rm", "-f", name]);
        }
    }
}

/// One agent of the fleet run: its node, engine and run folder.
struct FleetAgent {
    node: String,
    out: PathBuf,
    child: Option<Child>,
}

fn start_agent(
    dir: &Scratch,
    scenario: &Path,
    node: &str,
    host: &str,
    collector: &CollectorProcess,
    run: &str,
    nodes: usize,
) -> FleetAgent {
    let out = dir.path(&format!("out-{node}"));
    start_agent_into(dir, scenario, (node, host), collector, run, nodes, out)
}

/// As `start_agent`, the run folder `out` (a node's second agent).
fn start_agent_into(
    dir: &Scratch,
    scenario: &Path,
    (node, host): (&str, &str),
    collector: &CollectorProcess,
    run: &str,
    nodes: usize,
    out: PathBuf,
) -> FleetAgent {
    let nodes = nodes.to_string();
    let state = dir.path(&format!("state-{node}"));
    let extra = [
        "--node",
        node,
        "--run-id",
        run,
        "--collector",
        &collector.url(),
        "--fleet-nodes",
        &nodes,
        "--state-dir",
        state.to_str().unwrap(),
        "--flush",
        "60s",
    ];
    let child = agent_command(&run_args(scenario, &out, &extra))
        .env("DOCKER_HOST", host)
        .env("BOUNCE_TOKEN", AGENT_TOKEN)
        .spawn()
        .expect("start bounce-agent");
    FleetAgent {
        node: node.into(),
        out,
        child: Some(child),
    }
}

impl FleetAgent {
    fn wait(&mut self) -> Output {
        self.child
            .take()
            .expect("running")
            .wait_with_output()
            .expect("agent output")
    }
    fn timelines(&self) -> Vec<TimelineRecord> {
        if self.out.join("timelines.jsonl").exists() {
            read_timelines(&self.out)
        } else {
            Vec::new()
        }
    }
}

impl Drop for FleetAgent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `bounce-collector fleet ACTION RUN [NODE]`: (exit status, stdout+stderr).
fn fleet_cli(c: &CollectorProcess, dir: &Scratch, args: &[&str]) -> (i32, String) {
    let token = dir.write("admin-cli.token", ADMIN_TOKEN);
    let out = Command::new(bin("bounce-collector"))
        .arg("fleet")
        .args(args)
        .args(["--collector", &c.url(), "--token-file"])
        .arg(token)
        .output()
        .expect("bounce-collector fleet");
    (out.status.code().unwrap_or(-1), text(&out))
}

fn status(c: &CollectorProcess, run: &str) -> Value {
    joined_status(c, run).expect("the fleet run is known to the collector")
}

/// The fleet's status, or `None` while no agent has joined it yet (404).
fn joined_status(c: &CollectorProcess, run: &str) -> Option<Value> {
    let (code, body) = c.http(
        "GET",
        &format!("/api/v1/fleets/{run}"),
        Some(ADMIN_TOKEN),
        None,
    );
    if code == 404 {
        return None;
    }
    assert_eq!(code, 200, "{body}");
    Some(serde_json::from_str(&body).unwrap())
}

/// Polls `f` every 100 ms for up to `secs`.
fn until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("not within {secs} s: {what}");
}

/// A restart's interval on the shared clock: requested → finished.
fn interval(t: &TimelineRecord) -> (i64, i64) {
    let at = |b| {
        t.boundary(b)
            .unwrap_or_else(|| panic!("no {b:?} in {t:?}"))
            .unix_nanos
    };
    (at(BoundaryName::Requested), at(BoundaryName::Finished))
}

/// The most intervals that hold one instant.
fn most_at_once(intervals: &[(i64, i64)]) -> usize {
    let mut edges: Vec<(i64, i32)> = intervals
        .iter()
        .flat_map(|(a, b)| [(*a, 1), (*b, -1)])
        .collect();
    // An end before a start at the same instant: touching is not overlapping.
    edges.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        most = most.max(now);
    }
    most as usize
}

/// Restarts the collector stored for a run.
fn stored(c: &CollectorProcess, run: &str) -> u64 {
    stored_yet(c, run).expect("the run is stored")
}

/// Restarts the collector stored for a run, `None` before its first batch.
fn stored_yet(c: &CollectorProcess, run: &str) -> Option<u64> {
    let (code, body) = c.http(
        "GET",
        &format!("/api/v1/runs/{run}"),
        Some(ADMIN_TOKEN),
        None,
    );
    if code == 404 {
        return None;
    }
    assert_eq!(code, 200, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["restarts"].as_u64()
}

const LIMITS: &str = r#"deployment: fleet-test
scenario: fleet-limits
concurrency: 1
on_failure: continue
targets:
  - docker: {names: ["nova_*"]}
    timeout: 60s
fleet:
  max_in_flight: 2
  lease_ttl: 3s
  limits:
    - {key: "service:{service}", max: 1}
"#;

#[test]
fn six_nodes_hold_the_fleet_limits_through_a_collector_kill() {
    let _one = NODES.lock().unwrap_or_else(|e| e.into_inner());
    let hosts = engines();
    let dir = Scratch::new("fleet-limits");
    let mut containers = Containers(Vec::new());
    for (node, host) in &hosts {
        let services: &[&str] = if node.starts_with("ctl") {
            &["nova_api", "nova_scheduler"]
        } else {
            &["nova_compute", "nova_libvirt"]
        };
        for s in services {
            containers.run(host, s, 0.6);
        }
    }
    let scenario = dir.write("fleet-limits.yaml", LIMITS);
    let mut collector = CollectorProcess::start(&dir.0);
    let run = "fleet-limits-1";
    let mut agents: Vec<FleetAgent> = hosts
        .iter()
        .map(|(node, host)| start_agent(&dir, &scenario, node, host, &collector, run, 6))
        .collect();

    // Mid-fleet (some restarts done, most not), the collector dies and comes back.
    until(120, "a first restart done", || {
        agents.iter().any(|a| !a.timelines().is_empty())
    });
    collector.kill9();
    std::thread::sleep(Duration::from_millis(1500));
    collector.restart();

    let mut all = Vec::new();
    for a in &mut agents {
        let out = a.wait();
        assert_eq!(out.status.code(), Some(0), "{}: {}", a.node, text(&out));
        let t = a.timelines();
        assert_eq!(t.len(), 2, "{}: every restart made", a.node);
        all.extend(t);
    }
    assert_eq!(all.len(), 12);
    // Limits, from the timelines' own timestamps.
    let intervals: Vec<(i64, i64)> = all.iter().map(interval).collect();
    assert!(most_at_once(&intervals) <= 2, "max_in_flight 2 exceeded");
    assert_eq!(most_at_once(&intervals), 2, "the fleet used its 2 slots");
    for service in ["nova_api", "nova_scheduler", "nova_compute", "nova_libvirt"] {
        let of: Vec<(i64, i64)> = all
            .iter()
            .filter(|t| t.service == service)
            .map(interval)
            .collect();
        assert_eq!(of.len(), 3, "{service} on its 3 nodes");
        assert_eq!(most_at_once(&of), 1, "two {service} restarted at once");
    }
    // Totals at the collector equal the agents' own; the fleet is done.
    assert_eq!(stored(&collector, run), 12);
    let s = status(&collector, run);
    assert_eq!(s["state"]["state"], "done", "{s}");
    assert_eq!(s["failures"]["total"], 0, "{s}");
    drop(containers);
}

const LOST: &str = r#"deployment: fleet-test
scenario: fleet-lost
targets:
  - docker: {names: [keystone, glance_api]}
    timeout: 60s
fleet:
  max_in_flight: 1
  lease_ttl: 2s
"#;

/// An agent killed mid-restart (after a first restart of its own, stored):
/// its node is lost and the fleet paused; a new agent on it is refused
/// until an operator resolves the node; then it rejoins under the same run
/// id and restarts its scenario again, the earlier result kept.
#[test]
fn an_agent_killed_mid_restart_is_lost_until_resolved_then_rejoins() {
    let _one = NODES.lock().unwrap_or_else(|e| e.into_inner());
    let hosts = engines();
    let dir = Scratch::new("fleet-lost");
    let mut containers = Containers(Vec::new());
    let nodes = ["ctl1", "ctl2"];
    for n in nodes {
        containers.run(&hosts[n], "keystone", 4.0);
        containers.run(&hosts[n], "glance_api", 4.0);
    }
    let scenario = dir.write("fleet-lost.yaml", LOST);
    let collector = CollectorProcess::start(&dir.0);
    let run = "fleet-lost-1";
    let mut agents: Vec<FleetAgent> = nodes
        .iter()
        .map(|n| start_agent(&dir, &scenario, n, &hosts[*n], &collector, run, 2))
        .collect();

    // Killed mid-restart: a node restarting with a restart of its own
    // already made and stored.
    let mut holder = String::new();
    until(90, "a node restarting its second target", || {
        let Some(s) = joined_status(&collector, run) else {
            return false;
        };
        let made: usize = agents.iter().map(|a| a.timelines().len()).sum();
        let found = s["nodes"].as_array().and_then(|ns| {
            ns.iter()
                .map(|n| n["node"].as_str().unwrap().to_string())
                .find(|name| {
                    ns.iter()
                        .any(|n| n["node"] == name.as_str() && n["state"] == "restarting")
                        && agents
                            .iter()
                            .any(|a| &a.node == name && a.timelines().len() == 1)
                })
        });
        let all_stored = stored_yet(&collector, run) == Some(made as u64);
        found.map(|n| holder = n).is_some() && all_stored
    });
    let victim = agents.iter_mut().find(|a| a.node == holder).unwrap();
    let mut child = victim.child.take().unwrap();
    child.kill().unwrap();
    let _ = child.wait();
    let earlier = stored(&collector, run);

    until(30, "the fleet paused with the node lost", || {
        let s = status(&collector, run);
        s["state"]["state"] == "paused"
            && s["state"]["reason"]["why"] == "lost"
            && s["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n["node"] == holder.as_str() && n["state"] == "lost")
    });
    let (code, out) = fleet_cli(&collector, &dir, &["resume", run]);
    assert_ne!(code, 0, "resume before resolve: {out}");
    assert!(out.contains("resolve them before resuming"), "{out}");
    let (code, out) = fleet_cli(&collector, &dir, &["status", run]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("{holder}  LOST: docker keystone #1"))
            || out.contains(&format!("{holder}  LOST: docker glance_api #1")),
        "{out}"
    );
    assert!(
        out.contains(&format!("fleet resolve {run} {holder}")),
        "{out}"
    );
    let (code, out) = fleet_cli(&collector, &dir, &["status", run, "--json"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\"lost\""), "{out}");

    // A new agent on the lost node, before the operator resolved it: refused
    // before it restarts anything.
    let host = hosts[holder.as_str()].as_str();
    let again = |out: &str| {
        let out = dir.path(out);
        start_agent_into(&dir, &scenario, (&holder, host), &collector, run, 2, out)
    };
    let early = again("out-early").wait();
    assert_ne!(early.status.code(), Some(0), "{}", text(&early));
    assert!(
        text(&early).contains(&format!(
            "`bounce-collector fleet resolve {run} {holder}`, then start this agent again (nothing was restarted)"
        )),
        "{}",
        text(&early)
    );

    let (code, out) = fleet_cli(&collector, &dir, &["resolve", run, &holder]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("{holder}  resolved by admin")),
        "{out}"
    );
    // Its new agent rejoins (the fleet stays paused until resumed).
    let mut rejoined = again("out-rejoined");
    until(30, "the node rejoined", || {
        status(&collector, run)["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["node"] == holder.as_str() && n["epoch"] == 1 && n["state"] != "resolved")
    });
    let (code, out) = fleet_cli(&collector, &dir, &["resume", run]);
    assert_eq!(code, 0, "{out}");
    let other = agents.iter_mut().find(|a| a.node != holder).unwrap();
    let out = other.wait();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(other.timelines().len(), 2, "the other node's restarts made");
    let out = rejoined.wait();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("rejoins the run after an operator resolved it (epoch 1)"),
        "{}",
        text(&out)
    );
    assert_eq!(
        rejoined.timelines().len(),
        2,
        "the rejoined node's restarts made"
    );
    // The killed agent's stored result is kept beside the rejoined one's:
    // its first restart, the other node's two, the rejoined agent's two.
    assert!(earlier >= 1, "{earlier} stored when the agent was killed");
    until(30, "every result stored", || stored(&collector, run) == 5);
    let s = status(&collector, run);
    assert_eq!(s["state"]["state"], "done", "{s}");
    let (_, words) = fleet_cli(&collector, &dir, &["status", run]);
    assert!(
        words.contains("rejoined after a resolve by admin"),
        "{words}"
    );
    drop(containers);
}

const ABORT: &str = r#"deployment: fleet-test
scenario: fleet-abort
targets:
  - docker: {names: ["nova_*"]}
    timeout: 60s
fleet:
  max_in_flight: 1
"#;

#[test]
fn abort_mid_fleet_starts_nothing_new_anywhere() {
    let _one = NODES.lock().unwrap_or_else(|e| e.into_inner());
    let hosts = engines();
    let dir = Scratch::new("fleet-abort");
    let mut containers = Containers(Vec::new());
    let nodes = ["ctl1", "ctl2", "ctl3"];
    for n in nodes {
        for s in ["nova_api", "nova_scheduler", "nova_conductor"] {
            containers.run(&hosts[n], s, 0.3);
        }
    }
    let scenario = dir.write("fleet-abort.yaml", ABORT);
    let collector = CollectorProcess::start(&dir.0);
    let run = "fleet-abort-1";
    let mut agents: Vec<FleetAgent> = nodes
        .iter()
        .map(|n| start_agent(&dir, &scenario, n, &hosts[*n], &collector, run, 3))
        .collect();
    until(60, "a first restart done", || {
        agents.iter().any(|a| !a.timelines().is_empty())
    });
    let (code, out) = fleet_cli(&collector, &dir, &["abort", run, "--json"]);
    assert_eq!(code, 0, "{out}");
    let aborted_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let view: Value =
        serde_json::from_str(&out[out.find('{').unwrap()..out.rfind('}').unwrap() + 1]).unwrap();
    assert_eq!(view["state"]["state"], "aborted", "{view}");
    assert!(
        view["state"]["by"]
            .as_str()
            .is_some_and(|by| by.starts_with("admin token ")),
        "who aborted: {view}"
    );
    // What was in flight at the abort may finish; nothing else starts.
    let in_flight: Vec<(String, String)> = view["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|n| {
            n["restarting"].as_array().unwrap().iter().map(move |r| {
                (
                    n["node"].as_str().unwrap().to_string(),
                    r["restart"]["target"].as_str().unwrap().to_string(),
                )
            })
        })
        .collect();
    let mut total = 0;
    for a in &mut agents {
        let out = a.wait();
        assert_eq!(out.status.code(), Some(1), "{}: {}", a.node, text(&out));
        assert!(
            text(&out).contains("aborted by an operator"),
            "{}",
            text(&out)
        );
        assert!(
            a.out.join("summary.json").exists(),
            "{}: results written",
            a.node
        );
        for t in a.timelines() {
            let (requested, _) = interval(&t);
            assert!(
                requested < aborted_at || in_flight.contains(&(a.node.clone(), t.service.clone())),
                "{} {} started after the abort",
                a.node,
                t.service
            );
            total += 1;
        }
    }
    assert!(total < 9, "the abort stopped the fleet");
    assert_eq!(stored(&collector, run), total, "every result stored");
    drop(containers);
}

#[test]
fn bad_fleet_input_is_refused() {
    let dir = Scratch::new("fleet-bad");
    // Plan errors with file:line.
    let bad = dir.write(
        "bad.yaml",
        "deployment: d\ntargets:\n  - docker: {names: [x]}\nfleet:\n  max_in_flight: 2\n  limits:\n    - {key: \"svc:{servcie}\", max: 1}\n",
    );
    let out = agent(&["check".as_ref(), bad.as_os_str()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("bad.yaml:7:"), "{}", text(&out));
    assert!(
        text(&out).contains("unknown field {servcie}"),
        "{}",
        text(&out)
    );
    let bad = dir.write(
        "pct.yaml",
        "deployment: d\ntargets:\n  - docker: {names: [x]}\nfleet:\n  max_in_flight: 101%\n",
    );
    let out = agent(&["check".as_ref(), bad.as_os_str()]);
    assert!(text(&out).contains("pct.yaml:5:"), "{}", text(&out));
    // A fleet scenario alone is refused before anything is resolved.
    let good = dir.write(
        "good.yaml",
        "deployment: d\ntargets:\n  - docker: {names: [x]}\nfleet:\n  max_in_flight: 1\n",
    );
    let out = agent(&run_args(&good, &dir.path("out"), &[]));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--fleet-nodes"), "{}", text(&out));

    // Leases: a token bound to ctl1 may not act as ctl2; a run's calls name its own nodes.
    let c = CollectorProcess::start_with_agent_tokens(
        &dir.0,
        &format!("{AGENT_TOKEN} ctl1\nsecond-agent-token-0123456789 ctl2\n"),
        &[],
    );
    let join = |node: &str| {
        format!(
            r#"{{"node":"{node}","call":{{"join":{{"labels":{{}},"terms":{{"deployment":"d","scenario":"s","limits":{{"max_in_flight":1,"max_failures":1,"limits":[]}},"nodes":1,"node_concurrency":1,"lease_ttl_ms":30000}}}}}}}}"#
        )
    };
    let path = "/api/v1/fleets/r1/agent";
    let (code, body) = c.http(
        "POST",
        path,
        Some(AGENT_TOKEN),
        Some(join("ctl2").as_bytes()),
    );
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("may only send as ctl1"), "{body}");
    let (code, body) = c.http(
        "POST",
        path,
        Some(AGENT_TOKEN),
        Some(join("ctl1").as_bytes()),
    );
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(r#""open":true"#), "{body}");
    // ctl2's own token, but run r1 opened without it.
    let (code, body) = c.http(
        "POST",
        path,
        Some("second-agent-token-0123456789"),
        Some(join("ctl2").as_bytes()),
    );
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("not one of them"), "{body}");
    let ask = r#"{"node":"ctl2","call":{"ask":{"restarts":[{"kind":"docker","service":"a","target":"a","iteration":1}]}}}"#;
    let (code, body) = c.http(
        "POST",
        path,
        Some("second-agent-token-0123456789"),
        Some(ask.as_bytes()),
    );
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("is not in this fleet run"), "{body}");
    let (code, body) = c.http(
        "POST",
        path,
        Some(AGENT_TOKEN),
        Some(b"{\"node\":\"ctl1\"}"),
    );
    assert_eq!(code, 400, "{body}");
    let (code, _) = c.http("GET", "/api/v1/fleets/r1", Some(AGENT_TOKEN), None);
    assert_eq!(code, 403, "status needs an admin token");
}

#[test]
fn the_playbook_runs_a_fleet_over_an_inventory() {
    let _one = NODES.lock().unwrap_or_else(|e| e.into_inner());
    let hosts = engines();
    let dir = Scratch::new("fleet-ansible");
    let mut containers = Containers(Vec::new());
    let nodes = ["ctl1", "ctl2"];
    for n in nodes {
        containers.run(&hosts[n], "nova_api", 0.2);
    }
    let scenario = dir.write("fleet-ansible.yaml", ABORT);
    let collector = CollectorProcess::start(&dir.0);
    let token = dir.write("agent.token", AGENT_TOKEN);
    // Two inventory hosts on this machine, each its own node and engine.
    let mut inventory = String::from("all:\n  hosts:\n");
    for (i, n) in nodes.iter().enumerate() {
        inventory.push_str(&format!(
            "    {n}:\n      ansible_connection: local\n      ansible_python_interpreter: /usr/bin/python3\n      bounce_labels: {{rack: r{i}}}\n      bounce_env: {{DOCKER_HOST: \"{}\"}}\n",
            hosts[*n]
        ));
    }
    let inventory = dir.write("inventory.yml", &inventory);
    let playbook = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/ansible/fleet-run.yml");
    let fetched = dir.path("fetched");
    let out = Command::new("ansible-playbook")
        .arg("-i")
        .arg(&inventory)
        .arg(&playbook)
        .args(["-e", "bounce_run_id=fleet-ansible-1"])
        .arg("-e")
        .arg(format!("bounce_scenario={}", scenario.display()))
        .arg("-e")
        .arg(format!("bounce_collector={}", collector.url()))
        .arg("-e")
        .arg(format!("bounce_agent={}", bin("bounce-agent").display()))
        .arg("-e")
        .arg(format!("bounce_dir={}", dir.path("bounce").display()))
        .arg("-e")
        .arg(format!("bounce_token_file={}", token.display()))
        .arg("-e")
        .arg(format!("bounce_fetch_to={}", fetched.display()))
        .env("ANSIBLE_LOCAL_TEMP", dir.path("ansible-tmp"))
        .env("ANSIBLE_HOME", dir.path("ansible-home"))
        .output()
        .expect("ansible-playbook (Debian: apt-get install ansible-core)");
    assert!(out.status.success(), "{}", text(&out));
    for n in nodes {
        let tarball = fetched.join(format!("{n}.tar.gz"));
        let listing = Command::new("tar")
            .arg("-tzf")
            .arg(&tarball)
            .output()
            .unwrap();
        let listing = String::from_utf8_lossy(&listing.stdout);
        assert!(listing.contains("summary.json"), "{n}: {listing}");
        assert!(listing.contains("timelines.jsonl"), "{n}: {listing}");
    }
    assert_eq!(
        stored(&collector, "fleet-ansible-1"),
        2,
        "both nodes' restarts"
    );
    let s = status(&collector, "fleet-ansible-1");
    assert_eq!(s["state"]["state"], "done", "{s}");
    drop(containers);
}
