//! The end-to-end harness: a real Docker engine (installed and started by
//! `harness/docker-up.sh` when missing), throwaway containers that behave like
//! kolla services, and the real `bounce-agent` binary.
//!
//! Containers are named `bounce-t-<test>-<pid>` and removed when their guard
//! drops; they run with `--network none` or `--network host` (never Docker's
//! bridge: dockerd runs with `--bridge=none`).

pub mod events;
pub mod pki;

pub use events::{EngineEvent, EngineEvents};

use anyhow::{Context, Result, bail};
use bounce_wire::TimelineRecord;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub const IMAGE: &str = "bounce-test/busybox:1";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Makes sure an engine answers and the test image exists; once per process.
pub fn docker_up() {
    static UP: OnceLock<Result<(), String>> = OnceLock::new();
    let r = UP.get_or_init(|| harness("docker-up.sh").map(drop));
    if let Err(e) = r {
        panic!("no Docker engine for the tests: {e}");
    }
}

/// Runs `tests/harness/SCRIPT` (which installs and starts what is missing)
/// and returns the `KEY=VALUE` lines it printed.
fn harness(script: &str) -> Result<Vec<(String, String)>, String> {
    harness_with(script, &[], &[])
}

/// `harness` with arguments and extra environment.
fn harness_with(
    script: &str,
    args: &[&str],
    envs: &[(&str, &str)],
) -> Result<Vec<(String, String)>, String> {
    let path = repo_root().join("tests/harness").join(script);
    let out = Command::new("bash")
        .arg(&path)
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed:\n{}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

/// One variable a harness script printed.
fn var(vars: &[(String, String)], script: &str, key: &str) -> Result<String, String> {
    vars.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .ok_or(format!("{script} printed no {key}"))
}

/// Path to a binary of the workspace, built on first use.
pub fn bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(cargo)
            .current_dir(repo_root())
            .args([
                "build",
                "--quiet",
                "--bins",
                "-p",
                "bounce-agent",
                "-p",
                "bounce-collector",
            ])
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        // The test executable lives in target/<profile>/deps/.
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        Ok(exe
            .parent()
            .and_then(Path::parent)
            .ok_or("unexpected test executable location")?
            .to_path_buf())
    });
    match dir {
        Ok(d) => d.join(name),
        Err(e) => panic!("building the bounce binaries failed:\n{e}"),
    }
}

/// Runs `docker ARGS`, failing with its stderr.
pub fn docker(args: &[&str]) -> Result<String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .context("running docker")?;
    if !out.status.success() {
        bail!(
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `docker -H HOST ARGS`: against a simulated node's own engine
/// ([`docker_node_up`] gives HOST); stdout or stderr, trimmed.
pub fn docker_on(host: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker")
        .args(["-H", host])
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    match out.status.success() {
        true => Ok(String::from_utf8_lossy(&out.stdout).trim().to_string()),
        false => Err(String::from_utf8_lossy(&out.stderr).trim().to_string()),
    }
}

/// The realtime clock now, in unix nanos (the engine's and the records' stamps).
pub fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// A container removed (with `docker rm -f`) when dropped.
pub struct TestContainer {
    pub name: String,
    pub id: String,
}

impl TestContainer {
    /// `docker run -d --name <unique> OPTS IMAGE sh -c SCRIPT`.
    pub fn start(label: &str, opts: &[&str], script: &str) -> TestContainer {
        docker_up();
        let name = format!("bounce-t-{label}-{}", std::process::id());
        let _ = docker(&["rm", "-f", &name]);
        let mut args = vec!["run", "-d", "--name", &name];
        args.extend_from_slice(opts);
        args.extend_from_slice(&[IMAGE, "sh", "-c", script]);
        // runc under load (cgroup v1 here) now and then fails to set up a
        // container's cgroup ("OCI runtime create failed ... cgroup.procs:
        // no such file or directory"); that is the test's set-up, not what
        // it tests, so such a start is tried again (3 tries).
        let mut tries = 0;
        let id = loop {
            tries += 1;
            match docker(&args) {
                Ok(id) => break id,
                Err(e) if tries < 3 && e.to_string().contains("OCI runtime create failed") => {
                    eprintln!("starting {name}: {e}; trying again");
                    let _ = docker(&["rm", "-f", &name]);
                }
                Err(e) => panic!("starting {name}: {e}"),
            }
        };
        let c = TestContainer { name, id };
        if script.contains("trap") && script.contains("TERM") {
            c.wait_catching_sigterm();
        }
        c
    }

    /// Waits (bounded) until the container's PID 1 catches SIGTERM: `docker
    /// run -d` returns before the shell has run its `trap`, and PID 1 without
    /// a handler ignores SIGTERM, so a restart that came too early would wait
    /// for the stop timeout and SIGKILL (seen under load).
    fn wait_catching_sigterm(&self) {
        const SIGTERM_BIT: u64 = 1 << (libc::SIGTERM - 1);
        for _ in 0..200 {
            let pid = self.inspect()["State"]["Pid"].as_i64().unwrap_or(0);
            let caught = std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|s| {
                    let hex = s.lines().find_map(|l| l.strip_prefix("SigCgt:"))?;
                    u64::from_str_radix(hex.trim(), 16).ok()
                });
            if pid > 0 && caught.is_some_and(|m| m & SIGTERM_BIT != 0) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("{}: its PID 1 never set its SIGTERM trap", self.name);
    }

    pub fn inspect(&self) -> Value {
        let text = docker(&["inspect", &self.id]).expect("docker inspect");
        let v: Value = serde_json::from_str(&text).expect("inspect is JSON");
        v[0].clone()
    }

    /// Waits (bounded) until the container's health is `healthy`.
    pub fn wait_healthy(&self, secs: u64) {
        for _ in 0..secs * 10 {
            if self.inspect()["State"]["Health"]["Status"] == "healthy" {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("{} not healthy within {secs}s", self.name);
    }

    /// The engine's own events for this container between two instants
    /// (unix nanos), asked for afterwards: the engine keeps its last 256
    /// only, so a long span is better followed live ([`EngineEvents`]).
    pub fn events(&self, since: i64, until: i64) -> Vec<(String, i64)> {
        let fmt = |n: i64| format!("{}.{:09}", n / 1_000_000_000, n % 1_000_000_000);
        let text = docker(&[
            "events",
            "--since",
            &fmt(since),
            "--until",
            &fmt(until),
            "--filter",
            &format!("container={}", self.id),
            "--format",
            "{{json .}}",
        ])
        .expect("docker events");
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|v| {
                (
                    v["Action"].as_str().unwrap_or_default().to_string(),
                    v["timeNano"].as_i64().unwrap_or_default(),
                )
            })
            .collect()
    }
}

impl Drop for TestContainer {
    fn drop(&mut self) {
        // By id, then by name: a unit that wraps the container may have been
        // attaching to it at that moment, and the first removal can lose that race.
        for which in [&self.id, &self.name] {
            let _ = Command::new("docker").args(["rm", "-f", which]).output();
        }
    }
}

/// A scratch folder removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(label: &str) -> Scratch {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "bounce-test-{label}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).expect("write scratch file");
        p
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `run SCENARIO -o OUT --no-progress EXTRA...`: the agent's arguments for a
/// run in a test.
pub fn run_args(scenario: &Path, out: &Path, extra: &[&str]) -> Vec<std::ffi::OsString> {
    let mut v: Vec<std::ffi::OsString> = vec![
        "run".into(),
        scenario.into(),
        "-o".into(),
        out.into(),
        "--no-progress".into(),
    ];
    v.extend(extra.iter().map(|e| e.into()));
    v
}

/// Runs `bounce-agent ARGS`.
pub fn agent<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    Command::new(bin("bounce-agent"))
        .args(args)
        .output()
        .expect("running bounce-agent")
}

/// `bounce-agent ARGS` with its output captured, for a test to adjust
/// (environment) and spawn.
pub fn agent_command<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Command {
    let mut c = Command::new(bin("bounce-agent"));
    c.args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    c
}

/// Starts `bounce-agent ARGS` in the background, output captured (for tests
/// that signal or kill it).
pub fn spawn_agent<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> std::process::Child {
    agent_command(args).spawn().expect("starting bounce-agent")
}

pub fn text(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Writes `yaml` as `<label>.yaml` in a scratch folder and runs
/// `bounce-agent run` on it into `<scratch>/out`; returns the folder, the
/// process output and the timelines written (none if the run wrote none).
pub fn run_scenario(label: &str, yaml: &str) -> (Scratch, Output, Vec<TimelineRecord>) {
    let dir = Scratch::new(label);
    let scenario = dir.write(&format!("{label}.yaml"), yaml);
    let out_dir = dir.path("out");
    let out = agent(&run_args(&scenario, &out_dir, &[]));
    let timelines = if out_dir.join("timelines.jsonl").exists() {
        read_timelines(&out_dir)
    } else {
        Vec::new()
    };
    (dir, out, timelines)
}

/// A boundary's time, which the test expects to be there.
pub fn at(t: &TimelineRecord, b: bounce_wire::BoundaryName) -> i64 {
    t.boundary(b)
        .unwrap_or_else(|| panic!("no {b:?} in {t:?}"))
        .unix_nanos
}

/// The timelines of a run folder (or a report's), through the one reader;
/// a torn last line fails the test: the agent must not leave one.
pub fn read_timelines(dir: &Path) -> Vec<TimelineRecord> {
    let read = bounce_wire::RunFolder::new(dir)
        .timelines()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(read.torn, None, "a torn line in {}", dir.display());
    read.records
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Docker's RFC 3339 timestamps, written independently of the agent's parser.
pub fn rfc3339_nanos(s: &str) -> i64 {
    let out = Command::new("date")
        .args(["-u", "-d", s, "+%s%N"])
        .output()
        .expect("date");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("date could not parse {s}"))
}

/// The test systemd user manager (`harness/systemd-up.sh`): its environment,
/// once per process.
pub struct SystemdEnv {
    pub vars: Vec<(String, String)>,
    pub unit_dir: PathBuf,
    /// The D-Bus address scenarios name as `bus:`.
    pub bus: String,
}

pub fn systemd_up() -> &'static SystemdEnv {
    static ENV: OnceLock<Result<SystemdEnv, String>> = OnceLock::new();
    let r = ENV.get_or_init(|| {
        let vars = harness("systemd-up.sh")?;
        let get = |k: &str| var(&vars, "systemd-up.sh", k);
        Ok(SystemdEnv {
            unit_dir: PathBuf::from(get("XDG_CONFIG_HOME")?).join("systemd/user"),
            bus: get("DBUS_SESSION_BUS_ADDRESS")?,
            vars,
        })
    });
    match r {
        Ok(env) => env,
        Err(e) => panic!("no systemd manager for the tests: {e}"),
    }
}

/// `systemctl --user ARGS` against the test manager.
pub fn systemctl(args: &[&str]) -> Result<String> {
    systemd_up().systemctl(args)
}

/// A second, private systemd user manager on its own bus, its files under
/// `dir` (for tests that take its bus down: the shared one stays up).
pub fn systemd_private(dir: &Path) -> SystemdEnv {
    let dir = dir.display().to_string();
    let vars = harness_with("systemd-up.sh", &[], &[("BOUNCE_SYSTEMD_DIR", &dir)])
        .unwrap_or_else(|e| panic!("no private systemd manager in {dir}: {e}"));
    let get = |k: &str| var(&vars, "systemd-up.sh", k).unwrap_or_else(|e| panic!("{e}"));
    SystemdEnv {
        unit_dir: PathBuf::from(get("XDG_CONFIG_HOME")).join("systemd/user"),
        bus: get("DBUS_SESSION_BUS_ADDRESS"),
        vars,
    }
}

impl SystemdEnv {
    /// `systemctl --user ARGS` against this manager (through its private
    /// socket, so it works while its bus is down).
    pub fn systemctl(&self, args: &[&str]) -> Result<String> {
        let out = Command::new("systemctl")
            .arg("--user")
            .args(args)
            .envs(self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .context("running systemctl")?;
        if !out.status.success() {
            bail!(
                "systemctl --user {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

/// Starts (if needed) the Docker engine of simulated node `name`
/// (`harness/docker-nodes.sh`); its `DOCKER_HOST`.
pub fn docker_node_up(name: &str) -> String {
    let vars = harness_with("docker-nodes.sh", &["up", name], &[])
        .unwrap_or_else(|e| panic!("no engine for node {name}: {e}"));
    var(&vars, "docker-nodes.sh", name).unwrap_or_else(|e| panic!("{e}"))
}

/// Stops the Docker engine of simulated node `name` (its containers stop
/// with it): `down` (SIGTERM) or `kill` (SIGKILL, a crash).
pub fn docker_node_stop(name: &str, how: &str) {
    harness_with("docker-nodes.sh", &[how, name], &[])
        .unwrap_or_else(|e| panic!("docker-nodes.sh {how} {name}: {e}"));
}

/// A unit of the test manager, installed and started; stopped and removed when dropped.
pub struct TestUnit {
    pub name: String,
}

impl TestUnit {
    /// Installs `<label>-<pid>.service` with `body` as its unit file and starts it.
    pub fn start(label: &str, body: &str) -> TestUnit {
        let env = systemd_up();
        let name = format!("bounce-t-{label}-{}.service", std::process::id());
        std::fs::write(env.unit_dir.join(&name), body).expect("write unit file");
        systemctl(&["daemon-reload"]).expect("daemon-reload");
        let _ = systemctl(&["reset-failed", &name]);
        systemctl(&["start", &name]).unwrap_or_else(|e| panic!("starting {name}: {e}"));
        // A simple unit is "active" at fork; give its shell time to set its traps.
        std::thread::sleep(std::time::Duration::from_millis(300));
        TestUnit { name }
    }

    /// One property as `systemctl show` prints it.
    pub fn prop(&self, p: &str) -> String {
        systemctl(&["show", "-p", p, "--value", &self.name]).expect("systemctl show")
    }
}

impl TestUnit {
    /// A µs timestamp property, read raw over D-Bus (systemctl formats them).
    pub fn usec_prop(&self, p: &str) -> i64 {
        unit_usec_prop(&self.name, p)
    }
}

/// A µs timestamp property of any unit of the test manager (an OSD's too),
/// read raw over D-Bus (systemctl formats them).
pub fn unit_usec_prop(name: &str, p: &str) -> i64 {
    systemd_up().usec_prop(name, p)
}

impl SystemdEnv {
    /// Asserts that boundary `b` of `r` is systemd's own realtime stamp `p`
    /// of `unit` (ours is its monotonic one placed on the realtime axis:
    /// within 2 ms).
    pub fn agrees(&self, r: &TimelineRecord, b: bounce_wire::BoundaryName, unit: &str, p: &str) {
        let got = r
            .boundary(b)
            .unwrap_or_else(|| panic!("{b:?} missing: {r:#?}"))
            .unix_nanos;
        let systemd = self.usec_prop(unit, p) * 1000;
        assert!(
            (got - systemd).abs() < 2_000_000,
            "{b:?} {got} vs systemd's {p} {systemd}: {r:#?}"
        );
    }

    /// A µs timestamp property of a unit of this manager, read raw over
    /// D-Bus (systemctl formats them).
    pub fn usec_prop(&self, name: &str, p: &str) -> i64 {
        let busctl = |args: &[&str]| {
            let out = Command::new("busctl")
                .arg("--user")
                .args(args)
                .envs(self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .output()
                .expect("busctl");
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        let path = busctl(&[
            "call",
            "org.freedesktop.systemd1",
            "/org/freedesktop/systemd1",
            "org.freedesktop.systemd1.Manager",
            "GetUnit",
            "s",
            name,
        ]);
        let path = path.trim_start_matches("o ").trim_matches('"');
        let v = busctl(&[
            "get-property",
            "org.freedesktop.systemd1",
            path,
            "org.freedesktop.systemd1.Unit",
            p,
        ]);
        v.trim_start_matches("t ")
            .parse()
            .unwrap_or_else(|_| panic!("{p} of {name}: {v:?}"))
    }
}

impl Drop for TestUnit {
    fn drop(&mut self) {
        let _ = systemctl(&["stop", &self.name]);
        let _ = systemctl(&["reset-failed", &self.name]);
        let _ = std::fs::remove_file(systemd_up().unit_dir.join(&self.name));
        let _ = systemctl(&["daemon-reload"]);
    }
}

pub const AGENT_TOKEN: &str = "agent-token-for-tests-0123456789";
pub const ADMIN_TOKEN: &str = "admin-token-for-tests-0123456789";

/// A `bounce-collector serve` process on a loopback port; killed when dropped.
pub struct CollectorProcess {
    pub port: u16,
    pub store: PathBuf,
    dir: PathBuf,
    extra: Vec<String>,
    child: Option<std::process::Child>,
}

impl CollectorProcess {
    pub fn start(dir: &Path) -> CollectorProcess {
        CollectorProcess::start_with(dir, &[])
    }

    /// With extra `serve` options.
    pub fn start_with(dir: &Path, extra: &[&str]) -> CollectorProcess {
        CollectorProcess::start_with_agent_tokens(dir, AGENT_TOKEN, extra)
    }

    /// With this agent token file (lines `TOKEN [name,name-*]`).
    pub fn start_with_agent_tokens(dir: &Path, tokens: &str, extra: &[&str]) -> CollectorProcess {
        std::fs::write(dir.join("agent.token"), tokens).unwrap();
        std::fs::write(dir.join("admin.token"), ADMIN_TOKEN).unwrap();
        let mut c = CollectorProcess {
            port: free_port(),
            store: dir.join("store.db"),
            dir: dir.to_path_buf(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        c.spawn();
        c
    }

    /// `https://localhost:PORT` when started with `--tls-cert`.
    pub fn url(&self) -> String {
        if self.extra.iter().any(|a| a == "--tls-cert") {
            format!("https://localhost:{}", self.port)
        } else {
            format!("http://127.0.0.1:{}", self.port)
        }
    }

    fn spawn(&mut self) {
        let child = Command::new(bin("bounce-collector"))
            .args(["serve", "--listen", &format!("127.0.0.1:{}", self.port)])
            .arg("--store")
            .arg(&self.store)
            .arg("--agent-token-file")
            .arg(self.dir.join("agent.token"))
            .arg("--admin-token-file")
            .arg(self.dir.join("admin.token"))
            .args(&self.extra)
            .stdout(std::process::Stdio::null())
            .stderr(self.log_file())
            .spawn()
            .expect("start bounce-collector");
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("bounce-collector did not listen on {}", self.port);
    }

    /// Where its stderr goes (appended across restarts).
    fn log_file(&self) -> std::fs::File {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("collector.stderr"))
            .expect("the collector's log file")
    }

    /// What it wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("collector.stderr")).unwrap_or_default()
    }

    /// The process id (to signal it: SIGHUP reloads the certificate).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGTERM, as systemd stops it: how it exited (SIGKILL after 30 s).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        for _ in 0..300 {
            if let Some(status) = c.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = c.kill();
        c.wait().unwrap()
    }

    /// SIGKILL, no goodbye.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// `curl` a path; returns (status, body).
    pub fn http(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&[u8]>,
    ) -> (u16, String) {
        self.curl(&[], method, path, token, body)
    }

    /// `curl` with extra options (`--cacert`, `--cert`, `--key`).
    pub fn curl(
        &self,
        options: &[&str],
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&[u8]>,
    ) -> (u16, String) {
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "-S", "-o", "-", "-w", "\n%{http_code}", "-X", method]);
        cmd.args(options);
        if let Some(t) = token {
            cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
        }
        let scratch = self.dir.join(format!("body-{}", std::process::id()));
        if let Some(b) = body {
            std::fs::write(&scratch, b).unwrap();
            cmd.args(["-H", "Content-Type: application/json", "--data-binary"])
                .arg(format!("@{}", scratch.display()));
        }
        cmd.arg(format!("{}{path}", self.url()));
        let out = cmd.output().expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    /// `POST /api/v1/ingest` of one batch with this token: (status, body).
    pub fn ingest(&self, token: &str, batch: &bounce_wire::ingest::Batch) -> (u16, String) {
        let body = serde_json::to_vec(batch).expect("a batch serializes");
        self.http("POST", "/api/v1/ingest", Some(token), Some(&body))
    }
}

impl Drop for CollectorProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The test Ceph cluster (`harness/ceph-up.sh`): its config and admin socket
/// folder; started once per machine, reused.
pub struct CephEnv {
    pub conf: PathBuf,
    pub run_dir: PathBuf,
    pub osds: Vec<u32>,
}

pub fn ceph_up() -> &'static CephEnv {
    static ENV: OnceLock<Result<CephEnv, String>> = OnceLock::new();
    let r = ENV.get_or_init(|| {
        let vars = harness("ceph-up.sh")?;
        let get = |k: &str| var(&vars, "ceph-up.sh", k);
        Ok(CephEnv {
            conf: PathBuf::from(get("CEPH_CONF")?),
            run_dir: PathBuf::from(get("CEPH_RUN_DIR")?),
            osds: get("CEPH_OSDS")?
                .split(',')
                .filter_map(|s| s.parse().ok())
                .collect(),
        })
    });
    match r {
        Ok(env) => env,
        Err(e) => panic!("no Ceph cluster for the tests: {e}"),
    }
}

impl CephEnv {
    /// The agent's CLI client for this cluster.
    pub fn cli(&self) -> bounce_agent::ceph::mon::MonClient {
        bounce_agent::ceph::mon::MonClient::new(vec![
            "ceph".into(),
            "--conf".into(),
            self.conf.display().to_string(),
        ])
    }

    /// The same cluster through a librados session (as a scenario's
    /// `ceph: {librados: {conf: ...}}` says).
    pub fn librados(&self) -> bounce_agent::scenario::CephAccess {
        bounce_agent::scenario::CephAccess::Librados(bounce_agent::scenario::LibradosAccess {
            conf: self.conf.clone(),
            name: "client.admin".into(),
            keyring: None,
        })
    }

    /// Bounded wait until the cluster has settled after an earlier test's
    /// restart: health OK (or only the `allowed` checks), every OSD up, and
    /// every PG active+clean in stats reported since the last OSD came up.
    /// HEALTH_OK alone is not enough: the mgr reports inactive PGs only after
    /// a grace period, and `ok-to-stop` refuses while PGs still peer.
    pub fn wait_settled(&self, allowed: &[&str]) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let cli = self.cli();
        let mut last = String::new();
        for _ in 0..480 {
            let settled = rt.block_on(async {
                let h = cli.health().await.map_err(|e| e.to_string())?;
                if h.status != "HEALTH_OK"
                    && !h.checks.iter().all(|c| allowed.contains(&c.0.as_str()))
                {
                    return Err(format!("health {} {:?}", h.status, h.checks));
                }
                let (_, osds) = cli.osd_dump().await.map_err(|e| e.to_string())?;
                if osds.len() != self.osds.len() || !osds.iter().all(|o| o.up) {
                    return Err(format!("OSDs not all up: {osds:?}"));
                }
                let since = osds.iter().map(|o| o.up_from).max().unwrap_or(0);
                let pgs = cli.pgs().await.map_err(|e| e.to_string())?;
                match pgs
                    .iter()
                    .find(|p| p.state != "active+clean" || p.reported_epoch < since)
                {
                    Some(p) => Err(format!(
                        "pg {} {} (reported at epoch {}, OSDs up from {since})",
                        p.pgid, p.state, p.reported_epoch
                    )),
                    None if pgs.is_empty() => Err("no PGs reported".into()),
                    None => Ok(()),
                }
            });
            match settled {
                Ok(()) => return,
                Err(e) => last = e,
            }
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
        panic!("the test cluster did not settle in 120 s: {last}");
    }

    /// OSD `id`'s log file as (unix nanos, line), oldest first.
    pub fn osd_log(&self, id: u32) -> Vec<(i64, String)> {
        osd_log_of(self, id)
    }
}

/// An OSD's log file as (unix nanos, line), oldest first.
fn osd_log_of(env: &CephEnv, id: u32) -> Vec<(i64, String)> {
    let path = env.conf.parent().unwrap().join(format!("log/osd.{id}.log"));
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.len() > 28 && l.as_bytes()[4] == b'-')
        .collect();
    // One `date` call for all stamps: "2026-11-25T15:23:49.497+0000".
    let stamps: Vec<String> = lines
        .iter()
        .map(|l| l[..28].replace("+0000", "Z"))
        .collect();
    let input = dir_for_dates().join(format!("stamps-{id}"));
    std::fs::write(&input, stamps.join("\n")).unwrap();
    let out = std::process::Command::new("date")
        .args(["-u", "-f"])
        .arg(&input)
        .arg("+%s%N")
        .output()
        .unwrap();
    let nanos: Vec<i64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(
        nanos.len(),
        lines.len(),
        "date parsed every stamp of {}",
        path.display()
    );
    nanos
        .into_iter()
        .zip(lines.iter().map(|l| l.to_string()))
        .collect()
}

fn dir_for_dates() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("bounce-osd-log-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A Ceph OSD restart's record agrees with the OSD's own log: SIGTERM
/// between the request and the exit (when requested), init after the start,
/// `booting -> active` before the agent saw it on the admin socket (polled
/// every 20 ms), and not long before.
pub fn osd_log_agrees(t: &TimelineRecord) {
    use bounce_wire::BoundaryName;
    let bounce_wire::TargetRef::CephOsd { id, .. } = &t.target else {
        panic!("{t:?}")
    };
    let log = ceph_up().osd_log(*id);
    let within = |what: &str, from: i64, to: i64| {
        log.iter()
            .find(|(at, line)| *at >= from && *at <= to && line.contains(what))
            .map(|(at, _)| *at)
            .unwrap_or_else(|| {
                let near: Vec<&(i64, String)> = log
                    .iter()
                    .filter(|(at, _)| (*at - from).abs() < 1_000_000_000)
                    .take(5)
                    .collect();
                panic!(
                    "osd.{id}'s log has no {what:?} between {from} and {to}; near: {near:?}; {t:?}"
                )
            })
    };
    // Log stamps are milliseconds, truncated, and (on a cluster made
    // before the harness turned coarse stamps off) up to a jiffy late.
    let ms = 1_000_000;
    let slack = 20 * ms;
    let requested = at(t, BoundaryName::Requested);
    let exited = at(t, BoundaryName::Exited);
    let started = at(t, BoundaryName::Started);
    let seen_active = at(t, BoundaryName::OsdActive);
    // Watch's `requested` of a container is the engine's `kill` event,
    // which the engine logs once the signal is delivered (26 ms later than
    // the OSD logged it, once, under load): the signal may come before it.
    let early = match &t.boundary(BoundaryName::Requested).unwrap().source {
        bounce_wire::Source::DockerEvent { .. } => 1_000 * ms,
        _ => slack,
    };
    within("received  signal: Terminated", requested - early, exited);
    let init = within(
        "done with init, starting boot process",
        started - slack,
        seen_active,
    );
    let active = within("state: booting -> active", init, seen_active);
    assert!(
        seen_active - active < 5_000_000_000,
        "osd_boot seen {} ms after the OSD logged it",
        (seen_active - active) / ms
    );
}

/// One OSD of the test cluster moved from its unit into a container (the
/// host's Ceph binaries bind-mounted into the busybox image, host network, as
/// containerized deployments run them); moved back when dropped.
pub struct OsdInContainer {
    pub id: u32,
    pub name: String,
}

impl OsdInContainer {
    /// Call under `lock_cluster()`.
    pub fn start(id: u32) -> OsdInContainer {
        docker_up();
        let name = format!("bounce-t-osd-{id}");
        let _ = docker(&["rm", "-f", &name]);
        // A clean stop: memstore saves its data on unmount.
        systemctl(&["stop", &format!("ceph-osd@{id}.service")]).unwrap();
        let env = ceph_up();
        let data = env.conf.parent().unwrap().display().to_string();
        docker(&[
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            "host",
            "--restart",
            "unless-stopped",
            "--stop-timeout",
            "30",
            "-v",
            "/usr:/usr:ro",
            "-v",
            "/lib:/lib:ro",
            "-v",
            "/lib64:/lib64:ro",
            "-v",
            "/etc/ld.so.cache:/etc/ld.so.cache:ro",
            "-v",
            &format!("{data}:{data}"),
            IMAGE,
            "/usr/bin/ceph-osd",
            "-f",
            "-i",
            &id.to_string(),
            "-c",
            &env.conf.display().to_string(),
        ])
        .unwrap();
        OsdInContainer { id, name }
    }
}

impl Drop for OsdInContainer {
    fn drop(&mut self) {
        let _ = docker(&["stop", "-t", "30", &self.name]);
        let _ = docker(&["rm", "-f", &self.name]);
        let _ = systemctl(&["start", &format!("ceph-osd@{}.service", self.id)]);
        ceph_up().wait_settled(&[]);
    }
}

/// Holds the test Ceph cluster for one test at a time, across test
/// processes (an flock on a file beside it).
pub struct ClusterLock {
    /// The lock is released when the file closes.
    _file: std::fs::File,
}

pub fn lock_cluster() -> ClusterLock {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open("/tmp/bounce-ceph-tests.lock")
        .expect("cluster lock file");
    use std::os::fd::AsRawFd;
    // Blocks until the other holder is done.
    assert_eq!(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) }, 0);
    ClusterLock { _file: f }
}

/// A real Prometheus (Debian's package) scraping one loopback target every
/// second, with its TSDB in a scratch folder; killed when dropped.
pub struct PrometheusProcess {
    pub port: u16,
    child: std::process::Child,
}

impl PrometheusProcess {
    pub fn start(dir: &Path, target_port: u16) -> PrometheusProcess {
        let port = free_port();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: bounce\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
            ),
        )
        .unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("prometheus (Debian's package) is installed by scripts/test.sh");
        PrometheusProcess { port, child }
    }

    /// GET an API path with URL-encoded parameters; the parsed answer (Null
    /// when Prometheus is not up yet).
    pub fn api(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "--get"]);
        for (k, v) in params {
            cmd.arg("--data-urlencode").arg(format!("{k}={v}"));
        }
        cmd.arg(format!("http://127.0.0.1:{}{path}", self.port));
        let out = cmd.output().expect("curl");
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    /// An instant query's result vector (empty on error or no data).
    pub fn query(&self, q: &str) -> Vec<Value> {
        self.api("/api/v1/query", &[("query", q)])["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The first sample's value of an instant query.
    pub fn value(&self, q: &str) -> Option<f64> {
        self.query(q).first()?["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for PrometheusProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one finished process used, from wait4: it covers the process and
/// the children it waited for (the agent's `ceph` CLI calls).
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    pub success: bool,
    /// Peak resident set of the process itself, KiB.
    pub max_rss_kib: i64,
    pub user_seconds: f64,
    pub sys_seconds: f64,
}

/// Runs `bounce-agent run SCENARIO -o OUT --no-progress EXTRA` (the binary
/// at `agent`, output discarded) and measures it.
pub fn run_measured(agent: &str, scenario: &Path, out: &Path, extra: &[&str]) -> Measured {
    let child = Command::new(agent)
        .args(run_args(scenario, out, extra))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn agent");
    measure(child)
}

/// Waits for a child and says what it used (wait4).
// wait4 reaps the child itself, which std cannot do with rusage.
#[allow(clippy::zombie_processes)]
pub fn measure(child: std::process::Child) -> Measured {
    let mut status = 0;
    // SAFETY: wait4 on our own child, with a zeroed rusage to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert!(pid > 0, "wait4");
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Measured {
        success: libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        max_rss_kib: usage.ru_maxrss,
        user_seconds: secs(usage.ru_utime),
        sys_seconds: secs(usage.ru_stime),
    }
}

/// A synthetic Docker restart record (for collector tests and the fleet
/// bench): outcome ok, the phases computed from `timestamps`; callers adjust
/// the rest with struct update syntax.
pub fn docker_record(
    run: (&str, &str, &str),
    node: &str,
    service: &str,
    timestamps: Vec<bounce_wire::Boundary>,
) -> TimelineRecord {
    let (run_id, deployment, scenario) = run;
    TimelineRecord {
        run_id: bounce_wire::RunId::parse(run_id).expect("a valid run id"),
        deployment: deployment.into(),
        scenario: scenario.into(),
        node: node.into(),
        target: bounce_wire::TargetRef::Docker {
            name: service.into(),
            id: format!("{node}/{service}"),
        },
        service: service.into(),
        iteration: 1,
        action: bounce_wire::Action::Restart,
        outcome: bounce_wire::Outcome::Ok,
        error: None,
        exit_code: None,
        signals: vec![],
        oom_killed: false,
        phases: bounce_wire::timeline::phases_from(&timestamps),
        timestamps,
        probes: vec![],
        unit: None,
        attribution: None,
        events: vec![],
        notes: vec![],
        origin: Default::default(),
        cause: None,
        recreated: None,
    }
}

/// One batch carrying `t` (and its histograms) from the node it names.
pub fn batch_of(
    t: TimelineRecord,
    node: bounce_wire::NodeFacts,
    started_unix_nanos: i64,
    planned: u64,
    seq: u64,
) -> bounce_wire::ingest::Batch {
    bounce_wire::ingest::Batch {
        agent: t.node.clone(),
        run: bounce_wire::ingest::RunHeader {
            identity: bounce_wire::RunIdentity {
                run_id: t.run_id.clone(),
                deployment: t.deployment.clone(),
                scenario: t.scenario.clone(),
                node,
            },
            started_unix_nanos,
            planned,
            scenario_yaml: None,
        },
        seq,
        histograms: bounce_wire::ingest::histograms_of(std::slice::from_ref(&t))
            .expect("histograms of a valid record"),
        timelines: vec![t],
        end: None,
    }
}

/// A `bounce-agent watch` (node `wt`) writing into a folder, killed
/// (SIGKILL) when dropped.
/// Every record of `service` in a watcher's day folders under `dir`, in
/// the order their restarts opened.
pub fn watch_records_of(dir: &Path, service: &str) -> Vec<TimelineRecord> {
    let mut out: Vec<TimelineRecord> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("timelines.jsonl").exists())
        .flat_map(|e| read_timelines(&e.path()))
        .filter(|r| r.service == service)
        .collect();
    out.sort_by_key(|r| r.timestamps.iter().map(|b| b.unix_nanos).min());
    out
}

/// A unit of a private manager (`systemd_private`); stopped and removed,
/// its bus brought back and the manager told to exit, when dropped.
pub struct PrivateUnit {
    pub env: SystemdEnv,
    pub name: String,
}

impl Drop for PrivateUnit {
    fn drop(&mut self) {
        let _ = self.env.systemctl(&["start", "dbus.socket"]);
        let _ = self.env.systemctl(&["stop", &self.name]);
        let _ = std::fs::remove_file(self.env.unit_dir.join(&self.name));
        let _ = self.env.systemctl(&["exit"]);
    }
}

/// Unit files of a private manager, disabled and removed when dropped.
pub struct UnitFiles<'a> {
    pub env: &'a SystemdEnv,
    pub names: Vec<String>,
}

impl Drop for UnitFiles<'_> {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = self.env.systemctl(&["disable", n]);
            let _ = self.env.systemctl(&["stop", n]);
            let _ = std::fs::remove_file(self.env.unit_dir.join(n));
        }
    }
}

pub struct WatchProcess(pub std::process::Child);

impl WatchProcess {
    /// Stops the watcher as an operator or systemd does (SIGTERM) and
    /// waits (bounded) for it to exit.
    pub fn terminate(&mut self) {
        let pid = self.0.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid}");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while self.0.try_wait().expect("the watcher's status").is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "the watcher did not exit on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl WatchProcess {
    /// Starts the watcher with `extra` arguments and waits until it follows
    /// the engine (it saves its cursor once it has opened the stream).
    pub fn start(dir: &Path, extra: &[&str]) -> WatchProcess {
        WatchProcess::start_env(dir, extra, &[])
    }

    /// [`WatchProcess::start`] with environment variables (`DOCKER_HOST`).
    pub fn start_env(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> WatchProcess {
        let mut args: Vec<std::ffi::OsString> = vec![
            "watch".into(),
            "-o".into(),
            dir.into(),
            "--node".into(),
            "wt".into(),
        ];
        args.extend(extra.iter().map(|e| e.into()));
        let cursor = dir.join("watch-cursor.json");
        let before = std::fs::metadata(&cursor).and_then(|m| m.modified()).ok();
        // Its words go to a file: a pipe nobody reads fills up (the shared
        // engine's containers restart all the while) and stops the watcher.
        std::fs::create_dir_all(dir).expect("the watcher's folder");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("watch.log"))
            .expect("the watcher's log");
        let child = agent_command(&args)
            .envs(env.iter().copied())
            .stderr(log)
            .spawn()
            .expect("start bounce-agent watch");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::fs::metadata(&cursor).and_then(|m| m.modified()).ok() == before {
            assert!(
                std::time::Instant::now() < deadline,
                "the watcher did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        WatchProcess(child)
    }
}

impl Drop for WatchProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One simulated agent's batch for the fleet benchmarks: one restart of
/// `service_{agent % services}` on `node-{agent}` (random but reproducible
/// phases from `x`), its timeline and phase histograms, as `bounce-agent run
/// --collector` sends them.
pub fn fleet_batch(agent: usize, services: usize, x: &mut u64) -> bounce_wire::ingest::Batch {
    use bounce_wire::{Boundary, BoundaryName, Clock, NodeFacts, Source, TimelineRecord};
    let mut next = || {
        *x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*x >> 33) as i64
    };
    let t0 = 1_795_000_000_000_000_000i64 + agent as i64 * 1_000_000_000;
    let stop = 200_000_000 + next() % 10_000_000_000;
    let start = 100_000_000 + next() % 2_000_000_000;
    let ready = next() % 30_000_000_000;
    let b = |name, unix_nanos, source| Boundary {
        name,
        unix_nanos,
        source,
        clock: Clock::Realtime,
    };
    let timestamps = vec![
        b(BoundaryName::Requested, t0, Source::Agent),
        b(
            BoundaryName::Exited,
            t0 + stop,
            Source::DockerEvent {
                action: "die".into(),
            },
        ),
        b(
            BoundaryName::Started,
            t0 + stop + start,
            Source::DockerEvent {
                action: "start".into(),
            },
        ),
        b(
            BoundaryName::Ready,
            t0 + stop + start + ready,
            Source::Probe {
                probe: "exec_health".into(),
            },
        ),
    ];
    let service = format!("service_{:04}", agent % services);
    let node = format!("node-{agent:05}");
    let t = TimelineRecord {
        exit_code: Some(143),
        signals: vec!["SIGTERM".into()],
        ..docker_record(
            ("fleet-bench", "fleet", "bench"),
            &node,
            &service,
            timestamps,
        )
    };
    let facts = NodeFacts {
        hostname: node,
        cpus: 64,
        memory_bytes: 512 << 30,
        ..Default::default()
    };
    batch_of(t, facts, 1_795_000_000_000_000_000, 1, 1)
}

/// A collector for the benchmarks (`BOUNCE_COLLECTOR`, a release build),
/// serving `dir`'s store on a free loopback port with the test tokens;
/// returns once it listens.
pub fn bench_collector(dir: &Scratch) -> (std::process::Child, u16) {
    bench_collector_with(dir, &[], Stdio::null())
}

/// [`bench_collector`] with extra `serve` options and its stderr.
pub fn bench_collector_with(
    dir: &Scratch,
    extra: &[&str],
    stderr: Stdio,
) -> (std::process::Child, u16) {
    let bin = std::env::var("BOUNCE_COLLECTOR")
        .expect("BOUNCE_COLLECTOR: path to a release bounce-collector");
    std::fs::write(dir.path("agent.token"), AGENT_TOKEN).unwrap();
    std::fs::write(dir.path("admin.token"), ADMIN_TOKEN).unwrap();
    let port = free_port();
    let mut child = Command::new(&bin)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--store")
        .arg(dir.path("store.db"))
        .arg("--agent-token-file")
        .arg(dir.path("agent.token"))
        .arg("--admin-token-file")
        .arg(dir.path("admin.token"))
        .args(extra)
        .stderr(stderr)
        .spawn()
        .expect("start collector");
    if !listening(port) {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the collector did not listen on {port}");
    }
    (child, port)
}

/// Whether a server accepts connections on a loopback port within 10 s.
pub fn listening(port: u16) -> bool {
    (0..200).any(|_| {
        let up = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        if !up {
            std::thread::sleep(Duration::from_millis(50));
        }
        up
    })
}

/// Sends every request over `conns` concurrent connections; returns the
/// wall time and the latency histogram (µs).
pub async fn send_all(
    client: &hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Full<hyper::body::Bytes>,
    >,
    conns: usize,
    requests: Vec<hyper::Request<http_body_util::Full<hyper::body::Bytes>>>,
) -> (f64, hdrhistogram::Histogram<u64>) {
    let queue = std::sync::Arc::new(std::sync::Mutex::new(requests));
    let latency = std::sync::Arc::new(std::sync::Mutex::new(
        hdrhistogram::Histogram::<u64>::new(3).unwrap(),
    ));
    let t = std::time::Instant::now();
    let tasks: Vec<_> = (0..conns)
        .map(|_| {
            let (queue, latency, client) = (queue.clone(), latency.clone(), client.clone());
            tokio::spawn(async move {
                loop {
                    let Some(req) = queue.lock().unwrap().pop() else {
                        return;
                    };
                    let t0 = std::time::Instant::now();
                    let resp = client.request(req).await.expect("request");
                    assert!(resp.status().is_success(), "{}", resp.status());
                    let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
                    latency
                        .lock()
                        .unwrap()
                        .record(t0.elapsed().as_micros() as u64)
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    let lat = latency.lock().unwrap().clone();
    (secs, lat)
}
