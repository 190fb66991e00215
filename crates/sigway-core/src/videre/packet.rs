//! videre packets: parsing what clients send and building what they receive.
//!
//! A packet is one JSON object `{"Header":{"Event","UserId","RoomId"},
//! "Payload":…}`. Parsing validates the header and records where `Payload`
//! sits in the text, nothing more: a broadcast is passed on as the exact text
//! received (one [`ByteString`] shared by every recipient), and the connect and
//! ping answers are that same text with only the `Payload` value swapped, so
//! extra fields, key order and spacing the client chose survive. Everything
//! here is pure and I/O-free; refusals are [`VidereError`]s.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use bytestring::ByteString;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::VidereError;

/// The four things a client can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    /// Leave every room, join `RoomId` under `UserId`; everyone there hears it.
    Connect,
    /// Pass the packet to every member of the room, the sender included.
    Broadcast,
    /// Ask for the room's user ids, in join order.
    Ping,
    /// Leave the room; the others hear it.
    Disconnect,
}

impl Event {
    /// Every event, in the spec's order.
    pub const ALL: [Event; 4] = [
        Event::Connect,
        Event::Broadcast,
        Event::Ping,
        Event::Disconnect,
    ];

    /// The event as `Header.Event` names it.
    pub fn name(self) -> &'static str {
        match self {
            Event::Connect => "connect",
            Event::Broadcast => "broadcast",
            Event::Ping => "ping",
            Event::Disconnect => "disconnect",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.name() == name)
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A valid packet from a client, with its original text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// `Header.Event`.
    pub event: Event,
    /// `Header.UserId`, as sent.
    pub user_id: String,
    /// `Header.RoomId`, as sent.
    pub room_id: String,
    text: ByteString,
    /// Byte range of the `Payload` value in `text` (the last one, as
    /// `JSON.parse` keeps the last of duplicate keys), if there is one.
    payload: Option<Range<usize>>,
}

/// A packet that was refused, with the ids the client sent (for the notice).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// `Header.UserId` if the packet had a string there, else empty.
    pub user_id: String,
    /// `Header.RoomId` if the packet had a string there, else empty.
    pub room_id: String,
    /// Why it was refused.
    pub error: VidereError,
}

impl Rejected {
    /// The error notice that tells the sender why.
    pub fn notice(&self) -> ByteString {
        error_notice(&self.user_id, &self.room_id, &self.error)
    }
}

/// The header fields as sent, each still of any JSON type.
#[derive(Deserialize)]
struct LooseHeader {
    #[serde(rename = "Event")]
    event: Option<serde_json::Value>,
    #[serde(rename = "UserId")]
    user_id: Option<serde_json::Value>,
    #[serde(rename = "RoomId")]
    room_id: Option<serde_json::Value>,
}

/// Parses one message of a client. `max_bytes` bounds the text.
pub fn parse(text: ByteString, max_bytes: usize) -> Result<Packet, Rejected> {
    let reject = |error| Rejected {
        user_id: String::new(),
        room_id: String::new(),
        error,
    };
    if text.len() > max_bytes {
        return Err(reject(VidereError::TooLarge(max_bytes)));
    }
    let (header, payload) = {
        // Values stay unparsed (borrowed slices of `text`): a several-KB SDP
        // payload is skipped over, never copied.
        let fields: BTreeMap<String, &RawValue> =
            serde_json::from_str(&text).map_err(|e| match e.classify() {
                serde_json::error::Category::Data => reject(VidereError::NotAnObject),
                _ => reject(VidereError::InvalidJson(e.to_string())),
            })?;
        let header = fields
            .get("Header")
            // A derived struct would also accept an array; Header is an object.
            .filter(|raw| raw.get().starts_with('{'))
            .and_then(|raw| serde_json::from_str::<LooseHeader>(raw.get()).ok())
            .ok_or_else(|| reject(VidereError::NoHeader))?;
        let payload = fields.get("Payload").map(|raw| span_in(&text, raw.get()));
        (header, payload)
    };
    let as_string = |value: &Option<serde_json::Value>| match value {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    let user_id = as_string(&header.user_id);
    let room_id = as_string(&header.room_id);
    let refuse = |error| Rejected {
        user_id: user_id.clone().unwrap_or_default(),
        room_id: room_id.clone().unwrap_or_default(),
        error,
    };
    let event = match &header.event {
        Some(serde_json::Value::String(name)) => Event::from_name(name),
        _ => None,
    }
    .ok_or_else(|| refuse(VidereError::UnknownEvent))?;
    let user_id = user_id
        .clone()
        .ok_or_else(|| refuse(VidereError::NotAString("UserId")))?;
    let room_id = room_id
        .clone()
        .ok_or_else(|| refuse(VidereError::NotAString("RoomId")))?;
    Ok(Packet {
        event,
        user_id,
        room_id,
        text,
        payload,
    })
}

/// Where `part`, a slice of `whole`, lies in it.
fn span_in(whole: &str, part: &str) -> Range<usize> {
    let start = (part.as_ptr() as usize).saturating_sub(whole.as_ptr() as usize);
    start..start + part.len()
}

impl Packet {
    /// Ids live as long as their room, so they are bounded like sigver's
    /// keys: `max_bytes` each. The refusal does not echo an oversized id
    /// back (its notice names no user and no room).
    pub fn check_ids(&self, max_bytes: usize) -> Result<(), Rejected> {
        for (field, id) in [("UserId", &self.user_id), ("RoomId", &self.room_id)] {
            if id.len() > max_bytes {
                return Err(Rejected {
                    user_id: String::new(),
                    room_id: String::new(),
                    error: VidereError::IdTooLong(field, max_bytes),
                });
            }
        }
        Ok(())
    }

    /// The packet exactly as the client sent it (what a broadcast forwards).
    pub fn text(&self) -> &ByteString {
        &self.text
    }

    /// The answer to a connect: the packet with `"Payload":"true"` when the
    /// sender is the room's initiator, `"false"` otherwise.
    pub fn connect_answer(&self, initiator: bool) -> ByteString {
        self.with_payload(if initiator { r#""true""# } else { r#""false""# })
    }

    /// The answer to a ping: `Payload` is the JSON text of `user_ids`.
    pub fn ping_answer<'a>(&self, user_ids: impl IntoIterator<Item = &'a str>) -> ByteString {
        let ids: Vec<&str> = user_ids.into_iter().collect();
        let list = serde_json::to_string(&ids).unwrap_or_else(|_| "[]".into());
        self.with_payload(&json_string(&list))
    }

    /// The packet with its `Payload` value replaced by `json` (JSON text),
    /// or `Payload` added as the last key when the client sent none.
    fn with_payload(&self, json: &str) -> ByteString {
        let text: &str = &self.text;
        let mut out = String::with_capacity(text.len() + json.len() + 16);
        match &self.payload {
            Some(range) => {
                out.push_str(&text[..range.start]);
                out.push_str(json);
                out.push_str(&text[range.end..]);
            }
            None => {
                // A valid object ends with `}`; the Header makes it non-empty.
                let body = text.trim_end();
                let body = body.strip_suffix('}').unwrap_or(body);
                out.push_str(body);
                out.push_str(",\"Payload\":");
                out.push_str(json);
                out.push('}');
            }
        }
        ByteString::from(out)
    }
}

fn json_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into())
}

#[derive(Serialize)]
struct NoticeHeader<'a> {
    #[serde(rename = "Event")]
    event: &'a str,
    #[serde(rename = "UserId")]
    user_id: &'a str,
    #[serde(rename = "RoomId")]
    room_id: &'a str,
}

#[derive(Serialize)]
struct Notice<'a> {
    #[serde(rename = "Header")]
    header: NoticeHeader<'a>,
    #[serde(rename = "Payload")]
    payload: &'a str,
}

fn notice(event: &str, user_id: &str, room_id: &str, payload: &str) -> ByteString {
    let notice = Notice {
        header: NoticeHeader {
            event,
            user_id,
            room_id,
        },
        payload,
    };
    // Serializing borrowed strings into a String cannot fail.
    ByteString::from(serde_json::to_string(&notice).unwrap_or_default())
}

/// What the others in a room receive when `user_id` leaves it.
pub fn disconnect_notice(user_id: &str, room_id: &str) -> ByteString {
    notice("disconnect", user_id, room_id, "")
}

/// Tells a sender why its packet was refused (real clients ignore it).
pub fn error_notice(user_id: &str, room_id: &str, error: &VidereError) -> ByteString {
    notice("error", user_id, room_id, &error.reason())
}

/// A well-formed packet for unit tests of the modules that consume packets.
#[cfg(test)]
pub(crate) fn test_packet(event: &str, user: &str, room: &str) -> Packet {
    let text = serde_json::json!({
        "Header": {"Event": event, "UserId": user, "RoomId": room},
        "Payload": "{}",
    })
    .to_string();
    match parse(text.into(), 1 << 20) {
        Ok(packet) => packet,
        Err(rejected) => panic!("test packet rejected: {rejected:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LIMIT: usize = 1 << 20;

    fn ok(text: &str) -> Packet {
        parse(text.into(), LIMIT).expect("valid packet")
    }

    fn err(text: &str) -> Rejected {
        parse(text.into(), LIMIT).expect_err("refused packet")
    }

    #[test]
    fn parses_every_event_with_its_ids() {
        for event in Event::ALL {
            let p = ok(&format!(
                r#"{{"Header":{{"Event":"{event}","UserId":"u","RoomId":"r"}},"Payload":"{{}}"}}"#
            ));
            assert_eq!(
                (p.event, p.user_id.as_str(), p.room_id.as_str()),
                (event, "u", "r")
            );
        }
    }

    #[test]
    fn broadcast_text_is_kept_byte_for_byte() {
        let text = r#"{ "Header" : {"Event":"broadcast","UserId":"a","RoomId":"","X":1}, "Payload":{"Type":"Ice Offer","IcePacket":{"sdp":"v=0\r\n"}}, "Extra":[1,2] }"#;
        assert_eq!(ok(text).text().as_ref() as &str, text);
    }

    #[test]
    fn connect_answer_swaps_only_the_payload() {
        let p = ok(
            r#"{"Header":{"Event":"connect","UserId":"peer1","RoomId":"room-42","Ext":true},"Payload":"{}","Z":0}"#,
        );
        assert_eq!(
            &*p.connect_answer(true),
            r#"{"Header":{"Event":"connect","UserId":"peer1","RoomId":"room-42","Ext":true},"Payload":"true","Z":0}"#
        );
        assert_eq!(
            &*p.connect_answer(false),
            r#"{"Header":{"Event":"connect","UserId":"peer1","RoomId":"room-42","Ext":true},"Payload":"false","Z":0}"#
        );
    }

    #[test]
    fn connect_without_payload_gets_one_appended() {
        let p = ok(r#"{"Header":{"Event":"connect","UserId":"u","RoomId":"r"}} "#);
        assert_eq!(
            &*p.connect_answer(true),
            r#"{"Header":{"Event":"connect","UserId":"u","RoomId":"r"},"Payload":"true"}"#
        );
    }

    #[test]
    fn duplicate_payload_keys_replace_the_one_json_parse_keeps() {
        let p =
            ok(r#"{"Header":{"Event":"ping","UserId":"u","RoomId":"r"},"Payload":1,"Payload":2}"#);
        let answer = p.ping_answer(["u"]);
        let value: serde_json::Value = serde_json::from_str(&answer).expect("json");
        assert_eq!(value["Payload"], r#"["u"]"#);
    }

    #[test]
    fn ping_answer_is_the_json_text_of_the_ids_in_order() {
        let p = ok(r#"{"Header":{"Event":"ping","UserId":"peer1","RoomId":"r"},"Payload":"{}"}"#);
        assert_eq!(
            &*p.ping_answer(["peer1", "peer\"2"]),
            r#"{"Header":{"Event":"ping","UserId":"peer1","RoomId":"r"},"Payload":"[\"peer1\",\"peer\\\"2\"]"}"#
        );
    }

    #[test]
    fn notices_have_the_documented_shape_and_key_order() {
        assert_eq!(
            &*disconnect_notice("peer1", "room"),
            r#"{"Header":{"Event":"disconnect","UserId":"peer1","RoomId":"room"},"Payload":""}"#
        );
        assert_eq!(
            &*error_notice("u", "", &VidereError::NotJoined),
            r#"{"Header":{"Event":"error","UserId":"u","RoomId":""},"Payload":"not connected to this room"}"#
        );
    }

    #[test]
    fn bad_packets_are_refused_with_a_reason_and_the_ids_as_sent() {
        assert!(matches!(err("{nope").error, VidereError::InvalidJson(_)));
        assert!(matches!(err("").error, VidereError::InvalidJson(_)));
        assert_eq!(err("[1]").error, VidereError::NotAnObject);
        assert_eq!(err(r#""str""#).error, VidereError::NotAnObject);
        assert_eq!(err(r#"{"Payload":1}"#).error, VidereError::NoHeader);
        assert_eq!(err(r#"{"Header":"x"}"#).error, VidereError::NoHeader);
        assert_eq!(
            err(r#"{"Header":["connect","u","r"]}"#).error,
            VidereError::NoHeader
        );
        let r = err(r#"{"Header":{"Event":"error","UserId":"u","RoomId":"r"}}"#);
        assert_eq!(
            (r.error, r.user_id.as_str(), r.room_id.as_str()),
            (VidereError::UnknownEvent, "u", "r")
        );
        assert_eq!(
            err(r#"{"Header":{"Event":["connect"],"UserId":"u","RoomId":"r"}}"#).error,
            VidereError::UnknownEvent
        );
        assert_eq!(
            err(r#"{"Header":{"Event":"Connect","UserId":"u","RoomId":"r"}}"#).error,
            VidereError::UnknownEvent
        );
        let r = err(r#"{"Header":{"Event":"ping","UserId":7,"RoomId":"r"}}"#);
        assert_eq!(
            (r.error, r.user_id.as_str(), r.room_id.as_str()),
            (VidereError::NotAString("UserId"), "", "r")
        );
        assert_eq!(
            err(r#"{"Header":{"Event":"ping","UserId":"u"}}"#).error,
            VidereError::NotAString("RoomId")
        );
        let big = format!(r#"{{"Header":{{}},"Payload":"{}"}}"#, "x".repeat(2048));
        assert_eq!(
            parse(big.into(), 1024).expect_err("too big").error,
            VidereError::TooLarge(1024)
        );
    }

    #[test]
    fn error_notice_for_a_rejection_is_valid_json() {
        let r = err(r#"{"Header":{"Event":"nope","UserId":"a\"b","RoomId":"r"}}"#);
        let value: serde_json::Value = serde_json::from_str(&r.notice()).expect("json");
        assert_eq!(value["Header"]["UserId"], "a\"b");
        assert_eq!(value["Header"]["Event"], "error");
    }

    #[test]
    fn ids_over_the_limit_are_refused_without_echoing_them() {
        let p = test_packet("broadcast", "user", "room");
        assert!(p.check_ids(4).is_ok(), "4 bytes is the limit itself");
        let rejected = p.check_ids(3).expect_err("user is 4 bytes");
        assert_eq!(rejected.error, VidereError::IdTooLong("UserId", 3));
        assert_eq!(
            (rejected.user_id.as_str(), rejected.room_id.as_str()),
            ("", "")
        );
        let rejected = test_packet("ping", "u", "roomy")
            .check_ids(4)
            .expect_err("room");
        assert_eq!(rejected.error, VidereError::IdTooLong("RoomId", 4));
    }

    proptest! {
        #[test]
        fn parse_never_panics(text in ".{0,200}") {
            let _ = parse(text.into(), LIMIT);
        }

        #[test]
        fn answers_keep_every_other_field(
            user in ".{0,12}", room in ".{0,12}", extra in ".{0,12}",
            payload in prop_oneof![Just("\"{}\"".to_string()), Just("{\"a\":[1,2]}".to_string()), Just("null".to_string())],
            initiator: bool,
        ) {
            let text = serde_json::json!({
                "Header": {"Event": "connect", "UserId": user, "RoomId": room, "Extra": extra},
                "Payload": serde_json::from_str::<serde_json::Value>(&payload).expect("payload"),
                "Tail": extra,
            }).to_string();
            let packet = parse(text.into(), LIMIT).expect("valid");
            let answer: serde_json::Value = serde_json::from_str(&packet.connect_answer(initiator)).expect("json");
            prop_assert_eq!(&answer["Header"]["UserId"], &serde_json::Value::from(user));
            prop_assert_eq!(&answer["Header"]["RoomId"], &serde_json::Value::from(room));
            prop_assert_eq!(&answer["Header"]["Extra"], &serde_json::Value::from(extra.clone()));
            prop_assert_eq!(&answer["Tail"], &serde_json::Value::from(extra));
            prop_assert_eq!(&answer["Payload"], &serde_json::Value::from(initiator.to_string()));
            let keys: Vec<&String> = answer.as_object().expect("object").keys().collect();
            prop_assert_eq!(keys, vec!["Header", "Payload", "Tail"]);
        }
    }
}
