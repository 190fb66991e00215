//! The layer's pure readers of client input, public so that the fuzz
//! targets in `fuzz/` (and any other harness) can call them without a
//! server: the `xhr_send` and `jsonp_send` body parsers, the framed
//! WebSocket payload parser, the URL router and, to check round trips, the
//! `a[...]` frame writer. Each is the very function the transports call
//! (no copy, no behaviour of its own); the HTTP and WebSocket code around
//! them only moves bytes.

use crate::SockjsError;
use crate::frame;

pub use crate::route::{Route, Transport, route};

/// An `xhr_send` body as the transport reads it: `content_type` is the
/// request's `Content-Type` header, the messages are the JSON array's
/// elements.
pub fn xhr_send_body(content_type: Option<&str>, body: &[u8]) -> Result<Vec<String>, SockjsError> {
    frame::parse_xhr_send(content_type, body)
}

/// A `jsonp_send` body as the transport reads it: a form whose `d` field
/// holds the JSON array, or a raw `text/plain` body.
pub fn jsonp_send_body(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Vec<String>, SockjsError> {
    frame::parse_jsonp_send(content_type, body)
}

/// A text message of the framed WebSocket (`/<server>/<session>/websocket`)
/// as the messages it carries: a JSON array of them, or one JSON value.
pub fn websocket_payload(text: &str) -> Result<Vec<String>, SockjsError> {
    frame::parse_websocket_frame(text)
}

/// The `a["m1","m2"]` frame that carries `batch` to a client, escaped as
/// sockjs-node escapes it.
pub fn messages_frame<S: AsRef<str>>(batch: &[S]) -> String {
    frame::messages(batch)
}
