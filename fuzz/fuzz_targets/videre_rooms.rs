//! videre's room core and a session's memberships driven by random packet
//! sequences from up to six sessions, as the gateway's videre sessions and
//! room actors use them: each message is parsed and its ids checked, then
//! `connect` leaves every room and joins, `disconnect` leaves, `broadcast`
//! and `ping` go where the memberships allow (strict or lenient mode), and
//! a session that closes leaves everything. Messages are built from small
//! alphabets (so sessions meet in rooms) or taken raw. After every event: a
//! session is in at most one room and the rooms and memberships agree;
//! rooms hold unique sessions within the limit and no room is empty; each
//! room's members received exactly the announces, notices and broadcasts
//! meant for them, in join order, and everything sent is a packet; a
//! snapshot of every room restores it. At the end everyone closes and no room is left.

#![no_main]

use std::collections::BTreeMap;
use std::sync::Arc;

use arbitrary::Arbitrary;
use bytestring::ByteString;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use serde_json::value::RawValue;
use sigway_core::error::VidereError;
use sigway_core::videre::memberships::{Membership, Memberships, Target};
use sigway_core::videre::packet::{self, Event as PacketEvent, Packet};
use sigway_core::videre::room::RoomCore;

const SESSIONS: usize = 6;
const MAX_ID_BYTES: usize = 16;

#[derive(Debug, Arbitrary)]
struct Input {
    strict: bool,
    /// Users per room, 1..=4.
    max_members: u8,
    events: Vec<Event>,
}

#[derive(Debug, Arbitrary)]
enum Event {
    Packet {
        session: u8,
        event: u8,
        user: u8,
        room: u8,
        payload: Option<String>,
    },
    Raw {
        session: u8,
        text: String,
    },
    Close {
        session: u8,
    },
    Snapshot,
}

/// Rooms are keyed by RoomId; the "link" of a member is its session number
/// (a room reaches a member through it).
type Room = RoomCore<usize, usize>;

struct World {
    strict: bool,
    max_members: usize,
    rooms: BTreeMap<String, Room>,
    /// Each session's memberships; the handle is the RoomId.
    sessions: Vec<Memberships<String>>,
}

fuzz_target!(|input: Input| {
    let mut world = World {
        strict: input.strict,
        max_members: usize::from(input.max_members % 4) + 1,
        rooms: BTreeMap::new(),
        sessions: (0..SESSIONS).map(|_| Memberships::default()).collect(),
    };
    for event in input.events.into_iter().take(256) {
        match event {
            Event::Packet {
                session,
                event,
                user,
                room,
                payload,
            } => {
                let text = built(event, user, room, payload);
                world.message(usize::from(session) % SESSIONS, &text);
            }
            Event::Raw { session, text } => world.message(usize::from(session) % SESSIONS, &text),
            Event::Close { session } => world.close(usize::from(session) % SESSIONS),
            Event::Snapshot => world.snapshot_round_trip(),
        }
        world.check();
    }
    for session in 0..SESSIONS {
        world.close(session);
    }
    world.check();
    assert!(
        world.rooms.is_empty(),
        "every room is gone when everyone left"
    );
});

/// A packet from small alphabets, so that sessions share rooms and names.
fn built(event: u8, user: u8, room: u8, payload: Option<String>) -> String {
    let event = ["connect", "broadcast", "ping", "disconnect", "nonsense"][usize::from(event) % 5];
    let user = ["alice", "bob", "", "carol\u{e9}"][usize::from(user) % 4];
    let room = ["r1", "r2", "", "a much longer room id than allowed"][usize::from(room) % 4];
    let mut packet = serde_json::json!({
        "Header": {"Event": event, "UserId": user, "RoomId": room},
    });
    if let Some(payload) = payload {
        packet["Payload"] = Value::String(payload);
    }
    packet.to_string()
}

impl World {
    /// What a session is sent is always a packet: a JSON object with a
    /// `Header` (an answer, a notice, or a broadcast as its sender wrote it).
    fn send(&mut self, session: usize, text: ByteString) {
        assert!(session < SESSIONS);
        let fields: BTreeMap<String, &RawValue> = match serde_json::from_str(&text) {
            Ok(fields) => fields,
            Err(error) => panic!("sent {text:?}, not a JSON object: {error}"),
        };
        assert!(
            fields.contains_key("Header"),
            "sent a packet without a Header: {text:?}"
        );
    }

    /// One message of a session, as the gateway's videre session handles it.
    fn message(&mut self, session: usize, text: &str) {
        let parsed = packet::parse(ByteString::from(text), 64 * 1024)
            .and_then(|p| p.check_ids(MAX_ID_BYTES).map(|()| p));
        let packet = match parsed {
            Ok(packet) => packet,
            Err(rejected) => return self.send(session, rejected.notice()),
        };
        match packet.event {
            PacketEvent::Connect => self.connect(session, &packet),
            PacketEvent::Disconnect => match self.sessions[session].take(&packet.room_id) {
                Some(membership) => self.leave(session, &membership.room),
                None => self.refuse(session, &packet, VidereError::NotJoined),
            },
            PacketEvent::Broadcast | PacketEvent::Ping => self.relay(session, &packet),
        }
    }

    fn refuse(&mut self, session: usize, packet: &Packet, error: VidereError) {
        let notice = packet::error_notice(&packet.user_id, &packet.room_id, &error);
        self.send(session, notice);
    }

    fn connect(&mut self, session: usize, packet: &Packet) {
        self.close(session);
        let room_id = packet.room_id.clone();
        let max = self.max_members;
        let room = self
            .rooms
            .entry(room_id.clone())
            .or_insert_with(|| Room::new(Arc::from(room_id.as_str()), max));
        let was_empty = room.is_empty();
        let before: Vec<usize> = room.members().iter().map(|m| m.session).collect();
        match room.join(session, Arc::from(packet.user_id.as_str()), session, packet) {
            Ok(joined) => {
                assert!(
                    joined.moved.is_none(),
                    "the session left every room before joining"
                );
                assert_eq!(
                    joined.initiator, was_empty,
                    "initiator iff the room was empty"
                );
                let members: Vec<usize> = room.members().iter().map(|m| m.session).collect();
                let mut expected = before.clone();
                expected.push(session);
                assert_eq!(members, expected, "the newcomer joins at the end");
                for member in members {
                    self.send(member, joined.announce.clone());
                }
                self.sessions[session].add(Membership {
                    room_id: Arc::from(room_id.as_str()),
                    user_id: Arc::from(packet.user_id.as_str()),
                    room: room_id,
                });
            }
            Err(error) => {
                assert_eq!(before.len(), max, "refused only when full");
                assert_eq!(room.members().len(), max, "a refusal changes nothing");
                self.refuse(session, packet, error);
            }
        }
    }

    fn relay(&mut self, session: usize, packet: &Packet) {
        let room_id = match self.sessions[session].target(packet, self.strict) {
            Ok(Target::Joined(room_id)) => room_id.clone(),
            Ok(Target::Elsewhere) => {
                assert!(!self.strict, "strict mode never looks elsewhere");
                if !self.rooms.contains_key(&packet.room_id) {
                    return self.refuse(session, packet, VidereError::NoSuchRoom);
                }
                packet.room_id.clone()
            }
            Err(error) => {
                assert!(self.strict, "lenient mode refuses no relay");
                return self.refuse(session, packet, error);
            }
        };
        let Some(room) = self.rooms.get(&room_id) else {
            panic!("a membership names a room that does not exist: {room_id:?}");
        };
        if packet.event == PacketEvent::Ping {
            let answer = room.ping(packet);
            self.send(session, answer);
        } else {
            let text = room.broadcast(packet);
            assert_eq!(&text, packet.text(), "a broadcast is passed on as sent");
            let members: Vec<usize> = room.members().iter().map(|m| m.link).collect();
            for member in members {
                self.send(member, text.clone());
            }
        }
    }

    fn leave(&mut self, session: usize, room_id: &str) {
        let Some(room) = self.rooms.get_mut(room_id) else {
            panic!("a membership names a room that does not exist: {room_id:?}");
        };
        let Some((member, notice)) = room.leave(session) else {
            panic!("session {session} held a membership of {room_id:?} but was not in it");
        };
        assert_eq!(member.session, session);
        let others: Vec<usize> = room.members().iter().map(|m| m.link).collect();
        if room.is_empty() {
            self.rooms.remove(room_id);
        }
        for other in others {
            self.send(other, notice.clone());
        }
    }

    /// The session's transport closed (or it sent `connect`): it leaves
    /// every room.
    fn close(&mut self, session: usize) {
        for membership in self.sessions[session].take_all() {
            self.leave(session, &membership.room);
        }
    }

    fn check(&self) {
        let mut seen_in = vec![None; SESSIONS];
        for (room_id, room) in &self.rooms {
            assert!(!room.is_empty(), "an empty room is gone");
            assert_eq!(&**room.room_id(), room_id.as_str());
            assert!(room.members().len() <= self.max_members, "member limit");
            for member in room.members() {
                assert!(
                    seen_in[member.session].is_none(),
                    "a session is in one room at most"
                );
                seen_in[member.session] = Some(room_id.clone());
                assert_eq!(member.link, member.session);
            }
        }
        for (session, memberships) in self.sessions.iter().enumerate() {
            assert!(
                memberships.len() <= 1,
                "connect leaves first: one room at most"
            );
            match &seen_in[session] {
                None => assert!(
                    memberships.is_empty(),
                    "memberships of a session in no room"
                ),
                Some(room_id) => {
                    let room = &self.rooms[room_id];
                    let member = room.members().iter().find(|m| m.session == session);
                    let user = member.map(|m| m.user_id.to_string()).unwrap_or_default();
                    // The membership names the room and the user it joined as:
                    // a strict broadcast from it under that user is accepted.
                    let probe = serde_json::json!({
                        "Header": {"Event": "ping", "UserId": user, "RoomId": room_id},
                    })
                    .to_string();
                    let probe = packet::parse(probe.into(), usize::MAX).expect("probe packet");
                    assert_eq!(
                        memberships.target(&probe, true),
                        Ok(Target::Joined(room_id)),
                        "the memberships know the room and user"
                    );
                }
            }
        }
    }

    /// Every room written as a cluster snapshot and rebuilt holds the same
    /// members in the same order under the same ids; the run goes on with
    /// the rebuilt rooms.
    fn snapshot_round_trip(&mut self) {
        for room in self.rooms.values_mut() {
            let bytes = room.snapshot(|&session| (1, session as u64));
            let restored = match Room::restore(&bytes, self.max_members, |(_, n)| n as usize, |s| s)
            {
                Ok(restored) => restored,
                Err(error) => panic!("a snapshot of a live room is refused: {error}"),
            };
            let view = |r: &Room| -> Vec<(usize, String, usize)> {
                r.members()
                    .iter()
                    .map(|m| (m.session, m.user_id.to_string(), m.link))
                    .collect()
            };
            assert_eq!(restored.room_id(), room.room_id());
            assert_eq!(
                view(&restored),
                view(room),
                "the snapshot restores the same room"
            );
            *room = restored;
        }
    }
}
