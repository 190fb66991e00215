//! The sigver adapter: Netflux peers over WebSocket at `/<key>`.
//!
//! [`session`] owns one WebSocket (key check, heartbeat, decoding, limits),
//! [`group`] is the actor of one key that runs the pure rules of [`state`]
//! and moves their frames to sessions, [`codec`] maps bytes to messages and
//! [`ids`] hands out signaling ids. [`legacy`] serves the sigver 18.x dialect
//! on the same URL; both dialects keep their joiner–member links in the same
//! [`bindings`] table and their actors share [`group`]'s plumbing.

pub mod bindings;
pub mod codec;
pub mod group;
pub mod ids;
pub mod legacy;
pub mod session;
pub mod state;
