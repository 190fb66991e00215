//! What the cluster needs from the engine between nodes, as one trait.
//!
//! A [`Transport`] carries opaque payloads to one node's inbox or to every
//! node (the control channel), and keeps the room directory: which node
//! owns a group (claimed by compare-and-set with an epoch) and the group's
//! last snapshot (written only by the owner at its epoch, so a node that
//! lost ownership cannot overwrite its successor's state). It also keeps
//! each node's dashboard figures for a while ([`Transport::write_node_figures`]),
//! so that any node's dashboard can show every live node. Delivery is
//! at most once (Redis pub/sub loses what is published while a subscriber
//! reconnects); the bus's link layer makes it reliable. Keeping this a
//! trait lets NATS or Redis Streams replace pub/sub later, and lets tests
//! run nodes in one process.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

/// A node of the deployment (never 0: 0 means "a single node").
pub type NodeId = u32;

/// The directory's name for a group: 128 bits of a hash of its kind and
/// key (`sigway_core::cluster`), so keys of any length or content make
/// safe Redis key names.
pub type GroupHash = [u8; 16];

/// What arrives on a node's subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// A payload published to this node's inbox.
    Inbox(Bytes),
    /// A payload published on the control channel (every node gets it,
    /// the publisher included).
    Control(Bytes),
    /// The subscription was re-established after a failure: anything
    /// published meanwhile may be lost.
    Resubscribed,
    /// The subscription is broken and being retried (readiness is lost
    /// until `Resubscribed`).
    Interrupted,
}

/// The answer to a claim: who owns the group now, at which epoch, and
/// (when the caller is the owner) the snapshot the previous owner left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The owner after the call (the caller when it won).
    pub owner: NodeId,
    /// Bumped each time ownership changes hands.
    pub epoch: u64,
    /// The group's last snapshot, returned only to a caller that owns it.
    pub snapshot: Option<Bytes>,
}

/// Why a transport call failed (the engine is unreachable or answered
/// something unexpected). Callers retry; nothing here is fatal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The engine cannot be reached (connection refused, timeout, reset).
    #[error("cluster transport unreachable: {0}")]
    Unreachable(String),
    /// The engine answered, but not as expected (script error, bad reply).
    #[error("cluster transport error: {0}")]
    Protocol(String),
}

/// The engine between nodes. Every method may be called concurrently.
pub trait Transport: Send + Sync + 'static {
    /// Starts receiving this node's inbox and the control channel. Items
    /// arrive in publish order per publisher; the subscription reconnects
    /// by itself and reports it with [`Delivery::Interrupted`] and
    /// [`Delivery::Resubscribed`].
    fn subscribe(
        &self,
        me: NodeId,
    ) -> impl Future<Output = Result<mpsc::Receiver<Delivery>, TransportError>> + Send;

    /// Publishes to `node`'s inbox; returns how many subscribers got it
    /// (0: nobody listens, e.g. the node is gone or resubscribing).
    fn publish_inbox(
        &self,
        node: NodeId,
        payload: Bytes,
    ) -> impl Future<Output = Result<usize, TransportError>> + Send;

    /// Publishes on the control channel, to every node.
    fn publish_control(
        &self,
        payload: Bytes,
    ) -> impl Future<Output = Result<usize, TransportError>> + Send;

    /// Records in the node registry that `me` was alive at `now_ms`
    /// (operators list nodes from it; liveness itself uses heartbeats).
    fn register(
        &self,
        me: NodeId,
        now_ms: u64,
    ) -> impl Future<Output = Result<(), TransportError>> + Send;

    /// Removes `node` from the node registry.
    fn deregister(&self, node: NodeId) -> impl Future<Output = Result<(), TransportError>> + Send;

    /// Claims `group` for `me`, atomically: it wins when the group has no
    /// owner, or when its owner is still `expected` (the owner the caller
    /// believes dead or leaving, at that epoch); the epoch then goes up by
    /// one. Otherwise the current owner is returned unchanged.
    fn claim(
        &self,
        group: GroupHash,
        me: NodeId,
        expected: Option<(NodeId, u64)>,
    ) -> impl Future<Output = Result<Claim, TransportError>> + Send;

    /// Writes `group`'s snapshot if `me` still owns it at `epoch`; returns
    /// whether it was written. A group the directory has no record of at
    /// all (not even a released one's) is claimed for `me` at `epoch` by
    /// the write: the engine lost its data (Redis restarted without
    /// persistence), and owners write their rooms again to claim them back.
    fn write_snapshot(
        &self,
        group: GroupHash,
        me: NodeId,
        epoch: u64,
        snapshot: Bytes,
    ) -> impl Future<Output = Result<bool, TransportError>> + Send;

    /// Deletes `group`'s owner and snapshot if `me` still owns it at
    /// `epoch`; returns whether it did.
    fn release(
        &self,
        group: GroupHash,
        me: NodeId,
        epoch: u64,
    ) -> impl Future<Output = Result<bool, TransportError>> + Send;

    /// Keeps `figures` (opaque to the transport: the node's dashboard
    /// figures) as `me`'s for `ttl`, replacing what `me` wrote before. A
    /// node that stops writing (killed) has no figures once `ttl` is over.
    fn write_node_figures(
        &self,
        me: NodeId,
        figures: Bytes,
        ttl: Duration,
    ) -> impl Future<Output = Result<(), TransportError>> + Send;

    /// The figures of those of `nodes` that have some (written less than
    /// their `ttl` ago), in `nodes`' order; one round trip for all.
    fn read_node_figures(
        &self,
        nodes: Vec<NodeId>,
    ) -> impl Future<Output = Result<Vec<(NodeId, Bytes)>, TransportError>> + Send;
}

/// A shared transport is a transport: the bus and the directory's users
/// can hold the same connection.
impl<T: Transport> Transport for std::sync::Arc<T> {
    fn subscribe(
        &self,
        me: NodeId,
    ) -> impl Future<Output = Result<mpsc::Receiver<Delivery>, TransportError>> + Send {
        T::subscribe(self, me)
    }

    fn publish_inbox(
        &self,
        node: NodeId,
        payload: Bytes,
    ) -> impl Future<Output = Result<usize, TransportError>> + Send {
        T::publish_inbox(self, node, payload)
    }

    fn publish_control(
        &self,
        payload: Bytes,
    ) -> impl Future<Output = Result<usize, TransportError>> + Send {
        T::publish_control(self, payload)
    }

    fn register(
        &self,
        me: NodeId,
        now_ms: u64,
    ) -> impl Future<Output = Result<(), TransportError>> + Send {
        T::register(self, me, now_ms)
    }

    fn deregister(&self, node: NodeId) -> impl Future<Output = Result<(), TransportError>> + Send {
        T::deregister(self, node)
    }

    fn claim(
        &self,
        group: GroupHash,
        me: NodeId,
        expected: Option<(NodeId, u64)>,
    ) -> impl Future<Output = Result<Claim, TransportError>> + Send {
        T::claim(self, group, me, expected)
    }

    fn write_snapshot(
        &self,
        group: GroupHash,
        me: NodeId,
        epoch: u64,
        snapshot: Bytes,
    ) -> impl Future<Output = Result<bool, TransportError>> + Send {
        T::write_snapshot(self, group, me, epoch, snapshot)
    }

    fn release(
        &self,
        group: GroupHash,
        me: NodeId,
        epoch: u64,
    ) -> impl Future<Output = Result<bool, TransportError>> + Send {
        T::release(self, group, me, epoch)
    }

    fn write_node_figures(
        &self,
        me: NodeId,
        figures: Bytes,
        ttl: Duration,
    ) -> impl Future<Output = Result<(), TransportError>> + Send {
        T::write_node_figures(self, me, figures, ttl)
    }

    fn read_node_figures(
        &self,
        nodes: Vec<NodeId>,
    ) -> impl Future<Output = Result<Vec<(NodeId, Bytes)>, TransportError>> + Send {
        T::read_node_figures(self, nodes)
    }
}
