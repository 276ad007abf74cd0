//! The audit log: one JSON line per admin request (who, from where, what,
//! which run or fleet run, whether the credential was allowed, and the
//! answer's status), to a file or stderr, so a security review can answer
//! "who read this run, who paused that one, who was refused". Callers are
//! named by their credential's label (`admin token 2`, `node ctl9`), never
//! by a secret. The extractors decide (`decided`, `allowed`); the
//! middleware writes the line once the answer is known, or, for a request
//! that never got one (cut off by the request timeout, whose 408 the
//! listener sends, or its client gone), when it is dropped, saying so.
//! The file is opened again on SIGHUP (`reopen`), for log rotation.

use crate::api::peer::{Deadline, Peer};
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
    /// The answer's status; None when none was sent (the client went away).
    pub status: Option<u16>,
    /// How a request that got no answer of its own ended.
    pub ended: Option<&'a str>,
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
        let mut line = serde_json::json!({
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
        if let Some(ended) = e.ended {
            line["ended"] = ended.into();
        }
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
/// admin requests, with the status they were answered, or how they ended
/// without an answer.
pub async fn middleware(State(audit): State<Arc<Audit>>, mut req: Request, next: Next) -> Response {
    let slot = Slot::default();
    req.extensions_mut().insert(slot.clone());
    let mut line = Pending {
        audit,
        slot,
        from: req.extensions().get::<Peer>().map(|p| p.addr),
        deadline: req.extensions().get::<Deadline>().copied(),
        method: req.method().clone(),
        uri: req.uri().clone(),
    };
    let answer = next.run(req).await;
    line.write(Some(answer.status().as_u16()), None);
    answer
}

/// An admin request's line until it is written: by the middleware with
/// the answer, or on drop when the request was cut off before one.
struct Pending {
    audit: Arc<Audit>,
    slot: Slot,
    from: Option<SocketAddr>,
    deadline: Option<Deadline>,
    method: axum::http::Method,
    uri: axum::http::Uri,
}

impl Pending {
    /// Writes the line once, if the extractors decided the request is one.
    fn write(&mut self, status: Option<u16>, ended: Option<&str>) {
        let Some(d) = self.slot.0.lock().unwrap().take() else {
            return;
        };
        self.audit.record(&Entry {
            who: &d.who,
            from: self.from,
            method: self.method.as_str(),
            path: self.uri.path(),
            query: self.uri.query(),
            allowed: d.allowed,
            status,
            ended,
        });
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        match self.deadline {
            Some(d) if tokio::time::Instant::now() >= d.at => {
                let why = format!("timed out (--request-timeout-secs {})", d.after.as_secs());
                self.write(Some(408), Some(&why));
            }
            _ => self.write(
                None,
                Some("no answer: the connection closed (or the collector stopped) first"),
            ),
        }
    }
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
            status: Some(200),
            ended: None,
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

    /// An admin request whose handler never answers: cut off by the
    /// listener's timeout (as `listen` does), or dropped earlier (its
    /// client went away). Each gets its line.
    #[tokio::test(start_paused = true)]
    async fn a_request_cut_off_before_its_answer_is_recorded_with_how_it_ended() {
        use axum::Router;
        use axum::body::Body;
        use std::time::Duration;
        use tower::ServiceExt;
        let file = std::env::temp_dir().join(format!("bounce-audit-cut-{}", std::process::id()));
        let audit = Arc::new(Audit::open(&file).unwrap());
        let app = Router::new()
            .route(
                "/api/v1/fleets/{run}/pause",
                axum::routing::post(|parts: Parts| async move {
                    decided(&parts, "admin token 1");
                    allowed(&parts);
                    std::future::pending::<()>().await
                }),
            )
            .route(
                "/metrics",
                axum::routing::get(|| async { std::future::pending::<()>().await }),
            )
            .layer(axum::middleware::from_fn_with_state(
                audit.clone(),
                middleware,
            ));
        let limit = Duration::from_secs(60);
        let ask = |path: &str, cut: Duration| {
            let req = Request::builder()
                .method("POST")
                .uri(path)
                .extension(Deadline {
                    at: tokio::time::Instant::now() + limit,
                    after: limit,
                })
                .body(Body::empty())
                .unwrap();
            tokio::time::timeout(cut, app.clone().oneshot(req))
        };
        assert!(ask("/api/v1/fleets/f1/pause", limit).await.is_err());
        assert!(
            ask("/api/v1/fleets/f2/pause", Duration::from_secs(1))
                .await
                .is_err()
        );
        // Not an admin request: no line, answered or not.
        let req = Request::builder()
            .uri("/metrics")
            .body(Body::empty())
            .unwrap();
        assert!(
            tokio::time::timeout(limit, app.clone().oneshot(req))
                .await
                .is_err()
        );
        let text = std::fs::read_to_string(&file).unwrap();
        std::fs::remove_file(&file).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["run_id"], "f1");
        assert_eq!(lines[0]["status"], 408);
        assert_eq!(lines[0]["ended"], "timed out (--request-timeout-secs 60)");
        assert_eq!(lines[0]["allowed"], true);
        assert_eq!(lines[1]["run_id"], "f2");
        assert!(lines[1]["status"].is_null(), "{text}");
        assert!(
            lines[1]["ended"].as_str().unwrap().starts_with("no answer"),
            "{text}"
        );
    }
}
