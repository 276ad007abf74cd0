//! Readiness: every probe of a target at once, after its `started` boundary;
//! the target is ready when the last of them first succeeds. Shared by all
//! drivers; the probes that read a container (`docker_health`,
//! `exec_health`) need the container's [`ContainerHealth`].

use crate::abort::Abort;
use crate::docker::{Observed, wait_observed};
use crate::probes::{self, ExecHealth, Http, Probe, ProbeResult, Tcp};
use crate::scenario::{ProbeSpec, TargetSpec};
use crate::target::{BoxFuture, PlanError};
use crate::timeline::{Ending, Timeline};
use bollard::Docker;
use bounce_wire::{Boundary, BoundaryName, Outcome, ProbeReport, Source};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// What the container probes need: the engine, the container, its health
/// command, and the followed event stream (for `health_status` events).
pub struct ContainerHealth<'a> {
    pub docker: &'a Docker,
    pub container_id: &'a str,
    pub health_cmd: Option<&'a [String]>,
    pub health_timeout: Duration,
    pub observed: &'a watch::Receiver<Observed>,
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

/// Runs every readiness probe at once; marks `ready` when the last one first
/// succeeds, and says which did not otherwise.
#[allow(clippy::too_many_arguments)]
pub async fn wait_ready(
    ready: &[ProbeSpec],
    timeout: Duration,
    started: &Boundary,
    container: Option<ContainerHealth<'_>>,
    deadline: Instant,
    abort: &Abort,
    tl: &mut Timeline,
) -> Ending {
    let container = container.as_ref();
    let mut waits: Vec<BoxFuture<'_, ProbeEnd>> = Vec::new();
    for spec in ready {
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
                let r = wait_observed(c.observed, |o| o.healthy.is_some(), deadline, abort).await;
                ProbeEnd {
                    label,
                    ready_at: r.ok().and_then(|o| o.healthy),
                    source: Source::DockerEvent {
                        action: "health_status: healthy".into(),
                    },
                    report: None,
                    why_not: Some("no health_status: healthy event".into()),
                }
            })),
            ProbeSpec::ExecHealth(e) => {
                let Some((c, cmd)) = container.and_then(|c| Some((c, c.health_cmd?))) else {
                    waits.push(Box::pin(async move {
                        unavailable(label, "no container health command to run")
                    }));
                    continue;
                };
                let probe =
                    ExecHealth::new(c.docker.clone(), c.container_id.to_string(), cmd.to_vec());
                let try_timeout = e.try_timeout.map(|s| s.0).unwrap_or(c.health_timeout);
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
                timeout.as_secs(),
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
