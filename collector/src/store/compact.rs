//! Retention's work on the store, in bounded steps: timelines that opened
//! before a cutoff are folded into merged histograms per deployment and
//! hour, then deleted; later those hours, and the runs left without
//! timelines, expire; free pages go back to the file a few at a time
//! (`PRAGMA incremental_vacuum`). Each step is one transaction of at most
//! `limit` rows, so the single writer is back to ingest quickly, and a kill
//! at any moment leaves the store as it was before or after a step.
//!
//! What never shrinks: the series /metrics counts (`series_*`) and the
//! per-node counts (timelines and `compacted_node_outcomes` together), so a
//! counter never goes down because retention dropped what it counted.

use super::{Store, StoreError, origin_and_cause};
use bounce_wire::sparse::SparseHistogram;
use bounce_wire::summary::SummaryRow;
use bounce_wire::tally::RunTally;
use bounce_wire::{Phase, TimelineRecord};
use rusqlite::{OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `hour` is the hour the restarts opened in, as whole hours since the Unix epoch.
pub(super) const SCHEMA: &str = "
CREATE INDEX IF NOT EXISTS timelines_opened ON timelines (opened_unix_nanos);
CREATE TABLE IF NOT EXISTS compacted_histograms (
    hour INTEGER NOT NULL,
    deployment TEXT NOT NULL,
    scenario TEXT NOT NULL,
    origin TEXT NOT NULL,
    cause TEXT NOT NULL,
    service TEXT NOT NULL,
    phase TEXT NOT NULL,
    histogram TEXT NOT NULL,
    count INTEGER NOT NULL,
    sum_seconds REAL NOT NULL,
    failures INTEGER NOT NULL,
    PRIMARY KEY (hour, deployment, scenario, origin, cause, service, phase)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS compacted_outcomes (
    hour INTEGER NOT NULL,
    deployment TEXT NOT NULL,
    scenario TEXT NOT NULL,
    origin TEXT NOT NULL,
    cause TEXT NOT NULL,
    service TEXT NOT NULL,
    outcome TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (hour, deployment, scenario, origin, cause, service, outcome)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS compacted_node_outcomes (
    deployment TEXT NOT NULL,
    scenario TEXT NOT NULL,
    service TEXT NOT NULL,
    origin TEXT NOT NULL,
    agent TEXT NOT NULL,
    outcome TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (deployment, scenario, service, origin, agent, outcome)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS retention_totals (
    what TEXT PRIMARY KEY,
    count INTEGER NOT NULL
) WITHOUT ROWID;
";

pub const HOUR_NANOS: i64 = 3_600_000_000_000;

/// Runs expired in one step at most (each takes its batch keys along).
const RUNS_PER_STEP: usize = 16;

/// What one step did; a step that did `limit` of something has more to do.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Done {
    /// Timelines folded into hourly histograms and deleted.
    pub timelines: u64,
    /// Older timelines whose opening instant was filled in.
    pub filled: u64,
    /// Hourly histogram and outcome rows expired.
    pub hour_rows: u64,
    /// Runs expired (with their agents and batch keys).
    pub runs: u64,
}

/// What retention dropped so far (what `store` and /metrics show).
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct Dropped {
    pub timelines: u64,
    pub hour_rows: u64,
    pub runs: u64,
}

/// The store's size and age, for `bounce-collector store`.
#[derive(Debug, Serialize)]
pub struct StoreFacts {
    pub database_bytes: u64,
    pub wal_bytes: u64,
    /// Free pages inside the database file (reused by new rows; given
    /// back to the file system by incremental vacuum).
    pub free_bytes: u64,
    /// `none`, `full` or `incremental`.
    pub auto_vacuum: String,
    pub timelines: u64,
    pub oldest_timeline_unix_nanos: Option<i64>,
    pub runs: u64,
    pub compacted_hours: u64,
    pub oldest_compacted_hour_unix_nanos: Option<i64>,
    pub dropped: Dropped,
}

/// Restarts of a range whose timelines retention dropped, merged from the
/// hourly histograms that overlap it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Compacted {
    pub restarts: u64,
    pub outcomes: BTreeMap<String, u64>,
    /// Per (service, phase), as a run's table.
    pub rows: Vec<SummaryRow>,
    /// The whole hours merged: from this instant...
    pub first_hour_unix_nanos: i64,
    /// ...to this one (exclusive).
    pub end_unix_nanos: i64,
}

/// (hour, deployment, scenario, origin, cause): one group of a step.
type Group = (i64, String, String, &'static str, &'static str);

impl Store {
    /// Folds up to `limit` timelines that opened before `before` (Unix
    /// nanoseconds) into the hourly histograms and deletes them, in one
    /// transaction; first fills in, `limit` at a time, when timelines
    /// stored before that was kept opened.
    pub fn compact_timelines(&mut self, before: i64, limit: usize) -> Result<Done, StoreError> {
        let tx = self.conn.transaction()?;
        let filled = tx.execute(
            "UPDATE timelines SET opened_unix_nanos = coalesce(
                 (SELECT min(json_extract(b.value, '$.unix_nanos')) FROM json_each(timelines.record, '$.timestamps') b),
                 (SELECT started_unix_nanos FROM runs r WHERE r.run_id = timelines.run_id), 0)
             WHERE rowid IN (SELECT rowid FROM timelines WHERE opened_unix_nanos IS NULL LIMIT ?1)",
            [limit as i64],
        )? as u64;
        let rows = {
            let mut stmt = tx.prepare(
                "SELECT t.rowid, t.run_id, t.agent, r.deployment, r.scenario, t.record, t.opened_unix_nanos
                 FROM timelines t JOIN runs r ON r.run_id = t.run_id
                 WHERE t.opened_unix_nanos < ?1 ORDER BY t.opened_unix_nanos LIMIT ?2",
            )?;
            stmt.query_map(params![before, limit as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, i64>(6)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?
        };
        let mut groups: BTreeMap<Group, Vec<TimelineRecord>> = BTreeMap::new();
        let mut per_run: BTreeMap<String, i64> = BTreeMap::new();
        let mut per_node: BTreeMap<[String; 6], i64> = BTreeMap::new();
        for (rowid, run_id, agent, deployment, scenario, record, opened) in &rows {
            let t: TimelineRecord = serde_json::from_str(record).map_err(|e| {
                StoreError::Corrupt(format!("timeline {rowid} of run {run_id}: {e}"))
            })?;
            let (origin, cause) = origin_and_cause(&t);
            *per_run.entry(run_id.clone()).or_default() += 1;
            *per_node
                .entry([
                    deployment.clone(),
                    scenario.clone(),
                    t.service.clone(),
                    origin.to_string(),
                    agent.clone(),
                    t.outcome.as_str().to_string(),
                ])
                .or_default() += 1;
            let hour = opened.div_euclid(HOUR_NANOS);
            groups
                .entry((hour, deployment.clone(), scenario.clone(), origin, cause))
                .or_default()
                .push(t);
        }
        for (group, timelines) in &groups {
            fold_group(&tx, group, timelines)?;
        }
        for (run_id, n) in &per_run {
            tx.execute(
                "UPDATE runs SET dropped_timelines = dropped_timelines + ?2 WHERE run_id = ?1",
                params![run_id, n],
            )?;
        }
        for (key, n) in &per_node {
            tx.execute(
                "INSERT INTO compacted_node_outcomes (deployment, scenario, service, origin, agent, outcome, count)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (deployment, scenario, service, origin, agent, outcome) DO UPDATE SET count = count + ?7",
                params![key[0], key[1], key[2], key[3], key[4], key[5], n],
            )?;
        }
        {
            let mut delete = tx.prepare_cached("DELETE FROM timelines WHERE rowid = ?1")?;
            for row in &rows {
                delete.execute([row.0])?;
            }
        }
        add_total(&tx, "timelines", rows.len() as u64)?;
        tx.commit()?;
        Ok(Done {
            timelines: rows.len() as u64,
            filled,
            ..Done::default()
        })
    }

    /// Expires, in one transaction, up to `limit` hourly rows of hours
    /// before `before`, and a few runs that started before it and hold no
    /// timeline any more (their agents and batch keys with them: a batch
    /// resent after that would be taken as new).
    pub fn expire(&mut self, before: i64, limit: usize) -> Result<Done, StoreError> {
        let tx = self.conn.transaction()?;
        let hour = before.div_euclid(HOUR_NANOS);
        let mut hour_rows = 0;
        for (table, key) in [
            (
                "compacted_histograms",
                "hour, deployment, scenario, origin, cause, service, phase",
            ),
            (
                "compacted_outcomes",
                "hour, deployment, scenario, origin, cause, service, outcome",
            ),
        ] {
            hour_rows += tx.execute(
                &format!(
                    "DELETE FROM {table} WHERE ({key}) IN
                     (SELECT {key} FROM {table} WHERE hour < ?1 ORDER BY hour LIMIT ?2)"
                ),
                params![hour, limit as i64],
            )? as u64;
        }
        let runs: Vec<String> = {
            let mut stmt = tx.prepare(
                "SELECT run_id FROM runs r WHERE started_unix_nanos < ?1
                   AND NOT EXISTS (SELECT 1 FROM timelines t WHERE t.run_id = r.run_id)
                 ORDER BY started_unix_nanos LIMIT ?2",
            )?;
            stmt.query_map(params![before, RUNS_PER_STEP as i64], |r| r.get(0))?
                .collect::<Result<_, _>>()?
        };
        for run in &runs {
            // By (agent, run): the batch key's own order, no scan.
            tx.execute(
                "DELETE FROM batches WHERE (agent, run_id) IN
                 (SELECT agent, run_id FROM run_agents WHERE run_id = ?1)",
                [run],
            )?;
            tx.execute("DELETE FROM run_agents WHERE run_id = ?1", [run])?;
            tx.execute("DELETE FROM runs WHERE run_id = ?1", [run])?;
        }
        add_total(&tx, "hour_rows", hour_rows)?;
        add_total(&tx, "runs", runs.len() as u64)?;
        tx.commit()?;
        Ok(Done {
            hour_rows,
            runs: runs.len() as u64,
            ..Done::default()
        })
    }

    /// Gives up to `pages` free pages back to the file system; how many it
    /// gave. Nothing on a store without incremental auto-vacuum.
    pub fn vacuum_step(&mut self, pages: u32) -> Result<u64, StoreError> {
        let pragma = |name: &str| -> Result<i64, StoreError> {
            Ok(self
                .conn
                .query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))?)
        };
        if pragma("auto_vacuum")? != 2 {
            return Ok(0);
        }
        let free = pragma("freelist_count")?;
        if free == 0 {
            return Ok(0);
        }
        // The pragma frees one page per row it steps through: step them all.
        let mut stmt = self
            .conn
            .prepare(&format!("PRAGMA incremental_vacuum({pages})"))?;
        let mut rows = stmt.query([])?;
        while rows.next()?.is_some() {}
        drop(rows);
        drop(stmt);
        Ok((free - pragma("freelist_count")?).max(0) as u64)
    }

    pub fn page_size(&self) -> u64 {
        self.conn
            .query_row("PRAGMA page_size", [], |r| r.get::<_, i64>(0))
            .unwrap_or(4096) as u64
    }

    /// `none`, `full` or `incremental`.
    pub fn auto_vacuum(&self) -> Result<&'static str, StoreError> {
        let mode: i64 = self
            .conn
            .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))?;
        Ok(match mode {
            1 => "full",
            2 => "incremental",
            _ => "none",
        })
    }

    /// Turns on incremental auto-vacuum in a store made without it: one
    /// VACUUM, which rewrites the whole file (as much free disk again, and
    /// nothing else is written meanwhile).
    pub fn convert_to_incremental(&mut self) -> Result<(), StoreError> {
        self.conn
            .pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
        self.conn.execute_batch("VACUUM")?;
        Ok(())
    }

    /// What retention dropped so far.
    pub fn dropped(&self) -> Result<Dropped, StoreError> {
        let mut d = Dropped::default();
        let mut stmt = self
            .conn
            .prepare("SELECT what, count FROM retention_totals")?;
        for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
            let (what, n) = row?;
            match what.as_str() {
                "timelines" => d.timelines = n as u64,
                "hour_rows" => d.hour_rows = n as u64,
                "runs" => d.runs = n as u64,
                _ => {}
            }
        }
        Ok(d)
    }

    pub fn facts(&self) -> Result<StoreFacts, StoreError> {
        let one = |sql: &str| -> Result<Option<i64>, StoreError> {
            Ok(self.conn.query_row(sql, [], |r| r.get(0))?)
        };
        let page_size = one("PRAGMA page_size")?.unwrap_or(0) as u64;
        let file = |suffix: &str| {
            let mut p = self.path.clone().into_os_string();
            p.push(suffix);
            std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
        };
        Ok(StoreFacts {
            database_bytes: file(""),
            wal_bytes: file("-wal"),
            free_bytes: one("PRAGMA freelist_count")?.unwrap_or(0) as u64 * page_size,
            auto_vacuum: self.auto_vacuum()?.to_string(),
            timelines: one("SELECT count(*) FROM timelines")?.unwrap_or(0) as u64,
            oldest_timeline_unix_nanos: one("SELECT min(opened_unix_nanos) FROM timelines")?,
            runs: one("SELECT count(*) FROM runs")?.unwrap_or(0) as u64,
            compacted_hours: one("SELECT count(DISTINCT hour) FROM compacted_histograms")?
                .unwrap_or(0) as u64,
            oldest_compacted_hour_unix_nanos: one("SELECT min(hour) FROM compacted_histograms")?
                .map(|h| h * HOUR_NANOS),
            dropped: self.dropped()?,
        })
    }

    /// The restarts of `deployment` whose timelines were dropped, from
    /// every hour that overlaps [since, until) (Unix nanoseconds), of one
    /// origin or all; None when there are none.
    pub fn compacted(
        &self,
        deployment: &str,
        since: Option<i64>,
        until: Option<i64>,
        origin: Option<&str>,
    ) -> Result<Option<Compacted>, StoreError> {
        let first = since.map_or(i64::MIN, |s| s.div_euclid(HOUR_NANOS));
        let last = until.map_or(i64::MAX, |u| u.saturating_sub(1).div_euclid(HOUR_NANOS));
        let filter = "hour BETWEEN ?1 AND ?2 AND deployment = ?3 AND (?4 IS NULL OR origin = ?4)";
        let args = params![first, last, deployment, origin];
        let mut outcomes = BTreeMap::new();
        let mut hours: Option<(i64, i64)> = None;
        {
            let mut stmt = self.conn.prepare(&format!(
                "SELECT outcome, sum(count), min(hour), max(hour) FROM compacted_outcomes WHERE {filter} GROUP BY outcome"
            ))?;
            let rows = stmt.query_map(args, |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })?;
            for row in rows {
                let (outcome, n, lo, hi) = row?;
                outcomes.insert(outcome, n as u64);
                hours = Some(hours.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))));
            }
        }
        let Some((lo, hi)) = hours else {
            return Ok(None);
        };
        let mut series: BTreeMap<(String, Phase), (SparseHistogram, u64, f64, u64)> =
            BTreeMap::new();
        let mut stmt = self.conn.prepare(&format!(
            "SELECT service, phase, histogram, count, sum_seconds, failures FROM compacted_histograms WHERE {filter}"
        ))?;
        let rows = stmt.query_map(args, |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, f64>(4)?,
                r.get::<_, i64>(5)?,
            ))
        })?;
        for row in rows {
            let (service, phase, text, count, sum, failures) = row?;
            let phase = Phase::parse(&phase)
                .ok_or_else(|| StoreError::Corrupt(format!("compacted phase {phase:?}")))?;
            let slot = series.entry((service, phase)).or_default();
            slot.0
                .add(&SparseHistogram::parse(&text).map_err(StoreError::Corrupt)?);
            slot.1 += count as u64;
            slot.2 += sum;
            slot.3 += failures as u64;
        }
        Ok(Some(Compacted {
            restarts: outcomes.values().sum(),
            outcomes,
            rows: series
                .into_iter()
                .map(|((service, phase), (h, count, sum, failures))| {
                    row_of(service, phase, &h, count, sum, failures)
                })
                .collect(),
            first_hour_unix_nanos: lo * HOUR_NANOS,
            end_unix_nanos: (hi + 1) * HOUR_NANOS,
        }))
    }
}

/// One table row from a merged histogram (quantiles as a run's table has
/// them: HDR's, 3 significant digits).
fn row_of(
    service: String,
    phase: Phase,
    h: &SparseHistogram,
    count: u64,
    sum: f64,
    failures: u64,
) -> SummaryRow {
    let q = (!h.is_empty()).then(|| {
        let dense = h.to_hdr();
        let at = |q: f64| dense.value_at_quantile(q) as f64 / 1e6;
        [at(0.5), at(0.9), at(0.99), dense.max() as f64 / 1e6]
    });
    SummaryRow {
        service,
        phase,
        count,
        p50: q.map(|q| q[0]),
        p90: q.map(|q| q[1]),
        p99: q.map(|q| q[2]),
        max: q.map(|q| q[3]),
        sum,
        failures,
    }
}

/// One (hour, deployment, scenario, origin, cause)'s timelines added into
/// its stored histograms and outcome counts.
fn fold_group(
    tx: &Transaction<'_>,
    (hour, deployment, scenario, origin, cause): &Group,
    timelines: &[TimelineRecord],
) -> Result<(), StoreError> {
    let tally = RunTally::of(timelines);
    for ((service, phase), s) in tally.series() {
        let stored: Option<(String, i64, f64, i64)> = tx
            .query_row(
                "SELECT histogram, count, sum_seconds, failures FROM compacted_histograms
                 WHERE hour = ?1 AND deployment = ?2 AND scenario = ?3 AND origin = ?4
                   AND cause = ?5 AND service = ?6 AND phase = ?7",
                params![
                    hour,
                    deployment,
                    scenario,
                    origin,
                    cause,
                    service,
                    phase.as_str()
                ],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        let (mut h, count, sum, failures) = match stored {
            Some((text, c, s, f)) => (
                SparseHistogram::parse(&text).map_err(StoreError::Corrupt)?,
                c,
                s,
                f,
            ),
            None => (SparseHistogram::default(), 0, 0.0, 0),
        };
        h.add(&s.hist);
        tx.execute(
            "INSERT OR REPLACE INTO compacted_histograms
             (hour, deployment, scenario, origin, cause, service, phase, histogram, count, sum_seconds, failures)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                hour,
                deployment,
                scenario,
                origin,
                cause,
                service,
                phase.as_str(),
                h.to_text(),
                count + s.count as i64,
                sum + s.sum,
                failures + s.failures as i64
            ],
        )?;
    }
    let mut by_outcome: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    for t in timelines {
        *by_outcome
            .entry((t.service.as_str(), t.outcome.as_str()))
            .or_default() += 1;
    }
    for ((service, outcome), n) in by_outcome {
        tx.execute(
            "INSERT INTO compacted_outcomes (hour, deployment, scenario, origin, cause, service, outcome, count)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (hour, deployment, scenario, origin, cause, service, outcome) DO UPDATE SET count = count + ?8",
            params![hour, deployment, scenario, origin, cause, service, outcome, n],
        )?;
    }
    Ok(())
}

fn add_total(tx: &Transaction<'_>, what: &str, n: u64) -> Result<(), StoreError> {
    if n > 0 {
        tx.execute(
            "INSERT INTO retention_totals (what, count) VALUES (?1, ?2)
             ON CONFLICT (what) DO UPDATE SET count = count + ?2",
            params![what, n as i64],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Item, Stored};
    use bounce_wire::ingest::{Batch, RunHeader, histograms_of};
    use bounce_wire::summary::rows_from_timelines;
    use bounce_wire::{
        Boundary, BoundaryName, Cause, Clock, NodeFacts, Origin, Outcome, RunId, RunIdentity,
        Source, TargetRef,
    };
    use std::path::PathBuf;

    const DAY: i64 = 86_400_000_000_000;
    /// 2026-11-18, a fixed "now" the data is placed around.
    const NOW: i64 = 1_795_500_000_000_000_000;

    /// A watched restart of `service` on `node` that opened at `opened`,
    /// stopped in `stop_ms`; a timeout never started again.
    fn watched(run: &str, node: &str, service: &str, opened: i64, stop_ms: i64) -> TimelineRecord {
        let b = |name, at| Boundary {
            name,
            unix_nanos: at,
            source: Source::Agent,
            clock: Clock::Realtime,
        };
        let stopped = opened + stop_ms * 1_000_000;
        let mut timestamps = vec![
            b(BoundaryName::Requested, opened),
            b(BoundaryName::Exited, stopped),
        ];
        let timeout = stop_ms % 7 == 0;
        if !timeout {
            timestamps.push(b(BoundaryName::Started, stopped + 300_000_000));
        }
        TimelineRecord {
            run_id: RunId::parse(run).unwrap(),
            deployment: "d".into(),
            scenario: "watch".into(),
            node: node.into(),
            target: TargetRef::Docker {
                name: service.into(),
                id: "x".into(),
            },
            service: service.into(),
            iteration: 1,
            action: bounce_wire::Action::Restart,
            outcome: if timeout {
                Outcome::Timeout
            } else {
                Outcome::Ok
            },
            error: None,
            exit_code: None,
            signals: vec![],
            oom_killed: false,
            phases: bounce_wire::timeline::phases_from(&timestamps),
            timestamps,
            probes: vec![],
            unit: None,
            attribution: None,
            events: vec![],
            notes: vec![],
            origin: Origin::Watch,
            cause: Some(Cause::Restart),
            recreated: None,
        }
    }

    fn batch(t: &TimelineRecord, started: i64, seq: u64) -> Item {
        let b = Batch {
            agent: t.node.clone(),
            run: RunHeader {
                identity: RunIdentity {
                    run_id: t.run_id.clone(),
                    deployment: t.deployment.clone(),
                    scenario: t.scenario.clone(),
                    node: NodeFacts {
                        hostname: t.node.clone(),
                        ..Default::default()
                    },
                },
                started_unix_nanos: started,
                planned: 0,
                scenario_yaml: None,
            },
            seq,
            histograms: histograms_of(std::slice::from_ref(t)).unwrap(),
            timelines: vec![t.clone()],
            end: None,
        };
        let hs = crate::validate::batch(&b).unwrap();
        Item::Batch(Box::new(b), hs)
    }

    fn temp_store(name: &str) -> (PathBuf, Store) {
        let path =
            std::env::temp_dir().join(format!("bounce-compact-{name}-{}", std::process::id()));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        let s = Store::open(&path).unwrap();
        (path, s)
    }

    /// 30 restarts a month ago over two hours on n1, 5 an hour ago on n2.
    fn month_old_and_fresh(s: &mut Store) -> Vec<TimelineRecord> {
        let old_day = NOW - 30 * DAY;
        let old: Vec<TimelineRecord> = (0..30)
            .map(|i| {
                let service = ["nova_api", "keystone", "glance_api"][i % 3];
                watched(
                    "w-n1-old",
                    "n1",
                    service,
                    old_day + i as i64 * 240_000_000_000,
                    150 + 37 * i as i64,
                )
            })
            .collect();
        let mut items: Vec<Item> = old
            .iter()
            .enumerate()
            .map(|(i, t)| batch(t, old_day, i as u64 + 1))
            .collect();
        items.extend((0..5).map(|i| {
            let t = watched("w-n2-new", "n2", "nova_api", NOW - DAY / 24 + i, 200 + i);
            batch(&t, NOW - DAY / 2, i as u64 + 1)
        }));
        assert!(
            s.commit_group(&items)
                .unwrap()
                .iter()
                .all(|r| *r == Stored::New)
        );
        old
    }

    fn restarts_of(s: &Store) -> Vec<(String, i64, i64)> {
        s.runs()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["run_id"].as_str().unwrap().to_string(),
                    r["restarts"].as_i64().unwrap(),
                    r["timelines_dropped"].as_i64().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn old_timelines_become_hourly_histograms_and_nothing_counted_is_lost() {
        let (path, mut s) = temp_store("fold");
        let old = month_old_and_fresh(&mut s);
        let counters = |s: &Store| {
            (
                s.series_stats()
                    .unwrap()
                    .iter()
                    .map(|x| {
                        (
                            x.service.clone(),
                            x.phase.clone(),
                            x.numbers.count,
                            x.numbers.sum_seconds,
                        )
                    })
                    .collect::<Vec<_>>(),
                s.outcome_counts()
                    .unwrap()
                    .iter()
                    .map(|o| o.count)
                    .collect::<Vec<_>>(),
                s.node_outcome_counts()
                    .unwrap()
                    .iter()
                    .map(|(o, n)| (n.clone(), o.outcome.clone(), o.count))
                    .collect::<Vec<_>>(),
            )
        };
        let before = counters(&s);
        let mut steps = 0;
        loop {
            let done = s.compact_timelines(NOW - 14 * DAY, 7).unwrap();
            assert!(done.timelines <= 7, "a step is bounded: {done:?}");
            steps += 1;
            if done.timelines == 0 {
                break;
            }
        }
        assert_eq!(steps, 6, "30 timelines, 7 a step, then one that finds none");
        assert_eq!(counters(&s), before, "/metrics counts the same");
        assert_eq!(
            restarts_of(&s),
            [
                ("w-n1-old".to_string(), 30, 30),
                ("w-n2-new".to_string(), 5, 0)
            ]
        );
        let old_id = RunId::parse("w-n1-old").unwrap();
        assert!(s.run_timelines(&old_id, None).unwrap().is_empty());
        assert_eq!(s.dropped().unwrap().timelines, 30);

        // The month-old range, from histograms: the table its timelines made.
        let c = s
            .compacted(
                "d",
                Some(NOW - 31 * DAY),
                Some(NOW - 29 * DAY),
                Some("watch"),
            )
            .unwrap()
            .expect("compacted restarts in range");
        assert_eq!(c.restarts, 30);
        assert_eq!(c.outcomes.values().sum::<u64>(), 30);
        assert!(c.outcomes["timeout"] > 0);
        let want = rows_from_timelines(&old);
        assert_eq!(c.rows.len(), want.len());
        for (got, want) in c.rows.iter().zip(&want) {
            let exact = |r: &SummaryRow| {
                (
                    r.service.clone(),
                    r.phase,
                    r.count,
                    r.p50,
                    r.p90,
                    r.p99,
                    r.max,
                    r.failures,
                )
            };
            assert_eq!(exact(got), exact(want));
            assert!((got.sum - want.sum).abs() < 1e-9);
        }
        assert!(
            c.first_hour_unix_nanos <= NOW - 30 * DAY
                && c.end_unix_nanos > NOW - 30 * DAY + 2 * HOUR_NANOS - 240_000_000_000
        );
        assert_eq!(s.compacted("d", None, None, Some("run")).unwrap(), None);
        assert_eq!(
            s.compacted("d", Some(NOW - 2 * DAY), None, None).unwrap(),
            None
        );

        // A resent batch of a compacted run is still a duplicate.
        let again = s
            .commit_group(&[batch(&old[3], NOW - 30 * DAY, 4)])
            .unwrap();
        assert_eq!(again, [Stored::Duplicate]);
        assert_eq!(counters(&s), before);

        // Expiry: the hours and the run left without timelines go, the fresh run stays.
        while s.expire(NOW - 29 * DAY, 5).unwrap() != Done::default() {}
        assert_eq!(restarts_of(&s), [("w-n2-new".to_string(), 5, 0)]);
        assert_eq!(s.compacted("d", None, None, None).unwrap(), None);
        let d = s.dropped().unwrap();
        assert!(d.runs == 1 && d.hour_rows > 0, "{d:?}");
        assert_eq!(counters(&s), before, "counters never go down");
        drop(s);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn timelines_stored_before_their_opening_was_kept_are_aged_by_their_own_stamps() {
        let (path, mut s) = temp_store("fill");
        month_old_and_fresh(&mut s);
        s.conn
            .execute_batch("UPDATE timelines SET opened_unix_nanos = NULL")
            .unwrap();
        let first = s.compact_timelines(NOW - 14 * DAY, 1000).unwrap();
        assert_eq!((first.filled, first.timelines), (35, 30));
        assert_eq!(s.facts().unwrap().timelines, 5);
        drop(s);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn free_pages_go_back_in_bounded_steps_and_an_old_store_is_converted() {
        let (path, mut s) = temp_store("vacuum");
        assert_eq!(s.auto_vacuum().unwrap(), "incremental", "a new store");
        month_old_and_fresh(&mut s);
        let many: Vec<Item> = (0..1500)
            .map(|i| {
                let t = watched(
                    "w-n3-old",
                    "n3",
                    "neutron_server",
                    NOW - 20 * DAY + i,
                    100 + i,
                );
                batch(&t, NOW - 20 * DAY, i as u64 + 1)
            })
            .collect();
        s.commit_group(&many).unwrap();
        while s.compact_timelines(NOW - 14 * DAY, 500).unwrap().timelines > 0 {}
        let free = s.facts().unwrap().free_bytes;
        assert!(
            free > 100 * 1024,
            "deleted timelines left free pages: {free}"
        );
        assert_eq!(s.vacuum_step(16).unwrap(), 16, "a whole step at once");
        let mut steps = 0;
        loop {
            let pages = s.vacuum_step(16).unwrap();
            assert!(pages <= 16);
            if pages == 0 {
                break;
            }
            steps += 1;
        }
        assert!(steps > 1, "given back in several steps");
        assert_eq!(s.facts().unwrap().free_bytes, 0);

        // A store made without auto-vacuum: nothing to give back until converted.
        s.conn
            .execute_batch("PRAGMA auto_vacuum = NONE; VACUUM;")
            .unwrap();
        assert_eq!(s.auto_vacuum().unwrap(), "none");
        let kept = restarts_of(&s);
        s.convert_to_incremental().unwrap();
        assert_eq!(s.auto_vacuum().unwrap(), "incremental");
        assert_eq!(restarts_of(&s), kept);
        drop(s);
        let _ = std::fs::remove_file(&path);
    }
}
