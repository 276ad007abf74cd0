//! What retention dropped from what a report covers, said in the report so
//! it never reads as complete when it is not: for a range, the restarts
//! whose timelines were dropped, merged from the hourly and daily
//! histograms (their table, outcomes and the whole hours or days they
//! cover); for one run, how many
//! of its restarts are missing and where their numbers are.

use crate::cmd::at::Source;
use crate::cmd::range::Range;
use crate::store::compact::Compacted;
use anyhow::{Context, Result};
use bounce_wire::RunId;
use bounce_wire::civil::utc;
use bounce_wire::summary::format_seconds;
use std::fmt::Write as _;
use std::path::Path;

/// The range's dropped restarts, merged; None when retention dropped none.
pub fn of_range(source: &Source, range: &Range) -> Result<Option<Compacted>> {
    let origin = range.origin.map(|o| o.as_str());
    match source {
        Source::Store(s) => Ok(s.compacted(&range.deployment, range.since, range.until, origin)?),
        Source::Remote(r) => {
            let mut path = format!("/api/v1/compacted?deployment={}", encode(&range.deployment));
            for (key, value) in [("since", range.since), ("until", range.until)] {
                if let Some(v) = value {
                    let _ = write!(path, "&{key}={v}");
                }
            }
            if let Some(o) = origin {
                let _ = write!(path, "&origin={o}");
            }
            let v = r.get_json(&path)?;
            serde_json::from_value(v["compacted"].clone())
                .with_context(|| format!("{path}: not a compacted range"))
        }
    }
}

/// (restarts whose timelines were dropped, restarts, deployment) of a run,
/// when retention dropped some.
pub fn of_run(source: &Source, id: &RunId) -> Result<Option<(u64, u64, String)>> {
    Ok(source
        .runs()?
        .into_iter()
        .find(|r| r["run_id"].as_str() == Some(id.as_str()))
        .and_then(|r| {
            let dropped = r["timelines_dropped"].as_u64().filter(|n| *n > 0)?;
            Some((
                dropped,
                r["restarts"].as_u64().unwrap_or(dropped),
                r["deployment"].as_str().unwrap_or("?").to_string(),
            ))
        }))
}

/// A query value: everything but unreserved characters percent-encoded.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

const TITLE: &str = "## Restarts whose timelines retention dropped\n\n";

/// Rows a report names one by one at most; the rest are counted.
const LISTED: usize = 20;

/// The section for a range's dropped restarts, and the merged rows of the
/// range that could not be read (left out, each named with why).
pub fn range_section(deployment: &str, c: &Compacted) -> String {
    let mut out = String::from(TITLE);
    if c.readable() {
        kept(&mut out, deployment, c);
    }
    if !c.left_out.is_empty() {
        let _ = writeln!(
            out,
            "{}{} merged row(s) of this range could not be read and are left out of {} \
             (they are still in the store as they were: a report never writes it):\n",
            if c.readable() { "\n" } else { "" },
            c.left_out.len(),
            if c.readable() {
                "the numbers in this section"
            } else {
                "this report: nothing merged of them could be read"
            },
        );
        for why in c.left_out.iter().take(LISTED) {
            let _ = writeln!(out, "- {why}");
        }
        if c.left_out.len() > LISTED {
            let _ = writeln!(out, "- and {} more", c.left_out.len() - LISTED);
        }
    }
    out
}

/// What is kept of the range's dropped restarts: their outcomes and table.
fn kept(out: &mut String, deployment: &str, c: &Compacted) {
    let outcomes: Vec<String> = c.outcomes.iter().map(|(o, n)| format!("{o} {n}")).collect();
    let grain = match c.daily_until_unix_nanos {
        Some(days) if days >= c.end_unix_nanos => {
            "per day, so the numbers below cover the whole days".to_string()
        }
        Some(days) => format!(
            "per day before {} and per hour after, so the numbers below cover the whole days and hours",
            utc(days)
        ),
        None => "per hour, so the numbers below cover the whole hours".to_string(),
    };
    let _ = write!(
        out,
        "The collector's retention dropped the timelines of {} restart(s) of deployment \
         `{deployment}` in this range: they are **not** in the tables, charts and lists above. \
         What is kept of them is merged {grain} \
         from {} to {} (the first and last may reach past the range's ends). \
         Outcomes: {}.\n\n",
        c.restarts,
        utc(c.first_hour_unix_nanos),
        utc(c.end_unix_nanos),
        outcomes.join(", ")
    );
    out.push_str("| service | phase | count | p50 | p90 | p99 | max | failures |\n");
    out.push_str("|---|---|---:|---:|---:|---:|---:|---:|\n");
    let fmt = |v: Option<f64>| v.map(format_seconds).unwrap_or_else(|| "-".into());
    for r in &c.rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.service,
            r.phase,
            r.count,
            fmt(r.p50),
            fmt(r.p90),
            fmt(r.p99),
            fmt(r.max),
            r.failures
        );
    }
}

/// The section for one run some of whose timelines were dropped.
pub fn run_section(dropped: u64, restarts: u64, deployment: &str) -> String {
    format!(
        "{TITLE}The collector's retention dropped the timelines of {dropped} of this run's \
         {restarts} restarts (the oldest): this report covers only the {} kept. Their numbers \
         are kept merged per deployment and hour: `bounce-collector report --deployment \
         {deployment} --since … --until …` shows them.\n",
        restarts.saturating_sub(dropped)
    )
}

/// Adds a section at the end of the written report.
pub fn append(report: &Path, section: &str) -> Result<()> {
    let mut text = std::fs::read_to_string(report)
        .with_context(|| format!("{}: cannot read the report back", report.display()))?;
    if !text.ends_with("\n\n") {
        text.push('\n');
    }
    text.push_str(section);
    std::fs::write(report, text).with_context(|| format!("{}: cannot write", report.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_say_what_is_missing() {
        assert_eq!(encode("lab 1/ä"), "lab%201%2F%C3%A4");
        let s = run_section(90, 100, "lab");
        assert!(s.contains("90 of this run's 100"), "{s}");
        assert!(s.contains("only the 10 kept"), "{s}");
        let c = Compacted {
            restarts: 3,
            outcomes: [("ok".to_string(), 3)].into(),
            rows: Vec::new(),
            first_hour_unix_nanos: 0,
            end_unix_nanos: 3_600_000_000_000,
            daily_until_unix_nanos: None,
            left_out: Vec::new(),
        };
        let s = range_section("lab", &c);
        assert!(!s.contains("could not be read"), "{s}");
        assert!(s.contains("3 restart(s)") && s.contains("ok 3"), "{s}");
        assert!(s.contains("merged per hour"), "{s}");
        let days = |until| Compacted {
            daily_until_unix_nanos: Some(until),
            end_unix_nanos: 3 * 86_400_000_000_000,
            ..c.clone()
        };
        let s = range_section("lab", &days(3 * 86_400_000_000_000));
        assert!(s.contains("merged per day, so"), "{s}");
        let s = range_section("lab", &days(2 * 86_400_000_000_000));
        assert!(
            s.contains("per day before 1970-01-03 00:00:00 UTC and per hour after"),
            "{s}"
        );
        // Rows that did not read: named (the first 20), the rest counted.
        let left_out = (0..23).map(|i| format!("row {i}: bad")).collect();
        let s = range_section(
            "lab",
            &Compacted {
                left_out,
                ..c.clone()
            },
        );
        assert!(s.contains("3 restart(s)"), "{s}");
        assert!(
            s.contains("23 merged row(s) of this range could not be read and are left out of the numbers in this section"),
            "{s}"
        );
        assert!(s.contains("- row 19: bad\n- and 3 more\n"), "{s}");
        let unreadable = Compacted {
            restarts: 0,
            outcomes: Default::default(),
            left_out: vec!["row 0: bad".into()],
            ..c
        };
        let s = range_section("lab", &unreadable);
        assert!(!s.contains("restart(s) of deployment"), "{s}");
        assert!(s.contains("nothing merged of them could be read"), "{s}");
    }
}
