//! The bus's outgoing side: transport calls made in the order the bus
//! queued them, many in flight at once (a Redis connection pipelines
//! them), and a backoff while the transport fails.
//!
//! Nothing queued here needs to survive a failure: data envelopes stay in
//! the link's retransmit ring until acknowledged, acks and probes are made
//! again by the link's timers, and heartbeats are periodic. So while the
//! transport fails, queued jobs are dropped and one attempt is made per
//! backoff step (100 ms doubling up to 5 s), each failed attempt logged on
//! one line.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::mpsc;

use crate::transport::{NodeId, Transport, TransportError};

/// Jobs queued before the publisher drops more (the link resends data).
pub(super) const QUEUE: usize = 16 * 1024;
/// Transport calls in flight at once.
const IN_FLIGHT: usize = 256;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// One transport call.
#[derive(Debug)]
pub(super) enum Job {
    /// Publish an encoded envelope to a node's inbox.
    Inbox(NodeId, Bytes),
    /// Publish an encoded control message.
    Control(Bytes),
    /// Refresh this node's registry entry.
    Register(NodeId),
}

impl Job {
    async fn run<T: Transport>(self, transport: Arc<T>) -> Result<(), TransportError> {
        match self {
            Job::Inbox(node, envelope) => {
                // 0 receivers is not an error: the peer is resubscribing or
                // gone, and the link's ring resends until it is acked.
                transport.publish_inbox(node, envelope).await.map(drop)
            }
            Job::Control(message) => transport.publish_control(message).await.map(drop),
            Job::Register(node) => transport.register(node, unix_ms()).await,
        }
    }
}

/// Milliseconds since the Unix epoch (the registry's score).
pub(super) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Whether the transport works, and when to try again if not.
struct Health {
    failures: u32,
    retry_at: Instant,
    attempt_in_flight: bool,
}

impl Health {
    /// Whether a job may go to the transport now.
    fn admit(&mut self, now: Instant) -> bool {
        if self.failures == 0 {
            return true;
        }
        if self.attempt_in_flight || now < self.retry_at {
            return false;
        }
        self.attempt_in_flight = true;
        true
    }

    fn on_result(&mut self, result: Result<(), TransportError>, now: Instant) {
        match result {
            Ok(()) => {
                if self.failures > 0 {
                    tracing::info!(failures = self.failures, "cluster transport works again");
                }
                self.failures = 0;
                self.attempt_in_flight = false;
            }
            // Calls already in flight when the first one failed fail for
            // the same reason: only a deliberate attempt counts and logs.
            Err(error) if self.failures == 0 || self.attempt_in_flight => {
                self.failures += 1;
                self.attempt_in_flight = false;
                let backoff = FIRST_BACKOFF
                    .saturating_mul(1 << (self.failures - 1).min(6))
                    .min(MAX_BACKOFF);
                self.retry_at = now + backoff;
                tracing::warn!(
                    attempt = self.failures,
                    retry_in_ms = backoff.as_millis() as u64,
                    %error,
                    "cluster transport call failed"
                );
            }
            Err(error) => tracing::debug!(%error, "cluster transport call failed"),
        }
    }
}

/// Runs jobs until the queue closes and every call in flight finished.
pub(super) async fn run<T: Transport>(transport: Arc<T>, mut jobs: mpsc::Receiver<Job>) {
    let mut in_flight = FuturesUnordered::new();
    let mut health = Health {
        failures: 0,
        retry_at: Instant::now(),
        attempt_in_flight: false,
    };
    let mut open = true;
    while open || !in_flight.is_empty() {
        tokio::select! {
            job = jobs.recv(), if open && in_flight.len() < IN_FLIGHT => match job {
                Some(job) => {
                    if health.admit(Instant::now()) {
                        in_flight.push(job.run(Arc::clone(&transport)));
                    }
                }
                None => open = false,
            },
            Some(result) = in_flight.next(), if !in_flight.is_empty() => {
                health.on_result(result, Instant::now());
            }
        }
    }
}
