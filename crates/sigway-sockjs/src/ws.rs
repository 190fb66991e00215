//! WebSocket plumbing shared by the SockJS WebSocket transports and the
//! gateway's sigver sessions: how a session ended ([`Ending`]), what a
//! failed read means ([`read_failure`], the one place that reads actix-ws's
//! error text), and the last close write, bounded in time ([`finish`]).
//! Each side keeps its own close codes: [`Ending::Server`] carries whatever
//! the side closes with.

use std::time::Duration;

use actix_ws::{CloseCode, CloseReason, ProtocolError, Session};

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

/// Classifies a read error of an actix-ws stream.
pub fn read_failure(error: &ProtocolError) -> ReadFailure {
    match error {
        ProtocolError::Overflow => ReadFailure::TooBig,
        ProtocolError::Io(io)
            if io
                .get_ref()
                .is_some_and(|e| e.is::<actix_web::error::PayloadError>()) =>
        {
            ReadFailure::Gone
        }
        // actix-ws reports an oversized message of continuations only as an
        // I/O error with this text.
        ProtocolError::Io(io) if io.to_string().contains("maximum continuation size") => {
            ReadFailure::TooBig
        }
        // actix-ws reports a text frame that is not UTF-8 as invalid data.
        ProtocolError::Io(io)
            if io.kind() == std::io::ErrorKind::InvalidData && io.to_string().contains("utf-8") =>
        {
            ReadFailure::InvalidUtf8
        }
        _ => ReadFailure::Invalid,
    }
}

/// A close frame with `code` and `reason` (actix-ws trims the reason to
/// what a control frame holds).
pub fn close_reason(code: u16, reason: &str) -> CloseReason {
    CloseReason {
        code: CloseCode::from(code),
        description: Some(reason.to_owned()),
    }
}

/// Sends the close frame (`None`: an empty one) and ends the session,
/// waiting at most [`FINAL_WRITE`] for a client that does not read.
pub async fn finish(session: Session, reason: Option<CloseReason>) {
    let _ = tokio::time::timeout(FINAL_WRITE, session.close(reason)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_failures_are_classified_once() {
        assert_eq!(read_failure(&ProtocolError::Overflow), ReadFailure::TooBig);
        let continuation = std::io::Error::other("maximum continuation size reached");
        assert_eq!(
            read_failure(&ProtocolError::Io(continuation)),
            ReadFailure::TooBig
        );
        let gone = std::io::Error::other(actix_web::error::PayloadError::Incomplete(None));
        assert_eq!(read_failure(&ProtocolError::Io(gone)), ReadFailure::Gone);
        assert_eq!(
            read_failure(&ProtocolError::UnmaskedFrame),
            ReadFailure::Invalid
        );
    }

    #[test]
    fn close_reasons_carry_code_and_text() {
        let reason = close_reason(4743, "bad");
        assert_eq!(u16::from(reason.code), 4743);
        assert_eq!(reason.description.as_deref(), Some("bad"));
    }
}
