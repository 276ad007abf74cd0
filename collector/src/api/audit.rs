//! The audit log: one JSON line per admin request (who, from where, what,
//! which run or fleet run, whether the credential was allowed, and the
//! answer's status), to a file or stderr, so a security review can answer
//! "who read this run, who paused that one, who was refused". Callers are
//! named by their credential's label (`admin token 2`, `node ctl9`), never
//! by a secret. The extractors decide (`decided`, `allowed`); the
//! middleware writes the line once the answer is known. The file is
//! opened again on SIGHUP (`reopen`), for log rotation.

use crate::api::peer::Peer;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

pub struct Audit {
    target: PathBuf,
    out: Mutex<Box<dyn Write + Send>>,
}

/// One admin request, as it was decided and answered.
pub struct Entry<'a> {
    pub who: &'a str,
    pub from: Option<SocketAddr>,
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub allowed: bool,
    pub status: u16,
}

impl Audit {
    /// `-`: stderr; otherwise appended to the file (created if missing).
    pub fn open(target: &Path) -> std::io::Result<Audit> {
        Ok(Audit {
            target: target.into(),
            out: Mutex::new(writer(target)?),
        })
    }

    /// Opens the file again (after logrotate moved it away); stderr stays.
    /// On an error the old file stays in use.
    pub fn reopen(&self) -> std::io::Result<()> {
        if self.target != Path::new("-") {
            *self.out.lock().unwrap() = writer(&self.target)?;
        }
        Ok(())
    }

    pub fn target(&self) -> &Path {
        &self.target
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
            "query": e.query.map(redacted),
            "run_id": run_of(e.path),
            "allowed": e.allowed,
            "status": e.status,
        });
        let mut out = self.out.lock().unwrap();
        // One write per line, so lines from concurrent requests never interleave.
        let _ = out.write_all(format!("{line}\n").as_bytes());
        let _ = out.flush();
    }
}

fn writer(target: &Path) -> std::io::Result<Box<dyn Write + Send>> {
    Ok(if target == Path::new("-") {
        Box::new(std::io::stderr())
    } else {
        Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(target)?,
        )
    })
}

/// The run (or fleet run) a path is about: `/api/v1/runs/{id}/...`,
/// `/api/v1/fleets/{id}/...`.
fn run_of(path: &str) -> Option<&str> {
    ["/api/v1/runs/", "/api/v1/fleets/"]
        .iter()
        .find_map(|prefix| path.strip_prefix(prefix))
        .map(|rest| rest.split('/').next().unwrap_or(rest))
        .filter(|id| !id.is_empty())
}

/// The query as asked, with the value of any parameter whose name sounds
/// like a secret replaced (the API takes none, but a client may send one).
fn redacted(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if secret_like(k) => format!("{k}=REDACTED"),
            _ => pair.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn secret_like(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["token", "secret", "password", "passwd", "key", "auth"]
        .iter()
        .any(|s| k.contains(s))
}

/// What the extractors decided about an admin request, for its line.
#[derive(Clone, Default)]
struct Slot(Arc<Mutex<Option<Decision>>>);

struct Decision {
    who: String,
    allowed: bool,
}

/// The request is an admin request by `who` (its credential's label, or
/// `unknown`): it gets a line, refused unless `allowed` follows.
pub fn decided(parts: &Parts, who: &str) {
    if let Some(slot) = parts.extensions.get::<Slot>() {
        *slot.0.lock().unwrap() = Some(Decision {
            who: who.into(),
            allowed: false,
        });
    }
}

/// The admin credential was allowed to ask this.
pub fn allowed(parts: &Parts) {
    if let Some(Slot(slot)) = parts.extensions.get::<Slot>()
        && let Some(d) = slot.lock().unwrap().as_mut()
    {
        d.allowed = true;
    }
}

/// Around every request: a line for those the extractors found to be
/// admin requests, with the status they were answered.
pub async fn middleware(State(audit): State<Arc<Audit>>, mut req: Request, next: Next) -> Response {
    let slot = Slot::default();
    req.extensions_mut().insert(slot.clone());
    let from = req.extensions().get::<Peer>().map(|p| p.addr);
    let (method, uri) = (req.method().clone(), req.uri().clone());
    let answer = next.run(req).await;
    let decision = slot.0.lock().unwrap().take();
    if let Some(d) = decision {
        audit.record(&Entry {
            who: &d.who,
            from,
            method: method.as_str(),
            path: uri.path(),
            query: uri.query(),
            allowed: d.allowed,
            status: answer.status().as_u16(),
        });
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_name_the_run_and_keep_the_query_without_secrets() {
        assert_eq!(run_of("/api/v1/runs/r1/export"), Some("r1"));
        assert_eq!(run_of("/api/v1/runs/r1"), Some("r1"));
        assert_eq!(run_of("/api/v1/fleets/f1/pause"), Some("f1"));
        assert_eq!(run_of("/api/v1/runs"), None);
        assert_eq!(
            redacted("deployment=d&token=abc&since=1&api_key=x"),
            "deployment=d&token=REDACTED&since=1&api_key=REDACTED"
        );
        let file = std::env::temp_dir().join(format!("bounce-audit-{}", std::process::id()));
        let moved = file.with_extension("1");
        let audit = Audit::open(&file).unwrap();
        let entry = |path| Entry {
            who: "admin token 1",
            from: Some("127.0.0.1:5".parse().unwrap()),
            method: "GET",
            path,
            query: Some("deployment=d"),
            allowed: true,
            status: 200,
        };
        audit.record(&entry("/api/v1/runs/r1/export"));
        // Rotated: moved away, then reopened on SIGHUP.
        std::fs::rename(&file, &moved).unwrap();
        audit.reopen().unwrap();
        audit.record(&entry("/api/v1/fleets/f1/pause"));
        let old = std::fs::read_to_string(&moved).unwrap();
        let new = std::fs::read_to_string(&file).unwrap();
        std::fs::remove_file(&file).unwrap();
        std::fs::remove_file(&moved).unwrap();
        let v: serde_json::Value = serde_json::from_str(old.trim()).unwrap();
        assert_eq!(v["who"], "admin token 1");
        assert_eq!(v["run_id"], "r1");
        assert_eq!(v["allowed"], true);
        assert_eq!(v["status"], 200);
        assert_eq!(v["query"], "deployment=d");
        let v: serde_json::Value = serde_json::from_str(new.trim()).unwrap();
        assert_eq!(v["run_id"], "f1");
    }
}
