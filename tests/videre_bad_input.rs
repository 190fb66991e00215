//! Bad input and limits: every refused packet gets an error notice (or is
//! dropped), the sender's session keeps working, and so does everyone else.

mod videre_support;

use serde_json::json;
use videre_support::*;

/// Two members of `room` that prove the server still relays between them.
struct Bystanders {
    a: Client,
    b: Client,
    room: String,
}

impl Bystanders {
    async fn new(server: &sigway::app::BackgroundServer, room: &str) -> Self {
        let mut a = Client::open(server, Transport::RawWebsocket).await;
        let mut b = Client::open(server, Transport::XhrPolling).await;
        connect(&mut a, "a", room).await;
        expect_packet(&mut a, "connect", "a", room).await;
        connect(&mut b, "b", room).await;
        expect_packet(&mut a, "connect", "b", room).await;
        expect_packet(&mut b, "connect", "b", room).await;
        Self {
            a,
            b,
            room: room.into(),
        }
    }

    async fn still_relay(&mut self) {
        let text = packet(
            "broadcast",
            "a",
            &self.room,
            json!({"Type": "Ice Candidate"}),
        )
        .to_string();
        self.a.send(&text).await;
        assert_eq!(self.a.recv().await, text);
        assert_eq!(self.b.recv().await, text);
        self.b.expect_quiet().await;
    }
}

/// Sends `text` and expects an error notice with `reason` in its Payload.
async fn expect_error(client: &mut Client, text: &str, user: &str, room: &str, reason: &str) {
    client.send(text).await;
    let notice = expect_packet(client, "error", user, room).await;
    let payload = notice["Payload"].as_str().expect("reason text");
    assert!(
        payload.contains(reason),
        "{text:?}: reason {payload:?} lacks {reason:?}"
    );
}

#[tokio::test]
async fn malformed_packets_get_error_notices_and_harm_no_one() {
    let server = start(settings());
    let mut others = Bystanders::new(&server, "calm").await;
    for transport in ALL {
        let mut bad = Client::open(&server, transport).await;
        expect_error(&mut bad, "{not json", "", "", "invalid JSON").await;
        expect_error(&mut bad, "", "", "", "invalid JSON").await;
        expect_error(&mut bad, "[1,2]", "", "", "JSON object").await;
        expect_error(&mut bad, r#"{"Payload":"{}"}"#, "", "", "Header").await;
        expect_error(&mut bad, r#"{"Header":null}"#, "", "", "Header").await;
        let unknown = packet("hello", "u", "calm", json!("{}")).to_string();
        expect_error(&mut bad, &unknown, "u", "calm", "Event").await;
        let not_string = r#"{"Header":{"Event":42,"UserId":"u","RoomId":"calm"}}"#;
        expect_error(&mut bad, not_string, "u", "calm", "Event").await;
        let numeric_user = r#"{"Header":{"Event":"connect","UserId":1,"RoomId":"calm"}}"#;
        expect_error(&mut bad, numeric_user, "", "calm", "UserId").await;
        let no_room = r#"{"Header":{"Event":"connect","UserId":"u"}}"#;
        expect_error(&mut bad, no_room, "u", "", "RoomId").await;

        // The same session still works.
        connect(&mut bad, "u", "own").await;
        expect_packet(&mut bad, "connect", "u", "own").await;
        others.still_relay().await;
        bad.close().await;
    }
    others.a.expect_quiet().await;
}

#[tokio::test]
async fn a_batch_with_bad_messages_costs_only_the_bad_ones() {
    let server = start(settings());
    let mut client = Client::open(&server, Transport::XhrPolling).await;
    let good = packet("connect", "u", "r", json!("{}")).to_string();
    // One xhr_send carrying three messages, the first one bad.
    client.send_batch(&["nope", &good, "{}"]).await;
    expect_packet(&mut client, "error", "", "").await;
    expect_packet(&mut client, "connect", "u", "r").await;
    expect_packet(&mut client, "error", "", "").await;
}

#[tokio::test]
async fn packets_for_rooms_not_joined_are_refused_in_strict_mode() {
    let server = start(settings());
    let mut others = Bystanders::new(&server, "private").await;
    let mut intruder = Client::open(&server, Transport::FramedWebsocket).await;

    let into_private =
        packet("broadcast", "a", "private", json!({"Type": "Ice Offer"})).to_string();
    expect_error(
        &mut intruder,
        &into_private,
        "a",
        "private",
        "not connected",
    )
    .await;
    let ping = packet("ping", "x", "private", json!("{}")).to_string();
    expect_error(&mut intruder, &ping, "x", "private", "not connected").await;
    let leave = packet("disconnect", "a", "private", json!("")).to_string();
    expect_error(&mut intruder, &leave, "a", "private", "not connected").await;

    // Joined elsewhere, under another UserId: still refused.
    connect(&mut intruder, "i", "mine").await;
    expect_packet(&mut intruder, "connect", "i", "mine").await;
    expect_error(
        &mut intruder,
        &into_private,
        "a",
        "private",
        "not connected",
    )
    .await;
    let spoofed = packet("broadcast", "someone-else", "mine", json!({})).to_string();
    expect_error(&mut intruder, &spoofed, "someone-else", "mine", "UserId").await;

    others.a.expect_quiet().await;
    others.b.expect_quiet().await;
    others.still_relay().await;
}

#[tokio::test]
async fn a_packet_over_the_size_limit_is_refused_and_others_keep_working() {
    let server = start(settings());
    let mut others = Bystanders::new(&server, "steady").await;
    let mut big = Client::open(&server, Transport::RawWebsocket).await;
    let huge = packet(
        "broadcast",
        "a",
        "steady",
        json!({"blob": "x".repeat(2 << 20)}),
    )
    .to_string();
    assert!(huge.len() > 2 << 20);
    // The transport refuses the frame with 1009 (the connection may be cut
    // while the client is still writing it, which it sees as 1006).
    let written = big.send_may_fail(&huge).await;
    match big.next().await {
        Incoming::Closed(code, reason) => assert!(
            code == 1009 || (code == 1006 && !written),
            "closed with {code} {reason}"
        ),
        other => panic!("expected the oversized frame to close the session, got {other:?}"),
    }
    others.a.expect_quiet().await;
    others.still_relay().await;

    // Over xhr_send, too big a body is an HTTP error, not a relay.
    let mut polling = Client::open(&server, Transport::XhrPolling).await;
    let status = polling.send_raw_body(huge).await;
    assert!(
        status.is_client_error() || status.is_server_error(),
        "{status}"
    );
    others.still_relay().await;
}

#[tokio::test]
async fn ten_thousand_rooms_created_and_left_by_one_client_all_disappear() {
    let server = start(settings());
    let mut others = Bystanders::new(&server, "anchor").await;
    let mut churn = Client::open(&server, Transport::RawWebsocket).await;
    const ROOMS: usize = 10_000;
    const WINDOW: usize = 200;
    // Pipelined in windows: each connect leaves the previous room.
    for start in (0..ROOMS).step_by(WINDOW) {
        for i in start..start + WINDOW {
            connect(&mut churn, "c", &format!("churn-{i}")).await;
        }
        for i in start..start + WINDOW {
            let answer = expect_packet(&mut churn, "connect", "c", &format!("churn-{i}")).await;
            assert_eq!(answer["Payload"], "true");
        }
    }
    churn
        .send_json(&packet(
            "disconnect",
            "c",
            &format!("churn-{}", ROOMS - 1),
            json!(""),
        ))
        .await;
    wait_for_rooms(&server, 1).await;
    others.still_relay().await;
}

#[tokio::test]
async fn limits_on_members_and_rooms_answer_with_error_notices() {
    let mut s = settings();
    s.limits.max_members_per_room = 2;
    s.limits.max_rooms = 2;
    let server = start(s);
    let mut others = Bystanders::new(&server, "full").await;
    let mut third = Client::open(&server, Transport::RawWebsocket).await;
    let join_full = packet("connect", "c", "full", json!("{}")).to_string();
    expect_error(&mut third, &join_full, "c", "full", "room full").await;
    others.a.expect_quiet().await;
    // Refused, so not a member: strict mode refuses its broadcasts.
    let sneak = packet("broadcast", "c", "full", json!({})).to_string();
    expect_error(&mut third, &sneak, "c", "full", "not connected").await;

    connect(&mut third, "c", "second").await;
    expect_packet(&mut third, "connect", "c", "second").await;
    let mut fourth = Client::open(&server, Transport::RawWebsocket).await;
    let join_third_room = packet("connect", "d", "third", json!("{}")).to_string();
    expect_error(
        &mut fourth,
        &join_third_room,
        "d",
        "third",
        "too many rooms",
    )
    .await;
    others.still_relay().await;
}

#[tokio::test]
async fn sessions_over_the_per_address_limit_are_closed() {
    let mut s = settings();
    s.limits.max_connections_per_ip = 2;
    let server = start(s);
    let mut first = Client::open(&server, Transport::RawWebsocket).await;
    let mut second = Client::open(&server, Transport::FramedWebsocket).await;
    // Let both places be granted before the third asks.
    connect(&mut first, "1", "r").await;
    expect_packet(&mut first, "connect", "1", "r").await;
    connect(&mut second, "2", "r").await;
    expect_packet(&mut second, "connect", "2", "r").await;
    expect_packet(&mut first, "connect", "2", "r").await;

    let mut third = Client::open(&server, Transport::FramedWebsocket).await;
    match third.next().await {
        Incoming::Closed(code, reason) => {
            assert_eq!(code, 1008, "{reason}");
            assert!(reason.contains("too many connections"), "{reason}");
        }
        other => panic!("expected a close, got {other:?}"),
    }
    first.expect_quiet().await;
}

#[tokio::test]
async fn ids_over_the_length_limit_are_refused_and_at_the_limit_accepted() {
    let server = start(settings());
    let mut client = Client::open(&server, Transport::RawWebsocket).await;
    let long = "u".repeat(513);
    let too_long_user = packet("connect", &long, "room", json!("{}")).to_string();
    expect_error(
        &mut client,
        &too_long_user,
        "",
        "",
        "UserId exceeds the limit of 512 bytes",
    )
    .await;
    let too_long_room = packet("connect", "u", &long, json!("{}")).to_string();
    expect_error(
        &mut client,
        &too_long_room,
        "",
        "",
        "RoomId exceeds the limit of 512 bytes",
    )
    .await;
    let at_limit = "r".repeat(512);
    connect(&mut client, "u", &at_limit).await;
    expect_packet(&mut client, "connect", "u", &at_limit).await;
}
