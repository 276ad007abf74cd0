//! `report --collector URL`: a run read from a running collector's read API
//! (`/api/v1/runs/{id}/export`, admin token), for operators without a shell
//! on the collector's host.

use anyhow::{Context, Result, bail};
use bounce_wire::{RunData, RunId};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

pub struct Remote {
    base: String,
    token: String,
    rt: tokio::runtime::Runtime,
}

impl Remote {
    pub fn new(url: &str, tokens: &[String]) -> Result<Remote> {
        let base = url.trim_end_matches('/').to_string();
        if !base.starts_with("http://") {
            bail!("{url}: only http:// is supported (put TLS in front of the collector)");
        }
        let token = tokens
            .first()
            .cloned()
            .context("--collector needs an admin token: --token-file FILE or BOUNCE_ADMIN_TOKEN")?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(Remote { base, token, rt })
    }

    /// `/api/v1/runs`: every run the collector holds.
    pub fn runs(&self) -> Result<Vec<serde_json::Value>> {
        let url = format!("{}/api/v1/runs", self.base);
        let body = self.get(&url)?;
        let v: serde_json::Value =
            serde_json::from_slice(&body).with_context(|| format!("{url}: not a run list"))?;
        Ok(v["runs"].as_array().cloned().unwrap_or_default())
    }

    /// GET with the admin token; the body of a 200, a clear error otherwise.
    fn get(&self, url: &str) -> Result<Bytes> {
        let (status, body) = self.rt.block_on(async {
            let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
            let req = hyper::Request::get(url)
                .header("authorization", format!("Bearer {}", self.token))
                .body(Empty::new())?;
            let resp = tokio::time::timeout(Duration::from_secs(60), client.request(req))
                .await
                .map_err(|_| anyhow::anyhow!("{url}: no answer within 60 s"))?
                .with_context(|| format!("{url}: not reachable"))?;
            let status = resp.status();
            let body = resp.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, body))
        })?;
        match status.as_u16() {
            200 => Ok(body),
            401 | 403 => {
                bail!("{url}: the collector refused the token (this needs an admin token)")
            }
            404 => bail!("{url}: not found: {}", String::from_utf8_lossy(&body)),
            other => bail!(
                "{url}: answered {other}: {}",
                String::from_utf8_lossy(&body)
            ),
        }
    }

    pub fn run(&self, run_id: &RunId) -> Result<RunData> {
        let url = format!("{}/api/v1/runs/{run_id}/export", self.base);
        let body = self.get(&url).map_err(|e| {
            if e.to_string().contains("not found") {
                anyhow::anyhow!(
                    "the collector has no run {:?} (`bounce-collector runs` lists them)",
                    run_id.as_str()
                )
            } else {
                e
            }
        })?;
        let mut data: RunData =
            serde_json::from_slice(&body).with_context(|| format!("{url}: not a run export"))?;
        data.origin = format!("collector {}, run {run_id}", self.base);
        Ok(data)
    }
}
