//! A scenario's `fleet:` section: the cluster-wide limits the collector
//! holds across every agent of a fleet run (`max_in_flight`,
//! `max_failures`, keyed `limits`), the lease TTL and the order an agent
//! asks for its targets in. Values are parsed with the limits' own types
//! (bounce-wire's `limits`), whose checks run inside deserialization, so a
//! bad template, max or percentage is refused with its file:line:column.

use super::duration::Span;
use bounce_wire::limits::{InFlight, KeyLimit, Limits, Max};
use serde::Deserialize;
use serde::de::{self, Deserializer};
use std::time::Duration;

/// In which order an agent asks the fleet for its restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AskOrder {
    /// Ask for every pending target at once and restart whichever is
    /// granted first (the default: in the fleet simulation within 0.1% of
    /// the ideal makespan; scenario order was 8.2% over).
    #[default]
    Any,
    /// One at a time, in scenario order.
    Scenario,
}

/// What `fleet:` declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetSection {
    pub limits: Limits,
    /// A lease not renewed for this long is lost (its node too).
    pub lease_ttl: Duration,
    pub order: AskOrder,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFleet {
    max_in_flight: InFlight,
    #[serde(default)]
    max_failures: Option<Max>,
    #[serde(default)]
    limits: Vec<KeyLimit>,
    #[serde(default, deserialize_with = "lease_ttl")]
    lease_ttl: Option<Duration>,
    #[serde(default)]
    order: AskOrder,
}

/// Long enough for a renewal to get through a busy collector, short enough
/// that a lost agent pauses the fleet soon.
const DEFAULT_TTL: Duration = Duration::from_secs(30);

fn lease_ttl<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    Span::deserialize_checked(d, |span| {
        if span.0 < Duration::from_secs(1) || span.0 > Duration::from_secs(3600) {
            return Err(format!("{span}: lease_ttl must be 1s to 1h"));
        }
        Ok(Some(span.0))
    })
}

impl<'de> Deserialize<'de> for FleetSection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawFleet::deserialize(d)?;
        let max_failures = match raw.max_failures {
            Some(m) => m,
            None => Max::parse("max_failures", 1).map_err(de::Error::custom)?,
        };
        Ok(FleetSection {
            limits: Limits::new(raw.max_in_flight, max_failures, raw.limits)
                .map_err(de::Error::custom)?,
            lease_ttl: raw.lease_ttl.unwrap_or(DEFAULT_TTL),
            order: raw.order,
        })
    }
}

impl FleetSection {
    /// The limits in words, for `plan`.
    pub fn describe(&self) -> Vec<String> {
        let l = &self.limits;
        let mut lines = vec![format!(
            "fleet: at most {} restart(s) in flight over the fleet{}; pause after {} not ok; leases last {}s unless renewed; asks in {} order",
            l.max_in_flight,
            match l.max_in_flight {
                InFlight::Percent(_) => " (of the run's nodes, rounded down, at least 1)",
                InFlight::Count(_) => "",
            },
            l.max_failures.get(),
            self.lease_ttl.as_secs(),
            match self.order {
                AskOrder::Any => "any",
                AskOrder::Scenario => "scenario",
            }
        )];
        for k in &l.limits {
            let kinds = match &k.kinds {
                Some(ks) => format!(
                    " (restarts of kind {})",
                    ks.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
                ),
                None => String::new(),
            };
            lines.push(format!(
                "  at most {} at once per key {}{kinds}",
                k.max.get(),
                k.key.as_str()
            ));
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{err, parse};

    const HEAD: &str = "deployment: lab\ntargets:\n  - docker: {names: [nova_api]}\n";

    #[test]
    fn a_fleet_section_is_read_with_its_defaults() {
        let s = parse(&format!(
            "{HEAD}fleet:\n  max_in_flight: 10%\n  limits:\n    - {{key: \"service:{{service}}\", max: 1}}\n    - {{key: ceph-osd, max: 1, kinds: [ceph_osd]}}\n"
        ))
        .unwrap();
        let f = s.fleet.unwrap();
        assert_eq!(f.limits.max_in_flight.to_string(), "10%");
        assert_eq!(f.limits.max_failures.get(), 1);
        assert_eq!(f.lease_ttl.as_secs(), 30);
        assert_eq!(f.order, super::AskOrder::Any);
        assert_eq!(f.limits.limits.len(), 2);
        let plan = f.describe().join("\n");
        assert!(
            plan.contains("at most 1 at once per key service:{service}"),
            "{plan}"
        );
        assert!(plan.contains("(restarts of kind ceph_osd)"), "{plan}");
        assert!(parse(HEAD).unwrap().fleet.is_none());
    }

    #[test]
    fn bad_limits_are_refused_where_they_stand() {
        let e = err(&format!(
            "{HEAD}fleet:\n  max_in_flight: 2\n  limits:\n    - key: \"svc:{{servcie}}\"\n      max: 1\n"
        ));
        assert!(e.starts_with("s.yaml:7:"), "{e}");
        assert!(e.contains("unknown field {servcie}"), "{e}");
        let e = err(&format!(
            "{HEAD}fleet:\n  max_in_flight: 2\n  limits:\n    - key: x\n      max: 0\n"
        ));
        assert!(e.starts_with("s.yaml:8:"), "{e}");
        assert!(e.contains("at least 1"), "{e}");
        let e = err(&format!(
            "{HEAD}fleet:\n  max_in_flight: 2\n  limits:\n    - key: x\n      max: -2\n"
        ));
        assert!(e.starts_with("s.yaml:8:") && e.contains("-2"), "{e}");
        let e = err(&format!("{HEAD}fleet:\n  max_in_flight: 150%\n"));
        assert!(e.starts_with("s.yaml:5:"), "{e}");
        assert!(e.contains("1% to 100%"), "{e}");
        let e = err(&format!(
            "{HEAD}fleet:\n  max_in_flight: 1\n  lease_tll: 5s\n"
        ));
        assert!(e.starts_with("s.yaml:6:") && e.contains("lease_tll"), "{e}");
        let e = err(&format!(
            "{HEAD}fleet:\n  max_in_flight: 1\n  lease_ttl: 100ms\n"
        ));
        assert!(e.contains("1s to 1h"), "{e}");
    }
}
