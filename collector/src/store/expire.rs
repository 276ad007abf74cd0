//! Retention's expiry, in bounded steps: merged rows (hourly and daily)
//! past the policy, and runs nothing is left of and nobody sends to any
//! more, with their agents, batch keys, fleet log and set-aside rows.
//!
//! A run's batch keys are what make a resent batch a duplicate, so a run
//! is expired only when no resend can come: it held no timeline any more,
//! it started before the histogram cutoff, and its agents have been quiet
//! (no batch, new or resent, and no fleet record) for the resend window,
//! on the collector's own clock. A run some agent never said it ended (a
//! killed agent, a node gone) must also have been quiet since before the
//! histogram cutoff: its agent may come back with a spool. The seqs of its
//! batches are kept after it, compactly, for as long again as merged rows
//! (`tombstone.rs`): a resend later still is a duplicate.

use super::compact::{Done, Grain, add_total};
use super::{Store, StoreError, now_unix_nanos, tombstone};
use rusqlite::params;

/// Runs expired in one step at most (each takes its batch keys along).
pub const RUNS_PER_STEP: usize = 16;

/// What expiry looks things up by, so that a step reads only what may be
/// due, never a whole table: runs by when they started, a run's fleet log
/// by when it was last written, old fleet log rows by when they were
/// written. Made at open, after the columns older stores gain there
/// (`CREATE INDEX IF NOT EXISTS`: an older store gets them once, a new
/// one at once); `fleet_log_run` (run, id) is replaced by the second.
/// The queries below name the index they must use where SQLite would
/// otherwise choose to read one whole.
/// Only `started_unix_nanos` is indexed of `runs`: every batch updates
/// `last_batch_unix_nanos`, and an index on it would be rewritten each
/// time; the runs started before the cutoff are few, and checked one by one.
pub(super) const INDEXES: &str = "
CREATE INDEX IF NOT EXISTS runs_started ON runs (started_unix_nanos);
CREATE INDEX IF NOT EXISTS fleet_log_run_written ON fleet_log (run_id, written_unix_nanos);
CREATE INDEX IF NOT EXISTS fleet_log_written ON fleet_log (written_unix_nanos, run_id);
DROP INDEX IF EXISTS fleet_log_run;
";

/// Runs due (?1 `before`, ?2 `quiet_since`, ?3 at most), oldest first.
const RUNS_DUE: &str = "SELECT run_id FROM runs r INDEXED BY runs_started
 WHERE started_unix_nanos < ?1 AND last_batch_unix_nanos < ?2
   AND NOT EXISTS (SELECT 1 FROM timelines t WHERE t.run_id = r.run_id)
   AND (last_batch_unix_nanos < ?1 OR NOT EXISTS
        (SELECT 1 FROM run_agents a WHERE a.run_id = r.run_id AND a.finished_unix_nanos IS NULL))
   AND NOT EXISTS (SELECT 1 FROM fleet_log f WHERE f.run_id = r.run_id
                   AND f.written_unix_nanos >= ?2)
 ORDER BY started_unix_nanos LIMIT ?3";

/// Fleet runs that never stored a batch (aborted while joining) whose log
/// is due: found from its old rows, then checked to have no newer one
/// (the index named: for DISTINCT, SQLite would rather read every row in
/// run order).
const FLEET_LOGS_DUE: &str = "SELECT DISTINCT run_id FROM fleet_log f INDEXED BY fleet_log_written
 WHERE written_unix_nanos < min(?1, ?2)
   AND NOT EXISTS (SELECT 1 FROM fleet_log g WHERE g.run_id = f.run_id
                   AND g.written_unix_nanos >= min(?1, ?2))
   AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.run_id = f.run_id)
 LIMIT ?3";

/// When things expire, as Unix nanoseconds.
#[derive(Debug, Clone, Copy)]
pub struct Expiry {
    /// Merged rows of hours (days) that ended by then, and runs that
    /// started before it, expire.
    pub before: i64,
    /// A run (or fleet log) expires only when nothing of it arrived after this.
    pub quiet_since: i64,
}

impl Store {
    /// Expires, in one transaction, up to `limit` hourly rows and as many
    /// daily ones that ended by `e.before`, and a few runs (see the module).
    pub fn expire(&mut self, e: Expiry, limit: usize) -> Result<Done, StoreError> {
        let tx = self.conn.transaction()?;
        let mut rows = [0u64; 2];
        for (grain, n) in Grain::ALL.into_iter().zip(&mut rows) {
            let (t, end) = (grain.column(), e.before.div_euclid(grain.nanos()));
            for (table, last) in [(grain.histograms(), "phase"), (grain.outcomes(), "outcome")] {
                let key = format!("{t}, deployment, scenario, origin, cause, service, {last}");
                *n += tx.execute(
                    &format!(
                        "DELETE FROM {table} WHERE ({key}) IN
                         (SELECT {key} FROM {table} WHERE {t} < ?1 ORDER BY {t} LIMIT ?2)"
                    ),
                    params![end, limit as i64],
                )? as u64;
            }
        }
        let runs: Vec<String> = {
            let mut stmt = tx.prepare(RUNS_DUE)?;
            stmt.query_map(
                params![e.before, e.quiet_since, RUNS_PER_STEP as i64],
                |r| r.get(0),
            )?
            .collect::<Result<_, _>>()?
        };
        // Fleet runs that never stored a batch (aborted while joining):
        // their log alone, once quiet past both.
        let fleet_only: Vec<String> = {
            let mut stmt = tx.prepare(FLEET_LOGS_DUE)?;
            stmt.query_map(
                params![e.before, e.quiet_since, RUNS_PER_STEP as i64],
                |r| r.get(0),
            )?
            .collect::<Result<_, _>>()?
        };
        let mut fleet_log_rows = 0;
        let now = now_unix_nanos();
        for run in &runs {
            // Their seqs outlive them, so a late resend is still a duplicate.
            tombstone::keep(&tx, run, now)?;
            // By (agent, run): the batch key's own order, no scan.
            tx.execute(
                "DELETE FROM batches WHERE (agent, run_id) IN
                 (SELECT agent, run_id FROM run_agents WHERE run_id = ?1)",
                [run],
            )?;
            tx.execute("DELETE FROM run_agents WHERE run_id = ?1", [run])?;
            tx.execute("DELETE FROM retention_set_aside WHERE run_id = ?1", [run])?;
            tx.execute("DELETE FROM runs WHERE run_id = ?1", [run])?;
        }
        let mut fleet_runs = Vec::new();
        for run in runs.iter().chain(&fleet_only) {
            // The whole log at once: a log cut short would rebuild a
            // fleet run that never was at the next start.
            let n = tx.execute("DELETE FROM fleet_log WHERE run_id = ?1", [run])? as u64;
            if n > 0 {
                fleet_runs.push(run.clone());
            }
            fleet_log_rows += n;
        }
        // Kept for as long again as merged rows are.
        let tombstones = tombstone::expire(&tx, e.before, limit)?;
        let [hour_rows, day_rows] = rows;
        add_total(&tx, "hour_rows", hour_rows)?;
        add_total(&tx, "day_rows", day_rows)?;
        add_total(&tx, "runs", runs.len() as u64)?;
        add_total(&tx, "fleet_log_rows", fleet_log_rows)?;
        tx.commit()?;
        Ok(Done {
            hour_rows,
            day_rows,
            runs: runs.len() as u64,
            fleet_log_rows,
            fleet_runs,
            tombstones,
            ..Done::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::compact::tests::{month_old_and_fresh, temp_store};

    /// What SQLite says it does for `sql`: one line per step of its plan.
    fn plan(s: &Store, sql: &str) -> Vec<String> {
        let mut stmt = s
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap();
        stmt.query_map(params![1i64, 1i64, 16i64], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// Expiry's lookups go by index: no step of them reads a whole table.
    fn by_index(s: &Store) {
        let runs = plan(s, RUNS_DUE);
        let logs = plan(s, FLEET_LOGS_DUE);
        for (plan, wanted) in [
            (
                &runs,
                [
                    "SEARCH r USING INDEX runs_started (started_unix_nanos<?)",
                    "SEARCH f USING COVERING INDEX fleet_log_run_written (run_id=? AND written_unix_nanos>?)",
                ],
            ),
            (
                &logs,
                [
                    "SEARCH f USING COVERING INDEX fleet_log_written (written_unix_nanos<?)",
                    "SEARCH g USING COVERING INDEX fleet_log_run_written (run_id=? AND written_unix_nanos>?)",
                ],
            ),
        ] {
            for w in wanted {
                assert!(plan.iter().any(|p| p == w), "{w} not in {plan:#?}");
            }
            assert!(
                !plan.iter().any(|p| p.starts_with("SCAN ")),
                "a whole table or index read: {plan:#?}"
            );
        }
    }

    fn indexes(s: &Store) -> Vec<String> {
        let mut stmt = s
            .conn
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name IN ('runs', 'fleet_log')
                 AND name NOT LIKE 'sqlite_autoindex%' ORDER BY name",
            )
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn expiry_finds_what_is_due_by_index_in_a_new_store_and_an_older_one() {
        let (path, mut s) = temp_store("indexes");
        month_old_and_fresh(&mut s);
        by_index(&s);
        // An older store: no index for expiry, fleet logs by (run, id),
        // and none of the columns expiry reads quiet time from.
        s.conn
            .execute_batch(
                "DROP INDEX runs_started; DROP INDEX fleet_log_run_written; DROP INDEX fleet_log_written;
                 CREATE INDEX fleet_log_run ON fleet_log (run_id, id);
                 ALTER TABLE runs DROP COLUMN last_batch_unix_nanos;
                 ALTER TABLE fleet_log DROP COLUMN written_unix_nanos;",
            )
            .unwrap();
        assert_eq!(indexes(&s), ["fleet_log_run"]);
        drop(s);
        let s = Store::open(&path).unwrap();
        assert_eq!(
            indexes(&s),
            ["fleet_log_run_written", "fleet_log_written", "runs_started"]
        );
        by_index(&s);
        drop(s);
        // Opened again: nothing more to make.
        let s = Store::open(&path).unwrap();
        assert_eq!(indexes(&s).len(), 3);
        drop(s);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
}
