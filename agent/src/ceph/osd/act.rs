//! The actor of an OSD's restart, with the operators' discipline around it:
//! `noout` (for the run, or on this OSD while it restarts), the gates, the
//! osdmap epoch and the PGs the OSD carries noted before; the stop and start
//! through its systemd unit or its container (timed by that driver); then
//! the milestones, up to the gates' `wait_for`.

use super::observe::{self, OsdWait};
use super::{CephOsds, OsdDetail, OsdRestart};
use crate::abort::bounded;
use crate::ceph::flags::Flag;
use crate::scenario::Noout;
use crate::target::RestartContext;
use crate::timeline::{Ending, Timeline, realtime_nanos};
use bounce_wire::{BoundaryName, Outcome};
use std::time::Duration;
use tokio::time::Instant;

impl CephOsds {
    /// One OSD restart: flags and gates, the stop and start through its
    /// unit or container, then the milestones.
    pub(super) async fn restart_osd(
        &self,
        cx: RestartContext<'_>,
        d: &OsdDetail,
    ) -> (Timeline, Ending) {
        let fail = |why: String| (cx.timeline(), Ending::new(Outcome::Failed, why));
        if self.gates.noout == Noout::Cluster
            && let Err(e) = self.flags.ensure(&Flag::Cluster("noout".into())).await
        {
            return fail(format!("could not set noout: {e}"));
        }
        let (gate_wait, last_no) = match self.wait_gates(d.id, cx.abort, cx.alongside).await {
            Ok(waited) => waited,
            Err(ending) => return (cx.timeline(), ending),
        };
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
        // Bounded like every wait: a mon that does not answer holds a
        // question up to the client's own timeout.
        let before = match bounded(observe::up_from(&self.cli, d.id), cx.deadline, cx.abort).await {
            Ok(Ok(up_from)) => up_from,
            Ok(Err(e)) => return fail(format!("osd dump: {e}")),
            Err(i) => {
                let doing = "asking the cluster for the osdmap before the restart";
                return (cx.timeline(), cx.interrupted(i, doing));
            }
        };
        // The PGs this OSD carries: their stats must be fresh after the
        // restart; the others' need not be (see `pg_milestones`).
        let carried = observe::carried(&self.cli, d.id, self.gates.wait_for).await;

        // Stop and start, timed by systemd (unit) or the engine (container).
        let (mut tl, ending) = match &d.restart {
            OsdRestart::Unit(unit) => {
                let manager = self.manager.as_ref().expect("connected for via: systemd");
                manager.restart_unit(cx, unit).await
            }
            OsdRestart::Container(c) => {
                let docker = self.docker.as_ref().expect("connected for via: docker");
                docker.restart_container(cx, c).await
            }
        };
        tl.attribution = None;
        if let Some(why) = last_no {
            tl.notes.push(format!(
                "waited {:.1} s for the gates (the last no: {why})",
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
        // The milestones share the restart's timeout, counted from the request.
        let cx = RestartContext {
            deadline: Instant::now() + cx.target.timeout.saturating_sub(elapsed),
            ..cx
        };
        let wait = OsdWait {
            id: d.id,
            admin_socket: &d.admin_socket,
            up_from_before: before,
            carried: carried.as_ref(),
            wait_for: self.gates.wait_for,
            deadline: cx.deadline,
            abort: cx.abort,
            timeout: cx.target.timeout,
        };
        let ending = observe::follow_milestones(&self.cli, wait, &mut tl).await;
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
}
