//! The legacy sigver dialect (sigver 18.x, early-2018 Netflux releases),
//! served on the same URL as the current one.
//!
//! A connection speaks it when the query says `?protocol=legacy`, or when
//! `sigver.protocol = "legacy"` and the query does not say
//! `?protocol=current` (see [`crate::sigver::session::entry`]). Everything
//! but the messages is shared with the current dialect: the session loop
//! (key check, heartbeat, frame size, closing), the supervisor, signaling
//! ids and member selection. Here live the dialect's pieces: [`codec`]
//! (bytes ↔ messages), read the way sigver 18.0.0 read them by
//! [`protobufjs`], [`state`] (the pure rules), [`group`] (the actor of one
//! key) and [`Legacy`], the [`Dialect`] that ties them to the session. Its
//! close codes and reason texts are sigver 18's (mapped in
//! [`crate::error`]). `tests/node_conformance_legacy.rs` compares the whole
//! with the real sigver 18.0.0.

pub mod codec;
pub mod group;
pub mod protobufjs;
pub mod state;

use actix::prelude::*;
use bytes::Bytes;

use crate::config::SigverDialect;
use crate::error::SigverError;
use crate::sigver::session::{Dialect, Heard};
use crate::sigver::state::PeerId;

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
        peer: PeerId,
        group: &Addr<LegacyGroup>,
    ) -> Result<Heard, SigverError> {
        let event = match codec::decode(frame)? {
            LegacyInbound::Heartbeat => return Ok(Heard::Heartbeat),
            LegacyInbound::Nothing => return Ok(Heard::Ignored),
            LegacyInbound::Stable => FromLegacyPeer::Stable { peer },
            LegacyInbound::TryAnother => FromLegacyPeer::TryAnother { peer },
            LegacyInbound::Content { id, payload } => FromLegacyPeer::Content { peer, id, payload },
            LegacyInbound::UntypedContent { id } => FromLegacyPeer::UntypedContent { peer, id },
        };
        group.do_send(event);
        Ok(Heard::ToGroup)
    }
}
