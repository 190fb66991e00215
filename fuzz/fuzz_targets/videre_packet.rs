//! videre's packet parser on any text a SockJS message can carry. Whatever
//! it is, parsing never panics; a refusal's error notice is a well-formed
//! packet naming the error; an accepted packet keeps its exact text, its
//! header fields are what a JSON reader finds there, and the answers built
//! from it (connect's `"true"`/`"false"`, ping's user list) are packets with
//! the same header whose `Payload` is what they meant to put there.

#![no_main]

use bytestring::ByteString;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use sigway_core::videre::packet::{self, Packet};

/// The byte limit of the gateway's default settings is far above what the
/// fuzzer writes; a small one makes the size refusal reachable too.
const SMALL_LIMIT: usize = 200;

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    // The limit is checked on the text first, whatever it holds.
    if text.len() > SMALL_LIMIT {
        assert!(packet::parse(ByteString::from(text), SMALL_LIMIT).is_err());
    }
    match packet::parse(ByteString::from(text), usize::MAX) {
        Ok(packet) => accepted(text, &packet),
        Err(rejected) => {
            let notice = rejected.notice();
            let value: Value = serde_json::from_str(&notice).expect("a notice is JSON");
            assert_eq!(value["Header"]["Event"], "error");
            assert_eq!(value["Header"]["UserId"], rejected.user_id.as_str());
            assert_eq!(value["Header"]["RoomId"], rejected.room_id.as_str());
            assert_eq!(value["Payload"], rejected.error.reason().as_str());
        }
    }
});

fn accepted(text: &str, packet: &Packet) {
    assert_eq!(
        &**packet.text(),
        text,
        "the packet keeps the text it came in"
    );
    // A JSON reader sees the same header (when it can read the text at all:
    // the parser leaves values it does not need unread, such as a number
    // too large for a float in `Payload`).
    if let Ok(value) = serde_json::from_str::<Value>(text) {
        let header = &value["Header"];
        assert_eq!(header["Event"], packet.event.name());
        assert_eq!(header["UserId"], packet.user_id.as_str());
        assert_eq!(header["RoomId"], packet.room_id.as_str());
    }
    for max in [0, 1, 8] {
        let too_long = packet.user_id.len() > max || packet.room_id.len() > max;
        assert_eq!(
            packet.check_ids(max).is_err(),
            too_long,
            "ids over {max} bytes"
        );
    }

    for initiator in [true, false] {
        let answer = packet.connect_answer(initiator);
        let payload = same_header(packet, &answer);
        assert_eq!(
            payload,
            Value::String(initiator.to_string()),
            "connect answer payload"
        );
    }
    let users = ["a", "", "\"quoted\"", packet.user_id.as_str()];
    let answer = packet.ping_answer(users.iter().copied());
    let payload = same_header(packet, &answer);
    let listed: Vec<String> = match &payload {
        Value::String(list) => serde_json::from_str(list).expect("ping payload holds a JSON list"),
        other => panic!("ping payload is not a string: {other}"),
    };
    assert_eq!(listed, users, "ping answer lists the users in order");
}

/// `answer` parses as a packet with `packet`'s header; returns its
/// `Payload` as a JSON reader sees it.
fn same_header(packet: &Packet, answer: &ByteString) -> Value {
    let reread = match packet::parse(answer.clone(), usize::MAX) {
        Ok(reread) => reread,
        Err(rejected) => panic!("answer {answer:?} refused: {:?}", rejected.error),
    };
    assert_eq!(
        (reread.event, &reread.user_id, &reread.room_id),
        (packet.event, &packet.user_id, &packet.room_id),
        "an answer keeps the header"
    );
    let fields: serde_json::Map<String, Value> = serde_json::from_str(answer).unwrap_or_default();
    fields.get("Payload").cloned().unwrap_or_else(|| {
        // Unreadable as a whole by serde_json (see `accepted`): read the
        // payload from the parser's own view instead.
        let raw: std::collections::BTreeMap<String, &serde_json::value::RawValue> =
            serde_json::from_str(answer).expect("an answer is JSON");
        let payload = raw.get("Payload").expect("an answer has a Payload");
        serde_json::from_str(payload.get()).expect("the payload written is JSON")
    })
}
