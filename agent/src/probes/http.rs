//! `http`: a GET answers with an accepted status.

use super::{Probe, TryFuture};
use crate::scenario::{HttpSpec, StatusMatch};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;

pub struct Http {
    url: hyper::Uri,
    text: String,
    expect: Vec<StatusMatch>,
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl Http {
    pub fn new(spec: &HttpSpec) -> Http {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Http {
            url: spec
                .url
                .text
                .parse()
                .expect("validated when the scenario was read"),
            text: spec.url.text.clone(),
            expect: spec
                .expect_status
                .as_ref()
                .map(|v| v.0.clone())
                .unwrap_or_default(),
            // No pooling: each try is a fresh connection, as a restarted
            // service's clients would make.
            client: Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(0)
                .build(connector),
        }
    }

    fn accepts(&self, status: u16) -> bool {
        if self.expect.is_empty() {
            status < 400
        } else {
            self.expect.iter().any(|m| m.accepts(status))
        }
    }
}

impl Probe for Http {
    fn label(&self) -> String {
        format!("http {}", self.text)
    }

    fn try_once(&self) -> TryFuture<'_> {
        Box::pin(async move {
            let resp = self
                .client
                .get(self.url.clone())
                .await
                .map_err(|e| format!("GET {}: {e}", self.text))?;
            let status = resp.status().as_u16();
            // Read the body so the server is not cut off mid-answer.
            let _ = resp.into_body().collect().await;
            if self.accepts(status) {
                Ok(())
            } else {
                Err(format!("GET {} answered {status}", self.text))
            }
        })
    }
}
