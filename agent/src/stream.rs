//! Streaming a run to the collector, without ever making the run depend on it.
//!
//! Every batch is first written (and fsynced) to the run folder's `spool/` as
//! `<seq>.json`, then sent in order by a background task; a batch leaves the
//! spool only when the collector has acknowledged it (`stored` or
//! `duplicate`). When the collector is away the task retries with backoff; at
//! the end of the run it gets a bounded time to drain, and what is left stays
//! in the spool for `bounce-agent push`. The collector stores each
//! (agent, run, seq) once, so resending is always safe.

use bounce_wire::folder::{REFUSED, SPOOL};
use bounce_wire::ingest::{Ack, Batch, INGEST_PATH, RunEnd, RunHeader, histograms_of};
use bounce_wire::{RunId, TimelineRecord};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("collector URL {0:?}: {1}")]
    Url(String, String),
}

/// Where and how to reach the collector.
#[derive(Clone)]
pub struct Collector {
    ingest: hyper::Uri,
    whoami: hyper::Uri,
    token: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// How sending one batch went.
enum Sent {
    Acked,
    /// The collector refused it (4xx): resending would not help.
    Refused(String),
    /// Not reached, or a 5xx: try again later.
    Retry(String),
}

impl Collector {
    pub fn new(url: &str, token: String) -> Result<Collector, StreamError> {
        let base = url.trim_end_matches('/');
        if !base.starts_with("http://") {
            return Err(StreamError::Url(
                url.into(),
                "only http:// is supported (put TLS in front of the collector)".into(),
            ));
        }
        let parse = |path: &str| {
            format!("{base}{path}")
                .parse::<hyper::Uri>()
                .map_err(|e| StreamError::Url(url.into(), e.to_string()))
        };
        Ok(Collector {
            ingest: parse(INGEST_PATH)?,
            whoami: parse("/api/v1/whoami")?,
            token,
            client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
        })
    }

    /// Checks, before anything restarts, that the collector answers and
    /// takes the token (a wrong token would otherwise only show as refused
    /// batches at the end).
    pub async fn check(&self, joining: Option<&RunJoin>) -> Result<(), StreamError> {
        let mut url = self.whoami.to_string();
        if let Some(j) = joining {
            // The collector also says whether it would take this agent's
            // batches (a token bound to other names, a fleet run it contradicts).
            url.push_str(&format!("?agent={}", query_escape(&j.agent)));
            if let Some(run_id) = &j.run_id {
                url.push_str(&format!(
                    "&run_id={}&deployment={}&scenario={}",
                    query_escape(run_id.as_str()),
                    query_escape(&j.deployment),
                    query_escape(&j.scenario)
                ));
            }
        }
        let uri: hyper::Uri = url.parse().map_err(|e: hyper::http::uri::InvalidUri| {
            StreamError::Url(url.clone(), e.to_string())
        })?;
        let req = hyper::Request::get(uri)
            .header("authorization", format!("Bearer {}", self.token))
            .body(Full::new(Bytes::new()))
            .map_err(|e| StreamError::Url(url.clone(), e.to_string()))?;
        let resp = tokio::time::timeout(Duration::from_secs(10), self.client.request(req))
            .await
            .map_err(|_| StreamError::Url(url.clone(), "no answer within 10 s".into()))?
            .map_err(|e| StreamError::Url(url.clone(), format!("not reachable: {e}")))?;
        let (status, body) = status_and_body(resp).await;
        let status = status.as_u16();
        let reason = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(String::from))
            .unwrap_or_default();
        match status {
            200 => Ok(()),
            403 if !reason.is_empty() => Err(StreamError::Url(
                url,
                format!("the collector refused the token: {reason}"),
            )),
            401 | 403 => Err(StreamError::Url(
                url,
                "the collector refused the token".into(),
            )),
            409 => Err(StreamError::Url(
                url,
                format!("the collector would refuse this run's results: {reason}"),
            )),
            other => Err(StreamError::Url(url, format!("answered {other} {reason}"))),
        }
    }

    async fn send(&self, body: Vec<u8>) -> Sent {
        let req = match hyper::Request::post(self.ingest.clone())
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {}", self.token))
            .body(Full::new(Bytes::from(body)))
        {
            Ok(r) => r,
            Err(e) => return Sent::Refused(e.to_string()),
        };
        let resp =
            match tokio::time::timeout(Duration::from_secs(15), self.client.request(req)).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => return Sent::Retry(e.to_string()),
                Err(_) => return Sent::Retry("no answer within 15 s".into()),
            };
        let (status, body) = status_and_body(resp).await;
        if status.is_success() && serde_json::from_slice::<Ack>(&body).is_ok() {
            Sent::Acked
        } else if status.is_client_error() && status.as_u16() != 408 && status.as_u16() != 429 {
            Sent::Refused(format!("{status}: {}", String::from_utf8_lossy(&body)))
        } else {
            Sent::Retry(format!("{status}: {}", String::from_utf8_lossy(&body)))
        }
    }
}

/// An answer's status and whole body (empty if the body breaks off).
async fn status_and_body(
    resp: hyper::Response<hyper::body::Incoming>,
) -> (hyper::StatusCode, Bytes) {
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    (status, body)
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

impl Spool {
    pub fn open(run_dir: &Path) -> Result<Spool, StreamError> {
        let dir = run_dir.join(SPOOL);
        std::fs::create_dir_all(&dir).map_err(|e| StreamError::Io(dir.clone(), e))?;
        Ok(Spool { dir })
    }

    fn write(&self, batch: &Batch) -> Result<(), StreamError> {
        let path = self.dir.join(format!("{:08}.json", batch.seq));
        let tmp = path.with_extension("tmp");
        let io = |e| StreamError::Io(tmp.clone(), e);
        let text = serde_json::to_vec(batch).expect("batches serialize");
        let f = std::fs::File::create(&tmp).map_err(io)?;
        use std::io::Write;
        (&f).write_all(&text).map_err(io)?;
        f.sync_all().map_err(io)?;
        // Renamed into place only once complete: a crash leaves no half batch.
        std::fs::rename(&tmp, &path).map_err(|e| StreamError::Io(path.clone(), e))?;
        Ok(())
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
pub struct Streamer {
    agent: String,
    header: RunHeader,
    seq: u64,
    spool: Arc<Spool>,
    wake: Arc<Notify>,
    done: Arc<Notify>,
    task: tokio::task::JoinHandle<(u64, u64)>,
}

/// What streaming achieved by the end of the run.
pub struct StreamReport {
    pub sent: u64,
    pub refused: u64,
    pub pending: usize,
    pub spool: PathBuf,
}

impl Streamer {
    pub fn start(
        collector: Collector,
        run_dir: &Path,
        agent: String,
        header: RunHeader,
    ) -> Result<Streamer, StreamError> {
        let spool = Arc::new(Spool::open(run_dir)?);
        let wake = Arc::new(Notify::new());
        let done = Arc::new(Notify::new());
        let task = {
            let (spool, wake, done) = (spool.clone(), wake.clone(), done.clone());
            tokio::spawn(async move { drain(&spool, &collector, &wake, done.notified()).await })
        };
        Ok(Streamer {
            agent,
            header,
            seq: 0,
            spool,
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
        let batch = Batch {
            agent: self.agent.clone(),
            // The scenario text travels once, with the first batch.
            run: RunHeader {
                scenario_yaml: self.header.scenario_yaml.clone().filter(|_| seq == 1),
                ..self.header.clone()
            },
            seq,
            histograms: histograms_of(&timelines).map_err(|e| {
                StreamError::Io(self.spool.dir.clone(), std::io::Error::other(e.to_string()))
            })?,
            timelines,
            end,
        };
        self.spool.write(&batch)?;
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

    /// The last batch, then up to `flush` for the spool to drain.
    pub async fn finish(
        mut self,
        end: RunEnd,
        flush: Duration,
    ) -> Result<StreamReport, StreamError> {
        self.batch(Vec::new(), Some(end))?;
        Ok(self.stop(flush).await)
    }

    /// Up to `flush` for the spool to drain, then stop sending, without an
    /// end (a watcher's day goes on after the watcher's own restart); what
    /// is left stays in the spool.
    pub async fn stop(self, flush: Duration) -> StreamReport {
        let deadline = tokio::time::Instant::now() + flush;
        while !self.spool.pending().is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.done.notify_one();
        let (sent, refused) = self.task.await.unwrap_or((0, 0));
        StreamReport {
            sent,
            refused,
            pending: self.spool.pending().len(),
            spool: self.spool.dir.clone(),
        }
    }
}
