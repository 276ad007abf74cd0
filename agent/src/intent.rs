//! The intent journal: before a step that leaves a target down (the stop of
//! `stop-start`, a `kill` its restart policy must undo), the agent writes
//! down what it is about to do and how to undo it, one file per intent in
//! `STATE_DIR/intents/`, fsynced (file and folder) before the step; the
//! file goes once the target runs again. Whatever ends the agent, the next
//! `run`, `plan` or `recover` finds what is still open (`recover.rs` undoes
//! it). The Ceph flags' state file (`ceph/flags.rs`) is the same promise for
//! flags.
//!
//! Several agents may share one state folder: each intent has its own file,
//! named by the writer's pid, its start time and a counter, and created with
//! O_EXCL; the writer holds an `flock` on it while it lives, so an intent
//! of a running agent is never taken for an orphan (the pid and its
//! `/proc` start time are checked too: a reused pid is not the writer).

use crate::target::{Action, BoxFuture};
use bounce_wire::RunId;
use bounce_wire::civil::utc;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// The journal's folder inside the state folder.
const INTENTS_DIR: &str = "intents";

#[derive(Debug, thiserror::Error)]
#[error("{}: {what}", path.display())]
pub struct IntentError {
    pub path: PathBuf,
    pub what: String,
}

fn err(path: &Path, what: impl std::fmt::Display) -> IntentError {
    IntentError {
        path: path.to_path_buf(),
        what: what.to_string(),
    }
}

/// What brings the target back, and where to ask.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Undo {
    /// `docker start ID` on the engine at `docker_host`.
    StartContainer {
        name: String,
        id: String,
        docker_host: String,
    },
    /// StartUnit on the systemd manager of `bus` (`system`, `user` or a D-Bus address).
    StartUnit { unit: String, bus: String },
}

impl std::fmt::Display for Undo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Undo::StartContainer {
                name, docker_host, ..
            } => write!(f, "start container {name} on the engine at {docker_host}"),
            Undo::StartUnit { unit, bus } => write!(f, "start {unit} on the {bus} bus"),
        }
    }
}

/// Which process wrote an intent: its pid, when it started (clock ticks
/// after boot, field 22 of `/proc/PID/stat`) and the boot it ran in, so a
/// pid the kernel has since given to another process is not taken for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    pub start_ticks: u64,
    pub boot_id: String,
}

impl Holder {
    pub fn me() -> Holder {
        let pid = std::process::id();
        Holder {
            pid,
            start_ticks: start_ticks(pid).unwrap_or(0),
            boot_id: boot_id(),
        }
    }

    /// The writer still runs (same boot, same pid, same start time).
    pub fn alive(&self) -> bool {
        self.boot_id == boot_id() && start_ticks(self.pid) == Some(self.start_ticks)
    }
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Field 22 (starttime) of `/proc/PID/stat`; the command name (field 2)
/// may hold spaces and parentheses, so count from its closing one.
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    // after ") " come fields 3.. ; starttime is field 22, the 20th of them.
    after.split_whitespace().nth(19)?.parse().ok()
}

/// One intent as it is on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    /// The target's name as the operator knows it (container or unit).
    pub target: String,
    pub action: Action,
    pub undo: Undo,
    /// When the step was about to be taken (CLOCK_REALTIME).
    pub at_unix_nanos: i64,
    /// By when the step has surely ended (a stop's timeout, and a margin):
    /// a target still up from before `at` then was never taken down.
    pub settle_by_unix_nanos: i64,
    pub run_id: RunId,
    pub holder: Holder,
}

impl Intent {
    /// What bounce did, in words: "bounce stopped nova_api at 2026-11-30
    /// 08:06:21 UTC (run R, pid P)".
    pub fn did(&self) -> String {
        let verb = match self.action {
            Action::Kill => "killed (for its restart policy to bring back)",
            _ => "stopped",
        };
        format!(
            "bounce {verb} {} at {} (run {}, pid {})",
            self.target,
            utc(self.at_unix_nanos),
            self.run_id,
            self.holder.pid
        )
    }

    /// Why it is still open, in words, for an intent whose writer is gone.
    pub fn left(&self) -> String {
        match self.action {
            Action::Kill => format!("{} and ended before seeing it run again", self.did()),
            _ => format!("{} and ended before starting it again", self.did()),
        }
    }
}

/// One open intent of this process (the key into its journal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct IntentId(u64);

/// This process's journal: it records intents and closes them.
pub struct Journal {
    state_dir: PathBuf,
    dir: PathBuf,
    run_id: RunId,
    me: Holder,
    /// Open intents: the file (locked while open) and what it says.
    open: Mutex<BTreeMap<IntentId, (PathBuf, File, Intent)>>,
}

impl Journal {
    /// The journal of one run (`run_id`) in `state_dir`; touches nothing.
    pub fn new(state_dir: &Path, run_id: RunId) -> Journal {
        Journal {
            state_dir: state_dir.to_path_buf(),
            dir: state_dir.join(INTENTS_DIR),
            run_id,
            me: Holder::me(),
            open: Mutex::new(BTreeMap::new()),
        }
    }

    /// The state folder (Ceph flags' state file lives beside the journal).
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Makes sure intents can be written, before anything restarts.
    pub fn check_writable(&self) -> Result<(), IntentError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| err(&self.dir, e))?;
        let probe = self.dir.join(format!(".probe-{}", self.me.pid));
        File::create(&probe)
            .and_then(|f| f.sync_all())
            .and_then(|_| std::fs::remove_file(&probe))
            .map_err(|e| err(&self.dir, format!("cannot write intents here: {e}")))
    }

    /// Writes the intent down (file and folder fsynced) before the step is
    /// taken; the file stays locked until [`Journal::close`].
    pub fn record(
        &self,
        target: &str,
        action: Action,
        undo: Undo,
        settle: std::time::Duration,
    ) -> Result<IntentId, IntentError> {
        let at = crate::timeline::realtime_nanos();
        let intent = Intent {
            target: target.to_string(),
            action,
            undo,
            at_unix_nanos: at,
            settle_by_unix_nanos: at.saturating_add(settle.as_nanos() as i64),
            run_id: self.run_id.clone(),
            holder: self.me.clone(),
        };
        std::fs::create_dir_all(&self.dir).map_err(|e| err(&self.dir, e))?;
        // One counter per process: journals of one process never share a name.
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let stem = format!("{}-{}-{n}", self.me.pid, self.me.start_ticks);
        let tmp = self.dir.join(format!(".{stem}.tmp"));
        let path = self.dir.join(format!("{stem}.json"));
        let file = OpenOptions::new()
            .write(true)
            .read(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| err(&tmp, e))?;
        let text = serde_json::to_vec_pretty(&intent).expect("an intent serializes");
        (&file)
            .write_all(&text)
            .and_then(|_| file.sync_all())
            .map_err(|e| err(&tmp, e))?;
        // Locked before it has its name: nobody can take it for an orphan.
        lock(&file, false).map_err(|e| err(&tmp, e))?;
        // A link, not a rename: it never replaces another intent's file.
        std::fs::hard_link(&tmp, &path).map_err(|e| err(&path, e))?;
        std::fs::remove_file(&tmp).map_err(|e| err(&tmp, e))?;
        sync_dir(&self.dir)?;
        let id = IntentId(n);
        self.open
            .lock()
            .expect("journal lock")
            .insert(id, (path, file, intent));
        Ok(id)
    }

    /// The target runs again: the intent is closed (file removed, folder fsynced).
    pub fn close(&self, id: IntentId) -> Result<(), IntentError> {
        let entry = self.open.lock().expect("journal lock").remove(&id);
        match entry {
            Some((path, _file, _)) => remove(&path, &self.dir),
            None => Ok(()),
        }
    }

    /// Intents of this process still open (a restart that did not bring
    /// its target back): the run's end undoes them.
    pub fn still_open(&self) -> Vec<(IntentId, Intent)> {
        self.open
            .lock()
            .expect("journal lock")
            .iter()
            .map(|(id, (_, _, i))| (*id, i.clone()))
            .collect()
    }
}

/// An intent found on disk by a later process.
pub struct Found {
    pub path: PathBuf,
    pub intent: Intent,
    /// Held (locked) while this process undoes it; `None`: its writer still
    /// runs (or another bounce is undoing it), leave it alone.
    claim: Option<File>,
}

impl Found {
    /// Its writer is gone: this process may undo it.
    pub fn orphaned(&self) -> bool {
        self.claim.is_some()
    }

    /// Undone: the file goes.
    pub fn clear(self) -> Result<(), IntentError> {
        let dir = self.path.parent().unwrap_or(Path::new(".")).to_path_buf();
        remove(&self.path, &dir)
    }
}

/// The intents in `state_dir`, oldest first. An unreadable intent file is
/// an error (an operator must look at it), not skipped.
pub fn scan(state_dir: &Path) -> Result<Vec<Found>, IntentError> {
    let dir = state_dir.join(INTENTS_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(err(&dir, e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| err(&dir, e))?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        // flock needs no write access: a reader that may not undo still sees.
        let mut file = match File::open(&path) {
            Ok(f) => f,
            // Closed meanwhile by its writer.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(err(&path, e)),
        };
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(|e| err(&path, e))?;
        let intent: Intent = serde_json::from_str(&text).map_err(|e| err(&path, e))?;
        let free = lock(&file, true).is_ok();
        let claim = (free && !intent.holder.alive()).then_some(file);
        found.push(Found {
            path,
            intent,
            claim,
        });
    }
    found.sort_by_key(|f| f.intent.at_unix_nanos);
    Ok(found)
}

/// flock(LOCK_EX), without waiting when `try_only`.
fn lock(file: &File, try_only: bool) -> std::io::Result<()> {
    let op = libc::LOCK_EX | if try_only { libc::LOCK_NB } else { 0 };
    // SAFETY: flock on a descriptor this File owns.
    if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn remove(path: &Path, dir: &Path) -> Result<(), IntentError> {
    match std::fs::remove_file(path) {
        Ok(()) => sync_dir(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(err(path, e)),
    }
}

/// A file's creation, rename or removal is durable once its folder is fsynced.
fn sync_dir(dir: &Path) -> Result<(), IntentError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| err(dir, e))
}

/// What a target is now, as far as undoing an intent is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// The engine or manager no longer knows it.
    Gone,
    /// Running, since then (CLOCK_REALTIME).
    Up { since_unix_nanos: i64 },
    /// On its way back by itself (a restart policy, a start job).
    ComingBack,
    /// Down; the state the engine or manager gives.
    Down(String),
}

/// The engine or manager an intent's undo speaks to (`docker/undo.rs`,
/// `systemd/undo.rs`; a fake in tests).
pub trait UndoTarget: Send + Sync {
    fn seen(&self) -> BoxFuture<'_, Result<Seen, String>>;
    /// Starts the target and waits (up to `deadline`) until it runs.
    fn start(&self, deadline: tokio::time::Instant) -> BoxFuture<'_, Result<(), String>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn undo() -> Undo {
        Undo::StartContainer {
            name: "nova_api".into(),
            id: "0123".into(),
            docker_host: "unix:///var/run/docker.sock".into(),
        }
    }

    fn scratch(label: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("bounce-intent-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn this_process_is_alive_and_a_reused_pid_is_not_the_writer() {
        let me = Holder::me();
        assert!(me.start_ticks > 0);
        assert!(me.alive());
        let reused = Holder {
            start_ticks: me.start_ticks + 1,
            ..me.clone()
        };
        assert!(!reused.alive());
        let other_boot = Holder {
            boot_id: "another-boot".into(),
            ..me
        };
        assert!(!other_boot.alive());
    }

    #[test]
    fn an_intent_is_on_disk_until_closed_and_a_live_writer_keeps_it() {
        let dir = scratch("live");
        let j = Journal::new(&dir, RunId::parse("r1").unwrap());
        j.check_writable().unwrap();
        let id = j
            .record(
                "nova_api",
                Action::StopStart,
                undo(),
                std::time::Duration::from_secs(10),
            )
            .unwrap();
        let found = scan(&dir).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].intent.target, "nova_api");
        assert_eq!(found[0].intent.undo, undo());
        assert!(!found[0].orphaned(), "its writer (this process) holds it");
        assert!(found[0].intent.left().contains("stopped nova_api at "));
        assert!(found[0].intent.left().contains("(run r1, pid "));
        drop(found);
        assert_eq!(j.still_open().len(), 1);
        j.close(id).unwrap();
        assert!(scan(&dir).unwrap().is_empty());
        assert!(j.still_open().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_intent_of_a_dead_writer_is_an_orphan_and_two_writers_do_not_clobber() {
        let dir = scratch("dead");
        let a = Journal::new(&dir, RunId::parse("ra").unwrap());
        let b = Journal::new(&dir, RunId::parse("rb").unwrap());
        a.record("a", Action::Kill, undo(), Default::default())
            .unwrap();
        b.record("b", Action::StopStart, undo(), Default::default())
            .unwrap();
        assert_eq!(scan(&dir).unwrap().len(), 2, "one file each");
        // A writer that is gone: its file, unlocked, naming a pid not alive.
        let dead = Intent {
            holder: Holder {
                pid: u32::MAX - 1,
                start_ticks: 1,
                boot_id: boot_id(),
            },
            ..scan(&dir).unwrap()[0].intent.clone()
        };
        std::fs::write(
            dir.join(INTENTS_DIR).join("9-1-0.json"),
            serde_json::to_vec(&dead).unwrap(),
        )
        .unwrap();
        let found = scan(&dir).unwrap();
        assert_eq!(found.iter().filter(|f| f.orphaned()).count(), 1);
        let orphan = found.into_iter().find(|f| f.orphaned()).unwrap();
        orphan.clear().unwrap();
        assert_eq!(scan(&dir).unwrap().len(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_damaged_intent_file_is_named_in_the_error() {
        let dir = scratch("bad");
        std::fs::create_dir_all(dir.join(INTENTS_DIR)).unwrap();
        std::fs::write(dir.join(INTENTS_DIR).join("1-1-0.json"), "{not json").unwrap();
        let e = scan(&dir).err().unwrap().to_string();
        assert!(e.contains("1-1-0.json"), "{e}");
        assert!(e.contains("line 1"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
