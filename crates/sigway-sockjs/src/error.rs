//! The SockJS layer's errors and close codes: why a request was refused
//! (an HTTP status) or a session ended (a [`Close`]: the code and reason of
//! a `c[code,"reason"]` frame or a WebSocket close), in one place.

use std::borrow::Cow;

use actix_web::http::StatusCode;

/// `c[3000,"Go away!"]`: the usual close of a session (sockjs-node's).
pub const CLOSE_GO_AWAY: u16 = 3000;
/// A receiver went away mid-response (sockjs-node's `didAbort`).
pub const CLOSE_INTERRUPTED: u16 = 1002;
/// A second receiver for a session that already has one.
pub const CLOSE_ANOTHER_CONNECTION: u16 = 2010;
/// The server shuts down.
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// A message over the size limit.
pub const CLOSE_TOO_BIG: u16 = 1009;
/// The client does not read what it is sent.
pub const CLOSE_TRY_AGAIN_LATER: u16 = 1013;

/// How a session ends: a close code and a reason, as a SockJS `c` frame or
/// a WebSocket close frame carries them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    /// The close code.
    pub code: u16,
    /// The reason sent with it.
    pub reason: Cow<'static, str>,
}

impl Close {
    /// A close with a fixed reason.
    pub const fn new(code: u16, reason: &'static str) -> Self {
        Self {
            code,
            reason: Cow::Borrowed(reason),
        }
    }

    /// A close with a reason built at run time.
    pub fn owned(code: u16, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: Cow::Owned(reason.into()),
        }
    }

    /// `1001 server shutting down`, sent to every session on shutdown.
    pub const fn going_away() -> Self {
        Self::new(CLOSE_GOING_AWAY, "server shutting down")
    }
}

/// Why the SockJS layer refused a request or ended a session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SockjsError {
    /// A send request without a body.
    #[error("Payload expected.")]
    PayloadExpected,
    /// A send request whose body is not a JSON array of strings.
    #[error("Broken JSON encoding.")]
    BrokenJson,
    /// htmlfile or jsonp without a callback.
    #[error("\"callback\" parameter required")]
    CallbackRequired,
    /// A callback name sockjs-node refuses.
    #[error("invalid \"callback\" parameter")]
    InvalidCallback,
    /// A send request over the size limit (bytes).
    #[error("Payload too large (limit {0} bytes)")]
    PayloadTooLarge(usize),
    /// A send request for a session that does not exist.
    #[error("Session not found")]
    SessionNotFound,
    /// A framed WebSocket message that is not a JSON string or array.
    #[error("Broken framing.")]
    BrokenFraming,
    /// A WebSocket message over the size limit (bytes).
    #[error("Message too big (limit {0} bytes)")]
    MessageTooBig(usize),
    /// The session's outbound queue filled up.
    #[error("Client does not keep up")]
    OutboundQueueFull,
    /// A receiver went away mid-response.
    #[error("Connection interrupted")]
    Interrupted,
    /// A second receiver for the same session.
    #[error("Another connection still open")]
    AnotherConnection,
}

impl SockjsError {
    /// HTTP status of a refused SockJS request.
    pub fn http_status(&self) -> StatusCode {
        match self {
            SockjsError::PayloadTooLarge(_) | SockjsError::MessageTooBig(_) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            SockjsError::SessionNotFound => StatusCode::NOT_FOUND,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The close (SockJS `c` frame or WebSocket close) that ends a session.
    pub fn close(&self) -> Close {
        let code = match self {
            SockjsError::BrokenFraming => CLOSE_GO_AWAY,
            SockjsError::MessageTooBig(_) | SockjsError::PayloadTooLarge(_) => CLOSE_TOO_BIG,
            SockjsError::OutboundQueueFull => CLOSE_TRY_AGAIN_LATER,
            SockjsError::Interrupted => CLOSE_INTERRUPTED,
            SockjsError::AnotherConnection => CLOSE_ANOTHER_CONNECTION,
            _ => CLOSE_GO_AWAY,
        };
        Close::owned(code, self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockjs_errors_map_to_protocol_codes_and_statuses() {
        assert_eq!(SockjsError::AnotherConnection.close().code, 2010);
        assert_eq!(SockjsError::Interrupted.close().code, 1002);
        assert_eq!(SockjsError::BrokenFraming.close().code, 3000);
        assert_eq!(SockjsError::MessageTooBig(1).close().code, 1009);
        assert_eq!(SockjsError::OutboundQueueFull.close().code, 1013);
        assert_eq!(
            SockjsError::SessionNotFound.http_status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            SockjsError::BrokenJson.http_status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(
            SockjsError::PayloadTooLarge(1).http_status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }
}
