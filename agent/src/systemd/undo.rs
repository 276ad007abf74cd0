//! The manager's side of undoing an intent (`intent.rs`): what a unit is
//! now (active since when, on its way back, down, not loaded) and starting
//! it, following the start job to its result, on the bus the intent names.

use super::SystemdManager;
use super::bus::{self, UNIT_IFACE, string, uint};
use crate::intent::{Seen, UndoTarget};
use crate::scenario::Bus;
use crate::target::BoxFuture;
use futures_util::StreamExt;

/// How an intent names a bus: `system`, `user`, or the address (the user
/// bus's address is written out when known, so a later process with
/// another environment reaches the same manager).
pub fn recorded_bus(bus: &Bus) -> String {
    match bus {
        Bus::User => std::env::var("DBUS_SESSION_BUS_ADDRESS").unwrap_or_else(|_| "user".into()),
        other => other.to_string(),
    }
}

fn bus_of(recorded: &str) -> Bus {
    match recorded {
        "system" => Bus::System,
        "user" => Bus::User,
        address => Bus::Address(address.to_string()),
    }
}

/// One unit on one manager.
pub struct UnitUndo {
    manager: SystemdManager,
    unit: String,
}

impl UnitUndo {
    pub async fn connect(bus: &str, unit: &str) -> Result<UnitUndo, String> {
        let manager = SystemdManager::connect(&bus_of(bus), None)
            .await
            .map_err(|e| e.to_string())?;
        Ok(UnitUndo {
            manager,
            unit: unit.to_string(),
        })
    }
}

impl UndoTarget for UnitUndo {
    fn seen(&self) -> BoxFuture<'_, Result<Seen, String>> {
        Box::pin(async move {
            let link = self.manager.link();
            let path = link
                .manager
                .load_unit(&self.unit)
                .await
                .map_err(|e| format!("LoadUnit: {e}"))?;
            let props = bus::props(&link.conn, &path)
                .await
                .map_err(|e| format!("D-Bus: {e}"))?;
            let p = props
                .get_all(UNIT_IFACE)
                .await
                .map_err(|e| format!("D-Bus: {e}"))?;
            let get = |k: &str| p.get(k).and_then(string).unwrap_or_default();
            if get("LoadState") == "not-found" {
                return Ok(Seen::Gone);
            }
            Ok(match get("ActiveState").as_str() {
                "active" | "reloading" => Seen::Up {
                    since_unix_nanos: p
                        .get("ActiveEnterTimestamp")
                        .and_then(uint)
                        .map(|us| us as i64 * 1000)
                        .unwrap_or(0),
                },
                "activating" => Seen::ComingBack,
                other => Seen::Down(other.to_string()),
            })
        })
    }

    fn start(&self, deadline: tokio::time::Instant) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let link = self.manager.link();
            let m = &link.manager;
            let mut jobs = m
                .receive_job_removed()
                .await
                .map_err(|e| format!("D-Bus: {e}"))?;
            let job = m
                .start_unit(&self.unit, "replace")
                .await
                .map_err(|e| format!("start: {e}"))?;
            let result = async {
                while let Some(signal) = jobs.next().await {
                    if let Ok(args) = signal.args()
                        && args.job == job
                    {
                        return args.result;
                    }
                }
                "the bus went away".to_string()
            };
            match tokio::time::timeout_at(deadline, result).await {
                Ok(r) if r == "done" => Ok(()),
                Ok(r) => Err(format!("the start job ended `{r}`")),
                Err(_) => Err("the start job did not end in time".into()),
            }
        })
    }
}
