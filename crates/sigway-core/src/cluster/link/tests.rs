//! The link's rules, one by one, then as properties: envelopes round-trip
//! and decoding never panics, and over a simulated channel that loses,
//! duplicates and reorders, every payload is delivered exactly once and in
//! order, or a reset is reported and nothing older is delivered after it.

use std::time::{Duration, Instant};

use bytes::Bytes;
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

const MS: Duration = Duration::from_millis(1);
const A: NodeIdent = NodeIdent { node: 1, run: 100 };
const B: NodeIdent = NodeIdent { node: 2, run: 200 };

struct NodeIdent {
    node: u32,
    run: u64,
}

fn config() -> LinkConfig {
    LinkConfig {
        ring_bytes: 1024,
        ring_age: Duration::from_millis(1000),
        resend_after: Duration::from_millis(100),
        ack_after: Duration::from_millis(10),
        max_out_of_order: 8,
        batch_bytes: 64,
    }
}

fn pair(config: LinkConfig) -> (Link, Link) {
    (
        Link::new(config, A.node, A.run, B.node, B.run),
        Link::new(config, B.node, B.run, A.node, A.run),
    )
}

#[derive(Debug, Default)]
struct Drained {
    publish: Vec<Envelope>,
    deliver: Vec<Bytes>,
    resets: Vec<LinkReset>,
}

fn drain(link: &mut Link) -> Drained {
    let mut out = Drained::default();
    while let Some(output) = link.pop_output() {
        match output {
            LinkOutput::Publish(envelope) => out.publish.push(envelope),
            LinkOutput::Deliver(payload) => out.deliver.push(payload),
            LinkOutput::Reset(reset) => out.resets.push(reset),
        }
    }
    out
}

fn kinds(envelopes: &[Envelope]) -> Vec<(EnvelopeKind, u64)> {
    envelopes.iter().map(|e| (e.kind, e.seq)).collect()
}

fn texts(payloads: &[Bytes]) -> Vec<&str> {
    payloads
        .iter()
        .map(|p| std::str::from_utf8(p).unwrap_or("<binary>"))
        .collect()
}

/// Sends `n` payloads "m1".."mn" from `link` and returns their envelopes.
fn send_n(link: &mut Link, n: usize, now: Instant) -> Vec<Envelope> {
    for i in 1..=n {
        link.send(Bytes::from(format!("m{i}")), now);
    }
    drain(link).publish
}

#[test]
fn in_order_payloads_are_delivered_once_and_acked_after_ack_after() {
    let t0 = Instant::now();
    let (mut a, mut b) = pair(config());
    let sent = send_n(&mut a, 3, t0);
    assert_eq!(
        kinds(&sent),
        [
            (EnvelopeKind::Data, 1),
            (EnvelopeKind::Data, 2),
            (EnvelopeKind::Data, 3)
        ]
    );
    for envelope in sent.iter().cloned() {
        assert!(b.on_envelope(envelope, t0));
    }
    b.on_envelope(sent[1].clone(), t0);
    let out = drain(&mut b);
    assert_eq!(texts(&out.deliver), ["m1", "m2", "m3"], "duplicate dropped");
    assert!(out.publish.is_empty(), "the ack waits for ack_after");
    assert_eq!(b.next_deadline(), Some(t0 + 10 * MS));
    b.poll(t0 + 10 * MS);
    let ack = drain(&mut b).publish;
    assert_eq!(kinds(&ack), [(EnvelopeKind::Ack, 0)]);
    assert_eq!((ack[0].ack_generation, ack[0].ack), (1, 3));
    assert_eq!(a.unacked(), 3);
    a.on_envelope(ack[0].clone(), t0 + 11 * MS);
    assert_eq!(a.unacked(), 0);
    assert_eq!(a.next_deadline(), None, "nothing to resend or evict");
}

#[test]
fn the_ack_rides_on_traffic_going_back() {
    let t0 = Instant::now();
    let (mut a, mut b) = pair(config());
    for envelope in send_n(&mut a, 2, t0) {
        b.on_envelope(envelope, t0);
    }
    drain(&mut b);
    let reply = send_n(&mut b, 1, t0 + MS);
    assert_eq!((reply[0].ack_generation, reply[0].ack), (1, 2));
    b.poll(t0 + 20 * MS);
    assert!(drain(&mut b).publish.is_empty(), "no separate ack left due");
    a.on_envelope(reply[0].clone(), t0 + 2 * MS);
    assert_eq!(a.unacked(), 0);
    assert_eq!(texts(&drain(&mut a).deliver), ["m1"]);
}

#[test]
fn a_gap_is_nacked_after_the_reordering_allowance_and_at_most_once_per_resend_after() {
    let t0 = Instant::now();
    let (mut a, mut b) = pair(config());
    let sent = send_n(&mut a, 3, t0);
    b.on_envelope(sent[0].clone(), t0);
    b.on_envelope(sent[2].clone(), t0);
    assert_eq!(texts(&drain(&mut b).deliver), ["m1"]);
    b.poll(t0 + 9 * MS);
    assert!(drain(&mut b).publish.is_empty(), "maybe only reordered");
    b.poll(t0 + 10 * MS);
    let nack = drain(&mut b).publish;
    assert_eq!(kinds(&nack), [(EnvelopeKind::Nack, 0)]);
    assert_eq!(nack[0].ack, 1, "resend from 2");
    b.poll(t0 + 109 * MS);
    assert!(drain(&mut b).publish.is_empty(), "once per resend_after");
    b.poll(t0 + 110 * MS);
    assert_eq!(kinds(&drain(&mut b).publish), [(EnvelopeKind::Nack, 0)]);

    a.on_envelope(nack[0].clone(), t0 + 111 * MS);
    let resent = drain(&mut a).publish;
    assert_eq!(
        kinds(&resent),
        [(EnvelopeKind::Batch, 2)],
        "everything from the gap, in one batch"
    );
    assert_eq!(texts(&resent[0].batch().collect::<Vec<_>>()), ["m2", "m3"]);
    assert_eq!(a.take_retransmits(), 2);
    for envelope in resent {
        b.on_envelope(envelope, t0 + 112 * MS);
    }
    assert_eq!(texts(&drain(&mut b).deliver), ["m2", "m3"]);
}

#[test]
fn a_lost_tail_is_found_by_the_probe_after_resend_after() {
    let t0 = Instant::now();
    let (mut a, mut b) = pair(config());
    let sent = send_n(&mut a, 3, t0);
    b.on_envelope(sent[0].clone(), t0);
    b.poll(t0 + 10 * MS);
    assert_eq!(
        kinds(&drain(&mut b).publish),
        [(EnvelopeKind::Ack, 0)],
        "lost too"
    );
    assert_eq!(a.next_deadline(), Some(t0 + 100 * MS));
    a.poll(t0 + 100 * MS);
    let retry = drain(&mut a).publish;
    assert_eq!(
        kinds(&retry),
        [(EnvelopeKind::Data, 1), (EnvelopeKind::Probe, 3)],
        "the oldest unacked, and how far we sent"
    );
    for envelope in retry {
        b.on_envelope(envelope, t0 + 101 * MS);
    }
    let answer = drain(&mut b).publish;
    assert_eq!(kinds(&answer), [(EnvelopeKind::Nack, 0)]);
    assert_eq!(answer[0].ack, 1);
    a.on_envelope(answer[0].clone(), t0 + 102 * MS);
    for envelope in drain(&mut a).publish {
        b.on_envelope(envelope, t0 + 103 * MS);
    }
    assert_eq!(texts(&drain(&mut b).deliver), ["m2", "m3"]);
}

#[test]
fn asking_for_an_evicted_payload_resets_the_link_and_nothing_older_follows() {
    let t0 = Instant::now();
    let (mut a, mut b) = pair(LinkConfig {
        ring_bytes: 4,
        ..config()
    });
    // "m1".."m3" are 2 bytes each: the ring keeps only the last two.
    let sent = send_n(&mut a, 3, t0);
    b.on_envelope(sent[1].clone(), t0);
    b.poll(t0 + 10 * MS);
    let nack = drain(&mut b).publish;
    assert_eq!(nack[0].ack, 0, "m1 is missing");
    a.on_envelope(nack[0].clone(), t0 + 11 * MS);
    let out = drain(&mut a);
    assert_eq!(out.resets, [LinkReset::Evicted { lost: 3 }]);
    assert_eq!(a.generation(), 2);
    assert_eq!(kinds(&out.publish), [(EnvelopeKind::Probe, 0)]);

    // A late copy of the old generation, then the new one.
    b.on_envelope(sent[0].clone(), t0 + 12 * MS);
    assert_eq!(texts(&drain(&mut b).deliver), ["m1", "m2"], "not yet told");
    b.on_envelope(out.publish[0].clone(), t0 + 13 * MS);
    let b_out = drain(&mut b);
    assert_eq!(b_out.resets, [LinkReset::Peer]);
    assert!(
        !b.on_envelope(sent[2].clone(), t0 + 14 * MS),
        "old generation"
    );
    let fresh = send_n(&mut a, 1, t0 + 15 * MS);
    assert_eq!((fresh[0].generation, fresh[0].seq), (2, 1));
    b.on_envelope(fresh[0].clone(), t0 + 16 * MS);
    assert_eq!(texts(&drain(&mut b).deliver), ["m1"]);
}

#[test]
fn starting_over_drops_the_unacknowledged_and_the_peer_hears_of_it_before_anything_newer() {
    let t0 = Instant::now();
    let (mut a, mut b) = pair(config());
    let sent = send_n(&mut a, 3, t0);
    b.on_envelope(sent[0].clone(), t0);
    a.start_over();
    let out = drain(&mut a);
    assert_eq!(out.resets, [LinkReset::Overflowed { lost: 3 }]);
    assert_eq!((a.generation(), a.unacked()), (2, 0));
    assert_eq!(kinds(&out.publish), [(EnvelopeKind::Probe, 0)]);
    // The rest of the old generation is not delivered after the probe.
    b.on_envelope(out.publish[0].clone(), t0 + MS);
    assert!(
        !b.on_envelope(sent[1].clone(), t0 + 2 * MS),
        "old generation"
    );
    let b_out = drain(&mut b);
    assert_eq!(texts(&b_out.deliver), ["m1"]);
    assert_eq!(b_out.resets, [LinkReset::Peer]);
    let fresh = send_n(&mut a, 1, t0 + 3 * MS);
    assert_eq!((fresh[0].generation, fresh[0].seq), (2, 1));
    b.on_envelope(fresh[0].clone(), t0 + 4 * MS);
    assert_eq!(texts(&drain(&mut b).deliver), ["m1"]);
}

#[test]
fn payloads_leave_the_ring_after_ring_age_and_a_late_nack_then_resets() {
    let t0 = Instant::now();
    let (mut a, mut b) = pair(config());
    let sent = send_n(&mut a, 2, t0);
    b.on_envelope(sent[1].clone(), t0);
    drain(&mut b);
    a.poll(t0 + 1000 * MS);
    drain(&mut a);
    b.poll(t0 + 1001 * MS);
    let nack = drain(&mut b).publish;
    let nack = nack.iter().find(|e| e.kind == EnvelopeKind::Nack).cloned();
    a.on_envelope(nack.expect("a nack"), t0 + 1001 * MS);
    assert_eq!(drain(&mut a).resets, [LinkReset::Evicted { lost: 2 }]);
}

#[test]
fn a_nack_for_a_generation_already_left_is_answered_with_a_probe() {
    let t0 = Instant::now();
    let (mut a, mut b) = pair(LinkConfig {
        ring_bytes: 2,
        ..config()
    });
    let sent = send_n(&mut a, 2, t0);
    b.on_envelope(sent[1].clone(), t0);
    b.poll(t0 + 10 * MS);
    let nack = drain(&mut b).publish.remove(0);
    a.on_envelope(nack.clone(), t0 + 11 * MS);
    drain(&mut a);
    // The probe announcing generation 2 was lost; B asks again.
    a.on_envelope(nack, t0 + 120 * MS);
    let out = drain(&mut a);
    assert!(out.resets.is_empty(), "one reset only");
    assert_eq!(kinds(&out.publish), [(EnvelopeKind::Probe, 0)]);
    assert_eq!(out.publish[0].generation, 2);
}

#[test]
fn envelopes_for_another_run_or_from_an_older_run_are_ignored() {
    let t0 = Instant::now();
    let (mut a, mut b) = pair(config());
    let mut sent = send_n(&mut a, 1, t0).remove(0);
    sent.to_incarnation = B.run - 1;
    assert!(
        !b.on_envelope(sent.clone(), t0),
        "meant for B's previous run"
    );
    sent.to_incarnation = B.run;
    sent.incarnation = A.run - 1;
    assert!(!b.on_envelope(sent.clone(), t0), "from A's previous run");
    sent.from = 3;
    sent.incarnation = A.run;
    assert!(!b.on_envelope(sent, t0), "not from the peer");
    assert!(drain(&mut b).deliver.is_empty());
}

#[test]
fn a_newer_run_of_the_peer_restarts_both_directions() {
    let t0 = Instant::now();
    let (mut a, mut b) = pair(config());
    for envelope in send_n(&mut b, 1, t0) {
        a.on_envelope(envelope, t0);
    }
    send_n(&mut a, 2, t0);
    drain(&mut a);
    let mut b2 = Link::new(config(), B.node, B.run + 1, A.node, A.run);
    let sent = send_n(&mut b2, 1, t0 + MS);
    a.on_envelope(sent[0].clone(), t0 + MS);
    let out = drain(&mut a);
    assert_eq!(out.resets, [LinkReset::Peer]);
    assert_eq!(texts(&out.deliver), ["m1"]);
    assert_eq!(a.peer_incarnation(), B.run + 1);
    assert_eq!(a.unacked(), 0, "what was sent to the old run is dropped");
    let next = send_n(&mut a, 1, t0 + 2 * MS);
    assert_eq!((next[0].to_incarnation, next[0].seq), (B.run + 1, 1));
    drop(b);
}

#[test]
fn decoding_rejects_what_is_not_an_envelope() {
    let good = Envelope {
        kind: EnvelopeKind::Data,
        from: 7,
        incarnation: 8,
        generation: 9,
        seq: 10,
        to_incarnation: 11,
        ack_generation: 12,
        ack: 13,
        payload: Bytes::from_static(b"hi"),
    };
    let bytes = good.encode();
    assert_eq!(bytes.len(), HEADER_LEN + 2);
    assert_eq!(Envelope::decode(bytes.clone()), Ok(good.clone()));
    assert_eq!(
        Envelope::decode(bytes.slice(..HEADER_LEN - 1)),
        Err(EnvelopeError::TooShort)
    );
    let mut raw = bytes.to_vec();
    raw[0] = 2;
    assert_eq!(
        Envelope::decode(raw.clone().into()),
        Err(EnvelopeError::Version(2))
    );
    raw[0] = 1;
    raw[1] = 6;
    assert_eq!(
        Envelope::decode(raw.clone().into()),
        Err(EnvelopeError::Kind(6))
    );
    raw[1] = 2;
    assert_eq!(
        Envelope::decode(raw.into()),
        Err(EnvelopeError::Inconsistent),
        "an ack with a payload"
    );
    let zero_seq = Envelope { seq: 0, ..good };
    assert_eq!(
        Envelope::decode(zero_seq.encode()),
        Err(EnvelopeError::Inconsistent)
    );
}

/// A batch body of `payloads` (4-byte big-endian length, then the bytes).
fn batch_body(payloads: &[&[u8]]) -> Bytes {
    let mut body = Vec::new();
    for payload in payloads {
        body.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        body.extend_from_slice(payload);
    }
    body.into()
}

#[test]
fn payloads_queued_together_go_out_in_one_batch_and_are_delivered_and_acked_one_by_one() {
    let t0 = Instant::now();
    let (mut a, mut b) = pair(config());
    for text in ["m1", "m2", "m3"] {
        a.queue(Bytes::from(text), t0);
    }
    assert!(drain(&mut a).publish.is_empty(), "nothing before the flush");
    assert_eq!(a.unacked(), 3);
    a.flush();
    let sent = drain(&mut a).publish;
    assert_eq!(kinds(&sent), [(EnvelopeKind::Batch, 1)]);
    assert_eq!(sent[0].payload, batch_body(&[b"m1", b"m2", b"m3"]));
    a.flush();
    assert!(drain(&mut a).publish.is_empty(), "flushed once");
    b.on_envelope(sent[0].clone(), t0);
    b.on_envelope(sent[0].clone(), t0);
    assert_eq!(texts(&drain(&mut b).deliver), ["m1", "m2", "m3"], "once");
    b.poll(t0 + 10 * MS);
    let ack = drain(&mut b).publish;
    assert_eq!((ack[0].kind, ack[0].ack), (EnvelopeKind::Ack, 3));
    a.on_envelope(ack[0].clone(), t0 + 11 * MS);
    assert_eq!(a.unacked(), 0);
    // One queued payload alone goes out as plain data, and poll flushes.
    a.queue(Bytes::from("m4"), t0 + 12 * MS);
    a.poll(t0 + 12 * MS);
    assert_eq!(kinds(&drain(&mut a).publish), [(EnvelopeKind::Data, 4)]);
}

#[test]
fn batches_are_bounded_by_batch_bytes_and_a_longer_payload_travels_alone() {
    let t0 = Instant::now();
    let (mut a, mut b) = pair(LinkConfig {
        batch_bytes: 20,
        ..config()
    });
    // Framed: 4 + 6 = 10 bytes each, so two fit a batch; 30 bytes do not.
    let long = "x".repeat(30);
    for text in ["short1", "short2", "short3", long.as_str(), "short5"] {
        a.queue(Bytes::from(text.to_owned()), t0);
    }
    a.flush();
    let sent = drain(&mut a).publish;
    assert_eq!(
        kinds(&sent),
        [
            (EnvelopeKind::Batch, 1),
            (EnvelopeKind::Data, 3),
            (EnvelopeKind::Data, 4),
            (EnvelopeKind::Data, 5)
        ]
    );
    for envelope in sent.into_iter().rev() {
        b.on_envelope(envelope, t0);
    }
    let delivered = drain(&mut b).deliver;
    assert_eq!(
        texts(&delivered),
        ["short1", "short2", "short3", long.as_str(), "short5"],
        "in order, whatever order the envelopes came in"
    );
}

#[test]
fn a_batch_overlapping_what_was_delivered_delivers_only_the_rest() {
    let t0 = Instant::now();
    let (mut a, mut b) = pair(config());
    let first = send_n(&mut a, 1, t0);
    b.on_envelope(first[0].clone(), t0);
    let mut overlapping = first[0].clone();
    overlapping.kind = EnvelopeKind::Batch;
    overlapping.payload = batch_body(&[b"m1", b"m2", b"m3"]);
    let overlapping = Envelope::decode(overlapping.encode()).expect("a well-formed batch");
    b.on_envelope(overlapping, t0);
    assert_eq!(texts(&drain(&mut b).deliver), ["m1", "m2", "m3"]);
}

#[test]
fn a_payload_evicted_before_its_flush_is_published_first() {
    let t0 = Instant::now();
    let (mut a, mut b) = pair(LinkConfig {
        ring_bytes: 4,
        ..config()
    });
    for text in ["m1", "m2", "m3"] {
        a.queue(Bytes::from(text), t0);
    }
    a.flush();
    let sent = drain(&mut a).publish;
    let mut published = Vec::new();
    for envelope in &sent {
        match envelope.kind {
            EnvelopeKind::Data => published.push(envelope.payload.clone()),
            _ => published.extend(envelope.batch()),
        }
    }
    assert_eq!(texts(&published), ["m1", "m2", "m3"], "each went out once");
    for envelope in sent {
        b.on_envelope(envelope, t0);
    }
    assert_eq!(texts(&drain(&mut b).deliver), ["m1", "m2", "m3"]);
}

#[test]
fn malformed_batches_are_not_envelopes() {
    let batch = |seq: u64, body: Bytes| {
        Envelope {
            kind: EnvelopeKind::Batch,
            from: 1,
            incarnation: 2,
            generation: 3,
            seq,
            to_incarnation: 4,
            ack_generation: 0,
            ack: 0,
            payload: body,
        }
        .encode()
    };
    let good = batch_body(&[b"ab", b"", b"c"]);
    let decoded = Envelope::decode(batch(7, good.clone())).expect("well-formed");
    assert_eq!(texts(&decoded.batch().collect::<Vec<_>>()), ["ab", "", "c"]);
    for (seq, body, why) in [
        (7, Bytes::new(), "empty"),
        (0, good.clone(), "numbered 0"),
        (u64::MAX, good.clone(), "numbers past u64::MAX"),
        (7, good.slice(..good.len() - 1), "last payload cut short"),
        (7, good.slice(..3), "length prefix cut short"),
    ] {
        assert_eq!(
            Envelope::decode(batch(seq, body)),
            Err(EnvelopeError::Inconsistent),
            "{why}"
        );
    }
    assert_eq!(
        Envelope::decode(batch(u64::MAX - 2, good)).map(|e| e.batch().count()),
        Ok(3),
        "the last number is u64::MAX"
    );
}

fn any_envelope() -> impl Strategy<Value = Envelope> {
    (
        prop_oneof![
            Just(EnvelopeKind::Data),
            Just(EnvelopeKind::Ack),
            Just(EnvelopeKind::Nack),
            Just(EnvelopeKind::Probe),
            Just(EnvelopeKind::Batch)
        ],
        any::<u32>(),
        any::<u64>(),
        1..=u32::MAX,
        any::<u64>(),
        any::<u64>(),
        any::<u32>(),
        any::<u64>(),
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 1..4),
    )
        .prop_map(
            |(kind, from, incarnation, generation, seq, to, ack_generation, ack, payloads)| {
                let (seq, payload) = match kind {
                    EnvelopeKind::Data => (seq.max(1), Bytes::from(payloads[0].clone())),
                    EnvelopeKind::Batch => {
                        let parts: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
                        // Every number of the batch fits a u64.
                        let last_first = u64::MAX - (parts.len() as u64 - 1);
                        (seq.clamp(1, last_first), batch_body(&parts))
                    }
                    _ => (seq, Bytes::new()),
                };
                Envelope {
                    kind,
                    from,
                    incarnation,
                    generation,
                    seq,
                    to_incarnation: to,
                    ack_generation,
                    ack,
                    payload,
                }
            },
        )
}

/// A simulated network between two links.
struct Sim {
    rng: StdRng,
    now: Instant,
    loss: f64,
    duplicate: f64,
    max_delay_ms: u64,
    links: [Link; 2],
    /// Envelopes on their way: (arrival, destination index, bytes).
    in_flight: Vec<(Instant, usize, Bytes)>,
    /// Per sending side: the generation each payload (by id) was sent in.
    sent: [Vec<u32>; 2],
    /// Per receiving side: what it reported, in order.
    log: [Vec<Seen>; 2],
    resets_reported_by_sender: [u64; 2],
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Seen {
    Payload(u64),
    PeerReset,
}

impl Sim {
    /// Sends `count` payloads from `from`, one by one, or queued and then
    /// flushed together (in batches).
    fn send(&mut self, from: usize, count: u8, batched: bool) {
        for _ in 0..count {
            let id = self.sent[from].len() as u64;
            self.sent[from].push(self.links[from].generation());
            let payload = Bytes::copy_from_slice(&id.to_be_bytes());
            if batched {
                self.links[from].queue(payload, self.now);
            } else {
                self.links[from].send(payload, self.now);
            }
        }
        self.links[from].flush();
        self.flush();
    }

    /// Moves every output onto the channel or into the logs.
    fn flush(&mut self) {
        for index in 0..2 {
            while let Some(output) = self.links[index].pop_output() {
                match output {
                    LinkOutput::Publish(envelope) => {
                        let bytes = envelope.encode();
                        let copies = if self.rng.random_bool(self.loss) {
                            0
                        } else if self.rng.random_bool(self.duplicate) {
                            2
                        } else {
                            1
                        };
                        for _ in 0..copies {
                            let delay = self.rng.random_range(0..=self.max_delay_ms);
                            let at = self.now + Duration::from_millis(delay);
                            self.in_flight.push((at, 1 - index, bytes.clone()));
                        }
                    }
                    LinkOutput::Deliver(payload) => {
                        let id = u64::from_be_bytes(payload[..].try_into().expect("8 bytes"));
                        self.log[index].push(Seen::Payload(id));
                    }
                    LinkOutput::Reset(LinkReset::Peer) => self.log[index].push(Seen::PeerReset),
                    LinkOutput::Reset(LinkReset::Evicted { .. } | LinkReset::Overflowed { .. }) => {
                        self.resets_reported_by_sender[index] += 1;
                    }
                }
            }
        }
    }

    /// Advances time, delivering what arrives meanwhile and running timers.
    fn advance(&mut self, ms: u64) {
        let until = self.now + Duration::from_millis(ms);
        for _ in 0..10_000 {
            let next_arrival = self.in_flight.iter().map(|f| f.0).min();
            let next_timer = self.links.iter().filter_map(Link::next_deadline).min();
            let next = [next_arrival, next_timer].into_iter().flatten().min();
            match next {
                Some(at) if at <= until => {
                    self.now = self.now.max(at);
                    let (due, later): (Vec<_>, Vec<_>) =
                        self.in_flight.drain(..).partition(|f| f.0 <= self.now);
                    self.in_flight = later;
                    for (_, to, bytes) in due {
                        let envelope = Envelope::decode(bytes).expect("our own encoding");
                        self.links[to].on_envelope(envelope, self.now);
                        self.flush();
                    }
                    for link in &mut self.links {
                        link.poll(self.now);
                    }
                    self.flush();
                }
                _ => break,
            }
        }
        self.now = until;
    }

    fn settled(&self) -> bool {
        self.in_flight.is_empty() && self.links.iter().all(|l| l.unacked() == 0)
    }
}

/// Checks what `receiver` saw of what `sender` sent.
fn check_direction(sim: &Sim, sender: usize) -> Result<(), TestCaseError> {
    let receiver = 1 - sender;
    let sent = &sim.sent[sender];
    let mut next_expected: Option<(u32, u64)> = None;
    let mut current_generation = 0;
    for seen in &sim.log[receiver] {
        match *seen {
            Seen::PeerReset => next_expected = None,
            Seen::Payload(id) => {
                let generation = sent[id as usize];
                prop_assert!(
                    generation >= current_generation,
                    "payload {id} of generation {generation} after {current_generation}"
                );
                match next_expected {
                    Some((g, expected)) if g == generation => {
                        prop_assert_eq!(id, expected, "out of order or twice")
                    }
                    Some(_) => prop_assert!(false, "generation changed without a reset report"),
                    None => {
                        // The first payload seen of a generation (after a
                        // reset or at the start) must be that generation's
                        // first one.
                        prop_assert!(generation > current_generation || current_generation == 0);
                        let first = sent.iter().position(|g| *g == generation);
                        prop_assert_eq!(Some(id as usize), first, "not the generation's first");
                    }
                }
                current_generation = generation;
                next_expected = Some((generation, id + 1));
            }
        }
    }
    // Settled, the final generation is delivered in full.
    let final_generation = sim.links[sender].generation();
    let final_ids: Vec<u64> = (0..sent.len() as u64)
        .filter(|id| sent[*id as usize] == final_generation)
        .collect();
    let delivered: Vec<u64> = sim.log[receiver]
        .iter()
        .filter_map(|s| match s {
            Seen::Payload(id) if sent[*id as usize] == final_generation => Some(*id),
            _ => None,
        })
        .collect();
    prop_assert_eq!(delivered, final_ids);
    prop_assert_eq!(
        u64::from(final_generation - 1),
        sim.resets_reported_by_sender[sender],
        "each new generation was reported"
    );
    if sim.resets_reported_by_sender[sender] == 0 {
        prop_assert!(!sim.log[receiver].contains(&Seen::PeerReset));
        let all = sim.log[receiver].len();
        prop_assert_eq!(all, sent.len(), "exactly once without a reset");
    }
    Ok(())
}

#[derive(Debug, Clone)]
enum Step {
    Send {
        from: usize,
        count: u8,
        batched: bool,
    },
    Wait(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0usize..2, 1u8..12, any::<bool>())
            .prop_map(|(from, count, batched)| Step::Send { from, count, batched }),
        2 => (0u64..150).prop_map(Step::Wait),
    ]
}

fn sim_config() -> impl Strategy<Value = LinkConfig> {
    prop_oneof![
        Just(LinkConfig::default()),
        // Small rings, so resets happen; small batches, so they split.
        (16usize..200, 50u64..600, 1usize..6, 1usize..40).prop_map(|(bytes, age, early, batch)| {
            LinkConfig {
                ring_bytes: bytes,
                ring_age: Duration::from_millis(age),
                resend_after: Duration::from_millis(40),
                ack_after: Duration::from_millis(5),
                max_out_of_order: early,
                batch_bytes: batch,
            }
        }),
    ]
}

proptest! {
    #[test]
    fn envelopes_round_trip(envelope in any_envelope()) {
        prop_assert_eq!(Envelope::decode(envelope.encode()), Ok(envelope));
    }

    #[test]
    fn decoding_any_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..100)) {
        let _ = Envelope::decode(Bytes::from(bytes));
    }

    #[test]
    fn over_a_lossy_channel_delivery_is_exactly_once_in_order_or_reset(
        seed in any::<u64>(),
        loss in 0.0f64..0.3,
        duplicate in 0.0f64..0.2,
        max_delay_ms in 0u64..40,
        config in sim_config(),
        steps in prop::collection::vec(step(), 1..80),
    ) {
        let (a, b) = pair(config);
        let mut sim = Sim {
            rng: StdRng::seed_from_u64(seed),
            now: Instant::now(),
            loss,
            duplicate,
            max_delay_ms,
            links: [a, b],
            in_flight: Vec::new(),
            sent: [Vec::new(), Vec::new()],
            log: [Vec::new(), Vec::new()],
            resets_reported_by_sender: [0, 0],
        };
        for step in steps {
            match step {
                Step::Send { from, count, batched } => sim.send(from, count, batched),
                Step::Wait(ms) => sim.advance(ms),
            }
        }
        // Heal the channel and let the links settle.
        sim.loss = 0.0;
        sim.duplicate = 0.0;
        for _ in 0..200 {
            if sim.settled() {
                break;
            }
            sim.advance(50);
        }
        prop_assert!(sim.settled(), "the links settle once the channel heals");
        check_direction(&sim, 0)?;
        check_direction(&sim, 1)?;
    }
}
