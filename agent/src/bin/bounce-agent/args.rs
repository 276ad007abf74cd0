//! What several commands take the same way: the collector's credential and
//! TLS trust, and the parser of durations given as flags (run ids parse as
//! `RunId`).

use anyhow::{Context, Result};
use bounce_agent::scenario::duration;
use bounce_agent::stream::Collector;
use bounce_client::Trust;
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Auth {
    /// File holding the collector's agent token (else BOUNCE_TOKEN; not
    /// needed with a node certificate, --client-cert).
    #[arg(long)]
    token_file: Option<PathBuf>,
    #[command(flatten)]
    trust: Trust,
}

impl Auth {
    /// The collector at `url`, with this credential and trust.
    pub fn collector(&self, url: &str) -> Result<Collector> {
        let token = if self.trust.has_client_cert() && self.token_file.is_none() {
            None
        } else {
            Some(self.token()?)
        };
        Ok(Collector::new(url, &self.trust, token)?)
    }

    fn token(&self) -> Result<String> {
        let token = match &self.token_file {
            Some(f) => std::fs::read_to_string(f)
                .with_context(|| format!("{}: cannot read the token", f.display()))?
                .trim()
                .to_string(),
            None => std::env::var("BOUNCE_TOKEN").unwrap_or_default(),
        };
        if token.is_empty() {
            anyhow::bail!(
                "no collector credential: give --token-file, set BOUNCE_TOKEN, or show a node certificate (--client-cert/--client-key)"
            );
        }
        Ok(token)
    }
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    duration::parse(s)
}
