//! Bytes ↔ legacy sigver messages (`sigver-legacy.proto`), and the constant
//! frames built once.
//!
//! Decoding reads a frame as sigver 18.0.0 did ([`super::protobufjs`]) and
//! turns it into a [`LegacyInbound`], or into a [`SigverError::BadMessage`]
//! (close 4003) carrying protobufjs's error text when sigver 18 could not
//! read it. What sigver 18 read but had nothing to act on (no type, only
//! unknown fields, `isFirst` from a client) is [`LegacyInbound::Nothing`]:
//! ignored, and not a heartbeat either. A `content` with no type is passed
//! on: whether it closes its sender depends on the bindings (see
//! [`super::state`]). The booleans' values are not inspected: `stable:
//! false` is a `stable`. Encoding (server to client) uses prost.

use std::sync::LazyLock;

use bytes::Bytes;
use prost::Message as _;

use crate::error::SigverError;
use crate::proto::legacy::{Content, Message, content, message::Type};
use crate::sigver::legacy::action::Payload;
use crate::sigver::legacy::protobufjs::{self, ContentType, MessageType};
use crate::sigver::types::SignalingId;

/// What a legacy peer can say, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegacyInbound {
    /// `heartbeat`: the peer is alive.
    Heartbeat,
    /// `stable`: the peer has joined and becomes a member.
    Stable,
    /// `tryAnother`: bind the peer to another member.
    TryAnother,
    /// `content` with data, `isEnd` or `isError`.
    Content {
        /// The route id the peer wrote (0: towards its member).
        id: SignalingId,
        /// What the content carries.
        payload: Payload,
    },
    /// A `content` with none of data, isEnd, isError.
    UntypedContent {
        /// The route id the peer wrote.
        id: SignalingId,
    },
    /// Read, and nothing to act on: a `Message` with no type (or only
    /// unknown fields), or `isFirst`, which only servers send.
    Nothing,
}

/// One binary frame as sigver 18.0.0 read it, or why it closed its peer
/// (4003, with protobufjs's words).
pub fn decode(frame: Bytes) -> Result<LegacyInbound, SigverError> {
    let message = protobufjs::decode_message(&frame)
        .map_err(|reason| SigverError::BadMessage(reason.into()))?;
    Ok(match message {
        None | Some(MessageType::IsFirst) => LegacyInbound::Nothing,
        Some(MessageType::Heartbeat) => LegacyInbound::Heartbeat,
        Some(MessageType::Stable) => LegacyInbound::Stable,
        Some(MessageType::TryAnother) => LegacyInbound::TryAnother,
        Some(MessageType::Content(content)) => {
            let payload = match content.r#type {
                Some(ContentType::Data(data)) => Payload::Data(data),
                Some(ContentType::IsEnd) => Payload::IsEnd,
                Some(ContentType::IsError) => Payload::IsError,
                None => return Ok(LegacyInbound::UntypedContent { id: content.id }),
            };
            LegacyInbound::Content {
                id: content.id,
                payload,
            }
        }
    })
}

fn encode(r#type: Type) -> Bytes {
    Message {
        r#type: Some(r#type),
    }
    .encode_to_vec()
    .into()
}

/// `content {id, data | isEnd: true | isError: true}`.
pub fn content(id: SignalingId, payload: Payload) -> Bytes {
    let r#type = match payload {
        Payload::Data(data) => content::Type::Data(data),
        Payload::IsEnd => content::Type::IsEnd(true),
        Payload::IsError => content::Type::IsError(true),
    };
    encode(Type::Content(Content {
        id,
        r#type: Some(r#type),
    }))
}

/// `heartbeat: true`, the server's heartbeat frame.
pub static HEARTBEAT: LazyLock<Bytes> = LazyLock::new(|| encode(Type::Heartbeat(true)));
/// `isFirst: true`: the peer is (now) a member.
pub static IS_FIRST_TRUE: LazyLock<Bytes> = LazyLock::new(|| encode(Type::IsFirst(true)));
/// `isFirst: false`: the peer is bound to a member it must join through.
pub static IS_FIRST_FALSE: LazyLock<Bytes> = LazyLock::new(|| encode(Type::IsFirst(false)));

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn constant_frames_are_the_node_servers_bytes() {
        // protobufjs writes `heartbeat: true` as field 4 varint 1, and writes
        // a oneof member even when it is false.
        assert_eq!(&HEARTBEAT[..], &[0x20, 0x01]);
        assert_eq!(&IS_FIRST_TRUE[..], &[0x10, 0x01]);
        assert_eq!(&IS_FIRST_FALSE[..], &[0x10, 0x00]);
    }

    #[test]
    fn booleans_are_not_inspected() {
        let stable_false = encode(Type::Stable(false));
        assert_eq!(decode(stable_false), Ok(LegacyInbound::Stable));
        let try_false = encode(Type::TryAnother(false));
        assert_eq!(decode(try_false), Ok(LegacyInbound::TryAnother));
        let end_false = encode(Type::Content(Content {
            id: 3,
            r#type: Some(content::Type::IsEnd(false)),
        }));
        assert_eq!(
            decode(end_false),
            Ok(LegacyInbound::Content {
                id: 3,
                payload: Payload::IsEnd
            })
        );
    }

    #[test]
    fn undecodable_frames_are_bad_messages_with_protobufjs_reasons() {
        for (frame, reason) in [
            (&[0xff, 0xff, 0xff][..], "index out of range: 3 + 10 > 3"),
            (&[0x0a, 0x0a, 0x08], "index out of range: 3 + 10 > 3"), // truncated content
            (&[0x37], "invalid wire type 7 at offset 1"),
        ] {
            assert_eq!(
                decode(Bytes::copy_from_slice(frame)),
                Err(SigverError::BadMessage(reason.into()))
            );
        }
    }

    #[test]
    fn empty_unknown_and_server_only_messages_are_nothing_to_act_on() {
        for frame in [
            Bytes::new(),
            Bytes::from_static(&[0x30, 0x01]), // an unknown field only
            encode(Type::IsFirst(true)),
        ] {
            assert_eq!(
                decode(frame.clone()),
                Ok(LegacyInbound::Nothing),
                "{frame:?}"
            );
        }
    }

    #[test]
    fn untyped_content_is_passed_on_with_its_id() {
        let untyped = encode(Type::Content(Content {
            id: 7,
            r#type: None,
        }));
        assert_eq!(decode(untyped), Ok(LegacyInbound::UntypedContent { id: 7 }));
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(Bytes::from(bytes));
        }

        #[test]
        fn content_round_trips(id in any::<u32>(), kind in 0u8..3, data in prop::collection::vec(any::<u8>(), 0..64)) {
            let payload = match kind {
                0 => Payload::IsEnd,
                1 => Payload::IsError,
                _ => Payload::Data(data.into()),
            };
            let frame = content(id, payload.clone());
            prop_assert_eq!(decode(frame), Ok(LegacyInbound::Content { id, payload }));
        }
    }
}
