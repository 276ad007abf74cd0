//! The collector's embedded store: SQLite in WAL mode with `synchronous=FULL`,
//! so a batch acknowledged is a batch on disk, and a kill -9 at any moment
//! loses nothing acknowledged (SQLite's journal rolls back what was not).
//!
//! One transaction per batch: the batch key (agent, run, seq) is inserted
//! first, and a key already there means the batch was stored before: it is
//! acknowledged as `duplicate` and nothing is counted again.

use crate::fleet::log::{self as fleet_log, FleetRecord};
use crate::series::{SeriesNumbers, SeriesStats};
use bounce_wire::ingest::Batch;
use bounce_wire::sparse::SparseHistogram;
use bounce_wire::{Outcome, Phase, RunData, RunId, TimelineRecord};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::{Path, PathBuf};

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
    pub outcome: String,
    pub count: u64,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    deployment TEXT NOT NULL,
    scenario TEXT NOT NULL,
    started_unix_nanos INTEGER NOT NULL,
    scenario_yaml TEXT
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
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS timelines_run ON timelines (run_id, agent);
CREATE TABLE IF NOT EXISTS series_histograms (
    deployment TEXT NOT NULL,
    scenario TEXT NOT NULL,
    service TEXT NOT NULL,
    phase TEXT NOT NULL,
    histogram TEXT NOT NULL,
    sum_seconds REAL NOT NULL,
    stats TEXT,
    PRIMARY KEY (deployment, scenario, service, phase)
);
CREATE TABLE IF NOT EXISTS series_outcomes (
    deployment TEXT NOT NULL,
    scenario TEXT NOT NULL,
    service TEXT NOT NULL,
    outcome TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (deployment, scenario, service, outcome)
);
";

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(fleet_log::SCHEMA)?;
        // Stores made before runs kept their scenario text, or batches their digest.
        for (table, column) in [("runs", "scenario_yaml"), ("batches", "digest")] {
            let has: bool = conn.query_row(
                &format!(
                    "SELECT count(*) FROM pragma_table_info('{table}') WHERE name = '{column}'"
                ),
                [],
                |r| r.get::<_, i64>(0).map(|n| n > 0),
            )?;
            if !has {
                conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} TEXT"))?;
            }
        }
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
                    fleet_log::append(&tx, run, records)?;
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
            "SELECT deployment, scenario, service, phase, stats FROM series_histograms WHERE stats IS NOT NULL ORDER BY 1, 2, 3, 4",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (deployment, scenario, service, phase, stats) = row?;
            let numbers: SeriesNumbers =
                serde_json::from_str(&stats).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            out.push(SeriesStats {
                deployment,
                scenario,
                service,
                phase,
                numbers,
            });
        }
        Ok(out)
    }

    pub fn outcome_counts(&self) -> Result<Vec<OutcomeCount>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT deployment, scenario, service, outcome, count FROM series_outcomes ORDER BY 1, 2, 3, 4",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(OutcomeCount {
                deployment: r.get(0)?,
                scenario: r.get(1)?,
                service: r.get(2)?,
                outcome: r.get(3)?,
                count: r.get::<_, i64>(4)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Restart counts per node (agent), for the optional per-node series.
    pub fn node_outcome_counts(&self) -> Result<Vec<(OutcomeCount, String)>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT r.deployment, r.scenario, t.service, t.outcome, t.agent, count(*)
             FROM timelines t JOIN runs r ON r.run_id = t.run_id
             GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 5, 4",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                OutcomeCount {
                    deployment: r.get(0)?,
                    scenario: r.get(1)?,
                    service: r.get(2)?,
                    outcome: r.get(3)?,
                    count: r.get::<_, i64>(5)? as u64,
                },
                r.get::<_, String>(4)?,
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
                    (SELECT count(*) FROM timelines t WHERE t.run_id = r.run_id)
             FROM runs r ORDER BY r.started_unix_nanos",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(serde_json::json!({
                "run_id": r.get::<_, String>(0)?,
                "deployment": r.get::<_, String>(1)?,
                "scenario": r.get::<_, String>(2)?,
                "started_unix_nanos": r.get::<_, i64>(3)?,
                "agents": r.get::<_, i64>(4)?,
                "restarts": r.get::<_, i64>(5)?,
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
    let digest = digest_of(batch);
    let inserted = tx.execute(
        "INSERT OR IGNORE INTO batches (agent, run_id, seq, digest) VALUES (?1, ?2, ?3, ?4)",
        params![batch.agent, run.run_id.as_str(), batch.seq as i64, digest],
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
            "INSERT OR IGNORE INTO runs (run_id, deployment, scenario, started_unix_nanos) VALUES (?1, ?2, ?3, ?4)",
            params![run.run_id.as_str(), run.deployment, run.scenario, header.started_unix_nanos],
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
                "INSERT INTO timelines (run_id, agent, service, outcome, record) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    run.run_id.as_str(),
                    batch.agent,
                    t.service,
                    t.outcome.as_str(),
                    serde_json::to_string(t).expect("timelines serialize")
                ],
            )?;
        tx.execute(
                "INSERT INTO series_outcomes (deployment, scenario, service, outcome, count) VALUES (?1, ?2, ?3, ?4, 1)
                 ON CONFLICT (deployment, scenario, service, outcome) DO UPDATE SET count = count + 1",
                params![run.deployment, run.scenario, t.service, t.outcome.as_str()],
            )?;
    }
    // Per-run histograms are rebuilt from the run's stored timelines when
    // read (the batch's histograms were checked to count exactly their
    // phases): one merge per histogram on the write path instead of two.
    for (service, phase, h, sum) in histograms {
        pending.add(
            [
                run.deployment.clone(),
                run.scenario.clone(),
                service.clone(),
                phase.as_str().into(),
            ],
            h,
            *sum,
        )?;
    }
    Ok(Stored::New)
}

/// A group's histograms, merged in memory per series first, so that each
/// stored histogram is read, merged and written once per transaction.
#[derive(Default)]
struct Pending {
    /// (deployment, scenario, service, phase) → histogram and exact sum.
    by_series: std::collections::BTreeMap<[String; 4], (SparseHistogram, f64)>,
}

impl Pending {
    fn add(
        &mut self,
        series: [String; 4],
        h: &SparseHistogram,
        sum: f64,
    ) -> Result<(), StoreError> {
        let slot = self.by_series.entry(series).or_default();
        slot.0.add(h);
        slot.1 += sum;
        Ok(())
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
    series: &[String; 4],
    h: &SparseHistogram,
    sum: f64,
) -> Result<(), StoreError> {
    let existing: Option<(String, f64)> = tx
        .query_row(
            "SELECT histogram, sum_seconds FROM series_histograms
             WHERE deployment = ?1 AND scenario = ?2 AND service = ?3 AND phase = ?4",
            params![series[0], series[1], series[2], series[3]],
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
         (deployment, scenario, service, phase, histogram, sum_seconds, stats)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            series[0],
            series[1],
            series[2],
            series[3],
            encoded,
            old_sum + sum,
            serde_json::to_string(&numbers).expect("numbers serialize")
        ],
    )?;
    Ok(())
}
