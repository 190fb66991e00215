//! One videre session: the packets of one SockJS session, turned into room
//! messages.
//!
//! The session parses every message on its own (a bad one costs only an
//! error notice), keeps the rooms it joined with the UserId it used
//! ([`Memberships`], pure, where strict mode is decided) and talks to room
//! actors: `connect` leaves every room and joins through the supervisor,
//! awaiting the room's answer so later packets queue behind the join;
//! `broadcast` and `ping` go straight to the room; `disconnect` and the
//! session's close leave. Nothing here blocks other sessions: rooms are
//! reached by message, and client input never panics.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use actix::prelude::*;
use actix_web::web;
use bytestring::ByteString;
use tokio::sync::oneshot;

use crate::error::{Refusal, VidereError};
use crate::server::Shared;
use crate::sockjs::{SessionInfo, SessionLink, SockjsSession};
use crate::supervisor::{ConnectionTicket, Find, Join};

use super::packet::{self, Event, Packet};
use super::room::{Broadcast, Joiner, Leave, Ping, SessionId, VidereRoom};

/// A room this session is in, and the UserId it joined with.
#[derive(Debug, Clone)]
pub struct Membership<H> {
    pub room_id: Arc<str>,
    pub user_id: Arc<str>,
    pub room: H,
}

/// Where a broadcast or ping goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Target<'a, H> {
    /// A room this session joined.
    Joined(&'a H),
    /// Non-strict mode: a room the session is not in, to look up.
    Elsewhere,
}

/// The rooms of one session (in practice at most one: connect leaves first).
#[derive(Debug)]
pub struct Memberships<H> {
    joined: Vec<Membership<H>>,
}

impl<H> Default for Memberships<H> {
    fn default() -> Self {
        Self { joined: Vec::new() }
    }
}

impl<H> Memberships<H> {
    pub fn add(&mut self, membership: Membership<H>) {
        self.joined.retain(|m| m.room_id != membership.room_id);
        self.joined.push(membership);
    }

    /// Leaves `room_id`; `None` when the session was not in it.
    pub fn take(&mut self, room_id: &str) -> Option<Membership<H>> {
        let index = self.joined.iter().position(|m| &*m.room_id == room_id)?;
        Some(self.joined.remove(index))
    }

    /// Leaves every room.
    pub fn take_all(&mut self) -> Vec<Membership<H>> {
        std::mem::take(&mut self.joined)
    }

    pub fn len(&self) -> usize {
        self.joined.len()
    }

    pub fn is_empty(&self) -> bool {
        self.joined.is_empty()
    }

    /// Where `packet` (a broadcast or ping) may go. In strict mode only to a
    /// room this session joined, and only under the UserId it joined with.
    pub fn target(&self, packet: &Packet, strict: bool) -> Result<Target<'_, H>, VidereError> {
        match self.joined.iter().find(|m| *m.room_id == packet.room_id) {
            Some(m) if !strict || *m.user_id == packet.user_id => Ok(Target::Joined(&m.room)),
            Some(_) => Err(VidereError::WrongUser),
            None if strict => Err(VidereError::NotJoined),
            None => Ok(Target::Elsewhere),
        }
    }
}

/// A session's place under the connection limits, granted after `open`.
/// Shared with the task that asks the supervisor; dropping the last holder
/// drops the ticket, which frees the place.
#[derive(Clone, Default)]
pub struct Place(Rc<RefCell<PlaceState>>);

#[derive(Default)]
enum PlaceState {
    #[default]
    Pending,
    Held(#[allow(dead_code)] ConnectionTicket),
    Refused,
}

impl Place {
    pub fn hold(&self, ticket: ConnectionTicket) {
        let mut state = self.0.borrow_mut();
        if matches!(*state, PlaceState::Pending) {
            *state = PlaceState::Held(ticket);
        }
    }

    pub fn refuse(&self) {
        *self.0.borrow_mut() = PlaceState::Refused;
    }

    pub fn is_refused(&self) -> bool {
        matches!(*self.0.borrow(), PlaceState::Refused)
    }

    /// Gives the place up (the session closed).
    fn release(&self) {
        *self.0.borrow_mut() = PlaceState::Refused;
    }
}

/// Process-wide session numbering; room members are keyed by it.
static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

/// The videre side of one SockJS session.
pub struct VidereSession {
    id: SessionId,
    link: SessionLink,
    info: SessionInfo,
    shared: web::Data<Shared>,
    rooms: Memberships<Addr<VidereRoom>>,
    /// This session's place under the connection limits.
    place: Place,
}

impl VidereSession {
    pub fn new(
        link: SessionLink,
        info: SessionInfo,
        shared: web::Data<Shared>,
        place: Place,
    ) -> Self {
        let id = NEXT_SESSION.fetch_add(1, Relaxed);
        let remote = info.remote.map(|addr| addr.to_string()).unwrap_or_default();
        tracing::debug!(session = %info.id, transport = info.transport, %remote, "videre session open");
        Self {
            id,
            link,
            info,
            shared,
            rooms: Memberships::default(),
            place,
        }
    }

    fn strict(&self) -> bool {
        self.shared.settings.videre.strict
    }

    /// Sends the error notice for a refused packet and counts it.
    fn refuse(&self, user_id: &str, room_id: &str, error: VidereError) {
        let stats = &self.shared.stats;
        if error.is_refusal() {
            stats.refusals.fetch_add(1, Relaxed);
        } else {
            stats.protocol_errors.fetch_add(1, Relaxed);
        }
        tracing::warn!(
            session = %self.info.id, transport = self.info.transport,
            user = %preview(user_id), room = %preview(room_id),
            "videre packet refused: {error}"
        );
        self.send(packet::error_notice(user_id, room_id, &error));
    }

    fn send(&self, text: ByteString) {
        let bytes = text.len();
        if self.link.send(text).is_ok() {
            self.shared.stats.sent(bytes);
        }
    }

    /// Leaves every room; each one tells its remaining members.
    fn leave_all(&mut self) {
        for membership in self.rooms.take_all() {
            membership.room.do_send(Leave { session: self.id });
        }
    }

    async fn connect(&mut self, connect: Packet) {
        self.leave_all();
        let room_id: Arc<str> = connect.room_id.as_str().into();
        let user_id: Arc<str> = connect.user_id.as_str().into();
        let (outcome, joined) = oneshot::channel();
        // A new room starts on this session's thread: a call's first member
        // then relays to the room without crossing threads.
        let join = Join::<VidereRoom>::here(
            room_id.clone(),
            Joiner {
                session: self.id,
                user_id: user_id.clone(),
                link: self.link.clone(),
                connect,
                outcome,
            },
        );
        // Awaiting the room's answer orders every later packet of this
        // session after the join.
        let result = match self.shared.supervisor.send(join).await {
            Ok(Ok(room)) => match joined.await {
                Ok(Ok(())) => Ok(room),
                Ok(Err(error)) => Err(error),
                Err(_) => Err(Refusal::Internal.into()),
            },
            Ok(Err(refusal)) => Err(refusal.into()),
            Err(_) => Err(Refusal::Internal.into()),
        };
        match result {
            Ok(room) => self.rooms.add(Membership {
                room_id,
                user_id,
                room,
            }),
            Err(error) => self.refuse(&user_id, &room_id, error),
        }
    }

    async fn disconnect(&mut self, packet: Packet) {
        match self.rooms.take(&packet.room_id) {
            Some(membership) => membership.room.do_send(Leave { session: self.id }),
            None => self.refuse(&packet.user_id, &packet.room_id, VidereError::NotJoined),
        }
    }

    /// Hands a broadcast or ping to its room.
    async fn relay(&mut self, packet: Packet) {
        let room = match self.rooms.target(&packet, self.strict()) {
            Ok(Target::Joined(room)) => room.clone(),
            Ok(Target::Elsewhere) => {
                let find = Find::<VidereRoom> {
                    key: packet.room_id.as_str().into(),
                    kind: PhantomData,
                };
                match self.shared.supervisor.send(find).await {
                    Ok(Some(room)) => room,
                    _ => {
                        return self.refuse(
                            &packet.user_id,
                            &packet.room_id,
                            VidereError::NoSuchRoom,
                        );
                    }
                }
            }
            Err(error) => return self.refuse(&packet.user_id, &packet.room_id, error),
        };
        match packet.event {
            Event::Ping => {
                let reply = self.link.clone();
                deliver(&room, Ping { packet, reply }).await;
            }
            _ => deliver(&room, Broadcast { packet }).await,
        }
    }
}

/// Queues `message` for `room` without waiting for it, unless the room's
/// mailbox is full: then the session waits, so a flooding client slows down
/// instead of growing the room's queue without bound.
async fn deliver<M>(room: &Addr<VidereRoom>, message: M)
where
    M: Message<Result = ()> + Send + 'static,
    VidereRoom: Handler<M>,
{
    match room.try_send(message) {
        Ok(()) => {}
        Err(SendError::Full(message)) => {
            let _ = room.send(message).await;
        }
        // The room is gone: it was disposed after this session left it.
        Err(SendError::Closed(_)) => {}
    }
}

/// At most 256 bytes of a client string, for log lines.
fn preview(text: &str) -> &str {
    let mut end = text.len().min(256);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl SockjsSession for VidereSession {
    async fn on_message(&mut self, text: String) {
        if self.place.is_refused() {
            return;
        }
        let bytes = text.len();
        self.shared.stats.received(bytes);
        let max = self.shared.settings.limits.max_frame_bytes;
        let packet = match packet::parse(ByteString::from(text), max) {
            Ok(packet) => packet,
            Err(rejected) => {
                return self.refuse(&rejected.user_id, &rejected.room_id, rejected.error);
            }
        };
        // Ids live as long as their room: bound them like sigver's keys. The
        // notice does not echo an oversized id back.
        let max_id = self.shared.settings.limits.max_id_bytes;
        for (field, id) in [("UserId", &packet.user_id), ("RoomId", &packet.room_id)] {
            if id.len() > max_id {
                return self.refuse("", "", VidereError::IdTooLong(field, max_id));
            }
        }
        tracing::debug!(
            session = %self.info.id, transport = self.info.transport,
            event = %packet.event, user = %preview(&packet.user_id),
            room = %preview(&packet.room_id), bytes,
            packet = %preview(packet.text()),
            "videre packet"
        );
        match packet.event {
            Event::Connect => self.connect(packet).await,
            Event::Disconnect => self.disconnect(packet).await,
            Event::Broadcast | Event::Ping => self.relay(packet).await,
        }
    }

    async fn on_close(&mut self) {
        tracing::debug!(session = %self.info.id, transport = self.info.transport, rooms = self.rooms.len(), "videre session closed");
        self.leave_all();
        self.place.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::videre::packet::test_packet as packet;

    fn joined(room: &str, user: &str, handle: u32) -> Membership<u32> {
        Membership {
            room_id: room.into(),
            user_id: user.into(),
            room: handle,
        }
    }

    #[test]
    fn strict_mode_accepts_only_the_joined_room_under_the_joined_user() {
        let mut rooms = Memberships::default();
        rooms.add(joined("r", "a", 7));
        let ok = rooms.target(&packet("broadcast", "a", "r"), true);
        assert_eq!(ok, Ok(Target::Joined(&7)));
        assert_eq!(
            rooms.target(&packet("broadcast", "b", "r"), true),
            Err(VidereError::WrongUser)
        );
        assert_eq!(
            rooms.target(&packet("ping", "a", "other"), true),
            Err(VidereError::NotJoined)
        );
    }

    #[test]
    fn lenient_mode_accepts_any_user_and_looks_up_other_rooms() {
        let mut rooms = Memberships::default();
        rooms.add(joined("r", "a", 7));
        assert_eq!(
            rooms.target(&packet("broadcast", "b", "r"), false),
            Ok(Target::Joined(&7))
        );
        assert_eq!(
            rooms.target(&packet("ping", "a", "other"), false),
            Ok(Target::Elsewhere)
        );
    }

    #[test]
    fn memberships_leave_by_room_and_all_at_once() {
        let mut rooms = Memberships::default();
        rooms.add(joined("r", "a", 1));
        rooms.add(joined("r", "b", 2));
        assert_eq!(rooms.len(), 1, "one membership per room");
        rooms.add(joined("", "a", 3));
        assert!(rooms.take("nope").is_none());
        assert_eq!(rooms.take("").map(|m| m.room), Some(3));
        assert_eq!(rooms.take_all().len(), 1);
        assert!(rooms.is_empty());
    }

    mod with_actors {
        use super::super::*;
        use crate::config::Settings;
        use crate::observe::Stats;
        use crate::sockjs::Outgoing;
        use crate::supervisor::RoomSupervisor;
        use std::time::Duration;
        use tokio::sync::{mpsc, watch};

        fn shared(settings: Settings) -> web::Data<Shared> {
            let settings = Arc::new(settings);
            let stats = Arc::new(Stats::default());
            let supervisor = RoomSupervisor::new(settings.clone(), stats.clone(), vec![]).start();
            let (_, shutdown) = watch::channel(false);
            web::Data::new(Shared {
                settings,
                supervisor,
                stats,
                shutdown,
            })
        }

        fn session(shared: &web::Data<Shared>) -> (VidereSession, mpsc::Receiver<Outgoing>) {
            let (link, rx) = SessionLink::channel(64);
            let info = SessionInfo {
                id: "test".into(),
                remote: None,
                transport: "test",
            };
            (
                VidereSession::new(link, info, shared.clone(), Place::default()),
                rx,
            )
        }

        async fn next(rx: &mut mpsc::Receiver<Outgoing>) -> serde_json::Value {
            match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
                Ok(Some(Outgoing::Message(text))) => serde_json::from_str(&text).expect("json"),
                other => panic!("expected a message, got {other:?}"),
            }
        }

        fn text(event: &str, user: &str, room: &str) -> String {
            serde_json::json!({"Header": {"Event": event, "UserId": user, "RoomId": room}, "Payload": "{}"})
                .to_string()
        }

        #[actix_web::test]
        async fn sessions_meet_in_a_room_and_its_last_leave_disposes_it() {
            let shared = shared(Settings::default());
            let (mut a, mut a_rx) = session(&shared);
            let (mut b, mut b_rx) = session(&shared);
            a.on_message(text("connect", "a", "r")).await;
            assert_eq!(next(&mut a_rx).await["Payload"], "true");
            b.on_message(text("connect", "b", "r")).await;
            assert_eq!(next(&mut a_rx).await["Payload"], "false");
            assert_eq!(next(&mut b_rx).await["Payload"], "false");
            b.on_message(text("ping", "b", "r")).await;
            assert_eq!(next(&mut b_rx).await["Payload"], r#"["a","b"]"#);
            b.on_message(text("broadcast", "b", "r")).await;
            assert_eq!(next(&mut a_rx).await["Header"]["Event"], "broadcast");
            assert_eq!(next(&mut b_rx).await["Header"]["Event"], "broadcast");
            a.on_message("garbage".into()).await;
            assert_eq!(next(&mut a_rx).await["Header"]["Event"], "error");
            a.on_close().await;
            let notice = next(&mut b_rx).await;
            assert_eq!(
                (
                    notice["Header"]["Event"].as_str(),
                    notice["Header"]["UserId"].as_str()
                ),
                (Some("disconnect"), Some("a"))
            );
            assert_eq!(shared.stats.rooms_videre.load(Relaxed), 1);
            b.on_close().await;
            for _ in 0..100 {
                if shared.stats.rooms_videre.load(Relaxed) == 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("the empty room was not disposed");
        }
    }

    #[test]
    fn preview_cuts_at_a_char_boundary() {
        let text = "é".repeat(200);
        assert!(preview(&text).len() <= 256);
        assert!(text.starts_with(preview(&text)));
    }
}
