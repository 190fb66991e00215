//! videre rooms across the nodes of a cluster: how a member connected to
//! one node takes part in a room its owner node runs
//! (`../shared/cluster.md`, option A).
//!
//! [`VidereRoom`] is [`Portable`]: a session joining a room owned elsewhere
//! is exported as its [`MemberId`] and its `connect` packet (the `UserId`
//! is the packet's own), and the owner rebuilds a [`Joiner`] whose
//! [`MemberLink`] and [`Outcome`] reach the member's node through the room
//! layer's [`RemoteSink`]. The session then forwards its `broadcast` and
//! `ping` packets as its client sent them (the owner parses them again);
//! a leave travels as the room layer's own leave. What the owner sends the
//! member (every packet, and the join's outcome) comes back in [`wire`]'s
//! encoding and is handed to [`AwayMember`], which pushes packets to the
//! session's SockJS link and answers the session awaiting its join.
//!
//! When the owner node is gone (it died or stopped), a node with members
//! in the room adopts it from the snapshot the owner wrote after each join
//! and leave (`sigway_core::videre::snapshot`): the users stay in join
//! order, this node's sessions are reached again through their own links
//! (taken back from their [`AwayMember`]), the other nodes' through the
//! room layer, and the gone node's users leave once the room runs, so that
//! the others receive their disconnect notices as for dropped sockets.
//! Only when the room cannot be rebuilt are its members told it moved
//! (1012, [`AwayMember::lost`]) and join again.
//!
//! Lenient mode (`videre.strict = false`) lets a session broadcast into a
//! room it has not joined, found with `Rooms::find`: that lookup sees only
//! the rooms this node runs, so in a cluster it is local only. Strict mode
//! (the default) works across nodes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use bytestring::ByteString;
use sigway_core::redact::ShownKey;

use crate::error::{Refusal, VidereError};
use crate::rooms::{
    Away, Exported, InFlight, Inbound, LocalRoom, MemberId, Portable, Reach, RemoteSink, RoomHome,
};
use sigway_core::videre::packet::Event;
use sigway_core::videre::room::RoomCore;

use super::room::{Broadcast, Joiner, MemberLink, Outcome, Ping, VidereEvent, VidereRoom};

impl Portable for VidereRoom {
    fn export(member: Joiner) -> Exported {
        let Joiner {
            session,
            connect,
            link,
            outcome,
            credit,
        } = member;
        Exported {
            id: session,
            info: connect.map_or_else(Vec::new, |connect| wire::joiner_info(&connect)),
            away: Box::new(AwayMember {
                link,
                outcome: Mutex::new(Some(outcome)),
                credit: credit.clone(),
            }),
            credit,
        }
    }

    fn import(id: MemberId, info: &[u8], sink: RemoteSink) -> Joiner {
        let connect = wire::connect_of(info);
        if connect.is_none() {
            tracing::warn!(member = %id, "videre joiner from another node without a valid connect packet");
        }
        Joiner {
            session: id,
            connect,
            link: MemberLink::Away(sink.clone()),
            outcome: Outcome::Away(sink),
            credit: None,
        }
    }

    fn forward(room: &LocalRoom<Self>, id: MemberId, frame: Bytes) {
        // The member's node checked the packet (size, ids, strict mode)
        // before forwarding it; parsing it again gives the same packet.
        let Some(packet) = wire::packet_of(frame) else {
            tracing::debug!(member = %id, "forwarded videre packet not decodable here");
            return;
        };
        match packet.event {
            Event::Broadcast => room.push(Inbound::Event(VidereEvent::Broadcast(Broadcast {
                packet,
                from: id,
                credit: None,
                received: None,
            }))),
            Event::Ping => room.push(Inbound::Event(VidereEvent::Ping(Ping {
                packet,
                from: id,
                reply: None,
                credit: None,
            }))),
            // Joins and leaves travel as the room layer's attach and leave.
            Event::Connect | Event::Disconnect => {
                tracing::debug!(member = %id, event = %packet.event, "forwarded videre packet ignored");
            }
        }
    }

    fn refused(refusal: Refusal) -> Bytes {
        wire::encode(&wire::Delivery::Refused(refusal.into()))
    }

    /// Rebuilds the room its gone owner wrote down, users in join order.
    /// A member connected here gets its own link back (a join still
    /// awaiting its answer is answered: the snapshot holds it, so the room
    /// took it); a member of another node is reached through the cluster;
    /// a gone member leaves once the room runs (the room layer sees to
    /// it). `None` (the members are then bounced) for a snapshot that does
    /// not decode, names another room, or holds nobody.
    fn restore(
        key: Arc<str>,
        home: RoomHome,
        snapshot: &[u8],
        reach: &mut dyn FnMut(MemberId) -> Reach,
    ) -> Option<(Self, Vec<MemberId>)> {
        let limit = home.settings.limits.max_members_per_room;
        let session = |(node, local)| MemberId { node, local };
        let mut adopted_credit = HashMap::new();
        let mut foreign = false;
        // This node's ends, taken from the room layer: answered once the
        // room is adopted, told it is lost otherwise.
        let mut taken: Vec<Box<AwayMember>> = Vec::new();
        let link = |id: MemberId| match reach(id) {
            Reach::Here(away) => match away.into_any().downcast::<AwayMember>() {
                Ok(away) => {
                    if let Some(credit) = &away.credit {
                        adopted_credit.insert(id, credit.clone());
                    }
                    let link = away.link.clone();
                    taken.push(away);
                    link
                }
                Err(_) => {
                    // Not a videre session's end: cannot happen for a room
                    // of this kind; refuse the snapshot rather than guess.
                    foreign = true;
                    MemberLink::Gone
                }
            },
            Reach::There(remote) => MemberLink::Away(remote),
            Reach::Gone => MemberLink::Gone,
        };
        let core: RoomCore<MemberLink, MemberId> = match RoomCore::restore(
            snapshot, limit, session, link,
        ) {
            Ok(core) => core,
            Err(error) => {
                // Refused before any member was reached: the room
                // layer bounces them all.
                tracing::warn!(room = %ShownKey::new(&key, home.settings.log.show_keys), %error, "unusable videre room snapshot");
                return None;
            }
        };
        if foreign || core.room_id() != &key || core.is_empty() {
            tracing::warn!(
                room = %ShownKey::new(&key, home.settings.log.show_keys),
                snapshot_room = %ShownKey::new(core.room_id(), home.settings.log.show_keys),
                members = core.members().len(),
                "videre room snapshot not adopted (a stranger's end, another room, or nobody in it)"
            );
            for away in taken {
                away.lost();
            }
            return None;
        }
        // A join still awaiting its answer: the snapshot holds it, so the
        // room took it (the answer was lost with the owner).
        for away in taken {
            if let Some(outcome) = away.take_outcome() {
                outcome.tell(Ok(()));
            }
        }
        let members = core.members().iter().map(|member| member.session).collect();
        Some((VidereRoom::adopted(core, home, adopted_credit), members))
    }
}

/// The session end of a member whose room runs on another node: packets
/// go to the session's link, the join's outcome to the session awaiting it.
pub(crate) struct AwayMember {
    link: MemberLink,
    /// Taken by the first outcome: joined, refused, or the room lost.
    outcome: Mutex<Option<Outcome>>,
    /// The session's credit, which the room gives back once this node
    /// adopts it (the session's events then stay here).
    credit: Option<Arc<InFlight>>,
}

impl AwayMember {
    fn take_outcome(&self) -> Option<Outcome> {
        // Only ever a take: a panic cannot leave it half-updated.
        self.outcome
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }

    fn answer(&self, result: Result<(), VidereError>) {
        match self.take_outcome() {
            Some(outcome) => outcome.tell(result),
            None => tracing::debug!("videre join outcome from another node arrived twice; dropped"),
        }
    }
}

impl Away for AwayMember {
    fn deliver(&self, outbound: &[u8]) {
        match wire::decode(outbound) {
            // A full queue closes the session (the SockJS layer does it).
            Some(wire::Delivery::Message(text)) => drop(self.link.send(text)),
            Some(wire::Delivery::Joined) => self.answer(Ok(())),
            Some(wire::Delivery::Refused(error)) => self.answer(Err(error)),
            None => tracing::warn!("undecodable videre delivery from the room's node dropped"),
        }
    }

    /// The room's node is gone and the room could not be rebuilt (no
    /// usable snapshot, or this member joined after the last one): a join
    /// still waiting is refused; a member is closed with 1012 ("room
    /// moved"), so that its client connects and joins again.
    fn lost(&self) {
        match self.take_outcome() {
            Some(outcome) => outcome.tell(Err(Refusal::RoomMoved.into())),
            None => self.link.close(&Refusal::RoomMoved),
        }
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send> {
        self
    }
}

/// What travels between nodes for a videre member, in both directions.
///
/// To the owner: the joiner's `info` is its `connect` packet's text, as
/// the client sent it (the `UserId` is the packet's own), and each event is
/// the packet's text. Back to the member's node, a [`Delivery`] is one tag
/// byte followed by its body:
///
/// | tag | delivery | body |
/// |---|---|---|
/// | 0 | a packet for the client | its UTF-8 text |
/// | 1 | the join succeeded | empty |
/// | 2 | the join was refused | the refusal (`Refusal::to_wire`: tag, limit) |
///
/// A room only refuses a join for a limit; any other error travels as
/// "internal". Decoding never panics: anything else is `None`.
pub(crate) mod wire {
    use super::*;
    use sigway_core::videre::packet::{self, Packet};

    const MESSAGE: u8 = 0;
    const JOINED: u8 = 1;
    const REFUSED: u8 = 2;

    /// What a room sends a member of another node.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(crate) enum Delivery {
        /// A packet for the client (announce, broadcast, ping answer,
        /// disconnect or error notice).
        Message(ByteString),
        /// The room took the joiner.
        Joined,
        /// The room (or its node) refused the joiner.
        Refused(VidereError),
    }

    pub(crate) fn encode(delivery: &Delivery) -> Bytes {
        match delivery {
            Delivery::Message(text) => {
                let mut bytes = Vec::with_capacity(1 + text.len());
                bytes.push(MESSAGE);
                bytes.extend_from_slice(text.as_bytes());
                bytes.into()
            }
            Delivery::Joined => Bytes::from_static(&[JOINED]),
            Delivery::Refused(error) => {
                let refusal = match error {
                    VidereError::Refused(refusal) => refusal,
                    _ => &Refusal::Internal,
                };
                let mut bytes = vec![REFUSED];
                bytes.extend_from_slice(&refusal.to_wire());
                bytes.into()
            }
        }
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Delivery> {
        let (&tag, rest) = bytes.split_first()?;
        Some(match tag {
            MESSAGE => {
                let text = std::str::from_utf8(rest).ok()?;
                Delivery::Message(ByteString::from(text))
            }
            JOINED if rest.is_empty() => Delivery::Joined,
            REFUSED => Delivery::Refused(Refusal::from_wire(rest)?.into()),
            _ => return None,
        })
    }

    /// The joiner's `info`: its connect packet as the client sent it.
    pub(crate) fn joiner_info(connect: &Packet) -> Vec<u8> {
        connect.text().as_bytes().to_vec()
    }

    /// The connect packet of a joiner's `info`; `None` unless it is one.
    pub(crate) fn connect_of(info: &[u8]) -> Option<Packet> {
        packet_of(Bytes::copy_from_slice(info)).filter(|packet| packet.event == Event::Connect)
    }

    /// A packet forwarded by the member's node, which already checked its
    /// size and ids against the same settings.
    pub(crate) fn packet_of(frame: Bytes) -> Option<Packet> {
        let text = ByteString::try_from(frame).ok()?;
        packet::parse(text, usize::MAX).ok()
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn round_trip(delivery: Delivery) {
            assert_eq!(decode(&encode(&delivery)), Some(delivery));
        }

        #[test]
        fn every_delivery_survives_the_trip() {
            round_trip(Delivery::Message(ByteString::from(
                r#"{"Header":{"Event":"connect","UserId":"é\u0000","RoomId":""},"Payload":"true"}"#,
            )));
            round_trip(Delivery::Message(ByteString::new()));
            round_trip(Delivery::Joined);
            for refusal in [
                Refusal::TooManyConnections(3),
                Refusal::TooManyFromAddress(2),
                Refusal::TooManyRooms(100_000),
                Refusal::RoomFull(2),
                Refusal::Internal,
                Refusal::ClusterUnavailable,
                Refusal::RoomMoved,
            ] {
                round_trip(Delivery::Refused(refusal.into()));
            }
        }

        #[test]
        fn errors_other_than_refusals_travel_as_internal() {
            let back = decode(&encode(&Delivery::Refused(VidereError::NotJoined)));
            assert_eq!(back, Some(Delivery::Refused(Refusal::Internal.into())));
        }

        #[test]
        fn garbage_is_refused_without_a_panic() {
            for garbage in [
                &b""[..],
                b"\x00\xff\xfe",
                b"\x01x",
                b"\x02",
                b"\x02\x03",
                b"\x02\x03\0\0\0",
                b"\x02\x03\0\0\0\0\0\0\0\0\0",
                b"\x02\x09\0\0\0\0\0\0\0\0",
                b"\x03",
                b"\xff hello",
            ] {
                assert_eq!(decode(garbage), None, "{garbage:?}");
            }
        }

        #[test]
        fn a_joiner_travels_as_its_connect_packet() {
            let text =
                r#"{"Header":{"Event":"connect","UserId":"u","RoomId":"r","x":1},"Payload":"{}"}"#;
            let connect = packet::parse(text.into(), 1 << 20).expect("valid");
            let info = joiner_info(&connect);
            assert_eq!(connect_of(&info), Some(connect));
            let broadcast = br#"{"Header":{"Event":"broadcast","UserId":"u","RoomId":"r"}}"#;
            assert_eq!(connect_of(broadcast), None, "only a connect is a joiner");
            for garbage in [&b""[..], b"\xff\xfe", b"{", b"[]", b"null"] {
                assert_eq!(connect_of(garbage), None, "{garbage:?}");
                assert_eq!(packet_of(Bytes::copy_from_slice(garbage)), None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sigway_sockjs::Queue;
    use sigway_sockjs::{Outgoing, SessionLink};
    use tokio::sync::oneshot;

    fn away() -> (
        AwayMember,
        Queue<Outgoing>,
        oneshot::Receiver<Result<(), VidereError>>,
    ) {
        let (link, outgoing) = SessionLink::channel(8);
        let (outcome, answer) = oneshot::channel();
        let member = AwayMember {
            link: MemberLink::Here(link),
            outcome: Mutex::new(Some(Outcome::Here(outcome))),
            credit: None,
        };
        (member, outgoing, answer)
    }

    fn message(text: &str) -> Vec<u8> {
        wire::encode(&wire::Delivery::Message(ByteString::from(text))).to_vec()
    }

    #[test]
    fn packets_reach_the_session_and_the_join_is_answered_once() {
        let (member, mut outgoing, mut answer) = away();
        member.deliver(&message("announce"));
        member.deliver(&wire::encode(&wire::Delivery::Joined));
        member.deliver(&wire::encode(&wire::Delivery::Refused(
            Refusal::RoomFull(2).into(),
        )));
        member.deliver(b"\xffgarbage");
        member.deliver(&message("broadcast"));
        assert_eq!(answer.try_recv(), Ok(Ok(())), "the first outcome counts");
        for expected in ["announce", "broadcast"] {
            match outgoing.try_recv() {
                Ok(Outgoing::Message(text)) => assert_eq!(text, expected),
                other => panic!("expected {expected}, got {other:?}"),
            }
        }
        // The room's node is gone: the member is told to join again.
        member.lost();
        match outgoing.try_recv() {
            Ok(Outgoing::Close { code, reason }) => {
                assert_eq!((code, &*reason), (1012, "room moved: join again"));
            }
            other => panic!("expected a close, got {other:?}"),
        }
    }

    fn rooms() -> crate::rooms::Rooms {
        let settings = Arc::new(crate::config::Settings::default());
        crate::rooms::Rooms::new(settings, Arc::new(crate::observe::Stats::default()))
    }

    fn connect(user: &str, room: &str) -> sigway_core::videre::packet::Packet {
        let text = serde_json::json!({"Header": {"Event": "connect", "UserId": user, "RoomId": room}, "Payload": "{}"});
        sigway_core::videre::packet::parse(text.to_string().into(), 1 << 20).expect("valid")
    }

    /// A snapshot of `room` holding `users` (node, session number, UserId).
    fn snapshot(room: &str, users: &[(u32, u64, &str)]) -> Vec<u8> {
        let mut core: RoomCore<(), MemberId> = RoomCore::new(room.into(), 10);
        for &(node, local, user) in users {
            core.join(
                MemberId { node, local },
                user.into(),
                (),
                &connect(user, room),
            )
            .expect("joins");
        }
        core.snapshot(|id| (id.node, id.local))
    }

    #[test]
    fn an_adopted_room_takes_this_nodes_sessions_back_and_answers_a_waiting_join() {
        let (here, mut outgoing, mut answer) = away();
        let mut here = Some(here);
        let bytes = snapshot("r", &[(1, 7, "gone"), (2, 3, "mine")]);
        let mut reached = Vec::new();
        let mut reach = |id: MemberId| {
            reached.push(id);
            match id.node {
                2 => Reach::Here(Box::new(here.take().expect("reached once"))),
                _ => Reach::Gone,
            }
        };
        let (room, members) =
            VidereRoom::restore("r".into(), rooms().test_home(), &bytes, &mut reach)
                .expect("adopted");
        let gone = MemberId { node: 1, local: 7 };
        let mine = MemberId { node: 2, local: 3 };
        assert_eq!(members, [gone, mine], "join order");
        assert_eq!(reached, [gone, mine]);
        assert_eq!(answer.try_recv(), Ok(Ok(())), "the waiting join is in");
        let text = ByteString::from("to mine");
        for member in room.core_for_tests().members() {
            let sent = member.link.send(text.clone());
            match member.session {
                id if id == gone => assert_eq!(sent, Err(crate::rooms::SinkError::Closed)),
                _ => assert_eq!(sent, Ok(())),
            }
        }
        match outgoing.try_recv() {
            Ok(Outgoing::Message(text)) => assert_eq!(text, "to mine"),
            other => panic!("expected the packet on the session's own link, got {other:?}"),
        }
    }

    #[test]
    fn a_snapshot_of_another_room_or_of_nobody_is_not_adopted_and_the_waiting_join_is_refused() {
        for (bytes, what) in [
            (snapshot("other", &[(2, 3, "mine")]), "another room"),
            (snapshot("r", &[]), "nobody"),
            (b"\xff\xff".to_vec(), "garbage"),
        ] {
            let (here, _outgoing, mut answer) = away();
            let mut here = Some(here);
            let mut reach = |_: MemberId| match here.take() {
                Some(here) => Reach::Here(Box::new(here)),
                None => Reach::Gone,
            };
            let restored = VidereRoom::restore("r".into(), rooms().test_home(), &bytes, &mut reach);
            assert!(restored.is_none(), "{what}");
            if what == "another room" {
                // Its end was taken: it is told the room is lost.
                assert_eq!(answer.try_recv(), Ok(Err(Refusal::RoomMoved.into())));
            } else {
                // Never taken: the room layer keeps it (and bounces it).
                assert!(answer.try_recv().is_err(), "{what}");
            }
        }
    }

    #[test]
    fn a_join_refused_or_lost_before_its_answer_is_refused() {
        let (member, _outgoing, mut answer) = away();
        member.deliver(&wire::encode(&wire::Delivery::Refused(
            Refusal::RoomFull(2).into(),
        )));
        assert_eq!(answer.try_recv(), Ok(Err(Refusal::RoomFull(2).into())));

        let (member, mut outgoing, mut answer) = away();
        member.lost();
        assert_eq!(answer.try_recv(), Ok(Err(Refusal::RoomMoved.into())));
        assert!(
            outgoing.try_recv().is_err(),
            "a session not yet in stays open"
        );
    }
}
