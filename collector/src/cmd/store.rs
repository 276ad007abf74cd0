//! `store --store FILE`: what a collector's store holds and what retention
//! dropped from it: size (database, write-ahead log, free pages), vacuum
//! mode, the oldest timeline kept, the hours of merged histograms.

use crate::store::Store;
use anyhow::{Context, Result, bail};
use bounce_wire::civil::utc;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// The collector's store (the SQLite file `serve --store` uses).
    #[arg(long)]
    store: PathBuf,
    /// Print it as JSON.
    #[arg(long)]
    json: bool,
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

pub fn run(args: Args) -> Result<ExitCode> {
    if !args.store.is_file() {
        bail!(
            "{}: no such store (the file `serve --store` writes)",
            args.store.display()
        );
    }
    let store = Store::open(&args.store)
        .with_context(|| format!("{}: cannot open the store", args.store.display()))?;
    let f = store.facts()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&f)?);
        return Ok(ExitCode::SUCCESS);
    }
    let when = |t: Option<i64>| t.map_or("-".to_string(), utc);
    println!(
        "store        {} ({}: database {}, write-ahead log {}; {} free inside)",
        args.store.display(),
        mib(f.database_bytes + f.wal_bytes),
        mib(f.database_bytes),
        mib(f.wal_bytes),
        mib(f.free_bytes)
    );
    println!("auto-vacuum  {}", f.auto_vacuum);
    println!("runs         {}", f.runs);
    println!(
        "timelines    {} kept, the oldest opened {}",
        f.timelines,
        when(f.oldest_timeline_unix_nanos)
    );
    println!(
        "histograms   {} hour(s) merged from dropped timelines, the oldest {}",
        f.compacted_hours,
        when(f.oldest_compacted_hour_unix_nanos)
    );
    println!(
        "retention    dropped {} timeline(s), {} hourly row(s), {} run(s)",
        f.dropped.timelines, f.dropped.hour_rows, f.dropped.runs
    );
    Ok(ExitCode::SUCCESS)
}
