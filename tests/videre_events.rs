//! Every videre event over every SockJS transport a browser may pick, and the
//! room details real clients see (rejoin order, shared UserIds, room `""`,
//! empty rooms disappearing).

mod videre_support;

use serde_json::json;
use videre_support::*;

/// connect, broadcast, ping and disconnect between two clients of `transport`.
async fn exercise(server: &sigway::app::BackgroundServer, transport: Transport) {
    let room = format!("events-{transport:?}");
    let mut a = Client::open(server, transport).await;
    let mut b = Client::open(server, transport).await;

    connect(&mut a, "u1", &room).await;
    let answer = expect_packet(&mut a, "connect", "u1", &room).await;
    assert_eq!(
        answer["Payload"], "true",
        "{transport:?}: first user initiates"
    );

    connect(&mut b, "u2", &room).await;
    for client in [&mut a, &mut b] {
        let answer = expect_packet(client, "connect", "u2", &room).await;
        assert_eq!(
            answer["Payload"], "false",
            "{transport:?}: second user does not"
        );
    }

    let offer = format!(
        r#"{{"Header":{{"Event":"broadcast","UserId":"u1","RoomId":"{room}","Extra":[1]}},"Payload":{{"Type":"Ice Offer","IcePacket":{{"sdp":"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n","type":"offer"}}}}}}"#
    );
    a.send(&offer).await;
    assert_eq!(
        a.recv().await,
        offer,
        "{transport:?}: sender gets its broadcast"
    );
    assert_eq!(
        b.recv().await,
        offer,
        "{transport:?}: broadcast arrives unchanged"
    );

    a.send_json(&packet("ping", "u1", &room, json!("{}"))).await;
    let pong = expect_packet(&mut a, "ping", "u1", &room).await;
    assert_eq!(pong["Payload"], r#"["u1","u2"]"#);
    b.expect_quiet().await;

    b.send_json(&packet("disconnect", "u2", &room, json!("")))
        .await;
    assert_eq!(
        a.recv().await,
        format!(
            r#"{{"Header":{{"Event":"disconnect","UserId":"u2","RoomId":"{room}"}},"Payload":""}}"#
        )
    );
    a.send_json(&packet("ping", "u1", &room, json!("{}"))).await;
    let pong = expect_packet(&mut a, "ping", "u1", &room).await;
    assert_eq!(pong["Payload"], r#"["u1"]"#, "{transport:?}: u2 left");

    // The session stays open after a disconnect and may connect again.
    connect(&mut b, "u2", &room).await;
    expect_packet(&mut a, "connect", "u2", &room).await;
    expect_packet(&mut b, "connect", "u2", &room).await;

    a.send_json(&packet("disconnect", "u1", &room, json!("")))
        .await;
    expect_packet(&mut b, "disconnect", "u1", &room).await;
    b.send_json(&packet("disconnect", "u2", &room, json!("")))
        .await;
    a.expect_quiet().await;
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn every_event_works_over_raw_websocket() {
    let server = start(settings());
    exercise(&server, Transport::RawWebsocket).await;
    wait_for_rooms(&server, 0).await;
}

#[tokio::test]
async fn every_event_works_over_framed_websocket() {
    let server = start(settings());
    exercise(&server, Transport::FramedWebsocket).await;
    wait_for_rooms(&server, 0).await;
}

#[tokio::test]
async fn every_event_works_over_xhr_streaming() {
    let server = start(settings());
    exercise(&server, Transport::XhrStreaming).await;
    wait_for_rooms(&server, 0).await;
}

#[tokio::test]
async fn every_event_works_over_xhr_polling() {
    let server = start(settings());
    exercise(&server, Transport::XhrPolling).await;
    wait_for_rooms(&server, 0).await;
}

#[tokio::test]
async fn every_event_works_over_eventsource() {
    let server = start(settings());
    exercise(&server, Transport::EventSource).await;
    wait_for_rooms(&server, 0).await;
}

#[tokio::test]
async fn every_event_works_over_jsonp_polling() {
    let server = start(settings());
    exercise(&server, Transport::JsonpPolling).await;
    wait_for_rooms(&server, 0).await;
}

#[tokio::test]
async fn connecting_again_to_the_same_room_leaves_first_and_moves_to_the_end() {
    let server = start(settings());
    let mut a = Client::open(&server, Transport::RawWebsocket).await;
    let mut b = Client::open(&server, Transport::FramedWebsocket).await;
    connect(&mut a, "a", "r").await;
    expect_packet(&mut a, "connect", "a", "r").await;
    connect(&mut b, "b", "r").await;
    expect_packet(&mut a, "connect", "b", "r").await;
    expect_packet(&mut b, "connect", "b", "r").await;

    connect(&mut a, "a", "r").await;
    expect_packet(&mut b, "disconnect", "a", "r").await;
    let again = expect_packet(&mut b, "connect", "a", "r").await;
    assert_eq!(again["Payload"], "false", "b is the first user now");
    let own = expect_packet(&mut a, "connect", "a", "r").await;
    assert_eq!(own["Payload"], "false");

    b.send_json(&packet("ping", "b", "r", json!("{}"))).await;
    let pong = expect_packet(&mut b, "ping", "b", "r").await;
    assert_eq!(pong["Payload"], r#"["b","a"]"#, "a moved to the end");
}

#[tokio::test]
async fn connect_to_another_room_leaves_the_first() {
    let server = start(settings());
    let mut a = Client::open(&server, Transport::RawWebsocket).await;
    let mut b = Client::open(&server, Transport::RawWebsocket).await;
    connect(&mut b, "b", "one").await;
    expect_packet(&mut b, "connect", "b", "one").await;
    connect(&mut a, "a", "one").await;
    expect_packet(&mut a, "connect", "a", "one").await;
    expect_packet(&mut b, "connect", "a", "one").await;

    connect(&mut a, "a", "two").await;
    expect_packet(&mut b, "disconnect", "a", "one").await;
    let answer = expect_packet(&mut a, "connect", "a", "two").await;
    assert_eq!(answer["Payload"], "true");
    b.expect_quiet().await;
    wait_for_rooms(&server, 2).await;
}

#[tokio::test]
async fn two_sessions_may_share_a_user_id_and_room_ids_are_exact_strings() {
    let server = start(settings());
    let mut a = Client::open(&server, Transport::RawWebsocket).await;
    let mut b = Client::open(&server, Transport::XhrStreaming).await;
    let mut previous: Option<&str> = None;
    for room in ["", " ", "Room"] {
        connect(&mut a, "same", room).await;
        if let Some(previous) = previous {
            expect_packet(&mut b, "disconnect", "same", previous).await;
        }
        previous = Some(room);
        assert_eq!(
            expect_packet(&mut a, "connect", "same", room).await["Payload"],
            "true"
        );
        connect(&mut b, "same", room).await;
        expect_packet(&mut a, "connect", "same", room).await;
        assert_eq!(
            expect_packet(&mut b, "connect", "same", room).await["Payload"],
            "false"
        );

        b.send_json(&packet("ping", "same", room, json!("{}")))
            .await;
        assert_eq!(
            expect_packet(&mut b, "ping", "same", room).await["Payload"],
            r#"["same","same"]"#
        );
        let text = packet("broadcast", "same", room, json!({"Type": "Ice Candidate"})).to_string();
        b.send(&text).await;
        assert_eq!(a.recv().await, text);
        assert_eq!(b.recv().await, text);
    }
    // "", " " and "Room" are three rooms; the last connects left the others.
    wait_for_rooms(&server, 1).await;
    a.close().await;
    expect_packet(&mut b, "disconnect", "same", "Room").await;
    b.close().await;
    wait_for_rooms(&server, 0).await;
}

#[tokio::test]
async fn a_closed_transport_leaves_every_room_and_empty_rooms_disappear() {
    let server = start(settings());
    let mut clients = Vec::new();
    for (i, transport) in ALL.into_iter().enumerate() {
        let mut client = Client::open(&server, transport).await;
        connect(&mut client, &format!("u{i}"), &format!("room-{i}")).await;
        expect_packet(
            &mut client,
            "connect",
            &format!("u{i}"),
            &format!("room-{i}"),
        )
        .await;
        clients.push(client);
    }
    wait_for_rooms(&server, ALL.len() as i64).await;
    wait_for_connections(&server, ALL.len() as i64).await;
    for client in clients {
        client.close().await;
    }
    wait_for_rooms(&server, 0).await;
    // Every session gave its place under the connection limits back.
    wait_for_connections(&server, 0).await;
}

#[tokio::test]
async fn lenient_mode_lets_any_session_broadcast_into_any_room() {
    let mut s = settings();
    s.videre.strict = false;
    let server = start(s);
    let mut member = Client::open(&server, Transport::RawWebsocket).await;
    let mut outsider = Client::open(&server, Transport::RawWebsocket).await;
    connect(&mut member, "m", "r").await;
    expect_packet(&mut member, "connect", "m", "r").await;

    let text = packet(
        "broadcast",
        "someone",
        "r",
        json!({"Type": "Ice Candidate"}),
    )
    .to_string();
    outsider.send(&text).await;
    assert_eq!(member.recv().await, text);
    outsider
        .send_json(&packet("ping", "x", "r", json!("{}")))
        .await;
    assert_eq!(
        expect_packet(&mut outsider, "ping", "x", "r").await["Payload"],
        r#"["m"]"#
    );
    outsider
        .send_json(&packet("broadcast", "x", "nowhere", json!({})))
        .await;
    let error = expect_packet(&mut outsider, "error", "x", "nowhere").await;
    assert_eq!(error["Payload"], "no such room");
}

#[tokio::test]
async fn shutdown_closes_videre_sessions_with_1001() {
    let server = start(settings());
    let mut ws = Client::open(&server, Transport::RawWebsocket).await;
    let mut framed = Client::open(&server, Transport::FramedWebsocket).await;
    connect(&mut ws, "u1", "r").await;
    connect(&mut framed, "u2", "r").await;
    let stopper = std::thread::spawn(move || server.stop());
    for client in [&mut ws, &mut framed] {
        loop {
            match client.next().await {
                Incoming::Closed(code, _) => {
                    assert_eq!(code, 1001, "{:?}", client.transport);
                    break;
                }
                Incoming::Message(_) => {}
            }
        }
    }
    stopper.join().expect("server stops");
}
