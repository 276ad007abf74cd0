//! Writing a run's output folder (its layout and reader are wire's
//! `folder`): `timelines.jsonl` (appended and flushed as each restart ends,
//! so a crash loses nothing already measured), then `histograms.hlog` and
//! `summary.json` when the run ends, and the scenario as it was read.

use crate::stream::Streamer;
use bounce_wire::folder::{HISTOGRAMS, SCENARIO, SUMMARY, TIMELINES};
use bounce_wire::ingest::RunHeader;
use bounce_wire::summary::{rows_from, where_time_went};
use bounce_wire::{Outcome, PhaseHistograms, RunSummary, TimelineRecord};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error(
        "{0} already holds a run ({TIMELINES}); choose a new --output folder, nothing was overwritten"
    )]
    NotEmpty(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Stream(#[from] crate::stream::StreamError),
    #[error("{path}: {source}")]
    Hist {
        path: PathBuf,
        source: bounce_wire::HistError,
    },
}

/// Appends one timeline line to `timelines.jsonl` (at `path`) and fsyncs it
/// before returning: what is measured survives a crash of the agent.
pub fn append_timeline(
    file: &mut BufWriter<File>,
    path: &Path,
    rec: &TimelineRecord,
) -> Result<(), OutputError> {
    let line = serde_json::to_string(rec).expect("timeline records always serialize");
    writeln!(file, "{line}").map_err(io_err(path))?;
    file.flush().map_err(io_err(path))?;
    file.get_ref().sync_data().map_err(io_err(path))
}

pub struct RunOutput {
    dir: PathBuf,
    timelines: BufWriter<File>,
    histograms: PhaseHistograms,
    records: Vec<TimelineRecord>,
    /// The collector stream, when the run has one.
    streamer: Option<Streamer>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> OutputError + '_ {
    move |source| OutputError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl RunOutput {
    /// Creates the folder (or uses an empty one) and writes the scenario into it.
    pub fn create(dir: &Path, scenario_text: &str) -> Result<RunOutput, OutputError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let tl_path = dir.join(TIMELINES);
        if tl_path.exists() {
            return Err(OutputError::NotEmpty(dir.to_path_buf()));
        }
        let sc_path = dir.join(SCENARIO);
        std::fs::write(&sc_path, scenario_text).map_err(io_err(&sc_path))?;
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&tl_path)
            .map_err(io_err(&tl_path))?;
        Ok(RunOutput {
            dir: dir.to_path_buf(),
            timelines: BufWriter::new(file),
            histograms: PhaseHistograms::default(),
            records: Vec::new(),
            streamer: None,
        })
    }

    /// Also send every timeline to a collector (through the folder's spool).
    pub fn stream_to(&mut self, streamer: Streamer) {
        self.streamer = Some(streamer);
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends one timeline and folds its observed phases into the histograms.
    pub fn record(&mut self, rec: TimelineRecord) -> Result<(), OutputError> {
        append_timeline(&mut self.timelines, &self.dir.join(TIMELINES), &rec)?;
        for (phase, secs) in &rec.phases {
            self.histograms.record(&rec.service, *phase, *secs);
        }
        if let Some(s) = &mut self.streamer {
            s.timeline(&rec)?;
        }
        self.records.push(rec);
        Ok(())
    }

    pub fn records(&self) -> &[TimelineRecord] {
        &self.records
    }

    /// Writes the histograms and the summary of the run `run` began, which
    /// ended at `finished_unix_nanos`; returns the summary, and the stream
    /// (still to be finished) if there is one.
    pub fn finish(
        mut self,
        run: &RunHeader,
        finished_unix_nanos: i64,
        interrupted: bool,
    ) -> Result<(RunSummary, Option<Streamer>), OutputError> {
        let streamer = self.streamer.take();
        let mut outcomes: BTreeMap<Outcome, u64> = BTreeMap::new();
        for r in &self.records {
            *outcomes.entry(r.outcome).or_default() += 1;
        }
        let rows = rows_from(&self.records, &self.histograms);
        let summary = RunSummary {
            where_time_went: where_time_went(&self.records, &rows),
            rows,
            identity: run.identity.clone(),
            started_unix_nanos: run.started_unix_nanos,
            finished_unix_nanos,
            planned: run.planned,
            not_started: run.planned.saturating_sub(self.records.len() as u64),
            outcomes,
            interrupted,
        };

        let hlog = self.dir.join(HISTOGRAMS);
        let mut w = BufWriter::new(File::create(&hlog).map_err(io_err(&hlog))?);
        let start = UNIX_EPOCH + Duration::from_nanos(summary.started_unix_nanos.max(0) as u64);
        let length = Duration::from_nanos(
            (summary.finished_unix_nanos - summary.started_unix_nanos).max(0) as u64,
        );
        let id = &summary.identity;
        let comment = format!(
            "bounce run {} deployment={} scenario={} node={}; values in microseconds; tags are service/phase",
            id.run_id, id.deployment, id.scenario, id.node.hostname
        );
        self.histograms
            .write_hlog(&mut w, start, length, &comment)
            .map_err(|source| OutputError::Hist {
                path: hlog.clone(),
                source,
            })?;
        w.flush().map_err(io_err(&hlog))?;

        let sum_path = self.dir.join(SUMMARY);
        let text = serde_json::to_string_pretty(&summary).expect("summaries always serialize");
        std::fs::write(&sum_path, text + "\n").map_err(io_err(&sum_path))?;
        Ok((summary, streamer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_to_overwrite_a_run() {
        let dir = std::env::temp_dir().join(format!("bounce-out-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let out = RunOutput::create(&dir, "x").unwrap();
        drop(out);
        let err = RunOutput::create(&dir, "x").err().unwrap().to_string();
        assert!(err.contains("already holds a run"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
