//! The node's OSDs as `watch` follows them: a restart nobody asked bounce
//! for, seen through the OSD's unit (`systemd/restarts.rs`) or its container
//! (`docker/restarts.rs`), continued with `run`'s own milestones
//! (`observe.rs`: osd_boot from the admin socket, osd_up from the osdmap,
//! the PGs). It acts on nothing: no flag, no gate, no restart; it only asks
//! the cluster, every question bounded.
//!
//! What `run` notes before its request (the OSD's `up_from`, the PGs it
//! carries) is known here from before the stop: asked once at start and
//! again after each restart followed ([`WatchedOsds::start`]), in the
//! background. When the stop is seen ([`WatchedOsds::opened`]) the osdmap is
//! asked again: an answer that shows the OSD down is the epoch before its
//! stop for sure (the CLI can take longer than a small OSD's whole restart).
//! A restart whose stop this watcher did not see (replayed after its own
//! restart) cannot be measured against the cluster before it: recorded
//! `incomplete`, saying so.

use super::SERVICE;
use super::observe::{self, OsdWait};
use crate::abort::{Abort, bounded};
use crate::ceph::mon::MonClient;
use crate::docker::follow::Followed;
use crate::scenario::{CephOsdSelector, OsdIds, OsdVia, WaitFor};
use crate::timeline::{Ending, realtime_nanos};
use bounce_wire::{BoundaryName, Outcome, TargetRef};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// What the osdmap said of an OSD.
#[derive(Clone, Copy)]
struct Seen {
    up: bool,
    up_from: u64,
}

/// What was known of the OSDs before their stop: each one's `up_from` and
/// the PGs it carries.
type Known = Arc<Mutex<HashMap<u32, (u64, Option<HashSet<String>>)>>>;

/// The osdmap as asked when an OSD's stop was seen.
type Note = JoinHandle<Result<Seen, String>>;

/// The OSDs one watch entry names (as a scenario's `ceph_osd:` does), and
/// how their milestones are followed.
pub struct WatchedOsds {
    selector: CephOsdSelector,
    wait_for: WaitFor,
    /// From the start, how long the milestones may take.
    timeout: Duration,
    cli: MonClient,
    known: Known,
    /// What each OSD's last seen stop noted, until its restart is followed.
    notes: Mutex<HashMap<u32, Note>>,
}

impl WatchedOsds {
    /// Opens the way to the cluster (a librados session connects here, so
    /// a wrong configuration fails at start); asks nothing yet: watching an
    /// OSD costs nothing until it stops.
    pub async fn connect(
        selector: CephOsdSelector,
        wait_for: WaitFor,
        timeout: Duration,
    ) -> Result<WatchedOsds, crate::ceph::mon::MonError> {
        let cli = MonClient::open(&selector.ceph).await?;
        Ok(WatchedOsds {
            selector,
            wait_for,
            timeout,
            cli,
            known: Known::default(),
            notes: Mutex::new(HashMap::new()),
        })
    }

    /// Asks, in the background and bounded, what `run` asks before its
    /// request (`up_from`, the PGs carried) for every OSD (`id`: one).
    pub fn start(&self, id: Option<u32>) {
        let (cli, known) = (self.cli.clone(), self.known.clone());
        let (wait_for, bound) = (self.wait_for, self.timeout);
        tokio::spawn(async move {
            let asked = async {
                let (_, osds) = cli.osd_dump().await.ok()?;
                let pgs = match wait_for >= WaitFor::PgsActive {
                    true => cli.pgs().await.ok(),
                    false => None,
                };
                let mut k = known.lock().expect("known");
                for o in osds.iter().filter(|o| id.is_none_or(|i| i == o.id)) {
                    let carried = pgs.as_ref().map(|pgs| observe::carried_by(pgs, o.id));
                    k.insert(o.id, (o.up_from, carried));
                }
                Some(())
            };
            let _ = tokio::time::timeout(bound, asked).await;
        });
    }

    /// The units to follow on the manager of `via: systemd`: the bus and
    /// the unit names or glob (`{id}` as `*` for `ids: all`).
    pub fn unit_patterns(&self) -> Option<(&crate::scenario::Bus, Vec<String>)> {
        let OsdVia::Systemd { unit, bus } = &self.selector.via else {
            return None;
        };
        let names = match &self.selector.ids {
            OsdIds::All => vec![unit.0.replace("{id}", "*")],
            OsdIds::List(ids) => ids.iter().map(|id| unit.with(*id)).collect(),
        };
        Some((bus, names))
    }

    /// The OSD a followed unit (by bus and name) is, if this entry names it.
    pub fn unit_osd(&self, bus: &str, name: &str) -> Option<u32> {
        match &self.selector.via {
            OsdVia::Systemd { unit, bus: b } if b.to_string() == bus => {
                self.named(unit.id_of(name))
            }
            _ => None,
        }
    }

    /// The OSD a container (by name) is, if this entry names it.
    pub fn container_osd(&self, name: &str) -> Option<u32> {
        match &self.selector.via {
            OsdVia::Docker { container } => self.named(container.id_of(name)),
            OsdVia::Systemd { .. } => None,
        }
    }

    /// The OSD a followed restart's target is, if this entry names it: a
    /// unit by its name, or by the container it wraps (kolla's unit of a
    /// `via: docker` OSD).
    pub fn osd_of(&self, target: &TargetRef) -> Option<u32> {
        match target {
            TargetRef::Systemd {
                name,
                bus,
                container,
            } => self
                .unit_osd(bus, name)
                .or_else(|| self.container_osd(container.as_deref()?)),
            TargetRef::Docker { name, .. } => self.container_osd(name),
            TargetRef::CephOsd { .. } => None,
        }
    }

    fn named(&self, id: Option<u32>) -> Option<u32> {
        id.filter(|id| match &self.selector.ids {
            OsdIds::All => true,
            OsdIds::List(ids) => ids.contains(id),
        })
    }

    /// The stop of OSD `id` was seen now: ask the osdmap (in the
    /// background, bounded by the timeout; the follow waits for it).
    pub fn opened(&self, id: u32) {
        let cli = self.cli.clone();
        let bound = self.timeout;
        let note = tokio::spawn(async move {
            let asked = async {
                let (_, osds) = cli
                    .osd_dump()
                    .await
                    .map_err(|e| format!("osd dump when its stop was seen: {e}"))?;
                let o = osds.iter().find(|o| o.id == id);
                Ok(Seen {
                    up: o.is_some_and(|o| o.up),
                    up_from: o.map(|o| o.up_from).unwrap_or(0),
                })
            };
            match tokio::time::timeout(bound, asked).await {
                Ok(seen) => seen,
                Err(_) => Err(format!(
                    "the cluster did not answer `osd dump` within {}s of the stop",
                    bound.as_secs()
                )),
            }
        });
        let old = self.notes.lock().expect("notes").insert(id, note);
        // A stop whose restart was never followed (given up as incomplete).
        if let Some(old) = old {
            old.abort();
        }
    }

    /// A restart of OSD `id` followed to its start (readiness left to this:
    /// no probes), continued to Ceph's milestones up to `wait_for`, and
    /// recorded as the OSD's; `abort` (the watcher stopping) ends the wait
    /// with the milestones seen so far.
    pub async fn follow(&self, id: u32, mut f: Followed, abort: &Abort) -> Followed {
        let tl = &mut f.timeline;
        tl.target = match std::mem::replace(
            &mut tl.target,
            TargetRef::Docker {
                name: String::new(),
                id: String::new(),
            },
        ) {
            TargetRef::Systemd {
                name,
                bus,
                container,
            } => TargetRef::CephOsd {
                id,
                unit: Some(name),
                bus: Some(bus),
                container,
            },
            TargetRef::Docker { name, .. } => TargetRef::CephOsd {
                id,
                unit: None,
                bus: None,
                container: Some(name),
            },
            other => other,
        };
        tl.service = SERVICE.into();
        // As in `run`: where an OSD's time went is said from its milestones.
        tl.attribution = None;
        let note = self.notes.lock().expect("notes").remove(&id);
        if f.ending.outcome != Outcome::Ok {
            if let Some(n) = note {
                n.abort();
            }
            return f;
        }
        // The timeout counts from the start, as for every watched restart.
        let since_start = tl
            .at(BoundaryName::Started)
            .map(|s| Duration::from_nanos((realtime_nanos() - s).max(0) as u64))
            .unwrap_or_default();
        let deadline = Instant::now() + self.timeout.saturating_sub(since_start);
        let Some(note) = note else {
            f.ending = Ending::new(
                Outcome::Incomplete,
                "Ceph's milestones not followed: this watcher did not see the OSD's stop, so the osdmap before it is unknown",
            );
            return f;
        };
        let noted = match bounded(note, deadline, abort).await {
            Ok(Ok(noted)) => noted,
            Ok(Err(e)) => Err(format!("noting the osdmap: {e}")),
            Err(i) => {
                let doing = "asking the cluster for the osdmap when the stop was seen";
                f.ending = Ending::interrupted(i, self.timeout, doing);
                return f;
            }
        };
        let known = self.known.lock().expect("known").get(&id).cloned();
        // Down when asked: the epoch before the stop for sure. Up: from
        // before the stop (not yet marked down) or already back; what was
        // known before the stop tells.
        let (up_from, carried) = match (noted, known) {
            (Ok(n), k) if !n.up => (n.up_from, k.and_then(|k| k.1)),
            (_, Some(k)) => k,
            (Ok(n), None) => (n.up_from, None),
            (Err(why), None) => {
                f.ending = Ending::new(Outcome::Failed, why);
                return f;
            }
        };
        let socket = PathBuf::from(self.selector.admin_socket.with(id));
        let wait = OsdWait {
            id,
            admin_socket: &socket,
            up_from_before: up_from,
            carried: carried.as_ref(),
            wait_for: self.wait_for,
            deadline,
            abort,
            timeout: self.timeout,
        };
        f.ending = observe::follow_milestones(&self.cli, wait, &mut f.timeline).await;
        // Known again for its next restart.
        self.start(Some(id));
        f
    }
}
