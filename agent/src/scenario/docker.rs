//! Docker containers as a scenario selects them, and the stop timeout the
//! engine is given for them.

use super::duration::Span;
use super::values::{NamePattern, NonEmpty};
use serde::Deserialize;
use serde::de::Deserializer;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerSelector {
    /// Exact names or globs over container names.
    pub names: NonEmpty<NamePattern>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopTimeout(pub u32);

impl<'de> Deserialize<'de> for StopTimeout {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Span::deserialize_checked(d, |span| {
            if span.0.subsec_nanos() != 0 {
                return Err(format!(
                    "{span} is not whole seconds (Docker's stop timeout has a resolution of 1 s)"
                ));
            }
            if span.0.as_secs() > 3600 {
                return Err(format!("{span} is longer than the 1h bounce allows"));
            }
            Ok(StopTimeout(span.0.as_secs() as u32))
        })
    }
}
