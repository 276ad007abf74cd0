//! The prologue of every handler, as axum extractors: who is asking (by
//! bearer token), whether it may, and for a run's read API the run id and
//! whether the store knows it. A handler that takes one of these runs only
//! when its checks passed.

use crate::api::auth::{Caller, Role};
use crate::api::error::{ApiError, internal, no_run};
use crate::api::state::Shared;
use crate::store::Store;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use bounce_wire::RunId;
use std::sync::MutexGuard;

/// A caller with any known token (agent or admin); 401 otherwise.
pub struct Authenticated(pub Caller);

/// A caller with an admin token; 401 or 403 otherwise.
pub struct Admin;

/// A read of one run: an admin token, and a run id the store knows (404
/// otherwise, as for an id that cannot be one).
pub struct RunRead {
    pub run_id: RunId,
    state: Shared,
}

/// `/metrics`: open, or only for admins with `serve --protect-metrics`.
pub struct MetricsReader;

fn caller(parts: &Parts, state: &Shared, need: Role) -> Result<Caller, ApiError> {
    let caller = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|token| state.tokens.caller(token))
        .ok_or_else(|| {
            ApiError(
                StatusCode::UNAUTHORIZED,
                "missing or unknown bearer token".into(),
            )
        })?;
    if caller.role() < need {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "this token may only ingest".into(),
        ));
    }
    Ok(caller)
}

impl FromRequestParts<Shared> for Authenticated {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        caller(parts, state, Role::Agent).map(Authenticated)
    }
}

impl FromRequestParts<Shared> for Admin {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        caller(parts, state, Role::Admin).map(|_| Admin)
    }
}

impl FromRequestParts<Shared> for MetricsReader {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        if state.protect_metrics {
            caller(parts, state, Role::Admin)?;
        }
        Ok(MetricsReader)
    }
}

impl FromRequestParts<Shared> for RunRead {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        caller(parts, state, Role::Admin)?;
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError(e.status(), e.body_text()))?;
        let run_id = RunId::parse(&raw).map_err(|_| no_run(&raw))?;
        let read = RunRead {
            run_id,
            state: state.clone(),
        };
        if !read.store().run_exists(&read.run_id).map_err(internal)? {
            return Err(no_run(read.run_id.as_str()));
        }
        Ok(read)
    }
}

impl RunRead {
    /// The store's reading connection (held until dropped: take what you
    /// need and let go before building the answer).
    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.state.reader.lock().unwrap()
    }
}
