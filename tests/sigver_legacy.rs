//! The legacy sigver dialect (sigver 18.x) through real WebSockets: the
//! join flow, every message, each close code 4001-4004, heartbeat expiry,
//! `tryAnother` rotation, blocking-member replacement, limits, and how a
//! connection picks its dialect (query flag or `sigver.protocol`).

mod common;

use std::time::Duration;

use common::{WAIT, start, test_settings};

use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use sigway::app::BackgroundServer;
use sigway::config::SigverDialect;
use sigway::proto::legacy::{Content, Message, content, message::Type};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::{self, Message as Ws};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long "nothing arrives" is watched for.
const QUIET: Duration = Duration::from_millis(300);

/// What a peer receives, heartbeats aside.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Got {
    IsFirst(bool),
    Data(u32, Vec<u8>),
    IsEnd(u32),
    IsError(u32),
}

/// An early-2018 Netflux peer over a real WebSocket.
struct LegacyPeer {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    heartbeats: usize,
}

impl LegacyPeer {
    /// Opens `path` as is (the dialect comes from the query or the setting).
    async fn open_raw(server: &BackgroundServer, path: &str) -> Self {
        let url = server.ws_url(path);
        // No Nagle: frames go out when sent, as a browser's do.
        let connecting = tokio_tungstenite::connect_async_with_config(url.as_str(), None, true);
        let (ws, _) = timeout(WAIT, connecting)
            .await
            .expect("connect in time")
            .expect("websocket upgrade");
        Self { ws, heartbeats: 0 }
    }

    /// Opens `/<key>?protocol=legacy` and reads the `isFirst` answer.
    async fn open(server: &BackgroundServer, key: &str) -> (Self, bool) {
        let mut peer = Self::open_raw(server, &format!("/{key}?protocol=legacy")).await;
        let first = peer.is_first().await;
        (peer, first)
    }

    async fn send(&mut self, r#type: Type) {
        let bytes = Message {
            r#type: Some(r#type),
        }
        .encode_to_vec();
        self.ws.send(Ws::Binary(bytes.into())).await.expect("send");
    }

    async fn send_content(&mut self, id: u32, r#type: Option<content::Type>) {
        self.send(Type::Content(Content { id, r#type })).await;
    }

    async fn data(&mut self, id: u32, data: &[u8]) {
        self.send_content(id, Some(content::Type::Data(data.to_vec().into())))
            .await;
    }

    async fn is_end(&mut self, id: u32) {
        self.send_content(id, Some(content::Type::IsEnd(true)))
            .await;
    }

    async fn is_error(&mut self, id: u32) {
        self.send_content(id, Some(content::Type::IsError(true)))
            .await;
    }

    async fn stable(&mut self) {
        self.send(Type::Stable(true)).await;
    }

    async fn try_another(&mut self) -> bool {
        self.send(Type::TryAnother(true)).await;
        self.is_first().await
    }

    async fn is_first(&mut self) -> bool {
        match self.recv().await {
            Got::IsFirst(first) => first,
            other => panic!("expected isFirst, got {other:?}"),
        }
    }

    /// The next message other than a heartbeat.
    async fn recv(&mut self) -> Got {
        loop {
            let frame = timeout(WAIT, self.ws.next())
                .await
                .expect("a frame in time")
                .expect("socket open")
                .expect("frame ok");
            let bytes = match frame {
                Ws::Binary(bytes) => bytes,
                Ws::Ping(_) | Ws::Pong(_) => continue,
                other => panic!("unexpected frame: {other:?}"),
            };
            if let Some(got) = self.decode(bytes) {
                return got;
            }
        }
    }

    /// `None` for a heartbeat (counted).
    fn decode(&mut self, bytes: bytes::Bytes) -> Option<Got> {
        let message = Message::decode(bytes).expect("server sends valid messages");
        match message.r#type.expect("server sets a type") {
            Type::Heartbeat(_) => {
                self.heartbeats += 1;
                None
            }
            Type::IsFirst(first) => Some(Got::IsFirst(first)),
            Type::Content(Content { id, r#type }) => Some(match r#type {
                Some(content::Type::Data(data)) => Got::Data(id, data.to_vec()),
                Some(content::Type::IsEnd(_)) => Got::IsEnd(id),
                Some(content::Type::IsError(_)) => Got::IsError(id),
                None => panic!("server sent content without a type"),
            }),
            other => panic!("server sent a client-only message: {other:?}"),
        }
    }

    /// Next message, which must be data; returns (id, data).
    async fn recv_data(&mut self) -> (u32, Vec<u8>) {
        match self.recv().await {
            Got::Data(id, data) => (id, data),
            other => panic!("expected data, got {other:?}"),
        }
    }

    /// Asserts that nothing but heartbeats arrives for `QUIET`.
    async fn silent(&mut self) {
        let deadline = tokio::time::Instant::now() + QUIET;
        while let Ok(frame) = tokio::time::timeout_at(deadline, self.ws.next()).await {
            match frame {
                Some(Ok(Ws::Binary(bytes))) => {
                    if let Some(got) = self.decode(bytes) {
                        panic!("expected silence, got {got:?}");
                    }
                }
                Some(Ok(Ws::Ping(_) | Ws::Pong(_))) => {}
                other => panic!("expected silence, got {other:?}"),
            }
        }
    }

    /// Waits for the server's close frame; returns its code and reason.
    async fn closed(&mut self) -> (u16, String) {
        loop {
            let frame = timeout(WAIT, self.ws.next()).await.expect("close in time");
            match frame {
                Some(Ok(Ws::Close(Some(close)))) => {
                    return (u16::from(close.code), close.reason.to_string());
                }
                Some(Ok(Ws::Close(None))) => panic!("close frame without a code"),
                Some(Ok(Ws::Binary(bytes))) => {
                    if let Some(got) = self.decode(bytes) {
                        panic!("expected a close, got {got:?}");
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(tungstenite::Error::ConnectionClosed)) | None => {
                    panic!("closed without a close frame")
                }
                Some(Err(e)) => panic!("socket error before close: {e}"),
            }
        }
    }

    /// Closes with a close frame and waits for the server's answer (sent
    /// after the server has told the group this peer left).
    async fn leave(mut self) {
        self.ws.close(None).await.expect("send close");
        let answered = timeout(WAIT, async {
            while let Some(Ok(frame)) = self.ws.next().await {
                if frame.is_close() {
                    return;
                }
            }
        })
        .await;
        assert!(answered.is_ok(), "the server answers a close in time");
    }
}

/// `joiner` (just bound) says `hello`; returns the route id `member` sees.
async fn route_id(joiner: &mut LegacyPeer, member: &mut LegacyPeer) -> u32 {
    joiner.data(0, b"hello").await;
    let (id, data) = member.recv_data().await;
    assert_eq!(data, b"hello");
    assert_ne!(id, 0, "route ids are non-zero");
    assert!(id < 1 << 31, "route ids fit in 31 bits");
    id
}

/// Opens a peer on `key` that joins through `member` and says `stable`.
///
/// `stable` is not answered, and frames of different connections may reach
/// the group in any order; so the peer then sends data to its member, which
/// arrives after the `stable` has been handled.
async fn join_as_member(
    server: &BackgroundServer,
    key: &str,
    member: &mut LegacyPeer,
) -> LegacyPeer {
    let (mut peer, first) = LegacyPeer::open(server, key).await;
    assert!(!first);
    let id = route_id(&mut peer, member).await;
    peer.stable().await;
    peer.data(0, b"stable sent").await;
    assert_eq!(member.recv_data().await, (id, b"stable sent".to_vec()));
    peer
}

#[tokio::test]
async fn full_join_flow_offer_answer_is_end_both_ways_then_stable() {
    let server = start(test_settings());
    let (mut a, first) = LegacyPeer::open(&server, "room").await;
    assert!(first, "the first peer of a key is first");

    let (mut b, first) = LegacyPeer::open(&server, "room").await;
    assert!(!first, "the next peer is bound to a member at once");

    // The route id B writes is ignored: A sees the one the server gave.
    b.data(4242, b"offer").await;
    let (s, offer) = a.recv_data().await;
    assert_eq!(offer, b"offer");
    assert_ne!(s, 0);
    assert!(s < 1 << 31);
    b.data(0, b"candidate-b").await;
    assert_eq!(a.recv_data().await, (s, b"candidate-b".to_vec()));

    a.data(s, b"answer").await;
    assert_eq!(b.recv_data().await, (0, b"answer".to_vec()));
    a.data(s, b"candidate-a").await;
    assert_eq!(b.recv_data().await, (0, b"candidate-a".to_vec()));

    // isEnd both ways: relayed, then that direction is closed.
    b.is_end(0).await;
    assert_eq!(a.recv().await, Got::IsEnd(s));
    b.data(0, b"after end").await;
    a.silent().await;
    a.is_end(s).await;
    assert_eq!(b.recv().await, Got::IsEnd(0));
    a.data(s, b"after end").await;
    b.silent().await;

    b.stable().await;
    b.silent().await;

    // C is bound to A (first member), then A leaves: C hears isError and
    // tryAnother binds it to B, which `stable` made a member.
    let (mut c, first) = LegacyPeer::open(&server, "room").await;
    assert!(!first);
    let sc = route_id(&mut c, &mut a).await;
    assert_ne!(sc, s, "each binding has its own route id");
    a.leave().await;
    assert_eq!(c.recv().await, Got::IsError(0));
    b.silent().await; // B had ended both directions with A: no isError.
    assert!(!c.try_another().await);
    let sc2 = route_id(&mut c, &mut b).await;
    assert_ne!(sc2, sc);
}

#[tokio::test]
async fn is_error_is_relayed_and_ends_both_directions() {
    let server = start(test_settings());
    let (mut a, _) = LegacyPeer::open(&server, "err").await;
    let (mut b, _) = LegacyPeer::open(&server, "err").await;
    let s = route_id(&mut b, &mut a).await;
    b.is_error(0).await;
    assert_eq!(a.recv().await, Got::IsError(s));
    b.data(0, b"x").await;
    a.data(s, b"y").await;
    a.silent().await;
    b.silent().await;

    // And from the member's side.
    let (mut c, _) = LegacyPeer::open(&server, "err").await;
    let sc = route_id(&mut c, &mut a).await;
    a.is_error(sc).await;
    assert_eq!(c.recv().await, Got::IsError(0));
    c.data(0, b"x").await;
    a.silent().await;
    // A closing now owes neither of them anything.
    a.leave().await;
    b.silent().await;
    c.silent().await;
}

#[tokio::test]
async fn closing_side_gives_is_error_to_the_other_unless_it_ended() {
    let server = start(test_settings());
    let (mut a, _) = LegacyPeer::open(&server, "close").await;
    let (mut b, _) = LegacyPeer::open(&server, "close").await;
    let sb = route_id(&mut b, &mut a).await;
    let (mut c, _) = LegacyPeer::open(&server, "close").await;
    route_id(&mut c, &mut a).await;
    let (mut d, _) = LegacyPeer::open(&server, "close").await;
    route_id(&mut d, &mut a).await;

    // A joiner that closes: its member hears isError with its route id.
    b.leave().await;
    assert_eq!(a.recv().await, Got::IsError(sb));
    // A joiner that had ended its direction: nothing.
    c.is_end(0).await;
    assert!(matches!(a.recv().await, Got::IsEnd(_)));
    c.leave().await;
    a.silent().await;

    // A member that closes: each joiner hears isError, unless the member
    // had ended that direction.
    let (mut e, _) = LegacyPeer::open(&server, "close").await;
    let se = route_id(&mut e, &mut a).await;
    a.is_end(se).await;
    assert_eq!(e.recv().await, Got::IsEnd(0));
    a.leave().await;
    assert_eq!(d.recv().await, Got::IsError(0));
    e.silent().await;
}

#[tokio::test]
async fn member_content_to_zero_or_unknown_ids_and_unbound_content_are_dropped() {
    let server = start(test_settings());
    let (mut a, _) = LegacyPeer::open(&server, "drop").await;
    a.data(0, b"to nobody").await;
    a.data(77, b"to nobody").await;
    a.is_end(0).await;
    let (mut b, _) = LegacyPeer::open(&server, "drop").await;
    let s = route_id(&mut b, &mut a).await;
    a.data(0, b"zero").await;
    a.data(s.wrapping_add(1), b"unknown").await;
    b.silent().await;
    // Still connected and relaying.
    a.data(s, b"ok").await;
    assert_eq!(b.recv_data().await, (0, b"ok".to_vec()));
    // isFirst from a client is ignored too.
    b.send(Type::IsFirst(true)).await;
    b.data(0, b"still here").await;
    assert_eq!(a.recv_data().await, (s, b"still here".to_vec()));
}

#[tokio::test]
async fn try_another_rotates_through_three_members_then_starts_over() {
    let server = start(test_settings());
    let key = "three";
    let (mut a, first) = LegacyPeer::open(&server, key).await;
    assert!(first);
    let mut b = join_as_member(&server, key, &mut a).await;
    // C's first choice is A (first untried in membership order).
    let mut c = join_as_member(&server, key, &mut a).await;

    let (mut d, first) = LegacyPeer::open(&server, key).await;
    assert!(!first);
    let mut ids = vec![route_id(&mut d, &mut a).await];
    assert!(!d.try_another().await);
    ids.push(route_id(&mut d, &mut b).await);
    assert!(!d.try_another().await);
    ids.push(route_id(&mut d, &mut c).await);
    // All three tried: the tried list is reset, A again.
    assert!(!d.try_another().await);
    ids.push(route_id(&mut d, &mut a).await);
    let distinct: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(distinct.len(), 4, "a fresh route id per binding: {ids:?}");
    // Old members were told nothing of the rebinds.
    b.silent().await;
    c.silent().await;
    // An old route id leads nowhere.
    b.data(ids[1], b"stale").await;
    d.silent().await;
}

#[tokio::test]
async fn blocking_lone_member_is_replaced_and_closed_with_4004() {
    let server = start(test_settings());
    let (mut a, _) = LegacyPeer::open(&server, "block").await;
    let (mut b, first) = LegacyPeer::open(&server, "block").await;
    assert!(!first);
    route_id(&mut b, &mut a).await;
    // B could not reach A, the only member: B takes its place. As sigver 18
    // does, A is closed first, so B hears its binding end before the answer.
    b.send(Type::TryAnother(true)).await;
    assert_eq!(b.recv().await, Got::IsError(0), "its binding to A ends");
    assert!(b.is_first().await, "the replacing peer is first");
    let (code, reason) = a.closed().await;
    assert_eq!(code, 4004);
    assert_eq!(reason, "prevent other peers from joining the group");
    // The group now goes through B.
    let (mut c, first) = LegacyPeer::open(&server, "block").await;
    assert!(!first);
    route_id(&mut c, &mut b).await;
}

#[tokio::test]
async fn try_another_after_the_group_vanished_makes_the_peer_first() {
    let server = start(test_settings());
    let (a, _) = LegacyPeer::open(&server, "gone").await;
    let (mut b, _) = LegacyPeer::open(&server, "gone").await;
    a.leave().await;
    assert_eq!(b.recv().await, Got::IsError(0));
    assert!(b.try_another().await);
    let (mut c, first) = LegacyPeer::open(&server, "gone").await;
    assert!(!first);
    route_id(&mut c, &mut b).await;
}

#[tokio::test]
async fn empty_group_makes_the_next_peer_first() {
    let server = start(test_settings());
    let (a, _) = LegacyPeer::open(&server, "again").await;
    a.leave().await;
    let (_b, first) = LegacyPeer::open(&server, "again").await;
    assert!(first);
}

#[tokio::test]
async fn bad_frames_close_with_4003_and_harm_no_one_else() {
    let server = start(test_settings());
    let (mut a, _) = LegacyPeer::open(&server, "bad").await;
    let untyped_content = Message {
        r#type: Some(Type::Content(Content {
            id: 0,
            r#type: None,
        })),
    }
    .encode_to_vec();
    // Reasons are sigver 18's: protobufjs's error texts for bytes it cannot
    // read, its own words for a content with no type from a bound joiner.
    let bad_frames = [
        (
            Ws::Text("hello".into()),
            "text frames are not sigver messages",
        ),
        (
            Ws::Binary(vec![0xff, 0xff, 0xff].into()),
            "index out of range: 3 + 10 > 3",
        ),
        (
            Ws::Binary(vec![0x0a, 0x0a, 0x08].into()), // truncated content
            "index out of range: 3 + 10 > 3",
        ),
        (
            Ws::Binary(untyped_content.into()),
            "from the {s} joining peer",
        ),
    ];
    for (frame, reason) in bad_frames {
        let (mut bad, first) = LegacyPeer::open(&server, "bad").await;
        assert!(!first);
        let s = route_id(&mut bad, &mut a).await;
        bad.ws.send(frame.clone()).await.expect("send");
        let (code, got) = bad.closed().await;
        assert_eq!(code, 4003, "{frame:?}");
        assert!(
            got.ends_with(&reason.replace("{s}", &s.to_string())),
            "{got}"
        );
        assert_eq!(a.recv().await, Got::IsError(s), "its member hears isError");
    }
    let (mut b, _) = LegacyPeer::open(&server, "bad").await;
    route_id(&mut b, &mut a).await;
}

#[tokio::test]
async fn frames_with_nothing_to_act_on_are_ignored() {
    let server = start(test_settings());
    let (mut a, _) = LegacyPeer::open(&server, "nothing").await;
    let (mut b, _) = LegacyPeer::open(&server, "nothing").await;
    let s = route_id(&mut b, &mut a).await;
    let untyped_content = Message {
        r#type: Some(Type::Content(Content {
            id: 0,
            r#type: None,
        })),
    }
    .encode_to_vec();
    let nothing = [
        Vec::new(),       // a Message with no type
        vec![0x30, 0x01], // an unknown field only
        vec![0x00, 0x00], // field number 0, which protobufjs skips
        Message {
            r#type: Some(Type::IsFirst(true)),
        }
        .encode_to_vec(), // server-to-client
    ];
    for frame in nothing.iter().cloned() {
        a.ws.send(Ws::Binary(frame.clone().into()))
            .await
            .expect("send");
        b.ws.send(Ws::Binary(frame.into())).await.expect("send");
    }
    // From a peer no binding listens to (A is bound to no one), a content
    // with no type is nothing either.
    a.ws.send(Ws::Binary(untyped_content.into()))
        .await
        .expect("send");
    a.silent().await;
    b.silent().await;
    b.data(0, b"still here").await;
    assert_eq!(a.recv_data().await, (s, b"still here".to_vec()));
    a.data(s, b"and here").await;
    assert_eq!(b.recv_data().await, (0, b"and here".to_vec()));
}

#[tokio::test]
async fn empty_and_overlong_keys_close_with_4001() {
    let server = start(test_settings());
    let mut empty = LegacyPeer::open_raw(&server, "/?protocol=legacy").await;
    assert_eq!(
        empty.closed().await,
        (4001, "4001: The key  is an empty string".into())
    );
    let long = format!("/{}?protocol=legacy", "k".repeat(513));
    let mut long = LegacyPeer::open_raw(&server, &long).await;
    assert_eq!(
        long.closed().await,
        (
            4001,
            "4001: The key length exceeds the limit of 512 characters".into()
        )
    );
    let (_ok, first) = LegacyPeer::open(&server, &"k".repeat(512)).await;
    assert!(first, "512 characters are accepted");
}

#[tokio::test]
async fn silent_peer_gets_heartbeats_then_4002_and_an_answering_one_stays() {
    let mut settings = test_settings();
    settings.sigver.heartbeat_interval_ms = 100;
    settings.sigver.heartbeat_max_missed = 3;
    let server = start(settings);
    let (mut silent, _) = LegacyPeer::open(&server, "hb").await;
    let (mut alive, first) = LegacyPeer::open(&server, "hb").await;
    assert!(!first, "bound to the silent peer");

    // The other peer answers each heartbeat, meanwhile, for many intervals.
    let answering = async {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(800);
        let (mut answered, mut is_error) = (0, false);
        while let Ok(frame) = tokio::time::timeout_at(deadline, alive.ws.next()).await {
            match frame {
                Some(Ok(Ws::Binary(bytes))) => {
                    match Message::decode(bytes).expect("valid").r#type {
                        Some(Type::Heartbeat(_)) => {
                            alive.send(Type::Heartbeat(true)).await;
                            answered += 1;
                        }
                        Some(Type::Content(c)) => {
                            assert_eq!(c.r#type, Some(content::Type::IsError(true)));
                            is_error = true;
                        }
                        other => panic!("unexpected {other:?}"),
                    }
                }
                Some(Ok(Ws::Ping(_) | Ws::Pong(_))) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        (answered, is_error)
    };
    let ((code, reason), (answered, is_error)) = tokio::join!(silent.closed(), answering);
    assert_eq!(code, 4002);
    assert_eq!(
        reason, "Too many missed hearbeats",
        "sigver 18's words, typo included"
    );
    assert_eq!(silent.heartbeats, 2, "two heartbeats before the third miss");
    assert!(answered >= 5, "heartbeats kept coming: {answered}");
    assert!(is_error, "the silent member's closing ended the binding");
    assert!(alive.try_another().await, "still open; its group vanished");
}

#[tokio::test]
async fn stable_beyond_the_member_limit_is_refused() {
    let mut settings = test_settings();
    settings.limits.max_members_per_room = 1;
    let server = start(settings);
    let (mut a, _) = LegacyPeer::open(&server, "full").await;
    let (mut b, _) = LegacyPeer::open(&server, "full").await;
    let s = route_id(&mut b, &mut a).await;
    b.stable().await;
    let (code, reason) = b.closed().await;
    assert_eq!(code, 1013);
    assert!(reason.contains("room full"), "{reason}");
    assert_eq!(a.recv().await, Got::IsError(s));
}

/// A current-dialect peer, just enough to tell the dialects apart.
mod current {
    use super::*;
    use sigway::proto::sigver::{GroupData, Message, message::Type};

    pub async fn connect(ws: &mut LegacyPeer, id: u32) -> bool {
        let bytes = Message {
            r#type: Some(Type::Connect(GroupData {
                id,
                members: vec![],
            })),
        }
        .encode_to_vec();
        ws.ws.send(Ws::Binary(bytes.into())).await.expect("send");
        loop {
            let frame = timeout(WAIT, ws.ws.next())
                .await
                .expect("a frame in time")
                .expect("open")
                .expect("ok");
            if let Ws::Binary(bytes) = frame {
                match Message::decode(bytes).expect("valid").r#type {
                    Some(Type::Connected(member)) => return member,
                    Some(Type::Heartbeat(_)) => {}
                    other => panic!("expected connected, got {other:?}"),
                }
            }
        }
    }
}

#[tokio::test]
async fn current_and_legacy_peers_work_at_the_same_time() {
    let server = start(test_settings());
    let mut cur_a = LegacyPeer::open_raw(&server, "/cur").await;
    let (mut leg_a, first) = LegacyPeer::open(&server, "leg").await;
    assert!(first);
    assert!(current::connect(&mut cur_a, 1).await);
    let mut cur_b = LegacyPeer::open_raw(&server, "/cur").await;
    let (mut leg_b, first) = LegacyPeer::open(&server, "leg").await;
    assert!(!first);
    assert!(!current::connect(&mut cur_b, 2).await, "bound, not first");
    route_id(&mut leg_b, &mut leg_a).await;
    leg_b.stable().await;
    // Each group keeps to its own dialect: no legacy frame reached current peers.
    cur_a.silent().await;
    // The same key in both dialects names two separate groups.
    let mut cur_same = LegacyPeer::open_raw(&server, "/leg").await;
    assert!(
        current::connect(&mut cur_same, 9).await,
        "first in its dialect"
    );
    leg_a.silent().await;
}

#[tokio::test]
async fn legacy_setting_makes_it_the_default_and_current_stays_reachable() {
    let mut settings = test_settings();
    settings.sigver.protocol = SigverDialect::Legacy;
    let server = start(settings);
    let mut a = LegacyPeer::open_raw(&server, "/k").await;
    assert!(a.is_first().await, "legacy without any query flag");
    let mut b = LegacyPeer::open_raw(&server, "/k?favored").await;
    assert!(!b.is_first().await);
    let s = route_id(&mut b, &mut a).await;
    b.ws.send(Ws::Binary(vec![0xff].into()))
        .await
        .expect("send");
    assert_eq!(b.closed().await.0, 4003, "legacy close codes");
    assert_eq!(a.recv().await, Got::IsError(s));

    let mut cur = LegacyPeer::open_raw(&server, "/k?protocol=current").await;
    assert!(
        current::connect(&mut cur, 1).await,
        "current dialect on request"
    );
    cur.ws
        .send(Ws::Binary(vec![0xff].into()))
        .await
        .expect("send");
    assert_eq!(cur.closed().await.0, 4743, "current close codes");
}
