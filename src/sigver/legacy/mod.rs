//! The legacy sigver dialect (sigver 18.x, early-2018 Netflux releases),
//! served on the same URL as the current one.
//!
//! A connection speaks it when the query says `?protocol=legacy`, or when
//! `sigver.protocol = "legacy"` and the query does not say
//! `?protocol=current` (see [`crate::sigver::session::entry`]). Everything
//! but the messages is shared with the current dialect: the session loop
//! (key check, heartbeat, frame size, closing), the room layer, signaling
//! ids and member selection. Here live the dialect's pieces: [`codec`]
//! (bytes ↔ messages), [`state`] (the pure rules), [`group`] (the actor of
//! one key) and [`Legacy`], the [`Dialect`] that ties them to the session.
//! Its close codes are 4001-4004 (mapped in [`crate::error`]).

pub mod group;

pub use sigway_core::sigver::legacy::{codec, state};

use bytes::Bytes;

use crate::config::SigverDialect;
use crate::error::SigverError;
use crate::rooms::{InFlight, MemberId, RoomRef};
use crate::sigver::session::{Dialect, Heard};

pub use group::{FromLegacyPeer, LegacyGroup};

use codec::LegacyInbound;

/// sigver 18.x.
pub struct Legacy;

impl Dialect for Legacy {
    type Group = LegacyGroup;
    const DIALECT: SigverDialect = SigverDialect::Legacy;

    fn heartbeat() -> Bytes {
        codec::HEARTBEAT.clone()
    }

    fn dispatch(
        frame: Bytes,
        peer: MemberId,
        group: &RoomRef<LegacyGroup>,
        credit: &InFlight,
    ) -> Result<Heard, SigverError> {
        let event = match codec::decode(frame)? {
            LegacyInbound::Heartbeat => return Ok(Heard::Heartbeat),
            LegacyInbound::IsFirst => return Ok(Heard::Ignored),
            LegacyInbound::Stable => FromLegacyPeer::Stable { peer },
            LegacyInbound::TryAnother => FromLegacyPeer::TryAnother { peer },
            LegacyInbound::Content { id, payload } => FromLegacyPeer::Content { peer, id, payload },
        };
        credit.sent();
        group.tell(event);
        Ok(Heard::ToGroup)
    }
}
