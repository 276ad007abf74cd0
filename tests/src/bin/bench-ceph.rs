//! Benchmark of the Ceph path's two ways to ask the cluster (numbers go to
//! BENCHMARKS.md; nothing here is a pass/fail test), on the test cluster:
//!
//! 1. one question (`osd dump`, `pg dump pgs`) through the `ceph` CLI and
//!    through a librados session: wall time, and CPU of this process plus
//!    its children (the CLI processes), per call;
//! 2. a rolling restart of every OSD (`wait_for: pgs_active`, cluster
//!    noout) by the release agent through each, alternating: wall time, the
//!    agent's CPU with its children (wait4), and `osd_up` − `osd_boot`: the
//!    mon marks an OSD up before the OSD itself turns `active`, so the first
//!    osdmap question after `osd_boot` already sees it, and the gap is what
//!    asking costs (a late `osd_up` stamp).
//!
//! Run with `scripts/bench.sh` (release build). BENCH_CEPH_N sets the number
//! of rolling restarts per way (default 3).

use bounce_agent::ceph::mon::MonClient;
use bounce_tests::*;
use bounce_wire::{BoundaryName, Outcome};
use std::time::{Duration, Instant};

fn cpu_seconds() -> f64 {
    let mut total = 0.0;
    for who in [libc::RUSAGE_SELF, libc::RUSAGE_CHILDREN] {
        // SAFETY: getrusage fills the zeroed struct.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::getrusage(who, &mut u) }, 0);
        for t in [u.ru_utime, u.ru_stime] {
            total += t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        }
    }
    total
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let n: u32 = std::env::var("BENCH_CEPH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let agent_bin =
        std::env::var("BOUNCE_AGENT").expect("BOUNCE_AGENT: path to a release bounce-agent");
    let env = ceph_up();
    let _one = lock_cluster();
    env.wait_settled(&[]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    // 1: per question.
    let clients = rt.block_on(async {
        [
            ("ceph CLI", env.cli()),
            ("librados", MonClient::open(&env.librados()).await.unwrap()),
        ]
    });
    println!("| question | way | wall p50 | CPU per call (this process + children) |");
    println!("|---|---|---|---|");
    for (question, pgs) in [("osd dump", false), ("pg dump pgs", true)] {
        for (way, c) in &clients {
            let calls = 20;
            let mut walls = Vec::new();
            let cpu0 = cpu_seconds();
            for _ in 0..calls {
                let t = Instant::now();
                rt.block_on(async {
                    if pgs {
                        c.pgs().await.map(drop)
                    } else {
                        c.osd_dump().await.map(drop)
                    }
                })
                .unwrap();
                walls.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            let cpu = (cpu_seconds() - cpu0) / calls as f64 * 1000.0;
            println!(
                "| `{question}` | {way} | {:.1} ms | {cpu:.1} ms |",
                median(&mut walls)
            );
        }
    }
    drop(clients);

    // 2: rolling restarts.
    let dir = Scratch::new("bench-ceph");
    let yaml = |ceph: &str| {
        format!(
            "deployment: bench\nscenario: osd\nconcurrency: 1\ntargets:\n  - ceph_osd:\n      ids: all\n      bus: \"{}\"\n      ceph: {ceph}\n      admin_socket: \"{}/ceph-osd.{{id}}.asok\"\n    gates: {{wait_for: pgs_active}}\n    timeout: 120s\n",
            systemd_up().bus,
            env.run_dir.display()
        )
    };
    let conf = env.conf.display();
    let ways = [
        ("ceph CLI", yaml(&format!("[ceph, --conf, \"{conf}\"]"))),
        (
            "librados",
            yaml(&format!("{{librados: {{conf: \"{conf}\"}}}}")),
        ),
    ];
    let mut rows: Vec<(Vec<f64>, Vec<f64>, Vec<f64>)> = vec![Default::default(); ways.len()];
    for i in 0..n {
        for (w, (way, text)) in ways.iter().enumerate() {
            env.wait_settled(&[]);
            let scenario = dir.write(&format!("{w}.yaml"), text);
            let out = dir.path(&format!("out-{w}-{i}"));
            let state = dir.path("state");
            let t = Instant::now();
            let m = run_measured(
                &agent_bin,
                &scenario,
                &out,
                &["--state-dir", state.to_str().unwrap()],
            );
            let wall = t.elapsed().as_secs_f64();
            assert!(m.success, "{way}: the agent failed; see {}", out.display());
            let tls = read_timelines(&out);
            assert!(
                tls.iter().all(|t| t.outcome == Outcome::Ok),
                "{way}: {tls:?}"
            );
            rows[w].0.push(wall);
            rows[w].1.push(m.user_seconds + m.sys_seconds);
            for t in &tls {
                let lag = at(t, BoundaryName::OsdUp) - at(t, BoundaryName::OsdActive);
                rows[w].2.push(lag as f64 / 1e6);
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    println!();
    println!(
        "| way | rolling restart of {} OSDs, wall p50 | agent CPU with children, p50 | osd_up − osd_boot, p50 / max |",
        env.osds.len()
    );
    println!("|---|---|---|---|");
    for (w, (way, _)) in ways.iter().enumerate() {
        let (wall, cpu, lag) = &mut rows[w];
        let max = lag.iter().cloned().fold(0.0, f64::max);
        println!(
            "| {way} | {:.1} s | {:.2} s | {:.0} ms / {max:.0} ms |",
            median(wall),
            median(cpu),
            median(lag)
        );
    }
}
