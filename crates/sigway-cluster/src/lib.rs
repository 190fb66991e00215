//! sigway-cluster: how several sigway nodes act as one deployment.
//!
//! The design is `../shared/cluster.md` (owner node per room key, a
//! directory claim with epochs, one inbox per node, fenced snapshots, a link
//! layer with retransmit). This crate is the part that does I/O but knows
//! no protocol and no actor framework: a [`Transport`] (Redis pub/sub and
//! scripts; an in-memory one for tests) and, on top of it, the node bus
//! that keeps the view of live nodes and gives each pair of nodes an
//! ordered, reliable link. The rules it runs (link sequencing, liveness,
//! key hashing) are pure, in `sigway_core::cluster`. The gateway's room
//! layer is its only user: it turns room events into payloads and back.

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod bus;
mod memory;
mod redis;
mod transport;

pub use self::redis::{DEFAULT_PREFIX, RedisOptions, RedisTransport};
pub use bus::{Bus, BusConfig, BusCounters, BusEvent, BusHandle, SendError, Taken};
pub use memory::MemoryTransport;
pub use sigway_core::cluster::link::LinkConfig;
pub use transport::{Claim, Delivery, GroupHash, NodeId, Transport, TransportError};
