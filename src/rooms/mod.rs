//! The room layer: the only way sessions reach rooms, for both protocols.
//!
//! A session asks [`Rooms`] for a place ([`Rooms::admit`], atomics, no
//! round trip), a [`MemberId`] ([`Rooms::member_id`]), and then joins a room
//! by kind and key ([`Rooms::join`]); it gets a [`RoomRef`] to talk to the
//! room and hands the room a [`Sink`] through which the room reaches it. The
//! room never sees a transport: it addresses members by `MemberId` and
//! pushes to their sinks. Where rooms run (today `local`: one actor per
//! room, started on the joining session's arbiter; later a cluster) is
//! behind the handle, so sessions do not change when it does.
//!
//! In cluster mode (`cluster`), each room runs on one owner node of the
//! deployment; a session on another node joins it through the handle as
//! usual and gets a [`RoomRef`] that forwards its events to the owner,
//! which reaches the member through a [`Sink`] that forwards back. Room
//! kinds whose members can live on other nodes say how ([`Portable`]).
//!
//! Refusals are typed ([`Refusal`]); each adapter maps them to its own wire
//! signal in one place. The [`Guard`] (rate limits, signed keys) is reached
//! through the same handle.

pub(crate) mod admission;
mod cluster;
pub(crate) mod guard;
mod inbox;
mod local;
pub(crate) mod peers;
pub(crate) mod sink;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use actix::prelude::*;
use bytes::Bytes;

pub(crate) use crate::error::Refusal;
pub(crate) use admission::{Admission, Ticket};
pub(crate) use guard::{Guard, MessageGate};
pub(crate) use inbox::{Inbound, Inbox};
pub(crate) use sink::{InFlight, Sink, SinkError, SinkReceiver};

pub(crate) use cluster::{
    Away, BoxFuture, Cluster, ClusterStart, Directory, Exported, NodeLink, RemoteSink,
};
pub(crate) use local::{ListedRoom, RoomPage};

use crate::config::Settings;
use crate::observe::Stats;
use cluster::RemoteRoom;
use local::LocalRooms;

/// A gateway node of a deployment (0 when sigway runs alone).
pub(crate) type NodeId = sigway_cluster::NodeId;

/// One session (a sigver connection or a videre SockJS session), as rooms
/// address it: the node it is connected to and its number there. Unique in
/// the deployment for the life of the node; never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct MemberId {
    pub node: NodeId,
    pub local: u64,
}

impl std::fmt::Display for MemberId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.node, self.local)
    }
}

/// A kind of room actor (sigver group, legacy group, videre room).
///
/// A room counts its attached members with an [`Occupancy`] and, when the
/// count reaches zero, asks its [`RoomHome`] whether it may stop.
/// Members reach it through its [`Inbox`]: their attach (the
/// `Handler<Attach>`), their events, their leave, in the order sent.
pub(crate) trait Room:
    Actor<Context = Context<Self>> + Handler<Attach<Self>, Result = ()> + Handler<Describe>
{
    /// Namespace of this kind's keys; also its label in metrics.
    const KIND: &'static str;
    /// What a session hands to the room when it joins.
    type Member: Send + 'static;
    /// What a member says to the room once in it.
    type Event: Send + 'static;
    fn new_room(key: Arc<str>, home: RoomHome) -> Self;
    /// A member's event.
    fn handle_event(&mut self, event: Self::Event, ctx: &mut Context<Self>);
    /// The member `member` is gone.
    fn handle_leave(&mut self, member: MemberId, ctx: &mut Context<Self>);
}

/// A kind of room whose members may be connected to other nodes (cluster
/// mode): how a member travels to the room's owner and how what the
/// member's node sends afterwards reaches the room. Members of kinds that
/// are not portable always meet on the node they joined.
pub(crate) trait Portable: Room + Handler<SaveAgain> {
    /// Splits a member into what its room's owner needs and the end that
    /// stays here to take what the room sends it.
    fn export(member: Self::Member) -> Exported;
    /// Rebuilds a member of another node on the owner, its sink forwarding
    /// to that node.
    fn import(id: MemberId, info: &[u8], sink: RemoteSink) -> Self::Member;
    /// A frame the remote member `id` sent, for its room here.
    fn forward(room: &LocalRoom<Self>, id: MemberId, frame: Bytes);
    /// What a remote member whose join was refused is told (the kind's
    /// encoding of a close, as [`Exported::away`] decodes it).
    fn refused(refusal: Refusal) -> Bytes;
    /// Rebuilds a room from the snapshot its owner left (cluster adoption);
    /// `reach` says how each member in it is reached now. Returns the room,
    /// ready to start, and its members; `None` when the snapshot is not
    /// usable.
    fn restore(
        key: Arc<str>,
        home: RoomHome,
        snapshot: &[u8],
        reach: &mut dyn FnMut(MemberId) -> Reach,
    ) -> Option<(Self, Vec<MemberId>)>;
}

/// Cluster mode: the room writes its state down again although it did not
/// change (the directory lost it: Redis restarted without persistence).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct SaveAgain;

/// How a member of an adopted room is reached.
pub(crate) enum Reach {
    /// It is connected here: the end this node kept for it.
    Here(Box<dyn Away>),
    /// It is connected to another node.
    There(RemoteSink),
    /// It is gone (its node died, or it left meanwhile): it leaves the room
    /// once the room runs.
    Gone,
}

/// A member enters a room; sent by [`Rooms::join`] only, so that the
/// registry counts every attach it forwards.
pub(crate) struct Attach<R: Room> {
    pub member: R::Member,
}

impl<R: Room> Message for Attach<R> {
    type Result = ();
}

/// What every room gets when created: its settings, counters, and the way
/// back to the registry that made it.
#[derive(Clone)]
pub(crate) struct RoomHome {
    pub settings: Arc<Settings>,
    pub stats: Arc<Stats>,
    rooms: Arc<LocalRooms>,
    cluster: Option<Arc<Cluster>>,
}

impl RoomHome {
    /// Cluster mode: the room's state changed; `snapshot` writes it down
    /// (called only when a cluster may adopt the room, and only if this
    /// node owns it). Writes are coalesced and ordered per room.
    pub(crate) fn save(
        &self,
        kind: &'static str,
        key: &Arc<str>,
        snapshot: impl FnOnce() -> Vec<u8>,
    ) {
        if let Some(cluster) = &self.cluster {
            cluster.save(kind, key, snapshot);
        }
    }

    /// Cluster mode: what the room sends to other nodes while carrying out
    /// one event that `changes` its state, and the snapshot it then takes,
    /// happen both before this node leaves the cluster or both not at all.
    /// Hold [`Step::hold`] for the whole event.
    pub(crate) fn step(&self, changes: bool) -> Step {
        Step(self.cluster.as_ref().filter(|_| changes).cloned())
    }

    /// The room has no member left: it may stop unless an attach forwarded
    /// after `occupancy` went idle is still on its way. Returns whether the
    /// room was released (the caller then stops its actor). In a cluster,
    /// the node gives up its claim on the room a little later.
    pub(crate) fn release_if_idle<R: Room>(&self, key: &Arc<str>, occupancy: &Occupancy) -> bool {
        let released =
            occupancy.count() == 0 && self.rooms.release(R::KIND, key, occupancy.attaches_seen);
        if released && let Some(cluster) = &self.cluster {
            cluster.room_released(R::KIND, key.clone(), self.rooms.clone());
        }
        released
    }
}

/// See [`RoomHome::step`].
pub(crate) struct Step(Option<Arc<Cluster>>);

impl Step {
    pub(crate) fn hold(&self) -> Option<std::sync::RwLockReadGuard<'_, ()>> {
        self.0.as_deref().map(Cluster::step)
    }
}

/// The admin API asks a room who is in it ([`Rooms::list`]).
pub(crate) struct Describe;

impl Message for Describe {
    type Result = RoomSummary;
}

/// What a room says of itself: its members (wherever connected), how long
/// it has been open on this node and the messages it relayed.
#[derive(Debug, Clone)]
pub(crate) struct RoomSummary {
    pub members: Vec<MemberId>,
    pub age: std::time::Duration,
    pub relayed: u64,
}

/// Attached-member bookkeeping every room keeps, so release is uniform;
/// also when the room opened and what it relayed, for the admin API.
#[derive(Debug)]
pub(crate) struct Occupancy {
    attached: usize,
    attaches_seen: u64,
    opened: std::time::Instant,
    relayed: u64,
}

impl Default for Occupancy {
    fn default() -> Self {
        Self::restored(0)
    }
}

impl Occupancy {
    /// A room rebuilt with `members` already in it (cluster adoption).
    pub(crate) fn restored(members: usize) -> Self {
        Self {
            attached: members,
            attaches_seen: members as u64,
            opened: std::time::Instant::now(),
            relayed: 0,
        }
    }

    /// Counts `messages` the room delivered to members.
    pub(crate) fn relayed(&mut self, messages: u64) {
        self.relayed += messages;
    }

    /// The room's summary with `members` in it.
    pub(crate) fn summary(&self, members: Vec<MemberId>) -> RoomSummary {
        RoomSummary {
            members,
            age: self.opened.elapsed(),
            relayed: self.relayed,
        }
    }

    pub(crate) fn attached(&mut self) {
        self.attached += 1;
        self.attaches_seen += 1;
    }

    /// Counts a member leaving (or an attach the room refused).
    pub(crate) fn detached(&mut self) {
        self.attached = self.attached.saturating_sub(1);
    }

    pub(crate) fn count(&self) -> usize {
        self.attached
    }
}

/// A room a session joined (or found): the way to send it messages. The
/// room runs here, or (cluster mode) on its owner node, where the session's
/// frames are forwarded as they came from its client.
pub(crate) enum RoomRef<R: Room> {
    Local(LocalRoom<R>),
    Remote(Arc<RemoteRoom>),
}

/// A room running on this node: its actor, and the inbox its members
/// write to.
pub(crate) struct LocalRoom<R: Room> {
    pub addr: Addr<R>,
    inbox: Arc<Inbox<R>>,
}

impl<R: Room> Clone for LocalRoom<R> {
    fn clone(&self) -> Self {
        Self {
            addr: self.addr.clone(),
            inbox: self.inbox.clone(),
        }
    }
}

impl<R: Room> LocalRoom<R> {
    /// Hands the room one of its member's messages.
    pub(crate) fn push(&self, message: Inbound<R>) {
        self.inbox.push(message);
    }
}

impl<R: Room> Clone for RoomRef<R> {
    fn clone(&self) -> Self {
        match self {
            RoomRef::Local(addr) => RoomRef::Local(addr.clone()),
            RoomRef::Remote(remote) => RoomRef::Remote(remote.clone()),
        }
    }
}

impl<R: Room> std::fmt::Debug for RoomRef<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let remote = matches!(self, RoomRef::Remote(_));
        f.debug_struct("RoomRef")
            .field("kind", &R::KIND)
            .field("remote", &remote)
            .finish()
    }
}

impl<R: Room> RoomRef<R> {
    /// Hands the room an event its member decoded from `frame`: the event
    /// itself here, the frame to the owner node (which decodes it again).
    pub(crate) fn event(&self, event: R::Event, frame: &Bytes) {
        match self {
            RoomRef::Local(room) => room.push(Inbound::Event(event)),
            RoomRef::Remote(remote) => remote.event(frame.clone()),
        }
    }

    /// The member `member` leaves (its session ended).
    pub(crate) fn leave(&self, member: MemberId) {
        match self {
            RoomRef::Local(room) => room.push(Inbound::Leave(member)),
            RoomRef::Remote(remote) => remote.leave(),
        }
    }
}

/// The handle sessions hold: admission, member ids, and the rooms of every
/// kind. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Rooms {
    node: NodeId,
    next_member: Arc<AtomicU64>,
    admission: Arc<Admission>,
    guard: Arc<Guard>,
    local: Arc<LocalRooms>,
    settings: Arc<Settings>,
    stats: Arc<Stats>,
    cluster: Option<Arc<Cluster>>,
}

impl Rooms {
    /// The rooms of a node that runs alone. Must be used from inside an
    /// actix system: a new room starts on the arbiter of the session that
    /// first joins it.
    pub(crate) fn new(settings: Arc<Settings>, stats: Arc<Stats>) -> Self {
        Self {
            node: 0,
            next_member: Arc::new(AtomicU64::new(1)),
            admission: Arc::new(Admission::new(&settings.limits, stats.clone())),
            guard: Arc::new(Guard::new(&settings, stats.clone())),
            local: Arc::new(LocalRooms::new(settings.limits.max_rooms, stats.clone())),
            settings,
            stats,
            cluster: None,
        }
    }

    /// The rooms of one node of a cluster: portable kinds run on their
    /// owner node, wherever their members are connected.
    pub(crate) fn clustered(
        settings: Arc<Settings>,
        stats: Arc<Stats>,
        cluster: Arc<Cluster>,
    ) -> Self {
        let mut rooms = Self::new(settings, stats);
        rooms.node = cluster.node();
        rooms.cluster = Some(cluster);
        rooms
    }

    /// Whether this node can serve: always when it runs alone; in a
    /// cluster, once it reaches the others (`/readyz`).
    pub(crate) fn is_ready(&self) -> bool {
        self.cluster
            .as_ref()
            .is_none_or(|cluster| cluster.is_alone() || cluster.is_ready())
    }

    /// A place for a new connection from `ip` under the connection limits
    /// (the connection rate of its address first); dropping the ticket
    /// frees it.
    pub(crate) fn admit(&self, ip: Option<std::net::IpAddr>) -> Result<Ticket, Refusal> {
        self.guard.connection(ip)?;
        self.admission.admit(ip)
    }

    /// The same for a SockJS session, which also needs a place under the
    /// SockJS sessions per address.
    pub(crate) fn admit_sockjs(&self, ip: Option<std::net::IpAddr>) -> Result<Ticket, Refusal> {
        self.guard.connection(ip)?;
        self.admission.admit_sockjs(ip)
    }

    /// Rate limits and signed keys.
    pub(crate) fn guard(&self) -> &Guard {
        &self.guard
    }

    /// A fresh id for a new session of this node.
    pub(crate) fn member_id(&self) -> MemberId {
        MemberId {
            node: self.node,
            local: self.next_member.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Enters room `key` of kind `R` with `member`, wherever in the
    /// deployment the room runs (here when the node runs alone). The room
    /// receives the member before any message the caller sends it
    /// afterwards.
    pub(crate) async fn join<R: Portable>(
        &self,
        key: Arc<str>,
        member: R::Member,
    ) -> Result<RoomRef<R>, Refusal> {
        match &self.cluster {
            Some(cluster) if !cluster.is_alone() => cluster.join::<R>(self, key, member).await,
            _ => self.join_here(key, member),
        }
    }

    /// Enters room `key` of kind `R` on this node, creating the room on
    /// first use (kinds that are not portable always meet here).
    pub(crate) fn join_here<R: Room>(
        &self,
        key: Arc<str>,
        member: R::Member,
    ) -> Result<RoomRef<R>, Refusal> {
        let room = self.local.join::<R>(key, member, self.home())?;
        Ok(RoomRef::Local(room))
    }

    fn home(&self) -> RoomHome {
        RoomHome {
            settings: self.settings.clone(),
            stats: self.stats.clone(),
            rooms: self.local.clone(),
            cluster: self.cluster.clone(),
        }
    }

    /// Starts `room`, rebuilt with `members` in it, as this node's room
    /// `key` of kind `R` (cluster adoption); fails if one is open already.
    fn adopt<R: Room>(
        &self,
        key: Arc<str>,
        room: R,
        members: usize,
    ) -> Result<LocalRoom<R>, Refusal> {
        self.local.adopt(key, room, members)
    }

    /// Takes the limits, rate limits and `auth` secrets of reloaded
    /// `settings` (SIGHUP). `max_rooms` and `max_members_per_room` are read
    /// when a room opens and stay as they were.
    pub(crate) fn apply(&self, settings: &Settings) {
        self.admission.apply(&settings.limits);
        self.guard.apply(settings);
    }

    /// Connections holding a place now (every protocol, this node).
    pub(crate) fn open_connections(&self) -> usize {
        self.admission.open()
    }

    /// This node's id (0 when it runs alone).
    pub(crate) fn node(&self) -> NodeId {
        self.node
    }

    /// Up to `limit` rooms of this node from position `cursor` on (see
    /// [`RoomPage`]).
    pub(crate) fn list(&self, cursor: usize, limit: usize) -> RoomPage {
        self.local.list(cursor, limit)
    }

    /// The room of `kind` whose key is `key`, or whose key hashes to `key`
    /// (`key_hash:<12 hex>` or the 12 hex alone), on this node.
    pub(crate) fn find_listed(&self, kind: &str, key: &str) -> Option<ListedRoom> {
        self.local.find_listed(kind, key)
    }

    /// The worker thread a session that will join the room `key` is best
    /// run on: the room's, when it is open on this node (see
    /// `sigway_sockjs::Place`).
    pub(crate) fn place_of<R: Room>(&self, key: &str) -> Option<sigway_sockjs::Place> {
        self.local.place_of::<R>(key)
    }

    /// A live room of this node, without entering it (videre's lenient
    /// mode lets a session broadcast into a room it has not joined).
    pub(crate) fn find<R: Room>(&self, key: &str) -> Option<RoomRef<R>> {
        self.local.find::<R>(key).map(RoomRef::Local)
    }

    #[cfg(test)]
    /// What a room of this node gets when created (to build one by hand).
    pub(crate) fn test_home(&self) -> RoomHome {
        self.home()
    }

    #[cfg(test)]
    /// Rooms currently open, all kinds.
    pub(crate) fn len(&self) -> usize {
        self.local.len()
    }
}
