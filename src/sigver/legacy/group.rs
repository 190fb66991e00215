//! The legacy dialect's side of the group actor: [`LegacyGroup`] is the
//! shared [`GroupActor`] running [`LegacyGroupState`].
//!
//! Sessions join through the room layer, send [`FromLegacyPeer`] events
//! and a final `Leave`; the actor pushes frames to each session's sink and
//! releases itself when the last one left. What
//! is this dialect's own is here: its events, its frames, and that a peer is
//! answered (`isFirst`) as soon as it attaches rather than when it asks.

use actix::prelude::*;
use bytes::Bytes;

use crate::rooms::MemberId;
use crate::sigver::group::{DialectRules, GroupActor, Outbound};
use crate::sigver::ids::GroupIds;
use crate::sigver::legacy::codec::{self, IS_FIRST_FALSE, IS_FIRST_TRUE};
use crate::sigver::legacy::state::{LegacyAction, LegacyGroupState, Payload};
use crate::sigver::state::{GroupLimits, SignalingId};

/// A decoded event from a peer of a legacy group.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub enum FromLegacyPeer {
    Stable {
        peer: MemberId,
    },
    TryAnother {
        peer: MemberId,
    },
    Content {
        peer: MemberId,
        id: SignalingId,
        payload: Payload,
    },
}

/// The actor of a key spoken in the legacy dialect.
pub type LegacyGroup = GroupActor<LegacyGroupState<MemberId>>;

/// sigver 18.x: a session is answered (`isFirst`) as soon as it attaches.
impl DialectRules for LegacyGroupState<MemberId> {
    const KIND: &'static str = "sigver-legacy";
    type Action = LegacyAction<MemberId>;

    fn with_limits(limits: GroupLimits) -> Self {
        LegacyGroupState::new(limits)
    }

    fn attached(
        &mut self,
        key: &str,
        peer: MemberId,
        favored: bool,
        ids: &mut GroupIds,
        out: &mut Vec<Self::Action>,
    ) {
        self.attach(peer, favored, ids, out);
        tracing::debug!(%key, %peer, first = self.is_member(peer), "legacy peer attached");
    }

    fn left(&mut self, peer: MemberId, ids: &mut GroupIds, out: &mut Vec<Self::Action>) {
        self.leave(peer, ids, out);
    }

    fn outbound(key: &str, action: Self::Action) -> (MemberId, Outbound) {
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
                tracing::info!(%key, peer = %to, %error, "closing legacy sigver peer");
                (to, Outbound::Close(error))
            }
        }
    }
}

impl Handler<FromLegacyPeer> for LegacyGroup {
    type Result = ();

    fn handle(&mut self, event: FromLegacyPeer, _: &mut Context<Self>) {
        match event {
            FromLegacyPeer::Stable { peer } => self.event(peer, |state, key, ids, out| {
                state.stable(peer, ids, out);
                tracing::debug!(%key, %peer, "stable");
            }),
            FromLegacyPeer::TryAnother { peer } => self.event(peer, |state, key, ids, out| {
                state.try_another(peer, ids, out);
                tracing::debug!(%key, %peer, member = ?state.bound_member(peer), "tryAnother");
            }),
            FromLegacyPeer::Content { peer, id, payload } => self
                .event(peer, |state, _, ids, out| {
                    state.content(peer, id, payload, ids, out)
                }),
        }
    }
}
