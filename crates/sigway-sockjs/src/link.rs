//! The sending half of a SockJS session: what an app uses to reach its
//! client, from any thread. A [`SessionLink`] is an [`Outbox`] of
//! [`Outgoing`] items; the transport serving the session drains it and
//! closes the session when it overflows.

use crate::outbox::Queue;
use bytestring::ByteString;

use crate::outbox::{Outbox, OutboxError};

/// What the application can send to a session's client.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// One message (an element of an `a[...]` frame).
    Message(ByteString),
    /// Close the session with `c[code,"reason"]`.
    Close {
        /// The close code.
        code: u16,
        /// The reason sent with it.
        reason: ByteString,
    },
}

/// Sending half of a session, cheap to clone and usable from any thread
/// (rooms run on other arbiters). Sending never waits: a full queue means
/// the client does not read, and the session is closed.
#[derive(Debug, Clone)]
pub struct SessionLink {
    outbox: Outbox<Outgoing>,
}

/// The session is gone or its client does not keep up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("session closed")]
pub struct LinkClosed;

impl From<OutboxError> for LinkClosed {
    fn from(_: OutboxError) -> Self {
        LinkClosed
    }
}

impl SessionLink {
    /// A link and the receiving end the transport drains.
    pub fn channel(capacity: usize) -> (Self, Queue<Outgoing>) {
        Self::bounded(capacity, usize::MAX)
    }

    /// A link whose queue also holds at most `max_bytes` of messages (a
    /// single message is queued whatever its size).
    pub fn bounded(capacity: usize, max_bytes: usize) -> (Self, Queue<Outgoing>) {
        fn weigh(item: &Outgoing) -> usize {
            match item {
                Outgoing::Message(message) => message.len(),
                Outgoing::Close { .. } => 0,
            }
        }
        let (outbox, receiver) = Outbox::bounded(capacity, max_bytes, weigh);
        // The link keeps the overflow alarm; the transport reaches it there.
        (Self { outbox }, receiver.queue)
    }

    /// Queues one message for the client.
    pub fn send(&self, message: ByteString) -> Result<(), LinkClosed> {
        Ok(self.outbox.push(Outgoing::Message(message))?)
    }

    /// Closes the session with `c[code,"reason"]` once queued messages are
    /// out. (A full queue closes it anyway, as a slow client.)
    pub fn close(&self, code: u16, reason: &str) {
        let _ = self.outbox.push(Outgoing::Close {
            code,
            reason: reason.into(),
        });
    }

    /// Items queued for the client now (the admin API's queue depth).
    pub fn queued(&self) -> usize {
        self.outbox.len()
    }

    /// True once a send found the queue full.
    pub fn overflowed(&self) -> bool {
        self.outbox.overflow().is_raised()
    }

    /// Resolves when a send finds the queue full (at once if one did).
    pub(crate) async fn wait_overflow(&self) {
        self.outbox.overflow().raised().await;
    }

    /// True once the session's transport is gone.
    pub fn is_closed(&self) -> bool {
        self.outbox.is_closed()
    }
}
