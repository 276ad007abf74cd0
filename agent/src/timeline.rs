//! The one timeline type every driver fills while it restarts a target, how
//! a restart ended ([`Ending`]), and the realtime clock helpers.

use crate::abort::Interrupt;
use bounce_wire::{
    Action, Boundary, BoundaryName, Clock, EngineEvent, Origin, Outcome, ProbeReport, RunIdentity,
    Source, TargetRef, TimelineRecord, UnitReport, timeline::phases_from,
};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now, on this host's CLOCK_REALTIME, in nanoseconds since the epoch: the
/// clock Docker stamps its events with, so the two can be subtracted.
pub fn realtime_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// What is known about one restart so far. Boundaries are recorded only when
/// observed; phases are derived from them at the end, never guessed.
#[derive(Debug, Clone)]
pub struct Timeline {
    pub target: TargetRef,
    pub service: String,
    pub iteration: u32,
    pub action: Action,
    boundaries: Vec<Boundary>,
    pub exit_code: Option<i64>,
    pub signals: Vec<String>,
    pub oom_killed: bool,
    pub probes: Vec<ProbeReport>,
    pub unit: Option<UnitReport>,
    pub attribution: Option<String>,
    pub events: Vec<EngineEvent>,
    pub notes: Vec<String>,
}

/// How a restart ended, and why when not `ok`.
#[derive(Debug, Clone)]
pub struct Ending {
    pub outcome: Outcome,
    pub error: Option<String>,
}

impl Ending {
    pub fn ok() -> Ending {
        Ending {
            outcome: Outcome::Ok,
            error: None,
        }
    }
    pub fn new(outcome: Outcome, why: impl Into<String>) -> Ending {
        Ending {
            outcome,
            error: Some(why.into()),
        }
    }

    /// A restart whose wait ended early: the run's abort, or its `timeout`.
    pub fn interrupted(i: Interrupt, timeout: Duration, doing: &str) -> Ending {
        match i {
            Interrupt::Aborted => {
                Ending::new(Outcome::Aborted, format!("interrupted while {doing}"))
            }
            Interrupt::Deadline => Ending::new(
                Outcome::Timeout,
                format!("timeout ({}s) while {doing}", timeout.as_secs()),
            ),
        }
    }
}

impl Timeline {
    pub fn new(target: TargetRef, service: String, iteration: u32, action: Action) -> Timeline {
        Timeline {
            target,
            service,
            iteration,
            action,
            boundaries: Vec::new(),
            exit_code: None,
            signals: Vec::new(),
            oom_killed: false,
            probes: Vec::new(),
            unit: None,
            attribution: None,
            events: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Records a boundary once; a second observation of the same boundary is
    /// ignored (the first one is the one that ends the phase).
    pub fn mark(&mut self, name: BoundaryName, unix_nanos: i64, source: Source) {
        if self.at(name).is_none() {
            self.boundaries.push(Boundary {
                name,
                unix_nanos,
                source,
                clock: Clock::Realtime,
            });
        }
    }

    pub fn boundary(&self, name: BoundaryName) -> Option<&Boundary> {
        self.boundaries.iter().find(|b| b.name == name)
    }

    pub fn at(&self, name: BoundaryName) -> Option<i64> {
        self.boundaries
            .iter()
            .find(|b| b.name == name)
            .map(|b| b.unix_nanos)
    }

    /// The record, labelled with the run and the node's name.
    pub fn finish(mut self, labels: &RunIdentity, ending: Ending) -> TimelineRecord {
        self.mark(BoundaryName::Finished, realtime_nanos(), Source::Agent);
        self.boundaries.sort_by_key(|b| (b.unix_nanos, b.name));
        TimelineRecord {
            run_id: labels.run_id.clone(),
            deployment: labels.deployment.clone(),
            scenario: labels.scenario.clone(),
            node: labels.node.hostname.clone(),
            phases: phases_from(&self.boundaries),
            target: self.target,
            service: self.service,
            iteration: self.iteration,
            action: self.action,
            outcome: ending.outcome,
            error: ending.error,
            exit_code: self.exit_code,
            signals: self.signals,
            oom_killed: self.oom_killed,
            timestamps: self.boundaries,
            probes: self.probes,
            unit: self.unit,
            attribution: self.attribution,
            events: self.events,
            notes: self.notes,
            // An observer that is not a run (watch) sets these on the record.
            origin: Origin::Run,
            cause: None,
            recreated: None,
        }
    }
}

/// An RFC 3339 UTC timestamp as Docker writes them
/// (`2026-11-25T13:12:37.800360374Z`) to nanoseconds since the epoch.
pub fn parse_rfc3339_nanos(s: &str) -> Option<i64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    // Docker writes year 1 for "never"; nothing before 1970 is a real event.
    if y < 1970 {
        return None;
    }
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (h, min, sec) = (t.next()??, t.next()??, t.next()??);
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let nanos: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().ok()?
    };
    // Days from civil (H. Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + h * 3600 + min * 60 + sec) * 1_000_000_000) + nanos)
}

/// Signal numbers as Docker reports them in `kill` events, to names.
pub fn signal_name(num: &str) -> String {
    let name = match num.trim() {
        "1" => "SIGHUP",
        "2" => "SIGINT",
        "3" => "SIGQUIT",
        "6" => "SIGABRT",
        "9" => "SIGKILL",
        "10" => "SIGUSR1",
        "12" => "SIGUSR2",
        "15" => "SIGTERM",
        other if other.starts_with("SIG") => other,
        other => return format!("signal {other}"),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bounce_wire::Phase;

    #[test]
    fn first_observation_wins_and_phases_follow_boundaries() {
        let mut t = Timeline::new(
            TargetRef::Docker {
                name: "a".into(),
                id: "1".into(),
            },
            "a".into(),
            1,
            Action::Restart,
        );
        t.mark(BoundaryName::Requested, 1_000, Source::Agent);
        t.mark(BoundaryName::Exited, 2_000, Source::Agent);
        t.mark(BoundaryName::Exited, 9_000, Source::Agent);
        let labels = RunIdentity {
            run_id: bounce_wire::RunId::parse("r").unwrap(),
            deployment: "d".into(),
            scenario: "s".into(),
            node: bounce_wire::NodeFacts {
                hostname: "n".into(),
                ..Default::default()
            },
        };
        let rec = t.finish(&labels, Ending::new(Outcome::Timeout, "x"));
        assert_eq!(rec.phases.get(&Phase::Stop), Some(&1e-6));
        assert!(!rec.phases.contains_key(&Phase::Ready));
        assert!(rec.boundary(BoundaryName::Finished).is_some());
    }

    #[test]
    fn docker_timestamps() {
        assert_eq!(parse_rfc3339_nanos("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_nanos("2026-11-25T13:12:37.800360374Z"),
            Some(1_795_612_357_800_360_374)
        );
        assert_eq!(
            parse_rfc3339_nanos("2000-03-01T00:00:00.5Z"),
            Some(951_868_800_500_000_000)
        );
        assert_eq!(parse_rfc3339_nanos("0001-01-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339_nanos("yesterday"), None);
    }

    #[test]
    fn signal_names() {
        assert_eq!(signal_name("15"), "SIGTERM");
        assert_eq!(signal_name("9"), "SIGKILL");
        assert_eq!(signal_name("SIGUSR1"), "SIGUSR1");
        assert_eq!(signal_name("31"), "signal 31");
    }
}
