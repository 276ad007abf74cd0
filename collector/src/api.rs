//! The collector's HTTP API: ingest for agents, reads for admins, /metrics
//! for Prometheus. Every request is authenticated by a bearer token: agent
//! tokens may only ingest; admin tokens may do everything. A bad request
//! gets a 4xx with its reason and writes nothing.

use crate::metrics;
use crate::sparse::SparseHistogram;
use crate::store::{PhaseHistogram, Store, Stored};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bounce_wire::ingest::{Ack, Batch, INGEST_PATH, MAX_BATCH_BYTES};
use bounce_wire::summary::{rows_from_timelines, where_time_went};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

pub struct AppState {
    /// The only writer: a thread that commits batches in groups.
    pub writer: Writer,
    /// A second connection for reads (WAL lets them run beside the writer).
    pub reader: Mutex<Store>,
    pub store_path: PathBuf,
    pub agent_tokens: Vec<AgentToken>,
    pub admin_tokens: Vec<String>,
    /// /metrics needs an admin token too.
    pub protect_metrics: bool,
    /// Also export restart counts per node (off by default: cardinality).
    pub per_node_metrics: bool,
    pub duplicates: AtomicU64,
    pub rejected: AtomicU64,
}

pub type Shared = Arc<AppState>;

pub fn router(state: Shared) -> Router {
    Router::new()
        .route(INGEST_PATH, post(ingest))
        .route("/api/v1/runs", get(list_runs))
        .route("/api/v1/runs/{run_id}", get(run_summary))
        .route("/api/v1/runs/{run_id}/histograms.hlog", get(run_hlog))
        .route("/api/v1/runs/{run_id}/nodes", get(run_nodes))
        .route("/api/v1/runs/{run_id}/export", get(run_export))
        .route("/metrics", get(metrics_page))
        .route("/api/v1/whoami", get(whoami))
        .layer(DefaultBodyLimit::max(MAX_BATCH_BYTES))
        .with_state(state)
}

type Job = (
    Batch,
    Vec<PhaseHistogram>,
    tokio::sync::oneshot::Sender<Result<Stored, String>>,
);

/// The store's single writer. Batches that arrive while a transaction is
/// being committed are committed together in the next one (group commit):
/// one fsync for many batches, each acknowledged only after its commit.
pub struct Writer {
    jobs: std::sync::mpsc::Sender<Job>,
}

/// Most batches committed in one transaction.
const GROUP_MAX: usize = 512;

impl Writer {
    pub fn start(mut store: Store) -> Writer {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut group = vec![first];
                    while group.len() < GROUP_MAX {
                        match rx.try_recv() {
                            Ok(job) => group.push(job),
                            Err(_) => break,
                        }
                    }
                    let (items, replies): (Vec<_>, Vec<_>) =
                        group.into_iter().map(|(b, h, r)| ((b, h), r)).unzip();
                    match store.ingest_group(&items) {
                        Ok(results) => {
                            for (reply, stored) in replies.into_iter().zip(results) {
                                let _ = reply.send(Ok(stored));
                            }
                        }
                        Err(e) => {
                            for reply in replies {
                                let _ = reply.send(Err(e.to_string()));
                            }
                        }
                    }
                }
            })
            .expect("start the store writer");
        Writer { jobs: tx }
    }

    async fn store(&self, batch: Batch, histograms: Vec<PhaseHistogram>) -> Result<Stored, String> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.jobs
            .send((batch, histograms, reply))
            .map_err(|_| "the store writer stopped".to_string())?;
        answer
            .await
            .map_err(|_| "the store writer stopped".to_string())?
    }
}

/// An error answer: status and reason, as JSON.
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

fn bad(why: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, why.into())
}

/// An agent token, optionally bound to the agent names it may send as
/// (token file line: `TOKEN node-*,ctl1`), so one node's token cannot
/// write another node's results.
pub struct AgentToken {
    secret: String,
    /// Name patterns (`*` matches any run of characters); None: any agent.
    agents: Option<Vec<String>>,
}

impl AgentToken {
    pub fn parse(line: &str) -> Result<AgentToken, String> {
        let mut words = line.split_whitespace();
        let secret = words.next().unwrap_or_default().to_string();
        let agents = words.next().map(|list| {
            list.split(',')
                .filter(|p| !p.is_empty())
                .map(String::from)
                .collect::<Vec<_>>()
        });
        if words.next().is_some() || agents.as_ref().is_some_and(|a| a.is_empty()) {
            return Err(format!(
                "{}...: write TOKEN or TOKEN name,name-* (one space, names separated by commas)",
                secret.chars().take(4).collect::<String>()
            ));
        }
        Ok(AgentToken { secret, agents })
    }

    fn allows(&self, agent: &str) -> bool {
        self.agents
            .as_ref()
            .is_none_or(|pats| pats.iter().any(|p| glob_match(p, agent)))
    }
}

/// `*` matches any run of characters; everything else itself.
fn glob_match(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

#[derive(PartialEq, Eq, PartialOrd, Ord, Clone, Copy)]
enum Role {
    Agent,
    Admin,
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

fn role(state: &AppState, headers: &HeaderMap) -> Option<Role> {
    let token = bearer(headers)?;
    if state
        .admin_tokens
        .iter()
        .any(|t| constant_time_eq(t.as_bytes(), token.as_bytes()))
    {
        Some(Role::Admin)
    } else if agent_token(state, token).is_some() {
        Some(Role::Agent)
    } else {
        None
    }
}

fn agent_token<'s>(state: &'s AppState, token: &str) -> Option<&'s AgentToken> {
    state
        .agent_tokens
        .iter()
        .find(|t| constant_time_eq(t.secret.as_bytes(), token.as_bytes()))
}

/// An agent token bound to names may only send as those agents (admin
/// tokens may send as any).
fn may_send_as(state: &AppState, headers: &HeaderMap, agent: &str) -> Result<(), ApiError> {
    let Some(t) = bearer(headers).and_then(|b| agent_token(state, b)) else {
        return Ok(());
    };
    if t.allows(agent) {
        Ok(())
    } else {
        Err(ApiError(
            StatusCode::FORBIDDEN,
            format!(
                "this token may only send as {}, not as {agent:?}",
                t.agents.as_deref().unwrap_or_default().join(", ")
            ),
        ))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn require(state: &AppState, headers: &HeaderMap, need: Role) -> Result<(), ApiError> {
    match role(state, headers) {
        None => Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "missing or unknown bearer token".into(),
        )),
        Some(r) if r < need => Err(ApiError(
            StatusCode::FORBIDDEN,
            "this token may only ingest".into(),
        )),
        Some(_) => Ok(()),
    }
}

async fn ingest(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Ack>, ApiError> {
    let result = async {
        require(&state, &headers, Role::Agent)?;
        let batch: Batch =
            serde_json::from_slice(&body).map_err(|e| bad(format!("body is not a batch: {e}")))?;
        may_send_as(&state, &headers, &batch.agent)?;
        let histograms = validate(&batch).map_err(bad)?;
        let seq = batch.seq;
        // Acknowledged only once committed.
        let stored = state
            .writer
            .store(batch, histograms)
            .await
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e))?;
        if let Stored::Conflict(why) = &stored {
            return Err(ApiError(StatusCode::CONFLICT, why.clone()));
        }
        if stored == Stored::Duplicate {
            state.duplicates.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Json(Ack {
            seq,
            status: match stored {
                Stored::New => "stored",
                Stored::Duplicate => "duplicate",
                Stored::Conflict(_) => unreachable!("answered above"),
            }
            .into(),
        }))
    }
    .await;
    if result.is_err() {
        state.rejected.fetch_add(1, Ordering::Relaxed);
    }
    result
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-@:".contains(c))
}

/// Everything checked before anything is written; the decoded histograms
/// come back for the store.
fn validate(b: &Batch) -> Result<Vec<PhaseHistogram>, String> {
    for (what, v) in [
        ("agent", &b.agent),
        ("run.run_id", &b.run.run_id),
        ("run.deployment", &b.run.deployment),
        ("run.scenario", &b.run.scenario),
    ] {
        if !valid_name(v) {
            return Err(format!("{what}: {v:?} is not a valid name"));
        }
    }
    if b.seq == 0 {
        return Err("seq starts at 1".into());
    }
    if b.timelines.len() > 10_000 || b.histograms.len() > 10_000 {
        return Err("too many timelines or histograms in one batch".into());
    }
    let mut expected: BTreeMap<(String, bounce_wire::Phase), u64> = BTreeMap::new();
    for (i, t) in b.timelines.iter().enumerate() {
        if t.run_id != b.run.run_id
            || t.deployment != b.run.deployment
            || t.scenario != b.run.scenario
        {
            return Err(format!("timelines[{i}] belongs to another run"));
        }
        if !valid_name(&t.service) || t.service.contains('/') {
            return Err(format!(
                "timelines[{i}].service: {:?} is not a valid name",
                t.service
            ));
        }
        for (phase, secs) in &t.phases {
            if !secs.is_finite() || *secs < 0.0 {
                return Err(format!(
                    "timelines[{i}].phases.{phase}: {secs} is not a duration"
                ));
            }
            *expected.entry((t.service.clone(), *phase)).or_default() += 1;
        }
    }
    let mut out = Vec::new();
    let mut seen: BTreeMap<(String, bounce_wire::Phase), u64> = BTreeMap::new();
    for (i, e) in b.histograms.iter().enumerate() {
        // Straight to the sparse form: no dense ~230 KiB histogram per value set.
        let h = SparseHistogram::from_v2_deflate(&e.v2_deflate)
            .map_err(|why| format!("histograms[{i}]: {why}"))?;
        if !e.sum_seconds.is_finite() || e.sum_seconds < 0.0 {
            return Err(format!("histograms[{i}].sum_seconds is not a duration"));
        }
        if seen.insert((e.service.clone(), e.phase), h.len()).is_some() {
            return Err(format!(
                "histograms[{i}]: {}/{} appears twice",
                e.service, e.phase
            ));
        }
        out.push((e.service.clone(), e.phase, h, e.sum_seconds));
    }
    if seen != expected {
        return Err("the histograms do not count the batch's timelines' phases".into());
    }
    Ok(out)
}

/// What a token may do: agents check theirs before a run starts.
/// The token's role; with `?run_id=&deployment=&scenario=&agent=`, also
/// whether the store would take that agent's batches for that run (409 and
/// why not), so an agent joining a fleet run learns it before restarting.
async fn whoami(
    State(state): State<Shared>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Result<Json<serde_json::Value>, ApiError> {
    require(&state, &headers, Role::Agent)?;
    let role = match role(&state, &headers) {
        Some(Role::Admin) => "admin",
        _ => "agent",
    };
    let q = query_pairs(uri.query().unwrap_or(""));
    if let Some(agent) = q.get("agent") {
        may_send_as(&state, &headers, agent)?;
    }
    if let Some(run_id) = q.get("run_id") {
        let get = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
        let conflict = state
            .reader
            .lock()
            .unwrap()
            .join_conflict(run_id, get("deployment"), get("scenario"), get("agent"))
            .map_err(internal)?;
        if let Some(why) = conflict {
            return Err(ApiError(StatusCode::CONFLICT, why));
        }
    }
    Ok(Json(serde_json::json!({ "role": role })))
}

/// `a=b&c=d`, percent-decoded (`+` is not a space here: bounce's agent
/// encodes everything but unreserved characters).
fn query_pairs(q: &str) -> BTreeMap<String, String> {
    let decode = |s: &str| {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%'
                && let Some(b) = s
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 3;
                continue;
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

async fn list_runs(
    State(state): State<Shared>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    require(&state, &headers, Role::Admin)?;
    let runs = state.reader.lock().unwrap().runs().map_err(internal)?;
    Ok(Json(serde_json::json!({ "runs": runs })))
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

fn known_run(state: &AppState, run_id: &str) -> Result<(), ApiError> {
    match state.reader.lock().unwrap().run_exists(run_id) {
        Ok(true) => Ok(()),
        Ok(false) => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no run {run_id:?}"),
        )),
        Err(e) => Err(internal(e)),
    }
}

async fn run_summary(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(run_id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    require(&state, &headers, Role::Admin)?;
    known_run(&state, &run_id)?;
    let (timelines, nodes) = {
        let store = state.reader.lock().unwrap();
        (
            store.run_timelines(&run_id, None).map_err(internal)?,
            store.run_agent_count(&run_id).map_err(internal)?,
        )
    };
    // One histogram at a time: a fleet run can hold thousands of series.
    let rows = rows_from_timelines(&timelines);
    let mut outcomes = BTreeMap::<bounce_wire::Outcome, u64>::new();
    for t in &timelines {
        *outcomes.entry(t.outcome).or_default() += 1;
    }
    Ok(Json(serde_json::json!({
        "run_id": run_id,
        "restarts": timelines.len(),
        "outcomes": outcomes,
        "nodes": nodes,
        "where_time_went": where_time_went(&timelines, &rows),
        "rows": rows,
    })))
}

/// Everything a report needs about one run (`bounce-collector report
/// --collector URL RUN` reads this): node facts, scenario, every timeline.
async fn run_export(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(run_id): Path<String>,
) -> Result<Json<bounce_report::RunData>, ApiError> {
    require(&state, &headers, Role::Admin)?;
    let data = state
        .reader
        .lock()
        .unwrap()
        .run_data(&run_id)
        .map_err(internal)?
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no run {run_id:?}")))?;
    Ok(Json(data))
}

async fn run_hlog(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(run_id): Path<String>,
) -> Result<Response, ApiError> {
    require(&state, &headers, Role::Admin)?;
    known_run(&state, &run_id)?;
    let timelines = state
        .reader
        .lock()
        .unwrap()
        .run_timelines(&run_id, None)
        .map_err(internal)?;
    let mut buf = Vec::new();
    // The run's histograms, rebuilt from its timelines one at a time.
    bounce_wire::hist::write_hlog_from_timelines(
        &timelines,
        &mut buf,
        SystemTime::now(),
        Duration::ZERO,
        &format!("bounce run {run_id}, merged by the collector; values in microseconds; tags are service/phase"),
    )
    .map_err(internal)?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], buf).into_response())
}

async fn run_nodes(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(run_id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    require(&state, &headers, Role::Admin)?;
    known_run(&state, &run_id)?;
    let nodes = state
        .reader
        .lock()
        .unwrap()
        .run_agents(&run_id)
        .map_err(internal)?;
    Ok(Json(
        serde_json::json!({ "run_id": run_id, "nodes": nodes }),
    ))
}

async fn metrics_page(
    State(state): State<Shared>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if state.protect_metrics {
        require(&state, &headers, Role::Admin)?;
    }
    let st = state.clone();
    let text = tokio::task::spawn_blocking(move || metrics::render(&st))
        .await
        .map_err(internal)?
        .map_err(internal)?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_name_patterns() {
        for (p, name, ok) in [
            ("node-a", "node-a", true),
            ("node-a", "node-ab", false),
            ("node-*", "node-a", true),
            ("node-*", "node-", true),
            ("node-*", "nodes", false),
            ("*-ctl", "eu1-ctl", true),
            ("*-ctl", "eu1-ctl2", false),
            ("eu*-cmp*", "eu1-cmp07", true),
            ("eu*-cmp*", "eu1-ctl07", false),
            ("a*a", "a", false),
            ("*", "anything", true),
        ] {
            assert_eq!(glob_match(p, name), ok, "{p} vs {name}");
        }
    }

    #[test]
    fn token_lines() {
        let t = AgentToken::parse("secret-0123456789abcdef node-*,ctl1").unwrap();
        assert!(t.allows("node-7") && t.allows("ctl1") && !t.allows("ctl2"));
        assert!(
            AgentToken::parse("secret-0123456789abcdef")
                .unwrap()
                .allows("x")
        );
        assert!(AgentToken::parse("secret-0123456789abcdef a b").is_err());
        assert!(AgentToken::parse("secret-0123456789abcdef ,").is_err());
    }
}
