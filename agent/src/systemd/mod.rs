//! systemd managers as a source of truth: units are targets, the manager's
//! D-Bus API (the same on the system and user managers) restarts them and
//! its job signals and unit properties give the phase boundaries.
//!
//! - [`bus`]: the D-Bus proxies and values;
//! - [`observe`]: the observer, property signals and unit timestamps folded
//!   into boundaries, on the realtime axis through a monotonic/realtime
//!   clock pair;
//! - [`act`]: the actor, jobs queued and followed to their result;
//! - [`attribution`]: where the time went, in words;
//! - [`resolve`]: `systemd:` selectors to checked targets;
//! - [`restarts`]: `watch`'s observer of every unit it follows on a manager;
//! - [`away`]: what a unit's own stamps say happened while the bus was away;
//! - [`undo`]: a unit's state and start, for undoing an intent.
//!
//! This file: the manager connection (connected again for the next restart
//! when its bus went away), what a target keeps ([`UnitDetail`]),
//! and the two seams it implements ([`Driver`] for a `systemd:` entry,
//! [`Restart`] for a unit).

mod act;
mod attribution;
mod away;
mod bus;
mod observe;
mod resolve;
pub mod restarts;
pub mod undo;

pub use attribution::attribute;

use crate::abort::{Abort, Interrupt, bounded};
use crate::docker::{ContainerDetail, DockerEngine};
use crate::intent::Journal;
use crate::scenario::{Bus, SystemdSelector, TargetSpec};
use crate::target::{BoxFuture, Driver, PlanError, ResolvedTarget, Restart, RestartContext};
use crate::timeline::{Ending, Timeline};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::time::Instant;
use zbus::zvariant::OwnedObjectPath;

/// How often to try the bus again after it went away.
const RECONNECT_POLL: Duration = Duration::from_millis(250);
/// How long one try to connect may take: a socket-activated bus accepts the
/// connection before its daemon answers, and a try that hangs must not use
/// up the whole restart's timeout (seen once under load: no try ended).
const CONNECT_TRY: Duration = Duration::from_secs(3);

/// A connection to one systemd manager.
pub struct SystemdManager {
    bus: Bus,
    /// Replaced by a new connection (and `Subscribe`) when the bus went away.
    link: RwLock<bus::Link>,
    /// The engine that runs the containers kolla's units wrap, when reachable.
    docker: Option<Arc<DockerEngine>>,
    /// Where the actor writes its intents (none: `plan`, `recover`).
    journal: Option<Arc<Journal>>,
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
    pub engine: Option<ContainerDetail>,
}

impl SystemdManager {
    /// Connects and subscribes; a bus that is not there is an error here,
    /// before anything restarts.
    pub async fn connect(
        bus: &Bus,
        docker: Option<Arc<DockerEngine>>,
    ) -> Result<SystemdManager, PlanError> {
        let link = bus::connect(bus).await?;
        Ok(SystemdManager {
            bus: bus.clone(),
            link: RwLock::new(link),
            docker,
            journal: None,
        })
    }

    /// Restarts through this manager record their intents in `journal`.
    pub fn with_journal(self, journal: Option<Arc<Journal>>) -> SystemdManager {
        SystemdManager { journal, ..self }
    }

    /// The current connection.
    fn link(&self) -> bus::Link {
        self.link.read().expect("link lock").clone()
    }

    /// Makes sure the manager answers, connecting again (a new connection,
    /// `Subscribe`) while it does not: the bus went away (dbus-daemon
    /// restarted) and the manager has to come back on the new one. Bounded
    /// by the restart's deadline and the run's abort; `Ok(true)` when it
    /// had to reconnect, else what the last try said.
    async fn connected(
        &self,
        deadline: Instant,
        abort: &Abort,
    ) -> Result<bool, (Interrupt, String)> {
        if self.link().answers().await.is_ok() {
            return Ok(false);
        }
        let mut last = String::new();
        let reconnected = bounded(
            async {
                loop {
                    // Where this try is, for the error when it hangs.
                    let stage = Mutex::new("connecting to the bus");
                    let note = |s| *stage.lock().expect("stage lock") = s;
                    let try_once = async {
                        let link = bus::connect_noting(&self.bus, note)
                            .await
                            .map_err(|e| e.to_string())?;
                        note("pinging the manager");
                        link.answers().await?;
                        Ok::<_, String>(link)
                    };
                    match tokio::time::timeout(CONNECT_TRY, try_once).await {
                        Ok(Ok(link)) => {
                            *self.link.write().expect("link lock") = link;
                            return;
                        }
                        Ok(Err(why)) => last = why,
                        Err(_) => {
                            last = format!(
                                "no answer within {} s while {}",
                                CONNECT_TRY.as_secs(),
                                stage.lock().expect("stage lock")
                            )
                        }
                    }
                    tokio::time::sleep(RECONNECT_POLL).await;
                }
            },
            deadline,
            abort,
        )
        .await;
        reconnected.map(|()| true).map_err(|i| (i, last))
    }

    pub fn bus(&self) -> &Bus {
        &self.bus
    }
}

/// One `systemd:` target entry, bound to the manager on its bus.
pub struct Units {
    manager: Arc<SystemdManager>,
    selector: SystemdSelector,
}

impl Units {
    pub fn new(manager: Arc<SystemdManager>, selector: SystemdSelector) -> Units {
        Units { manager, selector }
    }
}

impl Driver for Units {
    fn resolve<'a>(
        &'a self,
        index: usize,
        spec: &'a TargetSpec,
    ) -> BoxFuture<'a, Result<Vec<ResolvedTarget>, PlanError>> {
        Box::pin(resolve::resolve_entry(
            &self.manager,
            index,
            &self.selector,
            spec,
        ))
    }
}

/// What restarts one unit: its manager and the unit's detail.
struct UnitTarget {
    manager: Arc<SystemdManager>,
    detail: UnitDetail,
}

impl Restart for UnitTarget {
    fn restart<'a>(&'a self, cx: RestartContext<'a>) -> BoxFuture<'a, (Timeline, Ending)> {
        Box::pin(self.manager.restart_unit(cx, &self.detail))
    }
}
