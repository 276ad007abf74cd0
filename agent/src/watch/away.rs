//! Container restarts whose events the engine no longer holds (its ring
//! of 256 moved past them, or it restarted since: none survive that),
//! found from each container's own state: `State.StartedAt` moved past
//! what the last watcher knew (`book.rs`) and the engine holds no `die`
//! of it since (`replay::Held`; a restart it holds is replayed
//! and recorded from its events, never twice). Each such container is
//! recorded once, its last restart only (each stamp holds the latest
//! transition): exited at `FinishedAt` when it lies in between, started at
//! `StartedAt`, a recreate when the id under the name changed (created at
//! the new container's `Created`); the notes say the source and what was
//! not seen. Read at start and once the engine answers again.

use super::book::Known;
use super::replay::Held;
use crate::docker::DockerEngine;
use crate::docker::follow::Followed;
use crate::docker::restarts::RestartKey;
use crate::timeline::{Ending, Timeline, parse_rfc3339_nanos};
use bollard::query_parameters::ListContainersOptions;
use bounce_wire::{Action, BoundaryName, Cause, Outcome, Recreated, Source, TargetRef};
use futures_util::StreamExt;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// How long reading every container may take.
const READ_BOUND: Duration = Duration::from_secs(30);
/// How many containers are inspected at once.
const READ_AT_ONCE: usize = 8;

/// One container's state now (unix nanos).
#[derive(Debug, Clone, Default)]
pub struct Now {
    pub id: String,
    pub image: String,
    pub created_at: Option<i64>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub restart_count: Option<i64>,
}

impl Now {
    /// What the book keeps of it (none: never started).
    pub fn known(&self) -> Option<Known> {
        Some(Known {
            id: self.id.clone(),
            image: self.image.clone(),
            started_at: self.started_at?,
            restart_count: self.restart_count,
        })
    }
}

/// What kept the watcher from the engine's events, in words (`while no
/// watcher ran`), and what the engine said it holds.
pub struct Gap<'h> {
    pub words: &'static str,
    pub held: &'h Held,
}

/// A restart found from a container's state.
#[derive(Debug, Clone, PartialEq)]
pub struct FromStamps {
    pub exited: Option<i64>,
    pub created: Option<i64>,
    pub started: i64,
    pub cause: Cause,
    pub recreated: Option<Recreated>,
    pub notes: Vec<String>,
}

impl FromStamps {
    /// Its key: the first stamp (as `days` reads it back from the record).
    pub fn key(&self, name: &str) -> RestartKey {
        RestartKey {
            name: name.to_string(),
            opened_at: self.exited.or(self.created).unwrap_or(self.started),
        }
    }
}

/// Whether `now` restarted since `known` without the engine holding its
/// stop (a restart it holds is replayed), and what its stamps say. A start
/// after the engine was asked (`gap.held.until`) is followed live.
pub fn compare(name: &str, known: &Known, now: &Now, gap: &Gap<'_>) -> Option<FromStamps> {
    let started = now.started_at.filter(|s| *s > known.started_at)?;
    if started > gap.held.until {
        return None;
    }
    if gap
        .held
        .stops
        .get(name)
        .is_some_and(|s| *s > known.started_at)
    {
        return None;
    }
    let recreate = now.id != known.id;
    let within = |at: Option<i64>| at.filter(|a| *a > known.started_at && *a <= started);
    let exited = within(now.finished_at).filter(|_| !recreate);
    let created = within(now.created_at).filter(|_| recreate);
    let rose = match (known.restart_count, now.restart_count) {
        (Some(a), Some(b)) if b > a && !recreate => Some(b - a),
        _ => None,
    };
    let why = match gap.held.lost {
        Some((_, oldest)) => format!(
            "its oldest event is from {}",
            bounce_wire::civil::utc(oldest)
        ),
        None => "it restarted since, or dropped them".into(),
    };
    let mut notes = vec![format!(
        "found from the container's own state (State.StartedAt, State.FinishedAt, RestartCount, its id), not from engine events: it restarted {} and the engine no longer held its events ({why})",
        gap.words
    )];
    if exited.is_none() && !recreate {
        notes.push("when it stopped is not known: its FinishedAt is not between the last known start and this one".into());
    }
    notes.push(
        "not seen: the stop's request, signals and exit code, and readiness (it ended before the watcher read it)".into(),
    );
    let cause = match (recreate, rose) {
        (true, _) => {
            notes.push(format!(
                "a recreate: the id under this name changed ({} to {}); the old container's exit and removal were not seen",
                short(&known.id),
                short(&now.id)
            ));
            Cause::Recreate
        }
        (false, Some(n)) => {
            notes.push(format!("a crash: RestartCount rose by {n} (the restart policy brought it back); a stop someone asked for after it would not show"));
            Cause::Crash
        }
        (false, None) => {
            notes.push("a docker restart or a stop then a start: not told apart without the events, recorded as stop-start".into());
            Cause::StopStart
        }
    };
    notes.push(format!(
        "if it restarted more than once {}, only the last restart left its stamps",
        gap.words
    ));
    let recreated = recreate.then(|| Recreated {
        old_id: known.id.clone(),
        old_image: known.image.clone(),
        new_image: now.image.clone(),
    });
    Some(FromStamps {
        exited,
        created,
        started,
        cause,
        recreated,
        notes,
    })
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// The record of a restart found from the stamps.
pub fn followed(name: &str, id: &str, found: FromStamps) -> Followed {
    let target = TargetRef::Docker {
        name: name.to_string(),
        id: id.to_string(),
    };
    let mut tl = Timeline::new(target, name.to_string(), 1, Action::Restart);
    let state = |field: &str| Source::DockerState {
        field: field.to_string(),
    };
    for (boundary, at, field) in [
        (BoundaryName::Exited, found.exited, "State.FinishedAt"),
        (BoundaryName::Created, found.created, "Created"),
        (
            BoundaryName::Started,
            Some(found.started),
            "State.StartedAt",
        ),
    ] {
        if let Some(at) = at {
            tl.mark(boundary, at, state(field));
        }
    }
    tl.notes = found.notes;
    Followed {
        timeline: tl,
        ending: Ending::new(
            Outcome::Incomplete,
            "found from the container's state after the fact: readiness not observed",
        ),
        cause: found.cause,
        recreated: found.recreated,
    }
}

/// One container's state, by name (none: removed meanwhile). `of`: its id or name.
async fn read_one(engine: &DockerEngine, of: String) -> Option<(String, Now)> {
    let info = engine.client().inspect_container(&of, None).await.ok()?;
    let name = info.name.as_deref().unwrap_or(&of);
    let name = name.trim_start_matches('/').to_string();
    let state = info.state.unwrap_or_default();
    let stamp = |s: Option<String>| s.as_deref().and_then(parse_rfc3339_nanos);
    let now = Now {
        image: info.config.and_then(|c| c.image).unwrap_or_default(),
        created_at: stamp(info.created),
        started_at: stamp(state.started_at),
        finished_at: stamp(state.finished_at),
        restart_count: info.restart_count,
        id: info.id.unwrap_or(of),
    };
    Some((name, now))
}

/// Every container's state, by name (bounded; none if the engine did not
/// answer): those it lists, and those `known` names. A proxy that refuses
/// the list (`GET /containers/json`) leaves the known ones only (said).
pub async fn read_all(engine: &DockerEngine, known: Vec<String>) -> Option<BTreeMap<String, Now>> {
    let read = async {
        let options = ListContainersOptions {
            all: true,
            ..Default::default()
        };
        let listed = match engine.client().list_containers(Some(options)).await {
            Ok(list) => list,
            Err(e) => {
                eprintln!(
                    "watch: the engine did not list its containers ({}): only those the watcher knew are read again",
                    crate::docker::cause(&e)
                );
                Vec::new()
            }
        };
        let names: BTreeSet<String> = listed
            .iter()
            .filter_map(|c| c.names.as_ref()?.first().cloned())
            .map(|n| n.trim_start_matches('/').to_string())
            .collect();
        let of = listed.into_iter().filter_map(|c| c.id);
        let of = of.chain(known.into_iter().filter(|n| !names.contains(n)));
        // A few at once: a node may run hundreds, and the watcher waits.
        let read = futures_util::stream::iter(of)
            .map(|of| read_one(engine, of))
            .buffer_unordered(READ_AT_ONCE);
        let all: BTreeMap<String, Now> = read.filter_map(|c| async { c }).collect().await;
        Some(all)
    };
    let all = tokio::time::timeout(READ_BOUND, read).await.ok().flatten();
    if all.is_none() {
        eprintln!(
            "watch: the containers' state could not be read within {}s: restarts the engine no longer holds are not looked for",
            READ_BOUND.as_secs()
        );
    }
    all
}

/// What the book keeps of every container read (a first start's).
pub fn book_of(read: &BTreeMap<String, Now>) -> BTreeMap<String, Known> {
    read.iter()
        .filter_map(|(n, c)| Some((n.clone(), c.known()?)))
        .collect()
}

/// The restarts found from the containers' state `read`, against `last`
/// known; `open` says a restart of the container is being followed from its
/// events, `recorded` one already in the day's run. Also what the book
/// keeps next: a container whose restart was not found here (the engine
/// replays it, or it started after the engine was asked) keeps its last
/// known entry until its `start` event moves it on.
pub fn found(
    read: &BTreeMap<String, Now>,
    last: &dyn Fn(&str) -> Option<Known>,
    gap: &Gap<'_>,
    open: &dyn Fn(&str) -> bool,
    recorded: &dyn Fn(&RestartKey) -> bool,
) -> (Vec<(RestartKey, Followed)>, BTreeMap<String, Known>) {
    let mut restarts = Vec::new();
    let mut keep = BTreeMap::new();
    for (name, now) in read {
        let Some(known) = last(name) else {
            keep.extend(now.known().map(|k| (name.clone(), k)));
            continue;
        };
        let moved = now.started_at.is_some_and(|s| s > known.started_at);
        match compare(name, &known, now, gap).filter(|_| !open(name)) {
            Some(f) => {
                let key = f.key(name);
                if !recorded(&key) {
                    restarts.push((key, followed(name, &now.id, f)));
                }
                keep.extend(now.known().map(|k| (name.clone(), k)));
            }
            // Its events are replayed (or it is followed live): the book
            // moves on at its `start` event.
            None if moved => {
                keep.insert(name.clone(), known);
            }
            None => {
                keep.extend(now.known().map(|k| (name.clone(), k)));
            }
        }
    }
    (restarts, keep)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    fn known() -> Known {
        Known {
            id: "aaaaaaaaaaaaaaaa".into(),
            image: "nova:1".into(),
            started_at: 100 * S,
            restart_count: Some(0),
        }
    }

    fn now(started: i64, finished: i64) -> Now {
        Now {
            id: "aaaaaaaaaaaaaaaa".into(),
            image: "nova:1".into(),
            created_at: Some(10 * S),
            started_at: Some(started),
            finished_at: Some(finished),
            restart_count: Some(0),
        }
    }

    fn held(stops: &[(&str, i64)]) -> Held {
        Held {
            until: 1_000 * S,
            lost: Some((90 * S, 500 * S)),
            stops: stops.iter().map(|(n, s)| (n.to_string(), *s)).collect(),
        }
    }

    fn gap(held: &Held) -> Gap<'_> {
        Gap {
            words: "while no watcher ran",
            held,
        }
    }

    #[test]
    fn a_start_not_moved_is_nothing() {
        let h = held(&[]);
        assert_eq!(
            compare("nova", &known(), &now(100 * S, 90 * S), &gap(&h)),
            None
        );
        assert_eq!(
            compare("nova", &known(), &now(80 * S, 90 * S), &gap(&h)),
            None
        );
    }

    #[test]
    fn a_restart_whose_stop_the_engine_lost_is_found_from_its_stamps() {
        let h = held(&[]);
        let f = compare("nova", &known(), &now(300 * S, 200 * S), &gap(&h)).unwrap();
        assert_eq!((f.exited, f.started), (Some(200 * S), 300 * S));
        assert_eq!(f.cause, Cause::StopStart);
        assert_eq!(f.key("nova").opened_at, 200 * S);
        assert!(
            f.notes[0].contains("container's own state"),
            "{:?}",
            f.notes
        );
        let rec = followed("nova", "aaaa", f);
        assert_eq!(rec.timeline.at(BoundaryName::Exited), Some(200 * S));
        assert_eq!(rec.ending.outcome, Outcome::Incomplete);
    }

    #[test]
    fn a_restart_the_engine_still_holds_is_left_to_its_events() {
        // Its die is held: replayed, recorded from the events.
        let h = held(&[("nova", 200 * S)]);
        assert_eq!(
            compare("nova", &known(), &now(300 * S, 200 * S), &gap(&h)),
            None
        );
        // A held stop from before the last known start covers nothing newer.
        let h = held(&[("nova", 50 * S)]);
        assert!(compare("nova", &known(), &now(300 * S, 200 * S), &gap(&h)).is_some());
        // Started after the engine was asked: followed live.
        let h = held(&[]);
        assert_eq!(
            compare("nova", &known(), &now(2_000 * S, 1_500 * S), &gap(&h)),
            None
        );
    }

    #[test]
    fn an_exit_outside_the_gap_is_no_boundary() {
        let h = held(&[]);
        // Stopped again after the restart: FinishedAt is that stop's.
        let f = compare("nova", &known(), &now(300 * S, 400 * S), &gap(&h)).unwrap();
        assert_eq!(f.exited, None);
        assert_eq!(f.key("nova").opened_at, 300 * S);
        assert!(
            f.notes
                .iter()
                .any(|n| n.contains("when it stopped is not known"))
        );
    }

    #[test]
    fn restart_count_risen_is_a_crash_and_a_new_id_a_recreate() {
        let h = held(&[]);
        let mut n = now(300 * S, 200 * S);
        n.restart_count = Some(2);
        let f = compare("nova", &known(), &n, &gap(&h)).unwrap();
        assert_eq!(f.cause, Cause::Crash);
        let mut n = now(300 * S, 0);
        n.id = "bbbbbbbbbbbbbbbb".into();
        n.image = "nova:2".into();
        n.created_at = Some(250 * S);
        n.finished_at = None;
        let f = compare("nova", &known(), &n, &gap(&h)).unwrap();
        assert_eq!(f.cause, Cause::Recreate);
        assert_eq!((f.exited, f.created), (None, Some(250 * S)));
        let r = f.recreated.clone().unwrap();
        assert_eq!(
            (r.old_image.as_str(), r.new_image.as_str()),
            ("nova:1", "nova:2")
        );
        assert_eq!(f.key("nova").opened_at, 250 * S);
    }

    #[test]
    fn found_records_once_and_keeps_the_last_entry_of_what_is_replayed() {
        let h = held(&[("glance", 250 * S)]);
        let read = BTreeMap::from([
            ("nova".to_string(), now(300 * S, 200 * S)),
            ("glance".to_string(), now(300 * S, 250 * S)),
            ("new".to_string(), now(300 * S, 0)),
        ]);
        let last = |n: &str| (n != "new").then(known);
        let (found_now, keep) = found(&read, &last, &gap(&h), &|_| false, &|_| false);
        let names: Vec<&str> = found_now.iter().map(|(k, _)| k.name.as_str()).collect();
        assert_eq!(names, ["nova"]);
        assert_eq!(keep["nova"].started_at, 300 * S);
        assert_eq!(
            keep["glance"].started_at,
            100 * S,
            "moved on by its start event"
        );
        assert_eq!(keep["new"].started_at, 300 * S);
        // Already recorded (a watcher killed before its book was written).
        let key = RestartKey {
            name: "nova".into(),
            opened_at: 200 * S,
        };
        let (again, _) = found(&read, &last, &gap(&h), &|_| false, &|k| k == &key);
        assert!(again.is_empty());
        // Being followed from its events.
        let (open, _) = found(&read, &last, &gap(&h), &|n| n == "nova", &|_| false);
        assert!(open.is_empty());
    }
}
