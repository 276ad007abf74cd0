//! Tokens from a file (one per line, `#` comments) and an environment
//! variable, refused when too short to be a secret. Each knows where it
//! was written, so an error names the line, never the secret.

use anyhow::{Context, Result, bail};
use std::path::Path;

/// One token line and where it was written (`FILE:LINE`, or `$VAR`).
pub struct TokenLine {
    pub origin: String,
    pub text: String,
}

pub fn tokens(file: Option<&Path>, env: &str) -> Result<Vec<String>> {
    Ok(token_lines(file, env)?
        .into_iter()
        .map(|l| l.text)
        .collect())
}

pub fn token_lines(file: Option<&Path>, env: &str) -> Result<Vec<TokenLine>> {
    let mut out = Vec::new();
    if let Some(f) = file {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("{}: cannot read", f.display()))?;
        out.extend(
            text.lines()
                .enumerate()
                .map(|(i, l)| (i, l.trim()))
                .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
                .map(|(i, l)| TokenLine {
                    origin: format!("{}:{}", f.display(), i + 1),
                    text: l.to_string(),
                }),
        );
    }
    if let Ok(t) = std::env::var(env)
        && !t.trim().is_empty()
    {
        out.push(TokenLine {
            origin: format!("${env}"),
            text: t.trim().to_string(),
        });
    }
    if let Some(short) = out
        .iter()
        .find(|l| l.text.split_whitespace().next().unwrap_or("").len() < 16)
    {
        bail!(
            "{}: a token of {} characters is too short to be a secret (at least 16)",
            short.origin,
            short.text.split_whitespace().next().unwrap_or("").len()
        );
    }
    Ok(out)
}
