//! The "stop waiting now" signal that reaches every restart in flight
//! (a second stop request, or the drain time after the first one ran out),
//! and `bounded()`: every wait has a deadline and an abort.

use tokio::sync::watch;

#[derive(Clone)]
pub struct Abort(watch::Receiver<bool>);

pub struct AbortHandle(watch::Sender<bool>);

pub fn abort_pair() -> (AbortHandle, Abort) {
    let (tx, rx) = watch::channel(false);
    (AbortHandle(tx), Abort(rx))
}

impl AbortHandle {
    pub fn fire(&self) {
        let _ = self.0.send(true);
    }
}

impl Abort {
    /// An abort that never fires (plans, tests).
    pub fn never() -> Abort {
        let (tx, rx) = watch::channel(false);
        std::mem::forget(tx); // keep the channel open so `wait` stays pending
        Abort(rx)
    }

    pub fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once the abort fires.
    pub async fn wait(&self) {
        let mut rx = self.0.clone();
        if rx.wait_for(|v| *v).await.is_err() {
            // Sender gone without firing: never abort.
            std::future::pending::<()>().await;
        }
    }
}

/// Why a bounded wait ended early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    Deadline,
    Aborted,
}

/// Runs `fut` until it completes, the deadline passes, or the abort fires.
pub async fn bounded<F: std::future::Future>(
    fut: F,
    deadline: tokio::time::Instant,
    abort: &Abort,
) -> Result<F::Output, Interrupt> {
    tokio::select! {
        biased;
        _ = abort.wait() => Err(Interrupt::Aborted),
        out = fut => Ok(out),
        _ = tokio::time::sleep_until(deadline) => Err(Interrupt::Deadline),
    }
}
