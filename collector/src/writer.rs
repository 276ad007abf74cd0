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
