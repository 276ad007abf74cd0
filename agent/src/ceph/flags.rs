//! Cluster flags bounce sets for a run (`noout`), and the promise to unset
//! exactly those on every exit path: success, failure, Ctrl-C (the run's end
//! calls [`FlagGuard::release`]) and a crash (a state file written before the
//! flag is set, which the next `run` reads with [`recover`]).

use super::cli::CephCli;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tokio::sync::Mutex;

const STATE_FILE: &str = "ceph-flags.json";

/// What is on disk while bounce holds a flag.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Held {
    /// The ceph command prefix to unset them with.
    ceph: Vec<String>,
    flags: Vec<String>,
    pid: u32,
}

pub struct FlagGuard {
    cli: CephCli,
    state_file: PathBuf,
    held: Mutex<Vec<String>>,
}

impl FlagGuard {
    pub fn new(cli: CephCli, state_dir: &Path) -> FlagGuard {
        FlagGuard {
            cli,
            state_file: state_dir.join(STATE_FILE),
            held: Mutex::new(Vec::new()),
        }
    }

    /// The flags this run set (and will unset).
    pub async fn held(&self) -> Vec<String> {
        self.held.lock().await.clone()
    }

    /// Sets `flag` unless it is already set (by bounce in this run, or by an
    /// operator: then it is theirs and stays as it is).
    pub async fn ensure(&self, flag: &str) -> Result<(), String> {
        let mut held = self.held.lock().await;
        if held.iter().any(|f| f == flag) {
            return Ok(());
        }
        let set = self.cli.flags().await.map_err(|e| e.to_string())?;
        if set.iter().any(|f| f == flag) {
            return Ok(());
        }
        // The record goes to disk first: a crash right after `osd set` must
        // still leave the next start able to clean up.
        let mut record = held.clone();
        record.push(flag.to_string());
        self.write(&record)?;
        self.cli.set_flag(flag).await.map_err(|e| e.to_string())?;
        *held = record;
        Ok(())
    }

    fn write(&self, flags: &[String]) -> Result<(), String> {
        let held = Held {
            ceph: self.cli.prefix.clone(),
            flags: flags.to_vec(),
            pid: std::process::id(),
        };
        if let Some(dir) = self.state_file.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let tmp = self.state_file.with_extension("tmp");
        let text = serde_json::to_vec_pretty(&held).expect("state serializes");
        let f = std::fs::File::create(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
        use std::io::Write;
        (&f).write_all(&text)
            .and_then(|_| f.sync_all())
            .map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, &self.state_file)
            .map_err(|e| format!("{}: {e}", self.state_file.display()))
    }

    /// Unsets what this run set; the state file goes only when all are unset.
    pub async fn release(&self) -> Vec<String> {
        let mut held = self.held.lock().await;
        let mut messages = Vec::new();
        let mut left = Vec::new();
        for flag in held.iter() {
            let mut done = false;
            for _ in 0..3 {
                if self.cli.unset_flag(flag).await.is_ok() {
                    done = true;
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            if done {
                messages.push(format!("unset {flag} (set by this run)"));
            } else {
                messages.push(format!(
                    "could NOT unset {flag}: run `{} osd unset {flag}` (the next bounce run will try again)",
                    self.cli.prefix.join(" ")
                ));
                left.push(flag.clone());
            }
        }
        if left.is_empty() {
            let _ = std::fs::remove_file(&self.state_file);
        } else {
            let _ = self.write(&left);
        }
        *held = left;
        messages
    }
}

/// After a crash: unsets the flags an earlier run recorded and did not
/// release. Returns what it did, in words.
pub async fn recover(state_dir: &Path) -> Result<Vec<String>, String> {
    let path = state_dir.join(STATE_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let held: Held = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let cli = CephCli::new(held.ceph.clone());
    let mut messages = Vec::new();
    for flag in &held.flags {
        cli.unset_flag(flag).await.map_err(|e| {
            format!(
                "an earlier run (pid {}) left {flag} set and it could not be unset: {e}",
                held.pid
            )
        })?;
        messages.push(format!(
            "an earlier bounce run (pid {}) ended without unsetting {flag}; unset it now",
            held.pid
        ));
    }
    std::fs::remove_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(messages)
}
