//! What a watcher last knew of each unit it follows, per manager, kept on
//! disk (`watch-units.json` beside the cursor, written whole or not at
//! all) so the next watcher can tell, from the units' own stamps
//! (`systemd/away.rs`), what they did while no watcher ran. A unit's entry never
//! runs ahead of what was recorded: while one of its restarts is open or
//! followed, the entry keeps the stamps from before it (a watcher killed
//! meanwhile leaves it to be found again; the record's key says whether it
//! was written). Monotonic stamps mean nothing after a reboot: the book
//! names its boot and is ignored on another.

use crate::durable::{WriteError, write_whole};
use crate::systemd::away::Known;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const UNITS_FILE: &str = "watch-units.json";

/// One unit's stamps as written (the invocation in hex).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Entry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exit_us: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    n_restarts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    invocation: Option<String>,
}

impl From<&Known> for Entry {
    fn from(k: &Known) -> Entry {
        Entry {
            exit_us: k.exit_us,
            n_restarts: k.n_restarts,
            invocation: k
                .invocation
                .map(|id| id.iter().map(|b| format!("{b:02x}")).collect()),
        }
    }
}

impl From<&Entry> for Known {
    fn from(e: &Entry) -> Known {
        let invocation = e.invocation.as_deref().and_then(|hex| {
            let bytes: Option<Vec<u8>> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                .collect();
            bytes?.try_into().ok()
        });
        Known {
            exit_us: e.exit_us,
            n_restarts: e.n_restarts,
            invocation,
        }
    }
}

/// Units by name, per manager (its bus, as the config names it).
type Managers = BTreeMap<String, BTreeMap<String, Entry>>;

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Saved {
    boot_id: String,
    saved_unix_nanos: i64,
    managers: Managers,
}

/// The units' last known stamps: what the previous watcher left (this
/// boot's), and what this one knows, saved when it changed.
pub struct UnitBook {
    path: PathBuf,
    boot_id: String,
    previous: Managers,
    previous_at: Option<i64>,
    now: Managers,
    dirty: bool,
}

impl UnitBook {
    /// The book in `dir`, read back. A missing file is a first start; an
    /// unreadable one or another boot's is said and starts afresh.
    pub fn open(dir: &Path) -> UnitBook {
        let path = dir.join(UNITS_FILE);
        let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let saved = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<Saved>(&bytes) {
                Ok(s) if s.boot_id == boot_id => Some(s),
                Ok(_) => {
                    eprintln!(
                        "watch: {}: written before the node's last boot: units' restarts since are not known",
                        path.display()
                    );
                    None
                }
                Err(e) => {
                    eprintln!(
                        "watch: {}: {e}; units' restarts while no watcher ran are not known",
                        path.display()
                    );
                    None
                }
            },
            Err(_) => None,
        };
        let previous_at = saved.as_ref().map(|s| s.saved_unix_nanos);
        let previous = saved.map(|s| s.managers).unwrap_or_default();
        UnitBook {
            path,
            boot_id,
            now: previous.clone(),
            previous,
            previous_at,
            dirty: false,
        }
    }

    /// When the previous watcher last saved the book, if it did this boot.
    pub fn previous_at(&self) -> Option<i64> {
        self.previous_at
    }

    /// What the previous watcher last knew of `unit` on `bus`.
    pub(super) fn last(&self, bus: &str, unit: &str) -> Option<Known> {
        self.previous.get(bus)?.get(unit).map(Known::from)
    }

    /// What is known of `unit` now, every restart up to it handed on.
    pub(super) fn set(&mut self, bus: &str, unit: &str, known: &Known) {
        let entry = Entry::from(known);
        let units = self.now.entry(bus.to_string()).or_default();
        if units.get(unit) != Some(&entry) {
            units.insert(unit.to_string(), entry);
            self.dirty = true;
        }
    }

    /// Writes the book if it changed since it was last written.
    pub fn save(&mut self) -> Result<(), WriteError> {
        if !self.dirty {
            return Ok(());
        }
        let saved = Saved {
            boot_id: self.boot_id.clone(),
            saved_unix_nanos: crate::timeline::realtime_nanos(),
            managers: self.now.clone(),
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
        let dir = std::env::temp_dir().join(format!("bounce-book-{what}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    const KNOWN: Known = Known {
        exit_us: Some(1234),
        n_restarts: Some(2),
        invocation: Some([0xab; 16]),
    };

    #[test]
    fn the_next_watcher_reads_what_the_last_one_knew() {
        let dir = scratch("reads");
        let mut book = UnitBook::open(&dir);
        assert_eq!(book.last("user", "a.service"), None);
        book.set("user", "a.service", &KNOWN);
        book.save().unwrap();
        let mut next = UnitBook::open(&dir);
        assert_eq!(next.last("user", "a.service"), Some(KNOWN));
        assert_eq!(next.last("system", "a.service"), None);
        assert!(next.previous_at().is_some());
        // Unchanged: nothing to write, what the last watcher knew is kept.
        next.set("user", "a.service", &KNOWN);
        assert!(!next.dirty);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn another_boots_book_or_an_unreadable_one_is_not_compared() {
        let dir = scratch("boot");
        let mut book = UnitBook::open(&dir);
        book.set("user", "a.service", &KNOWN);
        book.boot_id = "an-earlier-boot".into();
        book.save().unwrap();
        assert_eq!(UnitBook::open(&dir).last("user", "a.service"), None);
        std::fs::write(dir.join(UNITS_FILE), b"{\"boot").unwrap();
        assert_eq!(UnitBook::open(&dir).last("user", "a.service"), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
