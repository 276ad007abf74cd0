//! The agent's side of a fleet run: it joins with the node's labels and the
//! run's terms and waits until every node has; then, as the runner's
//! [`Gate`], it asks the collector for leases (every pending target at once,
//! or the next one in scenario order), renews a lease while its restart
//! lasts, gives it back with the outcome, and takes back what was granted
//! and never started. The collector decides when, never what: only the
//! agent's own restarts are named.
//!
//! With the collector away nothing new starts: asks are retried, restarts in
//! flight go on (their results wait in the spool), a return is resent until
//! it is taken. After `wait` without an answer the agent gives up; the
//! runner then ends the run as after Ctrl-C.

use crate::runner::{Gate, GateStop, Job, Permit};
use crate::scenario::AskOrder;
use crate::stream::Collector;
use crate::target::Alongside;
use bounce_wire::Outcome;
use bounce_wire::lease::{
    AgentCall, Control, FleetAnswer, FleetCall, Join, LeaseId, MAX_FLEET_BODY, Restart, Ticket,
    agent_path,
};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// How long the collector may hold an `ask` open.
const ASK_WAIT: Duration = Duration::from_secs(10);
/// A call's own bound (an `ask` is held open up to [`ASK_WAIT`] on top).
const CALL_WITHIN: Duration = Duration::from_secs(10);

/// How a call went.
enum Link {
    /// The collector answered no (4xx): resending would not help.
    Refused(String),
    /// Not reached, or a 5xx: try again.
    Away(String),
}

/// A fleet run's client for one node.
pub struct FleetClient {
    collector: Collector,
    path: String,
    node: String,
    /// The node's epoch in the run, from the join's answer (above 0 when
    /// this agent rejoined a node an operator resolved).
    epoch: AtomicU32,
    order: AskOrder,
    wait: Duration,
    /// Each target as the fleet names it (iteration set per job).
    restarts: Vec<Restart>,
    leases: Mutex<Leases>,
    last_pause: Mutex<Option<String>>,
}

/// Leases seen granted, which of them a worker took up, and every job
/// asked for and not given back (an ask cancelled mid-flight may have been
/// granted without this agent hearing of it).
#[derive(Default)]
struct Leases {
    granted: HashMap<LeaseId, Job>,
    /// What each grant said to count as down with it (Ceph OSDs).
    alongside: HashMap<LeaseId, Vec<String>>,
    taken: HashSet<LeaseId>,
    asked: HashSet<Job>,
}

impl FleetClient {
    /// `restarts[i]` names target `i` (any iteration).
    pub fn new(
        collector: Collector,
        run: &str,
        node: String,
        order: AskOrder,
        wait: Duration,
        restarts: Vec<Restart>,
    ) -> FleetClient {
        FleetClient {
            collector,
            path: agent_path(run),
            node,
            epoch: AtomicU32::new(0),
            order,
            wait,
            restarts,
            leases: Mutex::new(Leases::default()),
            last_pause: Mutex::new(None),
        }
    }

    async fn call(&self, call: AgentCall, within: Duration) -> Result<FleetAnswer, Link> {
        let body = serde_json::to_vec(&FleetCall {
            node: self.node.clone(),
            epoch: self.epoch(),
            call,
        })
        .expect("fleet calls serialize");
        match self.collector.post_json(&self.path, body, within).await {
            Ok(a) if a.body.len() > MAX_FLEET_BODY => Err(Link::Refused(format!(
                "{}: an answer of {} bytes",
                a.status,
                a.body.len()
            ))),
            Ok(a) if a.status.is_success() => serde_json::from_slice(&a.body)
                .map_err(|e| Link::Refused(format!("not a fleet answer: {e}"))),
            Ok(a) if a.status.is_client_error() => {
                Err(Link::Refused(format!("{}: {}", a.status, a.reason())))
            }
            Ok(a) => Err(Link::Away(format!("{}: {}", a.status, a.reason()))),
            Err(why) => Err(Link::Away(why)),
        }
    }

    /// Calls until answered; `Err` when refused, or away for longer than `wait`.
    async fn call_until_answered(&self, call: AgentCall) -> Result<FleetAnswer, String> {
        let first = Instant::now();
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.call(call.clone(), CALL_WITHIN).await {
                Ok(a) => return Ok(a),
                Err(Link::Refused(why)) => return Err(why),
                Err(Link::Away(why)) => {
                    if first.elapsed() > self.wait {
                        return Err(format!(
                            "the collector has not answered for {} s: {why}",
                            first.elapsed().as_secs()
                        ));
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    /// The node's epoch in the run (0 until joined; see [`FleetAnswer::Joined`]).
    pub fn epoch(&self) -> u32 {
        self.epoch.load(Ordering::Relaxed)
    }

    /// Registers this node and waits until every node of the run has (up
    /// to `wait` without a new node, or the collector away that long).
    pub async fn join(&self, join: Join) -> Result<(), String> {
        let mut seen = 0;
        let mut progress = Instant::now();
        loop {
            match self
                .call_until_answered(AgentCall::Join(join.clone()))
                .await?
            {
                FleetAnswer::Joined {
                    open: true, epoch, ..
                } => {
                    if epoch > 0 {
                        eprintln!(
                            "fleet: {} rejoins the run after an operator resolved it (epoch {epoch})",
                            self.node
                        );
                    }
                    self.epoch.store(epoch, Ordering::Relaxed);
                    return Ok(());
                }
                FleetAnswer::Joined {
                    joined, expected, ..
                } => {
                    if joined != seen {
                        eprintln!(
                            "fleet: {joined} of {expected} node(s) joined; waiting for the rest"
                        );
                        seen = joined;
                        progress = Instant::now();
                    } else if progress.elapsed() > self.wait {
                        return Err(format!(
                            "only {joined} of {expected} node(s) joined within {} s",
                            self.wait.as_secs()
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                other => return Err(format!("unexpected answer to join: {other:?}")),
            }
        }
    }

    fn restart(&self, job: &Job) -> Restart {
        Restart {
            iteration: job.iteration,
            ..self.restarts[job.target].clone()
        }
    }

    /// Notes every grant among `tickets` (for `wanted`) and takes up the
    /// first that no other worker took.
    fn take_granted(&self, wanted: &[Job], tickets: &[Ticket]) -> Option<(Job, LeaseId, u64)> {
        let mut l = self.leases.lock().unwrap();
        let mut pick = None;
        for (job, t) in wanted.iter().zip(tickets) {
            if let Ticket::Granted {
                lease,
                ttl_ms,
                alongside,
            } = t
            {
                l.granted.entry(*lease).or_insert(*job);
                l.alongside.insert(*lease, alongside.clone());
                if pick.is_none() && !l.taken.contains(lease) {
                    pick = Some((*job, *lease, *ttl_ms));
                }
            }
        }
        if let Some((_, lease, _)) = pick {
            l.taken.insert(lease);
        }
        pick
    }

    fn say_pause(&self, control: &Control) {
        let now = match control {
            Control::Paused { why } => Some(why.clone()),
            _ => None,
        };
        let mut last = self.last_pause.lock().unwrap();
        if *last != now {
            match &now {
                Some(why) => eprintln!("fleet: {why}; starting nothing new until resumed"),
                None => eprintln!("fleet running again"),
            }
            *last = now;
        }
    }

    /// Gives back whatever was granted and never taken up, then tells the
    /// collector this node is done (its waiting requests are withdrawn).
    pub async fn finish(&self) -> Result<(), String> {
        // What is still granted of what was asked (a reply lost to a
        // cancelled ask included), then given back unused.
        let asked: Vec<Job> = self.leases.lock().unwrap().asked.iter().copied().collect();
        for chunk in asked.chunks(bounce_wire::lease::MAX_ASKED) {
            let restarts = chunk.iter().map(|j| self.restart(j)).collect();
            let call = AgentCall::Ask {
                restarts,
                wait_ms: 0,
            };
            if let FleetAnswer::Tickets { tickets, .. } = self.call_until_answered(call).await? {
                let mut l = self.leases.lock().unwrap();
                for (job, t) in chunk.iter().zip(tickets) {
                    if let Ticket::Granted { lease, .. } = t {
                        l.granted.entry(lease).or_insert(*job);
                    }
                }
            }
        }
        let unused: Vec<LeaseId> = {
            let l = self.leases.lock().unwrap();
            l.granted
                .keys()
                .filter(|id| !l.taken.contains(id))
                .copied()
                .collect()
        };
        for lease in unused {
            self.call_until_answered(AgentCall::Withdraw { lease })
                .await?;
        }
        self.call_until_answered(AgentCall::Finish)
            .await
            .map(|_| ())
    }
}

impl Gate for FleetClient {
    fn ask_all(&self) -> bool {
        self.order == AskOrder::Any
    }

    async fn acquire(&self, wanted: &[Job]) -> Result<(Job, Permit), GateStop> {
        let restarts: Vec<Restart> = wanted.iter().map(|j| self.restart(j)).collect();
        self.leases
            .lock()
            .unwrap()
            .asked
            .extend(wanted.iter().copied());
        let mut away_since: Option<Instant> = None;
        let mut backoff = Duration::from_millis(100);
        loop {
            let asked = AgentCall::Ask {
                restarts: restarts.clone(),
                wait_ms: ASK_WAIT.as_millis() as u64,
            };
            let answer = self.call(asked, CALL_WITHIN + ASK_WAIT).await;
            let why = match answer {
                Ok(FleetAnswer::Tickets { control, tickets }) => {
                    away_since = None;
                    backoff = Duration::from_millis(100);
                    if control == Control::Aborted {
                        // Why this node is told to end (resolved out of the run), if not an abort.
                        if let Some(Ticket::Refused { why }) =
                            tickets.iter().find(|t| matches!(t, Ticket::Refused { .. }))
                        {
                            eprintln!("fleet: {why}");
                        }
                        return Err(GateStop::Aborted);
                    }
                    self.say_pause(&control);
                    if let Some((job, lease, ttl_ms)) = self.take_granted(wanted, &tickets) {
                        return Ok((
                            job,
                            Permit {
                                lease: Some(lease),
                                ttl: Duration::from_millis(ttl_ms),
                            },
                        ));
                    }
                    match tickets.iter().find_map(|t| match t {
                        Ticket::Refused { why } => Some(why.clone()),
                        _ => None,
                    }) {
                        // Another worker took them (the wanted list is
                        // stale), or this node is lost until resolved.
                        Some(why)
                            if tickets.iter().all(|t| matches!(t, Ticket::Refused { .. })) =>
                        {
                            eprintln!("fleet: {why}");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            return Err(GateStop::Retry);
                        }
                        _ => continue,
                    }
                }
                Ok(other) => {
                    return Err(GateStop::Refused(format!("unexpected answer: {other:?}")));
                }
                Err(Link::Refused(why)) => return Err(GateStop::Refused(why)),
                Err(Link::Away(why)) => why,
            };
            let since = *away_since.get_or_insert_with(|| {
                eprintln!("fleet: the collector does not answer ({why}); starting nothing new");
                Instant::now()
            });
            if since.elapsed() > self.wait {
                return Err(GateStop::Away(format!(
                    "the collector has not answered for {} s: {why}",
                    since.elapsed().as_secs()
                )));
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }

    async fn hold<F: Future>(&self, permit: &Permit, alongside: &Alongside, work: F) -> F::Output {
        let Some(lease) = permit.lease else {
            return work.await;
        };
        let granted = self.leases.lock().unwrap().alongside.remove(&lease);
        alongside.set(granted.unwrap_or_default());
        let renew = async {
            let mut every = (permit.ttl / 3).max(Duration::from_millis(100));
            loop {
                tokio::time::sleep(every).await;
                match self.call(AgentCall::Renew { lease }, every).await {
                    Ok(FleetAnswer::Renewed {
                        ttl_ms,
                        alongside: now,
                    }) => {
                        alongside.set(now);
                        every = (Duration::from_millis(ttl_ms) / 3).max(Duration::from_millis(100))
                    }
                    Ok(_) | Err(Link::Refused(_)) => {
                        eprintln!("fleet: {lease} could not be renewed; the restart goes on");
                        return std::future::pending().await;
                    }
                    // Keep trying: a collector back from a restart gave it a fresh TTL.
                    Err(Link::Away(_)) => every = Duration::from_secs(1),
                }
            }
        };
        tokio::select! {
            out = work => out,
            never = renew => never,
        }
    }

    async fn give_back(&self, permit: Permit, outcome: Outcome) {
        let Some(lease) = permit.lease else {
            return;
        };
        match self
            .call_until_answered(AgentCall::Return { lease, outcome })
            .await
        {
            Ok(_) => {
                let mut l = self.leases.lock().unwrap();
                l.alongside.remove(&lease);
                if let Some(job) = l.granted.remove(&lease) {
                    l.asked.remove(&job);
                }
                l.taken.remove(&lease);
            }
            Err(why) => eprintln!("fleet: could not give back {lease} ({outcome}): {why}"),
        }
    }

    async fn unused(&self, permit: Permit) {
        let Some(lease) = permit.lease else {
            return;
        };
        self.leases.lock().unwrap().taken.remove(&lease);
        match self
            .call_until_answered(AgentCall::Withdraw { lease })
            .await
        {
            Ok(_) => {
                let mut l = self.leases.lock().unwrap();
                l.granted.remove(&lease);
                l.alongside.remove(&lease);
            }
            Err(why) => eprintln!("fleet: could not give back unused {lease}: {why}"),
        }
    }
}
