//! What several commands take the same way: the collector token, and the
//! parser of durations given as flags (run ids parse as `RunId`).

use anyhow::{Context, Result};
use bounce_agent::scenario::duration;
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Auth {
    /// File holding the collector's agent token (else BOUNCE_TOKEN).
    #[arg(long)]
    token_file: Option<PathBuf>,
}

impl Auth {
    pub fn token(&self) -> Result<String> {
        let token = match &self.token_file {
            Some(f) => std::fs::read_to_string(f)
                .with_context(|| format!("{}: cannot read the token", f.display()))?
                .trim()
                .to_string(),
            None => std::env::var("BOUNCE_TOKEN").unwrap_or_default(),
        };
        if token.is_empty() {
            anyhow::bail!("no collector token: give --token-file or set BOUNCE_TOKEN");
        }
        Ok(token)
    }
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    duration::parse(s)
}
