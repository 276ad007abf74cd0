//! Readiness probes that the agent runs itself, at sub-second intervals.
//!
//! Every probe implements [`Probe`]: one try, success or a reason. The loop in
//! [`poll_until_ready`] is shared, so all probes follow the same honesty rules
//! (docs/design.md): a probe never overlaps itself, its own cost is recorded, and
//! readiness is reported as a window — after the last failed try began, by the
//! time the first successful try ended. (Not "by the time it began": a
//! `docker exec` try runs its check tens of ms after it begins, and the
//! benchmark saw services become ready after the successful try had begun.)
//!
//! Event-driven readiness (`docker_health`, `running`) needs no polling and
//! comes from the source of truth's observer (`docker/observe.rs`), through
//! `readiness.rs`.

mod exec_health;
mod http;
mod tcp;

pub use exec_health::{ExecHealth, health_command};
pub use http::Http;
pub use tcp::Tcp;

use crate::abort::{Abort, Interrupt, bounded};
use crate::timeline::realtime_nanos;
use bounce_wire::ProbeReport;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::time::Instant;

pub type TryFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// One readiness check.
pub trait Probe: Send + Sync {
    /// How the probe is named in timelines and tables.
    fn label(&self) -> String;
    /// One try. `Err` carries a short reason (shown when the probe never succeeds).
    fn try_once(&self) -> TryFuture<'_>;
}

/// When the probe first succeeded, if it did.
pub struct ProbeResult {
    pub report: ProbeReport,
    /// CLOCK_REALTIME nanos at which the first successful try ended.
    pub ready_at: Option<i64>,
}

/// Tries `probe` every `interval` (measured from try start to try start; a try
/// longer than the interval is followed at once by the next, never overlapped)
/// until it succeeds, the deadline passes or the run aborts.
pub async fn poll_until_ready(
    probe: &dyn Probe,
    interval: Duration,
    try_timeout: Duration,
    deadline: Instant,
    abort: &Abort,
) -> ProbeResult {
    let mut report = ProbeReport {
        probe: probe.label(),
        tries: 0,
        failures: 0,
        busy_seconds: 0.0,
        ready_after_unix_nanos: None,
        ready_by_unix_nanos: None,
        last_error: None,
    };
    loop {
        let began_wall = realtime_nanos();
        let began = Instant::now();
        let try_deadline = (began + try_timeout).min(deadline);
        let result = bounded(probe.try_once(), try_deadline, abort).await;
        report.busy_seconds += began.elapsed().as_secs_f64();
        report.tries += 1;
        match result {
            Ok(Ok(())) => {
                // The check itself ran somewhere inside the try (a docker exec
                // takes tens of ms before the command runs), so only the try's
                // end is a sure "ready by": the moment the agent knew.
                let ended_wall = realtime_nanos();
                report.ready_by_unix_nanos = Some(ended_wall);
                return ProbeResult {
                    report,
                    ready_at: Some(ended_wall),
                };
            }
            Ok(Err(reason)) => {
                report.failures += 1;
                report.ready_after_unix_nanos = Some(began_wall);
                report.last_error = Some(reason);
            }
            Err(Interrupt::Deadline) => {
                report.failures += 1;
                report.ready_after_unix_nanos = Some(began_wall);
                report.last_error = Some(format!(
                    "try did not answer within {:.1}s",
                    try_deadline.duration_since(began).as_secs_f64()
                ));
            }
            Err(Interrupt::Aborted) => {
                report.failures += 1;
                report.last_error = Some("aborted".into());
                return ProbeResult {
                    report,
                    ready_at: None,
                };
            }
        }
        let next = (began + interval).max(Instant::now());
        if next >= deadline
            || bounded(tokio::time::sleep_until(next), deadline, abort)
                .await
                .is_err()
        {
            return ProbeResult {
                report,
                ready_at: None,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Succeeds from the third try on.
    struct ThirdTime(AtomicU32);
    impl Probe for ThirdTime {
        fn label(&self) -> String {
            "third".into()
        }
        fn try_once(&self) -> TryFuture<'_> {
            Box::pin(async move {
                if self.0.fetch_add(1, Ordering::SeqCst) >= 2 {
                    Ok(())
                } else {
                    Err("not yet".into())
                }
            })
        }
    }

    #[tokio::test]
    async fn reports_a_readiness_window_and_counts_tries() {
        let p = ThirdTime(AtomicU32::new(0));
        let deadline = Instant::now() + Duration::from_secs(5);
        let r = poll_until_ready(
            &p,
            Duration::from_millis(10),
            Duration::from_secs(1),
            deadline,
            &Abort::never(),
        )
        .await;
        assert_eq!(r.report.tries, 3);
        assert_eq!(r.report.failures, 2);
        let (after, by) = (
            r.report.ready_after_unix_nanos.unwrap(),
            r.report.ready_by_unix_nanos.unwrap(),
        );
        assert!(after < by, "{after} < {by}");
        // Tries do not overlap and respect the interval.
        assert!(by - after >= 10_000_000, "{}", by - after);
        assert_eq!(r.ready_at, Some(by));
    }

    #[tokio::test]
    async fn gives_up_at_the_deadline() {
        let p = ThirdTime(AtomicU32::new(0));
        let deadline = Instant::now() + Duration::from_millis(30);
        let r = poll_until_ready(
            &p,
            Duration::from_millis(100),
            Duration::from_secs(1),
            deadline,
            &Abort::never(),
        )
        .await;
        assert!(r.ready_at.is_none());
        assert_eq!(r.report.tries, 1);
        assert_eq!(r.report.last_error.as_deref(), Some("not yet"));
    }
}
