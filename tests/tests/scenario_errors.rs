//! Bad scenarios: every one is refused by `bounce-agent check` with the file,
//! line, column and key path of what is wrong. Each file of
//! `tests/corpus/broken/` says on its first line what it expects:
//! `# expect: LINE:COL KEY.PATH message fragment`.

use bounce_tests::{agent, text};
use std::path::PathBuf;

fn corpus() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus/broken");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_broken_scenario_is_refused_with_its_position() {
    let files = corpus();
    assert!(files.len() >= 15, "the corpus is there");
    for file in files {
        let body = std::fs::read_to_string(&file).unwrap();
        let expect = body
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{}: no `# expect:` line", file.display()));
        let (pos, rest) = expect.split_once(' ').unwrap();
        let (path, fragment) = rest.split_once(' ').unwrap();
        let out = agent(&["check", file.to_str().unwrap()]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{}: {}",
            file.display(),
            text(&out)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        let head = format!("{}:{pos}: {path}: ", file.display());
        assert!(
            stderr.starts_with(&head),
            "{}: expected `{head}...`, got {stderr}",
            file.display()
        );
        assert!(
            stderr.contains(fragment),
            "{}: expected `{fragment}` in {stderr}",
            file.display()
        );
    }
}

#[test]
fn shipped_scenarios_are_valid() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut args = vec!["check".to_string()];
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|e| e == "yaml") {
            args.push(p.to_string_lossy().into_owned());
        }
    }
    assert!(args.len() >= 6, "kolla scenarios and the demo are shipped");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = agent(&args);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn a_missing_file_is_named() {
    let out = agent(&["check", "/nonexistent/scenario.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/nonexistent/scenario.yaml: cannot read")
    );
}
