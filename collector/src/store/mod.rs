//! The collector's embedded store: SQLite in WAL mode with `synchronous=FULL`,
//! so a batch acknowledged is a batch on disk, and a kill -9 at any moment
//! loses nothing acknowledged (SQLite's journal rolls back what was not).
//!
//! One transaction per batch: the batch key (agent, run, seq) is inserted
//! first, and a key already there means the batch was stored before: it is
//! acknowledged as `duplicate` and nothing is counted again. So is a batch
//! of a run retention expired, if its seq was stored (`tombstone.rs`).

use crate::fleet::log::{self as fleet_log, FleetRecord};
use crate::series::{SeriesNumbers, SeriesStats};
use bounce_wire::ingest::Batch;
use bounce_wire::sparse::SparseHistogram;
use bounce_wire::tally::RunTally;
use bounce_wire::{Outcome, Phase, RunData, RunId, TimelineRecord};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

pub mod compact;
pub mod expire;
mod tombstone;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("store holds an unreadable histogram: {0}")]
    Corrupt(String),
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
}

/// A decoded histogram of one (service, phase) with its exact sum in seconds.
pub type PhaseHistogram = (String, Phase, SparseHistogram, f64);

/// What the single writer commits.
pub enum Item {
    Batch(Box<Batch>, Vec<PhaseHistogram>),
    /// A fleet run's records, in the order its lease book made them.
    Fleet(String, Vec<FleetRecord>),
}

/// Whether a batch was new.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    New,
    Duplicate,
    /// Refused, nothing written: the batch contradicts what the store holds
    /// (another deployment under this run id, or a different batch under
    /// the same agent, run and seq: two agents sharing one name).
    Conflict(String),
}

pub struct OutcomeCount {
    pub deployment: String,
    pub scenario: String,
    pub service: String,
    /// `run` or `watch` (wire's `Origin`).
    pub origin: String,
    /// What brought an observed restart about (wire's `Cause`); empty for `run`.
    pub cause: String,
    pub outcome: String,
    pub count: u64,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    deployment TEXT NOT NULL,
    scenario TEXT NOT NULL,
    started_unix_nanos INTEGER NOT NULL,
    scenario_yaml TEXT,
    dropped_timelines INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS run_agents (
    run_id TEXT NOT NULL,
    agent TEXT NOT NULL,
    node_facts TEXT NOT NULL,
    planned INTEGER NOT NULL,
    finished_unix_nanos INTEGER,
    not_started INTEGER,
    interrupted INTEGER,
    PRIMARY KEY (run_id, agent)
);
CREATE TABLE IF NOT EXISTS batches (
    agent TEXT NOT NULL,
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    digest TEXT,
    PRIMARY KEY (agent, run_id, seq)
);
CREATE TABLE IF NOT EXISTS timelines (
    run_id TEXT NOT NULL,
    agent TEXT NOT NULL,
    service TEXT NOT NULL,
    outcome TEXT NOT NULL,
    record TEXT NOT NULL,
    opened_unix_nanos INTEGER
);
CREATE INDEX IF NOT EXISTS timelines_run ON timelines (run_id, agent);
CREATE TABLE IF NOT EXISTS series_histograms (
    deployment TEXT NOT NULL,
    scenario TEXT NOT NULL,
    service TEXT NOT NULL,
    origin TEXT NOT NULL,
    cause TEXT NOT NULL,
    phase TEXT NOT NULL,
    histogram TEXT NOT NULL,
    sum_seconds REAL NOT NULL,
    stats TEXT,
    PRIMARY KEY (deployment, scenario, service, origin, cause, phase)
);
CREATE TABLE IF NOT EXISTS series_outcomes (
    deployment TEXT NOT NULL,
    scenario TEXT NOT NULL,
    service TEXT NOT NULL,
    origin TEXT NOT NULL,
    cause TEXT NOT NULL,
    outcome TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (deployment, scenario, service, origin, cause, outcome)
);
";

/// Stores made before series were split by origin and cause: their rows
/// are carried over as `run` (`watch` for the watch scenario), no cause.
/// (table, its columns now, what to select from the old table).
const SERIES_BY_ORIGIN: [(&str, &str, &str); 2] = [
    (
        "series_histograms",
        "deployment, scenario, service, origin, cause, phase, histogram, sum_seconds, stats",
        "deployment, scenario, service, ORIGIN, phase, histogram, sum_seconds, stats",
    ),
    (
        "series_outcomes",
        "deployment, scenario, service, origin, cause, outcome, count",
        "deployment, scenario, service, ORIGIN, outcome, count",
    ),
];
const OLD_ORIGIN: &str = "CASE scenario WHEN 'watch' THEN 'watch' ELSE 'run' END, ''";

fn has_column(conn: &Connection, table: &str, column: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        &format!("SELECT count(*) FROM pragma_table_info('{table}') WHERE name = '{column}'"),
        [],
        |r| r.get::<_, i64>(0).map(|n| n > 0),
    )
}

/// Rebuilds the series tables of an older store with the origin and cause
/// columns in their keys (SQLite cannot change a primary key in place).
fn split_series_by_origin(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    for (table, columns, old) in SERIES_BY_ORIGIN {
        if has_column(&tx, table, "origin")? {
            continue;
        }
        tx.execute_batch(&format!(
            "ALTER TABLE {table} RENAME TO {table}_v1;
             {schema}
             INSERT INTO {table} ({columns}) SELECT {select} FROM {table}_v1;
             DROP TABLE {table}_v1;",
            schema = table_schema(table),
            select = old.replace("ORIGIN", OLD_ORIGIN),
        ))?;
    }
    tx.commit()
}

/// One table's `CREATE TABLE` from [`SCHEMA`].
fn table_schema(table: &str) -> &'static str {
    let start = SCHEMA
        .find(&format!("CREATE TABLE IF NOT EXISTS {table} ("))
        .expect("the table is in SCHEMA");
    let len = SCHEMA[start..].find(");").expect("statements end with );") + 2;
    &SCHEMA[start..start + len]
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let mut conn = Connection::open(path)?;
        // A new store frees pages incrementally (retention's steps); this
        // takes effect only before the first table exists.
        let empty: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        if empty == 0 {
            conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
        }
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(fleet_log::SCHEMA)?;
        // Stores made before runs kept their scenario text, batches their
        // digest, timelines when they opened (filled in by retention's
        // steps, `compact.rs`), runs what retention dropped, or runs and
        // fleet logs when they last heard from their agents (on the
        // collector's clock; retention expires only what has been quiet
        // for the resend window): rows from before then start it now.
        let now = now_unix_nanos();
        for (table, column, kind, then) in [
            ("runs", "scenario_yaml", "TEXT", None),
            ("batches", "digest", "TEXT", None),
            ("timelines", "opened_unix_nanos", "INTEGER", None),
            (
                "runs",
                "dropped_timelines",
                "INTEGER NOT NULL DEFAULT 0",
                None,
            ),
            ("runs", "last_batch_unix_nanos", "INTEGER", Some(now)),
            ("fleet_log", "written_unix_nanos", "INTEGER", Some(now)),
        ] {
            if !has_column(&conn, table, column)? {
                conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {kind}"))?;
                if let Some(value) = then {
                    conn.execute(&format!("UPDATE {table} SET {column} = ?1"), [value])?;
                }
            }
        }
        conn.execute_batch(&compact::schema())?;
        conn.execute_batch(expire::INDEXES)?;
        conn.execute_batch(tombstone::SCHEMA)?;
        split_series_by_origin(&mut conn)?;
        Ok(Store {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// Every fleet run's log, in the order written (read once at start).
    pub fn fleet_log(&self) -> Result<Vec<(String, FleetRecord)>, StoreError> {
        fleet_log::load(&self.conn).map_err(StoreError::Corrupt)
    }

    /// Bytes on disk: the database and its write-ahead log.
    pub fn size_on_disk(&self) -> u64 {
        ["", "-wal"]
            .iter()
            .filter_map(|suffix| {
                let mut p = self.path.clone().into_os_string();
                p.push(suffix);
                std::fs::metadata(p).ok().map(|m| m.len())
            })
            .sum()
    }

    /// Stores validated batches and fleet records in one transaction (one
    /// fsync for all: group commit), in the order given; a batch whose key
    /// is already stored is a duplicate and changes nothing.
    pub fn commit_group(&mut self, items: &[Item]) -> Result<Vec<Stored>, StoreError> {
        let tx = self.conn.transaction()?;
        let mut out = Vec::with_capacity(items.len());
        let mut pending = Pending::default();
        for item in items {
            out.push(match item {
                Item::Batch(batch, histograms) => apply(&tx, batch, histograms, &mut pending)?,
                Item::Fleet(run, records) => {
                    fleet_log::append(&tx, run, records, now_unix_nanos())?;
                    Stored::New
                }
            });
        }
        pending.write(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Per series: the numbers /metrics shows, kept beside the merged
    /// histogram so a scrape decodes nothing.
    pub fn series_stats(&self) -> Result<Vec<SeriesStats>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT deployment, scenario, service, origin, cause, phase, stats FROM series_histograms WHERE stats IS NOT NULL ORDER BY 1, 2, 3, 4, 5, 6",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                [
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                ],
                r.get::<_, String>(6)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let ([deployment, scenario, service, origin, cause, phase], stats) = row?;
            let numbers: SeriesNumbers =
                serde_json::from_str(&stats).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            out.push(SeriesStats {
                deployment,
                scenario,
                service,
                origin,
                cause,
                phase,
                numbers,
            });
        }
        Ok(out)
    }

    pub fn outcome_counts(&self) -> Result<Vec<OutcomeCount>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT deployment, scenario, service, origin, cause, outcome, count FROM series_outcomes ORDER BY 1, 2, 3, 4, 5, 6",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(OutcomeCount {
                deployment: r.get(0)?,
                scenario: r.get(1)?,
                service: r.get(2)?,
                origin: r.get(3)?,
                cause: r.get(4)?,
                outcome: r.get(5)?,
                count: r.get::<_, i64>(6)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Restart counts per node (agent), for the optional per-node series
    /// (by origin, not cause: per node, cardinality counts twice).
    pub fn node_outcome_counts(&self) -> Result<Vec<(OutcomeCount, String)>, StoreError> {
        let mut stmt = self.conn.prepare(
            // The timelines kept and those retention dropped (`compact.rs`).
            "SELECT deployment, scenario, service, origin, outcome, agent, sum(n) FROM (
               SELECT r.deployment, r.scenario, t.service,
                      coalesce(json_extract(t.record, '$.origin'), 'run') AS origin, t.outcome, t.agent,
                      count(*) AS n
               FROM timelines t JOIN runs r ON r.run_id = t.run_id
               GROUP BY 1, 2, 3, 4, 5, 6
               UNION ALL
               SELECT deployment, scenario, service, origin, outcome, agent, count
               FROM compacted_node_outcomes)
             GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 2, 3, 6, 4, 5",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                OutcomeCount {
                    deployment: r.get(0)?,
                    scenario: r.get(1)?,
                    service: r.get(2)?,
                    origin: r.get(3)?,
                    cause: String::new(),
                    outcome: r.get(4)?,
                    count: r.get::<_, i64>(6)? as u64,
                },
                r.get::<_, String>(5)?,
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// (stored batches, distinct agents, runs).
    pub fn totals(&self) -> Result<(u64, u64, u64), StoreError> {
        let one = |sql: &str| -> Result<u64, StoreError> {
            Ok(self.conn.query_row(sql, [], |r| r.get::<_, i64>(0))? as u64)
        };
        Ok((
            one("SELECT count(*) FROM batches")?,
            one("SELECT count(DISTINCT agent) FROM batches")?,
            one("SELECT count(*) FROM runs")?,
        ))
    }

    pub fn runs(&self) -> Result<Vec<serde_json::Value>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT r.run_id, r.deployment, r.scenario, r.started_unix_nanos,
                    (SELECT count(*) FROM run_agents a WHERE a.run_id = r.run_id),
                    (SELECT count(*) FROM timelines t WHERE t.run_id = r.run_id),
                    (SELECT CASE WHEN count(*) = count(a.finished_unix_nanos)
                            THEN max(a.finished_unix_nanos) END
                     FROM run_agents a WHERE a.run_id = r.run_id),
                    r.dropped_timelines
             FROM runs r ORDER BY r.started_unix_nanos",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(serde_json::json!({
                "run_id": r.get::<_, String>(0)?,
                "deployment": r.get::<_, String>(1)?,
                "scenario": r.get::<_, String>(2)?,
                "started_unix_nanos": r.get::<_, i64>(3)?,
                "agents": r.get::<_, i64>(4)?,
                // Kept and dropped alike: the run had that many.
                "restarts": r.get::<_, i64>(5)? + r.get::<_, i64>(7)?,
                // null until every agent said the run ended.
                "finished_unix_nanos": r.get::<_, Option<i64>>(6)?,
                // Restarts whose timelines retention dropped (kept only
                // merged per deployment and hour).
                "timelines_dropped": r.get::<_, i64>(7)?,
            }))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn run_exists(&self, run_id: &RunId) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM runs WHERE run_id = ?1",
                [run_id.as_str()],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    pub fn run_timelines(
        &self,
        run_id: &RunId,
        agent: Option<&str>,
    ) -> Result<Vec<TimelineRecord>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT record FROM timelines WHERE run_id = ?1 AND (?2 IS NULL OR agent = ?2) ORDER BY rowid",
        )?;
        let rows = stmt.query_map(params![run_id.as_str(), agent], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(serde_json::from_str(&row?).map_err(|e| StoreError::Corrupt(e.to_string()))?);
        }
        Ok(out)
    }

    pub fn run_agent_count(&self, run_id: &RunId) -> Result<u64, StoreError> {
        Ok(self.conn.query_row(
            "SELECT count(*) FROM run_agents WHERE run_id = ?1",
            [run_id.as_str()],
            |r| r.get::<_, i64>(0),
        )? as u64)
    }

    /// Why this agent's batches for this run would be refused, if they would:
    /// the run id already belongs to another deployment or scenario, or this
    /// agent name already sent batches for it.
    pub fn join_conflict(
        &self,
        run_id: &str,
        deployment: &str,
        scenario: &str,
        agent: &str,
    ) -> Result<Option<String>, StoreError> {
        let known: Option<(String, String)> = self
            .conn
            .query_row(
                "SELECT deployment, scenario FROM runs WHERE run_id = ?1",
                [run_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        if let Some((d, s)) = known
            && (d != deployment || s != scenario)
        {
            return Ok(Some(format!(
                "run {run_id} is deployment {d:?}, scenario {s:?} here, not {deployment:?}, {scenario:?}"
            )));
        }
        let sent: i64 = self.conn.query_row(
            "SELECT count(*) FROM batches WHERE run_id = ?1 AND agent = ?2",
            params![run_id, agent],
            |r| r.get(0),
        )?;
        Ok((sent > 0).then(|| {
            format!(
                "agent {agent:?} already sent results for run {run_id}: give each node its own --node, or start a new --run-id"
            )
        }))
    }

    /// Everything a report needs about one run, all its agents together;
    /// None when the store does not know the run.
    pub fn run_data(&self, run_id: &RunId) -> Result<Option<RunData>, StoreError> {
        let Some((deployment, scenario, started, scenario_yaml)) = self
            .conn
            .query_row(
                "SELECT deployment, scenario, started_unix_nanos, scenario_yaml FROM runs WHERE run_id = ?1",
                [run_id.as_str()],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, Option<String>>(3)?,
                    ))
                },
            )
            .optional()?
        else {
            return Ok(None);
        };
        let mut stmt = self.conn.prepare(
            "SELECT node_facts, planned, finished_unix_nanos, not_started, interrupted FROM run_agents WHERE run_id = ?1 ORDER BY agent",
        )?;
        let agents = stmt
            .query_map([run_id.as_str()], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                    r.get::<_, Option<bool>>(4)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let mut data = RunData {
            run_id: run_id.clone(),
            deployment,
            scenario,
            scenario_yaml,
            nodes: Vec::new(),
            started_unix_nanos: started,
            // Finished when every agent said so.
            finished_unix_nanos: agents.iter().map(|a| a.2).max().flatten(),
            planned: 0,
            not_started: 0,
            interrupted: false,
            timelines: self.run_timelines(run_id, None)?,
            origin: String::new(),
        };
        if agents.iter().any(|a| a.2.is_none()) {
            data.finished_unix_nanos = None;
        }
        for (facts, planned, _, not_started, interrupted) in agents {
            data.nodes.push(
                serde_json::from_str(&facts).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            );
            data.planned += planned as u64;
            data.not_started += not_started.unwrap_or(0) as u64;
            data.interrupted |= interrupted.unwrap_or(false);
        }
        Ok(Some(data))
    }

    /// Per agent (node) of a run: facts, planned, finished, outcomes.
    pub fn run_agents(&self, run_id: &RunId) -> Result<Vec<serde_json::Value>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT agent, node_facts, planned, finished_unix_nanos, not_started, interrupted FROM run_agents WHERE run_id = ?1 ORDER BY agent",
        )?;
        let rows = stmt.query_map([run_id.as_str()], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Option<i64>>(3)?,
                r.get::<_, Option<i64>>(4)?,
                r.get::<_, Option<bool>>(5)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (agent, facts, planned, finished, not_started, interrupted) = row?;
            let timelines = self.run_timelines(run_id, Some(&agent))?;
            let mut outcomes = std::collections::BTreeMap::<Outcome, u64>::new();
            for t in &timelines {
                *outcomes.entry(t.outcome).or_default() += 1;
            }
            out.push(serde_json::json!({
                "agent": agent,
                "node": serde_json::from_str::<serde_json::Value>(&facts).unwrap_or_default(),
                "planned": planned,
                "finished_unix_nanos": finished,
                "not_started": not_started,
                "interrupted": interrupted,
                "outcomes": outcomes,
            }));
        }
        Ok(out)
    }
}

/// FNV-1a of the batch as JSON: a resend (from the agent's spool) is the
/// same batch, so the same digest; anything else under its key is not.
fn digest_of(batch: &Batch) -> String {
    let bytes = serde_json::to_vec(batch).expect("batches serialize");
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// One batch inside a transaction; its histograms go to `pending`.
fn apply(
    tx: &rusqlite::Transaction<'_>,
    batch: &Batch,
    histograms: &[PhaseHistogram],
    pending: &mut Pending,
) -> Result<Stored, StoreError> {
    let header = &batch.run;
    let run = &header.identity;
    let known: Option<(String, String)> = tx
        .query_row(
            "SELECT deployment, scenario FROM runs WHERE run_id = ?1",
            [run.run_id.as_str()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    if let Some((deployment, scenario)) = known
        && (deployment != run.deployment || scenario != run.scenario)
    {
        return Ok(Stored::Conflict(format!(
            "run {} is deployment {deployment:?}, scenario {scenario:?} here; this batch says {:?}, {:?} (a fleet run shares one scenario)",
            run.run_id, run.deployment, run.scenario
        )));
    }
    if tombstone::resent(tx, &batch.agent, run.run_id.as_str(), batch.seq)? {
        // Stored before its run expired (with its batch keys): a resend.
        return Ok(Stored::Duplicate);
    }
    let digest = digest_of(batch);
    let inserted = tx.execute(
        "INSERT OR IGNORE INTO batches (agent, run_id, seq, digest) VALUES (?1, ?2, ?3, ?4)",
        params![batch.agent, run.run_id.as_str(), batch.seq as i64, digest],
    )?;
    // A resend counts as hearing from the run as much as a new batch:
    // retention keeps the keys that make it a duplicate while they come.
    tx.execute(
        "UPDATE runs SET last_batch_unix_nanos = ?2 WHERE run_id = ?1",
        params![run.run_id.as_str(), now_unix_nanos()],
    )?;
    if inserted == 0 {
        let stored: Option<String> = tx.query_row(
            "SELECT digest FROM batches WHERE agent = ?1 AND run_id = ?2 AND seq = ?3",
            params![batch.agent, run.run_id.as_str(), batch.seq as i64],
            |r| r.get(0),
        )?;
        // Rows from before digests were kept count as the same batch.
        return Ok(match stored {
            Some(d) if d != digest => Stored::Conflict(format!(
                "agent {:?} already sent a different batch {} for run {}: do two agents share one --node name?",
                batch.agent, batch.seq, run.run_id
            )),
            _ => Stored::Duplicate,
        });
    }
    tx.execute(
            "INSERT OR IGNORE INTO runs (run_id, deployment, scenario, started_unix_nanos, last_batch_unix_nanos) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![run.run_id.as_str(), run.deployment, run.scenario, header.started_unix_nanos, now_unix_nanos()],
        )?;
    tx.execute(
            "INSERT OR IGNORE INTO run_agents (run_id, agent, node_facts, planned) VALUES (?1, ?2, ?3, ?4)",
            params![
                run.run_id.as_str(),
                batch.agent,
                serde_json::to_string(&run.node).expect("node facts serialize"),
                header.planned as i64
            ],
        )?;
    if let Some(yaml) = &header.scenario_yaml {
        tx.execute(
            "UPDATE runs SET scenario_yaml = ?2 WHERE run_id = ?1 AND scenario_yaml IS NULL",
            params![run.run_id.as_str(), yaml],
        )?;
    }
    if let Some(end) = &batch.end {
        tx.execute(
                "UPDATE run_agents SET finished_unix_nanos = ?3, not_started = ?4, interrupted = ?5 WHERE run_id = ?1 AND agent = ?2",
                params![
                    run.run_id.as_str(),
                    batch.agent,
                    end.finished_unix_nanos,
                    end.not_started as i64,
                    end.interrupted
                ],
            )?;
    }
    for t in &batch.timelines {
        tx.execute(
                "INSERT INTO timelines (run_id, agent, service, outcome, record, opened_unix_nanos) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    run.run_id.as_str(),
                    batch.agent,
                    t.service,
                    t.outcome.as_str(),
                    serde_json::to_string(t).expect("timelines serialize"),
                    opened_at(t).unwrap_or(header.started_unix_nanos)
                ],
            )?;
        let (origin, cause) = origin_and_cause(t);
        tx.execute(
                "INSERT INTO series_outcomes (deployment, scenario, service, origin, cause, outcome, count) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1)
                 ON CONFLICT (deployment, scenario, service, origin, cause, outcome) DO UPDATE SET count = count + 1",
                params![run.deployment, run.scenario, t.service, origin, cause, t.outcome.as_str()],
            )?;
    }
    // Per-run histograms are rebuilt from the run's stored timelines when
    // read (the batch's histograms were checked to count exactly their
    // phases): one merge per histogram on the write path instead of two.
    let series = |service: &str, origin: &str, cause: &str, phase: Phase| {
        [
            run.deployment.clone(),
            run.scenario.clone(),
            service.to_string(),
            origin.to_string(),
            cause.to_string(),
            phase.as_str().to_string(),
        ]
    };
    let groups: BTreeSet<(&str, &str)> = batch.timelines.iter().map(origin_and_cause).collect();
    if groups.len() <= 1 {
        // Every batch an agent sends: one origin, one cause (a watched
        // restart is a batch of its own); its histograms are the series'.
        let (origin, cause) = groups.into_iter().next().unwrap_or(("run", ""));
        for (service, phase, h, sum) in histograms {
            pending.add(series(service, origin, cause, *phase), h, *sum);
        }
    } else {
        // Mixed origins or causes: the series from the timelines themselves
        // (the histograms were checked to count exactly their phases).
        for (origin, cause) in groups {
            let of_group = batch
                .timelines
                .iter()
                .filter(|t| origin_and_cause(t) == (origin, cause));
            for ((service, phase), s) in RunTally::of(of_group).series() {
                if !s.hist.is_empty() {
                    pending.add(series(service, origin, cause, *phase), &s.hist, s.sum);
                }
            }
        }
    }
    Ok(Stored::New)
}

/// Now on the collector's own clock, Unix nanoseconds.
pub fn now_unix_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// When a restart opened: its first boundary (the request, or for a crash
/// nobody requested, the exit). Retention ages a timeline by it, and a
/// range report places it by it.
pub fn opened_at(t: &TimelineRecord) -> Option<i64> {
    t.timestamps.iter().map(|b| b.unix_nanos).min()
}

/// The labels a restart's series carry besides deployment, scenario,
/// service and phase: who made it (`run`, `watch`) and, observed, its cause
/// (empty for bounce's own). Both are closed sets: bounded cardinality.
fn origin_and_cause(t: &TimelineRecord) -> (&'static str, &'static str) {
    (t.origin.as_str(), t.cause.map(|c| c.as_str()).unwrap_or(""))
}

/// A group's histograms, merged in memory per series first, so that each
/// stored histogram is read, merged and written once per transaction.
#[derive(Default)]
struct Pending {
    /// (deployment, scenario, service, origin, cause, phase) → histogram and exact sum.
    by_series: std::collections::BTreeMap<[String; 6], (SparseHistogram, f64)>,
}

impl Pending {
    fn add(&mut self, series: [String; 6], h: &SparseHistogram, sum: f64) {
        let slot = self.by_series.entry(series).or_default();
        slot.0.add(h);
        slot.1 += sum;
    }

    fn write(self, tx: &rusqlite::Transaction<'_>) -> Result<(), StoreError> {
        for (series, (h, sum)) in self.by_series {
            merge_series(tx, &series, &h, sum)?;
        }
        Ok(())
    }
}

/// Adds `h` into the series' stored histogram (creating it) and refreshes
/// the numbers /metrics shows for it.
fn merge_series(
    tx: &rusqlite::Transaction<'_>,
    series: &[String; 6],
    h: &SparseHistogram,
    sum: f64,
) -> Result<(), StoreError> {
    let existing: Option<(String, f64)> = tx
        .query_row(
            "SELECT histogram, sum_seconds FROM series_histograms
             WHERE deployment = ?1 AND scenario = ?2 AND service = ?3 AND origin = ?4
               AND cause = ?5 AND phase = ?6",
            params![
                series[0], series[1], series[2], series[3], series[4], series[5]
            ],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (mut merged, old_sum) = match existing {
        Some((text, s)) => (
            SparseHistogram::parse(&text).map_err(StoreError::Corrupt)?,
            s,
        ),
        None => (SparseHistogram::default(), 0.0),
    };
    merged.add(h);
    let encoded = merged.to_text();
    let numbers = SeriesNumbers::of(&merged, old_sum + sum);
    tx.execute(
        "INSERT OR REPLACE INTO series_histograms
         (deployment, scenario, service, origin, cause, phase, histogram, sum_seconds, stats)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            series[0],
            series[1],
            series[2],
            series[3],
            series[4],
            series[5],
            encoded,
            old_sum + sum,
            serde_json::to_string(&numbers).expect("numbers serialize")
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bounce_wire::ingest::histograms_of;
    use bounce_wire::{Cause, Origin};

    fn timeline(service: &str, origin: Origin, cause: Option<Cause>, stop: f64) -> TimelineRecord {
        let mut t: TimelineRecord = serde_json::from_value(serde_json::json!({
            "run_id": "r1", "deployment": "d", "scenario": "s", "node": "n1",
            "target": {"kind": "docker", "name": service, "id": "x"},
            "service": service, "iteration": 1, "action": "restart", "outcome": "ok",
            "error": null, "exit_code": null, "signals": [], "oom_killed": false,
            "phases": {"stop": stop}, "timestamps": [], "probes": []
        }))
        .unwrap();
        t.origin = origin;
        t.cause = cause;
        t
    }

    fn batch(seq: u64, timelines: Vec<TimelineRecord>) -> Item {
        let b: Batch = serde_json::from_value(serde_json::json!({
            "agent": "n1",
            "run": {"run_id": "r1", "deployment": "d", "scenario": "s",
                    "node": {"hostname": "n1", "kernel": null, "os": null, "cpus": 1,
                             "memory_bytes": 1, "docker_version": null, "docker_api_version": null},
                    "started_unix_nanos": 1, "planned": 0},
            "seq": seq,
            "timelines": timelines,
            "histograms": histograms_of(&timelines).unwrap(),
            "end": null
        }))
        .unwrap();
        let hs = crate::validate::batch(&b).unwrap();
        Item::Batch(Box::new(b), hs)
    }

    fn temp_store(name: &str) -> (PathBuf, Store) {
        let path = std::env::temp_dir().join(format!("bounce-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let s = Store::open(&path).unwrap();
        (path, s)
    }

    /// (service, origin, cause, count) of every stored series of `phase`.
    fn series_of(s: &Store, phase: &str) -> Vec<(String, String, String, u64)> {
        s.series_stats()
            .unwrap()
            .into_iter()
            .filter(|x| x.phase == phase)
            .map(|x| (x.service, x.origin, x.cause, x.numbers.count))
            .collect()
    }

    #[test]
    fn series_are_kept_by_origin_and_cause_even_from_a_mixed_batch() {
        let (path, mut s) = temp_store("origin");
        let run = |stop| timeline("a", Origin::Run, None, stop);
        let watched = |cause, stop| timeline("a", Origin::Watch, Some(cause), stop);
        s.commit_group(&[
            batch(1, vec![run(1.0), run(2.0)]),
            batch(2, vec![watched(Cause::Crash, 3.0)]),
            // No agent sends one, but a batch may mix them.
            batch(
                3,
                vec![
                    watched(Cause::Crash, 4.0),
                    watched(Cause::Recreate, 5.0),
                    run(6.0),
                ],
            ),
        ])
        .unwrap();
        let str3 = |a: &str, b: &str, c: &str, n| (a.to_string(), b.to_string(), c.to_string(), n);
        assert_eq!(
            series_of(&s, "stop"),
            [
                str3("a", "run", "", 3),
                str3("a", "watch", "crash", 2),
                str3("a", "watch", "recreate", 1),
            ]
        );
        let crash = s
            .series_stats()
            .unwrap()
            .into_iter()
            .find(|x| x.cause == "crash")
            .unwrap();
        assert_eq!(crash.numbers.sum_seconds, 7.0);
        // HDR's bucket of 4 s, 3 significant digits.
        assert!((crash.numbers.max_seconds - 4.0).abs() < 0.005);
        let outcomes: Vec<(String, String, u64)> = s
            .outcome_counts()
            .unwrap()
            .into_iter()
            .map(|o| (o.origin, o.cause, o.count))
            .collect();
        assert_eq!(
            outcomes,
            [
                ("run".into(), "".into(), 3),
                ("watch".into(), "crash".into(), 2),
                ("watch".into(), "recreate".into(), 1),
            ]
        );
        let per_node: Vec<(String, u64)> = s
            .node_outcome_counts()
            .unwrap()
            .into_iter()
            .map(|(o, _)| (o.origin, o.count))
            .collect();
        assert_eq!(per_node, [("run".into(), 3), ("watch".into(), 3)]);
        drop(s);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn an_older_store_keeps_its_series_as_run_or_watch() {
        let path = std::env::temp_dir().join(format!("bounce-store-old-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE series_histograms (deployment TEXT NOT NULL, scenario TEXT NOT NULL,
                   service TEXT NOT NULL, phase TEXT NOT NULL, histogram TEXT NOT NULL,
                   sum_seconds REAL NOT NULL, stats TEXT,
                   PRIMARY KEY (deployment, scenario, service, phase));
                 CREATE TABLE series_outcomes (deployment TEXT NOT NULL, scenario TEXT NOT NULL,
                   service TEXT NOT NULL, outcome TEXT NOT NULL, count INTEGER NOT NULL,
                   PRIMARY KEY (deployment, scenario, service, outcome));
                 INSERT INTO series_outcomes VALUES ('d', 's', 'a', 'ok', 4), ('d', 'watch', 'a', 'ok', 2);",
            )
            .unwrap();
        }
        let mut s = Store::open(&path).unwrap();
        s.commit_group(&[batch(1, vec![timeline("a", Origin::Run, None, 1.0)])])
            .unwrap();
        let outcomes: Vec<(String, String, String, u64)> = s
            .outcome_counts()
            .unwrap()
            .into_iter()
            .map(|o| (o.scenario, o.origin, o.cause, o.count))
            .collect();
        assert_eq!(
            outcomes,
            [
                ("s".into(), "run".into(), "".into(), 5),
                ("watch".into(), "watch".into(), "".into(), 2),
            ]
        );
        assert_eq!(
            series_of(&s, "stop"),
            [("a".into(), "run".into(), "".into(), 1)]
        );
        drop(s);
        // Opened again: nothing to migrate, nothing lost.
        let s = Store::open(&path).unwrap();
        assert_eq!(s.outcome_counts().unwrap().len(), 2);
        drop(s);
        let _ = std::fs::remove_file(&path);
    }
}
