//! `store --store FILE`: what a collector's store holds and what retention
//! dropped from it: size (database, write-ahead log, free pages), vacuum
//! mode, the oldest timeline kept, the hours and days of merged
//! histograms, the rows retention could not read. `--vacuum` converts a
//! store made without incremental auto-vacuum, offline (serve never does:
//! the VACUUM rewrites the whole file and would hold ingest meanwhile).

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
    /// Convert a store made without incremental auto-vacuum, so retention
    /// can give freed space back to the file system: one VACUUM of the
    /// whole file (needs as much free disk again). Stop the collector
    /// first: the VACUUM holds the store's write lock until it ends.
    #[arg(long)]
    vacuum: bool,
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
    let mut store = Store::open(&args.store)
        .with_context(|| format!("{}: cannot open the store", args.store.display()))?;
    if args.vacuum {
        if store.auto_vacuum()? == "incremental" {
            eprintln!(
                "{}: already incremental: retention gives freed pages back as it goes",
                args.store.display()
            );
        } else {
            let began = std::time::Instant::now();
            eprintln!(
                "{}: VACUUM of {} to incremental auto-vacuum...",
                args.store.display(),
                mib(store.size_on_disk())
            );
            store
                .convert_to_incremental()
                .with_context(|| format!("{}: VACUUM", args.store.display()))?;
            eprintln!(
                "{}: converted in {:.1}s",
                args.store.display(),
                began.elapsed().as_secs_f64()
            );
        }
    }
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
    println!(
        "runs         {}; the batch seqs of {} expired (agent, run) pair(s) kept ({}), so late resends stay duplicates",
        f.runs,
        f.expired_seqs_kept,
        mib(f.expired_seqs_bytes)
    );
    println!(
        "timelines    {} kept, the oldest opened {}",
        f.timelines,
        when(f.oldest_timeline_unix_nanos)
    );
    println!(
        "histograms   {} hour(s) merged from dropped timelines, the oldest {}; {} day(s) rolled up from hours, the oldest {}",
        f.compacted_hours,
        when(f.oldest_compacted_hour_unix_nanos),
        f.compacted_days,
        when(f.oldest_compacted_day_unix_nanos)
    );
    let d = &f.dropped;
    println!(
        "retention    dropped {} timeline(s), rolled {} hourly row(s) up into days, expired {} hourly and {} daily row(s), {} run(s), {} fleet log row(s)",
        d.timelines, d.rolled_up, d.hour_rows, d.day_rows, d.runs, d.fleet_log_rows
    );
    if d.set_aside > 0 {
        println!(
            "unreadable   {} row(s) retention could not read, set aside (table retention_set_aside), the first:",
            d.set_aside
        );
        for why in &f.set_aside {
            println!("             {why}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
