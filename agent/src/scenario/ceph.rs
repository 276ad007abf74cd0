//! Ceph OSD targets in a scenario: which OSDs, how each is restarted (its unit
//! or its container), how the agent asks the cluster, and the gates that must
//! hold before and between OSD restarts.

use super::checked;
use super::duration::Span;
use super::systemd::Bus;
use super::values::NonEmpty;
use serde::Deserialize;
use serde::de::{self, Deserializer};
use std::fmt;
use std::path::PathBuf;

/// The OSDs of this node, restarted through their systemd units or their
/// containers.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawCephOsdSelector")]
pub struct CephOsdSelector {
    /// `all` (the OSDs whose units or containers this node has) or a list of ids.
    pub ids: OsdIds,
    pub via: OsdVia,
    /// How to ask the cluster: the `ceph` CLI or a librados session.
    pub ceph: CephAccess,
    /// The admin socket of OSD `{id}`.
    pub admin_socket: IdTemplate,
}

/// How the agent asks the cluster (monitors, and the mgr behind them).
///
/// In a scenario: a list is the command that runs `ceph` (e.g. `[docker,
/// exec, ceph-mon-HOST, ceph]`); `{librados: {conf: ..., name: ...,
/// keyring: ...}}` is one persistent session in the agent (a millisecond per
/// call instead of the CLI's start-up). The same form is kept in the state
/// file of flags to unset, so a later start asks the same way.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CephAccess {
    Librados(LibradosAccess),
    // Untagged variants come last (serde's rule): a plain list.
    #[serde(untagged)]
    Cli(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct LibradosAccess {
    /// The cluster configuration (`mon host`, and usually `keyring`).
    pub conf: PathBuf,
    /// The client to authenticate as.
    #[serde(default = "default_client_name")]
    pub name: String,
    /// A keyring other than the one the configuration names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyring: Option<PathBuf>,
}

fn default_client_name() -> String {
    "client.admin".into()
}

impl<'de> Deserialize<'de> for CephAccess {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = CephAccess;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("the command that runs ceph (a list) or {librados: {conf: PATH}}")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<CephAccess, A::Error> {
                let NonEmpty(words) =
                    NonEmpty::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
                Ok(CephAccess::Cli(words))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<CephAccess, A::Error> {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Wrapped {
                    librados: LibradosAccess,
                }
                let w = Wrapped::deserialize(de::value::MapAccessDeserializer::new(map))?;
                if !w.librados.name.contains('.') {
                    return Err(de::Error::custom(format!(
                        "librados.name {:?} is not an entity name: write it as TYPE.ID, e.g. client.admin",
                        w.librados.name
                    )));
                }
                Ok(CephAccess::Librados(w.librados))
            }
        }
        d.deserialize_any(V)
    }
}

/// How an OSD is restarted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OsdVia {
    /// Its unit (ceph-ansible: `ceph-osd@{id}.service`; cephadm:
    /// `ceph-FSID@osd.{id}.service`), on a systemd manager's bus.
    Systemd { unit: IdTemplate, bus: Bus },
    /// Its container, through the Docker engine (OSDs run as plain
    /// containers with a restart policy).
    Docker { container: IdTemplate },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCephOsdSelector {
    #[serde(default)]
    ids: OsdIds,
    #[serde(default)]
    via: Via,
    unit: Option<IdTemplate>,
    bus: Option<Bus>,
    container: Option<IdTemplate>,
    #[serde(default = "default_ceph_cli")]
    ceph: CephAccess,
    #[serde(default = "default_osd_asok")]
    admin_socket: IdTemplate,
}

impl TryFrom<RawCephOsdSelector> for CephOsdSelector {
    type Error = String;
    fn try_from(raw: RawCephOsdSelector) -> Result<CephOsdSelector, String> {
        let via = match raw.via {
            Via::Systemd => {
                if raw.container.is_some() {
                    return Err("`container:` goes with `via: docker`; with `via: systemd` (the default) name the `unit:`".into());
                }
                OsdVia::Systemd {
                    unit: raw
                        .unit
                        .unwrap_or_else(|| IdTemplate("ceph-osd@{id}.service".into())),
                    bus: raw.bus.unwrap_or_default(),
                }
            }
            Via::Docker => {
                if raw.unit.is_some() || raw.bus.is_some() {
                    return Err("`unit:` and `bus:` go with `via: systemd`; with `via: docker` name the `container:`".into());
                }
                OsdVia::Docker {
                    container: raw
                        .container
                        .unwrap_or_else(|| IdTemplate("ceph-osd-{id}".into())),
                }
            }
        };
        Ok(CephOsdSelector {
            ids: raw.ids,
            via,
            ceph: raw.ceph,
            admin_socket: raw.admin_socket,
        })
    }
}
fn default_osd_asok() -> IdTemplate {
    IdTemplate("/var/run/ceph/ceph-osd.{id}.asok".into())
}
fn default_ceph_cli() -> CephAccess {
    CephAccess::Cli(vec!["ceph".into()])
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum OsdIds {
    #[default]
    All,
    List(Vec<u32>),
}

impl<'de> Deserialize<'de> for OsdIds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = OsdIds;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`all` or a list of OSD ids")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<OsdIds, E> {
                match v {
                    "all" => Ok(OsdIds::All),
                    other => Err(E::custom(format!(
                        "{other:?}: write `all` or a list such as [0, 3]"
                    ))),
                }
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<OsdIds, A::Error> {
                let mut ids = Vec::new();
                while let Some(id) = seq.next_element::<u32>()? {
                    if ids.contains(&id) {
                        return Err(de::Error::custom(format!("osd.{id} is listed twice")));
                    }
                    ids.push(id);
                }
                if ids.is_empty() {
                    return Err(de::Error::custom("must list at least one OSD id"));
                }
                Ok(OsdIds::List(ids))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    #[default]
    Systemd,
    Docker,
}

/// A string with one `{id}` in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdTemplate(pub String);

impl IdTemplate {
    pub fn with(&self, id: u32) -> String {
        self.0.replace("{id}", &id.to_string())
    }
    /// The id in `s`, if `s` is this template filled in.
    pub fn id_of(&self, s: &str) -> Option<u32> {
        let (pre, post) = self.0.split_once("{id}")?;
        s.strip_prefix(pre)?.strip_suffix(post)?.parse().ok()
    }
}

impl<'de> Deserialize<'de> for IdTemplate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked::string(d, "a name with {id} in it", |s| {
            if s.matches("{id}").count() != 1 {
                return Err(format!("{s:?} must contain {{id}} exactly once"));
            }
            Ok(IdTemplate(s.to_string()))
        })
    }
}

/// What must hold before and between OSD restarts (Ceph OSD targets).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gates {
    /// `ok` (default): HEALTH_OK, or HEALTH_WARN with only `allow_warnings`
    /// (and the flags bounce itself set) before each restart.
    #[serde(default)]
    pub health: HealthGate,
    /// Health check codes tolerated, e.g. [LARGE_OMAP_OBJECTS].
    #[serde(default)]
    pub allow_warnings: Vec<String>,
    /// Ask `ceph osd ok-to-stop` before each restart (default true).
    #[serde(default = "yes")]
    pub ok_to_stop: bool,
    /// `true` (default): set `noout` for the run; `per_osd`: on each OSD
    /// only while it restarts (`ceph osd add-noout`); `false`: never.
    /// Whatever bounce set is unset on every exit path.
    #[serde(default)]
    pub noout: Noout,
    /// The milestone that makes an OSD restart done and lets the next one start.
    #[serde(default)]
    pub wait_for: WaitFor,
    /// How long a gate may take to hold before the restart is abandoned.
    #[serde(default = "default_gate_timeout")]
    pub timeout: Span,
}

fn yes() -> bool {
    true
}
fn default_gate_timeout() -> Span {
    Span::secs(600)
}

impl Default for Gates {
    fn default() -> Gates {
        Gates {
            health: HealthGate::Ok,
            allow_warnings: Vec::new(),
            ok_to_stop: true,
            noout: Noout::Cluster,
            wait_for: WaitFor::PgsActive,
            timeout: default_gate_timeout(),
        }
    }
}

/// Where `noout` goes while OSDs restart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Noout {
    /// Not set.
    Off,
    /// Cluster-wide, from the first OSD restart to the end of the run.
    #[default]
    Cluster,
    /// On the restarting OSD only, from its stop until its `wait_for`.
    PerOsd,
}

impl<'de> Deserialize<'de> for Noout {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Noout;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("true, false or per_osd")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Noout, E> {
                Ok(if v { Noout::Cluster } else { Noout::Off })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Noout, E> {
                match v {
                    "per_osd" => Ok(Noout::PerOsd),
                    other => Err(E::custom(format!(
                        "{other:?}: write true (for the run), per_osd (each OSD while it restarts) or false"
                    ))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthGate {
    #[default]
    Ok,
    /// No health requirement (not recommended).
    Any,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitFor {
    OsdUp,
    #[default]
    PgsActive,
    PgsClean,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Selector;
    use crate::scenario::tests::{err, parse};

    #[test]
    fn ceph_access_is_a_cli_prefix_or_a_librados_session() {
        let sel = |text: &str| {
            let s = parse(&format!(
                "deployment: lab\ntargets:\n  - ceph_osd: {text}\n"
            ))
            .unwrap();
            let Selector::CephOsd(c) = &s.targets[0].selector else {
                panic!("ceph")
            };
            c.ceph.clone()
        };
        assert_eq!(sel("{}"), CephAccess::Cli(vec!["ceph".into()]));
        assert_eq!(
            sel("{ceph: [docker, exec, ceph-mon-a, ceph]}"),
            CephAccess::Cli(vec![
                "docker".into(),
                "exec".into(),
                "ceph-mon-a".into(),
                "ceph".into()
            ])
        );
        let l = CephAccess::Librados(LibradosAccess {
            conf: "/etc/ceph/ceph.conf".into(),
            name: "client.admin".into(),
            keyring: None,
        });
        assert_eq!(sel("{ceph: {librados: {conf: /etc/ceph/ceph.conf}}}"), l);
        assert_eq!(
            sel("{ceph: {librados: {conf: /c, name: client.bounce, keyring: /k}}}"),
            CephAccess::Librados(LibradosAccess {
                conf: "/c".into(),
                name: "client.bounce".into(),
                keyring: Some("/k".into()),
            })
        );
        // The state file keeps it in the same shape (and older files, a list).
        for a in [l, CephAccess::Cli(vec!["ceph".into()])] {
            let text = serde_json::to_string(&a).unwrap();
            assert_eq!(
                serde_json::from_str::<CephAccess>(&text).unwrap(),
                a,
                "{text}"
            );
        }
        for (bad, says) in [
            ("{ceph: []}", "at least one"),
            ("{ceph: {rados: {conf: /c}}}", "librados"),
            ("{ceph: {librados: {name: client.admin}}}", "conf"),
            ("{ceph: {librados: {conf: /c, user: x}}}", "user"),
            ("{ceph: {librados: {conf: /c, name: admin}}}", "TYPE.ID"),
            ("{ceph: ceph}", "a list"),
        ] {
            let e = err(&format!("deployment: lab\ntargets:\n  - ceph_osd: {bad}\n"));
            assert!(e.contains(says), "{bad}: {e}");
            assert!(e.contains(":3:"), "names the line: {bad}: {e}");
        }
    }

    #[test]
    fn ceph_osd_targets_parse_with_their_gates() {
        let s = parse(
            "deployment: lab\ntargets:\n  - ceph_osd:\n      ids: [0, 3]\n      ceph: [ceph, --conf, /etc/ceph/ceph.conf]\n    gates: {health: ok, allow_warnings: [LARGE_OMAP_OBJECTS], ok_to_stop: true, noout: true, wait_for: pgs_clean}\n    timeout: 600s\n",
        )
        .unwrap();
        let t = &s.targets[0];
        let Selector::CephOsd(c) = &t.selector else {
            panic!("ceph")
        };
        assert_eq!(c.ids, OsdIds::List(vec![0, 3]));
        let OsdVia::Systemd { unit, bus } = &c.via else {
            panic!("systemd by default")
        };
        assert_eq!(*bus, Bus::System);
        assert_eq!(unit.with(3), "ceph-osd@3.service");
        assert_eq!(unit.id_of("ceph-osd@12.service"), Some(12));
        assert_eq!(c.admin_socket.with(0), "/var/run/ceph/ceph-osd.0.asok");
        let g = t.gates.as_ref().unwrap();
        assert_eq!(g.wait_for, WaitFor::PgsClean);
        assert_eq!(g.allow_warnings, ["LARGE_OMAP_OBJECTS"]);
        let d = parse("deployment: lab\ntargets:\n  - ceph_osd: {}\n").unwrap();
        assert_eq!(d.targets[0].gates.as_ref().unwrap().noout, Noout::Cluster);
        let d = parse("deployment: lab\ntargets:\n  - ceph_osd: {}\n    gates: {noout: per_osd}\n")
            .unwrap();
        assert_eq!(d.targets[0].gates.as_ref().unwrap().noout, Noout::PerOsd);
        let d = parse("deployment: lab\ntargets:\n  - ceph_osd: {}\n    gates: {noout: false}\n")
            .unwrap();
        assert_eq!(d.targets[0].gates.as_ref().unwrap().noout, Noout::Off);
        let e = err("deployment: lab\ntargets:\n  - ceph_osd: {}\n    gates: {noout: sometimes}\n");
        assert!(e.contains("per_osd"), "{e}");

        let e = err("deployment: lab\ntargets:\n  - ceph_osd: {ids: [1, 1]}\n");
        assert!(e.contains("listed twice"), "{e}");
        let e = err("deployment: lab\ntargets:\n  - ceph_osd: {unit: ceph-osd.service}\n");
        assert!(e.contains("{id}"), "{e}");
        let d = parse("deployment: lab\ntargets:\n  - ceph_osd: {via: docker}\n").unwrap();
        let Selector::CephOsd(sel) = &d.targets[0].selector else {
            panic!()
        };
        assert_eq!(
            sel.via,
            OsdVia::Docker {
                container: IdTemplate("ceph-osd-{id}".into())
            }
        );
        let e = err("deployment: lab\ntargets:\n  - ceph_osd: {via: docker, unit: \"x@{id}\"}\n");
        assert!(
            e.contains("`unit:` and `bus:` go with `via: systemd`"),
            "{e}"
        );
        let e = err("deployment: lab\ntargets:\n  - ceph_osd: {container: \"osd-{id}\"}\n");
        assert!(e.contains("`container:` goes with `via: docker`"), "{e}");
        let e = err("deployment: lab\ntargets:\n  - ceph_osd: {via: podman}\n");
        assert!(e.contains("podman"), "{e}");
        let e = err("deployment: lab\ntargets:\n  - ceph_osd: {}\n    gates: {wait_for: soon}\n");
        assert!(e.contains("soon"), "{e}");
    }
}
