//! The sigver adapter through real WebSockets: every rule of
//! `spec/sigver.md`, each close code, heartbeat expiry, limits and bad input.

mod common;

use std::time::Duration;

use common::{Peer, WAIT, start, test_settings};
use sigway::proto::sigver::message::Type;
use tokio_tungstenite::tungstenite::Message as Ws;

/// Joins `peer` as a member of a group where `through` is a member with
/// Netflux id `member_id`: connect → bound → offer/answer → connect with view.
async fn join_through(peer: &mut Peer, through: &mut Peer, id: u32, view: &[u32]) -> u32 {
    assert!(!peer.connect(id, &[]).await, "a newcomer is bound first");
    peer.content(0, 0, b"offer", false).await;
    let (s, r, data) = through.recv_content().await;
    assert_eq!((r, data.as_slice()), (0, &b"offer"[..]));
    assert_ne!(s, 0, "signaling ids are non-zero");
    assert!(s < 1 << 31, "signaling ids fit in 31 bits");
    through.content(0, s, b"answer", false).await;
    assert_eq!(peer.recv_content().await, (0, s, b"answer".to_vec()));
    assert!(
        peer.connect(id, view).await,
        "a view sharing a member admits"
    );
    s
}

#[tokio::test]
async fn full_netflux_join_flow_and_end_of_binding_notices() {
    let server = start(test_settings());
    let mut a = Peer::open(&server, "/room").await;
    assert!(a.connect(1, &[]).await, "the first peer founds the group");

    // B binds to A; offer, answer and candidates relayed both ways.
    let mut b = Peer::open(&server, "/room").await;
    assert!(!b.connect(2, &[]).await);
    for data in [&b"offer"[..], b"candidate-b1", b"candidate-b2"] {
        b.content(0, 0, data, false).await;
    }
    let (sb, _, _) = a.recv_content().await;
    assert_eq!(a.recv_content().await, (sb, 0, b"candidate-b1".to_vec()));
    assert_eq!(a.recv_content().await, (sb, 0, b"candidate-b2".to_vec()));
    for data in [&b"answer"[..], b"candidate-a1"] {
        a.content(0, sb, data, false).await;
    }
    assert_eq!(b.recv_content().await, (0, sb, b"answer".to_vec()));
    assert_eq!(b.recv_content().await, (0, sb, b"candidate-a1".to_vec()));
    assert!(
        b.connect(2, &[1]).await,
        "B is a member once its view has A"
    );

    // C joins through A (the first member not tried yet).
    let mut c = Peer::open(&server, "/room").await;
    let sc = join_through(&mut c, &mut a, 3, &[1, 2]).await;
    assert_ne!(sc, sb);

    // A leaves: B and C get their end-of-binding notices and stay.
    a.leave().await;
    assert_eq!(b.recv_content().await, (0, sb, vec![]));
    assert_eq!(c.recv_content().await, (0, sc, vec![]));
    assert!(b.connect(2, &[3]).await, "the group still holds B and C");
    assert!(c.connect(3, &[2]).await);

    // A fourth peer is bound to B (first remaining member).
    let mut d = Peer::open(&server, "/room").await;
    join_through(&mut d, &mut b, 4, &[2]).await;
}

#[tokio::test]
async fn empty_and_overlong_keys_close_with_4741_and_512_is_accepted() {
    let server = start(test_settings());
    // sigver 20.1.0's reasons, the empty key between two spaces included.
    let mut empty = Peer::open(&server, "/").await;
    assert_eq!(
        empty.closed().await,
        (4741, "4741: The key  is an empty string".into())
    );
    let mut long = Peer::open(&server, &format!("/{}", "k".repeat(513))).await;
    assert_eq!(
        long.closed().await,
        (
            4741,
            "4741: The key length exceeds the limit of 512 characters".into()
        )
    );
    let mut ok = Peer::open(&server, &format!("/{}", "k".repeat(512))).await;
    assert!(ok.connect(1, &[]).await);
}

#[tokio::test]
async fn keys_are_raw_paths_and_the_query_is_not_part_of_them() {
    let server = start(test_settings());
    let mut a = Peer::open(&server, "/a%20b/c?favored").await;
    assert!(a.connect(1, &[]).await);
    let mut b = Peer::open(&server, "/a%20b/c?x=1").await;
    assert!(!b.connect(2, &[]).await, "same key despite another query");
    let mut other = Peer::open(&server, "/a b/c".replace(' ', "%2520").as_str()).await;
    assert!(
        other.connect(3, &[]).await,
        "escapes are not decoded: another key"
    );
}

#[tokio::test]
async fn bad_frames_close_with_4743_and_harm_no_one_else() {
    let server = start(test_settings());
    let mut member = Peer::open(&server, "/k").await;
    assert!(member.connect(1, &[]).await);
    // Each with sigver 20.1.0's reason: its own words, or protobufjs's.
    let bad_frames = [
        (Ws::Text("hello".into()), "Wrong data type"),
        (
            Ws::Binary(vec![0xff, 0xff, 0xff].into()),
            "index out of range: 3 + 10 > 3",
        ),
        (
            Ws::Binary(vec![0x12, 0x0a, 0x08].into()), // truncated content
            "index out of range: 3 + 10 > 3",
        ),
        (
            Ws::Binary(vec![0x37].into()),
            "invalid wire type 7 at offset 1",
        ),
        (
            Ws::Binary(Vec::new().into()), // a Message with no field set
            "Wrong message format or unknown message",
        ),
        (
            Ws::Binary(vec![0x30, 0x01].into()), // only an unknown field
            "Wrong message format or unknown message",
        ),
    ];
    for (frame, reason) in bad_frames {
        let mut bad = Peer::open(&server, "/k").await;
        bad.send_raw(frame).await;
        assert_eq!(bad.closed().await, (4743, reason.to_string()));
    }
    assert!(member.connect(1, &[]).await, "the member is untouched");
}

/// What sigver 20's `ws` did at the WebSocket level, as
/// `tests/node_conformance.rs` observes it: a broken frame closes its
/// sender with 1002 (1007 for a text frame that is not UTF-8) and no
/// reason, a client's close is answered with its own code and reason, and
/// the first subprotocol offered is accepted.
#[tokio::test]
async fn websocket_level_answers_are_the_ws_librarys() {
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::AsyncWriteExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    let server = start(test_settings());
    let mut member = Peer::open(&server, "/ws").await;
    assert!(member.connect(1, &[]).await);
    for (frame, code) in [
        (&[0x82, 0x02, 0x08, 0x01][..], 1002), // unmasked
        (&[0x83, 0x80, 0, 0, 0, 0], 1002),     // opcode 3
        (&[0x81, 0x82, 0, 0, 0, 0, 0xc3, 0x28], 1007),
    ] {
        let mut broken = Peer::open(&server, "/ws").await;
        broken
            .ws
            .get_mut()
            .write_all(frame)
            .await
            .expect("raw write");
        assert_eq!(broken.closed().await, (code, String::new()), "{frame:02x?}");
    }
    assert!(member.connect(1, &[]).await, "the member is untouched");

    let bye = CloseFrame {
        code: CloseCode::Library(4000),
        reason: "bye".into(),
    };
    member
        .ws
        .send(Ws::Close(Some(bye.clone())))
        .await
        .expect("close");
    let answer = tokio::time::timeout(WAIT, member.ws.next())
        .await
        .expect("an answer in time");
    assert!(
        matches!(&answer, Some(Ok(Ws::Close(Some(frame)))) if *frame == bye),
        "{answer:?}"
    );

    let mut request = server.ws_url("/ws").into_client_request().expect("request");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "foo, bar".parse().expect("header"),
    );
    let (_ws, response) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .expect("upgrade in time")
        .expect("upgrade with a subprotocol");
    assert_eq!(
        response
            .headers()
            .get("sec-websocket-protocol")
            .map(|v| v.as_bytes()),
        Some(&b"foo"[..])
    );
}

/// One frame holding several messages (protobuf concatenation).
fn merged(parts: &[Type]) -> Ws {
    use prost::Message as _;
    let frame: Vec<u8> = parts
        .iter()
        .flat_map(|part| {
            sigway::proto::sigver::Message {
                r#type: Some(part.clone()),
            }
            .encode_to_vec()
        })
        .collect();
    Ws::Binary(frame.into())
}

fn data(bytes: &[u8]) -> Type {
    Type::Content(sigway::proto::sigver::Content {
        data: bytes.to_vec().into(),
        ..Default::default()
    })
}

#[tokio::test]
async fn content_carried_by_a_frame_of_another_type_is_relayed_as_sigver_20_did() {
    let server = start(test_settings());
    let mut a = Peer::open(&server, "/merged").await;
    assert!(a.connect(1, &[]).await);
    let mut c = Peer::open(&server, "/merged").await;
    join_through(&mut c, &mut a, 3, &[1]).await;
    let mut b = Peer::open(&server, "/merged").await;
    assert!(!b.connect(2, &[]).await);
    // Its type is heartbeat (first seen last); the content still goes up.
    b.send_raw(merged(&[data(b"x"), Type::Heartbeat(true)]))
        .await;
    let (s, _, x) = a.recv_content().await;
    assert_eq!(x, b"x");
    // A connect that rebinds B (to C): its content is lost.
    b.send_raw(merged(&[
        data(b"lost"),
        Type::Connect(sigway::proto::sigver::GroupData {
            id: 2,
            members: vec![],
        }),
    ]))
    .await;
    assert_eq!(b.recv().await, Type::Connected(false));
    b.content(0, 0, b"to c", false).await;
    let (s2, _, to_c) = c.recv_content().await;
    assert_eq!(to_c, b"to c");
    assert_ne!(s2, s);
    a.silent_for(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn connected_from_a_client_and_unbound_content_are_ignored() {
    let server = start(test_settings());
    let mut a = Peer::open(&server, "/k").await;
    a.send(Type::Connected(true)).await;
    a.content(0, 0, b"nobody", false).await;
    a.content(0, 77, b"nobody", false).await;
    assert!(a.connect(1, &[]).await, "still open and answering");
}

#[tokio::test]
async fn blocking_lone_member_is_replaced_with_4744() {
    let server = start(test_settings());
    let mut a = Peer::open(&server, "/k").await;
    assert!(a.connect(1, &[]).await);
    let mut b = Peer::open(&server, "/k").await;
    assert!(!b.connect(2, &[]).await);
    let (s, _, _) = {
        b.content(0, 0, b"offer", false).await;
        a.recv_content().await
    };
    // B could not reach A and asks again: A blocks the group.
    assert!(b.connect(2, &[]).await);
    assert_eq!(
        a.closed().await,
        (
            4744,
            "replaced by a peer as prevented him from joining the group".into()
        )
    );
    assert_eq!(
        b.recv_content().await,
        (0, s, vec![]),
        "B's binding to A ends"
    );
    let mut c = Peer::open(&server, "/k").await;
    assert!(!c.connect(3, &[]).await, "B is now the group");
    c.content(0, 0, b"hi", false).await;
    assert_eq!(b.recv_content().await.2, b"hi".to_vec());
}

#[tokio::test]
async fn favored_member_is_chosen_and_tried_members_rotate() {
    let server = start(test_settings());
    let mut a = Peer::open(&server, "/k").await;
    assert!(a.connect(1, &[]).await);
    let mut b = Peer::open(&server, "/k?favored").await;
    join_through(&mut b, &mut a, 2, &[1]).await;
    let mut c = Peer::open(&server, "/k").await;
    join_through(&mut c, &mut b, 3, &[1]).await; // favored B first

    let mut j = Peer::open(&server, "/k").await;
    let mut members = [a, b, c];
    let mut ids = Vec::new();
    // Favored B, then the untried A and C in membership order, then start over.
    for (round, expected) in [1usize, 0, 2, 1].into_iter().enumerate() {
        assert!(!j.connect(9, &[]).await);
        let data = [round as u8];
        j.content(0, 0, &data, false).await;
        let (s, _, got) = members[expected].recv_content().await;
        assert_eq!(got, data, "round {round} went to member {expected}");
        ids.push(s);
    }
    ids.dedup();
    assert_eq!(ids.len(), 4, "a fresh signaling id on every binding");
}

#[tokio::test]
async fn last_data_stops_a_direction_and_its_notice() {
    let server = start(test_settings());
    let mut a = Peer::open(&server, "/k").await;
    assert!(a.connect(1, &[]).await);
    let mut b = Peer::open(&server, "/k").await;
    assert!(!b.connect(2, &[]).await);
    b.content(0, 0, b"last", true).await;
    let (s, _, data) = a.recv_content().await;
    assert_eq!(data, b"last");
    b.content(0, 0, b"dropped", false).await;
    a.content(0, s, b"down", true).await;
    assert_eq!(b.recv_content().await, (0, s, b"down".to_vec()));
    a.content(0, s, b"dropped", false).await;
    drop(b);
    a.silent_for(Duration::from_millis(300)).await;
    drop(a);
}

#[tokio::test]
async fn rebinding_is_silent_to_the_old_member() {
    let server = start(test_settings());
    let mut a = Peer::open(&server, "/k").await;
    assert!(a.connect(1, &[]).await);
    let mut b = Peer::open(&server, "/k").await;
    join_through(&mut b, &mut a, 2, &[1]).await;
    let mut j = Peer::open(&server, "/k").await;
    assert!(!j.connect(3, &[]).await);
    j.content(0, 0, b"x", false).await;
    let (old, _, _) = a.recv_content().await;
    assert!(!j.connect(3, &[]).await, "rebound to B");
    j.content(0, 0, b"y", false).await;
    let (new, _, _) = b.recv_content().await;
    assert_ne!(old, new);
    a.content(0, old, b"stale", false).await;
    drop(j);
    assert_eq!(
        b.recv_content().await,
        (new, 0, vec![]),
        "only the current member hears the end"
    );
    a.silent_for(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn peer_vanishing_without_close_frame_still_ends_its_bindings() {
    let server = start(test_settings());
    let mut a = Peer::open(&server, "/k").await;
    assert!(a.connect(1, &[]).await);
    let mut b = Peer::open(&server, "/k").await;
    assert!(!b.connect(2, &[]).await);
    b.content(0, 0, b"x", false).await;
    let (s, _, _) = a.recv_content().await;
    // Dropping the stream closes TCP without a WebSocket close frame.
    drop(b.ws);
    assert_eq!(a.recv_content().await, (s, 0, vec![]));
    // A vanished client (a closed browser tab) is not a protocol error.
    let stats: serde_json::Value = reqwest::get(server.http_url("/stats"))
        .await
        .expect("stats")
        .json()
        .await
        .expect("json");
    assert_eq!(stats["protocol_errors"], 0, "{stats}");
}

#[tokio::test]
async fn member_content_to_its_joiner_is_not_copied_to_its_own_member() {
    let server = start(test_settings());
    let mut a = Peer::open(&server, "/k").await;
    assert!(a.connect(1, &[]).await);
    let mut b = Peer::open(&server, "/k").await;
    join_through(&mut b, &mut a, 2, &[1]).await; // B stays bound to A
    let mut c = Peer::open(&server, "/k").await;
    assert!(!c.connect(3, &[]).await); // bound to A
    c.content(0, 0, b"1", false).await;
    a.recv_content().await;
    assert!(!c.connect(3, &[]).await); // rebound to B
    c.content(0, 0, b"2", false).await;
    let (sc, _, _) = b.recv_content().await;
    b.content(0, sc, b"for C only", false).await;
    assert_eq!(c.recv_content().await, (0, sc, b"for C only".to_vec()));
    a.silent_for(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn large_payload_of_64_kib_is_relayed_intact() {
    let server = start(test_settings());
    let mut a = Peer::open(&server, "/k").await;
    assert!(a.connect(1, &[]).await);
    let mut b = Peer::open(&server, "/k").await;
    assert!(!b.connect(2, &[]).await);
    let payload: Vec<u8> = (0..64 * 1024).map(|i| (i * 7 % 251) as u8).collect();
    b.content(0, 0, &payload, false).await;
    let (s, _, got) = a.recv_content().await;
    assert_eq!(got, payload);
    a.content(0, s, &payload, false).await;
    assert_eq!(b.recv_content().await.2, payload);
}

#[tokio::test]
async fn frame_over_the_limit_closes_with_1009() {
    let server = start(test_settings());
    let mut a = Peer::open(&server, "/k").await;
    a.send_raw(Ws::Binary(vec![0u8; 2 * 1024 * 1024].into()))
        .await;
    let (code, reason) = a.closed().await;
    assert_eq!(code, 1009);
    assert!(reason.contains("1048576"), "{reason}");
}

#[tokio::test]
async fn silent_peer_sees_two_heartbeats_and_is_closed_with_4742() {
    let mut settings = test_settings();
    settings.sigver.heartbeat_interval_ms = 150;
    let server = start(settings);
    let started = tokio::time::Instant::now();
    let mut silent = Peer::open(&server, "/k").await;
    // sigver 20.1.0's words, its typo included.
    assert_eq!(
        silent.closed().await,
        (4742, "Too many missed hearbeats".into())
    );
    assert_eq!(silent.heartbeats, 2);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(400) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    // A peer answering heartbeats stays open well past that.
    let mut lively = Peer::open(&server, "/k").await;
    let until = tokio::time::Instant::now() + Duration::from_millis(900);
    while tokio::time::Instant::now() < until {
        match tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut lively.ws)).await {
            Ok(Some(Ok(Ws::Binary(_)))) => lively.send(Type::Heartbeat(true)).await,
            other => panic!("lively peer lost: {other:?}"),
        }
    }
    assert!(lively.connect(1, &[]).await);
}

#[tokio::test]
async fn thousands_of_connects_in_a_loop_are_answered_and_harm_no_one() {
    let server = start(test_settings());
    let mut a = Peer::open(&server, "/k").await;
    assert!(a.connect(1, &[]).await);
    let mut b = Peer::open(&server, "/k").await;
    join_through(&mut b, &mut a, 2, &[1]).await;
    let mut spam = Peer::open(&server, "/k").await;
    for _ in 0..3000 {
        spam.send(Type::Connect(sigway::proto::sigver::GroupData {
            id: 3,
            members: vec![],
        }))
        .await;
    }
    for _ in 0..3000 {
        assert_eq!(
            spam.recv().await,
            Type::Connected(false),
            "each connect rebinds"
        );
    }
    // Rebinds are silent: the members saw nothing and still work.
    a.silent_for(Duration::from_millis(200)).await;
    let mut c = Peer::open(&server, "/k").await;
    join_through(&mut c, &mut a, 4, &[1, 2]).await;
}

#[tokio::test]
async fn plain_http_gets_an_answer_not_a_hang() {
    let server = start(test_settings());
    let client = reqwest::Client::new();
    let page = tokio::time::timeout(WAIT, client.get(server.http_url("/")).send())
        .await
        .expect("in time")
        .expect("GET /");
    assert_eq!(page.status(), 200);
    assert!(page.text().await.expect("body").contains("sigway"));
    let key = tokio::time::timeout(WAIT, client.get(server.http_url("/some-key")).send())
        .await
        .expect("in time")
        .expect("GET");
    assert_eq!(key.status(), 426);
    let json: serde_json::Value = key.json().await.expect("json");
    assert_eq!(json["sigver"]["key"], "some-key");
    let health = client
        .get(server.http_url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn connection_limits_refuse_with_clear_codes() {
    let mut settings = test_settings();
    settings.limits.max_connections_per_ip = 2;
    settings.limits.max_rooms = 1;
    let server = start(settings);
    let mut a = Peer::open(&server, "/one").await;
    assert!(a.connect(1, &[]).await);
    let mut other_room = Peer::open(&server, "/two").await;
    let (code, reason) = other_room.closed().await;
    assert_eq!(code, 1013, "{reason}");
    let mut b = Peer::open(&server, "/one").await;
    assert!(!b.connect(2, &[]).await);
    let mut third = Peer::open(&server, "/one").await;
    let (code, reason) = third.closed().await;
    assert_eq!(code, 1008, "{reason}");
    assert!(reason.contains("address"), "{reason}");
}

#[tokio::test]
async fn member_limit_closes_the_extra_member_with_1013() {
    let mut settings = test_settings();
    settings.limits.max_members_per_room = 1;
    let server = start(settings);
    let mut a = Peer::open(&server, "/k").await;
    assert!(a.connect(1, &[]).await);
    let mut b = Peer::open(&server, "/k").await;
    b.send(Type::Connect(sigway::proto::sigver::GroupData {
        id: 2,
        members: vec![1],
    }))
    .await;
    let (code, reason) = b.closed().await;
    assert_eq!(code, 1013);
    assert!(reason.contains("room full"), "{reason}");
}

/// A member A and a joiner B bound to it; returns B's signaling id too.
async fn bound_pair(
    settings: sigway::config::Settings,
) -> (sigway::app::BackgroundServer, Peer, Peer, u32) {
    let server = start(settings);
    let mut a = Peer::open(&server, "/k").await;
    assert!(a.connect(1, &[]).await);
    let mut b = Peer::open(&server, "/k").await;
    assert!(!b.connect(2, &[]).await);
    b.content(0, 0, b"hi", false).await;
    let (s, _, _) = a.recv_content().await;
    (server, a, b, s)
}

/// A sends B `chunks` frames of 256 KiB, far more than socket buffers hold.
async fn flood(a: &mut Peer, s: u32, chunks: usize) {
    let chunk = vec![7u8; 256 * 1024];
    let sending = async {
        for _ in 0..chunks {
            a.content(0, s, &chunk, false).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), sending)
        .await
        .expect("the sender is not blocked by a slow recipient");
}

#[tokio::test]
async fn a_client_that_does_not_read_is_cut_off_and_others_continue() {
    let mut settings = test_settings();
    settings.limits.outbound_queue = 4;
    settings.sigver.heartbeat_interval_ms = 1000;
    let (server, mut a, _reader_less, s) = bound_pair(settings).await;
    // B never reads: it must be dropped, not buffered forever.
    flood(&mut a, s, 400).await;
    let stats = reqwest::get(server.http_url("/stats"))
        .await
        .expect("stats")
        .json::<serde_json::Value>()
        .await
        .expect("json");
    assert!(
        stats["slow_consumers"].as_u64().unwrap_or(0) >= 1,
        "{stats}"
    );
    assert_eq!(
        a.recv_content().await,
        (s, 0, vec![]),
        "B's binding ended when it was cut off"
    );
    let mut c = Peer::open(&server, "/k").await;
    join_through(&mut c, &mut a, 3, &[1]).await;
}

#[tokio::test]
async fn a_client_that_does_not_read_is_cut_off_by_the_bytes_it_lets_pile_up() {
    let mut settings = test_settings();
    // The bound in frames is out of reach and a stalled write is given up
    // only after a minute: what cuts B off is the bound in bytes.
    settings.limits.outbound_queue = 100_000;
    settings.limits.outbound_queue_bytes = 1024 * 1024;
    settings.sigver.heartbeat_interval_ms = 60_000;
    let (server, mut a, _reader_less, s) = bound_pair(settings).await;
    // 50 MiB: far more than the socket buffers and the 1 MiB bound.
    flood(&mut a, s, 200).await;
    assert_eq!(
        a.recv_content().await,
        (s, 0, vec![]),
        "B's binding ended when it was cut off"
    );
    let stats = reqwest::get(server.http_url("/stats"))
        .await
        .expect("stats")
        .json::<serde_json::Value>()
        .await
        .expect("json");
    assert!(
        stats["slow_consumers"].as_u64().unwrap_or(0) >= 1,
        "{stats}"
    );
}

#[tokio::test]
async fn shutdown_closes_peers_with_1001() {
    let server = start(test_settings());
    let mut a = Peer::open(&server, "/k").await;
    assert!(a.connect(1, &[]).await);
    let stopper = std::thread::spawn(move || server.stop());
    let (code, _) = a.closed().await;
    assert_eq!(code, 1001);
    stopper.join().expect("server stops");
}

#[tokio::test]
async fn groups_are_disposed_when_their_last_peer_leaves() {
    let server = start(test_settings());
    for round in 0..3 {
        let mut a = Peer::open(&server, "/k").await;
        assert!(a.connect(round, &[]).await, "first again in round {round}");
        drop(a);
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let stats: serde_json::Value = reqwest::get(server.http_url("/stats"))
                .await
                .expect("stats")
                .json()
                .await
                .expect("json");
            if stats["rooms"]["sigver"] == 0 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "room not disposed: {stats}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test]
async fn a_client_flooding_requests_is_slowed_down_not_cut_off() {
    let mut settings = test_settings();
    settings.limits.outbound_queue = 16;
    let server = start(settings);
    let mut a = Peer::open(&server, "/k").await;
    assert!(a.connect(1, &[]).await);
    let mut b = Peer::open(&server, "/k").await;
    join_through(&mut b, &mut a, 2, &[1]).await;
    let mut flood = Peer::open(&server, "/k").await;
    let sender = async {
        for _ in 0..5000 {
            flood
                .send(Type::Connect(sigway::proto::sigver::GroupData {
                    id: 3,
                    members: vec![],
                }))
                .await;
        }
        flood
    };
    // Its answers (5000 times the 16-frame queue) must all arrive: the server
    // stops reading the socket instead of queueing without bound.
    let mut flood = tokio::time::timeout(Duration::from_secs(60), sender)
        .await
        .expect("sent in time");
    for i in 0..5000 {
        assert_eq!(flood.recv().await, Type::Connected(false), "answer {i}");
    }
}

#[tokio::test]
async fn a_client_whose_queue_overflowed_is_closed_with_4745_once_it_reads() {
    let mut settings = test_settings();
    settings.limits.outbound_queue = 4;
    // A write may stall for one heartbeat period before the socket is
    // given up for dead; keep that longer than this test's pause.
    settings.sigver.heartbeat_interval_ms = 30_000;
    let (_server, mut a, mut b, s) = bound_pair(settings).await;
    // B does not read while A floods it.
    flood(&mut a, s, 200).await;
    // When B reads again it finds what was queued, then the close.
    let mut close = None;
    for _ in 0..1000 {
        match tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut b.ws)).await {
            Ok(Some(Ok(Ws::Binary(_)))) => {}
            Ok(Some(Ok(Ws::Close(Some(frame))))) => {
                close = Some((u16::from(frame.code), frame.reason.to_string()));
                break;
            }
            other => panic!("expected frames then a 4745 close, got {other:?}"),
        }
    }
    let (code, reason) = close.expect("a close within 1000 frames");
    assert_eq!(code, 4745);
    assert!(reason.contains("does not read"), "{reason}");
    assert_eq!(a.recv_content().await, (s, 0, vec![]), "B's binding ended");
}
