//! The observer: the engine's event stream for one container, from an
//! instant on, folded into boundaries (exited, started, healthy), the
//! signals the engine sent, the exit code, and exits after the start. It
//! needs no actor: whoever restarted the container (bounce, `docker
//! restart`, stop then start, a restart policy after a crash), the same
//! events fold the same way.
//!
//! Why events and not `inspect` polling: events carry the engine's timestamp
//! of each transition, polling would only bound them. The stream is opened
//! with `since` = the instant to follow from, so the engine replays anything
//! that happened before the subscription reached it: nothing can be missed,
//! whatever the ordering of the two HTTP requests.

use super::engine::cause;
use super::{ContainerDetail, DockerEngine};
use crate::abort::{Abort, Interrupt, bounded};
use crate::probes::ExecHealth;
use crate::readiness::ContainerHealth;
use crate::target::BoxFuture;
use crate::timeline::{Timeline, parse_rfc3339_nanos, signal_name};
use bollard::Docker;
use bollard::models::EventMessage;
use bollard::query_parameters::EventsOptions;
use bounce_wire::{BoundaryName, EngineEvent, Source};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// What the event stream has shown since the instant followed from.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub exited: Option<i64>,
    pub exit_code: Option<i64>,
    pub started: Option<i64>,
    pub healthy: Option<i64>,
    /// Signals the engine sent before the start (SIGTERM, then SIGKILL after the stop timeout).
    pub signals: Vec<String>,
    pub oom: bool,
    /// Exits after the restart had started again (a crash while being probed).
    pub later_exits: Vec<(i64, Option<i64>)>,
    pub events: Vec<EngineEvent>,
    pub stream_error: Option<String>,
}

impl Observed {
    /// Folds one engine event in; events before `since` are not this restart's.
    pub fn apply(&mut self, ev: &EventMessage, since: i64) {
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

    /// Writes what was observed into a container's timeline: `exited` and
    /// `started` from the events (unless already stamped more precisely),
    /// exit code, signals, OOM, and notes for later exits and a lost stream.
    pub fn to_timeline(&self, tl: &mut Timeline) {
        let event = |a: &str| Source::DockerEvent { action: a.into() };
        tl.events = self.events.clone();
        if let Some(at) = self.exited {
            tl.mark(BoundaryName::Exited, at, event("die"));
        }
        if let Some(at) = self.started {
            tl.mark(BoundaryName::Started, at, event("start"));
        }
        if self.exit_code.is_some() {
            tl.exit_code = self.exit_code;
        }
        // The engine's own record of the signals it sent is authoritative; with
        // `kill` the agent signals the process itself and the engine reports none.
        if !self.signals.is_empty() {
            tl.signals = self.signals.clone();
        }
        tl.oom_killed |= self.oom;
        for (at, code) in &self.later_exits {
            let note = format!(
                "exited again (code {}) at +{:.3}s while being probed",
                code.map(|c| c.to_string()).unwrap_or_else(|| "?".into()),
                (*at - tl.at(BoundaryName::Requested).unwrap_or(*at)) as f64 / 1e9
            );
            if !tl.notes.contains(&note) {
                tl.notes.push(note);
            }
        }
        if let Some(e) = &self.stream_error {
            let note = format!("event stream ended: {e}");
            if !tl.notes.contains(&note) {
                tl.notes.push(note);
            }
        }
    }
}

/// A container's `State.FinishedAt` and `State.StartedAt`, read after a
/// restart's `start` event.
#[derive(Debug, Clone, Copy)]
pub struct StateStamps {
    pub finished: Option<i64>,
    pub started: Option<i64>,
}

impl StateStamps {
    /// The exit (and the start after it) these stamps give for the restart
    /// `o` folded, when they describe it. The engine stamps the state before
    /// it logs `die`, so the state read after this restart's `start` holds
    /// this exit or a later one: `die` bounds it above (a later exit is
    /// after it: the container restarted again before it was read). Below,
    /// `after`: no exit of this restart precedes it. Not the engine's `kill`
    /// event: the engine logs it once the signal is delivered, so a process
    /// that exits on the signal at once can exit before it (under load, by
    /// milliseconds).
    pub fn of_restart(&self, o: &Observed, after: i64) -> Option<(i64, Option<i64>)> {
        let (die, start) = (o.exited?, o.started?);
        let f = self.finished.filter(|f| (after..=die).contains(f))?;
        Some((f, self.started.filter(|s| (f..=start).contains(s))))
    }

    /// Marks `exited` and `started` from these stamps when they describe
    /// the restart ([`Self::of_restart`]); the events mark them otherwise.
    pub fn mark(&self, o: &Observed, after: i64, tl: &mut Timeline) {
        let field = |f: &str| Source::DockerState { field: f.into() };
        if let Some((f, s)) = self.of_restart(o, after) {
            tl.mark(BoundaryName::Exited, f, field("State.FinishedAt"));
            if let Some(s) = s {
                tl.mark(BoundaryName::Started, s, field("State.StartedAt"));
            }
        }
    }
}

/// Why a wait on the observer ended without what it waited for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unobserved {
    /// The restart's deadline passed or the run's abort fired.
    Interrupted(Interrupt),
    /// The event stream ended (the engine went away): nothing more will
    /// come; why, in the engine's or the socket's words.
    StreamEnded(String),
}

/// One container followed from an instant on; stops following when dropped.
pub struct ContainerObserver {
    docker: Docker,
    id: String,
    seen: watch::Receiver<Observed>,
    /// The stream task, when this observer reads its own stream (not when
    /// it is fed by watch's tracker of every container).
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for ContainerObserver {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

impl DockerEngine {
    /// Opens the engine's event stream for one container from `since_nanos`
    /// (CLOCK_REALTIME) on, and folds it into an [`Observed`] as it comes.
    pub fn observe(&self, id: &str, since_nanos: i64) -> ContainerObserver {
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
        let docker = self.client();
        let mut stream = docker.events(Some(options));
        let task = tokio::spawn(async move {
            // The stream never ends while the engine runs: its end (EOF) is
            // the engine going away, not "no more events".
            let why = loop {
                match stream.next().await {
                    Some(Ok(ev)) => tx.send_modify(|o| o.apply(&ev, since_nanos)),
                    Some(Err(e)) => break cause(&e),
                    None => break "the engine closed the event stream".to_string(),
                }
            };
            tx.send_modify(|o| o.stream_error = Some(why));
        });
        ContainerObserver {
            docker,
            id: id.to_string(),
            seen: rx,
            task: Some(task),
        }
    }

    /// An observer of one container whose events someone else folds (watch
    /// reads one stream for every container: `restarts.rs`).
    pub fn observer_fed(&self, id: &str, seen: watch::Receiver<Observed>) -> ContainerObserver {
        ContainerObserver {
            docker: self.client().clone(),
            id: id.to_string(),
            seen,
            task: None,
        }
    }
}

impl ContainerObserver {
    /// What has been observed so far.
    pub fn seen(&self) -> Observed {
        self.seen.borrow().clone()
    }

    /// Waits until what was observed satisfies `cond`; not if the
    /// deadline passes, the abort fires or the stream ends first.
    pub async fn wait(
        &self,
        cond: impl Fn(&Observed) -> bool,
        deadline: Instant,
        abort: &Abort,
    ) -> Result<Observed, Unobserved> {
        let mut rx = self.seen.clone();
        let cond = &cond;
        let waited = bounded(
            async move {
                let lost = |o: &Observed| o.stream_error.is_some();
                let o = rx.wait_for(|o| cond(o) || lost(o)).await.ok()?.clone();
                Some(o)
            },
            deadline,
            abort,
        )
        .await
        .map_err(Unobserved::Interrupted)?;
        match waited {
            Some(o) if cond(&o) => Ok(o),
            Some(o) => Err(Unobserved::StreamEnded(o.stream_error.unwrap_or_default())),
            None => Err(Unobserved::StreamEnded("the observer stopped".into())),
        }
    }

    /// Takes `exited` and `started` from the engine's container state when it
    /// describes this restart: the state is stamped when the engine handles
    /// the exit (containerd's exit time) and the start, the events only after
    /// the engine's clean-up. Falls back to the event times otherwise (e.g. the
    /// container restarted again before we looked). No exit of the restart
    /// precedes its request.
    pub async fn stamp_from_state(&self, tl: &mut Timeline) {
        if let Some(requested) = tl.at(BoundaryName::Requested)
            && let Some(stamps) = self.state_stamps().await
        {
            stamps.mark(&self.seen(), requested, tl);
        }
    }

    /// The container's state stamps, read once both the exit and the start
    /// were observed (`None` before, or if it cannot be read).
    pub async fn state_stamps(&self) -> Option<StateStamps> {
        let o = self.seen();
        o.exited.zip(o.started)?;
        let info = self.docker.inspect_container(&self.id, None).await.ok()?;
        let state = info.state.unwrap_or_default();
        Some(StateStamps {
            finished: state.finished_at.as_deref().and_then(parse_rfc3339_nanos),
            started: state.started_at.as_deref().and_then(parse_rfc3339_nanos),
        })
    }

    /// The container probes' view of this container, with its health
    /// command from `detail`.
    pub fn health<'a>(&'a self, detail: &'a ContainerDetail) -> ObservedHealth<'a> {
        ObservedHealth {
            observer: self,
            detail,
        }
    }
}

/// A followed container as readiness sees it: its health events and its
/// health command.
pub struct ObservedHealth<'a> {
    observer: &'a ContainerObserver,
    detail: &'a ContainerDetail,
}

impl ContainerHealth for ObservedHealth<'_> {
    fn healthy<'a>(&'a self, deadline: Instant, abort: &'a Abort) -> BoxFuture<'a, Option<i64>> {
        Box::pin(async move {
            let seen = self
                .observer
                .wait(|o| o.healthy.is_some(), deadline, abort)
                .await;
            seen.ok().and_then(|o| o.healthy)
        })
    }

    fn exec_health(&self) -> Option<(ExecHealth, Duration)> {
        let cmd = self.detail.health_cmd.clone()?;
        let probe = ExecHealth::new(self.observer.docker.clone(), self.observer.id.clone(), cmd);
        Some((probe, self.detail.health_timeout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::EventActor;

    fn ev(action: &str, at: i64, attrs: &[(&str, &str)]) -> EventMessage {
        EventMessage {
            action: Some(action.into()),
            time_nano: Some(at),
            actor: Some(EventActor {
                id: Some("c1".into()),
                attributes: Some(
                    attrs
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
            }),
            ..Default::default()
        }
    }

    fn fold(events: &[EventMessage], since: i64) -> Observed {
        let mut o = Observed::default();
        for e in events {
            o.apply(e, since);
        }
        o
    }

    #[test]
    fn docker_restart_folds_into_exit_and_start() {
        let o = fold(
            &[
                ev("kill", 110, &[("signal", "15")]),
                ev("kill", 150, &[("signal", "9")]),
                ev("die", 160, &[("exitCode", "137")]),
                ev("stop", 161, &[]),
                ev("start", 170, &[]),
                ev("restart", 171, &[]),
                ev("health_status: healthy", 190, &[]),
            ],
            100,
        );
        assert_eq!(
            (o.exited, o.exit_code, o.started),
            (Some(160), Some(137), Some(170))
        );
        assert_eq!(o.signals, ["SIGTERM", "SIGKILL"]);
        assert_eq!(o.healthy, Some(190));
    }

    #[test]
    fn stop_then_start_folds_like_a_restart() {
        let o = fold(
            &[
                ev("kill", 110, &[("signal", "15")]),
                ev("die", 120, &[("exitCode", "0")]),
                ev("stop", 121, &[]),
                ev("exec_start: true", 125, &[]),
                ev("start", 200, &[]),
            ],
            100,
        );
        assert_eq!(
            (o.exited, o.exit_code, o.started),
            (Some(120), Some(0), Some(200))
        );
        assert!(o.events.iter().all(|e| !e.action.starts_with("exec_")));
    }

    #[test]
    fn a_crash_brought_back_by_the_restart_policy_folds_without_signals() {
        let o = fold(
            &[
                ev("health_status: healthy", 90, &[]),
                ev("oom", 105, &[]),
                ev("die", 106, &[("exitCode", "137")]),
                ev("start", 140, &[]),
                ev("die", 150, &[("exitCode", "1")]),
                ev("start", 160, &[]),
            ],
            100,
        );
        assert_eq!(
            (o.exited, o.started, o.healthy),
            (Some(106), Some(140), None)
        );
        assert!(o.oom && o.signals.is_empty());
        assert_eq!(o.later_exits, [(150, Some(1))]);
    }
}
