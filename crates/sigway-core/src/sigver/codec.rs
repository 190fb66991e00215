//! Bytes ↔ sigver messages, and the constant frames built once.
//!
//! Decoding turns one binary WebSocket frame into an [`Inbound`] event or a
//! [`SigverError::BadMessage`] (close 4743). Encoding builds the frames the
//! server sends; the ones that never change (`heartbeat`, `connected`) are
//! encoded once and shared.

use std::sync::LazyLock;

use bytes::Bytes;
use prost::Message as _;

use crate::error::SigverError;
use crate::proto::sigver::{Content, GroupData, Message, message::Type};
use crate::sigver::types::{ContentIn, NetfluxId, SignalingId};

/// What a peer can say, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// `heartbeat`: the peer is alive (its value is not inspected).
    Heartbeat,
    /// `connect {id, members}`: let me in, or am I still in?
    Connect {
        /// The peer's Netflux id in its group.
        id: NetfluxId,
        /// The peer's view of the group's members (may be empty).
        members: Vec<NetfluxId>,
    },
    /// `content`: to relay along a binding.
    Content(ContentIn),
    /// `connected` from a client: meaningless, ignored.
    Connected,
}

/// One binary frame as a message, or why it closes its peer (4743): bytes
/// that are not a `Message`, or a `Message` with no type.
pub fn decode(frame: Bytes) -> Result<Inbound, SigverError> {
    let message = Message::decode(frame)
        .map_err(|e| SigverError::BadMessage(format!("invalid message: {e}").into()))?;
    match message.r#type {
        None => Err(SigverError::BadMessage(
            "Wrong message format or unknown message".into(),
        )),
        Some(Type::Heartbeat(_)) => Ok(Inbound::Heartbeat),
        Some(Type::Connect(GroupData { id, members })) => Ok(Inbound::Connect { id, members }),
        Some(Type::Connected(_)) => Ok(Inbound::Connected),
        Some(Type::Content(Content {
            sender_id,
            recipient_id,
            last_data,
            data,
        })) => Ok(Inbound::Content(ContentIn {
            sender_id,
            recipient_id,
            last_data,
            data,
        })),
    }
}

fn encode(r#type: Type) -> Bytes {
    Message {
        r#type: Some(r#type),
    }
    .encode_to_vec()
    .into()
}

/// `content {senderId, recipientId, data}` (never with `lastData`).
pub fn content(sender_id: SignalingId, recipient_id: SignalingId, data: Bytes) -> Bytes {
    encode(Type::Content(Content {
        sender_id,
        recipient_id,
        last_data: false,
        data,
    }))
}

/// `heartbeat: true`, the server's heartbeat frame.
pub static HEARTBEAT: LazyLock<Bytes> = LazyLock::new(|| encode(Type::Heartbeat(true)));
/// `connected: true`: the peer is (now) a member.
pub static CONNECTED_TRUE: LazyLock<Bytes> = LazyLock::new(|| encode(Type::Connected(true)));
/// `connected: false`: the peer is bound to a member it must connect through.
pub static CONNECTED_FALSE: LazyLock<Bytes> = LazyLock::new(|| encode(Type::Connected(false)));

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn constant_frames_are_the_node_servers_bytes() {
        // protobufjs encodes `heartbeat: true` as field 1 varint 1, etc.
        assert_eq!(&HEARTBEAT[..], &[0x08, 0x01]);
        assert_eq!(&CONNECTED_TRUE[..], &[0x20, 0x01]);
        // proto3 oneof members are always written, even when false.
        assert_eq!(&CONNECTED_FALSE[..], &[0x20, 0x00]);
    }

    #[test]
    fn empty_and_garbage_frames_are_bad_messages() {
        assert!(matches!(
            decode(Bytes::new()),
            Err(SigverError::BadMessage(_))
        ));
        assert!(matches!(
            decode(Bytes::from_static(&[0xff, 0xff, 0xff])),
            Err(SigverError::BadMessage(_))
        ));
        // Truncated content: field 2, length 10, 1 byte present.
        assert!(matches!(
            decode(Bytes::from_static(&[0x12, 0x0a, 0x08])),
            Err(SigverError::BadMessage(_))
        ));
    }

    #[test]
    fn connect_round_trips() {
        let frame = encode(Type::Connect(GroupData {
            id: 7,
            members: vec![1, 2],
        }));
        assert_eq!(
            decode(frame).expect("decodes"),
            Inbound::Connect {
                id: 7,
                members: vec![1, 2]
            }
        );
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(Bytes::from(bytes));
        }

        #[test]
        fn content_round_trips(s in any::<u32>(), r in any::<u32>(), data in prop::collection::vec(any::<u8>(), 0..64)) {
            let frame = content(s, r, Bytes::from(data.clone()));
            let decoded = decode(frame).expect("decodes");
            prop_assert_eq!(decoded, Inbound::Content(ContentIn { sender_id: s, recipient_id: r, last_data: false, data: data.into() }));
        }
    }
}
