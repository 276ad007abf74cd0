//! Whom the client trusts and what it shows: the CA that signs the
//! collector's certificate (`--ca-file`, or the system's roots with
//! `--ca-system`), the node certificate for mutual TLS, and whether plain
//! HTTP to a non-loopback collector is allowed. Files are PEM; an error names
//! the file and what is wrong with it.

use crate::error::ClientError;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The TLS flags every command that talks to a collector takes.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct Trust {
    /// The CA that signed the collector's certificate (PEM); only it is
    /// trusted for `https://` collectors.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Trust the system's CA roots for the collector (instead of, or as
    /// well as, --ca-file).
    #[arg(long)]
    pub ca_system: bool,
    /// This node's certificate (PEM, chain first) for mutual TLS: the
    /// collector takes the node's name from it, so no token is needed.
    #[arg(long, value_name = "FILE", requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// The private key of --client-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// Allow a plain `http://` collector that is not on loopback: tokens
    /// and results then cross the network readable by anyone on it.
    #[arg(long)]
    pub insecure_plain_http: bool,
}

impl Trust {
    /// Whether a node certificate will be shown (it stands for a token).
    pub fn has_client_cert(&self) -> bool {
        self.client_cert.is_some()
    }

    /// The rustls configuration these flags make.
    pub fn client_config(&self) -> Result<ClientConfig, ClientError> {
        let mut roots = RootCertStore::empty();
        if let Some(path) = &self.ca_file {
            for cert in read_certs(path)? {
                roots
                    .add(cert)
                    .map_err(|e| ClientError::file(path, format!("not a usable CA: {e}")))?;
            }
        }
        if self.ca_system {
            let found = rustls_native_certs::load_native_certs();
            if found.certs.is_empty() {
                return Err(ClientError::Config(format!(
                    "--ca-system: no CA roots found on this system ({:?})",
                    found.errors
                )));
            }
            let _ = roots.add_parsable_certificates(found.certs);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Config(e.to_string()))?
            .with_root_certificates(roots);
        Ok(match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => builder
                .with_client_auth_cert(read_certs(cert)?, read_key(key)?)
                .map_err(|e| ClientError::file(cert, format!("does not go with its key: {e}")))?,
            _ => builder.with_no_client_auth(),
        })
    }

    /// Whether https:// can be used at all: some CA must be trusted.
    pub fn has_roots(&self) -> bool {
        self.ca_file.is_some() || self.ca_system
    }
}

/// Every certificate in a PEM file; at least one.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| ClientError::file(path, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ClientError::file(path, format!("not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(ClientError::file(path, "holds no CERTIFICATE block"));
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, ClientError> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| ClientError::file(path, format!("no private key: {e}")))
}
