//! TLS, node identity and the hardened API, against the real binaries: a
//! private CA made here (rcgen), a collector serving HTTPS, the agent
//! restarting a real container. Every wrong trust is refused before
//! anything restarts and with words that say what is wrong; a node
//! certificate sends only as its own name and never reads; SIGHUP serves a
//! new certificate without dropping an open connection; slow clients,
//! guessed tokens and deep bodies are cut off.

use bounce_tests::pki::{Issued, TestCa};
use bounce_tests::{
    ADMIN_TOKEN, AGENT_TOKEN, CollectorProcess, Scratch, TestContainer, agent, batch_of, bin,
    docker_record, run_args, text,
};
use bounce_wire::{Boundary, BoundaryName, Clock, NodeFacts, Source};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SLEEPER: &str = "trap 'exit 0' TERM; while true; do sleep 1 & wait; done";

fn tls_collector(dir: &Path, sub: &str, cert: &Issued, extra: &[&str]) -> CollectorProcess {
    let d = dir.join(sub);
    std::fs::create_dir_all(&d).unwrap();
    let mut args = vec![
        "--tls-cert",
        cert.cert.to_str().unwrap(),
        "--tls-key",
        cert.key.to_str().unwrap(),
    ];
    args.extend(extra);
    CollectorProcess::start_with(&d, &args)
}

/// Batches the collector stored, from its own counters (read without
/// checking its certificate: this only counts).
fn stored(col: &CollectorProcess) -> String {
    let (_, metrics) = col.curl(&["-k"], "GET", "/metrics", None, None);
    metrics
        .lines()
        .find(|l| l.starts_with("bounce_collector_batches_total{result=\"stored\"}"))
        .unwrap_or("no counter")
        .to_string()
}

fn scenario(dir: &Scratch, container: &str) -> std::path::PathBuf {
    dir.write(
        "tls.yaml",
        &format!(
            "deployment: lab\nscenario: tls\ntargets:\n  - docker: {{names: [{container}]}}\n    stop_timeout: 5s\n    timeout: 30s\n"
        ),
    )
}

#[test]
fn an_agent_with_the_right_ca_streams_a_run_and_every_wrong_trust_is_refused_before_restarting() {
    let c = TestContainer::start("tls-trust", &["--network", "none"], SLEEPER);
    let dir = Scratch::new("tls-trust");
    let ca = TestCa::new(&dir.0, "ca");
    let other = TestCa::new(&dir.0, "other");
    let good = tls_collector(&dir.0, "good", &ca.issue("server", &["localhost"]), &[]);
    let expired = tls_collector(
        &dir.0,
        "expired",
        &ca.issue_expired("expired", &["localhost"]),
        &[],
    );
    let ctl9 = tls_collector(&dir.0, "ctl9", &ca.issue("ctl9", &["ctl9"]), &[]);
    let file = scenario(&dir, &c.name);
    let token = dir.write("agent.token", AGENT_TOKEN);
    let run = |out: &str, url: &str, ca_file: &Path| {
        agent(&run_args(
            &file,
            &dir.path(out),
            &[
                "--collector",
                url,
                "--token-file",
                token.to_str().unwrap(),
                "--ca-file",
                ca_file.to_str().unwrap(),
            ],
        ))
    };
    let before = c.inspect()["State"]["StartedAt"].clone();
    for (out, col, ca_file, words) in [
        ("o-wrong-ca", &good, &other.pem, "signed by an unknown CA"),
        (
            "o-expired",
            &expired,
            &ca.pem,
            "the collector's certificate expired",
        ),
        (
            "o-name",
            &ctl9,
            &ca.pem,
            "the collector's certificate for 'ctl9' is not valid for 'localhost'",
        ),
    ] {
        let o = run(out, &col.url(), ca_file);
        assert_eq!(o.status.code(), Some(2), "{out}: {}", text(&o));
        assert!(text(&o).contains(words), "{out}: {}", text(&o));
        assert!(
            text(&o).contains("nothing was restarted"),
            "{out}: {}",
            text(&o)
        );
        assert!(stored(col).ends_with(" 0"), "{out}: {}", stored(col));
    }
    // Plain http:// to a collector off loopback, without saying it is insecure.
    let o = run("o-plain", "http://ctl9.invalid:9465", &ca.pem);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("refusing plain http://"), "{}", text(&o));
    assert_eq!(
        c.inspect()["State"]["StartedAt"],
        before,
        "nothing was restarted"
    );

    // The right CA: the run is measured and stored over TLS.
    let o = run("o-good", &good.url(), &ca.pem);
    assert!(o.status.success(), "{}", text(&o));
    assert_ne!(c.inspect()["State"]["StartedAt"], before, "restarted");
    assert!(!stored(&good).ends_with(" 0"), "{}", stored(&good));
    // And read back through the same client by an admin (`runs --collector`).
    let admin = dir.write("admin.token", ADMIN_TOKEN);
    let runs = std::process::Command::new(bin("bounce-collector"))
        .args(["runs", "--collector", &good.url(), "--ca-file"])
        .arg(&ca.pem)
        .arg("--token-file")
        .arg(&admin)
        .output()
        .unwrap();
    assert!(runs.status.success(), "{}", text(&runs));
    assert!(
        String::from_utf8_lossy(&runs.stdout).contains("lab"),
        "{}",
        text(&runs)
    );
}

fn batch_as(agent: &str) -> Vec<u8> {
    let b = |name, unix_nanos| Boundary {
        name,
        unix_nanos,
        source: Source::Agent,
        clock: Clock::Realtime,
    };
    let timestamps = vec![
        b(BoundaryName::Requested, 1_000_000_000),
        b(BoundaryName::Exited, 1_400_000_000),
    ];
    let t = docker_record(("r-mtls", "lab", "mtls"), agent, "nova_api", timestamps);
    let node = NodeFacts {
        hostname: agent.into(),
        ..NodeFacts::default()
    };
    serde_json::to_vec(&batch_of(t, node, 1, 1, 1)).unwrap()
}

#[test]
fn a_node_certificate_sends_only_as_its_name_and_never_reads_and_admins_never_ingest() {
    let c = TestContainer::start("tls-node", &["--network", "none"], SLEEPER);
    let dir = Scratch::new("tls-node");
    let ca = TestCa::new(&dir.0, "ca");
    let other = TestCa::new(&dir.0, "other");
    let node_a = ca.issue("node-a", &["node-a"]);
    let stranger = other.issue("stranger", &["node-a"]);
    let audit = dir.path("audit.jsonl");
    let col = tls_collector(
        &dir.0,
        "col",
        &ca.issue("server", &["localhost"]),
        &[
            "--client-ca",
            ca.pem.to_str().unwrap(),
            "--audit-log",
            audit.to_str().unwrap(),
        ],
    );
    let cacert = ["--cacert", ca.pem.to_str().unwrap()];
    let as_node = [
        &cacert[..],
        &[
            "--cert",
            node_a.cert.to_str().unwrap(),
            "--key",
            node_a.key.to_str().unwrap(),
        ],
    ]
    .concat();
    let ingest = "/api/v1/ingest";

    let (s, body) = col.curl(&as_node, "POST", ingest, None, Some(&batch_as("node-b")));
    assert_eq!(s, 403, "another node's results: {body}");
    assert!(body.contains("may only send as node-a"), "{body}");
    let (s, body) = col.curl(&as_node, "POST", ingest, None, Some(&batch_as("node-a")));
    assert_eq!(s, 200, "its own: {body}");
    let (s, body) = col.curl(&as_node, "GET", "/api/v1/runs", None, None);
    assert_eq!(s, 403, "a node certificate cannot read: {body}");
    let (s, body) = col.curl(&as_node, "GET", "/api/v1/runs/r-mtls/export", None, None);
    assert_eq!(s, 403, "nor export a run: {body}");
    let (s, body) = col.curl(
        &cacert,
        "GET",
        "/api/v1/runs/r-mtls/export",
        Some(AGENT_TOKEN),
        None,
    );
    assert_eq!(s, 403, "nor can an agent token: {body}");
    let (s, body) = col.curl(
        &cacert,
        "POST",
        ingest,
        Some(ADMIN_TOKEN),
        Some(&batch_as("node-c")),
    );
    assert_eq!(s, 403, "an admin token cannot ingest: {body}");
    let (s, body) = col.curl(
        &cacert,
        "GET",
        "/api/v1/runs/r-mtls/export",
        Some(ADMIN_TOKEN),
        None,
    );
    assert_eq!(s, 200, "an admin reads: {body}");
    // A certificate from another CA does not get through the handshake.
    let from_other = [
        &cacert[..],
        &[
            "--cert",
            stranger.cert.to_str().unwrap(),
            "--key",
            stranger.key.to_str().unwrap(),
        ],
    ]
    .concat();
    let (s, _) = col.curl(&from_other, "POST", ingest, None, Some(&batch_as("node-a")));
    assert_eq!(s, 0, "no HTTP answer without a trusted certificate");

    // The real agent with the node certificate: another node's name is
    // refused before anything restarts; its own is measured and stored.
    let file = scenario(&dir, &c.name);
    let run = |node: &str, out: &str| {
        agent(&run_args(
            &file,
            &dir.path(out),
            &[
                "--node",
                node,
                "--collector",
                &col.url(),
                "--ca-file",
                ca.pem.to_str().unwrap(),
                "--client-cert",
                node_a.cert.to_str().unwrap(),
                "--client-key",
                node_a.key.to_str().unwrap(),
            ],
        ))
    };
    let before = c.inspect()["State"]["StartedAt"].clone();
    let o = run("node-b", "o1");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains(
            "refused the node certificate: this node certificate may only send as node-a"
        ),
        "{}",
        text(&o)
    );
    assert_eq!(c.inspect()["State"]["StartedAt"], before, "not restarted");
    // An expired node certificate: refused in the handshake, before anything restarts.
    let expired = ca.issue_expired("node-a-old", &["node-a"]);
    let o = agent(&run_args(
        &file,
        &dir.path("o-expired"),
        &[
            "--node",
            "node-a",
            "--collector",
            &col.url(),
            "--ca-file",
            ca.pem.to_str().unwrap(),
            "--client-cert",
            expired.cert.to_str().unwrap(),
            "--client-key",
            expired.key.to_str().unwrap(),
        ],
    ));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("refused this node's certificate: it expired"),
        "{}",
        text(&o)
    );
    assert!(text(&o).contains("nothing was restarted"), "{}", text(&o));
    assert_eq!(c.inspect()["State"]["StartedAt"], before, "not restarted");
    let with_expired = [
        &cacert[..],
        &[
            "--cert",
            expired.cert.to_str().unwrap(),
            "--key",
            expired.key.to_str().unwrap(),
        ],
    ]
    .concat();
    let (s, _) = col.curl(
        &with_expired,
        "POST",
        ingest,
        None,
        Some(&batch_as("node-a")),
    );
    assert_eq!(s, 0, "no HTTP answer with an expired certificate");
    let o = run("node-a", "o2");
    assert!(o.status.success(), "{}", text(&o));

    // The audit log: who read which run, who was refused; never a secret.
    let log = std::fs::read_to_string(&audit).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines.iter().any(|l| l["who"] == "admin token 1"
            && l["run_id"] == "r-mtls"
            && l["allowed"] == true),
        "{log}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["who"] == "node node-a" && l["allowed"] == false && l["status"] == 403),
        "{log}"
    );
    assert!(
        !log.contains(ADMIN_TOKEN) && !log.contains(AGENT_TOKEN),
        "{log}"
    );
}

/// A TLS connection of our own, kept open across the reload.
fn connect(port: u16, ca: &Path) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    open_tls(port, ca, None)
}

/// A TLS connection of our own as `node` (its certificate, no token).
fn connect_as(
    port: u16,
    ca: &Path,
    node: &Issued,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    open_tls(port, ca, Some(node))
}

/// A handshake done with the collector on `port`, trusting `ca`, showing
/// `node`'s certificate if given.
fn open_tls(
    port: u16,
    ca: &Path,
    node: Option<&Issued>,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for c in bounce_client::read_certs(ca).unwrap() {
        roots.add(c).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let config = match node {
        None => config.with_no_client_auth(),
        Some(node) => config
            .with_client_auth_cert(
                bounce_client::read_certs(&node.cert).unwrap(),
                bounce_client::read_key(&node.key).unwrap(),
            )
            .unwrap(),
    };
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    s.flush().unwrap(); // the handshake
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock).unwrap();
    }
    s
}

fn served_cert(s: &rustls::StreamOwned<rustls::ClientConnection, TcpStream>) -> Vec<u8> {
    s.conn.peer_certificates().unwrap()[0].to_vec()
}

/// One keep-alive request on the connection, as the admin: the status.
fn whoami(s: &mut rustls::StreamOwned<rustls::ClientConnection, TcpStream>) -> u16 {
    request(s, Some(ADMIN_TOKEN))
}

/// One keep-alive `GET /api/v1/whoami` on the connection with `token`, or
/// with the connection's certificate: the status.
fn request(
    s: &mut rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    token: Option<&str>,
) -> u16 {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "GET /api/v1/whoami HTTP/1.1\r\nHost: localhost\r\n{auth}\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0);
    let mut body = vec![0; len];
    s.read_exact(&mut body).unwrap();
    head[9..12].parse().unwrap()
}

#[test]
fn sighup_serves_a_new_certificate_and_keeps_open_connections() {
    let dir = Scratch::new("tls-sighup");
    let ca = TestCa::new(&dir.0, "ca");
    let first = ca.issue("first", &["localhost"]);
    let served = Issued {
        cert: dir.path("served.crt"),
        key: dir.path("served.key"),
        der: vec![],
        serial: 0,
    };
    let install = |i: &Issued| {
        // Renamed into place, as a deployment tool would.
        for (from, to) in [(&i.cert, &served.cert), (&i.key, &served.key)] {
            std::fs::copy(from, dir.path("tmp")).unwrap();
            std::fs::rename(dir.path("tmp"), to).unwrap();
        }
    };
    install(&first);
    let col = tls_collector(&dir.0, "col", &served, &[]);
    let mut open = connect(col.port, &ca.pem);
    assert_eq!(served_cert(&open), first.der);
    assert_eq!(whoami(&mut open), 200);

    // A garbled file and SIGHUP: the old certificate stays.
    std::fs::write(&served.cert, "not a certificate").unwrap();
    unsafe { libc::kill(col.pid() as i32, libc::SIGHUP) };
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(served_cert(&connect(col.port, &ca.pem)), first.der);

    let second = ca.issue("second", &["localhost"]);
    install(&second);
    unsafe { libc::kill(col.pid() as i32, libc::SIGHUP) };
    let deadline = Instant::now() + Duration::from_secs(20);
    while served_cert(&connect(col.port, &ca.pem)) != second.der {
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(whoami(&mut open), 200, "the open connection was kept");
    assert_eq!(served_cert(&open), first.der, "on its old handshake");
}

#[test]
fn slow_clients_guessed_tokens_deep_bodies_and_open_plain_http_are_refused() {
    let dir = Scratch::new("tls-hardened");
    let col = CollectorProcess::start_with(&dir.0, &["--header-timeout-secs", "1"]);

    // Slowloris: a request head that never ends is cut off, not waited for.
    let mut slow = TcpStream::connect(("127.0.0.1", col.port)).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut buf = [0u8; 512];
    let read = slow.read(&mut buf);
    assert!(
        read.is_ok()
            || read
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "the server closed the connection: {read:?}"
    );
    let answered = String::from_utf8_lossy(&buf[..*read.as_ref().unwrap_or(&0)]).to_string();
    assert!(!answered.contains("200 OK"), "{answered}");

    // A credential that may not ingest is answered before its body is sent
    // (the collector would otherwise wait for 4 MB that never come).
    let mut early = TcpStream::connect(("127.0.0.1", col.port)).unwrap();
    early
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        early,
        "POST /api/v1/ingest HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 4000000\r\n\r\n"
    )
    .unwrap();
    let mut head = [0u8; 12];
    early.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 403", "refused before the body");

    // A body nested deeper than any batch: 400 before decoding.
    let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
    let (s, body) = col.http(
        "POST",
        "/api/v1/ingest",
        Some(AGENT_TOKEN),
        Some(deep.as_bytes()),
    );
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("nests deeper than 32"), "{body}");

    // Guessing tokens: after 10 failures in a minute, even the right one waits.
    for i in 0..10 {
        let (s, _) = col.http("GET", "/api/v1/runs", Some(&format!("guess-{i:016}")), None);
        assert_eq!(s, 401);
    }
    let (s, body) = col.http("GET", "/api/v1/runs", Some(ADMIN_TOKEN), None);
    assert_eq!(s, 429, "{body}");
    assert!(body.contains("too many failed authentications"), "{body}");

    // Plain HTTP off loopback only when told it is insecure.
    let out = std::process::Command::new(bin("bounce-collector"))
        .args(["serve", "--listen", "0.0.0.0:1", "--store"])
        .arg(dir.path("other.db"))
        .env("BOUNCE_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("refusing to serve plain HTTP on 0.0.0.0:1"),
        "{}",
        text(&out)
    );
}

fn with_cert(ca: &TestCa, cert: &Issued) -> Vec<String> {
    [
        "--cacert",
        ca.pem.to_str().unwrap(),
        "--cert",
        cert.cert.to_str().unwrap(),
        "--key",
        cert.key.to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec()
}

fn opts(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// A collector that takes node certificates, its CA, and curl's options
/// to show node-a's and node-b's certificates.
fn two_nodes(dir: &Scratch) -> (CollectorProcess, TestCa, Vec<String>, Vec<String>) {
    let ca = TestCa::new(&dir.0, "ca");
    let (node_a, node_b) = (
        ca.issue("node-a", &["node-a"]),
        ca.issue("node-b", &["node-b"]),
    );
    let col = tls_collector(
        &dir.0,
        "col",
        &ca.issue("server", &["localhost"]),
        &["--client-ca", ca.pem.to_str().unwrap()],
    );
    let (a, b) = (with_cert(&ca, &node_a), with_cert(&ca, &node_b));
    (col, ca, a, b)
}

#[test]
fn one_misbehaving_credential_locks_out_itself_not_its_address() {
    let dir = Scratch::new("tls-limits");
    let (col, ca, a, b) = two_nodes(&dir);
    let (a, b) = (opts(&a), opts(&b));
    let cacert = ["--cacert", ca.pem.to_str().unwrap()];
    let ingest = "/api/v1/ingest";
    let join_as_b = br#"{"node":"node-b","call":"finish"}"#;

    // node-a, misconfigured, acts as node-b: every kind of refusal counts
    // against node-a's certificate (ingest, a fleet call, whoami).
    let (s, body) = col.curl(&a, "POST", "/api/v1/fleets/f1/agent", None, Some(join_as_b));
    assert_eq!(s, 403, "{body}");
    let (s, body) = col.curl(&a, "GET", "/api/v1/whoami?agent=node-b", None, None);
    assert_eq!(s, 403, "{body}");
    for _ in 0..8 {
        let (s, body) = col.curl(&a, "POST", ingest, None, Some(&batch_as("node-b")));
        assert_eq!(s, 403, "{body}");
    }
    let (s, body) = col.curl(&a, "POST", ingest, None, Some(&batch_as("node-a")));
    assert_eq!(s, 429, "node-a is held back, even as itself: {body}");
    assert!(
        body.contains("too many refused requests with node node-a"),
        "{body}"
    );
    // The other agent behind the same address, and an admin, are not.
    let (s, body) = col.curl(&b, "POST", ingest, None, Some(&batch_as("node-b")));
    assert_eq!(s, 200, "{body}");
    let (s, body) = col.curl(&cacert, "GET", "/api/v1/runs", Some(ADMIN_TOKEN), None);
    assert_eq!(s, 200, "{body}");

    // Guessing tokens from that address: every token from it waits, a
    // verified node certificate (nothing to guess) does not.
    for i in 0..10 {
        let guess = format!("guess-{i:016}");
        let (s, _) = col.curl(&cacert, "GET", "/api/v1/runs", Some(&guess), None);
        assert_eq!(s, 401);
    }
    let (s, body) = col.curl(&cacert, "GET", "/api/v1/runs", Some(ADMIN_TOKEN), None);
    assert_eq!(s, 429, "{body}");
    assert!(
        body.contains("too many failed authentications from 127.0.0.1"),
        "{body}"
    );
    let (s, body) = col.curl(&b, "POST", ingest, None, Some(&batch_as("node-b")));
    assert_eq!(s, 200, "{body}");
}

/// A fleet call as JSON, as `node`.
fn fleet_call(node: &str, call: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "node": node, "call": call })).unwrap()
}

#[test]
fn a_node_certificate_takes_renews_and_returns_leases_only_as_its_own_node() {
    let dir = Scratch::new("tls-leases");
    let (col, _, a, b) = two_nodes(&dir);
    let (a, b) = (opts(&a), opts(&b));
    let path = "/api/v1/fleets/r-leases/agent";
    let join = serde_json::json!({"join": {"labels": {}, "terms": {
        "deployment": "d", "scenario": "s",
        "limits": {"max_in_flight": 1, "max_failures": 1, "limits": []},
        "nodes": 2, "node_concurrency": 1, "lease_ttl_ms": 30000}}});
    let call = |who: &[&str], node: &str, call: serde_json::Value| {
        col.curl(who, "POST", path, None, Some(&fleet_call(node, call)))
    };

    let (s, body) = call(&b, "node-a", join.clone());
    assert_eq!(s, 403, "node-b cannot join as node-a: {body}");
    assert!(body.contains("may only send as node-b"), "{body}");
    let (s, body) = call(&a, "node-a", join.clone());
    assert_eq!(s, 200, "{body}");
    let (s, body) = call(&b, "node-b", join);
    assert_eq!(s, 200, "{body}");
    assert!(body.contains(r#""open":true"#), "{body}");

    let ask = serde_json::json!({"ask": {"restarts": [
        {"kind": "docker", "service": "nova_api", "target": "nova_api", "iteration": 1}]}});
    let (s, body) = call(&b, "node-a", ask.clone());
    assert_eq!(s, 403, "node-b cannot ask as node-a: {body}");
    let (s, body) = call(&a, "node-a", ask);
    assert_eq!(s, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["tickets"][0]["ticket"], "granted", "{body}");
    let lease = answer["tickets"][0]["lease"].clone();

    // node-b can neither renew nor return node-a's lease: as node-a it is
    // refused by its certificate, as itself by the lease's owner.
    let renew = serde_json::json!({"renew": {"lease": lease}});
    let give_back = serde_json::json!({"return": {"lease": lease, "outcome": "ok"}});
    for c in [&renew, &give_back] {
        let (s, body) = call(&b, "node-a", c.clone());
        assert_eq!(s, 403, "{c}: {body}");
        let (s, body) = call(&b, "node-b", c.clone());
        assert_eq!(s, 409, "{c}: {body}");
        assert!(body.contains("belongs to node \\\"node-a\\\""), "{body}");
    }
    // Still node-a's: it renews and returns it.
    let (s, body) = call(&a, "node-a", renew);
    assert_eq!(s, 200, "{body}");
    assert!(body.contains(r#""answer":"renewed""#), "{body}");
    let (s, body) = call(&a, "node-a", give_back);
    assert_eq!(s, 200, "{body}");
    assert!(body.contains(r#""answer":"done""#), "{body}");
}

/// Whether the collector closed `s`: a request on it gets no answer.
fn closed(s: &mut rustls::StreamOwned<rustls::ClientConnection, TcpStream>) -> bool {
    let _ = write!(
        s,
        "GET /api/v1/whoami HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\r\n"
    );
    let mut byte = [0u8; 1];
    !matches!(s.read(&mut byte), Ok(1))
}

#[test]
fn a_kept_alive_connection_idles_longer_than_a_request_head_may_take() {
    let dir = Scratch::new("tls-idle");
    let ca = TestCa::new(&dir.0, "ca");
    let col = tls_collector(
        &dir.0,
        "col",
        &ca.issue("server", &["localhost"]),
        &["--header-timeout-secs", "1", "--idle-timeout-secs", "4"],
    );
    let mut open = connect(col.port, &ca.pem);
    assert_eq!(whoami(&mut open), 200);
    // Idle past the head's deadline: the next request still uses this
    // connection (and its handshake).
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(whoami(&mut open), 200, "kept while idle");
    // Idle past the idle deadline: closed.
    std::thread::sleep(Duration::from_secs(6));
    assert!(closed(&mut open), "an idle connection is not kept forever");
}

#[test]
fn the_audit_log_records_answers_fleet_runs_and_refusals_and_reopens_on_sighup() {
    let dir = Scratch::new("tls-audit");
    let audit = dir.path("audit.jsonl");
    let mut col = CollectorProcess::start_with(
        &dir.0,
        &[
            "--audit-log",
            audit.to_str().unwrap(),
            "--auth-failures-per-minute",
            "3",
        ],
    );
    let (s, body) = col.http(
        "GET",
        "/api/v1/compacted?deployment=lab&token=oops",
        Some(ADMIN_TOKEN),
        None,
    );
    assert_eq!(s, 200, "{body}");
    let (s, _) = col.http("POST", "/api/v1/fleets/f1/pause", Some(ADMIN_TOKEN), None);
    assert_eq!(s, 404, "no such fleet run");

    // logrotate moves the file away and sends SIGHUP: a plain collector
    // lives on and writes a new file.
    let rotated = dir.path("audit.jsonl.1");
    std::fs::rename(&audit, &rotated).unwrap();
    unsafe { libc::kill(col.pid() as i32, libc::SIGHUP) };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (s, _) = col.http("GET", "/api/v1/runs", Some(ADMIN_TOKEN), None);
        assert_eq!(s, 200, "alive after SIGHUP");
        if audit.exists() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the audit log was never reopened"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for i in 0..3 {
        let (s, _) = col.http("GET", "/api/v1/runs", Some(&format!("guess-{i:016}")), None);
        assert_eq!(s, 401);
    }
    let (s, _) = col.http("GET", "/api/v1/runs", Some(ADMIN_TOKEN), None);
    assert_eq!(s, 429);

    let read = |p: &Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let old = read(&rotated);
    assert_eq!(old[0]["query"], "deployment=lab&token=REDACTED", "{old:?}");
    assert_eq!(old[0]["status"], 200, "{old:?}");
    assert_eq!(
        (&old[1]["path"], &old[1]["run_id"], &old[1]["status"]),
        (
            &serde_json::json!("/api/v1/fleets/f1/pause"),
            &serde_json::json!("f1"),
            &serde_json::json!(404)
        ),
        "{old:?}"
    );
    let new = read(&audit);
    assert!(
        new.iter()
            .any(|l| l["who"] == "unknown" && l["status"] == 401),
        "{new:?}"
    );
    assert!(
        new.iter()
            .any(|l| l["who"] == "admin token 1" && l["allowed"] == false && l["status"] == 429),
        "{new:?}"
    );

    // SIGTERM (systemd's stop) ends it cleanly.
    assert!(col.terminate().success(), "exit status after SIGTERM");
}

const METRICS_TOKEN: &str = "metrics-token-for-tests-0123456789";

#[test]
fn a_metrics_token_reads_metrics_and_is_refused_everything_else_audited() {
    let dir = Scratch::new("tls-metrics");
    let audit = dir.path("audit.jsonl");
    let tokens = dir.write(
        "metrics.tokens",
        &format!("# Prometheus\n{METRICS_TOKEN}\n"),
    );
    let col = CollectorProcess::start_with(
        &dir.0,
        &[
            "--protect-metrics",
            "--metrics-token-file",
            tokens.to_str().unwrap(),
            "--audit-log",
            audit.to_str().unwrap(),
        ],
    );
    let metrics = Some(METRICS_TOKEN);
    let (s, body) = col.http("GET", "/metrics", metrics, None);
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("bounce_collector_batches_total"), "{body}");
    let (s, body) = col.http("GET", "/metrics", Some(ADMIN_TOKEN), None);
    assert_eq!(s, 200, "admins keep reading /metrics: {body}");
    let (s, body) = col.http("GET", "/metrics", Some(AGENT_TOKEN), None);
    assert_eq!(s, 403, "{body}");
    assert!(
        body.contains(
            "an agent credential may only send results; /metrics needs a metrics or admin token"
        ),
        "{body}"
    );
    assert_eq!(col.http("GET", "/metrics", None, None).0, 401);

    // Everything else: 403, naming the role.
    for (method, path, body) in [
        ("GET", "/api/v1/runs", None),
        ("GET", "/api/v1/runs/r-mtls/export", None),
        ("POST", "/api/v1/fleets/f1/pause", None),
        ("POST", "/api/v1/fleets/f1/abort", None),
        ("POST", "/api/v1/ingest", Some(batch_as("node-a"))),
        ("GET", "/api/v1/whoami", None),
    ] {
        let (s, answer) = col.http(method, path, metrics, body.as_deref());
        assert_eq!(s, 403, "{method} {path}: {answer}");
        assert!(
            answer.contains("a metrics token may only read /metrics"),
            "{method} {path}: {answer}"
        );
    }
    let (_, page) = col.http("GET", "/metrics", metrics, None);
    assert!(
        page.contains("bounce_collector_batches_total{result=\"stored\"} 0"),
        "nothing was stored: {page}"
    );

    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&audit)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for path in [
        "/api/v1/runs",
        "/api/v1/runs/r-mtls/export",
        "/api/v1/fleets/f1/pause",
        "/api/v1/fleets/f1/abort",
        "/api/v1/ingest",
    ] {
        assert!(
            lines.iter().any(|l| l["who"] == "metrics token 1"
                && l["path"] == path
                && l["allowed"] == false
                && l["status"] == 403),
            "{path} refused and audited: {lines:?}"
        );
    }
    assert!(
        lines.iter().any(|l| l["who"] == "metrics token 1"
            && l["path"] == "/metrics"
            && l["status"] == 200),
        "{lines:?}"
    );
    let log = std::fs::read_to_string(&audit).unwrap();
    assert!(!log.contains(METRICS_TOKEN), "{log}");
}

#[test]
fn a_revoked_node_is_refused_after_sighup_even_on_its_open_connection_and_others_go_on() {
    let dir = Scratch::new("tls-crl");
    let ca = TestCa::new(&dir.0, "ca");
    let (node_a, node_b) = (
        ca.issue("node-a", &["node-a"]),
        ca.issue("node-b", &["node-b"]),
    );
    let crl = ca.crl("crl.pem", &[]);
    let col = tls_collector(
        &dir.0,
        "col",
        &ca.issue("server", &["localhost"]),
        &[
            "--client-ca",
            ca.pem.to_str().unwrap(),
            "--tls-client-crl",
            crl.to_str().unwrap(),
        ],
    );
    let (a, b) = (with_cert(&ca, &node_a), with_cert(&ca, &node_b));
    let (a, b) = (opts(&a), opts(&b));
    let whoami = "/api/v1/whoami";
    assert_eq!(col.curl(&a, "GET", whoami, None, None).0, 200);
    // Opened before the CRL changes, kept open across it.
    let mut open = connect_as(col.port, &ca.pem, &node_b);
    assert_eq!(request(&mut open, None), 200);
    let mut open_a = connect_as(col.port, &ca.pem, &node_a);
    assert_eq!(request(&mut open_a, None), 200);

    let hangup = |reloads: usize, words: &str| {
        unsafe { libc::kill(col.pid() as i32, libc::SIGHUP) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while col.stderr().matches(words).count() < reloads {
            assert!(
                Instant::now() < deadline,
                "no {words:?} after SIGHUP: {}",
                col.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    ca.crl("crl.pem", &[&node_a]);
    hangup(1, "node certificate trust reloaded");
    let (s, body) = col.curl(&a, "GET", whoami, None, None);
    assert_eq!(s, 0, "node-a's handshake is refused: {s} {body}");
    assert!(
        col.stderr().contains("TLS handshake with 127.0.0.1"),
        "{}",
        col.stderr()
    );
    assert_eq!(col.curl(&b, "GET", whoami, None, None).0, 200, "node-b");
    assert_eq!(request(&mut open, None), 200, "the open connection");
    // node-a's own open connection proves itself again: refused, closed.
    assert_eq!(request(&mut open_a, None), 403, "node-a's open connection");
    assert!(closed(&mut open_a), "node-a's connection is closed");
    let (s, body) = col.curl(
        &b,
        "POST",
        "/api/v1/ingest",
        None,
        Some(&batch_as("node-b")),
    );
    assert_eq!(s, 200, "{body}");

    // Garbage in place of the CRL: the old CA and CRLs stay, and the log
    // says which file and what is wrong with it.
    std::fs::write(&crl, "garbage\n").unwrap();
    hangup(1, "kept the old client CA and CRLs");
    let log = col.stderr();
    assert!(
        log.contains(&format!("{}: holds no X509 CRL block", crl.display())),
        "{log}"
    );
    assert_eq!(
        col.curl(&a, "GET", whoami, None, None).0,
        0,
        "still revoked"
    );
    assert_eq!(col.curl(&b, "GET", whoami, None, None).0, 200);
    assert_eq!(request(&mut open, None), 200);

    // At start, a garbage CRL is an error naming the file, before serving.
    let out = std::process::Command::new(bin("bounce-collector"))
        .args(["serve", "--listen", "127.0.0.1:0", "--store"])
        .arg(dir.path("other.db"))
        .arg("--tls-cert")
        .arg(dir.path("server.crt"))
        .arg("--tls-key")
        .arg(dir.path("server.key"))
        .arg("--client-ca")
        .arg(&ca.pem)
        .arg("--tls-client-crl")
        .arg(&crl)
        .env("BOUNCE_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("{}: holds no X509 CRL block", crl.display())),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains("listening"), "{}", text(&out));
}
