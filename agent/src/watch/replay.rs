//! Whether the engine can still replay what happened since the cursor. A
//! watcher resumes by asking for the engine's events since then, but
//! dockerd keeps only its last [`ENGINE_KEEPS`] events, of every kind (on
//! a kolla node the health checks' exec events alone come several a
//! second), and none from before its own restart. When the engine holds
//! that many and the oldest is newer than the cursor, what happened in
//! between may be gone: said, with the span, at resume. Which containers'
//! stops it still holds tells `away.rs` whose restarts the replay covers.

use crate::docker::DockerEngine;
use bollard::query_parameters::EventsOptions;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::time::Duration;

/// How many events dockerd keeps to replay (moby's `eventsLimit`).
pub const ENGINE_KEEPS: usize = 256;
/// How long asking what the engine holds may take.
const ASK_BOUND: Duration = Duration::from_secs(5);

/// An instant as the engine's `since`/`until` take it: `SECONDS.NANOS`.
pub fn engine_stamp(unix_nanos: i64) -> String {
    format!(
        "{}.{:09}",
        unix_nanos.div_euclid(1_000_000_000),
        unix_nanos.rem_euclid(1_000_000_000)
    )
}

/// The span (from, to) whose events the engine may have dropped, given
/// how many it replayed since `since` (every kind) and the oldest's stamp.
pub fn lost_span(since: i64, held: usize, oldest: Option<i64>) -> Option<(i64, i64)> {
    match oldest {
        Some(oldest) if held >= ENGINE_KEEPS && oldest > since => Some((since, oldest)),
        _ => None,
    }
}

/// What the engine held since the cursor when asked.
#[derive(Debug, Default)]
pub struct Held {
    /// Asked up to this instant (what happens later is followed live).
    pub until: i64,
    /// The span whose events may be gone (see [`lost_span`]).
    pub lost: Option<(i64, i64)>,
    /// Per container name, its latest `die` the engine holds: the restart
    /// it belongs to is replayed, and recorded from its events (a `kill`
    /// alone stops nothing: a signal the container ignores is one too).
    pub stops: HashMap<String, i64>,
}

/// Asks the engine for every event it holds since `since` (bounded) and
/// says when restarts before the oldest may not be replayed; none when it
/// did not answer in time.
pub async fn held_since(engine: &DockerEngine, since: i64) -> Option<Held> {
    let until = crate::timeline::realtime_nanos();
    let options = EventsOptions {
        since: Some(engine_stamp(since)),
        until: Some(engine_stamp(until)),
        filters: None,
    };
    let ask = async {
        let mut events = engine.client().events(Some(options));
        let (mut count, mut oldest) = (0usize, None);
        let mut stops: HashMap<String, i64> = HashMap::new();
        while let Some(Ok(ev)) = events.next().await {
            count += 1;
            oldest = oldest.or(ev.time_nano);
            let stop = ev.action.as_deref() == Some("die");
            let name = ev.actor.as_ref().and_then(|a| a.attributes.as_ref());
            let name = name.and_then(|m| m.get("name"));
            if let (true, Some(name), Some(at)) = (stop, name, ev.time_nano) {
                let latest = stops.entry(name.clone()).or_insert(at);
                *latest = (*latest).max(at);
            }
        }
        (count, oldest, stops)
    };
    let Ok((count, oldest, stops)) = tokio::time::timeout(ASK_BOUND, ask).await else {
        eprintln!(
            "watch: the Docker engine did not say within {}s what it still holds: containers' restarts it no longer holds are not looked for",
            ASK_BOUND.as_secs()
        );
        return None;
    };
    let lost = lost_span(since, count, oldest);
    if let Some((from, to)) = lost {
        eprintln!(
            "warning: watch: the Docker engine keeps only its last {ENGINE_KEEPS} events; the oldest it still holds is from {}, so container restarts between {} and then may not be replayed: they are looked for in the containers' own state",
            bounce_wire::civil::utc(to),
            bounce_wire::civil::utc(from)
        );
    }
    Some(Held { until, lost, stops })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_full_ring_newer_than_the_cursor_may_have_lost_events() {
        // Fewer than it keeps: everything since the cursor is there.
        assert_eq!(lost_span(100, 12, Some(150)), None);
        // Full, but reaching back to the cursor.
        assert_eq!(lost_span(100, ENGINE_KEEPS, Some(100)), None);
        // Full and newer than the cursor: the gap before the oldest.
        assert_eq!(lost_span(100, ENGINE_KEEPS, Some(150)), Some((100, 150)));
        assert_eq!(lost_span(100, 0, None), None);
    }
}
