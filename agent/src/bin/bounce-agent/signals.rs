//! The signals that stop a run the way Ctrl-C does (SIGINT, SIGTERM from
//! systemd, `docker stop`, Kubernetes or a timeout, SIGHUP from a closed
//! terminal), turned into the runner's stop requests; each is named as it
//! arrives.

use anyhow::{Context, Result};
use bounce_agent::runner::StopRequests;
use tokio::signal::unix::{SignalKind, signal};

/// From now on, each of these signals is one stop request (the first:
/// drain; the second: stop waiting) instead of the end of the process.
pub fn stop_requests() -> Result<StopRequests> {
    let listen = |kind: SignalKind, name: &str| {
        signal(kind).with_context(|| format!("cannot handle {name}"))
    };
    let mut int = listen(SignalKind::interrupt(), "SIGINT")?;
    let mut term = listen(SignalKind::terminate(), "SIGTERM")?;
    let mut hup = listen(SignalKind::hangup(), "SIGHUP")?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let name = tokio::select! {
                Some(()) = int.recv() => "SIGINT (Ctrl-C)",
                Some(()) = term.recv() => "SIGTERM",
                Some(()) = hup.recv() => "SIGHUP",
                else => break,
            };
            eprintln!("\n{name} received");
            if tx.send(()).is_err() {
                break;
            }
        }
    });
    Ok(rx)
}
