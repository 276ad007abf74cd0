//! Fleet runs held by the collector: one lease book per run (bounce-fleet),
//! its nodes registered as they join, every change journaled before the
//! answer that depends on it is sent.
//!
//! **Opening.** Every agent of a fleet run joins with its node name, its
//! labels and the run's terms (its scenario's `fleet:` limits, lease TTL,
//! `concurrency`, and `--fleet-nodes N`, the number of nodes the operator
//! says the run has). Terms that differ from the first joiner's are refused.
//! The fleet opens when the N-th node joined, with exactly those nodes: a %
//! of the run's nodes is then known and fixed, and no agent restarts
//! anything before every node is accounted for. A node that did not join
//! is visible in `fleet status` as missing.
//!
//! **Ordering.** A change is made to the book under the run's lock and its
//! records are queued to the single store writer before the lock is let go,
//! so the log's order is the book's order; the answer waits for the commit.
//! A failed commit leaves memory ahead of the disk: that run answers errors
//! until a restart replays it from the store.
//!
//! **Restart.** [`Fleets::recover`] replays each run's log and gives leases
//! in flight a fresh TTL (`recovered`), since no agent could renew meanwhile.

pub mod log;

use bounce_fleet::{
    Event, FleetSpec, FleetStatus, LeaseBook, LeaseRequest, Millis, NodeSpec, Refusal, Step,
    pause_words,
};
use bounce_wire::lease::{
    AgentCall, Control, FleetAnswer, FleetCall, FleetTerms, Join, MAX_WAIT_MS, Ticket,
};
use log::FleetRecord;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Where a fleet run's records go: queued in call order, committed in that
/// order; what it returns resolves once they are on disk.
pub trait Journal: Send + Sync {
    fn append(&self, run: &str, records: Vec<FleetRecord>) -> Committed;
}

/// Resolves once the records are committed (or could not be).
pub type Committed = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// Why a call was not carried out, as the API answers it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FleetError {
    #[error("no fleet run {0:?} (its agents have not joined)")]
    NoRun(String),
    /// Refused: the call contradicts the run (409).
    #[error("{0}")]
    Refused(String),
    /// The store failed (500).
    #[error("{0}")]
    Store(String),
}

/// What an operator asks of a fleet run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminCall {
    /// `by`: the operator's credential, as the audit log names it.
    Pause {
        by: String,
    },
    Resume,
    Abort {
        by: String,
    },
    Resolve {
        node: String,
        by: String,
    },
}

enum RunState {
    Joining {
        terms: FleetTerms,
        joins: BTreeMap<String, BTreeMap<String, String>>,
    },
    Open {
        book: Box<LeaseBook>,
        terms: FleetTerms,
    },
    /// Memory and store disagree (a commit failed) or the log did not replay.
    Broken(String),
}

struct FleetRun {
    state: Mutex<RunState>,
    /// Bumped after every committed change: `ask`s waiting for a grant look again.
    changed: watch::Sender<u64>,
}

pub struct Fleets {
    runs: Mutex<HashMap<String, Arc<FleetRun>>>,
    journal: Box<dyn Journal>,
    /// Fleet runs whose log retention expired from the store: forgotten
    /// at the next tick (see [`Fleets::follow_expiry`]).
    expired: Mutex<Option<Receiver<String>>>,
}

/// What the admin API shows of a fleet run (and `fleet status --json`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "phase")]
pub enum FleetView {
    Joining {
        run: String,
        expected: u32,
        joined: Vec<String>,
        terms: FleetTerms,
    },
    Open {
        #[serde(flatten)]
        status: FleetStatus,
        lease_ttl_ms: u64,
    },
    Broken {
        run: String,
        why: String,
    },
}

/// The collector's clock, as the lease book takes it.
pub fn now() -> Millis {
    Millis(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64,
    )
}

fn refused(r: Refusal) -> FleetError {
    FleetError::Refused(r.to_string())
}

/// What `node` is told: a node an operator resolved out of the run is
/// told to end it, like an abort (its tickets say why).
fn control(book: &LeaseBook, node: &str) -> Control {
    if book.aborted() || book.resolved(node) {
        Control::Aborted
    } else if let Some(p) = book.paused() {
        Control::Paused {
            why: pause_words(p),
        }
    } else {
        Control::Running
    }
}

/// Where two agents' terms differ, in words.
fn differs(ours: &FleetTerms, theirs: &FleetTerms) -> Option<String> {
    let what = if ours.deployment != theirs.deployment || ours.scenario != theirs.scenario {
        format!(
            "deployment {:?}, scenario {:?}",
            ours.deployment, ours.scenario
        )
    } else if ours.nodes != theirs.nodes {
        format!("{} nodes (--fleet-nodes)", ours.nodes)
    } else if ours.limits != theirs.limits {
        "other fleet limits (the scenarios' fleet: sections differ)".into()
    } else if ours.node_concurrency != theirs.node_concurrency {
        format!("concurrency {}", ours.node_concurrency)
    } else if ours.lease_ttl_ms != theirs.lease_ttl_ms {
        format!("lease_ttl {} ms", ours.lease_ttl_ms)
    } else {
        return None;
    };
    Some(format!(
        "this fleet run has {what}; this agent's scenario or flags differ: no lease"
    ))
}

impl Fleets {
    pub fn new(journal: Box<dyn Journal>) -> Fleets {
        Fleets {
            runs: Mutex::new(HashMap::new()),
            journal,
            expired: Mutex::new(None),
        }
    }

    /// Forgets, at each tick, the fleet runs retention says it expired
    /// (`retention.rs`, `Upkeep::telling`). Their whole log is gone from
    /// the store, so a collector started now would not know them either;
    /// an agent calling for one is told there is no such fleet run. Such a
    /// run was quiet for the resend window: nothing of it was in flight.
    pub fn follow_expiry(&self, expired: Receiver<String>) {
        *self.expired.lock().unwrap() = Some(expired);
    }

    /// Drops from memory the fleet runs expiry removed.
    fn forget_expired(&self) {
        let gone: Vec<String> = match &*self.expired.lock().unwrap() {
            Some(rx) => rx.try_iter().collect(),
            None => return,
        };
        let mut runs = self.runs.lock().unwrap();
        for run in gone {
            runs.remove(&run);
        }
    }

    /// Rebuilds every fleet run from its log (in the order written); each
    /// open one not over gets `recovered`. Returns lines to print.
    pub async fn recover(&self, rows: Vec<(String, FleetRecord)>) -> Vec<String> {
        let mut by_run: BTreeMap<String, Vec<FleetRecord>> = BTreeMap::new();
        for (run, rec) in rows {
            by_run.entry(run).or_default().push(rec);
        }
        let mut lines = Vec::new();
        for (run, records) in by_run {
            let state = rebuild(records);
            let line = match &state {
                RunState::Joining { terms, joins } => format!(
                    "fleet run {run}: {} of {} node(s) joined, not open yet",
                    joins.len(),
                    terms.nodes
                ),
                RunState::Open { book, .. } => format!(
                    "fleet run {run}: rebuilt from its log, {} lease(s) in flight",
                    book.in_flight()
                ),
                RunState::Broken(why) => format!("fleet run {run}: cannot rebuild: {why}"),
            };
            lines.push(line);
            let live = matches!(&state, RunState::Open { book, .. } if book.in_flight() > 0);
            self.runs.lock().unwrap().insert(
                run.clone(),
                Arc::new(FleetRun {
                    state: Mutex::new(state),
                    changed: watch::Sender::new(0),
                }),
            );
            if live {
                let _ = self
                    .step(&run, |book, now| Step {
                        answer: Ok(()),
                        events: book.recovered(now),
                    })
                    .await;
            }
        }
        lines
    }

    fn get(&self, run: &str) -> Result<Arc<FleetRun>, FleetError> {
        self.runs
            .lock()
            .unwrap()
            .get(run)
            .cloned()
            .ok_or_else(|| FleetError::NoRun(run.into()))
    }

    /// Queues `records` (under the run's lock: the log keeps the book's order).
    fn journal(&self, run: &str, records: Vec<FleetRecord>) -> Option<Committed> {
        (!records.is_empty()).then(|| self.journal.append(run, records))
    }

    /// Waits for the commit; a failed one breaks the run until a restart.
    async fn committed(&self, fr: &FleetRun, pending: Option<Committed>) -> Result<(), FleetError> {
        let Some(commit) = pending else {
            return Ok(());
        };
        if let Err(e) = commit.await {
            let why = format!("the fleet log could not be written ({e}); restart the collector");
            *fr.state.lock().unwrap() = RunState::Broken(why.clone());
            return Err(FleetError::Store(why));
        }
        fr.changed.send_modify(|v| *v += 1);
        Ok(())
    }

    /// One change to an open run's book, journaled before it is answered.
    async fn step<T>(
        &self,
        run: &str,
        f: impl FnOnce(&mut LeaseBook, Millis) -> Step<T>,
    ) -> Result<Result<T, Refusal>, FleetError> {
        let fr = self.get(run)?;
        let (answer, pending) = {
            let mut st = fr.state.lock().unwrap();
            let book = match &mut *st {
                RunState::Open { book, .. } => book,
                RunState::Joining { terms, joins } => {
                    return Err(FleetError::Refused(format!(
                        "fleet run {run} is not open yet: {} of {} node(s) joined",
                        joins.len(),
                        terms.nodes
                    )));
                }
                RunState::Broken(why) => return Err(FleetError::Store(why.clone())),
            };
            let s = f(book, now());
            let records = s
                .events
                .into_iter()
                .map(|event| FleetRecord::Event { event })
                .collect();
            (s.answer, self.journal(run, records))
        };
        self.committed(&fr, pending).await?;
        Ok(answer)
    }

    /// One change made by `node`'s agent at `epoch`: refused, changing
    /// nothing, when a rejoin of the node replaced that agent.
    async fn step_as<T>(
        &self,
        run: &str,
        (node, epoch): (&str, u32),
        f: impl FnOnce(&mut LeaseBook, Millis) -> Step<T>,
    ) -> Result<Result<T, Refusal>, FleetError> {
        self.step(run, |book, now| match book.fence(node, epoch) {
            Ok(()) => f(book, now),
            Err(why) => Step {
                answer: Err(why),
                events: Vec::new(),
            },
        })
        .await
    }

    /// An agent's call, as node `call.node` (already checked against its token).
    pub async fn agent(&self, run: &str, call: FleetCall) -> Result<FleetAnswer, FleetError> {
        let node = call.node;
        let me = (node.as_str(), call.epoch);
        match call.call {
            AgentCall::Join(j) => self.join(run, &node, j).await,
            AgentCall::Ask { restarts, wait_ms } => {
                let deadline =
                    tokio::time::Instant::now() + Duration::from_millis(wait_ms.min(MAX_WAIT_MS));
                loop {
                    // Subscribed before looking: a change after the look wakes us.
                    let mut changed = self.get(run)?.changed.subscribe();
                    let (control, tickets) = self
                        .step_as(run, me, |book, now| ask(book, run, &node, &restarts, now))
                        .await?
                        .map_err(refused)?;
                    let settled = control == Control::Aborted
                        || tickets.iter().any(|t| matches!(t, Ticket::Granted { .. }))
                        || tickets.iter().all(|t| matches!(t, Ticket::Refused { .. }));
                    if settled || tokio::time::Instant::now() >= deadline {
                        return Ok(FleetAnswer::Tickets { control, tickets });
                    }
                    tokio::select! {
                        _ = changed.changed() => {}
                        _ = tokio::time::sleep_until(deadline) => {}
                    }
                }
            }
            AgentCall::Renew { lease } => {
                let (until, alongside) = self
                    .step_as(run, me, |b, now| {
                        let s = b.renew(run, &node, lease, now);
                        Step {
                            answer: s.answer.map(|until| (until, b.alongside(lease))),
                            events: s.events,
                        }
                    })
                    .await?
                    .map_err(refused)?;
                Ok(FleetAnswer::Renewed {
                    ttl_ms: until.0.saturating_sub(now().0),
                    alongside,
                })
            }
            AgentCall::Return { lease, outcome } => self
                .step_as(run, me, |b, now| {
                    b.give_back(run, &node, lease, outcome, now)
                })
                .await?
                .map_err(refused)
                .map(|()| FleetAnswer::Done),
            AgentCall::Withdraw { lease } => self
                .step_as(run, me, |b, now| b.withdraw(run, &node, lease, now))
                .await?
                .map_err(refused)
                .map(|()| FleetAnswer::Done),
            AgentCall::Finish => self
                .step_as(run, me, |b, now| b.finish(run, &node, now))
                .await?
                .map_err(refused)
                .map(|()| FleetAnswer::Done),
        }
    }

    async fn join(&self, run: &str, node: &str, j: Join) -> Result<FleetAnswer, FleetError> {
        // Every label a key needs, checked now: the fleet must be able to open.
        for l in &j.terms.limits.limits {
            if let Some(label) = l.key.labels().find(|x| !j.labels.contains_key(*x)) {
                return Err(FleetError::Refused(format!(
                    "limit {:?} needs label {label:?}: give this agent --label {label}=VALUE",
                    l.key.as_str()
                )));
            }
        }
        let fr = self
            .runs
            .lock()
            .unwrap()
            .entry(run.into())
            .or_insert_with(|| {
                Arc::new(FleetRun {
                    state: Mutex::new(RunState::Joining {
                        terms: j.terms.clone(),
                        joins: BTreeMap::new(),
                    }),
                    changed: watch::Sender::new(0),
                })
            })
            .clone();
        let (answer, pending) = {
            let mut st = fr.state.lock().unwrap();
            let mut records = Vec::new();
            let answer = match &mut *st {
                RunState::Broken(why) => return Err(FleetError::Store(why.clone())),
                RunState::Open { book, terms } => {
                    if let Some(why) = differs(terms, &j.terms) {
                        return Err(FleetError::Refused(why));
                    }
                    let spec = book.spec();
                    match spec.nodes.iter().find(|n| n.name == node) {
                        None => {
                            return Err(FleetError::Refused(format!(
                                "fleet run {run} opened with its {} nodes ({}); {node:?} is not one of them",
                                spec.nodes.len(),
                                names(&spec.nodes)
                            )));
                        }
                        Some(n) if n.labels != j.labels => {
                            return Err(FleetError::Refused(format!(
                                "node {node:?} joined fleet run {run} with labels {:?}, not {:?}",
                                n.labels, j.labels
                            )));
                        }
                        Some(_) => {}
                    }
                    let n = spec.nodes.len() as u32;
                    // A resolved node's new agent rejoins (journaled like
                    // any change, expiries due included, whatever the answer).
                    let s = book.join(run, node, now());
                    records.extend(
                        s.events
                            .into_iter()
                            .map(|event| FleetRecord::Event { event }),
                    );
                    s.answer
                        .map(|epoch| FleetAnswer::Joined {
                            joined: n,
                            expected: n,
                            open: true,
                            epoch,
                        })
                        .map_err(|why| match why {
                            Refusal::NodeLost(_) => FleetError::Refused(format!(
                                "{why}: its last agent's restart may have left the service down; once dealt with, `bounce-collector fleet resolve {run} {node}`, then start this agent again"
                            )),
                            other => refused(other),
                        })
                }
                RunState::Joining { terms, joins } => {
                    if let Some(why) = differs(terms, &j.terms) {
                        return Err(FleetError::Refused(why));
                    }
                    if joins.get(node) != Some(&j.labels) {
                        joins.insert(node.into(), j.labels.clone());
                        records.push(FleetRecord::Joined {
                            node: node.into(),
                            labels: j.labels.clone(),
                            terms: j.terms.clone(),
                        });
                    }
                    let (joined, expected) = (joins.len() as u32, terms.nodes);
                    if joined >= expected {
                        let spec = spec_of(run, terms, joins);
                        let terms = terms.clone();
                        let (book, event) = LeaseBook::open(spec, now())
                            .map_err(|e| FleetError::Refused(format!("cannot open: {e}")))?;
                        records.push(FleetRecord::Event { event });
                        *st = RunState::Open {
                            book: Box::new(book),
                            terms,
                        };
                    }
                    Ok(FleetAnswer::Joined {
                        joined,
                        expected,
                        open: joined >= expected,
                        epoch: 0,
                    })
                }
            };
            (answer, self.journal(run, records))
        };
        self.committed(&fr, pending).await?;
        answer
    }

    /// Pause, resume, abort, resolve: an operator's call.
    pub async fn admin(&self, run: &str, call: AdminCall) -> Result<(), FleetError> {
        self.step(run, |b, now| match &call {
            AdminCall::Pause { by } => b.pause(now, by),
            AdminCall::Resume => b.resume(now),
            AdminCall::Abort { by } => b.abort(now, by),
            AdminCall::Resolve { node, by } => b.resolve(run, node, by, now),
        })
        .await?
        .map_err(refused)
    }

    /// Whether `node` of fleet run `run` is lost or resolved: a new agent
    /// of it is the fleet's to take back or refuse (its join says which),
    /// although its earlier agent already sent results for the run.
    pub fn comes_back(&self, run: &str, node: &str) -> bool {
        let Ok(fr) = self.get(run) else {
            return false;
        };
        let st = fr.state.lock().unwrap();
        matches!(&*st, RunState::Open { book, .. } if book.resolved(node) || book.lost(node))
    }

    pub fn view(&self, run: &str) -> Result<FleetView, FleetError> {
        let fr = self.get(run)?;
        let st = fr.state.lock().unwrap();
        Ok(match &*st {
            RunState::Joining { terms, joins } => FleetView::Joining {
                run: run.into(),
                expected: terms.nodes,
                joined: joins.keys().cloned().collect(),
                terms: terms.clone(),
            },
            RunState::Open { book, terms } => FleetView::Open {
                status: book.status(),
                lease_ttl_ms: terms.lease_ttl_ms,
            },
            RunState::Broken(why) => FleetView::Broken {
                run: run.into(),
                why: why.clone(),
            },
        })
    }

    /// Forgets the fleet runs retention expired, then expires what is due
    /// in every open run (the collector calls this on a timer).
    pub async fn tick(&self) {
        self.forget_expired();
        let runs: Vec<String> = self.runs.lock().unwrap().keys().cloned().collect();
        for run in runs {
            let _ = self
                .step(&run, |b, now| Step {
                    answer: Ok(()),
                    events: b.tick(now),
                })
                .await;
        }
    }
}

/// Every asked restart, requested (or looked up) in order.
fn ask(
    book: &mut LeaseBook,
    run: &str,
    node: &str,
    restarts: &[bounce_wire::lease::Restart],
    now: Millis,
) -> Step<(Control, Vec<Ticket>)> {
    let mut events = Vec::new();
    let mut tickets = Vec::with_capacity(restarts.len());
    for r in restarts {
        let s = book.request(
            &LeaseRequest {
                run: run.into(),
                node: node.into(),
                restart: r.clone(),
            },
            now,
        );
        events.extend(s.events);
        tickets.push(match s.answer {
            Ok(bounce_fleet::Ticket::Granted { lease, until }) => Ticket::Granted {
                lease,
                ttl_ms: until.0.saturating_sub(now.0),
                alongside: book.alongside(lease),
            },
            Ok(bounce_fleet::Ticket::Waiting { lease }) => Ticket::Waiting { lease },
            Err(why) => Ticket::Refused {
                why: why.to_string(),
            },
        });
    }
    Step {
        answer: Ok((control(book, node), tickets)),
        events,
    }
}

fn names(nodes: &[NodeSpec]) -> String {
    nodes
        .iter()
        .map(|n| n.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn spec_of(
    run: &str,
    terms: &FleetTerms,
    joins: &BTreeMap<String, BTreeMap<String, String>>,
) -> FleetSpec {
    FleetSpec {
        run: run.into(),
        limits: terms.limits.clone(),
        nodes: joins
            .iter()
            .map(|(name, labels)| NodeSpec {
                name: name.clone(),
                labels: labels.clone(),
            })
            .collect(),
        node_concurrency: terms.node_concurrency,
        lease_ttl_ms: terms.lease_ttl_ms,
    }
}

/// A run's state from its log: joins until `opened`, then the book's events.
fn rebuild(records: Vec<FleetRecord>) -> RunState {
    let mut terms: Option<FleetTerms> = None;
    let mut joins = BTreeMap::new();
    let mut events: Vec<Event> = Vec::new();
    for r in records {
        match r {
            FleetRecord::Joined {
                node,
                labels,
                terms: t,
            } => {
                terms.get_or_insert(t);
                joins.insert(node, labels);
            }
            FleetRecord::Event { event } => events.push(event),
        }
    }
    let Some(terms) = terms else {
        return RunState::Broken("the log holds no join".into());
    };
    if events.is_empty() {
        return RunState::Joining { terms, joins };
    }
    match LeaseBook::replay(events) {
        Ok(book) => RunState::Open {
            book: Box::new(book),
            terms,
        },
        Err(e) => RunState::Broken(e.to_string()),
    }
}

#[cfg(test)]
mod tests;
