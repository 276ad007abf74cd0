//! A deterministic discrete-event simulation of a fleet run through the
//! lease book: N agents × M targets under `service:{service}` max 1 and
//! `max_in_flight` P% of the nodes, restart durations drawn from this
//! project's measured runs. Prints the makespan against the ideal schedule
//! for those limits (a lower bound) and what each book call costs, wall
//! clock. Numbers go to BENCHMARKS.md.
//!
//!   cargo run --release -p bounce-fleet --example fleet-sim [NODES TARGETS PERCENT SEED]

use bounce_fleet::{
    Event, FleetSpec, Kind, LeaseBook, LeaseId, LeaseRequest, Limits, Millis, NodeSpec, Restart,
    Step,
};
use bounce_wire::Outcome;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Instant;

/// splitmix64: small, deterministic, good enough to draw durations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [lo, hi) milliseconds, as µs.
    fn uniform_us(&mut self, lo_ms: f64, hi_ms: f64) -> u64 {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((lo_ms + u * (hi_ms - lo_ms)) * 1000.0) as u64
    }
}

/// One restart's duration, in µs, from BENCHMARKS.md: the agent's Docker
/// restart (193.8 ms median), the readiness bench's service (ready 0.4–0.9 s
/// after start) and the tcp probe's lag (up to ~100 ms); 2% of restarts hit
/// Docker's 10 s stop timeout (SIGKILL, like the demo's stubborn container);
/// services flagged `osd` take 2.0–2.8 s (a rolling restart of 3 OSDs took
/// 5.9–8.5 s).
fn duration_us(rng: &mut Rng, osd: bool) -> u64 {
    if osd {
        return rng.uniform_us(1970.0, 2830.0);
    }
    let mut d = 193_800 + rng.uniform_us(400.0, 900.0) + rng.uniform_us(0.0, 100.0);
    if rng.next().is_multiple_of(50) {
        d += 10_000_000;
    }
    d
}

/// Agents ask one target at a time in scenario order (the runner today),
/// or for all their targets at once and restart whichever is granted.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Ordered,
    AnyOrder,
}

const RTT_US: u64 = 1_000;
const TTL_MS: u64 = 30_000;
const RENEW_US: u64 = 10_000_000;

#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    End { lease: u64 },
    Renew { lease: u64 },
}

struct Sim {
    book: LeaseBook,
    mode: Mode,
    nodes: Vec<String>,
    targets: usize,
    /// (node, target) → duration (µs), drawn up front so both modes restart the same fleet.
    work: Vec<Vec<u64>>,
    next_target: Vec<usize>,
    lease_of: HashMap<u64, (usize, usize)>,
    end_of: HashMap<u64, u64>,
    heap: BinaryHeap<Reverse<(u64, Due)>>,
    now_us: u64,
    request_us: Vec<f64>,
    return_us: Vec<f64>,
    renew_us: Vec<f64>,
    events: Vec<Event>,
    last_end_us: u64,
    restarts: usize,
}

impl Sim {
    fn now(&self) -> Millis {
        Millis(self.now_us / 1000)
    }

    fn record<T>(&mut self, step: Step<T>) -> Result<T, bounce_fleet::Refusal> {
        for e in &step.events {
            if let Event::Granted { lease, .. } = e {
                let (n, t) = self.lease_of[&lease.0];
                let end = self.now_us + RTT_US + self.work[n][t];
                self.end_of.insert(lease.0, end);
                self.heap.push(Reverse((end, Due::End { lease: lease.0 })));
                self.renew_before(lease.0, self.now_us + RENEW_US, end);
            }
        }
        self.events.extend(step.events);
        step.answer
    }

    /// The agent renews every RENEW_US while its restart lasts.
    fn renew_before(&mut self, lease: u64, at: u64, end: u64) {
        if at < end {
            self.heap.push(Reverse((at, Due::Renew { lease })));
        }
    }

    fn ask(&mut self, n: usize, t: usize) {
        let req = LeaseRequest {
            run: "sim".into(),
            node: self.nodes[n].clone(),
            restart: Restart {
                kind: Kind::Docker,
                service: format!("svc{t:02}"),
                target: format!("svc{t:02}"),
                iteration: 1,
            },
        };
        let t0 = Instant::now();
        let step = self.book.request(&req, self.now());
        self.request_us.push(t0.elapsed().as_secs_f64() * 1e6);
        // The lease id is the request's number: known before any grant event
        // of this step is handled.
        let id = match step.events.iter().find_map(|e| match e {
            Event::Requested { lease, .. } => Some(lease.0),
            _ => None,
        }) {
            Some(id) => id,
            None => panic!("request refused: {:?}", step.answer),
        };
        self.lease_of.insert(id, (n, t));
        self.record(step).expect("granted or waiting");
    }

    fn run(&mut self) {
        for n in 0..self.nodes.len() {
            match self.mode {
                Mode::Ordered => {
                    self.next_target[n] = 1;
                    self.ask(n, 0);
                }
                Mode::AnyOrder => (0..self.targets).for_each(|t| self.ask(n, t)),
            }
        }
        while let Some(Reverse((at, due))) = self.heap.pop() {
            self.now_us = at;
            match due {
                Due::Renew { lease } => {
                    let (n, _) = self.lease_of[&lease];
                    let t0 = Instant::now();
                    let step = self
                        .book
                        .renew("sim", &self.nodes[n], LeaseId(lease), self.now());
                    self.renew_us.push(t0.elapsed().as_secs_f64() * 1e6);
                    self.record(step).expect("renewed");
                    self.renew_before(lease, at + RENEW_US, self.end_of[&lease]);
                }
                Due::End { lease } => {
                    let (n, _) = self.lease_of[&lease];
                    self.last_end_us = at;
                    self.restarts += 1;
                    let t0 = Instant::now();
                    let step = self.book.give_back(
                        "sim",
                        &self.nodes[n],
                        LeaseId(lease),
                        Outcome::Ok,
                        self.now(),
                    );
                    self.return_us.push(t0.elapsed().as_secs_f64() * 1e6);
                    self.record(step).expect("returned");
                    if self.mode == Mode::Ordered && self.next_target[n] < self.targets {
                        let t = self.next_target[n];
                        self.next_target[n] += 1;
                        self.ask(n, t);
                    }
                }
            }
        }
    }
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("NODES TARGETS PERCENT SEED are numbers"))
        .collect();
    let arg = |i: usize, d: u64| args.get(i).copied().unwrap_or(d);
    let (nodes, targets, percent, seed) = (
        arg(0, 1000) as usize,
        arg(1, 60) as usize,
        arg(2, 10),
        arg(3, 1),
    );
    let limits: Limits = fleet_limits(percent);
    let mut rng = Rng(seed);
    let osd_every = 20; // 3 of 60 services are OSD-like
    let work: Vec<Vec<u64>> = (0..nodes)
        .map(|_| {
            (0..targets)
                .map(|t| duration_us(&mut rng, t % osd_every == osd_every - 1))
                .collect()
        })
        .collect();
    let slots = limits.max_in_flight.slots(nodes) as u64;
    let total: u64 = work.iter().flatten().map(|d| d + RTT_US).sum();
    let per_service = (0..targets)
        .map(|t| work.iter().map(|w| w[t] + RTT_US).sum::<u64>())
        .max()
        .unwrap_or(0);
    let per_node = work
        .iter()
        .map(|w| w.iter().map(|d| d + RTT_US).sum::<u64>())
        .max()
        .unwrap_or(0);
    let ideal = (total / slots).max(per_service).max(per_node);
    println!(
        "fleet: {nodes} agents × {targets} targets, service:{{service}} max 1, max_in_flight {percent}% = {slots}, node concurrency 1, seed {seed}"
    );
    println!(
        "work: {:.0} s in total, mean restart {:.3} s; ideal makespan {:.1} s (total/in-flight {:.1} s, longest service {:.1} s, longest node {:.1} s)",
        total as f64 / 1e6,
        total as f64 / 1e6 / (nodes * targets) as f64,
        ideal as f64 / 1e6,
        (total / slots) as f64 / 1e6,
        per_service as f64 / 1e6,
        per_node as f64 / 1e6
    );
    for (mode, name) in [
        (
            Mode::AnyOrder,
            "any order (all of a node's requests at once)",
        ),
        (
            Mode::Ordered,
            "scenario order (one request per node at a time)",
        ),
    ] {
        let spec = FleetSpec {
            run: "sim".into(),
            limits: limits.clone(),
            nodes: (0..nodes)
                .map(|i| NodeSpec {
                    name: format!("node{i:04}"),
                    labels: Default::default(),
                })
                .collect(),
            node_concurrency: 1,
            lease_ttl_ms: TTL_MS,
        };
        let (book, opened) = LeaseBook::open(spec, Millis(0)).expect("fleet opens");
        let mut sim = Sim {
            book,
            mode,
            nodes: (0..nodes).map(|i| format!("node{i:04}")).collect(),
            targets,
            work: work.clone(),
            next_target: vec![0; nodes],
            lease_of: HashMap::new(),
            end_of: HashMap::new(),
            heap: BinaryHeap::new(),
            now_us: 0,
            request_us: Vec::new(),
            return_us: Vec::new(),
            renew_us: Vec::new(),
            events: vec![opened],
            last_end_us: 0,
            restarts: 0,
        };
        let wall = Instant::now();
        sim.run();
        let wall = wall.elapsed();
        assert_eq!(sim.restarts, nodes * targets, "every restart made");
        let t0 = Instant::now();
        let replayed = LeaseBook::replay(sim.events.clone()).expect("the log replays");
        let replay = t0.elapsed();
        assert!(replayed == sim.book, "replay equals the live book");
        let makespan = sim.last_end_us as f64 / 1e6;
        println!("\n{name}:");
        println!(
            "  makespan {makespan:.1} s = {:.2}% over ideal; {} events; simulated in {:.2} s; replay of the log {:.0} ms",
            (makespan / (ideal as f64 / 1e6) - 1.0) * 100.0,
            sim.events.len(),
            wall.as_secs_f64(),
            replay.as_secs_f64() * 1e3
        );
        for (what, v) in [
            ("request", &mut sim.request_us),
            ("give_back (grants the next)", &mut sim.return_us),
            ("renew", &mut sim.renew_us),
        ] {
            if !v.is_empty() {
                println!(
                    "  {what}: n={} p50 {:.1} µs, p99 {:.1} µs, max {:.0} µs",
                    v.len(),
                    pct(v, 0.5),
                    pct(v, 0.99),
                    pct(v, 1.0)
                );
            }
        }
    }
}

fn fleet_limits(percent: u64) -> Limits {
    use bounce_fleet::{InFlight, KeyLimit, Max, Template};
    Limits::new(
        InFlight::parse(&format!("{percent}%")).expect("a percentage"),
        Max::parse("max_failures", 1).expect("1"),
        vec![KeyLimit {
            key: Template::parse("service:{service}").expect("template"),
            max: Max::parse("max", 1).expect("1"),
            kinds: None,
        }],
    )
    .expect("limits")
}
