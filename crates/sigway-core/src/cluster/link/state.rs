//! The link's state machine: the sending side (numbering, retransmit ring,
//! resets) and the receiving side (ordering, duplicates, acks, nacks) of
//! one node's link with one peer. The rules are in the parent module's doc.
//! About 500 lines: the two halves share the generation, the peer's
//! incarnation and the piggybacked acknowledgement, so they stay one type.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::LinkConfig;
use super::envelope::{Envelope, EnvelopeKind, batchable, framed_len, put_framed};
use crate::cluster::{Incarnation, NodeId};

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkOutput {
    /// Publish this envelope to the peer's inbox.
    Publish(Envelope),
    /// Hand this payload from the peer to the user (in order, once).
    Deliver(Bytes),
    /// The link started over; what depended on it must be bounced.
    Reset(LinkReset),
}

/// Which side of the link started over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkReset {
    /// Our sending side: the peer asked for payloads no longer in the ring;
    /// `lost` payloads sent were never acknowledged (some may have been
    /// delivered before the peer learns of the reset).
    Evicted {
        /// Payloads sent but not acknowledged when the link reset.
        lost: u64,
    },
    /// Our sending side, at the driver's request ([`Link::start_over`]):
    /// more was to be sent than the driver lets wait for the link.
    Overflowed {
        /// Payloads sent but not acknowledged when the link reset.
        lost: u64,
    },
    /// The peer's sending side started over (a reset, or a new run of the
    /// peer): nothing older from it will be delivered.
    Peer,
}

#[derive(Debug)]
struct Pending {
    seq: u64,
    payload: Bytes,
    first_sent: Instant,
}

#[derive(Debug)]
struct Sending {
    generation: u32,
    next_seq: u64,
    /// Every payload up to this number was published at least once (the
    /// ones after it are queued for the next flush).
    published: u64,
    acked: u64,
    ring: VecDeque<Pending>,
    ring_bytes: usize,
    resend_at: Option<Instant>,
}

impl Sending {
    fn new(generation: u32) -> Self {
        Self {
            generation,
            next_seq: 1,
            published: 0,
            acked: 0,
            ring: VecDeque::new(),
            ring_bytes: 0,
            resend_at: None,
        }
    }

    fn highest_sent(&self) -> u64 {
        self.next_seq - 1
    }

    fn pop_front(&mut self) {
        if let Some(entry) = self.ring.pop_front() {
            self.ring_bytes -= entry.payload.len();
        }
    }
}

/// A gap the receiver is waiting to fill, and when to ask for it.
#[derive(Debug, Clone, Copy)]
struct Gap {
    from: u64,
    nack_at: Instant,
}

#[derive(Debug, Default)]
struct Receiving {
    /// The peer's (run, generation) this state is about.
    known: Option<(Incarnation, u32)>,
    delivered: u64,
    /// The highest number the peer is known to have sent.
    peer_highest: u64,
    early: BTreeMap<u64, Bytes>,
    ack_at: Option<Instant>,
    gap: Option<Gap>,
}

/// One node's link with one peer (see the module doc).
#[derive(Debug)]
pub struct Link {
    config: LinkConfig,
    me: NodeId,
    my_incarnation: Incarnation,
    peer: NodeId,
    peer_incarnation: Incarnation,
    sending: Sending,
    receiving: Receiving,
    outputs: VecDeque<LinkOutput>,
    retransmits: u64,
}

impl Link {
    /// The link of `me` (run `my_incarnation`) with run `peer_incarnation`
    /// of `peer`.
    pub fn new(
        config: LinkConfig,
        me: NodeId,
        my_incarnation: Incarnation,
        peer: NodeId,
        peer_incarnation: Incarnation,
    ) -> Self {
        Self {
            config,
            me,
            my_incarnation,
            peer,
            peer_incarnation,
            sending: Sending::new(1),
            receiving: Receiving::default(),
            outputs: VecDeque::new(),
            retransmits: 0,
        }
    }

    /// The peer node.
    pub fn peer(&self) -> NodeId {
        self.peer
    }

    /// The peer run this link sends to.
    pub fn peer_incarnation(&self) -> Incarnation {
        self.peer_incarnation
    }

    /// The generation of the sending side (1, then one more per reset).
    pub fn generation(&self) -> u32 {
        self.sending.generation
    }

    /// Payloads sent (or queued) and not yet acknowledged.
    pub fn unacked(&self) -> u64 {
        self.sending.highest_sent() - self.sending.acked
    }

    /// Retransmitted data envelopes since the last call (for counters).
    pub fn take_retransmits(&mut self) -> u64 {
        std::mem::take(&mut self.retransmits)
    }

    /// The next output, if any.
    pub fn pop_output(&mut self) -> Option<LinkOutput> {
        self.outputs.pop_front()
    }

    /// Sends `payload` to the peer at once (one data envelope).
    pub fn send(&mut self, payload: Bytes, now: Instant) {
        self.queue(payload, now);
        self.flush();
    }

    /// Numbers `payload` and keeps it in the ring; it is published by the
    /// next [`Link::flush`] (or [`Link::poll`]), together with whatever else
    /// was queued meanwhile: one data envelope for one payload, batch
    /// envelopes of up to `batch_bytes` for several. A driver queues what
    /// one turn brings and flushes at the end of it, so batches form under
    /// load and add no delay otherwise.
    pub fn queue(&mut self, payload: Bytes, now: Instant) {
        let seq = self.sending.next_seq;
        self.sending.next_seq += 1;
        self.sending.ring_bytes += payload.len();
        self.sending.ring.push_back(Pending {
            seq,
            payload,
            first_sent: now,
        });
        while self.sending.ring_bytes > self.config.ring_bytes && self.sending.ring.len() > 1 {
            self.evict_front();
        }
        self.sending
            .resend_at
            .get_or_insert(now + self.config.resend_after);
    }

    /// Starts the sending side over (a new generation, announced with a
    /// probe), dropping what is unacknowledged: the driver could not take
    /// everything it was asked to send (its queue to this peer overflowed),
    /// so the peer must not go on as if the stream were whole. Reported as
    /// [`LinkReset::Overflowed`]; the peer sees [`LinkReset::Peer`].
    pub fn start_over(&mut self) {
        let lost = self.unacked();
        self.sending = Sending::new(self.sending.generation.saturating_add(1));
        self.outputs
            .push_back(LinkOutput::Reset(LinkReset::Overflowed { lost }));
        self.probe();
    }

    /// Publishes every payload queued since the last flush.
    pub fn flush(&mut self) {
        let from = self.sending.published + 1;
        if from <= self.sending.highest_sent() {
            self.publish_ring_from(from);
        }
    }

    /// Drops the ring's oldest payload, publishing what is queued first if
    /// it was not yet (every payload goes out at least once; if it is lost
    /// and then asked for, the link resets as for any evicted payload).
    fn evict_front(&mut self) {
        if self
            .sending
            .ring
            .front()
            .is_some_and(|entry| entry.seq > self.sending.published)
        {
            self.flush();
        }
        self.sending.pop_front();
    }

    /// Publishes the ring's payloads from number `from` on, as few
    /// envelopes as `batch_bytes` allows; returns how many payloads.
    fn publish_ring_from(&mut self, from: u64) -> u64 {
        let Some(front) = self.sending.ring.front() else {
            return 0;
        };
        let skip = usize::try_from(from.saturating_sub(front.seq)).unwrap_or(usize::MAX);
        let payloads: Vec<(u64, Bytes)> = self
            .sending
            .ring
            .iter()
            .skip(skip)
            .map(|entry| (entry.seq, entry.payload.clone()))
            .collect();
        let limit = self.config.batch_bytes;
        let mut batch: Vec<(u64, Bytes)> = Vec::new();
        let mut batch_bytes = 0;
        for (seq, payload) in &payloads {
            let framed = framed_len(payload.len());
            let fits = batchable(payload.len()) && framed <= limit;
            if !batch.is_empty() && (!fits || batch_bytes + framed > limit) {
                self.publish_batch(std::mem::take(&mut batch));
                batch_bytes = 0;
            }
            if fits {
                batch.push((*seq, payload.clone()));
                batch_bytes += framed;
            } else {
                self.publish(EnvelopeKind::Data, *seq, payload.clone());
            }
        }
        if !batch.is_empty() {
            self.publish_batch(batch);
        }
        if let Some((last, _)) = payloads.last() {
            self.sending.published = self.sending.published.max(*last);
        }
        payloads.len() as u64
    }

    /// Publishes consecutive payloads: one alone as data, more as a batch.
    fn publish_batch(&mut self, batch: Vec<(u64, Bytes)>) {
        match batch.as_slice() {
            [] => {}
            [(seq, payload)] => self.publish(EnvelopeKind::Data, *seq, payload.clone()),
            [(first, _), ..] => {
                let first = *first;
                let len = batch.iter().map(|(_, p)| framed_len(p.len())).sum();
                let mut body = BytesMut::with_capacity(len);
                for (_, payload) in &batch {
                    put_framed(&mut body, payload);
                }
                self.publish(EnvelopeKind::Batch, first, body.freeze());
            }
        }
    }

    /// Takes in an envelope the peer published (the driver routes by
    /// `from`; envelopes for another run of this node, or from an older
    /// state of the peer, are ignored). Returns whether it was taken in.
    pub fn on_envelope(&mut self, envelope: Envelope, now: Instant) -> bool {
        if envelope.from != self.peer || envelope.to_incarnation != self.my_incarnation {
            return false;
        }
        if envelope.incarnation < self.peer_incarnation {
            return false;
        }
        let id = (envelope.incarnation, envelope.generation);
        if envelope.incarnation > self.peer_incarnation {
            // The peer restarted: what we sent was for a run that is gone,
            // and what it sent before is gone with it.
            self.peer_incarnation = envelope.incarnation;
            self.sending = Sending::new(self.sending.generation.saturating_add(1));
            self.receiving = Receiving {
                known: Some(id),
                ..Receiving::default()
            };
            self.outputs.push_back(LinkOutput::Reset(LinkReset::Peer));
        }
        match self.receiving.known {
            Some(known) if id < known => return false,
            Some(known) if id > known => {
                self.receiving = Receiving::default();
                self.receiving.known = Some(id);
                self.outputs.push_back(LinkOutput::Reset(LinkReset::Peer));
            }
            Some(_) => {}
            None => self.receiving.known = Some(id),
        }

        if envelope.ack_generation == self.sending.generation {
            self.on_ack(envelope.ack, now);
            if envelope.kind == EnvelopeKind::Nack {
                self.on_nack(envelope.ack + 1, now);
            }
        } else if envelope.kind == EnvelopeKind::Nack
            && envelope.ack_generation < self.sending.generation
        {
            // The peer still asks about a generation we left: tell it.
            self.probe();
        }

        match envelope.kind {
            EnvelopeKind::Data => self.on_data(envelope.seq, envelope.payload, now),
            EnvelopeKind::Batch => {
                let mut seq = Some(envelope.seq);
                for payload in envelope.batch() {
                    let Some(this) = seq else { break };
                    self.on_data(this, payload, now);
                    seq = this.checked_add(1);
                }
            }
            EnvelopeKind::Probe => {
                let receiving = &mut self.receiving;
                receiving.peer_highest = receiving.peer_highest.max(envelope.seq);
                if receiving.delivered >= receiving.peer_highest {
                    receiving.ack_at = Some(now);
                }
                self.update_gap(now);
                if let Some(gap) = &mut self.receiving.gap {
                    gap.nack_at = now;
                }
            }
            EnvelopeKind::Ack | EnvelopeKind::Nack => {}
        }
        self.poll(now);
        true
    }

    /// Publishes what is queued, then runs the timers due at `now`: ring
    /// eviction by age, probing after `resend_after` without an ack,
    /// delayed acks, nacks for gaps.
    pub fn poll(&mut self, now: Instant) {
        self.flush();
        let ring_age = self.config.ring_age;
        while self
            .sending
            .ring
            .front()
            .is_some_and(|entry| entry.first_sent + ring_age <= now)
        {
            self.evict_front();
        }
        if self.sending.resend_at.is_some_and(|at| at <= now) {
            if self.unacked() == 0 {
                self.sending.resend_at = None;
            } else {
                self.sending.resend_at = Some(now + self.config.resend_after);
                let oldest = self.sending.acked + 1;
                if let Some(entry) = self.sending.ring.front().filter(|e| e.seq == oldest) {
                    let payload = entry.payload.clone();
                    self.retransmits += 1;
                    self.publish(EnvelopeKind::Data, oldest, payload);
                }
                self.probe();
            }
        }
        if self.receiving.gap.is_some_and(|gap| gap.nack_at <= now) {
            self.publish(EnvelopeKind::Nack, 0, Bytes::new());
            if let Some(gap) = &mut self.receiving.gap {
                gap.nack_at = now + self.config.resend_after;
            }
        }
        if self.receiving.ack_at.is_some_and(|at| at <= now) {
            self.publish(EnvelopeKind::Ack, 0, Bytes::new());
        }
    }

    /// When [`Link::poll`] must next run (None: only on new input).
    pub fn next_deadline(&self) -> Option<Instant> {
        let eviction = self
            .sending
            .ring
            .front()
            .map(|entry| entry.first_sent + self.config.ring_age);
        [
            eviction,
            self.sending.resend_at,
            self.receiving.ack_at,
            self.receiving.gap.map(|gap| gap.nack_at),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn on_ack(&mut self, ack: u64, now: Instant) {
        let sending = &mut self.sending;
        if ack <= sending.acked || ack > sending.published {
            return;
        }
        sending.acked = ack;
        while sending.ring.front().is_some_and(|entry| entry.seq <= ack) {
            sending.pop_front();
        }
        sending.resend_at =
            (sending.acked < sending.highest_sent()).then(|| now + self.config.resend_after);
    }

    fn on_nack(&mut self, from: u64, now: Instant) {
        // `on_ack(from - 1)` ran first; a nack below what is acknowledged
        // is an old one (reordered or duplicated): nothing to do.
        if from <= self.sending.acked || from > self.sending.highest_sent() {
            return;
        }
        let in_ring = self.sending.ring.front().is_some_and(|e| e.seq == from);
        if !in_ring {
            let lost = self.unacked();
            self.sending = Sending::new(self.sending.generation.saturating_add(1));
            self.outputs
                .push_back(LinkOutput::Reset(LinkReset::Evicted { lost }));
            self.probe();
            return;
        }
        self.retransmits += self.publish_ring_from(from);
        self.sending.resend_at = Some(now + self.config.resend_after);
    }

    fn on_data(&mut self, seq: u64, payload: Bytes, now: Instant) {
        let receiving = &mut self.receiving;
        receiving.peer_highest = receiving.peer_highest.max(seq);
        if seq <= receiving.delivered || receiving.early.contains_key(&seq) {
            // A duplicate: the peer may have missed our ack.
            receiving.ack_at.get_or_insert(now + self.config.ack_after);
            return;
        }
        if seq == receiving.delivered + 1 {
            receiving.delivered = seq;
            self.outputs.push_back(LinkOutput::Deliver(payload));
            while let Some(next) = receiving.early.remove(&(receiving.delivered + 1)) {
                receiving.delivered += 1;
                self.outputs.push_back(LinkOutput::Deliver(next));
            }
            receiving.ack_at.get_or_insert(now + self.config.ack_after);
        } else if receiving.early.len() < self.config.max_out_of_order {
            receiving.early.insert(seq, payload);
        }
        self.update_gap(now);
    }

    /// Notes whether the receiver misses something, and since when.
    fn update_gap(&mut self, now: Instant) {
        let receiving = &mut self.receiving;
        if receiving.delivered >= receiving.peer_highest {
            receiving.gap = None;
            return;
        }
        let from = receiving.delivered + 1;
        if receiving.gap.is_none_or(|gap| gap.from != from) {
            receiving.gap = Some(Gap {
                from,
                nack_at: now + self.config.ack_after,
            });
        }
    }

    fn probe(&mut self) {
        let highest = self.sending.published;
        self.publish(EnvelopeKind::Probe, highest, Bytes::new());
    }

    /// Queues an envelope; it carries the current ack, so no separate ack
    /// is due any more.
    fn publish(&mut self, kind: EnvelopeKind, seq: u64, payload: Bytes) {
        let (ack_generation, ack) = match self.receiving.known {
            Some((incarnation, generation)) if incarnation == self.peer_incarnation => {
                (generation, self.receiving.delivered)
            }
            _ => (0, 0),
        };
        self.receiving.ack_at = None;
        self.outputs.push_back(LinkOutput::Publish(Envelope {
            kind,
            from: self.me,
            incarnation: self.my_incarnation,
            generation: self.sending.generation,
            seq,
            to_incarnation: self.peer_incarnation,
            ack_generation,
            ack,
            payload,
        }));
    }
}
