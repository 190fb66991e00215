//! sigway-core: what the two protocols are, with no I/O.
//!
//! Wire formats (the sigver protobufs in [`proto`], their codecs, videre's
//! JSON packets) and every protocol rule (sigver group membership and
//! bindings in both dialects, the heartbeat and handshake checks, videre
//! rooms and a session's memberships, and the cluster's node liveness and
//! message link, signed room keys, the token buckets of rate limits and
//! how a room key is shown) as plain values that take events and
//! return what to send. The crate depends on no async runtime and no
//! network library (checked in CI with `cargo tree`), so each rule is a
//! unit test and the gateway's actors and sessions only move messages.
//! Time, where a rule needs it, is an argument.

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod auth;
pub mod cluster;
pub mod error;
pub mod proto;
pub mod rate;
pub mod redact;
pub mod sigver;
pub mod videre;
