//! The gates before each OSD restart: the cluster's health (HEALTH_OK, or
//! only the warnings the scenario allows and the flags bounce itself set)
//! and `ceph osd ok-to-stop`, waited for within the gates' timeout. In a
//! fleet run `ok-to-stop` is asked for this OSD together with the OSDs the
//! collector says are down with it (granted before it, still held): of any
//! OSDs down at once, the last granted asked for all of them, so two agents
//! never both pass on answers that each left the other out.

use super::CephOsds;
use crate::abort::{Abort, Interrupt, bounded};
use crate::ceph::flags::Flag;
use crate::scenario::HealthGate;
use crate::target::Alongside;
use crate::timeline::Ending;
use bounce_wire::Outcome;
use std::time::Duration;
use tokio::time::Instant;

impl CephOsds {
    /// Waits (bounded by the gates' timeout) until the gates hold for `id`;
    /// never restarts without them. How long it waited and why it last did
    /// not hold, or how the restart ends instead.
    pub(super) async fn wait_gates(
        &self,
        id: u32,
        abort: &Abort,
        alongside: &Alongside,
    ) -> Result<(Duration, Option<String>), Ending> {
        let gate_deadline = Instant::now() + self.gates.timeout.0;
        let waited = Instant::now();
        // Why the gates did not hold, as last answered.
        let mut last: Option<String> = None;
        loop {
            // A mon that does not answer holds one question up to the CLI's
            // timeout: the question is bounded by the gates' own deadline.
            let held = match bounded(self.gates_hold(id, alongside), gate_deadline, abort).await {
                Ok(held) => held,
                Err(Interrupt::Aborted) => {
                    return Err(Ending::new(
                        Outcome::Aborted,
                        "interrupted while waiting for the gates",
                    ));
                }
                // Cut by the deadline (after the sleep below, or a mon that
                // does not answer): the last answer says why.
                Err(Interrupt::Deadline) => Err(last.take().unwrap_or_else(|| {
                    "the cluster did not answer before the gates' deadline".into()
                })),
            };
            match held {
                Ok(()) => return Ok((waited.elapsed(), last)),
                Err(why) if Instant::now() >= gate_deadline => {
                    return Err(Ending::new(
                        Outcome::Failed,
                        format!(
                            "gates did not hold within {}s: {why}",
                            self.gates.timeout.0.as_secs()
                        ),
                    ));
                }
                Err(why) => {
                    last = Some(why);
                    if bounded(
                        tokio::time::sleep(Duration::from_secs(1)),
                        gate_deadline,
                        abort,
                    )
                    .await
                        == Err(Interrupt::Aborted)
                    {
                        return Err(Ending::new(
                            Outcome::Aborted,
                            "interrupted while waiting for the gates",
                        ));
                    }
                }
            }
        }
    }

    /// Whether the gates hold for restarting `id` now (with the fleet's
    /// `alongside` down too); why not otherwise.
    async fn gates_hold(&self, id: u32, alongside: &Alongside) -> Result<(), String> {
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
        if g.ok_to_stop {
            let ids = with_alongside(id, &alongside.names());
            if !self.cli.ok_to_stop(&ids).await.map_err(|e| e.to_string())? {
                let list: Vec<String> = ids.iter().map(u32::to_string).collect();
                return Err(format!("`ceph osd ok-to-stop {}` says no", list.join(" ")));
            }
        }
        Ok(())
    }
}

/// `id` first, then every `osd.N` of the fleet's list that is not `id`.
fn with_alongside(id: u32, alongside: &[String]) -> Vec<u32> {
    let mut ids = vec![id];
    for n in alongside {
        if let Some(other) = n.strip_prefix("osd.").and_then(|x| x.parse().ok())
            && !ids.contains(&other)
        {
            ids.push(other);
        }
    }
    ids
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ok_to_stop_asks_for_the_osds_down_alongside() {
        let along = ["osd.4".to_string(), "osd.1".into(), "osd.4".into()];
        assert_eq!(with_alongside(1, &along), [1, 4]);
        assert_eq!(with_alongside(2, &[]), [2]);
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
