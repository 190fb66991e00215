//! The protocols' errors as plain data, and the close each one means.
//!
//! Rules and sessions never pick a close code themselves: they build a
//! [`Refusal`] (a limit said no) or a [`SigverError`] (a peer broke the
//! protocol or must go) and ask it for its [`Close`] (WebSocket close code
//! and reason), which is protocol knowledge (the spec's tables) and so lives
//! here; turning a `Close` into a frame or a refusal into an HTTP status is
//! the gateway's. The sigver dialects differ only in their code numbers, so
//! the mapping takes the [`SigverDialect`]. videre never closes for bad
//! packets: a [`VidereError`] becomes an error notice packet.

use std::borrow::Cow;

/// Which sigver protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SigverDialect {
    /// sigver 20.x: `connect` / `connected`, close codes 4741-4745.
    Current,
    /// sigver 18.x: `isFirst` / `stable` / `tryAnother`, close codes 4001-4004.
    Legacy,
}

/// A WebSocket close code with its reason text (at most 123 bytes on the wire).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    /// The close code (a protocol's 4xxx or a standard 1xxx one).
    pub code: u16,
    /// The reason text the client sees.
    pub reason: Cow<'static, str>,
}

impl Close {
    /// A close with a fixed reason text.
    pub const fn new(code: u16, reason: &'static str) -> Self {
        Self {
            code,
            reason: Cow::Borrowed(reason),
        }
    }

    /// A close with a reason text built at run time.
    pub fn owned(code: u16, reason: String) -> Self {
        Self {
            code,
            reason: Cow::Owned(reason),
        }
    }

    /// The close every client gets when the server shuts down (1001).
    pub fn going_away() -> Self {
        Self::new(CLOSE_GOING_AWAY, "server shutting down")
    }
}

// Standard WebSocket codes the gateway uses besides the protocol ones.
/// 1001: the server is going away (shutdown).
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// 1008: a policy says no (too many connections from one address).
pub const CLOSE_POLICY: u16 = 1008;
/// 1009: a frame or message is larger than the configured limit.
pub const CLOSE_TOO_BIG: u16 = 1009;
/// 1013: the server is full for now (connections, rooms, members).
pub const CLOSE_TRY_AGAIN_LATER: u16 = 1013;

/// A configured limit refused a connection, a room or a member.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The server holds its maximum of connections (the limit).
    #[error("server full: {0} connections open")]
    TooManyConnections(usize),
    /// The client's address holds its maximum of connections (the limit).
    #[error("too many connections from this address (limit {0})")]
    TooManyFromAddress(usize),
    /// A new key or room would exceed the server's maximum (the limit).
    #[error("too many rooms (limit {0})")]
    TooManyRooms(usize),
    /// The group or room holds its maximum of members (the limit).
    #[error("room full (limit {0} members)")]
    RoomFull(usize),
    /// The room layer failed to hand out the room (an internal error).
    #[error("server unavailable")]
    Internal,
}

impl Refusal {
    /// The close a WebSocket client gets for this refusal (1008 for its
    /// address's limit, 1013 "try again later" for the others).
    pub fn close(&self) -> Close {
        let code = match self {
            Refusal::TooManyFromAddress(_) => CLOSE_POLICY,
            _ => CLOSE_TRY_AGAIN_LATER,
        };
        Close::owned(code, self.to_string())
    }
}

/// Why a sigver connection is closed by the server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigverError {
    /// The request path names no key.
    #[error("The key is an empty string")]
    EmptyKey,
    /// The key is longer than the limit (512 characters in sigver).
    #[error("The key length exceeds the limit of {0} characters")]
    KeyTooLong(usize),
    /// The client missed too many heartbeats in a row.
    #[error("Too many missed heartbeats")]
    HeartbeatMissed,
    /// A frame the dialect cannot take (text, undecodable, no type); the
    /// text is the close reason.
    #[error("{0}")]
    BadMessage(Cow<'static, str>),
    /// The lone member a joiner could not reach is replaced by it.
    #[error("replaced by a peer as prevented him from joining the group")]
    BlockingMember,
    /// The server could not queue a frame for the client (it does not
    /// read); the text says why.
    #[error("failed to send: {0}")]
    SendFailed(Cow<'static, str>),
    /// A frame is larger than the configured limit.
    #[error("frame exceeds the limit of {0} bytes")]
    FrameTooLarge(usize),
    /// A limit refused the connection or its membership.
    #[error(transparent)]
    Refused(#[from] Refusal),
}

impl SigverError {
    /// The close frame a client of `dialect` receives for this error.
    pub fn close(&self, dialect: SigverDialect) -> Close {
        use SigverDialect::{Current, Legacy};
        let code = match (self, dialect) {
            (SigverError::EmptyKey | SigverError::KeyTooLong(_), Current) => 4741,
            (SigverError::HeartbeatMissed, Current) => 4742,
            (SigverError::BadMessage(_), Current) => 4743,
            (SigverError::BlockingMember, Current) => 4744,
            (SigverError::SendFailed(_), Current) => 4745,
            (SigverError::EmptyKey | SigverError::KeyTooLong(_), Legacy) => 4001,
            (SigverError::HeartbeatMissed, Legacy) => 4002,
            (SigverError::BadMessage(_), Legacy) => 4003,
            (SigverError::BlockingMember, Legacy) => 4004,
            // sigver 18.x had no code for a failed send; 1011 is "server error".
            (SigverError::SendFailed(_), Legacy) => 1011,
            (SigverError::FrameTooLarge(_), _) => CLOSE_TOO_BIG,
            (SigverError::Refused(refusal), _) => return refusal.close(),
        };
        Close::owned(code, self.reason(dialect))
    }

    /// The close reason text: sigver 18.x's own words in the legacy
    /// dialect (its typo included), ours otherwise. A `BadMessage` already
    /// carries the text its dialect gives it.
    fn reason(&self, dialect: SigverDialect) -> String {
        match (self, dialect) {
            // sigver 18 prints the empty key between two spaces.
            (SigverError::EmptyKey, SigverDialect::Legacy) => {
                "4001: The key  is an empty string".into()
            }
            (SigverError::KeyTooLong(limit), SigverDialect::Legacy) => {
                format!("4001: The key length exceeds the limit of {limit} characters")
            }
            (SigverError::HeartbeatMissed, SigverDialect::Legacy) => {
                "Too many missed hearbeats".into()
            }
            (SigverError::BlockingMember, SigverDialect::Legacy) => {
                "prevent other peers from joining the group".into()
            }
            _ => self.to_string(),
        }
    }
}

/// Why a videre packet was refused. The sender gets an error notice whose
/// `Payload` is [`VidereError::reason`]; the session stays open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VidereError {
    /// The text is not JSON (the parser's message).
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    /// The JSON is not an object.
    #[error("a packet must be a JSON object")]
    NotAnObject,
    /// The object has no `Header` object.
    #[error("a packet needs a Header object")]
    NoHeader,
    /// `Header.Event` is missing or not one of the four events.
    #[error("Header.Event must be one of connect, broadcast, ping, disconnect")]
    UnknownEvent,
    /// The named header field is not a string.
    #[error("Header.{0} must be a string")]
    NotAString(&'static str),
    /// The packet is larger than the configured limit.
    #[error("packet exceeds the limit of {0} bytes")]
    TooLarge(usize),
    /// The named header id is longer than the limit.
    #[error("Header.{0} exceeds the limit of {1} bytes")]
    IdTooLong(&'static str, usize),
    /// The session sent to a room it has not joined.
    #[error("not connected to this room")]
    NotJoined,
    /// The packet names another user than the one the session joined as.
    #[error("UserId differs from the one this session connected with")]
    WrongUser,
    /// The room named does not exist.
    #[error("no such room")]
    NoSuchRoom,
    /// A limit refused the join.
    #[error(transparent)]
    Refused(#[from] Refusal),
}

impl VidereError {
    /// The `Payload` of the error notice sent back to the client.
    pub fn reason(&self) -> String {
        self.to_string()
    }

    /// A configured limit said no (as opposed to a client sending bad input).
    pub fn is_refusal(&self) -> bool {
        matches!(self, VidereError::Refused(_) | VidereError::TooLarge(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigver_codes_follow_the_spec_tables() {
        use SigverDialect::{Current, Legacy};
        let cases = [
            (SigverError::EmptyKey, 4741, 4001),
            (SigverError::KeyTooLong(512), 4741, 4001),
            (SigverError::HeartbeatMissed, 4742, 4002),
            (SigverError::BadMessage("x".into()), 4743, 4003),
            (SigverError::BlockingMember, 4744, 4004),
            (SigverError::SendFailed("queue full".into()), 4745, 1011),
            (SigverError::FrameTooLarge(10), 1009, 1009),
        ];
        for (err, current, legacy) in cases {
            assert_eq!(err.close(Current).code, current, "{err}");
            assert_eq!(err.close(Legacy).code, legacy, "{err}");
        }
    }

    #[test]
    fn legacy_reasons_are_sigver_18s_words() {
        use SigverDialect::{Current, Legacy};
        let reason = |err: SigverError, dialect| err.close(dialect).reason.into_owned();
        assert_eq!(
            reason(SigverError::EmptyKey, Legacy),
            "4001: The key  is an empty string"
        );
        assert_eq!(
            reason(SigverError::KeyTooLong(512), Legacy),
            "4001: The key length exceeds the limit of 512 characters"
        );
        assert_eq!(
            reason(SigverError::HeartbeatMissed, Legacy),
            "Too many missed hearbeats"
        );
        assert_eq!(
            reason(SigverError::BlockingMember, Legacy),
            "prevent other peers from joining the group"
        );
        assert_eq!(
            reason(
                SigverError::BadMessage("index out of range: 1 + 1 > 1".into()),
                Legacy
            ),
            "index out of range: 1 + 1 > 1"
        );
        assert_eq!(
            reason(SigverError::EmptyKey, Current),
            "The key is an empty string"
        );
    }

    #[test]
    fn videre_errors_name_their_reason_and_whether_a_limit_refused() {
        assert_eq!(
            VidereError::NotJoined.reason(),
            "not connected to this room"
        );
        assert_eq!(
            VidereError::from(Refusal::RoomFull(2)).reason(),
            "room full (limit 2 members)"
        );
        assert!(VidereError::from(Refusal::TooManyRooms(1)).is_refusal());
        assert!(VidereError::TooLarge(1).is_refusal());
        assert!(!VidereError::UnknownEvent.is_refusal());
    }

    #[test]
    fn refusals_map_to_close_codes() {
        assert_eq!(Refusal::TooManyFromAddress(1).close().code, 1008);
        assert_eq!(Refusal::RoomFull(1).close().code, 1013);
    }
}
