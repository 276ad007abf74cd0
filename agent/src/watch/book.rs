//! What a watcher last knew of each container (`watch-containers.json`
//! beside the cursor, written whole or not at all, at most
//! [`MAX_CONTAINERS`] entries), so the next watcher can tell from the
//! containers' own state (`away.rs`) a restart whose events the engine no
//! longer holds. An entry is the container's state as last read, moved on
//! by every `start` event the watcher sees; the book is written before the
//! cursor, so it never lags what the cursor says was seen (a restart the
//! last watcher saw start is not found again from the stamps).

use crate::durable::{WriteError, write_whole};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const CONTAINERS_FILE: &str = "watch-containers.json";
/// The most containers kept (a node runs a few hundred at most); past it
/// the longest-running are let go (a restart of theirs while no watcher
/// ran is then not found from the stamps).
pub const MAX_CONTAINERS: usize = 4096;

/// One container's state stamps, as last known (unix nanos).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Known {
    pub id: String,
    pub image: String,
    /// `State.StartedAt`, or the stamp of the last `start` event seen.
    pub started_at: i64,
    /// `RestartCount` when the state was read (not known from events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_count: Option<i64>,
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Saved {
    saved_unix_nanos: i64,
    containers: BTreeMap<String, Known>,
}

/// The containers' last known state by name: what the previous watcher
/// left, moved on by what this one reads and sees.
pub struct ContainerBook {
    path: PathBuf,
    previous_at: Option<i64>,
    now: BTreeMap<String, Known>,
    dirty: bool,
}

impl ContainerBook {
    /// The book in `dir`, read back. A missing file is a first start; an
    /// unreadable one is said and starts afresh.
    pub fn open(dir: &Path) -> ContainerBook {
        let path = dir.join(CONTAINERS_FILE);
        let saved = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<Saved>(&bytes) {
                Ok(s) => Some(s),
                Err(e) => {
                    eprintln!(
                        "watch: {}: {e}; containers' restarts the engine no longer holds are not known",
                        path.display()
                    );
                    None
                }
            },
            Err(_) => None,
        };
        ContainerBook {
            path,
            previous_at: saved.as_ref().map(|s| s.saved_unix_nanos),
            now: saved.map(|s| s.containers).unwrap_or_default(),
            dirty: false,
        }
    }

    /// When the book was last written (by the previous watcher, at start).
    pub fn previous_at(&self) -> Option<i64> {
        self.previous_at
    }

    /// What is known of container `name`.
    pub fn last(&self, name: &str) -> Option<&Known> {
        self.now.get(name)
    }

    /// The names of the containers known.
    pub fn names(&self) -> Vec<String> {
        self.now.keys().cloned().collect()
    }

    /// Every container as read now replaces what was known (containers
    /// gone are forgotten).
    pub fn replace(&mut self, read: BTreeMap<String, Known>) {
        if read != self.now {
            self.now = read;
            self.dirty = true;
        }
        self.bound();
    }

    /// A `start` event seen: the container's entry moves on to it.
    pub fn started(&mut self, name: &str, id: &str, image: &str, at: i64) {
        let moved = self.now.get(name).is_none_or(|k| at > k.started_at);
        if moved {
            let known = Known {
                id: id.to_string(),
                image: image.to_string(),
                started_at: at,
                restart_count: None,
            };
            self.now.insert(name.to_string(), known);
            self.dirty = true;
            self.bound();
        }
    }

    fn bound(&mut self) {
        while self.now.len() > MAX_CONTAINERS {
            let oldest = self.now.iter().min_by_key(|(_, k)| k.started_at);
            let name = oldest.map(|(n, _)| n.clone()).expect("not empty");
            self.now.remove(&name);
            self.dirty = true;
        }
    }

    /// Writes the book if it changed since it was last written.
    pub fn save(&mut self) -> Result<(), WriteError> {
        if !self.dirty {
            return Ok(());
        }
        let saved = Saved {
            saved_unix_nanos: crate::timeline::realtime_nanos(),
            containers: self.now.clone(),
        };
        let bytes = serde_json::to_vec(&saved).expect("the book serializes");
        write_whole(&self.path, &bytes)?;
        self.dirty = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(what: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("bounce-cbook-{what}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_next_watcher_reads_what_the_last_one_knew_and_starts_move_it_on() {
        let dir = scratch("reads");
        let mut book = ContainerBook::open(&dir);
        assert!(book.previous_at().is_none());
        book.started("nova_api", "c1", "img", 100);
        // An older start (replayed) does not move it back.
        book.started("nova_api", "c0", "img", 50);
        book.save().unwrap();
        let next = ContainerBook::open(&dir);
        assert!(next.previous_at().is_some());
        assert_eq!(next.last("nova_api").map(|k| k.started_at), Some(100));
        assert_eq!(next.last("nova_api").map(|k| k.id.as_str()), Some("c1"));
        std::fs::write(dir.join(CONTAINERS_FILE), b"{\"sav").unwrap();
        assert!(ContainerBook::open(&dir).last("nova_api").is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_book_keeps_at_most_its_bound_the_latest_started() {
        let dir = scratch("bound");
        let mut book = ContainerBook::open(&dir);
        for i in 0..=MAX_CONTAINERS as i64 {
            book.started(&format!("c{i}"), "id", "img", i + 1);
        }
        assert_eq!(book.now.len(), MAX_CONTAINERS);
        assert!(book.last("c0").is_none());
        assert!(book.last(&format!("c{MAX_CONTAINERS}")).is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
