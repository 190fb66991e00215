//! One ordered, reliable, exactly-once link between two nodes, over a
//! channel that may lose, duplicate and reorder ([`Envelope`]s on Redis
//! pub/sub, which loses what is published while a subscriber reconnects).
//!
//! A [`Link`] is the state one node keeps about one peer, both ways: the
//! sending side numbers payloads from 1 within a *generation*, keeps them
//! in a retransmit ring bounded by bytes and by age ([`LinkConfig`]), drops
//! what the peer acknowledges cumulatively, resends from a `Nack`, and
//! probes after `resend_after` without an ack (the tail of a burst may be
//! lost with nothing after it to reveal the gap). When the peer asks for a
//! payload already evicted from the ring, the sending side *resets*: it
//! reports [`LinkReset::Evicted`] (the user bounces what depended on the
//! link), starts a new generation at 1, and announces it with a probe. The
//! receiving side delivers in order, drops duplicates, buffers a bounded
//! number of early envelopes, asks for a gap that outlives `ack_after` (a
//! reordering allowance) with a `Nack` at most once per `resend_after`, and
//! acknowledges cumulatively, on a timer or piggybacked on anything it
//! sends back. An envelope of a newer generation (or a newer run of the
//! peer) starts a fresh receiving state and reports [`LinkReset::Peer`],
//! after which nothing of the older generation is delivered.
//!
//! Payloads [`Link::queue`]d between two [`Link::flush`]es go out together
//! in batch envelopes (numbered one by one all the same: acks, nacks, the
//! ring and duplicates work per payload), so a busy link publishes once per
//! batch rather than once per payload.
//!
//! It is a sans-IO state machine: inputs are [`Link::send`] (or
//! [`Link::queue`] and [`Link::flush`]), [`Link::on_envelope`] and
//! [`Link::poll`] (timers, with the time as an argument); outputs ([`LinkOutput`]: envelopes to publish, payloads to
//! deliver, resets) are taken with [`Link::pop_output`]; the driver sleeps
//! until [`Link::next_deadline`].

mod envelope;
mod state;

pub use envelope::{Envelope, EnvelopeError, EnvelopeKind, HEADER_LEN};
pub use state::{Link, LinkOutput, LinkReset};

use std::time::Duration;

/// The link's bounds and timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkConfig {
    /// The retransmit ring keeps at most this many payload bytes (the
    /// oldest are evicted first; the newest payload is always kept).
    pub ring_bytes: usize,
    /// A payload leaves the ring this long after it was first sent.
    pub ring_age: Duration,
    /// Without an ack for this long, the sender probes (and resends the
    /// oldest payload); a gap is asked for again at this interval.
    pub resend_after: Duration,
    /// The receiver acknowledges at most this long after a delivery (unless
    /// something going back carries the ack first), and waits this long
    /// before asking for a gap (envelopes may just be reordered).
    pub ack_after: Duration,
    /// How many envelopes beyond a gap the receiver keeps.
    pub max_out_of_order: usize,
    /// A batch envelope carries at most this many bytes of payloads (with
    /// their 4-byte length prefixes); a longer payload travels alone.
    pub batch_bytes: usize,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            ring_bytes: 4 * 1024 * 1024,
            ring_age: Duration::from_secs(2),
            resend_after: Duration::from_millis(200),
            ack_after: Duration::from_millis(10),
            max_out_of_order: 1024,
            batch_bytes: 64 * 1024,
        }
    }
}

#[cfg(test)]
mod tests;
