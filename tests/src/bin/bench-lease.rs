//! Lease latency through a real collector (numbers go to BENCHMARKS.md): N
//! simulated agents of one fleet run join, then each loops ask → granted →
//! renew → return over loopback HTTP, as `bounce-agent run` does in a fleet
//! run, with every change journaled (fsynced) before its answer.
//!
//! `free`: `max_in_flight` 100% and no keyed limit, so every ask is granted
//! at once: the latency is the lease's own overhead (ask, renew, return:
//! p50/p99/max). `one-key`: every agent restarts the same service under
//! `service:{service}` max 1: grants per second through one key, i.e. the
//! hand-over from one return to the next grant.
//!
//!   BOUNCE_COLLECTOR=target/release/bounce-collector target/release/bench-lease AGENTS [ROUNDS] [free|one-key]

use bounce_tests::{AGENT_TOKEN, Scratch, bench_collector};
use bounce_wire::Outcome;
use bounce_wire::lease::{
    AgentCall, FleetAnswer, FleetCall, FleetTerms, Join, Restart, Ticket, agent_path,
};
use bounce_wire::limits::Kind;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::sync::{Arc, Mutex};
use std::time::Instant;

type Http = Client<HttpConnector, Full<Bytes>>;

struct Agent {
    client: Http,
    url: String,
    node: String,
}

impl Agent {
    async fn call(&self, call: AgentCall) -> FleetAnswer {
        let body = serde_json::to_vec(&FleetCall {
            node: self.node.clone(),
            epoch: 0,
            call,
        })
        .unwrap();
        let req = hyper::Request::post(self.url.as_str())
            .header("authorization", format!("Bearer {AGENT_TOKEN}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let resp = self.client.request(req).await.expect("request");
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        assert!(
            status.is_success(),
            "{status}: {}",
            String::from_utf8_lossy(&bytes)
        );
        serde_json::from_slice(&bytes).expect("a fleet answer")
    }
}

#[derive(Default)]
struct Latencies {
    ask: Vec<u64>,
    renew: Vec<u64>,
    give_back: Vec<u64>,
}

fn micros(t: Instant) -> u64 {
    t.elapsed().as_micros() as u64
}

async fn agent_loop(a: Agent, service: String, rounds: u32, out: Arc<Mutex<Latencies>>) {
    let mut mine = Latencies::default();
    for round in 1..=rounds {
        let restart = Restart {
            kind: Kind::Docker,
            service: service.clone(),
            target: service.clone(),
            iteration: round,
        };
        let t = Instant::now();
        let lease = loop {
            let answer = a
                .call(AgentCall::Ask {
                    restarts: vec![restart.clone()],
                    wait_ms: 10_000,
                })
                .await;
            let FleetAnswer::Tickets { tickets, .. } = answer else {
                panic!("not tickets: {answer:?}");
            };
            match &tickets[0] {
                Ticket::Granted { lease, .. } => break *lease,
                Ticket::Waiting { .. } => continue,
                Ticket::Refused { why } => panic!("refused: {why}"),
            }
        };
        mine.ask.push(micros(t));
        let t = Instant::now();
        a.call(AgentCall::Renew { lease }).await;
        mine.renew.push(micros(t));
        let t = Instant::now();
        a.call(AgentCall::Return {
            lease,
            outcome: Outcome::Ok,
        })
        .await;
        mine.give_back.push(micros(t));
    }
    a.call(AgentCall::Finish).await;
    let mut all = out.lock().unwrap();
    all.ask.extend(mine.ask);
    all.renew.extend(mine.renew);
    all.give_back.extend(mine.give_back);
}

fn quantiles(name: &str, v: &[u64]) {
    let mut h = Histogram::<u64>::new(3).unwrap();
    for &x in v {
        h.record(x.max(1)).unwrap();
    }
    println!(
        "  {name:<10} p50 {:>8.2} ms  p99 {:>8.2} ms  max {:>8.2} ms  ({} calls)",
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
        h.max() as f64 / 1000.0,
        h.len()
    );
}

fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime: fields 14 and 15, i.e. 11 and 12 after the ')'.
    (ticks(11) + ticks(12)) / 100.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let agents: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100);
    let rounds: u32 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(20);
    let one_key = args.get(3).map(String::as_str) == Some("one-key");
    let dir = Scratch::new("bench-lease");
    let (mut child, port) = bench_collector(&dir);

    let run = "bench-lease-1";
    let limits = if one_key {
        r#"{"max_in_flight":"100%","limits":[{"key":"service:{service}","max":1}]}"#
    } else {
        r#"{"max_in_flight":"100%"}"#
    };
    let terms = FleetTerms {
        deployment: "bench".into(),
        scenario: "lease".into(),
        limits: serde_json::from_str(limits).unwrap(),
        nodes: agents as u32,
        node_concurrency: 1,
        lease_ttl_ms: 60_000,
    };
    let client: Http = Client::builder(TokioExecutor::new()).build_http();
    let url = format!("http://127.0.0.1:{port}{}", agent_path(run));
    let fleet: Vec<Agent> = (0..agents)
        .map(|i| Agent {
            client: client.clone(),
            url: url.clone(),
            node: format!("node{i:05}"),
        })
        .collect();
    for a in &fleet {
        a.call(AgentCall::Join(Join {
            labels: Default::default(),
            terms: terms.clone(),
        }))
        .await;
    }
    let cpu0 = cpu_secs(child.id());
    let out = Arc::new(Mutex::new(Latencies::default()));
    let t = Instant::now();
    let tasks: Vec<_> = fleet
        .into_iter()
        .enumerate()
        .map(|(i, a)| {
            let service = if one_key {
                "nova_api".to_string()
            } else {
                format!("svc{i}")
            };
            tokio::spawn(agent_loop(a, service, rounds, out.clone()))
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    let cpu = cpu_secs(child.id()) - cpu0;
    let grants = agents as f64 * f64::from(rounds);
    println!(
        "bench-lease: {agents} agents x {rounds} rounds, {} ({}), {:.1} s, {:.0} grants/s, collector CPU {:.2} ms per lease (ask+renew+return)",
        if one_key { "one-key" } else { "free" },
        if one_key {
            "service:{service} max 1, every agent the same service"
        } else {
            "max_in_flight 100%, no keyed limit"
        },
        secs,
        grants / secs,
        cpu * 1000.0 / grants
    );
    let l = out.lock().unwrap();
    quantiles("ask→grant", &l.ask);
    quantiles("renew", &l.renew);
    quantiles("return", &l.give_back);
    let _ = child.kill();
    let _ = child.wait();
}
