//! `summarize`: an agent's output folder read back, independently of the
//! agent's own summary: the timelines and the histogram log must agree. A
//! run that did not finish (killed, its disk full) has no log: its table
//! comes from the timelines alone, and says so.

use anyhow::Result;
use bounce_wire::RunFolder;
use bounce_wire::folder::HISTOGRAMS;
use bounce_wire::summary::{render_table, rows_of};
use bounce_wire::tally::RunTally;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// The folder `bounce-agent run --output` wrote.
    dir: PathBuf,
    /// Print the table as JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let folder = RunFolder::new(&args.dir);
    let read = folder.timelines()?;
    if let Some(torn) = &read.torn {
        eprintln!("warning: {torn}");
    }
    let timelines = read.records;
    let tally = RunTally::of(&timelines);
    if !folder.check_histograms(&tally)? {
        eprintln!(
            "note: no {} (the run did not finish): the table is the timelines' alone",
            folder.path(HISTOGRAMS).display()
        );
    }
    let rows = rows_of(&tally);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        let runs: std::collections::BTreeSet<&str> =
            timelines.iter().map(|t| t.run_id.as_str()).collect();
        println!(
            "{} restart(s) from run(s) {}",
            timelines.len(),
            runs.into_iter().collect::<Vec<_>>().join(", ")
        );
        print!("{}", render_table(&rows));
    }
    Ok(ExitCode::SUCCESS)
}
