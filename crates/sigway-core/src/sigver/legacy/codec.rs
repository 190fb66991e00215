//! Bytes ↔ legacy sigver messages (`sigver-legacy.proto`), and the constant
//! frames built once.
//!
//! Decoding is a port of the decoder protobufjs generated for sigver
//! 18.0.0, on the shared [`protobufjs`] reader, so that a frame is
//! accepted, refused and understood exactly as the Node server did: a
//! known field is read by its number whatever its wire type; field number
//! 0 is just an unknown field; a second `content` replaces the first
//! instead of merging with it; of several members of a oneof, the
//! message's type is the one whose *first* occurrence came last, with the
//! value it was given last ([`OneofOrder`]). A frame sigver 18 could not
//! read is a [`SigverError::BadMessage`] (close 4003) carrying protobufjs's
//! error text. What sigver 18 read but had nothing to act on (no type,
//! only unknown fields, `isFirst` from a client) is
//! [`LegacyInbound::Nothing`]: ignored, and not a heartbeat either. A
//! `content` with no type is passed on: whether it closes its sender
//! depends on the bindings (see [`super::state`]). The booleans' values
//! are not inspected: `stable: false` is a `stable`. Encoding (server to
//! client) uses prost, but for a relayed
//! `content`, whose head is written by hand in front of the data as it
//! arrived ([`crate::sigver::frame`]), to the same bytes.

use std::sync::LazyLock;

use bytes::Bytes;
use prost::Message as _;

use crate::error::SigverError;
use crate::proto::legacy::{Content, Message, content, message::Type};
use crate::sigver::frame::{HeadWriter, OutFrame, varint_len};
use crate::sigver::legacy::action::Payload;
use crate::sigver::protobufjs::{OneofOrder, Reader};
use crate::sigver::types::SignalingId;

/// How deep sigver 18.0.0 on Node 8.17 could nest groups before its stack
/// ran out (measured: 13,700 nested groups were read, 13,800 were not).
const NODE_8_GROUP_DEPTH: u32 = 13_700;

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
    read_message(&frame).map_err(|reason| SigverError::BadMessage(reason.into()))
}

/// `Message.decode`: fields `content` (1), `isFirst` (2), `stable` (3),
/// `heartbeat` (4), `tryAnother` (5), in the oneof's order.
fn read_message(frame: &Bytes) -> Result<LegacyInbound, String> {
    const CONTENT: usize = 0;
    const IS_FIRST: usize = 1;
    const STABLE: usize = 2;
    const HEARTBEAT: usize = 3;
    const TRY_ANOTHER: usize = 4;
    let mut reader = Reader::new(frame, NODE_8_GROUP_DEPTH);
    let mut order = OneofOrder::<5>::default();
    let mut content = (0, None);
    while reader.pos() < reader.len() {
        let tag = reader.uint32()?;
        let member = match tag >> 3 {
            1 => {
                let length = reader.uint32()?;
                content = read_content(&mut reader, length)?;
                CONTENT
            }
            field @ 2..=5 => {
                reader.bool()?; // never inspected
                match field {
                    2 => IS_FIRST,
                    3 => STABLE,
                    4 => HEARTBEAT,
                    _ => TRY_ANOTHER,
                }
            }
            _ => {
                reader.skip_type(tag & 7)?;
                continue;
            }
        };
        order.note(member);
    }
    Ok(match order.last() {
        None | Some(IS_FIRST) => LegacyInbound::Nothing,
        Some(STABLE) => LegacyInbound::Stable,
        Some(HEARTBEAT) => LegacyInbound::Heartbeat,
        Some(TRY_ANOTHER) => LegacyInbound::TryAnother,
        Some(_) => match content {
            (id, Some(payload)) => LegacyInbound::Content { id, payload },
            (id, None) => LegacyInbound::UntypedContent { id },
        },
    })
}

/// `Content.decode(reader, length)`: fields `id` (1), then the oneof `data`
/// (2), `isError` (3), `isEnd` (4). Reads while the position is before
/// `start + length`, which is never checked against the buffer.
fn read_content(
    reader: &mut Reader<'_>,
    length: u32,
) -> Result<(SignalingId, Option<Payload>), String> {
    const DATA: usize = 0;
    const IS_ERROR: usize = 1;
    const IS_END: usize = 2;
    let end = reader.pos() + u64::from(length);
    let mut order = OneofOrder::<3>::default();
    let (mut id, mut data) = (0, Bytes::new());
    while reader.pos() < end {
        let tag = reader.uint32()?;
        match tag >> 3 {
            1 => id = reader.uint32()?,
            2 => {
                data = reader.bytes()?;
                order.note(DATA);
            }
            3 => {
                reader.bool()?;
                order.note(IS_ERROR);
            }
            4 => {
                reader.bool()?;
                order.note(IS_END);
            }
            _ => reader.skip_type(tag & 7)?,
        }
    }
    let payload = order.last().map(|member| match member {
        DATA => Payload::Data(data),
        IS_ERROR => Payload::IsError,
        _ => Payload::IsEnd,
    });
    Ok((id, payload))
}

fn encode(r#type: Type) -> Bytes {
    Message {
        r#type: Some(r#type),
    }
    .encode_to_vec()
    .into()
}

/// `content {id, data | isEnd: true | isError: true}`. With data, as a
/// head and the data (what prost writes: `id` left out when 0, `data`
/// always written, being a oneof member).
pub fn content(id: SignalingId, payload: Payload) -> OutFrame {
    const CONTENT_TAG: u8 = 0x0a;
    const ID_TAG: u8 = 0x08;
    const DATA_TAG: u8 = 0x12;
    let r#type = match payload {
        Payload::Data(data) => {
            let id_field = if id == 0 {
                0
            } else {
                1 + varint_len(u64::from(id))
            };
            let data_len = data.len() as u64;
            let inner = id_field + 1 + varint_len(data_len) + data.len();
            let mut head = HeadWriter::default();
            head.put_u8(CONTENT_TAG);
            head.put_varint(inner as u64);
            if id != 0 {
                head.put_u8(ID_TAG);
                head.put_varint(u64::from(id));
            }
            head.put_u8(DATA_TAG);
            head.put_varint(data_len);
            return head.then(data);
        }
        Payload::IsEnd => content::Type::IsEnd(true),
        Payload::IsError => content::Type::IsError(true),
    };
    OutFrame::Whole(encode(Type::Content(Content {
        id,
        r#type: Some(r#type),
    })))
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

    fn decode_bytes(bytes: &[u8]) -> Result<LegacyInbound, SigverError> {
        decode(Bytes::copy_from_slice(bytes))
    }

    fn data(id: SignalingId, bytes: &'static [u8]) -> Result<LegacyInbound, SigverError> {
        Ok(LegacyInbound::Content {
            id,
            payload: Payload::Data(Bytes::from_static(bytes)),
        })
    }

    /// Each frame with the reason sigver 18.0.0 closed it with (4003), as
    /// observed on the real server by `tests/node_conformance_legacy.rs`.
    #[test]
    fn undecodable_frames_are_bad_messages_with_protobufjs_reasons() {
        let cases: &[(&[u8], &str)] = &[
            (&[0xff, 0xff, 0xff], "index out of range: 3 + 10 > 3"),
            (&[0x0a, 0x0a, 0x08], "index out of range: 3 + 10 > 3"), // truncated content
            (&[0x37], "invalid wire type 7 at offset 1"),
            (&[0x34], "invalid wire type 4 at offset 1"),
            (&[0x32, 0x05, 0x01], "index out of range: 2 + 5 > 3"),
            (&[0x31, 1, 2, 3], "index out of range: 1 + 8 > 4"),
            (&[0x30], "index out of range: 1 + 1 > 1"),
            (&[0x33], "index out of range: 1 + 10 > 1"),
            (&[0x0a, 0x02, 0x12, 0x05], "index out of range: 4 + 5 > 4"),
            (&[0x0a, 0x05], "index out of range: 2 + 10 > 2"),
            (&[0x00], "index out of range: 1 + 1 > 1"),
            (&[0x36, 0x00], "invalid wire type 6 at offset 1"),
            (
                &[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
                "index out of range: 7 + 10 > 7",
            ),
            (&[0x10, 0x80, 0x80], "index out of range: 3 + 10 > 3"),
            (
                &[0x33, 0x0b, 0x08, 0x01, 0x0c, 0x34, 0x3c],
                "invalid wire type 4 at offset 7",
            ),
        ];
        for (frame, reason) in cases {
            assert_eq!(
                decode_bytes(frame),
                Err(SigverError::BadMessage(reason.to_string().into())),
                "{frame:02x?}"
            );
        }
    }

    #[test]
    fn unknown_fields_alone_are_nothing_to_act_on() {
        for frame in [
            &[0x30, 0x01][..],                                       // field 6, varint
            &[0x33, 0x08, 0x01, 0x34],                               // a group with a field in it
            &[0x00, 0x00],                                           // field number 0
            &[0x3a, 0x00, 0x45, 1, 2, 3, 4],                         // empty bytes, fixed32
            &[0x33, 0x33, 0x34, 0x34, 0x31, 1, 2, 3, 4, 5, 6, 7, 8], // nested groups, fixed64
        ] {
            assert_eq!(
                decode_bytes(frame),
                Ok(LegacyInbound::Nothing),
                "{frame:02x?}"
            );
        }
    }

    #[test]
    fn the_type_is_the_member_first_seen_last() {
        // tryAnother, heartbeat, tryAnother: keys [tryAnother, heartbeat].
        assert_eq!(
            decode_bytes(&[0x28, 0x01, 0x20, 0x01, 0x28, 0x01]),
            Ok(LegacyInbound::Heartbeat)
        );
        assert_eq!(
            decode_bytes(&[0x20, 0x01, 0x28, 0x01]),
            Ok(LegacyInbound::TryAnother)
        );
        // Inside a content: isEnd, data "z", isEnd is data.
        assert_eq!(
            decode_bytes(&[0x0a, 0x07, 0x20, 0x01, 0x12, 0x01, b'z', 0x20, 0x01]),
            data(0, b"z")
        );
    }

    #[test]
    fn a_second_content_replaces_the_first() {
        // content {id 5, data "x"} then content {isEnd}: id 0, isEnd.
        let frame = [
            0x0a, 0x05, 0x08, 0x05, 0x12, 0x01, b'x', 0x0a, 0x02, 0x20, 0x01,
        ];
        assert_eq!(
            decode_bytes(&frame),
            Ok(LegacyInbound::Content {
                id: 0,
                payload: Payload::IsEnd
            })
        );
    }

    #[test]
    fn known_fields_are_read_by_number_whatever_their_wire_type() {
        // Field 1 with wire type 0: read as a length, then as a content.
        assert_eq!(
            decode_bytes(&[0x08, 0x02, 0x08, 0x07]),
            Ok(LegacyInbound::UntypedContent { id: 7 })
        );
        // Field 4 with wire type 2: its length byte is read as the bool.
        assert_eq!(decode_bytes(&[0x22, 0x01]), Ok(LegacyInbound::Heartbeat));
    }

    #[test]
    fn a_long_varint_reads_five_bytes_and_skips_five() {
        // id: 0xff x5 (5th byte keeps its low 4 bits), 5 bytes skipped.
        let mut frame = vec![0x0a, 0x0d, 0x08];
        frame.extend([0xff; 10]);
        frame.extend([0x12, 0x00]);
        assert_eq!(decode_bytes(&frame), data(u32::MAX, b""));
    }

    #[test]
    fn groups_nested_deeper_than_node_8s_stack_are_refused_as_it_did() {
        let nested = |depth: usize| {
            let mut frame = vec![0x33; depth];
            frame.extend(std::iter::repeat_n(0x34, depth));
            Bytes::from(frame)
        };
        assert_eq!(decode(nested(13_000)), Ok(LegacyInbound::Nothing));
        assert_eq!(
            decode(nested(512 * 1024)),
            Err(SigverError::BadMessage(
                "Maximum call stack size exceeded".into()
            ))
        );
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
            let frame = content(id, payload.clone()).to_bytes();
            prop_assert_eq!(decode(frame), Ok(LegacyInbound::Content { id, payload }));
        }

        #[test]
        fn content_with_data_is_what_prost_writes(id in any::<u32>(), zero_id in any::<bool>(), data in prop::collection::vec(any::<u8>(), 0..400)) {
            let id = if zero_id { 0 } else { id };
            let ours = content(id, Payload::Data(data.clone().into()));
            prop_assert!(matches!(ours, OutFrame::Split(_)));
            let prosts = encode(Type::Content(Content { id, r#type: Some(content::Type::Data(data.into())) }));
            prop_assert_eq!(ours.to_bytes(), prosts);
        }
    }
}
