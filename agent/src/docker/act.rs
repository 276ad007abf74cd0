//! The actor: makes one restart of a container (`restart`, `stop_start`, or
//! `kill` for a crash the restart policy undoes), after opening the observer
//! from the request on (and, before a step that leaves the container down,
//! its intent: `intent.rs`, closed once it runs again); then follows the
//! observer to the start and hands the started container to readiness.

use super::observe::ContainerObserver;
use super::{ContainerDetail, DockerEngine, docker_host};
use crate::abort::{Interrupt, bounded};
use crate::intent::{IntentId, Undo};
use crate::readiness;
use crate::target::{Action, RestartContext};
use crate::timeline::{Ending, Timeline, realtime_nanos};
use bollard::query_parameters::{
    RestartContainerOptions, StartContainerOptions, StopContainerOptions,
};
use bounce_wire::{BoundaryName, Outcome, Source};
use std::time::Duration;

/// After a step's own bound (a stop's timeout), how long the engine may
/// still take to finish it (the SIGKILL, the restart policy's delay).
const SETTLE_MARGIN: Duration = Duration::from_secs(10);

impl DockerEngine {
    /// Restarts one container and times it (readiness: the target's probes).
    pub(crate) async fn restart_container(
        &self,
        mut cx: RestartContext<'_>,
        d: &ContainerDetail,
    ) -> (Timeline, Ending) {
        let mut tl = cx.timeline();
        let info = match self.client().inspect_container(&d.id, None).await {
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
            && let Err(i) = observer
                .wait(|o| o.started.is_some(), cx.deadline, cx.abort)
                .await
        {
            ending = Some(cx.interrupted(i, "waiting for the container to start again"));
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
        let acted: Result<Result<(), String>, Interrupt> = match cx.target.action {
            Action::Restart => bounded(
                docker.restart_container(
                    &d.id,
                    Some(RestartContainerOptions {
                        t: stop_timeout,
                        signal: None,
                    }),
                ),
                deadline,
                abort,
            )
            .await
            .map(|r| r.map_err(|e| format!("restart: {e}"))),
            Action::StopStart => {
                let stop = StopContainerOptions {
                    t: stop_timeout,
                    signal: None,
                };
                match bounded(docker.stop_container(&d.id, Some(stop)), deadline, abort).await {
                    Ok(Ok(())) => {
                        // Start only once the engine has reported the exit.
                        match observer.wait(|o| o.exited.is_some(), deadline, abort).await {
                            Ok(_) => bounded(
                                docker.start_container(&d.id, None::<StartContainerOptions>),
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
        match acted {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Ending::new(Outcome::Failed, e)),
            Err(i) => Err(cx.interrupted(i, "waiting for the engine")),
        }
    }
}
