//! Scenarios: what to restart, how, how many at once, and what "ready" means.
//!
//! A scenario is validated completely while it is read, before the engine is
//! even contacted: every check that can be made on the text is made inside
//! deserialization, so that its error carries the file, line, column and key
//! path. `scenarios/README.md` documents the format.

mod checked;
pub mod duration;

use crate::target::Action;
use duration::Span;
use globset::{Glob, GlobMatcher};
use serde::Deserialize;
use serde::de::{self, Deserializer};
use std::fmt;
use std::path::{Path, PathBuf};

/// A scenario that has been read and checked.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Where it was read from (for messages and for the report).
    pub file: PathBuf,
    /// The text as read, kept so a run's output can carry it verbatim.
    pub text: String,
    pub deployment: Name,
    pub name: Name,
    pub repeat: u32,
    pub concurrency: u32,
    pub pause: Span,
    pub on_failure: OnFailure,
    pub targets: Vec<TargetSpec>,
}

/// A bad scenario: where, and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}:{line}:{column}: {path}: {message}")]
    Invalid {
        file: String,
        line: usize,
        column: usize,
        /// Key path such as `targets[0].ready[1].tcp.port` (`.` for the document).
        path: String,
        message: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Start no new restart after one that did not end `ok` (the default: this is production).
    #[default]
    Abort,
    /// Record the failure and go on.
    Continue,
}

/// A name that can be a label value and a file name: `[A-Za-z0-9][A-Za-z0-9_.-]*`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(String);

impl Name {
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn parse(s: &str) -> Result<Name, String> {
        let ok_first = s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
        let ok_rest = s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if ok_first && ok_rest && s.len() <= 128 {
            Ok(Name(s.to_string()))
        } else {
            Err(format!(
                "{s:?} is not a valid name (letters, digits, '_', '.', '-'; starting with a letter or digit; at most 128)"
            ))
        }
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked::string(d, "a name", Name::parse)
    }
}

/// One entry of `targets:`: exactly one selector (`docker` or `systemd`) and
/// how to restart what it selects.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawTarget")]
pub struct TargetSpec {
    pub selector: Selector,
    pub action: Action,
    /// Docker's stop timeout before SIGKILL; whole seconds (the engine's unit).
    /// Default: the container's own StopTimeout, else the engine's 10 s.
    /// Docker targets only: a unit's stop timeout is its `TimeoutStopSec=`.
    pub stop_timeout: Option<StopTimeout>,
    /// All must hold. Default: `docker_health` when the container has a health
    /// check, else `running`.
    pub ready: Option<NonEmpty<ProbeSpec>>,
    /// Per restart, from the request until ready.
    pub timeout: Span,
    /// Cluster conditions (Ceph OSD targets only).
    pub gates: Option<Gates>,
}

#[derive(Debug, Clone)]
pub enum Selector {
    Docker(DockerSelector),
    Systemd(SystemdSelector),
    CephOsd(CephOsdSelector),
}

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    docker: Option<DockerSelector>,
    systemd: Option<SystemdSelector>,
    ceph_osd: Option<CephOsdSelector>,
    gates: Option<Gates>,
    #[serde(default)]
    action: Action,
    stop_timeout: Option<StopTimeout>,
    ready: Option<NonEmpty<ProbeSpec>>,
    #[serde(default = "default_timeout")]
    timeout: Span,
}

impl TryFrom<RawTarget> for TargetSpec {
    type Error = String;
    fn try_from(raw: RawTarget) -> Result<TargetSpec, String> {
        let mut selectors = Vec::new();
        if let Some(d) = raw.docker {
            selectors.push(Selector::Docker(d));
        }
        if let Some(s) = raw.systemd {
            selectors.push(Selector::Systemd(s));
        }
        if let Some(c) = raw.ceph_osd {
            selectors.push(Selector::CephOsd(c));
        }
        if selectors.len() > 1 {
            return Err("a target has one selector (`docker:`, `systemd:` or `ceph_osd:`); make two entries".into());
        }
        let Some(selector) = selectors.pop() else {
            return Err("a target needs a selector: `docker:`, `systemd:` or `ceph_osd:`".into());
        };
        if raw.stop_timeout.is_some() && !matches!(selector, Selector::Docker(_)) {
            return Err("stop_timeout applies to docker targets; a unit stops within its own TimeoutStopSec=".into());
        }
        if raw.gates.is_some() && !matches!(selector, Selector::CephOsd(_)) {
            return Err("gates apply to ceph_osd targets".into());
        }
        if matches!(selector, Selector::CephOsd(_)) && raw.ready.is_some() {
            return Err("a ceph_osd target is ready at its gates' `wait_for` milestone; `ready:` does not apply".into());
        }
        if matches!(selector, Selector::CephOsd(_)) && raw.action == Action::Kill {
            return Err("action kill is not offered for OSDs: use restart or stop-start".into());
        }
        let gates = match &selector {
            Selector::CephOsd(_) => Some(raw.gates.unwrap_or_default()),
            _ => None,
        };
        Ok(TargetSpec {
            selector,
            action: raw.action,
            stop_timeout: raw.stop_timeout,
            ready: raw.ready,
            timeout: raw.timeout,
            gates,
        })
    }
}

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

fn default_timeout() -> Span {
    Span::secs(300)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerSelector {
    /// Exact names or globs over container names.
    pub names: NonEmpty<NamePattern>,
}

/// A glob over target names (`keystone*`, `neutron_*_agent`).
#[derive(Debug, Clone)]
pub struct NamePattern {
    pub text: String,
    matcher: GlobMatcher,
}

impl NamePattern {
    pub fn parse(s: &str) -> Result<NamePattern, String> {
        if s.trim().is_empty() {
            return Err("empty name pattern".into());
        }
        let glob = Glob::new(s).map_err(|e| format!("{s:?} is not a valid glob: {e}"))?;
        Ok(NamePattern {
            text: s.to_string(),
            matcher: glob.compile_matcher(),
        })
    }
    pub fn matches(&self, name: &str) -> bool {
        self.matcher.is_match(name)
    }
}

impl<'de> Deserialize<'de> for NamePattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked::string(d, "a name or glob", NamePattern::parse)
    }
}

/// A list that must have at least one element.
#[derive(Debug, Clone)]
pub struct NonEmpty<T>(pub Vec<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for NonEmpty<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked::non_empty(d).map(NonEmpty)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopTimeout(pub u32);

impl<'de> Deserialize<'de> for StopTimeout {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Span::deserialize_checked(d, |span| {
            if span.0.subsec_nanos() != 0 {
                return Err(format!(
                    "{span} is not whole seconds (Docker's stop timeout has a resolution of 1 s)"
                ));
            }
            if span.0.as_secs() > 3600 {
                return Err(format!("{span} is longer than the 1h bounce allows"));
            }
            Ok(StopTimeout(span.0.as_secs() as u32))
        })
    }
}

/// A readiness probe (design.md, "Probes, honestly"). Written as a map with
/// one key naming the probe: `- tcp: {port: 8774}`.
#[derive(Debug, Clone)]
pub enum ProbeSpec {
    /// The container is running: ready at the `start` event.
    Running(Empty),
    /// Docker's own `health_status: healthy` event (one health interval late at best).
    DockerHealth(Empty),
    /// The container's configured health command, run through `docker exec`.
    ExecHealth(ExecHealthSpec),
    /// A TCP connect.
    Tcp(TcpSpec),
    /// An HTTP GET.
    Http(HttpSpec),
}

impl ProbeSpec {
    pub fn label(&self) -> String {
        match self {
            ProbeSpec::Running(_) => "running".into(),
            ProbeSpec::DockerHealth(_) => "docker_health".into(),
            ProbeSpec::ExecHealth(e) => format!("exec_health every {}", e.interval),
            ProbeSpec::Tcp(t) => format!("tcp {}:{} every {}", t.host, t.port.0, t.interval),
            ProbeSpec::Http(h) => format!("http {} every {}", h.url.text, h.interval),
        }
    }
}

const PROBE_KINDS: &[&str] = &["running", "docker_health", "exec_health", "tcp", "http"];

impl<'de> Deserialize<'de> for ProbeSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = ProbeSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "a map with one key, one of {}", PROBE_KINDS.join(", "))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<ProbeSpec, A::Error> {
                let Some(kind) = map.next_key::<String>()? else {
                    return Err(de::Error::custom(format!(
                        "empty probe: name one of {}",
                        PROBE_KINDS.join(", ")
                    )));
                };
                let probe = match kind.as_str() {
                    "running" => ProbeSpec::Running(map.next_value()?),
                    "docker_health" => ProbeSpec::DockerHealth(map.next_value()?),
                    "exec_health" => ProbeSpec::ExecHealth(map.next_value()?),
                    "tcp" => ProbeSpec::Tcp(map.next_value()?),
                    "http" => ProbeSpec::Http(map.next_value()?),
                    other => return Err(de::Error::unknown_variant(other, PROBE_KINDS)),
                };
                if let Some(extra) = map.next_key::<String>()? {
                    return Err(de::Error::custom(format!(
                        "one probe per list entry: start a new `- {extra}:` entry"
                    )));
                }
                Ok(probe)
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecHealthSpec {
    #[serde(default = "default_exec_interval")]
    pub interval: Interval,
    /// Per try. Default: the container's health check timeout, else 30 s (Docker's default).
    pub try_timeout: Option<Span>,
}

fn default_exec_interval() -> Interval {
    Interval(Span::millis(200))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpSpec {
    #[serde(default = "default_host")]
    pub host: Host,
    pub port: Port,
    #[serde(default = "default_tcp_interval")]
    pub interval: Interval,
    #[serde(default = "default_tcp_try_timeout")]
    pub try_timeout: Span,
}

fn default_host() -> Host {
    Host("127.0.0.1".into())
}
fn default_tcp_interval() -> Interval {
    Interval(Span::millis(100))
}
fn default_tcp_try_timeout() -> Span {
    Span::secs(1)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSpec {
    pub url: HttpUrl,
    /// Accepted status codes: numbers (`200`) or classes (`"2xx"`). Default: any
    /// status below 400, as kolla's `healthcheck_curl` (curl --fail) judges.
    pub expect_status: Option<NonEmpty<StatusMatch>>,
    #[serde(default = "default_http_interval")]
    pub interval: Interval,
    #[serde(default = "default_http_try_timeout")]
    pub try_timeout: Span,
}

fn default_http_interval() -> Interval {
    Interval(Span::millis(200))
}
fn default_http_try_timeout() -> Span {
    Span::secs(2)
}

/// A probe interval: at least 10 ms, so a probe can never spin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval(pub Span);

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> Deserialize<'de> for Interval {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Span::deserialize_checked(d, |span| {
            if span.0.as_millis() < 10 {
                return Err(format!(
                    "{span} is too short for a probe interval (at least 10ms)"
                ));
            }
            Ok(Interval(span))
        })
    }
}

/// A host to probe. Only names that resolve to loopback or literal addresses
/// are checked here; the agent probes what the operator names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host(pub String);

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Host {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked::string(d, "a host name or address", |s| {
            if s.is_empty() || s.contains(|c: char| c.is_whitespace() || c == '/') {
                return Err(format!("{s:?} is not a host name or address"));
            }
            Ok(Host(s.to_string()))
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Port(pub u16);

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked::integer(d, "a TCP port", |v| {
            if !(1..=65535).contains(&v) {
                return Err(format!("{v} is not a TCP port (1-65535)"));
            }
            Ok(Port(v as u16))
        })
    }
}

/// A plain-HTTP URL split into what the probe needs.
#[derive(Debug, Clone)]
pub struct HttpUrl {
    pub text: String,
    pub authority: String,
}

impl<'de> Deserialize<'de> for HttpUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked::string(d, "an http:// URL", |s| {
            let uri: hyper::Uri = s.parse().map_err(|e| format!("{s:?} is not a URL: {e}"))?;
            match uri.scheme_str() {
                Some("http") => {}
                Some("https") => {
                    return Err(
                        "https is not supported by the http probe yet; probe the plain port or use tcp"
                            .into(),
                    );
                }
                _ => return Err(format!("{s:?} must start with http://")),
            }
            let authority = uri
                .authority()
                .map(|a| a.to_string())
                .ok_or_else(|| format!("{s:?} has no host"))?;
            Ok(HttpUrl {
                text: s.to_string(),
                authority,
            })
        })
    }
}

/// An accepted HTTP status: one code, or a class such as `2xx`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusMatch {
    Code(u16),
    Class(u16),
}

impl StatusMatch {
    pub fn accepts(&self, status: u16) -> bool {
        match *self {
            StatusMatch::Code(c) => c == status,
            StatusMatch::Class(c) => status / 100 == c,
        }
    }
}

impl<'de> Deserialize<'de> for StatusMatch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = StatusMatch;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an HTTP status (200) or class (\"2xx\")")
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<StatusMatch, E> {
                if (100..=599).contains(&n) {
                    Ok(StatusMatch::Code(n as u16))
                } else {
                    Err(E::custom(format!("{n} is not an HTTP status (100-599)")))
                }
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<StatusMatch, E> {
                self.visit_i64(n.min(i64::MAX as u64) as i64)
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<StatusMatch, E> {
                match s.as_bytes() {
                    [c @ b'1'..=b'5', b'x', b'x'] => Ok(StatusMatch::Class((c - b'0') as u16)),
                    _ => Err(E::custom(format!("{s:?} is not a status class (1xx-5xx)"))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// Bounds that keep a typo from becoming an outage.
const MAX_REPEAT: u32 = 100_000;
const MAX_CONCURRENCY: u32 = 256;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    deployment: Name,
    scenario: Option<Name>,
    #[serde(default = "one", deserialize_with = "repeat")]
    repeat: u32,
    #[serde(default = "one", deserialize_with = "concurrency")]
    concurrency: u32,
    #[serde(default)]
    pause: Option<Span>,
    #[serde(default)]
    on_failure: OnFailure,
    targets: NonEmpty<TargetSpec>,
}

fn one() -> u32 {
    1
}

fn bounded<'de, D: Deserializer<'de>>(d: D, max: u32) -> Result<u32, D::Error> {
    checked::integer(d, "a whole number", |v| {
        if v < 1 || v > max as i64 {
            return Err(format!("{v} is out of range (1-{max})"));
        }
        Ok(v as u32)
    })
}
fn repeat<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    bounded(d, MAX_REPEAT)
}
fn concurrency<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    bounded(d, MAX_CONCURRENCY)
}

impl Scenario {
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            file: path.display().to_string(),
            source,
        })?;
        Scenario::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Scenario, ScenarioError> {
        let file = path.display().to_string();
        let invalid = |path: String, loc: Option<yaml_serde::Location>, message: String| {
            let (line, column) = loc.map(|l| (l.line(), l.column())).unwrap_or((1, 1));
            ScenarioError::Invalid {
                file: file.clone(),
                line,
                column,
                path,
                message,
            }
        };
        let de = yaml_serde::Deserializer::from_str(text);
        let raw: RawScenario = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let loc = inner.location();
            let message = strip_position(&inner.to_string());
            // yaml_serde may lead with (part of) the path; it is already in front.
            let message = match message.split_once(": ") {
                Some((lead, rest)) if path.starts_with(lead) => rest.to_string(),
                _ => message,
            };
            invalid(path, loc, message)
        })?;
        let name = match raw.scenario {
            Some(n) => n,
            None => {
                let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
                Name::parse(stem).map_err(|m| {
                    invalid(
                        "scenario".into(),
                        None,
                        format!("no `scenario:` given and the file name cannot stand in: {m}"),
                    )
                })?
            }
        };
        Ok(Scenario {
            file: path.to_path_buf(),
            text: text.to_string(),
            deployment: raw.deployment,
            name,
            repeat: raw.repeat,
            concurrency: raw.concurrency,
            pause: raw.pause.unwrap_or(Span::secs(0)),
            on_failure: raw.on_failure,
            targets: raw.targets.0,
        })
    }
}

/// yaml_serde appends " at line L column C" to messages; the position is
/// already in front of ours.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) if msg[i..].contains(" column ") => msg[..i].to_string(),
        _ => msg.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        Scenario::parse(Path::new("s.yaml"), text)
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    const GOOD: &str = r#"
deployment: lab
scenario: kolla-api-sample
repeat: 3
concurrency: 1
pause: 2s
on_failure: abort
targets:
  - docker:
      names: ["nova_api", "keystone*"]
    action: restart
    stop_timeout: 10s
    ready:
      - docker_health: {}
      - exec_health: {interval: 200ms}
      - tcp: {host: 127.0.0.1, port: 8774, interval: 100ms}
      - http: {url: "http://127.0.0.1:8774/", expect_status: [200, 300], interval: 200ms}
    timeout: 300s
"#;

    #[test]
    fn the_documented_example_means_what_it_says() {
        let s = parse(GOOD).unwrap();
        assert_eq!(s.deployment.as_str(), "lab");
        assert_eq!(s.name.as_str(), "kolla-api-sample");
        assert_eq!((s.repeat, s.concurrency), (3, 1));
        assert_eq!(s.pause, Span::secs(2));
        assert_eq!(s.on_failure, OnFailure::Abort);
        let t = &s.targets[0];
        let Selector::Docker(d) = &t.selector else {
            panic!("docker")
        };
        assert!(d.names.0[1].matches("keystone_fernet"));
        assert!(!d.names.0[0].matches("nova_api_x"));
        assert_eq!(t.action, Action::Restart);
        assert_eq!(t.stop_timeout, Some(StopTimeout(10)));
        let ready = &t.ready.as_ref().unwrap().0;
        assert_eq!(ready.len(), 4);
        match &ready[3] {
            ProbeSpec::Http(h) => {
                assert_eq!(h.url.authority, "127.0.0.1:8774");
                let m = &h.expect_status.as_ref().unwrap().0;
                assert!(m[0].accepts(200) && !m[0].accepts(201));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(t.timeout, Span::secs(300));
    }

    #[test]
    fn scenario_name_defaults_to_the_file_name() {
        let s = Scenario::parse(
            Path::new("dir/rabbit-only.yaml"),
            "deployment: lab\ntargets: [{docker: {names: [rabbitmq]}}]\n",
        )
        .unwrap();
        assert_eq!(s.name.as_str(), "rabbit-only");
        assert_eq!(s.on_failure, OnFailure::Abort);
        assert_eq!(s.targets[0].timeout, Span::secs(300));
    }

    #[test]
    fn unknown_keys_are_refused_with_position_and_path() {
        let e = err("deployment: lab\ntargets:\n  - docker: {names: [a]}\n    actoin: kill\n");
        assert!(e.starts_with("s.yaml:4:"), "{e}");
        assert!(e.contains("targets[0]"), "{e}");
        assert!(e.contains("actoin"), "{e}");
    }

    #[test]
    fn values_are_checked_where_they_stand() {
        let e = err(
            "deployment: lab\ntargets:\n  - docker: {names: [a]}\n    ready:\n      - tcp: {port: 70000}\n",
        );
        assert!(e.starts_with("s.yaml:5:"), "{e}");
        assert!(e.contains("targets[0].ready[0].tcp.port"), "{e}");
        assert!(e.contains("70000 is not a TCP port"), "{e}");

        let e =
            err("deployment: lab\ntargets:\n  - docker: {names: [a]}\n    stop_timeout: 1500ms\n");
        assert!(e.contains("not whole seconds"), "{e}");

        let e = err("deployment: lab\nconcurrency: 0\ntargets:\n  - docker: {names: [a]}\n");
        assert!(e.starts_with("s.yaml:2:"), "{e}");
        assert!(e.contains("concurrency"), "{e}");
    }

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

        let e = err(
            "deployment: lab\ntargets:\n  - systemd: {units: [a.service]}\n    stop_timeout: 10s\n",
        );
        assert!(e.starts_with("s.yaml:3:"), "{e}");
        assert!(e.contains("TimeoutStopSec"), "{e}");
        let e = err("deployment: lab\ntargets:\n  - systemd: {units: [a.service], bus: session}\n");
        assert!(e.contains("not a bus"), "{e}");
        let e = err("deployment: lab\ntargets:\n  - action: restart\n");
        assert!(e.contains("needs a selector"), "{e}");
    }

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
        let e =
            err("deployment: lab\ntargets:\n  - docker: {names: [a]}\n    gates: {noout: true}\n");
        assert!(e.contains("gates apply to ceph_osd"), "{e}");
        let e = err("deployment: lab\ntargets:\n  - ceph_osd: {}\n    gates: {wait_for: soon}\n");
        assert!(e.contains("soon"), "{e}");
    }

    #[test]
    fn missing_required_keys_are_named() {
        let e = err("targets:\n  - docker: {names: [a]}\n");
        assert!(e.contains("deployment"), "{e}");
        let e = err("deployment: lab\ntargets: []\n");
        assert!(e.contains("at least one"), "{e}");
    }
}
