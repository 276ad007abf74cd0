//! Where watched restarts go: one run per node and UTC day, in a folder of
//! the same name under the watch folder (`watch-NODE-2026-11-30/`), each
//! written like `run`'s (`timelines.jsonl`, one fsynced line per restart)
//! and, with a collector, sent from its `spool/` through the same ingest
//! path. A restart belongs to the day of the event that opened it.

use crate::docker::restarts::RestartKey;
use crate::durable::{LineFile, Tail, WriteError};
use crate::output::{OutputError, append_timeline};
use crate::stream::{Collector, Streamer};
use bounce_wire::folder::TIMELINES;
use bounce_wire::ingest::{RunEnd, RunHeader};
use bounce_wire::{NodeFacts, RunId, RunIdentity, Source, TargetRef, TimelineRecord};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Every run a watcher writes is this scenario.
pub const WATCH_SCENARIO: &str = "watch";
/// Days kept open at once (today, and yesterday for restarts that opened
/// before midnight); older ones are closed, their stream finished.
const OPEN_DAYS: usize = 2;
const NANOS_PER_DAY: i64 = 86_400 * 1_000_000_000;

/// `2026-11-30` for an instant (UTC).
pub fn day_of(unix_nanos: i64) -> String {
    let (y, m, d) = bounce_wire::civil::civil_from_days(unix_nanos.div_euclid(NANOS_PER_DAY));
    format!("{y:04}-{m:02}-{d:02}")
}

/// The run (and folder) of a node's day: `watch-NODE-2026-11-30`.
pub fn run_id(node: &str, day: &str) -> Result<RunId, OutputError> {
    let id = format!("watch-{node}-{day}");
    RunId::parse(&id).map_err(|e| {
        let source = std::io::Error::other(format!("--node: {e}"));
        OutputError::Write(WriteError::new(Path::new(&id), source))
    })
}

/// A restart's key, read back from its record. A unit's (an OSD's through
/// its unit too): its service (the container it wraps, else the unit) and
/// when it left `active` by systemd's own stamp. Else the container's name
/// (an OSD's record is filed under `ceph-osd`, its key is its container's)
/// and the first engine event (the one that opened it).
pub fn key_of(rec: &TimelineRecord) -> Option<RestartKey> {
    unit_key(rec).or_else(|| engine_key(rec))
}

fn unit_key(rec: &TimelineRecord) -> Option<RestartKey> {
    let opened_at = rec.unit.as_ref()?.left_active_unix_nanos?;
    let name = match &rec.target {
        TargetRef::Systemd {
            name, container, ..
        }
        | TargetRef::CephOsd {
            unit: Some(name),
            container,
            ..
        } => container.clone().unwrap_or_else(|| name.clone()),
        _ => return None,
    };
    Some(RestartKey { name, opened_at })
}

/// The key of the container restart a record holds (a wrapped container's,
/// for a unit's record). One found from the container's state (no event:
/// `away.rs`) is keyed by its first stamp.
fn engine_key(rec: &TimelineRecord) -> Option<RestartKey> {
    let name = match &rec.target {
        TargetRef::CephOsd {
            container: Some(c), ..
        } => c.clone(),
        _ => rec.service.clone(),
    };
    let from_state = || {
        let first = rec.timestamps.first()?;
        matches!(first.source, Source::DockerState { .. }).then_some(first.unix_nanos)
    };
    Some(RestartKey {
        name,
        opened_at: rec
            .events
            .first()
            .map(|e| e.unix_nanos)
            .or_else(from_state)?,
    })
}

/// What every run of this watcher shares.
pub struct WatchIdentity {
    pub deployment: String,
    pub node: NodeFacts,
    /// The configuration's text, sent with the run.
    pub config_text: Option<String>,
}

struct DayRun {
    labels: RunIdentity,
    file: LineFile,
    streamer: Option<Streamer>,
    end_unix_nanos: i64,
}

pub struct WatchRuns {
    root: PathBuf,
    identity: WatchIdentity,
    collector: Option<Collector>,
    open: BTreeMap<String, DayRun>,
}

impl WatchRuns {
    pub fn new(root: &Path, identity: WatchIdentity, collector: Option<Collector>) -> WatchRuns {
        WatchRuns {
            root: root.to_path_buf(),
            identity,
            collector,
            open: BTreeMap::new(),
        }
    }

    /// The keys of the restarts already recorded from `since` on (read back
    /// from the day folders), so replayed events do not record them twice.
    pub fn recorded_since(&self, since: i64) -> HashSet<RestartKey> {
        let node = &self.identity.node.hostname;
        let mut keys = HashSet::new();
        let mut at = since;
        let today = crate::timeline::realtime_nanos();
        while at <= today + NANOS_PER_DAY {
            let path = self
                .root
                .join(format!("watch-{node}-{}", day_of(at)))
                .join(TIMELINES);
            if let Ok(text) = std::fs::read_to_string(&path) {
                // A torn last line (killed mid-write) is no record.
                for r in text
                    .lines()
                    .filter_map(|l| serde_json::from_str::<TimelineRecord>(l).ok())
                {
                    keys.extend(unit_key(&r));
                    keys.extend(engine_key(&r));
                }
            }
            at += NANOS_PER_DAY;
        }
        keys
    }

    /// The labels a restart opened at `opened_at` is recorded under.
    pub fn labels(&mut self, opened_at: i64) -> Result<RunIdentity, OutputError> {
        Ok(self.day(opened_at)?.labels.clone())
    }

    /// Appends a restart to its day's run (fsynced), and spools it for the
    /// collector as batch `seq`.
    pub fn record(&mut self, rec: &TimelineRecord, seq: u64) -> Result<(), OutputError> {
        // A unit's record may have no engine event: its seq is its stamp.
        let opened_at = key_of(rec).map_or(seq as i64, |k| k.opened_at);
        let day = self.day(opened_at)?;
        append_timeline(&mut day.file, rec)?;
        if let Some(s) = &mut day.streamer {
            s.timeline_as(seq, rec)?;
        }
        Ok(())
    }

    fn day(&mut self, at: i64) -> Result<&mut DayRun, OutputError> {
        let day = day_of(at);
        if !self.open.contains_key(&day) {
            let run = self.open_day(&day, at)?;
            self.open.insert(day.clone(), run);
            while self.open.len() > OPEN_DAYS {
                let (_, old) = self.open.pop_first().expect("more than one open");
                close(old);
            }
        }
        Ok(self.open.get_mut(&day).expect("opened above"))
    }

    fn open_day(&self, day: &str, at: i64) -> Result<DayRun, OutputError> {
        let id = &self.identity;
        let run_id = run_id(&id.node.hostname, day)?;
        let dir = self.root.join(run_id.as_str());
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| OutputError::Write(WriteError::new(&path, source))
        };
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let file = resume(&dir.join(TIMELINES))?;
        let start = at - at.rem_euclid(NANOS_PER_DAY);
        let labels = RunIdentity {
            run_id,
            deployment: id.deployment.clone(),
            scenario: WATCH_SCENARIO.into(),
            node: id.node.clone(),
        };
        let streamer = match &self.collector {
            Some(c) => {
                let header = RunHeader {
                    identity: labels.clone(),
                    started_unix_nanos: start,
                    planned: 0,
                    scenario_yaml: id.config_text.clone(),
                };
                Some(Streamer::start(
                    c.clone(),
                    &dir,
                    id.node.hostname.clone(),
                    header,
                )?)
            }
            None => None,
        };
        Ok(DayRun {
            labels,
            file,
            streamer,
            end_unix_nanos: start + NANOS_PER_DAY,
        })
    }

    /// Gives each open day's stream up to `flush` to send its spool (what is
    /// left stays there for the next watcher or `push`).
    pub async fn flush(self, flush: Duration) {
        for (_, day) in self.open {
            if let Some(s) = day.streamer {
                s.stop(flush).await;
            }
        }
    }
}

/// A day's timelines opened to append to. A watcher killed mid-line left
/// a torn last line: cut off (or completed, if it is a whole record
/// missing its newline) before the next restart is appended after it, so
/// it never ends up mid-file where every reader would refuse the day.
fn resume(path: &Path) -> Result<LineFile, OutputError> {
    let whole = |line: &[u8]| serde_json::from_slice::<TimelineRecord>(line).is_ok();
    let (file, tail) = LineFile::open(path, whole)?;
    match tail {
        Tail::Whole => {}
        Tail::Completed { line } => eprintln!(
            "warning: {}:{line}: the last restart was written without its newline (the watcher was stopped); completed it",
            path.display()
        ),
        Tail::Cut { line, bytes } => eprintln!(
            "warning: {}:{line}: cut off a torn last line ({bytes} bytes; the watcher was stopped while writing it) before appending",
            path.display()
        ),
    }
    Ok(file)
}

/// A day that is over: its stream sends the run's end in the background.
fn close(day: DayRun) {
    if let Some(s) = day.streamer {
        let end = RunEnd {
            finished_unix_nanos: day.end_unix_nanos,
            not_started: 0,
            interrupted: false,
        };
        tokio::spawn(async move {
            let _ = s.finish(end, Duration::from_secs(600)).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restart_belongs_to_the_utc_day_it_opened() {
        let at = 1_796_031_378_829_826_926; // 2026-11-30T09:36:18Z
        assert_eq!(day_of(at), "2026-11-30");
        assert_eq!(day_of(at - at.rem_euclid(NANOS_PER_DAY) - 1), "2026-11-29");
        assert_eq!(
            run_id("node-1", "2026-11-30").unwrap(),
            "watch-node-1-2026-11-30"
        );
        assert!(run_id("node 1", "2026-11-30").is_err());
    }

    /// A watched restart of `name` opened at `opened_at`, as the day's run records it.
    fn watched(runs: &mut WatchRuns, name: &str, opened_at: i64) -> TimelineRecord {
        use crate::timeline::{Ending, Timeline};
        use bounce_wire::{Action, EngineEvent, TargetRef};
        let target = TargetRef::Docker {
            name: name.into(),
            id: "0123".into(),
        };
        let mut tl = Timeline::new(target, name.into(), 1, Action::Restart);
        tl.events.push(EngineEvent {
            action: "die".into(),
            unix_nanos: opened_at,
        });
        tl.finish(&runs.labels(opened_at).unwrap(), Ending::ok())
    }

    #[test]
    fn a_day_resumed_after_a_torn_line_stays_readable() {
        let root = std::env::temp_dir().join(format!("bounce-days-torn-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let identity = || WatchIdentity {
            deployment: "lab".into(),
            node: NodeFacts {
                hostname: "node-1".into(),
                ..NodeFacts::default()
            },
            config_text: None,
        };
        let at = 1_796_031_378_829_826_926; // 2026-11-30T09:36:18Z
        let mut runs = WatchRuns::new(&root, identity(), None);
        let first = watched(&mut runs, "nova_api", at);
        runs.record(&first, 1).unwrap();
        let path = root.join("watch-node-1-2026-11-30").join(TIMELINES);
        // The watcher killed while writing its second restart.
        let second = serde_json::to_vec(&watched(&mut runs, "keystone", at + 1)).unwrap();
        drop(runs);
        let mut text = std::fs::read(&path).unwrap();
        text.extend_from_slice(&second[..second.len() / 2]);
        std::fs::write(&path, &text).unwrap();

        // The next watcher appends after the cut, not after the torn half.
        let mut runs = WatchRuns::new(&root, identity(), None);
        let third = watched(&mut runs, "glance_api", at + 2);
        runs.record(&third, 3).unwrap();
        let read = bounce_wire::folder::read_timelines(&path).unwrap();
        assert_eq!(read.torn, None);
        let services: Vec<&str> = read.records.iter().map(|r| r.service.as_str()).collect();
        assert_eq!(services, ["nova_api", "glance_api"]);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn a_units_restart_is_known_again_by_when_it_left_active() {
        use crate::timeline::{Ending, Timeline};
        use bounce_wire::{Action, EngineEvent, UnitReport};
        let root = std::env::temp_dir().join(format!("bounce-days-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let identity = WatchIdentity {
            deployment: "lab".into(),
            node: NodeFacts {
                hostname: "node-1".into(),
                ..NodeFacts::default()
            },
            config_text: None,
        };
        let at = 1_796_031_378_829_826_000; // 2026-11-30T09:36:18Z
        let mut runs = WatchRuns::new(&root, identity, None);
        let target = TargetRef::Systemd {
            name: "kolla-nova_api-container.service".into(),
            bus: "system".into(),
            container: Some("nova_api".into()),
        };
        let mut tl = Timeline::new(target, "nova_api".into(), 1, Action::StopStart);
        tl.unit = Some(UnitReport {
            left_active_unix_nanos: Some(at),
            ..UnitReport::default()
        });
        // The wrapped container's own events come a moment later.
        tl.events.push(EngineEvent {
            action: "die".into(),
            unix_nanos: at + 5_000_000,
        });
        let rec = tl.finish(&runs.labels(at).unwrap(), Ending::ok());
        let unit = RestartKey {
            name: "nova_api".into(),
            opened_at: at,
        };
        assert_eq!(key_of(&rec), Some(unit.clone()));
        runs.record(&rec, at as u64).unwrap();
        let recorded = runs.recorded_since(at);
        assert!(recorded.contains(&unit), "{recorded:?}");
        // The container's key too: its replayed events are not a restart of their own.
        assert!(recorded.contains(&RestartKey {
            name: "nova_api".into(),
            opened_at: at + 5_000_000,
        }));
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn a_restart_found_from_the_containers_state_is_known_again_by_its_first_stamp() {
        use crate::watch::away::{Gap, Now, compare, followed};
        use crate::watch::book::Known;
        use crate::watch::replay::Held;
        let root = std::env::temp_dir().join(format!("bounce-days-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let identity = WatchIdentity {
            deployment: "lab".into(),
            node: NodeFacts {
                hostname: "node-1".into(),
                ..NodeFacts::default()
            },
            config_text: None,
        };
        let at = 1_796_031_378_829_826_000; // 2026-11-30T09:36:18Z
        let known = Known {
            id: "c1".into(),
            image: "nova:1".into(),
            started_at: at - 1_000_000_000,
            restart_count: Some(0),
        };
        let now = Now {
            id: "c1".into(),
            image: "nova:1".into(),
            created_at: None,
            started_at: Some(at + 2_000_000_000),
            finished_at: Some(at),
            restart_count: Some(0),
        };
        let held = Held {
            until: at + 10_000_000_000,
            ..Held::default()
        };
        let gap = Gap {
            words: "while no watcher ran",
            held: &held,
        };
        let found = compare("nova_api", &known, &now, &gap).unwrap();
        let key = found.key("nova_api");
        let mut runs = WatchRuns::new(&root, identity, None);
        let f = followed("nova_api", "c1", found);
        let rec = f.timeline.finish(&runs.labels(at).unwrap(), f.ending);
        assert_eq!(key_of(&rec), Some(key.clone()));
        runs.record(&rec, at as u64).unwrap();
        assert!(runs.recorded_since(at).contains(&key));
        let _ = std::fs::remove_dir_all(&root);
    }
}
