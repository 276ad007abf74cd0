//! The store's single writer: a thread that owns the writing connection.
//! Batches and fleet records that arrive while a transaction is being
//! committed are committed together in the next one (group commit), in the
//! order they arrived: one fsync for many, each answered only after its
//! commit.

use crate::fleet::log::FleetRecord;
use crate::fleet::{Committed, Journal};
use crate::retention::Upkeep;
use crate::store::{Item, PhaseHistogram, Store, Stored};
use bounce_wire::ingest::Batch;
use std::sync::mpsc::RecvTimeoutError;
use tokio::sync::oneshot;

type Job = (Item, oneshot::Sender<Result<Stored, String>>);

#[derive(Clone)]
pub struct Writer {
    jobs: std::sync::mpsc::Sender<Job>,
}

/// Most items committed in one transaction.
const GROUP_MAX: usize = 512;

impl Writer {
    /// The writer thread; with `upkeep`, a retention step between groups
    /// (and when idle), so ingest waits at most one bounded step.
    pub fn start(mut store: Store, mut upkeep: Option<Upkeep>) -> Writer {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || {
                loop {
                    let first = match &upkeep {
                        None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                        Some(u) => rx.recv_timeout(u.wait()),
                    };
                    let first = match first {
                        Ok(job) => job,
                        Err(RecvTimeoutError::Timeout) => {
                            if let Some(u) = upkeep.as_mut() {
                                u.step(&mut store);
                            }
                            continue;
                        }
                        Err(RecvTimeoutError::Disconnected) => break,
                    };
                    let mut group = vec![first];
                    while group.len() < GROUP_MAX {
                        match rx.try_recv() {
                            Ok(job) => group.push(job),
                            Err(_) => break,
                        }
                    }
                    let (items, replies): (Vec<_>, Vec<_>) = group.into_iter().unzip();
                    match store.commit_group(&items) {
                        Ok(results) => {
                            for (reply, stored) in replies.into_iter().zip(results) {
                                let _ = reply.send(Ok(stored));
                            }
                        }
                        Err(e) => {
                            for reply in replies {
                                let _ = reply.send(Err(e.to_string()));
                            }
                        }
                    }
                    if let Some(u) = upkeep.as_mut() {
                        u.step(&mut store);
                    }
                }
            })
            .expect("start the store writer");
        Writer { jobs: tx }
    }

    /// Queues an item; the receiver answers once its transaction committed.
    fn queue(&self, item: Item) -> oneshot::Receiver<Result<Stored, String>> {
        let (reply, answer) = oneshot::channel();
        // A stopped writer drops `reply`: the receiver then says so.
        let _ = self.jobs.send((item, reply));
        answer
    }

    /// Stores a checked batch; answers once its transaction committed.
    pub async fn store(
        &self,
        batch: Batch,
        histograms: Vec<PhaseHistogram>,
    ) -> Result<Stored, String> {
        self.queue(Item::Batch(Box::new(batch), histograms))
            .await
            .map_err(|_| "the store writer stopped".to_string())?
    }
}

impl Journal for Writer {
    fn append(&self, run: &str, records: Vec<FleetRecord>) -> Committed {
        let committed = self.queue(Item::Fleet(run.into(), records));
        Box::pin(async move {
            committed
                .await
                .map_err(|_| "the store writer stopped".to_string())?
                .map(drop)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::{FleetError, Fleets};
    use crate::retention::Policy;
    use crate::store::compact::tests::temp_store;
    use bounce_wire::lease::{AgentCall, FleetCall, FleetTerms, Join};
    use std::time::Duration;

    fn join(node: &str) -> FleetCall {
        let terms: FleetTerms = serde_json::from_value(serde_json::json!({
            "deployment": "d", "scenario": "s",
            "limits": {"max_in_flight": 1, "limits": []},
            "nodes": 2, "node_concurrency": 1, "lease_ttl_ms": 30_000
        }))
        .unwrap();
        FleetCall {
            node: node.into(),
            epoch: 0,
            call: AgentCall::Join(Join {
                labels: Default::default(),
                terms,
            }),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fleet_run_retention_expires_is_forgotten_by_the_running_collector() {
        let (path, store) = temp_store("writer-fleet");
        let (expired, expired_fleet_runs) = std::sync::mpsc::channel();
        let upkeep = Upkeep::new(Policy {
            keep_timelines: Some(Duration::from_secs(1)),
            keep_hourly: None,
            keep_histograms: Some(Duration::from_secs(1)),
            // Only the log aged below is quiet for that long.
            resend_window: Duration::from_secs(86_400),
            every: Duration::from_millis(100),
            chunk: 500,
            vacuum_pages: 16,
        })
        .telling(expired);
        let writer = Writer::start(store, Some(upkeep));
        let fleets = Fleets::new(Box::new(writer.clone()));
        fleets.follow_expiry(expired_fleet_runs);
        for run in ["fleet-old", "fleet-live"] {
            fleets.agent(run, join("n1")).await.unwrap();
            assert!(fleets.view(run).is_ok(), "{run} joining");
        }
        // fleet-old's agents went quiet long ago (its log written then).
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.busy_timeout(Duration::from_secs(30)).unwrap();
        conn.execute(
            "UPDATE fleet_log SET written_unix_nanos = 1 WHERE run_id = 'fleet-old'",
            [],
        )
        .unwrap();
        // Bounded: retention steps every 100 ms when idle.
        let mut forgotten = false;
        for _ in 0..600 {
            fleets.tick().await;
            if matches!(fleets.view("fleet-old"), Err(FleetError::NoRun(_))) {
                forgotten = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(forgotten, "fleet-old still held after its log expired");
        assert!(fleets.view("fleet-live").is_ok(), "the live one stays");
        let left: Vec<String> = crate::store::Store::open(&path)
            .unwrap()
            .fleet_log()
            .unwrap()
            .into_iter()
            .map(|(run, _)| run)
            .collect();
        assert_eq!(left, ["fleet-live"], "memory and store agree");
        // An agent of it now starts a new fleet run, as after a restart.
        fleets.agent("fleet-old", join("n2")).await.unwrap();
        assert!(matches!(
            fleets.view("fleet-old"),
            Ok(crate::fleet::FleetView::Joining { joined, .. }) if joined == ["n2"]
        ));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
}
