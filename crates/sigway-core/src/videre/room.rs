//! The rules of one videre room ([`RoomCore`]), pure.
//!
//! The core keeps the members in join order, each a `(session, user id,
//! link)`, and answers every event with the text to send: a connect is
//! announced to every member (the newcomer included) with `"true"` when the
//! room was empty, a broadcast goes to every member unchanged, a ping is
//! answered with the user ids in join order, a leave is announced to the
//! remaining members. It is generic over the session key and the link, so
//! the gateway's room actor keeps its members' sinks in it and tests drive
//! it with plain numbers.

use std::sync::Arc;

use bytestring::ByteString;

use crate::error::{Refusal, VidereError};

use super::packet::{self, Packet};

/// How tests name sessions (the gateway uses its member ids).
pub type SessionId = u64;

/// One user in a room.
#[derive(Debug, Clone)]
pub struct Member<L, S = SessionId> {
    /// The session that joined.
    pub session: S,
    /// The `UserId` it joined under.
    pub user_id: Arc<str>,
    /// How the room reaches the session (the gateway's sink).
    pub link: L,
}

/// A successful join: the connect answer every member receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// The room was empty: the newcomer is its initiator (`"true"`).
    pub initiator: bool,
    /// The connect packet every member receives, `Payload` swapped.
    pub announce: ByteString,
    /// The session was already in and moved to the end: the disconnect
    /// notice every other member receives first.
    pub moved: Option<ByteString>,
}

/// The rules of one room, free of I/O.
#[derive(Debug)]
pub struct RoomCore<L, S = SessionId> {
    room_id: Arc<str>,
    members: Vec<Member<L, S>>,
    max_members: usize,
}

impl<L, S: Copy + PartialEq> RoomCore<L, S> {
    /// An empty room that takes at most `max_members` members.
    pub fn new(room_id: Arc<str>, max_members: usize) -> Self {
        Self {
            room_id,
            members: Vec::new(),
            max_members,
        }
    }

    /// A room holding `members` already, in join order (a room rebuilt
    /// from its snapshot, see [`snapshot`](super::snapshot)).
    pub(super) fn with_members(
        room_id: Arc<str>,
        members: Vec<Member<L, S>>,
        max_members: usize,
    ) -> Self {
        Self {
            room_id,
            members,
            max_members,
        }
    }

    /// The room's `RoomId`.
    pub fn room_id(&self) -> &Arc<str> {
        &self.room_id
    }

    /// Members in join order.
    pub fn members(&self) -> &[Member<L, S>] {
        &self.members
    }

    /// No one is in: the room disappears.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The session is in the room.
    pub fn contains(&self, session: S) -> bool {
        self.members.iter().any(|m| m.session == session)
    }

    /// `session` enters under `user_id`; its `connect` packet is announced to
    /// every member (itself included). A session already in leaves first
    /// (the others are told, as for a disconnect) and moves to the end of
    /// the join order; it keeps its place under the member limit.
    pub fn join(
        &mut self,
        session: S,
        user_id: Arc<str>,
        link: L,
        connect: &Packet,
    ) -> Result<Joined, VidereError> {
        let moved = self.leave(session).map(|(_, notice)| notice);
        if self.members.len() >= self.max_members {
            return Err(Refusal::RoomFull(self.max_members).into());
        }
        let initiator = self.members.is_empty();
        self.members.push(Member {
            session,
            user_id,
            link,
        });
        Ok(Joined {
            initiator,
            announce: connect.connect_answer(initiator),
            moved,
        })
    }

    /// `session` leaves; the returned notice goes to every remaining member.
    /// `None` when it was not in the room.
    pub fn leave(&mut self, session: S) -> Option<(Member<L, S>, ByteString)> {
        let index = self.members.iter().position(|m| m.session == session)?;
        let member = self.members.remove(index);
        let notice = packet::disconnect_notice(&member.user_id, &self.room_id);
        Some((member, notice))
    }

    /// What every member receives for a broadcast: the packet as sent.
    pub fn broadcast(&self, packet: &Packet) -> ByteString {
        packet.text().clone()
    }

    /// The answer to a ping, for its sender only.
    pub fn ping(&self, packet: &Packet) -> ByteString {
        packet.ping_answer(self.members.iter().map(|m| &*m.user_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use crate::videre::packet::test_packet as packet;

    fn payload(text: &ByteString) -> String {
        let value: serde_json::Value = serde_json::from_str(text).expect("json");
        value["Payload"]
            .as_str()
            .expect("string payload")
            .to_owned()
    }

    fn room(max: usize) -> RoomCore<()> {
        RoomCore::new("r".into(), max)
    }

    #[test]
    fn first_user_is_the_initiator_and_later_ones_are_not() {
        let mut core = room(10);
        let a = core
            .join(1, "a".into(), (), &packet("connect", "a", "r"))
            .expect("join");
        let b = core
            .join(2, "b".into(), (), &packet("connect", "b", "r"))
            .expect("join");
        assert!(a.initiator && !b.initiator);
        assert_eq!(payload(&a.announce), "true");
        assert_eq!(payload(&b.announce), "false");
    }

    #[test]
    fn ping_lists_user_ids_in_join_order_with_duplicates() {
        let mut core = room(10);
        for (session, user) in [(1, "b"), (2, "a"), (3, "b")] {
            core.join(session, user.into(), (), &packet("connect", user, "r"))
                .expect("join");
        }
        assert_eq!(
            payload(&core.ping(&packet("ping", "a", "r"))),
            r#"["b","a","b"]"#
        );
    }

    #[test]
    fn leaving_announces_the_user_to_the_rest_and_rejoining_moves_to_the_end() {
        let mut core = room(10);
        for (session, user) in [(1, "a"), (2, "b")] {
            core.join(session, user.into(), (), &packet("connect", user, "r"))
                .expect("join");
        }
        let (member, notice) = core.leave(1).expect("was in");
        assert_eq!(&*member.user_id, "a");
        assert_eq!(
            &*notice,
            r#"{"Header":{"Event":"disconnect","UserId":"a","RoomId":"r"},"Payload":""}"#
        );
        assert!(core.leave(1).is_none(), "a second leave is a no-op");
        let again = core
            .join(1, "a".into(), (), &packet("connect", "a", "r"))
            .expect("join");
        assert!(!again.initiator, "b is still there");
        let order: Vec<&str> = core.members().iter().map(|m| &*m.user_id).collect();
        assert_eq!(order, ["b", "a"]);
    }

    #[test]
    fn joining_again_moves_to_the_end_after_a_notice_and_keeps_the_place() {
        let mut core = room(2);
        for (session, user) in [(1, "a"), (2, "b")] {
            core.join(session, user.into(), (), &packet("connect", user, "r"))
                .expect("join");
        }
        let again = core
            .join(1, "a2".into(), (), &packet("connect", "a2", "r"))
            .expect("a full room still takes back its own member");
        assert_eq!(
            again.moved.as_deref(),
            Some(r#"{"Header":{"Event":"disconnect","UserId":"a","RoomId":"r"},"Payload":""}"#)
        );
        assert!(!again.initiator);
        let order: Vec<&str> = core.members().iter().map(|m| &*m.user_id).collect();
        assert_eq!(order, ["b", "a2"]);
    }

    #[test]
    fn a_full_room_refuses_with_room_full() {
        let mut core = room(1);
        core.join(1, "a".into(), (), &packet("connect", "a", "r"))
            .expect("join");
        let err = core
            .join(2, "b".into(), (), &packet("connect", "b", "r"))
            .expect_err("full");
        assert_eq!(err, VidereError::Refused(Refusal::RoomFull(1)));
        assert_eq!(core.members().len(), 1);
    }

    #[test]
    fn broadcast_is_the_text_as_received() {
        let core = room(10);
        let p = packet("broadcast", "a", "r");
        assert_eq!(core.broadcast(&p), *p.text());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Connect(SessionId, u8),
        Disconnect(SessionId),
        Broadcast,
        Ping,
    }

    fn op() -> impl Strategy<Value = Op> {
        let session = 0..6u64;
        prop_oneof![
            (session.clone(), 0..4u8).prop_map(|(s, u)| Op::Connect(s, u)),
            session.prop_map(Op::Disconnect),
            Just(Op::Broadcast),
            Just(Op::Ping),
        ]
    }

    proptest! {
        /// Random event sequences against a plain model: join order, the
        /// initiator flag, who receives what, and when the room is empty.
        #[test]
        fn room_follows_the_model(ops in proptest::collection::vec(op(), 0..60), max in 1usize..5) {
            let mut core: RoomCore<SessionId> = RoomCore::new("r".into(), max);
            let mut model: Vec<(SessionId, String)> = Vec::new();
            let mut departed: Vec<SessionId> = Vec::new();
            let recipients = |core: &RoomCore<SessionId>| -> Vec<SessionId> {
                core.members().iter().map(|m| m.link).collect()
            };
            for op in ops {
                match op {
                    Op::Connect(s, u) => {
                        let user = format!("u{u}");
                        if let Some((member, notice)) = core.leave(s) {
                            prop_assert_eq!(payload(&notice), "");
                            prop_assert_eq!(&*member.user_id, user_of(&model, s));
                            model.retain(|(m, _)| *m != s);
                        }
                        let result = core.join(s, user.as_str().into(), s, &packet("connect", &user, "r"));
                        if model.len() >= max {
                            prop_assert!(result.is_err());
                            departed.push(s);
                        } else {
                            let joined = result.expect("room has space");
                            prop_assert_eq!(joined.initiator, model.is_empty());
                            model.push((s, user));
                            departed.retain(|d| *d != s);
                        }
                    }
                    Op::Disconnect(s) => {
                        let was_in = model.iter().any(|(m, _)| *m == s);
                        prop_assert_eq!(core.leave(s).is_some(), was_in);
                        model.retain(|(m, _)| *m != s);
                        departed.push(s);
                    }
                    Op::Broadcast => {
                        let p = packet("broadcast", "x", "r");
                        prop_assert_eq!(&core.broadcast(&p), p.text());
                        let to = recipients(&core);
                        prop_assert!(to.iter().all(|r| !departed.contains(r)));
                    }
                    Op::Ping => {
                        let ids: Vec<&str> = model.iter().map(|(_, u)| u.as_str()).collect();
                        let expected = serde_json::to_string(&ids).expect("ids");
                        prop_assert_eq!(payload(&core.ping(&packet("ping", "x", "r"))), expected);
                    }
                }
                let order: Vec<SessionId> = model.iter().map(|(s, _)| *s).collect();
                prop_assert_eq!(recipients(&core), order);
                prop_assert_eq!(core.is_empty(), model.is_empty());
            }
        }
    }

    fn user_of(model: &[(SessionId, String)], session: SessionId) -> &str {
        model
            .iter()
            .find(|(s, _)| *s == session)
            .map_or("", |(_, u)| u.as_str())
    }
}
