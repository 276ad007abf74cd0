//! Where `runs` and `report` read runs from: a collector's store (read
//! only) or a running collector's read API.

use crate::cmd::tokens::tokens;
use crate::remote::Remote;
use crate::store::Store;
use anyhow::{Context, Result, bail};
use bounce_wire::{RunData, RunId};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct RunsAt {
    /// The collector's store (the SQLite file `serve --store` uses; read only).
    #[arg(long, conflicts_with = "collector")]
    store: Option<PathBuf>,
    /// Or a running collector (https://HOST:PORT with --ca-file), read with an admin token
    /// from --token-file or BOUNCE_ADMIN_TOKEN.
    #[arg(long)]
    collector: Option<String>,
    /// A file holding the admin token.
    #[arg(long)]
    token_file: Option<PathBuf>,
    #[command(flatten)]
    trust: bounce_client::Trust,
}

/// A store or a collector, opened.
pub enum Source {
    Store(Store),
    Remote(Remote),
}

impl RunsAt {
    /// The source named, if any.
    pub fn open(&self) -> Result<Option<Source>> {
        Ok(match (&self.store, &self.collector) {
            (Some(path), _) => Some(Source::Store(open_store_for_reading(path)?)),
            (None, Some(url)) => Some(Source::Remote(Remote::new(
                url,
                &self.trust,
                &tokens(self.token_file.as_deref(), "BOUNCE_ADMIN_TOKEN")?,
            )?)),
            (None, None) => None,
        })
    }
}

impl Source {
    /// Every run it holds, oldest first.
    pub fn runs(&self) -> Result<Vec<serde_json::Value>> {
        match self {
            Source::Store(s) => Ok(s.runs()?),
            Source::Remote(r) => r.runs(),
        }
    }

    /// One run, or an error that says how to list them.
    pub fn run(&self, id: &RunId) -> Result<RunData> {
        match self {
            Source::Store(s) => {
                let mut data = s.run_data(id)?.with_context(|| {
                    format!(
                        "the store has no run {:?} (`bounce-collector runs` lists them)",
                        id.as_str()
                    )
                })?;
                data.origin = format!("collector store, run {id}");
                Ok(data)
            }
            Source::Remote(r) => r.run(id),
        }
    }
}

/// The store, for reading only: never created by a report (a typo in the
/// path must not make an empty store).
fn open_store_for_reading(path: &Path) -> Result<Store> {
    if !path.is_file() {
        bail!(
            "{}: no such store (the file `serve --store` writes)",
            path.display()
        );
    }
    Store::open(path).with_context(|| format!("{}: cannot open the store", path.display()))
}
