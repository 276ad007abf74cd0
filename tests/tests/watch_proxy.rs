//! `bounce-agent watch` through a read-only Docker API proxy (HAProxy,
//! Debian's package) that lets through only the GETs watch needs (the
//! list in scenarios/README.md): `/_ping`, `/version`, `/events`,
//! `/containers/{id}/json`. Watch still times a restart, boundary for
//! boundary from the engine's events; a write through the same proxy is
//! refused and changes nothing.

use bounce_tests::*;
use bounce_wire::{BoundaryName, Cause, Outcome, Phase, Source};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The proxy: HTTP mode, GET/HEAD of the read paths only, everything else 403.
fn haproxy_config(socket: &Path) -> String {
    format!(
        "global\n  maxconn 64\n\
         defaults\n  mode http\n  timeout connect 5s\n  timeout client 1h\n  timeout server 1h\n\
         frontend docker_read_only\n  bind unix@{}\n\
         \x20 acl read method GET HEAD\n\
         \x20 acl watch_path path_reg ^(/v[0-9.]+)?/(_ping|version|events|containers(/[^/]+)?/json)$\n\
         \x20 http-request deny deny_status 403 unless read watch_path\n\
         \x20 default_backend engine\n\
         backend engine\n  server engine /var/run/docker.sock\n",
        socket.display()
    )
}

struct Proxy(Child);

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_proxy(dir: &Scratch) -> (Proxy, std::path::PathBuf) {
    let socket = dir.path("docker-ro.sock");
    let cfg = dir.write("haproxy.cfg", &haproxy_config(&socket));
    let check = Command::new("haproxy")
        .arg("-c")
        .arg("-f")
        .arg(&cfg)
        .output()
        .expect("haproxy (Debian's package) is installed by scripts/test.sh");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let child = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "haproxy did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    (Proxy(child), socket)
}

/// `curl` over the proxy's socket: (status, body).
fn through(socket: &Path, method: &str, path: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "-X",
            method,
            "--unix-socket",
        ])
        .arg(socket)
        .arg(format!("http://docker{path}"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

#[test]
fn watch_times_restarts_through_a_read_only_proxy_that_refuses_writes() {
    docker_up();
    let dir = Scratch::new("watch-proxy");
    let (_proxy, socket) = start_proxy(&dir);
    let c = TestContainer::start(
        "watch-proxy",
        &["--network", "none"],
        "trap 'exit 0' TERM; while true; do sleep 0.1; done",
    );
    // What watch needs passes; a write does not, and changes nothing.
    let inspect = format!("/containers/{}/json", c.id);
    for path in ["/_ping", "/version", "/containers/json?all=1", &inspect] {
        assert_eq!(through(&socket, "GET", path).0, 200, "GET {path}");
    }
    let started = c.inspect()["State"]["StartedAt"].clone();
    for (method, path) in [
        ("POST", format!("/containers/{}/restart", c.id)),
        ("POST", format!("/containers/{}/stop", c.id)),
        ("POST", format!("/containers/{}/exec", c.id)),
        ("DELETE", format!("/containers/{}", c.id)),
        ("GET", format!("/containers/{}/logs", c.id)),
    ] {
        let (code, body) = through(&socket, method, &path);
        assert_eq!(code, 403, "{method} {path}: {body}");
    }
    assert_eq!(
        c.inspect()["State"]["StartedAt"],
        started,
        "nothing restarted"
    );

    let out = dir.path("watch");
    let host = format!("unix://{}", socket.display());
    let _w = WatchProcess::start_env(&out, &[], &[("DOCKER_HOST", host.as_str())]);
    let since = now_nanos();
    docker(&["restart", "-t", "5", &c.name]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let got = loop {
        let got = watch_records_of(&out, &c.name);
        if !got.is_empty() || Instant::now() > deadline {
            break got;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(got.len(), 1, "{got:#?}");
    let r = &got[0];
    assert_eq!(
        (r.cause, r.outcome),
        (Some(Cause::Restart), Outcome::Ok),
        "{r:#?}"
    );
    let engine = c.events(since, now_nanos());
    let stamp = |action: &str| {
        engine
            .iter()
            .find(|(a, _)| a == action)
            .map(|(_, t)| *t)
            .unwrap_or_else(|| panic!("no {action}: {engine:?}"))
    };
    let b = r.boundary(BoundaryName::Requested).unwrap();
    assert_eq!(b.unix_nanos, stamp("kill"));
    for (boundary, action) in [
        (BoundaryName::Exited, "die"),
        (BoundaryName::Started, "start"),
    ] {
        let b = r.boundary(boundary).unwrap();
        match &b.source {
            Source::DockerEvent { .. } => assert_eq!(b.unix_nanos, stamp(action)),
            // The engine's state stamp, read through the proxy: no later than the event.
            Source::DockerState { .. } => assert!(b.unix_nanos <= stamp(action)),
            other => panic!("{boundary:?} from {other:?}"),
        }
    }
    for p in [Phase::Stop, Phase::Start, Phase::Ready, Phase::Total] {
        assert!(r.phases.contains_key(&p), "{p:?}: {r:#?}");
    }
}
