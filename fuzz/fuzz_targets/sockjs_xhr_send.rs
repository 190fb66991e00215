//! The body of an `xhr_send` request (a JSON array of messages, under one
//! of the content types sockjs-node reads) on any bytes and content type.
//! It never panics; what it accepts comes back unchanged through the
//! `a[...]` frame the server would send it in; and an array the fuzzer's
//! strings are written into (by serde_json) reads back as those strings,
//! so the lone-surrogate repair never changes a well-formed text.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sigway_fuzz::sockjs::{CONTENT_TYPES, messages_of, round_trips};
use sigway_sockjs::inputs::xhr_send_body;

fuzz_target!(|input: &[u8]| {
    let Some((&choice, body)) = input.split_first() else {
        return;
    };
    let content_type = CONTENT_TYPES[usize::from(choice) % CONTENT_TYPES.len()];
    if let Ok(messages) = xhr_send_body(content_type, body) {
        round_trips(&messages);
    }
    // The same bytes as strings, written as a JSON array by a real writer.
    let messages = messages_of(body);
    let written = serde_json::to_vec(&messages).expect("strings serialise");
    match xhr_send_body(Some("application/json"), &written) {
        Ok(read) => assert_eq!(read, messages, "a JSON array of strings reads back"),
        Err(error) => panic!("{:?} refused: {error}", String::from_utf8_lossy(&written)),
    }
});
