//! Carries out a planned run: hands restarts to at most `concurrency`
//! workers, never two at once on the same target, with `pause` between a
//! worker's restarts; stops dispatching on a failure (`on_failure: abort`) or
//! on a stop request, and lets what is in flight finish within a bounded
//! drain time.

use crate::abort::{Abort, AbortHandle, abort_pair};
use crate::output::RunOutput;
use crate::scenario::{OnFailure, Scenario};
use crate::target::{BoxFuture, ResolvedTarget};
use crate::timeline::{Ending, RunLabels, Timeline};
use bounce_wire::summary::format_seconds;
use bounce_wire::{Outcome, Phase, TimelineRecord};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::sync::mpsc::UnboundedReceiver;

/// What the runner needs of a target: one restart, recorded whatever happens.
pub trait Restartable: Sync {
    fn restart<'a>(&'a self, iteration: u32, abort: &'a Abort)
    -> BoxFuture<'a, (Timeline, Ending)>;
}

impl Restartable for ResolvedTarget {
    fn restart<'a>(
        &'a self,
        iteration: u32,
        abort: &'a Abort,
    ) -> BoxFuture<'a, (Timeline, Ending)> {
        ResolvedTarget::restart(self, iteration, abort)
    }
}

/// Requests to stop, in the order they arrive (Ctrl-C today; the caller
/// decides which signals send one). The first is a soft stop: nothing new
/// starts and what is in flight gets the drain time; the second ends the
/// drain at once.
pub type StopRequests = UnboundedReceiver<()>;

/// One restart to do: which target, which round of `repeat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Job {
    pub target: usize,
    pub iteration: u32,
}

/// Round by round (every target once, then again), so that repeats of one
/// target are spread over the run instead of back to back.
pub fn schedule(targets: usize, repeat: u32) -> Vec<Job> {
    (1..=repeat)
        .flat_map(|iteration| (0..targets).map(move |target| Job { target, iteration }))
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// A restart did not end `ok` and the scenario says `on_failure: abort`.
    Failure,
    /// A stop request came (the operator pressed Ctrl-C).
    Interrupted,
    /// The output could not be written: measuring on would lose data.
    OutputError,
}

pub struct RunEnd {
    pub stopped: Option<StopReason>,
    pub output_error: Option<String>,
}

struct Dispatch {
    queue: VecDeque<Job>,
    busy: HashSet<usize>,
    stopped: Option<StopReason>,
}

struct Shared<'a, T> {
    targets: &'a [T],
    labels: &'a RunLabels,
    on_failure: OnFailure,
    pause: Duration,
    dispatch: Mutex<Dispatch>,
    wake: Notify,
    soft_stop: Abort,
    hard_abort: Abort,
    out: Mutex<RunOutput>,
    output_error: Mutex<Option<String>>,
    progress: ProgressBar,
}

pub struct RunOptions {
    /// After a stop request, how long restarts in flight may take to finish before they are abandoned.
    pub drain: Duration,
    pub show_progress: bool,
}

/// Runs the scenario; returns the output (to be finished by the caller) and why it stopped early, if it did.
pub async fn run<T: Restartable>(
    scenario: &Scenario,
    targets: &[T],
    labels: &RunLabels,
    out: RunOutput,
    opts: &RunOptions,
    stop: StopRequests,
) -> (RunOutput, RunEnd) {
    let jobs = schedule(targets.len(), scenario.repeat);
    let progress = if opts.show_progress {
        ProgressBar::new(jobs.len() as u64)
    } else {
        ProgressBar::hidden()
    };
    progress.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}")
            .expect("static template"),
    );
    let (soft_handle, soft_stop) = abort_pair();
    let (hard_handle, hard_abort) = abort_pair();
    let shared = Shared {
        targets,
        labels,
        on_failure: scenario.on_failure,
        pause: scenario.pause.0,
        dispatch: Mutex::new(Dispatch {
            queue: jobs.into(),
            busy: HashSet::new(),
            stopped: None,
        }),
        wake: Notify::new(),
        soft_stop,
        hard_abort,
        out: Mutex::new(out),
        output_error: Mutex::new(None),
        progress,
    };
    {
        let workers =
            futures_util::future::join_all((0..scenario.concurrency).map(|_| worker(&shared)));
        tokio::pin!(workers);
        // The stop watch ends with the workers; if it fires the hard abort
        // first, the workers still get to record what they were doing.
        tokio::select! {
            _ = &mut workers => {}
            _ = watch_stop(stop, soft_handle, hard_handle, opts.drain) => { workers.await; }
        }
    }
    shared.progress.finish_and_clear();
    let mut stopped = shared.dispatch.lock().unwrap().stopped;
    if stopped.is_none() && shared.soft_stop.is_set() {
        stopped = Some(StopReason::Interrupted);
    }
    let output_error = shared.output_error.lock().unwrap().take();
    (
        shared.out.into_inner().unwrap(),
        RunEnd {
            stopped,
            output_error,
        },
    )
}

/// First stop request: start nothing new, give what is in flight `drain` to
/// finish. Second request, or the drain time ran out: stop waiting, record
/// them as aborted. Without a sender left, it waits for the workers.
async fn watch_stop(mut stop: StopRequests, soft: AbortHandle, hard: AbortHandle, drain: Duration) {
    if stop.recv().await.is_none() {
        return std::future::pending().await;
    }
    eprintln!(
        "\ninterrupted: starting no new restart; waiting up to {}s for those in flight (Ctrl-C again to stop waiting)",
        drain.as_secs()
    );
    soft.fire();
    tokio::select! {
        Some(()) = stop.recv() => {}
        _ = tokio::time::sleep(drain) => {}
    }
    eprintln!("no longer waiting: restarts still in flight are recorded as aborted");
    hard.fire();
}

async fn worker<T: Restartable>(sh: &Shared<'_, T>) {
    let mut first = true;
    while let Some(job) = next_job(sh).await {
        if !first && !sh.pause.is_zero() {
            // A stopping run skips the pause; the job goes back unstarted.
            tokio::select! {
                _ = tokio::time::sleep(sh.pause) => {}
                _ = sh.soft_stop.wait() => {
                    let mut d = sh.dispatch.lock().unwrap();
                    d.busy.remove(&job.target);
                    d.queue.push_front(job);
                    return;
                }
            }
        }
        first = false;
        let (timeline, ending) = sh.targets[job.target]
            .restart(job.iteration, &sh.hard_abort)
            .await;
        let rec = timeline.finish(sh.labels, ending);
        report_progress(&sh.progress, &rec);
        let ok = rec.outcome == Outcome::Ok;
        let written = sh.out.lock().unwrap().record(rec);
        {
            let mut d = sh.dispatch.lock().unwrap();
            d.busy.remove(&job.target);
            if let Err(e) = written {
                *sh.output_error.lock().unwrap() = Some(e.to_string());
                d.stopped = Some(StopReason::OutputError);
            } else if sh.soft_stop.is_set() {
                d.stopped.get_or_insert(StopReason::Interrupted);
            } else if !ok && sh.on_failure == OnFailure::Abort {
                d.stopped.get_or_insert(StopReason::Failure);
            }
        }
        sh.wake.notify_waiters();
    }
}

/// The next job whose target is not already being restarted; `None` when the
/// run is over or stopping.
async fn next_job<T>(sh: &Shared<'_, T>) -> Option<Job> {
    loop {
        let woken = sh.wake.notified();
        {
            let mut d = sh.dispatch.lock().unwrap();
            if sh.soft_stop.is_set() && d.stopped.is_none() {
                d.stopped = Some(StopReason::Interrupted);
            }
            if d.stopped.is_some() {
                return None;
            }
            if let Some(pos) = d.queue.iter().position(|j| !d.busy.contains(&j.target)) {
                let job = d.queue.remove(pos).expect("position is in range");
                d.busy.insert(job.target);
                return Some(job);
            }
            if d.queue.is_empty() {
                return None;
            }
        }
        tokio::select! {
            _ = woken => {}
            _ = sh.soft_stop.wait() => {}
        }
    }
}

fn report_progress(pb: &ProgressBar, rec: &TimelineRecord) {
    let mut line = format!(
        "{:<8} {} #{}",
        rec.outcome.as_str(),
        rec.target.name(),
        rec.iteration
    );
    for phase in Phase::ALL {
        if let Some(s) = rec.phases.get(&phase) {
            line.push_str(&format!("  {phase} {}", format_seconds(*s)));
        }
    }
    if !rec.signals.is_empty() {
        line.push_str(&format!("  signals {}", rec.signals.join(",")));
    }
    if let Some(e) = &rec.error {
        line.push_str(&format!("  ({e})"));
    }
    if pb.is_hidden() {
        eprintln!("{line}");
    } else {
        pb.println(line);
        pb.set_message(format!("last: {} {}", rec.service, rec.outcome));
    }
    pb.inc(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_goes_round_by_round() {
        let jobs = schedule(2, 2);
        let pairs: Vec<(usize, u32)> = jobs.iter().map(|j| (j.target, j.iteration)).collect();
        assert_eq!(pairs, vec![(0, 1), (1, 1), (0, 2), (1, 2)]);
    }
}
