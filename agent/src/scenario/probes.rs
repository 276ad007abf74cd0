//! Readiness probes as a scenario writes them (`ready:`): which probe, and its
//! checked settings (interval, host, port, URL, accepted statuses).

use super::checked;
use super::duration::Span;
use super::values::NonEmpty;
use serde::Deserialize;
use serde::de::{self, Deserializer};
use std::fmt;

/// A readiness probe (docs/design.md, "Probes, honestly"). Written as a map with
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
