//! A frame the server sends a peer, in the shape the socket writes it:
//! whole (the constant frames, encoded once and shared) or split into a
//! small head and the data it relays.
//!
//! A relayed `content` is most of what a signaling server sends. Assembled,
//! each one cost an allocation, a copy of its data and a free, about a
//! tenth of the instructions of a relayed message
//! (`benches/instructions.sh`). Split, its data stays a slice of the frame
//! it arrived in until the session writes head and data straight into its
//! socket's buffer. Both dialects' `content` messages end with their data
//! field, so the head (the message and content fields, the ids, the data
//! field's tag and length) is bounded, [`HEAD_MAX`] bytes, and kept
//! inline. Codecs build heads with [`HeadWriter`]; their tests compare the
//! assembled bytes with what the Node servers sent.
//!
//! While it waits in an outbox, split data keeps alive the read it arrived
//! in (what one read of the sender's socket returned, frames that went
//! elsewhere included): at most one read or one frame, whichever is
//! larger, per queued item, so an outbox's bound in items still bounds its
//! memory.

use bytes::{Bytes, BytesMut};

/// Room for the longest head: a field tag and a 10-byte length varint for
/// the message's `content`, two ids of at most 5 bytes with their tags,
/// and the data field's tag and length (34 bytes in the current dialect).
pub const HEAD_MAX: usize = 40;

/// A frame for a peer's socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutFrame {
    /// Encoded in one piece (the constant frames, shared).
    Whole(Bytes),
    /// Encoded as a head followed by data relayed as it arrived.
    Split(Split),
}

/// A head and the data that follows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    head: [u8; HEAD_MAX],
    head_len: u8,
    data: Bytes,
}

impl OutFrame {
    /// The frame's length in bytes.
    pub fn len(&self) -> usize {
        let (head, data) = self.parts();
        head.len() + data.len()
    }

    /// Whether the frame has no bytes (no sigver frame is empty).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The frame as two slices to write one after the other.
    pub fn parts(&self) -> (&[u8], &[u8]) {
        match self {
            OutFrame::Whole(bytes) => (bytes, &[]),
            OutFrame::Split(split) => (split.head(), &split.data),
        }
    }

    /// The frame in one piece (copied when split): for a frame that leaves
    /// the process some other way than a socket write, and for tests.
    pub fn to_bytes(&self) -> Bytes {
        match self {
            OutFrame::Whole(bytes) => bytes.clone(),
            OutFrame::Split(split) => {
                let mut whole = BytesMut::with_capacity(self.len());
                whole.extend_from_slice(split.head());
                whole.extend_from_slice(&split.data);
                whole.freeze()
            }
        }
    }
}

impl From<Bytes> for OutFrame {
    fn from(bytes: Bytes) -> Self {
        OutFrame::Whole(bytes)
    }
}

impl Split {
    /// The head's bytes.
    pub fn head(&self) -> &[u8] {
        &self.head[..usize::from(self.head_len)]
    }
}

/// Writes a head, then takes the data to make the frame.
#[derive(Debug)]
pub struct HeadWriter {
    head: [u8; HEAD_MAX],
    len: usize,
}

impl Default for HeadWriter {
    fn default() -> Self {
        Self {
            head: [0; HEAD_MAX],
            len: 0,
        }
    }
}

impl HeadWriter {
    /// One byte (a field tag).
    pub fn put_u8(&mut self, byte: u8) {
        // Codecs write at most HEAD_MAX bytes (see its note); a byte past
        // it would be a codec bug, dropped rather than a panic.
        debug_assert!(self.len < HEAD_MAX, "head longer than HEAD_MAX");
        if let Some(slot) = self.head.get_mut(self.len) {
            *slot = byte;
            self.len += 1;
        }
    }

    /// A protobuf varint.
    pub fn put_varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.put_u8((value as u8 & 0x7f) | 0x80);
            value >>= 7;
        }
        self.put_u8(value as u8);
    }

    /// The frame: this head, then `data`.
    pub fn then(self, data: Bytes) -> OutFrame {
        OutFrame::Split(Split {
            head: self.head,
            // HEAD_MAX fits in a byte.
            head_len: self.len as u8,
            data,
        })
    }
}

/// The length of `value` as a protobuf varint.
pub fn varint_len(value: u64) -> usize {
    // One byte per started group of 7 bits, at least one.
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn varints_are_prosts(value: u64) {
            let mut ours = HeadWriter::default();
            ours.put_varint(value);
            let mut theirs = Vec::new();
            prost::encoding::encode_varint(value, &mut theirs);
            let ours = ours.then(Bytes::new()).to_bytes();
            prop_assert_eq!(&ours[..], &theirs[..]);
            prop_assert_eq!(varint_len(value), prost::encoding::encoded_len_varint(value));
        }
    }

    #[test]
    fn a_split_frame_is_its_head_then_its_data() {
        let mut head = HeadWriter::default();
        head.put_u8(0x12);
        head.put_varint(300);
        let frame = head.then(Bytes::from_static(b"data"));
        assert_eq!(frame.len(), 7);
        assert_eq!(frame.parts(), (&[0x12, 0xac, 0x02][..], &b"data"[..]));
        assert_eq!(&frame.to_bytes()[..], b"\x12\xac\x02data");
        let whole = OutFrame::from(Bytes::from_static(b"\x20\x01"));
        assert_eq!(whole.parts(), (&b"\x20\x01"[..], &[][..]));
    }
}
