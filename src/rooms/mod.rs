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
//! Refusals are typed ([`Refusal`]); each adapter maps them to its own wire
//! signal in one place.

pub(crate) mod admission;
mod local;
pub(crate) mod sink;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use actix::prelude::*;

pub(crate) use crate::error::Refusal;
pub(crate) use admission::{Admission, Ticket};
pub(crate) use sink::{InFlight, Sink, SinkError, SinkReceiver};

use crate::config::Settings;
use crate::observe::Stats;
use local::LocalRooms;

/// A gateway node of a deployment (0 when sigway runs alone).
pub(crate) type NodeId = u32;

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
pub(crate) trait Room: Actor<Context = Context<Self>> + Handler<Attach<Self>> {
    /// Namespace of this kind's keys; also its label in metrics.
    const KIND: &'static str;
    /// What a session hands to the room when it joins.
    type Member: Send + 'static;
    fn new_room(key: Arc<str>, home: RoomHome) -> Self;
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
}

impl RoomHome {
    /// The room has no member left: it may stop unless an attach forwarded
    /// after `occupancy` went idle is still on its way. Returns whether the
    /// room was released (the caller then stops its actor).
    pub(crate) fn release_if_idle<R: Room>(&self, key: &Arc<str>, occupancy: &Occupancy) -> bool {
        occupancy.count() == 0 && self.rooms.release(R::KIND, key, occupancy.attaches_seen)
    }
}

/// Attached-member bookkeeping every room keeps, so release is uniform.
#[derive(Debug, Default)]
pub(crate) struct Occupancy {
    attached: usize,
    attaches_seen: u64,
}

impl Occupancy {
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

/// A room a session joined (or found): the way to send it messages.
pub(crate) struct RoomRef<R: Room> {
    addr: Addr<R>,
}

impl<R: Room> Clone for RoomRef<R> {
    fn clone(&self) -> Self {
        Self {
            addr: self.addr.clone(),
        }
    }
}

impl<R: Room> std::fmt::Debug for RoomRef<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomRef").field("kind", &R::KIND).finish()
    }
}

impl<R: Room> RoomRef<R> {
    /// Queues `message` for the room without waiting. A room that is gone
    /// (it stopped after the session left it) drops it.
    pub(crate) fn tell<M>(&self, message: M)
    where
        M: Message<Result = ()> + Send + 'static,
        R: Handler<M>,
        R::Context: actix::dev::ToEnvelope<R, M>,
    {
        self.addr.do_send(message);
    }
}

/// The handle sessions hold: admission, member ids, and the rooms of every
/// kind. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Rooms {
    node: NodeId,
    next_member: Arc<AtomicU64>,
    admission: Arc<Admission>,
    local: Arc<LocalRooms>,
    settings: Arc<Settings>,
    stats: Arc<Stats>,
}

impl Rooms {
    /// The rooms of a node. Must be used from inside an actix system: a new
    /// room starts on the arbiter of the session that first joins it.
    pub(crate) fn new(settings: Arc<Settings>, stats: Arc<Stats>) -> Self {
        Self {
            node: 0,
            next_member: Arc::new(AtomicU64::new(1)),
            admission: Arc::new(Admission::new(&settings.limits, stats.clone())),
            local: Arc::new(LocalRooms::new(settings.limits.max_rooms, stats.clone())),
            settings,
            stats,
        }
    }

    /// A place for a new connection from `ip` under the connection limits;
    /// dropping the ticket frees it.
    pub(crate) fn admit(&self, ip: Option<std::net::IpAddr>) -> Result<Ticket, Refusal> {
        self.admission.admit(ip)
    }

    /// A fresh id for a new session of this node.
    pub(crate) fn member_id(&self) -> MemberId {
        MemberId {
            node: self.node,
            local: self.next_member.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Enters room `key` of kind `R` with `member`, creating the room on
    /// first use. The room receives the member before any message the
    /// caller sends it afterwards.
    pub(crate) fn join<R: Room>(
        &self,
        key: Arc<str>,
        member: R::Member,
    ) -> Result<RoomRef<R>, Refusal> {
        let home = RoomHome {
            settings: self.settings.clone(),
            stats: self.stats.clone(),
            rooms: self.local.clone(),
        };
        let addr = self.local.join::<R>(key, member, home)?;
        Ok(RoomRef { addr })
    }

    /// A live room, without entering it (videre's lenient mode lets a
    /// session broadcast into a room it has not joined).
    pub(crate) fn find<R: Room>(&self, key: &str) -> Option<RoomRef<R>> {
        self.local.find::<R>(key).map(|addr| RoomRef { addr })
    }

    #[cfg(test)]
    /// Rooms currently open, all kinds.
    pub(crate) fn len(&self) -> usize {
        self.local.len()
    }
}
