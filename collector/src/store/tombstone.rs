//! The batch keys of expired runs, kept compactly for a while longer, so a
//! resend that comes after its run expired is still a duplicate.
//!
//! Expiry (`expire.rs`) deletes a run's batch keys, a row per batch (for a
//! watcher, a row per restart). Before it does, it keeps per (agent, run)
//! the seqs that were stored, as one blob of delta-coded varints (a few
//! bytes a batch instead of a row), until the run has been expired for as
//! long as merged histograms are kept (`--keep-histograms`). A batch whose
//! seq is in its (agent, run)'s set is acknowledged as a duplicate and
//! counts nothing; any other is stored as new (an agent's spool may hold
//! batches it never sent). A set, not a highest seq: a watcher numbers its
//! batches by their restarts' first stamps, which do not arrive in order.
//!
//! What a tombstone does not keep: the batch's digest, so a different batch
//! under an expired key (two agents sharing one name) is answered as a
//! duplicate, not refused as a conflict.

use super::StoreError;
use rusqlite::{OptionalExtension, Transaction, params};
use std::collections::BTreeMap;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS expired_batches (
    agent TEXT NOT NULL,
    run_id TEXT NOT NULL,
    seqs BLOB NOT NULL,
    expired_unix_nanos INTEGER NOT NULL,
    PRIMARY KEY (agent, run_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS expired_batches_at ON expired_batches (expired_unix_nanos);
";

/// Keeps the seqs of `run`'s stored batches, per agent, before expiry
/// deletes them (added to what an earlier expiry of the run kept).
pub(super) fn keep(tx: &Transaction<'_>, run: &str, now: i64) -> Result<(), StoreError> {
    let mut by_agent: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    {
        let mut stmt = tx.prepare_cached(
            "SELECT agent, seq FROM batches WHERE (agent, run_id) IN
             (SELECT agent, run_id FROM run_agents WHERE run_id = ?1)",
        )?;
        let rows = stmt.query_map([run], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
        })?;
        for row in rows {
            let (agent, seq) = row?;
            by_agent.entry(agent).or_default().push(seq);
        }
    }
    for (agent, mut seqs) in by_agent {
        if let Some(before) = stored(tx, &agent, run)? {
            seqs.extend(decode(&before));
        }
        tx.prepare_cached(
            "INSERT OR REPLACE INTO expired_batches (agent, run_id, seqs, expired_unix_nanos)
             VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![agent, run, encode(seqs), now])?;
    }
    Ok(())
}

/// Whether batch `seq` of (`agent`, `run`) was stored before its run expired.
pub(super) fn resent(
    tx: &Transaction<'_>,
    agent: &str,
    run: &str,
    seq: u64,
) -> Result<bool, StoreError> {
    Ok(stored(tx, agent, run)?.is_some_and(|blob| decode(&blob).any(|s| s == seq)))
}

/// Forgets up to `limit` tombstones made before `before`; how many.
pub(super) fn expire(tx: &Transaction<'_>, before: i64, limit: usize) -> Result<u64, StoreError> {
    Ok(tx.execute(
        "DELETE FROM expired_batches WHERE (agent, run_id) IN
         (SELECT agent, run_id FROM expired_batches WHERE expired_unix_nanos < ?1
          ORDER BY expired_unix_nanos LIMIT ?2)",
        params![before, limit as i64],
    )? as u64)
}

fn stored(tx: &Transaction<'_>, agent: &str, run: &str) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(tx
        .prepare_cached("SELECT seqs FROM expired_batches WHERE agent = ?1 AND run_id = ?2")?
        .query_row(params![agent, run], |r| r.get(0))
        .optional()?)
}

/// Ascending, each as its distance from the one before in LEB128.
fn encode(mut seqs: Vec<u64>) -> Vec<u8> {
    seqs.sort_unstable();
    seqs.dedup();
    let mut out = Vec::with_capacity(seqs.len() * 2);
    let mut last = 0;
    for s in seqs {
        let mut d = s - last;
        last = s;
        loop {
            let byte = (d & 0x7f) as u8;
            d >>= 7;
            if d == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
    }
    out
}

/// The seqs of [`encode`], in order; a truncated tail is ignored.
fn decode(blob: &[u8]) -> impl Iterator<Item = u64> + '_ {
    let mut at = 0;
    let mut last = 0u64;
    std::iter::from_fn(move || {
        let (mut d, mut shift) = (0u64, 0);
        while let Some(&byte) = blob.get(at) {
            at += 1;
            d |= u64::from(byte & 0x7f).checked_shl(shift)?;
            if byte & 0x80 == 0 {
                last = last.wrapping_add(d);
                return Some(last);
            }
            shift += 7;
        }
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::compact::tests::{
        DAY, NOW, batch, compact_all, expire_all, heard, month_old_and_fresh, temp_store, watched,
    };
    use crate::store::{Store, Stored, now_unix_nanos};

    /// What /metrics counts: restarts per outcome, and per series.
    fn counted(s: &Store) -> (Vec<u64>, Vec<u64>) {
        (
            s.outcome_counts()
                .unwrap()
                .iter()
                .map(|o| o.count)
                .collect(),
            s.series_stats()
                .unwrap()
                .iter()
                .map(|x| x.numbers.count)
                .collect(),
        )
    }

    /// Compacts, ends and quiets run w-n1-old, and expires it.
    fn expire_old_run(s: &mut Store) {
        compact_all(s, NOW - 14 * DAY);
        s.conn
            .execute(
                "UPDATE run_agents SET finished_unix_nanos = ?1 WHERE run_id = 'w-n1-old'",
                [NOW - 20 * DAY],
            )
            .unwrap();
        heard(s, "w-n1-old", NOW - 10 * DAY);
        assert_eq!(expire_all(s, NOW - 29 * DAY, NOW - 2 * DAY).runs, 1);
        assert!(
            !s.runs().unwrap().iter().any(|r| r["run_id"] == "w-n1-old"),
            "expired"
        );
    }

    fn kept(s: &Store) -> Vec<u64> {
        let blob: Vec<u8> = s
            .conn
            .query_row(
                "SELECT seqs FROM expired_batches WHERE agent = 'n1' AND run_id = 'w-n1-old'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        decode(&blob).collect()
    }

    #[test]
    fn a_resend_after_its_run_expired_is_a_duplicate_while_its_seqs_are_kept() {
        let (path, mut s) = temp_store("tombstone");
        let old = month_old_and_fresh(&mut s);
        expire_old_run(&mut s);
        assert_eq!(kept(&s), (1..=30).collect::<Vec<_>>());
        let f = s.facts().unwrap();
        assert_eq!((f.expired_seqs_kept, f.expired_seqs_bytes), (1, 30));
        let counts = counted(&s);
        // The agent comes back with batch 4 still spooled (its answer lost).
        let resend = |s: &mut Store, seq: u64| {
            s.commit_group(&[batch(&old[seq as usize - 1], NOW - 30 * DAY, seq)])
                .unwrap()
        };
        assert_eq!(resend(&mut s, 4), [Stored::Duplicate]);
        assert_eq!(counted(&s), counts, "counted once");
        assert!(!s.runs().unwrap().iter().any(|r| r["run_id"] == "w-n1-old"));
        // A batch it spooled and never sent is new (and its run with it).
        let never_sent = watched("w-n1-old", "n1", "keystone", NOW - 30 * DAY, 400);
        assert_eq!(
            s.commit_group(&[batch(&never_sent, NOW - 30 * DAY, 31)])
                .unwrap(),
            [Stored::New]
        );
        assert_ne!(counted(&s), counts);
        let counts = counted(&s);
        assert_eq!(
            resend(&mut s, 5),
            [Stored::Duplicate],
            "the run back or not"
        );
        // Expired again: both expiries' seqs are kept.
        expire_old_run(&mut s);
        assert_eq!(kept(&s), (1..=31).collect::<Vec<_>>());
        assert_eq!(resend(&mut s, 6), [Stored::Duplicate]);
        assert_eq!(counted(&s), counts);
        // Kept for as long as merged rows: past that, a resend is stored
        // again (the limit the docs state).
        expire_all(&mut s, now_unix_nanos() + 1, NOW - 2 * DAY);
        let n: i64 = s
            .conn
            .query_row("SELECT count(*) FROM expired_batches", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
        assert_eq!(resend(&mut s, 4), [Stored::New]);
        drop(s);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }

    #[test]
    fn seqs_are_kept_in_a_few_bytes_each_and_read_back() {
        // A run's 1, 2, 3...; a watcher's stamps, nanoseconds apart by minutes.
        let run: Vec<u64> = (1..=1000).collect();
        let blob = encode(run.clone());
        assert_eq!(blob.len(), 1000, "a byte each");
        assert_eq!(decode(&blob).collect::<Vec<_>>(), run);
        let stamp = 1_795_500_000_000_000_000u64;
        let watch: Vec<u64> = (0..200)
            .rev()
            .map(|i| stamp + i * 240_000_000_123)
            .collect();
        let blob = encode(watch.clone());
        assert!(blob.len() <= 9 + 199 * 6, "{}", blob.len());
        let mut sorted = watch;
        sorted.sort_unstable();
        assert_eq!(decode(&blob).collect::<Vec<_>>(), sorted);
        assert_eq!(
            decode(&encode(vec![u64::MAX, 0, (1 << 32) + 1])).collect::<Vec<_>>(),
            [0, (1 << 32) + 1, u64::MAX],
            "a rejoined fleet node's epoch << 32, the extremes"
        );
        assert_eq!(decode(&[0x81]).count(), 0, "a truncated tail");
    }
}
