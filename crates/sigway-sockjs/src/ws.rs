//! WebSocket plumbing shared by the SockJS WebSocket transports and the
//! gateway's sigver sessions: how a session ended ([`Ending`]), what a
//! failed read means ([`ReadFailure`], as [`crate::WsConnection`] reports
//! it), the close frame's reason ([`close_reason`]) and how long the last
//! writes may take ([`FINAL_WRITE`]).
//! Each side keeps its own close codes: [`Ending::Server`] carries whatever
//! the side closes with.

use std::time::Duration;

use actix_ws::{CloseCode, CloseReason};

/// How long the last frames of a session (a close) may wait for a client
/// that does not read, so that such a client cannot keep a task forever.
pub const FINAL_WRITE: Duration = Duration::from_secs(2);

/// How a WebSocket session ended.
#[derive(Debug)]
pub enum Ending<C> {
    /// The connection is gone; nothing can be sent.
    Gone,
    /// The client sent a close frame (with this reason, if any): answer it.
    ClientClosed(Option<CloseReason>),
    /// The server closes the session, as `C` says (each side's own close).
    Server(C),
}

/// What a failed read of a WebSocket means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFailure {
    /// The transport went away (a closed tab ends without a close frame).
    Gone,
    /// A frame, or a message of continuations, over the size limit.
    TooBig,
    /// The client broke the WebSocket protocol.
    Invalid,
    /// A text frame whose bytes are not UTF-8 (WebSocket's 1007 case).
    InvalidUtf8,
}

/// A close frame with `code` and `reason` (actix-ws trims the reason to
/// what a control frame holds).
pub fn close_reason(code: u16, reason: &str) -> CloseReason {
    CloseReason {
        code: CloseCode::from(code),
        description: Some(reason.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_carry_code_and_text() {
        let reason = close_reason(4743, "bad");
        assert_eq!(u16::from(reason.code), 4743);
        assert_eq!(reason.description.as_deref(), Some("bad"));
    }
}
