//! The protocols' errors as plain data, and the close each one means.
//!
//! Rules and sessions never pick a close code themselves: they build a
//! [`Refusal`] (a limit said no) or a [`SigverError`] (a peer broke the
//! protocol or must go) and ask it for its [`Close`] (WebSocket close code
//! and reason), which is protocol knowledge (the spec's tables) and so lives
//! here; turning a `Close` into a frame or a refusal into an HTTP status is
//! the gateway's. The sigver dialects differ in their code numbers and in
//! their reason texts (each Node server's own words, typos included), so
//! the mapping takes the [`SigverDialect`]. videre never closes for bad
//! packets: a [`VidereError`] becomes an error notice packet.

use std::borrow::Cow;

use crate::auth::KeyRejection;

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
/// 1002: the client broke the WebSocket protocol.
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
/// 1007: a text frame whose bytes are not UTF-8.
pub const CLOSE_INVALID_PAYLOAD: u16 = 1007;
/// 1008: a policy says no (too many connections from one address).
pub const CLOSE_POLICY: u16 = 1008;
/// 1009: a frame or message is larger than the configured limit.
pub const CLOSE_TOO_BIG: u16 = 1009;
/// 1012: the service restarts; the client should connect again.
pub const CLOSE_SERVICE_RESTART: u16 = 1012;
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
    /// Cluster mode: this node cannot reach the other nodes (or Redis)
    /// right now.
    #[error("cluster unavailable")]
    ClusterUnavailable,
    /// Cluster mode: the node that ran the room is gone and its state
    /// could not be taken over; joining again starts it afresh.
    #[error("room moved: join again")]
    RoomMoved,
    /// The client's address holds its maximum of SockJS sessions (the limit).
    #[error("too many SockJS sessions from this address (limit {0})")]
    TooManySessionsFromAddress(usize),
    /// A rate limit said no: too many connections from the address, too
    /// many messages on the connection, or too many joins of the key.
    #[error("rate limit: too many {0}")]
    RateLimited(RateLimit),
}

/// Which rate limit refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimit {
    /// `limits.connections_per_ip_per_sec`.
    Connections,
    /// `limits.messages_per_sec` (one connection's frames or packets).
    Messages,
    /// `limits.joins_per_key_per_sec` (one sigver key or videre room).
    Joins,
}

impl RateLimit {
    const ALL: [RateLimit; 3] = [
        RateLimit::Connections,
        RateLimit::Messages,
        RateLimit::Joins,
    ];
}

impl std::fmt::Display for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RateLimit::Connections => "connections from this address",
            RateLimit::Messages => "messages",
            RateLimit::Joins => "joins of this room",
        })
    }
}

/// Bytes of a refusal between cluster nodes ([`Refusal::to_wire`]).
pub const REFUSAL_WIRE_LEN: usize = 9;

impl Refusal {
    /// The refusal as cluster nodes send it to each other: a tag byte
    /// (0 too many connections, 1 too many from the address, 2 too many
    /// rooms, 3 room full, 4 internal, 5 cluster unavailable, 6 room moved,
    /// 7 too many SockJS sessions from the address, 8 rate limited) and the
    /// limit as a big-endian u64 (0 when it has none; for 8 the rate
    /// limit's number in [`RateLimit`]'s order).
    pub fn to_wire(&self) -> [u8; REFUSAL_WIRE_LEN] {
        let (tag, limit) = match self {
            Refusal::TooManyConnections(n) => (0, *n),
            Refusal::TooManyFromAddress(n) => (1, *n),
            Refusal::TooManyRooms(n) => (2, *n),
            Refusal::RoomFull(n) => (3, *n),
            Refusal::Internal => (4, 0),
            Refusal::ClusterUnavailable => (5, 0),
            Refusal::RoomMoved => (6, 0),
            Refusal::TooManySessionsFromAddress(n) => (7, *n),
            Refusal::RateLimited(which) => (8, *which as usize),
        };
        let mut bytes = [0; REFUSAL_WIRE_LEN];
        bytes[0] = tag;
        bytes[1..].copy_from_slice(&(limit as u64).to_be_bytes());
        bytes
    }

    /// The refusal [`Refusal::to_wire`] wrote; `None` for anything else.
    pub fn from_wire(bytes: &[u8]) -> Option<Self> {
        let (&tag, limit) = bytes.split_first()?;
        let limit = usize::try_from(u64::from_be_bytes(limit.try_into().ok()?)).ok()?;
        Some(match tag {
            0 => Refusal::TooManyConnections(limit),
            1 => Refusal::TooManyFromAddress(limit),
            2 => Refusal::TooManyRooms(limit),
            3 => Refusal::RoomFull(limit),
            4 => Refusal::Internal,
            5 => Refusal::ClusterUnavailable,
            6 => Refusal::RoomMoved,
            7 => Refusal::TooManySessionsFromAddress(limit),
            8 => Refusal::RateLimited(*RateLimit::ALL.get(limit)?),
            _ => return None,
        })
    }

    /// The close a WebSocket client gets for this refusal (1008 for its
    /// address's limits and for rate limits, 1012 "service restart" for a
    /// room that moved, 1013 "try again later" for the others).
    pub fn close(&self) -> Close {
        let code = match self {
            Refusal::TooManyFromAddress(_)
            | Refusal::TooManySessionsFromAddress(_)
            | Refusal::RateLimited(_) => CLOSE_POLICY,
            Refusal::RoomMoved => CLOSE_SERVICE_RESTART,
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
    /// A text frame (sigver speaks binary frames only).
    #[error("a text frame is not a sigver message")]
    TextFrame,
    /// The client broke the WebSocket protocol itself: a malformed frame,
    /// or (`utf8`) a text frame whose bytes are not UTF-8.
    #[error("invalid WebSocket frame: {detail}")]
    InvalidFrame {
        /// The frame was text that is not UTF-8 (1007 rather than 1002).
        utf8: bool,
        /// What was wrong, for the log.
        detail: Cow<'static, str>,
    },
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
    /// `auth.key_secret` is set and the key is not a valid, unexpired
    /// signed key (a bad key: the dialect's key close code).
    #[error("The key is refused: {0}")]
    KeyRefused(KeyRejection),
    /// An operator closed the peer (the admin API) with this code and
    /// reason, in either dialect.
    #[error("closed by the operator: {code} {reason}")]
    Operator {
        /// The close code the operator chose.
        code: u16,
        /// The close reason the operator gave.
        reason: Cow<'static, str>,
    },
}

impl SigverError {
    /// The close frame a client of `dialect` receives for this error.
    pub fn close(&self, dialect: SigverDialect) -> Close {
        use SigverDialect::{Current, Legacy};
        let code = match (self, dialect) {
            (
                SigverError::EmptyKey | SigverError::KeyTooLong(_) | SigverError::KeyRefused(_),
                Current,
            ) => 4741,
            (SigverError::HeartbeatMissed, Current) => 4742,
            (SigverError::BadMessage(_) | SigverError::TextFrame, Current) => 4743,
            (SigverError::BlockingMember, Current) => 4744,
            (SigverError::SendFailed(_), Current) => 4745,
            (
                SigverError::EmptyKey | SigverError::KeyTooLong(_) | SigverError::KeyRefused(_),
                Legacy,
            ) => 4001,
            (SigverError::HeartbeatMissed, Legacy) => 4002,
            // sigver 20's `ws` closed these with its own status code and no
            // reason (and then the whole server crashed, which we do not copy).
            (SigverError::InvalidFrame { utf8: true, .. }, Current) => CLOSE_INVALID_PAYLOAD,
            (SigverError::InvalidFrame { utf8: false, .. }, Current) => CLOSE_PROTOCOL_ERROR,
            (SigverError::BadMessage(_) | SigverError::TextFrame, Legacy) => 4003,
            (SigverError::InvalidFrame { .. }, Legacy) => 4003,
            (SigverError::BlockingMember, Legacy) => 4004,
            // sigver 18.x had no code for a failed send; 1011 is "server error".
            (SigverError::SendFailed(_), Legacy) => 1011,
            (SigverError::FrameTooLarge(_), _) => CLOSE_TOO_BIG,
            (SigverError::Refused(refusal), _) => return refusal.close(),
            (SigverError::Operator { code, reason }, _) => {
                return Close::owned(*code, reason.to_string());
            }
        };
        Close::owned(code, self.reason(dialect, code))
    }

    /// The close reason text: what the dialect's Node server said, in its
    /// own words (sigver 20.1.0 for the current dialect, 18.0.0 for the
    /// legacy one), typos and the empty key printed between two spaces
    /// included; ours where the server had no such close. A `BadMessage`
    /// already carries the text its dialect gives it.
    fn reason(&self, dialect: SigverDialect, code: u16) -> String {
        use SigverDialect::{Current, Legacy};
        match (self, dialect) {
            // Both servers threw `${code}: ${message}` for a bad key.
            (SigverError::EmptyKey, _) => format!("{code}: The key  is an empty string"),
            (SigverError::KeyTooLong(limit), _) => {
                format!("{code}: The key length exceeds the limit of {limit} characters")
            }
            // Written as the Node servers wrote their key errors.
            (SigverError::KeyRefused(rejection), _) => format!("{code}: {rejection}"),
            (SigverError::HeartbeatMissed, _) => "Too many missed hearbeats".into(),
            (SigverError::BlockingMember, Current) => {
                "replaced by a peer as prevented him from joining the group".into()
            }
            (SigverError::BlockingMember, Legacy) => {
                "prevent other peers from joining the group".into()
            }
            (SigverError::TextFrame, Current) => "Wrong data type".into(),
            (SigverError::InvalidFrame { .. }, Current) => String::new(),
            // sigver 18 mostly ignored text frames; we close (spec/sigver.md).
            (SigverError::TextFrame, Legacy) => "text frames are not sigver messages".into(),
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
    /// `auth.key_secret` is set and the RoomId is not a valid, unexpired
    /// signed key (for this UserId, when keys bind users).
    #[error("RoomId refused: {0}")]
    KeyRefused(KeyRejection),
}

impl VidereError {
    /// The `Payload` of the error notice sent back to the client.
    pub fn reason(&self) -> String {
        self.to_string()
    }

    /// A configured limit said no (as opposed to a client sending bad input).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            VidereError::Refused(_) | VidereError::TooLarge(_) | VidereError::KeyRefused(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_cross_nodes_unchanged_and_garbage_is_refused() {
        for refusal in [
            Refusal::TooManyConnections(3),
            Refusal::TooManyFromAddress(10_000),
            Refusal::TooManySessionsFromAddress(100),
            Refusal::TooManyRooms(usize::MAX),
            Refusal::RoomFull(2),
            Refusal::Internal,
            Refusal::ClusterUnavailable,
            Refusal::RoomMoved,
            Refusal::RateLimited(RateLimit::Connections),
            Refusal::RateLimited(RateLimit::Messages),
            Refusal::RateLimited(RateLimit::Joins),
        ] {
            assert_eq!(Refusal::from_wire(&refusal.to_wire()), Some(refusal));
        }
        for garbage in [
            &[][..],
            &[3],
            &[3, 0, 0],
            &[8, 0, 0, 0, 0, 0, 0, 0, 3],
            &[9, 0, 0, 0, 0, 0, 0, 0, 0],
        ] {
            assert_eq!(Refusal::from_wire(garbage), None, "{garbage:?}");
        }
        assert_eq!(
            Refusal::from_wire(&[3, 0, 0, 0, 0, 0, 0, 0, 2, 9]),
            None,
            "trailing bytes"
        );
    }

    #[test]
    fn sigver_codes_follow_the_spec_tables() {
        use SigverDialect::{Current, Legacy};
        let cases = [
            (SigverError::EmptyKey, 4741, 4001),
            (SigverError::KeyTooLong(512), 4741, 4001),
            (SigverError::HeartbeatMissed, 4742, 4002),
            (SigverError::BadMessage("x".into()), 4743, 4003),
            (SigverError::TextFrame, 4743, 4003),
            (
                SigverError::InvalidFrame {
                    utf8: false,
                    detail: "Bad opcode".into(),
                },
                1002,
                4003,
            ),
            (
                SigverError::InvalidFrame {
                    utf8: true,
                    detail: "invalid utf-8".into(),
                },
                1007,
                4003,
            ),
            (SigverError::BlockingMember, 4744, 4004),
            (SigverError::SendFailed("queue full".into()), 4745, 1011),
            (SigverError::FrameTooLarge(10), 1009, 1009),
            (SigverError::KeyRefused(KeyRejection::Expired), 4741, 4001),
            (
                SigverError::KeyRefused(KeyRejection::BadSignature),
                4741,
                4001,
            ),
            (Refusal::RateLimited(RateLimit::Messages).into(), 1008, 1008),
        ];
        for (err, current, legacy) in cases {
            assert_eq!(err.close(Current).code, current, "{err}");
            assert_eq!(err.close(Legacy).code, legacy, "{err}");
        }
    }

    #[test]
    fn legacy_reasons_are_sigver_18s_words() {
        use SigverDialect::Legacy;
        let reason = |err: SigverError| err.close(Legacy).reason.into_owned();
        assert_eq!(
            reason(SigverError::EmptyKey),
            "4001: The key  is an empty string"
        );
        assert_eq!(
            reason(SigverError::KeyTooLong(512)),
            "4001: The key length exceeds the limit of 512 characters"
        );
        assert_eq!(
            reason(SigverError::HeartbeatMissed),
            "Too many missed hearbeats"
        );
        assert_eq!(
            reason(SigverError::BlockingMember),
            "prevent other peers from joining the group"
        );
        assert_eq!(
            reason(SigverError::BadMessage(
                "index out of range: 1 + 1 > 1".into()
            )),
            "index out of range: 1 + 1 > 1"
        );
        assert_eq!(
            reason(SigverError::TextFrame),
            "text frames are not sigver messages"
        );
    }

    /// sigver 20.1.0's texts, as `tests/node_conformance.rs` observes them.
    #[test]
    fn current_reasons_are_sigver_20s_words() {
        use SigverDialect::Current;
        let reason = |err: SigverError| err.close(Current).reason.into_owned();
        assert_eq!(
            reason(SigverError::EmptyKey),
            "4741: The key  is an empty string"
        );
        assert_eq!(
            reason(SigverError::KeyTooLong(512)),
            "4741: The key length exceeds the limit of 512 characters"
        );
        assert_eq!(
            reason(SigverError::HeartbeatMissed),
            "Too many missed hearbeats"
        );
        assert_eq!(
            reason(SigverError::BlockingMember),
            "replaced by a peer as prevented him from joining the group"
        );
        assert_eq!(reason(SigverError::TextFrame), "Wrong data type");
        // `ws`'s own closes for a broken frame carried no reason.
        let broken = SigverError::InvalidFrame {
            utf8: false,
            detail: "Received an unmasked frame from client".into(),
        };
        assert_eq!(reason(broken.clone()), "");
        assert_eq!(
            broken.close(SigverDialect::Legacy).reason,
            "invalid WebSocket frame: Received an unmasked frame from client"
        );
        assert_eq!(
            reason(SigverError::BadMessage(
                "Wrong message format or unknown message".into()
            )),
            "Wrong message format or unknown message"
        );
        // sigway's own closes keep sigway's words.
        assert_eq!(
            reason(SigverError::SendFailed("queue full".into())),
            "failed to send: queue full"
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
        let flood = Refusal::RateLimited(RateLimit::Messages).close();
        assert_eq!(
            (flood.code, flood.reason.as_ref()),
            (1008, "rate limit: too many messages")
        );
    }

    #[test]
    fn a_refused_signed_key_reads_like_a_bad_key() {
        let close = SigverError::KeyRefused(KeyRejection::Expired).close(SigverDialect::Legacy);
        assert_eq!(close.reason, "4001: the key has expired");
        assert!(VidereError::KeyRefused(KeyRejection::Malformed).is_refusal());
    }
}
