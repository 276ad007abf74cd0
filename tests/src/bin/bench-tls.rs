//! What TLS costs the collector (numbers go to BENCHMARKS.md): the same
//! simulated fleet ingested three ways side by side, in one run, each into a
//! fresh release `bounce-collector` on loopback: plain HTTP with a token,
//! HTTPS with a token, and HTTPS with a node certificate per agent (mutual
//! TLS). Every agent is its own `bounce_client::CollectorClient`, so each
//! opens its own connection and, over TLS, makes its own handshake, as a
//! node's agent does once per run. The modes take turns, ROUNDS times, and
//! the medians are printed with the ratio to plain.
//!
//! Then the handshake alone: AGENTS fresh connections one after another,
//! each asking `GET /api/v1/whoami`, plain and over TLS: wall time and the
//! collector's CPU per connection (from /proc), the difference being the
//! handshake.
//!
//! With `BENCH_GAP_SECS=S`, each agent waits S seconds between its
//! batches, as a run's restarts are apart, and every agent sends at once
//! (CONCURRENCY is then AGENTS): whether the collector keeps an idle
//! connection, and its handshake, until the next batch is what this
//! measures. `BENCH_IDLE_SECS` passes `--idle-timeout-secs` (10 closes an
//! idle connection as collectors before 2026-11-30 did).
//!
//!   BOUNCE_COLLECTOR=target/release/bounce-collector target/release/bench-tls [AGENTS] [CONCURRENCY] [ROUNDS] [BATCHES_PER_AGENT]

use bounce_client::{CollectorClient, Trust};
use bounce_tests::pki::TestCa;
use bounce_tests::{ADMIN_TOKEN, AGENT_TOKEN, Scratch, fleet_batch, free_port};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Plain,
    TlsToken,
    MutualTls,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Plain => "plain HTTP, token",
            Mode::TlsToken => "TLS, token",
            Mode::MutualTls => "TLS, node certificate",
        }
    }
}

/// A release collector on a loopback port, with a fresh store.
struct Collector {
    child: std::process::Child,
    port: u16,
}

impl Collector {
    fn start(bin: &str, dir: &Path, tls: bool) -> Collector {
        let port = free_port();
        let mut cmd = std::process::Command::new(bin);
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--store")
            .arg(dir.join(format!("store-{port}.db")))
            .arg("--agent-token-file")
            .arg(dir.join("agent.token"))
            .arg("--admin-token-file")
            .arg(dir.join("admin.token"))
            // The benchmark's own address makes every request: no 429s.
            .args(["--auth-failures-per-minute", "0"])
            .stderr(std::process::Stdio::null());
        if let Ok(idle) = std::env::var("BENCH_IDLE_SECS") {
            cmd.args(["--idle-timeout-secs", &idle]);
        }
        if tls {
            cmd.arg("--tls-cert")
                .arg(dir.join("server.crt"))
                .arg("--tls-key")
                .arg(dir.join("server.key"))
                .arg("--client-ca")
                .arg(dir.join("ca.pem"));
        }
        let child = cmd.spawn().expect("start bounce-collector");
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Collector { child, port }
    }

    /// User + system CPU seconds the collector has used so far.
    fn cpu_secs(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // Fields after the command's closing parenthesis; utime and stime are 14 and 15.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
        ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One client per agent, made before the clock starts (an agent reads its
/// certificate once, at start).
fn clients(mode: Mode, port: u16, dir: &Path, nodes: &[String]) -> Vec<CollectorClient> {
    nodes
        .iter()
        .map(|node| {
            let (url, trust, token) = match mode {
                Mode::Plain => (
                    format!("http://127.0.0.1:{port}"),
                    Trust::default(),
                    Some(AGENT_TOKEN.to_string()),
                ),
                Mode::TlsToken => (
                    format!("https://127.0.0.1:{port}"),
                    Trust {
                        ca_file: Some(dir.join("ca.pem")),
                        ..Trust::default()
                    },
                    Some(AGENT_TOKEN.to_string()),
                ),
                Mode::MutualTls => (
                    format!("https://127.0.0.1:{port}"),
                    Trust {
                        ca_file: Some(dir.join("ca.pem")),
                        client_cert: Some(dir.join(format!("{node}.crt"))),
                        client_key: Some(dir.join(format!("{node}.key"))),
                        ..Trust::default()
                    },
                    None,
                ),
            };
            CollectorClient::new(&url, &trust, token).expect("a client")
        })
        .collect()
}

struct Round {
    secs: f64,
    cpu: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// Each client sends its requests one after another on its connection (its
/// batches, or one whoami when `bodies` is None), `gap` apart, over `conns`
/// workers; the collector's CPU is read around it. Latency is per request.
async fn send(
    col: &Collector,
    clients: Vec<CollectorClient>,
    bodies: Option<&[Vec<Vec<u8>>]>,
    conns: usize,
    gap: Duration,
) -> Round {
    let n = clients.len().max(1);
    type Work = (usize, CollectorClient, Vec<Option<Vec<u8>>>);
    let work: Vec<Work> = clients
        .into_iter()
        .enumerate()
        .map(|(i, c)| match bodies {
            Some(b) => (i, c, b[i].iter().cloned().map(Some).collect()),
            None => (i, c, vec![None]),
        })
        .collect();
    let queue = Arc::new(Mutex::new(work));
    let latency = Arc::new(Mutex::new(hdrhistogram::Histogram::<u64>::new(3).unwrap()));
    let cpu0 = col.cpu_secs();
    let t = Instant::now();
    let tasks: Vec<_> = (0..conns)
        .map(|_| {
            let (queue, latency) = (queue.clone(), latency.clone());
            tokio::spawn(async move {
                loop {
                    let Some((i, client, requests)) = queue.lock().unwrap().pop() else {
                        return;
                    };
                    // With gaps, the agents' batches are spread over the gap.
                    tokio::time::sleep(gap.mul_f64(i as f64 / n as f64)).await;
                    for (k, body) in requests.into_iter().enumerate() {
                        if k > 0 {
                            tokio::time::sleep(gap).await;
                        }
                        let t0 = Instant::now();
                        let timeout = Duration::from_secs(60);
                        let answer = match body {
                            Some(b) => client.post_json("/api/v1/ingest", b, timeout).await,
                            None => client.get("/api/v1/whoami", timeout).await,
                        }
                        .expect("an answer");
                        assert!(answer.status.is_success(), "{}", answer.reason());
                        let us = t0.elapsed().as_micros() as u64;
                        latency.lock().unwrap().record(us.max(1)).unwrap();
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    let lat = latency.lock().unwrap();
    Round {
        secs,
        cpu: col.cpu_secs() - cpu0,
        p50_ms: lat.value_at_quantile(0.5) as f64 / 1e3,
        p99_ms: lat.value_at_quantile(0.99) as f64 / 1e3,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The test PKI: a CA, the collector's certificate (for 127.0.0.1 too:
/// plain and TLS then connect alike, without a name lookup) and one per node.
fn pki(dir: &Path, nodes: &[String]) {
    let ca = TestCa::new(dir, "ca");
    ca.issue("server", &["localhost", "127.0.0.1"]);
    for node in nodes {
        ca.issue(node, &[node]);
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let agents: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let conns: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(64);
    let rounds: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(3);
    // Batches per agent over its one connection: 1 is the worst case (a
    // handshake per batch); a run sends one batch per restart.
    let per_agent: u64 = args.get(4).and_then(|a| a.parse().ok()).unwrap_or(1);
    let gap = Duration::from_secs_f64(
        std::env::var("BENCH_GAP_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0),
    );
    // Agents that wait between batches all run at once, as a fleet's do.
    let conns = if gap.is_zero() { conns } else { agents };
    let bin = std::env::var("BOUNCE_COLLECTOR")
        .expect("BOUNCE_COLLECTOR: path to a release bounce-collector");
    let dir = Scratch::new("bench-tls");
    std::fs::write(dir.path("agent.token"), AGENT_TOKEN).unwrap();
    std::fs::write(dir.path("admin.token"), ADMIN_TOKEN).unwrap();
    let mut x = 42u64;
    let mut nodes = Vec::new();
    let mut bodies: Vec<Vec<Vec<u8>>> = Vec::new();
    for a in 0..agents {
        let mut mine = Vec::new();
        for seq in 1..=per_agent {
            let mut b = fleet_batch(a, 50, &mut x);
            b.seq = seq;
            mine.push(serde_json::to_vec(&b).unwrap());
            if seq == 1 {
                nodes.push(b.agent.clone());
            }
        }
        bodies.push(mine);
    }
    pki(&dir.0, &nodes);

    let batches = agents * per_agent as usize;
    println!(
        "ingest: {agents} agents, {per_agent} batch(es) each over its own client ({} bytes on average), {:.1} s apart, {conns} agents at once, collector idle timeout {}; {rounds} rounds, medians",
        bodies.iter().flatten().map(Vec::len).sum::<usize>() / batches,
        gap.as_secs_f64(),
        std::env::var("BENCH_IDLE_SECS").map_or("default".into(), |s| format!("{s} s"))
    );
    let modes = [Mode::Plain, Mode::TlsToken, Mode::MutualTls];
    let mut results: Vec<Vec<Round>> = modes.iter().map(|_| Vec::new()).collect();
    for _ in 0..rounds {
        for (i, &mode) in modes.iter().enumerate() {
            let col = Collector::start(&bin, &dir.0, mode != Mode::Plain);
            let cs = clients(mode, col.port, &dir.0, &nodes);
            results[i].push(send(&col, cs, Some(&bodies), conns, gap).await);
        }
    }
    let summary = |rs: &[Round]| {
        (
            median(rs.iter().map(|r| batches as f64 / r.secs).collect()),
            median(rs.iter().map(|r| r.cpu * 1e3 / batches as f64).collect()),
            median(rs.iter().map(|r| r.p50_ms).collect()),
            median(rs.iter().map(|r| r.p99_ms).collect()),
        )
    };
    let (plain_rate, plain_cpu, ..) = summary(&results[0]);
    for (i, mode) in modes.iter().enumerate() {
        let (rate, cpu, p50, p99) = summary(&results[i]);
        println!(
            "  {:<22} {rate:>6.0} batches/s ({:>5.1}% of plain), collector CPU {cpu:.2} ms/batch ({:.2}x), latency p50 {p50:.1} ms, p99 {p99:.1} ms",
            mode.name(),
            rate / plain_rate * 100.0,
            cpu / plain_cpu
        );
    }

    println!("handshake: {agents} fresh connections one after another, GET /api/v1/whoami");
    let mut per = Vec::new();
    for mode in modes {
        let col = Collector::start(&bin, &dir.0, mode != Mode::Plain);
        let cs = clients(mode, col.port, &dir.0, &nodes);
        let r = send(&col, cs, None, 1, Duration::ZERO).await;
        per.push((
            r.secs * 1e3 / agents as f64,
            r.cpu * 1e3 / agents as f64,
            r.p50_ms,
        ));
        println!(
            "  {:<22} {:.2} ms per connection (p50 {:.2} ms), collector CPU {:.2} ms per connection",
            mode.name(),
            per.last().unwrap().0,
            r.p50_ms,
            per.last().unwrap().1
        );
    }
    for (i, mode) in modes.iter().enumerate().skip(1) {
        println!(
            "  handshake cost, {}: +{:.2} ms wall, +{:.2} ms collector CPU per agent",
            mode.name(),
            per[i].0 - per[0].0,
            per[i].1 - per[0].1
        );
    }
}
