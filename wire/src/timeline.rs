//! One restart of one target, as recorded: the `timelines.jsonl` line format.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A named interval of a timeline (design.md, "Phases").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// restart requested → container exited.
    Stop,
    /// exited → running.
    Start,
    /// running → first readiness success.
    Ready,
    /// requested → ready.
    Total,
    /// A unit that wraps a container: requested → the container exited.
    ContainerStop,
    /// A unit that wraps a container: the container exited → the unit is
    /// inactive. Long when the unit waits for something after its container
    /// is gone (osism/issues#973).
    UnitSettle,
    /// Ceph OSD: running → its admin socket says `active`.
    OsdBoot,
    /// Ceph OSD: running → up in the osdmap, from a new epoch.
    OsdUp,
    /// Ceph OSD: running → no PG inactive, as reported after the OSD came up.
    PgsActive,
    /// Ceph OSD: running → every PG active+clean, as reported after the OSD came up.
    PgsClean,
}

impl Phase {
    pub const ALL: [Phase; 10] = [
        Phase::Stop,
        Phase::Start,
        Phase::Ready,
        Phase::Total,
        Phase::ContainerStop,
        Phase::UnitSettle,
        Phase::OsdBoot,
        Phase::OsdUp,
        Phase::PgsActive,
        Phase::PgsClean,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Stop => "stop",
            Phase::Start => "start",
            Phase::Ready => "ready",
            Phase::Total => "total",
            Phase::ContainerStop => "container_stop",
            Phase::UnitSettle => "unit_settle",
            Phase::OsdBoot => "osd_boot",
            Phase::OsdUp => "osd_up",
            Phase::PgsActive => "pgs_active",
            Phase::PgsClean => "pgs_clean",
        }
    }

    pub fn parse(s: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// The boundaries that open and close this phase.
    pub fn bounds(self) -> (BoundaryName, BoundaryName) {
        match self {
            Phase::Stop => (BoundaryName::Requested, BoundaryName::Exited),
            Phase::Start => (BoundaryName::Exited, BoundaryName::Started),
            Phase::Ready => (BoundaryName::Started, BoundaryName::Ready),
            Phase::Total => (BoundaryName::Requested, BoundaryName::Ready),
            Phase::ContainerStop => (BoundaryName::Requested, BoundaryName::ContainerExited),
            Phase::UnitSettle => (BoundaryName::ContainerExited, BoundaryName::Exited),
            Phase::OsdBoot => (BoundaryName::Started, BoundaryName::OsdActive),
            Phase::OsdUp => (BoundaryName::Started, BoundaryName::OsdUp),
            Phase::PgsActive => (BoundaryName::Started, BoundaryName::PgsActive),
            Phase::PgsClean => (BoundaryName::Started, BoundaryName::PgsClean),
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A point in a timeline that phases are measured between.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BoundaryName {
    /// The agent is about to send the restart request.
    Requested,
    /// The target's process exited (Docker `die`).
    Exited,
    /// The target runs again (Docker `start`).
    Started,
    /// Every readiness probe has succeeded once.
    Ready,
    /// The agent stopped following this restart (whatever the outcome).
    Finished,
    /// A unit's main process exited (`ExecMainExitTimestamp`).
    MainExited,
    /// A unit's main process was started (`ExecMainStartTimestamp`).
    MainStarted,
    /// The container a unit wraps exited (engine state or `die` event).
    ContainerExited,
    /// The container a unit wraps runs again.
    ContainerStarted,
    /// A Ceph OSD's admin socket first answered `state: active`.
    OsdActive,
    /// A Ceph OSD was first seen up in the osdmap from a new epoch.
    OsdUp,
    /// No PG inactive, in PG stats reported at or after the OSD's new epoch.
    PgsActive,
    /// Every PG active+clean, in PG stats reported at or after the OSD's new epoch.
    PgsClean,
    /// A recreate (watch): the old container was removed (Docker `destroy`).
    Removed,
    /// A recreate (watch): the new container was created (Docker `create`).
    Created,
}

/// Where a timestamp came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    /// The agent's own clock, read right before or after acting.
    Agent,
    /// A Docker engine event (`timeNano`), e.g. `die`, `start`, `health_status: healthy`.
    DockerEvent { action: String },
    /// The engine's container state, read with `inspect` (`State.FinishedAt`,
    /// `State.StartedAt`): stamped when the engine handles the exit or start,
    /// before it logs the event (the `die` event follows the exit by the
    /// engine's clean-up, ~20 ms on a small node).
    DockerState { field: String },
    /// A systemd unit property, e.g. `InactiveEnterTimestampMonotonic`:
    /// systemd's CLOCK_MONOTONIC µs, placed on the realtime axis with the
    /// offset between the two clocks sampled by the agent at the request.
    Systemd { property: String },
    /// A Ceph query, polled by the agent, with how and how often:
    /// `admin socket status, every 20 ms`, `osd dump via librados, every 50
    /// ms`, `pg dump pgs via the ceph CLI, every 250 ms`. The boundary is the end of the first poll
    /// that showed the state (the agent's clock), so it is late by at most
    /// one poll interval plus the query's own time.
    Ceph { query: String },
    /// The end of the first successful try of a readiness probe.
    Probe { probe: String },
}

/// Which clock a timestamp was read from. Docker reports only wall-clock time,
/// so all boundaries today are this host's CLOCK_REALTIME; durations are only
/// taken between timestamps of the same host and clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Clock {
    /// CLOCK_REALTIME of the node the agent runs on (nanoseconds since the Unix epoch).
    Realtime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Boundary {
    pub name: BoundaryName,
    pub unix_nanos: i64,
    pub source: Source,
    pub clock: Clock,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// One restart request (Docker: POST /containers/{id}/restart).
    #[default]
    Restart,
    /// A stop request, then a start request.
    StopStart,
    /// A crash: SIGKILL to the main process; the restart policy brings it back.
    Kill,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Restart => "restart",
            Action::StopStart => "stop-start",
            Action::Kill => "kill",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Stopped, started and ready within the timeout.
    Ok,
    /// Not ready within the target's timeout.
    Timeout,
    /// The engine refused, the target did not come back, or it was not running to begin with.
    Failed,
    /// Interrupted by the operator (Ctrl-C) before it finished.
    Aborted,
    /// Observed (watch), not seen to its end: stopped and not started again
    /// within watch's bound; the boundaries seen are kept.
    Incomplete,
}

impl Outcome {
    pub const ALL: [Outcome; 5] = [
        Outcome::Ok,
        Outcome::Timeout,
        Outcome::Failed,
        Outcome::Aborted,
        Outcome::Incomplete,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Timeout => "timeout",
            Outcome::Failed => "failed",
            Outcome::Aborted => "aborted",
            Outcome::Incomplete => "incomplete",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TargetRef {
    Docker {
        name: String,
        id: String,
    },
    /// A Ceph OSD, restarted through its systemd unit (`unit`, `bus`) or its
    /// container (`container`).
    CephOsd {
        id: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        unit: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bus: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        container: Option<String>,
    },
    /// A unit of a systemd manager; `bus` is `system`, `user` or a D-Bus address.
    Systemd {
        name: String,
        bus: String,
        /// The container the unit wraps (kolla's `docker start -a NAME`), if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        container: Option<String>,
    },
}

impl TargetRef {
    /// The phases every successful restart of this kind of target goes
    /// through: a restart that did not end `ok` counts as a failure in
    /// those of them it did not observe, and in no other (a Docker
    /// container has no `osd_boot`). An OSD's PG phases are left out: they
    /// apply only when the gates' `wait_for` asks for them, which a record
    /// does not carry, so its `total` row tells those failures.
    pub fn phases(&self) -> &'static [Phase] {
        const RESTART: [Phase; 4] = [Phase::Stop, Phase::Start, Phase::Ready, Phase::Total];
        match self {
            TargetRef::Docker { .. }
            | TargetRef::Systemd {
                container: None, ..
            } => &RESTART,
            TargetRef::Systemd {
                container: Some(_), ..
            } => &[
                Phase::Stop,
                Phase::Start,
                Phase::Ready,
                Phase::Total,
                Phase::ContainerStop,
                Phase::UnitSettle,
            ],
            TargetRef::CephOsd { .. } => &[
                Phase::Stop,
                Phase::Start,
                Phase::Ready,
                Phase::Total,
                Phase::OsdBoot,
                Phase::OsdUp,
            ],
        }
    }

    pub fn name(&self) -> &str {
        match self {
            TargetRef::Docker { name, .. } | TargetRef::Systemd { name, .. } => name,
            TargetRef::CephOsd {
                unit, container, ..
            } => unit
                .as_deref()
                .or(container.as_deref())
                .unwrap_or("ceph-osd"),
        }
    }
}

/// What one readiness probe did during one restart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeReport {
    /// `docker_health`, `exec_health`, `tcp 127.0.0.1:8774`, `http http://...`.
    pub probe: String,
    pub tries: u32,
    pub failures: u32,
    /// Wall time spent inside tries (what the probe cost, not the service).
    pub busy_seconds: f64,
    /// The service became ready after this instant (start of the last failed try)...
    pub ready_after_unix_nanos: Option<i64>,
    /// ...and no later than this one (end of the first successful try).
    pub ready_by_unix_nanos: Option<i64>,
    /// The last failure's message, when the probe never succeeded.
    pub last_error: Option<String>,
}

/// What systemd said about one restart of a unit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitReport {
    /// Result of the job(s) the agent queued (`done` when all went well).
    pub job_results: Vec<String>,
    /// The unit's `Result` when it stopped (`success`, `exit-code`, `signal`, ...).
    pub stop_result: Option<String>,
    /// The unit's `Result` last seen (after a failed start: why it failed, e.g. `timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_result: Option<String>,
    /// `ActiveState` the unit stopped in: `inactive` (dead) or `failed`.
    pub stopped_as: Option<String>,
    /// Main process exit: `ExecMainCode` (1 exited, 2 killed, 3 dumped) and `ExecMainStatus`.
    pub main_exit_code: Option<i32>,
    pub main_exit_status: Option<i32>,
    /// When the unit left `active` (systemd's own `ActiveExitTimestamp`):
    /// what names a restart `watch` observed, the same for every watcher
    /// that finds it, so a restarted watcher recognizes what it recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub left_active_unix_nanos: Option<i64>,
}

/// An engine event as received (Docker: `Action` and `timeNano`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineEvent {
    pub action: String,
    pub unix_nanos: i64,
}

/// Who made a restart happen: bounce itself (`run`), or someone else and
/// bounce observed it (`watch`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Restarted by `bounce-agent run` (what a record without `origin` means).
    #[default]
    Run,
    /// Observed by `bounce-agent watch`.
    Watch,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Run => "run",
            Origin::Watch => "watch",
        }
    }
    fn is_run(&self) -> bool {
        *self == Origin::Run
    }
}

/// What brought an observed restart about, told from the engine's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cause {
    /// `docker restart` (kill, die, stop, start, then the engine's `restart` event).
    Restart,
    /// A stop, later a start of the same container (kolla-ansible's handlers).
    StopStart,
    /// An exit nobody asked for (`die` with no `kill` before it), brought
    /// back by the restart policy.
    Crash,
    /// The container removed and another created under the same name
    /// (kolla-ansible upgrades and reconfigures).
    Recreate,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Restart => "restart",
            Cause::StopStart => "stop-start",
            Cause::Crash => "crash",
            Cause::Recreate => "recreate",
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A recreate: the container replaced and the images before and after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recreated {
    pub old_id: String,
    pub old_image: String,
    pub new_image: String,
}

/// One line of `timelines.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineRecord {
    pub run_id: crate::run::RunId,
    pub deployment: String,
    pub scenario: String,
    pub node: String,
    pub target: TargetRef,
    /// The name histograms are grouped by (for kolla: the container name).
    pub service: String,
    /// 1-based round of the scenario's `repeat`.
    pub iteration: u32,
    pub action: Action,
    pub outcome: Outcome,
    /// Why the outcome is not `ok`, in words.
    pub error: Option<String>,
    pub exit_code: Option<i64>,
    /// Signals the engine reported sending, in order (`SIGTERM`, then `SIGKILL` after the stop timeout).
    pub signals: Vec<String>,
    pub oom_killed: bool,
    /// Phase name → seconds; only phases whose both boundaries were observed.
    pub phases: BTreeMap<Phase, f64>,
    pub timestamps: Vec<Boundary>,
    pub probes: Vec<ProbeReport>,
    /// For units: the job's result (`done`, `failed`, `timeout`, ...), the
    /// unit's `Result` after it stopped and the state it stopped in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<UnitReport>,
    /// Where the time went, in words (units that wrap a container).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribution: Option<String>,
    /// Every engine event seen for the target during this restart, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<EngineEvent>,
    /// Things worth knowing that are not phases (e.g. the target died again while being probed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// `watch` for an observed restart; absent (`run`) for bounce's own.
    #[serde(default, skip_serializing_if = "Origin::is_run")]
    pub origin: Origin,
    /// What brought an observed restart about (watch only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<Cause>,
    /// A recreate's old container and images (watch only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recreated: Option<Recreated>,
}

impl TimelineRecord {
    pub fn boundary(&self, name: BoundaryName) -> Option<&Boundary> {
        self.timestamps.iter().find(|b| b.name == name)
    }
}

/// Seconds between two nanosecond timestamps of the same clock.
pub fn seconds_between(from_nanos: i64, to_nanos: i64) -> f64 {
    (to_nanos - from_nanos) as f64 / 1e9
}

/// The phases whose two boundaries are both present and in order.
pub fn phases_from(timestamps: &[Boundary]) -> BTreeMap<Phase, f64> {
    let at = |n: BoundaryName| {
        timestamps
            .iter()
            .find(|b| b.name == n)
            .map(|b| b.unix_nanos)
    };
    let mut out = BTreeMap::new();
    for phase in Phase::ALL {
        let (from, to) = phase.bounds();
        if let (Some(a), Some(b)) = (at(from), at(to))
            && b >= a
        {
            out.insert(phase, seconds_between(a, b));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(name: BoundaryName, unix_nanos: i64) -> Boundary {
        Boundary {
            name,
            unix_nanos,
            source: Source::Agent,
            clock: Clock::Realtime,
        }
    }

    #[test]
    fn only_observed_phases_are_reported() {
        let ts = [
            b(BoundaryName::Requested, 1_000_000_000),
            b(BoundaryName::Exited, 1_500_000_000),
        ];
        let phases = phases_from(&ts);
        assert_eq!(phases.get(&Phase::Stop), Some(&0.5));
        assert!(!phases.contains_key(&Phase::Start));
        assert!(!phases.contains_key(&Phase::Total));
    }

    #[test]
    fn record_round_trips_through_json() {
        let rec = TimelineRecord {
            run_id: crate::run::RunId::parse("r").unwrap(),
            deployment: "lab".into(),
            scenario: "s".into(),
            node: "n".into(),
            target: TargetRef::Docker {
                name: "nova_api".into(),
                id: "abc".into(),
            },
            service: "nova_api".into(),
            iteration: 1,
            action: Action::StopStart,
            outcome: Outcome::Timeout,
            error: Some("not ready".into()),
            exit_code: Some(143),
            signals: vec!["SIGTERM".into()],
            oom_killed: false,
            phases: phases_from(&[b(BoundaryName::Requested, 0), b(BoundaryName::Exited, 10)]),
            timestamps: vec![b(BoundaryName::Requested, 0)],
            probes: vec![],
            unit: None,
            attribution: None,
            events: vec![],
            notes: vec![],
            origin: Origin::Run,
            cause: None,
            recreated: None,
        };
        let line = serde_json::to_string(&rec).unwrap();
        assert!(
            line.contains(r#""target":{"kind":"docker","name":"nova_api","id":"abc"}"#),
            "{line}"
        );
        assert!(line.contains(r#""action":"stop-start""#), "{line}");
        assert!(line.contains(r#""outcome":"timeout""#), "{line}");
        let back: TimelineRecord = serde_json::from_str(&line).unwrap();
        assert_eq!(back, rec);
    }
}
