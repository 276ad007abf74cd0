//! `ceph_osd` targets: the OSDs of this node, restarted through their systemd
//! units, with Ceph's own milestones after the unit is running again and the
//! operators' discipline around every restart: gates (health, ok-to-stop)
//! before, `noout` for the run, and the next OSD only after the `wait_for`
//! milestone.
//!
//! Timing: the unit's stop and start come from systemd (see `systemd.rs`);
//! the Ceph milestones are polled by the agent and stamped with the end of
//! the first poll that showed them (source `ceph`): the OSD's admin socket
//! every 20 ms (~0.2 ms a call), the mon's osdmap every 250 ms through the
//! CLI (a call costs 175-300 ms) or 50 ms through librados (~1 ms), the
//! mgr's PG stats every 250 ms either way. PG states count only when
//! reported at or after the OSD's new `up_from` epoch (the mgr's stats lag
//! and can still show the PGs as clean from before the restart).

use super::asok;
use super::flags::{Flag, FlagGuard};
use super::mon::{MonClient, PgState};
use crate::abort::{Abort, bounded};
use crate::docker::{ContainerDetail, DockerEngine};
use crate::scenario::{
    CephOsdSelector, Gates, HealthGate, Noout, OsdIds, OsdVia, Selector, TargetSpec, WaitFor,
};
use crate::systemd::{SystemdManager, UnitDetail};
use crate::target::{BoxFuture, Driver, PlanError, ResolvedTarget, TargetDetail, not_mine};
use crate::timeline::{Ending, Timeline, realtime_nanos};
use bounce_wire::{BoundaryName, Outcome, Source, TargetRef};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

const ASOK_POLL: Duration = Duration::from_millis(20);
/// The mgr's PG stats: their own period (5 s stock) bounds the resolution,
/// and `pg dump pgs` grows with the cluster, so no faster than this.
const PG_POLL: Duration = Duration::from_millis(250);
/// Histograms of all OSDs group under this service name; per-OSD detail is
/// in the timelines.
pub const SERVICE: &str = "ceph-osd";

#[derive(Debug, Clone)]
pub struct OsdDetail {
    pub id: u32,
    pub restart: OsdRestart,
    pub admin_socket: PathBuf,
    pub spec_index: usize,
}

/// What restarts one OSD.
#[derive(Debug, Clone)]
pub enum OsdRestart {
    Unit(UnitDetail),
    Container(ContainerDetail),
}

/// One `ceph_osd` target entry: its manager or engine, its cluster and its flags.
pub struct CephOsds {
    index: usize,
    selector: CephOsdSelector,
    gates: Gates,
    /// via: systemd
    manager: Option<SystemdManager>,
    /// via: docker
    docker: Option<Arc<DockerEngine>>,
    cli: MonClient,
    flags: Arc<FlagGuard>,
}

impl CephOsds {
    pub async fn connect(
        index: usize,
        spec: &TargetSpec,
        selector: &CephOsdSelector,
        state_dir: &std::path::Path,
        docker: Option<Arc<DockerEngine>>,
    ) -> Result<CephOsds, PlanError> {
        let (manager, docker) = match &selector.via {
            OsdVia::Systemd { bus, .. } => (Some(SystemdManager::connect(bus, None).await?), None),
            OsdVia::Docker { .. } => match docker {
                Some(d) => (None, Some(d)),
                None => {
                    return Err(PlanError::Engine(format!(
                        "targets[{index}].ceph_osd: via docker, but the Docker engine does not answer"
                    )));
                }
            },
        };
        // A cluster that does not answer is an error before anything restarts.
        let cli = MonClient::open(&selector.ceph).await.map_err(|e| {
            PlanError::Engine(format!(
                "targets[{index}].ceph_osd.ceph: cannot reach the cluster: {e}"
            ))
        })?;
        cli.health().await.map_err(|e| {
            PlanError::Engine(format!(
                "targets[{index}].ceph_osd.ceph: the cluster does not answer: {e}"
            ))
        })?;
        Ok(CephOsds {
            index,
            selector: selector.clone(),
            gates: spec.gates.clone().unwrap_or_default(),
            flags: Arc::new(FlagGuard::new(cli.clone(), state_dir)),
            manager,
            docker,
            cli,
        })
    }

    pub fn index(&self) -> usize {
        self.index
    }

    /// Unsets the flags this run set; called on every exit path of a run.
    pub async fn release(&self) -> Vec<String> {
        self.flags.release().await
    }

    /// The OSDs the selector names, each with what restarts it.
    async fn find(
        &self,
        sel: &CephOsdSelector,
    ) -> Result<Vec<(u32, String, OsdRestart)>, PlanError> {
        let index = self.index;
        let mut found = Vec::new();
        match &sel.via {
            OsdVia::Systemd { unit, bus } => {
                let manager = self.manager.as_ref().expect("connected for via: systemd");
                let mut units = Vec::new();
                match &sel.ids {
                    OsdIds::All => {
                        let pattern = unit.0.replace("{id}", "*");
                        for (name, state, path) in manager.list_units(&pattern).await? {
                            if let Some(id) = unit.id_of(&name) {
                                units.push((id, name, state, path));
                            }
                        }
                        if units.is_empty() {
                            return Err(PlanError::NoUnit {
                                index,
                                pattern,
                                bus: bus.to_string(),
                            });
                        }
                    }
                    OsdIds::List(ids) => {
                        for id in ids {
                            let name = unit.with(*id);
                            let hits = manager.list_units(&name).await?;
                            let Some((name, state, path)) = hits.into_iter().next() else {
                                return Err(PlanError::NoUnit {
                                    index,
                                    pattern: name,
                                    bus: bus.to_string(),
                                });
                            };
                            units.push((*id, name, state, path));
                        }
                    }
                }
                for (id, name, state, path) in units {
                    if state != "active" {
                        return Err(PlanError::NotRunning { index, name, state });
                    }
                    let detail = UnitDetail {
                        name: name.clone(),
                        bus: bus.clone(),
                        path,
                        container: None,
                    };
                    found.push((id, name, OsdRestart::Unit(detail)));
                }
            }
            OsdVia::Docker { container } => {
                let docker = self.docker.as_ref().expect("connected for via: docker");
                let names = docker
                    .container_names()
                    .await
                    .map_err(|e| PlanError::Engine(format!("Docker engine: {e}")))?;
                let wanted: Vec<(u32, String)> = match &sel.ids {
                    OsdIds::All => {
                        let all: Vec<(u32, String)> = names
                            .iter()
                            .filter_map(|n| Some((container.id_of(n)?, n.clone())))
                            .collect();
                        if all.is_empty() {
                            return Err(PlanError::NoMatch {
                                index,
                                pattern: container.0.replace("{id}", "*"),
                            });
                        }
                        all
                    }
                    OsdIds::List(ids) => {
                        let mut out = Vec::new();
                        for id in ids {
                            let name = container.with(*id);
                            if !names.contains(&name) {
                                return Err(PlanError::NoMatch {
                                    index,
                                    pattern: name,
                                });
                            }
                            out.push((*id, name));
                        }
                        out
                    }
                };
                for (id, name) in wanted {
                    let (state, detail) = docker
                        .osd_container(&name)
                        .await
                        .map_err(|e| PlanError::Engine(format!("Docker engine: {name}: {e}")))?;
                    if state != "running" {
                        return Err(PlanError::NotRunning { index, name, state });
                    }
                    found.push((id, name, OsdRestart::Container(detail)));
                }
            }
        }
        found.sort_by_key(|f| f.0);
        Ok(found)
    }

    async fn resolve_all(&self, spec: &TargetSpec) -> Result<Vec<ResolvedTarget>, PlanError> {
        let index = self.index;
        let sel = &self.selector;
        let found = self.find(sel).await?;
        let (_, osds) = self
            .cli
            .osd_dump()
            .await
            .map_err(|e| PlanError::Engine(e.to_string()))?;
        let mut out = Vec::new();
        for (id, name, restart) in found {
            let up = osds.iter().find(|o| o.id == id);
            let Some(up) = up else {
                return Err(PlanError::Engine(format!(
                    "targets[{index}]: osd.{id} ({name}) is not in the cluster's osdmap"
                )));
            };
            let g = &self.gates;
            let facts = format!(
                "{} running, osd.{id} {} in the osdmap (up_from {}); gates: health {}{}, ok-to-stop {}, noout {}; next OSD after {}; cluster asked through {}",
                match &restart {
                    OsdRestart::Unit(_) => "unit",
                    OsdRestart::Container(_) => "container",
                },
                if up.up { "up" } else { "DOWN" },
                up.up_from,
                match g.health {
                    HealthGate::Ok => "ok",
                    HealthGate::Any => "any",
                },
                if g.allow_warnings.is_empty() {
                    String::new()
                } else {
                    format!(" (allowing {})", g.allow_warnings.join(", "))
                },
                if g.ok_to_stop { "asked" } else { "not asked" },
                match g.noout {
                    Noout::Cluster => "set for the run, unset at its end",
                    Noout::PerOsd => "set on each OSD while it restarts (add-noout/rm-noout)",
                    Noout::Off => "not set",
                },
                match g.wait_for {
                    WaitFor::OsdUp => "osd_up",
                    WaitFor::PgsActive => "pgs_active",
                    WaitFor::PgsClean => "pgs_clean",
                },
                self.cli.how(),
            );
            let target = match (&sel.via, &restart) {
                (OsdVia::Systemd { bus, .. }, _) => TargetRef::CephOsd {
                    id,
                    unit: Some(name.clone()),
                    bus: Some(bus.to_string()),
                    container: None,
                },
                (OsdVia::Docker { .. }, _) => TargetRef::CephOsd {
                    id,
                    unit: None,
                    bus: None,
                    container: Some(name.clone()),
                },
            };
            out.push(ResolvedTarget {
                spec_index: index,
                target,
                service: SERVICE.into(),
                action: spec.action,
                ready: Vec::new(),
                timeout: spec.timeout.0,
                facts,
                detail: TargetDetail::CephOsd(OsdDetail {
                    id,
                    restart,
                    admin_socket: PathBuf::from(sel.admin_socket.with(id)),
                    spec_index: index,
                }),
            });
        }
        Ok(out)
    }

    /// Whether the gates hold for restarting `id` now; why not otherwise.
    async fn gates_hold(&self, id: u32) -> Result<(), String> {
        let g = &self.gates;
        if g.health == HealthGate::Ok {
            let h = self.cli.health().await.map_err(|e| e.to_string())?;
            if h.status != "HEALTH_OK" {
                let ours = self.flags.held().await;
                let blocking: Vec<String> = h
                    .checks
                    .iter()
                    .filter(|(code, message)| {
                        !g.allow_warnings.contains(code)
                            && !only_our_flags(code, message, &ours)
                            && !only_our_osd_flags(code, message, &ours)
                    })
                    .map(|(code, message)| format!("{code} ({message})"))
                    .collect();
                if h.status != "HEALTH_WARN" || !blocking.is_empty() {
                    return Err(format!("health is {}: {}", h.status, blocking.join(", ")));
                }
            }
        }
        if g.ok_to_stop
            && !self
                .cli
                .ok_to_stop(&[id])
                .await
                .map_err(|e| e.to_string())?
        {
            return Err(format!("`ceph osd ok-to-stop {id}` says no"));
        }
        Ok(())
    }

    async fn restart_osd(
        &self,
        t: &ResolvedTarget,
        d: &OsdDetail,
        iteration: u32,
        abort: &Abort,
    ) -> (Timeline, Ending) {
        let fail = |why: String| {
            (
                Timeline::new(t.target.clone(), t.service.clone(), iteration, t.action),
                Ending::new(Outcome::Failed, why),
            )
        };
        if self.gates.noout == Noout::Cluster
            && let Err(e) = self.flags.ensure(&Flag::Cluster("noout".into())).await
        {
            return fail(format!("could not set noout: {e}"));
        }
        // Gates: wait (bounded) until they hold; never restart without them.
        let gate_deadline = Instant::now() + self.gates.timeout.0;
        let waited = Instant::now();
        loop {
            match self.gates_hold(d.id).await {
                Ok(()) => break,
                Err(why) if Instant::now() >= gate_deadline => {
                    return fail(format!(
                        "gates did not hold within {}s: {why}",
                        self.gates.timeout.0.as_secs()
                    ));
                }
                Err(_) => {
                    if bounded(
                        tokio::time::sleep(Duration::from_secs(1)),
                        gate_deadline,
                        abort,
                    )
                    .await
                        == Err(crate::abort::Interrupt::Aborted)
                    {
                        let (tl, _) = fail(String::new());
                        return (
                            tl,
                            Ending::new(
                                Outcome::Aborted,
                                "interrupted while waiting for the gates",
                            ),
                        );
                    }
                }
            }
        }
        let gate_wait = waited.elapsed();
        // Per-OSD noout: set after the gates (it would fail the health gate
        // otherwise), removed once the OSD reached `wait_for`.
        let osd_flag = Flag::Osd {
            flag: "noout".into(),
            id: d.id,
        };
        if self.gates.noout == Noout::PerOsd
            && let Err(e) = self.flags.ensure(&osd_flag).await
        {
            return fail(format!("could not set noout on osd.{}: {e}", d.id));
        }
        let before = match self.cli.osd_dump().await {
            Ok((_, osds)) => osds
                .iter()
                .find(|o| o.id == d.id)
                .map(|o| o.up_from)
                .unwrap_or(0),
            Err(e) => return fail(format!("osd dump: {e}")),
        };
        // The PGs this OSD carries: their stats must be fresh after the
        // restart; the others' need not be (see `pg_milestones`). Unknown
        // (the question failed): all must be fresh, the strict reading.
        let carried = if self.gates.wait_for >= WaitFor::PgsActive {
            self.cli.pgs().await.ok().map(|pgs| {
                pgs.into_iter()
                    .filter(|p| p.up.contains(&d.id) || p.acting.contains(&d.id))
                    .map(|p| p.pgid)
                    .collect::<HashSet<String>>()
            })
        } else {
            None
        };

        // Stop and start, timed by systemd (unit) or the engine (container).
        let (mut tl, ending) = match &d.restart {
            OsdRestart::Unit(unit) => {
                let as_unit = ResolvedTarget {
                    detail: TargetDetail::Systemd(unit.clone()),
                    ..t.clone()
                };
                let manager = self.manager.as_ref().expect("connected for via: systemd");
                manager.restart_unit(&as_unit, unit, iteration, abort).await
            }
            OsdRestart::Container(c) => {
                let as_container = ResolvedTarget {
                    detail: TargetDetail::Docker(c.clone()),
                    ..t.clone()
                };
                let docker = self.docker.as_ref().expect("connected for via: docker");
                docker
                    .restart_container(&as_container, c, iteration, abort)
                    .await
            }
        };
        tl.attribution = None;
        if gate_wait > Duration::from_secs(1) {
            tl.notes.push(format!(
                "waited {:.1} s for the gates",
                gate_wait.as_secs_f64()
            ));
        }
        if ending.outcome != Outcome::Ok {
            return (tl, ending);
        }
        let Some(requested) = tl.at(BoundaryName::Requested) else {
            return (tl, Ending::new(Outcome::Failed, "no request recorded"));
        };
        let elapsed = Duration::from_nanos((realtime_nanos() - requested).max(0) as u64);
        let deadline = Instant::now() + t.timeout.saturating_sub(elapsed);
        let ending = self
            .follow_milestones(d, before, carried.as_ref(), deadline, abort, &mut tl)
            .await;
        // Back (or given up on): its own noout goes now; if that fails, the
        // run's end tries again and says so.
        if self.gates.noout == Noout::PerOsd
            && ending.outcome == Outcome::Ok
            && let Err(e) = self.flags.release_one(&osd_flag).await
        {
            tl.notes.push(format!(
                "could not remove noout from osd.{} yet ({e}); the end of the run tries again",
                d.id
            ));
        }
        (tl, ending)
    }

    /// osd_boot, osd_up, pgs_active, pgs_clean: up to the gates' `wait_for`.
    async fn follow_milestones(
        &self,
        d: &OsdDetail,
        up_from_before: u64,
        carried: Option<&HashSet<String>>,
        deadline: Instant,
        abort: &Abort,
        tl: &mut Timeline,
    ) -> Ending {
        let src = |q: &str| Source::Ceph { query: q.into() };
        let wait_for = self.gates.wait_for;
        let interrupted = |i: crate::abort::Interrupt, what: &str| match i {
            crate::abort::Interrupt::Aborted => Ending::new(
                Outcome::Aborted,
                format!("interrupted while waiting for {what}"),
            ),
            crate::abort::Interrupt::Deadline => Ending::new(
                Outcome::Timeout,
                format!("{what} not reached within the timeout"),
            ),
        };
        // The OSD's own view.
        let booted = bounded(
            async {
                loop {
                    if let Ok(s) = asok::osd_status(&d.admin_socket, Duration::from_secs(1)).await
                        && s.state == "active"
                    {
                        return realtime_nanos();
                    }
                    tokio::time::sleep(ASOK_POLL).await;
                }
            },
            deadline,
            abort,
        )
        .await;
        match booted {
            Ok(at) => tl.mark(
                BoundaryName::OsdActive,
                at,
                src(&format!(
                    "admin socket status, every {} ms",
                    ASOK_POLL.as_millis()
                )),
            ),
            Err(i) => return interrupted(i, "osd_boot (admin socket state active)"),
        }
        // The mon's view: up from a new epoch.
        let up = bounded(
            async {
                loop {
                    if let Ok((_, osds)) = self.cli.osd_dump().await
                        && let Some(o) = osds.iter().find(|o| o.id == d.id)
                        && o.up
                        && o.up_from > up_from_before
                    {
                        return (realtime_nanos(), o.up_from);
                    }
                    tokio::time::sleep(self.cli.osdmap_poll()).await;
                }
            },
            deadline,
            abort,
        )
        .await;
        let up_from = match up {
            Ok((at, epoch)) => {
                tl.mark(
                    BoundaryName::OsdUp,
                    at,
                    src(&format!(
                        "osd dump via {}, every {} ms",
                        self.cli.way(),
                        self.cli.osdmap_poll().as_millis()
                    )),
                );
                epoch
            }
            Err(i) => return interrupted(i, "osd_up"),
        };
        let mut ready = tl.boundary(BoundaryName::OsdUp).cloned();
        if wait_for >= WaitFor::PgsActive {
            // PGs, counted only from stats reported at or after the new epoch.
            let pgs = bounded(
                async {
                    let mut active_at = None;
                    loop {
                        if let Ok(pgs) = self.cli.pgs().await
                            && let Some((active, clean)) = pg_milestones(&pgs, carried, up_from)
                        {
                            let now = realtime_nanos();
                            if active_at.is_none() && active {
                                active_at = Some(now);
                            }
                            if let Some(a) = active_at
                                && (wait_for == WaitFor::PgsActive || clean)
                            {
                                return (a, clean.then_some(now));
                            }
                        }
                        tokio::time::sleep(PG_POLL).await;
                    }
                },
                deadline,
                abort,
            )
            .await;
            match pgs {
                Ok((active, clean)) => {
                    let pg_src = format!(
                        "pg dump pgs via {}, every {} ms",
                        self.cli.way(),
                        PG_POLL.as_millis()
                    );
                    tl.mark(BoundaryName::PgsActive, active, src(&pg_src));
                    if let Some(c) = clean {
                        tl.mark(BoundaryName::PgsClean, c, src(&pg_src));
                    }
                    let last = if wait_for == WaitFor::PgsClean {
                        BoundaryName::PgsClean
                    } else {
                        BoundaryName::PgsActive
                    };
                    ready = tl.boundary(last).cloned();
                }
                Err(i) => {
                    return interrupted(
                        i,
                        if wait_for == WaitFor::PgsClean {
                            "pgs_clean"
                        } else {
                            "pgs_active"
                        },
                    );
                }
            }
        }
        if let Some(b) = ready {
            tl.mark(BoundaryName::Ready, b.unix_nanos, b.source);
        }
        Ending::ok()
    }
}

/// What a `pg dump pgs` says after the OSD came up from epoch `up_from`:
/// nothing yet while the stats of a PG it carried predate that epoch (the
/// mgr can still show them clean from before the restart); else whether
/// all PGs are active, and all clean. PGs it did not carry count with
/// whatever stats they have: the restart did not change them, and an idle
/// PG republishes unchanged stats only every
/// `osd_pg_stat_report_interval_max` (500 s stock).
fn pg_milestones(
    pgs: &[PgState],
    carried: Option<&HashSet<String>>,
    up_from: u64,
) -> Option<(bool, bool)> {
    let fresh = pgs
        .iter()
        .filter(|p| carried.is_none_or(|c| c.contains(&p.pgid)))
        .all(|p| p.reported_epoch >= up_from);
    (fresh && !pgs.is_empty()).then(|| {
        (
            pgs.iter().all(|p| is_active(&p.state)),
            pgs.iter().all(|p| p.state == "active+clean"),
        )
    })
}

/// A PG state string is active and not peering/down/incomplete.
fn is_active(state: &str) -> bool {
    let parts: Vec<&str> = state.split('+').collect();
    parts.contains(&"active")
        && !parts
            .iter()
            .any(|p| matches!(*p, "peering" | "down" | "incomplete" | "stale"))
}

/// OSD_FLAGS counting exactly the OSDs bounce itself flagged ("1 OSDs or
/// CRUSH {nodes, device-classes} have {NOUP,NODOWN,NOIN,NOOUT} flags set":
/// the summary names no OSD, so the count is what can be checked).
fn only_our_osd_flags(code: &str, message: &str, ours: &[Flag]) -> bool {
    let flagged = ours
        .iter()
        .filter(|f| matches!(f, Flag::Osd { .. }))
        .count();
    code == "OSD_FLAGS"
        && flagged > 0
        && message
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<usize>().ok())
            == Some(flagged)
}

/// OSDMAP_FLAGS whose message names only flags bounce itself set ("noout flag(s) set").
fn only_our_flags(code: &str, message: &str, ours: &[Flag]) -> bool {
    let ours: Vec<&str> = ours
        .iter()
        .filter_map(|f| match f {
            Flag::Cluster(x) => Some(x.as_str()),
            Flag::Osd { .. } => None,
        })
        .collect();
    if code != "OSDMAP_FLAGS" || ours.is_empty() {
        return false;
    }
    let Some(list) = message.strip_suffix(" flag(s) set") else {
        return false;
    };
    list.split(',').all(|f| ours.contains(&f.trim()))
}

impl Driver for CephOsds {
    fn resolve<'a>(
        &'a self,
        index: usize,
        spec: &'a TargetSpec,
    ) -> BoxFuture<'a, Result<Vec<ResolvedTarget>, PlanError>> {
        Box::pin(async move {
            match &spec.selector {
                Selector::CephOsd(_) if index == self.index => self.resolve_all(spec).await,
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
                TargetDetail::CephOsd(d) if d.spec_index == self.index => {
                    self.restart_osd(target, d, iteration, abort).await
                }
                _ => not_mine(target),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_milestones_wait_for_fresh_stats_of_the_pgs_the_osd_carried_only() {
        let pg = |id: &str, state: &str, epoch: u64, up: &[u32]| PgState {
            pgid: id.into(),
            state: state.into(),
            reported_epoch: epoch,
            up: up.to_vec(),
            acting: up.to_vec(),
        };
        let carried: HashSet<String> = ["1.0".to_string()].into();
        // The OSD's PG still shows clean from before the restart: not yet.
        let stale = [
            pg("1.0", "active+clean", 9, &[0, 1]),
            pg("1.1", "active+clean", 3, &[1, 2]),
        ];
        assert_eq!(pg_milestones(&stale, Some(&carried), 10), None);
        // Fresh for the OSD's PG; an idle PG elsewhere with old stats counts.
        let fresh = [
            pg("1.0", "active+undersized+degraded", 10, &[0, 1]),
            pg("1.1", "active+clean", 3, &[1, 2]),
        ];
        assert_eq!(
            pg_milestones(&fresh, Some(&carried), 10),
            Some((true, false))
        );
        // Not knowing what it carried: every PG must be fresh.
        assert_eq!(pg_milestones(&fresh, None, 10), None);
        let peering = [
            pg("1.0", "peering", 11, &[0, 1]),
            pg("1.1", "active+clean", 12, &[1, 2]),
        ];
        assert_eq!(pg_milestones(&peering, None, 10), Some((false, false)));
        assert_eq!(pg_milestones(&[], None, 10), None);
    }

    #[test]
    fn pg_states() {
        assert!(is_active("active+clean"));
        assert!(is_active("active+undersized+degraded"));
        assert!(!is_active("peering"));
        assert!(!is_active("active+peering"));
        assert!(!is_active("creating+peering"));
    }

    #[test]
    fn only_flags_bounce_set_are_tolerated() {
        let ours = vec![Flag::Cluster("noout".into())];
        assert!(only_our_flags("OSDMAP_FLAGS", "noout flag(s) set", &ours));
        assert!(!only_our_flags(
            "OSDMAP_FLAGS",
            "noout,noscrub flag(s) set",
            &ours
        ));
        assert!(!only_our_flags("OSDMAP_FLAGS", "noout flag(s) set", &[]));
        assert!(!only_our_flags("OSD_DOWN", "1 osds down", &ours));
        let per_osd = vec![Flag::Osd {
            flag: "noout".into(),
            id: 2,
        }];
        let msg = "1 OSDs or CRUSH {nodes, device-classes} have {NOUP,NODOWN,NOIN,NOOUT} flags set";
        assert!(only_our_osd_flags("OSD_FLAGS", msg, &per_osd));
        assert!(!only_our_osd_flags("OSD_FLAGS", msg, &ours));
        assert!(!only_our_osd_flags(
            "OSD_FLAGS",
            &msg.replacen('1', "2", 1),
            &per_osd
        ));
        assert!(!only_our_flags(
            "OSDMAP_FLAGS",
            "noout flag(s) set",
            &per_osd
        ));
    }
}
