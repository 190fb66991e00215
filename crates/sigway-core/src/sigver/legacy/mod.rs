//! The legacy sigver dialect (sigver 18.x, early-2018 Netflux releases):
//! [`codec`] (bytes ↔ messages, read the way sigver 18.0.0 read them, on
//! the shared [`protobufjs`](super::protobufjs) reader), [`state`] (the pure
//! rules) and [`action`] (the words both use). The membership core, route
//! ids, limits and the binding table are shared with the current dialect.
//! `tests/node_conformance_legacy.rs` compares the whole with the real
//! sigver 18.0.0.

pub mod action;
pub mod codec;
pub mod state;
