//! The sigver adapter: Netflux peers over WebSocket at `/<key>`.
//!
//! [`session`] owns one WebSocket (key check, heartbeat, decoding, limits),
//! [`group`] is the actor of one key that runs the pure rules of [`state`]
//! and moves their frames to sessions, [`codec`] maps bytes to messages and
//! [`ids`] hands out signaling ids. [`legacy`] serves the sigver 18.x dialect
//! on the same URL.

pub mod codec;
pub mod group;
pub mod ids;
pub mod legacy;
pub mod session;
pub mod state;
