//! The actor: queues a unit's jobs (RestartUnit, or StopUnit then
//! StartUnit, or KillUnit for a crash its `Restart=` undoes) and follows
//! each job to its result; every signal stream is opened before the request,
//! so nothing is missed. Before a stop or kill, its intent (`intent.rs`),
//! closed once the unit is active again. Then the observers' boundaries,
//! the wrapped container running, and readiness. The bus going away ends
//! the restart in flight `failed`, keeping what was observed (and its
//! intent open, for the run's end to undo); the next restart first
//! connects again, within its timeout.

use super::bus::{
    self, JobRemovedStream, Link, PropsProxy, SERVICE_IFACE, UNIT_IFACE, is_transport, string,
    went_away,
};
use super::observe::{ClockPair, UnitObserver, wrapped_to_timeline};
use super::undo::recorded_bus;
use super::{SystemdManager, UnitDetail, attribute};
use crate::abort::bounded;
use crate::intent::{IntentId, Undo};
use crate::readiness::{self, ContainerHealth};
use crate::target::{Action, RestartContext};
use crate::timeline::{Ending, Timeline};
use bounce_wire::{BoundaryName, Outcome, Source, UnitReport};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::time::Duration;
use zbus::zvariant::{OwnedObjectPath, OwnedValue};

/// Reading a unit's properties back after the restart: systemd answers in
/// milliseconds; a bus that went away must not hold the restart.
const READ_BACK: Duration = Duration::from_secs(2);
/// How often to look whether a unit's job in flight ended, after the bus came back.
const SETTLE_POLL: Duration = Duration::from_millis(250);

/// By when a stop or kill bounce asked for has surely taken effect: the
/// manager queues the job (or sends the signal) when asked.
const SETTLE: Duration = Duration::from_secs(10);

impl SystemdManager {
    /// Restarts one unit and times it (readiness: the target's probes).
    pub(crate) async fn restart_unit(
        &self,
        cx: RestartContext<'_>,
        u: &UnitDetail,
    ) -> (Timeline, Ending) {
        let mut tl = cx.timeline();
        let ending = self.restart_inner(cx, u, &mut tl).await;
        tl.attribution = attribute(&tl);
        (tl, ending)
    }

    async fn restart_inner(
        &self,
        mut cx: RestartContext<'_>,
        u: &UnitDetail,
        tl: &mut Timeline,
    ) -> Ending {
        let failed = |why: String| Ending::new(Outcome::Failed, why);
        // A bus that went away since the last restart: connect again first,
        // within this restart's timeout.
        let reconnected = match self.connected(cx.deadline, cx.abort).await {
            Ok(r) => r,
            Err((i, last)) => {
                let doing =
                    format!("waiting for the systemd manager's bus to answer again ({last})");
                return cx.interrupted(i, &doing);
            }
        };
        if reconnected {
            tl.notes
                .push("connected again to the systemd manager, whose bus had gone away".into());
        }
        let link = self.link();
        let props = match bus::props(&link.conn, &u.path).await {
            Ok(p) => p,
            Err(e) => return failed(format!("D-Bus: {e}")),
        };
        loop {
            let state = match props.get_all(UNIT_IFACE).await {
                Ok(p) => p.get("ActiveState").and_then(string).unwrap_or_default(),
                Err(e) => return failed(format!("D-Bus: {e}")),
            };
            if state == "active" {
                break;
            }
            // A job queued before the bus went away (the restart that was in
            // flight) may still be running: systemd finishes it, whoever asked.
            let in_a_job = matches!(state.as_str(), "activating" | "deactivating" | "reloading");
            if !(reconnected && in_a_job) {
                return failed(format!(
                    "not active when its turn came ({state}); bounce does not start stopped services"
                ));
            }
            let doing = "waiting for the job in flight when the bus went away to end";
            if let Err(i) = bounded(tokio::time::sleep(SETTLE_POLL), cx.deadline, cx.abort).await {
                return cx.interrupted(i, doing);
            }
        }
        // Open every stream before acting, so nothing is missed.
        let mut jobs = match link.manager.receive_job_removed().await {
            Ok(s) => s,
            Err(e) => return failed(format!("D-Bus: {e}")),
        };
        let changes = match props.receive_properties_changed().await {
            Ok(s) => s,
            Err(e) => return failed(format!("D-Bus: {e}")),
        };
        let intent = match self.intend(&cx, u) {
            Ok(i) => i,
            Err(why) => return failed(why),
        };
        let (clock, requested) = ClockPair::now();
        let unit = UnitObserver::follow(changes, clock);
        let wrapped = u
            .container
            .as_ref()
            .and_then(|c| c.engine.as_ref())
            .zip(self.docker.as_deref());
        let container = wrapped.map(|(detail, engine)| engine.observe(&detail.id, requested));
        cx.request();
        tl.mark(BoundaryName::Requested, requested, Source::Agent);
        let mut report = UnitReport::default();

        let acted = act(&cx, u, &link, &mut jobs, &unit, &mut report, tl).await;
        // Active again (the start job done, or Restart= brought it back):
        // what bounce wrote down before the stop or kill is done.
        if acted.is_ok()
            && let (Some(id), Some(j)) = (intent, &self.journal)
            && let Err(e) = j.close(id)
        {
            tl.notes.push(format!("could not close the intent: {e}"));
        }

        // What systemd recorded about this restart (nothing if its bus went away).
        let unit_props = read_back(&props, UNIT_IFACE).await;
        let service_props = read_back(&props, SERVICE_IFACE).await;
        unit.to_timeline(&unit_props, &service_props, &mut report, tl);
        drop(unit);
        if let Some(c) = &container {
            wrapped_to_timeline(&c.seen(), tl);
        }
        tl.unit = Some(report);

        // A wrapped container runs a moment after its unit is active (the
        // unit's main process is `docker start -a`): "running" means the container.
        if acted.is_ok()
            && let Some(c) = &container
            && c.wait(|o| o.started.is_some(), cx.deadline, cx.abort)
                .await
                .is_ok()
        {
            wrapped_to_timeline(&c.seen(), tl);
        }
        let running = tl
            .boundary(BoundaryName::ContainerStarted)
            .or(tl.boundary(BoundaryName::Started))
            .cloned()
            .filter(|_| tl.at(BoundaryName::Started).is_some());
        let ending = match acted {
            Err(mut e) => {
                let final_result = tl.unit.as_ref().and_then(|r| r.final_result.clone());
                if let (Some(why), Some(r)) = (e.error.as_mut(), final_result) {
                    why.push_str(&format!(" (unit Result={r})"));
                }
                e
            }
            Ok(()) => match running {
                None => Ending::new(Outcome::Failed, "systemd reported no new activation"),
                Some(started) => {
                    let health = wrapped
                        .zip(container.as_ref())
                        .map(|((detail, _), c)| c.health(detail));
                    let health = health.as_ref().map(|h| h as &dyn ContainerHealth);
                    readiness::wait_ready(&cx, &started, health, tl).await
                }
            },
        };
        if let Some(c) = container {
            wrapped_to_timeline(&c.seen(), tl);
        }
        ending
    }
}

impl SystemdManager {
    /// Writes down, before an action that leaves the unit down, how to
    /// bring it back. Before the request: the fsync is not timed as the stop.
    fn intend(&self, cx: &RestartContext<'_>, u: &UnitDetail) -> Result<Option<IntentId>, String> {
        if cx.target.action == Action::Restart {
            return Ok(None);
        }
        let Some(journal) = &self.journal else {
            return Ok(None);
        };
        let undo = Undo::StartUnit {
            unit: u.name.clone(),
            bus: recorded_bus(&u.bus),
        };
        // The manager queues the job at once; after that, the stop is its own.
        journal
            .record(cx.target.name(), cx.target.action, undo, SETTLE)
            .map(Some)
            .map_err(|e| format!("could not record the intent, so did not act: {e}"))
    }
}

/// Queues the action's job(s) and follows them to their result.
async fn act(
    cx: &RestartContext<'_>,
    u: &UnitDetail,
    link: &Link,
    jobs: &mut JobRemovedStream,
    unit: &UnitObserver,
    report: &mut UnitReport,
    tl: &mut Timeline,
) -> Result<(), Ending> {
    let (deadline, abort) = (cx.deadline, cx.abort);
    let action = cx.target.action;
    let refused = |what: &str, e: zbus::Error| {
        let why = if is_transport(&e) {
            went_away(&e.to_string())
        } else {
            format!("{what}: {e}")
        };
        Ending::new(Outcome::Failed, why)
    };
    let lost = |what: &str| Ending::new(Outcome::Failed, went_away(what));
    let steps: &[&str] = match action {
        Action::Restart => &["restart"],
        Action::StopStart => &["stop", "start"],
        Action::Kill => &[],
    };
    for step in steps {
        let queued = match *step {
            "restart" => link.manager.restart_unit(&u.name, "replace").await,
            "stop" => link.manager.stop_unit(&u.name, "replace").await,
            _ => link.manager.start_unit(&u.name, "replace").await,
        };
        let job = queued.map_err(|e| refused(step, e))?;
        let result = bounded(wait_job(jobs, &job), deadline, abort)
            .await
            .map_err(|i| cx.interrupted(i, &format!("waiting for the {step} job")))?
            .ok_or_else(|| lost(&format!("its signals stopped before the {step} job ended")))?;
        report.job_results.push(result.clone());
        if result != "done" {
            return Err(Ending::new(
                Outcome::Failed,
                format!("the {step} job ended `{result}`"),
            ));
        }
    }
    if action == Action::Kill {
        link.manager
            .kill_unit(&u.name, "main", libc::SIGKILL)
            .await
            .map_err(|e| refused("kill", e))?;
        tl.signals.push("SIGKILL".into());
        // The unit's Restart= brings it back: wait until it is active again.
        unit.wait(|s| s.active_again, deadline, abort)
            .await
            .map_err(|i| cx.interrupted(i, "waiting for Restart= to bring the unit back"))?
            .ok_or_else(|| lost("its signals stopped before the unit was active again"))?;
    }
    Ok(())
}

/// One interface's properties of the unit, read back after the restart;
/// none when the bus does not answer.
async fn read_back(props: &PropsProxy<'static>, iface: &str) -> HashMap<String, OwnedValue> {
    match tokio::time::timeout(READ_BACK, props.get_all(iface)).await {
        Ok(Ok(p)) => p,
        _ => HashMap::new(),
    }
}

/// The result of one job, from the manager's JobRemoved signals; `None`
/// when the signals stopped (the connection is gone).
async fn wait_job(jobs: &mut JobRemovedStream, job: &OwnedObjectPath) -> Option<String> {
    while let Some(signal) = jobs.next().await {
        if let Ok(args) = signal.args()
            && args.job == *job
        {
            return Some(args.result);
        }
    }
    None
}
