//! The actor of one key spoken in the legacy dialect: owns its
//! [`LegacyGroupState`] and the send handles of every connection under it.
//!
//! It is the legacy twin of [`crate::sigver::group::Group`] and shares its
//! plumbing: sessions attach through the supervisor with a [`PeerEntry`],
//! send [`FromLegacyPeer`] events and a final [`Leave`]; [`GroupLinks`]
//! pushes frames to each session's bounded queue and reports idleness so
//! the supervisor disposes of the group. Unlike the current dialect, a peer
//! is answered (`isFirst`) as soon as it attaches.

use std::sync::Arc;

use actix::prelude::*;
use bytes::Bytes;

use crate::sigver::group::{GroupLinks, Leave, Outbound, PeerEntry};
use crate::sigver::ids::GlobalIds;
use crate::sigver::legacy::codec::{self, IS_FIRST_FALSE, IS_FIRST_TRUE};
use crate::sigver::legacy::state::{LegacyAction, LegacyGroupState, Payload};
use crate::sigver::state::{PeerId, SignalingId};
use crate::supervisor::{Attach, Dispose, Room, RoomContext};

/// A decoded event from a peer of a legacy group.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub enum FromLegacyPeer {
    Stable {
        peer: PeerId,
    },
    TryAnother {
        peer: PeerId,
    },
    Content {
        peer: PeerId,
        id: SignalingId,
        payload: Payload,
    },
}

pub struct LegacyGroup {
    links: GroupLinks,
    state: LegacyGroupState,
    /// Reused between events so relaying allocates nothing here.
    actions: Vec<LegacyAction>,
}

impl LegacyGroup {
    fn carry_out(&mut self) {
        for action in self.actions.drain(..) {
            let (to, out) = match action {
                LegacyAction::IsFirst { to, first } => {
                    let frame = if first {
                        &IS_FIRST_TRUE
                    } else {
                        &IS_FIRST_FALSE
                    };
                    (to, Outbound::Frame(Bytes::clone(frame)))
                }
                LegacyAction::Content { to, id, payload } => {
                    (to, Outbound::Frame(codec::content(id, payload)))
                }
                LegacyAction::Close { to, error } => {
                    tracing::info!(key = %self.links.key(), peer = to, %error, "closing legacy sigver peer");
                    (to, Outbound::Close(error))
                }
            };
            self.links.send(to, out);
        }
    }
}

impl Actor for LegacyGroup {
    type Context = Context<Self>;
}

impl Room for LegacyGroup {
    const KIND: &'static str = "sigver-legacy";
    type Member = PeerEntry;

    fn new_room(key: Arc<str>, ctx: RoomContext) -> Self {
        Self {
            state: LegacyGroupState::new(GroupLinks::limits(&ctx)),
            links: GroupLinks::new(key, &ctx),
            actions: Vec::new(),
        }
    }
}

impl Handler<Attach<LegacyGroup>> for LegacyGroup {
    type Result = ();

    fn handle(&mut self, attach: Attach<LegacyGroup>, _: &mut Context<Self>) {
        let (peer, favored) = self.links.attach(attach.member);
        self.state
            .attach(peer, favored, &mut GlobalIds, &mut self.actions);
        tracing::debug!(key = %self.links.key(), peer, first = self.state.is_member(peer), "legacy peer attached");
        self.carry_out();
    }
}

impl Handler<FromLegacyPeer> for LegacyGroup {
    type Result = ();

    fn handle(&mut self, event: FromLegacyPeer, _: &mut Context<Self>) {
        let peer = match &event {
            FromLegacyPeer::Stable { peer }
            | FromLegacyPeer::TryAnother { peer }
            | FromLegacyPeer::Content { peer, .. } => *peer,
        };
        self.links.handled(peer);
        match event {
            FromLegacyPeer::Stable { peer } => {
                self.state.stable(peer, &mut GlobalIds, &mut self.actions);
                tracing::debug!(key = %self.links.key(), peer, "stable");
            }
            FromLegacyPeer::TryAnother { peer } => {
                self.state
                    .try_another(peer, &mut GlobalIds, &mut self.actions);
                tracing::debug!(key = %self.links.key(), peer, member = ?self.state.bound_member(peer), "tryAnother");
            }
            FromLegacyPeer::Content { peer, id, payload } => {
                self.state
                    .content(peer, id, payload, &mut GlobalIds, &mut self.actions)
            }
        }
        self.carry_out();
    }
}

impl Handler<Leave> for LegacyGroup {
    type Result = ();

    fn handle(&mut self, leave: Leave, _: &mut Context<Self>) {
        self.state
            .leave(leave.peer, &mut GlobalIds, &mut self.actions);
        self.carry_out();
        self.links.detach::<LegacyGroup>(leave.peer);
    }
}

impl Handler<Dispose> for LegacyGroup {
    type Result = ();

    fn handle(&mut self, _: Dispose, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
