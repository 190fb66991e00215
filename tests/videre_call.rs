//! The issue's headline scenario: a two-party call set up by two clients on
//! different SockJS transports (xhr polling and WebSocket), exactly as
//! videre-client drives it.

mod videre_support;

use serde_json::{Value, json};
use videre_support::*;

/// A several-KB SDP blob, as real offers are.
fn sdp(kind: &str) -> String {
    let mut sdp = format!(
        "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=type:{kind}\r\n"
    );
    let mut line = 0;
    while sdp.len() < 5 * 1024 {
        sdp.push_str(&format!(
            "a=candidate:{line} 1 udp 2122260223 192.168.1.{} 5{line:04} typ host generation 0 \"quoted\" \\ \u{e9}\r\n",
            line % 250
        ));
        line += 1;
    }
    sdp
}

fn ice(user: &str, room: &str, kind: &str, ice_packet: Value) -> String {
    packet(
        "broadcast",
        user,
        room,
        json!({"Type": kind, "IcePacket": ice_packet}),
    )
    .to_string()
}

/// Both ends of the call see `text` exactly as sent.
async fn both_receive(a: &mut Client, b: &mut Client, text: &str) {
    assert_eq!(a.recv().await, text, "{:?}", a.transport);
    assert_eq!(b.recv().await, text, "{:?}", b.transport);
}

async fn set_up_call(caller: &mut Client, callee: &mut Client, room: &str) {
    connect(caller, "alice", room).await;
    let answer = expect_packet(caller, "connect", "alice", room).await;
    assert_eq!(answer["Payload"], "true", "alice is the initiator");

    connect(callee, "bob", room).await;
    for client in [&mut *caller, &mut *callee] {
        let answer = expect_packet(client, "connect", "bob", room).await;
        assert_eq!(answer["Payload"], "false");
    }

    for (client, user) in [(&mut *caller, "alice"), (&mut *callee, "bob")] {
        client
            .send_json(&packet("ping", user, room, json!("{}")))
            .await;
        let pong = expect_packet(client, "ping", user, room).await;
        assert_eq!(pong["Payload"], r#"["alice","bob"]"#);
    }

    let offer = ice(
        "alice",
        room,
        "Ice Offer",
        json!({"type": "offer", "sdp": sdp("offer")}),
    );
    assert!(offer.len() > 5 * 1024);
    caller.send(&offer).await;
    both_receive(caller, callee, &offer).await;

    let answer = ice(
        "bob",
        room,
        "Ice Answer",
        json!({"type": "answer", "sdp": sdp("answer")}),
    );
    callee.send(&answer).await;
    both_receive(caller, callee, &answer).await;

    for i in 0..5 {
        let candidate = json!({
            "candidate": format!("candidate:{i} 1 udp 2122260223 10.0.0.{i} 5000{i} typ host"),
            "sdpMid": "0",
            "sdpMLineIndex": 0,
        });
        let from_alice = ice("alice", room, "Ice Candidate", candidate.clone());
        caller.send(&from_alice).await;
        both_receive(caller, callee, &from_alice).await;
        let from_bob = ice("bob", room, "Ice Candidate", candidate);
        callee.send(&from_bob).await;
        both_receive(caller, callee, &from_bob).await;
    }
}

#[tokio::test]
async fn a_call_between_xhr_polling_and_websocket_ends_with_a_disconnect_notice() {
    let server = start(settings());
    let mut caller = Client::open(&server, Transport::XhrPolling).await;
    let mut callee = Client::open(&server, Transport::FramedWebsocket).await;
    set_up_call(&mut caller, &mut callee, "call-1").await;

    // bob hangs up by closing his transport.
    callee.close().await;
    assert_eq!(
        caller.recv().await,
        r#"{"Header":{"Event":"disconnect","UserId":"bob","RoomId":"call-1"},"Payload":""}"#
    );
    caller
        .send_json(&packet("ping", "alice", "call-1", json!("{}")))
        .await;
    let pong = expect_packet(&mut caller, "ping", "alice", "call-1").await;
    assert_eq!(pong["Payload"], r#"["alice"]"#);
    wait_for_rooms(&server, 1).await;
    caller.close().await;
    wait_for_rooms(&server, 0).await;
}

#[tokio::test]
async fn a_polling_client_whose_request_is_cut_is_announced_as_gone() {
    let server = start(settings());
    let mut caller = Client::open(&server, Transport::XhrPolling).await;
    let mut callee = Client::open(&server, Transport::RawWebsocket).await;
    set_up_call(&mut caller, &mut callee, "call-2").await;

    // alice's tab closes while a poll is pending.
    caller.close().await;
    assert_eq!(
        callee.recv().await,
        r#"{"Header":{"Event":"disconnect","UserId":"alice","RoomId":"call-2"},"Payload":""}"#
    );
    callee.close().await;
    wait_for_rooms(&server, 0).await;
}

#[tokio::test]
async fn a_polling_client_that_stops_polling_is_announced_after_the_disconnect_delay() {
    let server = start(settings());
    let mut caller = Client::open(&server, Transport::XhrPolling).await;
    let mut callee = Client::open(&server, Transport::FramedWebsocket).await;
    set_up_call(&mut caller, &mut callee, "call-3").await;

    let stopped = std::time::Instant::now();
    caller.stop_polling();
    assert_eq!(
        callee.recv().await,
        r#"{"Header":{"Event":"disconnect","UserId":"alice","RoomId":"call-3"},"Payload":""}"#
    );
    let delay = std::time::Duration::from_millis(settings().sockjs.disconnect_delay_ms);
    assert!(
        stopped.elapsed() >= delay,
        "announced after {:?}, before the {delay:?} disconnect delay",
        stopped.elapsed()
    );
    wait_for_rooms(&server, 1).await;
    callee.close().await;
    wait_for_rooms(&server, 0).await;
}
