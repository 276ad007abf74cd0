//! The prologue of every handler, as axum extractors: who is asking (a
//! bearer token, else the node certificate of the connection), whether
//! that role may do this, and for a run's read API the run id and whether
//! the store knows it. A handler that takes one of these runs only when its
//! checks passed. Failures count against the client's address
//! (`limit`), and every admin request is written to the audit log.

use crate::api::audit::Entry;
use crate::api::auth::{Caller, Role};
use crate::api::error::{ApiError, internal, no_run};
use crate::api::peer::Peer;
use crate::api::state::Shared;
use crate::store::Store;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use bounce_wire::RunId;
use std::sync::MutexGuard;

/// A caller with any known credential (agent or admin); 401 otherwise.
pub struct Authenticated(pub Caller);

/// A caller with an agent credential (token or node certificate): the only
/// role that may send results (and take leases); 401 or 403 otherwise.
pub struct AgentCaller(pub Caller);

/// A caller with an admin token, by its audit label (`admin token 2`: who
/// paused or aborted a fleet run); 401 or 403 otherwise. Audited.
pub struct Admin(pub String);

/// A read of one run: an admin token, and a run id the store knows (404
/// otherwise, as for an id that cannot be one). Audited.
pub struct RunRead {
    pub run_id: RunId,
    state: Shared,
}

/// `/metrics`: open, or only for admins with `serve --protect-metrics`.
pub struct MetricsReader;

/// Who is asking, with the label the audit log uses.
fn identify(parts: &Parts, state: &Shared) -> Option<(Caller, String)> {
    let bearer = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match bearer {
        // A token decides when one is shown, even over a certified connection.
        Some(token) => state.tokens.identify(token),
        None => peer(parts).and_then(|p| p.node.clone()).map(|cert| {
            let label = cert.label();
            (Caller::Node(cert), label)
        }),
    }
}

fn peer(parts: &Parts) -> Option<&Peer> {
    parts.extensions.get::<Peer>()
}

/// The caller and its audit label, if its role is `need` (roles never
/// mix). Refusals count against the address; admin requests, allowed or
/// not, are audited.
fn caller(parts: &Parts, state: &Shared, need: Option<Role>) -> Result<(Caller, String), ApiError> {
    let addr = peer(parts).map(|p| p.addr);
    if let Some(a) = addr
        && let Err(wait) = state.failures.check(a.ip())
    {
        return Err(ApiError(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many failed authentications from {}: try again in {} s",
                a.ip(),
                wait.as_secs() + 1
            ),
        ));
    }
    let found = identify(parts, state);
    let result = match &found {
        None => Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "missing or unknown bearer token (and no node certificate)".into(),
        )),
        Some((c, label)) => match (need, c.role()) {
            (None, _) => Ok((c.clone(), label.clone())),
            (Some(n), r) if n == r => Ok((c.clone(), label.clone())),
            (Some(Role::Admin), _) => Err(ApiError(
                StatusCode::FORBIDDEN,
                "an agent credential may only send results; this needs an admin token".into(),
            )),
            (Some(Role::Agent), _) => Err(ApiError(
                StatusCode::FORBIDDEN,
                "an admin token may read and manage, not send results (agents send with agent tokens or node certificates)".into(),
            )),
        },
    };
    if result.is_err()
        && let Some(a) = addr
    {
        state.failures.failed(a.ip());
    }
    if need == Some(Role::Admin) {
        state.audit.record(&Entry {
            who: found
                .as_ref()
                .map_or("unknown", |(_, label)| label.as_str()),
            from: addr,
            method: parts.method.as_str(),
            path: parts.uri.path(),
            allowed: result.is_ok(),
        });
    }
    result
}

impl FromRequestParts<Shared> for Authenticated {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        caller(parts, state, None).map(|(c, _)| Authenticated(c))
    }
}

impl FromRequestParts<Shared> for AgentCaller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        caller(parts, state, Some(Role::Agent)).map(|(c, _)| AgentCaller(c))
    }
}

impl FromRequestParts<Shared> for Admin {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        caller(parts, state, Some(Role::Admin)).map(|(_, label)| Admin(label))
    }
}

impl FromRequestParts<Shared> for MetricsReader {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        if state.protect_metrics {
            caller(parts, state, Some(Role::Admin))?;
        }
        Ok(MetricsReader)
    }
}

impl FromRequestParts<Shared> for RunRead {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        caller(parts, state, Some(Role::Admin))?;
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
