//! The accept loop: each connection gets a TLS handshake (when serving
//! TLS) bounded by a deadline, then HTTP/1 with a deadline for each request
//! head once it started and one for the whole request, so a slow client
//! (slowloris) holds a connection for seconds, not forever; between
//! requests a kept-alive connection may idle longer (`deadline`), so an
//! agent reuses its connection, and its handshake, across a run. Every
//! request carries the `Peer` its connection proved. On shutdown, open
//! requests get a grace period.

use crate::api::peer::{Deadline, NodeCert, Peer};
use crate::net::deadline::{Bounded, Limits, Stage};
use crate::net::tls::node_of;
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

/// How long open requests may finish after shutdown was asked for.
const GRACE: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
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
                None => connection(tcp, peer(addr, None), app, deadlines, watcher).await,
                Some(acceptor) => {
                    let Some(stream) = handshake(&acceptor, tcp, addr, deadlines).await else {
                        return;
                    };
                    let node = node_of(stream.get_ref().1).map(Arc::new);
                    connection(stream, peer(addr, node), app, deadlines, watcher).await
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
    peer: Peer,
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
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        stage.began();
        req.extensions_mut().insert(peer.clone());
        req.extensions_mut().insert(Deadline {
            at: tokio::time::Instant::now() + deadlines.request,
            after: deadlines.request,
        });
        let (app, stage) = (app.clone(), stage.clone());
        async move {
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
    let body = serde_json::json!({
        "error": format!("request not complete within {} s", limit.as_secs())
    });
    Response::builder()
        .status(StatusCode::REQUEST_TIMEOUT)
        .header("content-type", "application/json")
        .header("connection", "close")
        .body(Body::from(body.to_string()))
        .expect("a fixed answer")
}
