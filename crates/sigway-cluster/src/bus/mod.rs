//! The node bus: the one task that talks to the [`Transport`] for a node.
//!
//! [`Bus::start`] subscribes to the node's inbox and the control channel,
//! announces the node (`Hello`, then a `Heartbeat` every period, `Bye` on
//! shutdown) and keeps it in the registry, follows which nodes are alive
//! (`sigway_core::cluster::liveness`), and gives every peer an ordered,
//! exactly-once link (`sigway_core::cluster::link`): payloads given to
//! [`BusHandle::send`] come out of the peer's event receiver as
//! [`BusEvent::Message`] in order, whatever pub/sub lost, duplicated or
//! delayed, or the link reports a reset. Users never see envelopes, acks
//! or heartbeats, only [`BusEvent`]s and the handle.
//!
//! The handle is cheap to clone and never blocks: each destination has a
//! bounded queue in front of the bus task, and a full queue, a peer that is
//! not alive or a stopped bus is an immediate [`SendError`].

mod actor;
mod publisher;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use sigway_core::cluster::Incarnation;
use sigway_core::cluster::link::LinkConfig;
use tokio::sync::{mpsc, oneshot};

use crate::transport::{NodeId, Transport};

/// How a node joins the bus.
#[derive(Debug, Clone)]
pub struct BusConfig {
    /// This node (never 0).
    pub node: NodeId,
    /// This run of the node: larger than any earlier run's (start time in
    /// ms does), so peers tell a restart from a stale message.
    pub incarnation: Incarnation,
    /// How often the node announces itself.
    pub heartbeat: Duration,
    /// How long a node may stay silent before it counts as dead.
    pub dead_after: Duration,
    /// How much longer than `dead_after` the others may stay silent after
    /// an outage of this node's own transport: each node reconnects on its
    /// own backoff, so some are back later than others.
    pub recovery_grace: Duration,
    /// The links' ring bounds and timers.
    pub link: LinkConfig,
    /// Bytes of payloads that may wait for the bus task, per destination,
    /// beyond which [`BusHandle::send`] refuses (paced sends are bounded by
    /// their senders instead); one payload is always taken.
    pub send_queue_bytes: usize,
}

impl BusConfig {
    /// The defaults of `cluster.md`: heartbeat 1 s, dead after 3 s, a ring
    /// of 4 MiB / 2 s, 4096 queued payloads per destination; a recovery
    /// grace of 2 s, what a node on the Redis transport's defaults may lag
    /// another by when both reconnect (its backoff grows to 1 s, and one
    /// attempt may take its 1 s call timeout).
    pub fn new(node: NodeId, incarnation: Incarnation) -> Self {
        Self {
            node,
            incarnation,
            heartbeat: Duration::from_secs(1),
            dead_after: Duration::from_secs(3),
            recovery_grace: Duration::from_secs(2),
            link: LinkConfig::default(),
            send_queue_bytes: 16 * 1024 * 1024,
        }
    }
}

/// What the bus tells its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusEvent {
    /// A payload from `from`, in the order `from` sent it, once.
    Message {
        /// The sending node.
        from: NodeId,
        /// What it sent.
        payload: Bytes,
    },
    /// A node is alive (first heard, or restarted).
    NodeUp(NodeId),
    /// A node is gone (silent for `dead_after`, said bye, or restarted).
    NodeDown(NodeId),
    /// The link with `peer` started over: payloads in flight either way
    /// may be lost, so what depended on them must be bounced.
    LinkReset {
        /// The other end of the link.
        peer: NodeId,
    },
    /// Whether the node can take part: subscribed, and its own heartbeat
    /// comes back.
    Ready(bool),
}

/// Why [`BusHandle::send`] refused a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The destination is not a live node (or is this node).
    #[error("cluster node {0} is not alive")]
    NotAlive(NodeId),
    /// Too many payloads for this destination wait for the bus task.
    #[error("send queue to cluster node {0} is full")]
    QueueFull(NodeId),
    /// The bus has stopped.
    #[error("cluster bus stopped")]
    Stopped,
}

/// What a paced sender is told when the bus task took one of its
/// payloads (see [`BusHandle::send_paced`]).
pub trait Taken: Send + Sync + 'static {
    /// One payload of this sender left the queue for its link.
    fn taken(&self);
}

/// Counts since the bus started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BusCounters {
    /// Payloads sent to other nodes.
    pub messages_sent: u64,
    /// Payloads delivered from other nodes.
    pub messages_received: u64,
    /// Data envelopes published again.
    pub retransmits: u64,
    /// Links that started over (either side).
    pub link_resets: u64,
    /// Nodes seen coming up.
    pub nodes_up: u64,
}

#[derive(Debug, Default)]
struct Counters {
    messages_sent: AtomicU64,
    messages_received: AtomicU64,
    retransmits: AtomicU64,
    link_resets: AtomicU64,
    nodes_up: AtomicU64,
}

/// The unpaced payloads for one live peer that wait for the bus task
/// (paced ones are bounded by their senders, and not counted here).
#[derive(Debug, Default)]
struct Queue {
    /// Their bytes.
    waiting: AtomicUsize,
    /// Set when a payload was refused for a full queue, until the bus task
    /// started the link over: everything for the peer is refused meanwhile,
    /// so that nothing sent after a lost payload arrives as if none were.
    starting_over: AtomicBool,
}

/// See [`Command::Send`].
enum Counted {
    /// The peer's queue, and the payload's bytes in it.
    Queue(Arc<Queue>, usize),
    Paced(Arc<dyn Taken>),
}

/// What the handle and the bus task share.
#[derive(Debug)]
struct Shared {
    node: NodeId,
    send_queue_bytes: usize,
    /// Live peers, each with its queue of unpaced payloads waiting for the
    /// bus task.
    alive: RwLock<HashMap<NodeId, Arc<Queue>>>,
    ready: AtomicBool,
    counters: Counters,
}

enum Command {
    Send {
        to: NodeId,
        payload: Bytes,
        /// What the payload counts in: an unpaced one the peer's queue,
        /// a paced one its sender's pace.
        counted: Counted,
    },
    /// The queue to this peer overflowed: start its link over.
    StartOver(NodeId, Arc<Queue>),
    Shutdown(oneshot::Sender<()>),
}

/// The way to start a node's bus (see the module doc).
pub struct Bus;

impl Bus {
    /// Starts the bus on the current tokio runtime; events come out of the
    /// returned receiver (read it: a full event queue holds the bus back).
    pub fn start<T: Transport>(
        transport: T,
        config: BusConfig,
    ) -> (BusHandle, mpsc::Receiver<BusEvent>) {
        let shared = Arc::new(Shared {
            node: config.node,
            send_queue_bytes: config.send_queue_bytes,
            alive: RwLock::new(HashMap::new()),
            ready: AtomicBool::new(false),
            counters: Counters::default(),
        });
        let (commands, command_receiver) = mpsc::unbounded_channel();
        let (events, event_receiver) = mpsc::channel(4096);
        actor::spawn(
            Arc::new(transport),
            config,
            Arc::clone(&shared),
            command_receiver,
            events,
        );
        (BusHandle { shared, commands }, event_receiver)
    }
}

/// A clonable handle on a running bus.
#[derive(Clone)]
pub struct BusHandle {
    shared: Arc<Shared>,
    commands: mpsc::UnboundedSender<Command>,
}

impl std::fmt::Debug for BusHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BusHandle")
            .field("node", &self.shared.node)
            .finish_non_exhaustive()
    }
}

impl BusHandle {
    /// Queues `payload` for `to` without waiting. When it would take the
    /// bytes waiting for the bus task for `to` over
    /// [`BusConfig::send_queue_bytes`], it is refused, and so is everything
    /// for `to` until the bus task has started the link over
    /// ([`BusEvent::LinkReset`] here, and on `to`): a stream with a hole in
    /// it must not go on as if whole.
    pub fn send(&self, to: NodeId, payload: Bytes) -> Result<(), SendError> {
        let queue = self.queue_of(to)?;
        let bytes = payload.len();
        let before = queue.waiting.fetch_add(bytes, Ordering::AcqRel);
        if before > 0 && before + bytes > self.shared.send_queue_bytes {
            queue.waiting.fetch_sub(bytes, Ordering::AcqRel);
            if !queue.starting_over.swap(true, Ordering::AcqRel) {
                tracing::warn!(
                    node = to,
                    waiting_bytes = before,
                    "cluster send queue full: the link starts over"
                );
                let _ = self.commands.send(Command::StartOver(to, queue));
            }
            return Err(SendError::QueueFull(to));
        }
        self.command(to, payload, Counted::Queue(queue, bytes))
    }

    /// Queues `payload` for `to`, and calls `taken` once the bus task has
    /// taken it off the queue (not called when this returns an error).
    /// Not refused for a full queue: the sender paces itself on `taken`
    /// (a session waits for it before reading more of its client), which
    /// bounds what it can have queued. Refused while the link starts over.
    pub fn send_paced(
        &self,
        to: NodeId,
        payload: Bytes,
        taken: Arc<dyn Taken>,
    ) -> Result<(), SendError> {
        self.queue_of(to)?;
        self.command(to, payload, Counted::Paced(taken))
    }

    /// The queue of a live peer that is not starting over.
    fn queue_of(&self, to: NodeId) -> Result<Arc<Queue>, SendError> {
        let queue = {
            let alive = read(&self.shared.alive);
            alive.get(&to).cloned().ok_or(SendError::NotAlive(to))?
        };
        if queue.starting_over.load(Ordering::Acquire) {
            return Err(SendError::QueueFull(to));
        }
        Ok(queue)
    }

    fn command(&self, to: NodeId, payload: Bytes, counted: Counted) -> Result<(), SendError> {
        let command = Command::Send {
            to,
            payload,
            counted,
        };
        self.commands.send(command).map_err(|error| {
            if let Command::Send {
                counted: Counted::Queue(queue, bytes),
                ..
            } = error.0
            {
                queue.waiting.fetch_sub(bytes, Ordering::AcqRel);
            }
            SendError::Stopped
        })
    }

    /// This node.
    pub fn node(&self) -> NodeId {
        self.shared.node
    }

    /// The other live nodes, in increasing order.
    pub fn alive_nodes(&self) -> Vec<NodeId> {
        let mut nodes: Vec<NodeId> = read(&self.shared.alive).keys().copied().collect();
        nodes.sort_unstable();
        nodes
    }

    /// Whether the node is subscribed and hears its own heartbeat.
    pub fn is_ready(&self) -> bool {
        self.shared.ready.load(Ordering::Acquire)
    }

    /// The counts so far.
    pub fn counters(&self) -> BusCounters {
        let c = &self.shared.counters;
        BusCounters {
            messages_sent: c.messages_sent.load(Ordering::Relaxed),
            messages_received: c.messages_received.load(Ordering::Relaxed),
            retransmits: c.retransmits.load(Ordering::Relaxed),
            link_resets: c.link_resets.load(Ordering::Relaxed),
            nodes_up: c.nodes_up.load(Ordering::Relaxed),
        }
    }

    /// Says `Bye`, leaves the registry and stops the bus; returns once it
    /// has (at once if it already stopped).
    pub async fn shutdown(&self) {
        let (done, stopped) = oneshot::channel();
        if self.commands.send(Command::Shutdown(done)).is_ok() {
            let _ = stopped.await;
        }
    }
}

/// Writes the live-node map (single inserts and removals: a panic cannot
/// leave it half-changed, so a poisoned lock is still fine to use).
fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Reads a lock whose writer cannot leave it inconsistent (single inserts
/// and removals), so a poisoned lock is still fine to read.
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}
