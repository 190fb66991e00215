//! The SockJS WebSocket transports over real connections: framed
//! (`/<server>/<session>/websocket`) and raw (`/websocket`), with the
//! protocol test server's echo/close/disabled endpoints on port 0.

mod sockjs_common;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use sigway_sockjs::Options;
use sockjs_common::*;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(url: &str) -> Ws {
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("handshake in time")
        .expect("handshake");
    ws
}

/// The next text frame; panics on anything else.
async fn text(ws: &mut Ws) -> String {
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("frame in time")
        {
            Some(Ok(Message::Text(text))) => return text.to_string(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// Waits for the server's close frame (or the end of the connection);
/// returns its code. Panics if a text frame comes first.
async fn closed(ws: &mut Ws) -> Option<u16> {
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("close in time")
        {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
            Some(Ok(Message::Text(text))) => panic!("expected the close, got {text}"),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return None,
        }
    }
}

fn framed_url(server: &sigway_sockjs::echo::ProtocolTestServer, endpoint: &str) -> String {
    server.ws_url(&format!("{endpoint}/000/{:016x}/websocket", rand_id()))
}

#[tokio::test]
async fn framed_websocket_opens_and_echoes_arrays_and_single_strings() {
    let server = start(options());
    let mut ws = connect(&framed_url(&server, "/echo")).await;
    assert_eq!(text(&mut ws).await, "o");
    ws.send(Message::text("")).await.expect("send");
    ws.send(Message::text(r#"["a","b"]"#)).await.expect("send");
    let mut echoed = text(&mut ws).await;
    if echoed == r#"a["a"]"# {
        assert_eq!(text(&mut ws).await, r#"a["b"]"#);
        echoed = r#"a["a","b"]"#.into();
    }
    assert_eq!(echoed, r#"a["a","b"]"#);
    ws.send(Message::text(r#""single""#)).await.expect("send");
    assert_eq!(text(&mut ws).await, r#"a["single"]"#);
    ws.send(Message::text(r#"["\u2028 \ud83d\ude00"]"#))
        .await
        .expect("send");
    assert_eq!(text(&mut ws).await, r#"a["\u2028 \ud83d\ude00"]"#);
}

#[tokio::test]
async fn broken_json_closes_the_framed_websocket_without_a_frame() {
    let server = start(options());
    let mut ws = connect(&framed_url(&server, "/echo")).await;
    assert_eq!(text(&mut ws).await, "o");
    ws.send(Message::text(r#"["a"#)).await.expect("send");
    assert_eq!(closed(&mut ws).await, Some(3000));
}

#[tokio::test]
async fn the_close_app_sends_go_away_then_closes_the_websocket() {
    let server = start(options());
    let mut ws = connect(&framed_url(&server, "/close")).await;
    assert_eq!(text(&mut ws).await, "o");
    assert_eq!(text(&mut ws).await, r#"c[3000,"Go away!"]"#);
    // After the `c` frame the WebSocket closes normally (sockjs-node).
    assert_eq!(closed(&mut ws).await, Some(1000));

    let mut raw = connect(&server.ws_url("/close/websocket")).await;
    assert_eq!(closed(&mut raw).await, Some(3000));
}

#[tokio::test]
async fn websocket_sessions_may_share_an_id() {
    let server = start(options());
    let url = framed_url(&server, "/echo");
    let mut first = connect(&url).await;
    let mut second = connect(&url).await;
    assert_eq!(text(&mut first).await, "o");
    assert_eq!(text(&mut second).await, "o");
    first.send(Message::text(r#"["a"]"#)).await.expect("send");
    second.send(Message::text(r#"["b"]"#)).await.expect("send");
    assert_eq!(text(&mut first).await, r#"a["a"]"#);
    assert_eq!(text(&mut second).await, r#"a["b"]"#);
    first.close(None).await.expect("close");
    let mut again = connect(&url).await;
    assert_eq!(text(&mut again).await, "o");
}

#[tokio::test]
async fn raw_websocket_carries_plain_text_both_ways() {
    let server = start(options());
    let mut ws = connect(&server.ws_url("/echo/websocket")).await;
    ws.send(Message::text("Hello world!\u{ffff}"))
        .await
        .expect("send");
    assert_eq!(text(&mut ws).await, "Hello world!\u{ffff}");
    ws.send(Message::text(r#"["not framed"]"#))
        .await
        .expect("send");
    assert_eq!(text(&mut ws).await, r#"["not framed"]"#);
}

#[tokio::test]
async fn an_unanswered_heartbeat_ping_ends_the_session() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = start(Options {
        heartbeat: Duration::from_millis(200),
        ..options()
    });
    // A client that never reads after the handshake, so never pongs.
    let mut stream = tokio::net::TcpStream::connect(server.addr())
        .await
        .expect("connect");
    let request = format!(
        "GET /echo/000/{:x}/websocket HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n\r\n",
        rand_id(),
        server.addr()
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    tokio::time::sleep(sigway_sockjs::PONG_WAIT).await;
    // Then everything the server sent: the ping(s), and after the wait
    // the close frame sockjs-node sends in that case.
    let mut received = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let mut chunk = [0u8; 4096];
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
        if n == 0 {
            break;
        }
        received.extend_from_slice(&chunk[..n]);
        if find(&received, br#"c[3000,"No response from heartbeat"]"#).is_some() {
            break;
        }
    }
    assert!(
        find(&received, br#"c[3000,"No response from heartbeat"]"#).is_some(),
        "{:?}",
        String::from_utf8_lossy(&received)
    );
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[tokio::test]
async fn framed_websocket_heartbeats_are_pings() {
    let server = start(Options {
        heartbeat: Duration::from_millis(150),
        ..options()
    });
    let mut ws = connect(&framed_url(&server, "/echo")).await;
    assert_eq!(text(&mut ws).await, "o");
    // WebSocket pings, as sockjs-node 0.3.24 sends (the client answers).
    for _ in 0..2 {
        let frame = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("frame in time");
        assert!(
            matches!(frame, Some(Ok(Message::Ping(ref p))) if p.is_empty()),
            "{frame:?}"
        );
    }
    // Still open: the pongs were taken.
    ws.send(Message::text(r#"["x"]"#)).await.expect("send");
    assert_eq!(text(&mut ws).await, r#"a["x"]"#);
}

#[tokio::test]
async fn oversized_websocket_messages_close_with_1009() {
    let server = start(Options {
        max_message_bytes: 1024,
        ..options()
    });
    let mut ws = connect(&framed_url(&server, "/echo")).await;
    assert_eq!(text(&mut ws).await, "o");
    ws.send(Message::text(format!(r#"["{}"]"#, "x".repeat(4096))))
        .await
        .expect("send");
    assert!(text(&mut ws).await.starts_with("c[1009,"));
    // The `c` frame carries the code; the WebSocket then closes normally,
    // as every framed close does (sockjs-node's receiver).
    assert_eq!(closed(&mut ws).await, Some(1000));

    let mut raw = connect(&server.ws_url("/echo/websocket")).await;
    raw.send(Message::text("x".repeat(4096)))
        .await
        .expect("send");
    assert_eq!(closed(&mut raw).await, Some(1009));
}

#[tokio::test]
async fn disabled_websocket_routes_are_404() {
    let server = start(options());
    for path in [
        "/disabled_websocket_echo/websocket",
        "/disabled_websocket_echo/0/0/websocket",
    ] {
        let result =
            tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(server.ws_url(path)))
                .await
                .expect("answer in time");
        match result {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 404, "{path}")
            }
            other => panic!("{path}: expected a 404, got {:?}", other.map(|_| ())),
        }
    }
    // The same endpoint still serves its HTTP transports.
    let url = session_url(&server, "/disabled_websocket_echo");
    assert_eq!(post_text(&format!("{url}/xhr"), "").await.1, "o\n");
}

#[tokio::test]
async fn plain_http_on_a_websocket_url_is_refused_as_sockjs_node_does() {
    let server = start(options());
    let (status, body) = get_text(&server.http_url("/echo/0/0/websocket")).await;
    assert_eq!(status, 400);
    // sockjs-node 0.3.24's text (the protocol suite expects an older one).
    assert_eq!(body, "Not a valid websocket request");
    let response = client()
        .get(server.http_url("/echo/0/0/websocket"))
        .header("Upgrade", "WebSocket")
        .header("Connection", "close")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.text().await.expect("body"),
        "Not a valid websocket request"
    );
}

#[tokio::test]
async fn only_websocket_version_13_is_accepted() {
    // sockjs-node 0.3.24 (websocket-driver) takes version 13 only; the
    // protocol suite's hybi-07/08 checks fail against it and against us.
    let server = start(options());
    for (version, expected) in [
        ("7", "http/1.1 400"),
        ("8", "http/1.1 400"),
        ("13", "http/1.1 101"),
    ] {
        let mut stream = tokio::net::TcpStream::connect(server.addr())
            .await
            .expect("connect");
        let request = format!(
            "GET /echo/000/{:x}/websocket HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\n\
             Connection: keep-alive, Upgrade\r\nSec-WebSocket-Version: {version}\r\n\
             Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n\r\n",
            rand_id(),
            server.addr()
        );
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut head = vec![0u8; 1024];
        let read = tokio::time::timeout(WAIT, stream.read(&mut head))
            .await
            .expect("answer")
            .expect("read");
        let head = String::from_utf8_lossy(&head[..read]).to_lowercase();
        assert!(head.starts_with(expected), "version {version}: {head}");
        if version != "13" {
            assert!(
                head.contains(&format!("unsupported websocket version: {version}")),
                "{head}"
            );
        }
    }
}
