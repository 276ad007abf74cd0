//! Units of a systemd manager as a scenario selects them, and which manager
//! (bus) to ask.

use super::checked;
use super::values::{NamePattern, NonEmpty};
use serde::Deserialize;
use serde::de::Deserializer;
use std::fmt;

/// Units of a systemd manager.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemdSelector {
    /// Exact unit names or globs, e.g. `kolla-*-container.service`.
    pub units: NonEmpty<NamePattern>,
    /// `system` (default), `user`, or a D-Bus address (`unix:path=/run/...`).
    #[serde(default)]
    pub bus: Bus,
}

/// Which systemd manager: the system one (on a node), the user one, or the one
/// behind a D-Bus address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Bus {
    #[default]
    System,
    User,
    Address(String),
}

impl fmt::Display for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bus::System => f.write_str("system"),
            Bus::User => f.write_str("user"),
            Bus::Address(a) => f.write_str(a),
        }
    }
}

impl<'de> Deserialize<'de> for Bus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked::string(d, "system, user or a D-Bus address", |s| match s {
            "system" => Ok(Bus::System),
            "user" => Ok(Bus::User),
            a if a.contains(':') && a.contains('=') => Ok(Bus::Address(a.to_string())),
            other => Err(format!(
                "{other:?} is not a bus: write system, user, or a D-Bus address such as unix:path=/run/user/0/bus"
            )),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Selector;
    use crate::scenario::tests::{err, parse};
    use bounce_wire::Action;

    #[test]
    fn systemd_targets_parse_and_are_checked() {
        let s = parse(
            "deployment: lab\ntargets:\n  - systemd:\n      units: [\"kolla-*-container.service\"]\n      bus: user\n    action: kill\n    ready: [{tcp: {port: 8774}}]\n",
        )
        .unwrap();
        let Selector::Systemd(sel) = &s.targets[0].selector else {
            panic!("systemd")
        };
        assert_eq!(sel.bus, Bus::User);
        assert!(sel.units.0[0].matches("kolla-nova_api-container.service"));
        assert_eq!(s.targets[0].action, Action::Kill);

        let e = err("deployment: lab\ntargets:\n  - systemd: {units: [a.service], bus: session}\n");
        assert!(e.contains("not a bus"), "{e}");
    }
}
