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
//! When a node is gone (dead, or its link reset), the owners make its
//! members leave, as if their sockets had dropped, and its own members of
//! rooms it owned are told the room moved (1012) so that they join again.
//! An owner gives its claim up a little after its room emptied, so a
//! member on its way still finds it.
//!
//! The bus and the directory are reached through two small traits,
//! [`NodeLink`] and [`Directory`], implemented over `sigway_cluster` by
//! the composition root.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use prost::Message as _;
use sigway_cluster::{Claim, GroupHash, TransportError};
use sigway_core::proto::cluster::room_message::Body;
use sigway_core::proto::cluster::{Attach, Deliver, Event, Leave, RoomMessage};

use super::local::LocalRooms;
use super::{InFlight, MemberId, NodeId, Portable, Refusal, RoomRef, Rooms, SinkError};

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
pub(crate) struct RemoteRoom {
    cluster: Arc<Cluster>,
    owner: NodeId,
    member: MemberId,
    credit: Option<Arc<InFlight>>,
    left: AtomicBool,
}

impl RemoteRoom {
    /// Forwards a frame of the member; its credit comes back at once, the
    /// link being bounded itself.
    pub(super) fn event(&self, frame: Bytes) {
        let sent = self.cluster.send(
            self.owner,
            Body::Event(Event {
                member: self.member.local,
                frame,
            }),
        );
        if let Some(credit) = &self.credit {
            credit.handled();
        }
        if !sent {
            tracing::warn!(member = %self.member, owner = self.owner, "cluster link lost: member must join again");
            self.cluster.lose_away(self.member.local);
        }
    }

    /// The member's session ended.
    pub(super) fn leave(&self) {
        if self.left.swap(true, Ordering::AcqRel) {
            return;
        }
        self.cluster.send(
            self.owner,
            Body::Leave(Leave {
                member: self.member.local,
            }),
        );
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
    attach: fn(&Rooms, Arc<str>, MemberId, &[u8], RemoteSink) -> Result<Box<dyn Visitor>, Refusal>,
    refused: fn(Refusal) -> Bytes,
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
    owner: NodeId,
    room: RoomName,
    away: Box<dyn Away>,
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
        })
    }

    /// The bus runs: rooms may span nodes from now on.
    pub(crate) fn connected(&self, start: ClusterStart) {
        let _ = self.link.set(start.link);
        let _ = self.directory.set(start.directory);
    }

    /// Lets rooms of kind `R` span nodes.
    pub(crate) fn serve<R: Portable>(&self) {
        let kind = Kind {
            name: R::KIND,
            attach: attach_visitor::<R>,
            refused: R::refused,
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

    fn parts(&self) -> Result<(&Arc<dyn NodeLink>, &Arc<dyn Directory>), Refusal> {
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
        let owner = self.locate(&room, true, link, directory).await?;
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
        self.lock().away.insert(
            id.local,
            AwayEntry {
                owner,
                room: room.clone(),
                away,
            },
        );
        let remote = RemoteRoom {
            cluster: self.clone(),
            owner,
            member: id,
            credit,
            left: AtomicBool::new(false),
        };
        let attach = Body::Attach(Attach {
            kind: R::KIND.into(),
            key: key.to_string(),
            member: id.local,
            info: info.into(),
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
        let claim = self.claim(room, link, directory).await?;
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
        tracing::info!(kind = room.0, dead = claim.owner, epoch = claim.epoch, "taking over a room of a dead node");
        directory
            .claim(group, Some((claim.owner, claim.epoch)))
            .await
            .map_err(unavailable)
    }

    /// A session of this node left a room owned elsewhere.
    fn forget_away(&self, member: u64) {
        let mut state = self.lock();
        let Some(entry) = state.away.remove(&member) else {
            return;
        };
        if let Some(owner) = state.owners.get_mut(&entry.room)
            && owner.node == entry.owner
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
    pub(super) fn room_released(self: &Arc<Self>, kind: &'static str, key: Arc<str>, local: Arc<LocalRooms>) {
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
            tracing::warn!(from, kind = attach.kind, "attach for a kind this node does not serve, or while not ready");
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
        let owner = match self.locate(&room, false, link, directory).await {
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

    /// `node` is gone (dead, stopped, or its link reset): its members
    /// leave the rooms owned here as if their sockets had dropped, and this
    /// node's members of rooms it owned must join again.
    pub(crate) fn node_gone(&self, node: NodeId) {
        let (visitors, aways) = {
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
            let orphans: Vec<u64> = state
                .away
                .iter()
                .filter(|(_, entry)| entry.owner == node)
                .map(|(member, _)| *member)
                .collect();
            let aways: Vec<_> = orphans
                .iter()
                .filter_map(|member| state.away.remove(member))
                .collect();
            state.owners.retain(|_, owner| owner.node != node);
            (visitors, aways)
        };
        if !visitors.is_empty() || !aways.is_empty() {
            tracing::info!(node, members_left = visitors.len(), members_moved = aways.len(), "cluster node gone");
        }
        for visitor in visitors {
            visitor.leave();
        }
        for entry in aways {
            entry.away.lost();
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
