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
use sigway_sockjs::Place;

use super::{Attach, Describe, Inbound, Inbox, LocalRoom, Refusal, Room, RoomHome};
use crate::observe::Stats;

/// Shards of the registry: a few per core is plenty for map operations
/// that take well under a microsecond.
const SHARDS: usize = 32;

struct Entry {
    /// The room's [`LocalRoom<R>`], type-erased so that one map holds
    /// every kind.
    room: Box<dyn Any + Send>,
    attaches_forwarded: u64,
    /// How the admin API reaches the room behind `room` (a plain function
    /// per kind: nothing stored per room).
    describe: fn(&(dyn Any + Send)) -> Option<Recipient<Describe>>,
    /// The worker thread the room runs on, where its sessions are best
    /// placed (none when it started off the HTTP workers).
    place: Option<Place>,
}

/// `describe` of an [`Entry`] holding an `Addr<R>`.
fn describe_room<R: Room>(room: &(dyn Any + Send)) -> Option<Recipient<Describe>> {
    room.downcast_ref::<LocalRoom<R>>()
        .map(|room| room.addr.clone().recipient())
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
    ) -> Result<LocalRoom<R>, Refusal> {
        let mut shard = self.shard(R::KIND, &key);
        let map_key = (R::KIND, key);
        if !shard.contains_key(&map_key) {
            self.reserve_room()?;
            // A new room starts on the joining session's arbiter (its HTTP
            // worker): a room and its first members then share a thread, so
            // relaying between them crosses none. Rooms spread over the
            // workers as their sessions do.
            let (addr, inbox) = Inbox::start(R::new_room(map_key.1.clone(), home));
            shard.insert(
                map_key.clone(),
                Entry {
                    room: Box::new(LocalRoom { addr, inbox }),
                    attaches_forwarded: 0,
                    describe: describe_room::<R>,
                    place: Place::here(),
                },
            );
            self.stats.room_opened(R::KIND);
        }
        let entry = shard.get_mut(&map_key).ok_or(Refusal::Internal)?;
        let room = entry
            .room
            .downcast_ref::<LocalRoom<R>>()
            .ok_or(Refusal::Internal)?
            .clone();
        entry.attaches_forwarded += 1;
        // Sent under the lock: a release racing with this join sees the
        // new count and keeps the room.
        room.push(Inbound::Attach(Box::new(Attach::<R> { member })));
        Ok(room)
    }

    /// Starts `room` (rebuilt elsewhere, with `members` already in it) as
    /// the room `key`; refused when one is open under that key already.
    pub(super) fn adopt<R: Room>(
        &self,
        key: Arc<str>,
        room: R,
        members: usize,
    ) -> Result<LocalRoom<R>, Refusal> {
        let mut shard = self.shard(R::KIND, &key);
        let map_key = (R::KIND, key);
        if shard.contains_key(&map_key) {
            return Err(Refusal::Internal);
        }
        self.reserve_room()?;
        let (addr, inbox) = Inbox::start(room);
        let room = LocalRoom { addr, inbox };
        shard.insert(
            map_key,
            Entry {
                room: Box::new(room.clone()),
                attaches_forwarded: members as u64,
                describe: describe_room::<R>,
                place: Place::here(),
            },
        );
        self.stats.room_opened(R::KIND);
        Ok(room)
    }

    /// The worker thread the room `key` of kind `R` runs on, if it is open
    /// here and runs on one.
    pub(super) fn place_of<R: Room>(&self, key: &str) -> Option<Place> {
        let shard = self.shard(R::KIND, key);
        shard
            .get(&(R::KIND, Arc::from(key)))
            .and_then(|entry| entry.place.clone())
    }

    pub(super) fn find<R: Room>(&self, key: &str) -> Option<LocalRoom<R>> {
        let shard = self.shard(R::KIND, key);
        shard
            .get(&(R::KIND, Arc::from(key)))
            .and_then(|entry| entry.room.downcast_ref::<LocalRoom<R>>())
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
                    if let Some(room) = (entry.describe)(entry.room.as_ref()) {
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
                    (entry.describe)(entry.room.as_ref()).map(|room| ListedRoom {
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
    use crate::rooms::{MemberId, Occupancy, RoomRef, Rooms};
    use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

    /// A room that only counts who attached, and on each leave reports
    /// whether it was released.
    struct Counter {
        key: Arc<str>,
        home: RoomHome,
        occupancy: Occupancy,
        reports: HashMap<MemberId, UnboundedSender<bool>>,
    }

    impl Actor for Counter {
        type Context = Context<Self>;
    }

    impl Room for Counter {
        const KIND: &'static str = "test";
        /// The member, and where it hears whether its leave released the
        /// room.
        type Member = (MemberId, UnboundedSender<bool>);
        type Event = ();
        fn new_room(key: Arc<str>, home: RoomHome) -> Self {
            Self {
                key,
                home,
                occupancy: Occupancy::default(),
                reports: HashMap::new(),
            }
        }
        fn handle_event(&mut self, (): (), _: &mut Context<Self>) {}
        fn handle_leave(&mut self, member: MemberId, ctx: &mut Context<Self>) {
            self.occupancy.detached();
            let released = self
                .home
                .release_if_idle::<Self>(&self.key, &self.occupancy);
            if released {
                ctx.stop();
            }
            if let Some(reports) = self.reports.remove(&member) {
                let _ = reports.send(released);
            }
        }
    }

    impl Handler<Describe> for Counter {
        type Result = MessageResult<Describe>;
        fn handle(&mut self, _: Describe, _: &mut Context<Self>) -> Self::Result {
            MessageResult(self.occupancy.summary(Vec::new()))
        }
    }

    impl Handler<Attach<Self>> for Counter {
        type Result = ();
        fn handle(&mut self, attach: Attach<Self>, _: &mut Context<Self>) {
            self.occupancy.attached();
            let (member, reports) = attach.member;
            self.reports.insert(member, reports);
        }
    }

    fn rooms(max_rooms: usize) -> Rooms {
        let mut settings = Settings::default();
        settings.limits.max_rooms = max_rooms;
        Rooms::new(Arc::new(settings), Arc::new(Stats::default()))
    }

    /// One member of a test room: joins, and leaves saying whether its
    /// leave released the room.
    struct Member {
        id: MemberId,
        room: RoomRef<Counter>,
        reports: UnboundedReceiver<bool>,
    }

    impl Member {
        fn join(rooms: &Rooms, key: &str) -> Result<Self, Refusal> {
            let (tx, reports) = unbounded_channel();
            let id = rooms.member_id();
            let room = rooms.join_here::<Counter>(key.into(), (id, tx))?;
            Ok(Self { id, room, reports })
        }

        /// Leaves; whether that released the room.
        async fn leave(mut self) -> bool {
            self.room.leave(self.id);
            tokio::time::timeout(std::time::Duration::from_secs(5), self.reports.recv())
                .await
                .expect("the room answers")
                .expect("the room reports")
        }
    }

    #[actix_web::test]
    async fn a_room_is_released_only_when_every_forwarded_attach_was_seen() {
        let rooms = rooms(10);
        let first = Member::join(&rooms, "k").expect("join");
        let second = Member::join(&rooms, "k").expect("join");
        assert_eq!(rooms.len(), 1, "one key, one room");
        assert!(!first.leave().await, "a member is still in");
        assert!(second.leave().await, "the last one out releases the room");
        assert_eq!(rooms.len(), 0);
        assert!(rooms.find::<Counter>("k").is_none());
        let again = Member::join(&rooms, "k").expect("a fresh room");
        assert_eq!(rooms.len(), 1);
        assert!(
            again.leave().await,
            "the fresh room counts only its own attach"
        );
    }

    #[actix_web::test]
    async fn the_room_limit_counts_every_kind_and_frees_on_release() {
        let rooms = rooms(2);
        let a = Member::join(&rooms, "a").expect("a");
        let _b = Member::join(&rooms, "b").expect("b");
        assert_eq!(
            Member::join(&rooms, "c").err().expect("full"),
            Refusal::TooManyRooms(2)
        );
        let a_again = Member::join(&rooms, "a").expect("an open room takes members");
        assert!(!a.leave().await);
        assert!(a_again.leave().await);
        let _c = Member::join(&rooms, "c").expect("a place came back");
    }
}
