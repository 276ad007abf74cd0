//! The shared engine's own events for one container, followed live from
//! before a test acts: dockerd keeps only its last 256 events (every kind,
//! every container on the engine), so a query made afterwards can find the
//! ring already past them while other tests' health checks run (seen once:
//! a watch test's first `kill` was gone). What it returns is the union of
//! the followed stream and such a query, so a stream a few ms behind loses
//! nothing either.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

/// One event of the engine: its action and stamp (unix nanos).
pub type EngineEvent = (String, i64);

/// `docker events --filter container=WHICH`, from when it was made until
/// dropped. `WHICH` is a name (both containers of a recreate) or an id.
pub struct EngineEvents {
    which: String,
    since: i64,
    child: Child,
    seen: Arc<Mutex<Vec<EngineEvent>>>,
}

impl EngineEvents {
    pub fn follow(which: &str) -> EngineEvents {
        let since = crate::now_nanos();
        let mut child = Command::new("docker")
            .args(query_args(which, since, None))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker events");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().expect("piped");
        let into = seen.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(e) = parse(&line) {
                    into.lock().unwrap().push(e);
                }
            }
        });
        EngineEvents {
            which: which.to_string(),
            since,
            child,
            seen,
        }
    }

    /// The events stamped in `[since, until]`, in the engine's order:
    /// those followed, and those a query for the span finds.
    pub fn between(&self, since: i64, until: i64) -> Vec<EngineEvent> {
        let args = query_args(&self.which, since.max(self.since), Some(until));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let text = crate::docker(&args).expect("docker events");
        let mut all: Vec<EngineEvent> = self.seen.lock().unwrap().clone();
        all.extend(text.lines().filter_map(parse));
        all.retain(|(_, t)| *t >= since && *t <= until);
        all.sort_by_key(|(_, t)| *t);
        all.dedup();
        all
    }
}

impl Drop for EngineEvents {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn query_args(which: &str, since: i64, until: Option<i64>) -> Vec<String> {
    let stamp = |n: i64| format!("{}.{:09}", n / 1_000_000_000, n % 1_000_000_000);
    let mut args = vec!["events".to_string(), "--since".into(), stamp(since)];
    if let Some(u) = until {
        args.extend(["--until".into(), stamp(u)]);
    }
    args.extend([
        "--filter".into(),
        format!("container={which}"),
        "--format".into(),
        "{{json .}}".into(),
    ]);
    args
}

fn parse(line: &str) -> Option<EngineEvent> {
    let v: Value = serde_json::from_str(line).ok()?;
    Some((v["Action"].as_str()?.to_string(), v["timeNano"].as_i64()?))
}
