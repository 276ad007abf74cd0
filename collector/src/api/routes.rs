//! The routes and their handlers. Authentication, the run id and the store
//! come checked from the extractors (`extract`); a handler reads or stores
//! and shapes the answer.

use crate::api::audit;
use crate::api::error::{ApiError, bad, internal, no_run};
use crate::api::extract::{Admin, AgentCaller, Authenticated, MetricsReader, RunRead};
use crate::api::query;
use crate::api::state::Shared;
use crate::metrics::{self, Exposition};
use crate::store::Stored;
use crate::validate;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bounce_wire::RunData;
use bounce_wire::ingest::{Ack, Batch, INGEST_PATH, MAX_BATCH_BYTES};
use bounce_wire::summary::{rows_from_timelines, where_time_went};
use http_body_util::BodyExt;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

pub fn router(state: Shared) -> Router {
    Router::new()
        .route(INGEST_PATH, post(ingest))
        .route("/api/v1/runs", get(list_runs))
        .route("/api/v1/runs/{run_id}", get(run_summary))
        .route("/api/v1/runs/{run_id}/histograms.hlog", get(run_hlog))
        .route("/api/v1/runs/{run_id}/nodes", get(run_nodes))
        .route("/api/v1/runs/{run_id}/export", get(run_export))
        .route("/api/v1/compacted", get(compacted))
        .route("/metrics", get(metrics_page))
        .route("/api/v1/whoami", get(whoami))
        .layer(DefaultBodyLimit::max(MAX_BATCH_BYTES))
        .merge(crate::api::fleet::routes())
        .layer(axum::middleware::from_fn_with_state(
            state.audit.clone(),
            audit::middleware,
        ))
        .with_state(state)
}

/// Every refusal counts in `bounce_collector_batches_total{result="rejected"}`,
/// a bad token included, so the token is checked inside, and before the
/// body is read: a refused caller never gets to send 4 MiB.
async fn ingest(
    State(state): State<Shared>,
    caller: Result<AgentCaller, ApiError>,
    body: Body,
) -> Result<Json<Ack>, ApiError> {
    let result = store_batch(&state, caller, body).await;
    if result.is_err() {
        state.counters.rejected.fetch_add(1, Ordering::Relaxed);
    }
    result.map(Json)
}

async fn store_batch(
    state: &Shared,
    caller: Result<AgentCaller, ApiError>,
    body: Body,
) -> Result<Ack, ApiError> {
    let AgentCaller(caller) = caller?;
    let body = read_body(body, MAX_BATCH_BYTES).await?;
    validate::json_depth(&body, validate::MAX_JSON_DEPTH).map_err(bad)?;
    let batch: Batch =
        serde_json::from_slice(&body).map_err(|e| bad(format!("body is not a batch: {e}")))?;
    caller.may_send_as(state, &batch.agent)?;
    let histograms = validate::batch(&batch).map_err(bad)?;
    let seq = batch.seq;
    // Acknowledged only once committed.
    let status = match state
        .writer
        .store(batch, histograms)
        .await
        .map_err(internal)?
    {
        Stored::New => "stored",
        Stored::Duplicate => {
            state.counters.duplicates.fetch_add(1, Ordering::Relaxed);
            "duplicate"
        }
        Stored::Conflict(why) => return Err(ApiError(StatusCode::CONFLICT, why)),
    };
    Ok(Ack {
        seq,
        status: status.into(),
    })
}

/// What a token may do: agents check theirs before a run starts.
/// The token's role; with `?run_id=&deployment=&scenario=&agent=`, also
/// whether the store would take that agent's batches for that run (409 and
/// why not), so an agent joining a fleet run learns it before restarting.
async fn whoami(
    State(state): State<Shared>,
    Authenticated(caller): Authenticated,
    uri: Uri,
) -> Result<Json<serde_json::Value>, ApiError> {
    let q = query::pairs(uri.query().unwrap_or(""));
    if let Some(agent) = q.get("agent") {
        caller.may_send_as(&state, agent)?;
    }
    if let Some(run_id) = q.get("run_id") {
        let get = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
        let conflict = state
            .reader
            .lock()
            .unwrap()
            .join_conflict(run_id, get("deployment"), get("scenario"), get("agent"))
            .map_err(internal)?;
        // A lost or resolved fleet node's new agent: its fleet join
        // decides (rejoin after a resolve, else refused with the way out).
        let returning = || state.fleets.comes_back(run_id, get("agent"));
        if let Some(why) = conflict
            && !returning()
        {
            return Err(ApiError(StatusCode::CONFLICT, why));
        }
    }
    Ok(Json(
        serde_json::json!({ "role": caller.caller.role().as_str() }),
    ))
}

/// The whole body, at most `limit` bytes (413 beyond).
async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {limit} bytes"),
        )),
        Err(e) => Err(bad(format!("could not read the body: {e}"))),
    }
}

async fn list_runs(
    State(state): State<Shared>,
    _: Admin,
) -> Result<Json<serde_json::Value>, ApiError> {
    let runs = state.reader.lock().unwrap().runs().map_err(internal)?;
    Ok(Json(serde_json::json!({ "runs": runs })))
}

async fn run_summary(run: RunRead) -> Result<Json<serde_json::Value>, ApiError> {
    let (timelines, nodes) = {
        let store = run.store();
        (
            store.run_timelines(&run.run_id, None).map_err(internal)?,
            store.run_agent_count(&run.run_id).map_err(internal)?,
        )
    };
    // One histogram at a time: a fleet run can hold thousands of series.
    let rows = rows_from_timelines(&timelines);
    let mut outcomes = BTreeMap::<bounce_wire::Outcome, u64>::new();
    for t in &timelines {
        *outcomes.entry(t.outcome).or_default() += 1;
    }
    Ok(Json(serde_json::json!({
        "run_id": run.run_id,
        "restarts": timelines.len(),
        "outcomes": outcomes,
        "nodes": nodes,
        "where_time_went": where_time_went(&timelines, &rows),
        "rows": rows,
    })))
}

/// Everything a report needs about one run (`bounce-collector report
/// --collector URL RUN` reads this): node facts, scenario, every timeline.
async fn run_export(run: RunRead) -> Result<Json<RunData>, ApiError> {
    let data = run.store().run_data(&run.run_id).map_err(internal)?;
    data.map(Json).ok_or_else(|| no_run(run.run_id.as_str()))
}

/// A deployment's restarts whose timelines retention dropped, merged from
/// the hourly histograms that overlap `?since=&until=` (Unix nanoseconds;
/// `&origin=run|watch`): what `report --collector URL --deployment D` adds.
async fn compacted(
    State(state): State<Shared>,
    _: Admin,
    uri: Uri,
) -> Result<Json<serde_json::Value>, ApiError> {
    let q = query::pairs(uri.query().unwrap_or(""));
    let deployment = q
        .get("deployment")
        .ok_or_else(|| bad("give ?deployment=NAME"))?;
    let instant = |key: &str| {
        q.get(key)
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| bad(format!("{key}={v}: not Unix nanoseconds")))
            })
            .transpose()
    };
    let (since, until) = (instant("since")?, instant("until")?);
    let compacted = state
        .reader
        .lock()
        .unwrap()
        .compacted(
            deployment,
            since,
            until,
            q.get("origin").map(String::as_str),
        )
        .map_err(internal)?;
    Ok(Json(serde_json::json!({ "compacted": compacted })))
}

async fn run_hlog(run: RunRead) -> Result<Response, ApiError> {
    let timelines = run
        .store()
        .run_timelines(&run.run_id, None)
        .map_err(internal)?;
    let mut buf = Vec::new();
    // The run's histograms, rebuilt from its timelines one at a time.
    bounce_wire::hist::write_hlog_from_timelines(
        &timelines,
        &mut buf,
        SystemTime::now(),
        Duration::ZERO,
        &format!(
            "bounce run {}, merged by the collector; values in microseconds; tags are service/phase",
            run.run_id
        ),
    )
    .map_err(internal)?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], buf).into_response())
}

async fn run_nodes(run: RunRead) -> Result<Json<serde_json::Value>, ApiError> {
    let nodes = run.store().run_agents(&run.run_id).map_err(internal)?;
    Ok(Json(
        serde_json::json!({ "run_id": run.run_id, "nodes": nodes }),
    ))
}

async fn metrics_page(State(state): State<Shared>, _: MetricsReader) -> Result<Response, ApiError> {
    let text = tokio::task::spawn_blocking(move || {
        metrics::render(
            &state.reader,
            &Exposition {
                counters: &state.counters,
                per_node: state.per_node_metrics,
            },
        )
    })
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
