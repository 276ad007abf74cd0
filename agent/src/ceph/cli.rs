//! The cluster's view through the `ceph` CLI, JSON output, behind a
//! configurable command prefix (`ceph`, `docker exec ceph-mon-$HOST ceph`,
//! `cephadm shell -- ceph`...).

use serde_json::Value;
use std::time::Duration;
use tokio::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
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
}

#[derive(Debug, Clone)]
pub struct CephCli {
    /// The command that runs `ceph`, with its fixed arguments.
    pub prefix: Vec<String>,
    pub timeout: Duration,
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

impl CephCli {
    pub fn new(prefix: Vec<String>) -> CephCli {
        CephCli {
            prefix,
            timeout: Duration::from_secs(30),
        }
    }

    /// Runs `PREFIX ARGS --format json` and parses its output.
    pub async fn json(&self, args: &[&str]) -> Result<Value, CliError> {
        let out = self.run(args, true).await?;
        serde_json::from_slice(&out).map_err(|e| CliError::NotJson {
            cmd: self.describe(args),
            reason: format!(
                "{e}: {}",
                String::from_utf8_lossy(&out)
                    .chars()
                    .take(200)
                    .collect::<String>()
            ),
        })
    }

    async fn run(&self, args: &[&str], json: bool) -> Result<Vec<u8>, CliError> {
        let cmd = self.describe(args);
        let (program, fixed) = self.prefix.split_first().ok_or_else(|| CliError::Spawn {
            cmd: cmd.clone(),
            source: std::io::Error::other("empty ceph command prefix"),
        })?;
        let mut c = Command::new(program);
        c.args(fixed).args(args).kill_on_drop(true);
        if json {
            c.args(["--format", "json"]);
        }
        let out = tokio::time::timeout(self.timeout, c.output())
            .await
            .map_err(|_| CliError::Timeout {
                cmd: cmd.clone(),
                secs: self.timeout.as_secs_f64(),
            })?
            .map_err(|source| CliError::Spawn {
                cmd: cmd.clone(),
                source,
            })?;
        if !out.status.success() {
            return Err(CliError::Failed {
                cmd,
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(out.stdout)
    }

    fn describe(&self, args: &[&str]) -> String {
        self.prefix
            .iter()
            .map(String::as_str)
            .chain(args.iter().copied())
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub async fn health(&self) -> Result<Health, CliError> {
        let v = self.json(&["health"]).await?;
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
    pub async fn osd_dump(&self) -> Result<(u64, Vec<OsdState>), CliError> {
        let v = self.json(&["osd", "dump"]).await?;
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
    pub async fn pgs(&self) -> Result<Vec<PgState>, CliError> {
        let v = self.json(&["pg", "dump", "pgs"]).await?;
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
            })
            .collect())
    }

    /// Whether stopping these OSDs leaves every PG able to serve I/O.
    pub async fn ok_to_stop(&self, ids: &[u32]) -> Result<bool, CliError> {
        let ids: Vec<String> = ids.iter().map(u32::to_string).collect();
        let mut args = vec!["osd", "ok-to-stop"];
        args.extend(ids.iter().map(String::as_str));
        match self.run(&args, false).await {
            Ok(_) => Ok(true),
            // ok-to-stop answers "not ok" with EBUSY (a non-zero exit).
            Err(CliError::Failed { stderr, .. })
                if stderr.contains("EBUSY") || stderr.contains("unsafe") =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// The cluster-wide flags (`noout`, `norebalance`...).
    pub async fn flags(&self) -> Result<Vec<String>, CliError> {
        let v = self.json(&["osd", "dump"]).await?;
        Ok(v["flags"]
            .as_str()
            .unwrap_or("")
            .split(',')
            .filter(|f| !f.is_empty())
            .map(String::from)
            .collect())
    }

    pub async fn set_flag(&self, flag: &str) -> Result<(), CliError> {
        self.run(&["osd", "set", flag], false).await.map(drop)
    }

    pub async fn unset_flag(&self, flag: &str) -> Result<(), CliError> {
        self.run(&["osd", "unset", flag], false).await.map(drop)
    }

    /// One OSD's own flag (`ceph osd add-noout osd.3`).
    pub async fn add_osd_flag(&self, flag: &str, id: u32) -> Result<(), CliError> {
        let (verb, who) = (format!("add-{flag}"), format!("osd.{id}"));
        self.run(&["osd", &verb, &who], false).await.map(drop)
    }

    pub async fn rm_osd_flag(&self, flag: &str, id: u32) -> Result<(), CliError> {
        let (verb, who) = (format!("rm-{flag}"), format!("osd.{id}"));
        self.run(&["osd", &verb, &who], false).await.map(drop)
    }
}
