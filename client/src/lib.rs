//! The one client that talks to a bounce collector, for every command that
//! does (`bounce-agent run --collector`, `bounce-agent push`,
//! `bounce-collector runs|report --collector`): TLS through rustls with a
//! pinned CA (the system's roots only when asked), a node certificate for
//! mutual TLS, plain HTTP only to loopback or when told it is insecure, and
//! refusals in words ("the collector's certificate for 'ctl9' is not valid
//! for 'localhost'", "unknown CA", "expired").

mod error;
mod http;
mod trust;

pub use error::ClientError;
pub use http::{Answer, POOL_IDLE};
pub use http::{CollectorClient, Credential};
pub use trust::{Trust, read_certs, read_key};
