//! The rooms of this process: one actor per room, found by `(kind, key)` in
//! a registry sharded by key hash, so joins on different keys do not meet on
//! one lock and no global actor sits on the join path.
//!
//! Disposal is race-free without a round trip: the registry counts the
//! attaches it forwards to each room, and a room that counts no members
//! asks [`LocalRooms::release`] with the number of attaches it has seen.
//! Both happen under the shard's lock, so a join that found the room before
//! the release keeps it alive (its attach is on its way and the counts
//! differ), and a join after the release starts a fresh room.

use std::any::Any;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use actix::prelude::*;

use super::{Attach, Describe, Refusal, Room, RoomHome};
use crate::observe::Stats;

/// Shards of the registry: a few per core is plenty for map operations
/// that take well under a microsecond.
const SHARDS: usize = 32;

struct Entry {
    /// The room's `Addr<R>`, type-erased so that one map holds every kind.
    addr: Box<dyn Any + Send>,
    attaches_forwarded: u64,
    /// How the admin API reaches the room behind `addr` (a plain function
    /// per kind: nothing stored per room).
    describe: fn(&(dyn Any + Send)) -> Option<Recipient<Describe>>,
}

/// `describe` of an [`Entry`] holding an `Addr<R>`.
fn describe_room<R: Room>(addr: &(dyn Any + Send)) -> Option<Recipient<Describe>> {
    addr.downcast_ref::<Addr<R>>()
        .map(|addr| addr.clone().recipient())
}

/// A room of this node found for the admin API.
pub(crate) struct ListedRoom {
    pub kind: &'static str,
    pub key: Arc<str>,
    pub room: Recipient<Describe>,
}

/// One page of [`LocalRooms::list`]: the rooms, and the cursor of the
/// next page when there is one. Positions follow the registry's order,
/// which rooms opening or closing between two pages shift: a page is a
/// snapshot, not a consistent walk.
pub(crate) struct RoomPage {
    pub rooms: Vec<ListedRoom>,
    pub next: Option<usize>,
}

type Shard = HashMap<(&'static str, Arc<str>), Entry>;

pub(super) struct LocalRooms {
    shards: Vec<Mutex<Shard>>,
    hasher: RandomState,
    open: AtomicUsize,
    max_rooms: usize,
    stats: Arc<Stats>,
}

impl LocalRooms {
    pub(super) fn new(max_rooms: usize, stats: Arc<Stats>) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            open: AtomicUsize::new(0),
            max_rooms,
            stats,
        }
    }

    fn shard(&self, kind: &'static str, key: &str) -> MutexGuard<'_, Shard> {
        let index = self.hasher.hash_one((kind, key)) as usize % SHARDS;
        // A panic while holding a shard cannot leave a map half-updated
        // (every update is one insert or remove), so poisoning is ignored.
        self.shards[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn join<R: Room>(
        &self,
        key: Arc<str>,
        member: R::Member,
        home: RoomHome,
    ) -> Result<Addr<R>, Refusal> {
        let mut shard = self.shard(R::KIND, &key);
        let map_key = (R::KIND, key);
        if !shard.contains_key(&map_key) {
            self.reserve_room()?;
            // A new room starts on the joining session's arbiter (its HTTP
            // worker): a room and its first members then share a thread, so
            // relaying between them crosses none. Rooms spread over the
            // workers as their sessions do.
            let addr = R::new_room(map_key.1.clone(), home).start();
            shard.insert(
                map_key.clone(),
                Entry {
                    addr: Box::new(addr),
                    attaches_forwarded: 0,
                    describe: describe_room::<R>,
                },
            );
            self.stats.room_opened(R::KIND);
        }
        let entry = shard.get_mut(&map_key).ok_or(Refusal::Internal)?;
        let addr = entry
            .addr
            .downcast_ref::<Addr<R>>()
            .ok_or(Refusal::Internal)?
            .clone();
        entry.attaches_forwarded += 1;
        // Sent under the lock: a release racing with this join sees the
        // new count and keeps the room.
        addr.do_send(Attach::<R> { member });
        Ok(addr)
    }

    /// Starts `room` (rebuilt elsewhere, with `members` already in it) as
    /// the room `key`; refused when one is open under that key already.
    pub(super) fn adopt<R: Room>(
        &self,
        key: Arc<str>,
        room: R,
        members: usize,
    ) -> Result<Addr<R>, Refusal> {
        let mut shard = self.shard(R::KIND, &key);
        let map_key = (R::KIND, key);
        if shard.contains_key(&map_key) {
            return Err(Refusal::Internal);
        }
        self.reserve_room()?;
        let addr = room.start();
        shard.insert(
            map_key,
            Entry {
                addr: Box::new(addr.clone()),
                attaches_forwarded: members as u64,
                describe: describe_room::<R>,
            },
        );
        self.stats.room_opened(R::KIND);
        Ok(addr)
    }

    pub(super) fn find<R: Room>(&self, key: &str) -> Option<Addr<R>> {
        let shard = self.shard(R::KIND, key);
        shard
            .get(&(R::KIND, Arc::from(key)))
            .and_then(|entry| entry.addr.downcast_ref::<Addr<R>>())
            .cloned()
    }

    /// Whether a room of `kind` and `key` is open.
    pub(super) fn contains(&self, kind: &'static str, key: &str) -> bool {
        self.shard(kind, key).contains_key(&(kind, Arc::from(key)))
    }

    /// Removes the room if every attach forwarded to it was seen by it.
    pub(super) fn release(&self, kind: &'static str, key: &Arc<str>, attaches_seen: u64) -> bool {
        let mut shard = self.shard(kind, key);
        let map_key = (kind, key.clone());
        match shard.get(&map_key) {
            Some(entry) if entry.attaches_forwarded == attaches_seen => {
                shard.remove(&map_key);
                self.open.fetch_sub(1, Ordering::AcqRel);
                self.stats.room_closed(kind);
                true
            }
            _ => false,
        }
    }

    /// Up to `limit` rooms from position `cursor` on, shard by shard (one
    /// shard locked at a time).
    pub(super) fn list(&self, cursor: usize, limit: usize) -> RoomPage {
        let mut rooms = Vec::with_capacity(limit.min(1024));
        let mut position = 0usize;
        for shard in &self.shards {
            let shard = shard
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if position + shard.len() <= cursor {
                position += shard.len();
                continue;
            }
            for ((kind, key), entry) in shard.iter() {
                if position >= cursor {
                    if rooms.len() == limit {
                        return RoomPage {
                            rooms,
                            next: Some(position),
                        };
                    }
                    if let Some(room) = (entry.describe)(entry.addr.as_ref()) {
                        rooms.push(ListedRoom {
                            kind,
                            key: key.clone(),
                            room,
                        });
                    }
                }
                position += 1;
            }
        }
        RoomPage { rooms, next: None }
    }

    /// The room of `kind` whose key is `key` or whose key's hash is `key`
    /// (`key_hash:<hex>` or the hex alone, as `/stats` shows keys).
    pub(super) fn find_listed(&self, kind: &str, key: &str) -> Option<ListedRoom> {
        let hash = key.strip_prefix("key_hash:").unwrap_or(key);
        let looks_hashed = hash.len() == sigway_core::redact::KEY_HASH_CHARS
            && hash.bytes().all(|b| b.is_ascii_hexdigit());
        let mut by_hash = None;
        for shard in &self.shards {
            let shard = shard
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            for ((room_kind, room_key), entry) in shard.iter() {
                if *room_kind != kind {
                    continue;
                }
                let listed = || {
                    (entry.describe)(entry.addr.as_ref()).map(|room| ListedRoom {
                        kind: room_kind,
                        key: room_key.clone(),
                        room,
                    })
                };
                if &**room_key == key {
                    return listed();
                }
                if looks_hashed
                    && by_hash.is_none()
                    && sigway_core::redact::key_hash(room_key).eq_ignore_ascii_case(hash)
                {
                    by_hash = listed();
                }
            }
        }
        by_hash
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    fn reserve_room(&self) -> Result<(), Refusal> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < self.max_rooms).then_some(open + 1)
            })
            .map(drop)
            .map_err(|_| Refusal::TooManyRooms(self.max_rooms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use crate::rooms::{Occupancy, RoomRef, Rooms};

    /// A room that only counts who attached, and leaves on request.
    struct Counter {
        key: Arc<str>,
        home: RoomHome,
        occupancy: Occupancy,
    }

    impl Actor for Counter {
        type Context = Context<Self>;
    }

    impl Room for Counter {
        const KIND: &'static str = "test";
        type Member = ();
        fn new_room(key: Arc<str>, home: RoomHome) -> Self {
            Self {
                key,
                home,
                occupancy: Occupancy::default(),
            }
        }
    }

    impl Handler<Attach<Self>> for Counter {
        type Result = ();
        fn handle(&mut self, _: Attach<Self>, _: &mut Context<Self>) {
            self.occupancy.attached();
        }
    }

    impl Handler<Describe> for Counter {
        type Result = MessageResult<Describe>;
        fn handle(&mut self, _: Describe, _: &mut Context<Self>) -> Self::Result {
            MessageResult(self.occupancy.summary(Vec::new()))
        }
    }

    #[derive(Message)]
    #[rtype(result = "bool")]
    struct LeaveOne;

    impl Handler<LeaveOne> for Counter {
        type Result = bool;
        fn handle(&mut self, _: LeaveOne, ctx: &mut Context<Self>) -> bool {
            self.occupancy.detached();
            let released = self
                .home
                .release_if_idle::<Self>(&self.key, &self.occupancy);
            if released {
                ctx.stop();
            }
            released
        }
    }

    fn rooms(max_rooms: usize) -> Rooms {
        let mut settings = Settings::default();
        settings.limits.max_rooms = max_rooms;
        Rooms::new(Arc::new(settings), Arc::new(Stats::default()))
    }

    fn addr(room: &RoomRef<Counter>) -> Addr<Counter> {
        match room {
            RoomRef::Local(addr) => addr.clone(),
            RoomRef::Remote(_) => unreachable!("a node alone has no remote rooms"),
        }
    }

    #[actix_web::test]
    async fn a_room_is_released_only_when_every_forwarded_attach_was_seen() {
        let rooms = rooms(10);
        let first = rooms.join_here::<Counter>("k".into(), ()).expect("join");
        // A second member is on its way when the first leaves: the room
        // has seen one attach of two, so it must stay.
        let second = rooms.join_here::<Counter>("k".into(), ()).expect("join");
        assert_eq!(rooms.len(), 1, "one key, one room");
        assert!(!addr(&first).send(LeaveOne).await.expect("alive"));
        assert!(addr(&second).send(LeaveOne).await.expect("alive"));
        assert_eq!(rooms.len(), 0);
        assert!(rooms.find::<Counter>("k").is_none());
        let again = rooms
            .join_here::<Counter>("k".into(), ())
            .expect("a fresh room");
        assert_eq!(rooms.len(), 1);
        assert!(
            addr(&again).send(LeaveOne).await.expect("alive"),
            "the fresh room counts only its own attach"
        );
    }

    #[actix_web::test]
    async fn the_room_limit_counts_every_kind_and_frees_on_release() {
        let rooms = rooms(2);
        let a = rooms.join_here::<Counter>("a".into(), ()).expect("a");
        rooms.join_here::<Counter>("b".into(), ()).expect("b");
        assert_eq!(
            rooms
                .join_here::<Counter>("c".into(), ())
                .expect_err("full"),
            Refusal::TooManyRooms(2)
        );
        rooms
            .join_here::<Counter>("a".into(), ())
            .expect("an open room takes members");
        assert!(!addr(&a).send(LeaveOne).await.expect("alive"));
        assert!(addr(&a).send(LeaveOne).await.expect("alive"));
        rooms
            .join_here::<Counter>("c".into(), ())
            .expect("a place came back");
    }
}
