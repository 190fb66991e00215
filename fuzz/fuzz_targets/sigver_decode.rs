//! The current sigver codec (sigver 20's protobufjs reader, ported) on any
//! bytes a client can send in a binary frame: it never panics, reads the
//! same bytes the same way twice, and refuses with a reason (close 4743).
//! The same input also builds a relayed `content` frame (ids from its first
//! bytes, data from the rest) that must decode back to exactly what was
//! written.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sigway_core::sigver::codec::{self, Inbound};
use sigway_core::sigver::state::ContentIn;

fuzz_target!(|input: &[u8]| {
    let frame = Bytes::copy_from_slice(input);
    let first = codec::decode(frame.clone());
    assert_eq!(first, codec::decode(frame), "decoding is deterministic");
    if let Err(error) = &first {
        assert!(!error.to_string().is_empty(), "a refusal says why");
    }

    // What the server writes, the server reads back.
    let (ids, data) = input.split_at(input.len().min(8));
    let mut id_bytes = [0u8; 8];
    id_bytes[..ids.len()].copy_from_slice(ids);
    let sender_id = u32::from_le_bytes([id_bytes[0], id_bytes[1], id_bytes[2], id_bytes[3]]);
    let recipient_id = u32::from_le_bytes([id_bytes[4], id_bytes[5], id_bytes[6], id_bytes[7]]);
    let data = Bytes::copy_from_slice(data);
    let written = codec::content(sender_id, recipient_id, data.clone());
    let expected = Inbound::Content(ContentIn {
        sender_id,
        recipient_id,
        last_data: false,
        data,
    });
    assert_eq!(
        codec::decode(written.to_bytes()).ok(),
        Some(expected),
        "content round trip"
    );
});
