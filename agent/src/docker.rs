//! Docker engine as a source of truth: containers are targets, the engine's
//! own event stream (`timeNano`, CLOCK_REALTIME of this host) gives the phase
//! boundaries.
//!
//! Why events and not `inspect` polling: events carry the engine's timestamp of
//! each transition (kill signals, die with exit code, start, health status),
//! polling would only bound them. The stream is opened with `since` = the
//! request time, so the engine replays anything that happened before the
//! subscription reached it: nothing can be missed, whatever the ordering of
//! the two HTTP requests.

use crate::abort::{Abort, Interrupt, bounded};
use crate::probes;
use crate::readiness::{self, ContainerHealth};
use crate::scenario::{DockerSelector, Selector, TargetSpec};
use crate::target::{Action, BoxFuture, Driver, PlanError, ResolvedTarget, TargetDetail, not_mine};
use crate::timeline::{Ending, Timeline, parse_rfc3339_nanos, realtime_nanos, signal_name};
use bollard::Docker;
use bollard::models::{EventMessage, RestartPolicyNameEnum};
use bollard::query_parameters::{
    EventsOptions, ListContainersOptions, RestartContainerOptions, StartContainerOptions,
    StopContainerOptions,
};
use bounce_wire::{BoundaryName, EngineEvent, Outcome, Source, TargetRef};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Docker's stop timeout when neither the scenario nor the container sets one.
const ENGINE_DEFAULT_STOP_TIMEOUT: u32 = 10;
/// Docker's health check timeout default.
const ENGINE_DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("cannot reach the Docker engine ({host}): {source}")]
    Connect {
        host: String,
        source: bollard::errors::Error,
    },
}

/// What `plan` and `restart` need to know about one container.
#[derive(Debug, Clone)]
pub struct ContainerDetail {
    pub id: String,
    pub image: String,
    pub restart_policy: String,
    /// The scenario's stop timeout, passed to the engine; `None` lets the
    /// engine use the container's own.
    pub requested_stop_timeout: Option<u32>,
    /// What the engine will wait before SIGKILL.
    pub effective_stop_timeout: u32,
    pub health_cmd: Option<Vec<String>>,
    pub health_timeout: Duration,
}

pub struct DockerEngine {
    docker: Docker,
}

fn docker_host() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into())
}

impl DockerEngine {
    /// Connects to `$DOCKER_HOST` or the local socket, and checks that the engine answers.
    pub async fn connect() -> Result<DockerEngine, DockerError> {
        let connect_err = |source| DockerError::Connect {
            host: docker_host(),
            source,
        };
        // Restart and stop answer only when done: the client timeout must
        // outlast any stop timeout; bounce's own deadlines bound every call.
        let docker = Docker::connect_with_local_defaults()
            .map_err(connect_err)?
            .with_timeout(Duration::from_secs(2 * 3600));
        docker.ping().await.map_err(connect_err)?;
        Ok(DockerEngine { docker })
    }

    pub fn client(&self) -> &Docker {
        &self.docker
    }

    /// What the engine says about one container (for units that wrap one).
    pub async fn container_detail(
        &self,
        name: &str,
    ) -> Result<ContainerDetail, bollard::errors::Error> {
        let info = self.docker.inspect_container(name, None).await?;
        let config = info.config.unwrap_or_default();
        let (health_cmd, health_timeout) = health_of(&config);
        Ok(ContainerDetail {
            id: info.id.unwrap_or_default(),
            image: config.image.unwrap_or_default(),
            restart_policy: "managed by its unit".into(),
            requested_stop_timeout: None,
            effective_stop_timeout: config
                .stop_timeout
                .map(|t| t.max(0) as u32)
                .unwrap_or(ENGINE_DEFAULT_STOP_TIMEOUT),
            health_cmd,
            health_timeout,
        })
    }

    /// The names of every container, running or not.
    pub async fn container_names(&self) -> Result<Vec<String>, bollard::errors::Error> {
        let list = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                ..Default::default()
            }))
            .await?;
        Ok(list
            .iter()
            .filter_map(|c| c.names.as_ref()?.first().cloned())
            .map(|n| n.trim_start_matches('/').to_string())
            .collect())
    }

    /// An OSD's container: its state (`running`...) and what a restart needs.
    pub async fn osd_container(
        &self,
        name: &str,
    ) -> Result<(String, ContainerDetail), bollard::errors::Error> {
        let info = self.docker.inspect_container(name, None).await?;
        let state = info
            .state
            .as_ref()
            .and_then(|s| s.status)
            .map(|s| s.to_string())
            .unwrap_or_else(|| "unknown".into());
        let policy = info
            .host_config
            .as_ref()
            .and_then(|h| h.restart_policy.as_ref())
            .and_then(|p| p.name)
            .map(|p| p.to_string())
            .unwrap_or_default();
        let mut detail = self.container_detail(name).await?;
        detail.restart_policy = if policy.is_empty() {
            "no".into()
        } else {
            policy
        };
        Ok((state, detail))
    }

    /// `(version, api_version)` of the engine.
    pub async fn version(&self) -> Option<(String, String)> {
        let v = self.docker.version().await.ok()?;
        Some((
            v.version.unwrap_or_default(),
            v.api_version.unwrap_or_default(),
        ))
    }

    async fn resolve_spec(
        &self,
        index: usize,
        selector: &DockerSelector,
        spec: &TargetSpec,
    ) -> Result<Vec<ResolvedTarget>, PlanError> {
        let engine = |e: bollard::errors::Error| PlanError::Engine(format!("Docker engine: {e}"));
        let list = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                ..Default::default()
            }))
            .await
            .map_err(engine)?;
        let names: Vec<String> = list
            .iter()
            .filter_map(|c| c.names.as_ref()?.first().cloned())
            .map(|n| n.trim_start_matches('/').to_string())
            .collect();
        let mut matched = Vec::new();
        for pattern in &selector.names.0 {
            let hits: Vec<&String> = names.iter().filter(|n| pattern.matches(n)).collect();
            if hits.is_empty() {
                return Err(PlanError::NoMatch {
                    index,
                    pattern: pattern.text.clone(),
                });
            }
            matched.extend(hits.into_iter().cloned());
        }
        matched.sort();
        matched.dedup();
        let mut out = Vec::new();
        for name in matched {
            out.push(self.resolve_one(index, spec, &name).await?);
        }
        Ok(out)
    }

    async fn resolve_one(
        &self,
        index: usize,
        spec: &TargetSpec,
        name: &str,
    ) -> Result<ResolvedTarget, PlanError> {
        let info = self
            .docker
            .inspect_container(name, None)
            .await
            .map_err(|e| PlanError::Engine(format!("inspecting {name}: {e}")))?;
        let id = info.id.clone().unwrap_or_default();
        let state = info.state.clone().unwrap_or_default();
        if state.running != Some(true) {
            return Err(PlanError::NotRunning {
                index,
                name: name.into(),
                state: state
                    .status
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "unknown".into()),
            });
        }
        let config = info.config.clone().unwrap_or_default();
        let policy = info
            .host_config
            .as_ref()
            .and_then(|h| h.restart_policy.as_ref())
            .and_then(|p| p.name)
            .unwrap_or(RestartPolicyNameEnum::EMPTY);
        let policy_text = match policy {
            RestartPolicyNameEnum::EMPTY | RestartPolicyNameEnum::NO => "no".to_string(),
            other => other.to_string(),
        };
        if spec.action == Action::Kill && policy_text == "no" {
            return Err(PlanError::NoRestartPolicy {
                index,
                name: name.into(),
                policy: policy_text,
            });
        }
        let (health_cmd, health_timeout) = health_of(&config);
        let ready = readiness::probes_for(spec, health_cmd.is_some(), index, name)?;
        let requested_stop_timeout = spec.stop_timeout.map(|t| t.0);
        let effective_stop_timeout = requested_stop_timeout
            .or(config.stop_timeout.map(|t| t.max(0) as u32))
            .unwrap_or(ENGINE_DEFAULT_STOP_TIMEOUT);
        if spec.action != Action::Kill
            && spec.timeout.0 <= Duration::from_secs(effective_stop_timeout as u64)
        {
            return Err(PlanError::TimeoutTooShort {
                index,
                name: name.into(),
                timeout: spec.timeout.0,
                stop_timeout: effective_stop_timeout,
            });
        }
        let image = config.image.clone().unwrap_or_default();
        let facts = format!(
            "running, image {image}, restart policy {policy_text}, stop timeout {effective_stop_timeout}s, {}",
            if health_cmd.is_some() {
                "health check"
            } else {
                "no health check"
            }
        );
        Ok(ResolvedTarget {
            spec_index: index,
            target: TargetRef::Docker {
                name: name.into(),
                id: id.clone(),
            },
            service: name.into(),
            action: spec.action,
            ready,
            timeout: spec.timeout.0,
            facts,
            detail: TargetDetail::Docker(ContainerDetail {
                id,
                image,
                restart_policy: policy_text,
                requested_stop_timeout,
                effective_stop_timeout,
                health_cmd,
                health_timeout,
            }),
        })
    }

    pub(crate) async fn restart_container(
        &self,
        t: &ResolvedTarget,
        d: &ContainerDetail,
        iteration: u32,
        abort: &Abort,
    ) -> (Timeline, Ending) {
        let mut tl = Timeline::new(t.target.clone(), t.service.clone(), iteration, t.action);
        let info = match self.docker.inspect_container(&d.id, None).await {
            Ok(i) => i,
            Err(e) => return (tl, Ending::new(Outcome::Failed, format!("inspect: {e}"))),
        };
        let state = info.state.unwrap_or_default();
        if state.running != Some(true) {
            return (
                tl,
                Ending::new(
                    Outcome::Failed,
                    "not running when its turn came; bounce does not start stopped services",
                ),
            );
        }
        let pid = state.pid.unwrap_or(0);

        let requested = realtime_nanos();
        let deadline = Instant::now() + t.timeout;
        let (observed, events) = self.follow_events(&d.id, requested);
        tl.mark(BoundaryName::Requested, requested, Source::Agent);
        let ending = self
            .act_and_wait(t, d, pid, &observed, deadline, abort, &mut tl)
            .await;
        events.abort();
        (tl, ending)
    }

    #[allow(clippy::too_many_arguments)]
    async fn act_and_wait(
        &self,
        t: &ResolvedTarget,
        d: &ContainerDetail,
        pid: i64,
        observed: &watch::Receiver<Observed>,
        deadline: Instant,
        abort: &Abort,
        tl: &mut Timeline,
    ) -> Ending {
        let stop_opts = || StopContainerOptions {
            t: d.requested_stop_timeout.map(|s| s as i32),
            signal: None,
        };
        let acted: Result<Result<(), String>, Interrupt> = match t.action {
            Action::Restart => bounded(
                self.docker.restart_container(
                    &d.id,
                    Some(RestartContainerOptions {
                        t: d.requested_stop_timeout.map(|s| s as i32),
                        signal: None,
                    }),
                ),
                deadline,
                abort,
            )
            .await
            .map(|r| r.map_err(|e| format!("restart: {e}"))),
            Action::StopStart => {
                match bounded(
                    self.docker.stop_container(&d.id, Some(stop_opts())),
                    deadline,
                    abort,
                )
                .await
                {
                    Ok(Ok(())) => {
                        // Start only once the engine has reported the exit.
                        match wait_observed(observed, |o| o.exited.is_some(), deadline, abort).await
                        {
                            Ok(_) => bounded(
                                self.docker
                                    .start_container(&d.id, None::<StartContainerOptions>),
                                deadline,
                                abort,
                            )
                            .await
                            .map(|r| r.map_err(|e| format!("start: {e}"))),
                            Err(i) => Err(i),
                        }
                    }
                    Ok(Err(e)) => Ok(Err(format!("stop: {e}"))),
                    Err(i) => Err(i),
                }
            }
            Action::Kill => {
                // A crash: SIGKILL straight to the container's main process, so the
                // engine sees a process death (not a user stop) and applies the
                // restart policy.
                let rc = if pid > 0 {
                    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) }
                } else {
                    -1
                };
                if rc == 0 {
                    tl.signals.push("SIGKILL".into());
                    Ok(Ok(()))
                } else {
                    Ok(Err(format!(
                        "kill -KILL {pid}: {}",
                        std::io::Error::last_os_error()
                    )))
                }
            }
        };
        let mut ending = match acted {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(Ending::new(Outcome::Failed, e)),
            Err(i) => Some(interrupted(i, t, "waiting for the engine")),
        };
        if ending.is_none()
            && let Err(i) = wait_observed(observed, |o| o.started.is_some(), deadline, abort).await
        {
            ending = Some(interrupted(
                i,
                t,
                "waiting for the container to start again",
            ));
        }
        if ending.is_none() {
            let seen = observed.borrow().clone();
            self.stamp_from_state(&d.id, &seen, tl).await;
        }
        copy_observed(&observed.borrow(), tl);
        if let Some(e) = ending {
            return e;
        }
        let Some(started) = tl.boundary(BoundaryName::Started).cloned() else {
            return Ending::new(Outcome::Failed, "the engine reported no start");
        };
        let health = ContainerHealth {
            docker: &self.docker,
            container_id: &d.id,
            health_cmd: d.health_cmd.as_deref(),
            health_timeout: d.health_timeout,
            observed,
        };
        let ending = readiness::wait_ready(
            &t.ready,
            t.timeout,
            &started,
            Some(health),
            deadline,
            abort,
            tl,
        )
        .await;
        copy_observed(&observed.borrow(), tl);
        ending
    }

    /// Takes `exited` and `started` from the engine's container state when it
    /// describes this restart: the state is stamped when the engine handles
    /// the exit (containerd's exit time) and the start, the events only after
    /// the engine's clean-up. Falls back to the event times otherwise (e.g. the
    /// container restarted again before we looked).
    async fn stamp_from_state(&self, id: &str, o: &Observed, tl: &mut Timeline) {
        let (Some(requested), Some(die), Some(start)) =
            (tl.at(BoundaryName::Requested), o.exited, o.started)
        else {
            return;
        };
        let Ok(info) = self.docker.inspect_container(id, None).await else {
            return;
        };
        let state = info.state.unwrap_or_default();
        let finished = state.finished_at.as_deref().and_then(parse_rfc3339_nanos);
        let started = state.started_at.as_deref().and_then(parse_rfc3339_nanos);
        let field = |f: &str| Source::DockerState { field: f.into() };
        if let Some(f) = finished.filter(|f| (requested..=die).contains(f)) {
            tl.mark(BoundaryName::Exited, f, field("State.FinishedAt"));
            if let Some(s) = started.filter(|s| (f..=start).contains(s)) {
                tl.mark(BoundaryName::Started, s, field("State.StartedAt"));
            }
        }
    }

    /// Opens the engine's event stream for one container from `since_nanos` on,
    /// and folds it into an [`Observed`] that waiters can watch.
    pub(crate) fn follow_events(
        &self,
        id: &str,
        since_nanos: i64,
    ) -> (watch::Receiver<Observed>, tokio::task::JoinHandle<()>) {
        let (tx, rx) = watch::channel(Observed::default());
        let filters = HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            ("container".to_string(), vec![id.to_string()]),
        ]);
        let options = EventsOptions {
            since: Some(format!(
                "{}.{:09}",
                since_nanos.div_euclid(1_000_000_000),
                since_nanos.rem_euclid(1_000_000_000)
            )),
            until: None,
            filters: Some(filters),
        };
        let mut stream = self.docker.events(Some(options));
        let task = tokio::spawn(async move {
            while let Some(item) = stream.next().await {
                match item {
                    Ok(ev) => tx.send_modify(|o| o.apply(&ev, since_nanos)),
                    Err(e) => {
                        tx.send_modify(|o| o.stream_error = Some(e.to_string()));
                        break;
                    }
                }
            }
        });
        (rx, task)
    }
}

/// A container's health command (as an argv) and its per-try timeout.
fn health_of(config: &bollard::models::ContainerConfig) -> (Option<Vec<String>>, Duration) {
    let health = config.healthcheck.clone().unwrap_or_default();
    let cmd = probes::health_command(&health.test.unwrap_or_default());
    let timeout = health
        .timeout
        .filter(|ns| *ns > 0)
        .map(|ns| Duration::from_nanos(ns as u64))
        .unwrap_or(ENGINE_DEFAULT_HEALTH_TIMEOUT);
    (cmd, timeout)
}

/// What the event stream has shown since the request.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub(crate) exited: Option<i64>,
    pub(crate) exit_code: Option<i64>,
    pub(crate) started: Option<i64>,
    pub(crate) healthy: Option<i64>,
    signals: Vec<String>,
    pub(crate) oom: bool,
    /// Exits after the restart had started again (a crash while being probed).
    later_exits: Vec<(i64, Option<i64>)>,
    pub(crate) events: Vec<EngineEvent>,
    stream_error: Option<String>,
}

impl Observed {
    fn apply(&mut self, ev: &EventMessage, since: i64) {
        let Some(at) = ev.time_nano.filter(|t| *t >= since) else {
            return;
        };
        let action = ev.action.as_deref().unwrap_or("");
        // Our own exec probes show up as exec_* events: noise in a timeline.
        if !action.starts_with("exec_") {
            self.events.push(EngineEvent {
                action: action.to_string(),
                unix_nanos: at,
            });
        }
        let attr = |k: &str| {
            ev.actor
                .as_ref()
                .and_then(|a| a.attributes.as_ref())
                .and_then(|m| m.get(k).cloned())
        };
        match action {
            "kill" if self.started.is_none() => {
                if let Some(sig) = attr("signal") {
                    self.signals.push(signal_name(&sig));
                }
            }
            "oom" => self.oom = true,
            "die" => {
                let code = attr("exitCode").and_then(|c| c.parse().ok());
                if self.exited.is_none() {
                    self.exited = Some(at);
                    self.exit_code = code;
                } else if self.started.is_some() {
                    self.later_exits.push((at, code));
                }
            }
            "start" if self.exited.is_some() && self.started.is_none() => self.started = Some(at),
            a if a.starts_with("health_status: healthy")
                && self.healthy.is_none()
                && self.started.is_some_and(|s| at >= s) =>
            {
                self.healthy = Some(at)
            }
            _ => {}
        }
    }
}

fn copy_observed(o: &Observed, tl: &mut Timeline) {
    let event = |a: &str| Source::DockerEvent { action: a.into() };
    tl.events = o.events.clone();
    if let Some(at) = o.exited {
        tl.mark(BoundaryName::Exited, at, event("die"));
    }
    if let Some(at) = o.started {
        tl.mark(BoundaryName::Started, at, event("start"));
    }
    if o.exit_code.is_some() {
        tl.exit_code = o.exit_code;
    }
    // The engine's own record of the signals it sent is authoritative; with
    // `kill` the agent signals the process itself and the engine reports none.
    if !o.signals.is_empty() {
        tl.signals = o.signals.clone();
    }
    tl.oom_killed |= o.oom;
    for (at, code) in &o.later_exits {
        let note = format!(
            "exited again (code {}) at +{:.3}s while being probed",
            code.map(|c| c.to_string()).unwrap_or_else(|| "?".into()),
            (*at - tl.at(BoundaryName::Requested).unwrap_or(*at)) as f64 / 1e9
        );
        if !tl.notes.contains(&note) {
            tl.notes.push(note);
        }
    }
    if let Some(e) = &o.stream_error {
        let note = format!("event stream ended: {e}");
        if !tl.notes.contains(&note) {
            tl.notes.push(note);
        }
    }
}

pub(crate) async fn wait_observed(
    observed: &watch::Receiver<Observed>,
    cond: impl Fn(&Observed) -> bool,
    deadline: Instant,
    abort: &Abort,
) -> Result<Observed, Interrupt> {
    let mut rx = observed.clone();
    let waited = bounded(
        async move { rx.wait_for(|o| cond(o)).await.map(|o| o.clone()) },
        deadline,
        abort,
    )
    .await?;
    // The stream task ended (stream error): nothing more will come.
    waited.map_err(|_| Interrupt::Deadline)
}

fn interrupted(i: Interrupt, t: &ResolvedTarget, doing: &str) -> Ending {
    match i {
        Interrupt::Aborted => Ending::new(Outcome::Aborted, format!("interrupted while {doing}")),
        Interrupt::Deadline => Ending::new(
            Outcome::Timeout,
            format!("timeout ({}s) while {doing}", t.timeout.as_secs()),
        ),
    }
}

impl Driver for DockerEngine {
    fn resolve<'a>(
        &'a self,
        index: usize,
        spec: &'a TargetSpec,
    ) -> BoxFuture<'a, Result<Vec<ResolvedTarget>, PlanError>> {
        Box::pin(async move {
            match &spec.selector {
                Selector::Docker(selector) => self.resolve_spec(index, selector, spec).await,
                _ => Ok(Vec::new()),
            }
        })
    }

    fn restart<'a>(
        &'a self,
        target: &'a ResolvedTarget,
        iteration: u32,
        abort: &'a Abort,
    ) -> BoxFuture<'a, (Timeline, Ending)> {
        Box::pin(async move {
            match &target.detail {
                TargetDetail::Docker(d) => {
                    self.restart_container(target, d, iteration, abort).await
                }
                _ => not_mine(target),
            }
        })
    }
}
