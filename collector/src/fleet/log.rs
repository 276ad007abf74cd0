//! A fleet run's log in the store: every node that joined and every lease
//! book event, one row each in the order they happened (and when, on the
//! collector's clock: retention expires a log only once it is quiet),
//! appended by the single writer in the transaction that precedes the
//! answer; read back whole at start to rebuild every fleet run.

use bounce_fleet::Event;
use bounce_wire::lease::FleetTerms;
use rusqlite::{Connection, Transaction, params};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS fleet_log (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL,
    record TEXT NOT NULL,
    written_unix_nanos INTEGER
);
";

/// One row of a fleet run's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "record")]
pub enum FleetRecord {
    /// A node joined (before the fleet opened) with these labels and terms.
    Joined {
        node: String,
        labels: BTreeMap<String, String>,
        terms: FleetTerms,
    },
    /// A lease book event; the first is `opened`.
    Event { event: Event },
}

/// Appends `records` of `run`, written at `now` (Unix nanoseconds).
pub fn append(
    tx: &Transaction<'_>,
    run: &str,
    records: &[FleetRecord],
    now: i64,
) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO fleet_log (run_id, record, written_unix_nanos) VALUES (?1, ?2, ?3)",
    )?;
    for r in records {
        stmt.execute(params![
            run,
            serde_json::to_string(r).expect("fleet records serialize"),
            now
        ])?;
    }
    Ok(())
}

/// Every fleet run's records, in the order written; a row that does not
/// parse is an error naming it.
pub fn load(conn: &Connection) -> Result<Vec<(String, FleetRecord)>, String> {
    let mut stmt = conn
        .prepare("SELECT id, run_id, record FROM fleet_log ORDER BY id")
        .map_err(|e| e.to_string())?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for row in rows {
        let (id, run, text) = row.map_err(|e| e.to_string())?;
        let rec = serde_json::from_str(&text)
            .map_err(|e| format!("fleet_log row {id} (run {run}): {e}"))?;
        out.push((run, rec));
    }
    Ok(out)
}
