//! The sigver adapter: Netflux peers over WebSocket at `/<key>`.
//!
//! [`session`] owns one WebSocket (handshake checks, heartbeat, decoding,
//! limits), [`group`] is the actor of one key that runs the pure rules and
//! moves their frames to sessions. The rules, codecs, binding table and id
//! allocator live in `sigway_core::sigver` and are re-exported here under
//! their usual names. [`legacy`] serves the sigver 18.x dialect on the same
//! URL; both dialects' actors share [`group`]'s plumbing.

pub(crate) mod current;
pub(crate) mod group;
pub(crate) mod legacy;
pub(crate) mod session;

pub(crate) use sigway_core::sigver::{
    codec, frame, handshake, heartbeat, ids, merged, snapshot, state,
};
