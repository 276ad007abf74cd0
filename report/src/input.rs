//! What a report is made from: one run, read from an agent's `--output`
//! folder or (by the collector) from its store.

use bounce_wire::{NodeFacts, PhaseHistograms, RunSummary, TimelineRecord};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum InputError {
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

/// One run, everything a report needs (also what the collector's
/// `/api/v1/runs/{id}/export` answers).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RunData {
    pub run_id: String,
    pub deployment: String,
    /// The scenario's name.
    pub scenario: String,
    /// The scenario as the agent read it, when known.
    pub scenario_yaml: Option<String>,
    /// One per node (agent) of the run.
    pub nodes: Vec<NodeFacts>,
    pub started_unix_nanos: i64,
    /// None while (or if) the run never finished.
    pub finished_unix_nanos: Option<i64>,
    pub planned: u64,
    pub not_started: u64,
    pub interrupted: bool,
    pub timelines: Vec<TimelineRecord>,
    /// Where it was read from, for the report's footer.
    pub origin: String,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> InputError + '_ {
    move |source| InputError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads `timelines.jsonl`, reporting the first bad line by number.
pub fn read_timelines(path: &Path) -> Result<Vec<TimelineRecord>, InputError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| InputError::Timeline {
                path: path.to_path_buf(),
                line: i + 1,
                reason: e.to_string(),
            })
        })
        .collect()
}

impl RunData {
    /// An agent's `--output` folder: `timelines.jsonl` (required),
    /// `summary.json` and `histograms.hlog` (written when the run ended; a
    /// run that was killed has neither, and the report says so), `scenario.yaml`.
    pub fn from_dir(dir: &Path) -> Result<RunData, InputError> {
        let tl_path = dir.join("timelines.jsonl");
        if !tl_path.exists() {
            return Err(InputError::Invalid {
                path: dir.to_path_buf(),
                reason: "no timelines.jsonl: not the --output folder of a bounce-agent run".into(),
            });
        }
        let timelines = read_timelines(&tl_path)?;
        let mut runs: Vec<&str> = timelines.iter().map(|t| t.run_id.as_str()).collect();
        runs.sort();
        runs.dedup();
        if runs.len() > 1 {
            return Err(InputError::Invalid {
                path: tl_path,
                reason: format!(
                    "holds several runs ({}); one folder, one run",
                    runs.join(", ")
                ),
            });
        }
        let hlog_path = dir.join("histograms.hlog");
        if hlog_path.exists() {
            let bytes = std::fs::read(&hlog_path).map_err(io(&hlog_path))?;
            let hists = PhaseHistograms::read_hlog(&bytes).map_err(|e| InputError::Invalid {
                path: hlog_path.clone(),
                reason: e.to_string(),
            })?;
            for (key, values) in bounce_wire::hist::samples_by_key(&timelines) {
                let in_hlog = hists.by_key.get(&key).map(|h| h.len()).unwrap_or(0);
                if in_hlog != values.len() as u64 {
                    return Err(InputError::Invalid {
                        path: hlog_path,
                        reason: format!(
                            "{}/{} holds {in_hlog} values but timelines.jsonl has {}; the folder is inconsistent",
                            key.0,
                            key.1,
                            values.len()
                        ),
                    });
                }
            }
        }
        let sc_path = dir.join("scenario.yaml");
        let scenario_yaml = match std::fs::read_to_string(&sc_path) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(&sc_path)(e)),
        };
        let sum_path = dir.join("summary.json");
        let summary: Option<RunSummary> = match std::fs::read_to_string(&sum_path) {
            Ok(t) => Some(serde_json::from_str(&t).map_err(|e| InputError::Invalid {
                path: sum_path.clone(),
                reason: e.to_string(),
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(&sum_path)(e)),
        };
        let origin = format!("agent output folder {}", dir.display());
        Ok(match summary {
            Some(s) => RunData {
                run_id: s.run_id,
                deployment: s.deployment,
                scenario: s.scenario,
                scenario_yaml,
                nodes: vec![s.node],
                started_unix_nanos: s.started_unix_nanos,
                finished_unix_nanos: Some(s.finished_unix_nanos),
                planned: s.planned,
                not_started: s.not_started,
                interrupted: s.interrupted,
                timelines,
                origin,
            },
            None => {
                let first = timelines.first().ok_or_else(|| InputError::Invalid {
                    path: dir.to_path_buf(),
                    reason: "no summary.json and no timeline: nothing was measured".into(),
                })?;
                let started = timelines
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
                    planned: timelines.len() as u64,
                    not_started: 0,
                    interrupted: false,
                    timelines,
                    origin,
                }
            }
        })
    }

    /// Every name a host goes by in this run (for `--redact`).
    pub fn host_names(&self) -> Vec<&str> {
        self.nodes
            .iter()
            .map(|n| n.hostname.as_str())
            .chain(self.timelines.iter().map(|t| t.node.as_str()))
            .collect()
    }

    /// The run with host names and addresses replaced. Fails (rather than
    /// writing a broken file) when a host name is also a word the formats
    /// use, e.g. a host called `docker`.
    pub fn redacted(&self, r: &crate::redact::Redactor) -> Result<RunData, InputError> {
        fn through<T: serde::Serialize + serde::de::DeserializeOwned>(
            r: &crate::redact::Redactor,
            v: &T,
        ) -> Result<T, InputError> {
            let value = serde_json::to_value(v).expect("bounce's own types serialize");
            serde_json::from_value(r.json(&value)).map_err(|e| InputError::Invalid {
                path: PathBuf::from("--redact"),
                reason: format!("a host name is also a word of the timeline format ({e}); report without --redact"),
            })
        }
        Ok(RunData {
            run_id: self.run_id.clone(),
            deployment: r.text(&self.deployment),
            scenario: r.text(&self.scenario),
            scenario_yaml: self.scenario_yaml.as_deref().map(|s| r.text(s)),
            nodes: self
                .nodes
                .iter()
                .map(|n| through(r, n))
                .collect::<Result<_, _>>()?,
            timelines: self
                .timelines
                .iter()
                .map(|t| through(r, t))
                .collect::<Result<_, _>>()?,
            origin: "(redacted)".into(),
            ..self.clone()
        })
    }
}
