//! The rules of cluster mode, free of I/O: how nodes name a group in the
//! shared directory ([`hash`]), which nodes are alive ([`liveness`]), and
//! how two nodes exchange ordered, exactly-once messages over a channel that
//! loses, duplicates and reorders ([`link`]).
//!
//! `sigway-cluster`'s bus drives these state machines: it feeds them what
//! its transport receives and the current time, and carries out what they
//! return (publish an envelope, deliver a payload, report a node down).
//! Nothing here reads a clock, sleeps or touches a socket, so every rule is
//! a unit test or a property test with simulated time and a simulated
//! channel.

pub mod hash;
pub mod link;
pub mod liveness;

/// A node of the deployment, as the transport names it (never 0).
pub type NodeId = u32;

/// Which run of a node: it must grow each time the node process starts
/// (the gateway uses its start time in milliseconds), so a message of a
/// previous run is recognised as stale.
pub type Incarnation = u64;
