//! Readiness: every probe of a target at once, after its `started` boundary;
//! the target is ready when the last of them first succeeds. Used by the
//! drivers whose targets have probes (containers, units; a Ceph OSD is ready
//! at its milestones instead); the probes that read a container
//! (`docker_health`, `exec_health`) ask it through [`ContainerHealth`].

use crate::abort::Abort;
use crate::probes::{self, ExecHealth, Http, Probe, ProbeResult, Tcp};
use crate::scenario::{ProbeSpec, TargetSpec};
use crate::target::{BoxFuture, PlanError, RestartContext};
use crate::timeline::{Ending, Timeline};
use bounce_wire::{Boundary, BoundaryName, Outcome, ProbeReport, Source};
use std::time::Duration;
use tokio::time::Instant;

/// What the container probes need of the container a target runs as; the
/// Docker observer answers it (this module names no engine).
pub trait ContainerHealth: Sync {
    /// When the engine first said `health_status: healthy` after the start;
    /// `None` if it did not before the deadline, the abort, or the end of
    /// its event stream.
    fn healthy<'a>(&'a self, deadline: Instant, abort: &'a Abort) -> BoxFuture<'a, Option<i64>>;

    /// The container's own health command as a probe, with the per-try
    /// timeout it is configured with; `None` without a health command.
    fn exec_health(&self) -> Option<(ExecHealth, Duration)>;
}

/// A target's probes: the scenario's, or the default (Docker's health
/// events when there is a health check, else "running"). Probes that read the
/// health check are refused for a target without one.
pub fn probes_for(
    spec: &TargetSpec,
    has_health_check: bool,
    index: usize,
    name: &str,
) -> Result<Vec<ProbeSpec>, PlanError> {
    let ready = match &spec.ready {
        Some(list) => list.0.clone(),
        None if has_health_check => vec![ProbeSpec::DockerHealth(Default::default())],
        None => vec![ProbeSpec::Running(Default::default())],
    };
    for probe in &ready {
        let needs = match probe {
            ProbeSpec::DockerHealth(_) => "docker_health",
            ProbeSpec::ExecHealth(_) => "exec_health",
            _ => continue,
        };
        if !has_health_check {
            return Err(PlanError::NoHealthcheck {
                index,
                name: name.into(),
                probe: needs,
            });
        }
    }
    Ok(ready)
}

struct ProbeEnd {
    label: String,
    ready_at: Option<i64>,
    source: Source,
    report: Option<ProbeReport>,
    why_not: Option<String>,
}

fn unavailable(label: String, why: &str) -> ProbeEnd {
    ProbeEnd {
        label,
        ready_at: None,
        source: Source::Agent,
        report: None,
        why_not: Some(why.into()),
    }
}

/// What readiness needs of a restart, whoever made it (a run's target, or a
/// restart `watch` observed): the probes, the timeout they are bounded by
/// (for messages), the deadline and the abort.
#[derive(Clone, Copy)]
pub struct ReadyWait<'a> {
    pub ready: &'a [ProbeSpec],
    pub timeout: Duration,
    pub deadline: Instant,
    pub abort: &'a Abort,
}

/// Runs every readiness probe of a run's target at once; marks `ready` when
/// the last one first succeeds, and says which did not otherwise.
pub async fn wait_ready(
    cx: &RestartContext<'_>,
    started: &Boundary,
    container: Option<&dyn ContainerHealth>,
    tl: &mut Timeline,
) -> Ending {
    let wait = ReadyWait {
        ready: &cx.target.ready,
        timeout: cx.target.timeout,
        deadline: cx.deadline,
        abort: cx.abort,
    };
    wait_probes(wait, started, container, tl).await
}

/// [`wait_ready`] for any restart.
pub async fn wait_probes(
    w: ReadyWait<'_>,
    started: &Boundary,
    container: Option<&dyn ContainerHealth>,
    tl: &mut Timeline,
) -> Ending {
    let (deadline, abort) = (w.deadline, w.abort);
    let mut waits: Vec<BoxFuture<'_, ProbeEnd>> = Vec::new();
    for spec in w.ready {
        let label = spec.label();
        match spec {
            ProbeSpec::Running(_) => waits.push(Box::pin(async move {
                ProbeEnd {
                    label,
                    ready_at: Some(started.unix_nanos),
                    source: started.source.clone(),
                    report: None,
                    why_not: None,
                }
            })),
            ProbeSpec::DockerHealth(_) => waits.push(Box::pin(async move {
                let Some(c) = container else {
                    return unavailable(label, "no container to read health events from");
                };
                ProbeEnd {
                    label,
                    ready_at: c.healthy(deadline, abort).await,
                    source: Source::DockerEvent {
                        action: "health_status: healthy".into(),
                    },
                    report: None,
                    why_not: Some("no health_status: healthy event".into()),
                }
            })),
            ProbeSpec::ExecHealth(e) => {
                let Some((probe, health_timeout)) = container.and_then(|c| c.exec_health()) else {
                    waits.push(Box::pin(async move {
                        unavailable(label, "no container health command to run")
                    }));
                    continue;
                };
                let try_timeout = e.try_timeout.map(|s| s.0).unwrap_or(health_timeout);
                let interval = e.interval.0.0;
                waits.push(Box::pin(async move {
                    poll(&probe, interval, try_timeout, deadline, abort).await
                }));
            }
            ProbeSpec::Tcp(s) => {
                let probe = Tcp::new(s);
                let (interval, try_timeout) = (s.interval.0.0, s.try_timeout.0);
                waits.push(Box::pin(async move {
                    poll(&probe, interval, try_timeout, deadline, abort).await
                }));
            }
            ProbeSpec::Http(s) => {
                let probe = Http::new(s);
                let (interval, try_timeout) = (s.interval.0.0, s.try_timeout.0);
                waits.push(Box::pin(async move {
                    poll(&probe, interval, try_timeout, deadline, abort).await
                }));
            }
        }
    }
    let ends = futures_util::future::join_all(waits).await;
    let mut missing = Vec::new();
    let mut last: Option<(i64, Source)> = None;
    for end in ends {
        if let Some(r) = end.report {
            tl.probes.push(r);
        }
        match end.ready_at {
            Some(at) if last.as_ref().is_none_or(|(l, _)| at > *l) => last = Some((at, end.source)),
            Some(_) => {}
            None => missing.push(match end.why_not {
                Some(why) => format!("{} ({why})", end.label),
                None => end.label,
            }),
        }
    }
    if !missing.is_empty() {
        if abort.is_set() {
            return Ending::new(Outcome::Aborted, "interrupted while waiting for readiness");
        }
        return Ending::new(
            Outcome::Timeout,
            format!(
                "not ready within {}s: {} did not succeed",
                w.timeout.as_secs(),
                missing.join(", ")
            ),
        );
    }
    if let Some((at, source)) = last {
        tl.mark(BoundaryName::Ready, at, source);
    }
    Ending::ok()
}

async fn poll(
    probe: &dyn Probe,
    interval: Duration,
    try_timeout: Duration,
    deadline: Instant,
    abort: &Abort,
) -> ProbeEnd {
    let ProbeResult { report, ready_at } =
        probes::poll_until_ready(probe, interval, try_timeout, deadline, abort).await;
    ProbeEnd {
        label: report.probe.clone(),
        ready_at,
        source: Source::Probe {
            probe: report.probe.clone(),
        },
        why_not: report.last_error.clone().map(|e| format!("last: {e}")),
        report: Some(report),
    }
}
