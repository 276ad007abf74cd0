//! `ceph_osd` targets: the OSDs of this node, restarted through their systemd
//! units, with Ceph's own milestones after the unit is running again and the
//! operators' discipline around every restart: gates (health, ok-to-stop)
//! before, `noout` for the run, and the next OSD only after the `wait_for`
//! milestone.
//!
//! Timing: the unit's stop and start come from systemd (see `systemd.rs`);
//! the Ceph milestones are polled by the agent and stamped with the end of
//! the first poll that showed them (source `ceph`): the OSD's admin socket
//! every 20 ms (~0.2 ms a call), the mon's osdmap and the mgr's PG stats every
//! 250 ms (a `ceph` CLI call costs 175-300 ms). PG states count only when
//! reported at or after the OSD's new `up_from` epoch (the mgr's stats lag
//! and can still show the PGs as clean from before the restart).

use super::asok;
use super::cli::CephCli;
use super::flags::FlagGuard;
use crate::abort::{Abort, bounded};
use crate::scenario::{CephOsdSelector, Gates, HealthGate, OsdIds, Selector, TargetSpec, WaitFor};
use crate::systemd::{SystemdManager, UnitDetail};
use crate::target::{BoxFuture, Driver, PlanError, ResolvedTarget, TargetDetail, not_mine};
use crate::timeline::{Ending, Timeline, realtime_nanos};
use bounce_wire::{BoundaryName, Outcome, Source, TargetRef};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

const ASOK_POLL: Duration = Duration::from_millis(20);
const CLI_POLL: Duration = Duration::from_millis(250);
/// Histograms of all OSDs group under this service name; per-OSD detail is
/// in the timelines.
pub const SERVICE: &str = "ceph-osd";

#[derive(Debug, Clone)]
pub struct OsdDetail {
    pub id: u32,
    pub unit: UnitDetail,
    pub admin_socket: PathBuf,
    pub spec_index: usize,
}

/// One `ceph_osd` target entry: its manager, its cluster and its flags.
pub struct CephOsds {
    index: usize,
    selector: CephOsdSelector,
    gates: Gates,
    manager: SystemdManager,
    cli: CephCli,
    flags: Arc<FlagGuard>,
}

impl CephOsds {
    pub async fn connect(
        index: usize,
        spec: &TargetSpec,
        selector: &CephOsdSelector,
        state_dir: &std::path::Path,
    ) -> Result<CephOsds, PlanError> {
        let manager = SystemdManager::connect(&selector.bus, None).await?;
        let cli = CephCli::new(selector.ceph.0.clone());
        // A cluster that does not answer is an error before anything restarts.
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

    async fn resolve_all(&self, spec: &TargetSpec) -> Result<Vec<ResolvedTarget>, PlanError> {
        let index = self.index;
        let sel = &self.selector;
        let mut found: Vec<(u32, String, String, zbus::zvariant::OwnedObjectPath)> = Vec::new();
        match &sel.ids {
            OsdIds::All => {
                let pattern = sel.unit.0.replace("{id}", "*");
                for (name, state, path) in self.manager.list_units(&pattern).await? {
                    if let Some(id) = sel.unit.id_of(&name) {
                        found.push((id, name, state, path));
                    }
                }
                if found.is_empty() {
                    return Err(PlanError::NoUnit {
                        index,
                        pattern,
                        bus: sel.bus.to_string(),
                    });
                }
            }
            OsdIds::List(ids) => {
                for id in ids {
                    let name = sel.unit.with(*id);
                    let hits = self.manager.list_units(&name).await?;
                    let Some((name, state, path)) = hits.into_iter().next() else {
                        return Err(PlanError::NoUnit {
                            index,
                            pattern: name,
                            bus: sel.bus.to_string(),
                        });
                    };
                    found.push((*id, name, state, path));
                }
            }
        }
        found.sort_by_key(|f| f.0);
        let (_, osds) = self
            .cli
            .osd_dump()
            .await
            .map_err(|e| PlanError::Engine(e.to_string()))?;
        let mut out = Vec::new();
        for (id, name, state, path) in found {
            if state != "active" {
                return Err(PlanError::NotRunning { index, name, state });
            }
            let up = osds.iter().find(|o| o.id == id);
            let Some(up) = up else {
                return Err(PlanError::Engine(format!(
                    "targets[{index}]: osd.{id} (unit {name}) is not in the cluster's osdmap"
                )));
            };
            let g = &self.gates;
            let facts = format!(
                "unit active, osd.{id} {} in the osdmap (up_from {}); gates: health {}{}, ok-to-stop {}, noout {}; next OSD after {}",
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
                if g.noout {
                    "set for the run, unset at its end"
                } else {
                    "not set"
                },
                match g.wait_for {
                    WaitFor::OsdUp => "osd_up",
                    WaitFor::PgsActive => "pgs_active",
                    WaitFor::PgsClean => "pgs_clean",
                },
            );
            out.push(ResolvedTarget {
                spec_index: index,
                target: TargetRef::CephOsd {
                    id,
                    unit: name.clone(),
                    bus: sel.bus.to_string(),
                },
                service: SERVICE.into(),
                action: spec.action,
                ready: Vec::new(),
                timeout: spec.timeout.0,
                facts,
                detail: TargetDetail::CephOsd(OsdDetail {
                    id,
                    unit: UnitDetail {
                        name,
                        bus: sel.bus.clone(),
                        path,
                        container: None,
                    },
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
                        !g.allow_warnings.contains(code) && !only_our_flags(code, message, &ours)
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
        if self.gates.noout
            && let Err(e) = self.flags.ensure("noout").await
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
        let before = match self.cli.osd_dump().await {
            Ok((_, osds)) => osds
                .iter()
                .find(|o| o.id == d.id)
                .map(|o| o.up_from)
                .unwrap_or(0),
            Err(e) => return fail(format!("osd dump: {e}")),
        };

        // The unit: stop, start, timed by systemd.
        let unit_target = ResolvedTarget {
            detail: TargetDetail::Systemd(d.unit.clone()),
            ..t.clone()
        };
        let (mut tl, ending) = self
            .manager
            .restart_unit(&unit_target, &d.unit, iteration, abort)
            .await;
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
            .follow_milestones(d, before, deadline, abort, &mut tl)
            .await;
        (tl, ending)
    }

    /// osd_boot, osd_up, pgs_active, pgs_clean: up to the gates' `wait_for`.
    async fn follow_milestones(
        &self,
        d: &OsdDetail,
        up_from_before: u64,
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
            Ok(at) => tl.mark(BoundaryName::OsdActive, at, src("admin socket status")),
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
                    tokio::time::sleep(CLI_POLL).await;
                }
            },
            deadline,
            abort,
        )
        .await;
        let up_from = match up {
            Ok((at, epoch)) => {
                tl.mark(BoundaryName::OsdUp, at, src("osd dump"));
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
                            && !pgs.is_empty()
                            && pgs.iter().all(|p| p.reported_epoch >= up_from)
                        {
                            let now = realtime_nanos();
                            if active_at.is_none() && pgs.iter().all(|p| is_active(&p.state)) {
                                active_at = Some(now);
                            }
                            let clean = pgs.iter().all(|p| p.state == "active+clean");
                            if let Some(a) = active_at
                                && (wait_for == WaitFor::PgsActive || clean)
                            {
                                return (a, clean.then_some(now));
                            }
                        }
                        tokio::time::sleep(CLI_POLL).await;
                    }
                },
                deadline,
                abort,
            )
            .await;
            match pgs {
                Ok((active, clean)) => {
                    tl.mark(BoundaryName::PgsActive, active, src("pg dump pgs"));
                    if let Some(c) = clean {
                        tl.mark(BoundaryName::PgsClean, c, src("pg dump pgs"));
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

/// A PG state string is active and not peering/down/incomplete.
fn is_active(state: &str) -> bool {
    let parts: Vec<&str> = state.split('+').collect();
    parts.contains(&"active")
        && !parts
            .iter()
            .any(|p| matches!(*p, "peering" | "down" | "incomplete" | "stale"))
}

/// OSDMAP_FLAGS whose message names only flags bounce itself set ("noout flag(s) set").
fn only_our_flags(code: &str, message: &str, ours: &[String]) -> bool {
    if code != "OSDMAP_FLAGS" || ours.is_empty() {
        return false;
    }
    let Some(list) = message.strip_suffix(" flag(s) set") else {
        return false;
    };
    list.split(',').all(|f| ours.iter().any(|o| o == f.trim()))
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
    fn pg_states() {
        assert!(is_active("active+clean"));
        assert!(is_active("active+undersized+degraded"));
        assert!(!is_active("peering"));
        assert!(!is_active("active+peering"));
        assert!(!is_active("creating+peering"));
    }

    #[test]
    fn only_flags_bounce_set_are_tolerated() {
        let ours = vec!["noout".to_string()];
        assert!(only_our_flags("OSDMAP_FLAGS", "noout flag(s) set", &ours));
        assert!(!only_our_flags(
            "OSDMAP_FLAGS",
            "noout,noscrub flag(s) set",
            &ours
        ));
        assert!(!only_our_flags("OSDMAP_FLAGS", "noout flag(s) set", &[]));
        assert!(!only_our_flags("OSD_DOWN", "1 osds down", &ours));
    }
}
