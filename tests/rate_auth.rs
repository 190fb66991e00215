//! Rate limits, signed room keys and hidden keys, through real sockets:
//! sigver in both dialects, videre over the SockJS WebSocket and xhr
//! transports, `/stats` and `/metrics`, the log of a `sigway` child
//! process, and the README's Node and Python key minting snippets
//! (`tools/signed_key.{js,py}`).

mod videre_support;

use std::io::Read as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::SinkExt as _;
use prost::Message as _;
use serde_json::{Value, json};
use sigway::app::BackgroundServer;
use sigway::config::Settings;
use sigway::proto::sigver::message::Type;
use tokio_tungstenite::tungstenite::Message as Ws;
use videre_support::common::{Peer, WAIT, start};
use videre_support::{Client, Incoming, Transport, connect, packet, stats};

const SECRET: &str = "correct horse battery staple";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// `<room>.<expiry>.<signature>` signed with `secret` (what an application
/// backend does; the README's snippets do the same in Node and Python).
fn signed(secret: &str, room: &str, expiry: u64) -> String {
    let text = format!("{room}.{expiry}");
    format!(
        "{text}.{}",
        sigway_core::auth::sign(secret.as_bytes(), &text)
    )
}

fn with_secret() -> Settings {
    let mut s = videre_support::settings();
    s.auth.key_secret = SECRET.into();
    s
}

/// A legacy-dialect peer: `/<key>?protocol=legacy`.
async fn legacy(server: &BackgroundServer, key: &str) -> Peer {
    Peer::open(server, &format!("/{key}?protocol=legacy")).await
}

/// The first frame a legacy peer gets: `isFirst`.
async fn is_first(peer: &mut Peer) -> bool {
    use sigway::proto::legacy::{Message, message::Type as Legacy};
    loop {
        let frame = tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut peer.ws))
            .await
            .expect("a frame in time")
            .expect("open")
            .expect("frame");
        if let Ws::Binary(bytes) = frame {
            match Message::decode(bytes).expect("legacy message").r#type {
                Some(Legacy::IsFirst(first)) => return first,
                Some(Legacy::Heartbeat(_)) => {}
                other => panic!("expected isFirst, got {other:?}"),
            }
        } else {
            panic!("expected isFirst, got {frame:?}");
        }
    }
}

async fn legacy_heartbeat(peer: &mut Peer) {
    use sigway::proto::legacy::{Message, message::Type as Legacy};
    let bytes = Message {
        r#type: Some(Legacy::Heartbeat(true)),
    }
    .encode_to_vec();
    peer.ws.send(Ws::Binary(bytes.into())).await.expect("send");
}

async fn metrics(server: &BackgroundServer) -> String {
    tokio::time::timeout(WAIT, async {
        reqwest::get(server.http_url("/metrics"))
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics body")
    })
    .await
    .expect("/metrics in time")
}

/// The first close a SockJS client sees, skipping messages.
async fn sockjs_closed(client: &mut Client) -> (u16, String) {
    for _ in 0..1000 {
        if let Incoming::Closed(code, reason) = client.next().await {
            return (code, reason);
        }
    }
    panic!("{:?}: no close", client.transport)
}

// ---- message rate ----

fn flood_limited(dry_run: bool) -> Settings {
    let mut s = videre_support::settings();
    s.limits.messages_per_sec = 1.0;
    s.limits.message_burst = 5;
    s.limits.dry_run = dry_run;
    s
}

#[tokio::test]
async fn a_sigver_flood_is_closed_with_1008_in_both_dialects() {
    let server = start(flood_limited(false));
    let mut current = Peer::open(&server, "/flood").await;
    assert!(current.connect(1, &[]).await, "within the burst");
    for _ in 0..10 {
        current.send(Type::Heartbeat(true)).await;
    }
    let (code, reason) = current.closed().await;
    assert_eq!(
        (code, reason.as_str()),
        (1008, "rate limit: too many messages")
    );

    let mut old = legacy(&server, "flood-legacy").await;
    assert!(is_first(&mut old).await);
    for _ in 0..10 {
        legacy_heartbeat(&mut old).await;
    }
    assert_eq!(old.closed().await.0, 1008);

    let text = metrics(&server).await;
    assert!(
        text.contains("sigway_refusals_total{reason=\"rate_messages\"} 2\n"),
        "{text}"
    );
    assert!(text.contains("sigway_refusals_total 2\n"), "{text}");
}

#[tokio::test]
async fn a_videre_flood_is_closed_with_1008_on_websocket_and_xhr() {
    let server = start(flood_limited(false));
    for transport in [
        Transport::FramedWebsocket,
        Transport::RawWebsocket,
        Transport::XhrPolling,
        Transport::XhrStreaming,
    ] {
        let mut client = Client::open(&server, transport).await;
        let ping = packet("ping", "u", "r", json!("")).to_string();
        let pings: Vec<&str> = (0..20).map(|_| ping.as_str()).collect();
        if transport == Transport::RawWebsocket {
            // No batches on the raw WebSocket: one frame per packet.
            for text in &pings {
                if !client.send_may_fail(text).await {
                    break;
                }
            }
        } else {
            client.send_batch(&pings).await;
        }
        let (code, reason) = sockjs_closed(&mut client).await;
        assert_eq!(
            (code, reason.as_str()),
            (1008, "rate limit: too many messages"),
            "{transport:?}"
        );
    }
    assert_eq!(
        stats(&server).await["refusals_by_reason"]["rate_messages"],
        4
    );
}

#[tokio::test]
async fn a_dry_run_counts_the_flood_and_closes_nothing() {
    let server = start(flood_limited(true));
    let mut a = Peer::open(&server, "/dry").await;
    assert!(a.connect(1, &[]).await);
    for _ in 0..20 {
        a.send(Type::Heartbeat(true)).await;
    }
    // Still served: a second peer joins through it.
    let mut b = Peer::open(&server, "/dry").await;
    assert!(!b.connect(2, &[]).await);
    b.content(0, 0, b"offer", false).await;
    assert_eq!(a.recv_content().await.2, b"offer");

    let mut client = Client::open(&server, Transport::XhrPolling).await;
    connect(&mut client, "u", "room").await;
    assert_eq!(client.recv_json().await["Payload"], "true");
    let ping = packet("ping", "u", "room", json!("")).to_string();
    client.send_batch(&vec![ping.as_str(); 20]).await;
    for _ in 0..20 {
        assert_eq!(client.recv_json().await["Payload"], r#"["u"]"#);
    }
    let snapshot = stats(&server).await;
    let counted = snapshot["rate_limit_dry_run"]["rate_messages"]
        .as_u64()
        .expect("counted");
    // 21 + 20 frames on the first peer and the session, burst 5 each: at
    // least 15 + 15 over the limit (a token refills each second).
    assert!(counted >= 20, "{snapshot}");
    assert_eq!(snapshot["refusals"], 0, "{snapshot}");
    assert!(
        metrics(&server)
            .await
            .contains("sigway_rate_limit_dry_run_total{reason=\"rate_messages\"}")
    );
}

// ---- connection and join rates ----

#[tokio::test]
async fn connections_from_one_address_are_limited_per_second() {
    let mut settings = videre_support::settings();
    settings.limits.connections_per_ip_per_sec = 0.2;
    settings.limits.connection_burst = 2;
    let server = start(settings);
    let mut a = Peer::open(&server, "/a").await;
    assert!(a.connect(1, &[]).await);
    let mut b = Peer::open(&server, "/b").await;
    assert!(b.connect(1, &[]).await);
    let mut c = Peer::open(&server, "/c").await;
    let (code, reason) = c.closed().await;
    assert_eq!(code, 1008, "{reason}");
    assert!(reason.contains("connections from this address"), "{reason}");
    // A SockJS session from the same address is refused alike.
    let mut client = Client::open(&server, Transport::FramedWebsocket).await;
    assert_eq!(sockjs_closed(&mut client).await.0, 1008);
    assert_eq!(
        stats(&server).await["refusals_by_reason"]["rate_connections"],
        2
    );
}

#[tokio::test]
async fn joins_of_one_key_are_limited_per_second_and_other_keys_are_not() {
    let mut settings = videre_support::settings();
    settings.limits.joins_per_key_per_sec = 0.2;
    settings.limits.join_burst = 2;
    let server = start(settings);
    let mut a = Peer::open(&server, "/hot").await;
    assert!(a.connect(1, &[]).await);
    let mut b = Peer::open(&server, "/hot").await;
    assert!(!b.connect(2, &[]).await);
    let mut c = Peer::open(&server, "/hot").await;
    let (code, reason) = c.closed().await;
    assert_eq!(
        (code, reason.as_str()),
        (1008, "rate limit: too many joins of this room")
    );
    let mut other = Peer::open(&server, "/cold").await;
    assert!(other.connect(1, &[]).await);

    let mut clients = Vec::new();
    for user in ["x", "y"] {
        let mut client = Client::open(&server, Transport::FramedWebsocket).await;
        connect(&mut client, user, "hot-room").await;
        assert_eq!(client.recv_json().await["Header"]["Event"], "connect");
        clients.push(client);
    }
    let mut third = Client::open(&server, Transport::XhrPolling).await;
    connect(&mut third, "z", "hot-room").await;
    assert_eq!(sockjs_closed(&mut third).await.0, 1008);

    let snapshot = stats(&server).await;
    assert_eq!(
        snapshot["refusals_by_reason"]["rate_joins"], 2,
        "{snapshot}"
    );
    let listed = snapshot["recent_refusals"].to_string();
    assert!(!listed.contains("hot"), "keys are hashed: {listed}");
    assert!(
        listed.contains(&sigway_core::redact::key_hash("hot")),
        "{listed}"
    );
    assert!(
        listed.contains(&sigway_core::redact::key_hash("hot-room")),
        "{listed}"
    );
}

// ---- signed keys ----

#[tokio::test]
async fn signed_keys_open_groups_and_bad_or_expired_ones_are_refused_in_both_dialects() {
    let server = start(with_secret());
    let good = signed(SECRET, "team.42", now() + 600);
    let mut a = Peer::open(&server, &format!("/{good}")).await;
    assert!(a.connect(1, &[]).await);
    let mut old = legacy(&server, &signed(SECRET, "team.43", now() + 600)).await;
    assert!(is_first(&mut old).await);

    let forged = signed("guess", "team.42", now() + 600);
    let expired = signed(SECRET, "team.42", now() - 1);
    for (key, says, reason) in [
        (forged.as_str(), "signature", "auth_signature"),
        (expired.as_str(), "expired", "auth_expired"),
        ("team.42", "not a signed key", "auth_malformed"),
    ] {
        let mut current = Peer::open(&server, &format!("/{key}")).await;
        let (code, text) = current.closed().await;
        assert_eq!(code, 4741, "{key}: {text}");
        assert!(text.starts_with("4741: ") && text.contains(says), "{text}");
        let mut old = legacy(&server, key).await;
        let (code, text) = old.closed().await;
        assert_eq!(code, 4001, "{key}: {text}");
        assert!(text.contains(says), "{text}");
        assert_eq!(
            stats(&server).await["refusals_by_reason"][reason],
            2,
            "{key}"
        );
    }
    let listed = stats(&server).await["recent_refusals"].to_string();
    assert!(!listed.contains("team.42"), "{listed}");
}

#[tokio::test]
async fn the_previous_secret_is_accepted_only_until_previous_until() {
    for (until, accepted) in [(now() + 3600, true), (now() - 1, false)] {
        let mut settings = with_secret();
        settings.auth.previous_key_secret = "last year's".into();
        settings.auth.previous_until = until;
        let server = start(settings);
        let key = signed("last year's", "room", now() + 600);
        let mut current = Peer::open(&server, &format!("/{key}")).await;
        let mut old = legacy(&server, &format!("{key}x")).await;
        if accepted {
            assert!(current.connect(1, &[]).await);
            // A changed signature is still refused.
            assert_eq!(old.closed().await.0, 4001);
            let mut old = legacy(&server, &key).await;
            assert!(is_first(&mut old).await);
        } else {
            assert_eq!(current.closed().await.0, 4741);
            let mut old = legacy(&server, &key).await;
            assert_eq!(old.closed().await.0, 4001);
        }
        // The current secret works either way.
        let fresh = signed(SECRET, "room", now() + 600);
        let mut peer = Peer::open(&server, &format!("/{fresh}")).await;
        assert!(peer.connect(1, &[]).await);
    }
}

#[tokio::test]
async fn videre_room_ids_must_be_signed_and_a_refusal_is_an_error_notice() {
    let server = start(with_secret());
    let room = signed(SECRET, "call", now() + 600);
    for transport in [Transport::FramedWebsocket, Transport::XhrPolling] {
        let mut client = Client::open(&server, transport).await;
        connect(&mut client, "alice", "call").await;
        let notice = client.recv_json().await;
        assert_eq!(
            notice,
            json!({"Header": {"Event": "error", "UserId": "alice", "RoomId": "call"},
                   "Payload": "RoomId refused: the key is not a signed key"}),
            "{transport:?}"
        );
        connect(&mut client, "alice", &room).await;
        let answer = client.recv_json().await;
        assert_eq!(answer["Header"]["Event"], "connect", "{answer}");
        assert_eq!(answer["Header"]["RoomId"], room.as_str());
        client.close().await;
    }
    assert_eq!(
        stats(&server).await["refusals_by_reason"]["auth_malformed"],
        2
    );
}

#[tokio::test]
async fn a_bound_videre_key_admits_only_its_user() {
    let mut settings = with_secret();
    settings.auth.bind_videre_user = true;
    let server = start(settings);
    let signed_part = format!("call.{}", now() + 600);
    let text = sigway_core::auth::signed_text(&signed_part, Some("alice"));
    let room = format!(
        "{signed_part}.{}",
        sigway_core::auth::sign(SECRET.as_bytes(), &text)
    );
    let mut bob = Client::open(&server, Transport::FramedWebsocket).await;
    connect(&mut bob, "bob", &room).await;
    let notice = bob.recv_json().await;
    assert_eq!(notice["Header"]["Event"], "error", "{notice}");
    let mut alice = Client::open(&server, Transport::FramedWebsocket).await;
    connect(&mut alice, "alice", &room).await;
    assert_eq!(alice.recv_json().await["Payload"], "true");
}

/// Runs `program args` with the secret in its environment; `None` when the
/// program is not installed.
fn mint(program: &str, args: &[&str]) -> Option<String> {
    let output = match Command::new(program)
        .args(args)
        .env("SIGWAY_AUTH__KEY_SECRET", SECRET)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
    {
        Ok(output) => output,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return None,
        Err(error) => panic!("{program}: {error}"),
    };
    assert!(output.status.success(), "{program}: {output:?}");
    Some(
        String::from_utf8(output.stdout)
            .expect("utf-8")
            .trim()
            .to_owned(),
    )
}

#[tokio::test]
async fn keys_minted_by_the_readme_snippets_are_accepted() {
    let server = start(with_secret());
    for (program, script) in [
        ("node", "tools/signed_key.js"),
        ("python3", "tools/signed_key.py"),
    ] {
        let Some(key) = mint(program, &[script, "team.from.snippet", "600"]) else {
            println!("skipped: {program} is not installed");
            continue;
        };
        assert!(key.starts_with("team.from.snippet."), "{key}");
        let mut sigver = Peer::open(&server, &format!("/{key}")).await;
        assert!(sigver.connect(1, &[]).await, "{program}: {key}");
        let mut client = Client::open(&server, Transport::FramedWebsocket).await;
        connect(&mut client, "u", &key).await;
        assert_eq!(client.recv_json().await["Payload"], "true", "{program}");
        // And a key the snippet signed with another secret is not.
        let other = Command::new(program)
            .args([script, "team.from.snippet"])
            .env("SIGWAY_AUTH__KEY_SECRET", "not the secret")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("ran before");
        let other = String::from_utf8(other.stdout).expect("utf-8");
        let mut refused = Peer::open(&server, &format!("/{}", other.trim())).await;
        assert_eq!(refused.closed().await.0, 4741, "{program}");
    }
}

// ---- keys in the log ----

/// A `sigway` process whose console log is captured; killed on drop.
struct Sigway {
    child: Child,
    port: u16,
}

impl Sigway {
    fn start(env: &[(&str, &str)]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_sigway"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .env_remove("RUST_LOG")
            .env("SIGWAY_LOG__FILE", "")
            .env("SIGWAY_LOG__LEVEL", "debug")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sigway starts");
        let sigway = Self { child, port };
        let deadline = std::time::Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "sigway listens");
            std::thread::sleep(Duration::from_millis(20));
        }
        sigway
    }

    /// Stops the process and returns what it logged.
    fn log(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut out = String::new();
        if let Some(mut stdout) = self.child.stdout.take() {
            let _ = stdout.read_to_string(&mut out);
        }
        if let Some(mut stderr) = self.child.stderr.take() {
            let _ = stderr.read_to_string(&mut out);
        }
        out
    }
}

impl Drop for Sigway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn keys_are_hashed_in_the_log_unless_show_keys() {
    let room = "the-secret-room";
    for show in [false, true] {
        let show_keys = show.to_string();
        let sigway = Sigway::start(&[
            ("SIGWAY_AUTH__KEY_SECRET", SECRET),
            ("SIGWAY_LOG__SHOW_KEYS", show_keys.as_str()),
        ]);
        let base = format!("127.0.0.1:{}", sigway.port);
        let good = signed(SECRET, room, now() + 600);
        let mut a = Peer::open_url(&format!("ws://{base}/{good}")).await;
        assert!(a.connect(1, &[]).await);
        let mut b = Peer::open_url(&format!("ws://{base}/{good}")).await;
        assert!(!b.connect(2, &[]).await);
        let mut refused = Peer::open_url(&format!("ws://{base}/{room}")).await;
        assert_eq!(refused.closed().await.0, 4741);
        let mut client = Client::open_at(&format!("http://{base}"), Transport::XhrPolling).await;
        connect(&mut client, "u", &good).await;
        assert_eq!(client.recv_json().await["Payload"], "true");
        connect(&mut client, "u", room).await;
        assert_eq!(client.recv_json().await["Header"]["Event"], "error");
        let listed: Value = reqwest::get(format!("http://{base}/stats"))
            .await
            .expect("stats")
            .json()
            .await
            .expect("json");
        b.leave().await;
        a.leave().await;
        client.close().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let log = sigway.log();
        let hash = sigway_core::redact::key_hash(room);
        let listed = listed["recent_refusals"].to_string();
        if show {
            assert!(log.contains(room), "{log}");
            assert!(listed.contains(room), "{listed}");
        } else {
            assert!(!log.contains(room), "a key in the log:\n{log}");
            assert!(log.contains(&format!("key_hash:{hash}")), "{log}");
            assert!(!log.contains(SECRET), "{log}");
            assert!(!listed.contains(room), "{listed}");
            assert!(listed.contains(&hash), "{listed}");
        }
    }
}
