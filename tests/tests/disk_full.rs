//! The output folder on a real file system that fills up or turns
//! read-only in the middle of a run (a small tmpfs, mounted by the test):
//! the run stops starting restarts, says which file and which error, keeps
//! every line it wrote whole, leaves no service stopped, and what reached
//! the collector is what reached the folder.

use bounce_tests::*;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A tmpfs of `size` mounted on a fresh folder; unmounted and removed when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Scratch, size: &str) -> Tmpfs {
        let at = dir.path("mnt");
        std::fs::create_dir_all(&at).unwrap();
        mount(
            &["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"],
            &at,
        );
        Tmpfs(at)
    }

    /// `mount -o remount,ro`; retried while the agent happens to be
    /// writing a line (the only moment it holds a file open for writing).
    fn make_read_only(&self) {
        for _ in 0..50 {
            let out = Command::new("mount")
                .args(["-o", "remount,ro"])
                .arg(&self.0)
                .output()
                .unwrap();
            if out.status.success() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("{} could not be remounted read-only", self.0.display());
    }

    /// Fills what is left with a file, to the last page.
    fn fill(&self) -> PathBuf {
        let path = self.0.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let page = [0u8; 4096];
        while f.write_all(&page).is_ok() {}
        while f.write_all(&page[..1]).is_ok() {}
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).output();
    }
}

fn mount(args: &[&str], at: &Path) {
    let out = Command::new("mount").args(args).arg(at).output().unwrap();
    assert!(out.status.success(), "mount {args:?}: {}", text(&out));
}

/// Two quick containers, restarted `repeat` times each, two at once.
fn containers_and_scenario(dir: &Scratch, label: &str) -> (Vec<TestContainer>, PathBuf) {
    let cs: Vec<TestContainer> = (0..2)
        .map(|i| {
            TestContainer::start(
                &format!("{label}{i}"),
                &["--network", "none"],
                "trap 'exit 0' TERM; while true; do sleep 0.1; done",
            )
        })
        .collect();
    let names: Vec<&str> = cs.iter().map(|c| c.name.as_str()).collect();
    let yaml = format!(
        "deployment: lab\nscenario: {label}\nrepeat: 200\nconcurrency: 2\ntargets:\n  - docker: {{names: [{}]}}\n    stop_timeout: 2s\n    timeout: 30s\n",
        names.join(", ")
    );
    (cs, dir.write(&format!("{label}.yaml"), &yaml))
}

/// Waits (bounded) until `timelines.jsonl` holds `n` lines.
fn wait_for_lines(out: &Path, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let lines = std::fs::read(out.join("timelines.jsonl"))
            .map(|b| b.iter().filter(|c| **c == b'\n').count())
            .unwrap_or(0);
        if lines >= n {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no {n} timelines within 60 s");
}

/// The agent's end, bounded: killed (and the test failed) if it runs on.
fn wait_for_end(child: std::process::Child) -> std::process::Output {
    let pid = child.id();
    let watchdog = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(90));
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).output();
    });
    let out = child.wait_with_output().unwrap();
    drop(watchdog);
    out
}

/// What every disk failure must leave: exit status 1 with the reason, the
/// timelines whole (the reader fails the test on a torn line), no
/// temporary file, both containers running.
fn check_the_end(
    out: &std::process::Output,
    dir: &Path,
    error: &str,
    cs: &[TestContainer],
) -> usize {
    let said = text(out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    // Which file (the timelines or a spool batch, both in the folder) and which error.
    let why = format!(
        "stopped because the results could not be written: {}/",
        dir.display()
    );
    assert!(said.contains(&why), "{said}");
    assert!(said.contains(error), "{said}");
    let tls = read_timelines(dir);
    assert!(
        tls.len() >= 3 && tls.len() < 400,
        "{} timelines: {said}",
        tls.len()
    );
    let left: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
    for c in cs {
        assert_eq!(
            c.inspect()["State"]["Running"],
            true,
            "{} left stopped",
            c.name
        );
    }
    tls.len()
}

#[test]
fn a_full_disk_stops_the_run_keeps_whole_lines_and_the_collector_agrees() {
    let dir = Scratch::new("enospc");
    let (cs, scenario) = containers_and_scenario(&dir, "enospc");
    let fs = Tmpfs::mount(&dir, "512k");
    let out_dir = fs.0.join("out");
    let collector = CollectorProcess::start(&dir.0);
    let token = dir.write("token", AGENT_TOKEN);
    let child = spawn_agent(&run_args(
        &scenario,
        &out_dir,
        &[
            "--collector",
            &collector.url(),
            "--token-file",
            token.to_str().unwrap(),
            "--flush",
            "20s",
        ],
    ));
    wait_for_lines(&out_dir, 3);
    let filler = fs.fill();
    let out = wait_for_end(child);
    let written = check_the_end(&out, &out_dir, "No space left on device", &cs);
    let said = text(&out);
    // The table and counts are printed whatever the folder took; the
    // summary is there whole (the spool's acknowledged batches freed
    // room) or not at all, and then the run says so.
    assert!(said.contains(" ok, "), "{said}");
    match std::fs::read_to_string(out_dir.join("summary.json")) {
        Ok(json) => {
            let s: bounce_wire::RunSummary = serde_json::from_str(&json).unwrap();
            assert_eq!(s.outcomes.values().sum::<u64>(), written as u64);
        }
        Err(_) => assert!(
            said.contains("the run's summary and histograms could not be written"),
            "{said}"
        ),
    }

    // The collector holds exactly what the folder holds: a timeline the
    // folder lost was not sent, one the spool could not take was sent
    // from memory at the end.
    let run_id = read_timelines(&out_dir)[0].run_id.clone();
    let (status, body) = collector.http(
        "GET",
        &format!("/api/v1/runs/{run_id}"),
        Some(ADMIN_TOKEN),
        None,
    );
    assert_eq!(status, 200, "{body}");
    let theirs: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(theirs["restarts"], written as u64, "{body}\n{said}");

    // With room again, the folder reads back in one pass.
    std::fs::remove_file(filler).unwrap();
    let summarize = Command::new(bin("bounce-collector"))
        .arg("summarize")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(summarize.status.success(), "{}", text(&summarize));
    println!("full disk: {written} timelines written whole, the collector has the same");
}

#[test]
fn a_folder_made_read_only_stops_the_run_and_keeps_what_was_written() {
    let dir = Scratch::new("erofs");
    let (cs, scenario) = containers_and_scenario(&dir, "erofs");
    let fs = Tmpfs::mount(&dir, "4m");
    let out_dir = fs.0.join("out");
    let child = spawn_agent(&run_args(&scenario, &out_dir, &[]));
    wait_for_lines(&out_dir, 3);
    fs.make_read_only();
    let out = wait_for_end(child);
    let written = check_the_end(&out, &out_dir, "Read-only file system", &cs);
    assert!(!out_dir.join("summary.json").exists());
    assert!(
        text(&out).contains("the run's summary and histograms could not be written"),
        "{}",
        text(&out)
    );
    println!("read-only: {written} timelines written whole");
}
