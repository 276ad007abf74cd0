//! The actor: makes one restart of a container (`restart`, `stop_start`, or
//! `kill` for a crash the restart policy undoes), after opening the observer
//! from the request on (and, before a step that leaves the container down,
//! its intent: `intent.rs`, closed once it runs again); then follows the
//! observer to the start and hands the started container to readiness.
//! The engine going away ends the restart in flight `failed`, keeping what
//! was observed; the next restart first waits, within its timeout, for the
//! engine to answer again.

use super::engine::{cause, docker_host, is_transport, went_away};
use super::observe::{ContainerObserver, Unobserved};
use super::{ContainerDetail, DockerEngine};
use crate::abort::bounded;
use crate::intent::{IntentId, Undo};
use crate::readiness;
use crate::target::{Action, RestartContext};
use crate::timeline::{Ending, Timeline, realtime_nanos};
use bollard::models::ContainerState;
use bollard::query_parameters::{
    RestartContainerOptions, StartContainerOptions, StopContainerOptions,
};
use bounce_wire::{BoundaryName, Outcome, Source};
use std::time::Duration;
use tokio::time::Instant;

/// After a step's own bound (a stop's timeout), how long the engine may
/// still take to finish it (the SIGKILL, the restart policy's delay).
const SETTLE_MARGIN: Duration = Duration::from_secs(10);
/// How often to look whether the restart policy started a container again
/// after its engine came back.
const POLICY_POLL: Duration = Duration::from_millis(250);

impl DockerEngine {
    /// Restarts one container and times it (readiness: the target's probes).
    pub(crate) async fn restart_container(
        &self,
        mut cx: RestartContext<'_>,
        d: &ContainerDetail,
    ) -> (Timeline, Ending) {
        let mut tl = cx.timeline();
        let state = match self.state_before(&cx, d, &mut tl).await {
            Ok(s) => s,
            Err(ending) => return (tl, ending),
        };
        let pid = state.pid.unwrap_or(0);
        let intent = match self.intend(&cx, d) {
            Ok(i) => i,
            Err(e) => return (tl, e),
        };

        let requested = realtime_nanos();
        cx.request();
        let observer = self.observe(&d.id, requested);
        tl.mark(BoundaryName::Requested, requested, Source::Agent);
        let ending = self
            .act_and_follow(&cx, d, pid, intent, &observer, &mut tl)
            .await;
        (tl, ending)
    }

    /// The container's state before acting, which must be `running`. An
    /// engine that does not answer (restarted, its socket gone) is waited
    /// for within the restart's timeout, on a fresh client; once it is
    /// back, so is the restart policy that starts the container again.
    async fn state_before(
        &self,
        cx: &RestartContext<'_>,
        d: &ContainerDetail,
        tl: &mut Timeline,
    ) -> Result<ContainerState, Ending> {
        let began = Instant::now();
        let mut came_back = false;
        loop {
            match self.client().inspect_container(&d.id, None).await {
                Ok(info) => {
                    let state = info.state.unwrap_or_default();
                    if state.running == Some(true) {
                        if came_back {
                            tl.notes.push(format!(
                                "waited {:.1} s for the Docker engine to answer again (and the container to run)",
                                began.elapsed().as_secs_f64()
                            ));
                        }
                        return Ok(state);
                    }
                    if !came_back || d.restart_policy == "no" {
                        return Err(Ending::new(
                            Outcome::Failed,
                            "not running when its turn came; bounce does not start stopped services",
                        ));
                    }
                    bounded(tokio::time::sleep(POLICY_POLL), cx.deadline, cx.abort)
                        .await
                        .map_err(|i| {
                            cx.interrupted(
                                i,
                                "waiting for the restart policy to start the container after its engine came back",
                            )
                        })?;
                }
                Err(e) if is_transport(&e) => {
                    came_back = true;
                    if let Err((i, last)) = self.wait_answering(cx.deadline, cx.abort).await {
                        let doing = format!(
                            "waiting for the Docker engine to answer again ({})",
                            if last.is_empty() { cause(&e) } else { last }
                        );
                        return Err(cx.interrupted(i, &doing));
                    }
                }
                Err(e) => return Err(Ending::new(Outcome::Failed, format!("inspect: {e}"))),
            }
        }
    }

    async fn act_and_follow(
        &self,
        cx: &RestartContext<'_>,
        d: &ContainerDetail,
        pid: i64,
        intent: Option<IntentId>,
        observer: &ContainerObserver,
        tl: &mut Timeline,
    ) -> Ending {
        let mut ending = self.act(cx, d, pid, observer, tl).await.err();
        if ending.is_none()
            && let Err(u) = observer
                .wait(|o| o.started.is_some(), cx.deadline, cx.abort)
                .await
        {
            ending = Some(unobserved(
                cx,
                u,
                "waiting for the container to start again",
            ));
        }
        if ending.is_none() {
            // Running again: what bounce wrote down before the stop is done.
            if let (Some(id), Some(j)) = (intent, &self.journal)
                && let Err(e) = j.close(id)
            {
                tl.notes.push(format!("could not close the intent: {e}"));
            }
            observer.stamp_from_state(tl).await;
        }
        observer.seen().to_timeline(tl);
        if let Some(e) = ending {
            return e;
        }
        let Some(started) = tl.boundary(BoundaryName::Started).cloned() else {
            return Ending::new(Outcome::Failed, "the engine reported no start");
        };
        let health = observer.health(d);
        let ending = readiness::wait_ready(cx, &started, Some(&health), tl).await;
        observer.seen().to_timeline(tl);
        ending
    }

    /// Writes down, before an action that leaves the container down, how
    /// to bring it back, with by when the step has surely ended (a stop's
    /// timeout). Before the request: the fsync is not timed as the stop.
    fn intend(
        &self,
        cx: &RestartContext<'_>,
        d: &ContainerDetail,
    ) -> Result<Option<IntentId>, Ending> {
        let settle = match cx.target.action {
            Action::Restart => return Ok(None),
            Action::StopStart => {
                Duration::from_secs(d.effective_stop_timeout.into()) + SETTLE_MARGIN
            }
            Action::Kill => SETTLE_MARGIN,
        };
        let Some(journal) = &self.journal else {
            return Ok(None);
        };
        let undo = Undo::StartContainer {
            name: cx.target.name().to_string(),
            id: d.id.clone(),
            docker_host: docker_host(),
        };
        journal
            .record(cx.target.name(), cx.target.action, undo, settle)
            .map(Some)
            .map_err(|e| {
                Ending::new(
                    Outcome::Failed,
                    format!("could not record the intent, so did not act: {e}"),
                )
            })
    }

    /// The action itself; `Err` is how the restart ended when acting failed.
    async fn act(
        &self,
        cx: &RestartContext<'_>,
        d: &ContainerDetail,
        pid: i64,
        observer: &ContainerObserver,
        tl: &mut Timeline,
    ) -> Result<(), Ending> {
        let (deadline, abort) = (cx.deadline, cx.abort);
        let docker = self.client();
        let stop_timeout = d.requested_stop_timeout.map(|s| s as i32);
        let waiting = |i| cx.interrupted(i, "waiting for the engine");
        let refused = |what: &str, e: bollard::errors::Error| {
            let why = if is_transport(&e) {
                went_away(&cause(&e))
            } else {
                format!("{what}: {e}")
            };
            Ending::new(Outcome::Failed, why)
        };
        match cx.target.action {
            Action::Restart => {
                let options = RestartContainerOptions {
                    t: stop_timeout,
                    signal: None,
                };
                bounded(
                    docker.restart_container(&d.id, Some(options)),
                    deadline,
                    abort,
                )
                .await
                .map_err(waiting)?
                .map_err(|e| refused("restart", e))
            }
            Action::StopStart => {
                let stop = StopContainerOptions {
                    t: stop_timeout,
                    signal: None,
                };
                bounded(docker.stop_container(&d.id, Some(stop)), deadline, abort)
                    .await
                    .map_err(waiting)?
                    .map_err(|e| refused("stop", e))?;
                // Start only once the engine has reported the exit.
                observer
                    .wait(|o| o.exited.is_some(), deadline, abort)
                    .await
                    .map_err(|u| unobserved(cx, u, "waiting for the engine to report the exit"))?;
                let start = docker.start_container(&d.id, None::<StartContainerOptions>);
                bounded(start, deadline, abort)
                    .await
                    .map_err(waiting)?
                    .map_err(|e| refused("start", e))
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
                if rc != 0 {
                    let why = format!("kill -KILL {pid}: {}", std::io::Error::last_os_error());
                    return Err(Ending::new(Outcome::Failed, why));
                }
                tl.signals.push("SIGKILL".into());
                Ok(())
            }
        }
    }
}

/// How a restart ends when its observer stopped short: interrupted, or the
/// event stream ended because the engine went away.
fn unobserved(cx: &RestartContext<'_>, u: Unobserved, doing: &str) -> Ending {
    match u {
        Unobserved::Interrupted(i) => cx.interrupted(i, doing),
        Unobserved::StreamEnded(why) => Ending::new(Outcome::Failed, went_away(&why)),
    }
}
