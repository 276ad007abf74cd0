//! The collector's HTTP API: ingest and fleet leases for agents, reads and
//! fleet control for admins, /metrics for Prometheus. Every request is authenticated by a bearer token or the
//! node certificate of its connection (`auth`, `peer`), checked by the extractors in `extract` before a handler runs;
//! the handlers (`routes`) are thin. A bad request gets a 4xx with its
//! reason (`error`) and writes nothing.

pub mod audit;
pub mod auth;
pub mod error;
pub mod extract;
pub mod fleet;
pub mod limit;
pub mod peer;
pub mod query;
pub mod routes;
pub mod state;
