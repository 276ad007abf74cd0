//! Checked value types every part of a scenario uses: names, name patterns
//! (globs) and lists that may not be empty.

use super::checked;
use globset::{Glob, GlobMatcher};
use serde::Deserialize;
use serde::de::Deserializer;
use std::fmt;

/// A name that can be a label value and a file name: `[A-Za-z0-9][A-Za-z0-9_.-]*`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(String);

impl Name {
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn parse(s: &str) -> Result<Name, String> {
        let ok_first = s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
        let ok_rest = s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if ok_first && ok_rest && s.len() <= 128 {
            Ok(Name(s.to_string()))
        } else {
            Err(format!(
                "{s:?} is not a valid name (letters, digits, '_', '.', '-'; starting with a letter or digit; at most 128)"
            ))
        }
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked::string(d, "a name", Name::parse)
    }
}

/// A glob over target names (`keystone*`, `neutron_*_agent`).
#[derive(Debug, Clone)]
pub struct NamePattern {
    pub text: String,
    matcher: GlobMatcher,
}

impl NamePattern {
    pub fn parse(s: &str) -> Result<NamePattern, String> {
        if s.trim().is_empty() {
            return Err("empty name pattern".into());
        }
        let glob = Glob::new(s).map_err(|e| format!("{s:?} is not a valid glob: {e}"))?;
        Ok(NamePattern {
            text: s.to_string(),
            matcher: glob.compile_matcher(),
        })
    }
    pub fn matches(&self, name: &str) -> bool {
        self.matcher.is_match(name)
    }
}

impl<'de> Deserialize<'de> for NamePattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked::string(d, "a name or glob", NamePattern::parse)
    }
}

/// A list that must have at least one element.
#[derive(Debug, Clone)]
pub struct NonEmpty<T>(pub Vec<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for NonEmpty<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked::non_empty(d).map(NonEmpty)
    }
}
