//! Writing a run's output folder (its layout and reader are wire's
//! `folder`): `timelines.jsonl` (a whole line appended and fsynced as each
//! restart ends, so a crash loses nothing already measured), then
//! `histograms.hlog` and `summary.json` when the run ends, each written
//! whole or not at all (`durable`), and the scenario as it was read.
//!
//! Memory stays flat whatever the run's length: a timeline is written,
//! folded into the run's tally (sparse histograms, counts) and dropped.

use crate::durable::{LineFile, WriteError, write_whole};
use crate::stream::Streamer;
use bounce_wire::folder::{HISTOGRAMS, SCENARIO, SUMMARY, TIMELINES};
use bounce_wire::ingest::RunHeader;
use bounce_wire::summary::{rows_of, where_time_went_of};
use bounce_wire::tally::RunTally;
use bounce_wire::{RunSummary, TimelineRecord};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error(
        "{0} already holds a run ({TIMELINES}); choose a new --output folder, nothing was overwritten"
    )]
    NotEmpty(PathBuf),
    #[error("{0}")]
    Write(#[from] WriteError),
    #[error(
        "{source}; the timeline of {target} (iteration {iteration}) is lost, every one before it is in the file"
    )]
    Timeline {
        source: WriteError,
        target: String,
        iteration: u32,
    },
    #[error("{0}")]
    Stream(#[from] crate::stream::StreamError),
    #[error("{path}: {source}")]
    Hist {
        path: PathBuf,
        source: bounce_wire::HistError,
    },
}

/// Appends one timeline to a `timelines.jsonl` as one whole line, fsynced
/// before returning (what is measured survives a crash of the agent), or
/// not at all (a full or read-only disk leaves no half line).
pub fn append_timeline(file: &mut LineFile, rec: &TimelineRecord) -> Result<(), OutputError> {
    let mut line = serde_json::to_vec(rec).expect("timeline records always serialize");
    line.push(b'\n');
    file.append(&line).map_err(|source| OutputError::Timeline {
        source,
        target: rec.target.name().to_string(),
        iteration: rec.iteration,
    })
}

pub struct RunOutput {
    dir: PathBuf,
    timelines: LineFile,
    tally: RunTally,
    /// The collector stream, when the run has one.
    streamer: Option<Streamer>,
}

/// A run's end: its summary (made whether or not it could be written),
/// whether the folder got it, and the stream, still to be finished.
pub struct Finished {
    pub summary: RunSummary,
    pub written: Result<(), OutputError>,
    pub streamer: Option<Streamer>,
}

impl RunOutput {
    /// Creates the folder (or uses an empty one) and writes the scenario into it.
    pub fn create(dir: &Path, scenario_text: &str) -> Result<RunOutput, OutputError> {
        std::fs::create_dir_all(dir).map_err(|e| WriteError::new(dir, e))?;
        let tl_path = dir.join(TIMELINES);
        if tl_path.exists() {
            return Err(OutputError::NotEmpty(dir.to_path_buf()));
        }
        write_whole(&dir.join(SCENARIO), scenario_text.as_bytes())?;
        Ok(RunOutput {
            dir: dir.to_path_buf(),
            timelines: LineFile::create(&tl_path)?,
            tally: RunTally::default(),
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

    /// Appends one timeline, folds it into the tally and streams it. A
    /// timeline that could not be written is neither tallied nor streamed,
    /// so the folder, its summary and the collector agree; one written but
    /// not spooled waits in memory for the end of the run (see `stream`).
    pub fn record(&mut self, rec: TimelineRecord) -> Result<(), OutputError> {
        append_timeline(&mut self.timelines, &rec)?;
        self.tally.add(&rec);
        if let Some(s) = &mut self.streamer {
            s.timeline(&rec)?;
        }
        Ok(())
    }

    /// The run so far.
    pub fn tally(&self) -> &RunTally {
        &self.tally
    }

    /// Makes the summary of the run `run` began, which ended at
    /// `finished_unix_nanos`, and writes it and the histograms; a folder
    /// that cannot take them (full, read-only) keeps what it had.
    pub fn finish(
        mut self,
        run: &RunHeader,
        finished_unix_nanos: i64,
        interrupted: bool,
    ) -> Finished {
        let rows = rows_of(&self.tally);
        let summary = RunSummary {
            where_time_went: where_time_went_of(&self.tally, &rows),
            rows,
            identity: run.identity.clone(),
            started_unix_nanos: run.started_unix_nanos,
            finished_unix_nanos,
            planned: run.planned,
            not_started: run.planned.saturating_sub(self.tally.restarts()),
            outcomes: self.tally.outcomes().clone(),
            interrupted,
        };
        Finished {
            written: self.write_end(&summary),
            summary,
            streamer: self.streamer.take(),
        }
    }

    fn write_end(&self, summary: &RunSummary) -> Result<(), OutputError> {
        let hlog = self.dir.join(HISTOGRAMS);
        let start = UNIX_EPOCH + Duration::from_nanos(summary.started_unix_nanos.max(0) as u64);
        let length = Duration::from_nanos(
            (summary.finished_unix_nanos - summary.started_unix_nanos).max(0) as u64,
        );
        let id = &summary.identity;
        let comment = format!(
            "bounce run {} deployment={} scenario={} node={}; values in microseconds; tags are service/phase",
            id.run_id, id.deployment, id.scenario, id.node.hostname
        );
        let mut bytes = Vec::new();
        self.tally
            .write_hlog(&mut bytes, start, length, &comment)
            .map_err(|source| OutputError::Hist {
                path: hlog.clone(),
                source,
            })?;
        write_whole(&hlog, &bytes)?;
        let text = serde_json::to_string_pretty(summary).expect("summaries always serialize");
        write_whole(&self.dir.join(SUMMARY), (text + "\n").as_bytes())?;
        Ok(())
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
