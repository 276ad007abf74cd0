//! Flags bounce sets for a run (`noout` for the cluster, or `noout` on one
//! OSD at a time), and the promise to unset exactly those on every exit
//! path: success, failure, Ctrl-C (the run's end calls
//! [`FlagGuard::release`]) and a crash (a state file written before a flag
//! is set, which the next `run` reads with [`recover`]).

use super::mon::{MonClient, MonError, by_hand};
use crate::intent::Holder;
use crate::scenario::CephAccess;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use tokio::sync::Mutex;

const STATE_FILE: &str = "ceph-flags.json";

/// A flag bounce may set: cluster-wide (`ceph osd set noout`) or on one OSD
/// (`ceph osd add-noout osd.3`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flag {
    Cluster(String),
    Osd { flag: String, id: u32 },
}

impl Flag {
    /// In the state file: `noout` or `noout osd.3`.
    fn encode(&self) -> String {
        match self {
            Flag::Cluster(f) => f.clone(),
            Flag::Osd { flag, id } => format!("{flag} osd.{id}"),
        }
    }

    fn decode(s: &str) -> Option<Flag> {
        match s.split_once(" osd.") {
            Some((flag, id)) => Some(Flag::Osd {
                flag: flag.to_string(),
                id: id.parse().ok()?,
            }),
            None if !s.is_empty() && !s.contains(' ') => Some(Flag::Cluster(s.to_string())),
            None => None,
        }
    }

    /// Whether the cluster has it set now (by anyone).
    async fn is_set(&self, cli: &MonClient) -> Result<bool, MonError> {
        match self {
            Flag::Cluster(f) => Ok(cli.flags().await?.iter().any(|x| x == f)),
            Flag::Osd { flag, id } => {
                let (_, osds) = cli.osd_dump().await?;
                Ok(osds
                    .iter()
                    .find(|o| o.id == *id)
                    .is_some_and(|o| o.state.iter().any(|s| s == flag)))
            }
        }
    }

    async fn set(&self, cli: &MonClient) -> Result<(), MonError> {
        match self {
            Flag::Cluster(f) => cli.set_flag(f).await,
            Flag::Osd { flag, id } => cli.add_osd_flag(flag, *id).await,
        }
    }

    async fn unset(&self, cli: &MonClient) -> Result<(), MonError> {
        match self {
            Flag::Cluster(f) => cli.unset_flag(f).await,
            Flag::Osd { flag, id } => cli.rm_osd_flag(flag, *id).await,
        }
    }

    /// The command an operator runs to unset it by hand.
    fn unset_command(&self, access: &CephAccess) -> String {
        match self {
            Flag::Cluster(f) => by_hand(access, &["osd", "unset", f]),
            Flag::Osd { flag, id } => by_hand(
                access,
                &["osd", &format!("rm-{flag}"), &format!("osd.{id}")],
            ),
        }
    }
}

impl fmt::Display for Flag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Flag::Cluster(x) => f.write_str(x),
            Flag::Osd { flag, id } => write!(f, "{flag} on osd.{id}"),
        }
    }
}

/// What is on disk while bounce holds a flag.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Held {
    /// How to ask the cluster to unset them (older files: a CLI prefix).
    ceph: CephAccess,
    /// `noout`, `noout osd.3`.
    flags: Vec<String>,
    pid: u32,
    /// Who holds them (pid, start time, boot), so a run that still runs
    /// keeps its flags; absent in files of earlier versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    holder: Option<Holder>,
}

impl Held {
    /// The run that wrote the file still runs: its flags are its own.
    fn writer_runs(&self) -> bool {
        self.holder.as_ref().is_some_and(Holder::alive)
    }

    fn flags(&self, path: &Path) -> Result<Vec<Flag>, String> {
        self.flags
            .iter()
            .map(|f| {
                Flag::decode(f)
                    .ok_or_else(|| format!("{}: {f:?} is not a flag bounce sets", path.display()))
            })
            .collect()
    }
}

pub struct FlagGuard {
    cli: MonClient,
    state_file: PathBuf,
    held: Mutex<Vec<Flag>>,
}

impl FlagGuard {
    pub fn new(cli: MonClient, state_dir: &Path) -> FlagGuard {
        FlagGuard {
            cli,
            state_file: state_dir.join(STATE_FILE),
            held: Mutex::new(Vec::new()),
        }
    }

    /// The flags this run set (and will unset).
    pub async fn held(&self) -> Vec<Flag> {
        self.held.lock().await.clone()
    }

    /// Sets `flag` unless it is already set (by bounce in this run, or by an
    /// operator: then it is theirs and stays as it is).
    pub async fn ensure(&self, flag: &Flag) -> Result<(), String> {
        let mut held = self.held.lock().await;
        if held.contains(flag) {
            return Ok(());
        }
        if flag.is_set(&self.cli).await.map_err(|e| e.to_string())? {
            return Ok(());
        }
        // The record goes to disk first: a crash right after `osd set` must
        // still leave the next start able to clean up.
        let mut record = held.clone();
        record.push(flag.clone());
        self.write(&record)?;
        if let Err(e) = flag.set(&self.cli).await {
            // Not set after all: the record must not claim it.
            let _ = self.write(&held);
            return Err(e.to_string());
        }
        *held = record;
        Ok(())
    }

    fn write(&self, flags: &[Flag]) -> Result<(), String> {
        if flags.is_empty() {
            return match std::fs::remove_file(&self.state_file) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(format!("{}: {e}", self.state_file.display()))
                }
                _ => Ok(()),
            };
        }
        let held = Held {
            ceph: self.cli.access().clone(),
            flags: flags.iter().map(Flag::encode).collect(),
            pid: std::process::id(),
            holder: Some(Holder::me()),
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

    /// Unsets one flag this run set (a per-OSD flag once its OSD is back);
    /// nothing if this run did not set it. The state file follows.
    pub async fn release_one(&self, flag: &Flag) -> Result<(), String> {
        let mut held = self.held.lock().await;
        if !held.contains(flag) {
            return Ok(());
        }
        unset_with_retries(&self.cli, flag).await?;
        held.retain(|f| f != flag);
        self.write(&held)
    }

    /// Unsets what this run set; the state file goes only when all are unset.
    pub async fn release(&self) -> Vec<String> {
        let mut held = self.held.lock().await;
        let mut messages = Vec::new();
        let mut left = Vec::new();
        for flag in held.iter() {
            match unset_with_retries(&self.cli, flag).await {
                Ok(()) => messages.push(format!("unset {flag} (set by this run)")),
                Err(why) => {
                    messages.push(format!(
                        "could NOT unset {flag} ({why}): it is still set and recorded in {}; run `{}` (the next bounce run will try again)",
                        self.state_file.display(),
                        flag.unset_command(self.cli.access())
                    ));
                    left.push(flag.clone());
                }
            }
        }
        let _ = self.write(&left);
        *held = left;
        messages
    }
}

async fn unset_with_retries(cli: &MonClient, flag: &Flag) -> Result<(), String> {
    let mut last = String::new();
    for attempt in 0..3 {
        if attempt > 0 {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
        match flag.unset(cli).await {
            Ok(()) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

/// The state file an earlier run left, if any.
fn read_held(state_dir: &Path) -> Result<Option<(PathBuf, Held)>, String> {
    let path = state_dir.join(STATE_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let held: Held = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Some((path, held)))
}

fn still_runs(held: &Held) -> String {
    format!(
        "bounce run (pid {}) set {} and still runs: left to it",
        held.pid,
        held.flags.join(", ")
    )
}

/// What [`report`] found: in words, and how many flags an ended run left set.
#[derive(Debug, Default)]
pub struct FlagsLeft {
    pub lines: Vec<String>,
    pub left_set: usize,
}

/// The flags an earlier run recorded and did not release, said without
/// asking the cluster (`plan`, `recover --dry-run`), in the words intents
/// are said in: what bounce did, that it ended, who will undo it, and the
/// command to do it by hand.
pub fn report(state_dir: &Path) -> Result<FlagsLeft, String> {
    let mut r = FlagsLeft::default();
    let Some((path, held)) = read_held(state_dir)? else {
        return Ok(r);
    };
    if held.writer_runs() {
        r.lines.push(still_runs(&held));
        return Ok(r);
    }
    for flag in held.flags(&path)? {
        r.lines.push(format!(
            "bounce set {flag} (pid {}) and ended before unsetting it: `bounce-agent run` or `bounce-agent recover` will unset it (by hand: `{}`)",
            held.pid,
            flag.unset_command(&held.ceph)
        ));
        r.left_set += 1;
    }
    Ok(r)
}

/// After a crash: unsets the flags an earlier run recorded and did not
/// release (not those of a run that still runs). Returns what it did, in words.
pub async fn recover(state_dir: &Path) -> Result<Vec<String>, String> {
    let Some((path, held)) = read_held(state_dir)? else {
        return Ok(Vec::new());
    };
    if held.writer_runs() {
        return Ok(vec![still_runs(&held)]);
    }
    let flags = held.flags(&path)?;
    let cli = MonClient::open(&held.ceph).await.map_err(|e| {
        format!(
            "an earlier run (pid {}) left {} set and the cluster cannot be asked to unset them: {e}",
            held.pid,
            held.flags.join(", ")
        )
    })?;
    let mut messages = Vec::new();
    for flag in flags {
        flag.unset(&cli).await.map_err(|e| {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_round_trip_through_the_state_file_encoding() {
        for f in [
            Flag::Cluster("noout".into()),
            Flag::Osd {
                flag: "noout".into(),
                id: 12,
            },
        ] {
            assert_eq!(Flag::decode(&f.encode()), Some(f));
        }
        assert_eq!(Flag::decode("noout osd.x"), None);
        assert_eq!(Flag::decode(""), None);
    }

    #[test]
    fn state_files_of_earlier_versions_still_say_how_to_ask() {
        let old: Held =
            serde_json::from_str(r#"{"ceph":["ceph","--conf","/c"],"flags":["noout"],"pid":7}"#)
                .unwrap();
        assert_eq!(
            old.ceph,
            CephAccess::Cli(vec!["ceph".into(), "--conf".into(), "/c".into()])
        );
        let new: Held = serde_json::from_str(
            r#"{"ceph":{"librados":{"conf":"/c","name":"client.admin"}},"flags":["noout osd.1"],"pid":7}"#,
        )
        .unwrap();
        assert!(matches!(new.ceph, CephAccess::Librados(ref l) if l.conf == Path::new("/c")));
    }

    #[test]
    fn flags_a_killed_run_left_are_said_and_a_live_runs_are_left_to_it() {
        let dir = std::env::temp_dir().join(format!("bounce-flags-report-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(report(&dir).unwrap().left_set, 0, "no file, nothing left");
        let gone = Holder {
            start_ticks: u64::MAX,
            ..Holder::me()
        };
        let write = |holder: Holder| {
            let held = Held {
                ceph: CephAccess::Cli(vec!["ceph".into(), "--conf".into(), "/c".into()]),
                flags: vec!["noout".into(), "noout osd.3".into()],
                pid: holder.pid,
                holder: Some(holder),
            };
            std::fs::write(dir.join(STATE_FILE), serde_json::to_vec(&held).unwrap()).unwrap();
        };
        write(gone);
        let r = report(&dir).unwrap();
        assert_eq!(r.left_set, 2);
        assert!(
            r.lines[0].contains("bounce set noout (pid ")
                && r.lines[0].contains("and ended before unsetting it")
                && r.lines[0].contains("`ceph --conf /c osd unset noout`"),
            "{:?}",
            r.lines
        );
        assert!(
            r.lines[1].contains("bounce set noout on osd.3")
                && r.lines[1].contains("`ceph --conf /c osd rm-noout osd.3`"),
            "{:?}",
            r.lines
        );
        write(Holder::me());
        let r = report(&dir).unwrap();
        assert_eq!(r.left_set, 0);
        assert!(
            r.lines[0].contains("still runs: left to it"),
            "{:?}",
            r.lines
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
