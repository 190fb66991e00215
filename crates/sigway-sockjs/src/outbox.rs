//! A bounded outbox: the queue between whoever produces messages for one
//! client (an app, a room on another thread) and the task that writes them
//! to its socket.
//!
//! An outbox is bounded in items and, when it is told how to weigh them,
//! in bytes. Pushing never waits: a full outbox means the client does not
//! read, so the push fails and raises the [`Overflow`] alarm, which the
//! writing task watches to close that client instead of letting the server
//! grow. This lives in the SockJS crate because it is the lowest crate of
//! the workspace with tokio: a SockJS [`SessionLink`](crate::SessionLink)
//! and the gateway's room sinks are both built on it.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use tokio::sync::Notify;

/// Items an outbox with no storage makes room for at its first push.
const FIRST_ROOM: usize = 8;

/// The producing end: push without waiting. Cheap to clone, usable from
/// any thread.
#[derive(Debug)]
pub struct Outbox<T> {
    shared: Arc<Shared<T>>,
    overflow: Arc<Overflow>,
}

impl<T> Clone for Outbox<T> {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        Self {
            shared: self.shared.clone(),
            overflow: self.overflow.clone(),
        }
    }
}

impl<T> Drop for Outbox<T> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.senders -= 1;
        if state.senders == 0 {
            // The receiver learns that nothing more can come.
            if let Some(waker) = state.waker.take() {
                drop(state);
                waker.wake();
            }
        }
    }
}

/// The consuming end: the queue and the alarm it must watch.
#[derive(Debug)]
pub struct OutboxReceiver<T> {
    /// What was pushed, in order.
    pub queue: Queue<T>,
    /// Raised when a push found the queue full.
    pub overflow: Arc<Overflow>,
}

/// The receiving half of an outbox's queue. While it is empty it holds no
/// allocation: an idle member costs the few words of [`Shared`], not a
/// block of slots sized for a burst (tokio's mpsc pre-allocates 32).
#[derive(Debug)]
pub struct Queue<T> {
    shared: Arc<Shared<T>>,
}

/// The queue was empty (or every sender is gone) when asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("outbox queue empty")]
pub struct Empty;

#[derive(Debug)]
struct Shared<T> {
    state: Mutex<State<T>>,
}

#[derive(Debug)]
struct State<T> {
    items: VecDeque<T>,
    capacity: usize,
    /// What the queued items weigh, by `weigh`.
    bytes: usize,
    /// Most bytes queued at once (one item is always taken, whatever it
    /// weighs).
    max_bytes: usize,
    weigh: fn(&T) -> usize,
    senders: usize,
    receiver_gone: bool,
    /// The receiving task, when it waits for an item.
    waker: Option<Waker>,
}

impl<T> State<T> {
    fn pop(&mut self) -> Option<T> {
        let item = self.items.pop_front()?;
        self.bytes = self.bytes.saturating_sub((self.weigh)(&item));
        Some(item)
    }
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Every critical section is a few pushes and pops that cannot leave
        // the queue half updated, so a panic elsewhere does not poison it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<T> Queue<T> {
    /// The next item, or `None` once the queue is empty and every sender
    /// is gone.
    pub async fn recv(&mut self) -> Option<T> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Polls for the next item; while it is pending the queue's storage is
    /// given back, so that an idle receiver holds no allocation.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut state = self.shared.lock();
        if let Some(item) = state.pop() {
            return Poll::Ready(Some(item));
        }
        if state.senders == 0 {
            return Poll::Ready(None);
        }
        if state.items.capacity() > 0 {
            state.items = VecDeque::new();
        }
        match &mut state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Wakes the calling task at the next push, or when a push finds the
    /// queue full, without taking anything: a task that does not take
    /// items now (its socket pushes back) still learns of an overflow by
    /// checking [`Overflow::is_raised`] when woken.
    pub fn watch(&mut self, cx: &mut Context<'_>) {
        let mut state = self.shared.lock();
        match &mut state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
    }

    /// The next item if one is queued.
    pub fn try_recv(&mut self) -> Result<T, Empty> {
        self.shared.lock().pop().ok_or(Empty)
    }

    /// Items queued now.
    pub fn len(&self) -> usize {
        self.shared.lock().items.len()
    }

    /// Whether nothing is queued now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> Drop for Queue<T> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.receiver_gone = true;
        // What was queued can never be read: free it now, not when the
        // last sender goes.
        state.items = VecDeque::new();
        state.bytes = 0;
    }
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
        Self::bounded(capacity, usize::MAX, |_| 0)
    }

    /// An outbox holding `capacity` items (at least one) that weigh, by
    /// `weigh`, at most `max_bytes` together; a single item is queued
    /// whatever it weighs. A bound in items alone let a client that does
    /// not read hold its whole queue of the largest frames (1,024 × 1 MiB
    /// by default) before it was closed.
    pub fn bounded(
        capacity: usize,
        max_bytes: usize,
        weigh: fn(&T) -> usize,
    ) -> (Self, OutboxReceiver<T>) {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                items: VecDeque::new(),
                capacity: capacity.max(1),
                bytes: 0,
                max_bytes,
                weigh,
                senders: 1,
                receiver_gone: false,
                waker: None,
            }),
        });
        let overflow = Arc::new(Overflow::default());
        let outbox = Self {
            shared: shared.clone(),
            overflow: overflow.clone(),
        };
        (
            outbox,
            OutboxReceiver {
                queue: Queue { shared },
                overflow,
            },
        )
    }

    /// Queues `item` without waiting. On a full outbox the alarm is raised
    /// and the item dropped; the first time, a line is logged.
    pub fn push(&self, item: T) -> Result<(), OutboxError> {
        let mut state = self.shared.lock();
        if state.receiver_gone {
            return Err(OutboxError::Closed);
        }
        let weight = (state.weigh)(&item);
        let too_heavy =
            !state.items.is_empty() && state.bytes.saturating_add(weight) > state.max_bytes;
        if state.items.len() >= state.capacity || too_heavy {
            let waker = state.waker.take();
            drop(state);
            if self.overflow.raise() {
                tracing::info!("outbox full: the client does not read, closing it");
            }
            // The receiving task may be waiting for its socket rather than
            // on the alarm's notify: woken after the raise, it sees it.
            if let Some(waker) = waker {
                waker.wake();
            }
            return Err(OutboxError::Full);
        }
        if state.items.capacity() == 0 {
            // Storage is given back whenever the receiver waits, so most
            // pushes find none: room for a burst at once, not 4, 8, 16.
            let room = FIRST_ROOM.min(state.capacity);
            state.items.reserve(room);
        }
        state.items.push_back(item);
        state.bytes = state.bytes.saturating_add(weight);
        let waker = state.waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// The overflow alarm of this outbox.
    pub fn overflow(&self) -> &Arc<Overflow> {
        &self.overflow
    }

    /// Items queued now, not yet taken by the receiver.
    pub fn len(&self) -> usize {
        self.shared.lock().items.len()
    }

    /// Whether nothing is queued now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True once the consuming end is gone.
    pub fn is_closed(&self) -> bool {
        self.shared.lock().receiver_gone
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
        assert_eq!(rx.queue.len(), 0);
        drop(rx);
        assert!(outbox.is_closed());
        assert_eq!(outbox.push(3), Err(OutboxError::Closed));
    }

    #[tokio::test]
    async fn the_receiver_sees_the_end_once_every_sender_is_gone() {
        let (outbox, mut rx) = Outbox::new(4);
        let second = outbox.clone();
        assert_eq!(second.push("a"), Ok(()));
        drop(outbox);
        let waiter = tokio::spawn(async move {
            let first = rx.queue.recv().await;
            let end = rx.queue.recv().await;
            (first, end)
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "one sender is left");
        drop(second);
        let (first, end) = tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("the last sender's drop wakes the receiver")
            .expect("task");
        assert_eq!((first, end), (Some("a"), None));
    }

    #[test]
    fn a_bound_in_bytes_overflows_before_the_bound_in_items_and_one_item_always_fits() {
        let (outbox, mut rx) = Outbox::bounded(100, 10, |item: &Vec<u8>| item.len());
        assert_eq!(outbox.push(vec![0; 25]), Ok(()), "one item, however heavy");
        assert_eq!(outbox.push(vec![0; 1]), Err(OutboxError::Full));
        assert!(rx.overflow.is_raised());
        assert_eq!(rx.queue.try_recv().map(|item| item.len()), Ok(25));
        for _ in 0..2 {
            assert_eq!(outbox.push(vec![0; 4]), Ok(()));
        }
        assert_eq!(
            outbox.push(vec![0; 3]),
            Err(OutboxError::Full),
            "8 + 3 > 10"
        );
        assert_eq!(rx.queue.try_recv().map(|item| item.len()), Ok(4));
        assert_eq!(outbox.push(vec![0; 6]), Ok(()), "what was taken is freed");
        assert_eq!(outbox.len(), 2);
    }

    #[tokio::test]
    async fn a_waiting_receiver_holds_no_storage_and_is_woken_by_a_push() {
        let (outbox, mut rx) = Outbox::new(64);
        for n in 0..40 {
            assert_eq!(outbox.push(n), Ok(()));
        }
        for n in 0..40 {
            assert_eq!(rx.queue.try_recv(), Ok(n));
        }
        assert!(rx.queue.shared.lock().items.capacity() >= 40);
        use futures_util::FutureExt as _;
        assert!(rx.queue.recv().now_or_never().is_none(), "nothing queued");
        assert_eq!(
            rx.queue.shared.lock().items.capacity(),
            0,
            "given back while idle"
        );
        let pusher = outbox.clone();
        let receiver = tokio::spawn(async move { rx.queue.recv().await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(pusher.push(7), Ok(()));
        let got = tokio::time::timeout(Duration::from_secs(1), receiver)
            .await
            .expect("woken")
            .expect("task");
        assert_eq!(got, Some(7));
    }

    /// A waker that records that it was woken.
    struct Flag(AtomicBool);

    impl std::task::Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_receiver_that_only_watches_is_woken_by_a_push_and_by_the_overflow() {
        let (outbox, mut rx) = Outbox::new(1);
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        rx.queue.watch(&mut cx);
        assert_eq!(outbox.push(1), Ok(()));
        assert!(flag.0.swap(false, Ordering::SeqCst), "woken by the push");
        rx.queue.watch(&mut cx);
        assert_eq!(outbox.push(2), Err(OutboxError::Full));
        assert!(flag.0.load(Ordering::SeqCst), "woken by the overflow");
        assert!(rx.overflow.is_raised(), "raised before the wake");
        assert_eq!(rx.queue.try_recv(), Ok(1));
    }

    #[test]
    fn the_alarm_reports_its_first_raise_only() {
        let overflow = Overflow::default();
        assert!(overflow.raise());
        assert!(!overflow.raise());
    }
}
