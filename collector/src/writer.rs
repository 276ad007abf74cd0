//! The store's single writer: a thread that owns the writing connection.
//! Batches that arrive while a transaction is being committed are committed
//! together in the next one (group commit): one fsync for many batches,
//! each acknowledged only after its commit.

use crate::store::{PhaseHistogram, Store, Stored};
use bounce_wire::ingest::Batch;

type Job = (
    Batch,
    Vec<PhaseHistogram>,
    tokio::sync::oneshot::Sender<Result<Stored, String>>,
);

pub struct Writer {
    jobs: std::sync::mpsc::Sender<Job>,
}

/// Most batches committed in one transaction.
const GROUP_MAX: usize = 512;

impl Writer {
    pub fn start(mut store: Store) -> Writer {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut group = vec![first];
                    while group.len() < GROUP_MAX {
                        match rx.try_recv() {
                            Ok(job) => group.push(job),
                            Err(_) => break,
                        }
                    }
                    let (items, replies): (Vec<_>, Vec<_>) =
                        group.into_iter().map(|(b, h, r)| ((b, h), r)).unzip();
                    match store.ingest_group(&items) {
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
                }
            })
            .expect("start the store writer");
        Writer { jobs: tx }
    }

    /// Stores a checked batch; answers once its transaction committed.
    pub async fn store(
        &self,
        batch: Batch,
        histograms: Vec<PhaseHistogram>,
    ) -> Result<Stored, String> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.jobs
            .send((batch, histograms, reply))
            .map_err(|_| "the store writer stopped".to_string())?;
        answer
            .await
            .map_err(|_| "the store writer stopped".to_string())?
    }
}
