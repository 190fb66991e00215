//! What sigway's fuzz targets share: the bookkeeping a target keeps beside
//! the rules it drives, so that each target only says what its protocol
//! does and checks.
//!
//! The targets (`fuzz_targets/*.rs`, one binary each, run by `fuzz/run.sh`)
//! feed libFuzzer's bytes to sigway's pure code: the sigver codecs and
//! group rules of both dialects (the rules through `arbitrary` event
//! sequences from several peers, with the invariants of the core's test kit
//! checked after every event), group and room snapshots, videre packets and
//! rooms, the SockJS body, payload and URL parsers, and the settings file
//! readers. A broken invariant is a panic, which libFuzzer reports as a
//! crash with the input that caused it.

use std::collections::{BTreeSet, HashSet};

use sigway_core::sigver::types::{PeerId, SignalingId, SignalingIds};

/// Signaling ids 1, 2, 3, ... (deterministic, so a crash replays), which
/// also check the rules' discipline: an id is never drawn twice while held
/// and is released exactly once.
#[derive(Debug, Default)]
pub struct SeqIds {
    next: SignalingId,
    live: BTreeSet<SignalingId>,
}

impl SeqIds {
    /// Ids drawn and not yet released, ascending.
    pub fn live(&self) -> &BTreeSet<SignalingId> {
        &self.live
    }
}

impl SignalingIds for SeqIds {
    fn allocate(&mut self) -> SignalingId {
        self.next += 1;
        assert!(self.live.insert(self.next), "id {} drawn twice", self.next);
        self.next
    }

    fn release(&mut self, id: SignalingId) {
        assert!(self.live.remove(&id), "id {id} released but not held");
    }
}

/// How many peer slots a rules target plays with: enough for a group, a
/// joiner, a replacement and a bystander to meet in a short input.
pub const SLOTS: usize = 6;

/// The connections a rules target has opened, as the gateway sees them: a
/// slot holds at most one open connection at a time, and each connection
/// gets a fresh [`PeerId`] (the gateway never reuses one).
#[derive(Debug, Default)]
pub struct Peers {
    slots: [Option<PeerId>; SLOTS],
    next: PeerId,
    /// Every peer ever opened (to count bindings of departed peers too).
    known: BTreeSet<PeerId>,
}

impl Peers {
    /// The slot an input byte names.
    pub fn slot(byte: u8) -> usize {
        usize::from(byte) % SLOTS
    }

    /// The open peer in `slot`, if any.
    pub fn open_in(&self, slot: usize) -> Option<PeerId> {
        self.slots[slot]
    }

    /// Opens a connection in `slot` if it is free; returns its new peer.
    pub fn open(&mut self, slot: usize) -> Option<PeerId> {
        if self.slots[slot].is_some() {
            return None;
        }
        self.next += 1;
        self.slots[slot] = Some(self.next);
        self.known.insert(self.next);
        Some(self.next)
    }

    /// The peer's connection is gone (it left, or the rules closed it).
    pub fn close(&mut self, peer: PeerId) {
        for slot in &mut self.slots {
            if *slot == Some(peer) {
                *slot = None;
            }
        }
    }

    /// The peer is open.
    pub fn is_open(&self, peer: PeerId) -> bool {
        self.slots.contains(&Some(peer))
    }

    /// Open peers.
    pub fn open_peers(&self) -> Vec<PeerId> {
        self.slots.iter().flatten().copied().collect()
    }

    /// Every peer ever opened.
    pub fn known(&self) -> &BTreeSet<PeerId> {
        &self.known
    }
}

/// The checks on bindings both dialects share, from what their public API
/// tells: `binding_id`/`bound_member` of every peer ever opened. Bound
/// peers, their ids and the ids held agree one to one; nobody is bound to
/// itself.
pub fn check_bindings(
    peers: &Peers,
    ids: &SeqIds,
    binding_id: impl Fn(PeerId) -> Option<SignalingId>,
    bound_member: impl Fn(PeerId) -> Option<PeerId>,
) {
    let mut held = HashSet::new();
    for &peer in peers.known() {
        let (id, member) = (binding_id(peer), bound_member(peer));
        assert_eq!(
            id.is_some(),
            member.is_some(),
            "a binding has an id and a member"
        );
        if let (Some(id), Some(member)) = (id, member) {
            assert_ne!(member, peer, "peer {peer} bound to itself");
            assert!(held.insert(id), "signaling id {id} names two bindings");
            assert!(ids.live().contains(&id), "binding id {id} is not held");
        }
    }
    assert_eq!(held.len(), ids.live().len(), "ids held = bindings");
}

/// What the SockJS targets share.
pub mod sockjs {
    use sigway_sockjs::inputs::{messages_frame, websocket_payload};

    /// Content types a send request may carry: those sockjs-node reads, a
    /// parameter, a near miss, a foreign one and none.
    pub const CONTENT_TYPES: [Option<&str>; 9] = [
        None,
        Some("text/plain"),
        Some("application/json"),
        Some("application/x-www-form-urlencoded"),
        Some("text/plain;charset=UTF-8"),
        Some("T"),
        Some("application/xml"),
        Some("Text/Plain"),
        Some("image/png"),
    ];

    /// Strings made of the fuzzer's bytes (lossy UTF-8, one per line), to be
    /// written by a real encoder and read back.
    pub fn messages_of(bytes: &[u8]) -> Vec<String> {
        String::from_utf8_lossy(bytes)
            .split('\n')
            .take(64)
            .map(str::to_owned)
            .collect()
    }

    /// Messages a client sent come back unchanged to a client through the
    /// `a[...]` frame the server sends them in.
    pub fn round_trips(messages: &[String]) {
        let frame = messages_frame(messages);
        let Some(array) = frame.strip_prefix('a') else {
            panic!("a message frame starts with 'a': {frame:?}");
        };
        match websocket_payload(array) {
            Ok(read) => assert_eq!(read, messages, "messages survive the frame"),
            Err(error) => panic!("frame {frame:?} unreadable: {error}"),
        }
    }
}
