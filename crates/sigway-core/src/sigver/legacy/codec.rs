//! Bytes ↔ legacy sigver messages (`sigver-legacy.proto`), and the constant
//! frames built once.
//!
//! Decoding turns one binary frame into a [`LegacyInbound`] or a
//! [`SigverError::BadMessage`] (close 4003): bytes that are not a `Message`,
//! a `Message` with no type, and a `content` with no type (sigver 18.x
//! closed its sender for the last one). The booleans' values are not
//! inspected: `stable: false` is a `stable`.

use std::sync::LazyLock;

use bytes::Bytes;
use prost::Message as _;

use crate::error::SigverError;
use crate::proto::legacy::{Content, Message, content, message::Type};
use crate::sigver::legacy::state::Payload;
use crate::sigver::types::SignalingId;

/// What a legacy peer can say, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegacyInbound {
    Heartbeat,
    Stable,
    TryAnother,
    Content {
        id: SignalingId,
        payload: Payload,
    },
    /// `isFirst` from a client: meaningless, ignored (as sigver 18.x did).
    IsFirst,
}

pub fn decode(frame: Bytes) -> Result<LegacyInbound, SigverError> {
    let message = Message::decode(frame)
        .map_err(|e| SigverError::BadMessage(format!("invalid message: {e}").into()))?;
    Ok(match message.r#type {
        None => {
            return Err(SigverError::BadMessage(
                "Wrong message format or unknown message".into(),
            ));
        }
        Some(Type::Heartbeat(_)) => LegacyInbound::Heartbeat,
        Some(Type::Stable(_)) => LegacyInbound::Stable,
        Some(Type::TryAnother(_)) => LegacyInbound::TryAnother,
        Some(Type::IsFirst(_)) => LegacyInbound::IsFirst,
        Some(Type::Content(Content { id, r#type })) => {
            let payload = match r#type {
                Some(content::Type::Data(data)) => Payload::Data(data),
                Some(content::Type::IsEnd(_)) => Payload::IsEnd,
                Some(content::Type::IsError(_)) => Payload::IsError,
                None => {
                    return Err(SigverError::BadMessage(
                        "Unknown content type: neither data, isEnd nor isError".into(),
                    ));
                }
            };
            LegacyInbound::Content { id, payload }
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

pub static HEARTBEAT: LazyLock<Bytes> = LazyLock::new(|| encode(Type::Heartbeat(true)));
pub static IS_FIRST_TRUE: LazyLock<Bytes> = LazyLock::new(|| encode(Type::IsFirst(true)));
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
    fn garbage_empty_messages_and_untyped_content_are_bad_messages() {
        let untyped = encode(Type::Content(Content {
            id: 7,
            r#type: None,
        }));
        for frame in [
            Bytes::new(),
            Bytes::from_static(&[0xff, 0xff, 0xff]),
            Bytes::from_static(&[0x0a, 0x0a, 0x08]), // truncated content
            untyped,
        ] {
            assert!(
                matches!(decode(frame.clone()), Err(SigverError::BadMessage(_))),
                "{frame:?}"
            );
        }
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
