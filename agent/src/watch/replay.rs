//! Whether the engine can still replay what happened since the cursor. A
//! watcher resumes by asking for the engine's events since then, but
//! dockerd keeps only its last [`ENGINE_KEEPS`] events, of every kind (on
//! a kolla node the health checks' exec events alone come several a
//! second), and none from before its own restart. When the engine holds
//! that many and the oldest is newer than the cursor, what happened in
//! between may be gone: said, with the span, at resume.

use crate::docker::DockerEngine;
use bollard::query_parameters::EventsOptions;
use futures_util::StreamExt;
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

/// Asks the engine for every event it holds since `since` (bounded) and
/// says when restarts before the oldest may not be replayed.
pub async fn say_what_is_lost(engine: &DockerEngine, since: i64) {
    let now = crate::timeline::realtime_nanos();
    let options = EventsOptions {
        since: Some(engine_stamp(since)),
        until: Some(engine_stamp(now)),
        filters: None,
    };
    let ask = async {
        let mut events = engine.client().events(Some(options));
        let (mut held, mut oldest) = (0usize, None);
        while let Some(Ok(ev)) = events.next().await {
            held += 1;
            oldest = oldest.or(ev.time_nano);
        }
        (held, oldest)
    };
    let Ok((held, oldest)) = tokio::time::timeout(ASK_BOUND, ask).await else {
        return;
    };
    if let Some((from, to)) = lost_span(since, held, oldest) {
        eprintln!(
            "warning: watch: the Docker engine keeps only its last {ENGINE_KEEPS} events; the oldest it still holds is from {}, so container restarts between {} and then may not be replayed and are not timed",
            bounce_wire::civil::utc(to),
            bounce_wire::civil::utc(from)
        );
    }
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
