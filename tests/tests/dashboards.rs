//! The Grafana dashboards against a real Prometheus that scraped a real
//! collector fed by real runs (Docker containers in two deployments, Ceph
//! OSDs in a third) and by a watcher that observed the first deployment's
//! restarts (origin `watch`): every variable query and every panel query,
//! with the variables resolved the way Grafana resolves them, must return data.

use bounce_tests::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn dashboards() -> Vec<(PathBuf, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards");
    let mut out: Vec<(PathBuf, Value)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let v = serde_json::from_str(&std::fs::read_to_string(&p).unwrap())
                .unwrap_or_else(|e| panic!("{}: not JSON: {e}", p.display()));
            (p, v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn panels(board: &Value) -> Vec<&Value> {
    // Rows may nest panels; none today, but a row's children count too.
    let mut out = Vec::new();
    for p in board["panels"].as_array().unwrap() {
        out.push(p);
        if let Some(children) = p["panels"].as_array() {
            out.extend(children);
        }
    }
    out
}

#[test]
fn dashboards_are_well_formed() {
    let boards = dashboards();
    let names: BTreeSet<String> = boards
        .iter()
        .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for want in [
        "bounce-overview.json",
        "bounce-service.json",
        "bounce-ceph-osd.json",
        "bounce-compare.json",
    ] {
        assert!(names.contains(want), "{want} is missing from dashboards/");
    }
    let mut uids = BTreeSet::new();
    for (path, b) in &boards {
        let at = path.display();
        assert!(
            uids.insert(b["uid"].as_str().unwrap().to_string()),
            "{at}: uid reused"
        );
        let vars = b["templating"]["list"].as_array().unwrap();
        assert!(
            vars.iter().any(|v| v["name"] == "datasource"
                && v["type"] == "datasource"
                && v["query"] == "prometheus"),
            "{at}: no `datasource` variable of type prometheus"
        );
        for v in vars.iter().filter(|v| v["type"] == "query") {
            assert_eq!(
                v["datasource"]["uid"], "${datasource}",
                "{at}: variable {} does not use the datasource variable",
                v["name"]
            );
        }
        let mut ids = BTreeSet::new();
        let ps = panels(b);
        assert!(ps.len() >= 5, "{at}: only {} panels", ps.len());
        for p in ps {
            let id = p["id"].as_u64().unwrap();
            assert!(ids.insert(id), "{at}: panel id {id} used twice");
            assert_eq!(
                p["datasource"]["uid"], "${datasource}",
                "{at}: panel {id} ({}) does not use the datasource variable",
                p["title"]
            );
            let targets = p["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{at}: panel {id} has no query");
            let mut refs = BTreeSet::new();
            for t in targets {
                assert_eq!(t["datasource"]["uid"], "${datasource}", "{at}: panel {id}");
                assert!(
                    refs.insert(t["refId"].as_str().unwrap()),
                    "{at}: panel {id} refId reused"
                );
                let expr = t["expr"].as_str().unwrap();
                assert!(expr.contains("bounce_"), "{at}: panel {id}: {expr}");
            }
            let g = &p["gridPos"];
            assert!(
                g["x"].as_u64().unwrap() + g["w"].as_u64().unwrap() <= 24,
                "{at}: panel {id} is wider than the grid"
            );
        }
    }
}

/// Grafana's variables, resolved in order against Prometheus: a query
/// variable takes the preferred value if Prometheus offers it (else the
/// first), one with "All" its allValue, a custom one its current value.
fn resolve(
    prom: &PrometheusProcess,
    board: &Value,
    prefer: &BTreeMap<&str, String>,
) -> BTreeMap<String, String> {
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    for v in board["templating"]["list"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        match v["type"].as_str().unwrap() {
            "datasource" => {}
            "custom" => {
                vars.insert(name.into(), v["current"]["value"].as_str().unwrap().into());
            }
            "query" => {
                let def = substitute(v["definition"].as_str().unwrap(), &vars);
                let inner = def
                    .strip_prefix("label_values(")
                    .and_then(|s| s.strip_suffix(')'))
                    .unwrap_or_else(|| panic!("variable {name}: not label_values(...): {def}"));
                let (selector, label) = inner.rsplit_once(", ").unwrap();
                let answer = prom.api(
                    &format!("/api/v1/label/{label}/values"),
                    &[("match[]", selector)],
                );
                let values: Vec<String> = answer["data"]
                    .as_array()
                    .unwrap_or_else(|| panic!("variable {name}: {def}: {answer}"))
                    .iter()
                    .map(|x| x.as_str().unwrap().to_string())
                    .collect();
                assert!(
                    !values.is_empty(),
                    "variable {name}: {def} returned nothing"
                );
                let chosen = if let Some(all) = v["allValue"].as_str() {
                    all.to_string()
                } else {
                    prefer
                        .get(name)
                        .filter(|p| values.contains(p))
                        .cloned()
                        .unwrap_or_else(|| values[0].clone())
                };
                vars.insert(name.into(), chosen);
            }
            other => panic!("variable {name}: type {other} is not handled by this test"),
        }
    }
    vars
}

fn substitute(expr: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = expr
        .replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$__range", "1h");
    // Longest names first, so $a does not eat into a longer name.
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    for n in names {
        out = out
            .replace(&format!("${{{n}}}"), &vars[n])
            .replace(&format!("${n}"), &vars[n]);
    }
    assert!(!out.contains('$'), "unresolved variable in {out}");
    out
}

fn agent_run(dir: &Scratch, name: &str, yaml: &str, url: &str, token: &Path) {
    let file = dir.write(&format!("{name}.yaml"), yaml);
    let out = agent(&run_args(
        &file,
        &dir.path(&format!("out-{name}")),
        &[
            "--state-dir",
            dir.path("state").to_str().unwrap(),
            "--collector",
            url,
            "--token-file",
            token.to_str().unwrap(),
        ],
    ));
    assert!(out.status.success(), "{name}: {}", text(&out));
}

#[test]
fn every_dashboard_query_returns_data_from_a_prometheus_fed_by_real_runs() {
    let dir = Scratch::new("dashboards");
    let collector = CollectorProcess::start(&dir.0);
    let token = dir.write("token", AGENT_TOKEN);
    let c = TestContainer::start(
        "dash",
        &["--network", "none"],
        "trap 'exit 0' TERM; while true; do sleep 1 & wait; done",
    );
    // The watcher files what it observes (every container's restarts) under dash-a.
    let url = collector.url();
    let _watcher = WatchProcess::start(
        &dir.path("watch"),
        &[
            "--deployment",
            "dash-a",
            "--collector",
            &url,
            "--token-file",
            token.to_str().unwrap(),
        ],
    );
    for deployment in ["dash-a", "dash-b"] {
        agent_run(
            &dir,
            deployment,
            &format!(
                "deployment: {deployment}\nscenario: dash\nrepeat: 3\ntargets:\n  - docker: {{names: [{}]}}\n    stop_timeout: 5s\n    timeout: 30s\n",
                c.name
            ),
            &collector.url(),
            &token,
        );
    }
    {
        let env = ceph_up();
        let _one = lock_cluster();
        agent_run(
            &dir,
            "dash-ceph",
            &format!(
                "deployment: dash-ceph\nscenario: osd\nconcurrency: 1\ntargets:\n  - ceph_osd:\n      ids: [0]\n      bus: \"{}\"\n      ceph: [ceph, --conf, \"{}\"]\n      admin_socket: \"{}/ceph-osd.{{id}}.asok\"\n    gates: {{wait_for: pgs_clean, timeout: 120s}}\n    timeout: 180s\n",
                systemd_up().bus,
                env.conf.display(),
                env.run_dir.display()
            ),
            &collector.url(),
            &token,
        );
    }
    let prom = PrometheusProcess::start(&dir.0, collector.port);
    // Everything scraped, and a few scrapes more so increase()/rate() have two samples.
    let mut seen = None;
    let observed = format!(
        "sum(bounce_restarts_total{{origin=\"watch\",deployment=\"dash-a\",service=\"{}\",cause=\"restart\"}})",
        c.name
    );
    let mut watched = None;
    for _ in 0..240 {
        seen = prom.value("sum(bounce_restarts_total{origin=\"run\"})");
        watched = prom.value(&observed);
        if seen == Some(7.0) && watched == Some(6.0) {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(seen, Some(7.0), "Prometheus scraped 3 + 3 + 1 restarts");
    assert_eq!(
        watched,
        Some(6.0),
        "the watcher observed both runs' 6 restarts"
    );
    std::thread::sleep(Duration::from_secs(3));

    let prefer: BTreeMap<&str, String> = [
        ("deployment", "dash-a".to_string()),
        ("a", "dash-a".to_string()),
        ("b", "dash-b".to_string()),
        ("service", c.name.clone()),
    ]
    .into_iter()
    .collect();
    let mut checked = 0;
    let mut empty = Vec::new();
    for (path, board) in dashboards() {
        let vars = resolve(&prom, &board, &prefer);
        for p in panels(&board) {
            for t in p["targets"].as_array().unwrap() {
                let q = substitute(t["expr"].as_str().unwrap(), &vars);
                let answer = prom.api("/api/v1/query", &[("query", &q)]);
                assert_eq!(
                    answer["status"],
                    "success",
                    "{}: panel {:?}: {q}: {answer}",
                    path.display(),
                    p["title"]
                );
                if answer["data"]["result"]
                    .as_array()
                    .is_none_or(|r| r.is_empty())
                {
                    empty.push(format!("{}: panel {:?}: {q}", path.display(), p["title"]));
                }
                checked += 1;
            }
        }
    }
    assert!(
        empty.is_empty(),
        "queries without data:\n{}",
        empty.join("\n")
    );
    assert!(checked >= 40, "only {checked} queries checked");
    // The compare board's ratio is a real number from both deployments (not
    // NaN, not empty). How close to 1 it is depends on the machine's load
    // while the two runs ran: a timing matter, not this test's.
    let ratio = prom
        .value(&format!(
            "max by (service) (bounce_restart_duration_hdr_seconds{{deployment=\"dash-b\",phase=\"total\",quantile=\"0.9\",service=\"{0}\"}}) / max by (service) (bounce_restart_duration_hdr_seconds{{deployment=\"dash-a\",phase=\"total\",quantile=\"0.9\",service=\"{0}\"}})",
            c.name
        ))
        .unwrap();
    assert!(ratio.is_finite() && ratio > 0.0, "B/A = {ratio}");
}
