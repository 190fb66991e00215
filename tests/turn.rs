//! `GET /turn` through real sockets: 404 while unconfigured, the JSON a
//! WebRTC client feeds to `RTCPeerConnection` (password checked against
//! the `openssl` command line, not the gateway's own code), no caching, the
//! origin check and the per-address rate limit.

mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use common::{start, test_settings};
use serde_json::Value;
use sigway::config::Settings;

const SECRET: &str = "coturn shares this";
const URI: &str = "turn:127.0.0.1:3478?transport=udp";

fn with_turn() -> Settings {
    let mut s = test_settings();
    s.turn.secret = SECRET.into();
    s.turn.uris = vec![URI.into(), "turn:127.0.0.1:3478?transport=tcp".into()];
    s.turn.ttl = 600;
    s
}

/// base64(HMAC-SHA1(secret, text)) by `openssl dgst`: an implementation
/// independent of the gateway's.
fn openssl_hmac_sha1_base64(secret: &str, text: &str) -> String {
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha1", "-hmac", secret, "-binary"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the openssl command line runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to openssl");
    let out = child.wait_with_output().expect("openssl finishes");
    assert!(out.status.success(), "openssl dgst failed");
    let mut base64 = Command::new("openssl")
        .args(["base64", "-A"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl base64 runs");
    base64
        .stdin
        .take()
        .expect("stdin")
        .write_all(&out.stdout)
        .expect("write to openssl");
    let encoded = base64.wait_with_output().expect("openssl base64 finishes");
    String::from_utf8(encoded.stdout)
        .expect("ascii")
        .trim()
        .to_owned()
}

async fn get(url: &str, origin: Option<&str>) -> reqwest::Response {
    let client = reqwest::Client::new();
    let mut request = client.get(url).timeout(common::WAIT);
    if let Some(origin) = origin {
        request = request.header("Origin", origin);
    }
    request.send().await.expect("an answer")
}

fn header<'r>(response: &'r reqwest::Response, name: &str) -> Option<&'r str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn unconfigured_is_404() {
    let server = start(test_settings());
    let response = get(&server.http_url("/turn"), None).await;
    assert_eq!(response.status(), 404);
    server.stop();
}

#[tokio::test]
async fn credentials_are_the_turn_rest_scheme() {
    let server = start(with_turn());
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let response = get(&server.http_url("/turn?user=al:ice%0A"), None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "cache-control"), Some("no-store"));
    let body: Value = response.json().await.expect("json");
    let username = body["username"].as_str().expect("username");
    let password = body["password"].as_str().expect("password");
    let (expiry, user) = username.split_once(':').expect("<expiry>:<user>");
    assert_eq!(user, "alice", "':' and control characters are dropped");
    let expiry: u64 = expiry.parse().expect("expiry is a number");
    assert!(
        (before + 600..=before + 602).contains(&expiry),
        "expiry {expiry} is now + ttl (now {before})"
    );
    assert_eq!(password, openssl_hmac_sha1_base64(SECRET, username));
    assert_eq!(body["ttl"], 600);
    assert_eq!(body["uris"][0], URI);
    assert_eq!(body["uris"].as_array().map(Vec::len), Some(2));
    let ice = &body["iceServers"][0];
    assert_eq!(ice["urls"], body["uris"]);
    assert_eq!(ice["username"], username);
    assert_eq!(ice["credential"], password);
    assert!(
        !body.to_string().contains(SECRET),
        "the secret never leaves the gateway"
    );

    // No ?user=: the configured default.
    let body: Value = get(&server.http_url("/turn"), None)
        .await
        .json()
        .await
        .expect("json");
    let username = body["username"].as_str().expect("username");
    assert!(username.ends_with(":sigway"), "{username}");

    // /stats and /metrics do not carry it either.
    for path in ["/stats", "/metrics"] {
        let text = get(&server.http_url(path), None)
            .await
            .text()
            .await
            .expect("text");
        assert!(!text.contains(SECRET), "{path} shows the TURN secret");
    }
    server.stop();
}

#[tokio::test]
async fn other_origins_are_refused() {
    let mut settings = with_turn();
    settings.http.allowed_origins = vec!["https://app.example.org".into()];
    let server = start(settings);
    let url = server.http_url("/turn");
    let refused = get(&url, Some("https://elsewhere.example.org")).await;
    assert_eq!(refused.status(), 403);
    let allowed = get(&url, Some("https://app.example.org")).await;
    assert_eq!(allowed.status(), 200);
    assert_eq!(
        header(&allowed, "access-control-allow-origin"),
        Some("https://app.example.org"),
        "a page on the allowed origin may read the answer"
    );
    server.stop();
}

#[tokio::test]
async fn too_many_requests_from_one_address_get_429() {
    let mut settings = with_turn();
    settings.turn.requests_per_minute = 3;
    let server = start(settings);
    let url = server.http_url("/turn");
    for n in 1..=3 {
        assert_eq!(get(&url, None).await.status(), 200, "request {n}");
    }
    let over = get(&url, None).await;
    assert_eq!(over.status(), 429);
    assert_eq!(header(&over, "retry-after"), Some("20"));
    assert_eq!(header(&over, "cache-control"), Some("no-store"));
    server.stop();
}
