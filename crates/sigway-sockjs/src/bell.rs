//! The shutdown as a long-lived session waits for it: a flag and a bell
//! rung once when it turns true.
//!
//! Every idle WebSocket session waits for the shutdown among its other
//! sources. Waiting on a `watch::Receiver` (`wait_for`) put a receiver and a
//! 144-byte future in every session's state; a [`ShutdownBell`] costs the
//! session one `Arc` and a [`Notified`] (64 bytes). A bell made from a watch
//! receiver ([`ShutdownBell::following`]) is rung by a small thread that
//! waits on the receiver; the gateway rings its own bell directly.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use tokio::sync::futures::Notified;
use tokio::sync::{Notify, watch};

/// A flag that turns true once, and wakes every waiter when it does.
/// Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct ShutdownBell {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    rung: AtomicBool,
    notify: Notify,
}

impl ShutdownBell {
    /// A bell not rung yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A bell rung when `shutdown` turns true (never when its sender goes
    /// without firing). The wait runs on a thread of its own: tokio's watch
    /// needs no runtime, and the bell must not depend on a worker that may
    /// stop first.
    pub fn following(shutdown: watch::Receiver<bool>) -> Self {
        let bell = Self::new();
        if *shutdown.borrow() {
            bell.ring();
            return bell;
        }
        let ringer = bell.clone();
        let spawned = std::thread::Builder::new()
            .name("sockjs-shutdown".into())
            .spawn(move || {
                let mut shutdown = shutdown;
                if block_on(shutdown.wait_for(|down| *down)).is_ok() {
                    ringer.ring();
                }
            });
        if let Err(error) = spawned {
            tracing::error!("cannot start the SockJS shutdown thread: {error}");
        }
        bell
    }

    /// Turns the flag true and wakes every waiter; later calls do nothing
    /// more.
    pub fn ring(&self) {
        if !self.inner.rung.swap(true, Ordering::AcqRel) {
            self.inner.notify.notify_waiters();
        }
    }

    /// Whether the bell was rung.
    pub fn is_rung(&self) -> bool {
        self.inner.rung.load(Ordering::Acquire)
    }

    /// A waiter: create it, then check [`ShutdownBell::is_rung`] whenever
    /// it is polled; a ring after its creation completes it.
    pub fn notified(&self) -> Notified<'_> {
        self.inner.notify.notified()
    }

    /// Resolves once the bell was rung (at once if it was).
    pub async fn rung(&self) {
        let notified = self.notified();
        if self.is_rung() {
            return;
        }
        notified.await;
    }
}

/// Wakes a thread parked in [`block_on`].
struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs `future` to its end on the calling thread.
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_waiter_created_before_the_ring_hears_it() {
        let bell = ShutdownBell::new();
        let waiter = bell.clone();
        let heard = tokio::spawn(async move { waiter.rung().await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!heard.is_finished());
        bell.ring();
        tokio::time::timeout(Duration::from_secs(5), heard)
            .await
            .expect("the waiter heard the ring")
            .expect("no panic");
        // Rung already: at once.
        tokio::time::timeout(Duration::from_secs(1), bell.rung())
            .await
            .expect("at once");
    }

    #[tokio::test]
    async fn a_bell_following_a_watch_rings_when_it_turns_true_only() {
        let (tx, rx) = watch::channel(false);
        let bell = ShutdownBell::following(rx);
        tx.send_replace(false);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!bell.is_rung());
        tx.send_replace(true);
        tokio::time::timeout(Duration::from_secs(5), bell.rung())
            .await
            .expect("rung after the watch turned true");

        let (tx, rx) = watch::channel(false);
        let never = ShutdownBell::following(rx);
        drop(tx);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !never.is_rung(),
            "a sender gone without firing rings nothing"
        );

        let (_tx, rx) = watch::channel(true);
        assert!(ShutdownBell::following(rx).is_rung());
    }
}
