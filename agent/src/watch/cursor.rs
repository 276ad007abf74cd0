//! Where `watch` resumes after its own restart: the engine stamp from which
//! to replay events (the oldest restart still open, else the last event
//! seen), kept in one small file replaced atomically. A cursor older than
//! needed only replays more; what was already recorded is recognized by
//! its key and not recorded again.

use std::path::{Path, PathBuf};

pub const CURSOR_FILE: &str = "watch-cursor.json";

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Saved {
    since_unix_nanos: i64,
}

pub struct Cursor {
    path: PathBuf,
    saved: Option<i64>,
    /// What this process last wrote (the first save always writes: it
    /// says the watcher follows the engine).
    written: Option<i64>,
}

impl Cursor {
    pub fn open(dir: &Path) -> Cursor {
        let path = dir.join(CURSOR_FILE);
        let saved = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Saved>(&b).ok())
            .map(|s| s.since_unix_nanos);
        Cursor {
            path,
            saved,
            written: None,
        }
    }

    /// Where to resume from, if a previous watcher left a cursor.
    pub fn saved(&self) -> Option<i64> {
        self.saved
    }

    /// Saves `since` (written to a temporary file, fsynced, renamed into place).
    pub fn save(&mut self, since: i64) -> std::io::Result<()> {
        if self.written == Some(since) {
            return Ok(());
        }
        let tmp = self.path.with_extension("tmp");
        let text = serde_json::to_vec(&Saved {
            since_unix_nanos: since,
        })
        .expect("a cursor serializes");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&text)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        self.written = Some(since);
        Ok(())
    }
}
