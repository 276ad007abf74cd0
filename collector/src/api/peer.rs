//! Who is at the other end of a request's connection, as the transport
//! knows it: the address, and the node certificate it showed (mutual TLS),
//! already verified against `serve --client-ca`. The listener puts one in
//! every request's extensions; the extractors read it.

use std::net::SocketAddr;
use std::sync::Arc;

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
