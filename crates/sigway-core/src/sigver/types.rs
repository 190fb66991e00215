//! The words both sigver dialects share: how connections and bindings are
//! named, where signaling ids come from, and what a relayed `content`
//! carries. A leaf: the codecs, the binding table and the rules import it;
//! it imports none of them.

use bytes::Bytes;

/// A connection, as numbered by the server (never sent on the wire).
pub type PeerId = u64;

/// How the rules name a connection: any small copyable key. The gateway
/// uses its rooms' member ids; tests use plain numbers ([`PeerId`]).
pub trait PeerKey: Copy + Eq + std::hash::Hash + std::fmt::Debug {}

impl<T: Copy + Eq + std::hash::Hash + std::fmt::Debug> PeerKey for T {}

/// The id a member uses to address a joiner (`senderId`/`recipientId`).
pub type SignalingId = u32;
/// The id a peer has inside its Netflux group (`GroupData.id`).
pub type NetfluxId = u32;

/// Where signaling ids come from: random, non-zero, 31 bits, unique among
/// live bindings for as long as they are held.
pub trait SignalingIds {
    /// A fresh id, not held by any live binding.
    fn allocate(&mut self) -> SignalingId;
    /// The binding holding `id` is gone: the id may be drawn again.
    fn release(&mut self, id: SignalingId);
}

/// An incoming `content` message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContentIn {
    /// `senderId` as the peer wrote it (the rules ignore it).
    pub sender_id: SignalingId,
    /// `recipientId`: one of the sender's joiners, or 0 (up to its member).
    pub recipient_id: SignalingId,
    /// `lastData`: relay this one, then stop relaying this direction.
    pub last_data: bool,
    /// The opaque bytes to relay.
    pub data: Bytes,
}
