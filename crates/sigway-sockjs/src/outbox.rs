//! A bounded outbox: the queue between whoever produces messages for one
//! client (an app, a room on another thread) and the task that writes them
//! to its socket.
//!
//! Pushing never waits: a full outbox means the client does not read, so
//! the push fails and raises the [`Overflow`] alarm, which the writing task
//! watches to close that client instead of letting the server grow. This
//! lives in the SockJS crate because it is the lowest crate of the workspace
//! with tokio: a SockJS [`SessionLink`](crate::SessionLink) and the
//! gateway's room sinks are both built on it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{Notify, mpsc};

/// The producing end: push without waiting. Cheap to clone, usable from
/// any thread.
#[derive(Debug)]
pub struct Outbox<T> {
    tx: mpsc::Sender<T>,
    overflow: Arc<Overflow>,
}

impl<T> Clone for Outbox<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            overflow: self.overflow.clone(),
        }
    }
}

/// The consuming end: the queue and the alarm it must watch.
#[derive(Debug)]
pub struct OutboxReceiver<T> {
    /// What was pushed, in order.
    pub queue: mpsc::Receiver<T>,
    /// Raised when a push found the queue full.
    pub overflow: Arc<Overflow>,
}

/// Raised when a push finds the outbox full; the consuming end waits on it.
#[derive(Debug, Default)]
pub struct Overflow {
    raised: AtomicBool,
    notify: Notify,
}

impl Overflow {
    /// Raises the alarm; true the first time only.
    fn raise(&self) -> bool {
        let first = !self.raised.swap(true, Ordering::AcqRel);
        self.notify.notify_one();
        first
    }

    /// True once a push found the outbox full.
    pub fn is_raised(&self) -> bool {
        self.raised.load(Ordering::Acquire)
    }

    /// Resolves once a push found the outbox full (at once if one did).
    pub async fn raised(&self) {
        loop {
            let notified = self.notify.notified();
            if self.is_raised() {
                return;
            }
            notified.await;
        }
    }
}

/// Why a push did not queue its item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OutboxError {
    /// The client does not read: the overflow alarm is raised.
    #[error("outbox full")]
    Full,
    /// The consuming end is gone.
    #[error("outbox closed")]
    Closed,
}

impl<T> Outbox<T> {
    /// An outbox holding `capacity` items (at least one).
    pub fn new(capacity: usize) -> (Self, OutboxReceiver<T>) {
        let (tx, queue) = mpsc::channel(capacity.max(1));
        let overflow = Arc::new(Overflow::default());
        let outbox = Self {
            tx,
            overflow: overflow.clone(),
        };
        (outbox, OutboxReceiver { queue, overflow })
    }

    /// Queues `item` without waiting. On a full outbox the alarm is raised
    /// and the item dropped; the first time, a line is logged.
    pub fn push(&self, item: T) -> Result<(), OutboxError> {
        match self.tx.try_send(item) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                if self.overflow.raise() {
                    tracing::info!("outbox full: the client does not read, closing it");
                }
                Err(OutboxError::Full)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(OutboxError::Closed),
        }
    }

    /// The overflow alarm of this outbox.
    pub fn overflow(&self) -> &Arc<Overflow> {
        &self.overflow
    }

    /// True once the consuming end is gone.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_full_outbox_raises_the_alarm_and_drops_the_item() {
        let (outbox, mut rx) = Outbox::new(1);
        assert_eq!(outbox.push(1), Ok(()));
        assert!(!rx.overflow.is_raised());
        assert_eq!(outbox.push(2), Err(OutboxError::Full));
        assert!(outbox.overflow().is_raised());
        tokio::time::timeout(Duration::from_secs(1), rx.overflow.raised())
            .await
            .expect("the alarm fires");
        assert_eq!(rx.queue.recv().await, Some(1));
        drop(rx);
        assert!(outbox.is_closed());
        assert_eq!(outbox.push(3), Err(OutboxError::Closed));
    }

    #[test]
    fn the_alarm_reports_its_first_raise_only() {
        let overflow = Overflow::default();
        assert!(overflow.raise());
        assert!(!overflow.raise());
    }
}
