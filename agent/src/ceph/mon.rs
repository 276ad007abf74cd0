//! The cluster's view as the monitors (and the mgr behind them) give it,
//! asked one of two ways ([`CephAccess`]):
//!
//! - the `ceph` CLI, JSON output, behind a configurable command prefix
//!   (`ceph`, `docker exec ceph-mon-$HOST ceph`, `cephadm shell -- ceph`...):
//!   works wherever an operator can type `ceph`, costs a Python start-up
//!   (175-300 ms of CPU) per call;
//! - a librados session in the agent ([`super::rados`]): about a millisecond
//!   per call, needs `librados.so.2` and a keyring on the node.
//!
//! Every command is written once in both spellings ([`Cmd`]), so the two
//! transports answer the same questions; the tests check they agree.

use super::rados::{self, Session};
use crate::scenario::CephAccess;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum MonError {
    #[error("`{cmd}` could not run: {source}")]
    Spawn { cmd: String, source: std::io::Error },
    #[error("`{cmd}` did not answer within {secs:.0} s")]
    Timeout { cmd: String, secs: f64 },
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Failed {
        cmd: String,
        status: String,
        stderr: String,
    },
    #[error("`{cmd}` did not print JSON: {reason}")]
    NotJson { cmd: String, reason: String },
    #[error(transparent)]
    Rados(#[from] rados::RadosError),
}

#[derive(Clone)]
pub struct MonClient {
    access: CephAccess,
    /// Connected once, for `CephAccess::Librados`.
    session: Option<Arc<Session>>,
    pub timeout: Duration,
}

impl std::fmt::Debug for MonClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MonClient({})", self.by_hand(&[]))
    }
}

/// One command in both spellings: the CLI's words and the monitors' JSON
/// (`{"prefix": ..., args}`, as `ceph --verbose` shows it submitting).
struct Cmd {
    words: Vec<String>,
    json: Value,
}

impl Cmd {
    fn new(words: &[&str], json: Value) -> Cmd {
        Cmd {
            words: words.iter().map(|w| w.to_string()).collect(),
            json,
        }
    }
}

/// The cluster's health: status and its checks (code, summary message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub status: String,
    pub checks: Vec<(String, String)>,
}

/// One PG's state as reported, and the osdmap epoch of that report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgState {
    pub pgid: String,
    pub state: String,
    pub reported_epoch: u64,
    /// The OSDs CRUSH maps it to (up) and those serving it (acting).
    pub up: Vec<u32>,
    pub acting: Vec<u32>,
}

/// One OSD in the osdmap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsdState {
    pub id: u32,
    pub up: bool,
    pub up_from: u64,
    /// The OSD's state set: `exists`, `up`, and its own flags (`noout`...).
    pub state: Vec<String>,
}

impl MonClient {
    /// Through the `ceph` CLI run by this command prefix.
    pub fn new(prefix: Vec<String>) -> MonClient {
        MonClient {
            access: CephAccess::Cli(prefix),
            session: None,
            timeout: Duration::from_secs(30),
        }
    }

    /// As the scenario says; a librados session is connected here (bounded
    /// by the timeout), so a wrong configuration fails before any restart.
    pub async fn open(access: &CephAccess) -> Result<MonClient, MonError> {
        let timeout = Duration::from_secs(30);
        let session = match access {
            CephAccess::Cli(_) => None,
            CephAccess::Librados(l) => {
                let l = l.clone();
                let s = tokio::task::spawn_blocking(move || {
                    Session::connect(&l.conf, &l.name, l.keyring.as_deref(), timeout)
                })
                .await
                .map_err(|e| MonError::Spawn {
                    cmd: "librados".into(),
                    source: std::io::Error::other(e),
                })??;
                Some(Arc::new(s))
            }
        };
        Ok(MonClient {
            access: access.clone(),
            session,
            timeout,
        })
    }

    pub fn access(&self) -> &CephAccess {
        &self.access
    }

    /// How often to poll the osdmap: a CLI call costs a process start, a
    /// session call about a millisecond of the mon's time.
    pub fn osdmap_poll(&self) -> Duration {
        match self.access {
            CephAccess::Cli(_) => Duration::from_millis(250),
            CephAccess::Librados(_) => Duration::from_millis(50),
        }
    }

    /// The transport, in two words (for a boundary's source).
    pub fn way(&self) -> &'static str {
        match self.access {
            CephAccess::Cli(_) => "the ceph CLI",
            CephAccess::Librados(_) => "librados",
        }
    }

    /// How the cluster is asked, in words (for `plan`).
    pub fn how(&self) -> String {
        match &self.access {
            CephAccess::Cli(prefix) => format!("`{}`", prefix.join(" ")),
            CephAccess::Librados(l) => {
                format!("a librados session as {} ({})", l.name, l.conf.display())
            }
        }
    }

    /// The shell command an operator would type to do the same.
    pub fn by_hand(&self, words: &[&str]) -> String {
        by_hand(&self.access, words)
    }

    /// Runs one command and parses its JSON answer.
    async fn query(&self, cmd: Cmd) -> Result<Value, MonError> {
        let what = self.describe(&cmd);
        let out = self.run(cmd, true).await?;
        serde_json::from_slice(&out).map_err(|e| MonError::NotJson {
            cmd: what,
            reason: format!(
                "{e}: {}",
                String::from_utf8_lossy(&out)
                    .chars()
                    .take(200)
                    .collect::<String>()
            ),
        })
    }

    fn describe(&self, cmd: &Cmd) -> String {
        match &self.access {
            CephAccess::Cli(_) => {
                self.by_hand(&cmd.words.iter().map(String::as_str).collect::<Vec<_>>())
            }
            CephAccess::Librados(_) => format!("librados mon_command {}", cmd.json),
        }
    }

    async fn run(&self, mut cmd: Cmd, json: bool) -> Result<Vec<u8>, MonError> {
        let what = self.describe(&cmd);
        if let Some(session) = &self.session {
            if json {
                cmd.json["format"] = "json".into();
            }
            let session = session.clone();
            let text = cmd.json.to_string();
            // librados bounds the call itself (rados_mon_op_timeout); this
            // outer bound only guards against a library that does not.
            let reply = tokio::time::timeout(
                self.timeout + Duration::from_secs(5),
                tokio::task::spawn_blocking(move || session.mon_command(&text)),
            )
            .await
            .map_err(|_| MonError::Timeout {
                cmd: what.clone(),
                secs: self.timeout.as_secs_f64(),
            })?
            .map_err(|e| MonError::Spawn {
                cmd: what.clone(),
                source: std::io::Error::other(e),
            })??;
            if reply.code < 0 {
                return Err(MonError::Failed {
                    cmd: what,
                    status: rados::describe_code(reply.code),
                    stderr: reply.status.trim().to_string(),
                });
            }
            return Ok(reply.out);
        }
        let CephAccess::Cli(prefix) = &self.access else {
            unreachable!("a librados client always has its session")
        };
        let (program, fixed) = prefix.split_first().ok_or_else(|| MonError::Spawn {
            cmd: what.clone(),
            source: std::io::Error::other("empty ceph command prefix"),
        })?;
        let mut c = Command::new(program);
        c.args(fixed).args(&cmd.words).kill_on_drop(true);
        if json {
            c.args(["--format", "json"]);
        }
        let out = tokio::time::timeout(self.timeout, c.output())
            .await
            .map_err(|_| MonError::Timeout {
                cmd: what.clone(),
                secs: self.timeout.as_secs_f64(),
            })?
            .map_err(|source| MonError::Spawn {
                cmd: what.clone(),
                source,
            })?;
        if !out.status.success() {
            return Err(MonError::Failed {
                cmd: what,
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(out.stdout)
    }

    pub async fn health(&self) -> Result<Health, MonError> {
        let v = self
            .query(Cmd::new(&["health"], json!({"prefix": "health"})))
            .await?;
        Ok(Health {
            status: v["status"].as_str().unwrap_or("UNKNOWN").to_string(),
            checks: v["checks"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(code, c)| {
                            (
                                code.clone(),
                                c["summary"]["message"].as_str().unwrap_or("").to_string(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    /// The osdmap's epoch and every OSD's up state and `up_from` epoch.
    pub async fn osd_dump(&self) -> Result<(u64, Vec<OsdState>), MonError> {
        let v = self
            .query(Cmd::new(&["osd", "dump"], json!({"prefix": "osd dump"})))
            .await?;
        let osds = v["osds"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|o| OsdState {
                        id: o["osd"].as_u64().unwrap_or(u64::MAX) as u32,
                        up: o["up"].as_u64() == Some(1),
                        up_from: o["up_from"].as_u64().unwrap_or(0),
                        state: o["state"]
                            .as_array()
                            .map(|a| {
                                a.iter()
                                    .filter_map(|x| x.as_str().map(String::from))
                                    .collect()
                            })
                            .unwrap_or_default(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok((v["epoch"].as_u64().unwrap_or(0), osds))
    }

    /// Every PG's state (`pg dump pgs`). Stats come from the mgr and can
    /// predate a restart: callers compare `reported_epoch` with the epoch
    /// they care about.
    pub async fn pgs(&self) -> Result<Vec<PgState>, MonError> {
        let v = self
            .query(Cmd::new(
                &["pg", "dump", "pgs"],
                json!({"prefix": "pg dump", "dumpcontents": ["pgs"]}),
            ))
            .await?;
        let list = v["pg_stats"]
            .as_array()
            .or(v.as_array())
            .cloned()
            .unwrap_or_default();
        Ok(list
            .iter()
            .map(|p| PgState {
                pgid: p["pgid"].as_str().unwrap_or("").to_string(),
                state: p["state"].as_str().unwrap_or("").to_string(),
                reported_epoch: p["reported_epoch"]
                    .as_u64()
                    .or_else(|| p["reported_epoch"].as_str()?.parse().ok())
                    .unwrap_or(0),
                up: osd_ids(&p["up"]),
                acting: osd_ids(&p["acting"]),
            })
            .collect())
    }

    /// Whether stopping these OSDs leaves every PG able to serve I/O.
    pub async fn ok_to_stop(&self, ids: &[u32]) -> Result<bool, MonError> {
        let ids: Vec<String> = ids.iter().map(u32::to_string).collect();
        let mut words = vec!["osd", "ok-to-stop"];
        words.extend(ids.iter().map(String::as_str));
        let cmd = Cmd::new(&words, json!({"prefix": "osd ok-to-stop", "ids": ids}));
        match self.run(cmd, false).await {
            Ok(_) => Ok(true),
            // ok-to-stop answers "not ok" with EBUSY (a non-zero exit).
            Err(MonError::Failed { status, stderr, .. })
                if status.contains("EBUSY")
                    || stderr.contains("EBUSY")
                    || stderr.contains("unsafe") =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// The cluster-wide flags (`noout`, `norebalance`...).
    pub async fn flags(&self) -> Result<Vec<String>, MonError> {
        let v = self
            .query(Cmd::new(&["osd", "dump"], json!({"prefix": "osd dump"})))
            .await?;
        Ok(v["flags"]
            .as_str()
            .unwrap_or("")
            .split(',')
            .filter(|f| !f.is_empty())
            .map(String::from)
            .collect())
    }

    pub async fn set_flag(&self, flag: &str) -> Result<(), MonError> {
        self.cluster_flag("set", flag).await
    }

    pub async fn unset_flag(&self, flag: &str) -> Result<(), MonError> {
        self.cluster_flag("unset", flag).await
    }

    /// One OSD's own flag (`ceph osd add-noout osd.3`).
    pub async fn add_osd_flag(&self, flag: &str, id: u32) -> Result<(), MonError> {
        self.osd_flag("add", flag, id).await
    }

    pub async fn rm_osd_flag(&self, flag: &str, id: u32) -> Result<(), MonError> {
        self.osd_flag("rm", flag, id).await
    }

    /// `osd set|unset FLAG`.
    async fn cluster_flag(&self, verb: &str, flag: &str) -> Result<(), MonError> {
        let prefix = format!("osd {verb}");
        let cmd = Cmd::new(&["osd", verb, flag], json!({"prefix": prefix, "key": flag}));
        self.run(cmd, false).await.map(drop)
    }

    /// `osd add-FLAG|rm-FLAG osd.ID`.
    async fn osd_flag(&self, verb: &str, flag: &str, id: u32) -> Result<(), MonError> {
        let (verb, who) = (format!("{verb}-{flag}"), format!("osd.{id}"));
        let prefix = format!("osd {verb}");
        let cmd = Cmd::new(
            &["osd", &verb, &who],
            json!({"prefix": prefix, "ids": [who]}),
        );
        self.run(cmd, false).await.map(drop)
    }
}

fn osd_ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_u64())
                .map(|x| x as u32)
                .collect()
        })
        .unwrap_or_default()
}

/// The shell command an operator would type to ask the cluster `words`
/// the way `access` does (a librados session: the CLI with its conf, name
/// and keyring).
pub fn by_hand(access: &CephAccess, words: &[&str]) -> String {
    let mut out: Vec<String> = match access {
        CephAccess::Cli(prefix) => prefix.clone(),
        CephAccess::Librados(l) => {
            let mut v = vec![
                "ceph".to_string(),
                "--conf".into(),
                l.conf.display().to_string(),
                "--name".into(),
                l.name.clone(),
            ];
            if let Some(k) = &l.keyring {
                v.extend(["--keyring".into(), k.display().to_string()]);
            }
            v
        }
    };
    out.extend(words.iter().map(|w| w.to_string()));
    out.join(" ")
}
