//! The gateway's side of errors: turning the protocols' [`Close`]s into
//! WebSocket close frames and refusals into HTTP statuses, and the SockJS
//! layer's errors. The protocol errors themselves (and which close each one
//! means) are plain data in `sigway_core::error`, re-exported here.

use actix_web::http::StatusCode;

pub use sigway_core::error::*;

/// The close frame actix-ws sends for `close` (it trims the reason to what
/// a control frame holds).
pub fn ws_close(close: &Close) -> actix_ws::CloseReason {
    actix_ws::CloseReason {
        code: actix_ws::CloseCode::from(close.code),
        description: Some(close.reason.to_string()),
    }
}

/// The HTTP status of a request a limit refused.
pub fn refusal_status(refusal: &Refusal) -> StatusCode {
    match refusal {
        Refusal::TooManyFromAddress(_) => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// Why the SockJS layer refused a request or ended a session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SockjsError {
    #[error("Payload expected.")]
    PayloadExpected,
    #[error("Broken JSON encoding.")]
    BrokenJson,
    #[error("\"callback\" parameter required")]
    CallbackRequired,
    #[error("invalid \"callback\" parameter")]
    InvalidCallback,
    #[error("Payload too large (limit {0} bytes)")]
    PayloadTooLarge(usize),
    #[error("Session not found")]
    SessionNotFound,
    #[error("Broken framing.")]
    BrokenFraming,
    #[error("Message too big (limit {0} bytes)")]
    MessageTooBig(usize),
    #[error("Client does not keep up")]
    OutboundQueueFull,
    #[error("Connection interrupted")]
    Interrupted,
    #[error("Another connection still open")]
    AnotherConnection,
}

/// SockJS close codes of the protocol (sockjs-node's numbers).
pub const SOCKJS_GO_AWAY: u16 = 3000;
pub const SOCKJS_INTERRUPTED: u16 = 1002;
pub const SOCKJS_ANOTHER_CONNECTION: u16 = 2010;

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
            SockjsError::BrokenFraming => SOCKJS_GO_AWAY,
            SockjsError::MessageTooBig(_) | SockjsError::PayloadTooLarge(_) => CLOSE_TOO_BIG,
            SockjsError::OutboundQueueFull => CLOSE_TRY_AGAIN_LATER,
            SockjsError::Interrupted => SOCKJS_INTERRUPTED,
            SockjsError::AnotherConnection => SOCKJS_ANOTHER_CONNECTION,
            _ => SOCKJS_GO_AWAY,
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

    #[test]
    fn refusals_map_to_http_statuses() {
        assert_eq!(
            refusal_status(&Refusal::TooManyRooms(1)),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            refusal_status(&Refusal::TooManyFromAddress(1)),
            StatusCode::TOO_MANY_REQUESTS
        );
    }
}
