//! The prologue of every handler, as axum extractors: who is asking (a
//! bearer token, else the node certificate of the connection), whether
//! that role may do this, and for a run's read API the run id and whether
//! the store knows it. A handler that takes one of these runs only when its
//! checks passed. Failures count against the client's address or its
//! credential (`limit`), and every admin request is written to the audit
//! log (`audit`, with the answer's status).

use crate::api::audit;
use crate::api::auth::{Caller, Need, Role};
use crate::api::error::{ApiError, internal, no_run};
use crate::api::limit::Offender;
use crate::api::peer::Peer;
use crate::api::state::Shared;
use crate::store::Store;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use bounce_wire::RunId;
use std::sync::MutexGuard;

/// A caller with an agent or admin credential; 401 or 403 otherwise.
pub struct Authenticated(pub Known);

/// A caller with an agent credential (token or node certificate): the only
/// role that may send results (and take leases); 401 or 403 otherwise.
pub struct AgentCaller(pub Known);

/// A caller with an admin token, by its audit label (`admin token 2`: who
/// paused or aborted a fleet run); 401 or 403 otherwise. Audited.
pub struct Admin(pub String);

/// A read of one run: an admin token, and a run id the store knows (404
/// otherwise, as for an id that cannot be one). Audited.
pub struct RunRead {
    pub run_id: RunId,
    state: Shared,
}

/// `/metrics`: open, or with `serve --protect-metrics` only for metrics and
/// admin tokens.
pub struct MetricsReader;

/// A caller whose credential is known, with the label the audit log uses
/// (`agent token 2`, `node ctl9`) and whom its refusals count against.
pub struct Known {
    pub caller: Caller,
    pub label: String,
    refusals: Offender,
}

impl Known {
    /// Whether this credential may send as (or take leases for) `agent`;
    /// a refusal is a 403 that counts against the credential.
    pub fn may_send_as(&self, state: &Shared, agent: &str) -> Result<(), ApiError> {
        state
            .tokens
            .may_send_as(&self.caller, agent)
            .map_err(|why| {
                state.failures.failed(self.refusals.clone());
                ApiError(StatusCode::FORBIDDEN, why)
            })
    }
}

fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// Who is asking: a bearer token when one is shown (even over a certified
/// connection), else the node certificate of the connection. A token's
/// refusals count per address too (agents may share one), a node
/// certificate's per certificate.
fn identify(parts: &Parts, state: &Shared) -> Option<Known> {
    let known = |(caller, label): (Caller, String), from| Known {
        refusals: Offender::Credential {
            label: label.clone(),
            from,
        },
        caller,
        label,
    };
    match bearer(parts) {
        Some(token) => {
            let from = peer(parts).map(|p| p.addr.ip());
            state.tokens.identify(token).map(|t| known(t, from))
        }
        None => peer(parts).and_then(|p| p.node.clone()).map(|cert| {
            let label = cert.label();
            known((Caller::Node(cert), label), None)
        }),
    }
}

fn peer(parts: &Parts) -> Option<&Peer> {
    parts.extensions.get::<Peer>()
}

/// 429 while `who` is over its failure limit.
fn limited(state: &Shared, who: &Offender) -> Result<(), ApiError> {
    state.failures.check(who).map_err(|wait| {
        ApiError(
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many {who}: try again in {} s", wait.as_secs() + 1),
        )
    })
}

/// The caller, if `need` allows its role (roles never mix). A request
/// without a known credential counts against its address, a known
/// credential's refusal against the credential. Requests that need an
/// admin or metrics token, and any request showing one, are audited with
/// their answer's status, allowed or not (429 included).
fn caller(parts: &Parts, state: &Shared, need: Need) -> Result<Known, ApiError> {
    let found = identify(parts, state);
    let privileged = found
        .as_ref()
        .is_some_and(|k| matches!(k.caller.role(), Role::Admin | Role::Metrics));
    if need.audited() || privileged {
        audit::decided(
            parts,
            found.as_ref().map_or("unknown", |k| k.label.as_str()),
        );
    }
    let addr = peer(parts).map(|p| Offender::Address(p.addr.ip()));
    // A verified node certificate cannot be guessed: its address's
    // failures (another client behind the same NAT) do not hold it back.
    let by_certificate = found.is_some() && bearer(parts).is_none();
    if let Some(a) = addr.as_ref().filter(|_| !by_certificate) {
        limited(state, a)?;
    }
    let Some(known) = found else {
        if let Some(a) = addr {
            state.failures.failed(a);
        }
        return Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "missing or unknown bearer token (and no node certificate)".into(),
        ));
    };
    let me = known.refusals.clone();
    limited(state, &me)?;
    match need.refusal(known.caller.role()) {
        None => {
            audit::allowed(parts);
            Ok(known)
        }
        Some(why) => {
            state.failures.failed(me);
            Err(ApiError(StatusCode::FORBIDDEN, why))
        }
    }
}

impl FromRequestParts<Shared> for Authenticated {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        caller(parts, state, Need::AgentOrAdmin).map(Authenticated)
    }
}

impl FromRequestParts<Shared> for AgentCaller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        caller(parts, state, Need::Agent).map(AgentCaller)
    }
}

impl FromRequestParts<Shared> for Admin {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        caller(parts, state, Need::Admin).map(|k| Admin(k.label))
    }
}

impl FromRequestParts<Shared> for MetricsReader {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        if state.protect_metrics {
            caller(parts, state, Need::Metrics)?;
        }
        Ok(MetricsReader)
    }
}

impl FromRequestParts<Shared> for RunRead {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        caller(parts, state, Need::Admin)?;
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
