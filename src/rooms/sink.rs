//! How a room reaches a member, and how a member keeps up with its room.
//!
//! A [`Sink`] is the room's end of one member: a bounded outbox the room
//! pushes to without ever waiting (a full outbox means the client does not
//! read: the member is told to close instead of making the server grow),
//! and the member's [`InFlight`] credit, which the room gives back for each
//! event of the member it handled. The member's end is a [`SinkReceiver`]:
//! the session drains the outbox to its socket, closes when the overflow
//! fires, and stops reading its socket while its credit is used up, so a
//! client that floods a room is slowed down instead of growing the room's
//! mailbox. In cluster mode a member on another node is reached through a
//! remote sink with the same face: what the room pushes is encoded and
//! sent to the member's node, which pushes it to the member's local sink
//! (the member's credit is kept on its own node). The outbox itself is
//! `sigway_sockjs::Outbox`, the same bounded queue with an overflow alarm
//! that a SockJS session's link is built on.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::task::AtomicWaker;

use sigway_sockjs::{Outbox, OutboxError, OutboxReceiver, Queue};
use tokio::sync::Notify;

pub(crate) use sigway_sockjs::Overflow;

use super::RemoteSink;

/// The room's end of one member: push without waiting, give back credit.
#[derive(Debug)]
pub(crate) enum Sink<T> {
    /// A member connected to this node.
    Local {
        outbox: Outbox<T>,
        in_flight: Arc<InFlight>,
    },
    /// A member connected to another node of the cluster; `encode` turns
    /// what the room pushes into the bytes its node decodes.
    Remote {
        remote: RemoteSink,
        encode: fn(T) -> Bytes,
    },
}

impl<T> Clone for Sink<T> {
    fn clone(&self) -> Self {
        match self {
            Sink::Local { outbox, in_flight } => Sink::Local {
                outbox: outbox.clone(),
                in_flight: in_flight.clone(),
            },
            Sink::Remote { remote, encode } => Sink::Remote {
                remote: remote.clone(),
                encode: *encode,
            },
        }
    }
}

/// Why a push did not queue its item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SinkError {
    /// The member does not read: it has been told to close.
    #[error("member outbox full")]
    Full,
    /// The member is gone.
    #[error("member gone")]
    Closed,
}

impl From<OutboxError> for SinkError {
    fn from(error: OutboxError) -> Self {
        match error {
            OutboxError::Full => SinkError::Full,
            OutboxError::Closed => SinkError::Closed,
        }
    }
}

/// The member's end: its outbox, the overflow alarm and its credit.
#[derive(Debug)]
pub(crate) struct SinkReceiver<T> {
    pub outbox: Queue<T>,
    pub overflow: Arc<Overflow>,
    pub in_flight: Arc<InFlight>,
}

impl<T> Sink<T> {
    /// A sink whose outbox holds `capacity` items weighing (by `weigh`) at
    /// most `max_bytes`; a quarter of `capacity` (at most 64) bounds the
    /// member's events in flight to its room.
    pub(crate) fn new(
        capacity: usize,
        max_bytes: usize,
        weigh: fn(&T) -> usize,
    ) -> (Self, SinkReceiver<T>) {
        let (outbox, OutboxReceiver { queue, overflow }) =
            Outbox::bounded(capacity, max_bytes, weigh);
        let in_flight = Arc::new(InFlight::for_outbox(capacity));
        let sink = Sink::Local {
            outbox,
            in_flight: in_flight.clone(),
        };
        (
            sink,
            SinkReceiver {
                outbox: queue,
                overflow,
                in_flight,
            },
        )
    }

    /// Items waiting in the member's outbox now (0 for a member of
    /// another node, whose outbox is there).
    pub(crate) fn queued(&self) -> usize {
        match self {
            Sink::Local { outbox, .. } => outbox.len(),
            Sink::Remote { .. } => 0,
        }
    }

    /// Queues `item` without waiting. On a full outbox the member is told
    /// to close (once) and the item is dropped.
    pub(crate) fn push(&self, item: T) -> Result<(), SinkError> {
        match self {
            Sink::Local { outbox, .. } => Ok(outbox.push(item)?),
            Sink::Remote { remote, encode } => remote.deliver(encode(item)),
        }
    }

    /// The room handled one event this member sent (a remote member's
    /// node gave its credit back when it forwarded the event).
    pub(crate) fn handled(&self) {
        if let Sink::Local { in_flight, .. } = self {
            in_flight.handled();
        }
    }

    /// The member's credit, when it is connected here.
    pub(crate) fn credit(&self) -> Option<Arc<InFlight>> {
        match self {
            Sink::Local { in_flight, .. } => Some(in_flight.clone()),
            Sink::Remote { .. } => None,
        }
    }
}

/// Flow control from a member to its room: events handed over but not yet
/// handled, up to a limit.
#[derive(Debug)]
pub(crate) struct InFlight {
    count: AtomicUsize,
    limit: usize,
    drained: Notify,
    /// The session polling [`InFlight::poll_drained`], if it waits there.
    drained_waker: AtomicWaker,
}

impl InFlight {
    /// The credit that suits an outbox of `capacity` items: a quarter of it,
    /// at most 64, so the answers to what is in flight fit the outbox.
    pub(crate) fn for_outbox(capacity: usize) -> Self {
        Self::new((capacity / 4).clamp(1, 64))
    }

    /// Credit for `limit` events in flight (at least one).
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            count: AtomicUsize::new(0),
            limit: limit.max(1),
            drained: Notify::new(),
            drained_waker: AtomicWaker::new(),
        }
    }

    pub(crate) fn has_room(&self) -> bool {
        self.count.load(Ordering::Acquire) < self.limit
    }

    /// The member is handing one event to its room: count it before the
    /// room can see it, so the room's `handled` never comes first.
    pub(crate) fn sent(&self) {
        self.count.fetch_add(1, Ordering::AcqRel);
    }

    /// The room handled one event of this member.
    pub(crate) fn handled(&self) {
        let before = self
            .count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        if before == Ok(self.limit) {
            self.drained.notify_one();
            self.drained_waker.wake();
        }
    }

    /// Ready once the count is below the limit; otherwise the calling task
    /// is woken when it drops below (a waker slot rather than a `Notify`,
    /// so that a session polling it on every wake-up takes no lock).
    pub(crate) fn poll_drained(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.has_room() {
            return Poll::Ready(());
        }
        self.drained_waker.register(cx.waker());
        if self.has_room() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Waits until one more event may be handed over, then counts it.
    pub(crate) async fn acquire(&self) {
        while !self.has_room() {
            let drained = self.drained.notified();
            if self.has_room() {
                break;
            }
            drained.await;
        }
        self.sent();
    }
}

/// Cluster mode: a member's frame bound for another node gives its credit
/// back once the bus took it off its queue.
impl sigway_cluster::Taken for InFlight {
    fn taken(&self) {
        self.handled();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_full_outbox_raises_the_overflow_and_drops_the_item() {
        let (sink, mut rx) = Sink::new(1, usize::MAX, |_| 0);
        assert_eq!(sink.push(1), Ok(()));
        assert_eq!(sink.push(2), Err(SinkError::Full));
        tokio::time::timeout(Duration::from_secs(1), rx.overflow.raised())
            .await
            .expect("overflow fires");
        assert_eq!(rx.outbox.recv().await, Some(1));
        drop(rx);
        assert_eq!(sink.push(3), Err(SinkError::Closed));
    }

    /// A waker that records that it was woken.
    struct Flag(std::sync::atomic::AtomicBool);

    impl std::task::Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_session_polling_for_credit_is_woken_when_the_room_gives_some_back() {
        let (sink, rx) = Sink::<()>::new(4, usize::MAX, |_| 0);
        let flag = Arc::new(Flag(std::sync::atomic::AtomicBool::new(false)));
        let waker = std::task::Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(rx.in_flight.poll_drained(&mut cx).is_ready(), "credit left");
        rx.in_flight.sent();
        assert!(
            rx.in_flight.poll_drained(&mut cx).is_pending(),
            "limit is 1"
        );
        assert!(!flag.0.load(Ordering::SeqCst));
        sink.handled();
        assert!(flag.0.load(Ordering::SeqCst), "woken by the handled event");
        assert!(rx.in_flight.poll_drained(&mut cx).is_ready());
    }

    #[tokio::test]
    async fn credit_runs_out_at_the_limit_and_comes_back_when_handled() {
        let (sink, rx) = Sink::<()>::new(8, usize::MAX, |_| 0);
        let credit = rx.in_flight.clone();
        credit.acquire().await;
        credit.acquire().await;
        assert!(!credit.has_room(), "limit is a quarter of 8");
        let waiter = tokio::spawn(async move { credit.acquire().await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "no credit left");
        sink.handled();
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("credit came back")
            .expect("task");
        sink.handled();
        sink.handled();
        sink.handled();
        assert!(rx.in_flight.has_room(), "extra handled never underflows");
    }
}
