//! sigver, the Netflux signaling protocol, both dialects.
//!
//! [`state`] holds the current dialect's group rules, [`legacy`] the sigver
//! 18.x ones; both are built on one [`membership`] core (peers, members,
//! the member limit, departures, member choice), keep their joiner–member
//! links in one [`bindings`] table and draw signaling ids from a per-group
//! [`ids`] allocator; one test kit (`testkit`) checks the invariants they
//! share. [`codec`] maps bytes to messages, reading them as sigver 20 did
//! with the [`protobufjs`] reader both dialects' codecs share, and writes
//! relayed frames as a head and the data as it arrived ([`frame`]); [`merged`] is
//! what a frame that carries `content` besides its `connect` does;
//! [`handshake`] checks what the upgrade request says (key, flags,
//! dialect); [`heartbeat`] is the missed-heartbeat rule; [`snapshot`]
//! writes a group's state down for another cluster node to adopt and
//! rebuilds it; [`types`] names what they all share.

pub mod bindings;
pub mod codec;
pub mod frame;
pub mod handshake;
pub mod heartbeat;
pub mod ids;
pub mod legacy;
pub mod membership;
pub mod merged;
pub mod protobufjs;
pub mod snapshot;
pub mod state;
#[cfg(test)]
mod testkit;
pub mod types;
