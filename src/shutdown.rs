//! Shutdown as a value passed down (as in mini-redis): the composition root
//! keeps the [`ShutdownTrigger`], every session holds a [`Shutdown`] and
//! closes with 1001 once it fires.

use tokio::sync::watch;

/// Fires the shutdown of everything that holds a [`Shutdown`] from it.
#[derive(Debug, Clone)]
pub struct ShutdownTrigger {
    tx: watch::Sender<bool>,
}

/// A session's view of the shutdown. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

impl ShutdownTrigger {
    pub fn new() -> (Self, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (Self { tx }, Shutdown { rx })
    }

    /// Tells every holder to shut down; later calls do nothing more.
    pub fn fire(&self) {
        self.tx.send_replace(true);
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
}
