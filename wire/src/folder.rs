//! A run folder (`bounce-agent run --output DIR`): the names of its files,
//! in one place, and the one reader of it, used by the collector's
//! `summarize`, reports made `--from` a folder and the tests.
//!
//! The agent appends `timelines.jsonl` as each restart ends and writes
//! `histograms.hlog` and `summary.json` when the run ends; a run that was
//! killed has neither, and may end in a torn line (the kill cut a write
//! short). The reader skips such a last line and says so ([`TornLine`]);
//! a bad line anywhere else is an error naming the file and line.

use crate::export::RunData;
use crate::hist::each_logged;
use crate::run::NodeFacts;
use crate::sparse::SparseHistogram;
use crate::summary::RunSummary;
use crate::tally::RunTally;
use crate::timeline::Phase;
use crate::timeline::TimelineRecord;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One JSON line per restart, appended and fsynced as each ends.
pub const TIMELINES: &str = "timelines.jsonl";
/// HdrHistogram interval log, one histogram per service/phase (at the end).
pub const HISTOGRAMS: &str = "histograms.hlog";
/// The run's table and facts (at the end).
pub const SUMMARY: &str = "summary.json";
/// The scenario as the agent read it.
pub const SCENARIO: &str = "scenario.yaml";
/// Batches waiting for the collector (`<seq>.json`), when the run streams.
pub const SPOOL: &str = "spool";
/// Inside [`SPOOL`]: batches the collector refused, kept for the operator.
pub const REFUSED: &str = "refused";
/// Inside [`SPOOL`]: the seqs the collector acknowledged, one a line.
pub const ACKED: &str = "acked";
/// How the run is streamed (the agent's name and the run's header), when
/// it is: what rebuilds a batch from `timelines.jsonl` byte for byte.
pub const STREAM: &str = "stream.json";

#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: not a timeline: {reason}")]
    Timeline {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// A last line of `timelines.jsonl` that is not a whole record: what a
/// kill in the middle of a write leaves. Skipped, and said.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{path}:{line}: skipped a torn last line (the agent was stopped while writing it): {reason}"
)]
pub struct TornLine {
    pub path: PathBuf,
    pub line: usize,
    pub reason: String,
}

/// The records of a `timelines.jsonl`, and the torn last line if it had one.
#[derive(Debug, Clone)]
pub struct Timelines {
    pub records: Vec<TimelineRecord>,
    pub torn: Option<TornLine>,
}

/// A whole folder read as one run.
#[derive(Debug, Clone)]
pub struct FolderRun {
    pub run: RunData,
    pub torn: Option<TornLine>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FolderError + '_ {
    move |source| FolderError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads a `timelines.jsonl`. Blank lines are ignored. A last line that
/// does not end in a newline and is not a record is torn: skipped and
/// returned in [`Timelines::torn`]; any other bad line is an error.
pub fn read_timelines(path: &Path) -> Result<Timelines, FolderError> {
    // Bytes, not a String: a torn line may end inside a UTF-8 sequence.
    let bytes = std::fs::read(path).map_err(io(path))?;
    let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    // With a final newline the last piece is empty; without one it is the
    // line the write did not finish (or a whole record missing only its newline).
    let unterminated = lines.len() - 1;
    let mut records = Vec::with_capacity(lines.len());
    let mut torn = None;
    for (i, line) in lines.iter().enumerate() {
        if line.trim_ascii().is_empty() {
            continue;
        }
        match serde_json::from_slice(line) {
            Ok(r) => records.push(r),
            Err(e) if i == unterminated => {
                torn = Some(TornLine {
                    path: path.to_path_buf(),
                    line: i + 1,
                    reason: e.to_string(),
                })
            }
            Err(e) => {
                return Err(FolderError::Timeline {
                    path: path.to_path_buf(),
                    line: i + 1,
                    reason: e.to_string(),
                });
            }
        }
    }
    Ok(Timelines { records, torn })
}

/// An agent's output folder.
#[derive(Debug, Clone)]
pub struct RunFolder {
    dir: PathBuf,
}

impl RunFolder {
    pub fn new(dir: &Path) -> RunFolder {
        RunFolder {
            dir: dir.to_path_buf(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A file of the folder, by one of this module's names.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// `timelines.jsonl`, which every run folder has.
    pub fn timelines(&self) -> Result<Timelines, FolderError> {
        let path = self.path(TIMELINES);
        if !path.exists() {
            return Err(FolderError::Invalid {
                path: self.dir.clone(),
                reason: format!("no {TIMELINES}: not the --output folder of a bounce-agent run"),
            });
        }
        read_timelines(&path)
    }

    /// Checks `histograms.hlog` against the timelines' tally: each
    /// (service, phase) holds the values the timelines observed, bucket for
    /// bucket. Read one histogram at a time; false if the run did not
    /// finish (no log).
    pub fn check_histograms(&self, tally: &RunTally) -> Result<bool, FolderError> {
        let path = self.path(HISTOGRAMS);
        let Some(bytes) = read_if_there(&path, |p| std::fs::read(p))? else {
            return Ok(false);
        };
        let invalid = |reason: String| FolderError::Invalid {
            path: path.clone(),
            reason,
        };
        let mut logged: BTreeMap<(String, Phase), SparseHistogram> = BTreeMap::new();
        each_logged(&bytes, |_, key, h| {
            logged
                .entry(key)
                .or_default()
                .add(&SparseHistogram::from_hdr(h));
            Ok(())
        })
        .map_err(|e| invalid(e.to_string()))?;
        let empty = SparseHistogram::default();
        let observed = tally.series().iter().filter(|(_, s)| s.count > 0);
        let keys: BTreeSet<&(String, Phase)> =
            observed.map(|(k, _)| k).chain(logged.keys()).collect();
        for key in keys {
            let in_log = logged.get(key).unwrap_or(&empty);
            let mine = tally.series().get(key).map(|s| &s.hist).unwrap_or(&empty);
            if in_log != mine {
                return Err(invalid(format!(
                    "{}/{} holds {} values but {TIMELINES} has {}{}; the folder is inconsistent",
                    key.0,
                    key.1,
                    in_log.len(),
                    mine.len(),
                    if in_log.len() == mine.len() {
                        " (other values)"
                    } else {
                        ""
                    }
                )));
            }
        }
        Ok(true)
    }

    /// `summary.json` (None if the run did not finish).
    pub fn summary(&self) -> Result<Option<RunSummary>, FolderError> {
        let path = self.path(SUMMARY);
        let Some(text) = read_if_there(&path, |p| std::fs::read_to_string(p))? else {
            return Ok(None);
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| FolderError::Invalid {
                path,
                reason: e.to_string(),
            })
    }

    /// The scenario as the agent read it, if the folder has it.
    pub fn scenario(&self) -> Result<Option<String>, FolderError> {
        read_if_there(&self.path(SCENARIO), |p| std::fs::read_to_string(p))
    }

    /// The whole folder as one run: the timelines (one run only), checked
    /// against the histogram log if there is one, the scenario, and the
    /// summary's facts; a run that was killed has no summary, and its
    /// identity and node name come from its first timeline.
    pub fn read(&self) -> Result<FolderRun, FolderError> {
        let Timelines { records, torn } = self.timelines()?;
        let mut runs: Vec<&str> = records.iter().map(|t| t.run_id.as_str()).collect();
        runs.sort();
        runs.dedup();
        if runs.len() > 1 {
            return Err(FolderError::Invalid {
                path: self.path(TIMELINES),
                reason: format!(
                    "holds several runs ({}); one folder, one run",
                    runs.join(", ")
                ),
            });
        }
        self.check_histograms(&RunTally::of(&records))?;
        let scenario_yaml = self.scenario()?;
        let origin = format!("agent output folder {}", self.dir.display());
        let run = match self.summary()? {
            Some(s) => RunData {
                run_id: s.identity.run_id,
                deployment: s.identity.deployment,
                scenario: s.identity.scenario,
                scenario_yaml,
                nodes: vec![s.identity.node],
                started_unix_nanos: s.started_unix_nanos,
                finished_unix_nanos: Some(s.finished_unix_nanos),
                planned: s.planned,
                not_started: s.not_started,
                interrupted: s.interrupted,
                timelines: records,
                origin,
            },
            None => {
                let first = records.first().ok_or_else(|| FolderError::Invalid {
                    path: self.dir.clone(),
                    reason: "no summary.json and no timeline: nothing was measured".into(),
                })?;
                let started = records
                    .iter()
                    .filter_map(|t| t.timestamps.first().map(|b| b.unix_nanos))
                    .min()
                    .unwrap_or_default();
                RunData {
                    run_id: first.run_id.clone(),
                    deployment: first.deployment.clone(),
                    scenario: first.scenario.clone(),
                    scenario_yaml,
                    nodes: vec![NodeFacts {
                        hostname: first.node.clone(),
                        ..NodeFacts::default()
                    }],
                    started_unix_nanos: started,
                    finished_unix_nanos: None,
                    planned: records.len() as u64,
                    not_started: 0,
                    interrupted: false,
                    timelines: records,
                    origin,
                }
            }
        };
        Ok(FolderRun { run, torn })
    }
}

/// A file's contents, or None if it is not there.
fn read_if_there<T>(
    path: &Path,
    read: fn(&Path) -> std::io::Result<T>,
) -> Result<Option<T>, FolderError> {
    match read(path) {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hist::PhaseHistograms;

    fn line(service: &str) -> String {
        serde_json::json!({
            "run_id": "r1", "deployment": "d", "scenario": "s", "node": "n1",
            "target": {"kind": "docker", "name": service, "id": "x"},
            "service": service, "iteration": 1, "action": "restart", "outcome": "ok",
            "error": null, "exit_code": null, "signals": [], "oom_killed": false,
            "phases": {"stop": 0.5}, "timestamps": [], "probes": []
        })
        .to_string()
    }

    struct Dir(PathBuf);
    impl Dir {
        fn new(label: &str) -> Dir {
            let d = std::env::temp_dir()
                .join(format!("bounce-wire-folder-{label}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap();
            Dir(d)
        }
        fn timelines(&self, text: &[u8]) -> RunFolder {
            std::fs::write(self.0.join(TIMELINES), text).unwrap();
            RunFolder::new(&self.0)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_named() {
        let d = Dir::new("torn");
        let whole = format!("{}\n{}\n", line("a"), line("b"));
        let cut = &line("c")[..40];
        let folder = d.timelines(format!("{whole}{cut}").as_bytes());
        let tl = folder.timelines().unwrap();
        assert_eq!(tl.records.len(), 2);
        let torn = tl.torn.expect("the torn line is reported");
        assert_eq!((torn.path.clone(), torn.line), (folder.path(TIMELINES), 3));
        let said = torn.to_string();
        assert!(
            said.contains("timelines.jsonl:3: skipped a torn last line"),
            "{said}"
        );
        // A killed run (no summary) still reads as a run, with the warning.
        let read = folder.read().unwrap();
        assert_eq!(read.run.timelines.len(), 2);
        assert_eq!(read.run.nodes[0].hostname, "n1");
        assert_eq!(read.torn, Some(torn));
    }

    #[test]
    fn a_cut_inside_a_multibyte_character_is_torn_too() {
        let d = Dir::new("utf8");
        let mut bytes = format!("{}\n", line("a")).into_bytes();
        bytes.extend_from_slice(&"{\"run_id\": \"µ".as_bytes()[..13]);
        let tl = d.timelines(&bytes).timelines().unwrap();
        assert_eq!((tl.records.len(), tl.torn.map(|t| t.line)), (1, Some(2)));
    }

    #[test]
    fn a_bad_line_in_the_middle_fails_with_file_and_line() {
        let d = Dir::new("middle");
        for text in [
            format!("{}\n{{\"run_id\": \"r1\"\n{}\n", line("a"), line("b")),
            // A finished bad last line (it has its newline) is not torn either.
            format!("{}\nnot json\n", line("a")),
        ] {
            let err = d.timelines(text.as_bytes()).timelines().unwrap_err();
            let err = err.to_string();
            assert!(err.contains("timelines.jsonl:2: not a timeline"), "{err}");
        }
    }

    #[test]
    fn whole_lines_read_with_or_without_the_last_newline() {
        let d = Dir::new("whole");
        let tl = d.timelines(format!("{}\n\n{}", line("a"), line("b")).as_bytes());
        let tl = tl.timelines().unwrap();
        assert_eq!((tl.records.len(), tl.torn), (2, None));
    }

    #[test]
    fn the_histogram_log_must_count_what_the_timelines_hold() {
        let d = Dir::new("hlog");
        let folder = d.timelines(format!("{}\n", line("a")).as_bytes());
        let tls = folder.timelines().unwrap().records;
        let tally = RunTally::of(&tls);
        assert!(
            !folder.check_histograms(&tally).unwrap(),
            "a killed run has none"
        );
        let write = |hists: &PhaseHistograms| {
            let mut bytes = Vec::new();
            let t0 = std::time::UNIX_EPOCH;
            hists
                .write_hlog(&mut bytes, t0, std::time::Duration::ZERO, "t")
                .unwrap();
            std::fs::write(folder.path(HISTOGRAMS), bytes).unwrap();
        };
        write(&PhaseHistograms::from_timelines(&tls));
        assert!(folder.check_histograms(&tally).unwrap());
        let mut more = PhaseHistograms::from_timelines(&tls);
        more.record("b", crate::timeline::Phase::Stop, 1.0);
        write(&more);
        let err = folder.check_histograms(&tally).unwrap_err().to_string();
        assert!(
            err.contains("b/stop holds 1 values but timelines.jsonl has 0"),
            "{err}"
        );
    }

    #[test]
    fn a_folder_without_timelines_is_not_a_run_folder() {
        let d = Dir::new("empty");
        let err = RunFolder::new(&d.0).read().unwrap_err().to_string();
        assert!(err.contains("no timelines.jsonl"), "{err}");
    }
}
