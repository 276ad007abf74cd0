//! A fleet run's limits as a scenario declares them: `max_in_flight`,
//! `max_failures` and keyed limits whose key is a template over what a
//! restart is. Parsing is typed and every check runs inside deserialization,
//! so the agent's YAML layer stamps each error with the offending value's
//! file:line. Here in wire because the agent declares them (its scenario's
//! `fleet:`) and sends them when it joins; the collector holds them.

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;

/// The fields a key template may name, for messages.
pub const FIELDS: &str = "{node}, {kind}, {service}, {target}, {label.NAME}";

/// What is wrong with a limit, with the offending text (the YAML layer adds
/// file:line).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("{text:?} is not a restart count or a percentage of the run's nodes (e.g. 10 or 10%)")]
    NotInFlight { text: String },
    #[error("{text:?} is not a whole number")]
    NotCount { text: String },
    #[error("{text:?}: a percentage of the run's nodes must be 1% to 100%")]
    PercentOutOfRange { text: String },
    #[error("{value}: {what} must be at least 1")]
    NotPositive { what: &'static str, value: i64 },
    #[error("{value}: {what} is too large (at most {})", u32::MAX)]
    TooLarge { what: &'static str, value: i64 },
    #[error("key {template:?}: unknown field {{{field}}}; the fields are {FIELDS}")]
    UnknownField { template: String, field: String },
    #[error("key {template:?}: {{label.}} needs a label name ([A-Za-z0-9_.-]+), got {name:?}")]
    BadLabelName { template: String, name: String },
    #[error("key {template:?}: {what}")]
    BadTemplate {
        template: String,
        what: &'static str,
    },
    #[error("key {template:?} is declared twice")]
    Duplicate { template: String },
    #[error("{text:?} is not a kind of restart (docker, systemd, ceph_osd)")]
    UnknownKind { text: String },
}

/// What a node lacks to render a key: the fleet refuses to open (see
/// bounce-fleet's `LeaseBook::open`), so a failure-domain limit is never silently dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("key {template:?} needs label {label:?}, which node {node:?} does not have")]
pub struct MissingLabel {
    pub template: String,
    pub label: String,
    pub node: String,
}

/// A count of at least 1 (a limit's `max`, `max_failures`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Max(u32);

impl Max {
    pub fn get(self) -> u32 {
        self.0
    }
    pub fn parse(what: &'static str, value: i64) -> Result<Max, LimitError> {
        match u32::try_from(value) {
            Ok(0) => Err(LimitError::NotPositive { what, value }),
            Ok(v) => Ok(Max(v)),
            Err(_) if value < 0 => Err(LimitError::NotPositive { what, value }),
            Err(_) => Err(LimitError::TooLarge { what, value }),
        }
    }
}

/// `max_in_flight`: restarts in flight across the fleet, as a count or as a
/// percentage of the run's nodes (rounded down, at least 1: Ansible's
/// `serial: N%` rule, so 10% of 5 nodes is 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InFlight {
    Count(Max),
    Percent(u8),
}

impl InFlight {
    /// `10` or `10%`.
    pub fn parse(text: &str) -> Result<InFlight, LimitError> {
        let t = text.trim();
        if let Some(p) = t.strip_suffix('%') {
            let v: i64 = p
                .trim()
                .parse()
                .map_err(|_| LimitError::NotInFlight { text: text.into() })?;
            return match u8::try_from(v) {
                Ok(p @ 1..=100) => Ok(InFlight::Percent(p)),
                _ => Err(LimitError::PercentOutOfRange { text: text.into() }),
            };
        }
        let v: i64 = t
            .parse()
            .map_err(|_| LimitError::NotInFlight { text: text.into() })?;
        InFlight::count(v)
    }
    pub fn count(v: i64) -> Result<InFlight, LimitError> {
        Max::parse("max_in_flight", v).map(InFlight::Count)
    }
    /// Slots for a run of `nodes` nodes.
    pub fn slots(self, nodes: usize) -> u32 {
        match self {
            InFlight::Count(m) => m.get(),
            InFlight::Percent(p) => {
                let n = u32::try_from(nodes).unwrap_or(u32::MAX);
                (u64::from(n) * u64::from(p) / 100).max(1) as u32
            }
        }
    }
}

impl fmt::Display for InFlight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InFlight::Count(m) => write!(f, "{}", m.get()),
            InFlight::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// What a restart is, as the agent names it (`TargetRef`'s kinds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Docker,
    Systemd,
    CephOsd,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Docker => "docker",
            Kind::Systemd => "systemd",
            Kind::CephOsd => "ceph_osd",
        }
    }
}

/// What a key template is rendered against: one restart on one node.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub node: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    pub kind: Kind,
    /// The name histograms are grouped by (kolla: the container name).
    pub service: &'a str,
    /// The target's own name (container, unit).
    pub target: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Field {
    Node,
    Kind,
    Service,
    Target,
    Label(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Part {
    Text(String),
    Field(Field),
}

/// A key template: text and `{field}`s from a closed set ([`FIELDS`]).
/// `ceph-osd` (no field) is one key shared by every restart the limit covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Template {
    text: String,
    parts: Vec<Part>,
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, LimitError> {
        let bad = |what| LimitError::BadTemplate {
            template: text.into(),
            what,
        };
        if text.trim().is_empty() {
            return Err(bad("is empty"));
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            match rest.find(['{', '}']) {
                None => {
                    parts.push(Part::Text(rest.into()));
                    break;
                }
                Some(i) if rest.as_bytes()[i] == b'}' => return Err(bad("'}' without '{'")),
                Some(i) => {
                    if i > 0 {
                        parts.push(Part::Text(rest[..i].into()));
                    }
                    let close = rest[i..].find('}').ok_or_else(|| bad("'{' without '}'"))?;
                    let name = &rest[i + 1..i + close];
                    parts.push(Part::Field(Template::field(text, name)?));
                    rest = &rest[i + close + 1..];
                }
            }
        }
        Ok(Template {
            text: text.into(),
            parts,
        })
    }

    fn field(template: &str, name: &str) -> Result<Field, LimitError> {
        Ok(match name {
            "node" => Field::Node,
            "kind" => Field::Kind,
            "service" => Field::Service,
            "target" => Field::Target,
            _ => match name.strip_prefix("label.") {
                Some(l)
                    if !l.is_empty()
                        && l.chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) =>
                {
                    Field::Label(l.into())
                }
                Some(l) => {
                    return Err(LimitError::BadLabelName {
                        template: template.into(),
                        name: l.into(),
                    });
                }
                None => {
                    return Err(LimitError::UnknownField {
                        template: template.into(),
                        field: name.into(),
                    });
                }
            },
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The labels this template needs of every node.
    pub fn labels(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Field(Field::Label(l)) => Some(l.as_str()),
            _ => None,
        })
    }

    pub fn render(&self, f: &Facts) -> Result<String, MissingLabel> {
        let mut out = String::with_capacity(self.text.len() + 16);
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Field(Field::Node) => out.push_str(f.node),
                Part::Field(Field::Kind) => out.push_str(f.kind.as_str()),
                Part::Field(Field::Service) => out.push_str(f.service),
                Part::Field(Field::Target) => out.push_str(f.target),
                Part::Field(Field::Label(l)) => match f.labels.get(l) {
                    Some(v) => out.push_str(v),
                    None => {
                        return Err(MissingLabel {
                            template: self.text.clone(),
                            label: l.clone(),
                            node: f.node.into(),
                        });
                    }
                },
            }
        }
        Ok(out)
    }
}

/// One keyed limit: at most `max` restarts in flight per rendered key, over
/// the restarts of `kinds` (every kind when absent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyLimit {
    pub key: Template,
    pub max: Max,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kinds: Option<Vec<Kind>>,
}

impl KeyLimit {
    pub fn covers(&self, kind: Kind) -> bool {
        self.kinds.as_ref().is_none_or(|ks| ks.contains(&kind))
    }
}

/// A fleet run's limits (a scenario's `fleet:`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawLimits")]
pub struct Limits {
    pub max_in_flight: InFlight,
    /// After this many restarts not `ok` (since the last resume) the fleet pauses.
    pub max_failures: Max,
    pub limits: Vec<KeyLimit>,
}

impl Limits {
    /// Checks what a value-by-value parse cannot: no key declared twice.
    pub fn new(
        max_in_flight: InFlight,
        max_failures: Max,
        limits: Vec<KeyLimit>,
    ) -> Result<Limits, LimitError> {
        for (i, l) in limits.iter().enumerate() {
            if limits[..i].iter().any(|e| e.key == l.key) {
                return Err(LimitError::Duplicate {
                    template: l.key.text.clone(),
                });
            }
        }
        Ok(Limits {
            max_in_flight,
            max_failures,
            limits,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_in_flight: InFlight,
    #[serde(default = "one")]
    max_failures: Max,
    #[serde(default)]
    limits: Vec<KeyLimit>,
}

fn one() -> Max {
    Max(1)
}

impl TryFrom<RawLimits> for Limits {
    type Error = LimitError;
    fn try_from(r: RawLimits) -> Result<Limits, LimitError> {
        Limits::new(r.max_in_flight, r.max_failures, r.limits)
    }
}

// Serde: each check runs inside the visitor so the YAML layer has the value's
// position (see agent/src/scenario/checked.rs for why).

/// A scalar as YAML gives it: `10` or `10%`.
enum Scalar<'a> {
    Int(i64),
    Str(&'a str),
}

struct Visit<T>(&'static str, fn(Scalar) -> Result<T, LimitError>);

impl<T> Visitor<'_> for Visit<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.0)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        (self.1)(Scalar::Int(v)).map_err(E::custom)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        (self.1)(Scalar::Int(i64::try_from(v).unwrap_or(i64::MAX))).map_err(E::custom)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.1)(Scalar::Str(v)).map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for Max {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Visit("a whole number, at least 1", |v| match v {
            Scalar::Int(n) => Max::parse("a limit", n),
            Scalar::Str(s) => Err(LimitError::NotCount { text: s.into() }),
        }))
    }
}

impl<'de> Deserialize<'de> for InFlight {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Visit(
            "a restart count or a percentage (10%)",
            |v| match v {
                Scalar::Int(n) => InFlight::count(n),
                Scalar::Str(s) => InFlight::parse(s),
            },
        ))
    }
}

impl<'de> Deserialize<'de> for Template {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Visit(
            "a key template such as service:{service}",
            |v| match v {
                Scalar::Str(s) => Template::parse(s),
                Scalar::Int(n) => Template::parse(&n.to_string()),
            },
        ))
    }
}

impl Serialize for Max {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(self.0)
    }
}

impl Serialize for InFlight {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            InFlight::Count(m) => m.serialize(s),
            InFlight::Percent(_) => s.collect_str(self),
        }
    }
}

impl Serialize for Template {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn in_flight_counts_and_percentages() {
        assert_eq!(InFlight::parse("10").unwrap().slots(1000), 10);
        assert_eq!(InFlight::parse("10%").unwrap().slots(1000), 100);
        assert_eq!(InFlight::parse("10%").unwrap().slots(5), 1, "at least 1");
        assert_eq!(InFlight::parse("100%").unwrap().slots(7), 7);
        for bad in ["0%", "101%", "-5%", "250%"] {
            assert_eq!(
                InFlight::parse(bad),
                Err(LimitError::PercentOutOfRange { text: bad.into() })
            );
        }
        assert!(matches!(
            InFlight::parse("0"),
            Err(LimitError::NotPositive { value: 0, .. })
        ));
        assert!(matches!(
            InFlight::parse("-3"),
            Err(LimitError::NotPositive { value: -3, .. })
        ));
        assert!(matches!(
            InFlight::parse("ten"),
            Err(LimitError::NotInFlight { .. })
        ));
    }

    #[test]
    fn templates_render_against_a_restart() {
        let l = labels(&[("rack", "r1")]);
        let f = Facts {
            node: "ctl1",
            labels: &l,
            kind: Kind::Docker,
            service: "nova_api",
            target: "nova_api",
        };
        let r = |t: &str| Template::parse(t).unwrap().render(&f).unwrap();
        assert_eq!(r("service:{service}"), "service:nova_api");
        assert_eq!(r("ceph-osd"), "ceph-osd");
        assert_eq!(r("{label.rack}"), "r1");
        assert_eq!(r("{node}/{kind}/{target}"), "ctl1/docker/nova_api");
        let missing = Template::parse("zone:{label.zone}").unwrap().render(&f);
        assert_eq!(
            missing.unwrap_err().to_string(),
            r#"key "zone:{label.zone}" needs label "zone", which node "ctl1" does not have"#
        );
    }

    #[test]
    fn an_unknown_field_names_the_fields_that_exist() {
        let e = Template::parse("svc:{servcie}").unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"key "svc:{servcie}": unknown field {servcie}; the fields are {node}, {kind}, {service}, {target}, {label.NAME}"#
        );
        for bad in ["", "a{", "a}", "{label.}", "{label.a b}"] {
            assert!(Template::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn limits_parse_from_serde_with_each_error_named() {
        let ok: Limits = serde_json::from_str(
            r#"{"max_in_flight":"10%","max_failures":3,
                "limits":[{"key":"service:{service}","max":1},{"key":"ceph-osd","max":1,"kinds":["ceph_osd"]}]}"#,
        )
        .unwrap();
        assert_eq!(ok.max_in_flight, InFlight::Percent(10));
        assert_eq!(ok.max_failures.get(), 3);
        assert!(ok.limits[1].covers(Kind::CephOsd) && !ok.limits[1].covers(Kind::Docker));
        let back: Limits = serde_json::from_str(&serde_json::to_string(&ok).unwrap()).unwrap();
        assert_eq!(back, ok);

        let err = |j: &str| serde_json::from_str::<Limits>(j).unwrap_err().to_string();
        assert!(err(r#"{"max_in_flight":"150%"}"#).contains("1% to 100%"));
        assert!(err(r#"{"max_in_flight":0}"#).contains("at least 1"));
        assert!(err(r#"{"max_in_flight":2,"limits":[{"key":"x","max":-1}]}"#).contains("-1"));
        assert!(
            err(r#"{"max_in_flight":2,"limits":[{"key":"{rack}","max":1}]}"#)
                .contains("unknown field {rack}")
        );
        assert!(
            err(r#"{"max_in_flight":2,"limits":[{"key":"a","max":1},{"key":"a","max":2}]}"#)
                .contains("declared twice")
        );
    }
}
