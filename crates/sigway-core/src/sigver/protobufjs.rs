//! How the Node sigver servers read bytes: a port of the protobufjs 6.x
//! `Reader` both sigver 18.0.0 and sigver 20.1.0 decode frames with, and of
//! how the decoders protobufjs generated pick a oneof's member. Each
//! dialect's codec ([`super::codec`], [`super::legacy::codec`]) writes its
//! generated `decode` functions on top of it, so that sigway accepts,
//! refuses and understands exactly what the Node server did.
//!
//! Where protobufjs differs from a conforming decoder, and a client sees
//! it: a varint that runs past the end is read as zeros for up to five
//! bytes, and a sixth to tenth byte are skipped unseen; a group ends at any
//! end-group tag; nested groups are skipped by recursion, so deep enough
//! nesting ends in JavaScript's stack overflow (the frame is refused with
//! V8's text). Every refusal carries protobufjs's own error text, e.g.
//! `index out of range: 3 + 10 > 3`, which the servers used as the close
//! reason. Positions are `u64`, as unbounded as JavaScript's numbers are
//! for these sizes.

use bytes::Bytes;

/// V8's text when the stack ran out.
const STACK_OVERFLOW: &str = "Maximum call stack size exceeded";

/// protobufjs's `Reader` over a `Uint8Array`, where reading past the end
/// gives `undefined`.
pub struct Reader<'a> {
    buf: &'a Bytes,
    pos: u64,
    max_group_depth: u32,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`. Groups nested deeper than
    /// `max_group_depth` fail as the Node server's stack did.
    pub fn new(buf: &'a Bytes, max_group_depth: u32) -> Self {
        Self {
            buf,
            pos: 0,
            max_group_depth,
        }
    }

    /// Where the next read starts (may run past the end, as in protobufjs).
    pub fn pos(&self) -> u64 {
        self.pos
    }

    /// The frame's length.
    pub fn len(&self) -> u64 {
        self.buf.len() as u64
    }

    /// Whether the frame is empty.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
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
    #[inline]
    pub fn uint32(&mut self) -> Result<u32, String> {
        // The common case first: a one-byte varint inside the buffer.
        if let Some(byte) = self.byte(self.pos)
            && byte < 0x80
        {
            self.pos += 1;
            return Ok(u32::from(byte));
        }
        self.uint32_long()
    }

    fn uint32_long(&mut self) -> Result<u32, String> {
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

    /// `Reader#bool`: any varint, true unless 0.
    pub fn bool(&mut self) -> Result<bool, String> {
        Ok(self.uint32()? != 0)
    }

    /// `Reader#bytes`.
    pub fn bytes(&mut self) -> Result<Bytes, String> {
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

    /// `Reader#skipType(wireType)`. protobufjs recurses into nested groups
    /// until the stack runs out; a depth count does the same without a
    /// stack a client could exhaust here.
    pub fn skip_type(&mut self, wire_type: u32) -> Result<(), String> {
        match wire_type {
            0 => self.skip_varint(),
            1 => self.skip(8),
            2 => {
                let length = self.uint32()?;
                self.skip(u64::from(length))
            }
            3 => {
                let mut depth = 1u32;
                while depth > 0 {
                    if depth > self.max_group_depth {
                        return Err(STACK_OVERFLOW.into());
                    }
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

/// Which member of a oneof protobufjs reports, for a oneof of `N` members
/// numbered `0..N`. A decoded message is a JavaScript object; the oneof's
/// getter returns the last of its keys (in insertion order) that is set,
/// and a key is inserted when its field is first read. So the type is the
/// member whose *first* occurrence came last, with the value read last.
#[derive(Debug, Clone, Copy)]
pub struct OneofOrder<const N: usize> {
    /// For each member, 0 if unseen, else its rank of first appearance.
    first_seen: [u8; N],
    seen: u8,
}

impl<const N: usize> Default for OneofOrder<N> {
    fn default() -> Self {
        Self {
            first_seen: [0; N],
            seen: 0,
        }
    }
}

impl<const N: usize> OneofOrder<N> {
    /// Member `member` was read.
    #[inline]
    pub fn note(&mut self, member: usize) {
        if self.first_seen[member] == 0 {
            self.seen += 1;
            self.first_seen[member] = self.seen;
        }
    }

    /// The member protobufjs reports, if any was read.
    pub fn last(&self) -> Option<usize> {
        (0..N)
            .filter(|&m| self.first_seen[m] != 0)
            .max_by_key(|&m| self.first_seen[m])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEEP: u32 = 100;

    fn reader(bytes: &'static [u8]) -> (Bytes, u32) {
        (Bytes::from_static(bytes), DEEP)
    }

    /// Skips every field (tag then value) as a generated decoder does for
    /// unknown fields: where it stopped, or the error text protobufjs threw.
    fn skip_field(bytes: &'static [u8]) -> Result<u64, String> {
        let (buf, depth) = reader(bytes);
        let mut reader = Reader::new(&buf, depth);
        while reader.pos() < reader.len() {
            let tag = reader.uint32()?;
            reader.skip_type(tag & 7)?;
        }
        Ok(reader.pos())
    }

    #[test]
    fn varints_past_the_end_read_zeros_then_fail_with_protobufjs_text() {
        let buf = Bytes::from_static(&[0xff, 0xff, 0xff]);
        let mut reader = Reader::new(&buf, DEEP);
        assert_eq!(
            reader.uint32(),
            Err("index out of range: 3 + 10 > 3".into())
        );
        // Five 0xff and five skipped bytes: the fifth keeps its low 4 bits.
        let buf = Bytes::from(vec![0xff; 10]);
        let mut reader = Reader::new(&buf, DEEP);
        assert_eq!(reader.uint32(), Ok(u32::MAX));
        assert_eq!(reader.pos(), 10);
        // A varint that ends inside five bytes is read as it is.
        let buf = Bytes::from_static(&[0x96, 0x01]);
        assert_eq!(Reader::new(&buf, DEEP).uint32(), Ok(150));
    }

    #[test]
    fn bytes_beyond_the_end_fail_with_the_length_asked_for() {
        let buf = Bytes::from_static(&[0x05, 0x01]);
        let mut reader = Reader::new(&buf, DEEP);
        assert_eq!(reader.bytes(), Err("index out of range: 1 + 5 > 2".into()));
        let buf = Bytes::from_static(&[0x02, b'h', b'i', 0x00]);
        let mut reader = Reader::new(&buf, DEEP);
        assert_eq!(reader.bytes(), Ok(Bytes::from_static(b"hi")));
        assert_eq!(reader.bytes(), Ok(Bytes::new()));
    }

    #[test]
    fn skipping_each_wire_type_as_protobufjs_does() {
        assert_eq!(skip_field(&[0x30, 0x80, 0x01]), Ok(3));
        assert_eq!(
            skip_field(&[0x30]),
            Err("index out of range: 1 + 1 > 1".into())
        );
        assert_eq!(
            skip_field(&[0x31, 1, 2, 3]),
            Err("index out of range: 1 + 8 > 4".into())
        );
        assert_eq!(
            skip_field(&[0x32, 0x05, 0x01]),
            Err("index out of range: 2 + 5 > 3".into())
        );
        assert_eq!(skip_field(&[0x35, 1, 2, 3, 4]), Ok(5));
        assert_eq!(
            skip_field(&[0x37]),
            Err("invalid wire type 7 at offset 1".into())
        );
        assert_eq!(
            skip_field(&[0x34]),
            Err("invalid wire type 4 at offset 1".into())
        );
        assert_eq!(
            skip_field(&[0x36, 0x00]),
            Err("invalid wire type 6 at offset 1".into())
        );
        // A group with a field and a nested group in it; any end tag ends
        // it, and an end tag outside a group is an invalid wire type.
        assert_eq!(skip_field(&[0x33, 0x08, 0x01, 0x33, 0x34, 0x3c]), Ok(6));
        assert_eq!(
            skip_field(&[0x33, 0x0b, 0x08, 0x01, 0x0c, 0x34, 0x3c]),
            Err("invalid wire type 4 at offset 7".into())
        );
        assert_eq!(
            skip_field(&[0x33]),
            Err("index out of range: 1 + 10 > 1".into())
        );
    }

    #[test]
    fn groups_nested_deeper_than_the_node_stack_fail_as_it_did() {
        let nested = |depth: usize| {
            let mut frame = vec![0x33; depth];
            frame.extend(std::iter::repeat_n(0x34, depth));
            Bytes::from(frame)
        };
        let skip = |buf: &Bytes| {
            let mut reader = Reader::new(buf, DEEP);
            let tag = reader.uint32()?;
            reader.skip_type(tag & 7).map(|()| reader.pos())
        };
        assert_eq!(skip(&nested(DEEP as usize)), Ok(2 * u64::from(DEEP)));
        assert_eq!(skip(&nested(DEEP as usize + 1)), Err(STACK_OVERFLOW.into()));
        // Far deeper than any stack: refused without exhausting ours.
        assert_eq!(skip(&nested(512 * 1024)), Err(STACK_OVERFLOW.into()));
    }

    #[test]
    fn the_oneof_member_is_the_one_first_seen_last() {
        let mut order = OneofOrder::<3>::default();
        assert_eq!(order.last(), None);
        order.note(2);
        order.note(0);
        order.note(2);
        assert_eq!(order.last(), Some(0));
        order.note(1);
        assert_eq!(order.last(), Some(1));
    }
}
