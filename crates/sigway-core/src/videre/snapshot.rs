//! Snapshots of a videre room's state, so that another node can adopt it.
//!
//! In cluster mode (`../shared/cluster.md`) the node that owns a videre
//! room writes the room's state to Redis after each join and leave; when
//! that node dies or stops, a survivor claims the room and rebuilds it from
//! the last snapshot, then makes the gone node's users leave (the others
//! receive their disconnect notices as for dropped sockets). A room's state
//! is its `RoomId` and its users in join order, each a session and the
//! `UserId` it joined under: that is all the rules read (the initiator
//! flag, who receives what, the ping list), so a rebuilt room answers every
//! later event as the original would. This module is the pure half:
//! [`RoomCore::snapshot`] writes a `VidereRoomSnapshot`
//! (`proto/cluster.proto`) and [`RoomCore::restore`] rebuilds the core
//! from one. Sessions are named by a [`SessionAddress`] (node, session
//! number) the gateway maps its own keys to and from; links are not
//! written down (the adopter reaches each member its own way). A snapshot
//! is input from outside the process: restore checks it whole and refuses
//! what no room could have written ([`SnapshotError`]).

use std::collections::HashSet;
use std::sync::Arc;

use prost::Message;

use crate::proto::cluster as wire;

use super::room::{Member, RoomCore};

/// What a snapshot calls a session: the node it is connected to and its
/// number there.
pub type SessionAddress = (u32, u64);

/// Why a snapshot could not be restored.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The bytes are not a `VidereRoomSnapshot`.
    #[error("undecodable videre room snapshot: {0}")]
    Undecodable(#[from] prost::DecodeError),
    /// The snapshot decodes but describes no room the rules could hold: a
    /// member without a session, a session in the room twice.
    #[error("inconsistent videre room snapshot: {0}")]
    Inconsistent(String),
}

impl<L, S: Copy + PartialEq> RoomCore<L, S> {
    /// The room's state, encoded: its `RoomId` and its members in join
    /// order, each as `address` names its session, with its `UserId`.
    /// `address` must name each session differently.
    pub fn snapshot(&self, address: impl Fn(&S) -> SessionAddress) -> Vec<u8> {
        wire::VidereRoomSnapshot {
            room_id: self.room_id().to_string(),
            members: self
                .members()
                .iter()
                .map(|member| {
                    let (node, number) = address(&member.session);
                    wire::VidereRoomMember {
                        session: Some(wire::PeerAddress { node, number }),
                        user_id: member.user_id.to_string(),
                    }
                })
                .collect(),
        }
        .encode_to_vec()
    }

    /// The room a snapshot describes, taking at most `max_members` members
    /// from now on. `session` maps each address back to a key (and must map
    /// different addresses to different keys); `link` is then called once
    /// per member, in join order, for how the room reaches it, and only
    /// when the whole snapshot is accepted. A room written with more
    /// members than `max_members` (the adopter's limit is lower) keeps them
    /// all and refuses joins until enough have left, as a room whose limit
    /// was lowered would.
    pub fn restore(
        bytes: &[u8],
        max_members: usize,
        session: impl Fn(SessionAddress) -> S,
        mut link: impl FnMut(S) -> L,
    ) -> Result<Self, SnapshotError> {
        let written = wire::VidereRoomSnapshot::decode(bytes)?;
        let mut seen = HashSet::with_capacity(written.members.len());
        let mut members = Vec::with_capacity(written.members.len());
        for member in &written.members {
            let address = member
                .session
                .as_ref()
                .map(|at| (at.node, at.number))
                .ok_or_else(|| SnapshotError::Inconsistent("a member without a session".into()))?;
            if !seen.insert(address) {
                return Err(SnapshotError::Inconsistent(format!(
                    "session {address:?} is in the room twice"
                )));
            }
            members.push((session(address), Arc::<str>::from(member.user_id.as_str())));
        }
        let members = members
            .into_iter()
            .map(|(session, user_id)| Member {
                session,
                user_id,
                link: link(session),
            })
            .collect();
        Ok(Self::with_members(
            written.room_id.into(),
            members,
            max_members,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use crate::error::{Refusal, VidereError};
    use crate::videre::packet::test_packet as packet;
    use crate::videre::room::SessionId;

    /// Test rooms reach each session through a link equal to its number.
    type TestRoom = RoomCore<SessionId, SessionId>;

    /// Sessions spread over three nodes.
    fn address(session: &SessionId) -> SessionAddress {
        ((*session % 3) as u32, *session)
    }

    fn key((_, number): SessionAddress) -> SessionId {
        number
    }

    fn restored(room: &TestRoom, max: usize) -> TestRoom {
        TestRoom::restore(&room.snapshot(address), max, key, |session| session)
            .expect("a room's own snapshot restores")
    }

    #[derive(Debug, Clone)]
    enum Op {
        Connect(SessionId, u8),
        Disconnect(SessionId),
        Broadcast(SessionId),
        Ping(SessionId),
    }

    fn op() -> impl Strategy<Value = Op> {
        let session = 0..7u64;
        prop_oneof![
            3 => (session.clone(), 0..4u8).prop_map(|(s, u)| Op::Connect(s, u)),
            2 => session.clone().prop_map(Op::Disconnect),
            1 => session.clone().prop_map(Op::Broadcast),
            1 => session.prop_map(Op::Ping),
        ]
    }

    /// What one event makes the room send, as the gateway's room actor
    /// sends it: `(link, text)` in order, plus a refusal if any.
    fn apply(room: &mut TestRoom, op: &Op) -> Vec<(SessionId, String)> {
        let mut out = Vec::new();
        let to_all = |room: &TestRoom, text: &str, out: &mut Vec<(SessionId, String)>| {
            for member in room.members() {
                out.push((member.link, text.to_owned()));
            }
        };
        match *op {
            Op::Connect(session, user) => {
                let user = format!("u{user}");
                let connect = packet("connect", &user, room.room_id());
                match room.join(session, user.as_str().into(), session, &connect) {
                    Ok(joined) => {
                        if let Some(notice) = &joined.moved {
                            for member in room.members().iter().filter(|m| m.session != session) {
                                out.push((member.link, notice.to_string()));
                            }
                        }
                        to_all(room, &joined.announce, &mut out);
                    }
                    Err(error) => out.push((session, format!("refused: {error}"))),
                }
            }
            Op::Disconnect(session) => {
                if let Some((_, notice)) = room.leave(session) {
                    to_all(room, &notice, &mut out);
                }
            }
            Op::Broadcast(session) => {
                if room.contains(session) {
                    let text = room.broadcast(&packet("broadcast", "x", room.room_id()));
                    to_all(room, &text, &mut out);
                }
            }
            Op::Ping(session) => {
                if room.contains(session) {
                    let answer = room.ping(&packet("ping", "x", room.room_id()));
                    out.push((session, answer.to_string()));
                }
            }
        }
        out
    }

    fn room_after(ops: &[Op], max: usize) -> TestRoom {
        let mut room = TestRoom::new("r\u{e9}".into(), max);
        for op in ops {
            apply(&mut room, op);
        }
        room
    }

    fn users(room: &TestRoom) -> Vec<(SessionId, String)> {
        room.members()
            .iter()
            .map(|m| (m.session, m.user_id.to_string()))
            .collect()
    }

    /// Runs `ops` on both rooms: they must send the same texts to the same
    /// links and hold the same users after each event.
    fn run_both(
        original: &mut TestRoom,
        copy: &mut TestRoom,
        ops: &[Op],
    ) -> Result<(), TestCaseError> {
        prop_assert_eq!(copy.room_id(), original.room_id());
        prop_assert_eq!(users(copy), users(original));
        for op in ops {
            let (expected, got) = (apply(original, op), apply(copy, op));
            prop_assert_eq!(got, expected, "after {:?}", op);
            prop_assert_eq!(users(copy), users(original));
            prop_assert_eq!(copy.is_empty(), original.is_empty());
        }
        Ok(())
    }

    #[test]
    fn a_restored_room_keeps_its_users_in_join_order_and_answers_as_the_original() {
        let mut room = TestRoom::new("call".into(), 3);
        for op in [
            Op::Connect(4, 1),
            Op::Connect(2, 2),
            Op::Connect(9, 1), // the same UserId twice
            Op::Disconnect(2),
            Op::Connect(5, 0),
        ] {
            apply(&mut room, &op);
        }
        let mut copy = restored(&room, 3);
        assert_eq!(
            users(&copy),
            [(4, "u1".into()), (9, "u1".into()), (5, "u0".into())]
        );
        let next = [
            Op::Ping(9),
            Op::Connect(6, 3), // full: refused with the same limit
            Op::Connect(4, 2), // moves to the end, keeps its place
            Op::Broadcast(5),
            Op::Disconnect(9),
            Op::Connect(6, 3),
            Op::Ping(6),
        ];
        run_both(&mut room, &mut copy, &next).expect("alike");
    }

    #[test]
    fn an_empty_room_and_an_empty_room_id_restore() {
        let room = TestRoom::new("".into(), 2);
        let mut copy = restored(&room, 2);
        assert!(copy.is_empty() && copy.room_id().is_empty());
        let joined = copy
            .join(1, "a".into(), 1, &packet("connect", "a", ""))
            .expect("joins");
        assert!(joined.initiator, "the first user of an empty room");
    }

    #[test]
    fn a_lower_limit_keeps_every_user_and_refuses_newcomers() {
        let room = room_after(
            &[Op::Connect(1, 0), Op::Connect(2, 1), Op::Connect(3, 2)],
            5,
        );
        let mut copy = restored(&room, 2);
        assert_eq!(copy.members().len(), 3, "nobody is pushed out");
        let refused = copy.join(4, "n".into(), 4, &packet("connect", "n", "r\u{e9}"));
        assert_eq!(
            refused.expect_err("over the limit"),
            VidereError::Refused(Refusal::RoomFull(2))
        );
        copy.leave(1);
        copy.leave(2);
        assert!(
            copy.join(4, "n".into(), 4, &packet("connect", "n", "r\u{e9}"))
                .is_ok()
        );
    }

    #[test]
    fn the_adopter_names_sessions_and_links_its_own_way() {
        let room = room_after(&[Op::Connect(3, 0), Op::Connect(1, 1)], 5);
        let bytes = room.snapshot(address);
        let mut linked = Vec::new();
        let copy: RoomCore<String, (u32, u64)> = RoomCore::restore(
            &bytes,
            5,
            |at| at,
            |session| {
                linked.push(session);
                format!("link to {}.{}", session.0, session.1)
            },
        )
        .expect("restores");
        assert_eq!(linked, [(0, 3), (1, 1)], "once per member, in join order");
        assert_eq!(copy.members()[1].link, "link to 1.1");
    }

    #[test]
    fn inconsistent_or_undecodable_snapshots_are_refused_before_any_link() {
        let member = |session: Option<(u32, u64)>| wire::VidereRoomMember {
            session: session.map(|(node, number)| wire::PeerAddress { node, number }),
            user_id: "u".into(),
        };
        let without_session = wire::VidereRoomSnapshot {
            room_id: "r".into(),
            members: vec![member(Some((1, 1))), member(None)],
        };
        let twice = wire::VidereRoomSnapshot {
            room_id: "r".into(),
            members: vec![
                member(Some((1, 1))),
                member(Some((2, 1))),
                member(Some((1, 1))),
            ],
        };
        for (bytes, what) in [
            (without_session.encode_to_vec(), "without a session"),
            (twice.encode_to_vec(), "twice"),
        ] {
            let mut linked = 0;
            let result: Result<TestRoom, _> = RoomCore::restore(&bytes, 5, key, |s| {
                linked += 1;
                s
            });
            let error = result.expect_err(what);
            assert!(
                matches!(&error, SnapshotError::Inconsistent(why) if why.contains(what)),
                "{error}"
            );
            assert_eq!(linked, 0, "no member is linked from a refused snapshot");
        }
        // A string that is not UTF-8 (prost refuses it).
        let result: Result<TestRoom, _> = RoomCore::restore(b"\x0a\x02\xff\xfe", 5, key, |s| s);
        assert!(matches!(result, Err(SnapshotError::Undecodable(_))));
    }

    proptest! {
        /// A room restored midway sends what the original sends, to the
        /// same sessions, for any continuation: joins (with moves and the
        /// limit), leaves, broadcasts and pings.
        #[test]
        fn a_room_restored_midway_answers_as_the_original(
            before in prop::collection::vec(op(), 0..40),
            after in prop::collection::vec(op(), 0..40),
            max in 1usize..6,
        ) {
            let mut room = room_after(&before, max);
            let mut copy = restored(&room, max);
            run_both(&mut room, &mut copy, &after)?;
        }

        /// The users of a dead node leave the restored room: the others
        /// hear what they would have, had those sockets dropped on the
        /// original, and the room goes on alike.
        #[test]
        fn a_dead_nodes_users_leaving_a_restored_room_send_what_they_would_have(
            before in prop::collection::vec(op(), 0..40),
            after in prop::collection::vec(op(), 0..20),
            dead in 0u32..3,
            max in 1usize..6,
        ) {
            let mut room = room_after(&before, max);
            let mut copy = restored(&room, max);
            let leaving: Vec<Op> = room
                .members()
                .iter()
                .filter(|m| address(&m.session).0 == dead)
                .map(|m| Op::Disconnect(m.session))
                .collect();
            run_both(&mut room, &mut copy, &leaving)?;
            prop_assert!(copy.members().iter().all(|m| address(&m.session).0 != dead));
            run_both(&mut room, &mut copy, &after)?;
        }

        #[test]
        fn arbitrary_bytes_never_make_restore_panic(
            bytes in prop::collection::vec(any::<u8>(), 0..256),
            after in prop::collection::vec(op(), 0..20),
        ) {
            if let Ok(mut copy) = TestRoom::restore(&bytes, 3, key, |s| s) {
                for op in &after {
                    apply(&mut copy, op);
                }
            }
        }

        /// A snapshot with members duplicated, dropped or stripped of their
        /// session, then bytes flipped, is refused or gives a room that
        /// runs (each session in it once).
        #[test]
        fn a_damaged_snapshot_is_refused_or_runs(
            before in prop::collection::vec(op(), 1..30),
            after in prop::collection::vec(op(), 0..20),
            damages in prop::collection::vec((0u8..4, any::<usize>()), 1..4),
            flips in prop::collection::vec((any::<usize>(), any::<u8>()), 0..3),
        ) {
            let room = room_after(&before, 4);
            let mut written = wire::VidereRoomSnapshot::decode(&*room.snapshot(address))
                .expect("decodes");
            for &(kind, at) in &damages {
                let len = written.members.len();
                if len == 0 {
                    break;
                }
                let at = at % len;
                match kind {
                    0 => {
                        let copy = written.members[at].clone();
                        written.members.push(copy);
                    }
                    1 => drop(written.members.remove(at)),
                    2 => written.members[at].session = None,
                    _ => written.members[at].user_id.push('\u{0}'),
                }
            }
            let mut bytes = written.encode_to_vec();
            for &(at, mask) in &flips {
                if !bytes.is_empty() {
                    let at = at % bytes.len();
                    bytes[at] ^= mask;
                }
            }
            // Flipped bytes may give two addresses one number: sessions
            // are numbered by first appearance instead, one per address.
            let numbers = std::cell::RefCell::new(std::collections::HashMap::new());
            let intern = |at: SessionAddress| {
                let mut numbers = numbers.borrow_mut();
                let next = numbers.len() as SessionId;
                *numbers.entry(at).or_insert(next)
            };
            if let Ok(mut copy) = TestRoom::restore(&bytes, 4, intern, |s| s) {
                let sessions: HashSet<SessionId> =
                    copy.members().iter().map(|m| m.session).collect();
                prop_assert_eq!(sessions.len(), copy.members().len());
                for op in &after {
                    apply(&mut copy, op);
                }
            }
        }
    }
}
