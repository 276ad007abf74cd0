//! Streaming a run to the collector, without ever making the run depend on it.
//!
//! Every batch is first written (and fsynced) to the run folder's `spool/` as
//! `<seq>.json`, then sent in order by a background task; a batch leaves the
//! spool only when the collector has acknowledged it (`stored` or
//! `duplicate`). When the collector is away the task retries with backoff; at
//! the end of the run it gets a bounded time to drain, and what is left stays
//! in the spool for `bounce-agent push`. The collector stores each
//! (agent, run, seq) once, so resending is always safe.
//!
//! A batch the spool could not take (a full disk) lives only in memory
//! until the end of the run; if the agent is killed first, or the
//! collector is away then, it never reaches the spool. Its timeline is in
//! `timelines.jsonl` though, and the folder says how the run was streamed
//! (`stream.json`) and which batches were acknowledged (`spool/acked`):
//! [`Spool::restore`] rebuilds, byte for byte, every batch neither
//! acknowledged nor spooled, so `push` (and a watcher's next start) sends it.

use bounce_client::{Answer, ClientError, CollectorClient, Trust};
use bounce_wire::folder::{ACKED, REFUSED, SPOOL, STREAM, SUMMARY, TIMELINES, read_timelines};
use bounce_wire::ingest::{Ack, Batch, INGEST_PATH, RunEnd, RunHeader, histograms_of};
use bounce_wire::{Origin, RunId, RunSummary, TimelineRecord};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{0}")]
    Client(#[from] ClientError),
    #[error("{0}: {1}")]
    Refused(String, String),
}

/// Where and how to reach the collector (the one client every command
/// that talks to it shares: TLS, credential, timeouts).
#[derive(Clone)]
pub struct Collector {
    client: CollectorClient,
}

/// How sending one batch went.
enum Sent {
    Acked,
    /// The collector refused it (4xx, or TLS): resending would not help.
    Refused(String),
    /// Not reached, or a 5xx: try again later.
    Retry(String),
}

impl Collector {
    /// `token` None: the node certificate in `trust` is the credential.
    pub fn new(url: &str, trust: &Trust, token: Option<String>) -> Result<Collector, StreamError> {
        Ok(Collector {
            client: CollectorClient::new(url, trust, token)?,
        })
    }

    /// Checks, before anything restarts, that the collector answers and
    /// takes the credential (a wrong token would otherwise only show as
    /// refused batches at the end).
    pub async fn check(&self, joining: Option<&RunJoin>) -> Result<(), StreamError> {
        let mut path = "/api/v1/whoami".to_string();
        if let Some(j) = joining {
            // The collector also says whether it would take this agent's
            // batches (a credential bound to other names, a fleet run it contradicts).
            path.push_str(&format!("?agent={}", query_escape(&j.agent)));
            if let Some(run_id) = &j.run_id {
                path.push_str(&format!(
                    "&run_id={}&deployment={}&scenario={}",
                    query_escape(run_id.as_str()),
                    query_escape(&j.deployment),
                    query_escape(&j.scenario)
                ));
            }
        }
        let answer = self.client.get(&path, Duration::from_secs(10)).await?;
        let url = format!("{}{path}", self.client.base());
        let reason = answer.reason();
        let credential = self.client.credential_name();
        match answer.status.as_u16() {
            200 => Ok(()),
            403 if !reason.is_empty() => Err(StreamError::Refused(
                url,
                format!("the collector refused the {credential}: {reason}"),
            )),
            401 | 403 => Err(StreamError::Refused(
                url,
                format!("the collector refused the {credential}"),
            )),
            409 => Err(StreamError::Refused(
                url,
                format!("the collector would refuse this run's results: {reason}"),
            )),
            other => Err(StreamError::Refused(
                url,
                format!("answered {other} {reason}"),
            )),
        }
    }

    /// POSTs JSON to `path` through the shared client: the answer, or why
    /// the collector was not reached within `within`.
    pub async fn post_json(
        &self,
        path: &str,
        body: Vec<u8>,
        within: Duration,
    ) -> Result<Answer, String> {
        self.client
            .post_json(path, body, within)
            .await
            .map_err(|e| e.to_string())
    }

    async fn send(&self, body: Vec<u8>) -> Sent {
        let answer = match self
            .client
            .post_json(INGEST_PATH, body, Duration::from_secs(15))
            .await
        {
            Ok(a) => a,
            // TLS refusals too: the batch stays in the spool (a certificate
            // being rotated), and `run` checked the collector before starting.
            Err(e) => return Sent::Retry(e.to_string()),
        };
        let Answer { status, body } = &answer;
        if status.is_success() && serde_json::from_slice::<Ack>(body).is_ok() {
            Sent::Acked
        } else if status.is_client_error() && status.as_u16() != 408 && status.as_u16() != 429 {
            Sent::Refused(format!("{status}: {}", answer.reason()))
        } else {
            Sent::Retry(format!("{status}: {}", answer.reason()))
        }
    }
}

/// The run this agent is about to send: as which agent, and under which
/// run id when it joins a fleet run (`run --run-id`).
pub struct RunJoin {
    pub run_id: Option<RunId>,
    pub deployment: String,
    pub scenario: String,
    pub agent: String,
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The spool of one run folder.
pub struct Spool {
    dir: PathBuf,
}

/// How a run is streamed, written into its folder (`stream.json`) when the
/// stream starts: every batch is built from it and its timelines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamHead {
    pub agent: String,
    pub header: RunHeader,
    /// Added to every `run` batch's seq: a node's epoch `<< 32` once it
    /// rejoined a fleet run after a resolve, so its batches never take the
    /// seqs of those its earlier agent sent or still spools.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub seq_base: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl StreamHead {
    /// Batch `seq` of these timelines (and the run's end). The one place
    /// a batch is built, so one rebuilt from the folder is the one sent.
    fn batch(
        &self,
        seq: u64,
        timelines: Vec<TimelineRecord>,
        end: Option<RunEnd>,
    ) -> Result<Batch, bounce_wire::HistError> {
        Ok(Batch {
            agent: self.agent.clone(),
            // The scenario text travels once, with the first batch.
            run: RunHeader {
                scenario_yaml: self
                    .header
                    .scenario_yaml
                    .clone()
                    .filter(|_| seq == self.seq_base + 1),
                ..self.header.clone()
            },
            seq,
            histograms: histograms_of(&timelines)?,
            timelines,
            end,
        })
    }
}

/// The seq a folder's record was streamed as: its place in the run
/// (`run` sends one batch per timeline, in the order they are written),
/// or for a watched restart its first engine stamp (`watch`).
pub fn seq_of(place: usize, rec: &TimelineRecord) -> Option<u64> {
    match rec.origin {
        Origin::Run => Some(place as u64 + 1),
        Origin::Watch => rec.events.first().map(|e| e.unix_nanos.max(1) as u64),
    }
}

/// The seqs of the batch files in `dir`.
fn seqs_in(dir: &Path) -> BTreeSet<u64> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name();
                    name.to_str()?.strip_suffix(".json")?.parse().ok()
                })
                .collect()
        })
        .unwrap_or_default()
}

impl Spool {
    pub fn open(run_dir: &Path) -> Result<Spool, StreamError> {
        let dir = run_dir.join(SPOOL);
        std::fs::create_dir_all(&dir).map_err(|e| StreamError::Io(dir.clone(), e))?;
        Ok(Spool { dir })
    }

    /// Writes one batch whole (`durable`): a crash or a full disk leaves
    /// no half batch.
    fn write(&self, batch: &Batch) -> Result<(), StreamError> {
        let path = self.dir.join(format!("{:08}.json", batch.seq));
        let text = serde_json::to_vec(batch).expect("batches serialize");
        crate::durable::write_whole(&path, &text).map_err(|e| StreamError::Io(e.path, e.source))
    }

    /// Pending batch files, oldest first.
    pub fn pending(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "json"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
    }

    fn refuse(&self, path: &Path) {
        let dir = self.dir.join(REFUSED);
        let _ = std::fs::create_dir_all(&dir);
        if let Some(name) = path.file_name() {
            let _ = std::fs::rename(path, dir.join(name));
        }
    }

    /// Notes that the batch in `path` was acknowledged. Not fsynced, and
    /// a failure is ignored: an acknowledgement not noted only makes
    /// [`restore`](Self::restore) send the batch again, which the
    /// collector answers `duplicate`.
    fn acked(&self, path: &Path) {
        let seq = path.file_stem().and_then(|s| s.to_str());
        if let Some(seq) = seq {
            let _ = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.join(ACKED))
                .and_then(|mut f| f.write_all(format!("{seq}\n").as_bytes()));
        }
    }

    /// Rebuilds into the spool, from the run folder, every batch that was
    /// neither acknowledged, nor spooled, nor refused: the timelines the
    /// spool could not take (and the run's end, from its summary), which a
    /// killed agent held only in memory. How many it rebuilt. Nothing for
    /// a folder that was not streamed.
    pub fn restore(&self, run_dir: &Path) -> Result<usize, StreamError> {
        let io = |path: PathBuf| move |e| StreamError::Io(path, e);
        let head_path = run_dir.join(STREAM);
        let head: StreamHead = match std::fs::read(&head_path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| io(head_path.clone())(std::io::Error::other(e)))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io(head_path)(e)),
        };
        let tl_path = run_dir.join(TIMELINES);
        let records = match read_timelines(&tl_path) {
            Ok(t) => t.records,
            Err(bounce_wire::folder::FolderError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Vec::new()
            }
            Err(e) => return Err(io(tl_path)(std::io::Error::other(e.to_string()))),
        };
        let acked_path = self.dir.join(ACKED);
        let mut known: BTreeSet<u64> = std::fs::read_to_string(&acked_path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        known.extend(seqs_in(&self.dir));
        known.extend(seqs_in(&self.dir.join(REFUSED)));
        let hist = |e: bounce_wire::HistError| io(tl_path.clone())(std::io::Error::other(e));
        let mut restored = 0;
        for (place, rec) in records.iter().enumerate() {
            let seq = seq_of(place, rec).map(|s| match rec.origin {
                Origin::Run => s + head.seq_base,
                Origin::Watch => s,
            });
            let Some(seq) = seq.filter(|s| !known.contains(s)) else {
                continue;
            };
            self.write(&head.batch(seq, vec![rec.clone()], None).map_err(hist)?)?;
            restored += 1;
        }
        // A run that ended: its end is the batch after its last timeline.
        let end_seq = head.seq_base + records.len() as u64 + 1;
        let summary = std::fs::read(run_dir.join(SUMMARY)).ok();
        let summary = summary.and_then(|b| serde_json::from_slice::<RunSummary>(&b).ok());
        if let Some(s) = summary
            && records.iter().all(|r| r.origin == Origin::Run)
            && !known.contains(&end_seq)
        {
            let end = RunEnd {
                finished_unix_nanos: s.finished_unix_nanos,
                not_started: s.not_started,
                interrupted: s.interrupted,
            };
            self.write(&head.batch(end_seq, Vec::new(), Some(end)).map_err(hist)?)?;
            restored += 1;
        }
        Ok(restored)
    }
}

/// Sends a spool's batches in order until it is empty or `until` resolves.
/// Returns (sent, refused).
pub async fn drain(
    spool: &Spool,
    collector: &Collector,
    wake: &Notify,
    stop: impl std::future::Future<Output = ()>,
) -> (u64, u64) {
    let (mut sent, mut refused) = (0, 0);
    let mut backoff = Duration::from_millis(100);
    tokio::pin!(stop);
    loop {
        let next = spool.pending().into_iter().next();
        let Some(path) = next else {
            tokio::select! {
                _ = wake.notified() => continue,
                _ = &mut stop => return (sent, refused),
            }
        };
        let body = match std::fs::read(&path) {
            Ok(b) => b,
            Err(_) => continue,
        };
        let outcome = tokio::select! {
            s = collector.send(body) => s,
            _ = &mut stop => return (sent, refused),
        };
        match outcome {
            Sent::Acked => {
                spool.acked(&path);
                let _ = std::fs::remove_file(&path);
                sent += 1;
                backoff = Duration::from_millis(100);
            }
            Sent::Refused(why) => {
                eprintln!(
                    "collector refused {}: {why} (kept in spool/refused)",
                    path.display()
                );
                spool.refuse(&path);
                refused += 1;
            }
            Sent::Retry(why) => {
                if backoff == Duration::from_millis(100) {
                    eprintln!(
                        "collector not reachable ({why}); batches wait in {} and are retried",
                        spool.dir.display()
                    );
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = &mut stop => return (sent, refused),
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// A run's stream: batches go to the spool at once and to the collector in the background.
///
/// A batch the spool cannot take (the disk is full or read-only) is held
/// in memory and the run is told (it stops: see `runner`); at the end the
/// held batches go to the spool if it has room again, else straight to the
/// collector. What neither took is in `timelines.jsonl` only, and said.
pub struct Streamer {
    head: StreamHead,
    seq: u64,
    spool: Arc<Spool>,
    collector: Collector,
    held: Vec<Batch>,
    wake: Arc<Notify>,
    done: Arc<Notify>,
    task: tokio::task::JoinHandle<(u64, u64)>,
}

/// What streaming achieved by the end of the run.
pub struct StreamReport {
    pub sent: u64,
    pub refused: u64,
    pub pending: usize,
    /// Batches neither spooled nor acknowledged: their timelines are in
    /// the folder's `timelines.jsonl` only.
    pub unsent: usize,
    pub spool: PathBuf,
}

impl Streamer {
    pub fn start(
        collector: Collector,
        run_dir: &Path,
        agent: String,
        header: RunHeader,
    ) -> Result<Streamer, StreamError> {
        Streamer::start_from(collector, run_dir, agent, header, 0)
    }

    /// As [`Streamer::start`], the run's batches numbered from
    /// `seq_base + 1` (see [`StreamHead::seq_base`]).
    pub fn start_from(
        collector: Collector,
        run_dir: &Path,
        agent: String,
        header: RunHeader,
        seq_base: u64,
    ) -> Result<Streamer, StreamError> {
        let spool = Arc::new(Spool::open(run_dir)?);
        let head = StreamHead {
            agent,
            header,
            seq_base,
        };
        let head_path = run_dir.join(STREAM);
        let text = serde_json::to_vec(&head).expect("stream heads serialize");
        crate::durable::write_whole(&head_path, &text)
            .map_err(|e| StreamError::Io(e.path, e.source))?;
        // A folder streamed before (a watcher's day, resumed): what its
        // last agent never spooled goes now.
        match spool.restore(run_dir) {
            Ok(0) => {}
            Ok(n) => eprintln!(
                "{n} batch(es) of {} never reached the spool (the agent ended first): rebuilt from the folder, sent now",
                run_dir.display()
            ),
            Err(e) => eprintln!("warning: batches not rebuilt from the folder: {e}"),
        }
        let wake = Arc::new(Notify::new());
        let done = Arc::new(Notify::new());
        let task = {
            let (spool, wake, done, collector) =
                (spool.clone(), wake.clone(), done.clone(), collector.clone());
            tokio::spawn(async move { drain(&spool, &collector, &wake, done.notified()).await })
        };
        Ok(Streamer {
            seq: head.seq_base,
            head,
            spool,
            collector,
            held: Vec::new(),
            wake,
            done,
            task,
        })
    }

    fn batch(
        &mut self,
        timelines: Vec<TimelineRecord>,
        end: Option<RunEnd>,
    ) -> Result<(), StreamError> {
        self.seq += 1;
        self.batch_as(self.seq, timelines, end)
    }

    fn batch_as(
        &mut self,
        seq: u64,
        timelines: Vec<TimelineRecord>,
        end: Option<RunEnd>,
    ) -> Result<(), StreamError> {
        let batch = self.head.batch(seq, timelines, end).map_err(|e| {
            StreamError::Io(self.spool.dir.clone(), std::io::Error::other(e.to_string()))
        })?;
        if let Err(e) = self.spool.write(&batch) {
            self.held.push(batch);
            return Err(e);
        }
        self.wake.notify_one();
        Ok(())
    }

    /// One restart's timeline: written to the spool now, sent in the background.
    pub fn timeline(&mut self, rec: &TimelineRecord) -> Result<(), StreamError> {
        self.batch(vec![rec.clone()], None)
    }

    /// One restart's timeline as batch `seq`, for a run without a fixed
    /// order (watch names each batch by its restart's first engine stamp,
    /// so a batch resent after the agent's own restart is stored once).
    pub fn timeline_as(&mut self, seq: u64, rec: &TimelineRecord) -> Result<(), StreamError> {
        self.batch_as(seq.max(1), vec![rec.clone()], None)
    }

    /// The last batch, then [`stop`](Self::stop).
    pub async fn finish(mut self, end: RunEnd, flush: Duration) -> StreamReport {
        // A last batch the spool cannot take is held like any other.
        let _ = self.batch(Vec::new(), Some(end));
        self.stop(flush).await
    }

    /// Up to `flush` for the spool to drain, then the batches held in
    /// memory straight to the collector, then stop sending, without an end
    /// (a watcher's day goes on after the watcher's own restart); what is
    /// left stays in the spool.
    pub async fn stop(mut self, flush: Duration) -> StreamReport {
        // Held batches go to the spool if it has room again.
        let spool = self.spool.clone();
        self.held.retain(|b| spool.write(b).is_err());
        self.wake.notify_one();
        let deadline = tokio::time::Instant::now() + flush;
        while !self.spool.pending().is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.done.notify_one();
        let (mut sent, mut refused) = self.task.await.unwrap_or((0, 0));
        let mut unsent = 0;
        for b in std::mem::take(&mut self.held) {
            let body = serde_json::to_vec(&b).expect("batches serialize");
            let answer = tokio::time::timeout_at(deadline, self.collector.send(body)).await;
            match answer {
                Ok(Sent::Acked) => sent += 1,
                Ok(Sent::Refused(why)) => {
                    eprintln!("collector refused batch {} (not spooled): {why}", b.seq);
                    refused += 1;
                }
                Ok(Sent::Retry(_)) | Err(_) => unsent += 1,
            }
        }
        StreamReport {
            sent,
            refused,
            pending: self.spool.pending().len(),
            unsent,
            spool: self.spool.dir.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::{Ending, Timeline};
    use bounce_wire::{Action, BoundaryName, NodeFacts, RunIdentity, Source, TargetRef};

    fn record(labels: &RunIdentity, i: i64) -> TimelineRecord {
        let target = TargetRef::Docker {
            name: format!("c{i}"),
            id: "0123".into(),
        };
        let mut tl = Timeline::new(target, format!("c{i}"), 1, Action::StopStart);
        // Phases of awkward lengths: seconds that print with every digit.
        let at = 1_796_031_378_829_826_926 + i * 7_777_777_777;
        tl.mark(BoundaryName::Requested, at, Source::Agent);
        tl.mark(
            BoundaryName::Exited,
            at + 333_333_333,
            Source::DockerEvent {
                action: "die".into(),
            },
        );
        tl.mark(
            BoundaryName::Started,
            at + 1_234_567_891,
            Source::DockerEvent {
                action: "die".into(),
            },
        );
        tl.finish(labels, Ending::ok())
    }

    #[test]
    fn a_batch_the_spool_never_took_is_rebuilt_from_the_folder_byte_for_byte() {
        rebuilt_byte_for_byte(0);
        // A node rejoined after a resolve: the same, numbered from its base.
        rebuilt_byte_for_byte(1 << 32);
    }

    fn rebuilt_byte_for_byte(base: u64) {
        let dir =
            std::env::temp_dir().join(format!("bounce-restore-{}-{base}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let identity = RunIdentity {
            run_id: RunId::parse("r-1").unwrap(),
            deployment: "lab".into(),
            scenario: "s".into(),
            node: NodeFacts {
                hostname: "node-1".into(),
                cpus: 2,
                ..NodeFacts::default()
            },
        };
        let head = StreamHead {
            agent: "node-1".into(),
            header: RunHeader {
                identity: identity.clone(),
                started_unix_nanos: 1_796_031_378_000_000_000,
                planned: 3,
                scenario_yaml: Some("targets: []\n".into()),
            },
            seq_base: base,
        };
        let recs: Vec<TimelineRecord> = (0..3).map(|i| record(&identity, i)).collect();
        let mut lines = Vec::new();
        for r in &recs {
            lines.extend(serde_json::to_vec(r).unwrap());
            lines.push(b'\n');
        }
        std::fs::write(dir.join(TIMELINES), lines).unwrap();
        std::fs::write(dir.join(STREAM), serde_json::to_vec(&head).unwrap()).unwrap();
        let spool = Spool::open(&dir).unwrap();
        // Batch 1 acknowledged, batch 3 waiting in the spool, batch 2 held
        // in memory when the agent was killed.
        let file = |seq: u64| dir.join(SPOOL).join(format!("{:08}.json", base + seq));
        std::fs::write(dir.join(SPOOL).join(ACKED), format!("{:08}\n", base + 1)).unwrap();
        let sent = |seq: u64, rec: &TimelineRecord| {
            head.batch(base + seq, vec![rec.clone()], None).unwrap()
        };
        spool.write(&sent(3, &recs[2])).unwrap();

        assert_eq!(spool.restore(&dir).unwrap(), 1);
        let rebuilt = std::fs::read(file(2)).unwrap();
        assert_eq!(rebuilt, serde_json::to_vec(&sent(2, &recs[1])).unwrap());
        assert_eq!(spool.pending().len(), 2);
        assert_eq!(spool.restore(&dir).unwrap(), 0, "nothing twice");
        // The first batch carries the scenario text, as it did when sent.
        std::fs::write(dir.join(SPOOL).join(ACKED), "").unwrap();
        assert_eq!(spool.restore(&dir).unwrap(), 1);
        let first: Batch = serde_json::from_slice(&std::fs::read(file(1)).unwrap()).unwrap();
        assert_eq!(first.seq, base + 1);
        assert_eq!(first.run.scenario_yaml.as_deref(), Some("targets: []\n"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
