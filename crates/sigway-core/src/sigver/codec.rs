//! Bytes ↔ sigver messages, and the constant frames built once.
//!
//! Decoding is a port of the decoder protobufjs generated for sigver
//! 20.1.0 (`sigver.proto`), on the shared [`protobufjs`] reader, so that a
//! frame is accepted, refused and understood as the Node server did: a
//! known field is read by its number whatever its wire type; field number
//! 0 is just an unknown field; a second `content` or `connect` replaces the
//! first instead of merging with it (the `members` of one `connect` do add
//! up); the `Message`'s type is the oneof member whose *first* occurrence
//! came last ([`OneofOrder`]). sigver 20 relayed a message's `content`
//! field whatever its type, so [`Inbound`] carries the content of a frame
//! whose type is another one. A frame with no known field is refused with
//! `Wrong message format or unknown message`, one protobufjs could not read
//! with protobufjs's error text, e.g. `index out of range: 3 + 10 > 3`
//! (both [`SigverError::BadMessage`], close 4743).
//!
//! Encoding writes the frames protobufjs wrote for sigver 20: a relayed
//! `content` has both ids, zeros included. The frames that never change
//! (`heartbeat`, `connected`) are encoded once and shared.

use std::borrow::Cow;
use std::sync::LazyLock;

use bytes::Bytes;
use prost::Message as _;

use crate::error::SigverError;
use crate::proto::sigver::{Message, message::Type};
use crate::sigver::frame::{HeadWriter, OutFrame, varint_len};
use crate::sigver::protobufjs::{OneofOrder, Reader};
use crate::sigver::types::{ContentIn, NetfluxId, SignalingId};

/// How deep sigver 20.1.0 on Node 20 could nest groups before its stack
/// ran out (measured on Node 20.20 x64: 11,200 nested groups were read,
/// 11,220 were not).
const NODE_20_GROUP_DEPTH: u32 = 11_200;

/// sigver 20's close reason for a `Message` with no type.
const NO_TYPE: &str = "Wrong message format or unknown message";

/// What a peer said in one frame: the `Message`'s type as sigver 20 saw
/// it, with the `content` the frame also carried, if any (relayed after
/// the type is acted on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// `heartbeat`: the peer is alive (its value is not inspected).
    Heartbeat {
        /// A `content` the same frame carried, relayed all the same.
        content: Option<ContentIn>,
    },
    /// `connect {id, members}`: let me in, or am I still in?
    Connect {
        /// The peer's Netflux id in its group.
        id: NetfluxId,
        /// The peer's view of the group's members (may be empty).
        members: Vec<NetfluxId>,
        /// A `content` the same frame carried (see `merged`).
        content: Option<ContentIn>,
    },
    /// `content`: to relay along a binding.
    Content(ContentIn),
    /// `connected` from a client: meaningless, ignored (not its content).
    Connected {
        /// A `content` the same frame carried, relayed all the same.
        content: Option<ContentIn>,
    },
}

/// One binary frame as a message, or why it closes its peer (4743): bytes
/// that are not a `Message`, or a `Message` with no type.
pub fn decode(frame: Bytes) -> Result<Inbound, SigverError> {
    match read_message(&frame) {
        Ok(Some(inbound)) => Ok(inbound),
        Ok(None) => Err(SigverError::BadMessage(Cow::Borrowed(NO_TYPE))),
        Err(reason) => Err(SigverError::BadMessage(reason.into())),
    }
}

/// `Message.decode`: the oneof `heartbeat` (1), `content` (2), `connect`
/// (3), `connected` (4); `None` when none was read.
fn read_message(frame: &Bytes) -> Result<Option<Inbound>, String> {
    const HEARTBEAT: usize = 0;
    const CONTENT: usize = 1;
    const CONNECT: usize = 2;
    const CONNECTED: usize = 3;
    let mut reader = Reader::new(frame, NODE_20_GROUP_DEPTH);
    let mut order = OneofOrder::<4>::default();
    let (mut content, mut connect) = (None, None);
    while reader.pos() < reader.len() {
        let tag = reader.uint32()?;
        let member = match tag >> 3 {
            1 => {
                reader.bool()?; // never inspected
                HEARTBEAT
            }
            2 => {
                let length = reader.uint32()?;
                content = Some(read_content(&mut reader, length)?);
                CONTENT
            }
            3 => {
                let length = reader.uint32()?;
                connect = Some(read_group_data(&mut reader, length)?);
                CONNECT
            }
            4 => {
                reader.bool()?;
                CONNECTED
            }
            _ => {
                reader.skip_type(tag & 7)?;
                continue;
            }
        };
        order.note(member);
    }
    Ok(order.last().map(|member| match member {
        HEARTBEAT => Inbound::Heartbeat { content },
        CONTENT => Inbound::Content(content.unwrap_or_default()),
        CONNECT => {
            let (id, members) = connect.unwrap_or_default();
            Inbound::Connect {
                id,
                members,
                content,
            }
        }
        _ => Inbound::Connected { content },
    }))
}

/// `Content.decode(reader, length)`: reads fields while the position is
/// before `start + length`, which is never checked against the buffer.
fn read_content(reader: &mut Reader<'_>, length: u32) -> Result<ContentIn, String> {
    let end = reader.pos() + u64::from(length);
    let mut content = ContentIn::default();
    while reader.pos() < end {
        let tag = reader.uint32()?;
        match tag >> 3 {
            1 => content.sender_id = reader.uint32()?,
            2 => content.recipient_id = reader.uint32()?,
            3 => content.last_data = reader.bool()?,
            4 => content.data = reader.bytes()?,
            _ => reader.skip_type(tag & 7)?,
        }
    }
    Ok(content)
}

/// `GroupData.decode(reader, length)`: `id` (1) and the repeated `members`
/// (2), packed when its wire type says so, else one per field.
fn read_group_data(
    reader: &mut Reader<'_>,
    length: u32,
) -> Result<(NetfluxId, Vec<NetfluxId>), String> {
    let end = reader.pos() + u64::from(length);
    let (mut id, mut members) = (0, Vec::new());
    while reader.pos() < end {
        let tag = reader.uint32()?;
        match tag >> 3 {
            1 => id = reader.uint32()?,
            2 if tag & 7 == 2 => {
                let packed_length = reader.uint32()?;
                let packed_end = reader.pos() + u64::from(packed_length);
                while reader.pos() < packed_end {
                    members.push(reader.uint32()?);
                }
            }
            2 => members.push(reader.uint32()?),
            _ => reader.skip_type(tag & 7)?,
        }
    }
    Ok((id, members))
}

fn encode(r#type: Type) -> Bytes {
    Message {
        r#type: Some(r#type),
    }
    .encode_to_vec()
    .into()
}

/// `content {senderId, recipientId, data}` (never with `lastData`), as
/// protobufjs wrote it for sigver 20: `Message.content` (2) holding
/// `senderId` (1) and `recipientId` (2) always, zeros included, then
/// `data` (4) unless it is empty, as on an end-of-binding notice.
pub fn content(sender_id: SignalingId, recipient_id: SignalingId, data: Bytes) -> OutFrame {
    const CONTENT_TAG: u8 = 0x12;
    const SENDER_TAG: u8 = 0x08;
    const RECIPIENT_TAG: u8 = 0x10;
    const DATA_TAG: u8 = 0x22;
    let data_len = data.len() as u64;
    let data_field = if data.is_empty() {
        0
    } else {
        1 + varint_len(data_len) + data.len()
    };
    let inner =
        1 + varint_len(u64::from(sender_id)) + 1 + varint_len(u64::from(recipient_id)) + data_field;
    let mut head = HeadWriter::default();
    head.put_u8(CONTENT_TAG);
    head.put_varint(inner as u64);
    head.put_u8(SENDER_TAG);
    head.put_varint(u64::from(sender_id));
    head.put_u8(RECIPIENT_TAG);
    head.put_varint(u64::from(recipient_id));
    if !data.is_empty() {
        head.put_u8(DATA_TAG);
        head.put_varint(data_len);
    }
    head.then(data)
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
    use crate::proto::sigver::{Content, GroupData};
    use proptest::prelude::*;

    fn decode_bytes(bytes: &[u8]) -> Result<Inbound, SigverError> {
        decode(Bytes::copy_from_slice(bytes))
    }

    fn bad(reason: &str) -> Result<Inbound, SigverError> {
        Err(SigverError::BadMessage(reason.to_string().into()))
    }

    fn data(recipient_id: u32, data: &'static [u8]) -> ContentIn {
        ContentIn {
            recipient_id,
            data: Bytes::from_static(data),
            ..ContentIn::default()
        }
    }

    #[test]
    fn constant_frames_are_the_node_servers_bytes() {
        // protobufjs encodes `heartbeat: true` as field 1 varint 1, etc.
        assert_eq!(&HEARTBEAT[..], &[0x08, 0x01]);
        assert_eq!(&CONNECTED_TRUE[..], &[0x20, 0x01]);
        // proto3 oneof members are always written, even when false.
        assert_eq!(&CONNECTED_FALSE[..], &[0x20, 0x00]);
    }

    /// The bytes sigver 20.1.0 sent, as observed on the real server.
    #[test]
    fn content_frames_are_the_node_servers_bytes() {
        // A joiner's content up to its member (senderId = the binding).
        assert_eq!(
            &content(0x7c4c_3ee9, 0, Bytes::from_static(b"x")).to_bytes()[..],
            &[
                0x12, 0x0b, 0x08, 0xe9, 0xfd, 0xb0, 0xe2, 0x07, 0x10, 0x00, 0x22, 0x01, b'x'
            ]
        );
        // An end-of-binding notice to a joiner: no data field at all.
        assert_eq!(
            &content(0, 300, Bytes::new()).to_bytes()[..],
            &[0x12, 0x05, 0x08, 0x00, 0x10, 0xac, 0x02]
        );
    }

    /// Each frame with the reason sigver 20.1.0 closed it with (4743), as
    /// observed on the real server by `tests/node_conformance.rs`.
    #[test]
    fn refused_frames_give_sigver_20s_reasons() {
        let cases: &[(&[u8], &str)] = &[
            (&[], NO_TYPE),
            (&[0x30, 0x01], NO_TYPE), // an unknown field only
            (&[0x00, 0x00], NO_TYPE), // field number 0
            (&[0x33, 0x08, 0x01, 0x34], NO_TYPE),
            (&[0xff, 0xff, 0xff], "index out of range: 3 + 10 > 3"),
            (&[0x12, 0x0a, 0x08], "index out of range: 3 + 10 > 3"), // truncated content
            (&[0x37], "invalid wire type 7 at offset 1"),
            (&[0x12, 0x02, 0x22, 0x05], "index out of range: 4 + 5 > 4"),
            (&[0x0a], "index out of range: 1 + 10 > 1"),
            (
                &[0x1a, 0x03, 0x12, 0x05, 0x01],
                "index out of range: 5 + 10 > 5",
            ),
            (&[0x1a, 0x02, 0x08], "index out of range: 3 + 10 > 3"),
            (&[0x0a, 0x01, 0x00], "index out of range: 3 + 1 > 3"),
        ];
        for (frame, reason) in cases {
            assert_eq!(decode_bytes(frame), bad(reason), "{frame:02x?}");
        }
    }

    #[test]
    fn the_type_is_the_member_first_seen_last_and_content_rides_along() {
        let content = |recipient_id, bytes| Some(data(recipient_id, bytes));
        // content, heartbeat: a heartbeat that carries a content.
        assert_eq!(
            decode_bytes(&[0x12, 0x03, 0x22, 0x01, b'x', 0x08, 0x01]),
            Ok(Inbound::Heartbeat {
                content: content(0, b"x")
            })
        );
        // heartbeat, content: a content.
        assert_eq!(
            decode_bytes(&[0x08, 0x00, 0x12, 0x03, 0x22, 0x01, b'y']),
            Ok(Inbound::Content(data(0, b"y")))
        );
        // content, connect, content: a connect, with the second content.
        assert_eq!(
            decode_bytes(&[
                0x12, 0x00, 0x1a, 0x02, 0x08, 0x07, 0x12, 0x03, 0x22, 0x01, b'z'
            ]),
            Ok(Inbound::Connect {
                id: 7,
                members: vec![],
                content: content(0, b"z")
            })
        );
        assert_eq!(
            decode_bytes(&[0x20, 0x01]),
            Ok(Inbound::Connected { content: None })
        );
    }

    #[test]
    fn a_second_connect_replaces_the_first_and_members_add_up_inside_one() {
        // connect {id 4, members [0]} then connect {id 4}: no members.
        assert_eq!(
            decode_bytes(&[0x1a, 0x04, 0x08, 0x04, 0x10, 0x00, 0x1a, 0x02, 0x08, 0x04]),
            Ok(Inbound::Connect {
                id: 4,
                members: vec![],
                content: None
            })
        );
        // One connect: id 9 then 5, members packed [7] then one 0.
        assert_eq!(
            decode_bytes(&[
                0x1a, 0x08, 0x08, 0x09, 0x12, 0x01, 0x07, 0x08, 0x05, 0x10, 0x00
            ]),
            Ok(Inbound::Connect {
                id: 5,
                members: vec![7, 0],
                content: None
            })
        );
    }

    #[test]
    fn inside_a_content_the_last_value_of_each_field_wins() {
        let frame = [
            0x12, 0x0e, 0x10, 0x05, 0x10, 0x00, 0x22, 0x01, b'p', 0x18, 0x01, 0x18, 0x00, 0x22,
            0x01, b'q',
        ];
        assert_eq!(decode_bytes(&frame), Ok(Inbound::Content(data(0, b"q"))));
    }

    #[test]
    fn known_fields_are_read_by_number_whatever_their_wire_type() {
        // content as a varint: its value is read as the length.
        assert_eq!(
            decode_bytes(&[0x10, 0x03, 0x22, 0x01, b'v']),
            Ok(Inbound::Content(data(0, b"v")))
        );
        // heartbeat as length-delimited: the length byte is the bool.
        assert_eq!(
            decode_bytes(&[0x0a, 0x01]),
            Ok(Inbound::Heartbeat { content: None })
        );
    }

    #[test]
    fn groups_nested_deeper_than_node_20s_stack_are_refused_as_it_did() {
        let nested = |depth: usize| {
            let mut frame = vec![0x33; depth];
            frame.extend(std::iter::repeat_n(0x34, depth));
            Bytes::from(frame)
        };
        assert_eq!(decode(nested(2_000)), bad(NO_TYPE));
        assert_eq!(
            decode(nested(50_000)),
            bad("Maximum call stack size exceeded")
        );
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
                members: vec![1, 2],
                content: None
            }
        );
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(Bytes::from(bytes));
        }

        #[test]
        fn content_round_trips(s in any::<u32>(), r in any::<u32>(), data in prop::collection::vec(any::<u8>(), 0..400)) {
            let frame = content(s, r, Bytes::from(data.clone())).to_bytes();
            let decoded = decode(frame.clone()).expect("decodes");
            prop_assert_eq!(decoded, Inbound::Content(ContentIn { sender_id: s, recipient_id: r, last_data: false, data: data.clone().into() }));
            // prost, a conforming decoder, reads the same message.
            let message = Message::decode(frame).expect("prost decodes");
            prop_assert_eq!(message.r#type, Some(Type::Content(Content { sender_id: s, recipient_id: r, last_data: false, data: data.into() })));
        }

        #[test]
        fn what_prost_encodes_decodes_the_same(s in any::<u32>(), r in any::<u32>(), last in any::<bool>(), data in prop::collection::vec(any::<u8>(), 0..64)) {
            let content = ContentIn { sender_id: s, recipient_id: r, last_data: last, data: data.clone().into() };
            let frame = encode(Type::Content(Content { sender_id: s, recipient_id: r, last_data: last, data: data.into() }));
            prop_assert_eq!(decode(frame), Ok(Inbound::Content(content)));
        }
    }
}
