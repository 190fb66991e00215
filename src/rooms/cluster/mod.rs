//! Cluster mode of the room layer: every portable room runs on one owner
//! node of the deployment, whichever nodes its members are connected to
//! (`../shared/cluster.md`, option A).
//!
//! A session joins through [`Rooms::join`](super::Rooms::join) as on a
//! node alone. The first join of a key on a node asks the directory who
//! owns it (claiming it when nobody does, or when its owner is known dead)
//! and remembers the answer while the node has sessions there. On the owner
//! the join is local; elsewhere the member is [`Exported`]: its attach goes
//! to the owner over the bus's ordered link, followed by the frames its
//! client sends, and a [`RoomRef::Remote`] stands for the room. The owner
//! rebuilds the member with a [`RemoteSink`] and runs the unchanged rules;
//! what the room pushes to that sink travels back and is handed to the
//! member's [`Away`] end, which pushes it to the session's own sink. Since
//! every message of one member takes one ordered link, the room sees them
//! in the order the client sent them.
//!
//! An owner writes a snapshot of a room's state after each change of its
//! membership (coalesced, in order, fenced by its claim's epoch). When a
//! node is gone (dead, or said goodbye), the owners make its members leave,
//! as if their sockets had dropped, and each room it owned is adopted: the
//! first node with members there to claim it (epoch + 1) rebuilds it from
//! the snapshot with its order, bindings and ids, then makes the gone
//! node's members leave; the other nodes follow the new owner and attach
//! their members again (already known from the snapshot, or new). Without a
//! usable snapshot the room's members are told it moved (1012) and join
//! again. A link that reset bounces the same way. An owner gives its claim
//! up a little after its room emptied, so a member on its way still finds
//! it.
//!
//! The bus and the directory are reached through two small traits,
//! [`NodeLink`] and [`Directory`], implemented over `sigway_cluster` by
//! the composition root.

use std::any::Any;
use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};
use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;
use sigway_cluster::{Claim, GroupHash, TransportError};
use sigway_core::proto::cluster::room_message::Body;
use sigway_core::proto::cluster::{Attach, Deliver, Event, Leave, RoomMessage};
use tokio::sync::{mpsc, oneshot};

use super::local::LocalRooms;
use super::{
    InFlight, Inbound, LocalRoom, MemberId, NodeId, Portable, Reach, Refusal, RoomRef, Rooms,
    SaveAgain, SinkError,
};

mod adoption;
mod dispatch;
mod membership;
mod remote;
mod snapshots;

pub(crate) use remote::{Away, Exported, RemoteRoom, RemoteSink};
use remote::{Kind, Visitor, attach_visitor, restore_room, save_room_again};
use snapshots::write_snapshots;

/// A future the directory answers with.
pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The other nodes, as the room layer uses them (the cluster bus).
pub(crate) trait NodeLink: Send + Sync + 'static {
    /// Queues `payload` on the ordered link to `to`; false when it cannot
    /// (the node is down, or the link is congested).
    fn send(&self, to: NodeId, payload: Bytes) -> bool;
    /// Queues a member's `payload` on the ordered link to `to`, giving one
    /// unit of `credit` back once the link took it (the member reads no
    /// more of its client meanwhile); false when it cannot (the node is
    /// down), and the credit is then the caller's to give back.
    fn send_paced(&self, to: NodeId, payload: Bytes, credit: Arc<InFlight>) -> bool;
    /// Whether `node` may be alive: heard lately, or not yet known for
    /// long enough to call it dead.
    fn may_be_alive(&self, node: NodeId) -> bool;
    /// Whether this node reaches the others.
    fn is_ready(&self) -> bool;
    /// This node is leaving: nothing more is sent from now on.
    fn close(&self);
}

/// The room directory, as the room layer uses it.
pub(crate) trait Directory: Send + Sync + 'static {
    /// Claims `group` for this node (see `sigway_cluster::Transport::claim`).
    fn claim(
        &self,
        group: GroupHash,
        expected: Option<(NodeId, u64)>,
    ) -> BoxFuture<Result<Claim, TransportError>>;
    /// Gives up this node's claim on `group` at `epoch`.
    fn release(&self, group: GroupHash, epoch: u64) -> BoxFuture<Result<bool, TransportError>>;
    /// Writes `group`'s snapshot while this node owns it at `epoch`.
    fn write_snapshot(
        &self,
        group: GroupHash,
        epoch: u64,
        snapshot: Bytes,
    ) -> BoxFuture<Result<bool, TransportError>>;
}

type RoomName = (&'static str, Arc<str>);

/// What this node knows of a room's owner.
struct Owner {
    node: NodeId,
    epoch: u64,
    /// Sessions of this node in the room (owned elsewhere).
    away_users: usize,
    /// This node is giving its claim up: joins wait until it is done.
    releasing: bool,
}

struct AwayEntry {
    /// Shared with the member's [`RemoteRoom`].
    owner: Arc<AtomicU32>,
    room: RoomName,
    away: Box<dyn Away>,
    /// What the member's attach carried, to attach it again elsewhere.
    info: Bytes,
}

impl State {
    /// Takes this node's members of `room` (owned elsewhere) out of the
    /// books.
    fn take_away(&mut self, room: &RoomName) -> HashMap<u64, AwayEntry> {
        let members: Vec<u64> = self
            .away
            .iter()
            .filter(|(_, entry)| &entry.room == room)
            .map(|(member, _)| *member)
            .collect();
        members
            .into_iter()
            .filter_map(|member| self.away.remove(&member).map(|entry| (member, entry)))
            .collect()
    }
}

#[derive(Default)]
struct State {
    /// Nodes seen going away (and not back since): a directory entry that
    /// names one is taken over at once.
    gone: HashSet<NodeId>,
    /// Members of other nodes in rooms adopted here, until their node
    /// attaches them again.
    unconfirmed: HashSet<MemberId>,
    owners: HashMap<RoomName, Owner>,
    away: HashMap<u64, AwayEntry>,
    visitors: HashMap<MemberId, Box<dyn Visitor>>,
}

/// The bus and the directory, once connected.
type Parts<'a> = (&'a Arc<dyn NodeLink>, &'a Arc<dyn Directory>);

/// How long a join waits for this node to finish giving up a claim.
const RELEASE_WAIT: Duration = Duration::from_secs(2);

/// One node's part of the cluster's room layer.
pub(crate) struct Cluster {
    me: NodeId,
    /// This cluster itself, for the timers it starts.
    this: std::sync::Weak<Cluster>,
    release_after: Duration,
    confirm_after: Duration,
    link: OnceLock<Arc<dyn NodeLink>>,
    directory: OnceLock<Arc<dyn Directory>>,
    kinds: RwLock<HashMap<&'static str, Arc<Kind>>>,
    state: Mutex<State>,
    snapshots: OnceLock<mpsc::UnboundedSender<SnapshotJob>>,
    /// Set once this node leaves the cluster: rooms stop writing snapshots.
    leaving: AtomicBool,
    /// Held (read) by a room while it carries out one event, taken (write)
    /// to leave: an event's messages to other nodes and its snapshot are
    /// then both done or both dropped, never one without the other (an
    /// adopter would otherwise repeat a notice already delivered).
    steps: RwLock<()>,
    /// Set when the node gave up on the cluster at start
    /// (`cluster.require = false`): it serves as a node alone.
    alone: AtomicBool,
}

/// What the snapshot writer is asked.
enum SnapshotJob {
    Write {
        room: RoomName,
        epoch: u64,
        snapshot: Bytes,
    },
    /// Answered once every write asked before is done (failed ones retried).
    Flush(oneshot::Sender<()>),
}

/// What the composition root hands the cluster once the bus runs.
pub(crate) struct ClusterStart {
    pub link: Arc<dyn NodeLink>,
    pub directory: Arc<dyn Directory>,
}

fn encode(body: Body) -> Bytes {
    RoomMessage { body: Some(body) }.encode_to_vec().into()
}

fn group_of(room: &RoomName) -> GroupHash {
    sigway_core::cluster::hash::group_hash(room.0, &room.1)
}

impl Cluster {
    /// The room layer of node `me`; it serves nothing until [`Cluster::connected`].
    /// `confirm_after`: how long a node that adopted a room waits for the
    /// other nodes to attach its members again (a few dead timeouts: they
    /// learn of the death up to one later).
    pub(crate) fn new(me: NodeId, release_after: Duration, confirm_after: Duration) -> Arc<Self> {
        Arc::new_cyclic(|this| Self {
            me,
            this: this.clone(),
            release_after,
            confirm_after,
            link: OnceLock::new(),
            directory: OnceLock::new(),
            kinds: RwLock::default(),
            state: Mutex::default(),
            snapshots: OnceLock::new(),
            leaving: AtomicBool::new(false),
            steps: RwLock::new(()),
            alone: AtomicBool::new(false),
        })
    }

    /// Serve as a node alone from now on (only before the cluster was ever
    /// reached, so no room spans nodes yet).
    pub(crate) fn serve_alone(&self) {
        self.alone.store(true, Ordering::Release);
    }

    /// Whether the node gave up on the cluster and serves alone.
    pub(crate) fn is_alone(&self) -> bool {
        self.alone.load(Ordering::Acquire)
    }

    /// The bus runs: rooms may span nodes from now on.
    pub(crate) fn connected(&self, start: ClusterStart) {
        let (jobs, queue) = mpsc::unbounded_channel();
        let _ = self.snapshots.set(jobs);
        let this = self.this.clone();
        let still_owned: snapshots::StillOwned = Box::new(move |room, epoch| {
            this.upgrade().is_some_and(|cluster| {
                cluster.lock().owners.get(room).is_some_and(|owner| {
                    owner.node == cluster.me && owner.epoch == epoch && !owner.releasing
                })
            })
        });
        actix::spawn(write_snapshots(start.directory.clone(), still_owned, queue));
        let _ = self.link.set(start.link);
        let _ = self.directory.set(start.directory);
    }

    /// This node leaves the cluster (it stops): from now on nothing more
    /// goes to other nodes and no snapshot is taken, so that the snapshots
    /// already asked for match what the other nodes were told. The node
    /// that adopts a room then makes this node's members leave it.
    pub(crate) fn leave(&self) {
        // Waits for the events rooms are carrying out (see `steps`).
        let _no_step = self
            .steps
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.leaving.store(true, Ordering::Release);
        if let Some(link) = self.link.get() {
            link.close();
        }
    }

    /// Held by a room while it carries out one event that changes its state
    /// (see `steps`). Taken once per event: never while already held.
    pub(crate) fn step(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.steps
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits until every snapshot asked for so far is written (before this
    /// node says goodbye, so that its rooms are adopted as they are).
    pub(crate) async fn flush_snapshots(&self) {
        let (done, flushed) = oneshot::channel();
        if let Some(jobs) = self.snapshots.get()
            && jobs.send(SnapshotJob::Flush(done)).is_ok()
        {
            let _ = flushed.await;
        }
    }

    /// See [`RoomHome::save`](super::RoomHome::save).
    pub(super) fn save(
        &self,
        kind: &'static str,
        key: &Arc<str>,
        snapshot: impl FnOnce() -> Vec<u8>,
    ) {
        let Some(jobs) = self.snapshots.get() else {
            return;
        };
        if self.leaving.load(Ordering::Acquire) {
            return;
        }
        let room: RoomName = (kind, key.clone());
        let epoch = match self.lock().owners.get(&room) {
            Some(owner) if owner.node == self.me && !owner.releasing => owner.epoch,
            _ => return,
        };
        let _ = jobs.send(SnapshotJob::Write {
            room,
            epoch,
            snapshot: snapshot().into(),
        });
    }

    /// Runs `with` on the visitor `id` (a member of a room owned here).
    fn visit(&self, id: MemberId, with: impl FnOnce(&dyn Visitor)) {
        if let Some(visitor) = self.lock().visitors.get(&id) {
            with(visitor.as_ref());
        }
    }

    /// Lets rooms of kind `R` span nodes.
    pub(crate) fn serve<R: Portable>(&self) {
        let kind = Kind {
            name: R::KIND,
            attach: attach_visitor::<R>,
            refused: R::refused,
            restore: restore_room::<R>,
            save_again: save_room_again::<R>,
        };
        self.kinds
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(R::KIND, Arc::new(kind));
    }

    pub(crate) fn node(&self) -> NodeId {
        self.me
    }

    /// The node can reach the others again after an interruption: every
    /// room it owns writes its snapshot again, which also claims it again
    /// where Redis lost the directory (restarted without persistence; see
    /// `sigway_cluster::Transport::write_snapshot`). Where Redis kept it,
    /// this only rewrites the same state.
    pub(crate) fn reassert(&self, rooms: &Rooms) {
        let owned: Vec<RoomName> = self
            .lock()
            .owners
            .iter()
            .filter(|(_, owner)| owner.node == self.me && !owner.releasing)
            .map(|(room, _)| room.clone())
            .collect();
        if owned.is_empty() {
            return;
        }
        tracing::info!(
            rooms = owned.len(),
            "cluster: writing the owned rooms down again"
        );
        let kinds = self
            .kinds
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        for (kind, key) in owned {
            if let Some(kind) = kinds.get(kind) {
                (kind.save_again)(rooms, &key);
            }
        }
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.link.get().is_some_and(|link| link.is_ready())
    }

    /// Rooms owned here, members of other nodes in them, and sessions of
    /// this node in rooms owned elsewhere.
    pub(crate) fn census(&self) -> (usize, usize, usize) {
        let state = self.lock();
        let owned = state.owners.values().filter(|o| o.node == self.me).count();
        (owned, state.visitors.len(), state.away.len())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update is a single insert or remove: a panic cannot leave
        // the maps half-updated, so poisoning is ignored.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn send(&self, to: NodeId, body: Body) -> bool {
        self.link
            .get()
            .is_some_and(|link| link.send(to, encode(body)))
    }

    /// Sends a member's `body` to `to`, `credit` coming back once the link
    /// took it; when it cannot be sent, the credit comes back at once.
    fn send_paced(&self, to: NodeId, body: Body, credit: &Arc<InFlight>) -> bool {
        let sent = self
            .link
            .get()
            .is_some_and(|link| link.send_paced(to, encode(body), credit.clone()));
        if !sent {
            credit.handled();
        }
        sent
    }

    fn parts(&self) -> Result<Parts<'_>, Refusal> {
        match (self.link.get(), self.directory.get()) {
            (Some(link), Some(directory)) if link.is_ready() => Ok((link, directory)),
            _ => Err(Refusal::ClusterUnavailable),
        }
    }
}

impl Cluster {
    /// `node` is (back) up.
    pub(crate) fn node_up(&self, node: NodeId) {
        self.lock().gone.remove(&node);
    }
}

enum Known {
    Owner(NodeId),
    Releasing,
    Unknown,
}
