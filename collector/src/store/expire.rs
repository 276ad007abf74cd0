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
//! histogram cutoff: its agent may come back with a spool.

use super::compact::{Done, Grain, add_total};
use super::{Store, StoreError};
use rusqlite::params;

/// Runs expired in one step at most (each takes its batch keys along).
pub const RUNS_PER_STEP: usize = 16;

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
            let mut stmt = tx.prepare(
                "SELECT run_id FROM runs r
                 WHERE started_unix_nanos < ?1 AND last_batch_unix_nanos < ?2
                   AND NOT EXISTS (SELECT 1 FROM timelines t WHERE t.run_id = r.run_id)
                   AND (last_batch_unix_nanos < ?1 OR NOT EXISTS
                        (SELECT 1 FROM run_agents a WHERE a.run_id = r.run_id AND a.finished_unix_nanos IS NULL))
                   AND NOT EXISTS (SELECT 1 FROM fleet_log f WHERE f.run_id = r.run_id
                                   AND f.written_unix_nanos >= ?2)
                 ORDER BY started_unix_nanos LIMIT ?3",
            )?;
            stmt.query_map(
                params![e.before, e.quiet_since, RUNS_PER_STEP as i64],
                |r| r.get(0),
            )?
            .collect::<Result<_, _>>()?
        };
        // Fleet runs that never stored a batch (aborted while joining):
        // their log alone, once quiet past both.
        let fleet_only: Vec<String> = {
            let mut stmt = tx.prepare(
                "SELECT run_id FROM fleet_log f GROUP BY run_id
                 HAVING max(written_unix_nanos) < min(?1, ?2)
                    AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.run_id = f.run_id)
                 LIMIT ?3",
            )?;
            stmt.query_map(
                params![e.before, e.quiet_since, RUNS_PER_STEP as i64],
                |r| r.get(0),
            )?
            .collect::<Result<_, _>>()?
        };
        let mut fleet_log_rows = 0;
        for run in &runs {
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
        for run in runs.iter().chain(&fleet_only) {
            // The whole log at once: a log cut short would rebuild a
            // fleet run that never was at the next start.
            fleet_log_rows += tx.execute("DELETE FROM fleet_log WHERE run_id = ?1", [run])? as u64;
        }
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
            ..Done::default()
        })
    }
}
