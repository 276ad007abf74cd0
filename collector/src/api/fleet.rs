//! The fleet endpoints: an agent's calls (an agent credential, acting only
//! as a node it may send as, like ingest) and an operator's (admin
//! token): status, pause, resume, abort, resolve. The work is in `fleet`.

use crate::api::error::{ApiError, bad};
use crate::api::extract::{Admin, AgentCaller};
use crate::api::state::Shared;
use crate::fleet::{AdminCall, FleetError, FleetView};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use bounce_wire::RunId;
use bounce_wire::lease::{FleetAnswer, FleetCall, MAX_FLEET_BODY};

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/v1/fleets/{run}/agent", post(agent))
        .route("/api/v1/fleets/{run}", get(status))
        .route("/api/v1/fleets/{run}/resolve/{node}", post(resolve))
        .route("/api/v1/fleets/{run}/{action}", post(control))
        .layer(DefaultBodyLimit::max(MAX_FLEET_BODY))
}

fn answer(e: FleetError) -> ApiError {
    let status = match e {
        FleetError::NoRun(_) => StatusCode::NOT_FOUND,
        FleetError::Refused(_) => StatusCode::CONFLICT,
        FleetError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError(status, e.to_string())
}

fn run_id(raw: &str) -> Result<RunId, ApiError> {
    RunId::parse(raw).map_err(|e| bad(e.to_string()))
}

async fn agent(
    State(state): State<Shared>,
    AgentCaller(caller): AgentCaller,
    Path(run): Path<String>,
    body: Bytes,
) -> Result<Json<FleetAnswer>, ApiError> {
    let run = run_id(&run)?;
    crate::validate::json_depth(&body, crate::validate::MAX_JSON_DEPTH).map_err(bad)?;
    let call: FleetCall =
        serde_json::from_slice(&body).map_err(|e| bad(format!("body is not a fleet call: {e}")))?;
    call.check().map_err(bad)?;
    caller.may_send_as(&state, &call.node)?;
    state
        .fleets
        .agent(run.as_str(), call)
        .await
        .map(Json)
        .map_err(answer)
}

async fn status(
    State(state): State<Shared>,
    _: Admin,
    Path(run): Path<String>,
) -> Result<Json<FleetView>, ApiError> {
    let run = run_id(&run)?;
    state.fleets.view(run.as_str()).map(Json).map_err(answer)
}

async fn control(
    State(state): State<Shared>,
    Admin(by): Admin,
    Path((run, action)): Path<(String, String)>,
) -> Result<Json<FleetView>, ApiError> {
    let run = run_id(&run)?;
    let call = match action.as_str() {
        "pause" => AdminCall::Pause { by },
        "resume" => AdminCall::Resume,
        "abort" => AdminCall::Abort { by },
        other => {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("no fleet action {other:?} (pause, resume, abort, resolve/NODE)"),
            ));
        }
    };
    admin(&state, run, call).await
}

async fn resolve(
    State(state): State<Shared>,
    Admin(by): Admin,
    Path((run, node)): Path<(String, String)>,
) -> Result<Json<FleetView>, ApiError> {
    let run = run_id(&run)?;
    admin(&state, run, AdminCall::Resolve { node, by }).await
}

/// Carries out an operator's call and answers the fleet's status after it.
async fn admin(state: &Shared, run: RunId, call: AdminCall) -> Result<Json<FleetView>, ApiError> {
    state
        .fleets
        .admin(run.as_str(), call)
        .await
        .map_err(answer)?;
    state.fleets.view(run.as_str()).map(Json).map_err(answer)
}
