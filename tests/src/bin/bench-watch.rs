//! Benchmark of `bounce-agent watch` on a node (numbers go to BENCHMARKS.md;
//! nothing here is a pass/fail test, but a burst that loses a restart is
//! reported as such and exits 1):
//!
//! 1. idle: BENCH_CONTAINERS (default 60) running containers and BENCH_UNITS
//!    (default 10) units of a private systemd manager followed; for
//!    BENCH_IDLE seconds (default 600) nothing restarts: the watcher's RSS
//!    (VmRSS every second, VmHWM at the end) and where its resident pages
//!    are (/proc/PID/smaps by mapping: the executable's own, other files,
//!    heap, other anonymous memory and stacks; each split into file-backed
//!    and anonymous pages), its threads, and its CPU (utime + stime from
//!    /proc/PID/stat over the window, % of one core). The anchor, measured
//!    side by side over the same window when `NODE_EXPORTER` (default
//!    `prometheus-node-exporter` on PATH) runs: node_exporter with its
//!    default collectors, scraped every 15 s as Prometheus would;
//!    then the executable's file pages are reclaimed (process_madvise
//!    MADV_PAGEOUT, what memory pressure would do to these clean pages):
//!    what comes back over 10 s of idle and the bursts is the watcher's
//!    working set, the rest only start-up ran. Every BENCH_SAMPLE seconds
//!    (default 30) the watcher's own memory is sampled (smaps_rollup
//!    `Anonymous` and `Private_Dirty`, the `[heap]` mapping's Rss): what it
//!    was at the start, half-way and at the end, and what the second half
//!    added per 1,000 restarts, tell a plateau from a leak. With
//!    BENCH_CHURN=1 the window is not idle: every BENCH_CHURN_EVERY ms
//!    (default 2000) one container is restarted (round robin), every fifth
//!    time a followed unit too, and a unit nobody follows restarts itself
//!    every 10 s (`Restart=always`): the per-event state of every path;
//! 2. bursts (BENCH_BURSTS, default 3): every container restarted at once
//!    (one `docker restart` per container, all in parallel): the watcher's CPU per observed restart,
//!    its peak RSS, and whether each restart was timed exactly once.
//!
//! Each build starts with its executable out of the page cache (as after a
//! boot). `BOUNCE_AGENT` is one release build, or several side by side
//! (`BOUNCE_AGENT="release=target/release/bounce-agent dist=target/dist/bounce-agent"`):
//! each `LABEL=PATH` watches the same node over the same window and bursts,
//! so builds are compared under the same load. The containers
//! `bounce-wbench-*` run on a simulated node's own engine (BENCH_NODE,
//! default `wbench`), and the units on a private manager of that node
//! (`/tmp/bounce-systemd-NODE`), so other work on the shared engine and
//! manager does not wake the watcher; removed at the end (the manager told
//! to exit). Two benches run at once need two BENCH_NODEs.

use bounce_tests::*;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The bench's containers on the node's own engine, removed when dropped.
struct Containers {
    names: Vec<String>,
    host: String,
}

impl Containers {
    fn start(node: &str, n: usize) -> Containers {
        let host = docker_node_up(node);
        let c = Containers {
            names: (0..n).map(|i| format!("bounce-wbench-{i:03}")).collect(),
            host,
        };
        for name in &c.names {
            let _ = docker_on(&c.host, &["rm", "-f", name]);
            docker_on(
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
            let _ = docker_on(&self.host, &["rm", "-f", name]);
        }
    }
}

/// The followed units (`bounce-t-wbench-N`) and, when the window churns,
/// one nobody follows that restarts itself every 10 s, on a private manager;
/// stopped and removed, the manager told to exit, when dropped.
struct Units {
    env: SystemdEnv,
    followed: Vec<String>,
    /// Not matched by the watcher's glob: only its signals reach it.
    unfollowed: Option<String>,
}

impl Units {
    fn start(node: &str, n: usize, churn: bool) -> Units {
        let env = systemd_private(Path::new(&format!("/tmp/bounce-systemd-{node}")));
        let units = Units {
            followed: (0..n)
                .map(|i| format!("bounce-t-wbench-{i}.service"))
                .collect(),
            unfollowed: churn.then(|| "bounce-u-wbench-churn.service".to_string()),
            env,
        };
        for name in &units.followed {
            let body = "[Service]\nExecStart=/bin/sleep 36000\n";
            std::fs::write(units.env.unit_dir.join(name), body).expect("write unit file");
        }
        if let Some(name) = &units.unfollowed {
            let body = "[Unit]\nStartLimitIntervalSec=0\n[Service]\nExecStart=/bin/sleep 10\nRestart=always\nRestartSec=100ms\n";
            std::fs::write(units.env.unit_dir.join(name), body).expect("write unit file");
        }
        units
            .env
            .systemctl(&["daemon-reload"])
            .expect("daemon-reload");
        for name in units.followed.iter().chain(&units.unfollowed) {
            units
                .env
                .systemctl(&["start", name])
                .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        }
        units
    }

    /// How often the unit nobody follows restarted itself (`NRestarts`).
    fn unfollowed_restarts(&self) -> usize {
        let Some(name) = &self.unfollowed else {
            return 0;
        };
        self.env
            .systemctl(&["show", "-p", "NRestarts", "--value", name])
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Units {
    fn drop(&mut self) {
        for name in self.followed.iter().chain(&self.unfollowed) {
            let _ = self.env.systemctl(&["stop", name]);
            let _ = std::fs::remove_file(self.env.unit_dir.join(name));
        }
        let _ = self.env.systemctl(&["exit"]);
    }
}

/// Restarts on the node while the window runs (BENCH_CHURN): one container
/// every `every` (round robin), every fifth time a followed unit too.
struct Churn {
    stop: Arc<AtomicBool>,
    /// Container restarts and followed-unit restarts made so far.
    made: Arc<[AtomicUsize; 2]>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Churn {
    fn start(containers: &Containers, units: &Units, every: Duration) -> Churn {
        let stop = Arc::new(AtomicBool::new(false));
        let made: Arc<[AtomicUsize; 2]> = Arc::new(Default::default());
        let (names, host) = (containers.names.clone(), containers.host.clone());
        let (followed, vars) = (units.followed.clone(), units.env.vars.clone());
        let (s, m) = (stop.clone(), made.clone());
        let thread = std::thread::spawn(move || {
            let mut i = 0;
            while !s.load(Ordering::SeqCst) {
                if docker_on(&host, &["restart", "-t", "1", &names[i % names.len()]]).is_ok() {
                    m[0].fetch_add(1, Ordering::SeqCst);
                }
                if i % 5 == 4 && !followed.is_empty() {
                    let unit = &followed[(i / 5) % followed.len()];
                    let ok = Command::new("systemctl")
                        .args(["--user", "restart", unit])
                        .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                        .status()
                        .is_ok_and(|s| s.success());
                    if ok {
                        m[1].fetch_add(1, Ordering::SeqCst);
                    }
                }
                i += 1;
                std::thread::sleep(every);
            }
        });
        Churn {
            stop,
            made,
            thread: Some(thread),
        }
    }

    fn made(&self) -> (usize, usize) {
        (
            self.made[0].load(Ordering::SeqCst),
            self.made[1].load(Ordering::SeqCst),
        )
    }

    /// Stops restarting; the one under way ends first.
    fn finish(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Churn {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The watcher's own memory, in MiB: /proc/PID/smaps_rollup's `Anonymous`
/// and `Private_Dirty`, and the `[heap]` mapping's Rss (the main arena:
/// the runtime is current-thread, so nearly all it allocates).
#[derive(Clone, Copy, Default)]
struct Own {
    anonymous: f64,
    private_dirty: f64,
    heap: f64,
}

fn own(pid: u32) -> Own {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .expect("/proc/PID/smaps_rollup");
    let field = |key: &str| -> f64 {
        rollup
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    Own {
        anonymous: field("Anonymous:"),
        private_dirty: field("Private_Dirty:"),
        heap: resident(pid).heap,
    }
}

/// One sample of the window: seconds in, each watcher's memory and
/// restarts timed, and the restarts of the unit nobody follows.
struct Sample {
    secs: f64,
    own: Vec<Own>,
    timed: Vec<usize>,
    unfollowed: usize,
}

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
    status_value(pid, key) / 1024.0
}

/// The number on a line of /proc/PID/status (kB for sizes).
fn status_value(pid: u32, key: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .expect(key)
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap()
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

/// Resident memory of a process by where it is mapped, in MiB, from
/// /proc/PID/smaps: each mapping's `Rss`, split into its file-backed pages
/// and its `Anonymous` ones (a private file mapping's pages written since,
/// such as relocated `.data.rel.ro`, are anonymous).
#[derive(Default)]
struct Resident {
    /// The executable's own mappings (text, read-only data, data).
    exe: (f64, f64),
    /// Other files (the C library and loader when dynamically linked).
    libs: (f64, f64),
    heap: f64,
    stacks: f64,
    /// Anonymous mappings without a name (mmap'd arenas, thread stacks).
    other: f64,
}

fn resident(pid: u32) -> Resident {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
    let exe = exe
        .to_string_lossy()
        .trim_end_matches(" (deleted)")
        .to_string();
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).expect("/proc/PID/smaps");
    let mut r = Resident::default();
    let (mut name, mut rss) = (String::new(), 0.0);
    let kib = |l: &str| -> f64 {
        l.split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            // A mapping's header: range perms offset dev inode [path].
            name = line.split_whitespace().nth(5).unwrap_or("").to_string();
        } else if first == "Rss:" {
            rss = kib(line);
        } else if first == "Anonymous:" {
            let anon = kib(line);
            match name.as_str() {
                n if n == exe => {
                    r.exe.0 += rss - anon;
                    r.exe.1 += anon;
                }
                "[heap]" => r.heap += rss,
                "[stack]" => r.stacks += rss,
                "" => r.other += rss,
                n if n.starts_with('/') => {
                    r.libs.0 += rss - anon;
                    r.libs.1 += anon;
                }
                // [vdso], [vvar], [vsyscall]: the kernel's.
                _ => {}
            }
        }
    }
    r
}

/// Asks the kernel to reclaim the file-backed pages of PID's executable
/// (process_madvise MADV_PAGEOUT over its mappings), as memory pressure
/// would: what the watcher faults back in afterwards is its working set,
/// the rest of the executable's resident pages were touched once (start-up).
/// Pages of files other processes map too (the C library) stay.
fn reclaim_executable(pid: u32) {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
    let exe = exe
        .to_string_lossy()
        .trim_end_matches(" (deleted)")
        .to_string();
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("/proc/PID/maps");
    // SAFETY: pidfd_open and process_madvise take plain integers and an
    // iovec array that lives across the call; they touch no memory of ours.
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid as libc::c_long, 0) as libc::c_int;
        assert!(
            pidfd >= 0,
            "pidfd_open {pid}: {}",
            std::io::Error::last_os_error()
        );
        for line in maps.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.get(5) != Some(&exe.as_str()) {
                continue;
            }
            let (start, end) = f[0].split_once('-').unwrap();
            let (start, end) = (
                usize::from_str_radix(start, 16).unwrap(),
                usize::from_str_radix(end, 16).unwrap(),
            );
            let iov = libc::iovec {
                iov_base: start as *mut libc::c_void,
                iov_len: end - start,
            };
            let r = libc::syscall(
                libc::SYS_process_madvise,
                pidfd,
                &iov as *const libc::iovec,
                1,
                libc::MADV_PAGEOUT,
                0,
            );
            if r < 0 {
                println!(
                    "  (process_madvise {pid}: {})",
                    std::io::Error::last_os_error()
                );
            }
        }
        libc::close(pidfd);
    }
}

/// Drops a file's pages from the page cache, so that every build starts
/// as after a node's boot: how many pages the kernel maps at each fault
/// depends on how the file came into the cache (here 64 KiB per fault of a
/// file faulted in, 128 KiB of one just read whole or written).
fn cold(file: &Path) {
    let f = std::fs::File::open(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    // SAFETY: a valid descriptor for the duration of the call.
    let r = unsafe {
        libc::posix_fadvise(
            std::os::fd::AsRawFd::as_raw_fd(&f),
            0,
            0,
            libc::POSIX_FADV_DONTNEED,
        )
    };
    assert_eq!(r, 0, "posix_fadvise {}", file.display());
}

/// One build of the agent watching the node.
struct Watcher {
    label: String,
    proc: Proc,
    out: std::path::PathBuf,
}

impl Watcher {
    fn pid(&self) -> u32 {
        self.proc.0.id()
    }
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
    let agents = std::env::var("BOUNCE_AGENT")
        .expect("BOUNCE_AGENT: a release bounce-agent, or LABEL=PATH pairs");
    let agents: Vec<(String, String)> = agents
        .split_whitespace()
        .map(|a| match a.split_once('=') {
            Some((label, path)) => (label.to_string(), path.to_string()),
            None => ("agent".to_string(), a.to_string()),
        })
        .collect();
    let node = std::env::var("BENCH_NODE").unwrap_or("wbench".into());
    let churn = env("BENCH_CHURN", 0) == 1;
    let sample_every = Duration::from_secs(env("BENCH_SAMPLE", 30).max(1));
    let dir = Scratch::new("bench-watch");
    let containers = Containers::start(&node, n);
    let units = Units::start(&node, units as usize, churn);
    let config = dir.write(
        "watch.yaml",
        &format!(
            "deployment: bench\nsystemd:\n  - bus: \"{}\"\n    units: [\"bounce-t-wbench-*\"]\n",
            units.env.bus
        ),
    );
    let watchers: Vec<Watcher> = agents
        .iter()
        .map(|(label, agent)| {
            cold(Path::new(agent));
            let out = dir.path(&format!("watch-{label}"));
            let log = std::fs::File::create(dir.path(&format!("watch-{label}.log"))).unwrap();
            let child = Command::new(agent)
                .args(["watch", "-o"])
                .arg(&out)
                .args(["--node", "wb", "--config"])
                .arg(&config)
                .env("DOCKER_HOST", &containers.host)
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("start {agent} watch: {e}"));
            Watcher {
                label: label.clone(),
                proc: Proc(child),
                out,
            }
        })
        .collect();
    let anchor = node_exporter();
    if anchor.is_none() {
        println!("(node_exporter not found: no anchor; apt-get install prometheus-node-exporter)");
    }
    // Settled: the engine's stream open, the managers subscribed.
    std::thread::sleep(Duration::from_secs(10));

    println!(
        "{} {idle} s: {n} containers running, {} units followed (load average {})",
        if churn { "churn" } else { "idle" },
        units.followed.len(),
        std::fs::read_to_string("/proc/loadavg").unwrap().trim()
    );
    let mut churning = churn.then(|| {
        Churn::start(
            &containers,
            &units,
            Duration::from_millis(env("BENCH_CHURN_EVERY", 2000)),
        )
    });
    let sample = |secs: f64| Sample {
        secs,
        own: watchers.iter().map(|w| own(w.pid())).collect(),
        timed: watchers.iter().map(|w| records(&w.out).len()).collect(),
        unfollowed: units.unfollowed_restarts(),
    };
    let mut samples = vec![sample(0.0)];
    let start = Instant::now();
    let cpu0: Vec<f64> = watchers.iter().map(|w| cpu_seconds(w.pid())).collect();
    let a0 = anchor.as_ref().map(|(p, _)| cpu_seconds(p.0.id()));
    let rss_start: Vec<f64> = watchers
        .iter()
        .map(|w| status_mib(w.pid(), "VmRSS:"))
        .collect();
    let mut rss_max = rss_start.clone();
    let mut next_scrape = Instant::now();
    let mut next_sample = Instant::now() + sample_every;
    while start.elapsed() < Duration::from_secs(idle) {
        if Instant::now() >= next_sample {
            let s = sample(start.elapsed().as_secs_f64());
            let each: Vec<String> = watchers
                .iter()
                .zip(&s.own)
                .zip(&s.timed)
                .map(|((w, o), t)| {
                    format!(
                        "{} anon {:.2} dirty {:.2} heap {:.2} MiB, {t} timed",
                        w.label, o.anonymous, o.private_dirty, o.heap
                    )
                })
                .collect();
            println!("  {:>5.0} s: {}", s.secs, each.join("; "));
            samples.push(s);
            next_sample += sample_every;
        }
        if let Some((_, port)) = &anchor
            && Instant::now() >= next_scrape
        {
            scrape(*port);
            next_scrape += Duration::from_secs(15);
        }
        for (w, max) in watchers.iter().zip(rss_max.iter_mut()) {
            *max = max.max(status_mib(w.pid(), "VmRSS:"));
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let secs = start.elapsed().as_secs_f64();
    if let Some(c) = &mut churning {
        c.finish();
        let (restarted, units_restarted) = c.made();
        println!(
            "  churn: {restarted} container restarts, {units_restarted} followed-unit restarts, {} restarts of the unit nobody follows",
            units.unfollowed_restarts()
        );
    }
    samples.push(sample(secs));
    growth(&watchers, &samples);
    let pct = |c: f64| c / secs * 100.0;
    for (i, w) in watchers.iter().enumerate() {
        let pid = w.pid();
        let cpu = cpu_seconds(pid) - cpu0[i];
        let r = resident(pid);
        println!(
            "  watch {:<8} RSS {:.1} MiB at start, {:.1} MiB at end (max {:.1}; anonymous {:.1} MiB), VmHWM {:.1} MiB; CPU {:.3}% of a core ({cpu:.2} s); {} threads",
            w.label,
            rss_start[i],
            status_mib(pid, "VmRSS:"),
            rss_max[i],
            status_mib(pid, "RssAnon:"),
            status_mib(pid, "VmHWM:"),
            pct(cpu),
            status_value(pid, "Threads:"),
        );
        println!(
            "        resident by mapping: executable {:.2} MiB file + {:.2} anonymous, other files {:.2} + {:.2}, heap {:.2}, other anonymous {:.2}, main stack {:.2}",
            r.exe.0, r.exe.1, r.libs.0, r.libs.1, r.heap, r.other, r.stacks
        );
    }
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

    // What the watchers need of their executables: the start-up's pages
    // reclaimed, then what idle and the bursts fault back in.
    for w in &watchers {
        reclaim_executable(w.pid());
    }
    std::thread::sleep(Duration::from_secs(10));
    for w in &watchers {
        println!(
            "  watch {:<8} after its executable's pages were reclaimed (MADV_PAGEOUT, as memory pressure would) and 10 s idle: RSS {:.1} MiB, executable {:.2} MiB file",
            w.label,
            status_mib(w.pid(), "VmRSS:"),
            resident(w.pid()).exe.0
        );
    }

    // 2: every container restarted at once, BENCH_BURSTS times.
    drop(churning);
    let mut lost = false;
    for _ in 0..env("BENCH_BURSTS", 3) {
        lost |= !burst(&containers, &watchers);
    }
    if lost {
        std::process::exit(1);
    }
}

/// The watcher's own memory at the window's start, half-way and end, and
/// what the second half added per 1,000 restarts timed: a plateau shows
/// as ~0, a leak as the same growth per restart in both halves.
fn growth(watchers: &[Watcher], samples: &[Sample]) {
    let (first, last) = (&samples[0], &samples[samples.len() - 1]);
    let mid = samples
        .iter()
        .min_by(|a, b| {
            (a.secs - last.secs / 2.0)
                .abs()
                .total_cmp(&(b.secs - last.secs / 2.0).abs())
        })
        .expect("samples");
    for (i, w) in watchers.iter().enumerate() {
        let (a, m, z) = (first.own[i], mid.own[i], last.own[i]);
        let per_1000 = |from: &Sample, to: &Sample, f: fn(&Own) -> f64| {
            let n = to.timed[i].saturating_sub(from.timed[i]);
            let kib = (f(&to.own[i]) - f(&from.own[i])) * 1024.0;
            match n {
                0 => format!("{kib:+.0} KiB, no restarts"),
                n => format!(
                    "{kib:+.0} KiB over {n} restarts, {:+.0} KiB per 1,000",
                    kib * 1000.0 / n as f64
                ),
            }
        };
        println!(
            "  watch {:<8} own memory at 0 / {:.0} / {:.0} s: anonymous {:.2} / {:.2} / {:.2} MiB, private dirty {:.2} / {:.2} / {:.2}, heap {:.2} / {:.2} / {:.2}; {} restarts timed, {} of the unit nobody follows",
            w.label,
            mid.secs,
            last.secs,
            a.anonymous,
            m.anonymous,
            z.anonymous,
            a.private_dirty,
            m.private_dirty,
            z.private_dirty,
            a.heap,
            m.heap,
            z.heap,
            last.timed[i] - first.timed[i],
            last.unfollowed - first.unfollowed,
        );
        println!(
            "        anonymous: first half {}; second half {}",
            per_1000(first, mid, |o| o.anonymous),
            per_1000(mid, last, |o| o.anonymous),
        );
    }
}

/// Restarts every container at once and waits (bounded) until each watcher
/// has timed them; says what it cost and whether each was timed exactly once.
fn burst(containers: &Containers, watchers: &[Watcher]) -> bool {
    let n = containers.names.len();
    let before: Vec<usize> = watchers.iter().map(|w| records(&w.out).len()).collect();
    let c0: Vec<f64> = watchers.iter().map(|w| cpu_seconds(w.pid())).collect();
    let t = Instant::now();
    let restarts: Vec<_> = containers
        .names
        .iter()
        .map(|name| {
            let (name, host) = (name.clone(), containers.host.clone());
            std::thread::spawn(move || docker_on(&host, &["restart", "-t", "10", &name]))
        })
        .collect();
    for r in restarts {
        r.join().unwrap().expect("docker restart");
    }
    let issued = t.elapsed().as_secs_f64();
    println!("burst of {n} restarts at once (issued in {issued:.1} s):");
    let ours = |got: &[bounce_wire::TimelineRecord], before: usize| {
        let mut per: std::collections::BTreeMap<String, usize> = Default::default();
        for r in &got[before.min(got.len())..] {
            *per.entry(r.service.clone()).or_default() += 1;
        }
        per
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline
        && watchers
            .iter()
            .zip(&before)
            .any(|(w, b)| ours(&records(&w.out), *b).len() < n)
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    // Late doubles would show here.
    std::thread::sleep(Duration::from_secs(2));
    let mut all = true;
    for (i, w) in watchers.iter().enumerate() {
        let got = records(&w.out);
        let per = ours(&got, before[i]);
        let burst = &got[before[i].min(got.len())..];
        let once = per.values().filter(|c| **c == 1).count();
        let ok = burst
            .iter()
            .filter(|r| r.outcome == bounce_wire::Outcome::Ok)
            .count();
        let cpu = cpu_seconds(w.pid()) - c0[i];
        println!(
            "  watch {:<8} {} timelines, {once} containers timed exactly once, {ok} ok; CPU {:.2} ms/restart, VmHWM {:.1} MiB; RSS now {:.1} MiB (executable {:.2} MiB file)",
            w.label,
            burst.len(),
            cpu * 1e3 / n as f64,
            status_mib(w.pid(), "VmHWM:"),
            status_mib(w.pid(), "VmRSS:"),
            resident(w.pid()).exe.0
        );
        let missing: Vec<&String> = containers
            .names
            .iter()
            .filter(|c| per.get(*c) != Some(&1))
            .collect();
        if !missing.is_empty() {
            println!("    not timed exactly once: {missing:?} ({per:?})");
            all = false;
        }
    }
    all
}
