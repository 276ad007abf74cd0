//! `bounce-agent check`: validate scenario files completely, without
//! contacting any engine.

use anyhow::Result;
use bounce_agent::scenario::Scenario;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    #[arg(required = true)]
    scenarios: Vec<PathBuf>,
}

/// Exit status 2 when any file is refused; each refusal goes to stderr.
pub fn check(args: Args) -> Result<ExitCode> {
    let mut bad = 0;
    for path in args.scenarios {
        match Scenario::load(&path) {
            Ok(s) => println!(
                "{}: ok ({} target entr{}, repeat {}, concurrency {})",
                path.display(),
                s.targets.len(),
                if s.targets.len() == 1 { "y" } else { "ies" },
                s.repeat,
                s.concurrency
            ),
            Err(e) => {
                eprintln!("{e}");
                bad += 1;
            }
        }
    }
    Ok(if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}
