//! What ships to install bounce, tried for real: the container images built
//! with the local engine and run with host networking (the agent image runs
//! the README demo's scenario against the host's engine through the mounted
//! socket, and the run lands at the collector image over TLS, read back
//! from its API and its protected /metrics), the collector's systemd unit verified and run
//! by a real systemd manager, the Ansible roles applied twice (the second
//! run changes nothing) into a folder standing for `/`, and the Prometheus
//! scrape configuration checked by promtool.

use bounce_tests::pki::TestCa;
use bounce_tests::{ADMIN_TOKEN, Scratch, TestContainer, bin, docker, free_port, listening};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

const METRICS_TOKEN: &str = "metrics-token-for-tests-0123456789";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn ok(what: &str, out: Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{what} failed: {}\n{text}",
        out.status
    );
    text
}

/// scripts/images.sh links the test build's binaries again (statically) in
/// place: while it does, no other test of this file may read them.
static LINKING: Mutex<()> = Mutex::new(());

/// The test build's binaries, copied (outside any relinking) into
/// `dir/bin`: what the other tests run and install.
fn binaries(dir: &Scratch) -> PathBuf {
    let to = dir.0.join("bin");
    std::fs::create_dir_all(&to).unwrap();
    let (agent, collector) = (bin("bounce-agent"), bin("bounce-collector"));
    let _held = LINKING.lock().unwrap_or_else(|e| e.into_inner());
    for b in [agent, collector] {
        std::fs::copy(&b, to.join(b.file_name().unwrap())).unwrap();
    }
    to
}

/// `bounce-collector runs` against a running collector over TLS with the
/// admin token: what an operator would type.
fn runs_over_tls(port: u16, ca: &Path, dir: &Scratch) -> String {
    let token = dir.write("admin-reader.token", ADMIN_TOKEN);
    ok(
        "bounce-collector runs",
        Command::new(dir.0.join("bin/bounce-collector"))
            .args(["runs", "--collector", &format!("https://localhost:{port}")])
            .arg("--ca-file")
            .arg(ca)
            .arg("--token-file")
            .arg(&token)
            .output()
            .unwrap(),
    )
}

/// Waits (bounded) until something accepts connections on the port.
fn wait_listening(port: u16, what: &str) {
    assert!(listening(port), "{what} did not listen on 127.0.0.1:{port}");
}

/// A container by name, removed when dropped (for containers the test runs
/// from the bounce images, which TestContainer's busybox start cannot).
struct Named(String);

impl Drop for Named {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", &self.0]).output();
    }
}

/// The README demo's three containers, started as `scripts/demo.sh`
/// starts them but named for this test (`bounce-t-demo-*-PID`), the API
/// on `api_port`: an API that takes 0.3 s to stop and exits 143 on
/// SIGTERM (host network, as kolla runs it), a worker whose health check
/// passes 1.5 s after it starts, and a process that ignores SIGTERM.
fn demo_containers(api_port: u16) -> [TestContainer; 3] {
    let api = TestContainer::start(
        "demo-api",
        &["--network", "host"],
        &format!(
            "trap 'sleep 0.3; exit 143' TERM; sleep 0.4; httpd -f -p 127.0.0.1:{api_port} -h /www & wait"
        ),
    );
    let worker = TestContainer::start(
        "demo-worker",
        &[
            "--network",
            "none",
            "--health-cmd",
            "test -f /tmp/ready",
            "--health-interval",
            "1s",
        ],
        "rm -f /tmp/ready; trap 'exit 0' TERM; (sleep 1.5; touch /tmp/ready) & while true; do sleep 0.1; done",
    );
    let stubborn = TestContainer::start("demo-stubborn", &["--network", "none"], "sleep 86400");
    worker.wait_healthy(120);
    [api, worker, stubborn]
}

/// scenarios/demo.yaml as the demo runs it, with this test's container
/// names and API port in place of `bounce-demo-*` and 18774 (so a demo
/// running beside the test is left alone); and its `repeat`.
fn demo_scenario(containers: &[TestContainer; 3], api_port: u16) -> (String, u32) {
    let mut yaml = std::fs::read_to_string(repo().join("scenarios/demo.yaml")).unwrap();
    for (shipped, c) in [
        "bounce-demo-api",
        "bounce-demo-worker",
        "bounce-demo-stubborn",
    ]
    .iter()
    .zip(containers)
    {
        assert!(yaml.contains(shipped), "demo.yaml names no {shipped}");
        yaml = yaml.replace(shipped, &c.name);
    }
    assert!(yaml.contains("18774"), "demo.yaml probes no port 18774");
    let yaml = yaml.replace("18774", &api_port.to_string());
    let repeat = yaml
        .lines()
        .find_map(|l| l.strip_prefix("repeat: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("demo.yaml has no top-level repeat:\n{yaml}"));
    (yaml, repeat)
}

/// Waits (bounded, generously: the engine is shared and loaded) until the
/// collector container accepts connections on 127.0.0.1:`port`; fails
/// with its log if it ended instead.
fn wait_serving(port: u16, container: &str) {
    for _ in 0..600 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        let running = docker(&["inspect", "-f", "{{.State.Running}}", container]);
        if running.is_ok_and(|r| r == "false") {
            let log = Command::new("docker")
                .args(["logs", container])
                .output()
                .unwrap();
            panic!(
                "{container} ended before it listened:\n{}",
                String::from_utf8_lossy(&log.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("{container} did not listen on 127.0.0.1:{port} within 60 s");
}

/// `curl /metrics` over TLS, with a bearer token or none: (status, body).
fn scrape(port: u16, ca: &Path, token: Option<&str>) -> (String, String) {
    let mut curl = Command::new("curl");
    curl.args(["-sS", "-w", "\n%{http_code}", "--cacert"])
        .arg(ca);
    if let Some(t) = token {
        curl.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    curl.arg(format!("https://localhost:{port}/metrics"));
    let out = ok("curl /metrics", curl.output().unwrap());
    let (body, status) = out.rsplit_once('\n').unwrap_or_default();
    (status.to_string(), body.to_string())
}

#[test]
fn the_images_build_and_the_agent_image_runs_the_demo_to_the_collector_image_over_tls() {
    bounce_tests::docker_up();
    // The test's own (debug) build, linked again statically by images.sh;
    // built here first so that no other test of this process builds (and
    // links dynamically) while images.sh copies the static binaries.
    bin("bounce-agent");
    let linking = LINKING.lock().unwrap_or_else(|e| e.into_inner());
    let built = ok(
        "scripts/images.sh",
        Command::new("bash")
            .arg(repo().join("scripts/images.sh"))
            .env("TAG", "e2e")
            .env("PROFILE", "dev")
            .output()
            .unwrap(),
    );
    assert!(
        built.contains("IMAGE=bounce/collector:e2e") && built.contains("IMAGE=bounce/agent:e2e"),
        "{built}"
    );
    drop(linking);
    // Nothing but the binary and a few files: no shell to run a command in.
    let shell = docker(&["run", "--rm", "--entrypoint", "/bin/sh", "bounce/agent:e2e"]);
    assert!(shell.is_err(), "the agent image has a shell");
    assert_eq!(
        docker(&[
            "image",
            "inspect",
            "-f",
            "{{.Config.User}}",
            "bounce/collector:e2e"
        ])
        .unwrap(),
        "65532:65532",
        "the collector image runs as bounce, not root"
    );

    // /etc/bounce as docs/deploying.md lays it out for the collector
    // image: the CA, the collector's certificate, a CRL (revoking nothing),
    // admin and metrics tokens, and the node's certificate for the agent.
    let dir = Scratch::new("images");
    binaries(&dir);
    let etc = dir.0.join("etc");
    let state = dir.0.join("state");
    let agent_state = dir.0.join("agent-state");
    for d in [&etc, &state, &agent_state, &etc.join("scenarios")] {
        std::fs::create_dir_all(d).unwrap();
    }
    let ca = TestCa::new(&etc, "ca");
    ca.issue("collector", &["localhost", "127.0.0.1"]);
    ca.issue("img-node", &["img-node"]);
    ca.crl("crl.pem", &[]);
    std::fs::write(etc.join("admin.tokens"), ADMIN_TOKEN).unwrap();
    std::fs::write(etc.join("metrics.tokens"), METRICS_TOKEN).unwrap();
    // The collector's uid reads its key and tokens and writes its volume,
    // as an operator sets it up.
    chown(&state, 65532);
    for f in ["collector.key", "admin.tokens", "metrics.tokens"] {
        chown(&etc.join(f), 65532);
    }

    // The demo's containers on the host's engine, and its scenario.
    let api_port = free_port();
    let containers = demo_containers(api_port);
    let (scenario, repeat) = demo_scenario(&containers, api_port);
    std::fs::write(etc.join("scenarios/demo.yaml"), scenario).unwrap();
    let started_before: Vec<String> = containers
        .iter()
        .map(|c| c.inspect()["State"]["StartedAt"].to_string())
        .collect();

    // The collector image with docs/deploying.md's run line: TLS, node
    // certificates checked against the CA and the CRL, /metrics only for a
    // metrics (or admin) token; on a loopback port here.
    let port = free_port();
    let collector = Named(format!("bounce-t-img-collector-{}", std::process::id()));
    let etc_mount = format!("{}:/etc/bounce:ro", etc.display());
    docker(&[
        "run",
        "-d",
        "--name",
        &collector.0,
        "--network",
        "host",
        "-v",
        &etc_mount,
        "-v",
        &format!("{}:/var/lib/bounce", state.display()),
        "bounce/collector:e2e",
        "serve",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--store",
        "/var/lib/bounce/store.db",
        "--tls-cert",
        "/etc/bounce/collector.crt",
        "--tls-key",
        "/etc/bounce/collector.key",
        "--client-ca",
        "/etc/bounce/ca.pem",
        "--tls-client-crl",
        "/etc/bounce/crl.pem",
        "--admin-token-file",
        "/etc/bounce/admin.tokens",
        "--protect-metrics",
        "--metrics-token-file",
        "/etc/bounce/metrics.tokens",
        "--audit-log",
        "/var/lib/bounce/audit.jsonl",
    ])
    .expect("the collector image starts");
    wait_serving(port, &collector.0);

    // The agent image runs the demo against the host's engine through the
    // mounted socket, streaming to the collector with its node certificate.
    let agent = Named(format!("bounce-t-img-agent-{}", std::process::id()));
    let ran = Command::new("docker")
        .args(["run", "--name", &agent.0, "--network", "host"])
        .args(["-v", "/var/run/docker.sock:/var/run/docker.sock"])
        .args(["-v", &etc_mount])
        .args(["-v", &format!("{}:/var/lib/bounce", agent_state.display())])
        .args(["bounce/agent:e2e", "run", "/etc/bounce/scenarios/demo.yaml"])
        .args(["--output", "/var/lib/bounce/run", "--run-id", "img-demo"])
        .args(["--node", "img-node", "--no-progress"])
        .args(["--collector", &format!("https://localhost:{port}")])
        .args(["--ca-file", "/etc/bounce/ca.pem"])
        .args(["--client-cert", "/etc/bounce/img-node.crt"])
        .args(["--client-key", "/etc/bounce/img-node.key"])
        .output()
        .unwrap();
    let said = ok("the agent image's run of the demo", ran);
    let timelines = bounce_tests::read_timelines(&agent_state.join("run"));
    assert_eq!(
        timelines.len(),
        3 * repeat as usize,
        "the agent's run folder (in its volume) holds the demo's restarts:\n{said}"
    );
    for t in &timelines {
        assert_eq!(
            t.outcome,
            bounce_wire::timeline::Outcome::Ok,
            "{} round {}: {:?}\n{said}",
            t.service,
            t.iteration,
            t.error
        );
    }

    // What was restarted runs again: each container started anew, the
    // worker healthy, the API listening.
    for (c, before) in containers.iter().zip(&started_before) {
        let state = &c.inspect()["State"];
        assert_eq!(state["Running"], true, "{} is not running", c.name);
        assert_ne!(
            &state["StartedAt"].to_string(),
            before,
            "{} was not restarted",
            c.name
        );
    }
    containers[1].wait_healthy(120);
    assert!(
        listening(api_port),
        "the demo API does not listen on 127.0.0.1:{api_port} after its restarts"
    );

    // At the collector image: the run over the read API (admin token) ...
    let runs = runs_over_tls(port, &etc.join("ca.pem"), &dir);
    let line = runs
        .lines()
        .find(|l| l.contains("img-demo"))
        .unwrap_or_else(|| panic!("the run did not land at the collector image:\n{runs}"));
    assert!(line.contains("demo"), "{line}");
    assert!(
        state.join("store.db").exists(),
        "the store is not in the volume"
    );
    // ... and Prometheus' view: /metrics with the metrics token, every
    // restart of the run in it, ok; without a token, refused.
    let (status, metrics) = scrape(port, &etc.join("ca.pem"), Some(METRICS_TOKEN));
    assert_eq!(status, "200", "the metrics token reads /metrics: {metrics}");
    for c in &containers {
        let ok_line = metrics
            .lines()
            .find(|l| {
                l.starts_with("bounce_restarts_total{deployment=\"demo\"")
                    && l.contains(&format!("service=\"{}\"", c.name))
                    && l.contains("outcome=\"ok\"")
            })
            .unwrap_or_else(|| panic!("no ok restarts of {} in /metrics:\n{metrics}", c.name));
        assert!(ok_line.ends_with(&format!(" {repeat}")), "{ok_line}");
    }
    let (anonymous, _) = scrape(port, &etc.join("ca.pem"), None);
    assert_eq!(
        anonymous, "401",
        "--protect-metrics refuses /metrics without a token"
    );
}

fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(uid)).unwrap();
}

/// The unit as shipped, but for the binary's and the configuration's paths.
fn collector_unit_for(config: &Path, bins: &Path) -> String {
    std::fs::read_to_string(repo().join("deploy/systemd/bounce-collector.service"))
        .unwrap()
        .replace(
            "/usr/local/bin/bounce-collector",
            bins.join("bounce-collector").to_str().unwrap(),
        )
        .replace("/etc/bounce", config.to_str().unwrap())
}

#[test]
fn the_units_verify_and_the_collector_unit_serves_tls_under_a_real_systemd() {
    let dir = Scratch::new("unit");
    let bins = binaries(&dir);
    let ca = TestCa::new(&dir.0, "ca");
    ca.issue("collector", &["localhost"]);
    std::fs::write(dir.0.join("admin.tokens"), ADMIN_TOKEN).unwrap();
    let port = free_port();
    std::fs::write(
        dir.0.join("collector.env"),
        format!("BOUNCE_LISTEN=127.0.0.1:{port}\n"),
    )
    .unwrap();

    let unit = dir.write(
        "bounce-collector.service",
        &collector_unit_for(&dir.0, &bins),
    );
    let watch = dir.write(
        "bounce-agent-watch.service",
        &std::fs::read_to_string(repo().join("deploy/systemd/bounce-agent-watch.service"))
            .unwrap()
            .replace(
                "/usr/local/bin/bounce-agent",
                bins.join("bounce-agent").to_str().unwrap(),
            ),
    );
    ok(
        "systemd-analyze verify",
        Command::new("systemd-analyze")
            .arg("verify")
            .args([&unit, &watch])
            .output()
            .unwrap(),
    );

    // Hardened: systemd's own rating of the sandbox, offline.
    let security = ok(
        "systemd-analyze security",
        Command::new("systemd-analyze")
            .args(["security", "--offline=yes"])
            .arg(&unit)
            .output()
            .unwrap(),
    );
    let exposure: f64 = security
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for bounce-collector.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{security}"));
    assert!(
        exposure <= 2.0,
        "the collector unit is exposed ({exposure}):\n{security}"
    );

    // Run by the test's systemd, a user manager (PID 1 here is not
    // systemd): it has no `bounce` user to switch to (the Ansible role makes
    // it on a real node), and in this container it cannot set up the
    // sandbox's namespaces (226/NAMESPACE), so those lines go; what is left
    // is the unit's wiring: the environment file, the state and logs
    // folders, TLS, reload.
    let state = format!("bounce-t-unit-{}", std::process::id());
    let sandbox = [
        "User=",
        "Group=",
        "Protect",
        "Private",
        "Restrict",
        "SystemCall",
        "MemoryDeny",
        "LockPersonality",
        "Capability",
        "Ambient",
        "NoNewPriv",
        "RemoveIPC",
        "ProcSubset",
    ];
    let body = collector_unit_for(&dir.0, &bins)
        .lines()
        .filter(|l| !sandbox.iter().any(|s| l.starts_with(s)))
        .map(|l| match l {
            "StateDirectory=bounce" => format!("StateDirectory={state}"),
            "LogsDirectory=bounce" => format!("LogsDirectory={state}-log"),
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let running = bounce_tests::TestUnit::start("collector-unit", &body);
    wait_listening(port, &running.name);
    let runs = runs_over_tls(port, &ca.pem, &dir);
    assert_eq!(runs.lines().count(), 1, "a new store holds no run: {runs}");
    bounce_tests::systemctl(&["reload", &running.name]).expect("reload (SIGHUP)");
    runs_over_tls(port, &ca.pem, &dir);
    assert_eq!(running.prop("ActiveState"), "active");
    assert_eq!(running.prop("NRestarts"), "0");
    // A user manager's StateDirectory= is under $XDG_CONFIG_HOME.
    let config_home = bounce_tests::systemd_up().unit_dir.join("../..");
    let store = config_home.join(&state).join("store.db");
    drop(running);
    let found = store.exists();
    let _ = std::fs::remove_dir_all(config_home.join(&state));
    let _ = std::fs::remove_dir_all(config_home.join("log").join(format!("{state}-log")));
    let _ = std::fs::remove_dir_all(config_home.join(format!("{state}-log")));
    assert!(
        found,
        "no store in the unit's StateDirectory ({})",
        store.display()
    );
}

/// `changed=N` of the play recap's one host line.
fn changed(recap: &str) -> u32 {
    recap
        .lines()
        .rev()
        .find_map(|l| l.split("changed=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no play recap in:\n{recap}"))
}

#[test]
fn the_ansible_roles_install_everything_once_and_the_installed_collector_answers_over_tls() {
    let dir = Scratch::new("ansible");
    let cadir = dir.0.join("ca");
    let root = dir.0.join("root");
    std::fs::create_dir_all(&cadir).unwrap();
    let ca = TestCa::new(&cadir, "ca");
    ca.issue("collector", &["localhost"]);
    ca.issue("localhost", &["localhost"]);
    std::fs::write(cadir.join("admin.tokens"), ADMIN_TOKEN).unwrap();
    std::fs::write(cadir.join("metrics.tokens"), METRICS_TOKEN).unwrap();
    ca.crl("crl.pem", &[]);
    let inventory = dir.write(
        "inventory.ini",
        "[bounce_collector]\nlocalhost ansible_connection=local\n\
         [bounce_agents]\nlocalhost ansible_connection=local\n",
    );
    let bins = binaries(&dir);
    let play = || {
        ok(
            "ansible-playbook",
            Command::new("ansible-playbook")
                .arg("-i")
                .arg(&inventory)
                .arg(repo().join("deploy/ansible/site.yml"))
                .args(["-e", &format!("bounce_root={}", root.display())])
                .args(["-e", &format!("bounce_bin_dir={}", bins.display())])
                .args(["-e", &format!("bounce_ca_dir={}", cadir.display())])
                // Not on this machine: no user made, no service started, no sudo.
                .args([
                    "-e",
                    "bounce_create_user=false bounce_manage_services=false",
                ])
                .args([
                    "-e",
                    "bounce_user=root bounce_group=root bounce_become=false",
                ])
                .args(["-e", "bounce_agent_watch=true"])
                .args([
                    "-e",
                    "bounce_collector_protect_metrics=true bounce_collector_crl=true",
                ])
                .env("ANSIBLE_NOCOLOR", "1")
                .output()
                .unwrap(),
        )
    };
    let first = play();
    assert!(
        changed(&first) > 0,
        "the first run installed nothing:\n{first}"
    );
    let second = play();
    assert_eq!(
        changed(&second),
        0,
        "the second run changed something:\n{second}"
    );

    let etc = root.join("etc/bounce");
    for f in [
        "ca.pem",
        "collector.crt",
        "collector.key",
        "admin.tokens",
        "metrics.tokens",
        "crl.pem",
        "node.crt",
    ] {
        assert!(etc.join(f).exists(), "{f} not installed");
    }
    let mode = |f: &str| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(etc.join(f)).unwrap().permissions().mode() & 0o777
    };
    assert_eq!(
        mode("node.key"),
        0o600,
        "the node's key is readable by others"
    );
    assert_eq!(mode("collector.key"), 0o640);
    assert_eq!(mode("metrics.tokens"), 0o640);
    let collector_env = std::fs::read_to_string(etc.join("collector.env")).unwrap();
    assert!(
        collector_env.contains(
            "BOUNCE_COLLECTOR_OPTS=--protect-metrics --metrics-token-file /etc/bounce/metrics.tokens --tls-client-crl /etc/bounce/crl.pem\n"
        ),
        "{collector_env}"
    );
    assert!(etc.join("scenarios/kolla-control-plane.yaml").exists());
    let units = root.join("etc/systemd/system");
    let dropin =
        std::fs::read_to_string(units.join("bounce-agent-watch.service.d/collector.conf")).unwrap();
    assert!(dropin.contains("bounce-agent watch"), "{dropin}");
    let env = std::fs::read_to_string(etc.join("agent.env")).unwrap();
    assert!(
        env.contains("--client-cert /etc/bounce/node.crt") && env.contains("--node localhost"),
        "{env}"
    );

    // The installed collector, started as its unit would, answers over TLS
    // with the installed certificate.
    let port = free_port();
    let store = dir.0.join("store.db");
    let mut serve = Command::new(root.join("usr/local/bin/bounce-collector"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--store")
        .arg(&store)
        .arg("--tls-cert")
        .arg(etc.join("collector.crt"))
        .arg("--tls-key")
        .arg(etc.join("collector.key"))
        .arg("--client-ca")
        .arg(etc.join("ca.pem"))
        .arg("--admin-token-file")
        .arg(etc.join("admin.tokens"))
        // What collector.env adds, with the installed files.
        .arg("--tls-client-crl")
        .arg(etc.join("crl.pem"))
        .arg("--protect-metrics")
        .arg("--metrics-token-file")
        .arg(etc.join("metrics.tokens"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(port, "the installed collector");
    let runs = runs_over_tls(port, &etc.join("ca.pem"), &dir);
    let metrics = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(etc.join("ca.pem"))
        .args(["-H", &format!("Authorization: Bearer {METRICS_TOKEN}")])
        .arg(format!("https://localhost:{port}/metrics"))
        .output()
        .unwrap();
    let _ = serve.kill();
    let _ = serve.wait();
    assert!(runs.starts_with("run "), "{runs}");
    assert_eq!(
        String::from_utf8_lossy(&metrics.stdout),
        "200",
        "Prometheus's metrics token reads /metrics"
    );
}

/// promtool also checks that the files the job reads exist: they are made
/// in a folder standing for the Prometheus host's `/etc/prometheus/bounce`.
#[test]
fn the_prometheus_scrape_configuration_is_valid() {
    let dir = Scratch::new("promtool");
    let shipped = std::fs::read_to_string(repo().join("deploy/prometheus/bounce.yml")).unwrap();
    assert!(
        shipped.contains("credentials_file: /etc/prometheus/bounce/metrics.token"),
        "Prometheus scrapes with a metrics token:\n{shipped}"
    );
    let files = dir.0.join("prometheus-bounce");
    std::fs::create_dir_all(&files).unwrap();
    for f in ["ca.pem", "metrics.token"] {
        std::fs::write(files.join(f), "placeholder\n").unwrap();
    }
    let config = dir.write(
        "bounce.yml",
        &shipped.replace("/etc/prometheus/bounce/", &format!("{}/", files.display())),
    );
    ok(
        "promtool check config",
        Command::new("promtool")
            .args(["check", "config"])
            .arg(&config)
            .output()
            .unwrap(),
    );
}
