//! Benchmark of `bounce-agent watch` on a node (numbers go to BENCHMARKS.md;
//! nothing here is a pass/fail test, but a burst that loses a restart is
//! reported as such and exits 1):
//!
//! 1. idle: BENCH_CONTAINERS (default 60) running containers and BENCH_UNITS
//!    (default 10) units of the test systemd manager followed; for
//!    BENCH_IDLE seconds (default 600) nothing restarts: the watcher's RSS
//!    (VmRSS every second, VmHWM and RssAnon at the end; the rest of VmRSS
//!    is the executable's file pages, shared and reclaimable) and CPU (utime + stime from
//!    /proc/PID/stat over the window, % of one core). The anchor, measured
//!    side by side over the same window when `NODE_EXPORTER` (default
//!    `prometheus-node-exporter` on PATH) runs: node_exporter with its
//!    default collectors, scraped every 15 s as Prometheus would;
//! 2. bursts (BENCH_BURSTS, default 3): every container restarted at once
//!    (one `docker restart` per container, all in parallel): the watcher's CPU per observed restart,
//!    its peak RSS, and whether each restart was timed exactly once.
//!
//! Release builds: `BOUNCE_AGENT=target/release/bounce-agent`. The
//! containers `bounce-wbench-*` run on a simulated node's own engine (so
//! other work on the shared one does not wake the watcher), removed at the
//! end; the units are the test manager's.

use bounce_tests::*;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The bench's containers on the node's own engine, removed when dropped.
struct Containers {
    names: Vec<String>,
    host: String,
}

/// `docker ARGS` against the bench node's engine.
fn on(host: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker")
        .args(["-H", host])
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

impl Containers {
    fn start(n: usize) -> Containers {
        let host = docker_node_up(NODE);
        let c = Containers {
            names: (0..n).map(|i| format!("bounce-wbench-{i:03}")).collect(),
            host,
        };
        for name in &c.names {
            let _ = on(&c.host, &["rm", "-f", name]);
            on(
                &c.host,
                &[
                    "run",
                    "-d",
                    "--name",
                    name,
                    "--network",
                    "none",
                    IMAGE,
                    "sh",
                    "-c",
                    "trap 'exit 0' TERM; while true; do sleep 1 & wait; done",
                ],
            )
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        }
        c
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = on(&self.host, &["rm", "-f", name]);
        }
    }
}

/// The simulated node whose engine the bench owns (`harness/docker-nodes.sh`):
/// nothing else restarts containers there while the watcher is idle.
const NODE: &str = "wbench";

/// A process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// utime + stime of a live process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // Fields after the command's closing parenthesis: state is the first,
    // utime the 12th and stime the 13th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// A `VmRSS`/`VmHWM`-style line of /proc/PID/status, in MiB.
fn status_mib(pid: u32, key: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .expect(key)
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kib / 1024.0
}

fn scrape(port: u16) {
    if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        let _ = write!(
            s,
            "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept-Encoding: gzip\r\n\r\n"
        );
        let _ = s.read_to_end(&mut Vec::new());
    }
}

fn node_exporter() -> Option<(Proc, u16)> {
    let bin = std::env::var("NODE_EXPORTER").unwrap_or("prometheus-node-exporter".into());
    let port = free_port();
    let child = Command::new(&bin)
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let p = Proc(child);
    listening(port);
    Some((p, port))
}

fn records(dir: &Path) -> Vec<bounce_wire::TimelineRecord> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("timelines.jsonl").exists())
        .flat_map(|e| read_timelines(&e.path()))
        .collect()
}

fn main() {
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (n, units, idle) = (
        env("BENCH_CONTAINERS", 60) as usize,
        env("BENCH_UNITS", 10),
        env("BENCH_IDLE", 600),
    );
    let agent = std::env::var("BOUNCE_AGENT").expect("BOUNCE_AGENT: a release bounce-agent");
    let dir = Scratch::new("bench-watch");
    let containers = Containers::start(n);
    let sd = systemd_up();
    let _units: Vec<TestUnit> = (0..units)
        .map(|i| {
            TestUnit::start(
                &format!("wbench-{i}"),
                "[Service]\nExecStart=/bin/sleep 36000\n",
            )
        })
        .collect();
    let config = dir.write(
        "watch.yaml",
        &format!(
            "deployment: bench\nsystemd:\n  - bus: \"{}\"\n    units: [\"bounce-t-wbench-*\"]\n",
            sd.bus
        ),
    );
    let out = dir.path("watch");
    let log = std::fs::File::create(dir.path("watch.log")).unwrap();
    let watcher = Proc(
        Command::new(&agent)
            .args(["watch", "-o"])
            .arg(&out)
            .args(["--node", "wb", "--config"])
            .arg(&config)
            .env("DOCKER_HOST", &containers.host)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start bounce-agent watch"),
    );
    let pid = watcher.0.id();
    let anchor = node_exporter();
    if anchor.is_none() {
        println!("(node_exporter not found: no anchor; apt-get install prometheus-node-exporter)");
    }
    // Settled: the engine's stream open, the managers subscribed.
    std::thread::sleep(Duration::from_secs(10));

    println!(
        "idle {idle} s: {n} containers running, {units} units followed (load average {})",
        std::fs::read_to_string("/proc/loadavg").unwrap().trim()
    );
    let start = Instant::now();
    let (w0, a0) = (
        cpu_seconds(pid),
        anchor.as_ref().map(|(p, _)| cpu_seconds(p.0.id())),
    );
    let rss_start = status_mib(pid, "VmRSS:");
    let mut rss_max = rss_start;
    let mut next_scrape = Instant::now();
    while start.elapsed() < Duration::from_secs(idle) {
        if let Some((_, port)) = &anchor
            && Instant::now() >= next_scrape
        {
            scrape(*port);
            next_scrape += Duration::from_secs(15);
        }
        rss_max = rss_max.max(status_mib(pid, "VmRSS:"));
        std::thread::sleep(Duration::from_secs(1));
    }
    let secs = start.elapsed().as_secs_f64();
    let pct = |c: f64| c / secs * 100.0;
    println!(
        "  watch         RSS {rss_start:.1} MiB at start, {:.1} MiB at end (anonymous {:.1} MiB), VmHWM {:.1} MiB; CPU {:.3}% of a core ({:.2} s)",
        status_mib(pid, "VmRSS:"),
        status_mib(pid, "RssAnon:"),
        status_mib(pid, "VmHWM:"),
        pct(cpu_seconds(pid) - w0),
        cpu_seconds(pid) - w0
    );
    if let (Some((p, _)), Some(a0)) = (&anchor, a0) {
        let apid = p.0.id();
        println!(
            "  node_exporter RSS {:.1} MiB at end (anonymous {:.1} MiB), VmHWM {:.1} MiB; CPU {:.3}% of a core ({:.2} s; scraped every 15 s)",
            status_mib(apid, "VmRSS:"),
            status_mib(apid, "RssAnon:"),
            status_mib(apid, "VmHWM:"),
            pct(cpu_seconds(apid) - a0),
            cpu_seconds(apid) - a0
        );
    }

    // 2: every container restarted at once, BENCH_BURSTS times.
    let mut lost = false;
    for _ in 0..env("BENCH_BURSTS", 3) {
        lost |= !burst(&containers, &out, pid);
    }
    if lost {
        std::process::exit(1);
    }
}

/// Restarts every container at once and waits (bounded) until the watcher
/// has timed them; says what it cost and whether each was timed exactly once.
fn burst(containers: &Containers, out: &Path, pid: u32) -> bool {
    let n = containers.names.len();
    let before = records(out).len();
    let c0 = cpu_seconds(pid);
    let t = Instant::now();
    let restarts: Vec<_> = containers
        .names
        .iter()
        .map(|name| {
            let (name, host) = (name.clone(), containers.host.clone());
            std::thread::spawn(move || on(&host, &["restart", "-t", "10", &name]))
        })
        .collect();
    for r in restarts {
        r.join().unwrap().expect("docker restart");
    }
    let issued = t.elapsed().as_secs_f64();
    let ours = |got: &[bounce_wire::TimelineRecord]| {
        let mut per: std::collections::BTreeMap<String, usize> = Default::default();
        for r in &got[before.min(got.len())..] {
            *per.entry(r.service.clone()).or_default() += 1;
        }
        per
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut got = records(out);
    while ours(&got).len() < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        got = records(out);
    }
    // Late doubles would show here.
    std::thread::sleep(Duration::from_secs(2));
    got = records(out);
    let per = ours(&got);
    let burst = &got[before.min(got.len())..];
    let once = per.values().filter(|c| **c == 1).count();
    let ok = burst
        .iter()
        .filter(|r| r.outcome == bounce_wire::Outcome::Ok)
        .count();
    let cpu = cpu_seconds(pid) - c0;
    println!(
        "burst of {n} restarts at once (issued in {issued:.1} s): {} timelines, {once} containers timed exactly once, {ok} ok; watch CPU {:.2} ms/restart, VmHWM {:.1} MiB",
        burst.len(),
        cpu * 1e3 / n as f64,
        status_mib(pid, "VmHWM:")
    );
    let missing: Vec<&String> = containers
        .names
        .iter()
        .filter(|c| per.get(*c) != Some(&1))
        .collect();
    if !missing.is_empty() {
        println!("  not timed exactly once: {missing:?} ({per:?})");
    }
    missing.is_empty()
}
