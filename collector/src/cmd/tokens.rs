//! Tokens from a file (one per line, `#` comments) and an environment
//! variable, refused when too short to be a secret.

use anyhow::{Context, Result, bail};
use std::path::Path;

pub fn tokens(file: Option<&Path>, env: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    if let Some(f) = file {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("{}: cannot read", f.display()))?;
        out.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(String::from),
        );
    }
    if let Ok(t) = std::env::var(env)
        && !t.trim().is_empty()
    {
        out.push(t.trim().to_string());
    }
    if let Some(short) = out
        .iter()
        .map(|t| t.split_whitespace().next().unwrap_or(""))
        .find(|t| t.len() < 16)
    {
        bail!(
            "a token of {} characters is too short to be a secret (at least 16)",
            short.len()
        );
    }
    Ok(out)
}
