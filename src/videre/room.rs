//! The actor of one videre room ([`VidereRoom`]): it owns one pure
//! [`RoomCore`] (the rules, in `sigway_core`) holding its members' links,
//! is created by the room layer ([`Rooms::join`](crate::rooms::Rooms::join)
//! forwards an [`Attach`]) and releases itself when its last member left.
//! It only moves messages, and gives each sender's [`InFlight`] credit back
//! per event.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use actix::prelude::*;
use bytestring::ByteString;
use tokio::sync::oneshot;

use crate::error::VidereError;
use crate::observe::Stats;
use crate::rooms::{Attach, InFlight, MemberId, Occupancy, Room, RoomHome};
use sigway_core::videre::packet::Packet;
use sigway_core::videre::room::RoomCore;
use sigway_sockjs::SessionLink;

/// What a session hands the room when it joins.
pub(crate) struct Joiner {
    pub session: MemberId,
    pub user_id: Arc<str>,
    pub link: SessionLink,
    pub connect: Packet,
    /// Told whether the room took the session (a full room refuses).
    pub outcome: oneshot::Sender<Result<(), VidereError>>,
}

/// A session leaves the room (disconnect, another connect, or its close).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Leave {
    pub session: MemberId,
}

/// A broadcast packet for every member; `credit` is the sender's.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Broadcast {
    pub packet: Packet,
    pub credit: Arc<InFlight>,
}

/// A ping; the answer goes to `reply`; `credit` is the sender's.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Ping {
    pub packet: Packet,
    pub reply: SessionLink,
    pub credit: Arc<InFlight>,
}

/// The actor of one videre room.
pub(crate) struct VidereRoom {
    core: RoomCore<SessionLink, MemberId>,
    occupancy: Occupancy,
    home: RoomHome,
}

impl Actor for VidereRoom {
    type Context = Context<Self>;
}

impl Room for VidereRoom {
    const KIND: &'static str = "videre";
    type Member = Joiner;
    fn new_room(key: Arc<str>, home: RoomHome) -> Self {
        Self {
            core: RoomCore::new(key, home.settings.limits.max_members_per_room),
            occupancy: Occupancy::default(),
            home,
        }
    }
}

impl VidereRoom {
    fn send_to_all(&self, text: &ByteString) {
        for member in self.core.members() {
            send(&self.home.stats, &member.link, text.clone());
        }
    }

    /// `session` leaves (if it is in); the room stops once it is released.
    fn remove(&mut self, session: MemberId, ctx: &mut Context<Self>) {
        let Some((member, notice)) = self.core.leave(session) else {
            return;
        };
        tracing::info!(room = %self.core.room_id(), user = %member.user_id, %session, "videre leave");
        self.send_to_all(&notice);
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

/// Queues `text` for one client. A failed send means the session is gone
/// (its close will make it leave) or its client does not read, which the
/// SockJS layer handles by closing it.
fn send(stats: &Stats, link: &SessionLink, text: ByteString) {
    let bytes = text.len();
    match link.send(text) {
        Ok(()) => stats.sent(bytes),
        Err(_) if link.is_closed() => {}
        Err(_) => {
            stats.slow_consumers.fetch_add(1, Relaxed);
            tracing::debug!("videre: client queue full, message dropped");
        }
    }
}

impl Handler<Attach<VidereRoom>> for VidereRoom {
    type Result = ();

    fn handle(&mut self, attach: Attach<VidereRoom>, ctx: &mut Context<Self>) {
        self.occupancy.attached();
        let Joiner {
            session,
            user_id,
            link,
            connect,
            outcome,
        } = attach.member;
        match self.core.join(session, user_id.clone(), link, &connect) {
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
                    room = %self.core.room_id(), user = %user_id, %session,
                    initiator = joined.initiator, members = self.core.members().len(),
                    "videre join"
                );
                self.send_to_all(&joined.announce);
                let _ = outcome.send(Ok(()));
            }
            Err(error) => {
                // The refused attach is gone at once, so release stays exact.
                let _ = outcome.send(Err(error));
                self.detach(ctx);
            }
        }
    }
}

impl Handler<Leave> for VidereRoom {
    type Result = ();

    fn handle(&mut self, leave: Leave, ctx: &mut Context<Self>) {
        self.remove(leave.session, ctx);
    }
}

impl Handler<Broadcast> for VidereRoom {
    type Result = ();

    fn handle(&mut self, broadcast: Broadcast, _: &mut Context<Self>) {
        broadcast.credit.handled();
        let text = self.core.broadcast(&broadcast.packet);
        self.send_to_all(&text);
    }
}

impl Handler<Ping> for VidereRoom {
    type Result = ();

    fn handle(&mut self, ping: Ping, _: &mut Context<Self>) {
        ping.credit.handled();
        send(&self.home.stats, &ping.reply, self.core.ping(&ping.packet));
    }
}
