//! The audit log: one JSON line per admin request (who, from where, what,
//! which run, allowed or refused), to a file or stderr, so a security
//! review can answer "who read this run, who paused that one". Callers are
//! named by their credential's label (`admin token 2`, `node ctl9`), never
//! by a secret.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

pub struct Audit {
    out: Mutex<Box<dyn Write + Send>>,
}

/// One admin request, as it was decided.
pub struct Entry<'a> {
    pub who: &'a str,
    pub from: Option<SocketAddr>,
    pub method: &'a str,
    pub path: &'a str,
    pub allowed: bool,
}

impl Audit {
    /// `-`: stderr; otherwise appended to the file (created if missing).
    pub fn open(target: &Path) -> std::io::Result<Audit> {
        let out: Box<dyn Write + Send> = if target == Path::new("-") {
            Box::new(std::io::stderr())
        } else {
            Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(target)?,
            )
        };
        Ok(Audit {
            out: Mutex::new(out),
        })
    }

    pub fn record(&self, e: &Entry) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let line = serde_json::json!({
            "ts": bounce_wire::civil::utc(now.as_nanos() as i64),
            "who": e.who,
            "from": e.from.map(|a| a.to_string()),
            "method": e.method,
            "path": e.path,
            "run_id": run_of(e.path),
            "allowed": e.allowed,
        });
        let mut out = self.out.lock().unwrap();
        // One write per line, so lines from concurrent requests never interleave.
        let _ = out.write_all(format!("{line}\n").as_bytes());
        let _ = out.flush();
    }
}

/// The run a path is about (`/api/v1/runs/{id}/...`), if any.
fn run_of(path: &str) -> Option<&str> {
    path.strip_prefix("/api/v1/runs/")
        .map(|rest| rest.split('/').next().unwrap_or(rest))
        .filter(|id| !id.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_name_the_run() {
        assert_eq!(run_of("/api/v1/runs/r1/export"), Some("r1"));
        assert_eq!(run_of("/api/v1/runs/r1"), Some("r1"));
        assert_eq!(run_of("/api/v1/runs"), None);
        let dir = std::env::temp_dir().join(format!("bounce-audit-{}", std::process::id()));
        let audit = Audit::open(&dir).unwrap();
        audit.record(&Entry {
            who: "admin token 1",
            from: Some("127.0.0.1:5".parse().unwrap()),
            method: "GET",
            path: "/api/v1/runs/r1/export",
            allowed: true,
        });
        let text = std::fs::read_to_string(&dir).unwrap();
        std::fs::remove_file(&dir).unwrap();
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["who"], "admin token 1");
        assert_eq!(v["run_id"], "r1");
        assert_eq!(v["allowed"], true);
    }
}
