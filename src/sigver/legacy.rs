//! The legacy sigver dialect (sigver 18.x, early-2018 Netflux releases),
//! served on the same URL as the current one.
//!
//! A connection speaks it when the query says `?protocol=legacy`, or when
//! `sigver.protocol = "legacy"` and the query does not say
//! `?protocol=current` (see [`crate::sigver::session::entry`]). Everything
//! but the messages is shared with the current dialect: the session loop
//! (key check, heartbeat, frame size, closing), the room layer, signaling
//! ids and member selection. Here lives the dialect's [`Dialect`]: its
//! events ([`FromLegacyPeer`]), its frames, and that a peer is answered
//! (`isFirst`) as soon as it attaches rather than when it asks. Its codec
//! and rules are `sigway_core`'s ([`codec`], [`state`]); its close codes are
//! 4001-4004 with sigver 18's reason texts (mapped in
//! `sigway_core::error`). `tests/node_conformance_legacy.rs` compares the
//! whole with the real sigver 18.0.0.

pub(crate) use sigway_core::sigver::legacy::{codec, state};

use bytes::Bytes;

use crate::error::{SigverDialect, SigverError};
use crate::rooms::MemberId;
use crate::sigver::frame::OutFrame;
use crate::sigver::group::{Dialect, GroupActor, Heard, Outbound};
use crate::sigver::ids::GroupIds;
use crate::sigver::state::{GroupLimits, SignalingId};
use codec::{IS_FIRST_FALSE, IS_FIRST_TRUE, LegacyInbound};
use state::{LegacyAction, LegacyGroupState, Payload};

/// A decoded event from a peer of a legacy group.
#[derive(Debug)]
pub(crate) enum FromLegacyPeer {
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
    /// A `content` with no type.
    UntypedContent {
        peer: MemberId,
        id: SignalingId,
    },
}

/// The actor of a key spoken in the legacy dialect.
pub(crate) type LegacyGroup = GroupActor<LegacyGroupState<MemberId>>;

/// sigver 18.x: a session is answered (`isFirst`) as soon as it attaches.
impl Dialect for LegacyGroupState<MemberId> {
    const DIALECT: SigverDialect = SigverDialect::Legacy;
    const KIND: &'static str = "sigver-legacy";
    type Event = FromLegacyPeer;
    type Action = LegacyAction<MemberId>;

    fn with_limits(limits: GroupLimits) -> Self {
        LegacyGroupState::new(limits)
    }

    fn attached(
        &mut self,
        key: &str,
        peer: MemberId,
        // sigver 18 had no favored peers: `?favored` means nothing here.
        _favored: bool,
        ids: &mut GroupIds,
        out: &mut Vec<Self::Action>,
    ) {
        self.attach(peer, ids, out);
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
                (to, Outbound::Frame(OutFrame::Whole(Bytes::clone(frame))))
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

    fn heartbeat() -> Bytes {
        codec::HEARTBEAT.clone()
    }

    fn decode(frame: Bytes, peer: MemberId) -> Result<Heard<FromLegacyPeer>, SigverError> {
        Ok(Heard::Event(match codec::decode(frame)? {
            LegacyInbound::Heartbeat => return Ok(Heard::Heartbeat),
            LegacyInbound::Nothing => return Ok(Heard::Ignored),
            LegacyInbound::Stable => FromLegacyPeer::Stable { peer },
            LegacyInbound::TryAnother => FromLegacyPeer::TryAnother { peer },
            LegacyInbound::Content { id, payload } => FromLegacyPeer::Content { peer, id, payload },
            LegacyInbound::UntypedContent { id } => FromLegacyPeer::UntypedContent { peer, id },
        }))
    }

    fn handle(group: &mut LegacyGroup, event: FromLegacyPeer) {
        let changes = <LegacyGroupState<MemberId> as Dialect>::changes_state(&event);
        let step = group.step(changes);
        let _held = step.hold();
        match event {
            FromLegacyPeer::Stable { peer } => group.event(peer, |state, key, ids, out| {
                state.stable(peer, ids, out);
                tracing::debug!(%key, %peer, "stable");
            }),
            FromLegacyPeer::TryAnother { peer } => group.event(peer, |state, key, ids, out| {
                state.try_another(peer, ids, out);
                tracing::debug!(%key, %peer, member = ?state.bound_member(peer), "tryAnother");
            }),
            FromLegacyPeer::Content { peer, id, payload } => group
                .event(peer, |state, _, ids, out| {
                    state.content(peer, id, payload, ids, out)
                }),
            FromLegacyPeer::UntypedContent { peer, id } => group
                .event(peer, |state, _, ids, out| {
                    state.untyped_content(peer, id, ids, out)
                }),
        }
        if changes {
            group.save();
        }
    }

    fn changes_state(event: &FromLegacyPeer) -> bool {
        // Data is a plain relay; isEnd/isError end directions, stable and
        // tryAnother change membership or bindings.
        !matches!(
            event,
            FromLegacyPeer::Content {
                payload: Payload::Data(_),
                ..
            }
        )
    }
}
