//! The lease book of one fleet run: who waits, who holds which slots, and
//! the grant rule. Every change goes through [`LeaseBook::apply`], the one
//! state transition that live calls and [`LeaseBook::replay`] share; only
//! live calls decide (grants, expiries, pauses), and what they decide is
//! recorded as events, so a replay re-decides nothing.

use crate::event::{Event, FleetSpec, Key, Millis, NodeSpec, PauseReason, Withdrawal};
use bounce_wire::Outcome;
use bounce_wire::lease::{LeaseId, Restart};
use bounce_wire::limits::{Facts, Kind, MissingLabel};
use std::collections::{BTreeSet, HashMap};

/// Why a fleet cannot open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("a fleet run needs at least one node")]
    NoNodes,
    #[error("node {0:?} is listed twice")]
    DuplicateNode(String),
    #[error("node name {0:?} is empty")]
    EmptyNode(String),
    #[error(transparent)]
    MissingLabel(#[from] MissingLabel),
    #[error("node_concurrency must be at least 1")]
    NoConcurrency,
    #[error("lease_ttl_ms must be at least 1")]
    NoTtl,
    #[error("more than {} keyed limits", u16::MAX)]
    TooManyLimits,
}

/// A log that does not replay: the event at `index` does not fit the state
/// before it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("fleet event {index}: {what}")]
pub struct ReplayError {
    pub index: usize,
    pub what: String,
}

/// Why a call was refused. Nothing changes on a refusal (but expiries due
/// at `now` are still recorded: see [`Step::events`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("this is fleet run {expected:?}, not {got:?}")]
    WrongRun { expected: String, got: String },
    #[error("node {0:?} is not in this fleet run")]
    UnknownNode(String),
    #[error("node {0:?} is lost: an operator must resolve it")]
    NodeLost(String),
    #[error("node {0:?} has finished its run")]
    NodeDone(String),
    #[error("node {0:?} was lost and an operator resolved it: it is out of this run")]
    NodeResolved(String),
    #[error("the fleet run is aborted")]
    Aborted,
    #[error("there is no {0}")]
    UnknownLease(LeaseId),
    #[error("{lease} belongs to node {owner:?}")]
    NotYourLease { lease: LeaseId, owner: String },
    #[error("{0} is not granted yet")]
    NotGranted(LeaseId),
    #[error("{0} expired and its node is lost: an operator must resolve it")]
    LeaseLost(LeaseId),
    #[error("{lease} was already returned ({outcome})")]
    AlreadyReturned { lease: LeaseId, outcome: Outcome },
    #[error("{0} was withdrawn")]
    Withdrawn(LeaseId),
    #[error("{0} was lost and an operator resolved it")]
    Resolved(LeaseId),
    #[error("{0}")]
    MissingLabel(MissingLabel),
    #[error("node(s) {0:?} are lost: resolve them before resuming")]
    StillLost(Vec<String>),
    #[error("node {0:?} is not lost")]
    NotLost(String),
    #[error("node {node:?} still holds or waits for {count} lease(s)")]
    Busy { node: String, count: usize },
    /// A call of an agent the node's rejoin replaced (or from the future).
    #[error(
        "node {node:?} is at epoch {current} of this run (an agent rejoined it after a resolve); this agent is at epoch {epoch}: it is out of the run"
    )]
    Superseded {
        node: String,
        epoch: u32,
        current: u32,
    },
}

/// An answer and the events to append with it (in the same transaction).
#[derive(Debug)]
#[must_use = "the events must be stored before the answer is sent"]
pub struct Step<T> {
    pub answer: Result<T, Refusal>,
    pub events: Vec<Event>,
}

/// What a request is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ticket {
    Granted { lease: LeaseId, until: Millis },
    Waiting { lease: LeaseId },
}

/// A request for one restart (the agent's side, authenticated as `node`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRequest {
    pub run: String,
    pub node: String,
    pub restart: Restart,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReqState {
    Waiting,
    Granted {
        until: Millis,
    },
    Lost,
    /// Lost, then resolved by the operator: its outcome is unknown.
    Resolved,
    Returned(Outcome),
    Withdrawn(Withdrawal),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Req {
    pub node: u32,
    pub restart: Restart,
    pub keys: Vec<u32>,
    pub state: ReqState,
    /// When it entered its state: asked, granted or lost.
    pub since: Millis,
    /// Its place in the order of grants (0 until granted).
    pub granted_nr: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeState {
    pub spec: NodeSpec,
    /// Leases granted and not returned, lost ones included.
    pub held: u32,
    pub lost: u32,
    pub done: bool,
    /// Lost, then resolved by an operator: out of the run (asks nothing,
    /// is granted nothing) until an agent of it rejoins.
    pub resolved: bool,
    /// The last resolve: when, and by whom.
    pub resolution: Option<(Millis, String)>,
    /// Times an agent of it rejoined after a resolve: its calls carry it.
    pub epoch: u32,
    pub waiting: BTreeSet<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyState {
    pub key: Key,
    pub max: u32,
    pub used: u32,
    /// Waiting requests that need this key, first asked first.
    pub queue: BTreeSet<u64>,
}

/// The state both live calls and replay build: compared whole by the tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Core {
    pub spec: FleetSpec,
    pub in_flight_max: u32,
    pub in_flight: u32,
    pub nodes: Vec<NodeState>,
    pub node_ix: HashMap<String, u32>,
    pub reqs: Vec<Req>,
    pub by_restart: HashMap<(u32, Restart), u64>,
    pub keys: Vec<KeyState>,
    pub key_ix: HashMap<Key, u32>,
    pub waiting: BTreeSet<u64>,
    pub deadlines: BTreeSet<(Millis, u64)>,
    pub paused: Option<PauseReason>,
    /// By whom, once aborted.
    pub aborted: Option<String>,
    pub failures: u32,
    pub failures_since_resume: u32,
    /// Grants made so far (numbers each grant).
    pub grants: u64,
    /// Ceph OSD leases held (granted or lost), by their place in the order
    /// of grants: what [`LeaseBook::alongside`] reads, without a scan.
    pub osds_held: BTreeSet<(u64, u64)>,
}

/// What stops a waiting request now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    Grantable,
    /// Every key has room for it; only `max_in_flight` is full.
    InFlight,
    /// Its node is busy (at its concurrency), lost or done.
    Node,
    /// This key has no unit left once earlier waiting requests of available
    /// nodes have theirs.
    Key(u32),
    Stopped,
}

/// The lease book of one fleet run (see the crate docs for the rules).
#[derive(Debug, Clone)]
pub struct LeaseBook {
    pub(crate) core: Core,
    /// Requests whose last check failed only on `max_in_flight`: the ones to
    /// look at when a slot frees. A cache of the live book, not state.
    in_flight_waiters: BTreeSet<u64>,
}

impl PartialEq for LeaseBook {
    fn eq(&self, other: &LeaseBook) -> bool {
        self.core == other.core
    }
}

impl LeaseBook {
    /// A new fleet run; the event is the first of its log.
    pub fn open(spec: FleetSpec, now: Millis) -> Result<(LeaseBook, Event), OpenError> {
        if spec.nodes.is_empty() {
            return Err(OpenError::NoNodes);
        }
        if spec.node_concurrency == 0 {
            return Err(OpenError::NoConcurrency);
        }
        if spec.lease_ttl_ms == 0 {
            return Err(OpenError::NoTtl);
        }
        if spec.limits.limits.len() > usize::from(u16::MAX) {
            return Err(OpenError::TooManyLimits);
        }
        for (i, n) in spec.nodes.iter().enumerate() {
            if n.name.is_empty() {
                return Err(OpenError::EmptyNode(n.name.clone()));
            }
            if spec.nodes[..i].iter().any(|m| m.name == n.name) {
                return Err(OpenError::DuplicateNode(n.name.clone()));
            }
            // Every label a template needs, on every node, before anything
            // is granted: a key left out would drop a failure-domain limit
            // for that node without anyone noticing.
            for l in &spec.limits.limits {
                if let Some(label) = l.key.labels().find(|x| !n.labels.contains_key(*x)) {
                    return Err(OpenError::MissingLabel(MissingLabel {
                        template: l.key.as_str().into(),
                        label: label.into(),
                        node: n.name.clone(),
                    }));
                }
            }
        }
        let event = Event::Opened { spec, at: now };
        let book = LeaseBook::replay([event.clone()]).map_err(|_| OpenError::NoNodes)?;
        Ok((book, event))
    }

    /// The book as the events left it (the first one is `Opened`). Call
    /// [`LeaseBook::recovered`] next when the collector restarted.
    pub fn replay(events: impl IntoIterator<Item = Event>) -> Result<LeaseBook, ReplayError> {
        let mut it = events.into_iter();
        let Some(Event::Opened { spec, .. }) = it.next() else {
            return Err(ReplayError {
                index: 0,
                what: "a fleet log starts with `opened`".into(),
            });
        };
        let mut book = LeaseBook {
            core: Core {
                in_flight_max: spec.limits.max_in_flight.slots(spec.nodes.len()),
                in_flight: 0,
                node_ix: (0..)
                    .zip(&spec.nodes)
                    .map(|(i, n)| (n.name.clone(), i))
                    .collect(),
                nodes: spec
                    .nodes
                    .iter()
                    .map(|n| NodeState {
                        spec: n.clone(),
                        held: 0,
                        lost: 0,
                        done: false,
                        resolved: false,
                        resolution: None,
                        epoch: 0,
                        waiting: BTreeSet::new(),
                    })
                    .collect(),
                spec,
                reqs: Vec::new(),
                by_restart: HashMap::new(),
                keys: Vec::new(),
                key_ix: HashMap::new(),
                waiting: BTreeSet::new(),
                deadlines: BTreeSet::new(),
                paused: None,
                aborted: None,
                failures: 0,
                failures_since_resume: 0,
                grants: 0,
                osds_held: BTreeSet::new(),
            },
            in_flight_waiters: BTreeSet::new(),
        };
        for (i, e) in it.enumerate() {
            book.core
                .apply(&e)
                .map_err(|what| ReplayError { index: i + 1, what })?;
        }
        // The cache: whoever waits only for `max_in_flight` now.
        book.in_flight_waiters = book
            .core
            .waiting
            .iter()
            .copied()
            .filter(|&id| book.core.check(id) == Check::InFlight)
            .collect();
        Ok(book)
    }

    pub fn run(&self) -> &str {
        &self.core.spec.run
    }

    /// The fleet run as it opened.
    pub fn spec(&self) -> &FleetSpec {
        &self.core.spec
    }

    /// Why grants are stopped, if they are (abort aside).
    pub fn paused(&self) -> Option<&PauseReason> {
        self.core.paused.as_ref()
    }

    pub fn aborted(&self) -> bool {
        self.core.aborted.is_some()
    }

    /// For a granted Ceph OSD lease: the targets of the other OSD leases
    /// granted before it and still held (granted or lost), anywhere in the
    /// fleet; empty for any other kind. Of any set of OSDs down at once, the
    /// last one granted sees all the others here, so asking `ok-to-stop`
    /// for its own with these checks the whole set.
    pub fn alongside(&self, lease: LeaseId) -> Vec<String> {
        let Some(me) = self.core.reqs.get(lease.0 as usize) else {
            return Vec::new();
        };
        if me.restart.kind != Kind::CephOsd || me.granted_nr == 0 {
            return Vec::new();
        }
        self.core
            .osds_held
            .range(..(me.granted_nr, 0))
            .map(|&(_, id)| self.core.reqs[id as usize].restart.target.clone())
            .collect()
    }

    /// Whether an operator took this node out of the run (`resolve`).
    pub fn resolved(&self, node: &str) -> bool {
        self.core
            .node_ix
            .get(node)
            .is_some_and(|&n| self.core.nodes[n as usize].resolved)
    }

    /// Whether a lease of this node expired mid-restart (not resolved yet).
    pub fn lost(&self, node: &str) -> bool {
        self.core
            .node_ix
            .get(node)
            .is_some_and(|&n| self.core.nodes[n as usize].lost > 0)
    }

    /// The node's epoch: how many times an agent of it rejoined the run.
    pub fn epoch(&self, node: &str) -> Option<u32> {
        self.core
            .node_ix
            .get(node)
            .map(|&n| self.core.nodes[n as usize].epoch)
    }

    /// Whether a call from `node`'s agent at `epoch` may act: only the
    /// latest agent of a node does (an older one, resolved out and then
    /// replaced by a rejoin, must not take leases beside it).
    pub fn fence(&self, node: &str, epoch: u32) -> Result<(), Refusal> {
        match self.epoch(node) {
            Some(current) if current != epoch => Err(Refusal::Superseded {
                node: node.into(),
                epoch,
                current,
            }),
            _ => Ok(()),
        }
    }

    /// An agent of `node` joins the open run: its epoch. A resolved node
    /// comes back under its next epoch (its earlier requests stay as they
    /// ended, and what it asks now is new); a lost one is refused until
    /// an operator resolved it (its last agent's restart may still hold
    /// the service down).
    pub fn join(&mut self, run: &str, node: &str, now: Millis) -> Step<u32> {
        self.step(now, |b, ev| {
            let n = b.core.member(run, node)?;
            let st = &b.core.nodes[n as usize];
            if st.lost > 0 {
                return Err(Refusal::NodeLost(node.into()));
            }
            if st.resolved {
                if b.core.aborted.is_some() {
                    return Err(Refusal::Aborted);
                }
                b.commit(
                    ev,
                    Event::Rejoined {
                        node: node.into(),
                        at: now,
                    },
                );
            }
            Ok(b.core.nodes[n as usize].epoch)
        })
    }

    /// Leases granted and not given back, lost ones included.
    pub fn in_flight(&self) -> u32 {
        self.core.in_flight
    }

    /// Ask for a lease for one restart; asking again for the same restart
    /// answers what it is now (a lost answer is asked again, never doubled).
    pub fn request(&mut self, req: &LeaseRequest, now: Millis) -> Step<Ticket> {
        self.step(now, |b, ev| {
            let n = b.core.member(&req.run, &req.node)?;
            if let Some(&id) = b.core.by_restart.get(&(n, req.restart.clone())) {
                return b.core.ticket(id);
            }
            b.core.usable(n)?;
            let node = &b.core.nodes[n as usize];
            let facts = Facts {
                node: &node.spec.name,
                labels: &node.spec.labels,
                kind: req.restart.kind,
                service: &req.restart.service,
                target: &req.restart.target,
            };
            let mut keys = Vec::new();
            for (i, l) in (0u16..).zip(&b.core.spec.limits.limits) {
                if l.covers(req.restart.kind) {
                    let value = l.key.render(&facts).map_err(Refusal::MissingLabel)?;
                    keys.push(Key { limit: i, value });
                }
            }
            let id = b.core.reqs.len() as u64;
            b.commit(
                ev,
                Event::Requested {
                    lease: LeaseId(id),
                    node: req.node.clone(),
                    restart: req.restart.clone(),
                    keys,
                    at: now,
                },
            );
            b.settle(BTreeSet::from([id]), ev, now);
            b.core.ticket(id)
        })
    }

    /// The restart is still going: the lease lasts another TTL from `now`.
    pub fn renew(&mut self, run: &str, node: &str, lease: LeaseId, now: Millis) -> Step<Millis> {
        self.step(now, |b, ev| {
            b.core.granted(run, node, lease)?;
            let until = now.plus(b.core.spec.lease_ttl_ms);
            b.commit(ev, Event::Renewed { lease, until });
            Ok(until)
        })
    }

    /// The restart ended with `outcome`: its slots go to whoever waits.
    /// Returning again answers Ok (a lost answer is sent again).
    pub fn give_back(
        &mut self,
        run: &str,
        node: &str,
        lease: LeaseId,
        outcome: Outcome,
        now: Millis,
    ) -> Step<()> {
        self.step(now, |b, ev| {
            match b.core.granted(run, node, lease) {
                Err(Refusal::AlreadyReturned { .. }) => return Ok(()),
                r => r?,
            };
            let keys = b.core.reqs[lease.0 as usize].keys.clone();
            b.commit(
                ev,
                Event::Returned {
                    lease,
                    outcome,
                    at: now,
                },
            );
            let c = &b.core;
            if outcome != Outcome::Ok
                && c.failures_since_resume >= c.spec.limits.max_failures.get()
                && c.paused.is_none()
                && c.aborted.is_none()
            {
                let count = c.failures_since_resume;
                b.commit(
                    ev,
                    Event::Paused {
                        reason: PauseReason::Failures { count },
                        at: now,
                    },
                );
            }
            let n = b.core.node_of(node);
            let cand = b.freed(n, &keys);
            b.settle(cand, ev, now);
            Ok(())
        })
    }

    /// The agent no longer wants a request it made: still waiting, or
    /// granted and never started (its run stopped before it took the
    /// lease up: an agent that started the restart gives it back with the
    /// outcome instead).
    pub fn withdraw(&mut self, run: &str, node: &str, lease: LeaseId, now: Millis) -> Step<()> {
        self.step(now, |b, ev| {
            b.core.owned(run, node, lease)?;
            match b.core.reqs[lease.0 as usize].state {
                ReqState::Waiting => b.withdraw_one(lease.0, Withdrawal::Agent, ev, now),
                ReqState::Withdrawn(_) => {}
                ReqState::Granted { .. } => {
                    let keys = b.core.reqs[lease.0 as usize].keys.clone();
                    b.commit(
                        ev,
                        Event::Withdrawn {
                            lease,
                            why: Withdrawal::Agent,
                        },
                    );
                    let n = b.core.node_of(node);
                    let cand = b.freed(n, &keys);
                    b.settle(cand, ev, now);
                }
                _ => return b.core.ticket(lease.0).map(|_| ()),
            }
            Ok(())
        })
    }

    /// The node's agent ended its run: it asks for nothing more.
    pub fn finish(&mut self, run: &str, node: &str, now: Millis) -> Step<()> {
        self.step(now, |b, ev| {
            let n = b.core.member(run, node)?;
            let st = &b.core.nodes[n as usize];
            if st.done || st.resolved {
                return Ok(());
            }
            if st.held > 0 {
                return Err(Refusal::Busy {
                    node: node.into(),
                    count: st.held as usize,
                });
            }
            for id in st.waiting.clone() {
                b.withdraw_one(id, Withdrawal::Agent, ev, now);
            }
            b.commit(
                ev,
                Event::Finished {
                    node: node.into(),
                    at: now,
                },
            );
            Ok(())
        })
    }

    /// Expire what is due at `now` (the collector calls this on a timer; every
    /// other call does it first too).
    pub fn tick(&mut self, now: Millis) -> Vec<Event> {
        self.step(now, |_, _| Ok(())).events
    }

    /// No new grants; leases in flight go on. `by`: the operator.
    pub fn pause(&mut self, now: Millis, by: &str) -> Step<()> {
        self.step(now, |b, ev| {
            if b.core.paused.is_none() && b.core.aborted.is_none() {
                b.commit(
                    ev,
                    Event::Paused {
                        reason: PauseReason::Operator { by: by.into() },
                        at: now,
                    },
                );
            }
            Ok(())
        })
    }

    /// Grant again; refused while a node is lost or after an abort. The
    /// failure count starts again from zero.
    pub fn resume(&mut self, now: Millis) -> Step<()> {
        self.step(now, |b, ev| {
            if b.core.aborted.is_some() {
                return Err(Refusal::Aborted);
            }
            let lost = b.core.lost_nodes();
            if !lost.is_empty() {
                return Err(Refusal::StillLost(lost));
            }
            if b.core.paused.is_some() {
                b.commit(ev, Event::Resumed { at: now });
                let all = b.core.waiting.clone();
                b.settle(all, ev, now);
            }
            Ok(())
        })
    }

    /// No new grant ever; every waiting request is answered "abort".
    /// `by`: the operator.
    pub fn abort(&mut self, now: Millis, by: &str) -> Step<()> {
        self.step(now, |b, ev| {
            if b.core.aborted.is_none() {
                b.commit(
                    ev,
                    Event::Aborted {
                        at: now,
                        by: by.into(),
                    },
                );
                for id in b.core.waiting.clone() {
                    b.withdraw_one(id, Withdrawal::Abort, ev, now);
                }
            }
            Ok(())
        })
    }

    /// The operator has dealt with a lost node (its restarts are over, one
    /// way or another): the slots of its lost leases are free, and the node
    /// is out of the run: its waiting requests leave their queues (a dead
    /// agent's request would otherwise hold its place, and reserve a unit
    /// of its keys, or be granted to nobody), and it is granted nothing
    /// more until an agent of it rejoins ([`LeaseBook::join`]). The fleet
    /// stays paused until `resume`. `by`: the operator.
    pub fn resolve(&mut self, run: &str, node: &str, by: &str, now: Millis) -> Step<()> {
        self.step(now, |b, ev| {
            let n = b.core.member(run, node)?;
            if b.core.nodes[n as usize].lost == 0 {
                return Err(Refusal::NotLost(node.into()));
            }
            for id in b.core.nodes[n as usize].waiting.clone() {
                b.withdraw_one(id, Withdrawal::Resolved, ev, now);
            }
            let lost: Vec<u64> = (0..b.core.reqs.len() as u64)
                .filter(|&i| {
                    let r = &b.core.reqs[i as usize];
                    r.node == n && r.state == ReqState::Lost
                })
                .collect();
            b.commit(
                ev,
                Event::Resolved {
                    node: node.into(),
                    at: now,
                    by: by.into(),
                },
            );
            let mut cand = BTreeSet::new();
            for id in lost {
                let keys = b.core.reqs[id as usize].keys.clone();
                cand.extend(b.freed(n, &keys));
            }
            b.settle(cand, ev, now);
            Ok(())
        })
    }

    /// After a replay at start-up: no agent could renew while the collector
    /// was away, so every lease in flight gets a full TTL from `now`.
    pub fn recovered(&mut self, now: Millis) -> Vec<Event> {
        let mut ev = Vec::new();
        self.commit(&mut ev, Event::Recovered { at: now });
        ev
    }

    fn step<T>(
        &mut self,
        now: Millis,
        f: impl FnOnce(&mut LeaseBook, &mut Vec<Event>) -> Result<T, Refusal>,
    ) -> Step<T> {
        let mut events = Vec::new();
        self.expire_due(now, &mut events);
        let answer = f(self, &mut events);
        Step { answer, events }
    }

    fn commit(&mut self, events: &mut Vec<Event>, e: Event) {
        if let Err(what) = self.core.apply(&e) {
            // The live book only makes events that fit its state.
            unreachable!("live fleet event {e:?} does not apply: {what}");
        }
        events.push(e);
    }

    fn expire_due(&mut self, now: Millis, ev: &mut Vec<Event>) {
        while let Some(&(until, id)) = self.core.deadlines.first() {
            if until > now {
                break;
            }
            let lease = LeaseId(id);
            self.commit(ev, Event::Expired { lease, at: now });
            if self.core.paused.is_none() && self.core.aborted.is_none() {
                let node = self.core.nodes[self.core.reqs[id as usize].node as usize]
                    .spec
                    .name
                    .clone();
                self.commit(
                    ev,
                    Event::Paused {
                        reason: PauseReason::Lost { node },
                        at: now,
                    },
                );
            }
        }
    }

    fn withdraw_one(&mut self, id: u64, why: Withdrawal, ev: &mut Vec<Event>, now: Millis) {
        let keys = self.core.reqs[id as usize].keys.clone();
        self.in_flight_waiters.remove(&id);
        self.commit(
            ev,
            Event::Withdrawn {
                lease: LeaseId(id),
                why,
            },
        );
        // Its reservations are gone: later requests on its keys may pass.
        let mut cand = BTreeSet::new();
        for k in keys {
            self.core.heads(k, &mut cand);
        }
        self.settle(cand, ev, now);
    }

    /// Candidates after a lease of node `n` over `keys` was freed.
    fn freed(&mut self, n: u32, keys: &[u32]) -> BTreeSet<u64> {
        let mut cand = BTreeSet::new();
        for &k in keys {
            self.core.heads(k, &mut cand);
        }
        // The node may be available again; a free in-flight slot goes first
        // to whoever waited for one.
        cand.extend(self.core.nodes[n as usize].waiting.iter().copied());
        cand.extend(self.in_flight_waiters.iter().copied());
        cand
    }

    /// Grant, in the order asked, every candidate the rule allows, adding the
    /// requests each grant may unblock. Every waiting request that is not a
    /// candidate is known not to be grantable (the tests check this against
    /// a full scan after every call).
    fn settle(&mut self, mut cand: BTreeSet<u64>, ev: &mut Vec<Event>, now: Millis) {
        if self.core.paused.is_some() || self.core.aborted.is_some() {
            return;
        }
        while let Some(id) = cand.pop_first() {
            if self.core.reqs[id as usize].state != ReqState::Waiting {
                continue;
            }
            match self.core.check(id) {
                Check::Grantable => {
                    self.in_flight_waiters.remove(&id);
                    let until = now.plus(self.core.spec.lease_ttl_ms);
                    self.commit(
                        ev,
                        Event::Granted {
                            lease: LeaseId(id),
                            until,
                            at: now,
                        },
                    );
                    // A node that became busy stops reserving for its other
                    // requests: later ones on their keys may pass now.
                    let n = self.core.reqs[id as usize].node;
                    if !self.core.available(n) {
                        let others: Vec<u64> = self.core.nodes[n as usize]
                            .waiting
                            .iter()
                            .copied()
                            .collect();
                        for o in others {
                            for k in self.core.reqs[o as usize].keys.clone() {
                                self.core.heads(k, &mut cand);
                            }
                        }
                    }
                }
                Check::InFlight => {
                    self.in_flight_waiters.insert(id);
                }
                _ => {
                    self.in_flight_waiters.remove(&id);
                }
            }
        }
    }
}

impl Core {
    pub(crate) fn available(&self, n: u32) -> bool {
        let st = &self.nodes[n as usize];
        st.lost == 0 && !st.done && !st.resolved && st.held < self.spec.node_concurrency
    }

    /// The grant rule for one waiting request (see the crate docs).
    pub(crate) fn check(&self, id: u64) -> Check {
        if self.paused.is_some() || self.aborted.is_some() {
            return Check::Stopped;
        }
        let r = &self.reqs[id as usize];
        if !self.available(r.node) {
            return Check::Node;
        }
        for &k in &r.keys {
            let ks = &self.keys[k as usize];
            let free = ks.max.saturating_sub(ks.used);
            // Each earlier waiting request of an available node keeps one
            // unit of the key: a later one may not delay it there.
            let ahead = ks
                .queue
                .range(..id)
                .filter(|&&e| self.available(self.reqs[e as usize].node))
                .take(free as usize)
                .count() as u32;
            if ahead >= free {
                return Check::Key(k);
            }
        }
        if self.in_flight >= self.in_flight_max {
            return Check::InFlight;
        }
        Check::Grantable
    }

    /// The first waiting requests of key `k` that could take its free units.
    fn heads(&self, k: u32, cand: &mut BTreeSet<u64>) {
        let ks = &self.keys[k as usize];
        let free = ks.max.saturating_sub(ks.used) as usize;
        cand.extend(
            ks.queue
                .iter()
                .copied()
                .filter(|&e| self.available(self.reqs[e as usize].node))
                .take(free),
        );
    }

    fn node_of(&self, name: &str) -> u32 {
        self.node_ix[name]
    }

    pub(crate) fn lost_nodes(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.lost > 0)
            .map(|n| n.spec.name.clone())
            .collect()
    }

    fn member(&self, run: &str, node: &str) -> Result<u32, Refusal> {
        if run != self.spec.run {
            return Err(Refusal::WrongRun {
                expected: self.spec.run.clone(),
                got: run.into(),
            });
        }
        self.node_ix
            .get(node)
            .copied()
            .ok_or_else(|| Refusal::UnknownNode(node.into()))
    }

    /// May this node ask for something new?
    fn usable(&self, n: u32) -> Result<(), Refusal> {
        let st = &self.nodes[n as usize];
        if self.aborted.is_some() {
            Err(Refusal::Aborted)
        } else if st.lost > 0 {
            Err(Refusal::NodeLost(st.spec.name.clone()))
        } else if st.resolved {
            Err(Refusal::NodeResolved(st.spec.name.clone()))
        } else if st.done {
            Err(Refusal::NodeDone(st.spec.name.clone()))
        } else {
            Ok(())
        }
    }

    fn owned(&self, run: &str, node: &str, lease: LeaseId) -> Result<&Req, Refusal> {
        let n = self.member(run, node)?;
        let r = self
            .reqs
            .get(lease.0 as usize)
            .ok_or(Refusal::UnknownLease(lease))?;
        if r.node != n {
            return Err(Refusal::NotYourLease {
                lease,
                owner: self.nodes[r.node as usize].spec.name.clone(),
            });
        }
        Ok(r)
    }

    /// The lease, if `node` holds it granted now.
    fn granted(&self, run: &str, node: &str, lease: LeaseId) -> Result<(), Refusal> {
        match self.owned(run, node, lease)?.state {
            ReqState::Granted { .. } => Ok(()),
            _ => self.ticket(lease.0).map(|_| ()),
        }
    }

    fn ticket(&self, id: u64) -> Result<Ticket, Refusal> {
        let lease = LeaseId(id);
        match self.reqs[id as usize].state {
            ReqState::Granted { until } => Ok(Ticket::Granted { lease, until }),
            ReqState::Waiting => Ok(Ticket::Waiting { lease }),
            ReqState::Lost => Err(Refusal::LeaseLost(lease)),
            ReqState::Resolved => Err(Refusal::Resolved(lease)),
            ReqState::Returned(outcome) => Err(Refusal::AlreadyReturned { lease, outcome }),
            ReqState::Withdrawn(Withdrawal::Abort) => Err(Refusal::Aborted),
            ReqState::Withdrawn(Withdrawal::Agent) => Err(Refusal::Withdrawn(lease)),
            ReqState::Withdrawn(Withdrawal::Resolved) => Err(Refusal::NodeResolved(
                self.nodes[self.reqs[id as usize].node as usize]
                    .spec
                    .name
                    .clone(),
            )),
        }
    }

    fn req_mut(&mut self, lease: LeaseId) -> Result<&mut Req, String> {
        self.reqs
            .get_mut(lease.0 as usize)
            .ok_or_else(|| format!("no {lease}"))
    }

    fn node_named(&self, name: &str) -> Result<u32, String> {
        self.node_ix
            .get(name)
            .copied()
            .ok_or_else(|| format!("no node {name:?}"))
    }

    /// Frees what a granted or lost lease holds.
    fn release(&mut self, id: u64) {
        let r = &self.reqs[id as usize];
        self.osds_held.remove(&(r.granted_nr, id));
        for &k in &r.keys {
            self.keys[k as usize].used -= 1;
        }
        self.nodes[r.node as usize].held -= 1;
        self.in_flight -= 1;
    }

    /// The one state transition (live and replay).
    pub(crate) fn apply(&mut self, e: &Event) -> Result<(), String> {
        match e {
            Event::Opened { .. } => return Err("`opened` twice".into()),
            Event::Requested {
                lease,
                node,
                restart,
                keys,
                at,
            } => {
                let n = self.node_named(node)?;
                if lease.0 != self.reqs.len() as u64 {
                    return Err(format!("{lease} out of order"));
                }
                if self.by_restart.contains_key(&(n, restart.clone())) {
                    return Err(format!("{restart} on {node:?} asked twice"));
                }
                let mut ks = Vec::with_capacity(keys.len());
                for key in keys {
                    let max = self
                        .spec
                        .limits
                        .limits
                        .get(usize::from(key.limit))
                        .ok_or_else(|| format!("no limit {}", key.limit))?
                        .max
                        .get();
                    let k = *self.key_ix.entry(key.clone()).or_insert_with(|| {
                        self.keys.push(KeyState {
                            key: key.clone(),
                            max,
                            used: 0,
                            queue: BTreeSet::new(),
                        });
                        (self.keys.len() - 1) as u32
                    });
                    self.keys[k as usize].queue.insert(lease.0);
                    ks.push(k);
                }
                self.by_restart.insert((n, restart.clone()), lease.0);
                self.nodes[n as usize].waiting.insert(lease.0);
                self.waiting.insert(lease.0);
                self.reqs.push(Req {
                    node: n,
                    restart: restart.clone(),
                    keys: ks,
                    state: ReqState::Waiting,
                    since: *at,
                    granted_nr: 0,
                });
            }
            Event::Granted { lease, until, at } => {
                self.grants += 1;
                let nr = self.grants;
                let r = self.req_mut(*lease)?;
                if r.state != ReqState::Waiting {
                    return Err(format!("{lease} granted but not waiting"));
                }
                r.state = ReqState::Granted { until: *until };
                r.since = *at;
                r.granted_nr = nr;
                let (n, keys, osd) = (r.node, r.keys.clone(), r.restart.kind == Kind::CephOsd);
                if osd {
                    self.osds_held.insert((nr, lease.0));
                }
                for k in keys {
                    let ks = &mut self.keys[k as usize];
                    ks.queue.remove(&lease.0);
                    ks.used += 1;
                }
                self.nodes[n as usize].waiting.remove(&lease.0);
                self.nodes[n as usize].held += 1;
                self.waiting.remove(&lease.0);
                self.in_flight += 1;
                self.deadlines.insert((*until, lease.0));
            }
            Event::Renewed { lease, until } => {
                let r = self.req_mut(*lease)?;
                let ReqState::Granted { until: old } = r.state else {
                    return Err(format!("{lease} renewed but not granted"));
                };
                r.state = ReqState::Granted { until: *until };
                self.deadlines.remove(&(old, lease.0));
                self.deadlines.insert((*until, lease.0));
            }
            Event::Returned { lease, outcome, .. } => {
                let r = self.req_mut(*lease)?;
                let ReqState::Granted { until } = r.state else {
                    return Err(format!("{lease} returned but not granted"));
                };
                r.state = ReqState::Returned(*outcome);
                self.deadlines.remove(&(until, lease.0));
                self.release(lease.0);
                if *outcome != Outcome::Ok {
                    self.failures += 1;
                    self.failures_since_resume += 1;
                }
            }
            Event::Expired { lease, at } => {
                let r = self.req_mut(*lease)?;
                let ReqState::Granted { until } = r.state else {
                    return Err(format!("{lease} expired but not granted"));
                };
                r.state = ReqState::Lost;
                r.since = *at;
                let n = r.node;
                self.deadlines.remove(&(until, lease.0));
                self.nodes[n as usize].lost += 1;
            }
            Event::Withdrawn { lease, why } => {
                let r = self.req_mut(*lease)?;
                if let ReqState::Granted { until } = r.state {
                    // Granted and never started: its slots are free again.
                    r.state = ReqState::Withdrawn(*why);
                    self.deadlines.remove(&(until, lease.0));
                    self.release(lease.0);
                    return Ok(());
                }
                if r.state != ReqState::Waiting {
                    return Err(format!("{lease} withdrawn but not waiting"));
                }
                r.state = ReqState::Withdrawn(*why);
                let (n, keys) = (r.node, r.keys.clone());
                for k in keys {
                    self.keys[k as usize].queue.remove(&lease.0);
                }
                self.nodes[n as usize].waiting.remove(&lease.0);
                self.waiting.remove(&lease.0);
            }
            Event::Resolved { node, at, by } => {
                let n = self.node_named(node)?;
                let lost: Vec<u64> = (0..self.reqs.len() as u64)
                    .filter(|&i| {
                        let r = &self.reqs[i as usize];
                        r.node == n && r.state == ReqState::Lost
                    })
                    .collect();
                if lost.is_empty() {
                    return Err(format!("node {node:?} resolved but not lost"));
                }
                if !self.nodes[n as usize].waiting.is_empty() {
                    return Err(format!("node {node:?} resolved with requests waiting"));
                }
                for id in lost {
                    self.reqs[id as usize].state = ReqState::Resolved;
                    self.release(id);
                }
                let st = &mut self.nodes[n as usize];
                st.lost = 0;
                st.resolved = true;
                st.resolution = Some((*at, by.clone()));
            }
            Event::Rejoined { node, .. } => {
                let n = self.node_named(node)?;
                let st = &mut self.nodes[n as usize];
                if !st.resolved {
                    return Err(format!("node {node:?} rejoined but not resolved"));
                }
                st.resolved = false;
                st.epoch += 1;
                // What it asks from now on is new: its earlier requests are
                // history, not answers to the new agent's asks.
                self.by_restart.retain(|(m, _), _| *m != n);
            }
            Event::Paused { reason, .. } => self.paused = Some(reason.clone()),
            Event::Resumed { .. } => {
                self.paused = None;
                self.failures_since_resume = 0;
            }
            Event::Aborted { by, .. } => self.aborted = Some(by.clone()),
            Event::Finished { node, .. } => {
                let n = self.node_named(node)?;
                self.nodes[n as usize].done = true;
            }
            Event::Recovered { at } => {
                let ttl = self.spec.lease_ttl_ms;
                let live: Vec<(Millis, u64)> = self.deadlines.iter().copied().collect();
                self.deadlines.clear();
                for (_, id) in live {
                    let until = at.plus(ttl);
                    self.reqs[id as usize].state = ReqState::Granted { until };
                    self.deadlines.insert((until, id));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
impl LeaseBook {
    /// [`LeaseBook::alongside`] by a scan of every request (the live book
    /// keeps the held OSD leases instead).
    pub(crate) fn alongside_by_scan(&self, lease: LeaseId) -> Vec<String> {
        let me = &self.core.reqs[lease.0 as usize];
        if me.restart.kind != Kind::CephOsd || me.granted_nr == 0 {
            return Vec::new();
        }
        let mut held: Vec<&Req> = self
            .core
            .reqs
            .iter()
            .filter(|r| {
                r.restart.kind == Kind::CephOsd
                    && matches!(r.state, ReqState::Granted { .. } | ReqState::Lost)
                    && r.granted_nr < me.granted_nr
            })
            .collect();
        held.sort_by_key(|r| r.granted_nr);
        held.iter().map(|r| r.restart.target.clone()).collect()
    }

    /// The rule by brute force: the waiting requests a full scan in the order
    /// asked would still grant (the live book must leave none).
    pub(crate) fn grantable_by_scan(&self) -> Vec<u64> {
        self.core
            .waiting
            .iter()
            .copied()
            .filter(|&id| self.core.check(id) == Check::Grantable)
            .collect()
    }
}
