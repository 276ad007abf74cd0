//! What several commands take the same way: the collector token, and the
//! parsers of durations and run ids given as flags.

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

/// A run id the collector accepts: letters, digits and `_ . - @ :`.
pub fn parse_run_id(s: &str) -> Result<String, String> {
    if s.is_empty()
        || s.len() > 128
        || !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-@:".contains(c))
    {
        return Err(format!(
            "{s:?}: a run id is 1-128 letters, digits and _ . - @ : (e.g. upgrade-2026-11-25)"
        ));
    }
    Ok(s.to_string())
}
