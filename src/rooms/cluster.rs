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

use actix::prelude::*;
use bytes::Bytes;
use prost::Message as _;
use sigway_cluster::{Claim, GroupHash, TransportError};
use sigway_core::proto::cluster::room_message::Body;
use sigway_core::proto::cluster::{Attach, Deliver, Event, Leave, RoomMessage};
use tokio::sync::{mpsc, oneshot};

use super::local::LocalRooms;
use super::{InFlight, MemberId, NodeId, Portable, Reach, Refusal, RoomRef, Rooms, SinkError};

/// A future the directory answers with.
pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The other nodes, as the room layer uses them (the cluster bus).
pub(crate) trait NodeLink: Send + Sync + 'static {
    /// Queues `payload` on the ordered link to `to`; false when it cannot
    /// (the node is down, or the link is congested).
    fn send(&self, to: NodeId, payload: Bytes) -> bool;
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

/// What a portable room kind makes of a member that joins a room owned
/// elsewhere.
pub(crate) struct Exported {
    pub id: MemberId,
    /// What the owner needs to rebuild the member (the kind's encoding).
    pub info: Vec<u8>,
    /// The end that stays here and takes what the room sends.
    pub away: Box<dyn Away>,
    /// The member's credit, given back once an event is on the link.
    pub credit: Option<Arc<InFlight>>,
}

/// The local end of a member whose room runs on another node.
pub(crate) trait Away: Send {
    /// Something the room sent the member, in the kind's encoding.
    fn deliver(&self, outbound: &[u8]);
    /// The room's owner is gone: the member must join again.
    fn lost(&self);
    /// The end itself, for the kind to take back when this node adopts the
    /// member's room.
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send>;
}

/// How the owner reaches a member connected to another node.
#[derive(Clone)]
pub(crate) struct RemoteSink {
    link: Arc<dyn NodeLink>,
    to: MemberId,
}

impl std::fmt::Debug for RemoteSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteSink").field("to", &self.to).finish()
    }
}

impl RemoteSink {
    /// Sends `outbound` to the member's node.
    pub(crate) fn deliver(&self, outbound: Bytes) -> Result<(), SinkError> {
        let message = Body::Deliver(Deliver {
            member: self.to.local,
            outbound,
        });
        if self.link.send(self.to.node, encode(message)) {
            Ok(())
        } else {
            Err(SinkError::Closed)
        }
    }
}

/// A room owned by another node, as one member of this node sees it.
/// Its owner changes when the room is adopted (possibly by this node).
pub(crate) struct RemoteRoom {
    cluster: Arc<Cluster>,
    owner: Arc<AtomicU32>,
    member: MemberId,
    credit: Option<Arc<InFlight>>,
    left: AtomicBool,
}

impl RemoteRoom {
    /// Forwards a frame of the member. Its credit comes back at once, the
    /// link being bounded itself (an adopted room here gives it back as a
    /// local room does).
    pub(super) fn event(&self, frame: Bytes) {
        let owner = self.owner.load(Ordering::Acquire);
        if owner == self.cluster.me {
            self.cluster
                .visit(self.member, |visitor| visitor.event(frame));
            return;
        }
        let sent = self.cluster.send(
            owner,
            Body::Event(Event {
                member: self.member.local,
                frame,
            }),
        );
        if let Some(credit) = &self.credit {
            credit.handled();
        }
        if !sent {
            tracing::warn!(member = %self.member, owner, "cluster link lost: member must join again");
            self.cluster.lose_away(self.member.local);
        }
    }

    /// The member's session ended.
    pub(super) fn leave(&self) {
        if self.left.swap(true, Ordering::AcqRel) {
            return;
        }
        let owner = self.owner.load(Ordering::Acquire);
        if owner == self.cluster.me {
            let visitor = self.cluster.lock().visitors.remove(&self.member);
            if let Some(visitor) = visitor {
                visitor.leave();
            }
        } else {
            self.cluster.send(
                owner,
                Body::Leave(Leave {
                    member: self.member.local,
                }),
            );
        }
        self.cluster.forget_away(self.member.local);
    }
}

impl Drop for RemoteRoom {
    fn drop(&mut self) {
        self.leave();
    }
}

/// A member of another node in a room owned here.
trait Visitor: Send {
    fn event(&self, frame: Bytes);
    fn leave(&self);
}

struct Visiting<R: Portable> {
    room: Addr<R>,
    id: MemberId,
}

impl<R: Portable> Visitor for Visiting<R> {
    fn event(&self, frame: Bytes) {
        R::forward(&self.room, self.id, frame);
    }

    fn leave(&self) {
        R::leave(&self.room, self.id);
    }
}

/// A portable kind, type-erased for the dispatcher.
struct Kind {
    name: &'static str,
    attach: AttachFn,
    refused: fn(Refusal) -> Bytes,
    restore: RestoreFn,
}

/// Attaches a member of another node to a room here.
type AttachFn =
    fn(&Rooms, Arc<str>, MemberId, &[u8], RemoteSink) -> Result<Box<dyn Visitor>, Refusal>;

/// Rebuilds and starts a room from a snapshot; its members as visitors.
type RestoreFn = fn(
    &Rooms,
    Arc<str>,
    &[u8],
    &mut dyn FnMut(MemberId) -> Reach,
) -> Option<Vec<(MemberId, Box<dyn Visitor>)>>;

fn restore_room<R: Portable>(
    rooms: &Rooms,
    key: Arc<str>,
    snapshot: &[u8],
    reach: &mut dyn FnMut(MemberId) -> Reach,
) -> Option<Vec<(MemberId, Box<dyn Visitor>)>> {
    let (room, members) = R::restore(key.clone(), rooms.home(), snapshot, reach)?;
    let addr = match rooms.adopt(key, room, members.len()) {
        Ok(addr) => addr,
        Err(refusal) => {
            tracing::warn!(kind = R::KIND, %refusal, "adopted room could not start");
            return None;
        }
    };
    Some(
        members
            .into_iter()
            .map(|id| {
                let visitor: Box<dyn Visitor> = Box::new(Visiting::<R> {
                    room: addr.clone(),
                    id,
                });
                (id, visitor)
            })
            .collect(),
    )
}

fn attach_visitor<R: Portable>(
    rooms: &Rooms,
    key: Arc<str>,
    id: MemberId,
    info: &[u8],
    sink: RemoteSink,
) -> Result<Box<dyn Visitor>, Refusal> {
    match rooms.join_here::<R>(key, R::import(id, info, sink))? {
        RoomRef::Local(room) => Ok(Box::new(Visiting::<R> { room, id })),
        RoomRef::Remote(_) => Err(Refusal::Internal),
    }
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
    release_after: Duration,
    link: OnceLock<Arc<dyn NodeLink>>,
    directory: OnceLock<Arc<dyn Directory>>,
    kinds: RwLock<HashMap<&'static str, Arc<Kind>>>,
    state: Mutex<State>,
    snapshots: OnceLock<mpsc::UnboundedSender<SnapshotJob>>,
    /// Set once this node leaves the cluster: rooms stop writing snapshots.
    leaving: AtomicBool,
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
    /// Answered once every write asked before is done.
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
    pub(crate) fn new(me: NodeId, release_after: Duration) -> Arc<Self> {
        Arc::new(Self {
            me,
            release_after,
            link: OnceLock::new(),
            directory: OnceLock::new(),
            kinds: RwLock::default(),
            state: Mutex::default(),
            snapshots: OnceLock::new(),
            leaving: AtomicBool::new(false),
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
        actix::spawn(write_snapshots(start.directory.clone(), queue));
        let _ = self.link.set(start.link);
        let _ = self.directory.set(start.directory);
    }

    /// This node leaves the cluster (it stops): from now on nothing more
    /// goes to other nodes and no snapshot is taken, so that the snapshots
    /// already asked for match what the other nodes were told. The node
    /// that adopts a room then makes this node's members leave it.
    pub(crate) fn leave(&self) {
        self.leaving.store(true, Ordering::Release);
        if let Some(link) = self.link.get() {
            link.close();
        }
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
        };
        self.kinds
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(R::KIND, Arc::new(kind));
    }

    pub(crate) fn node(&self) -> NodeId {
        self.me
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

    fn parts(&self) -> Result<Parts<'_>, Refusal> {
        match (self.link.get(), self.directory.get()) {
            (Some(link), Some(directory)) if link.is_ready() => Ok((link, directory)),
            _ => Err(Refusal::ClusterUnavailable),
        }
    }

    /// See [`Rooms::join`](super::Rooms::join).
    pub(super) async fn join<R: Portable>(
        self: &Arc<Self>,
        rooms: &Rooms,
        key: Arc<str>,
        member: R::Member,
    ) -> Result<RoomRef<R>, Refusal> {
        let (link, directory) = self.parts()?;
        let room: RoomName = (R::KIND, key.clone());
        let owner = self.locate(rooms, &room, true, link, directory).await?;
        if owner == self.me {
            // Under the state lock, so that giving the claim up (which
            // checks for an open room under it) cannot pass in between.
            let state = self.lock();
            return match state.owners.get(&room) {
                Some(entry) if entry.node == self.me => rooms.join_here::<R>(key, member),
                // Lost between the two steps (the owner changed hands).
                _ => Err(Refusal::RoomMoved),
            };
        }
        let Exported {
            id,
            info,
            away,
            credit,
        } = R::export(member);
        let info = Bytes::from(info);
        let shared_owner = Arc::new(AtomicU32::new(owner));
        self.lock().away.insert(
            id.local,
            AwayEntry {
                owner: shared_owner.clone(),
                room: room.clone(),
                away,
                info: info.clone(),
            },
        );
        let remote = RemoteRoom {
            cluster: self.clone(),
            owner: shared_owner,
            member: id,
            credit,
            left: AtomicBool::new(false),
        };
        let attach = Body::Attach(Attach {
            kind: R::KIND.into(),
            key: key.to_string(),
            member: id.local,
            info,
        });
        if !self.send(owner, attach) {
            remote.left.store(true, Ordering::Release);
            self.forget_away(id.local);
            return Err(Refusal::ClusterUnavailable);
        }
        Ok(RoomRef::Remote(Arc::new(remote)))
    }

    /// The owner of `room`, asking the directory when this node does not
    /// know it (waiting first if this node is giving its claim up). With
    /// `away`, counts one more session of this node there when the owner
    /// is another node.
    async fn locate(
        &self,
        rooms: &Rooms,
        room: &RoomName,
        away: bool,
        link: &Arc<dyn NodeLink>,
        directory: &Arc<dyn Directory>,
    ) -> Result<NodeId, Refusal> {
        let deadline = tokio::time::Instant::now() + RELEASE_WAIT;
        loop {
            match self.known_owner(room, away) {
                Known::Owner(node) => return Ok(node),
                Known::Releasing if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Known::Releasing => return Err(Refusal::ClusterUnavailable),
                Known::Unknown => break,
            }
        }
        let claim = self.claim(room, Some(rooms), link, directory).await?;
        let mut state = self.lock();
        let entry = state.owners.entry(room.clone()).or_insert(Owner {
            node: claim.owner,
            epoch: claim.epoch,
            away_users: 0,
            releasing: false,
        });
        if away && entry.node != self.me {
            entry.away_users += 1;
        }
        Ok(entry.node)
    }

    fn known_owner(&self, room: &RoomName, away: bool) -> Known {
        let mut state = self.lock();
        match state.owners.get_mut(room) {
            None => Known::Unknown,
            Some(entry) if entry.releasing => Known::Releasing,
            Some(entry) => {
                if away && entry.node != self.me {
                    entry.away_users += 1;
                }
                Known::Owner(entry.node)
            }
        }
    }

    /// Claims `room`, taking it over when the directory names a node that
    /// is gone (whose state went with it).
    async fn claim(
        &self,
        room: &RoomName,
        rooms: Option<&Rooms>,
        link: &Arc<dyn NodeLink>,
        directory: &Arc<dyn Directory>,
    ) -> Result<Claim, Refusal> {
        let group = group_of(room);
        let unavailable = |error: TransportError| {
            tracing::warn!(%error, kind = room.0, "cluster directory unreachable");
            Refusal::ClusterUnavailable
        };
        let claim = directory.claim(group, None).await.map_err(unavailable)?;
        let gone = self.lock().gone.contains(&claim.owner);
        if claim.owner == self.me || (!gone && link.may_be_alive(claim.owner)) {
            return Ok(claim);
        }
        tracing::info!(
            kind = room.0,
            dead = claim.owner,
            epoch = claim.epoch,
            "taking over a room of a dead node"
        );
        let dead = claim.owner;
        let taken = directory
            .claim(group, Some((dead, claim.epoch)))
            .await
            .map_err(unavailable)?;
        if taken.owner == self.me
            && let (Some(snapshot), Some(rooms)) = (&taken.snapshot, rooms)
        {
            self.restore(rooms, room, taken.epoch, snapshot, dead);
        }
        Ok(taken)
    }

    /// A session of this node left a room owned elsewhere.
    fn forget_away(&self, member: u64) {
        let mut state = self.lock();
        let Some(entry) = state.away.remove(&member) else {
            return;
        };
        if let Some(owner) = state.owners.get_mut(&entry.room)
            && owner.node == entry.owner.load(Ordering::Acquire)
            && owner.node != self.me
        {
            owner.away_users = owner.away_users.saturating_sub(1);
            if owner.away_users == 0 {
                state.owners.remove(&entry.room);
            }
        }
    }

    /// The link to a member's room broke: the member must join again.
    fn lose_away(&self, member: u64) {
        let entry = self.lock().away.remove(&member);
        if let Some(entry) = entry {
            entry.away.lost();
            self.lock().owners.remove(&entry.room);
        }
    }

    /// A room owned here emptied and stopped: give the claim up after a
    /// grace period, unless the room opened again meanwhile.
    pub(super) fn room_released(
        self: &Arc<Self>,
        kind: &'static str,
        key: Arc<str>,
        local: Arc<LocalRooms>,
    ) {
        let this = self.clone();
        actix::spawn(async move {
            tokio::time::sleep(this.release_after).await;
            let room: RoomName = (kind, key);
            let epoch = {
                let mut state = this.lock();
                if local.contains(kind, &room.1) {
                    return;
                }
                match state.owners.get_mut(&room) {
                    Some(entry) if entry.node == this.me && !entry.releasing => {
                        entry.releasing = true;
                        entry.epoch
                    }
                    _ => return,
                }
            };
            if let Some(directory) = this.directory.get()
                && let Err(error) = directory.release(group_of(&room), epoch).await
            {
                tracing::warn!(%error, kind, "could not give a room's claim up (it stays claimed until adopted)");
            }
            let mut state = this.lock();
            if state.owners.get(&room).is_some_and(|entry| entry.releasing) {
                state.owners.remove(&room);
            }
        });
    }

    /// Handles one message another node's room layer sent this one, in the
    /// order that node sent them.
    pub(crate) async fn received(&self, rooms: &Rooms, from: NodeId, payload: Bytes) {
        let body = match RoomMessage::decode(payload) {
            Ok(RoomMessage { body: Some(body) }) => body,
            Ok(RoomMessage { body: None }) | Err(_) => {
                tracing::warn!(from, "undecodable cluster room message dropped");
                return;
            }
        };
        match body {
            Body::Attach(attach) => self.attach(rooms, from, attach).await,
            Body::Event(event) => {
                let id = MemberId {
                    node: from,
                    local: event.member,
                };
                if let Some(visitor) = self.lock().visitors.get(&id) {
                    visitor.event(event.frame);
                }
            }
            Body::Leave(leave) => {
                let id = MemberId {
                    node: from,
                    local: leave.member,
                };
                let visitor = self.lock().visitors.remove(&id);
                if let Some(visitor) = visitor {
                    visitor.leave();
                }
            }
            Body::Deliver(deliver) => {
                if let Some(entry) = self.lock().away.get(&deliver.member) {
                    entry.away.deliver(&deliver.outbound);
                }
            }
        }
    }

    async fn attach(&self, rooms: &Rooms, from: NodeId, attach: Attach) {
        let id = MemberId {
            node: from,
            local: attach.member,
        };
        let kind = self
            .kinds
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(attach.kind.as_str())
            .cloned();
        let (Some(kind), Ok((link, directory))) = (kind, self.parts()) else {
            tracing::warn!(
                from,
                kind = attach.kind,
                "attach for a kind this node does not serve, or while not ready"
            );
            return;
        };
        let room: RoomName = (kind.name, Arc::from(attach.key.as_str()));
        let sink = RemoteSink {
            link: link.clone(),
            to: id,
        };
        let refuse = |refusal: Refusal| {
            let _ = sink.deliver((kind.refused)(refusal));
        };
        // The sender believed this node owns the room; it normally still
        // does. If it gave its claim up meanwhile, it claims it again.
        if self.lock().visitors.contains_key(&id) {
            // Attached again after an adoption, and already in the
            // snapshot this node rebuilt the room from.
            return;
        }
        let owner = match self.locate(rooms, &room, false, link, directory).await {
            Ok(owner) => owner,
            Err(refusal) => return refuse(refusal),
        };
        if owner != self.me {
            return refuse(Refusal::RoomMoved);
        }
        let mut state = self.lock();
        match (kind.attach)(rooms, room.1.clone(), id, &attach.info, sink.clone()) {
            Ok(visitor) => {
                state.visitors.insert(id, visitor);
            }
            Err(refusal) => {
                drop(state);
                refuse(refusal);
            }
        }
    }

    /// `node` is gone (dead, or it said goodbye): its members leave the
    /// rooms owned here as if their sockets had dropped, and the rooms it
    /// owned where this node has members are adopted (see the module doc).
    pub(crate) async fn node_gone(&self, rooms: &Rooms, node: NodeId) {
        let orphans = self.drop_node(node);
        for (room, epoch) in orphans {
            self.adopt_or_follow(rooms, room, node, epoch).await;
        }
    }

    /// The link with `node` reset: what travelled on it may be lost, so its
    /// members leave the rooms here and this node's members of its rooms
    /// join again (the node itself lives on and keeps its rooms).
    pub(crate) fn link_reset(&self, node: NodeId) {
        for (room, _) in self.drop_node(node) {
            self.bounce(&room);
        }
    }

    /// Makes `node`'s members leave the rooms owned here; returns the rooms
    /// it owned where this node has members, with the epoch of its claim.
    fn drop_node(&self, node: NodeId) -> Vec<(RoomName, u64)> {
        let (visitors, orphans) = {
            let mut state = self.lock();
            state.gone.insert(node);
            let gone: Vec<MemberId> = state
                .visitors
                .keys()
                .filter(|id| id.node == node)
                .copied()
                .collect();
            let visitors: Vec<_> = gone
                .iter()
                .filter_map(|id| state.visitors.remove(id))
                .collect();
            let orphans: Vec<(RoomName, u64)> = state
                .owners
                .iter()
                .filter(|(_, owner)| owner.node == node)
                .map(|(room, owner)| (room.clone(), owner.epoch))
                .collect();
            (visitors, orphans)
        };
        if !visitors.is_empty() || !orphans.is_empty() {
            tracing::info!(
                node,
                members_left = visitors.len(),
                rooms_orphaned = orphans.len(),
                "cluster node gone"
            );
        }
        for visitor in visitors {
            visitor.leave();
        }
        orphans
    }

    /// This node's members of `room` are told it moved (1012).
    fn bounce(&self, room: &RoomName) {
        let members = {
            let mut state = self.lock();
            state.owners.remove(room);
            state.take_away(room)
        };
        for entry in members.into_values() {
            entry.away.lost();
        }
    }

    /// The owner of `room` (at `epoch`) is gone: claim it; the winner
    /// rebuilds it from its snapshot, the others follow the winner.
    async fn adopt_or_follow(&self, rooms: &Rooms, room: RoomName, dead: NodeId, epoch: u64) {
        let Ok((_, directory)) = self.parts() else {
            return self.bounce(&room);
        };
        let directory = directory.clone();
        let group = group_of(&room);
        let mut claim = directory.claim(group, Some((dead, epoch))).await;
        // The dead node claimed it again meanwhile (an epoch this node had
        // not seen): take it over at that epoch.
        if let Ok(stale) = &claim
            && stale.owner == dead
            && stale.epoch != epoch
        {
            claim = directory.claim(group, Some((dead, stale.epoch))).await;
        }
        let claim = match claim {
            Ok(claim) => claim,
            Err(error) => {
                tracing::warn!(%error, kind = room.0, "cannot adopt a room: directory unreachable");
                return self.bounce(&room);
            }
        };
        if claim.owner == self.me {
            let restored = match &claim.snapshot {
                Some(snapshot) => self.restore(rooms, &room, claim.epoch, snapshot, dead),
                None => false,
            };
            if !restored {
                self.bounce(&room);
                let _ = directory.release(group_of(&room), claim.epoch).await;
            }
            return;
        }
        let gone = self.lock().gone.contains(&claim.owner);
        if gone {
            return self.bounce(&room);
        }
        self.follow(&room, claim.owner, claim.epoch);
    }

    /// Another node adopted `room`: this node's members attach there again
    /// (the adopter knows them from the snapshot, or takes them as new).
    fn follow(&self, room: &RoomName, owner: NodeId, epoch: u64) {
        let reattach: Vec<(u64, Bytes)> = {
            let mut state = self.lock();
            if let Some(entry) = state.owners.get_mut(room) {
                entry.node = owner;
                entry.epoch = epoch;
            }
            state
                .away
                .iter()
                .filter(|(_, entry)| &entry.room == room)
                .map(|(member, entry)| {
                    entry.owner.store(owner, Ordering::Release);
                    (*member, entry.info.clone())
                })
                .collect()
        };
        tracing::info!(
            kind = room.0,
            owner,
            members = reattach.len(),
            "following an adopted room"
        );
        for (member, info) in reattach {
            self.send(
                owner,
                Body::Attach(Attach {
                    kind: room.0.into(),
                    key: room.1.to_string(),
                    member,
                    info,
                }),
            );
        }
    }

    /// Rebuilds `room` here from `snapshot` (this node won its claim at
    /// `epoch`; `dead` owned it). Returns whether it runs.
    fn restore(
        &self,
        rooms: &Rooms,
        room: &RoomName,
        epoch: u64,
        snapshot: &[u8],
        dead: NodeId,
    ) -> bool {
        let kind = self
            .kinds
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(room.0)
            .cloned();
        let (Some(kind), Some(link)) = (kind, self.link.get()) else {
            return false;
        };
        let (mut mine, gone_nodes) = {
            let mut state = self.lock();
            (state.take_away(room), state.gone.clone())
        };
        let mut leaving = Vec::new();
        let mut adopted_here = Vec::new();
        let mut reach = |id: MemberId| {
            if id.node == self.me {
                match mine.remove(&id.local) {
                    Some(entry) => {
                        adopted_here.push(entry.owner);
                        Reach::Here(entry.away)
                    }
                    None => {
                        leaving.push(id);
                        Reach::Gone
                    }
                }
            } else if id.node == dead || gone_nodes.contains(&id.node) {
                leaving.push(id);
                Reach::Gone
            } else {
                Reach::There(RemoteSink {
                    link: link.clone(),
                    to: id,
                })
            }
        };
        let restored = (kind.restore)(rooms, room.1.clone(), snapshot, &mut reach);
        let Some(visitors) = restored else {
            // Not usable: the members kept here go back, to be bounced.
            let mut state = self.lock();
            for (id, entry) in mine {
                state.away.insert(id, entry);
            }
            return false;
        };
        {
            let mut state = self.lock();
            state.owners.insert(
                room.clone(),
                Owner {
                    node: self.me,
                    epoch,
                    away_users: 0,
                    releasing: false,
                },
            );
            for (id, visitor) in visitors {
                state.visitors.insert(id, visitor);
            }
        }
        // This node's members now reach the room here.
        for owner in adopted_here {
            owner.store(self.me, Ordering::Release);
        }
        tracing::info!(
            kind = room.0,
            dead,
            epoch,
            leaving = leaving.len(),
            "adopted a room"
        );
        for id in leaving {
            let visitor = self.lock().visitors.remove(&id);
            if let Some(visitor) = visitor {
                visitor.leave();
            }
        }
        // Members of this node that joined after the last snapshot: the
        // room does not know them, so they join again.
        for (_, entry) in mine {
            entry.away.lost();
        }
        true
    }
}

/// Writes the snapshots asked for, in order, coalescing those of one room
/// that queued up meanwhile (only the last counts).
async fn write_snapshots(
    directory: Arc<dyn Directory>,
    mut jobs: mpsc::UnboundedReceiver<SnapshotJob>,
) {
    let mut pending: HashMap<RoomName, (u64, Bytes)> = HashMap::new();
    let mut order: VecDeque<RoomName> = VecDeque::new();
    let mut flushes = Vec::new();
    while let Some(job) = jobs.recv().await {
        let mut next = Some(job);
        while let Some(job) = next {
            match job {
                SnapshotJob::Write {
                    room,
                    epoch,
                    snapshot,
                } => {
                    if pending.insert(room.clone(), (epoch, snapshot)).is_none() {
                        order.push_back(room);
                    }
                }
                SnapshotJob::Flush(done) => flushes.push(done),
            }
            next = jobs.try_recv().ok();
        }
        while let Some(room) = order.pop_front() {
            let Some((epoch, snapshot)) = pending.remove(&room) else {
                continue;
            };
            match directory
                .write_snapshot(group_of(&room), epoch, snapshot)
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    tracing::debug!(
                        kind = room.0,
                        epoch,
                        "snapshot not written: the room changed hands"
                    );
                }
                Err(error) => tracing::warn!(%error, kind = room.0, "snapshot not written"),
            }
        }
        for done in flushes.drain(..) {
            let _ = done.send(());
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
