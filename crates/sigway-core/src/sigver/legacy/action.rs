//! What the legacy rules take in a `content` ([`Payload`]) and what they
//! decide ([`LegacyAction`]): the legacy dialect's words, in a leaf that both
//! its codec and its rules ([`state`](super::state)) import, so the codec
//! does not depend on the rules.

use bytes::Bytes;

use crate::error::SigverError;
use crate::sigver::bindings::{Hop, Leg};
use crate::sigver::types::{PeerId, SignalingId};

/// What a `content` carries. A `content` with nothing set is not a payload:
/// it is [`LegacyGroupState::untyped_content`](super::state::LegacyGroupState::untyped_content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// Bytes to relay.
    Data(Bytes),
    /// This direction is finished.
    IsEnd,
    /// The binding failed: both directions are finished.
    IsError,
}

/// What the caller must do after an event, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegacyAction<P = PeerId> {
    /// Send `isFirst`: `true` when the peer is (now) a member, `false` when
    /// it has been bound to a member.
    IsFirst {
        /// The peer answered.
        to: P,
        /// `true`: it is a member; `false`: it is bound to one.
        first: bool,
    },
    /// Send `content {id, payload}`; `id` is 0 towards a joiner.
    Content {
        /// The peer to send it to.
        to: P,
        /// The joiner's route id going up to its member, else 0.
        id: SignalingId,
        /// What it carries.
        payload: Payload,
    },
    /// Close the peer's connection; it is already gone from the state.
    Close {
        /// The peer to close.
        to: P,
        /// Why: it names the close code and reason.
        error: SigverError,
    },
}

impl<P> LegacyAction<P> {
    /// `content` along a binding: it names the joiner's route id going up to
    /// the member, 0 going down.
    pub(crate) fn relay(leg: Leg<P>, payload: Payload) -> Self {
        let id = match leg.hop {
            Hop::Up => leg.id,
            Hop::Down => 0,
        };
        Self::Content {
            to: leg.to,
            id,
            payload,
        }
    }
}
