//! Benchmark of a large node and a long run (numbers go to BENCHMARKS.md;
//! nothing here is a pass/fail test):
//!
//! 1. a node of BENCH_CONTAINERS (default 100) containers at concurrency 10,
//!    2 restarts each: the agent's peak RSS and CPU per restart (wait4), and
//!    its makespan (first request to last finish) against the ideal (sum of
//!    restart times / concurrency); for `BOUNCE_AGENT` and, when set,
//!    `BOUNCE_AGENT_OLD` (a build of an earlier commit), alternating;
//! 2. a long run: BENCH_LONG restarts (default 10,000) repeated over 10 of
//!    those containers at concurrency 10: the agent's RSS and open files
//!    read from /proc every second, the folder's size, and the time and peak
//!    RSS of reading it back (`bounce-collector summarize`, `report --from`).
//!
//! The containers are `bounce-bench-*`, removed at the end. Run it under
//! the e2e lock (`scripts/bench.sh` does), release builds.

use bounce_tests::*;
use bounce_wire::BoundaryName;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The bench's containers, removed when dropped.
struct Node(Vec<String>);

impl Node {
    fn start(n: usize) -> Node {
        docker_up();
        let node = Node((0..n).map(|i| format!("bounce-bench-{i:03}")).collect());
        for name in &node.0 {
            let _ = docker(&["rm", "-f", name]);
            docker(&[
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
            ])
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        }
        node
    }

    fn scenario(
        &self,
        dir: &Scratch,
        label: &str,
        count: usize,
        repeat: u32,
    ) -> std::path::PathBuf {
        let names = self.0[..count].join(", ");
        dir.write(
            &format!("{label}.yaml"),
            &format!(
                "deployment: bench\nscenario: {label}\nrepeat: {repeat}\nconcurrency: 10\ntargets:\n  - docker: {{names: [{names}]}}\n    stop_timeout: 10s\n    timeout: 60s\n"
            ),
        )
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = Command::new("docker").args(["rm", "-f", name]).output();
        }
    }
}

/// Makespan and ideal (seconds) of a run folder's timelines.
fn makespan(out: &Path) -> (f64, f64, usize) {
    let tls = read_timelines(out);
    let first = tls
        .iter()
        .map(|t| at(t, BoundaryName::Requested))
        .min()
        .unwrap();
    let last = tls
        .iter()
        .map(|t| at(t, BoundaryName::Finished))
        .max()
        .unwrap();
    let busy: i64 = tls
        .iter()
        .map(|t| at(t, BoundaryName::Finished) - at(t, BoundaryName::Requested))
        .sum();
    (
        (last - first) as f64 / 1e9,
        busy as f64 / 1e9 / 10.0,
        tls.len(),
    )
}

fn mib(kib: i64) -> f64 {
    kib as f64 / 1024.0
}

/// VmRSS (KiB) and open files of a live process.
fn sample(pid: u32) -> Option<(i64, usize)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    Some((rss, fds))
}

fn lines(path: &Path) -> usize {
    std::fs::read(path)
        .map(|b| b.iter().filter(|c| **c == b'\n').count())
        .unwrap_or(0)
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

fn main() {
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (containers, long) = (env("BENCH_CONTAINERS", 100), env("BENCH_LONG", 10_000));
    let agent = std::env::var("BOUNCE_AGENT").expect("BOUNCE_AGENT: a release bounce-agent");
    let old = std::env::var("BOUNCE_AGENT_OLD").ok();
    let collector =
        std::env::var("BOUNCE_COLLECTOR").expect("BOUNCE_COLLECTOR: a release bounce-collector");
    let dir = Scratch::new("bench-scale");
    let node = Node::start(containers);

    // 1: a large node.
    let scenario = node.scenario(&dir, "node", containers, 2);
    println!("{containers} containers, 2 restarts each, concurrency 10");
    let mut agents = vec![("now", agent.as_str())];
    if let Some(o) = &old {
        agents.push(("before", o.as_str()));
    }
    for round in 0..2 {
        for (label, bin) in &agents {
            let out = dir.path(&format!("node-{label}-{round}"));
            let t = Instant::now();
            let m = run_measured(bin, &scenario, &out, &[]);
            let wall = t.elapsed().as_secs_f64();
            let (span, ideal, n) = makespan(&out);
            println!(
                "  {label:<6} ok={} peak RSS {:.1} MiB, CPU {:.2} ms/restart ({n} restarts), makespan {span:.1} s, ideal {ideal:.1} s ({:.3}x), process {wall:.1} s",
                m.success,
                mib(m.max_rss_kib),
                (m.user_seconds + m.sys_seconds) * 1e3 / n as f64,
                span / ideal
            );
        }
    }

    // 2: a long run over 10 containers.
    let repeat = (long / 10) as u32;
    let scenario = node.scenario(&dir, "long", 10, repeat);
    let out = dir.path("long");
    let child = Command::new(&agent)
        .args(run_args(&scenario, &out, &[]))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn agent");
    let pid = child.id();
    let sampler = {
        let tl = out.join("timelines.jsonl");
        std::thread::spawn(move || {
            let mut samples = Vec::new();
            let t = Instant::now();
            while let Some((rss, fds)) = sample(pid) {
                samples.push((t.elapsed().as_secs_f64(), lines(&tl), rss, fds));
                std::thread::sleep(Duration::from_secs(1));
            }
            samples
        })
    };
    let t = Instant::now();
    let m = measure(child);
    let wall = t.elapsed().as_secs_f64();
    let samples = sampler.join().unwrap();
    let restarts = lines(&out.join("timelines.jsonl"));
    println!(
        "long run: {restarts} restarts of 10 containers, concurrency 10, {wall:.0} s, ok={}",
        m.success
    );
    let started = samples.iter().find(|s| s.1 >= 100).unwrap_or(&samples[0]);
    let last = samples.last().unwrap();
    let most_fds = samples.iter().map(|s| s.3).max().unwrap();
    let least_fds = samples.iter().map(|s| s.3).min().unwrap();
    println!(
        "  RSS at {} restarts {:.1} MiB, at {} restarts {:.1} MiB, peak {:.1} MiB; open files {least_fds}..{most_fds} over {} samples",
        started.1,
        mib(started.2),
        last.1,
        mib(last.2),
        mib(m.max_rss_kib),
        samples.len()
    );
    println!(
        "  CPU {:.2} ms/restart; folder {:.1} MiB ({:.0} bytes/restart)",
        (m.user_seconds + m.sys_seconds) * 1e3 / restarts as f64,
        dir_bytes(&out) as f64 / 1048576.0,
        dir_bytes(&out) as f64 / restarts as f64
    );
    let report_out = dir.path("long-report");
    for (what, args) in [
        (
            "summarize",
            vec!["summarize".into(), out.clone().into_os_string()],
        ),
        (
            "report --from",
            vec![
                "report".into(),
                "--from".into(),
                out.clone().into_os_string(),
                "--out".into(),
                report_out.clone().into_os_string(),
            ],
        ),
    ] {
        let t = Instant::now();
        let child = Command::new(&collector)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let m = measure(child);
        println!(
            "  {what}: {:.2} s, peak RSS {:.1} MiB, ok={}",
            t.elapsed().as_secs_f64(),
            mib(m.max_rss_kib),
            m.success
        );
    }
}
