//! The edge through real sockets: allowed origins on every upgrade and
//! SockJS request, the client address behind trusted proxies (headers and
//! the PROXY protocol) as the per-address limits count it, a spoofed
//! header from an untrusted peer, the request-head timeout, and the SockJS
//! sessions per address. Each refusal is checked on the wire and in
//! `/metrics` / `/stats`.

mod common;

use std::time::{Duration, Instant};

use common::{Peer, WAIT, start, test_settings};
use futures_util::StreamExt as _;
use sigway::app::BackgroundServer;
use sigway::config::Settings;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::{self, Message as Ws};

const ALLOWED: &str = "https://app.example.org";
const DENIED: &str = "https://evil.example.com";

fn with_origins(allowed: &[&str], allow_missing: bool) -> Settings {
    let mut settings = test_settings();
    settings.http.allowed_origins = allowed.iter().map(|o| o.to_string()).collect();
    settings.http.allow_missing_origin = allow_missing;
    settings
}

/// A WebSocket handshake to `path` with the given extra headers: the
/// socket, or the HTTP status it was refused with.
async fn upgrade(
    server: &BackgroundServer,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<common::Socket, u16> {
    let mut request = server
        .ws_url(path)
        .into_client_request()
        .expect("a request");
    for (name, value) in headers {
        request.headers_mut().insert(
            tungstenite::http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
            value.parse().expect("value"),
        );
    }
    match timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .expect("handshake in time")
    {
        Ok((socket, _)) => Ok(socket),
        Err(tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
        Err(other) => panic!("handshake failed otherwise: {other}"),
    }
}

async fn text_of(response: reqwest::Response) -> String {
    response.text().await.expect("body")
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(WAIT)
        .build()
        .expect("client")
}

async fn stats(server: &BackgroundServer) -> serde_json::Value {
    http()
        .get(server.http_url("/stats"))
        .send()
        .await
        .expect("stats")
        .json()
        .await
        .expect("json")
}

async fn metrics(server: &BackgroundServer) -> String {
    text_of(
        http()
            .get(server.http_url("/metrics"))
            .send()
            .await
            .expect("metrics"),
    )
    .await
}

/// `sigway_refusals_total{reason="..."}` as `/metrics` says it.
fn refusals_in(metrics: &str, reason: &str) -> u64 {
    let series = format!("sigway_refusals_total{{reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series.as_str()))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in {metrics}"))
}

fn session_path(prefix: &str) -> String {
    format!("{prefix}/000/{:016x}", rand::random::<u64>())
}

#[tokio::test]
async fn origins_are_checked_before_every_websocket_upgrade() {
    let server = start(with_origins(&[ALLOWED, "https://*.example.net"], true));
    let framed = format!("{}/websocket", session_path("/echo"));
    for path in ["/some-key", "/echo/websocket", framed.as_str()] {
        for origin in [
            ALLOWED,
            "HTTPS://App.Example.org:443",
            "https://a.b.example.net",
        ] {
            let socket = upgrade(&server, path, &[("origin", origin)]).await;
            assert!(socket.is_ok(), "{path} from {origin}: {:?}", socket.err());
        }
        for origin in [
            DENIED,
            "https://example.net",
            "http://app.example.org",
            "null",
        ] {
            assert_eq!(
                upgrade(&server, path, &[("origin", origin)]).await.err(),
                Some(403),
                "{path} from {origin}"
            );
        }
        assert!(
            upgrade(&server, path, &[]).await.is_ok(),
            "{path}: no Origin is allowed"
        );
    }
    let figures = metrics(&server).await;
    assert_eq!(refusals_in(&figures, "origin"), 12);
    let stats = stats(&server).await;
    assert_eq!(stats["refusals_by_reason"]["origin"], 12);
    assert_eq!(stats["refusals"], 12);
    assert!(
        figures.contains("\nsigway_refusals_total 12\n"),
        "{figures}"
    );
    server.stop();
}

#[tokio::test]
async fn sockjs_http_answers_reflect_only_allowed_origins() {
    let server = start(with_origins(&[ALLOWED], true));
    let client = http();
    let xhr = server.http_url(&format!("{}/xhr", session_path("/echo")));
    let allowed = client
        .post(&xhr)
        .header("origin", ALLOWED)
        .send()
        .await
        .expect("xhr");
    assert_eq!(allowed.status(), 200);
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        ALLOWED,
        "an allowed origin is reflected"
    );
    assert_eq!(text_of(allowed).await, "o\n");

    for url in [
        xhr.clone(),
        server.http_url("/echo/info"),
        server.http_url(&format!("{}/eventsource", session_path("/echo"))),
        server.http_url(&format!("{}/jsonp?c=f", session_path("/echo"))),
        server.http_url(&format!("{}/htmlfile?c=f", session_path("/echo"))),
        server.http_url("/echo/iframe.html"),
    ] {
        let denied = client
            .get(&url)
            .header("origin", DENIED)
            .send()
            .await
            .expect("request");
        assert_eq!(denied.status(), 403, "{url}");
        assert!(
            !denied.headers().contains_key("access-control-allow-origin"),
            "{url}"
        );
    }
    let send = client
        .post(xhr.replace("/xhr", "/xhr_send"))
        .header("origin", DENIED)
        .body("[\"x\"]")
        .send()
        .await
        .expect("xhr_send");
    assert_eq!(send.status(), 403);
    let preflight = client
        .request(reqwest::Method::OPTIONS, &xhr)
        .header("origin", DENIED)
        .send()
        .await
        .expect("preflight");
    assert_eq!(preflight.status(), 403);
    assert_eq!(refusals_in(&metrics(&server).await, "origin"), 8);
    server.stop();
}

#[tokio::test]
async fn a_missing_origin_is_refused_when_not_allowed() {
    let server = start(with_origins(&[ALLOWED], false));
    assert_eq!(upgrade(&server, "/key", &[]).await.err(), Some(403));
    assert_eq!(
        upgrade(&server, "/echo/websocket", &[]).await.err(),
        Some(403)
    );
    let info = http()
        .get(server.http_url("/echo/info"))
        .send()
        .await
        .expect("info");
    assert_eq!(info.status(), 403);
    assert!(
        upgrade(&server, "/key", &[("origin", ALLOWED)])
            .await
            .is_ok()
    );
    server.stop();
}

/// A sigver peer opened with `headers`; `true` when it was admitted (no
/// close within a moment), `false` when refused by a per-address limit.
async fn sigver_admitted(
    server: &BackgroundServer,
    headers: &[(&str, &str)],
) -> (bool, Option<common::Socket>) {
    let mut socket = upgrade(server, "/edge-room", headers)
        .await
        .expect("the upgrade is accepted");
    match timeout(Duration::from_millis(400), socket.next()).await {
        Err(_) => (true, Some(socket)),
        Ok(Some(Ok(Ws::Close(Some(close))))) => {
            assert!(
                close
                    .reason
                    .contains("too many connections from this address"),
                "{close:?}"
            );
            (false, None)
        }
        Ok(other) => panic!("expected a refusal or silence, got {other:?}"),
    }
}

/// How a proxy writes the header naming a client.
type ProxyWrites = fn(&str) -> String;

fn behind_proxy(header: &str) -> Settings {
    let mut settings = test_settings();
    settings.limits.max_connections_per_ip = 1;
    settings.http.trusted_proxies = vec!["127.0.0.1".into(), "10.0.0.0/8".into()];
    settings.http.client_ip_header = header.into();
    settings
}

#[tokio::test]
async fn a_trusted_proxy_header_names_the_counted_client() {
    let cases: [(&str, ProxyWrites); 3] = [
        ("x-forwarded-for", |ip| format!("6.6.6.6, {ip}, 10.1.2.3")),
        ("forwarded", |ip| {
            format!("for=6.6.6.6, for=\"{ip}:4711\";proto=https, for=10.1.2.3")
        }),
        ("x-real-ip", |ip| ip.to_string()),
    ];
    for (header, value) in cases {
        let server = start(behind_proxy(header));
        let first = value("198.51.100.1");
        let second = value("198.51.100.2");
        let (admitted, _kept) = sigver_admitted(&server, &[(header, &first)]).await;
        assert!(admitted, "{header}: the first client");
        let (admitted, _) = sigver_admitted(&server, &[(header, &first)]).await;
        assert!(
            !admitted,
            "{header}: the same client again is over its limit"
        );
        let (admitted, _also_kept) = sigver_admitted(&server, &[(header, &second)]).await;
        assert!(admitted, "{header}: another client behind the same proxy");
        // Without a header, the trusted proxy itself is the client.
        let (admitted, _) = sigver_admitted(&server, &[]).await;
        assert!(admitted, "{header}: the proxy itself is one more address");
        server.stop();
    }
}

#[tokio::test]
async fn a_spoofed_header_from_an_untrusted_peer_is_ignored() {
    let mut settings = behind_proxy("x-forwarded-for");
    settings.http.trusted_proxies = vec!["10.0.0.0/8".into()];
    let server = start(settings);
    let (admitted, _kept) = sigver_admitted(&server, &[("x-forwarded-for", "198.51.100.1")]).await;
    assert!(admitted);
    let (admitted, _) = sigver_admitted(&server, &[("x-forwarded-for", "198.51.100.2")]).await;
    assert!(!admitted, "both count as 127.0.0.1, whatever they claim");
    server.stop();
}

fn proxy_v1(source: &str) -> Vec<u8> {
    format!("PROXY TCP4 {source} 127.0.0.1 40000 8000\r\n").into_bytes()
}

fn proxy_v2(source: [u8; 4]) -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.extend([0x21, 0x11, 0, 12]);
    header.extend(source);
    header.extend([127, 0, 0, 1]);
    header.extend(40000u16.to_be_bytes());
    header.extend(8000u16.to_be_bytes());
    header
}

/// A sigver peer over a TCP connection that starts with `header`.
async fn sigver_through_balancer(
    server: &BackgroundServer,
    header: &[u8],
) -> (bool, Option<common::Socket>) {
    let mut tcp = TcpStream::connect(server.addr).await.expect("connect");
    tcp.write_all(header).await.expect("PROXY header");
    let stream = tokio_tungstenite::MaybeTlsStream::Plain(tcp);
    let (mut socket, _) = timeout(
        WAIT,
        tokio_tungstenite::client_async(server.ws_url("/edge-room"), stream),
    )
    .await
    .expect("handshake in time")
    .expect("handshake");
    match timeout(Duration::from_millis(400), socket.next()).await {
        Err(_) => (true, Some(socket)),
        Ok(Some(Ok(Ws::Close(Some(close))))) => {
            assert!(close.reason.contains("too many connections"), "{close:?}");
            (false, None)
        }
        Ok(other) => panic!("expected a refusal or silence, got {other:?}"),
    }
}

/// A plain GET over a connection that starts with `header`: the whole
/// answer (the server closes after it).
async fn get_through_balancer(server: &BackgroundServer, header: &[u8], path: &str) -> String {
    let mut tcp = TcpStream::connect(server.addr).await.expect("connect");
    tcp.write_all(header).await.expect("header");
    tcp.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .expect("request");
    let mut answer = Vec::new();
    // A refused connection may end with a reset (the server closed it with
    // our request unread): what came before it is the answer.
    let _ = timeout(WAIT, tcp.read_to_end(&mut answer))
        .await
        .expect("answer in time");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn the_proxy_protocol_names_the_counted_client() {
    let mut settings = test_settings();
    settings.limits.max_connections_per_ip = 1;
    settings.http.proxy_protocol = true;
    settings.http.client_request_timeout_ms = 500;
    let server = start(settings);

    let (admitted, _first) = sigver_through_balancer(&server, &proxy_v1("203.0.113.7")).await;
    assert!(admitted, "v1: the first client");
    let (admitted, _) = sigver_through_balancer(&server, &proxy_v2([203, 0, 113, 7])).await;
    assert!(!admitted, "v2 names the same client: over its limit");
    let (admitted, _second) = sigver_through_balancer(&server, &proxy_v2([203, 0, 113, 8])).await;
    assert!(admitted, "v2: another client");
    let (admitted, _) = sigver_through_balancer(&server, &proxy_v1("203.0.113.8")).await;
    assert!(!admitted, "v1 names the v2 client: over its limit");

    // A connection without a header is closed unanswered; so is a silent one,
    // after the request timeout.
    let answer = get_through_balancer(&server, b"", "/healthz").await;
    assert_eq!(answer, "", "no PROXY header: closed");
    let mut silent = TcpStream::connect(server.addr).await.expect("connect");
    let started = Instant::now();
    let mut byte = [0u8; 1];
    let read = timeout(WAIT, silent.read(&mut byte))
        .await
        .expect("closed in time");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );

    // The balancer's own health check (LOCAL / UNKNOWN) is served.
    let metrics = get_through_balancer(&server, b"PROXY UNKNOWN\r\n", "/metrics").await;
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert_eq!(refusals_in(&metrics, "proxy_header"), 2);
    server.stop();
}

#[tokio::test]
async fn a_client_that_sends_half_a_request_head_is_dropped_after_the_timeout() {
    let mut settings = test_settings();
    settings.http.client_request_timeout_ms = 1500;
    let server = start(settings);
    for half in [
        "GET /healthz HTTP/1.1\r\nHost: x\r\n",
        "GET /key HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
    ] {
        let mut tcp = TcpStream::connect(server.addr).await.expect("connect");
        tcp.write_all(half.as_bytes()).await.expect("half a head");
        let started = Instant::now();
        let mut answer = Vec::new();
        timeout(WAIT, tcp.read_to_end(&mut answer))
            .await
            .expect("dropped in time")
            .ok();
        let waited = started.elapsed();
        // actix starts the timer from its clock, which it refreshes every
        // 500 ms: the wait is between the timeout less 500 ms and the timeout.
        assert!(
            waited >= Duration::from_millis(950) && waited < Duration::from_secs(4),
            "{half:?}: dropped after {waited:?}"
        );
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
            "{answer}"
        );
    }
    server.stop();
}

#[tokio::test]
async fn sockjs_sessions_per_address_are_bounded_the_sockjs_way() {
    let mut settings = test_settings();
    settings.limits.max_sockjs_sessions_per_ip = 2;
    let server = start(settings);
    let client = http();
    let mut open = Vec::new();
    for _ in 0..2 {
        let url = server.http_url(&session_path("/echo"));
        let first = client.post(format!("{url}/xhr")).send().await.expect("xhr");
        assert_eq!(text_of(first).await, "o\n");
        open.push(url);
    }
    let third = server.http_url(&session_path("/echo"));
    let first = client
        .post(format!("{third}/xhr"))
        .send()
        .await
        .expect("xhr");
    assert_eq!(text_of(first).await, "o\n");
    let refused = client
        .post(format!("{third}/xhr"))
        .send()
        .await
        .expect("xhr");
    assert_eq!(
        text_of(refused).await,
        "c[1008,\"too many SockJS sessions from this address (limit 2)\"]\n"
    );
    // A sigver connection is not a SockJS session.
    let _peer = Peer::open(&server, "/other-room").await;
    let figures = metrics(&server).await;
    assert_eq!(refusals_in(&figures, "sockjs_sessions_per_ip"), 1);
    assert_eq!(refusals_in(&figures, "connections_per_ip"), 0);
    assert_eq!(
        stats(&server).await["refusals_by_reason"]["sockjs_sessions_per_ip"],
        1
    );
    server.stop();
}
