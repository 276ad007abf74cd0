//! The observer of an OSD's restart: Ceph's own milestones after the OSD
//! process runs again, each stamped with the end of the first poll that
//! showed it (source `ceph`): `osd_boot` from the OSD's admin socket (every
//! 20 ms, ~0.2 ms a call), `osd_up` from the mon's osdmap (every 250 ms
//! through the CLI, a call costing 175-300 ms, or 50 ms through librados,
//! ~1 ms), `pgs_active`/`pgs_clean` from the mgr's PG stats (every 250 ms).
//! PG states count only when reported at or after the OSD's new `up_from`
//! epoch (the mgr's stats lag and can still show the PGs as clean from
//! before the restart).

use crate::abort::{Abort, bounded};
use crate::ceph::asok;
use crate::ceph::mon::{MonClient, MonError, PgState};
use crate::scenario::WaitFor;
use crate::timeline::{Ending, Timeline, realtime_nanos};
use bounce_wire::{BoundaryName, Source};
use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;
use tokio::time::Instant;

const ASOK_POLL: Duration = Duration::from_millis(20);
/// The mgr's PG stats: their own period (5 s stock) bounds the resolution,
/// and `pg dump pgs` grows with the cluster, so no faster than this.
const PG_POLL: Duration = Duration::from_millis(250);

/// What the milestones of one OSD restart are measured against: the OSD,
/// the cluster as it was before the stop, and the restart's bounds.
pub struct OsdWait<'a> {
    pub id: u32,
    pub admin_socket: &'a Path,
    /// The OSD's `up_from` before the stop: `osd_up` needs a newer one.
    pub up_from_before: u64,
    /// The PGs it carried before the stop (unknown: all of them count).
    pub carried: Option<&'a HashSet<String>>,
    /// The last milestone waited for.
    pub wait_for: WaitFor,
    pub deadline: Instant,
    pub abort: &'a Abort,
    /// The restart's timeout, for the words of one that ran out.
    pub timeout: Duration,
}

/// The OSD's `up_from` epoch in the osdmap now (0 when it is not in it).
pub async fn up_from(cli: &MonClient, id: u32) -> Result<u64, MonError> {
    let (_, osds) = cli.osd_dump().await?;
    Ok(osds
        .iter()
        .find(|o| o.id == id)
        .map(|o| o.up_from)
        .unwrap_or(0))
}

/// The PGs the OSD carries now (up or acting), when `wait_for` needs PG
/// states; `None` when not needed or the question failed (then every PG
/// must be fresh, the strict reading).
pub async fn carried(cli: &MonClient, id: u32, wait_for: WaitFor) -> Option<HashSet<String>> {
    if wait_for < WaitFor::PgsActive {
        return None;
    }
    cli.pgs().await.ok().map(|pgs| carried_by(&pgs, id))
}

/// The PGs whose up or acting set holds OSD `id`.
pub fn carried_by(pgs: &[PgState], id: u32) -> HashSet<String> {
    pgs.iter()
        .filter(|p| p.up.contains(&id) || p.acting.contains(&id))
        .map(|p| p.pgid.clone())
        .collect()
}

/// osd_boot, osd_up, pgs_active, pgs_clean: up to `w.wait_for`, after the
/// OSD's process runs again (whoever restarted it).
pub async fn follow_milestones(cli: &MonClient, w: OsdWait<'_>, tl: &mut Timeline) -> Ending {
    let (deadline, abort) = (w.deadline, w.abort);
    let src = |q: &str| Source::Ceph { query: q.into() };
    let wait_for = w.wait_for;
    let (carried, up_from_before) = (w.carried, w.up_from_before);
    // What the last poll said, so that a wait that runs out says why
    // (a mon that does not answer, an OSD still `booting`).
    let last = std::sync::Mutex::new(String::new());
    let said = |what: String| *last.lock().expect("last answer") = what;
    let interrupted = |i, what: &str| {
        let last = last.lock().expect("last answer");
        let doing = match last.is_empty() {
            true => format!("waiting for {what}"),
            false => format!("waiting for {what}; last answer: {last}"),
        };
        Ending::interrupted(i, w.timeout, &doing)
    };
    // The OSD's own view.
    let booted = bounded(
        async {
            loop {
                match asok::osd_status(w.admin_socket, Duration::from_secs(1)).await {
                    Ok(s) if s.state == "active" => return realtime_nanos(),
                    Ok(s) => said(format!("the admin socket says `{}`", s.state)),
                    Err(e) => said(format!("the admin socket: {e}")),
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
                said("the cluster has not answered `osd dump` yet".into());
                match cli.osd_dump().await {
                    Ok((_, osds)) => match osds.iter().find(|o| o.id == w.id) {
                        Some(o) if o.up && o.up_from > up_from_before => {
                            return (realtime_nanos(), o.up_from);
                        }
                        _ => said(format!("osd.{} not yet up from a new epoch", w.id)),
                    },
                    Err(e) => said(e.to_string()),
                }
                tokio::time::sleep(cli.osdmap_poll()).await;
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
                    cli.way(),
                    cli.osdmap_poll().as_millis()
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
                    said("the cluster has not answered `pg dump pgs` yet".into());
                    let seen = match cli.pgs().await {
                        Ok(p) => pg_milestones(&p, carried, up_from).or_else(|| {
                            said(format!("no fresh PG stats since epoch {up_from} yet"));
                            None
                        }),
                        Err(e) => {
                            said(e.to_string());
                            None
                        }
                    };
                    if let Some((active, clean)) = seen {
                        said("PGs not all active+clean yet".into());
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
                    cli.way(),
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
}
