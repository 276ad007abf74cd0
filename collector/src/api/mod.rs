//! The collector's HTTP API: ingest for agents, reads for admins, /metrics
//! for Prometheus. Every request is authenticated by a bearer token
//! (`auth`), checked by the extractors in `extract` before a handler runs;
//! the handlers (`routes`) are thin. A bad request gets a 4xx with its
//! reason (`error`) and writes nothing.

pub mod auth;
pub mod error;
pub mod extract;
pub mod query;
pub mod routes;
pub mod state;
