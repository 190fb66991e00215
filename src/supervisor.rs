//! The room supervisor: the one place that knows every room of both protocols.
//!
//! A session never finds a room by itself: it asks the [`RoomSupervisor`] to
//! [`Join`] a `(kind, key)`. The supervisor creates the room actor on first
//! use (spreading rooms over a pool of arbiters, one per core), forwards the
//! session's [`Attach`] to it and hands back the room's address. Because every
//! attach passes through here, disposal is race-free: a room that counts no
//! attached sessions reports [`RoomIdle`] with the number of attaches it has
//! seen, and the supervisor stops it only if no attach is still on its way.
//! The supervisor also enforces the global limits (connections, connections
//! per address, rooms) and keeps the gauges behind `/metrics`.

use std::any::Any;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use actix::prelude::*;

use crate::config::Settings;
use crate::error::Refusal;
use crate::observe::Stats;

/// A kind of room actor (sigver group, legacy group, videre room).
///
/// Rooms count their attached sessions with an [`Occupancy`] and send
/// [`RoomIdle`] to the supervisor when it reaches zero.
pub trait Room: Actor<Context = Context<Self>> + Handler<Attach<Self>> + Handler<Dispose> {
    /// Namespace of this kind's keys; also its label in metrics.
    const KIND: &'static str;
    /// What a session hands to the room when it attaches.
    type Member: Send + 'static;
    fn new_room(key: Arc<str>, ctx: RoomContext) -> Self;
}

/// What every room gets when created.
#[derive(Clone)]
pub struct RoomContext {
    pub supervisor: Addr<RoomSupervisor>,
    pub settings: Arc<Settings>,
    pub stats: Arc<Stats>,
}

/// A session enters a room; sent by the supervisor only.
pub struct Attach<R: Room> {
    pub member: R::Member,
}

impl<R: Room> Message for Attach<R> {
    type Result = ();
}

/// The supervisor tells an idle room to stop.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Dispose;

/// A room reports that no session is attached any more.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RoomIdle {
    pub kind: &'static str,
    pub key: Arc<str>,
    /// Attaches the room had received when it became idle.
    pub attaches_seen: u64,
}

/// Attached-session bookkeeping every room keeps, so idle reports are uniform.
#[derive(Debug, Default)]
pub struct Occupancy {
    attached: usize,
    attaches_seen: u64,
}

impl Occupancy {
    pub fn attached(&mut self) {
        self.attached += 1;
        self.attaches_seen += 1;
    }

    /// Counts a session leaving; returns the idle report when it was the last.
    pub fn detached<R: Room>(&mut self, key: &Arc<str>) -> Option<RoomIdle> {
        self.attached = self.attached.saturating_sub(1);
        (self.attached == 0).then(|| RoomIdle {
            kind: R::KIND,
            key: key.clone(),
            attaches_seen: self.attaches_seen,
        })
    }

    pub fn count(&self) -> usize {
        self.attached
    }
}

/// A session asks to enter room `key` of kind `R`.
pub struct Join<R: Room> {
    pub key: Arc<str>,
    pub member: R::Member,
    /// Where to start the room if it must be created: the asking session's
    /// own arbiter keeps a room and its first sessions on one thread, so
    /// relaying between them crosses no thread. `None`: round-robin.
    pub home: Option<ArbiterHandle>,
}

impl<R: Room> Join<R> {
    /// A join whose room, if new, starts on the calling thread's arbiter.
    pub fn here(key: Arc<str>, member: R::Member) -> Self {
        Self {
            key,
            member,
            home: Some(Arbiter::current()),
        }
    }
}

impl<R: Room> Message for Join<R> {
    type Result = Result<Addr<R>, Refusal>;
}

/// Looks up a live room without entering it (videre's non-strict mode lets
/// a session broadcast into a room it has not joined).
pub struct Find<R: Room> {
    pub key: Arc<str>,
    pub kind: std::marker::PhantomData<R>,
}

impl<R: Room> Message for Find<R> {
    type Result = Option<Addr<R>>;
}

/// A new connection from `ip` asks for a place.
#[derive(Message)]
#[rtype(result = "Result<ConnectionTicket, Refusal>")]
pub struct OpenConnection {
    pub ip: Option<IpAddr>,
}

/// Held by a connection while it is open; dropping it frees its place.
pub struct ConnectionTicket {
    ip: Option<IpAddr>,
    supervisor: Addr<RoomSupervisor>,
}

impl Drop for ConnectionTicket {
    fn drop(&mut self) {
        self.supervisor.do_send(CloseConnection { ip: self.ip });
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct CloseConnection {
    ip: Option<IpAddr>,
}

struct RoomEntry {
    /// The room's `Addr<R>`, type-erased so that one map holds every kind.
    addr: Box<dyn Any + Send>,
    dispose: Recipient<Dispose>,
    attaches_forwarded: u64,
}

pub struct RoomSupervisor {
    settings: Arc<Settings>,
    stats: Arc<Stats>,
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: usize,
    rooms: HashMap<(&'static str, Arc<str>), RoomEntry>,
    connections: usize,
    per_ip: HashMap<IpAddr, usize>,
}

impl RoomSupervisor {
    /// `arbiters` run the room actors; rooms are placed round-robin.
    pub fn new(settings: Arc<Settings>, stats: Arc<Stats>, arbiters: Vec<ArbiterHandle>) -> Self {
        Self {
            settings,
            stats,
            arbiters,
            next_arbiter: 0,
            rooms: HashMap::new(),
            connections: 0,
            per_ip: HashMap::new(),
        }
    }

    fn place<R: Room>(
        &mut self,
        key: Arc<str>,
        home: Option<ArbiterHandle>,
        ctx: &mut Context<Self>,
    ) -> Addr<R> {
        let room_ctx = RoomContext {
            supervisor: ctx.address(),
            settings: self.settings.clone(),
            stats: self.stats.clone(),
        };
        let arbiter = match home {
            Some(home) => home,
            None if self.arbiters.is_empty() => return R::new_room(key, room_ctx).start(),
            None => {
                self.next_arbiter = self.next_arbiter.wrapping_add(1);
                self.arbiters[self.next_arbiter % self.arbiters.len()].clone()
            }
        };
        R::start_in_arbiter(&arbiter, move |_| R::new_room(key, room_ctx))
    }
}

impl Actor for RoomSupervisor {
    type Context = Context<Self>;
}

impl<R: Room> Handler<Join<R>> for RoomSupervisor {
    type Result = Result<Addr<R>, Refusal>;

    fn handle(&mut self, join: Join<R>, ctx: &mut Context<Self>) -> Self::Result {
        let map_key = (R::KIND, join.key.clone());
        if !self.rooms.contains_key(&map_key) {
            if self.rooms.len() >= self.settings.limits.max_rooms {
                return Err(Refusal::TooManyRooms(self.settings.limits.max_rooms));
            }
            let addr: Addr<R> = self.place(join.key.clone(), join.home, ctx);
            self.rooms.insert(
                map_key.clone(),
                RoomEntry {
                    dispose: addr.clone().recipient(),
                    addr: Box::new(addr),
                    attaches_forwarded: 0,
                },
            );
            self.stats.room_opened(R::KIND);
        }
        let entry = self.rooms.get_mut(&map_key).ok_or(Refusal::Internal)?;
        let addr = entry
            .addr
            .downcast_ref::<Addr<R>>()
            .ok_or(Refusal::Internal)?
            .clone();
        entry.attaches_forwarded += 1;
        addr.do_send(Attach::<R> {
            member: join.member,
        });
        Ok(addr)
    }
}

impl<R: Room> Handler<Find<R>> for RoomSupervisor {
    type Result = Option<Addr<R>>;

    fn handle(&mut self, find: Find<R>, _: &mut Context<Self>) -> Self::Result {
        self.rooms
            .get(&(R::KIND, find.key))
            .and_then(|entry| entry.addr.downcast_ref::<Addr<R>>())
            .cloned()
    }
}

impl Handler<RoomIdle> for RoomSupervisor {
    type Result = ();

    fn handle(&mut self, idle: RoomIdle, _: &mut Context<Self>) {
        let map_key = (idle.kind, idle.key);
        let Some(entry) = self.rooms.get(&map_key) else {
            return;
        };
        // An attach forwarded after the room went idle is still on its way:
        // the room is about to be busy again, so it stays.
        if entry.attaches_forwarded != idle.attaches_seen {
            return;
        }
        if let Some(entry) = self.rooms.remove(&map_key) {
            self.stats.room_closed(idle.kind);
            entry.dispose.do_send(Dispose);
        }
    }
}

impl Handler<OpenConnection> for RoomSupervisor {
    type Result = Result<ConnectionTicket, Refusal>;

    fn handle(&mut self, open: OpenConnection, ctx: &mut Context<Self>) -> Self::Result {
        let limits = &self.settings.limits;
        if self.connections >= limits.max_connections {
            return Err(Refusal::TooManyConnections(limits.max_connections));
        }
        if let Some(ip) = open.ip {
            let from_ip = self.per_ip.entry(ip).or_default();
            if *from_ip >= limits.max_connections_per_ip {
                return Err(Refusal::TooManyFromAddress(limits.max_connections_per_ip));
            }
            *from_ip += 1;
        }
        self.connections += 1;
        self.stats.connection_opened();
        Ok(ConnectionTicket {
            ip: open.ip,
            supervisor: ctx.address(),
        })
    }
}

impl Handler<CloseConnection> for RoomSupervisor {
    type Result = ();

    fn handle(&mut self, close: CloseConnection, _: &mut Context<Self>) {
        self.connections = self.connections.saturating_sub(1);
        self.stats.connection_closed();
        if let Some(ip) = close.ip
            && let Some(n) = self.per_ip.get_mut(&ip)
        {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }
}
