//! A fleet run's status in words, for an operator at a terminal
//! (`bounce-collector fleet status RUN`): the state and who paused or
//! aborted it, the failures against `max_failures`, every node (waiting,
//! restarting what since when, lost, done), the queue in the order it is
//! served, and each limit's use as used/max. Times are UTC with their age
//! at `now`.

use crate::event::{Millis, PauseReason};
use crate::status::{FleetState, FleetStatus, Held, NodeState, Resolution};
use bounce_wire::civil::utc;
use std::fmt::Write;

/// `12:01:02 UTC (4 s ago)`; the date only when it is not `now`'s.
fn when(at: Millis, now: Millis) -> String {
    let full = utc(at.0 as i64 * 1_000_000);
    let today = utc(now.0 as i64 * 1_000_000);
    let shown = if full[..10] == today[..10] {
        &full[11..]
    } else {
        &full[..]
    };
    format!("{shown} ({} ago)", age(now.0.saturating_sub(at.0)))
}

/// `850 ms`, `42 s`, `3 min 20 s`, `2 h 5 min`.
fn age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0 => format!("{ms} ms"),
        1..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, s / 60 % 60),
    }
}

/// Why grants stopped, with who stopped them.
pub fn pause_words(p: &PauseReason) -> String {
    match p {
        PauseReason::Operator { by } if by.is_empty() => "paused by an operator".into(),
        PauseReason::Operator { by } => format!("paused by an operator ({by})"),
        PauseReason::Failures { count } => {
            format!("paused: {count} restart(s) not ok since the last resume (max_failures)")
        }
        PauseReason::Lost { node } => format!(
            "paused: node {node:?} is lost (its lease expired mid-restart): an operator must resolve it"
        ),
    }
}

/// ` by admin token 1 at 12:01:02 UTC (4 s ago)`.
fn resolution(r: &Resolution, now: Millis) -> String {
    let by = if r.by.is_empty() {
        String::new()
    } else {
        format!(" by {}", r.by)
    };
    format!("{by} at {}", when(r.at, now))
}

fn held(h: &Held, now: Millis) -> String {
    match h.until {
        Some(until) => format!(
            "{} since {}, lease until {}",
            h.restart,
            when(h.since, now),
            &utc(until.0 as i64 * 1_000_000)[11..]
        ),
        None => format!("{} (lease expired {})", h.restart, when(h.since, now)),
    }
}

impl FleetStatus {
    /// The status in words at `now` (the collector's clock, for ages).
    pub fn words(&self, now: Millis) -> String {
        let mut o = String::new();
        let state = match &self.state {
            FleetState::Running => "running".to_string(),
            FleetState::Paused { reason } => pause_words(reason),
            FleetState::Aborted { by } if by.is_empty() => "aborted by an operator".into(),
            FleetState::Aborted { by } => format!("aborted by an operator ({by})"),
            FleetState::Done => "done: every node has finished".into(),
        };
        let _ = writeln!(o, "fleet run {}: {state}", self.run);
        let f = &self.failures;
        let _ = writeln!(
            o,
            "failures: {} of max_failures {} since the last resume ({} in all)",
            f.since_resume, f.max, f.total
        );
        let _ = writeln!(o, "\nnodes ({}):", self.nodes.len());
        let width = self.nodes.iter().map(|n| n.node.len()).max().unwrap_or(0);
        for n in &self.nodes {
            let what = match n.state {
                NodeState::Idle => "idle (holds nothing, waits for nothing)".to_string(),
                NodeState::Waiting => format!(
                    "waiting: {} request(s){}",
                    n.waiting,
                    n.waiting_since
                        .map(|s| format!(", the first asked {}", when(s, now)))
                        .unwrap_or_default()
                ),
                NodeState::Restarting => {
                    let mut s = format!(
                        "restarting {}",
                        n.restarting
                            .iter()
                            .map(|h| held(h, now))
                            .collect::<Vec<_>>()
                            .join("; ")
                    );
                    if n.waiting > 0 {
                        let _ = write!(s, " (and {} waiting)", n.waiting);
                    }
                    s
                }
                NodeState::Lost => format!(
                    "LOST: {} (its slots stay taken: `fleet resolve {} {}` once dealt with)",
                    n.lost
                        .iter()
                        .map(|h| held(h, now))
                        .collect::<Vec<_>>()
                        .join("; "),
                    self.run,
                    n.node
                ),
                NodeState::Resolved => format!(
                    "resolved{}: lost, then taken out of the run (an agent started again with the same --run-id rejoins it)",
                    n.resolved
                        .as_ref()
                        .map(|r| resolution(r, now))
                        .unwrap_or_default()
                ),
                NodeState::Done => "done".into(),
            };
            let rejoined = match (&n.resolved, n.epoch) {
                (Some(r), epoch) if epoch > 0 && n.state != NodeState::Resolved => format!(
                    " (rejoined after a resolve{}; epoch {epoch})",
                    resolution(r, now)
                ),
                _ => String::new(),
            };
            let _ = writeln!(o, "  {:width$}  {what}{rejoined}", n.node);
        }
        if self.queue.is_empty() {
            let _ = writeln!(o, "\nqueue: empty");
        } else {
            let _ = writeln!(o, "\nqueue ({}, in the order served):", self.queue.len());
            for (i, q) in self.queue.iter().enumerate() {
                let waits = match q.blocked_on.as_str() {
                    "paused" => "waits for a resume".to_string(),
                    "node" => "waits for its node (at its concurrency)".to_string(),
                    key => format!("waits for {key}"),
                };
                let _ = writeln!(
                    o,
                    "  {:>3}. {:width$}  {}, asked {}, {waits}",
                    i + 1,
                    q.node,
                    q.restart,
                    when(q.since, now),
                );
            }
        }
        let _ = writeln!(o, "\nlimits (used/max):");
        let lw = self
            .limits
            .iter()
            .map(|l| l.limit.len() + l.key.len() + 3)
            .max()
            .unwrap_or(0);
        for l in &self.limits {
            let name = format!("{} ({})", l.limit, l.key);
            let waiting = if l.waiting > 0 {
                format!("  {} waiting", l.waiting)
            } else {
                String::new()
            };
            let _ = writeln!(o, "  {name:lw$}  {}/{}{waiting}", l.used, l.max);
        }
        o
    }
}
