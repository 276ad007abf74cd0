//! Requests to a collector: its base URL checked against the trust flags
//! once, then GET and POST with the credential, each bounded by a timeout.

use crate::error::ClientError;
use crate::trust::Trust;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, StatusCode};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::time::Duration;

/// How long a client keeps an idle connection to the collector for the
/// next request (an agent's next batch: restarts of a run are seconds to
/// minutes apart, and each new connection is a TLS handshake). The
/// collector keeps idle connections longer (`serve --idle-timeout-secs`,
/// this plus 30 s), so the client is the one that closes them and never
/// sends on a connection the collector is closing.
pub const POOL_IDLE: Duration = Duration::from_secs(300);

/// How a client proves who it is: a bearer token, or (with no token) the
/// node certificate of its TLS connection.
#[derive(Clone)]
pub enum Credential {
    Token(String),
    Certificate,
}

/// A collector, reachable under the trust flags.
#[derive(Clone)]
pub struct CollectorClient {
    base: String,
    credential: Credential,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

/// An answer: its status and whole body.
pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
}

impl Answer {
    /// The collector's reason (`{"error": ...}`), or the body as text.
    pub fn reason(&self) -> String {
        serde_reason(&self.body).unwrap_or_else(|| String::from_utf8_lossy(&self.body).into_owned())
    }
}

fn serde_reason(body: &[u8]) -> Option<String> {
    // `{"error":"..."}` without a JSON dependency: the collector writes
    // exactly this shape; anything else is shown as it is.
    let text = std::str::from_utf8(body).ok()?.trim();
    let inner = text.strip_prefix("{\"error\":\"")?.strip_suffix("\"}")?;
    Some(inner.replace("\\\"", "\""))
}

impl CollectorClient {
    /// Checks the URL against the flags (nothing is sent yet): `https://`
    /// needs a CA; `http://` only to loopback unless `--insecure-plain-http`.
    pub fn new(
        url: &str,
        trust: &Trust,
        token: Option<String>,
    ) -> Result<CollectorClient, ClientError> {
        let base = url.trim_end_matches('/').to_string();
        let uri: hyper::Uri = base
            .parse()
            .map_err(|e| ClientError::Config(format!("collector URL {url:?}: {e}")))?;
        let host = uri.host().unwrap_or("").to_string();
        match uri.scheme_str() {
            Some("https") if !trust.has_roots() => {
                return Err(ClientError::Config(format!(
                    "{url}: https:// needs the CA that signed the collector's certificate: --ca-file FILE (or --ca-system for the system's roots)"
                )));
            }
            Some("https") => {}
            Some("http") if trust.has_client_cert() => {
                return Err(ClientError::Config(format!(
                    "{url}: a node certificate (--client-cert) is only shown over https://"
                )));
            }
            Some("http") if !is_loopback(&host) && !trust.insecure_plain_http => {
                return Err(ClientError::Config(format!(
                    "{url}: refusing plain http:// to a collector that is not on loopback (the token and the results would cross the network in clear): use https:// with --ca-file, or say --insecure-plain-http"
                )));
            }
            Some("http") => {}
            _ => {
                return Err(ClientError::Config(format!(
                    "collector URL {url:?}: give http://HOST:PORT or https://HOST:PORT"
                )));
            }
        }
        let credential = match token {
            Some(t) => Credential::Token(t),
            None if trust.has_client_cert() => Credential::Certificate,
            None => {
                return Err(ClientError::Config(
                    "no credential for the collector: a token (--token-file or the environment) or a node certificate (--client-cert/--client-key)".into(),
                ));
            }
        };
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(trust.client_config()?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(CollectorClient {
            base,
            credential,
            client: Client::builder(TokioExecutor::new())
                .pool_timer(TokioTimer::new())
                .pool_idle_timeout(POOL_IDLE)
                .build(connector),
        })
    }

    /// What the credential is, in words for refusals.
    pub fn credential_name(&self) -> &'static str {
        match self.credential {
            Credential::Token(_) => "token",
            Credential::Certificate => "node certificate",
        }
    }

    /// The base URL, as given (without a trailing slash).
    pub fn base(&self) -> &str {
        &self.base
    }

    pub async fn get(&self, path: &str, timeout: Duration) -> Result<Answer, ClientError> {
        self.request(Method::GET, path, Bytes::new(), timeout).await
    }

    pub async fn post_json(
        &self,
        path: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Answer, ClientError> {
        self.request(Method::POST, path, Bytes::from(body), timeout)
            .await
    }

    /// One request (`path` with its query) and its whole answer.
    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Answer, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut req = hyper::Request::builder().method(method).uri(&url);
        if !body.is_empty() {
            req = req.header("content-type", "application/json");
        }
        if let Credential::Token(t) = &self.credential {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| ClientError::Config(format!("{url}: {e}")))?;
        let secs = timeout.as_secs();
        let answer = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| ClientError::from_request(&url, &e))?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| ClientError::from_request(&url, &e))?
                .to_bytes();
            Ok(Answer { status, body })
        };
        tokio::time::timeout(timeout, answer)
            .await
            .map_err(|_| ClientError::Timeout {
                url: url.clone(),
                secs,
            })?
    }
}

/// Loopback: the token never leaves the machine.
fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(url: &str, trust: &Trust) -> String {
        match CollectorClient::new(url, trust, Some("t".into())) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{url} accepted"),
        }
    }

    #[test]
    fn plain_http_only_to_loopback_unless_insecure() {
        let none = Trust::default();
        for ok in [
            "http://127.0.0.1:9465",
            "http://localhost:1/",
            "http://[::1]:9465",
        ] {
            assert!(
                CollectorClient::new(ok, &none, Some("t".into())).is_ok(),
                "{ok}"
            );
        }
        let err = refused("http://ctl9.example:9465", &none);
        assert!(err.contains("refusing plain http://"), "{err}");
        let insecure = Trust {
            insecure_plain_http: true,
            ..Trust::default()
        };
        assert!(
            CollectorClient::new("http://ctl9.example:9465", &insecure, Some("t".into())).is_ok()
        );
        let err = refused("https://ctl9.example:9465", &none);
        assert!(err.contains("needs the CA"), "{err}");
        let err = refused("ftp://ctl9.example", &none);
        assert!(err.contains("give http://HOST:PORT"), "{err}");
    }

    #[test]
    fn a_credential_is_required() {
        let err = CollectorClient::new("http://127.0.0.1:1", &Trust::default(), None)
            .err()
            .unwrap();
        assert!(err.to_string().contains("no credential"), "{err}");
    }

    #[test]
    fn reasons() {
        let a = Answer {
            status: StatusCode::FORBIDDEN,
            body: Bytes::from_static(br#"{"error":"may only send as \"ctl1\""}"#),
        };
        assert_eq!(a.reason(), r#"may only send as "ctl1""#);
    }
}
