//! What the transport knows of a request: who is at the other end of its
//! connection (the address, and the node certificate it showed in mutual
//! TLS, already verified against `serve --client-ca`), and when the
//! request will be cut off. The listener puts both in every request's
//! extensions; the extractors and the audit log read them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Clone, Debug)]
pub struct Peer {
    pub addr: SocketAddr,
    pub node: Option<Arc<NodeCert>>,
}

/// A verified node certificate: the names it may send as are its DNS
/// subject alternative names (wildcards are never a node's name).
#[derive(Debug, PartialEq, Eq)]
pub struct NodeCert {
    pub names: Vec<String>,
}

impl NodeCert {
    pub fn allows(&self, agent: &str) -> bool {
        self.names.iter().any(|n| n == agent)
    }

    /// For refusals and the audit log: `node ctl9` or `node ctl9/ctl9.example`.
    pub fn label(&self) -> String {
        format!("node {}", self.names.join("/"))
    }
}

/// When the listener cuts the request off (`--request-timeout-secs`) and
/// answers 408 in its place (tokio's clock: the one its timeout reads).
#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    pub at: Instant,
    pub after: Duration,
}
