//! A run's identity: its id ([`RunId`], checked once, here) and the labels
//! that say which run of which deployment and scenario, on which node
//! ([`RunIdentity`]) with the node's facts ([`NodeFacts`]). The agent labels its timelines with it, sends it in
//! every batch header and writes it into `summary.json`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A run id: 1 to [`RunId::MAX_LEN`] letters, digits and `_ . - @ :`, so it
/// is safe in a URL path, a file name and a Prometheus label. Every way in
/// (the agent's `--run-id`, a batch, a timeline line, a URL) goes through
/// [`RunId::parse`]; serde does too.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct RunId(String);

/// Why a string is not a [`RunId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?}: a run id is 1-128 letters, digits and _ . - @ : (e.g. upgrade-2026-11-25)")]
pub struct RunIdError(pub String);

impl RunId {
    /// The agent has always refused longer ids (its `--run-id`; its own
    /// ids are 21 characters), so no stored run has one; the
    /// collector's older limit of 256 only let hand-made batches through.
    pub const MAX_LEN: usize = 128;

    pub fn parse(s: &str) -> Result<RunId, RunIdError> {
        let ok = !s.is_empty()
            && s.len() <= Self::MAX_LEN
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-@:".contains(c));
        if ok {
            Ok(RunId(s.to_string()))
        } else {
            Err(RunIdError(s.to_string()))
        }
    }

    /// A new id, `20261125T130000Z-1a2b`: sortable, unique enough per node
    /// and second (what an agent uses without `--run-id`).
    pub fn fresh() -> RunId {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let secs = now.as_secs() as i64;
        let (y, m, d) = crate::civil::civil_from_days(secs.div_euclid(86_400));
        let sod = secs.rem_euclid(86_400);
        let salt = (now.subsec_nanos() ^ std::process::id().rotate_left(16)) & 0xffff;
        RunId(format!(
            "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z-{salt:04x}",
            sod / 3600,
            (sod / 60) % 60,
            sod % 60
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RunId {
    type Error = RunIdError;
    fn try_from(s: String) -> Result<RunId, RunIdError> {
        RunId::parse(&s)
    }
}

impl std::str::FromStr for RunId {
    type Err = RunIdError;
    fn from_str(s: &str) -> Result<RunId, RunIdError> {
        RunId::parse(s)
    }
}

impl Serialize for RunId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for RunId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for RunId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for RunId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// Which run this is and where it was measured: the same four fields at
/// the head of every batch header (`RunHeader`) and `summary.json`
/// (`RunSummary`), embedded there with `#[serde(flatten)]` so the JSON keeps
/// its flat field names. Timelines carry the node's name only
/// (`node.hostname`, which the agent sets to its `--node`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunIdentity {
    pub run_id: RunId,
    pub deployment: String,
    pub scenario: String,
    pub node: NodeFacts,
}

/// Facts about the node a run was measured on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeFacts {
    pub hostname: String,
    pub kernel: Option<String>,
    pub os: Option<String>,
    pub cpus: usize,
    pub memory_bytes: u64,
    pub docker_version: Option<String>,
    pub docker_api_version: Option<String>,
    /// Ceph's version, as the OSDs' admin sockets report it (Ceph targets only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ceph_version: Option<String>,
    /// Image of each container target (kolla images carry the release in the tag).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub images: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_checked_once_in_every_way_in() {
        for ok in [
            "upgrade-2026-11-25",
            "20261125T130000Z-1a2b",
            "a@b:c.d_e",
            "x",
        ] {
            assert_eq!(RunId::parse(ok).unwrap().as_str(), ok);
            let json = serde_json::to_string(ok).unwrap();
            assert_eq!(serde_json::from_str::<RunId>(&json).unwrap(), ok);
        }
        let longest = "r".repeat(RunId::MAX_LEN);
        assert!(RunId::parse(&longest).is_ok());
        for bad in ["", "a b", "a/b", "ü", "a\n", &format!("{longest}r")] {
            let err = RunId::parse(bad).unwrap_err().to_string();
            assert!(err.contains("a run id is 1-128"), "{bad:?}: {err}");
            let json = serde_json::to_string(bad).unwrap();
            let err = serde_json::from_str::<RunId>(&json)
                .unwrap_err()
                .to_string();
            assert!(err.contains("a run id is 1-128"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn fresh_ids_are_valid_ids() {
        let id = RunId::fresh();
        assert_eq!(RunId::parse(id.as_str()), Ok(id.clone()));
        assert_eq!(id.as_str().len(), 21, "{id}");
    }

    #[test]
    fn a_run_id_serializes_as_its_text() {
        let id = RunId::parse("r-1").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"r-1\"");
        assert_eq!(id.to_string(), "r-1");
    }
}
