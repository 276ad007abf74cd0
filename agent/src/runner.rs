//! Carries out a planned run: hands restarts to at most `concurrency`
//! workers, never two at once on the same target, with `pause` between a
//! worker's restarts, each only once its [`Gate`] lets it (in a fleet run, a
//! lease from the collector; alone, at once); stops dispatching on a failure
//! (`on_failure: abort`), a stop request or the gate's stop, and lets what
//! is in flight finish within a bounded drain time.

use crate::abort::{Abort, AbortHandle, abort_pair};
use crate::output::RunOutput;
use crate::scenario::{OnFailure, Scenario};
use crate::target::{Alongside, BoxFuture, ResolvedTarget};
use crate::timeline::{Ending, Timeline};
use bounce_wire::lease::{LeaseId, MAX_ASKED};
use bounce_wire::summary::format_seconds;
use bounce_wire::{Outcome, Phase, RunIdentity, TimelineRecord};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::sync::mpsc::UnboundedReceiver;

/// What the runner needs of a target: one restart, recorded whatever happens.
pub trait Restartable: Sync {
    fn restart<'a>(
        &'a self,
        iteration: u32,
        abort: &'a Abort,
        alongside: &'a Alongside,
    ) -> BoxFuture<'a, (Timeline, Ending)>;
}

impl Restartable for ResolvedTarget {
    fn restart<'a>(
        &'a self,
        iteration: u32,
        abort: &'a Abort,
        alongside: &'a Alongside,
    ) -> BoxFuture<'a, (Timeline, Ending)> {
        ResolvedTarget::restart(self, iteration, abort, alongside)
    }
}

/// What lets a restart start. In a fleet run the collector's lease
/// (`fleet::FleetClient`): asked for, held (renewed) while the restart
/// lasts, given back with its outcome; alone, nothing ([`Unleased`]).
pub trait Gate: Sync {
    /// Offer every startable job at once (else only the next in scenario order).
    fn ask_all(&self) -> bool;
    /// A permit for one of `wanted` (jobs that could start now). Cancelling
    /// it is safe: what was granted meanwhile is taken back at the end.
    fn acquire(&self, wanted: &[Job]) -> impl Future<Output = Result<(Job, Permit), GateStop>>;
    /// Runs the restart under the permit, keeping `alongside` current.
    fn hold<F: Future>(
        &self,
        permit: &Permit,
        alongside: &Alongside,
        work: F,
    ) -> impl Future<Output = F::Output>;
    fn give_back(&self, permit: Permit, outcome: Outcome) -> impl Future<Output = ()>;
    /// A permit the run stopped before using.
    fn unused(&self, permit: Permit) -> impl Future<Output = ()>;
}

/// Leave to start one restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permit {
    pub lease: Option<LeaseId>,
    /// Renew within this.
    pub ttl: Duration,
}

/// Why a gate gives no permit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateStop {
    /// Ask again with a fresh list (another worker took what was wanted).
    Retry,
    /// The fleet run was aborted by an operator.
    Aborted,
    /// The collector refused (a scenario that differs, a wrong token).
    Refused(String),
    /// The collector did not answer for longer than the agent waits.
    Away(String),
}

/// The gate of a run alone: every restart may start at once.
pub struct Unleased;

impl Gate for Unleased {
    fn ask_all(&self) -> bool {
        false
    }
    async fn acquire(&self, wanted: &[Job]) -> Result<(Job, Permit), GateStop> {
        let permit = Permit {
            lease: None,
            ttl: Duration::ZERO,
        };
        Ok((wanted[0], permit))
    }
    async fn hold<F: Future>(&self, _: &Permit, _: &Alongside, work: F) -> F::Output {
        work.await
    }
    async fn give_back(&self, _: Permit, _: Outcome) {}
    async fn unused(&self, _: Permit) {}
}

/// Requests to stop, in the order they arrive (SIGINT, SIGTERM, SIGHUP; the caller
/// decides which signals send one). The first is a soft stop: nothing new
/// starts and what is in flight gets the drain time; the second ends the
/// drain at once.
pub type StopRequests = UnboundedReceiver<()>;

/// One restart to do: which target, which round of `repeat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    /// A stop request came (Ctrl-C, SIGTERM or SIGHUP).
    Interrupted,
    /// The output could not be written: measuring on would lose data.
    OutputError,
    /// An operator aborted the fleet run.
    FleetAborted,
    /// The fleet gave no more leases: refused, or the collector away too long.
    FleetError,
}

pub struct RunEnd {
    pub stopped: Option<StopReason>,
    pub output_error: Option<String>,
    pub fleet_error: Option<String>,
}

struct Dispatch {
    queue: VecDeque<Job>,
    busy: HashSet<usize>,
    stopped: Option<StopReason>,
}

struct Shared<'a, T, G> {
    targets: &'a [T],
    gate: &'a G,
    labels: &'a RunIdentity,
    on_failure: OnFailure,
    pause: Duration,
    dispatch: Mutex<Dispatch>,
    wake: Notify,
    soft_stop: Abort,
    hard_abort: Abort,
    /// Fires when dispatch stops, whatever the reason: a worker waiting at the gate stops waiting.
    halt: (AbortHandle, Abort),
    out: Mutex<RunOutput>,
    output_error: Mutex<Option<String>>,
    fleet_error: Mutex<Option<String>>,
    progress: ProgressBar,
}

pub struct RunOptions {
    /// After a stop request, how long restarts in flight may take to finish before they are abandoned.
    pub drain: Duration,
    pub show_progress: bool,
}

/// Runs the scenario; returns the output (to be finished by the caller) and why it stopped early, if it did.
pub async fn run<T: Restartable, G: Gate>(
    scenario: &Scenario,
    targets: &[T],
    labels: &RunIdentity,
    out: RunOutput,
    opts: &RunOptions,
    stop: StopRequests,
    gate: &G,
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
        gate,
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
        halt: abort_pair(),
        out: Mutex::new(out),
        output_error: Mutex::new(None),
        fleet_error: Mutex::new(None),
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
    let fleet_error = shared.fleet_error.lock().unwrap().take();
    (
        shared.out.into_inner().unwrap(),
        RunEnd {
            stopped,
            output_error,
            fleet_error,
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
        "\ninterrupted: starting no new restart; waiting up to {}s for those in flight (a second Ctrl-C, SIGTERM or SIGHUP stops waiting)",
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

async fn worker<T: Restartable, G: Gate>(sh: &Shared<'_, T, G>) {
    let mut first = true;
    loop {
        if !first && !sh.pause.is_zero() && !sh.dispatch.lock().unwrap().queue.is_empty() {
            // Paused before asking, so no lease is held idle; a stopping run skips it.
            tokio::select! {
                _ = tokio::time::sleep(sh.pause) => {}
                _ = sh.soft_stop.wait() => return,
            }
        }
        first = false;
        let Some((job, permit)) = next_job(sh).await else {
            return;
        };
        let alongside = Alongside::default();
        let (timeline, ending) = sh
            .gate
            .hold(
                &permit,
                &alongside,
                sh.targets[job.target].restart(job.iteration, &sh.hard_abort, &alongside),
            )
            .await;
        let rec = timeline.finish(sh.labels, ending);
        report_progress(&sh.progress, &rec);
        let outcome = rec.outcome;
        let written = sh.out.lock().unwrap().record(rec);
        sh.gate.give_back(permit, outcome).await;
        {
            let mut d = sh.dispatch.lock().unwrap();
            d.busy.remove(&job.target);
            if let Err(e) = written {
                // The first error is the cause; later ones follow from it.
                sh.output_error.lock().unwrap().get_or_insert(e.to_string());
                d.stopped = Some(StopReason::OutputError);
                sh.halt.0.fire();
            } else if sh.soft_stop.is_set() {
                stop_dispatch(sh, &mut d, StopReason::Interrupted);
            } else if outcome != Outcome::Ok && sh.on_failure == OnFailure::Abort {
                stop_dispatch(sh, &mut d, StopReason::Failure);
            }
        }
        sh.wake.notify_waiters();
    }
}

/// No new restart: the first reason is kept; workers at the gate stop waiting.
fn stop_dispatch<T, G>(sh: &Shared<'_, T, G>, d: &mut Dispatch, why: StopReason) {
    d.stopped.get_or_insert(why);
    sh.halt.0.fire();
}

/// The next job whose target is not already being restarted, with the
/// gate's permit; `None` when the run is over or stopping.
async fn next_job<T, G: Gate>(sh: &Shared<'_, T, G>) -> Option<(Job, Permit)> {
    loop {
        let woken = sh.wake.notified();
        let wanted: Vec<Job> = {
            let mut d = sh.dispatch.lock().unwrap();
            if sh.soft_stop.is_set() && d.stopped.is_none() {
                stop_dispatch(sh, &mut d, StopReason::Interrupted);
            }
            if d.stopped.is_some() || d.queue.is_empty() {
                return None;
            }
            // The first pending round of each target that is not busy.
            let mut seen = HashSet::new();
            let most = if sh.gate.ask_all() { MAX_ASKED } else { 1 };
            d.queue
                .iter()
                .filter(|j| !d.busy.contains(&j.target) && seen.insert(j.target))
                .take(most)
                .copied()
                .collect()
        };
        if wanted.is_empty() {
            tokio::select! {
                _ = woken => {}
                _ = sh.soft_stop.wait() => {}
            }
            continue;
        }
        let got = tokio::select! {
            got = sh.gate.acquire(&wanted) => got,
            _ = sh.halt.1.wait() => continue,
            _ = sh.soft_stop.wait() => continue,
        };
        match got {
            Ok((job, permit)) => {
                {
                    let mut d = sh.dispatch.lock().unwrap();
                    let pos = d.queue.iter().position(|j| *j == job);
                    if d.stopped.is_none()
                        && !sh.soft_stop.is_set()
                        && !d.busy.contains(&job.target)
                        && let Some(pos) = pos
                    {
                        d.queue.remove(pos);
                        d.busy.insert(job.target);
                        return Some((job, permit));
                    }
                }
                sh.gate.unused(permit).await;
            }
            Err(GateStop::Retry) => {}
            Err(GateStop::Aborted) => {
                stop_dispatch(
                    sh,
                    &mut sh.dispatch.lock().unwrap(),
                    StopReason::FleetAborted,
                );
                sh.wake.notify_waiters();
                return None;
            }
            Err(GateStop::Refused(why) | GateStop::Away(why)) => {
                *sh.fleet_error.lock().unwrap() = Some(why);
                stop_dispatch(sh, &mut sh.dispatch.lock().unwrap(), StopReason::FleetError);
                sh.wake.notify_waiters();
                return None;
            }
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
    use bounce_wire::{Action, TargetRef};
    use std::path::Path;
    use std::sync::atomic::{AtomicU32, Ordering};
    use tokio::sync::mpsc::unbounded_channel;
    use tokio::time::Instant;

    #[test]
    fn schedule_goes_round_by_round() {
        let jobs = schedule(2, 2);
        let pairs: Vec<(usize, u32)> = jobs.iter().map(|j| (j.target, j.iteration)).collect();
        assert_eq!(pairs, vec![(0, 1), (1, 1), (0, 2), (1, 2)]);
    }

    /// One restart as the fake saw it.
    #[derive(Debug, Clone)]
    struct Done {
        target: usize,
        start: Instant,
        end: Instant,
        outcome: Outcome,
    }

    /// A FAKE driver, for the runner's tests only: a restart "takes"
    /// `takes[target]` of tokio's paused clock, fails when listed in
    /// `fails`, ends `aborted` when the run's abort fires, and records its
    /// own interval, so the tests judge the runner from the fake's records.
    struct FakeDriver {
        takes: Vec<Duration>,
        fails: Vec<(usize, u32)>,
        done: Mutex<Vec<Done>>,
    }

    impl FakeDriver {
        fn new(takes: &[u64]) -> FakeDriver {
            FakeDriver {
                takes: takes.iter().map(|s| Duration::from_secs(*s)).collect(),
                fails: Vec::new(),
                done: Mutex::new(Vec::new()),
            }
        }

        fn targets(&self) -> Vec<FakeTarget<'_>> {
            (0..self.takes.len())
                .map(|id| FakeTarget { id, fake: self })
                .collect()
        }

        fn done(&self) -> Vec<Done> {
            let mut d = self.done.lock().unwrap().clone();
            d.sort_by_key(|d| d.start);
            d
        }
    }

    /// A target of the fake driver.
    struct FakeTarget<'a> {
        id: usize,
        fake: &'a FakeDriver,
    }

    impl Restartable for FakeTarget<'_> {
        fn restart<'a>(
            &'a self,
            iteration: u32,
            abort: &'a Abort,
            _: &'a Alongside,
        ) -> BoxFuture<'a, (Timeline, Ending)> {
            Box::pin(async move {
                let start = Instant::now();
                let fails = self.fake.fails.contains(&(self.id, iteration));
                let ending = tokio::select! {
                    _ = tokio::time::sleep(self.fake.takes[self.id]) => match fails {
                        true => Ending::new(Outcome::Failed, "told to fail"),
                        false => Ending::ok(),
                    },
                    _ = abort.wait() => Ending::new(Outcome::Aborted, "aborted"),
                };
                self.fake.done.lock().unwrap().push(Done {
                    target: self.id,
                    start,
                    end: Instant::now(),
                    outcome: ending.outcome,
                });
                let name = format!("fake-{}", self.id);
                let target = TargetRef::Docker {
                    name: name.clone(),
                    id: name.clone(),
                };
                (
                    Timeline::new(target, name, iteration, Action::Restart),
                    ending,
                )
            })
        }
    }

    fn scenario(repeat: u32, concurrency: u32, pause: &str, on_failure: &str) -> Scenario {
        let text = format!(
            "deployment: d\nscenario: s\nrepeat: {repeat}\nconcurrency: {concurrency}\n\
             pause: {pause}\non_failure: {on_failure}\n\
             targets:\n  - docker: {{names: [x]}}\n    timeout: 60s\n"
        );
        Scenario::parse(Path::new("fake.yaml"), &text).expect("a valid scenario")
    }

    /// Runs the runner over the fake's targets; `stops` are the instants
    /// (from the start) at which a stop request arrives.
    async fn run_fake(
        fake: &FakeDriver,
        scenario: &Scenario,
        drain: u64,
        stops: &[u64],
    ) -> (Vec<Outcome>, RunEnd) {
        run_gated(fake, scenario, drain, stops, &Unleased).await
    }

    async fn run_gated<G: Gate>(
        fake: &FakeDriver,
        scenario: &Scenario,
        drain: u64,
        stops: &[u64],
        gate: &G,
    ) -> (Vec<Outcome>, RunEnd) {
        static RUNS: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "bounce-runner-test-{}-{}",
            std::process::id(),
            RUNS.fetch_add(1, Ordering::Relaxed)
        ));
        let out = RunOutput::create(&dir, &scenario.text).expect("output folder");
        let labels = RunIdentity {
            run_id: bounce_wire::RunId::parse("r").unwrap(),
            deployment: "d".into(),
            scenario: "s".into(),
            node: bounce_wire::NodeFacts {
                hostname: "n".into(),
                ..Default::default()
            },
        };
        let opts = RunOptions {
            drain: Duration::from_secs(drain),
            show_progress: false,
        };
        let (tx, stop) = unbounded_channel();
        let t0 = Instant::now();
        let stops = stops.to_vec();
        let sender = tokio::spawn(async move {
            for at in stops {
                tokio::time::sleep_until(t0 + Duration::from_secs(at)).await;
                let _ = tx.send(());
            }
            // Keep the channel open: a closed one is "no more requests".
            std::future::pending::<()>().await;
        });
        let targets = fake.targets();
        let (out, end) = run(scenario, &targets, &labels, out, &opts, stop, gate).await;
        sender.abort();
        drop(out);
        let written = bounce_wire::RunFolder::new(&dir).timelines().unwrap();
        let recorded = written.records.iter().map(|r| r.outcome).collect();
        let _ = std::fs::remove_dir_all(&dir);
        (recorded, end)
    }

    /// The most restarts in flight at once, from the fake's intervals.
    fn most_at_once(done: &[Done]) -> usize {
        done.iter()
            .map(|d| {
                done.iter()
                    .filter(|o| o.start <= d.start && d.start < o.end)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    #[tokio::test(start_paused = true)]
    async fn concurrency_is_never_exceeded_and_no_target_runs_twice_at_once() {
        let fake = FakeDriver::new(&[3, 1, 2, 5, 1]);
        let (recorded, end) = run_fake(&fake, &scenario(4, 3, "0s", "abort"), 60, &[]).await;
        let done = fake.done();
        assert_eq!(done.len(), 20);
        assert_eq!(recorded.len(), 20);
        assert!(end.stopped.is_none());
        assert_eq!(most_at_once(&done), 3, "uses its workers, never more");
        for a in &done {
            for b in done.iter().filter(|b| b.target == a.target) {
                let same = a.start == b.start && a.end == b.end;
                assert!(
                    same || a.end <= b.start || b.end <= a.start,
                    "target {} restarted twice at once: {a:?} {b:?}",
                    a.target
                );
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn one_target_is_never_restarted_twice_at_once_whatever_the_workers() {
        let fake = FakeDriver::new(&[2]);
        let (_, end) = run_fake(&fake, &scenario(3, 3, "0s", "abort"), 60, &[]).await;
        let done = fake.done();
        assert_eq!(done.len(), 3);
        assert!(end.stopped.is_none());
        assert_eq!(most_at_once(&done), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn pause_separates_a_workers_restarts() {
        let fake = FakeDriver::new(&[1, 1, 1]);
        let (_, end) = run_fake(&fake, &scenario(1, 1, "5s", "abort"), 60, &[]).await;
        let done = fake.done();
        assert_eq!(done.len(), 3);
        assert!(end.stopped.is_none());
        for pair in done.windows(2) {
            assert!(
                pair[1].start - pair[0].end >= Duration::from_secs(5),
                "no pause between {:?} and {:?}",
                pair[0],
                pair[1]
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_stops_dispatch_under_on_failure_abort() {
        let mut fake = FakeDriver::new(&[1, 1, 1]);
        fake.fails = vec![(1, 1)];
        let (recorded, end) = run_fake(&fake, &scenario(2, 1, "0s", "abort"), 60, &[]).await;
        let done = fake.done();
        assert_eq!(
            done.iter().map(|d| d.target).collect::<Vec<_>>(),
            [0, 1],
            "nothing after the failure"
        );
        assert_eq!(recorded, [Outcome::Ok, Outcome::Failed]);
        assert_eq!(end.stopped, Some(StopReason::Failure));

        // The same failure under `continue`: every restart is made.
        let mut fake = FakeDriver::new(&[1, 1, 1]);
        fake.fails = vec![(1, 1)];
        let (recorded, end) = run_fake(&fake, &scenario(2, 1, "0s", "continue"), 60, &[]).await;
        assert_eq!(recorded.len(), 6);
        assert!(end.stopped.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_request_drains_what_is_in_flight_and_starts_nothing_new() {
        let fake = FakeDriver::new(&[10, 10, 10, 10]);
        let t0 = Instant::now();
        let (recorded, end) = run_fake(&fake, &scenario(1, 2, "0s", "abort"), 60, &[1]).await;
        let done = fake.done();
        assert_eq!(done.len(), 2, "only the two in flight at the request");
        assert!(done.iter().all(|d| d.start < t0 + Duration::from_secs(1)));
        assert!(done.iter().all(|d| d.outcome == Outcome::Ok));
        assert_eq!(recorded, [Outcome::Ok, Outcome::Ok], "drained to their end");
        assert_eq!(end.stopped, Some(StopReason::Interrupted));
    }

    #[tokio::test(start_paused = true)]
    async fn the_drain_running_out_aborts_what_is_in_flight() {
        let fake = FakeDriver::new(&[100, 100, 100]);
        let t0 = Instant::now();
        let (recorded, end) = run_fake(&fake, &scenario(1, 2, "0s", "abort"), 5, &[1]).await;
        let done = fake.done();
        assert_eq!(recorded, [Outcome::Aborted, Outcome::Aborted]);
        assert!(done.iter().all(|d| d.outcome == Outcome::Aborted));
        assert!(
            done.iter()
                .all(|d| d.end >= t0 + Duration::from_secs(6)
                    && d.end < t0 + Duration::from_secs(100)),
            "aborted when the drain ran out: {done:?}"
        );
        assert_eq!(end.stopped, Some(StopReason::Interrupted));
    }

    #[tokio::test(start_paused = true)]
    async fn a_second_stop_request_aborts_at_once() {
        let fake = FakeDriver::new(&[100, 100]);
        let t0 = Instant::now();
        let (recorded, end) = run_fake(&fake, &scenario(1, 2, "0s", "abort"), 60, &[1, 2]).await;
        let done = fake.done();
        assert_eq!(recorded, [Outcome::Aborted, Outcome::Aborted]);
        assert!(
            done.iter().all(|d| d.end < t0 + Duration::from_secs(60)),
            "aborted before the drain ran out: {done:?}"
        );
        assert_eq!(end.stopped, Some(StopReason::Interrupted));
    }

    /// A FAKE gate, for the runner's tests only: grants the last of the
    /// jobs it is offered (so "whichever is granted first" is not the
    /// scenario's first), answers "aborted" after `grants` grants, and
    /// records what it was offered and given back.
    struct FakeGate {
        grants: usize,
        offered: Mutex<Vec<Vec<Job>>>,
        back: Mutex<Vec<(u64, Outcome)>>,
    }

    impl FakeGate {
        fn new(grants: usize) -> FakeGate {
            FakeGate {
                grants,
                offered: Mutex::new(Vec::new()),
                back: Mutex::new(Vec::new()),
            }
        }
    }

    impl Gate for FakeGate {
        fn ask_all(&self) -> bool {
            true
        }
        async fn acquire(&self, wanted: &[Job]) -> Result<(Job, Permit), GateStop> {
            let mut offered = self.offered.lock().unwrap();
            if offered.len() == self.grants {
                return Err(GateStop::Aborted);
            }
            offered.push(wanted.to_vec());
            let permit = Permit {
                lease: Some(LeaseId(offered.len() as u64)),
                ttl: Duration::from_secs(30),
            };
            Ok((*wanted.last().unwrap(), permit))
        }
        async fn hold<F: Future>(&self, _: &Permit, _: &Alongside, work: F) -> F::Output {
            work.await
        }
        async fn give_back(&self, permit: Permit, outcome: Outcome) {
            let lease = permit.lease.unwrap().0;
            self.back.lock().unwrap().push((lease, outcome));
        }
        async fn unused(&self, _: Permit) {}
    }

    #[tokio::test(start_paused = true)]
    async fn the_runner_restarts_whichever_the_gate_grants_and_gives_each_back() {
        let fake = FakeDriver::new(&[1, 1, 1]);
        let gate = FakeGate::new(10);
        let (recorded, end) =
            run_gated(&fake, &scenario(1, 1, "0s", "abort"), 60, &[], &gate).await;
        assert!(end.stopped.is_none());
        assert_eq!(recorded.len(), 3);
        let order: Vec<usize> = fake.done().iter().map(|d| d.target).collect();
        assert_eq!(order, [2, 1, 0], "granted last first");
        let offered = gate.offered.lock().unwrap();
        assert_eq!(offered[0].len(), 3, "every pending target offered at once");
        assert_eq!(offered[2].len(), 1);
        let back = gate.back.lock().unwrap().clone();
        assert_eq!(back, [(1, Outcome::Ok), (2, Outcome::Ok), (3, Outcome::Ok)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_fleet_abort_starts_nothing_new() {
        let fake = FakeDriver::new(&[1, 1, 1]);
        let gate = FakeGate::new(1);
        let (recorded, end) =
            run_gated(&fake, &scenario(2, 1, "0s", "abort"), 60, &[], &gate).await;
        assert_eq!(recorded, [Outcome::Ok], "the one granted, nothing after");
        assert_eq!(end.stopped, Some(StopReason::FleetAborted));
        assert_eq!(gate.back.lock().unwrap().len(), 1);
    }
}
