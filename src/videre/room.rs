//! The actor of one videre room ([`VidereRoom`]): it owns one pure
//! [`RoomCore`] (the rules, in `sigway_core`) holding how it reaches each
//! member ([`MemberLink`]), is created by the room layer
//! ([`Rooms::join`](crate::rooms::Rooms::join) forwards an [`Attach`]) and
//! releases itself when its last member left. It only moves messages, and
//! gives each sender's [`InFlight`] credit back per event.
//!
//! A member is connected to this node (its SockJS link) or, in cluster
//! mode, to another one: then the room reaches it through the room layer's
//! [`RemoteSink`] and its events arrive as the frames its client sent
//! (see [`remote`](super::remote), which makes the room [`Portable`](crate::rooms::Portable)).
//! The rules do not see the difference. In cluster mode the room writes
//! its state down after each join and leave ([`RoomHome::save`]), so that
//! a node adopting it when this one is gone rebuilds it with its users in
//! join order ([`Portable::restore`](crate::rooms::Portable::restore) in
//! `remote`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use sigway_core::redact::ShownKey;
use std::sync::atomic::Ordering::Relaxed;

use actix::prelude::*;
use bytestring::ByteString;
use tokio::sync::oneshot;

use crate::error::{Refusal, VidereError};
use crate::observe::Stats;
use crate::rooms::{
    Attach, Describe, InFlight, MemberId, Occupancy, RemoteSink, Room, RoomHome, SaveAgain,
    SinkError,
};
use sigway_core::videre::packet::Packet;
use sigway_core::videre::room::RoomCore;
use sigway_sockjs::SessionLink;

use super::remote::wire::{self, Delivery};

/// How the room reaches one member.
#[derive(Debug, Clone)]
pub(crate) enum MemberLink {
    /// A session of this node: its SockJS link.
    Here(SessionLink),
    /// A session of another node: what the room sends travels there in
    /// [`wire`]'s encoding.
    Away(RemoteSink),
    /// A member of a rebuilt room whose session is gone (its node died, or
    /// it left meanwhile): nothing reaches it, and its leave follows.
    Gone,
}

impl MemberLink {
    /// Queues `text` for the member without waiting. `Full` means its
    /// client does not read (the SockJS layer closes that session; for a
    /// member of another node, its node's link is congested); `Closed`
    /// means it is gone (its leave is on its way).
    pub(super) fn send(&self, text: ByteString) -> Result<(), SinkError> {
        match self {
            MemberLink::Here(link) => match link.send(text) {
                Ok(()) => Ok(()),
                Err(_) if link.is_closed() => Err(SinkError::Closed),
                Err(_) => Err(SinkError::Full),
            },
            MemberLink::Away(sink) => sink.deliver(wire::encode(&Delivery::Message(text))),
            MemberLink::Gone => Err(SinkError::Closed),
        }
    }

    /// Closes the member's session with the refusal's close (a member of
    /// another node is closed by its own node, which the room layer tells).
    pub(super) fn close(&self, refusal: &Refusal) {
        match self {
            MemberLink::Here(link) => {
                let close = refusal.close();
                link.close(close.code, &close.reason);
            }
            MemberLink::Away(_) => {
                tracing::debug!("videre: a member of another node is closed by its node");
            }
            MemberLink::Gone => {}
        }
    }
}

/// Where a joiner hears whether the room took it.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The session on this node awaits it.
    Here(oneshot::Sender<Result<(), VidereError>>),
    /// It travels back to the member's node (after the announce, on the
    /// same ordered link), where the session awaits it.
    Away(RemoteSink),
}

impl Outcome {
    pub(super) fn tell(self, result: Result<(), VidereError>) {
        match self {
            Outcome::Here(sender) => {
                // The session stopped waiting (it closed): nothing to tell.
                let _ = sender.send(result);
            }
            Outcome::Away(sink) => {
                let delivery = match result {
                    Ok(()) => Delivery::Joined,
                    Err(error) => Delivery::Refused(error),
                };
                // A lost link is noticed by the cluster, which tells the member.
                let _ = sink.deliver(wire::encode(&delivery));
            }
        }
    }
}

/// What a session hands the room when it joins.
pub(crate) struct Joiner {
    pub session: MemberId,
    /// The `connect` packet; its `UserId` is the member's. `None` only for
    /// a member of another node whose packet did not decode here (the room
    /// refuses it).
    pub connect: Option<Packet>,
    pub link: MemberLink,
    pub outcome: Outcome,
    /// The session's credit, when it is connected here (a member of
    /// another node got its credit back on its own node).
    pub credit: Option<Arc<InFlight>>,
}

/// A broadcast packet of session `from` for every member; `credit` is the
/// sender's (none for a packet forwarded by another node). `received` is
/// when the session read it, for one broadcast in
/// [`RELAY_SAMPLE_EVERY`](crate::observe::RELAY_SAMPLE_EVERY) per session
/// (none for a forwarded packet: another node's clock is not this one's).
pub(crate) struct Broadcast {
    pub packet: Packet,
    pub from: MemberId,
    pub credit: Option<Arc<InFlight>>,
    pub received: Option<Instant>,
}

/// A ping from session `from`: the answer goes to `reply`, or (a ping
/// forwarded by another node) to the member `from`'s link; `credit` is the
/// sender's.
pub(crate) struct Ping {
    pub packet: Packet,
    pub from: MemberId,
    pub reply: Option<MemberLink>,
    pub credit: Option<Arc<InFlight>>,
}

/// What a member says to its room.
pub(crate) enum VidereEvent {
    Broadcast(Broadcast),
    Ping(Ping),
}

/// The actor of one videre room.
pub(crate) struct VidereRoom {
    core: RoomCore<MemberLink, MemberId>,
    occupancy: Occupancy,
    home: RoomHome,
    /// The credit of this node's sessions that were members of the room
    /// before this node adopted it: their packets still come as forwarded
    /// frames (without credit), so the room gives it back for them.
    adopted_credit: HashMap<MemberId, Arc<InFlight>>,
}

impl Actor for VidereRoom {
    type Context = Context<Self>;
}

impl Room for VidereRoom {
    const KIND: &'static str = "videre";
    type Member = Joiner;
    type Event = VidereEvent;
    fn new_room(key: Arc<str>, home: RoomHome) -> Self {
        Self {
            core: RoomCore::new(key, home.settings.limits.max_members_per_room),
            occupancy: Occupancy::default(),
            home,
            adopted_credit: HashMap::new(),
        }
    }

    fn handle_event(&mut self, event: VidereEvent, _: &mut Context<Self>) {
        match event {
            VidereEvent::Broadcast(broadcast) => self.broadcast(broadcast),
            VidereEvent::Ping(ping) => self.ping(ping),
        }
    }

    /// A session leaves the room (disconnect, another connect, or its
    /// close).
    fn handle_leave(&mut self, session: MemberId, ctx: &mut Context<Self>) {
        let step = self.home.step(true);
        let _held = step.hold();
        self.remove(session, ctx);
    }
}

impl VidereRoom {
    /// A room rebuilt from its snapshot with `core`'s members in it
    /// (cluster adoption); `adopted_credit` is that of the members
    /// connected to this node.
    pub(super) fn adopted(
        core: RoomCore<MemberLink, MemberId>,
        home: RoomHome,
        adopted_credit: HashMap<MemberId, Arc<InFlight>>,
    ) -> Self {
        Self {
            occupancy: Occupancy::restored(core.members().len()),
            core,
            home,
            adopted_credit,
        }
    }

    #[cfg(test)]
    pub(super) fn core_for_tests(&self) -> &RoomCore<MemberLink, MemberId> {
        &self.core
    }

    /// Cluster mode: the members changed, so the room is written down for
    /// a node that may have to adopt it.
    fn save(&self) {
        let core = &self.core;
        self.home.save(Self::KIND, core.room_id(), || {
            core.snapshot(|session| (session.node, session.local))
        });
    }

    /// The room handled one packet of `from`: its credit goes back.
    fn handled(&self, from: MemberId, credit: Option<&Arc<InFlight>>) {
        if let Some(credit) = credit.or_else(|| self.adopted_credit.get(&from)) {
            credit.handled();
        }
    }

    fn send_to_all(&self, text: &ByteString) {
        for member in self.core.members() {
            send(&self.home.stats, &member.link, text.clone());
        }
    }

    /// The RoomId as logs may show it (hashed unless `log.show_keys`).
    fn shown_room(&self) -> ShownKey<'_> {
        ShownKey::new(self.core.room_id(), self.home.settings.log.show_keys)
    }

    /// `session` leaves (if it is in); the room stops once it is released.
    pub(super) fn remove(&mut self, session: MemberId, ctx: &mut Context<Self>) {
        let Some((member, notice)) = self.core.leave(session) else {
            return;
        };
        tracing::info!(room = %self.shown_room(), user = %member.user_id, %session, "videre leave");
        self.adopted_credit.remove(&session);
        self.send_to_all(&notice);
        self.save();
        self.detach(ctx);
    }

    fn detach(&mut self, ctx: &mut Context<Self>) {
        self.occupancy.detached();
        if self
            .home
            .release_if_idle::<Self>(self.core.room_id(), &self.occupancy)
        {
            ctx.stop();
        }
    }
}

/// Queues `text` for one member. A failed send means the session is gone
/// (its close will make it leave) or its client does not read, which the
/// SockJS layer handles by closing it.
fn send(stats: &Stats, link: &MemberLink, text: ByteString) {
    let bytes = text.len();
    match link.send(text) {
        Ok(()) => stats.sent(bytes),
        Err(SinkError::Closed) => {}
        Err(SinkError::Full) => {
            stats.slow_consumers.fetch_add(1, Relaxed);
            tracing::debug!("videre: client queue full, message dropped");
        }
    }
}

impl Handler<Attach<VidereRoom>> for VidereRoom {
    type Result = ();

    fn handle(&mut self, attach: Attach<VidereRoom>, ctx: &mut Context<Self>) {
        let step = self.home.step(true);
        let _held = step.hold();
        self.occupancy.attached();
        let Joiner {
            session,
            connect,
            link,
            outcome,
            credit: _,
        } = attach.member;
        let user_id: Arc<str> = connect
            .as_ref()
            .map_or("", |connect| connect.user_id.as_str())
            .into();
        let joined = match &connect {
            Some(connect) => self.core.join(session, user_id.clone(), link, connect),
            None => Err(Refusal::Internal.into()),
        };
        match joined {
            Ok(joined) => {
                if let Some(notice) = &joined.moved {
                    // Sessions leave before they join again; should one not,
                    // the others still see the leave, and it counts once.
                    self.occupancy.detached();
                    for member in self.core.members().iter().filter(|m| m.session != session) {
                        send(&self.home.stats, &member.link, notice.clone());
                    }
                }
                tracing::info!(
                    room = %self.shown_room(), user = %user_id, %session,
                    initiator = joined.initiator, members = self.core.members().len(),
                    "videre join"
                );
                self.send_to_all(&joined.announce);
                self.save();
                outcome.tell(Ok(()));
            }
            Err(error) => {
                // The refused attach is gone at once, so release stays exact.
                outcome.tell(Err(error));
                self.detach(ctx);
            }
        }
    }
}

impl Handler<SaveAgain> for VidereRoom {
    type Result = ();

    fn handle(&mut self, _: SaveAgain, _: &mut Context<Self>) {
        self.save();
    }
}

impl VidereRoom {
    fn broadcast(&mut self, broadcast: Broadcast) {
        self.handled(broadcast.from, broadcast.credit.as_ref());
        let text = self.core.broadcast(&broadcast.packet);
        self.send_to_all(&text);
        self.occupancy.relayed(self.core.members().len() as u64);
        // A sampled broadcast: read by its session to queued for every
        // member, the room's only clock read for it.
        if let Some(received) = broadcast.received {
            self.home
                .stats
                .videre_relay_latency
                .record(received.elapsed());
        }
    }

    fn ping(&mut self, ping: Ping) {
        self.handled(ping.from, ping.credit.as_ref());
        let reply = ping.reply.or_else(|| {
            self.core
                .members()
                .iter()
                .find(|member| member.session == ping.from)
                .map(|member| member.link.clone())
        });
        match reply {
            Some(link) => send(&self.home.stats, &link, self.core.ping(&ping.packet)),
            // A forwarded ping of a member that left meanwhile.
            None => {
                tracing::debug!(session = %ping.from, "videre ping of a member no longer in the room")
            }
        }
    }
}

impl Handler<Describe> for VidereRoom {
    type Result = MessageResult<Describe>;

    fn handle(&mut self, _: Describe, _: &mut Context<Self>) -> Self::Result {
        let members = self.core.members().iter().map(|m| m.session).collect();
        MessageResult(self.occupancy.summary(members))
    }
}
