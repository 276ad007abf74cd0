//! `bounce-collector report` on real runs (Docker harness): the numbers in
//! report.md against the timelines, valid SVG, the raw files, redaction,
//! reports from the collector's store, and the comparison's verdicts on the
//! same workload and on a workload made slower on purpose.

use bounce_tests::*;
use bounce_wire::{Phase, PhaseHistograms, RunSummary, TimelineRecord};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;

/// The tests of this file one at a time: the comparison measures restart
/// times, which the other test's restarts would disturb.
static QUIET: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn report(args: &[&str]) -> Output {
    std::process::Command::new(bin("bounce-collector"))
        .arg("report")
        .args(args)
        .output()
        .expect("run bounce-collector")
}

/// `0.314s`, `12.3s`, `2m05s` back to seconds.
fn secs(s: &str) -> f64 {
    if let Some((m, rest)) = s.split_once('m') {
        return m.parse::<f64>().unwrap() * 60.0
            + rest.trim_end_matches('s').parse::<f64>().unwrap();
    }
    s.trim_end_matches('s').parse().unwrap()
}

/// The rows of report.md's table per service and phase: (service, phase) → cells.
fn results_table(md: &str) -> BTreeMap<(String, String), Vec<String>> {
    let section = md
        .split("## Restart time per service and phase")
        .nth(1)
        .expect("the results section");
    section
        .lines()
        .skip_while(|l| !l.starts_with("| service"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cells: Vec<String> = l
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect();
            ((cells[0].clone(), cells[1].clone()), cells[2..].to_vec())
        })
        .collect()
}

/// Every file under `dir`, relative path → text (binary files skipped).
fn files(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(t) = std::fs::read_to_string(&p) {
                out.insert(p.strip_prefix(dir).unwrap().display().to_string(), t);
            }
        }
    }
    out
}

fn run(
    dir: &Scratch,
    name: &str,
    yaml: &str,
    extra: &[&str],
) -> (std::path::PathBuf, Vec<TimelineRecord>) {
    let file = dir.write(&format!("{name}.yaml"), yaml);
    let out_dir = dir.path(name);
    let out = agent(&run_args(&file, &out_dir, extra));
    assert!(out.status.success(), "{name}: {}", text(&out));
    let tls = read_timelines(&out_dir);
    (out_dir, tls)
}

#[test]
fn a_report_holds_the_timelines_numbers_valid_svg_and_the_raw_files() {
    let _quiet = QUIET.lock().unwrap_or_else(|e| e.into_inner());
    let fast = TestContainer::start(
        "rep-fast",
        &["--network", "none"],
        "trap 'exit 0' TERM; while true; do sleep 1 & wait; done",
    );
    let slow = TestContainer::start(
        "rep-slow",
        &["--network", "none"],
        "trap 'sleep 0.3; exit 0' TERM; while true; do sleep 1 & wait; done",
    );
    let dir = Scratch::new("report");
    let (out_dir, tls) = run(
        &dir,
        "run",
        &format!(
            "deployment: lab\nscenario: report\nrepeat: 5\nconcurrency: 2\ntargets:\n  - docker: {{names: [{}, {}]}}\n    stop_timeout: 5s\n    timeout: 30s\n",
            fast.name, slow.name
        ),
        &[],
    );
    assert_eq!(tls.len(), 10);
    let rep = dir.path("rep");
    let out = report(&[
        "--from",
        out_dir.to_str().unwrap(),
        "--out",
        rep.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let md = std::fs::read_to_string(rep.join("report.md")).unwrap();

    // Every (service, phase) of the timelines, with the timelines' numbers.
    let table = results_table(&md);
    let mut values: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    for t in &tls {
        for (p, v) in &t.phases {
            values
                .entry((t.service.clone(), p.to_string()))
                .or_default()
                .push(*v);
        }
    }
    assert_eq!(
        table.keys().collect::<Vec<_>>(),
        values.keys().collect::<Vec<_>>(),
        "{md}"
    );
    for (key, vs) in &mut values {
        vs.sort_by(f64::total_cmp);
        let row = &table[key];
        assert_eq!(row[0], vs.len().to_string(), "{key:?} count");
        // HDR keeps 3 significant digits; the table prints 3 decimals.
        let close = |cell: &str, exact: f64| {
            let got = secs(cell);
            assert!(
                (got - exact).abs() <= 0.0006 + exact * 0.001,
                "{key:?}: report says {cell}, timelines {exact}"
            );
        };
        let rank = |q: f64| vs[((q * vs.len() as f64).ceil() as usize).clamp(1, vs.len()) - 1];
        close(&row[1], rank(0.5));
        close(&row[2], rank(0.9));
        close(&row[4], *vs.last().unwrap());
        assert_eq!(row[5], "0", "{key:?} failures");
    }
    // The slow container's stop waited 0.3 s: it heads the slowest table.
    let slowest = md.split("slowest restarts").nth(1).expect("slowest table");
    let first_row = slowest
        .lines()
        .find(|l| {
            l.starts_with(&format!("| {}", slow.name)) || l.starts_with(&format!("| {}", fast.name))
        })
        .unwrap();
    assert!(
        first_row.starts_with(&format!("| {} ", slow.name)),
        "{first_row}"
    );
    assert!(md.contains("## Environment") && md.contains(&fast.name));

    // Charts: valid SVG, one line per service in each percentile chart.
    let charts: Vec<_> = std::fs::read_dir(rep.join("charts"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(charts.len() >= 4, "{charts:?}");
    for c in &charts {
        let text = std::fs::read_to_string(c).unwrap();
        let doc =
            roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", c.display()));
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "svg");
        assert_eq!(
            root.tag_name().namespace(),
            Some("http://www.w3.org/2000/svg")
        );
        let name = c.file_name().unwrap().to_string_lossy();
        assert!(
            md.contains(&format!("(charts/{name})")),
            "report.md links {name}"
        );
        if name.starts_with("percentiles-") {
            let lines = root
                .descendants()
                .filter(|n| n.has_tag_name("polyline"))
                .count();
            assert_eq!(lines, 2, "{name}: one line per service");
            for pl in root.descendants().filter(|n| n.has_tag_name("polyline")) {
                let pts = pl.attribute("points").unwrap().split(' ').count();
                assert!(pts > 100, "{name}: {pts} points");
            }
        } else {
            let bars = root
                .descendants()
                .filter(|n| n.has_tag_name("rect") && n.children().any(|c| c.has_tag_name("title")))
                .count();
            assert!(
                bars >= 4,
                "{name}: stop and start of two services, {bars} segments"
            );
        }
    }
    // Raw files: the same timelines, histograms with the same counts, the scenario.
    assert_eq!(read_timelines(&rep), tls);
    let h =
        PhaseHistograms::read_hlog(&std::fs::read(rep.join("histograms.hlog")).unwrap()).unwrap();
    for (key, vs) in &values {
        let phase = Phase::parse(&key.1).unwrap();
        assert_eq!(
            h.get(&key.0, phase).unwrap().len(),
            vs.len() as u64,
            "{key:?}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(rep.join("scenario.yaml")).unwrap(),
        std::fs::read_to_string(out_dir.join("scenario.yaml")).unwrap()
    );
    // A second report into the same folder is refused, nothing overwritten.
    let again = report(&[
        "--from",
        out_dir.to_str().unwrap(),
        "--out",
        rep.to_str().unwrap(),
    ]);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        text(&again).contains("already holds a report"),
        "{}",
        text(&again)
    );

    // --redact: the host's name is nowhere, the numbers are unchanged.
    let summary: RunSummary =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("summary.json")).unwrap())
            .unwrap();
    let host = summary.identity.node.hostname.clone();
    let red = dir.path("redacted");
    let out = report(&[
        "--from",
        out_dir.to_str().unwrap(),
        "--out",
        red.to_str().unwrap(),
        "--redact",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    for (name, body) in files(&red) {
        if name.ends_with(".hlog") {
            continue;
        }
        let whole_word = body.match_indices(&host).any(|(i, _)| {
            let before = body[..i].chars().next_back();
            let after = body[i + host.len()..].chars().next();
            !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
        });
        assert!(!whole_word, "{name} still names the host {host:?}");
    }
    let red_md = std::fs::read_to_string(red.join("report.md")).unwrap();
    assert!(red_md.contains("node-01"), "{red_md}");
    assert_eq!(results_table(&red_md), table);
    assert!(read_timelines(&red).iter().all(|t| t.node == "node-01"));
}

#[test]
fn a_comparison_finds_no_change_in_the_same_workload_and_a_slowdown_made_on_purpose() {
    let _quiet = QUIET.lock().unwrap_or_else(|e| e.into_inner());
    let script = |delay: &str| {
        format!("trap 'sleep {delay}; exit 0' TERM; while true; do sleep 1 & wait; done")
    };
    let c = TestContainer::start("cmp", &["--network", "none"], &script("0.2"));
    let name = c.name.clone();
    let dir = Scratch::new("compare");
    let collector = CollectorProcess::start(&dir.0);
    let token = dir.write("token", AGENT_TOKEN);
    let yaml = format!(
        "deployment: lab\nscenario: compare\nrepeat: 8\ntargets:\n  - docker: {{names: [{name}]}}\n    stop_timeout: 5s\n    timeout: 30s\n"
    );
    let url = collector.url();
    let (base, _) = run(
        &dir,
        "base",
        &yaml,
        &["--collector", &url, "--token-file", token.to_str().unwrap()],
    );
    // The same conditions as the baseline (collector included): only the
    // workload may differ between runs that are compared.
    let (same, _) = run(
        &dir,
        "same",
        &yaml,
        &["--collector", &url, "--token-file", token.to_str().unwrap()],
    );
    // The same container name, now taking 1.2 s to stop instead of 0.2 s.
    drop(c);
    let slow_c = TestContainer::start("cmp", &["--network", "none"], &script("1.2"));
    assert_eq!(slow_c.name, name);
    let (slow, _) = run(&dir, "slow", &yaml, &[]);

    let verdicts = |dir: &Path| -> BTreeMap<(String, String), String> {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("comparison.json")).unwrap())
                .unwrap();
        v["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    (
                        c["service"].as_str().unwrap().to_string(),
                        c["phase"].as_str().unwrap().to_string(),
                    ),
                    c["verdict"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };

    // The same workload twice: no significant change, exit 0.
    let r = dir.path("r-same");
    let out = report(&[
        "--from",
        same.to_str().unwrap(),
        "--baseline-from",
        base.to_str().unwrap(),
        "--out",
        r.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("No significant slowdown"),
        "{}",
        text(&out)
    );
    let v = verdicts(&r);
    assert!(v.values().all(|x| x != "slower"), "{v:?}");
    assert!(
        std::fs::read_to_string(r.join("report.md"))
            .unwrap()
            .contains("## Compared with the baseline")
    );
    assert!(r.join("baseline/timelines.jsonl").exists());

    // One second slower to stop: slower, exit 1, on the terminal and in the report.
    let r = dir.path("r-slow");
    let out = report(&[
        "--from",
        slow.to_str().unwrap(),
        "--baseline-from",
        base.to_str().unwrap(),
        "--out",
        r.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("SLOWER   {name}/stop")),
        "{}",
        text(&out)
    );
    let v = verdicts(&r);
    assert_eq!(v[&(name.clone(), "stop".to_string())], "slower", "{v:?}");
    assert_eq!(v[&(name.clone(), "total".to_string())], "slower", "{v:?}");
    let md = std::fs::read_to_string(r.join("report.md")).unwrap();
    assert!(
        md.contains("Slower than the baseline") && md.contains("**slower**"),
        "{md}"
    );
    let svg = std::fs::read_to_string(r.join("charts/percentiles-stop.svg")).unwrap();
    assert!(
        svg.contains("stroke-dasharray"),
        "the baseline is drawn dashed"
    );

    // The baseline run read back from the collector's store makes the same
    // table as its folder; run from the store, baseline from a folder.
    let run_id = serde_json::from_str::<RunSummary>(
        &std::fs::read_to_string(base.join("summary.json")).unwrap(),
    )
    .unwrap()
    .identity
    .run_id;
    let store = collector.store.to_str().unwrap().to_string();
    let from_store = dir.path("r-store");
    let out = report(&[
        run_id.as_str(),
        "--store",
        &store,
        "--baseline-from",
        slow.to_str().unwrap(),
        "--out",
        from_store.to_str().unwrap(),
    ]);
    // Exit 1 exactly when some pair is slower (start times may differ by
    // chance between runs made under different load; stop is 1 s apart).
    let any_slower = verdicts(&from_store).values().any(|v| v == "slower");
    assert_eq!(
        out.status.code(),
        Some(i32::from(any_slower)),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains(&format!("faster   {name}/stop")),
        "{}",
        text(&out)
    );
    let from_dir = dir.path("r-dir");
    let out = report(&[
        "--from",
        base.to_str().unwrap(),
        "--out",
        from_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let md_store = std::fs::read_to_string(from_store.join("report.md")).unwrap();
    let md_dir = std::fs::read_to_string(from_dir.join("report.md")).unwrap();
    assert_eq!(results_table(&md_store), results_table(&md_dir));
    assert!(
        md_store.contains("scenario.yaml"),
        "the scenario came with the first batch"
    );
    assert_eq!(read_timelines(&from_store), read_timelines(&base));

    // Bad input: clear errors, exit 2.
    let out = report(&[
        "no-such-run",
        "--store",
        &store,
        "--out",
        dir.path("x").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("no run \"no-such-run\""),
        "{}",
        text(&out)
    );
    let out = report(&["r", "--out", dir.path("y").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("needs --store"), "{}", text(&out));
    let out = report(&[
        "--from",
        dir.path("nothing-here").to_str().unwrap(),
        "--out",
        dir.path("z").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("no timelines.jsonl"), "{}", text(&out));
}
