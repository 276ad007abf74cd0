//! The D-Bus side of a systemd manager: the agent's own small proxies for the
//! Manager and Properties interfaces (seven methods, two signals), connecting
//! to a bus (a [`Link`]) and telling whether it still answers, and reading
//! D-Bus values.

use crate::scenario::Bus;
use crate::target::PlanError;
use std::collections::HashMap;
use zbus::zvariant::{OwnedObjectPath, OwnedValue, Value};

pub(super) const UNIT_IFACE: &str = "org.freedesktop.systemd1.Unit";
pub(super) const SERVICE_IFACE: &str = "org.freedesktop.systemd1.Service";

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1"
)]
pub(super) trait Manager {
    /// Without a subscriber, the manager sends no job or unit signals.
    fn subscribe(&self) -> zbus::Result<()>;
    fn restart_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn start_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn stop_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn kill_unit(&self, name: &str, whom: &str, signal: i32) -> zbus::Result<()>;
    fn load_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;
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
pub(super) trait Props {
    fn get_all(&self, interface: &str) -> zbus::Result<HashMap<String, OwnedValue>>;
    #[zbus(signal)]
    fn properties_changed(
        &self,
        interface: String,
        changed: HashMap<String, OwnedValue>,
        invalidated: Vec<String>,
    ) -> zbus::Result<()>;
}

pub(super) fn bus_error(bus: &Bus, e: impl std::fmt::Display) -> PlanError {
    PlanError::Engine(format!("systemd manager on the {bus} bus: {e}"))
}

/// One connection to the manager: the bus connection and the Manager
/// proxy on it, subscribed. A new one replaces it when the bus went away.
#[derive(Clone)]
pub(super) struct Link {
    pub(super) conn: zbus::Connection,
    pub(super) manager: ManagerProxy<'static>,
}

impl Link {
    /// Whether the manager answers on this connection (a D-Bus ping
    /// through the bus, bounded): a dropped bus fails it at once.
    pub(super) async fn answers(&self) -> Result<(), String> {
        let ping = async {
            zbus::fdo::PeerProxy::builder(&self.conn)
                .destination("org.freedesktop.systemd1")?
                .path("/org/freedesktop/systemd1")?
                .build()
                .await?
                .ping()
                .await
        };
        match tokio::time::timeout(PING_TIMEOUT, ping).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {}s", PING_TIMEOUT.as_secs())),
        }
    }
}

/// One ping's bound: a manager that does not answer within it is not there.
const PING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// An error of the connection itself (the bus went away), as opposed to an
/// answer of the manager (no such unit, job failed).
pub(super) fn is_transport(e: &zbus::Error) -> bool {
    matches!(
        e,
        zbus::Error::InputOutput(_) | zbus::Error::Connection(..) | zbus::Error::Handshake(_)
    )
}

/// Why a restart in flight ended when the manager's bus went away.
pub(super) fn went_away(cause: &str) -> String {
    format!(
        "the systemd manager's bus went away during the restart ({cause}); boundaries seen before are kept"
    )
}

/// Connects to the manager on `bus` and subscribes to its signals.
pub(super) async fn connect(bus: &Bus) -> Result<Link, PlanError> {
    connect_noting(bus, |_| {}).await
}

/// [`connect`], telling `stage` each step it begins, so that a try cut
/// off by a timeout can say where it hung.
pub(super) async fn connect_noting(
    bus: &Bus,
    stage: impl Fn(&'static str),
) -> Result<Link, PlanError> {
    stage("connecting to the bus");
    let conn = match bus {
        Bus::System => zbus::Connection::system().await,
        Bus::User => zbus::Connection::session().await,
        Bus::Address(a) => match zbus::connection::Builder::address(a.as_str()) {
            Ok(b) => b.build().await,
            Err(e) => Err(e),
        },
    }
    .map_err(|e| bus_error(bus, e))?;
    stage("asking the manager to subscribe");
    let manager = ManagerProxy::new(&conn)
        .await
        .map_err(|e| bus_error(bus, e))?;
    manager.subscribe().await.map_err(|e| bus_error(bus, e))?;
    Ok(Link { conn, manager })
}

/// A unit's Properties, read fresh each time (never cached).
pub(super) async fn props(
    conn: &zbus::Connection,
    path: &OwnedObjectPath,
) -> zbus::Result<PropsProxy<'static>> {
    PropsProxy::builder(conn)
        .path(path.clone())?
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
}

pub(super) fn string(v: &OwnedValue) -> Option<String> {
    match &**v {
        Value::Str(s) => Some(s.to_string()),
        _ => None,
    }
}

pub(super) fn uint(v: &OwnedValue) -> Option<u64> {
    match &**v {
        Value::U64(x) => Some(*x),
        Value::U32(x) => Some(*x as u64),
        _ => None,
    }
}

pub(super) fn int(v: &OwnedValue) -> Option<i32> {
    match &**v {
        Value::I32(x) => Some(*x),
        Value::U32(x) => Some(*x as i32),
        _ => None,
    }
}
