//! The collector's TLS: its certificate and key (PEM) behind a resolver
//! that `reload` swaps (on SIGHUP) without touching open connections, and
//! node certificates verified by `trust` (`--client-ca`, `--tls-client-crl`),
//! whose DNS names are the agent names the node may send as.

use crate::api::peer::NodeCert;
use crate::net::trust::{ClientTrust, TrustError};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, ServerConnection};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("{0}")]
    File(#[from] bounce_client::ClientError),
    #[error("{0}: {1}")]
    Key(PathBuf, String),
    #[error("{0}")]
    Trust(#[from] TrustError),
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The serving certificate, reloadable.
#[derive(Debug)]
pub struct ServerCert {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ServerCert {
    pub fn load(cert: &Path, key: &Path) -> Result<ServerCert, TlsSetupError> {
        Ok(ServerCert {
            cert: cert.into(),
            key: key.into(),
            current: RwLock::new(Arc::new(certified_key(cert, key)?)),
        })
    }

    /// Reads the files again; on any error the current certificate stays.
    pub fn reload(&self) -> Result<(), TlsSetupError> {
        let fresh = certified_key(&self.cert, &self.key)?;
        *self.current.write().unwrap() = Arc::new(fresh);
        Ok(())
    }
}

impl ResolvesServerCert for ServerCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap().clone())
    }
}

fn certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsSetupError> {
    let chain = bounce_client::read_certs(cert)?;
    let der = bounce_client::read_key(key)?;
    let signing = provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| TlsSetupError::Key(key.into(), e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| {
        TlsSetupError::Key(
            key.into(),
            format!("does not belong to {}: {e}", cert.display()),
        )
    })?;
    Ok(certified)
}

/// The server's TLS configuration: its certificate, and with `nodes`
/// node certificates checked by it (optional: admins use tokens).
pub fn server_config(
    cert: Arc<ServerCert>,
    nodes: Option<Arc<ClientTrust>>,
) -> Result<ServerConfig, TlsSetupError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError::Key(PathBuf::new(), e.to_string()))?;
    let builder = match nodes {
        None => builder.with_no_client_auth(),
        Some(trust) => builder.with_client_cert_verifier(trust),
    };
    let mut config = builder.with_cert_resolver(cert);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The node a connection's (verified) client certificate names, if it
/// showed one with at least one DNS name.
pub fn node_of(conn: &ServerConnection) -> Option<NodeCert> {
    let der = conn.peer_certificates()?.first()?;
    let cert = webpki::EndEntityCert::try_from(der).ok()?;
    let names: Vec<String> = cert
        .valid_dns_names()
        .filter(|n| !n.contains('*'))
        .map(String::from)
        .collect();
    (!names.is_empty()).then_some(NodeCert { names })
}
