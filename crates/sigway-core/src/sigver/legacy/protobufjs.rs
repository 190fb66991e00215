//! How sigver 18.0.0 reads a frame: a port of the protobufjs 6.x reader and
//! of the decoder it generated for `Message` and `Content`
//! (`sigver-legacy.proto`), so that the legacy dialect accepts, refuses and
//! understands exactly what the Node server did.
//!
//! [`super::codec`] uses it instead of prost because a client sees where
//! protobufjs differs from a conforming decoder: a known field is read by
//! its number whatever its wire type; field number 0 is just an unknown
//! field; a second `content` replaces the first instead of merging with it;
//! of several members of a oneof, the message's type is the one whose
//! *first* occurrence came last (protobufjs reads the type back from the
//! object's keys, which JavaScript keeps in insertion order), with the
//! value it was given last; a varint that runs past the end is read as
//! zeros for up to five bytes; a group ends at any end-group tag. And a
//! refused frame closes its sender with protobufjs's own error text, e.g.
//! `index out of range: 3 + 10 > 3`. Positions are `u64`, as unbounded as
//! JavaScript's numbers are for these sizes.

use bytes::Bytes;

/// The oneof of a `Message`, as sigver 18 sees it (booleans' values are
/// never looked at, so they are not kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageType {
    /// `content` (field 1).
    Content(ContentFields),
    /// `isFirst` (field 2), which only servers send.
    IsFirst,
    /// `stable` (field 3).
    Stable,
    /// `heartbeat` (field 4).
    Heartbeat,
    /// `tryAnother` (field 5).
    TryAnother,
}

/// A `content`: its route id and the type of its oneof, if any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContentFields {
    /// The route id (field 1; 0 when absent).
    pub id: u32,
    /// The oneof, as sigver 18 picks it; `None` when no member was read.
    pub r#type: Option<ContentType>,
}

/// The oneof of a `Content`, as sigver 18 sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentType {
    /// `data` (field 2).
    Data(Bytes),
    /// `isError` (field 3).
    IsError,
    /// `isEnd` (field 4).
    IsEnd,
}

/// Decodes one frame as `Message.decode(new Uint8Array(frame))` does:
/// `Ok(None)` for a message with no type, `Err` with protobufjs's message.
pub fn decode_message(frame: &Bytes) -> Result<Option<MessageType>, String> {
    #[derive(Clone, Copy, PartialEq)]
    enum Kind {
        Content,
        IsFirst,
        Stable,
        Heartbeat,
        TryAnother,
    }
    let mut reader = Reader { buf: frame, pos: 0 };
    let mut kinds = FirstSeen::default();
    let mut content = None;
    while reader.pos < reader.len() {
        let tag = reader.uint32()?;
        let kind = match tag >> 3 {
            1 => {
                let length = reader.uint32()?;
                content = Some(decode_content(&mut reader, length)?);
                Kind::Content
            }
            2..=5 => {
                reader.uint32()?; // a bool: read, never inspected
                match tag >> 3 {
                    2 => Kind::IsFirst,
                    3 => Kind::Stable,
                    4 => Kind::Heartbeat,
                    _ => Kind::TryAnother,
                }
            }
            _ => {
                reader.skip_type(tag & 7)?;
                continue;
            }
        };
        kinds.note(kind);
    }
    Ok(kinds.last().map(|kind| match kind {
        Kind::Content => MessageType::Content(content.unwrap_or_default()),
        Kind::IsFirst => MessageType::IsFirst,
        Kind::Stable => MessageType::Stable,
        Kind::Heartbeat => MessageType::Heartbeat,
        Kind::TryAnother => MessageType::TryAnother,
    }))
}

/// `Content.decode(reader, length)`: reads fields while the position is
/// before `start + length`, which is never checked against the buffer.
fn decode_content(reader: &mut Reader<'_>, length: u32) -> Result<ContentFields, String> {
    #[derive(Clone, Copy, PartialEq)]
    enum Kind {
        Data,
        IsError,
        IsEnd,
    }
    let end = reader.pos + u64::from(length);
    let mut kinds = FirstSeen::default();
    let (mut id, mut data) = (0, Bytes::new());
    while reader.pos < end {
        let tag = reader.uint32()?;
        match tag >> 3 {
            1 => id = reader.uint32()?,
            2 => {
                data = reader.bytes()?;
                kinds.note(Kind::Data);
            }
            3 => {
                reader.uint32()?;
                kinds.note(Kind::IsError);
            }
            4 => {
                reader.uint32()?;
                kinds.note(Kind::IsEnd);
            }
            _ => reader.skip_type(tag & 7)?,
        }
    }
    let r#type = kinds.last().map(|kind| match kind {
        Kind::Data => ContentType::Data(data),
        Kind::IsError => ContentType::IsError,
        Kind::IsEnd => ContentType::IsEnd,
    });
    Ok(ContentFields { id, r#type })
}

/// The members of a oneof in the order they first appeared: the last one
/// is the type protobufjs reports.
struct FirstSeen<K>(Vec<K>);

impl<K> Default for FirstSeen<K> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<K: Copy + PartialEq> FirstSeen<K> {
    fn note(&mut self, kind: K) {
        if !self.0.contains(&kind) {
            self.0.push(kind);
        }
    }

    fn last(&self) -> Option<K> {
        self.0.last().copied()
    }
}

/// protobufjs's `Reader` over a `Uint8Array`, where reading past the end
/// gives `undefined`.
struct Reader<'a> {
    buf: &'a Bytes,
    pos: u64,
}

impl Reader<'_> {
    fn len(&self) -> u64 {
        self.buf.len() as u64
    }

    fn byte(&self, at: u64) -> Option<u8> {
        usize::try_from(at)
            .ok()
            .and_then(|i| self.buf.get(i).copied())
    }

    /// `indexOutOfRange(reader, writeLength)`.
    fn out_of_range(&self, write_length: u64) -> String {
        let write_length = if write_length == 0 { 1 } else { write_length };
        format!(
            "index out of range: {} + {write_length} > {}",
            self.pos,
            self.len()
        )
    }

    /// `Reader#uint32`: at most five bytes are looked at; a byte past the
    /// end reads as 0 and never ends the varint; after five bytes with the
    /// high bit set, five more are skipped unseen.
    fn uint32(&mut self) -> Result<u32, String> {
        let mut value = 0u32;
        for i in 0..5 {
            let byte = self.byte(self.pos);
            self.pos += 1;
            let bits = u32::from(byte.unwrap_or(0));
            value |= if i < 4 {
                (bits & 127) << (7 * i)
            } else {
                (bits & 15) << 28
            };
            // JavaScript's `undefined < 128` is false.
            if byte.is_some_and(|b| b < 128) {
                return Ok(value);
            }
        }
        self.pos += 5;
        if self.pos > self.len() {
            self.pos = self.len();
            return Err(self.out_of_range(10));
        }
        Ok(value)
    }

    /// `Reader#bytes`.
    fn bytes(&mut self) -> Result<Bytes, String> {
        let length = u64::from(self.uint32()?);
        let (start, end) = (self.pos, self.pos + length);
        if end > self.len() {
            return Err(self.out_of_range(length));
        }
        self.pos = end;
        // Both ends are within the buffer, hence fit in usize.
        Ok(self.buf.slice(start as usize..end as usize))
    }

    /// `Reader#skip(length)`.
    fn skip(&mut self, length: u64) -> Result<(), String> {
        if self.pos + length > self.len() {
            return Err(self.out_of_range(length));
        }
        self.pos += length;
        Ok(())
    }

    /// `Reader#skip()`: a varint of any length.
    fn skip_varint(&mut self) -> Result<(), String> {
        loop {
            let Some(byte) = self.byte(self.pos) else {
                return Err(self.out_of_range(1));
            };
            self.pos += 1;
            if byte & 128 == 0 {
                return Ok(());
            }
        }
    }

    /// `Reader#skipType(wireType)`. protobufjs recurses into nested groups;
    /// a depth count does the same without a stack a client could exhaust.
    fn skip_type(&mut self, wire_type: u32) -> Result<(), String> {
        match wire_type {
            0 => self.skip_varint(),
            1 => self.skip(8),
            2 => {
                let length = self.uint32()?;
                self.skip(u64::from(length))
            }
            3 => {
                let mut depth = 1u64;
                while depth > 0 {
                    match self.uint32()? & 7 {
                        3 => depth += 1,
                        4 => depth -= 1,
                        other => self.skip_type(other)?,
                    }
                }
                Ok(())
            }
            5 => self.skip(4),
            _ => Err(format!(
                "invalid wire type {wire_type} at offset {}",
                self.pos
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    fn decode(bytes: &[u8]) -> Result<Option<MessageType>, String> {
        decode_message(&Bytes::copy_from_slice(bytes))
    }

    fn data(id: u32, bytes: &'static [u8]) -> Result<Option<MessageType>, String> {
        Ok(Some(MessageType::Content(ContentFields {
            id,
            r#type: Some(ContentType::Data(Bytes::from_static(bytes))),
        })))
    }

    /// Each frame with the reason sigver 18.0.0 closed it with (4003), as
    /// observed on the real server by `tests/node_conformance_legacy.rs`.
    #[test]
    fn refused_frames_give_protobufjs_error_texts() {
        let cases: &[(&[u8], &str)] = &[
            (&[0xff, 0xff, 0xff], "index out of range: 3 + 10 > 3"),
            (&[0x0a, 0x0a, 0x08], "index out of range: 3 + 10 > 3"),
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
        for (bytes, reason) in cases {
            assert_eq!(decode(bytes), Err(reason.to_string()), "{bytes:02x?}");
        }
    }

    #[test]
    fn nothing_and_unknown_fields_decode_to_no_type() {
        for bytes in [
            &[][..],
            &[0x30, 0x01],                                           // field 6, varint
            &[0x33, 0x08, 0x01, 0x34],                               // a group with a field in it
            &[0x00, 0x00],                                           // field number 0
            &[0x3a, 0x00, 0x45, 1, 2, 3, 4],                         // empty bytes, fixed32
            &[0x33, 0x33, 0x34, 0x34, 0x31, 1, 2, 3, 4, 5, 6, 7, 8], // nested groups, fixed64
        ] {
            assert_eq!(decode(bytes), Ok(None), "{bytes:02x?}");
        }
    }

    #[test]
    fn the_type_is_the_member_first_seen_last() {
        // tryAnother, heartbeat, tryAnother: keys [tryAnother, heartbeat].
        assert_eq!(
            decode(&[0x28, 0x01, 0x20, 0x01, 0x28, 0x01]),
            Ok(Some(MessageType::Heartbeat))
        );
        assert_eq!(
            decode(&[0x20, 0x01, 0x28, 0x01]),
            Ok(Some(MessageType::TryAnother))
        );
        // Inside a content: isEnd, data "z", isEnd is data.
        assert_eq!(
            decode(&[0x0a, 0x07, 0x20, 0x01, 0x12, 0x01, b'z', 0x20, 0x01]),
            data(0, b"z")
        );
        // Booleans' values do not matter: `stable: false` is a stable.
        assert_eq!(decode(&[0x18, 0x00]), Ok(Some(MessageType::Stable)));
    }

    #[test]
    fn a_second_content_replaces_the_first() {
        // content {id 5, data "x"} then content {isEnd}: id 0, isEnd.
        let frame = [
            0x0a, 0x05, 0x08, 0x05, 0x12, 0x01, b'x', 0x0a, 0x02, 0x20, 0x01,
        ];
        assert_eq!(
            decode(&frame),
            Ok(Some(MessageType::Content(ContentFields {
                id: 0,
                r#type: Some(ContentType::IsEnd),
            })))
        );
    }

    #[test]
    fn known_fields_are_read_by_number_whatever_their_wire_type() {
        // Field 1 with wire type 0: read as a length, then as a content.
        assert_eq!(
            decode(&[0x08, 0x02, 0x08, 0x07]),
            Ok(Some(MessageType::Content(ContentFields {
                id: 7,
                r#type: None
            })))
        );
        // Field 4 with wire type 2: its length byte is read as the bool.
        assert_eq!(decode(&[0x22, 0x01]), Ok(Some(MessageType::Heartbeat)));
    }

    #[test]
    fn a_long_varint_reads_five_bytes_and_skips_five() {
        // id: 0xff x5 (5th byte keeps its low 4 bits), 5 bytes skipped.
        let mut frame = vec![0x0a, 0x0d, 0x08];
        frame.extend([0xff; 10]);
        frame.extend([0x12, 0x00]);
        let content = ContentFields {
            id: u32::MAX,
            r#type: Some(ContentType::Data(Bytes::new())),
        };
        assert_eq!(decode(&frame), Ok(Some(MessageType::Content(content))));
    }

    #[test]
    fn what_prost_encodes_decodes_the_same() {
        use crate::proto::legacy::{Content, Message, content, message::Type};
        let message = Message {
            r#type: Some(Type::Content(Content {
                id: 123_456_789,
                r#type: Some(content::Type::Data(Bytes::from_static(b"offer"))),
            })),
        };
        assert_eq!(
            decode(&message.encode_to_vec()),
            data(123_456_789, b"offer")
        );
    }

    #[test]
    fn groups_nested_a_frame_deep_do_not_exhaust_the_stack() {
        let depth = 512 * 1024;
        let mut frame = vec![0x33; depth];
        frame.extend(std::iter::repeat_n(0x34, depth));
        assert_eq!(decode(&frame), Ok(None));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn any_bytes_decode_or_fail_without_panicking(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
                let _ = decode(&bytes);
            }
        }
    }
}
