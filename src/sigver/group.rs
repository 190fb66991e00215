//! The actor of one sigver key, in either dialect: [`GroupActor`] owns the
//! dialect's rules, the group's signaling ids and the [`Sink`] of every
//! member.
//!
//! Sessions join through [`Rooms`](crate::rooms::Rooms), then send their
//! dialect's events and a final [`Leave`]. The actor runs the pure rules and
//! turns each action into a frame pushed to the target's sink without
//! waiting: a full sink means that client does not read, and it is told to
//! close (4745) instead of making the server grow. What a dialect is to the
//! session and to the actor is one trait, [`Dialect`], implemented by each
//! dialect's rules (in [`current`](super::current) and
//! [`legacy`](super::legacy)). A sampled event ([`PeerEvent`] with `received`) carries when
//! its frame was read: the actor records the relay latency when it pushes
//! what the event caused, and stamps those frames ([`Outbound::Stamped`])
//! so the target's session can record how long they waited in its outbox.

use std::sync::Arc;
use std::time::Instant;

use sigway_core::redact::ShownKey;

use actix::prelude::*;
use bytes::Bytes;
use foldhash::{HashMap, HashMapExt as _};

use crate::error::Refusal;
use crate::error::{SigverDialect, SigverError};
use crate::observe::Stats;
use crate::rooms::{
    Attach, Away, Describe, Exported, Inbound, LocalRoom, MemberId, Occupancy, Portable, Reach,
    RemoteSink, Room, RoomHome, SaveAgain, Sink, SinkError, Step,
};
use crate::sigver::frame::OutFrame;
use crate::sigver::ids::GroupIds;
use crate::sigver::snapshot::{PeerAddress, Snapshot};
use crate::sigver::state::GroupLimits;

/// What a group (current or legacy) asks a session to do.
#[derive(Debug)]
pub(crate) enum Outbound {
    Frame(OutFrame),
    /// A frame a sampled event caused, with when it was pushed.
    Stamped(OutFrame, Instant),
    Close(SigverError),
}

impl Outbound {
    /// The bytes a queued outbound holds (what an outbox's bound in bytes
    /// counts).
    pub(crate) fn weight(&self) -> usize {
        match self {
            Outbound::Frame(frame) | Outbound::Stamped(frame, _) => frame.len(),
            Outbound::Close(_) => 0,
        }
    }
}

/// A peer's event as its group gets it: `received` is when its frame was
/// read, for one event in
/// [`RELAY_SAMPLE_EVERY`](crate::observe::RELAY_SAMPLE_EVERY) per session
/// (the relay latency is measured on those).
pub(crate) struct PeerEvent<E> {
    pub event: E,
    pub received: Option<Instant>,
}

/// Who joins a group: a connection, its sink and its `?favored` flag.
pub(crate) struct PeerEntry {
    pub id: MemberId,
    pub favored: bool,
    pub sink: Sink<Outbound>,
}

/// A frame from the socket, as far as the session cares.
pub(crate) enum Heard<E> {
    /// The peer answered a heartbeat: reset the missed count.
    Heartbeat,
    /// An event for the group (the session takes one unit of credit for
    /// it, which the group gives back through the sink once handled).
    Event(E),
    /// A heartbeat whose frame also carried an event for the group (sigver
    /// 20 relayed a frame's `content` whatever its type).
    HeartbeatWith(E),
    /// Nothing to do (e.g. `connected` from a client).
    Ignored,
}

/// A sigver dialect, implemented by its pure rules: what the session needs
/// (its heartbeat frame, how a frame becomes an event for the group) and
/// what [`GroupActor`] needs (how the rules start, what a member attaching
/// or leaving does, what each action sends). Each dialect's events get
/// their own `Handler`, which hands them to the rules through
/// [`GroupActor::event`]. Both dialects' rules can be written down and
/// rebuilt ([`Snapshot`], cluster mode), their peers addressed as members.
/// The `key` the methods get is for log lines only, and is the key as logs
/// may show it (hashed unless `log.show_keys`).
pub(crate) trait Dialect: Snapshot<MemberId> + Unpin + Sized + 'static {
    const DIALECT: SigverDialect;
    /// The room kind: the registry's namespace and the metrics label.
    const KIND: &'static str;
    type Action: Unpin;
    fn with_limits(limits: GroupLimits) -> Self;
    fn attached(
        &mut self,
        key: &str,
        peer: MemberId,
        favored: bool,
        ids: &mut GroupIds,
        out: &mut Vec<Self::Action>,
    );
    fn left(&mut self, peer: MemberId, ids: &mut GroupIds, out: &mut Vec<Self::Action>);
    /// Whom the action is for and what to queue for it.
    fn outbound(key: &str, action: Self::Action) -> (MemberId, Outbound);
    /// What a peer's frame becomes for the group.
    type Event: Send + 'static;
    /// The server's heartbeat frame.
    fn heartbeat() -> Bytes;
    /// Decodes one binary frame from `peer`.
    fn decode(frame: Bytes, peer: MemberId) -> Result<Heard<Self::Event>, SigverError>;
    /// Carries out a peer's event in `group` (through
    /// [`GroupActor::event`]).
    fn handle(group: &mut GroupActor<Self>, event: Self::Event);
    /// Whether handling `event` may change membership or bindings (what a
    /// snapshot holds); plain relays do not.
    fn changes_state(event: &Self::Event) -> bool;
}

/// How a member is named in a snapshot: its node and its number there.
fn address(peer: &MemberId) -> PeerAddress {
    (peer.node, peer.local)
}

/// The member a snapshot's address names.
fn member(address: PeerAddress) -> MemberId {
    MemberId {
        node: address.0,
        local: address.1,
    }
}

/// The actor of one key, in either dialect: the rules, the group's
/// signaling ids, and the sink of each attached session.
pub(crate) struct GroupActor<R: Dialect> {
    key: Arc<str>,
    /// The key as logs may show it (`log.show_keys`), worked out once.
    log_key: Arc<str>,
    rules: R,
    ids: GroupIds,
    sinks: HashMap<MemberId, Sink<Outbound>>,
    occupancy: Occupancy,
    home: RoomHome,
    /// Reused between events so relaying allocates nothing here.
    actions: Vec<R::Action>,
    /// When the frame of the sampled event being handled was read.
    sampled_at: Option<Instant>,
}

impl<R: Dialect> GroupActor<R> {
    /// Runs an event `peer` sent through the rules (`apply` gets them, the
    /// key as logs may show it, the ids and the action list) and carries
    /// out what they decide.
    pub(crate) fn event(
        &mut self,
        peer: MemberId,
        apply: impl FnOnce(&mut R, &str, &mut GroupIds, &mut Vec<R::Action>),
    ) {
        if let Some(sink) = self.sinks.get(&peer) {
            sink.handled();
        }
        apply(
            &mut self.rules,
            &self.log_key,
            &mut self.ids,
            &mut self.actions,
        );
        self.carry_out();
    }

    /// Cluster mode: the state changed, so it is written down for a node
    /// that may have to adopt the group.
    pub(crate) fn save(&self) {
        let (rules, ids) = (&self.rules, &self.ids);
        self.home
            .save(R::KIND, &self.key, || rules.snapshot(ids, address));
    }

    /// See [`RoomHome::step`].
    pub(crate) fn step(&self, changes: bool) -> Step {
        self.home.step(changes)
    }

    fn carry_out(&mut self) {
        let stats: &Stats = &self.home.stats;
        // A sampled event: one clock read for all it pushes.
        let pushed_at = self.sampled_at.take().map(|read| (read, Instant::now()));
        let mut relayed = false;
        for action in self.actions.drain(..) {
            let (to, mut out) = R::outbound(&self.log_key, action);
            let Some(sink) = self.sinks.get(&to) else {
                continue;
            };
            if let Some((_, now)) = pushed_at {
                out = match out {
                    Outbound::Frame(frame) => Outbound::Stamped(frame, now),
                    other => other,
                };
            }
            let bytes = match &out {
                Outbound::Frame(frame) | Outbound::Stamped(frame, _) => Some(frame.len()),
                Outbound::Close(_) => None,
            };
            match sink.push(out) {
                Ok(()) => {
                    if let Some(bytes) = bytes {
                        stats.sent(bytes);
                        self.occupancy.relayed(1);
                        relayed = true;
                    }
                }
                Err(SinkError::Full) => Stats::count(&stats.slow_consumers),
                Err(SinkError::Closed) => {}
            }
        }
        if let (Some((read, now)), true) = (pushed_at, relayed) {
            stats
                .relay_latency
                .record(now.saturating_duration_since(read));
        }
    }
}

impl<R: Dialect> Actor for GroupActor<R> {
    type Context = Context<Self>;
}

impl<R: Dialect> Room for GroupActor<R> {
    const KIND: &'static str = R::KIND;
    type Member = PeerEntry;
    type Event = PeerEvent<R::Event>;

    fn new_room(key: Arc<str>, home: RoomHome) -> Self {
        let limits = GroupLimits {
            max_members: home.settings.limits.max_members_per_room,
        };
        Self {
            log_key: log_key(&key, &home),
            key,
            rules: R::with_limits(limits),
            ids: GroupIds::default(),
            sinks: HashMap::new(),
            occupancy: Occupancy::default(),
            home,
            actions: Vec::new(),
            sampled_at: None,
        }
    }

    fn handle_event(&mut self, event: PeerEvent<R::Event>, _: &mut Context<Self>) {
        self.sampled_at = event.received;
        R::handle(self, event.event);
        // Handled without a push (e.g. a heartbeat's content to nobody).
        self.sampled_at = None;
    }

    fn handle_leave(&mut self, peer: MemberId, ctx: &mut Context<Self>) {
        self.peer_left(peer, ctx);
    }
}

impl<R: Dialect> Handler<Attach<Self>> for GroupActor<R> {
    type Result = ();

    fn handle(&mut self, attach: Attach<Self>, _: &mut Context<Self>) {
        let PeerEntry { id, favored, sink } = attach.member;
        let step = self.home.step(true);
        let _held = step.hold();
        self.occupancy.attached();
        self.sinks.insert(id, sink);
        self.rules
            .attached(&self.log_key, id, favored, &mut self.ids, &mut self.actions);
        self.carry_out();
        self.save();
    }
}

impl<R: Dialect> Handler<Describe> for GroupActor<R> {
    type Result = MessageResult<Describe>;

    fn handle(&mut self, _: Describe, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.occupancy.summary(self.sinks.keys().copied().collect()))
    }
}

impl<R: Dialect> Handler<SaveAgain> for GroupActor<R> {
    type Result = ();

    fn handle(&mut self, _: SaveAgain, _: &mut Context<Self>) {
        self.save();
    }
}

impl<R: Dialect> GroupActor<R> {
    /// The peer's connection is gone.
    fn peer_left(&mut self, peer: MemberId, ctx: &mut Context<Self>) {
        let step = self.home.step(true);
        let _held = step.hold();
        self.rules.left(peer, &mut self.ids, &mut self.actions);
        self.carry_out();
        self.save();
        if self.sinks.remove(&peer).is_some() {
            self.occupancy.detached();
            if self
                .home
                .release_if_idle::<Self>(&self.key, &self.occupancy)
            {
                ctx.stop();
            }
        }
    }
}

/// Members of a group may be connected to other nodes: the owner gets
/// their `?favored` flag, then their frames as they came (and decodes
/// them again), and sends back each [`Outbound`] in [`wire`]'s encoding.
impl<R: Dialect> Portable for GroupActor<R> {
    fn export(member: PeerEntry) -> Exported {
        let PeerEntry { id, favored, sink } = member;
        Exported {
            id,
            info: vec![u8::from(favored)],
            credit: sink.credit(),
            away: Box::new(AwayPeer(sink)),
        }
    }

    fn import(id: MemberId, info: &[u8], sink: RemoteSink) -> PeerEntry {
        PeerEntry {
            id,
            favored: info.first() == Some(&1),
            sink: Sink::Remote {
                remote: sink,
                encode: wire::encode,
            },
        }
    }

    fn forward(room: &LocalRoom<Self>, id: MemberId, frame: Bytes) {
        // The member's node already checked the frame; decoding it again
        // here gives the same event.
        match R::decode(frame, id) {
            Ok(Heard::Event(event) | Heard::HeartbeatWith(event)) => {
                room.push(Inbound::Event(PeerEvent {
                    event,
                    received: None,
                }));
            }
            Ok(Heard::Heartbeat | Heard::Ignored) => {}
            Err(error) => {
                tracing::debug!(%error, member = %id, "forwarded frame not decodable here")
            }
        }
    }

    fn refused(refusal: Refusal) -> Bytes {
        wire::encode(Outbound::Close(SigverError::Refused(refusal)))
    }

    fn restore(
        key: Arc<str>,
        home: RoomHome,
        snapshot: &[u8],
        reach: &mut dyn FnMut(MemberId) -> Reach,
    ) -> Option<(Self, Vec<MemberId>)> {
        let limits = GroupLimits {
            max_members: home.settings.limits.max_members_per_room,
        };
        let (rules, ids) = match R::restore(snapshot, limits, member) {
            Ok(restored) => restored,
            Err(error) => {
                tracing::warn!(key = %log_key(&key, &home), %error, "unusable group snapshot");
                return None;
            }
        };
        let peers = rules.peers();
        let mut sinks = HashMap::with_capacity(peers.len());
        for &peer in &peers {
            let sink = match reach(peer) {
                Reach::Here(away) => match away.into_any().downcast::<AwayPeer>() {
                    Ok(away) => away.0,
                    Err(_) => return None,
                },
                Reach::There(remote) => Sink::Remote {
                    remote,
                    encode: wire::encode,
                },
                // Gone: its leave follows at once; nothing reaches it.
                Reach::Gone => Sink::new(1, 0, Outbound::weight).0,
            };
            sinks.insert(peer, sink);
        }
        let group = Self {
            log_key: log_key(&key, &home),
            key,
            rules,
            ids,
            sinks,
            occupancy: Occupancy::restored(peers.len()),
            home,
            actions: Vec::new(),
            sampled_at: None,
        };
        Some((group, peers))
    }
}

/// `key` as this node's logs show it (hashed unless `log.show_keys`).
fn log_key(key: &str, home: &RoomHome) -> Arc<str> {
    ShownKey::new(key, home.settings.log.show_keys)
        .to_string()
        .into()
}

/// The session end of a member whose group runs on another node.
struct AwayPeer(Sink<Outbound>);

impl Away for AwayPeer {
    fn deliver(&self, outbound: &[u8]) {
        match wire::decode(outbound) {
            // A full sink closes the session itself (4745).
            Some(out) => drop(self.0.push(out)),
            None => tracing::warn!("undecodable outbound from the group's node dropped"),
        }
    }

    fn lost(&self) {
        let _ = self
            .0
            .push(Outbound::Close(SigverError::Refused(Refusal::RoomMoved)));
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send> {
        self
    }
}

/// [`Outbound`] between nodes: a tag byte, then the frame, or the close
/// (only the errors a group closes a member with travel as themselves;
/// any other is sent as a failed send with its text).
mod wire {
    use super::*;

    const FRAME: u8 = 0;
    const BLOCKING_MEMBER: u8 = 1;
    const REFUSED: u8 = 2;
    const OTHER: u8 = 3;

    pub(super) fn encode(out: Outbound) -> Bytes {
        let mut bytes = Vec::new();
        match out {
            Outbound::Frame(frame) | Outbound::Stamped(frame, _) => {
                let (head, data) = frame.parts();
                bytes.reserve(1 + frame.len());
                bytes.push(FRAME);
                bytes.extend_from_slice(head);
                bytes.extend_from_slice(data);
            }
            Outbound::Close(SigverError::BlockingMember) => bytes.push(BLOCKING_MEMBER),
            Outbound::Close(SigverError::Refused(refusal)) => {
                bytes.push(REFUSED);
                bytes.extend_from_slice(&refusal.to_wire());
            }
            Outbound::Close(other) => {
                bytes.push(OTHER);
                bytes.extend_from_slice(other.to_string().as_bytes());
            }
        }
        bytes.into()
    }

    pub(super) fn decode(bytes: &[u8]) -> Option<Outbound> {
        let (&tag, rest) = bytes.split_first()?;
        Some(match tag {
            FRAME => Outbound::Frame(OutFrame::Whole(Bytes::copy_from_slice(rest))),
            BLOCKING_MEMBER => Outbound::Close(SigverError::BlockingMember),
            REFUSED => Outbound::Close(SigverError::Refused(Refusal::from_wire(rest)?)),
            OTHER => Outbound::Close(SigverError::SendFailed(
                String::from_utf8_lossy(rest).into_owned().into(),
            )),
            _ => return None,
        })
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn round_trip(out: Outbound) -> String {
            // A frame arrives whole, however it was written (split or not).
            let expected = match &out {
                Outbound::Frame(frame) | Outbound::Stamped(frame, _) => {
                    format!("{:?}", Outbound::Frame(OutFrame::Whole(frame.to_bytes())))
                }
                close => format!("{close:?}"),
            };
            let back = decode(&encode(out)).expect("decodes");
            assert_eq!(format!("{back:?}"), expected);
            expected
        }

        #[test]
        fn what_a_group_sends_survives_the_trip() {
            round_trip(Outbound::Frame(
                Bytes::from_static(b"\x08\x01\x12\x00").into(),
            ));
            round_trip(Outbound::Frame(Bytes::new().into()));
            round_trip(Outbound::Frame(crate::sigver::codec::content(
                7,
                0,
                Bytes::from_static(b"offer"),
            )));
            round_trip(Outbound::Close(SigverError::BlockingMember));
            for refusal in [
                Refusal::RoomFull(7),
                Refusal::TooManyRooms(100_000),
                Refusal::RoomMoved,
                Refusal::ClusterUnavailable,
            ] {
                round_trip(Outbound::Close(SigverError::Refused(refusal)));
            }
        }

        #[test]
        fn other_closes_keep_their_text_and_garbage_is_refused() {
            let out = decode(&encode(Outbound::Close(SigverError::HeartbeatMissed)));
            assert!(
                matches!(out, Some(Outbound::Close(SigverError::SendFailed(text))) if text == "Too many missed heartbeats")
            );
            for garbage in [
                &b""[..],
                b"\x02",
                b"\x02\x09\0\0\0\0\0\0\0\0",
                b"\x02\x03\0",
                b"\x09",
            ] {
                assert!(decode(garbage).is_none(), "{garbage:?}");
            }
        }
    }
}
