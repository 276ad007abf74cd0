//! systemd managers as a source of truth: units are targets, the manager's
//! D-Bus API (the same on the system and user managers) restarts them and
//! its job signals and unit properties give the phase boundaries.
//!
//! Timing comes from systemd itself: the unit's monotonic timestamps
//! (`InactiveEnterTimestampMonotonic` for "stopped", `ActiveEnterTimestampMonotonic`
//! for "running") are placed on the realtime axis with the offset between
//! CLOCK_REALTIME and CLOCK_MONOTONIC that the agent samples right at the
//! request, so that they line up with Docker's (realtime) record of the
//! container a kolla unit wraps. The main process's exit (status, time) and
//! the unit's `Result` are overwritten when the unit starts again, so they are
//! caught from `PropertiesChanged` signals while the restart runs.

use crate::abort::{Abort, Interrupt, bounded};
use crate::docker::{DockerEngine, Observed, wait_observed};
use crate::readiness::{self, ContainerHealth};
use crate::scenario::{Bus, Selector, SystemdSelector, TargetSpec};
use crate::target::{Action, BoxFuture, Driver, PlanError, ResolvedTarget, TargetDetail, not_mine};
use crate::timeline::{Ending, Timeline, realtime_nanos};
use bounce_wire::{BoundaryName, Outcome, Source, TargetRef, UnitReport};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::time::Instant;
use zbus::zvariant::{OwnedObjectPath, OwnedValue, Value};

const UNIT_IFACE: &str = "org.freedesktop.systemd1.Unit";
const SERVICE_IFACE: &str = "org.freedesktop.systemd1.Service";

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1"
)]
trait Manager {
    /// Without a subscriber, the manager sends no job or unit signals.
    fn subscribe(&self) -> zbus::Result<()>;
    fn restart_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn start_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn stop_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn kill_unit(&self, name: &str, whom: &str, signal: i32) -> zbus::Result<()>;
    #[allow(clippy::type_complexity)]
    fn list_units_by_patterns(
        &self,
        states: &[&str],
        patterns: &[&str],
    ) -> zbus::Result<
        Vec<(
            String,
            String,
            String,
            String,
            String,
            String,
            OwnedObjectPath,
            u32,
            String,
            OwnedObjectPath,
        )>,
    >;
    #[zbus(signal)]
    fn job_removed(
        &self,
        id: u32,
        job: OwnedObjectPath,
        unit: String,
        result: String,
    ) -> zbus::Result<()>;
}

#[zbus::proxy(
    interface = "org.freedesktop.DBus.Properties",
    default_service = "org.freedesktop.systemd1"
)]
trait Props {
    fn get_all(&self, interface: &str) -> zbus::Result<HashMap<String, OwnedValue>>;
    #[zbus(signal)]
    fn properties_changed(
        &self,
        interface: String,
        changed: HashMap<String, OwnedValue>,
        invalidated: Vec<String>,
    ) -> zbus::Result<()>;
}

/// A connection to one systemd manager.
pub struct SystemdManager {
    bus: Bus,
    conn: zbus::Connection,
    manager: ManagerProxy<'static>,
    /// The engine that runs the containers kolla's units wrap, when reachable.
    docker: Option<Arc<DockerEngine>>,
}

/// What `plan` and `restart` need to know about one unit.
#[derive(Debug, Clone)]
pub struct UnitDetail {
    pub name: String,
    pub bus: Bus,
    pub path: OwnedObjectPath,
    /// The container the unit runs with `docker start -a NAME` (kolla since 2023.1).
    pub container: Option<WrappedContainer>,
}

#[derive(Debug, Clone)]
pub struct WrappedContainer {
    pub name: String,
    /// `None` when the engine could not be asked: no container-level timing.
    pub engine: Option<crate::docker::ContainerDetail>,
}

fn bus_error(bus: &Bus, e: impl std::fmt::Display) -> PlanError {
    PlanError::Engine(format!("systemd manager on the {bus} bus: {e}"))
}

impl SystemdManager {
    /// Connects and subscribes; a bus that is not there is an error here,
    /// before anything restarts.
    pub async fn connect(
        bus: &Bus,
        docker: Option<Arc<DockerEngine>>,
    ) -> Result<SystemdManager, PlanError> {
        let conn = match bus {
            Bus::System => zbus::Connection::system().await,
            Bus::User => zbus::Connection::session().await,
            Bus::Address(a) => match zbus::connection::Builder::address(a.as_str()) {
                Ok(b) => b.build().await,
                Err(e) => Err(e),
            },
        }
        .map_err(|e| bus_error(bus, e))?;
        let manager = ManagerProxy::new(&conn)
            .await
            .map_err(|e| bus_error(bus, e))?;
        manager.subscribe().await.map_err(|e| bus_error(bus, e))?;
        Ok(SystemdManager {
            bus: bus.clone(),
            conn,
            manager,
            docker,
        })
    }

    async fn props(&self, path: &OwnedObjectPath) -> zbus::Result<PropsProxy<'static>> {
        PropsProxy::builder(&self.conn)
            .path(path.clone())?
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
    }

    /// The units this selector names, from the manager (ListUnitsByPatterns).
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// Loaded units matching a name or glob: (name, ActiveState, object path).
    pub(crate) async fn list_units(
        &self,
        pattern: &str,
    ) -> Result<Vec<(String, String, OwnedObjectPath)>, PlanError> {
        let units = self
            .manager
            .list_units_by_patterns(&[], &[pattern])
            .await
            .map_err(|e| bus_error(&self.bus, e))?;
        Ok(units
            .into_iter()
            .filter(|u| u.2 != "not-found")
            .map(|u| (u.0, u.3, u.6))
            .collect())
    }

    async fn resolve_spec(
        &self,
        index: usize,
        selector: &SystemdSelector,
        spec: &TargetSpec,
    ) -> Result<Vec<ResolvedTarget>, PlanError> {
        let mut names = Vec::new();
        for pattern in &selector.units.0 {
            let hits = self.list_units(&pattern.text).await?;
            if hits.is_empty() {
                return Err(PlanError::NoUnit {
                    index,
                    pattern: pattern.text.clone(),
                    bus: self.bus.to_string(),
                });
            }
            names.extend(hits);
        }
        names.sort_by(|a, b| a.0.cmp(&b.0));
        names.dedup_by(|a, b| a.0 == b.0);
        let mut out = Vec::new();
        for (name, active, path) in names {
            if active != "active" {
                return Err(PlanError::NotRunning {
                    index,
                    name,
                    state: active,
                });
            }
            out.push(self.resolve_one(index, spec, name, path).await?);
        }
        Ok(out)
    }

    async fn resolve_one(
        &self,
        index: usize,
        spec: &TargetSpec,
        name: String,
        path: OwnedObjectPath,
    ) -> Result<ResolvedTarget, PlanError> {
        let docker = self.docker.as_deref();
        let props = self
            .props(&path)
            .await
            .map_err(|e| bus_error(&self.bus, e))?;
        let service = props.get_all(SERVICE_IFACE).await.unwrap_or_default();
        let restart = service
            .get("Restart")
            .and_then(string)
            .unwrap_or_else(|| "no".into());
        if spec.action == Action::Kill && restart == "no" {
            return Err(PlanError::NoRestartPolicy {
                index,
                name,
                policy: "Restart=no".into(),
            });
        }
        let container_name = service.get("ExecStart").and_then(wrapped_container);
        let container = match (container_name, docker) {
            (Some(c), Some(d)) => Some(WrappedContainer {
                engine: d.container_detail(&c).await.ok(),
                name: c,
            }),
            (Some(c), None) => Some(WrappedContainer {
                name: c,
                engine: None,
            }),
            (None, _) => None,
        };
        let health = container
            .as_ref()
            .and_then(|c| c.engine.as_ref())
            .and_then(|e| e.health_cmd.clone());
        let ready = readiness::probes_for(spec, health.is_some(), index, &name)?;
        let facts = format!(
            "active, Restart={restart}, {}",
            match &container {
                Some(WrappedContainer {
                    name,
                    engine: Some(_),
                }) => format!("wraps container {name} (timed at both levels)"),
                Some(WrappedContainer { name, engine: None }) => format!(
                    "wraps container {name} (Docker engine not reachable: unit-level timing only)"
                ),
                None => "no container".into(),
            }
        );
        Ok(ResolvedTarget {
            spec_index: index,
            target: TargetRef::Systemd {
                name: name.clone(),
                bus: self.bus.to_string(),
                container: container.as_ref().map(|c| c.name.clone()),
            },
            service: container
                .as_ref()
                .map(|c| c.name.clone())
                .unwrap_or_else(|| name.clone()),
            action: spec.action,
            ready,
            timeout: spec.timeout.0,
            facts,
            detail: TargetDetail::Systemd(UnitDetail {
                name,
                bus: self.bus.clone(),
                path,
                container,
            }),
        })
    }

    /// Restarts one unit and times it (readiness: the target's probes).
    pub(crate) async fn restart_unit(
        &self,
        t: &ResolvedTarget,
        u: &UnitDetail,
        iteration: u32,
        abort: &Abort,
    ) -> (Timeline, Ending) {
        let mut tl = Timeline::new(t.target.clone(), t.service.clone(), iteration, t.action);
        let ending = self
            .restart_inner(t, u, self.docker.as_deref(), abort, &mut tl)
            .await;
        tl.attribution = attribute(&tl);
        (tl, ending)
    }

    async fn restart_inner(
        &self,
        t: &ResolvedTarget,
        u: &UnitDetail,
        docker: Option<&DockerEngine>,
        abort: &Abort,
        tl: &mut Timeline,
    ) -> Ending {
        let failed = |why: String| Ending::new(Outcome::Failed, why);
        let props = match self.props(&u.path).await {
            Ok(p) => p,
            Err(e) => return failed(format!("D-Bus: {e}")),
        };
        match props.get_all(UNIT_IFACE).await {
            Ok(p) if p.get("ActiveState").and_then(string).as_deref() == Some("active") => {}
            Ok(p) => {
                return failed(format!(
                    "not active when its turn came ({}); bounce does not start stopped services",
                    p.get("ActiveState").and_then(string).unwrap_or_default()
                ));
            }
            Err(e) => return failed(format!("D-Bus: {e}")),
        }
        // Open every stream before acting, so nothing is missed.
        let mut jobs = match self.manager.receive_job_removed().await {
            Ok(s) => s,
            Err(e) => return failed(format!("D-Bus: {e}")),
        };
        let changes = match props.receive_properties_changed().await {
            Ok(s) => s,
            Err(e) => return failed(format!("D-Bus: {e}")),
        };
        let (clock, requested) = ClockPair::now();
        let (unit_seen, unit_task) = follow_unit(changes, clock.monotonic_us);
        let wrapped = u
            .container
            .as_ref()
            .and_then(|c| Some((c, c.engine.as_ref()?)))
            .zip(docker);
        let container_events =
            wrapped.map(|((_, detail), engine)| engine.follow_events(&detail.id, requested));
        let deadline = Instant::now() + t.timeout;
        tl.mark(BoundaryName::Requested, requested, Source::Agent);
        let mut report = UnitReport::default();

        let acted = self
            .act(
                t,
                u,
                &mut jobs,
                &unit_seen,
                deadline,
                abort,
                &mut report,
                tl,
            )
            .await;

        // What systemd recorded about this restart.
        let unit_props = props.get_all(UNIT_IFACE).await.unwrap_or_default();
        let service_props = props.get_all(SERVICE_IFACE).await.unwrap_or_default();
        let seen = unit_seen.borrow().clone();
        let mark =
            |tl: &mut Timeline, b: BoundaryName, map: &HashMap<String, OwnedValue>, p: &str| {
                let now = map
                    .get(p)
                    .and_then(uint)
                    .filter(|us| *us > clock.monotonic_us);
                if let Some(us) = seen.timestamps.get(p).copied().or(now) {
                    tl.mark(
                        b,
                        clock.to_realtime_nanos(us),
                        Source::Systemd { property: p.into() },
                    );
                }
            };
        mark(
            tl,
            BoundaryName::Exited,
            &unit_props,
            "InactiveEnterTimestampMonotonic",
        );
        mark(
            tl,
            BoundaryName::Started,
            &unit_props,
            "ActiveEnterTimestampMonotonic",
        );
        mark(
            tl,
            BoundaryName::MainStarted,
            &service_props,
            "ExecMainStartTimestampMonotonic",
        );
        if let Some((us, code, status)) = seen.main_exit {
            tl.mark(
                BoundaryName::MainExited,
                clock.to_realtime_nanos(us),
                Source::Systemd {
                    property: "ExecMainExitTimestampMonotonic".into(),
                },
            );
            report.main_exit_code = code;
            report.main_exit_status = status;
            if code == Some(1) {
                tl.exit_code = status.map(i64::from);
            }
        }
        // The state between stop and start can be coalesced away in a restart
        // job; systemd's own rule decides then: a service whose Result is not
        // `success` stops as `failed`.
        report.stopped_as = seen.stopped_as.clone().or_else(|| {
            seen.stop_result()
                .map(|r| if r == "success" { "inactive" } else { "failed" }.to_string())
        });
        report.stop_result = seen.stop_result();
        report.final_result = seen.results.last().cloned();
        unit_task.abort();
        if let Some((rx, _)) = &container_events {
            copy_container(&rx.borrow(), tl);
        }
        tl.unit = Some(report);

        // A wrapped container runs a moment after its unit is active (the
        // unit's main process is `docker start -a`): "running" means the container.
        if acted.is_ok()
            && let Some((observed, _)) = &container_events
            && wait_observed(observed, |o| o.started.is_some(), deadline, abort)
                .await
                .is_ok()
        {
            copy_container(&observed.borrow(), tl);
        }
        let running = tl
            .boundary(BoundaryName::ContainerStarted)
            .or(tl.boundary(BoundaryName::Started))
            .cloned()
            .filter(|_| tl.at(BoundaryName::Started).is_some());
        let ending = match acted {
            Err(mut e) => {
                if let (Some(why), Some(r)) = (e.error.as_mut(), &report_final(tl)) {
                    why.push_str(&format!(" (unit Result={r})"));
                }
                e
            }
            Ok(()) => match running {
                None => Ending::new(Outcome::Failed, "systemd reported no new activation"),
                Some(started) => {
                    let health = match (wrapped, &container_events) {
                        (Some(((_, d), engine)), Some((observed, _))) => Some(ContainerHealth {
                            docker: engine.client(),
                            container_id: &d.id,
                            health_cmd: d.health_cmd.as_deref(),
                            health_timeout: d.health_timeout,
                            observed,
                        }),
                        _ => None,
                    };
                    readiness::wait_ready(
                        &t.ready, t.timeout, &started, health, deadline, abort, tl,
                    )
                    .await
                }
            },
        };
        if let Some((rx, task)) = container_events {
            copy_container(&rx.borrow(), tl);
            task.abort();
        }
        ending
    }

    /// Queues the action's job(s) and follows them to their result.
    #[allow(clippy::too_many_arguments)]
    async fn act(
        &self,
        t: &ResolvedTarget,
        u: &UnitDetail,
        jobs: &mut JobRemovedStream,
        unit_seen: &watch::Receiver<UnitSeen>,
        deadline: Instant,
        abort: &Abort,
        report: &mut UnitReport,
        tl: &mut Timeline,
    ) -> Result<(), Ending> {
        let interrupted = |i: Interrupt, doing: &str| match i {
            Interrupt::Aborted => {
                Ending::new(Outcome::Aborted, format!("interrupted while {doing}"))
            }
            Interrupt::Deadline => Ending::new(
                Outcome::Timeout,
                format!("timeout ({}s) while {doing}", t.timeout.as_secs()),
            ),
        };
        let steps: &[&str] = match t.action {
            Action::Restart => &["restart"],
            Action::StopStart => &["stop", "start"],
            Action::Kill => &[],
        };
        for step in steps {
            let queued = match *step {
                "restart" => self.manager.restart_unit(&u.name, "replace").await,
                "stop" => self.manager.stop_unit(&u.name, "replace").await,
                _ => self.manager.start_unit(&u.name, "replace").await,
            };
            let job = queued.map_err(|e| Ending::new(Outcome::Failed, format!("{step}: {e}")))?;
            let result = bounded(wait_job(jobs, &job), deadline, abort)
                .await
                .map_err(|i| interrupted(i, &format!("waiting for the {step} job")))?;
            report.job_results.push(result.clone());
            if result != "done" {
                return Err(Ending::new(
                    Outcome::Failed,
                    format!("the {step} job ended `{result}`"),
                ));
            }
        }
        if t.action == Action::Kill {
            self.manager
                .kill_unit(&u.name, "main", libc::SIGKILL)
                .await
                .map_err(|e| Ending::new(Outcome::Failed, format!("kill: {e}")))?;
            tl.signals.push("SIGKILL".into());
            // The unit's Restart= brings it back: wait until it is active again.
            let mut rx = unit_seen.clone();
            bounded(rx.wait_for(|s| s.active_again), deadline, abort)
                .await
                .map_err(|i| interrupted(i, "waiting for Restart= to bring the unit back"))?
                .map_err(|_| Ending::new(Outcome::Failed, "lost the unit's signals"))?;
        }
        Ok(())
    }
}

impl Driver for SystemdManager {
    fn resolve<'a>(
        &'a self,
        index: usize,
        spec: &'a TargetSpec,
    ) -> BoxFuture<'a, Result<Vec<ResolvedTarget>, PlanError>> {
        Box::pin(async move {
            match &spec.selector {
                Selector::Systemd(sel) if sel.bus == self.bus => {
                    self.resolve_spec(index, sel, spec).await
                }
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
                TargetDetail::Systemd(u) if u.bus == self.bus => {
                    self.restart_unit(target, u, iteration, abort).await
                }
                _ => not_mine(target),
            }
        })
    }
}

fn report_final(tl: &Timeline) -> Option<String> {
    tl.unit.as_ref()?.final_result.clone()
}

async fn wait_job(jobs: &mut JobRemovedStream, job: &OwnedObjectPath) -> String {
    while let Some(signal) = jobs.next().await {
        if let Ok(args) = signal.args()
            && args.job == *job
        {
            return args.result;
        }
    }
    // The stream ended: the connection is gone.
    std::future::pending().await
}

/// CLOCK_REALTIME and CLOCK_MONOTONIC read back to back, so monotonic
/// timestamps can be placed on the realtime axis.
#[derive(Debug, Clone, Copy)]
struct ClockPair {
    realtime_ns: i64,
    monotonic_us: u64,
}

impl ClockPair {
    fn now() -> (ClockPair, i64) {
        let mono = monotonic_nanos();
        let real = realtime_nanos();
        (
            ClockPair {
                realtime_ns: real - mono,
                monotonic_us: (mono / 1000) as u64,
            },
            real,
        )
    }

    /// `realtime_ns` holds the offset (realtime − monotonic) in ns.
    fn to_realtime_nanos(self, monotonic_us: u64) -> i64 {
        monotonic_us as i64 * 1000 + self.realtime_ns
    }
}

fn monotonic_nanos() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // CLOCK_MONOTONIC is what systemd's *TimestampMonotonic properties use.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// What the unit's PropertiesChanged signals showed since the request.
#[derive(Debug, Clone, Default)]
struct UnitSeen {
    /// `inactive` (dead) or `failed`: how the unit stopped.
    stopped_as: Option<String>,
    /// Every `Result` value seen, in order (the stop sets it, the start resets it).
    results: Vec<String>,
    /// The last `Result` seen before the new main process started: the stop's.
    stop_result: Option<String>,
    /// A new main process started after the request.
    restarted: bool,
    /// (ExecMainExitTimestampMonotonic, ExecMainCode, ExecMainStatus) of the old main process.
    main_exit: Option<(u64, Option<i32>, Option<i32>)>,
    /// ActiveEnterTimestampMonotonic moved past the request.
    active_again: bool,
    /// Unit timestamps past the request, as signalled: a stopped unit that
    /// nothing references is unloaded, and its reloaded self starts with none.
    timestamps: HashMap<&'static str, u64>,
}

impl UnitSeen {
    fn stop_result(&self) -> Option<String> {
        self.stop_result.clone()
    }

    fn apply(&mut self, iface: &str, changed: &HashMap<String, OwnedValue>, since_us: u64) {
        if iface == UNIT_IFACE {
            for p in [
                "InactiveEnterTimestampMonotonic",
                "ActiveEnterTimestampMonotonic",
            ] {
                if let Some(us) = changed.get(p).and_then(uint).filter(|us| *us > since_us) {
                    self.timestamps.entry(p).or_insert(us);
                }
            }
            if let Some(state) = changed.get("ActiveState").and_then(string)
                && self.stopped_as.is_none()
                && (state == "inactive" || state == "failed")
            {
                self.stopped_as = Some(state);
            }
            if changed
                .get("ActiveEnterTimestampMonotonic")
                .and_then(uint)
                .is_some_and(|us| us > since_us)
            {
                self.active_again = true;
            }
        } else if iface == SERVICE_IFACE {
            // systemd sends every emits-change property of the interface on
            // each change: a batch with a new ExecMainStart belongs to the start.
            if changed
                .get("ExecMainStartTimestampMonotonic")
                .and_then(uint)
                .is_some_and(|us| us > since_us)
            {
                self.restarted = true;
            }
            if let Some(r) = changed.get("Result").and_then(string) {
                if !self.restarted {
                    self.stop_result = Some(r.clone());
                }
                self.results.push(r);
            }
            if let Some(us) = changed
                .get("ExecMainExitTimestampMonotonic")
                .and_then(uint)
                .filter(|us| *us > since_us)
                && self.main_exit.is_none()
            {
                self.main_exit = Some((
                    us,
                    changed.get("ExecMainCode").and_then(int),
                    changed.get("ExecMainStatus").and_then(int),
                ));
            }
        }
    }
}

fn follow_unit(
    mut changes: PropertiesChangedStream,
    since_us: u64,
) -> (watch::Receiver<UnitSeen>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(UnitSeen::default());
    let task = tokio::spawn(async move {
        while let Some(signal) = changes.next().await {
            if let Ok(args) = signal.args() {
                tx.send_modify(|s| s.apply(&args.interface, &args.changed, since_us));
            }
        }
    });
    (rx, task)
}

fn copy_container(o: &Observed, tl: &mut Timeline) {
    if let Some(at) = o.exited {
        tl.mark(
            BoundaryName::ContainerExited,
            at,
            Source::DockerEvent {
                action: "die".into(),
            },
        );
        if tl.exit_code.is_none() {
            tl.exit_code = o.exit_code;
        }
    }
    if let Some(at) = o.started {
        tl.mark(
            BoundaryName::ContainerStarted,
            at,
            Source::DockerEvent {
                action: "start".into(),
            },
        );
    }
    tl.events = o.events.clone();
    tl.oom_killed |= o.oom;
}

/// Where the time went, in words, from the boundaries of one restart.
pub fn attribute(tl: &Timeline) -> Option<String> {
    let t0 = tl.at(BoundaryName::Requested)?;
    let rel = |b: BoundaryName| tl.at(b).map(|at| (at - t0) as f64 / 1e9);
    let report = tl.unit.as_ref();
    let mut parts = Vec::new();
    let exit_words = |status: Option<i64>| match status {
        Some(s) => format!("exited {s}"),
        None => "exited".to_string(),
    };
    if let Some(c) = rel(BoundaryName::ContainerExited) {
        parts.push(format!(
            "container {} at +{c:.1} s",
            exit_words(tl.exit_code)
        ));
    } else if let Some(m) = rel(BoundaryName::MainExited) {
        parts.push(format!(
            "main process {} at +{m:.1} s",
            exit_words(tl.exit_code)
        ));
    }
    let stopped_as = report.and_then(|r| r.stopped_as.as_deref());
    let result = report.and_then(|r| r.stop_result.as_deref());
    if let Some(x) = rel(BoundaryName::Exited) {
        let gone = rel(BoundaryName::ContainerExited).or(rel(BoundaryName::MainExited));
        let how = match (stopped_as, result) {
            (Some("failed"), Some(r)) => {
                format!("unit left `failed` (Result={r}) instead of `dead`")
            }
            (Some("failed"), None) => "unit left `failed` instead of `dead`".to_string(),
            _ => "unit stopped".to_string(),
        };
        match gone {
            Some(g) if x - g >= 1.0 => parts.push(format!(
                "{how} and was stopped only at +{x:.1} s ({:.1} s after its process was gone)",
                x - g
            )),
            _ => parts.push(format!("{how} at +{x:.1} s")),
        }
    }
    if let Some(s) = rel(BoundaryName::Started) {
        parts.push(format!("unit active at +{s:.1} s"));
    }
    if let Some(c) = rel(BoundaryName::ContainerStarted) {
        parts.push(format!("container running at +{c:.1} s"));
    }
    if let Some(r) = rel(BoundaryName::Ready) {
        parts.push(format!("ready at +{r:.1} s"));
    }
    (parts.len() > 1).then(|| parts.join(", "))
}

/// kolla's units run `docker start -a NAME` (or podman): the container is NAME.
fn wrapped_container(exec_start: &OwnedValue) -> Option<String> {
    let Value::Array(commands) = &**exec_start else {
        return None;
    };
    let first = commands.iter().next()?;
    let Value::Structure(cmd) = first else {
        return None;
    };
    let Value::Array(argv) = cmd.fields().get(1)? else {
        return None;
    };
    let argv: Vec<String> = argv
        .iter()
        .filter_map(|v| match v {
            Value::Str(s) => Some(s.to_string()),
            _ => None,
        })
        .collect();
    container_of_argv(&argv)
}

fn container_of_argv(argv: &[String]) -> Option<String> {
    let engine = argv.first()?.rsplit('/').next()?;
    if !matches!(engine, "docker" | "podman") || argv.get(1)? != "start" {
        return None;
    }
    argv.iter().skip(2).rfind(|a| !a.starts_with('-')).cloned()
}

fn string(v: &OwnedValue) -> Option<String> {
    match &**v {
        Value::Str(s) => Some(s.to_string()),
        _ => None,
    }
}

fn uint(v: &OwnedValue) -> Option<u64> {
    match &**v {
        Value::U64(x) => Some(*x),
        Value::U32(x) => Some(*x as u64),
        _ => None,
    }
}

fn int(v: &OwnedValue) -> Option<i32> {
    match &**v {
        Value::I32(x) => Some(*x),
        Value::U32(x) => Some(*x as i32),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn kolla_units_name_their_container() {
        assert_eq!(
            container_of_argv(&v(&["/usr/bin/docker", "start", "-a", "nova_api"])),
            Some("nova_api".into())
        );
        assert_eq!(
            container_of_argv(&v(&["/usr/bin/podman", "start", "--attach", "keystone"])),
            Some("keystone".into())
        );
        assert_eq!(
            container_of_argv(&v(&["/usr/bin/ceph-osd", "-f", "--id", "0"])),
            None
        );
        assert_eq!(
            container_of_argv(&v(&["/usr/bin/docker", "run", "x"])),
            None
        );
    }

    #[test]
    fn monotonic_timestamps_land_on_the_realtime_axis() {
        let (clock, requested) = ClockPair::now();
        let back = clock.to_realtime_nanos(clock.monotonic_us);
        // Same instant within the µs truncation and the two clock reads.
        assert!(
            (requested - back).abs() < 1_000_000,
            "{requested} vs {back}"
        );
    }
}
