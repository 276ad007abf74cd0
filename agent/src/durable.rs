//! Writing the run folder so that a crash, a full file system or one made
//! read-only leaves whole files and whole lines, never half of one: files
//! are written beside their place, fsynced and renamed over it; a line is
//! appended in one write, fsynced, and cut back off if the write failed.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// What could not be written, where.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}{}", path.display(), cut.as_deref().unwrap_or_default())]
pub struct WriteError {
    pub path: PathBuf,
    pub source: std::io::Error,
    /// When a failed append could not be cut back off (the reader skips a
    /// torn last line): what happened.
    cut: Option<String>,
}

impl WriteError {
    pub fn new(path: &Path, source: std::io::Error) -> WriteError {
        WriteError {
            path: path.to_path_buf(),
            source,
            cut: None,
        }
    }
}

/// Writes `path` whole or not at all: `path.tmp` first, fsynced, renamed
/// over `path`, then the folder fsynced so the rename itself survives a
/// crash. On failure the temporary file is removed and `path` is as it was.
pub fn write_whole(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let written = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(WriteError::new(&tmp, e));
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(WriteError::new(path, e));
    }
    sync_dir(path)
}

fn sync_dir(path: &Path) -> Result<(), WriteError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| WriteError::new(dir, e))
}

/// What [`LineFile::open`] found at the end of the file it resumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tail {
    /// Empty, or ending in a newline.
    Whole,
    /// Last line `line` was a whole line missing only its newline: added.
    Completed { line: usize },
    /// Last line `line` was torn (`bytes` long, not a whole line): cut off.
    Cut { line: usize, bytes: u64 },
}

/// An append-only file of lines whose every line is whole: `len` is the
/// length after the last line known written and fsynced.
pub struct LineFile {
    path: PathBuf,
    len: u64,
}

impl LineFile {
    /// Creates the file; it must not exist yet.
    pub fn create(path: &Path) -> Result<LineFile, WriteError> {
        OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(path)
            .map_err(|e| WriteError::new(path, e))?;
        sync_dir(path)?;
        Ok(LineFile {
            path: path.to_path_buf(),
            len: 0,
        })
    }

    /// Opens the file to append to, creating it if missing (a watcher's
    /// day resumed after its restart). A last line without its newline
    /// (the writer was killed mid-line, or a crash lost its end) would be
    /// glued to the next line appended, leaving a bad line mid-file that
    /// breaks every reader: it is completed with its newline when
    /// `is_whole` accepts it, cut off otherwise; [`Tail`] says which.
    pub fn open(
        path: &Path,
        is_whole: impl Fn(&[u8]) -> bool,
    ) -> Result<(LineFile, Tail), WriteError> {
        let err = |e| WriteError::new(path, e);
        let mut f = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(err)?;
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).map_err(err)?;
        let kept = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let torn = &bytes[kept..];
        let line = bytes[..kept].iter().filter(|b| **b == b'\n').count() + 1;
        let tail = if torn.is_empty() {
            Tail::Whole
        } else if is_whole(torn) {
            f.write_all(b"\n")
                .and_then(|()| f.sync_data())
                .map_err(err)?;
            Tail::Completed { line }
        } else {
            f.set_len(kept as u64)
                .and_then(|()| f.sync_data())
                .map_err(err)?;
            Tail::Cut {
                line,
                bytes: torn.len() as u64,
            }
        };
        let len = f.metadata().map_err(err)?.len();
        let file = LineFile {
            path: path.to_path_buf(),
            len,
        };
        Ok((file, tail))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `line` (which ends in a newline) in one write and fsyncs
    /// it. The file is opened for each line: the run holds no handle
    /// between restarts (a read-only remount is possible, the count of
    /// open files stays flat). If the write or the fsync fails, whatever
    /// part of the line reached the file is cut off again.
    pub fn append(&mut self, line: &[u8]) -> Result<(), WriteError> {
        debug_assert!(line.ends_with(b"\n"));
        let mut opened = None;
        let result = (|| {
            let f = opened.insert(OpenOptions::new().append(true).open(&self.path)?);
            f.write_all(line)?;
            f.sync_data()
        })();
        match result {
            Ok(()) => {
                self.len += line.len() as u64;
                Ok(())
            }
            Err(source) => {
                let cut = opened.map(|f| self.cut_back(&f)).and_then(Result::err);
                Err(WriteError {
                    path: self.path.clone(),
                    source,
                    cut,
                })
            }
        }
    }

    /// Truncates to the last whole line (a no-op when nothing reached the file).
    fn cut_back(&self, f: &File) -> Result<(), String> {
        let now = f.metadata().map(|m| m.len()).unwrap_or(u64::MAX);
        if now == self.len {
            return Ok(());
        }
        f.set_len(self.len)
            .and_then(|()| f.sync_data())
            .map_err(|e| {
                format!(
                    "; cutting the part written back to {} bytes failed too ({e}): readers skip the torn last line",
                    self.len
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    fn dir(label: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("bounce-durable-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }

    #[test]
    fn a_whole_file_replaces_the_old_one_and_leaves_no_temporary() {
        let d = dir("whole");
        let path = d.0.join("summary.json");
        write_whole(&path, b"one").unwrap();
        write_whole(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(&d.0).unwrap().collect();
        assert_eq!(names.len(), 1);
        // A folder that is gone: the error names the temporary file.
        let gone = d.0.join("no/such/summary.json");
        let e = write_whole(&gone, b"x").unwrap_err().to_string();
        assert!(e.contains("no/such/summary.json.tmp: No such file"), "{e}");
    }

    #[test]
    fn lines_append_and_a_file_that_went_away_is_an_error_naming_it() {
        let d = dir("lines");
        let path = d.0.join("timelines.jsonl");
        let mut f = LineFile::create(&path).unwrap();
        f.append(b"{\"a\":1}\n").unwrap();
        f.append(b"{\"a\":2}\n").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"a\":1}\n{\"a\":2}\n");
        assert!(LineFile::create(&path).is_err(), "never over a run");
        std::fs::remove_file(&path).unwrap();
        let e = f.append(b"{}\n").unwrap_err().to_string();
        assert!(e.contains("timelines.jsonl: No such file"), "{e}");
    }

    #[test]
    fn a_resumed_file_never_glues_a_new_line_to_a_torn_one() {
        let d = dir("resume");
        let path = d.0.join("timelines.jsonl");
        let json = |l: &[u8]| serde_json::from_slice::<serde_json::Value>(l).is_ok();
        // Missing: created, nothing to do.
        let (_, tail) = LineFile::open(&path, json).unwrap();
        assert_eq!(tail, Tail::Whole);
        // Killed mid-line: the torn tail is cut, the next line starts clean.
        std::fs::write(&path, b"{\"a\":1}\n{\"a\":2}\n{\"a\":").unwrap();
        let (mut f, tail) = LineFile::open(&path, json).unwrap();
        assert_eq!(tail, Tail::Cut { line: 3, bytes: 5 });
        f.append(b"{\"a\":3}\n").unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n"
        );
        // A whole record missing only its newline is kept, completed.
        std::fs::write(&path, b"{\"a\":1}\n{\"a\":2}").unwrap();
        let (mut f, tail) = LineFile::open(&path, json).unwrap();
        assert_eq!(tail, Tail::Completed { line: 2 });
        f.append(b"{\"a\":3}\n").unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n"
        );
        // Whole lines are left as they are.
        let (_, tail) = LineFile::open(&path, json).unwrap();
        assert_eq!(tail, Tail::Whole);
        // Only a torn line, no whole one: cut to empty.
        std::fs::write(&path, b"{\"a\"").unwrap();
        let (_, tail) = LineFile::open(&path, json).unwrap();
        assert_eq!(tail, Tail::Cut { line: 1, bytes: 4 });
        assert_eq!(std::fs::read(&path).unwrap(), b"");
    }
}
