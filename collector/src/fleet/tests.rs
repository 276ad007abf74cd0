//! Fleet runs through the registry, with a FAKE journal (a list in memory,
//! for these tests only) whose rows a second registry recovers from, as a
//! restarted collector does from its store.

use super::*;
use bounce_wire::Outcome;
use bounce_wire::lease::{LeaseId, Restart};
use bounce_wire::limits::{Kind, Limits};

/// A FAKE journal: commits at once into a list.
#[derive(Clone, Default)]
struct MemJournal(Arc<Mutex<Vec<(String, FleetRecord)>>>);

impl Journal for MemJournal {
    fn append(&self, run: &str, records: Vec<FleetRecord>) -> Committed {
        let mut rows = self.0.lock().unwrap();
        rows.extend(records.into_iter().map(|r| (run.to_string(), r)));
        Box::pin(async { Ok(()) })
    }
}

fn terms(nodes: u32) -> FleetTerms {
    let limits: Limits = serde_json::from_str(
        r#"{"max_in_flight":2,"limits":[{"key":"service:{service}","max":1}]}"#,
    )
    .unwrap();
    FleetTerms {
        deployment: "d".into(),
        scenario: "s".into(),
        limits,
        nodes,
        node_concurrency: 1,
        lease_ttl_ms: 30_000,
    }
}

fn call(node: &str, call: AgentCall) -> FleetCall {
    FleetCall {
        node: node.into(),
        epoch: 0,
        call,
    }
}

fn join(node: &str, t: FleetTerms) -> FleetCall {
    call(
        node,
        AgentCall::Join(Join {
            labels: BTreeMap::new(),
            terms: t,
        }),
    )
}

fn nova(iteration: u32) -> Restart {
    Restart {
        kind: Kind::Docker,
        service: "nova_api".into(),
        target: "nova_api".into(),
        iteration,
    }
}

fn ask(node: &str, restarts: Vec<Restart>) -> FleetCall {
    call(
        node,
        AgentCall::Ask {
            restarts,
            wait_ms: 0,
        },
    )
}

fn tickets(a: FleetAnswer) -> (Control, Vec<Ticket>) {
    match a {
        FleetAnswer::Tickets { control, tickets } => (control, tickets),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_fleet_opens_when_every_node_joined_and_survives_a_restart() {
    let j = MemJournal::default();
    let f = Fleets::new(Box::new(j.clone()));
    let a = f.agent("r", join("ctl1", terms(2))).await.unwrap();
    assert_eq!(
        a,
        FleetAnswer::Joined {
            joined: 1,
            expected: 2,
            open: false,
            epoch: 0
        }
    );
    let e = f.agent("r", ask("ctl1", vec![nova(1)])).await.unwrap_err();
    assert!(e.to_string().contains("not open yet: 1 of 2"), "{e}");
    let mut other = terms(2);
    other.node_concurrency = 3;
    let e = f.agent("r", join("ctl2", other)).await.unwrap_err();
    assert!(e.to_string().contains("concurrency 1"), "{e}");
    f.agent("r", join("ctl2", terms(2))).await.unwrap();

    let (c, t) = tickets(f.agent("r", ask("ctl1", vec![nova(1)])).await.unwrap());
    assert_eq!(c, Control::Running);
    assert!(
        matches!(
            t[0],
            Ticket::Granted {
                lease: LeaseId(0),
                ..
            }
        ),
        "{t:?}"
    );
    let (_, t) = tickets(f.agent("r", ask("ctl2", vec![nova(1)])).await.unwrap());
    assert_eq!(
        t,
        vec![Ticket::Waiting { lease: LeaseId(1) }],
        "one nova_api at a time"
    );
    let e = f.agent("r", join("ctl3", terms(2))).await.unwrap_err();
    assert!(e.to_string().contains("ctl1, ctl2"), "{e}");

    // A collector restart: the same state from the log, nothing granted twice.
    let g = Fleets::new(Box::new(MemJournal::default()));
    let rows = j.0.lock().unwrap().clone();
    g.recover(rows).await;
    let (_, t) = tickets(g.agent("r", ask("ctl2", vec![nova(1)])).await.unwrap());
    assert_eq!(t, vec![Ticket::Waiting { lease: LeaseId(1) }]);
    g.agent(
        "r",
        call(
            "ctl1",
            AgentCall::Return {
                lease: LeaseId(0),
                outcome: Outcome::Ok,
            },
        ),
    )
    .await
    .unwrap();
    let (_, t) = tickets(g.agent("r", ask("ctl2", vec![nova(1)])).await.unwrap());
    assert!(
        matches!(
            t[0],
            Ticket::Granted {
                lease: LeaseId(1),
                ..
            }
        ),
        "{t:?}"
    );
    let e = g
        .agent(
            "r",
            call(
                "ctl2",
                AgentCall::Return {
                    lease: LeaseId(0),
                    outcome: Outcome::Ok,
                },
            ),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("belongs to node \"ctl1\""), "{e}");
}

#[tokio::test]
async fn abort_answers_every_ask_and_a_waiting_ask_wakes_on_a_grant() {
    let f = Arc::new(Fleets::new(Box::new(MemJournal::default())));
    for n in ["a", "b"] {
        f.agent("r", join(n, terms(2))).await.unwrap();
    }
    let (_, t) = tickets(f.agent("r", ask("a", vec![nova(1)])).await.unwrap());
    assert!(matches!(t[0], Ticket::Granted { .. }));
    // b waits (held open) until a gives the key back.
    let waiter = {
        let f = f.clone();
        tokio::spawn(async move {
            f.agent(
                "r",
                call(
                    "b",
                    AgentCall::Ask {
                        restarts: vec![nova(1)],
                        wait_ms: 10_000,
                    },
                ),
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    f.agent(
        "r",
        call(
            "a",
            AgentCall::Return {
                lease: LeaseId(0),
                outcome: Outcome::Ok,
            },
        ),
    )
    .await
    .unwrap();
    let (_, t) = tickets(waiter.await.unwrap().unwrap());
    assert!(
        matches!(
            t[0],
            Ticket::Granted {
                lease: LeaseId(1),
                ..
            }
        ),
        "{t:?}"
    );

    f.admin(
        "r",
        AdminCall::Abort {
            by: "admin token 1".into(),
        },
    )
    .await
    .unwrap();
    let (c, t) = tickets(f.agent("r", ask("a", vec![nova(2)])).await.unwrap());
    assert_eq!(c, Control::Aborted);
    assert!(matches!(t[0], Ticket::Refused { .. }));
    let e = f.admin("r", AdminCall::Resume).await.unwrap_err();
    assert!(e.to_string().contains("aborted"), "{e}");
}

#[tokio::test]
async fn a_key_needing_a_label_refuses_the_node_without_it() {
    let f = Fleets::new(Box::new(MemJournal::default()));
    let mut t = terms(1);
    t.limits =
        serde_json::from_str(r#"{"max_in_flight":1,"limits":[{"key":"{label.rack}","max":1}]}"#)
            .unwrap();
    let e = f.agent("r", join("a", t)).await.unwrap_err();
    assert!(e.to_string().contains("--label rack=VALUE"), "{e}");
}

#[tokio::test]
async fn a_resolved_node_rejoins_and_its_resolved_out_agent_is_fenced_off() {
    let j = MemJournal::default();
    let f = Fleets::new(Box::new(j.clone()));
    let mut t = terms(2);
    t.lease_ttl_ms = 1;
    for n in ["ctl1", "ctl2"] {
        f.agent("r", join(n, t.clone())).await.unwrap();
    }
    let (_, got) = tickets(f.agent("r", ask("ctl1", vec![nova(1)])).await.unwrap());
    assert!(matches!(got[0], Ticket::Granted { .. }), "{got:?}");
    // Not renewed within its 1 ms: lost.
    tokio::time::sleep(Duration::from_millis(5)).await;
    f.tick().await;
    assert!(f.comes_back("r", "ctl1") && !f.comes_back("r", "ctl2"));
    let e = f.agent("r", join("ctl1", t.clone())).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("fleet resolve r ctl1`, then start this agent again"),
        "{e}"
    );
    f.admin(
        "r",
        AdminCall::Resolve {
            node: "ctl1".into(),
            by: "admin token 2".into(),
        },
    )
    .await
    .unwrap();
    let joined = f.agent("r", join("ctl1", t.clone())).await.unwrap();
    assert!(
        matches!(
            joined,
            FleetAnswer::Joined {
                open: true,
                epoch: 1,
                ..
            }
        ),
        "{joined:?}"
    );
    // The agent resolved out (epoch 0) can take nothing beside the new one.
    let e = f.agent("r", ask("ctl1", vec![nova(2)])).await.unwrap_err();
    assert!(e.to_string().contains("at epoch 1"), "{e}");
    let mut new = ask("ctl1", vec![nova(1)]);
    new.epoch = 1;
    let (c, got) = tickets(f.agent("r", new).await.unwrap());
    assert!(matches!(c, Control::Paused { .. }), "paused until resumed");
    assert!(
        matches!(got[0], Ticket::Waiting { lease: LeaseId(1) }),
        "{got:?}"
    );
    // A restarted collector knows the epoch and who resolved.
    let g = Fleets::new(Box::new(MemJournal::default()));
    let rows = j.0.lock().unwrap().clone();
    g.recover(rows).await;
    let Ok(FleetView::Open { status, .. }) = g.view("r") else {
        panic!("not open")
    };
    let ctl1 = &status.nodes[0];
    assert_eq!((ctl1.node.as_str(), ctl1.epoch), ("ctl1", 1));
    assert_eq!(ctl1.resolved.as_ref().unwrap().by, "admin token 2");
    let e = g.agent("r", ask("ctl1", vec![nova(1)])).await.unwrap_err();
    assert!(e.to_string().contains("at epoch 1"), "{e}");
}
