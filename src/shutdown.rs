//! Shutdown as a value passed down (as in mini-redis): the composition root
//! keeps the [`ShutdownTrigger`], every session holds a [`Shutdown`] and
//! closes with 1001 once it fires. Before that, a node may drain
//! ([`Drain`]): it takes no new sessions and lets open ones finish.

use std::sync::atomic::{AtomicBool, Ordering};

use sigway_sockjs::ShutdownBell;
use tokio::sync::{Notify, watch};

/// Fires the shutdown of everything that holds a [`Shutdown`] from it.
#[derive(Debug, Clone)]
pub struct ShutdownTrigger {
    tx: watch::Sender<bool>,
    bell: ShutdownBell,
}

/// A session's view of the shutdown. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
    bell: ShutdownBell,
}

impl ShutdownTrigger {
    pub fn new() -> (Self, Shutdown) {
        let (tx, rx) = watch::channel(false);
        let bell = ShutdownBell::new();
        (
            Self {
                tx,
                bell: bell.clone(),
            },
            Shutdown { rx, bell },
        )
    }

    /// Tells every holder to shut down; later calls do nothing more.
    pub fn fire(&self) {
        self.tx.send_replace(true);
        self.bell.ring();
    }
}

impl Shutdown {
    /// Whether shutdown has begun.
    pub fn is_down(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once shutdown has begun (at once if it has), or when the
    /// trigger is gone, which only happens when the server is.
    pub async fn wait(&mut self) {
        let _ = self.rx.wait_for(|down| *down).await;
    }

    /// The underlying channel, for layers that take a plain watch receiver
    /// (the SockJS layer knows nothing of the gateway's types).
    pub fn watch(&self) -> watch::Receiver<bool> {
        self.rx.clone()
    }

    /// The shutdown as a bell, rung when the trigger fires: what a
    /// long-lived session waits on (a 64-byte waiter, where a watch
    /// receiver's wait is 144 bytes of every idle session's state).
    pub fn bell(&self) -> &ShutdownBell {
        &self.bell
    }
}

/// Whether this node drains, shared by the readiness probe, the upgrade
/// paths and whoever starts the drain.
#[derive(Debug, Default)]
pub(crate) struct Drain {
    draining: AtomicBool,
    /// A second request to stop (another SIGTERM) cuts the wait short.
    hurry: AtomicBool,
    changed: Notify,
}

impl Drain {
    /// Starts the drain; returns whether this call started it (a second
    /// call asks to hurry: the open sessions are closed at once).
    pub(crate) fn start(&self) -> bool {
        let first = !self.draining.swap(true, Ordering::AcqRel);
        if !first {
            self.hurry.store(true, Ordering::Release);
        }
        self.changed.notify_waiters();
        self.changed.notify_one();
        first
    }

    /// Whether a drain has begun: new sessions are refused.
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Whether the drain was asked for twice: stop waiting.
    pub(crate) fn hurried(&self) -> bool {
        self.hurry.load(Ordering::Acquire)
    }

    /// Resolves once a drain has begun (at once if it has).
    pub(crate) async fn started(&self) {
        loop {
            let notified = self.changed.notified();
            if self.is_draining() {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn every_holder_sees_the_shutdown_once_fired() {
        let (trigger, shutdown) = ShutdownTrigger::new();
        let (mut a, mut b) = (shutdown.clone(), shutdown);
        assert!(!a.is_down());
        let early = tokio::time::timeout(Duration::from_millis(20), a.wait()).await;
        assert!(early.is_err(), "nothing fired yet");
        trigger.fire();
        tokio::time::timeout(Duration::from_secs(1), a.wait())
            .await
            .expect("a sees it");
        tokio::time::timeout(Duration::from_secs(1), b.wait())
            .await
            .expect("b sees it");
        assert!(b.is_down());
    }

    #[tokio::test]
    async fn starting_twice_asks_to_hurry_and_wakes_waiters() {
        let drain = std::sync::Arc::new(Drain::default());
        let waiter = tokio::spawn({
            let drain = drain.clone();
            async move { drain.started().await }
        });
        assert!(!drain.is_draining());
        assert!(drain.start());
        tokio::time::timeout(Duration::from_secs(2), waiter)
            .await
            .expect("woken")
            .expect("joined");
        assert!(drain.is_draining() && !drain.hurried());
        assert!(!drain.start());
        assert!(drain.hurried());
    }
}
