//! The legacy sigver codec (sigver 18's protobufjs reader, ported) on any
//! bytes a client can send: it never panics, reads the same bytes the same
//! way twice, and refuses with a reason (close 4003). The same input also
//! builds a relayed `content` frame (route id from its first bytes, then
//! data, `isEnd` or `isError`) that must decode back to what was written.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sigway_core::sigver::legacy::codec::{self, LegacyInbound};
use sigway_core::sigver::legacy::state::Payload;

fuzz_target!(|input: &[u8]| {
    let frame = Bytes::copy_from_slice(input);
    let first = codec::decode(frame.clone());
    assert_eq!(first, codec::decode(frame), "decoding is deterministic");
    if let Err(error) = &first {
        assert!(!error.to_string().is_empty(), "a refusal says why");
    }

    let (head, rest) = input.split_at(input.len().min(5));
    let mut id_bytes = [0u8; 5];
    id_bytes[..head.len()].copy_from_slice(head);
    let id = u32::from_le_bytes([id_bytes[0], id_bytes[1], id_bytes[2], id_bytes[3]]);
    let payload = match id_bytes[4] % 3 {
        0 => Payload::Data(Bytes::copy_from_slice(rest)),
        1 => Payload::IsEnd,
        _ => Payload::IsError,
    };
    let written = codec::content(id, payload.clone());
    assert_eq!(
        codec::decode(written.to_bytes()).ok(),
        Some(LegacyInbound::Content { id, payload }),
        "content round trip"
    );
});
