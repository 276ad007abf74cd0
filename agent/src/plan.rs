//! `plan`: what a run would do, in the order it would do it. Touches nothing.

use crate::runner::schedule;
use crate::scenario::Scenario;
use crate::target::ResolvedTarget;
use std::fmt::Write;

pub fn render(scenario: &Scenario, targets: &[ResolvedTarget], node: &str) -> String {
    let mut s = String::new();
    let total = targets.len() as u64 * scenario.repeat as u64;
    let _ = writeln!(
        s,
        "scenario {} ({}) on deployment {}, node {}",
        scenario.name,
        scenario.file.display(),
        scenario.deployment,
        node
    );
    let _ = writeln!(
        s,
        "{} target(s) x repeat {} = {} restart(s); at most {} at once; pause {} between a worker's restarts; on failure: {}",
        targets.len(),
        scenario.repeat,
        total,
        scenario.concurrency,
        scenario.pause,
        match scenario.on_failure {
            crate::scenario::OnFailure::Abort => "abort (start no new restart)",
            crate::scenario::OnFailure::Continue => "continue",
        }
    );
    if let Some(f) = &scenario.fleet {
        let _ = writeln!(
            s,
            "a fleet run: each restart waits for a lease from the collector, within the fleet's limits:"
        );
        for line in f.describe() {
            let _ = writeln!(s, "  {line}");
        }
    }
    let _ = writeln!(s, "\ntargets:");
    for (i, t) in targets.iter().enumerate() {
        let mut ready: Vec<String> = t.ready.iter().map(|p| p.label()).collect();
        if ready.is_empty() {
            ready.push("the gates' wait_for milestone".into());
        }
        let _ = writeln!(
            s,
            "  {:>3}. {} [targets[{}], {}]\n       action {}, timeout {}s, ready when: {}\n       {}",
            i + 1,
            t.name(),
            t.spec_index,
            t.kind,
            t.action,
            t.timeout.as_secs(),
            ready.join(" and "),
            t.facts
        );
    }
    let _ = write!(
        s,
        "\norder (round by round; never two restarts of one target at once):"
    );
    let jobs = schedule(targets.len(), scenario.repeat);
    let mut round = 0;
    for job in jobs.iter().take(200) {
        if job.iteration != round {
            round = job.iteration;
            let _ = write!(s, "\n  round {round}:");
        }
        let _ = write!(s, " {}", targets[job.target].name());
    }
    if jobs.len() > 200 {
        let _ = write!(s, " ... ({} more)", jobs.len() - 200);
    }
    s.push('\n');
    s
}
