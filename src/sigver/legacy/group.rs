//! The legacy dialect's side of the group actor: [`LegacyGroup`] is the
//! shared [`GroupActor`] running [`LegacyGroupState`].
//!
//! Sessions attach through the supervisor, send [`FromLegacyPeer`] events
//! and a final `Leave`; the actor pushes frames to each session's bounded
//! queue and reports idleness so the supervisor disposes of the group. What
//! is this dialect's own is here: its events, its frames, and that a peer is
//! answered (`isFirst`) as soon as it attaches rather than when it asks.

use actix::prelude::*;
use bytes::Bytes;

use crate::sigver::group::{DialectRules, GroupActor, Outbound};
use crate::sigver::ids::GlobalIds;
use crate::sigver::legacy::codec::{self, IS_FIRST_FALSE, IS_FIRST_TRUE};
use crate::sigver::legacy::state::{LegacyAction, LegacyGroupState, Payload};
use crate::sigver::state::{GroupLimits, PeerId, SignalingId};

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
    /// A `content` with no type.
    UntypedContent {
        peer: PeerId,
        id: SignalingId,
    },
}

/// The actor of a key spoken in the legacy dialect.
pub type LegacyGroup = GroupActor<LegacyGroupState>;

/// sigver 18.x: a session is answered (`isFirst`) as soon as it attaches.
impl DialectRules for LegacyGroupState {
    const KIND: &'static str = "sigver-legacy";
    type Action = LegacyAction;

    fn with_limits(limits: GroupLimits) -> Self {
        LegacyGroupState::new(limits)
    }

    /// `?favored` is ignored: sigver 18 had no favored peers.
    fn attached(&mut self, key: &str, peer: PeerId, _favored: bool, out: &mut Vec<LegacyAction>) {
        self.attach(peer, &mut GlobalIds, out);
        tracing::debug!(%key, peer, first = self.is_member(peer), "legacy peer attached");
    }

    fn left(&mut self, peer: PeerId, out: &mut Vec<LegacyAction>) {
        self.leave(peer, &mut GlobalIds, out);
    }

    fn outbound(key: &str, action: LegacyAction) -> (PeerId, Outbound) {
        match action {
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
                tracing::info!(%key, peer = to, %error, "closing legacy sigver peer");
                (to, Outbound::Close(error))
            }
        }
    }
}

impl Handler<FromLegacyPeer> for LegacyGroup {
    type Result = ();

    fn handle(&mut self, event: FromLegacyPeer, _: &mut Context<Self>) {
        match event {
            FromLegacyPeer::Stable { peer } => self.event(peer, |state, key, out| {
                state.stable(peer, &mut GlobalIds, out);
                tracing::debug!(%key, peer, "stable");
            }),
            FromLegacyPeer::TryAnother { peer } => self.event(peer, |state, key, out| {
                state.try_another(peer, &mut GlobalIds, out);
                tracing::debug!(%key, peer, member = ?state.bound_member(peer), "tryAnother");
            }),
            FromLegacyPeer::Content { peer, id, payload } => self.event(peer, |state, _, out| {
                state.content(peer, id, payload, &mut GlobalIds, out)
            }),
            FromLegacyPeer::UntypedContent { peer, id } => self.event(peer, |state, _, out| {
                state.untyped_content(peer, id, &mut GlobalIds, out)
            }),
        }
    }
}
