//! The gateway's side of errors: turning the protocols' [`Close`]s into
//! WebSocket close frames and refusals into HTTP statuses. (The SockJS
//! layer's errors live in `sigway_sockjs`.) The protocol errors themselves (and which close each one
//! means) are plain data in `sigway_core::error`, re-exported here.

use actix_web::http::StatusCode;

pub use sigway_core::error::*;

/// The close frame actix-ws sends for `close` (it trims the reason to what
/// a control frame holds).
pub fn ws_close(close: &Close) -> actix_ws::CloseReason {
    sigway_sockjs::ws::close_reason(close.code, &close.reason)
}

/// The HTTP status of a request a limit refused.
pub fn refusal_status(refusal: &Refusal) -> StatusCode {
    match refusal {
        Refusal::TooManyFromAddress(_) => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
