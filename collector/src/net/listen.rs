//! The accept loop: each connection gets a TLS handshake (when serving
//! TLS) bounded by a deadline, then HTTP/1 with a deadline for each request
//! head once it started and one for the whole request, so a slow client
//! (slowloris) holds a connection for seconds, not forever; between
//! requests a kept-alive connection may idle longer (`deadline`), so an
//! agent reuses its connection, and its handshake, across a run. Every
//! request carries the `Peer` its connection proved; after a reload of the
//! client CA and CRLs, a node's connection proves it again (`trust::Shown`)
//! before its next request is served. On shutdown, open requests get a
//! grace period.

use crate::api::peer::{Deadline, NodeCert, Peer};
use crate::net::deadline::{Bounded, Limits, Stage};
use crate::net::tls::node_of;
use crate::net::trust::{ClientTrust, Shown};
use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// How long a client may take for each step.
#[derive(Clone, Copy, Debug)]
pub struct Deadlines {
    /// The TLS handshake.
    pub handshake: Duration,
    /// A request's head (line and headers), from its first byte (the first
    /// request's: from when the connection is ready).
    pub header: Duration,
    /// A kept-alive connection between an answer and the next request.
    pub idle: Duration,
    /// A whole request, body and answer included.
    pub request: Duration,
}

/// Serving TLS: the acceptor, and what node certificates are checked
/// against (when they are accepted).
#[derive(Clone)]
pub struct Tls {
    pub acceptor: TlsAcceptor,
    pub nodes: Option<Arc<ClientTrust>>,
}

/// How long open requests may finish after shutdown was asked for.
const GRACE: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Tls>,
    app: Router,
    deadlines: Deadlines,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: pause, not spin.
                    eprintln!("bounce-collector: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let watcher = graceful.watcher();
        let (tls, app) = (tls.clone(), app.clone());
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            match tls {
                None => {
                    let peer = Proved {
                        peer: peer(addr, None),
                        shown: None,
                    };
                    connection(tcp, peer, app, deadlines, watcher).await
                }
                Some(tls) => {
                    let Some(stream) = handshake(&tls.acceptor, tcp, addr, deadlines).await else {
                        return;
                    };
                    let conn = stream.get_ref().1;
                    let node = node_of(conn).map(Arc::new);
                    let shown = match (&node, tls.nodes) {
                        (Some(_), Some(trust)) => Shown::of(trust, conn).map(Arc::new),
                        _ => None,
                    };
                    let peer = Proved {
                        peer: peer(addr, node),
                        shown,
                    };
                    connection(stream, peer, app, deadlines, watcher).await
                }
            }
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(GRACE, graceful.shutdown()).await;
}

fn peer(addr: SocketAddr, node: Option<Arc<NodeCert>>) -> Peer {
    Peer { addr, node }
}

/// What a connection proved, and the certificate chain to prove it again
/// with after a reload.
struct Proved {
    peer: Peer,
    shown: Option<Arc<Shown>>,
}

async fn handshake(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    addr: SocketAddr,
    deadlines: Deadlines,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    match tokio::time::timeout(deadlines.handshake, acceptor.accept(tcp)).await {
        Ok(Ok(s)) => Some(s),
        // A refused client certificate, a client that does not trust us,
        // a port scan: one line, the connection closed.
        Ok(Err(e)) => {
            eprintln!("bounce-collector: TLS handshake with {addr} failed: {e}");
            None
        }
        Err(_) => None,
    }
}

async fn connection<S>(
    stream: S,
    proved: Proved,
    app: Router,
    deadlines: Deadlines,
    watcher: hyper_util::server::graceful::Watcher,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let stage = Stage::new();
    let limits = Limits {
        header: deadlines.header,
        idle: deadlines.idle,
    };
    let io = TokioIo::new(Bounded::new(stream, stage.clone(), limits));
    let Proved { peer, shown } = proved;
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        stage.began();
        let untrusted = shown.as_ref().and_then(|s| s.still_trusted().err());
        req.extensions_mut().insert(peer.clone());
        req.extensions_mut().insert(Deadline {
            at: tokio::time::Instant::now() + deadlines.request,
            after: deadlines.request,
        });
        let (app, stage) = (app.clone(), stage.clone());
        async move {
            if let Some(why) = untrusted {
                stage.answered();
                return Ok(refused(&why));
            }
            let answer = tokio::time::timeout(deadlines.request, app.oneshot(req)).await;
            stage.answered();
            Ok::<_, std::convert::Infallible>(match answer {
                Ok(Ok(resp)) => resp,
                Ok(Err(never)) => match never {},
                Err(_) => too_slow(deadlines.request),
            })
        }
    });
    // The head's deadline is the stream's (`deadline`), not hyper's: hyper
    // would count an idle keep-alive connection's wait against it.
    let conn = hyper::server::conn::http1::Builder::new()
        .header_read_timeout(None)
        .serve_connection(io, service);
    let _ = watcher.watch(conn).await;
}

fn too_slow(limit: Duration) -> Response<Body> {
    let why = format!("request not complete within {} s", limit.as_secs());
    closing(StatusCode::REQUEST_TIMEOUT, &why)
}

/// A node whose certificate was revoked since it connected: refused, and
/// its connection closed (a new one must pass the handshake).
fn refused(why: &str) -> Response<Body> {
    closing(StatusCode::FORBIDDEN, why)
}

/// An answer the listener gives itself, closing the connection.
fn closing(status: StatusCode, why: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": why });
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("connection", "close")
        .body(Body::from(body.to_string()))
        .expect("a fixed answer")
}
