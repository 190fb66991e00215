//! The body of a `jsonp_send` request on any bytes and content type: a
//! form whose `d` field holds the JSON array (or a JSON string holding it),
//! or a raw `text/plain` body. It never panics; what it accepts comes back
//! unchanged through the `a[...]` frame the server would send it in; and
//! the fuzzer's strings, written as a form by a real encoder (as
//! sockjs-client's jsonp transport posts them) or as a raw body, read back
//! as those strings.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sigway_fuzz::sockjs::{CONTENT_TYPES, messages_of, round_trips};
use sigway_sockjs::inputs::jsonp_send_body;

const FORM: &str = "application/x-www-form-urlencoded";

fuzz_target!(|input: &[u8]| {
    let Some((&choice, body)) = input.split_first() else {
        return;
    };
    let content_type = CONTENT_TYPES[usize::from(choice) % CONTENT_TYPES.len()];
    if let Ok(messages) = jsonp_send_body(content_type, body) {
        round_trips(&messages);
    }

    let messages = messages_of(body);
    let array = serde_json::to_string(&messages).expect("strings serialise");
    let form = serde_urlencoded::to_string([("d", array.as_str())]).expect("form encodes");
    match jsonp_send_body(Some(FORM), form.as_bytes()) {
        Ok(read) => assert_eq!(read, messages, "d=<array> reads back"),
        Err(error) => panic!("form {form:?} refused: {error}"),
    }
    match jsonp_send_body(Some("text/plain"), array.as_bytes()) {
        Ok(read) => assert_eq!(read, messages, "a raw array reads back"),
        Err(error) => panic!("raw {array:?} refused: {error}"),
    }
    // A JSON string holding the array is decoded once more (sockjs-node's
    // `d` as a string), but only when it is not empty.
    let nested = serde_json::to_string(&array).expect("string serialises");
    let nested_form = serde_urlencoded::to_string([("d", nested.as_str())]).expect("form encodes");
    if let Ok(read) = jsonp_send_body(Some(FORM), nested_form.as_bytes()) {
        assert!(
            read.len() <= 1,
            "a d holding a JSON string is one message at most"
        );
    }
});
