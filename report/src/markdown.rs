//! `report.md`: GitHub-flavoured markdown meant to be pasted into an
//! upstream issue. Every number comes from the run's timelines (quantiles
//! through the same HDR histograms the agent and collector use).

use crate::compare::{Change, Comparison, Verdict};
use bounce_wire::RunData;
use bounce_wire::civil::utc;
use bounce_wire::summary::{SummaryRow, format_seconds};
use bounce_wire::{BoundaryName, NodeFacts, Origin, Outcome, Phase, Source, TimelineRecord};
use std::collections::BTreeMap;
use std::fmt::Write;

/// What the markdown links to, relative to the report's folder.
pub struct Links {
    /// (phase, chart path)
    pub percentile_charts: Vec<(Phase, String)>,
    pub services_chart: Option<String>,
    /// (file, what it is)
    pub files: Vec<(String, String)>,
}

pub struct Input<'a> {
    pub run: &'a RunData,
    pub rows: &'a [SummaryRow],
    pub baseline: Option<&'a RunData>,
    pub comparison: Option<&'a Comparison>,
    pub links: &'a Links,
    pub slowest: usize,
    /// `where_time_went` of the run, computed once for report and details.
    pub words: &'a BTreeMap<String, Vec<String>>,
}

fn opt(v: Option<f64>) -> String {
    v.map(format_seconds).unwrap_or_else(|| "-".into())
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn outcomes(timelines: &[TimelineRecord]) -> String {
    let mut counts: BTreeMap<Outcome, u64> = BTreeMap::new();
    for t in timelines {
        *counts.entry(t.outcome).or_default() += 1;
    }
    if counts.is_empty() {
        return "-".into();
    }
    counts
        .iter()
        .map(|(o, n)| format!("{o} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Requested → the last milestone observed (ready, or the last Ceph one):
/// how long the restart kept the agent busy, for ranking the slowest. An
/// observed crash, which nobody requested, counts from its exit.
pub fn restart_span(t: &TimelineRecord) -> Option<f64> {
    let requested = t
        .boundary(BoundaryName::Requested)
        .or(t.boundary(BoundaryName::Exited))?
        .unix_nanos;
    t.timestamps
        .iter()
        .filter(|b| b.name != BoundaryName::Finished)
        .map(|b| b.unix_nanos)
        .max()
        .map(|last| (last - requested) as f64 / 1e9)
}

fn memory(bytes: u64) -> String {
    if bytes == 0 {
        "-".into()
    } else {
        format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
    }
}

fn environment(out: &mut String, nodes: &[NodeFacts]) {
    // Nodes with the same fingerprint share a row: 300 identical computes are one line.
    let mut groups: BTreeMap<Vec<String>, Vec<&str>> = BTreeMap::new();
    for n in nodes {
        let d = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        let key = vec![
            d(&n.kernel),
            d(&n.os),
            if n.cpus == 0 {
                "-".into()
            } else {
                n.cpus.to_string()
            },
            memory(n.memory_bytes),
            d(&n.docker_version),
            d(&n.ceph_version),
        ];
        groups.entry(key).or_default().push(&n.hostname);
    }
    out.push_str("| nodes | kernel | OS | CPUs | memory | Docker | Ceph |\n");
    out.push_str("|---|---|---|--:|--:|---|---|\n");
    for (key, mut hosts) in groups {
        hosts.sort();
        let shown = if hosts.len() > 4 {
            format!("{} nodes: {}, …", hosts.len(), hosts[..3].join(", "))
        } else {
            hosts.join(", ")
        };
        let _ = writeln!(
            out,
            "| {} | {} |",
            cell(&shown),
            key.iter().map(|k| cell(k)).collect::<Vec<_>>().join(" | ")
        );
    }
    let mut images: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for n in nodes {
        for (service, image) in &n.images {
            let e = images.entry(service).or_default();
            if !e.contains(&image.as_str()) {
                e.push(image);
            }
        }
    }
    if !images.is_empty() {
        out.push_str("\n<details><summary>Images</summary>\n\n| service | image |\n|---|---|\n");
        for (service, imgs) in images {
            let _ = writeln!(
                out,
                "| {} | `{}` |",
                cell(service),
                cell(&imgs.join("`, `"))
            );
        }
        out.push_str("\n</details>\n");
    }
}

/// For each boundary, where its timestamps came from (how it was measured).
fn sources(out: &mut String, timelines: &[TimelineRecord]) {
    let mut by: BTreeMap<BoundaryName, BTreeMap<String, u64>> = BTreeMap::new();
    for t in timelines {
        for b in &t.timestamps {
            let what = match &b.source {
                Source::Agent => "the agent's clock".to_string(),
                Source::DockerEvent { action } => format!("Docker event `{action}`"),
                Source::DockerState { field } => format!("Docker `{field}`"),
                Source::Systemd { property } => format!("systemd `{property}`"),
                Source::Ceph { query } => format!("Ceph `{query}` (polled)"),
                Source::Probe { probe } => format!("probe `{probe}`"),
            };
            *by.entry(b.name).or_default().entry(what).or_default() += 1;
        }
    }
    out.push_str("| boundary | taken from |\n|---|---|\n");
    for (name, srcs) in by {
        let name = serde_json::to_value(name)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        let list = srcs
            .iter()
            .map(|(s, n)| format!("{s} ({n})"))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(out, "| {name} | {} |", cell(&list));
    }
}

pub fn p_value(p: f64) -> String {
    if p < 0.001 {
        format!("{p:.1e}")
    } else {
        format!("{p:.3}")
    }
}

fn pct(base: f64, run: f64) -> String {
    match Change::relative(base, run) {
        Some(r) => format!("{:+.0}%", r * 100.0),
        None => "".into(),
    }
}

fn comparison_table(out: &mut String, cmp: &Comparison) {
    out.push_str(
        "| service | phase | n | p50 | p90 | p99 | p (U test, Holm) | verdict |\n|---|---|--:|---|---|---|--:|---|\n",
    );
    for c in &cmp.changes {
        let q = |b: f64, r: f64, n: (usize, usize)| match n {
            (0, _) => format!("– → {}", format_seconds(r)),
            (_, 0) => format!("{} → –", format_seconds(b)),
            _ => format!(
                "{} → {} ({})",
                format_seconds(b),
                format_seconds(r),
                pct(b, r)
            ),
        };
        let n = (c.baseline.n, c.run.n);
        let verdict = match c.verdict {
            Verdict::Slower => "**slower**".to_string(),
            Verdict::Faster => "faster".to_string(),
            v => v.as_str().to_string(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} → {} | {} | {} | {} | {} | {} |",
            cell(&c.service),
            c.phase,
            c.baseline.n,
            c.run.n,
            q(c.baseline.p50, c.run.p50, n),
            q(c.baseline.p90, c.run.p90, n),
            q(c.baseline.p99, c.run.p99, n),
            c.p_adjusted.map(p_value).unwrap_or_else(|| "-".into()),
            verdict
        );
    }
}

/// The verdict of a comparison in one sentence (the report's and the terminal's).
pub fn verdict_line(cmp: &Comparison) -> String {
    let o = &cmp.options;
    let rule = format!(
        "Mann-Whitney U at α = {} after Holm's correction over {} service × phase, and a p50 change of at least {:.0}% and {}",
        o.alpha,
        cmp.changes
            .iter()
            .filter(|c| c.p_adjusted.is_some())
            .count(),
        o.threshold * 100.0,
        format_seconds(o.min_change_seconds)
    );
    let slower: Vec<String> = cmp
        .changes
        .iter()
        .filter(|c| c.verdict == Verdict::Slower)
        .map(|c| format!("{}/{}", c.service, c.phase))
        .collect();
    if slower.is_empty() {
        format!(
            "No significant slowdown: {} of {} service × phase unchanged, {} faster ({rule}).",
            cmp.count(Verdict::NoSignificantChange),
            cmp.changes.len(),
            cmp.count(Verdict::Faster)
        )
    } else {
        format!("Slower than the baseline: {} ({rule}).", slower.join(", "))
    }
}

/// Observed restarts (watch): per service and cause, how many, how many
/// did not end ok, and how long they took (requested, or for a crash the
/// exit, → the last milestone), with the images a recreate went between.
fn by_cause(out: &mut String, timelines: &[TimelineRecord]) {
    let mut groups: BTreeMap<(&str, &str), Vec<&TimelineRecord>> = BTreeMap::new();
    for t in timelines {
        if let Some(c) = t.cause {
            groups.entry((&t.service, c.as_str())).or_default().push(t);
        }
    }
    if groups.is_empty() {
        return;
    }
    out.push_str("\n## Observed restarts by cause\n\nRestarts bounce did not make, seen by `bounce-agent watch`: `restart` (docker restart), `stop-start` (a stop, later a start: kolla-ansible's handlers), `crash` (an exit nobody asked for, undone by the restart policy), `recreate` (removed and created anew under the same name: upgrades). Span: requested (a crash: its exit) → the last milestone.\n\n| service | cause | restarts | not ok | p50 span | max span | images |\n|---|---|--:|--:|--:|--:|---|\n");
    for ((service, cause), ts) in &groups {
        let mut spans: Vec<f64> = ts.iter().filter_map(|t| restart_span(t)).collect();
        spans.sort_by(f64::total_cmp);
        let p50 = spans.get(spans.len().saturating_sub(1) / 2).copied();
        let not_ok = ts.iter().filter(|t| t.outcome != Outcome::Ok).count();
        let mut images: Vec<String> = ts
            .iter()
            .filter_map(|t| t.recreated.as_ref())
            .map(|r| format!("`{}` → `{}`", r.old_image, r.new_image))
            .collect();
        images.sort();
        images.dedup();
        let _ = writeln!(
            out,
            "| {} | {cause} | {} | {not_ok} | {} | {} | {} |",
            cell(service),
            ts.len(),
            opt(p50),
            opt(spans.last().copied()),
            cell(&images.join(", "))
        );
    }
}

/// A fleet run: the nodes whose restarts took longest, so an operator sees
/// whether slowness is everywhere or on a few nodes.
fn nodes_section(out: &mut String, timelines: &[TimelineRecord]) {
    let mut by_node: BTreeMap<&str, Vec<&TimelineRecord>> = BTreeMap::new();
    for t in timelines {
        by_node.entry(&t.node).or_default().push(t);
    }
    if by_node.len() < 2 {
        return;
    }
    let mut rows: Vec<(&str, usize, usize, f64, f64)> = by_node
        .iter()
        .map(|(node, ts)| {
            let mut spans: Vec<f64> = ts.iter().filter_map(|t| restart_span(t)).collect();
            spans.sort_by(f64::total_cmp);
            let at = |q: f64| {
                spans
                    .get(((q * spans.len() as f64).ceil() as usize).max(1) - 1)
                    .copied()
                    .unwrap_or(0.0)
            };
            let not_ok = ts.iter().filter(|t| t.outcome != Outcome::Ok).count();
            (*node, ts.len(), not_ok, at(0.5), at(1.0))
        })
        .collect();
    rows.sort_by(|a, b| b.4.total_cmp(&a.4).then(a.0.cmp(b.0)));
    let shown = rows.len().min(20);
    let _ = writeln!(
        out,
        "\n## Nodes\n\n{} nodes; the {shown} with the longest restart first (requested → last milestone).\n",
        rows.len()
    );
    out.push_str("| node | restarts | not ok | p50 | max |\n|---|--:|--:|--:|--:|\n");
    for (node, n, not_ok, p50, max) in &rows[..shown] {
        let _ = writeln!(
            out,
            "| {} | {n} | {not_ok} | {} | {} |",
            cell(node),
            format_seconds(*p50),
            format_seconds(*max)
        );
    }
}

/// Past this many rows, report.md shows the slowest [`SHOWN_ROWS`] and
/// details.md all of them.
pub const MAX_ROWS: usize = 200;
const SHOWN_ROWS: usize = 100;
/// Likewise for "where the time went".
pub const MAX_SENTENCES: usize = 60;

fn table(out: &mut String, rows: Vec<&SummaryRow>) {
    out.push_str("| service | phase | count | p50 | p90 | p99 | max | failures |\n|---|---|--:|--:|--:|--:|--:|--:|\n");
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            cell(&r.service),
            r.phase,
            r.count,
            opt(r.p50),
            opt(r.p90),
            opt(r.p99),
            opt(r.max),
            r.failures
        );
    }
}

/// details.md, when report.md had to leave rows or sentences out: all of them.
pub fn render_details(
    run: &RunData,
    rows: &[SummaryRow],
    words: &BTreeMap<String, Vec<String>>,
) -> Option<String> {
    let sentences = words.values().map(Vec::len).sum::<usize>();
    if rows.len() <= MAX_ROWS && sentences <= MAX_SENTENCES {
        return None;
    }
    let mut out = format!(
        "# bounce: `{}` on `{}`, run `{}`: every row\n\n## Restart time per service and phase\n\n",
        cell(&run.scenario),
        cell(&run.deployment),
        run.run_id
    );
    table(&mut out, rows.iter().collect());
    out.push_str("\n## Where the time went\n\n");
    for (service, lines) in words {
        for l in lines {
            let _ = writeln!(out, "- **{}**: {l}", cell(service));
        }
    }
    Some(out)
}

pub fn render(i: &Input<'_>) -> String {
    let run = i.run;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# bounce: `{}` on `{}`\n",
        cell(&run.scenario),
        cell(&run.deployment)
    );
    let duration = run
        .finished_unix_nanos
        .map(|f| format_seconds((f - run.started_unix_nanos) as f64 / 1e9))
        .unwrap_or_else(|| "did not finish".into());
    out.push_str(
        "| run | started | duration | nodes | restarts | outcomes |\n|---|---|---|--:|---|---|\n",
    );
    let n = run.timelines.len();
    let observed = run
        .timelines
        .iter()
        .filter(|t| t.origin == Origin::Watch)
        .count();
    let restarts = match (run.planned, observed) {
        (0, _) => format!("{n} observed"),
        (p, 0) => format!("{n} of {p} planned"),
        (p, o) => format!("{n}: {} of {p} planned, {o} observed", n - o),
    };
    let _ = writeln!(
        out,
        "| `{}` | {} | {} | {} | {restarts} | {} |",
        run.run_id,
        utc(run.started_unix_nanos),
        duration,
        run.nodes.len(),
        outcomes(&run.timelines)
    );
    if run.finished_unix_nanos.is_none() {
        out.push_str("\n> [!WARNING]\n> The run did not finish (or not every node reported its end): the numbers cover the restarts measured so far.\n");
    }
    if run.interrupted {
        out.push_str("\n> [!NOTE]\n> The operator interrupted this run (Ctrl-C).\n");
    }
    if run.not_started > 0 {
        let _ = writeln!(
            out,
            "\n> [!NOTE]\n> {} planned restart(s) were never begun (the run stopped early).",
            run.not_started
        );
    }
    if let Some(comparison) = i.comparison {
        let base = i.baseline.expect("a comparison has a baseline");
        let _ = writeln!(
            out,
            "\n## Compared with the baseline\n\nBaseline: run `{}` of `{}` on `{}`, started {}, {} restart(s).\n\n**{}**\n",
            base.run_id,
            cell(&base.scenario),
            cell(&base.deployment),
            utc(base.started_unix_nanos),
            base.timelines.len(),
            verdict_line(comparison)
        );
        comparison_table(&mut out, comparison);
    }

    out.push_str("\n## Restart time per service and phase\n\n");
    if i.rows.len() > MAX_ROWS {
        // A GitHub comment holds 65,536 characters: the slowest rows here,
        // all of them in details.md.
        let mut slowest: Vec<&SummaryRow> = i.rows.iter().collect();
        slowest.sort_by(|a, b| {
            b.p99
                .unwrap_or(0.0)
                .total_cmp(&a.p99.unwrap_or(0.0))
                .then(b.failures.cmp(&a.failures))
        });
        slowest.truncate(SHOWN_ROWS);
        let _ = writeln!(
            out,
            "The {SHOWN_ROWS} slowest of {} rows by p99; every row is in [`details.md`](details.md).\n",
            i.rows.len()
        );
        table(&mut out, slowest);
    } else {
        table(&mut out, i.rows.iter().collect());
    }
    out.push_str("\nPhases: `stop` requested → exited, `start` exited → running, `ready` running → first readiness success, `total` requested → ready; Ceph OSDs: `osd_boot`, `osd_up`, `pgs_active`, `pgs_clean` from running. Quantiles from HDR histograms (3 significant digits); `failures` counts restarts that did not end `ok` and in which the phase was not observed, among the phases their kind of target goes through (a container has no `osd_boot`; an OSD's `pgs_*` only count in `total`).\n");
    if let Some(chart) = &i.links.services_chart {
        let _ = writeln!(out, "\n![p50 per service and phase]({chart})");
    }
    for (phase, chart) in &i.links.percentile_charts {
        let _ = writeln!(out, "\n![{phase}: percentile distribution]({chart})");
    }

    let sentences: Vec<String> = i
        .words
        .iter()
        .flat_map(|(service, lines)| {
            lines
                .iter()
                .map(move |l| format!("- **{}**: {l}", cell(service)))
        })
        .collect();
    if !sentences.is_empty() {
        out.push_str("\n## Where the time went\n\n");
        for l in sentences.iter().take(MAX_SENTENCES) {
            let _ = writeln!(out, "{l}");
        }
        if sentences.len() > MAX_SENTENCES {
            let _ = writeln!(
                out,
                "\n… {} more in [`details.md`](details.md).",
                sentences.len() - MAX_SENTENCES
            );
        }
    }

    by_cause(&mut out, &run.timelines);

    let mut ranked: Vec<(&TimelineRecord, f64)> = run
        .timelines
        .iter()
        .filter_map(|t| restart_span(t).map(|s| (t, s)))
        .collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    ranked.truncate(i.slowest);
    if !ranked.is_empty() {
        let phases: Vec<Phase> = Phase::ALL
            .into_iter()
            .filter(|p| ranked.iter().any(|(t, _)| t.phases.contains_key(p)))
            .collect();
        let _ = writeln!(
            out,
            "\n## The {} slowest restarts\n\nRanked by requested → last milestone observed.\n",
            ranked.len()
        );
        let _ = writeln!(
            out,
            "| service | node | target | round | outcome | span | {} |",
            phases
                .iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(" | ")
        );
        let _ = writeln!(
            out,
            "|---|---|---|--:|---|--:|{}",
            "--:|".repeat(phases.len())
        );
        for (t, span) in &ranked {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                cell(&t.service),
                cell(&t.node),
                cell(t.target.name()),
                t.iteration,
                t.outcome,
                format_seconds(*span),
                phases
                    .iter()
                    .map(|p| opt(t.phases.get(p).copied()))
                    .collect::<Vec<_>>()
                    .join(" | ")
            );
        }
    }

    nodes_section(&mut out, &run.timelines);

    let failed: Vec<&TimelineRecord> = run
        .timelines
        .iter()
        .filter(|t| t.outcome != Outcome::Ok)
        .collect();
    if !failed.is_empty() {
        let _ = writeln!(
            out,
            "\n## Restarts that did not end ok ({})\n",
            failed.len()
        );
        out.push_str("| service | node | round | outcome | why |\n|---|---|--:|---|---|\n");
        for t in failed.iter().take(50) {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                cell(&t.service),
                cell(&t.node),
                t.iteration,
                t.outcome,
                cell(t.error.as_deref().unwrap_or("-"))
            );
        }
        if failed.len() > 50 {
            let _ = writeln!(
                out,
                "\n… and {} more in `timelines.jsonl`.",
                failed.len() - 50
            );
        }
    }

    out.push_str("\n## Environment\n\n");
    environment(&mut out, &run.nodes);

    out.push_str("\n## How it was measured\n\nEvery timestamp is the CLOCK_REALTIME of the node it was taken on; a phase is the difference of two timestamps of the same node and is reported only when both were observed.\n\n");
    sources(&mut out, &run.timelines);

    if let Some(yaml) = &run.scenario_yaml {
        let _ = writeln!(
            out,
            "\n## Scenario\n\n<details><summary>scenario.yaml</summary>\n\n```yaml\n{}\n```\n\n</details>",
            yaml.trim_end().replace("```", "` ` `")
        );
    }

    out.push_str("\n## Files\n\n");
    for (f, what) in &i.links.files {
        let _ = writeln!(out, "- [`{f}`]({f}): {what}");
    }
    let _ = writeln!(
        out,
        "\n<sub>bounce {} · read from {}</sub>",
        env!("CARGO_PKG_VERSION"),
        run.origin
    );
    out
}
