//! The deadlines of one HTTP/1 connection, kept on its byte stream: a
//! request head must arrive within the header deadline once its first
//! byte came (and a fresh connection's first request within it from the
//! start), while a kept-alive connection waiting for its next request may
//! stay idle far longer. hyper's own `header_read_timeout` cannot tell the
//! two apart (it runs from when the connection goes idle), so an agent
//! whose batches were more than seconds apart paid a new handshake for
//! each. The service marks where a request is (`Stage`); the stream
//! (`Bounded`) notices a new request's first byte and fails a read or
//! write once the deadline of the current step passed.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// How long each waiting step may last.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// From a request's first byte (or the connection's start) to its whole head.
    pub header: Duration,
    /// From an answer to the next request's first byte.
    pub idle: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Step {
    /// A request head is arriving since then (or, at first, is awaited).
    Head(Instant),
    /// The service has the request: its own deadline applies.
    Busy,
    /// Answered then; waiting for the next request.
    Idle(Instant),
}

/// Where the connection's current request is; shared by the stream and
/// the service.
#[derive(Clone)]
pub struct Stage(Arc<Mutex<Step>>);

impl Default for Stage {
    fn default() -> Stage {
        Stage::new()
    }
}

impl Stage {
    /// A fresh connection: its first request head is awaited from now.
    pub fn new() -> Stage {
        Stage(Arc::new(Mutex::new(Step::Head(Instant::now()))))
    }

    /// The head was read: the request is the service's now.
    pub fn began(&self) {
        *self.0.lock().unwrap() = Step::Busy;
    }

    /// The answer is made: the connection waits for the next request.
    pub fn answered(&self) {
        *self.0.lock().unwrap() = Step::Idle(Instant::now());
    }

    fn deadline(&self, limits: &Limits) -> Option<Instant> {
        match *self.0.lock().unwrap() {
            Step::Head(since) => Some(since + limits.header),
            Step::Busy => None,
            Step::Idle(since) => Some(since + limits.idle),
        }
    }

    /// Bytes came in: if the connection was idle, a request head begins.
    fn bytes_came(&self) {
        let mut step = self.0.lock().unwrap();
        if matches!(*step, Step::Idle(_)) {
            *step = Step::Head(Instant::now());
        }
    }
}

/// A connection's stream, failing reads and writes that wait past the
/// deadline of the current step.
pub struct Bounded<S> {
    inner: S,
    stage: Stage,
    limits: Limits,
    timer: Pin<Box<Sleep>>,
    armed: Option<Instant>,
}

impl<S> Bounded<S> {
    pub fn new(inner: S, stage: Stage, limits: Limits) -> Bounded<S> {
        Bounded {
            inner,
            stage,
            limits,
            timer: Box::pin(tokio::time::sleep(limits.idle)),
            armed: None,
        }
    }

    /// Whether the current step's deadline passed (else the timer wakes
    /// this task when it does).
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(at) = self.stage.deadline(&self.limits) else {
            return false;
        };
        if self.armed != Some(at) {
            self.timer.as_mut().reset(at);
            self.armed = Some(at);
        }
        self.timer.as_mut().poll(cx).is_ready()
    }

    fn timed_out(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            "the client was too slow for the connection's deadline",
        )
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Bounded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.stage.bytes_came();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(self.timed_out())),
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Bounded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(self.timed_out())),
            other => other,
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write_vectored(cx, bufs) {
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(self.timed_out())),
            other => other,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(self.timed_out())),
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const LIMITS: Limits = Limits {
        header: Duration::from_secs(10),
        idle: Duration::from_secs(300),
    };

    /// The steps a connection goes through, on tokio's paused clock.
    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_waits_longer_than_a_started_head() {
        let (client, server) = tokio::io::duplex(1024);
        let stage = Stage::new();
        let mut conn = Bounded::new(server, stage.clone(), LIMITS);
        let (mut client_r, mut client_w) = tokio::io::split(client);
        let mut buf = [0u8; 64];
        // The first request's head arrives in time.
        client_w.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        assert!(conn.read(&mut buf).await.is_ok());
        stage.began();
        stage.answered();
        conn.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        assert!(client_r.read(&mut buf).await.unwrap() > 0);
        // Idle for a minute: still open, the next request starts...
        tokio::time::advance(Duration::from_secs(60)).await;
        client_w.write_all(b"GET / HT").await.unwrap();
        assert_eq!(conn.read(&mut buf).await.unwrap(), 8);
        let head_began = Instant::now();
        // ...and its head never ends: cut at the header deadline (the
        // paused clock jumps straight to it).
        let err = conn.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(Instant::now() - head_began, LIMITS.header);
    }

    #[tokio::test(start_paused = true)]
    async fn a_fresh_connection_that_sends_nothing_and_an_idle_one_are_cut() {
        let (_client, server) = tokio::io::duplex(64);
        let mut conn = Bounded::new(server, Stage::new(), LIMITS);
        let t0 = Instant::now();
        let err = conn.read(&mut [0u8; 8]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(Instant::now() - t0, LIMITS.header);

        let (_client, server) = tokio::io::duplex(64);
        let stage = Stage::new();
        stage.began();
        stage.answered();
        let mut conn = Bounded::new(server, stage, LIMITS);
        let t0 = Instant::now();
        let err = conn.read(&mut [0u8; 8]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(Instant::now() - t0, LIMITS.idle);
    }
}
