//! A text message of SockJS's framed WebSocket (`.../websocket`): a JSON
//! array of messages or one JSON value, on any text. It never panics; what
//! it accepts comes back unchanged through the `a[...]` frame the server
//! would send it in; the fuzzer's strings written as an array, or one of
//! them as a lone JSON string, read back exactly.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sigway_fuzz::sockjs::{messages_of, round_trips};
use sigway_sockjs::inputs::websocket_payload;

fuzz_target!(|input: &[u8]| {
    let text = String::from_utf8_lossy(input);
    if let Ok(messages) = websocket_payload(&text) {
        round_trips(&messages);
    }
    let messages = messages_of(input);
    let array = serde_json::to_string(&messages).expect("strings serialise");
    assert_eq!(
        websocket_payload(&array).ok(),
        Some(messages.clone()),
        "an array reads back"
    );
    if let Some(first) = messages.first() {
        let single = serde_json::to_string(first).expect("string serialises");
        assert_eq!(
            websocket_payload(&single).ok(),
            Some(vec![first.clone()]),
            "one string"
        );
    }
});
