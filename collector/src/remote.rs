//! `report --collector URL`: a run read from a running collector's read API
//! (`/api/v1/runs/{id}/export`, admin token), for operators without a shell
//! on the collector's host; through the same client (TLS, trust flags) the
//! agents use.

use anyhow::{Context, Result, bail};
use bounce_client::{CollectorClient, Trust};
use bounce_wire::{RunData, RunId};
use hyper::body::Bytes;
use std::time::Duration;

pub struct Remote {
    client: CollectorClient,
    rt: tokio::runtime::Runtime,
}

impl Remote {
    pub fn new(url: &str, trust: &Trust, tokens: &[String]) -> Result<Remote> {
        let token = tokens
            .first()
            .cloned()
            .context("--collector needs an admin token: --token-file FILE or BOUNCE_ADMIN_TOKEN")?;
        let client = CollectorClient::new(url, trust, Some(token))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(Remote { client, rt })
    }

    /// `/api/v1/runs`: every run the collector holds.
    pub fn runs(&self) -> Result<Vec<serde_json::Value>> {
        let path = "/api/v1/runs";
        let body = self.get(path)?;
        let v: serde_json::Value = serde_json::from_slice(&body)
            .with_context(|| format!("{}{path}: not a run list", self.client.base()))?;
        Ok(v["runs"].as_array().cloned().unwrap_or_default())
    }

    /// GET `path` (`/api/v1/...`): the JSON answer.
    pub fn get_json(&self, path: &str) -> Result<serde_json::Value> {
        let body = self.get(path)?;
        serde_json::from_slice(&body)
            .with_context(|| format!("{}{path}: not JSON", self.client.base()))
    }

    /// POST to `path` with no body: the JSON answer.
    pub fn post_json(&self, path: &str) -> Result<serde_json::Value> {
        let answer = self.rt.block_on(self.client.post_json(
            path,
            Vec::new(),
            Duration::from_secs(60),
        ))?;
        let body = self.answered(path, answer)?;
        serde_json::from_slice(&body)
            .with_context(|| format!("{}{path}: not JSON", self.client.base()))
    }

    /// GET with the admin token; the body of a 200, a clear error otherwise.
    fn get(&self, path: &str) -> Result<Bytes> {
        let answer = self
            .rt
            .block_on(self.client.get(path, Duration::from_secs(60)))?;
        self.answered(path, answer)
    }

    fn answered(&self, path: &str, answer: bounce_client::Answer) -> Result<Bytes> {
        let url = format!("{}{path}", self.client.base());
        match answer.status.as_u16() {
            200 => Ok(answer.body),
            401 | 403 => bail!(
                "{url}: the collector refused the token (this needs an admin token): {}",
                answer.reason()
            ),
            404 => bail!("{url}: not found: {}", answer.reason()),
            409 => bail!("{url}: refused: {}", answer.reason()),
            other => bail!("{url}: answered {other}: {}", answer.reason()),
        }
    }

    pub fn run(&self, run_id: &RunId) -> Result<RunData> {
        let path = format!("/api/v1/runs/{run_id}/export");
        let body = self.get(&path).map_err(|e| {
            if e.to_string().contains("not found") {
                anyhow::anyhow!(
                    "the collector has no run {:?} (`bounce-collector runs` lists them)",
                    run_id.as_str()
                )
            } else {
                e
            }
        })?;
        let mut data: RunData = serde_json::from_slice(&body)
            .with_context(|| format!("{}{path}: not a run export", self.client.base()))?;
        data.origin = format!("collector {}, run {run_id}", self.client.base());
        Ok(data)
    }
}
