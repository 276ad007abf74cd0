//! `tcp`: a connect to host:port succeeds.

use super::{Probe, TryFuture};
use crate::scenario::TcpSpec;

pub struct Tcp {
    host: String,
    port: u16,
}

impl Tcp {
    pub fn new(spec: &TcpSpec) -> Tcp {
        Tcp {
            host: spec.host.0.clone(),
            port: spec.port.0,
        }
    }
}

impl Probe for Tcp {
    fn label(&self) -> String {
        format!("tcp {}:{}", self.host, self.port)
    }

    fn try_once(&self) -> TryFuture<'_> {
        Box::pin(async move {
            tokio::net::TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        })
    }
}
