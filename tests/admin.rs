//! The admin API through real sockets: a gateway with an admin listener on
//! 127.0.0.1 port 0 and a bearer token, real sigver and videre clients in
//! rooms; every call of the API is made and its effect seen by a client
//! (close codes arrive, rooms empty, the drain refuses newcomers).

mod videre_support;

use std::time::Duration;

use serde_json::{Value, json};
use sigway::app::BackgroundServer;
use tokio::time::{Instant, sleep};
use videre_support::common::{Peer, WAIT};
use videre_support::{Client, Incoming, Transport, connect, expect_packet, start};

const TOKEN: &str = "admin-s3cret";

fn admin_settings() -> sigway::config::Settings {
    let mut settings = videre_support::settings();
    settings.admin.listen = "127.0.0.1:0".into();
    settings.admin.token = TOKEN.into();
    settings.auth.key_secret = "room-signing-secret".into();
    settings.cluster.redis_url = String::new();
    settings
}

struct Admin {
    http: reqwest::Client,
    base: String,
}

impl Admin {
    fn of(server: &BackgroundServer) -> Admin {
        let addr = server.admin_addr.expect("the admin listener is up");
        Admin {
            http: reqwest::Client::new(),
            base: format!("http://{addr}"),
        }
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let request = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(TOKEN);
        answer(request).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .json(&body);
        answer(request).await
    }

    /// Polls `GET path` until `done` holds of the answer (bounded).
    async fn until(&self, path: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let (status, body) = self.get(path).await;
            if status == 200 && done(&body) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "{path} never became as expected: {status} {body}"
            );
            sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn answer(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = tokio::time::timeout(WAIT, request.send())
        .await
        .expect("answer in time")
        .expect("admin call");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A key signed with the test secret (`auth.key_secret` is set so that
/// the settings have a secret to redact).
fn signed(room: &str) -> String {
    let expiry = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 3600;
    let text = format!("{room}.{expiry}");
    format!(
        "{text}.{}",
        sigway_core::auth::sign(b"room-signing-secret", &text)
    )
}

fn room_of<'a>(listing: &'a Value, protocol: &str) -> Option<&'a Value> {
    listing["rooms"]
        .as_array()?
        .iter()
        .find(|room| room["protocol"] == protocol)
}

#[tokio::test]
async fn every_admin_call_through_real_clients() {
    let server = start(admin_settings());
    let admin = Admin::of(&server);

    // No token, a wrong one, and the public port's /admin without one: 401.
    let plain = reqwest::Client::new();
    for (url, token) in [
        (format!("{}/admin/rooms", admin.base), None),
        (format!("{}/admin/rooms", admin.base), Some("wrong")),
        (server.http_url("/admin/settings"), None),
    ] {
        let mut request = plain.get(&url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let (status, _) = answer(request).await;
        assert_eq!(status, 401, "{url} with {token:?}");
    }
    // With the token, the public port serves it too.
    let (status, _) = answer(
        plain
            .get(server.http_url("/admin/rooms"))
            .bearer_auth(TOKEN),
    )
    .await;
    assert_eq!(status, 200);

    // Two sigver peers in one group, two videre users in one room.
    let key = signed("call");
    let mut a = Peer::open(&server, &format!("/{key}")).await;
    assert!(a.connect(1, &[]).await);
    let mut b = Peer::open(&server, &format!("/{key}")).await;
    assert!(!b.connect(2, &[]).await);
    let room = signed("videre-room");
    let mut alice = Client::open(&server, Transport::XhrStreaming).await;
    connect(&mut alice, "alice", &room).await;
    expect_packet(&mut alice, "connect", "alice", &room).await;
    let mut bob = Client::open(&server, Transport::RawWebsocket).await;
    connect(&mut bob, "bob", &room).await;
    expect_packet(&mut bob, "connect", "bob", &room).await;
    expect_packet(&mut alice, "connect", "bob", &room).await;

    // The listing: both rooms, keys hashed as /stats shows them.
    let listing = admin
        .until("/admin/rooms", |body| {
            room_of(body, "sigver").is_some_and(|r| r["members"] == 2)
                && room_of(body, "videre").is_some_and(|r| r["members"] == 2)
        })
        .await;
    assert_eq!(listing["node"], 0);
    let sigver = room_of(&listing, "sigver").expect("sigver room").clone();
    let sigver_hash = sigver["key_hash"].as_str().expect("hashed key").to_owned();
    assert_eq!(sigver_hash, sigway_core::redact::key_hash(&key));
    assert!(sigver.get("key").is_none(), "keys are not shown: {sigver}");
    assert!(sigver["messages"].as_u64().expect("messages") >= 1);
    assert!(sigver["age_secs"].is_u64());
    let listing_text = listing.to_string();
    assert!(!listing_text.contains(&key) && !listing_text.contains(&room));
    // A page of one says where the next starts.
    let (_, page) = admin.get("/admin/rooms?limit=1").await;
    assert_eq!(page["rooms"].as_array().map(Vec::len), Some(1));
    let next = page["next_cursor"].as_u64().expect("a second page");
    let (_, rest) = admin
        .get(&format!("/admin/rooms?limit=1&cursor={next}"))
        .await;
    assert_eq!(rest["rooms"].as_array().map(Vec::len), Some(1));
    assert_ne!(page["rooms"][0], rest["rooms"][0]);

    // One room's members, found by hash.
    let (status, detail) = admin
        .get(&format!("/admin/rooms/sigver/{sigver_hash}"))
        .await;
    assert_eq!(status, 200, "{detail}");
    let members = detail["members"].as_array().expect("members");
    assert_eq!(members.len(), 2, "{detail}");
    for member in members {
        assert_eq!(member["protocol"], "sigver");
        assert_eq!(member["dialect"], "current");
        assert!(
            member["address"]
                .as_str()
                .expect("address")
                .starts_with("127.0.0.1:"),
            "{member}"
        );
        assert!(member["connected_since"].as_u64().expect("since") > 1_600_000_000);
        assert!(member["queue_depth"].is_u64());
    }
    let videre_hash = sigway_core::redact::key_hash(&room);
    let (status, videre) = admin
        .get(&format!("/admin/rooms/videre/key_hash:{videre_hash}"))
        .await;
    assert_eq!(status, 200, "{videre}");
    let mut transports: Vec<&str> = videre["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["transport"].as_str().expect("transport"))
        .collect();
    transports.sort_unstable();
    assert_eq!(transports, ["websocket-raw", "xhr-streaming"]);
    let (status, _) = admin.get("/admin/rooms/videre/000000000000").await;
    assert_eq!(status, 404);

    // Close peer A (the first to open: the lower id) with 4000: A sees the
    // code and reason, B stays in the group.
    let local = |member: &Value| -> u64 {
        let id = member["id"].as_str().expect("id");
        id.split_once('.')
            .expect("NODE.NUMBER")
            .1
            .parse()
            .expect("number")
    };
    let first = members
        .iter()
        .min_by_key(|member| local(member))
        .and_then(|member| member["id"].as_str())
        .expect("a member")
        .to_owned();
    let (status, closed) = admin
        .post(
            &format!("/admin/peers/{first}/close"),
            json!({"code": 4000, "reason": "maintenance"}),
        )
        .await;
    assert_eq!(status, 200, "{closed}");
    assert_eq!(a.closed().await, (4000, "maintenance".to_owned()));
    let path = format!("/admin/rooms/sigver/{sigver_hash}");
    let left = admin
        .until(&path, |body| {
            body["members"].as_array().map(Vec::len) == Some(1)
        })
        .await;
    assert_ne!(left["members"][0]["id"], first.as_str());
    // Codes a client may not be sent are refused.
    let (status, _) = admin
        .post(
            &format!("/admin/peers/{first}/close"),
            json!({"code": 1006}),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = admin
        .post("/admin/peers/0.999999/close", json!({"code": 4000}))
        .await;
    assert_eq!(status, 404);

    // Close the videre room with 4001: both sessions get c[4001,...].
    let (status, closed) = admin
        .post(
            &format!("/admin/rooms/videre/{videre_hash}/close"),
            json!({"code": 4001, "reason": "room closed"}),
        )
        .await;
    assert_eq!(status, 200, "{closed}");
    assert_eq!(closed["closed"].as_array().map(Vec::len), Some(2));
    for client in [&mut alice, &mut bob] {
        let deadline = Instant::now() + WAIT;
        loop {
            match client.next().await {
                Incoming::Closed(code, reason) => {
                    assert_eq!((code, reason.as_str()), (4001, "room closed"));
                    break;
                }
                Incoming::Message(_) => assert!(Instant::now() < deadline, "no close"),
            }
        }
    }
    admin
        .until("/admin/rooms", |body| room_of(body, "videre").is_none())
        .await;

    // Settings: effective, secrets redacted, paths kept.
    let (status, settings) = admin.get("/admin/settings").await;
    assert_eq!(status, 200);
    assert_eq!(settings["admin"]["token"], "<redacted>");
    assert_eq!(settings["auth"]["key_secret"], "<redacted>");
    assert_eq!(settings["limits"]["max_connections"], 100_000);
    let text = settings.to_string();
    assert!(
        !text.contains(TOKEN) && !text.contains("room-signing-secret"),
        "{text}"
    );

    // Drain: not ready at once, new sessions refused, open ones stay.
    let (status, drained) = admin.post("/admin/drain", json!({})).await;
    assert_eq!(status, 202, "{drained}");
    let ready = plain
        .get(server.http_url("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status().as_u16(), 503);
    assert_eq!(ready.text().await.expect("body"), "draining\n");
    let refused = tokio_tungstenite::connect_async(server.ws_url(&format!("/{key}"))).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 503);
        }
        other => panic!("a new upgrade while draining must get 503: {other:?}"),
    }
    sleep(Duration::from_millis(300)).await;
    let (status, still) = admin.get(&path).await;
    assert_eq!(
        status, 200,
        "B's group is still open while draining: {still}"
    );
    assert_eq!(still["members"].as_array().map(Vec::len), Some(1));
    drop(b);
    server.stop();
}
