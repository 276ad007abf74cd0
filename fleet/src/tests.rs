//! The lease book's rules, by example and by random interleavings
//! (proptest): limits never exceeded, nothing granted twice, replay equal to
//! the live book, no grantable request left waiting, and everything served
//! once the others return.

use crate::book::ReqState;
use crate::*;
use bounce_wire::Outcome;
use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap, HashSet};

const RUN: &str = "r1";
const TTL: u64 = 1_000;

fn limits(json: &str) -> Limits {
    serde_json::from_str(json).unwrap()
}

fn spec(limits: Limits, nodes: &[(&str, &[(&str, &str)])], conc: u32) -> FleetSpec {
    FleetSpec {
        run: RUN.into(),
        limits,
        nodes: nodes
            .iter()
            .map(|(n, ls)| NodeSpec {
                name: n.to_string(),
                labels: ls
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            })
            .collect(),
        node_concurrency: conc,
        lease_ttl_ms: TTL,
    }
}

/// A live book and its log, replayed after every call.
struct Fleet {
    book: LeaseBook,
    log: Vec<Event>,
    now: Millis,
}

impl Fleet {
    fn open(spec: FleetSpec) -> Fleet {
        let (book, e) = LeaseBook::open(spec, Millis(0)).unwrap();
        Fleet {
            book,
            log: vec![e],
            now: Millis(0),
        }
    }
    fn keep<T>(&mut self, s: Step<T>) -> Result<T, Refusal> {
        self.log.extend(s.events);
        let replayed = LeaseBook::replay(self.log.clone()).unwrap();
        assert!(replayed == self.book, "replay differs from the live book");
        assert_eq!(self.book.grantable_by_scan(), Vec::<u64>::new());
        s.answer
    }
    fn ask(&mut self, node: &str, service: &str) -> Result<Ticket, Refusal> {
        self.ask_kind(node, service, Kind::Docker)
    }
    fn ask_kind(&mut self, node: &str, service: &str, kind: Kind) -> Result<Ticket, Refusal> {
        let req = LeaseRequest {
            run: RUN.into(),
            node: node.into(),
            restart: restart(service, kind),
        };
        let s = self.book.request(&req, self.now);
        self.keep(s)
    }
    fn back(&mut self, node: &str, lease: LeaseId, outcome: Outcome) -> Result<(), Refusal> {
        let s = self.book.give_back(RUN, node, lease, outcome, self.now);
        self.keep(s)
    }
    fn state(&self, lease: LeaseId) -> ReqState {
        self.book.core.reqs[lease.0 as usize].state
    }
    fn renew(&mut self, node: &str, lease: LeaseId) -> Result<Millis, Refusal> {
        let s = self.book.renew(RUN, node, lease, self.now);
        self.keep(s)
    }
    fn join(&mut self, node: &str) -> Result<u32, Refusal> {
        let s = self.book.join(RUN, node, self.now);
        self.keep(s)
    }
    fn finish(&mut self, node: &str) -> Result<(), Refusal> {
        let s = self.book.finish(RUN, node, self.now);
        self.keep(s)
    }
    fn resolve(&mut self, node: &str, by: &str) -> Result<(), Refusal> {
        let s = self.book.resolve(RUN, node, by, self.now);
        self.keep(s)
    }
    fn resume(&mut self) -> Result<(), Refusal> {
        let s = self.book.resume(self.now);
        self.keep(s)
    }
    /// Time passes to `now`: expiries, kept like any other change.
    fn tick(&mut self) {
        let events = self.book.tick(self.now);
        self.keep(Step {
            answer: Ok(()),
            events,
        })
        .unwrap();
    }
}

fn restart(service: &str, kind: Kind) -> Restart {
    Restart {
        kind,
        service: service.into(),
        target: service.into(),
        iteration: 1,
    }
}

fn lease(t: Ticket) -> LeaseId {
    match t {
        Ticket::Granted { lease, .. } | Ticket::Waiting { lease } => lease,
    }
}

fn granted(t: &Result<Ticket, Refusal>) -> bool {
    matches!(t, Ok(Ticket::Granted { .. }))
}

const CTL: &[(&str, &[(&str, &str)])] = &[("ctl1", &[]), ("ctl2", &[]), ("ctl3", &[])];

#[test]
fn one_nova_api_at_a_time_and_busy_keys_do_not_block_other_keys() {
    let mut f = Fleet::open(spec(
        limits(r#"{"max_in_flight":2,"limits":[{"key":"service:{service}","max":1}]}"#),
        CTL,
        1,
    ));
    let a = f.ask("ctl1", "nova_api").unwrap();
    assert!(matches!(a, Ticket::Granted { .. }));
    let b = f.ask("ctl2", "nova_api").unwrap();
    assert!(matches!(b, Ticket::Waiting { .. }));
    let c = f.ask("ctl3", "nova_api").unwrap();
    // ctl2 waits for nova_api; its keystone does not share a key: it passes.
    let k = f.ask("ctl2", "keystone");
    assert!(granted(&k), "{k:?}");
    assert_eq!(
        f.book.status().queue[0].blocked_on,
        "node",
        "ctl2 is busy now"
    );
    // max_in_flight 2 is full: ctl1's keystone waits on it.
    let k1 = f.ask("ctl1", "glance_api").unwrap();
    assert!(matches!(k1, Ticket::Waiting { .. }));
    // ctl1 returns nova_api: ctl2 is busy, so ctl3 (next asked) gets it,
    // then ctl1's glance_api would exceed in-flight: it keeps waiting.
    f.back("ctl1", lease(a), Outcome::Ok).unwrap();
    assert!(matches!(f.state(lease(c)), ReqState::Granted { .. }));
    assert_eq!(f.state(lease(b)), ReqState::Waiting);
    assert_eq!(f.state(lease(k1)), ReqState::Waiting);
    let st = f.book.status();
    assert_eq!(st.queue[1].blocked_on, "max_in_flight");
    assert_eq!((st.limits[0].used, st.limits[0].max), (2, 2));
    let nova = st.limits.iter().find(|l| l.key == "service:nova_api");
    assert_eq!(nova.map(|l| (l.used, l.waiting)), Some((1, 1)));
}

#[test]
fn an_earlier_request_keeps_a_unit_of_a_key_it_waits_on_elsewhere() {
    let mut f = Fleet::open(spec(
        limits(
            r#"{"max_in_flight":10,"limits":[{"key":"service:{service}","max":1},{"key":"{label.rack}","max":2}]}"#,
        ),
        &[
            ("a", &[("rack", "r1")]),
            ("b", &[("rack", "r1")]),
            ("c", &[("rack", "r1")]),
        ],
        1,
    ));
    let a = f.ask("a", "nova_api").unwrap();
    let b = f.ask("b", "nova_api").unwrap();
    // r1 has one unit left, and b (asked first) keeps it: c waits on r1.
    let c = f.ask("c", "keystone").unwrap();
    assert!(matches!(c, Ticket::Waiting { .. }));
    assert_eq!(f.book.status().queue[1].blocked_on, "r1");
    f.back("a", lease(a), Outcome::Ok).unwrap();
    assert!(matches!(f.state(lease(b)), ReqState::Granted { .. }));
    assert!(matches!(f.state(lease(c)), ReqState::Granted { .. }));
}

#[test]
fn a_node_that_becomes_busy_stops_keeping_units_for_its_other_requests() {
    let mut f = Fleet::open(spec(
        limits(
            r#"{"max_in_flight":10,"limits":[{"key":"service:{service}","max":1},{"key":"{label.rack}","max":2}]}"#,
        ),
        &[
            ("a", &[("rack", "r2")]),
            ("e", &[("rack", "r2")]),
            ("b", &[("rack", "r1")]),
            ("c", &[("rack", "r1")]),
        ],
        1,
    ));
    f.ask("a", "nova_api").unwrap();
    let e = lease(f.ask("e", "glance_api").unwrap());
    let b_glance = lease(f.ask("b", "glance_api").unwrap());
    let b_nova = lease(f.ask("b", "nova_api").unwrap());
    // b keeps both units of r1 (one per waiting request): c waits.
    let c = lease(f.ask("c", "keystone").unwrap());
    assert_eq!(f.state(c), ReqState::Waiting);
    // glance_api goes to b, which is busy now: its nova_api keeps nothing,
    // and c takes the unit of r1 left.
    f.back("e", e, Outcome::Ok).unwrap();
    assert!(matches!(f.state(b_glance), ReqState::Granted { .. }));
    assert_eq!(f.state(b_nova), ReqState::Waiting);
    assert!(matches!(f.state(c), ReqState::Granted { .. }));
}

#[test]
fn a_constant_key_covers_only_the_kinds_it_names() {
    let mut f = Fleet::open(spec(
        limits(
            r#"{"max_in_flight":10,"limits":[{"key":"ceph-osd","max":1,"kinds":["ceph_osd"]}]}"#,
        ),
        CTL,
        1,
    ));
    assert!(granted(&f.ask_kind("ctl1", "ceph-osd", Kind::CephOsd)));
    assert!(!granted(&f.ask_kind("ctl2", "ceph-osd", Kind::CephOsd)));
    assert!(granted(&f.ask("ctl3", "nova_api")));
}

#[test]
fn a_lost_lease_keeps_its_slots_and_pauses_until_resolved() {
    let mut f = Fleet::open(spec(
        limits(r#"{"max_in_flight":2,"limits":[{"key":"service:{service}","max":1}]}"#),
        CTL,
        1,
    ));
    let a = lease(f.ask("ctl1", "nova_api").unwrap());
    let b = lease(f.ask("ctl2", "nova_api").unwrap());
    f.now = Millis(TTL / 2);
    assert_eq!(f.renew("ctl1", a), Ok(Millis(TTL / 2 + TTL)));
    f.now = Millis(TTL / 2 + TTL);
    f.tick();
    let st = f.book.status();
    assert_eq!(st.nodes[0].state, NodeState::Lost);
    assert_eq!(
        st.state,
        FleetState::Paused {
            reason: PauseReason::Lost {
                node: "ctl1".into()
            }
        }
    );
    assert_eq!(st.limits[1].used, 1, "the lost lease keeps nova_api");
    assert_eq!(f.back("ctl1", a, Outcome::Ok), Err(Refusal::LeaseLost(a)));
    assert!(matches!(
        f.ask("ctl1", "keystone"),
        Err(Refusal::NodeLost(_))
    ));
    assert_eq!(f.resume(), Err(Refusal::StillLost(vec!["ctl1".into()])));
    f.resolve("ctl1", "admin").unwrap();
    assert_eq!(f.state(b), ReqState::Waiting, "still paused");
    f.resume().unwrap();
    assert!(matches!(f.state(b), ReqState::Granted { .. }));
}

#[test]
fn a_resolved_node_leaves_every_queue_and_is_granted_nothing_more() {
    let mut f = Fleet::open(spec(
        limits(r#"{"max_in_flight":3,"limits":[{"key":"service:{service}","max":1}]}"#),
        CTL,
        2,
    ));
    let a = lease(f.ask("ctl1", "nova_api").unwrap());
    let k2 = lease(f.ask("ctl2", "keystone").unwrap());
    // ctl1 has a free slot: its keystone is first in line for the key.
    let k1 = lease(f.ask("ctl1", "keystone").unwrap());
    let k3 = lease(f.ask("ctl3", "keystone").unwrap());
    assert_eq!(f.state(k1), ReqState::Waiting);
    assert_eq!(f.book.status().queue[1].blocked_on, "service:keystone");
    f.now = Millis(TTL / 2);
    f.renew("ctl2", k2).unwrap();
    // ctl1's agent dies: its lease expires, the operator resolves it.
    f.now = Millis(TTL);
    f.tick();
    assert_eq!(f.state(a), ReqState::Lost);
    f.resolve("ctl1", "admin").unwrap();
    assert_eq!(f.state(k1), ReqState::Withdrawn(Withdrawal::Resolved));
    let st = f.book.status();
    assert_eq!(st.nodes[0].state, NodeState::Resolved);
    assert_eq!(st.nodes[0].waiting, 0);
    assert!(st.queue.iter().all(|q| q.node != "ctl1"), "{:?}", st.queue);
    let keystone = st.limits.iter().find(|l| l.key == "service:keystone");
    assert_eq!(keystone.map(|l| l.waiting), Some(1), "only ctl3 queues");
    f.resume().unwrap();
    // keystone comes free: ctl3 gets it, not the dead ctl1.
    f.back("ctl2", k2, Outcome::Ok).unwrap();
    assert!(matches!(f.state(k3), ReqState::Granted { .. }));
    assert_eq!(f.state(k1), ReqState::Withdrawn(Withdrawal::Resolved));
    // Asking again (the same restart or a new one) is refused.
    assert_eq!(
        f.ask("ctl1", "keystone"),
        Err(Refusal::NodeResolved("ctl1".into()))
    );
    assert_eq!(
        f.ask("ctl1", "glance_api"),
        Err(Refusal::NodeResolved("ctl1".into()))
    );
    assert!(f.book.resolved("ctl1"));
    f.back("ctl3", k3, Outcome::Ok).unwrap();
    for n in ["ctl1", "ctl2", "ctl3"] {
        f.finish(n).unwrap();
    }
    assert_eq!(f.book.status().state, FleetState::Done);
}

#[test]
fn a_resolved_node_rejoins_under_its_next_epoch_and_asks_anew() {
    let mut f = Fleet::open(spec(
        limits(r#"{"max_in_flight":3,"limits":[{"key":"service:{service}","max":1}]}"#),
        CTL,
        1,
    ));
    let a = lease(f.ask("ctl1", "nova_api").unwrap());
    let b = lease(f.ask("ctl2", "nova_api").unwrap());
    assert_eq!(f.state(b), ReqState::Waiting);
    // ctl1's agent dies mid-restart.
    f.now = Millis(TTL);
    f.tick();
    assert_eq!(f.state(a), ReqState::Lost);
    // A new agent on the lost node is refused until an operator resolved it.
    assert_eq!(f.join("ctl1"), Err(Refusal::NodeLost("ctl1".into())));
    f.resolve("ctl1", "admin token 2").unwrap();
    let st = f.book.status();
    assert_eq!(st.nodes[0].state, NodeState::Resolved);
    assert_eq!(st.nodes[0].epoch, 0);
    assert!(f.book.fence("ctl1", 0).is_ok());
    // It rejoins under epoch 1: the agent resolved out is fenced off.
    let s = f.book.join(RUN, "ctl1", f.now);
    assert!(matches!(&s.events[..], [Event::Rejoined { node, .. }] if node == "ctl1"));
    assert_eq!(f.keep(s), Ok(1));
    let s = f.book.join(RUN, "ctl1", f.now);
    assert!(s.events.is_empty(), "a join again changes nothing");
    assert_eq!(f.keep(s), Ok(1));
    assert_eq!(
        f.book.fence("ctl1", 0),
        Err(Refusal::Superseded {
            node: "ctl1".into(),
            epoch: 0,
            current: 1
        })
    );
    assert!(f.book.fence("ctl1", 1).is_ok());
    assert_eq!(
        f.join("ctl2"),
        Ok(0),
        "a node never resolved stays at epoch 0"
    );
    // The same restart asked again is a new request, served in turn
    // (ctl2 asked first); the lost one stays resolved in the history.
    let a2 = lease(f.ask("ctl1", "nova_api").unwrap());
    assert_ne!(a2, a);
    assert_eq!(f.state(a), ReqState::Resolved);
    f.resume().unwrap();
    assert!(matches!(f.state(b), ReqState::Granted { .. }));
    assert_eq!(f.state(a2), ReqState::Waiting);
    f.back("ctl2", b, Outcome::Ok).unwrap();
    assert!(matches!(f.state(a2), ReqState::Granted { .. }));
    let st = f.book.status();
    assert_eq!(st.nodes[0].state, NodeState::Restarting);
    assert_eq!(st.nodes[0].epoch, 1);
    let r = st.nodes[0].resolved.clone().unwrap();
    assert_eq!((r.at, r.by.as_str()), (Millis(TTL), "admin token 2"));
    assert!(
        st.words(f.now)
            .contains("rejoined after a resolve by admin token 2"),
        "{}",
        st.words(f.now)
    );
    f.back("ctl1", a2, Outcome::Ok).unwrap();
    for n in ["ctl1", "ctl2", "ctl3"] {
        f.finish(n).unwrap();
    }
    assert_eq!(f.book.status().state, FleetState::Done);
    // Once aborted, a resolved node stays out.
    let mut g = Fleet::open(spec(limits(r#"{"max_in_flight":1}"#), CTL, 1));
    lease(g.ask("ctl1", "nova_api").unwrap());
    g.now = Millis(TTL);
    let ev = g.book.tick(g.now);
    g.keep(Step {
        answer: Ok(()),
        events: ev,
    })
    .unwrap();
    let s = g.book.resolve(RUN, "ctl1", "admin", g.now);
    g.keep(s).unwrap();
    let s = g.book.abort(g.now, "admin");
    g.keep(s).unwrap();
    let s = g.book.join(RUN, "ctl1", g.now);
    assert_eq!(g.keep(s), Err(Refusal::Aborted));
}

#[test]
fn an_osd_grant_names_the_osds_granted_before_it_and_still_held() {
    let mut f = Fleet::open(spec(
        limits(r#"{"max_in_flight":3,"limits":[{"key":"ceph-osd","max":2,"kinds":["ceph_osd"]}]}"#),
        CTL,
        1,
    ));
    let a = lease(f.ask_kind("ctl1", "osd.0", Kind::CephOsd).unwrap());
    let b = lease(f.ask_kind("ctl2", "osd.1", Kind::CephOsd).unwrap());
    let n = lease(f.ask("ctl3", "nova_api").unwrap());
    assert!(matches!(f.state(b), ReqState::Granted { .. }));
    assert_eq!(f.book.alongside(a), Vec::<String>::new(), "first granted");
    assert_eq!(f.book.alongside(b), ["osd.0"], "granted after osd.0");
    assert_eq!(f.book.alongside(n), Vec::<String>::new(), "not an OSD");
    // osd.0 lost: still down as far as anyone knows, still named.
    f.now = Millis(TTL / 2);
    f.renew("ctl2", b).unwrap();
    f.renew("ctl3", n).unwrap();
    f.now = Millis(TTL);
    f.tick();
    assert_eq!(f.state(a), ReqState::Lost);
    assert_eq!(f.book.alongside(b), ["osd.0"]);
    f.resolve("ctl1", "admin").unwrap();
    assert_eq!(f.book.alongside(b), Vec::<String>::new(), "osd.0 resolved");
}

#[test]
fn max_failures_pauses_and_abort_answers_every_waiting_request() {
    let mut f = Fleet::open(spec(
        limits(r#"{"max_in_flight":1,"max_failures":2}"#),
        CTL,
        1,
    ));
    let a = lease(f.ask("ctl1", "nova_api").unwrap());
    let b = lease(f.ask("ctl2", "nova_api").unwrap());
    let c = lease(f.ask("ctl3", "nova_api").unwrap());
    f.back("ctl1", a, Outcome::Failed).unwrap();
    assert!(matches!(f.state(b), ReqState::Granted { .. }));
    f.back("ctl2", b, Outcome::Timeout).unwrap();
    let st = f.book.status();
    assert_eq!(
        st.state,
        FleetState::Paused {
            reason: PauseReason::Failures { count: 2 }
        }
    );
    assert_eq!(f.state(c), ReqState::Waiting);
    // Returning again (a lost answer) changes nothing.
    assert_eq!(f.back("ctl2", b, Outcome::Timeout), Ok(()));
    assert_eq!(f.book.status().failures.total, 2);
    let s = f.book.abort(f.now, "admin token 1");
    f.keep(s).unwrap();
    assert_eq!(f.ask("ctl3", "nova_api"), Err(Refusal::Aborted));
    assert_eq!(f.ask("ctl3", "keystone"), Err(Refusal::Aborted));
    assert_eq!(
        f.book.status().state,
        FleetState::Aborted {
            by: "admin token 1".into()
        }
    );
    assert!(
        f.book
            .status()
            .words(f.now)
            .contains("aborted by an operator (admin token 1)")
    );
}

#[test]
fn status_in_words_names_every_node_the_queue_each_limit_and_who_paused() {
    let mut f = Fleet::open(spec(
        limits(
            r#"{"max_in_flight":2,"max_failures":3,"limits":[{"key":"service:{service}","max":1}]}"#,
        ),
        CTL,
        1,
    ));
    f.now = Millis(1_764_504_000_000);
    let a = lease(f.ask("ctl1", "nova_api").unwrap());
    f.ask("ctl2", "nova_api").unwrap();
    let s = f.book.pause(f.now, "admin token 2");
    f.keep(s).unwrap();
    let w = f.book.status().words(f.now);
    assert!(
        w.starts_with("fleet run r1: paused by an operator (admin token 2)\n"),
        "{w}"
    );
    assert!(w.contains("waits for a resume"), "{w}");
    f.resume().unwrap();
    f.now = f.now.plus(900);
    let w = f.book.status().words(f.now);
    assert!(w.starts_with("fleet run r1: running\n"), "{w}");
    assert!(
        w.contains("failures: 0 of max_failures 3 since the last resume (0 in all)"),
        "{w}"
    );
    assert!(
        w.contains("ctl1  restarting docker nova_api #1 since 12:00:00 UTC (900 ms ago), lease until 12:00:01 UTC"),
        "{w}"
    );
    assert!(
        w.contains("ctl2  waiting: 1 request(s), the first asked 12:00:00 UTC (900 ms ago)"),
        "{w}"
    );
    assert!(w.contains("ctl3  idle"), "{w}");
    assert!(w.contains("1. ctl2  docker nova_api #1, asked 12:00:00 UTC (900 ms ago), waits for service:nova_api"), "{w}");
    assert!(
        w.contains("max_in_flight (2)                     1/2  1 waiting"),
        "{w}"
    );
    assert!(
        w.contains("service:{service} (service:nova_api)  1/1  1 waiting"),
        "{w}"
    );
    // ctl1's lease expires: it is named lost, with the way out.
    f.now = f.now.plus(4_100);
    f.tick();
    assert_eq!(f.state(a), ReqState::Lost);
    f.now = f.now.plus(2_000);
    let w = f.book.status().words(f.now);
    assert!(w.contains("paused: node \"ctl1\" is lost"), "{w}");
    assert!(
        w.contains("ctl1  LOST: docker nova_api #1 (lease expired 12:00:05 UTC (2 s ago)) (its slots stay taken: `fleet resolve r1 ctl1` once dealt with)"),
        "{w}"
    );
}

#[test]
fn strangers_are_refused() {
    let mut f = Fleet::open(spec(limits(r#"{"max_in_flight":1}"#), CTL, 1));
    let a = lease(f.ask("ctl1", "nova_api").unwrap());
    let req = LeaseRequest {
        run: "other".into(),
        node: "ctl1".into(),
        restart: restart("nova_api", Kind::Docker),
    };
    let s = f.book.request(&req, f.now);
    assert!(matches!(f.keep(s), Err(Refusal::WrongRun { .. })));
    assert_eq!(
        f.ask("cmp9", "nova_api"),
        Err(Refusal::UnknownNode("cmp9".into()))
    );
    assert_eq!(
        f.back("ctl2", a, Outcome::Ok),
        Err(Refusal::NotYourLease {
            lease: a,
            owner: "ctl1".into()
        })
    );
    // Asking twice for one restart is one request.
    assert_eq!(
        f.ask("ctl1", "nova_api"),
        Ok(Ticket::Granted {
            lease: a,
            until: Millis(TTL)
        })
    );
    assert_eq!(f.book.core.reqs.len(), 1);
}

#[test]
fn a_template_needing_a_label_a_node_lacks_refuses_the_fleet() {
    let e = LeaseBook::open(
        spec(
            limits(r#"{"max_in_flight":1,"limits":[{"key":"rack:{label.rack}","max":1}]}"#),
            &[("a", &[("rack", "r1")]), ("b", &[])],
            1,
        ),
        Millis(0),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"key "rack:{label.rack}" needs label "rack", which node "b" does not have"#
    );
}

#[test]
fn events_survive_json_and_a_recovered_book_extends_leases() {
    let mut f = Fleet::open(spec(
        limits(r#"{"max_in_flight":"50%","limits":[{"key":"service:{service}","max":1}]}"#),
        CTL,
        2,
    ));
    let a = lease(f.ask("ctl1", "nova_api").unwrap());
    f.ask("ctl2", "nova_api").unwrap();
    let text: Vec<String> = f
        .log
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect();
    let back: Vec<Event> = text
        .iter()
        .map(|t| serde_json::from_str(t).unwrap())
        .collect();
    let mut book = LeaseBook::replay(back).unwrap();
    assert!(book == f.book);
    let ev = book.recovered(Millis(5 * TTL));
    assert_eq!(ev.len(), 1);
    assert!(book.tick(Millis(5 * TTL + TTL / 2)).is_empty(), "not lost");
    assert_eq!(
        book.core.reqs[a.0 as usize].state,
        ReqState::Granted {
            until: Millis(6 * TTL)
        }
    );
}

// Random interleavings.

#[derive(Debug, Clone)]
enum Op {
    Ask { node: usize, target: usize },
    Renew(usize),
    Return { pick: usize, ok: bool },
    Withdraw(usize),
    Wait(u64),
    Pause,
    Resume,
    Resolve(usize),
    Rejoin(usize),
    Abort,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        24 => (0..4usize, 0..5usize).prop_map(|(node, target)| Op::Ask { node, target }),
        12 => any::<usize>().prop_map(Op::Renew),
        20 => (any::<usize>(), prop::bool::weighted(0.85)).prop_map(|(pick, ok)| Op::Return { pick, ok }),
        4 => any::<usize>().prop_map(Op::Withdraw),
        8 => (0..(TTL * 3 / 2)).prop_map(Op::Wait),
        4 => Just(Op::Pause),
        8 => Just(Op::Resume),
        4 => (0..4usize).prop_map(Op::Resolve),
        3 => (0..4usize).prop_map(Op::Rejoin),
        1 => Just(Op::Abort),
    ]
}

fn fleet_spec() -> impl Strategy<Value = FleetSpec> {
    (
        1..4u32,
        1..4u32,
        1..3u32,
        1..3u32,
        prop::bool::ANY,
        prop::bool::ANY,
    )
        .prop_map(|(in_flight, conc, svc_max, rack_max, rack, failures)| {
            let mut ls = format!(r#"{{"key":"service:{{service}}","max":{svc_max}}}"#);
            if rack {
                ls += &format!(r#",{{"key":"{{label.rack}}","max":{rack_max}}}"#);
            }
            ls += r#",{"key":"ceph-osd","max":1,"kinds":["ceph_osd"]}"#;
            let mf = if failures { 2 } else { 1000 };
            let json =
                format!(r#"{{"max_in_flight":{in_flight},"max_failures":{mf},"limits":[{ls}]}}"#);
            spec(
                limits(&json),
                &[
                    ("n0", &[("rack", "r1")]),
                    ("n1", &[("rack", "r1")]),
                    ("n2", &[("rack", "r2")]),
                    ("n3", &[("rack", "r2")]),
                ],
                conc,
            )
        })
}

const TARGETS: [(&str, Kind); 5] = [
    ("nova_api", Kind::Docker),
    ("keystone", Kind::Docker),
    ("glance_api", Kind::Systemd),
    ("osd.a", Kind::CephOsd),
    ("osd.b", Kind::CephOsd),
];

/// Limits counted from the leases themselves, not the book's counters.
fn assert_within_limits(book: &LeaseBook) {
    let c = &book.core;
    let mut per_key: HashMap<u32, u32> = HashMap::new();
    let mut per_node = vec![0u32; c.nodes.len()];
    let mut in_flight = 0;
    for r in &c.reqs {
        if matches!(r.state, ReqState::Granted { .. } | ReqState::Lost) {
            in_flight += 1;
            per_node[r.node as usize] += 1;
            for &k in &r.keys {
                *per_key.entry(k).or_default() += 1;
            }
        }
    }
    assert!(in_flight <= c.in_flight_max, "max_in_flight exceeded");
    assert_eq!(in_flight, c.in_flight);
    for (k, n) in per_key {
        let ks = &c.keys[k as usize];
        assert!(n <= ks.max, "{:?}: {n} > {}", ks.key, ks.max);
        assert_eq!(n, ks.used);
    }
    for n in per_node {
        assert!(n <= c.spec.node_concurrency);
    }
}

fn pick(book: &LeaseBook, i: usize, want: impl Fn(ReqState) -> bool) -> Option<LeaseId> {
    let ids: Vec<u64> = (0..book.core.reqs.len() as u64)
        .filter(|&id| want(book.core.reqs[id as usize].state))
        .collect();
    (!ids.is_empty()).then(|| LeaseId(ids[i % ids.len()]))
}

fn node_of(book: &LeaseBook, l: LeaseId) -> String {
    let r = &book.core.reqs[l.0 as usize];
    book.core.nodes[r.node as usize].spec.name.clone()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn random_interleavings_keep_every_rule(spec in fleet_spec(), ops in prop::collection::vec(op(), 1..60)) {
        let mut f = Fleet::open(spec);
        let mut ever_granted: HashSet<LeaseId> = HashSet::new();
        let mut check = |f: &mut Fleet, from: usize| {
            for e in &f.log[from..] {
                if let Event::Granted { lease, .. } = e {
                    assert!(ever_granted.insert(*lease), "{lease} granted twice");
                    let node = node_of(&f.book, *lease);
                    assert!(!f.book.resolved(&node), "{lease} granted to resolved {node}");
                }
            }
            for n in &f.book.core.nodes {
                assert!(!n.resolved || n.waiting.is_empty(), "{} resolved and waiting", n.spec.name);
            }
            for id in 0..f.book.core.reqs.len() as u64 {
                let l = LeaseId(id);
                assert_eq!(f.book.alongside(l), f.book.alongside_by_scan(l), "{l}");
            }
            assert_within_limits(&f.book);
        };
        for op in ops {
            let from = f.log.len();
            let now = f.now;
            match op {
                Op::Ask { node, target } => {
                    let (t, kind) = TARGETS[target];
                    let _ = f.ask_kind(&format!("n{node}"), t, kind);
                }
                Op::Renew(i) => {
                    if let Some(l) = pick(&f.book, i, |s| matches!(s, ReqState::Granted { .. })) {
                        let s = f.book.renew(RUN, &node_of(&f.book, l), l, now);
                        let _ = f.keep(s);
                    }
                }
                Op::Return { pick: i, ok } => {
                    if let Some(l) = pick(&f.book, i, |s| matches!(s, ReqState::Granted { .. })) {
                        let out = if ok { Outcome::Ok } else { Outcome::Failed };
                        let _ = f.back(&node_of(&f.book, l), l, out);
                    }
                }
                Op::Withdraw(i) => {
                    // Waiting, or granted and never started.
                    if let Some(l) = pick(&f.book, i, |s| {
                        matches!(s, ReqState::Waiting | ReqState::Granted { .. })
                    }) {
                        let s = f.book.withdraw(RUN, &node_of(&f.book, l), l, now);
                        let _ = f.keep(s);
                    }
                }
                Op::Wait(ms) => {
                    f.now = f.now.plus(ms);
                    let ev = f.book.tick(f.now);
                    let _ = f.keep(Step { answer: Ok(()), events: ev });
                }
                Op::Pause => { let s = f.book.pause(now, "admin token 1"); let _ = f.keep(s); }
                Op::Resume => { let s = f.book.resume(now); let _ = f.keep(s); }
                Op::Resolve(n) => { let s = f.book.resolve(RUN, &format!("n{n}"), "admin", now); let _ = f.keep(s); }
                Op::Rejoin(n) => { let s = f.book.join(RUN, &format!("n{n}"), now); let _ = f.keep(s); }
                Op::Abort => { let s = f.book.abort(now, "admin token 1"); let _ = f.keep(s); }
            }
            check(&mut f, from);
        }

        // Everyone else returns: every request ends granted (and returned)
        // or answered "abort"/withdrawn; none is left waiting.
        let names: Vec<String> = f.book.core.nodes.iter().map(|n| n.spec.name.clone()).collect();
        for n in &names {
            let _ = f.resolve(n, "admin");
        }
        let _ = f.resume();
        for _ in 0..200 {
            let Some(l) = pick(&f.book, 0, |s| matches!(s, ReqState::Granted { .. })) else { break };
            let from = f.log.len();
            f.back(&node_of(&f.book, l), l, Outcome::Ok).unwrap();
            check(&mut f, from);
            if f.book.status().state != FleetState::Running {
                let _ = f.resume();
            }
        }
        let left: BTreeMap<u64, ReqState> = f.book.core.reqs.iter().enumerate()
            .filter(|(_, r)| !matches!(r.state, ReqState::Returned(_) | ReqState::Withdrawn(_) | ReqState::Resolved))
            .map(|(i, r)| (i as u64, r.state))
            .collect();
        prop_assert!(left.is_empty(), "not served: {left:?}");

        // The log as the store keeps it (JSON) replays to the same book.
        let text: Vec<String> = f.log.iter().map(|e| serde_json::to_string(e).unwrap()).collect();
        let back = LeaseBook::replay(text.iter().map(|t| serde_json::from_str(t).unwrap())).unwrap();
        prop_assert!(back == f.book);
    }
}
