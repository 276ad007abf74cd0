//! Retention's merging work on the store, in bounded steps: timelines that
//! opened before a cutoff are folded into merged histograms per deployment
//! and hour, then deleted; later, the hours of whole days are rolled up into
//! one row per day (kept longer); free pages go back to the file a few at a
//! time (`PRAGMA incremental_vacuum`). Expiry is `expire.rs`. Each step is
//! one transaction of at most `limit` rows, so the single writer is back to
//! ingest quickly, and a kill at any moment leaves the store as it was
//! before or after a step.
//!
//! A row a step cannot read (a timeline that is not a timeline, a merged
//! histogram that does not parse) is set aside in `retention_set_aside`,
//! counted and said, so one bad row never stops retention.
//!
//! What never shrinks: the series /metrics counts (`series_*`) and the
//! per-node counts (timelines and `compacted_node_outcomes` together), so a
//! counter never goes down because retention dropped what it counted.

use super::{Store, StoreError, now_unix_nanos, origin_and_cause};
use bounce_wire::sparse::SparseHistogram;
use bounce_wire::summary::SummaryRow;
use bounce_wire::tally::RunTally;
use bounce_wire::{Phase, TimelineRecord};
use rusqlite::{OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const HOUR_NANOS: i64 = 3_600_000_000_000;
pub const DAY_NANOS: i64 = 24 * HOUR_NANOS;

/// The grains merged histograms are kept at: per hour from timelines, per
/// day from whole days of hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grain {
    Hour,
    Day,
}

impl Grain {
    pub const ALL: [Grain; 2] = [Grain::Hour, Grain::Day];

    pub(super) fn histograms(self) -> &'static str {
        match self {
            Grain::Hour => "compacted_histograms",
            Grain::Day => "compacted_daily_histograms",
        }
    }

    pub(super) fn outcomes(self) -> &'static str {
        match self {
            Grain::Hour => "compacted_outcomes",
            Grain::Day => "compacted_daily_outcomes",
        }
    }

    /// The time column: whole hours, or days, since the Unix epoch.
    pub(super) fn column(self) -> &'static str {
        match self {
            Grain::Hour => "hour",
            Grain::Day => "day",
        }
    }

    pub fn nanos(self) -> i64 {
        match self {
            Grain::Hour => HOUR_NANOS,
            Grain::Day => DAY_NANOS,
        }
    }
}

/// The tables retention keeps besides the merged ones ([`schema`]).
const FIXED: &str = "
CREATE INDEX IF NOT EXISTS timelines_opened ON timelines (opened_unix_nanos);
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
CREATE TABLE IF NOT EXISTS retention_set_aside (
    id INTEGER PRIMARY KEY,
    what TEXT NOT NULL,
    run_id TEXT,
    body TEXT NOT NULL,
    error TEXT NOT NULL,
    set_aside_unix_nanos INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS retention_set_aside_run ON retention_set_aside (run_id);
";

/// Retention's tables: merged histograms and outcome counts per hour and
/// per day (deployment, scenario, origin, cause, service, phase/outcome).
pub(super) fn schema() -> String {
    let mut out = FIXED.to_string();
    for g in Grain::ALL {
        let (h, o, t) = (g.histograms(), g.outcomes(), g.column());
        out.push_str(&format!(
            "CREATE TABLE IF NOT EXISTS {h} (
    {t} INTEGER NOT NULL, deployment TEXT NOT NULL, scenario TEXT NOT NULL,
    origin TEXT NOT NULL, cause TEXT NOT NULL, service TEXT NOT NULL, phase TEXT NOT NULL,
    histogram TEXT NOT NULL, count INTEGER NOT NULL, sum_seconds REAL NOT NULL,
    failures INTEGER NOT NULL,
    PRIMARY KEY ({t}, deployment, scenario, origin, cause, service, phase)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS {o} (
    {t} INTEGER NOT NULL, deployment TEXT NOT NULL, scenario TEXT NOT NULL,
    origin TEXT NOT NULL, cause TEXT NOT NULL, service TEXT NOT NULL, outcome TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY ({t}, deployment, scenario, origin, cause, service, outcome)
) WITHOUT ROWID;
"
        ));
    }
    out
}

/// The key columns of a merged row, after its time (phase or outcome last).
const KEY: &str = "deployment, scenario, origin, cause, service";

/// What one step did; a step that did `limit` of something has more to do.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Done {
    /// Timelines folded into hourly histograms and deleted.
    pub timelines: u64,
    /// Older timelines whose opening instant was filled in.
    pub filled: u64,
    /// Hourly rows merged into daily ones and deleted.
    pub rolled_up: u64,
    /// Hourly histogram and outcome rows expired.
    pub hour_rows: u64,
    /// Daily histogram and outcome rows expired.
    pub day_rows: u64,
    /// Runs expired (with their agents, batch keys and fleet log).
    pub runs: u64,
    /// Fleet log rows expired (with their run, or alone when the fleet
    /// run never stored a batch).
    pub fleet_log_rows: u64,
    /// The fleet runs whose log expired (a running collector forgets them).
    pub fleet_runs: Vec<String>,
    /// Expired runs' batch seqs forgotten, per (agent, run).
    pub tombstones: u64,
    /// Rows that could not be read, set aside: what each was and why.
    pub set_aside: Vec<String>,
}

/// What retention dropped so far (what `store` and /metrics show).
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct Dropped {
    pub timelines: u64,
    /// Hourly rows merged into days (not dropped: kept per day).
    pub rolled_up: u64,
    pub hour_rows: u64,
    pub day_rows: u64,
    pub runs: u64,
    pub fleet_log_rows: u64,
    /// Unreadable rows moved to `retention_set_aside`.
    pub set_aside: u64,
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
    /// Expired runs whose batch seqs are still kept, per (agent, run), and
    /// their bytes (`tombstone.rs`).
    pub expired_seqs_kept: u64,
    pub expired_seqs_bytes: u64,
    pub compacted_hours: u64,
    pub oldest_compacted_hour_unix_nanos: Option<i64>,
    pub compacted_days: u64,
    pub oldest_compacted_day_unix_nanos: Option<i64>,
    pub dropped: Dropped,
    /// The first rows set aside (what, run, why), at most 5.
    pub set_aside: Vec<String>,
}

/// Restarts of a range whose timelines retention dropped, merged from the
/// hourly (and daily) histograms that overlap it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Compacted {
    pub restarts: u64,
    pub outcomes: BTreeMap<String, u64>,
    /// Per (service, phase), as a run's table.
    pub rows: Vec<SummaryRow>,
    /// The whole hours (or days) merged: from this instant...
    pub first_hour_unix_nanos: i64,
    /// ...to this one (exclusive).
    pub end_unix_nanos: i64,
    /// Some of it merged per whole day: up to this instant (exclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_until_unix_nanos: Option<i64>,
    /// Merged rows of the range that could not be read, left out of the
    /// numbers above: which each was and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<String>,
}

impl Compacted {
    /// Whether any merged row of the range was read.
    pub fn readable(&self) -> bool {
        self.restarts > 0 || !self.rows.is_empty()
    }
}

/// One merged row's key at its grain: (time, deployment, scenario, origin,
/// cause, service, phase or outcome).
type RowKey = (i64, String, String, String, String, String, String);

/// A merged histogram with the numbers kept beside it.
#[derive(Default)]
struct Merged {
    h: SparseHistogram,
    count: i64,
    sum: f64,
    failures: i64,
}

impl Merged {
    fn add(&mut self, other: &Merged) {
        self.h.add(&other.h);
        self.count += other.count;
        self.sum += other.sum;
        self.failures += other.failures;
    }
}

impl Store {
    /// Folds up to `limit` timelines that opened before `before` (Unix
    /// nanoseconds) into the hourly histograms and deletes them, in one
    /// transaction; first fills in, `limit` at a time, when timelines
    /// stored before that was kept opened. A timeline that does not read
    /// is set aside, not folded.
    pub fn compact_timelines(&mut self, before: i64, limit: usize) -> Result<Done, StoreError> {
        let tx = self.conn.transaction()?;
        // json_valid first: json_each fails the statement on a malformed row.
        let filled = tx.execute(
            "UPDATE timelines SET opened_unix_nanos = coalesce(
                 (SELECT min(json_extract(b.value, '$.unix_nanos')) FROM json_each(
                     CASE WHEN json_valid(timelines.record) THEN timelines.record ELSE '{}' END,
                     '$.timestamps') b),
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
        let mut set_aside = Vec::new();
        for (rowid, run_id, agent, deployment, scenario, record, opened) in &rows {
            let t: TimelineRecord = match serde_json::from_str(record) {
                Ok(t) => t,
                Err(e) => {
                    let why = format!("timeline {rowid} of run {run_id} (agent {agent}): {e}");
                    set_row_aside(&tx, "timeline", Some(run_id), record, &why)?;
                    set_aside.push(why);
                    continue;
                }
            };
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
            fold_group(&tx, group, timelines, &mut set_aside)?;
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
        let folded = per_run.values().sum::<i64>() as u64;
        add_total(&tx, "timelines", folded)?;
        add_total(&tx, "set_aside", set_aside.len() as u64)?;
        tx.commit()?;
        Ok(Done {
            timelines: folded,
            filled,
            set_aside,
            ..Done::default()
        })
    }

    /// Merges up to `limit` hourly rows (histograms, and as many outcome
    /// rows) of days that ended by `before` into one row per day, and
    /// deletes them, in one transaction. A day may take several steps:
    /// each hour is in exactly one of the two tables after each.
    pub fn roll_up_hours(&mut self, before: i64, limit: usize) -> Result<Done, StoreError> {
        let first_kept_hour = before.div_euclid(DAY_NANOS) * 24;
        let tx = self.conn.transaction()?;
        let mut set_aside = Vec::new();
        let mut rolled_up = 0;
        // Histograms.
        let rows = {
            let mut stmt = tx.prepare(&format!(
                "SELECT hour, {KEY}, phase, histogram, count, sum_seconds, failures
                 FROM compacted_histograms WHERE hour < ?1 ORDER BY hour LIMIT ?2"
            ))?;
            stmt.query_map(params![first_kept_hour, limit as i64], |r| {
                Ok((
                    row_key(r)?,
                    r.get::<_, String>(7)?,
                    Merged {
                        h: SparseHistogram::default(),
                        count: r.get(8)?,
                        sum: r.get(9)?,
                        failures: r.get(10)?,
                    },
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?
        };
        let mut days: BTreeMap<RowKey, Merged> = BTreeMap::new();
        for (key, text, mut m) in rows {
            delete_hour_row(&tx, Grain::Hour.histograms(), "phase", &key)?;
            rolled_up += 1;
            match SparseHistogram::parse(&text) {
                Ok(h) => m.h = h,
                Err(e) => {
                    let why = format!("hourly histogram {key:?}: {e}");
                    set_row_aside(&tx, "compacted_histograms", None, &text, &why)?;
                    set_aside.push(why);
                    continue;
                }
            }
            let day = (
                key.0.div_euclid(24),
                key.1,
                key.2,
                key.3,
                key.4,
                key.5,
                key.6,
            );
            days.entry(day).or_default().add(&m);
        }
        for (key, m) in &days {
            add_histogram(&tx, Grain::Day, key, m, &mut set_aside)?;
        }
        // Outcome counts.
        let rows = {
            let mut stmt = tx.prepare(&format!(
                "SELECT hour, {KEY}, outcome, count FROM compacted_outcomes
                 WHERE hour < ?1 ORDER BY hour LIMIT ?2"
            ))?;
            stmt.query_map(params![first_kept_hour, limit as i64], |r| {
                Ok((row_key(r)?, r.get::<_, i64>(7)?))
            })?
            .collect::<Result<Vec<_>, _>>()?
        };
        let mut days: BTreeMap<RowKey, i64> = BTreeMap::new();
        for (key, n) in rows {
            delete_hour_row(&tx, Grain::Hour.outcomes(), "outcome", &key)?;
            rolled_up += 1;
            let day = (
                key.0.div_euclid(24),
                key.1,
                key.2,
                key.3,
                key.4,
                key.5,
                key.6,
            );
            *days.entry(day).or_default() += n;
        }
        for (key, n) in &days {
            add_outcome(&tx, Grain::Day, key, *n)?;
        }
        add_total(&tx, "rolled_up", rolled_up)?;
        add_total(&tx, "set_aside", set_aside.len() as u64)?;
        tx.commit()?;
        Ok(Done {
            rolled_up,
            set_aside,
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
    /// nothing else is written meanwhile: `store --vacuum`, offline).
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
            let slot = match what.as_str() {
                "timelines" => &mut d.timelines,
                "rolled_up" => &mut d.rolled_up,
                "hour_rows" => &mut d.hour_rows,
                "day_rows" => &mut d.day_rows,
                "runs" => &mut d.runs,
                "fleet_log_rows" => &mut d.fleet_log_rows,
                "set_aside" => &mut d.set_aside,
                _ => continue,
            };
            *slot = n as u64;
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
        let set_aside = {
            let mut stmt = self
                .conn
                .prepare("SELECT error FROM retention_set_aside ORDER BY id LIMIT 5")?;
            stmt.query_map([], |r| r.get(0))?
                .collect::<Result<Vec<String>, _>>()?
        };
        Ok(StoreFacts {
            database_bytes: file(""),
            wal_bytes: file("-wal"),
            free_bytes: one("PRAGMA freelist_count")?.unwrap_or(0) as u64 * page_size,
            auto_vacuum: self.auto_vacuum()?.to_string(),
            timelines: one("SELECT count(*) FROM timelines")?.unwrap_or(0) as u64,
            oldest_timeline_unix_nanos: one("SELECT min(opened_unix_nanos) FROM timelines")?,
            runs: one("SELECT count(*) FROM runs")?.unwrap_or(0) as u64,
            expired_seqs_kept: one("SELECT count(*) FROM expired_batches")?.unwrap_or(0) as u64,
            expired_seqs_bytes: one("SELECT sum(length(seqs)) FROM expired_batches")?.unwrap_or(0)
                as u64,
            compacted_hours: one("SELECT count(DISTINCT hour) FROM compacted_histograms")?
                .unwrap_or(0) as u64,
            oldest_compacted_hour_unix_nanos: one("SELECT min(hour) FROM compacted_histograms")?
                .map(|h| h * HOUR_NANOS),
            compacted_days: one("SELECT count(DISTINCT day) FROM compacted_daily_histograms")?
                .unwrap_or(0) as u64,
            oldest_compacted_day_unix_nanos: one(
                "SELECT min(day) FROM compacted_daily_histograms",
            )?
            .map(|d| d * DAY_NANOS),
            dropped: self.dropped()?,
            set_aside,
        })
    }

    /// The restarts of `deployment` whose timelines were dropped, from
    /// every hour (and day) that overlaps [since, until) (Unix
    /// nanoseconds), of one origin or all; None when there are none. A
    /// merged row that does not read is left out and named in
    /// [`Compacted::left_out`], so one bad row never fails a report; it
    /// stays where it is (a reader never writes the store: retention sets
    /// an hourly row aside when it rolls it up).
    pub fn compacted(
        &self,
        deployment: &str,
        since: Option<i64>,
        until: Option<i64>,
        origin: Option<&str>,
    ) -> Result<Option<Compacted>, StoreError> {
        let mut outcomes = BTreeMap::new();
        // Per grain: the first and end instants of the rows found.
        let mut spans: Vec<(Grain, i64, i64)> = Vec::new();
        let mut series: BTreeMap<(String, Phase), Merged> = BTreeMap::new();
        let mut left_out = Vec::new();
        for grain in Grain::ALL {
            let n = grain.nanos();
            let first = since.map_or(i64::MIN, |s| s.div_euclid(n));
            let last = until.map_or(i64::MAX, |u| u.saturating_sub(1).div_euclid(n));
            let t = grain.column();
            let filter = format!(
                "{t} BETWEEN ?1 AND ?2 AND deployment = ?3 AND (?4 IS NULL OR origin = ?4)"
            );
            let args = params![first, last, deployment, origin];
            let mut span: Option<(i64, i64)> = None;
            let mut seen = |lo: i64, hi: i64| {
                span = Some(span.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))));
            };
            let table = grain.outcomes();
            let mut stmt = self.conn.prepare(&format!(
                "SELECT outcome, sum(count), min({t}), max({t}) FROM {table} WHERE {filter} GROUP BY outcome"
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
                let Some((outcome, count, lo, hi)) =
                    readable(row, &mut left_out, || format!("{table}: an outcome's rows"))?
                else {
                    continue;
                };
                *outcomes.entry(outcome).or_insert(0) += count as u64;
                seen(lo, hi);
            }
            let table = grain.histograms();
            let mut stmt = self.conn.prepare(&format!(
                "SELECT {t}, {KEY}, phase, histogram, count, sum_seconds, failures
                 FROM {table} WHERE {filter}"
            ))?;
            let rows = stmt.query_map(args, |r| {
                Ok((
                    row_key(r)?,
                    r.get::<_, String>(7)?,
                    Merged {
                        h: SparseHistogram::default(),
                        count: r.get(8)?,
                        sum: r.get(9)?,
                        failures: r.get(10)?,
                    },
                ))
            })?;
            for row in rows {
                let Some((key, text, mut m)) =
                    readable(row, &mut left_out, || format!("{table}: a row"))?
                else {
                    continue;
                };
                let (at, _, scenario, origin, cause, service, phase) = &key;
                let which = || {
                    format!(
                        "{table} of {} ({service}, {phase}; scenario {scenario}, origin {origin}, cause {cause:?})",
                        bounce_wire::civil::utc(at * n)
                    )
                };
                let Some(p) = Phase::parse(phase) else {
                    left_out.push(format!("{}: no such phase", which()));
                    continue;
                };
                match SparseHistogram::parse(&text) {
                    Ok(h) => m.h = h,
                    Err(e) => {
                        left_out.push(format!("{}: {e}", which()));
                        continue;
                    }
                }
                seen(*at, *at);
                series.entry((service.clone(), p)).or_default().add(&m);
            }
            if let Some((lo, hi)) = span {
                spans.push((grain, lo * n, (hi + 1) * n));
            }
        }
        if spans.is_empty() && left_out.is_empty() {
            return Ok(None);
        }
        Ok(Some(Compacted {
            restarts: outcomes.values().sum(),
            outcomes,
            rows: series
                .into_iter()
                .map(|((service, phase), m)| row_of(service, phase, &m))
                .collect(),
            first_hour_unix_nanos: spans.iter().map(|s| s.1).min().unwrap_or(0),
            end_unix_nanos: spans.iter().map(|s| s.2).max().unwrap_or(0),
            daily_until_unix_nanos: spans.iter().find(|s| s.0 == Grain::Day).map(|s| s.2),
            left_out,
        }))
    }
}

/// A row as read, or None when its columns do not convert (a value of
/// the wrong type): then it is added to `left_out`, named by `which`.
/// Any other error (the store failing) is the caller's.
fn readable<T>(
    row: rusqlite::Result<T>,
    left_out: &mut Vec<String>,
    which: impl FnOnce() -> String,
) -> Result<Option<T>, StoreError> {
    use rusqlite::Error as E;
    match row {
        Ok(v) => Ok(Some(v)),
        Err(
            e @ (E::FromSqlConversionFailure(..)
            | E::InvalidColumnType(..)
            | E::IntegralValueOutOfRange(..)),
        ) => {
            left_out.push(format!("{}: {e}", which()));
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// (hour, deployment, scenario, origin, cause): one group of a step.
type Group = (i64, String, String, &'static str, &'static str);

/// A merged row's key from its first seven columns.
fn row_key(r: &rusqlite::Row<'_>) -> rusqlite::Result<RowKey> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

/// Deletes one hourly row (`last`: its phase or outcome column).
fn delete_hour_row(
    tx: &Transaction<'_>,
    table: &str,
    last: &str,
    k: &RowKey,
) -> Result<(), StoreError> {
    tx.prepare_cached(&format!(
        "DELETE FROM {table} WHERE hour = ?1 AND deployment = ?2 AND scenario = ?3
           AND origin = ?4 AND cause = ?5 AND service = ?6 AND {last} = ?7"
    ))?
    .execute(params![k.0, k.1, k.2, k.3, k.4, k.5, k.6])?;
    Ok(())
}

/// Keeps a row retention cannot read, with why, out of its way.
fn set_row_aside(
    tx: &Transaction<'_>,
    what: &str,
    run_id: Option<&str>,
    body: &str,
    why: &str,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO retention_set_aside (what, run_id, body, error, set_aside_unix_nanos)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![what, run_id, body, why, now_unix_nanos()],
    )?;
    Ok(())
}

/// One table row from a merged histogram (quantiles as a run's table has
/// them: HDR's, 3 significant digits).
fn row_of(service: String, phase: Phase, m: &Merged) -> SummaryRow {
    let q = (!m.h.is_empty()).then(|| {
        let dense = m.h.to_hdr();
        let at = |q: f64| dense.value_at_quantile(q) as f64 / 1e6;
        [at(0.5), at(0.9), at(0.99), dense.max() as f64 / 1e6]
    });
    SummaryRow {
        service,
        phase,
        count: m.count as u64,
        p50: q.map(|q| q[0]),
        p90: q.map(|q| q[1]),
        p99: q.map(|q| q[2]),
        max: q.map(|q| q[3]),
        sum: m.sum,
        failures: m.failures as u64,
    }
}

/// Adds `m` into the stored row of `key` at `grain` (creating it). A
/// stored histogram that does not parse is set aside and the row starts
/// again from `m`.
fn add_histogram(
    tx: &Transaction<'_>,
    grain: Grain,
    key: &RowKey,
    m: &Merged,
    set_aside: &mut Vec<String>,
) -> Result<(), StoreError> {
    let (table, t) = (grain.histograms(), grain.column());
    let stored: Option<(String, i64, f64, i64)> = tx
        .prepare_cached(&format!(
            "SELECT histogram, count, sum_seconds, failures FROM {table}
             WHERE {t} = ?1 AND deployment = ?2 AND scenario = ?3 AND origin = ?4
               AND cause = ?5 AND service = ?6 AND phase = ?7"
        ))?
        .query_row(
            params![key.0, key.1, key.2, key.3, key.4, key.5, key.6],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    let mut sum = Merged::default();
    if let Some((text, count, s, failures)) = stored {
        match SparseHistogram::parse(&text) {
            Ok(h) => {
                sum = Merged {
                    h,
                    count,
                    sum: s,
                    failures,
                }
            }
            Err(e) => {
                let why = format!("{table} {key:?}: {e}");
                set_row_aside(tx, table, None, &text, &why)?;
                set_aside.push(why);
            }
        }
    }
    sum.add(m);
    tx.prepare_cached(&format!(
        "INSERT OR REPLACE INTO {table}
         ({t}, {KEY}, phase, histogram, count, sum_seconds, failures)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
    ))?
    .execute(params![
        key.0,
        key.1,
        key.2,
        key.3,
        key.4,
        key.5,
        key.6,
        sum.h.to_text(),
        sum.count,
        sum.sum,
        sum.failures
    ])?;
    Ok(())
}

/// Adds `n` restarts to the stored outcome count of `key` at `grain`.
fn add_outcome(tx: &Transaction<'_>, grain: Grain, key: &RowKey, n: i64) -> Result<(), StoreError> {
    let (table, t) = (grain.outcomes(), grain.column());
    tx.prepare_cached(&format!(
        "INSERT INTO {table} ({t}, {KEY}, outcome, count) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT ({t}, {KEY}, outcome) DO UPDATE SET count = count + ?8"
    ))?
    .execute(params![key.0, key.1, key.2, key.3, key.4, key.5, key.6, n])?;
    Ok(())
}

/// One (hour, deployment, scenario, origin, cause)'s timelines added into
/// its stored histograms and outcome counts.
fn fold_group(
    tx: &Transaction<'_>,
    (hour, deployment, scenario, origin, cause): &Group,
    timelines: &[TimelineRecord],
    set_aside: &mut Vec<String>,
) -> Result<(), StoreError> {
    let key = |service: &str, last: &str| -> RowKey {
        (
            *hour,
            deployment.clone(),
            scenario.clone(),
            origin.to_string(),
            cause.to_string(),
            service.to_string(),
            last.to_string(),
        )
    };
    let tally = RunTally::of(timelines);
    for ((service, phase), s) in tally.series() {
        let m = Merged {
            h: s.hist.clone(),
            count: s.count as i64,
            sum: s.sum,
            failures: s.failures as i64,
        };
        add_histogram(
            tx,
            Grain::Hour,
            &key(service, phase.as_str()),
            &m,
            set_aside,
        )?;
    }
    let mut by_outcome: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    for t in timelines {
        *by_outcome
            .entry((t.service.as_str(), t.outcome.as_str()))
            .or_default() += 1;
    }
    for ((service, outcome), n) in by_outcome {
        add_outcome(tx, Grain::Hour, &key(service, outcome), n)?;
    }
    Ok(())
}

pub(super) fn add_total(tx: &Transaction<'_>, what: &str, n: u64) -> Result<(), StoreError> {
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
pub(crate) mod tests {
    use super::*;
    use crate::fleet::log::FleetRecord;
    use crate::store::expire::Expiry;
    use crate::store::{Item, Stored};
    use bounce_wire::ingest::{Batch, RunHeader, histograms_of};
    use bounce_wire::summary::rows_from_timelines;
    use bounce_wire::{
        Boundary, BoundaryName, Cause, Clock, NodeFacts, Origin, Outcome, RunId, RunIdentity,
        Source, TargetRef,
    };
    use std::path::PathBuf;

    pub(crate) const DAY: i64 = DAY_NANOS;
    /// 2026-11-18, a fixed "now" the data is placed around.
    pub(crate) const NOW: i64 = 1_795_500_000_000_000_000;

    /// A watched restart of `service` on `node` that opened at `opened`,
    /// stopped in `stop_ms`; a timeout never started again.
    pub(crate) fn watched(
        run: &str,
        node: &str,
        service: &str,
        opened: i64,
        stop_ms: i64,
    ) -> TimelineRecord {
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

    pub(crate) fn batch(t: &TimelineRecord, started: i64, seq: u64) -> Item {
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

    pub(crate) fn temp_store(name: &str) -> (PathBuf, Store) {
        let path =
            std::env::temp_dir().join(format!("bounce-compact-{name}-{}", std::process::id()));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        let s = Store::open(&path).unwrap();
        (path, s)
    }

    /// 30 restarts a month ago over two hours on n1, 5 an hour ago on n2.
    pub(crate) fn month_old_and_fresh(s: &mut Store) -> Vec<TimelineRecord> {
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

        // A resent batch of a compacted run is still a duplicate, and
        // counts as hearing from the run.
        heard(&s, "w-n1-old", NOW - 30 * DAY);
        let again = s
            .commit_group(&[batch(&old[3], NOW - 30 * DAY, 4)])
            .unwrap();
        assert_eq!(again, [Stored::Duplicate]);
        assert_eq!(counters(&s), before);
        let last: i64 = s
            .conn
            .query_row(
                "SELECT last_batch_unix_nanos FROM runs WHERE run_id = 'w-n1-old'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(last > NOW, "heard now, on the collector's clock");

        // Expiry: the hours go; a run its agents sent to a day ago stays,
        // so its batch keys still make resends duplicates.
        heard(&s, "w-n1-old", NOW - DAY);
        let (before_cut, quiet) = (NOW - 29 * DAY, NOW - 2 * DAY);
        let e = expire_all(&mut s, before_cut, quiet);
        assert!(e.runs == 0 && e.hour_rows > 0, "{e:?}");
        assert_eq!(restarts_of(&s).len(), 2, "the live run stays");
        // Quiet for the window, but its agent never said the run ended: it
        // may come back with a spool, so it waits for the histogram cutoff.
        heard(&s, "w-n1-old", NOW - 10 * DAY);
        assert_eq!(expire_all(&mut s, before_cut, quiet).runs, 0);
        // Its agent ended it: quiet for the window is enough.
        s.conn
            .execute(
                "UPDATE run_agents SET finished_unix_nanos = ?1 WHERE run_id = 'w-n1-old'",
                [NOW - 20 * DAY],
            )
            .unwrap();
        assert_eq!(expire_all(&mut s, before_cut, quiet).runs, 1);
        assert_eq!(restarts_of(&s), [("w-n2-new".to_string(), 5, 0)]);
        assert_eq!(s.compacted("d", None, None, None).unwrap(), None);
        let d = s.dropped().unwrap();
        assert!(d.runs == 1 && d.hour_rows > 0, "{d:?}");
        assert_eq!(counters(&s), before, "counters never go down");
        drop(s);
        let _ = std::fs::remove_file(&path);
    }

    /// When the collector last heard from `run` (its clock).
    pub(crate) fn heard(s: &Store, run: &str, at: i64) {
        s.conn
            .execute(
                "UPDATE runs SET last_batch_unix_nanos = ?2 WHERE run_id = ?1",
                params![run, at],
            )
            .unwrap();
    }

    /// Expiry steps until one finds nothing; what they did together.
    pub(crate) fn expire_all(s: &mut Store, before: i64, quiet_since: i64) -> Done {
        let mut all = Done::default();
        for _ in 0..1000 {
            let d = s
                .expire(
                    Expiry {
                        before,
                        quiet_since,
                    },
                    5,
                )
                .unwrap();
            if d == Done::default() {
                return all;
            }
            all.hour_rows += d.hour_rows;
            all.day_rows += d.day_rows;
            all.runs += d.runs;
            all.fleet_log_rows += d.fleet_log_rows;
        }
        panic!("expiry never ended")
    }

    pub(crate) fn compact_all(s: &mut Store, before: i64) -> Done {
        let mut all = Done::default();
        for _ in 0..1000 {
            let d = s.compact_timelines(before, 7).unwrap();
            if d.timelines == 0 && d.set_aside.is_empty() && d.filled == 0 {
                return all;
            }
            all.timelines += d.timelines;
            all.set_aside.extend(d.set_aside);
        }
        panic!("compaction never ended")
    }

    #[test]
    fn a_fleet_log_expires_with_its_run_once_quiet() {
        let (path, mut s) = temp_store("fleet");
        month_old_and_fresh(&mut s);
        compact_all(&mut s, NOW - 14 * DAY);
        let record = FleetRecord::Event {
            event: bounce_fleet::Event::Resumed {
                at: bounce_fleet::Millis(1),
            },
        };
        s.commit_group(&[
            Item::Fleet("w-n1-old".into(), vec![record.clone(), record.clone()]),
            // A fleet run no agent ever sent a batch of.
            Item::Fleet("fleet-joining".into(), vec![record]),
        ])
        .unwrap();
        let written = |s: &Store, run: &str, at: i64| {
            s.conn
                .execute(
                    "UPDATE fleet_log SET written_unix_nanos = ?2 WHERE run_id = ?1",
                    params![run, at],
                )
                .unwrap();
        };
        // Its agent long quiet, but the fleet run still wrote a day ago.
        heard(&s, "w-n1-old", NOW - 30 * DAY);
        written(&s, "w-n1-old", NOW - DAY);
        written(&s, "fleet-joining", NOW - 3 * DAY);
        let (before, quiet) = (NOW - 29 * DAY, NOW - 2 * DAY);
        let e = expire_all(&mut s, before, quiet);
        assert_eq!((e.runs, e.fleet_log_rows), (0, 0), "{e:?}");
        assert_eq!(s.fleet_log().unwrap().len(), 3);
        // Quiet: the run goes with its whole log; the other log waits for
        // the histogram cutoff (it may still be joining).
        written(&s, "w-n1-old", NOW - 3 * DAY);
        let e = expire_all(&mut s, before, quiet);
        assert_eq!((e.runs, e.fleet_log_rows), (1, 2), "{e:?}");
        let left: Vec<String> = s.fleet_log().unwrap().into_iter().map(|r| r.0).collect();
        assert_eq!(left, ["fleet-joining"]);
        written(&s, "fleet-joining", NOW - 40 * DAY);
        assert_eq!(expire_all(&mut s, before, quiet).fleet_log_rows, 1);
        assert!(s.fleet_log().unwrap().is_empty());
        assert_eq!(s.dropped().unwrap().fleet_log_rows, 3);
        assert_eq!(restarts_of(&s).len(), 1, "the fresh run stays");
        drop(s);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn an_older_store_s_runs_start_their_quiet_time_when_opened() {
        let (path, mut s) = temp_store("quiet");
        month_old_and_fresh(&mut s);
        s.conn
            .execute_batch("ALTER TABLE runs DROP COLUMN last_batch_unix_nanos")
            .unwrap();
        drop(s);
        let mut s = Store::open(&path).unwrap();
        compact_all(&mut s, NOW - 14 * DAY);
        s.conn
            .execute("UPDATE run_agents SET finished_unix_nanos = 1", [])
            .unwrap();
        // Its agents quiet since NOW (a past instant): not this run, whose
        // quiet time began when the store was opened.
        let e = expire_all(&mut s, NOW - 29 * DAY, NOW);
        assert_eq!(e.runs, 0, "{e:?}");
        assert_eq!(expire_all(&mut s, NOW - 29 * DAY, i64::MAX).runs, 1);
        drop(s);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn an_unreadable_row_is_set_aside_and_the_rest_compacted() {
        let (path, mut s) = temp_store("unreadable");
        month_old_and_fresh(&mut s);
        s.conn
            .execute(
                "INSERT INTO timelines (run_id, agent, service, outcome, record, opened_unix_nanos)
                 VALUES ('w-n1-old', 'n1', 'nova_api', 'ok', 'not json', ?1),
                        ('w-n1-old', 'n1', 'nova_api', 'ok', '{\"run_id\": 1}', NULL)",
                [NOW - 30 * DAY],
            )
            .unwrap();
        let done = compact_all(&mut s, NOW - 14 * DAY);
        assert_eq!(done.timelines, 30);
        assert_eq!(done.set_aside.len(), 2, "{:?}", done.set_aside);
        assert!(
            done.set_aside.iter().all(|w| w.contains("of run w-n1-old")),
            "{:?}",
            done.set_aside
        );
        let f = s.facts().unwrap();
        assert_eq!((f.timelines, f.dropped.set_aside), (5, 2));
        assert_eq!(f.set_aside.len(), 2);

        // A merged hour that does not parse: set aside, the hour goes on
        // from what is folded into it next.
        let hour0 = (NOW - 30 * DAY).div_euclid(HOUR_NANOS);
        let spoiled = s
            .conn
            .execute(
                "UPDATE compacted_histograms SET histogram = 'garbage'
                 WHERE hour = ?1 AND service = 'nova_api' AND phase IN ('stop', 'start')",
                [hour0],
            )
            .unwrap();
        assert_eq!(spoiled, 2, "stop, start");
        let late = watched("w-n1-old", "n1", "nova_api", NOW - 30 * DAY, 500);
        s.commit_group(&[batch(&late, NOW - 30 * DAY, 99)]).unwrap();
        let done = compact_all(&mut s, NOW - 14 * DAY);
        assert_eq!(
            (done.timelines, done.set_aside.len()),
            (1, spoiled),
            "{done:?}"
        );
        let c = s.compacted("d", None, None, None).unwrap().unwrap();
        assert_eq!(c.restarts, 31, "outcome counts were readable");
        let stop = |c: &Compacted| {
            c.rows
                .iter()
                .find(|r| r.service == "nova_api" && r.phase == Phase::Stop)
                .map(|r| r.count)
        };
        assert_eq!(
            stop(&c),
            Some(1 + 5),
            "hour 0 again from the late one, hour 1's five"
        );
        // Rolled up, unreadable hours are set aside too, not looped on.
        let hours = s
            .conn
            .execute("UPDATE compacted_histograms SET histogram = 'garbage'", [])
            .unwrap();
        let rolled = s.roll_up_hours(NOW, 1000).unwrap();
        assert_eq!(rolled.set_aside.len(), hours);
        assert_eq!(s.roll_up_hours(NOW, 1000).unwrap(), Done::default());
        let c = s.compacted("d", None, None, None).unwrap().unwrap();
        assert_eq!((c.restarts, c.rows.len()), (31, 0));
        assert_eq!(s.dropped().unwrap().set_aside, (2 + spoiled + hours) as u64);
        drop(s);
        let _ = std::fs::remove_file(&path);
    }

    /// Makes merged rows unreadable as a damaged (or newer) store would
    /// hold them: `sql` is an UPDATE of them; how many it changed.
    pub(crate) fn spoil(s: &Store, sql: &str) -> usize {
        s.conn.execute(sql, []).unwrap()
    }

    #[test]
    fn a_range_leaves_out_a_merged_row_it_cannot_read_and_names_it() {
        let (path, mut s) = temp_store("leftout");
        month_old_and_fresh(&mut s);
        compact_all(&mut s, NOW - 14 * DAY);
        let range = |s: &Store| {
            s.compacted("d", Some(NOW - 31 * DAY), Some(NOW - 29 * DAY), None)
                .unwrap()
                .expect("merged rows in range")
        };
        let whole = range(&s);
        assert!(whole.left_out.is_empty() && whole.readable());
        // One histogram that does not parse, one of a phase this collector
        // does not know (a newer one's).
        let hour = |s: &Store, service: &str, phase: &str| -> i64 {
            s.conn
                .query_row(
                    "SELECT min(hour) FROM compacted_histograms WHERE service = ?1 AND phase = ?2",
                    params![service, phase],
                    |r| r.get(0),
                )
                .unwrap()
        };
        let h = hour(&s, "keystone", "stop");
        spoil(
            &s,
            &format!(
                "UPDATE compacted_histograms SET histogram = 'garbage'
                 WHERE hour = {h} AND service = 'keystone' AND phase = 'stop'"
            ),
        );
        let g = hour(&s, "glance_api", "start");
        spoil(
            &s,
            &format!(
                "UPDATE compacted_histograms SET phase = 'warmup'
                 WHERE hour = {g} AND service = 'glance_api' AND phase = 'start'"
            ),
        );
        let c = range(&s);
        assert_eq!(c.left_out.len(), 2, "{:?}", c.left_out);
        assert!(
            c.left_out[0].contains("compacted_histograms of ")
                && c.left_out.iter().any(|w| w.contains("(keystone, stop;"))
                && c.left_out
                    .iter()
                    .any(|w| w.contains("(glance_api, warmup;") && w.contains("no such phase")),
            "{:?}",
            c.left_out
        );
        assert_eq!(c.restarts, whole.restarts, "the outcome counts all read");
        let count = |c: &Compacted, service: &str, phase: Phase| {
            c.rows
                .iter()
                .find(|r| r.service == service && r.phase == phase)
                .map_or(0, |r| r.count)
        };
        assert!(count(&c, "keystone", Phase::Stop) < count(&whole, "keystone", Phase::Stop));
        assert_eq!(
            count(&c, "nova_api", Phase::Stop),
            count(&whole, "nova_api", Phase::Stop)
        );
        // Nothing readable: still an answer, which says so.
        spoil(&s, "UPDATE compacted_histograms SET histogram = 'garbage'");
        spoil(
            &s,
            "UPDATE compacted_outcomes SET outcome = CAST(outcome AS BLOB)",
        );
        let c = range(&s);
        assert!(!c.readable(), "{c:?}");
        assert!(c.left_out.len() > 2, "{:?}", c.left_out);
        assert!(
            c.left_out
                .iter()
                .any(|w| w.starts_with("compacted_outcomes: an outcome's rows")),
            "{:?}",
            c.left_out
        );
        drop(s);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn hours_roll_up_into_days_that_reports_read_the_same() {
        let (path, mut s) = temp_store("rollup");
        month_old_and_fresh(&mut s);
        compact_all(&mut s, NOW - 14 * DAY);
        let range = |s: &Store| {
            s.compacted("d", Some(NOW - 31 * DAY), Some(NOW - 29 * DAY), None)
                .unwrap()
                .unwrap()
        };
        let hourly = range(&s);
        assert_eq!(hourly.daily_until_unix_nanos, None);
        let mut steps = 0;
        while s.roll_up_hours(NOW - 20 * DAY, 3).unwrap().rolled_up > 0 {
            steps += 1;
        }
        assert!(steps > 2, "bounded steps: {steps}");
        let daily = range(&s);
        let day = (NOW - 30 * DAY).div_euclid(DAY) * DAY;
        assert_eq!(daily.rows, hourly.rows, "the same table, from days");
        assert_eq!(daily.outcomes, hourly.outcomes);
        assert_eq!(
            (
                daily.first_hour_unix_nanos,
                daily.end_unix_nanos,
                daily.daily_until_unix_nanos
            ),
            (day, day + DAY, Some(day + DAY))
        );
        let f = s.facts().unwrap();
        assert_eq!((f.compacted_hours, f.compacted_days), (0, 1));
        assert_eq!(f.oldest_compacted_day_unix_nanos, Some(day));

        // A late restart of that day: hourly again, read with the day.
        let late = watched("w-n1-old", "n1", "keystone", NOW - 30 * DAY, 900);
        s.commit_group(&[batch(&late, NOW - 30 * DAY, 99)]).unwrap();
        compact_all(&mut s, NOW - 14 * DAY);
        assert_eq!(range(&s).restarts, 31);

        // Expiry takes whole days past the cutoff.
        let e = expire_all(&mut s, NOW - 29 * DAY, NOW - 2 * DAY);
        assert!(e.day_rows > 0 && e.hour_rows > 0, "{e:?}");
        assert_eq!(s.compacted("d", None, None, None).unwrap(), None);
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
