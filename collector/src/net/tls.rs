//! The collector's TLS: its certificate and key (PEM) behind a resolver
//! that `reload` swaps (on SIGHUP) without touching open connections, and
//! node certificates verified against `--client-ca`, whose DNS names are
//! the agent names the node may send as.

use crate::api::peer::NodeCert;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig, ServerConnection};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("{0}")]
    File(#[from] bounce_client::ClientError),
    #[error("{0}: {1}")]
    Key(PathBuf, String),
    #[error("{0}: {1}")]
    ClientCa(PathBuf, String),
}

fn provider() -> Arc<CryptoProvider> {
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

/// The server's TLS configuration: its certificate, and with `client_ca`
/// node certificates checked against it (optional: admins use tokens).
pub fn server_config(
    cert: Arc<ServerCert>,
    client_ca: Option<&Path>,
) -> Result<ServerConfig, TlsSetupError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError::Key(PathBuf::new(), e.to_string()))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for c in bounce_client::read_certs(path)? {
                roots
                    .add(c)
                    .map_err(|e| TlsSetupError::ClientCa(path.into(), e.to_string()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsSetupError::ClientCa(path.into(), e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
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
