//! One videre session: the packets of one SockJS session, turned into room
//! messages.
//!
//! The session parses every message on its own (a bad one costs only an
//! error notice), keeps the rooms it joined with the UserId it used
//! ([`Memberships`], pure, where strict mode is decided) and talks to rooms
//! through the room layer: `connect` leaves every room and joins, awaiting
//! the room's answer so later packets queue behind the join; `broadcast`
//! and `ping` go straight to the room, each taking one unit of the
//! session's in-flight credit (a flooding client waits instead of growing a
//! room's mailbox); `disconnect` and the session's close leave. In a
//! cluster the room may run on another node: the join's answer then comes
//! back from there, packets go there as the client sent them, and the
//! credit comes back once a packet is on the link. Nothing here blocks
//! other sessions, and client input never panics. Every packet first
//! passes the session's message rate (a flood closes the session with
//! `c[1008,...]`); a `connect` passes the room's join rate (the same) and,
//! with `auth.key_secret`, the signed-key check (an error notice).
//! For the metrics a session counts itself open by SockJS transport, its
//! joins with their latency (`connect` to the room's answer), and its end
//! with the close code it was closed with (`none` when the client left).
//! One `broadcast` in [`RELAY_SAMPLE_EVERY`] carries when it was read, and
//! its room records the relay latency (`protocol="videre"`).

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use actix_web::web;
use bytestring::ByteString;
use tokio::sync::oneshot;

use crate::error::{Refusal, VidereError};
use crate::observe::{Ended, ListedKey, RELAY_SAMPLE_EVERY, Reason};
use crate::rooms::peers::{PeerCard, Registration};
use crate::rooms::{InFlight, MemberId, MessageGate, RoomRef, Ticket};
use crate::services::Services;
use sigway_core::redact::ShownKey;
use sigway_core::videre::memberships::{Membership, Memberships, Target};
use sigway_sockjs::{SessionInfo, SessionLink, SockjsSession};

use super::packet::{self, Event, Packet};
use super::room::{Broadcast, Joiner, MemberLink, Outcome, Ping, VidereEvent, VidereRoom};
use crate::rooms::Room as _;

/// How long a join waits for its room's answer (which a room on another
/// node sends through the cluster) before it is given up.
const JOIN_ANSWER_WAIT: Duration = Duration::from_secs(10);

/// The videre side of one SockJS session.
pub(crate) struct VidereSession {
    id: MemberId,
    link: SessionLink,
    info: SessionInfo,
    services: web::Data<Services>,
    rooms: Memberships<RoomRef<VidereRoom>>,
    /// Events handed to rooms and not yet handled.
    credit: Arc<InFlight>,
    /// This session's place under the connection limits: held as long as
    /// the session lives (the SockJS layer admitted it before opening it).
    _ticket: Ticket,
    /// `limits.messages_per_sec` of this session.
    messages: MessageGate,
    /// The session was closed for a rate limit: later packets (of the
    /// same batch, or already on their way) are dropped.
    closed: bool,
    /// Its entry in the admin API's registry, while the session lives.
    _registration: Registration,
    /// The code this session closed itself with, for `sigway_closes_total`.
    closed_with: Option<u16>,
    /// Broadcasts until the next one is timed (its relay latency).
    until_sampled: u32,
}

impl Drop for VidereSession {
    /// Counted here rather than in `on_close`, so that every session that
    /// was counted open is counted closed exactly once.
    fn drop(&mut self) {
        let stats = &self.services.stats;
        stats.session_closed(VidereRoom::KIND, self.info.transport);
        let ended = self.closed_with.map_or(Ended::NoCode, Ended::Code);
        stats.closed(VidereRoom::KIND, ended);
    }
}

impl VidereSession {
    /// An admitted session, holding its `ticket`.
    pub(crate) fn new(
        link: SessionLink,
        info: SessionInfo,
        services: web::Data<Services>,
        ticket: Ticket,
    ) -> Self {
        let id = services.rooms.member_id();
        let remote = info.remote.map(|addr| addr.to_string()).unwrap_or_default();
        tracing::debug!(session = %info.id, transport = info.transport, %remote, "videre session open");
        // A quarter of the outbox, uncapped: a call's burst of candidates
        // never waits, and what is in flight still fits the outbox. (Capped
        // at 64 as for sigver, `benches/ab.sh` showed 1.5× the server CPU
        // per broadcast delivery of a 64-deep client window.)
        let credit = Arc::new(InFlight::new(
            (services.settings.limits.outbound_queue / 4).max(1),
        ));
        let messages = services.rooms.guard().message_gate();
        let card = PeerCard::new(
            id,
            "videre",
            info.transport,
            info.remote,
            info.origin.clone(),
            Box::new(link.clone()),
        );
        let _registration = services.peers.register(card);
        services
            .stats
            .session_opened(VidereRoom::KIND, info.transport);
        Self {
            _registration,
            messages,
            closed: false,
            closed_with: None,
            until_sampled: 0,
            id,
            link,
            info,
            services,
            rooms: Memberships::default(),
            credit,
            _ticket: ticket,
        }
    }

    fn strict(&self) -> bool {
        self.services.settings.videre.strict
    }

    /// `room_id` as logs may show it: hashed (the whole of it) unless
    /// `log.show_keys`, then at most 256 bytes of it.
    fn shown_room<'r>(&self, room_id: &'r str) -> impl std::fmt::Display + 'r {
        let guard = self.services.rooms.guard();
        let show = guard.shows_keys();
        ShownKey::new(if show { preview(room_id) } else { room_id }, show)
    }

    /// Sends the error notice for a refused packet and counts it.
    fn refuse(&self, user_id: &str, room_id: &str, error: VidereError) {
        let stats = &self.services.stats;
        match Reason::of_videre(&error) {
            Some(reason) => {
                let show = self.services.rooms.guard().shows_keys();
                stats.refused(reason, Some(ListedKey::of(room_id, show)));
            }
            None => {
                stats.protocol_errors.fetch_add(1, Relaxed);
            }
        }
        tracing::warn!(
            session = %self.info.id, transport = self.info.transport,
            user = %preview(user_id), room = %self.shown_room(room_id),
            "videre packet refused: {error}"
        );
        self.send(packet::error_notice(user_id, room_id, &error));
    }

    /// Closes the session with the rate limit's 1008 (`c[1008,"..."]`),
    /// counted and logged once; `room_id` names the room of a join refused.
    #[cold]
    fn close_for(&mut self, refusal: Refusal, room_id: Option<&str>) {
        let reason = Reason::of_refusal(&refusal);
        let show = self.services.rooms.guard().shows_keys();
        let listed = room_id.map(|room| ListedKey::of(room, show));
        self.services.stats.refused(reason, listed);
        tracing::warn!(
            session = %self.info.id, transport = self.info.transport,
            reason = reason.label(), "videre session closed: {refusal}"
        );
        let close = refusal.close();
        self.link.close(close.code, &close.reason);
        self.closed = true;
        self.closed_with = Some(close.code);
        self.leave_all();
    }

    fn send(&self, text: ByteString) {
        let bytes = text.len();
        if self.link.send(text).is_ok() {
            self.services.stats.sent(bytes);
        }
    }

    /// Leaves every room; each one tells its remaining members.
    fn leave_all(&mut self) {
        for membership in self.rooms.take_all() {
            self.leave(&membership.room);
        }
    }

    /// Leaves `room`, here or on its node.
    fn leave(&self, room: &RoomRef<VidereRoom>) {
        room.leave(self.id);
    }

    async fn connect(&mut self, connect: Packet) {
        // Leaving first also keeps this session in at most one room at a
        // time, which the cluster's bookkeeping of members away relies on
        // (one remote room per member id).
        let asked = Instant::now();
        self.leave_all();
        let guard = self.services.rooms.guard();
        if let Err(rejection) = guard.check_key(&connect.room_id, Some(&connect.user_id)) {
            let error = VidereError::KeyRefused(rejection);
            return self.refuse(&connect.user_id, &connect.room_id, error);
        }
        if let Err(refusal) = guard.join(VidereRoom::KIND, &connect.room_id) {
            return self.close_for(refusal, Some(&connect.room_id));
        }
        let room_id: Arc<str> = connect.room_id.as_str().into();
        let user_id: Arc<str> = connect.user_id.as_str().into();
        let (outcome, answer) = oneshot::channel();
        let joiner = Joiner {
            session: self.id,
            connect: Some(connect),
            link: MemberLink::Here(self.link.clone()),
            outcome: Outcome::Here(outcome),
            credit: Some(self.credit.clone()),
        };
        // Awaiting the room's answer orders every later packet of this
        // session after the join. A room on another node answers through
        // the cluster, after the announce; should the answer never come,
        // the join is given up (and left, in case it comes late).
        let result = match self
            .services
            .rooms
            .join::<VidereRoom>(room_id.clone(), joiner)
            .await
        {
            Ok(room) => {
                let answer = match tokio::time::timeout(JOIN_ANSWER_WAIT, answer).await {
                    Ok(Ok(answer)) => answer,
                    Ok(Err(_)) => Err(Refusal::Internal.into()),
                    Err(_) => Err(Refusal::ClusterUnavailable.into()),
                };
                match answer {
                    Ok(()) => Ok(room),
                    Err(error) => {
                        // A refused member is not in the room: leaving is a
                        // no-op there, and frees the cluster's bookkeeping.
                        self.leave(&room);
                        Err(error)
                    }
                }
            }
            Err(refusal) => Err(refusal.into()),
        };
        match result {
            Ok(room) => {
                let stats = &self.services.stats;
                stats.joined(VidereRoom::KIND, asked.elapsed());
                self.rooms.add(Membership {
                    room_id,
                    user_id,
                    room,
                })
            }
            Err(error) => self.refuse(&user_id, &room_id, error),
        }
    }

    async fn disconnect(&mut self, packet: Packet) {
        match self.rooms.take(&packet.room_id) {
            Some(membership) => self.leave(&membership.room),
            None => self.refuse(&packet.user_id, &packet.room_id, VidereError::NotJoined),
        }
    }

    /// The time now for one broadcast in [`RELAY_SAMPLE_EVERY`] (the first
    /// one included, so a short session is seen too), the only clock read
    /// the relay path makes on this side; `None` for the others.
    fn sample_clock(&mut self) -> Option<Instant> {
        if self.until_sampled == 0 {
            self.until_sampled = RELAY_SAMPLE_EVERY - 1;
            Some(Instant::now())
        } else {
            self.until_sampled -= 1;
            None
        }
    }

    /// Hands a broadcast or ping to its room.
    async fn relay(&mut self, packet: Packet) {
        let room = match self.rooms.target(&packet, self.strict()) {
            Ok(Target::Joined(room)) => room.clone(),
            // Lenient mode only: a room this node runs (in a cluster, rooms
            // owned by other nodes are not found; strict mode, the default,
            // reaches them through the session's membership).
            Ok(Target::Elsewhere) => {
                match self.services.rooms.find::<VidereRoom>(&packet.room_id) {
                    Some(room) => room,
                    None => {
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
        // One unit of credit per event: a client that sends faster than its
        // rooms handle waits here (its transport stops reading) instead of
        // growing a room's mailbox.
        self.credit.acquire().await;
        let credit = Some(self.credit.clone());
        // A room on another node gets the packet as the client sent it
        // (and this session's credit back once it is on the link).
        let frame = packet.text().as_bytes().clone();
        match packet.event {
            Event::Ping => {
                let ping = Ping {
                    packet,
                    from: self.id,
                    reply: Some(MemberLink::Here(self.link.clone())),
                    credit,
                };
                room.event(VidereEvent::Ping(ping), &frame);
            }
            _ => room.event(
                VidereEvent::Broadcast(Broadcast {
                    packet,
                    from: self.id,
                    credit,
                    received: self.sample_clock(),
                }),
                &frame,
            ),
        }
    }
}

impl VidereSession {
    /// A packet's text for the log, or a placeholder where it would show
    /// the RoomId that `log.show_keys = false` hides.
    fn shown_packet<'p>(&self, packet: &'p Packet) -> &'p str {
        if self.services.rooms.guard().shows_keys() {
            preview(packet.text())
        } else {
            "(hidden: it names the room; log.show_keys shows it)"
        }
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
        if self.closed {
            return;
        }
        let bytes = text.len();
        self.services.stats.received(bytes);
        if let Err(refusal) = self.messages.check(&self.services.stats) {
            return self.close_for(refusal, None);
        }
        let max = self.services.settings.limits.max_frame_bytes;
        let max_id = self.services.settings.limits.max_id_bytes;
        let packet = match packet::parse(ByteString::from(text), max)
            .and_then(|packet| packet.check_ids(max_id).map(|()| packet))
        {
            Ok(packet) => packet,
            Err(rejected) => {
                return self.refuse(&rejected.user_id, &rejected.room_id, rejected.error);
            }
        };
        tracing::debug!(
            session = %self.info.id, transport = self.info.transport,
            event = %packet.event, user = %preview(&packet.user_id),
            room = %self.shown_room(&packet.room_id), bytes,
            // The text names the room: shown only where keys are.
            packet = %self.shown_packet(&packet),
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    mod with_actors {
        use super::super::*;
        use crate::config::Settings;
        use crate::observe::Stats;
        use crate::rooms::Rooms;
        use crate::shutdown::ShutdownTrigger;
        use sigway_sockjs::Outgoing;
        use sigway_sockjs::Queue;
        use std::time::Duration;

        fn shared(settings: Settings) -> web::Data<Services> {
            let settings = Arc::new(settings);
            let stats = Arc::new(Stats::default());
            let rooms = Rooms::new(settings.clone(), stats.clone());
            let (_, shutdown) = ShutdownTrigger::new();
            web::Data::new(Services {
                settings,
                stats,
                rooms,
                shutdown,
                peers: Default::default(),
                drain: Default::default(),
                live_settings: Arc::new(arc_swap::ArcSwap::from_pointee(Settings::default())),
            })
        }

        fn session(shared: &web::Data<Services>) -> (VidereSession, Queue<Outgoing>) {
            let (link, rx) = SessionLink::channel(64);
            let info = SessionInfo {
                id: "test".into(),
                remote: None,
                transport: "test",
                origin: None,
            };
            (
                VidereSession::new(
                    link,
                    info,
                    shared.clone(),
                    shared.rooms.admit(None).expect("a place"),
                ),
                rx,
            )
        }

        async fn next(rx: &mut Queue<Outgoing>) -> serde_json::Value {
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
