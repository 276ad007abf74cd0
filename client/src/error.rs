//! What can go wrong between a client and the collector, in words an
//! operator can act on; TLS failures are read out of rustls' error (which
//! hyper wraps in io errors) rather than shown as "connection error".

use rustls::{AlertDescription, CertificateError, Error as TlsError};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A flag or URL that cannot work (nothing was sent).
    #[error("{0}")]
    Config(String),
    /// A certificate, key or CA file.
    #[error("{0}: {1}")]
    File(String, String),
    /// The TLS handshake failed: the collector is not who it should be, or
    /// it refused this node's certificate.
    #[error("{url}: TLS refused: {why}")]
    Tls { url: String, why: String },
    /// Not reached (connection refused, DNS, reset).
    #[error("{url}: not reachable: {why}")]
    Unreachable { url: String, why: String },
    #[error("{url}: no answer within {secs} s")]
    Timeout { url: String, secs: u64 },
}

impl ClientError {
    pub fn file(path: &Path, why: impl Into<String>) -> ClientError {
        ClientError::File(path.display().to_string(), why.into())
    }

    /// A failed request, sorted: TLS if rustls said why, else unreachable.
    pub(crate) fn from_request(url: &str, err: &(dyn std::error::Error + 'static)) -> ClientError {
        match find_tls_error(err) {
            Some(tls) => ClientError::Tls {
                url: url.into(),
                why: tls_words(tls),
            },
            None => ClientError::Unreachable {
                url: url.into(),
                why: chain(err),
            },
        }
    }

    /// Whether trying again later could help (TLS and configuration
    /// refusals will not go away by themselves).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ClientError::Unreachable { .. } | ClientError::Timeout { .. }
        )
    }
}

/// rustls' error anywhere in the chain (hyper and tokio-rustls wrap it in
/// io errors, whose `source()` skips the wrapped error itself).
fn find_tls_error<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a TlsError> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<TlsError>() {
            return Some(tls);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
        {
            if let Some(tls) = inner.downcast_ref::<TlsError>() {
                return Some(tls);
            }
            next = Some(inner);
            continue;
        }
        next = e.source();
    }
    None
}

fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut words = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        let s = e.to_string();
        if !words.contains(&s) {
            words.push_str(": ");
            words.push_str(&s);
        }
        next = e.source();
    }
    words
}

/// A TLS failure in words.
fn tls_words(err: &TlsError) -> String {
    match err {
        TlsError::InvalidCertificate(c) => match c {
            CertificateError::NotValidForNameContext {
                expected,
                presented,
            } => format!(
                "the collector's certificate for {} is not valid for '{}' (the host in the URL)",
                quoted(presented),
                expected.to_str()
            ),
            CertificateError::NotValidForName => {
                "the collector's certificate is not valid for the host in the URL".into()
            }
            CertificateError::UnknownIssuer => {
                "the collector's certificate is signed by an unknown CA (not the one given with --ca-file)".into()
            }
            CertificateError::ExpiredContext { not_after, .. } => format!(
                "the collector's certificate expired (valid until {} s after the epoch)",
                not_after.as_secs()
            ),
            CertificateError::Expired => "the collector's certificate expired".into(),
            CertificateError::NotValidYetContext { not_before, .. } => format!(
                "the collector's certificate is not valid yet (from {} s after the epoch; check the clocks)",
                not_before.as_secs()
            ),
            CertificateError::NotValidYet => {
                "the collector's certificate is not valid yet (check the clocks)".into()
            }
            other => format!("the collector's certificate was refused: {other:?}"),
        },
        TlsError::AlertReceived(AlertDescription::CertificateExpired) => {
            "the collector refused this node's certificate: it expired (--client-cert needs a new one)".into()
        }
        TlsError::AlertReceived(AlertDescription::UnknownCA) => {
            "the collector refused this node's certificate: not signed by the collector's --client-ca".into()
        }
        TlsError::AlertReceived(alert) => format!(
            "the collector refused this client's certificate or the handshake (alert {alert:?}; a node certificate signed by the collector's --client-ca?)"
        ),
        other => other.to_string(),
    }
}

fn quoted(names: &[String]) -> String {
    if names.is_empty() {
        return "(no names)".into();
    }
    names
        .iter()
        .map(|n| format!("'{}'", bare_name(n)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// rustls shows presented names in Debug form (`DnsName("ctl9")`); the
/// operator wants `ctl9`.
fn bare_name(presented: &str) -> &str {
    presented
        .split_once("(\"")
        .and_then(|(_, rest)| rest.strip_suffix("\")"))
        .unwrap_or(presented)
}

#[cfg(test)]
mod tests {
    #[test]
    fn presented_names_bare() {
        assert_eq!(
            super::quoted(&["DnsName(\"ctl9\")".into(), "x".into()]),
            "'ctl9', 'x'"
        );
    }
}
