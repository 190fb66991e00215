//! Test clients for videre over the SockJS transports a browser may pick.
//!
//! Each [`Client`] runs a background reader (as a browser's SockJS client
//! does: polling and streaming transports re-open their request at once),
//! so a session never times out while a test looks elsewhere. Every wait is
//! bounded by [`WAIT`].

#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use sigway::app::BackgroundServer;
use sigway::config::Settings;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message as WsMessage;

#[path = "../common/mod.rs"]
pub mod common;

/// Longest wait for anything the server should do.
pub const WAIT: Duration = Duration::from_secs(10);
/// How long "nothing arrives" is watched for.
pub const QUIET: Duration = Duration::from_millis(300);

/// Settings for a test server: loopback, port 0, fast SockJS timings.
pub fn settings() -> Settings {
    let mut s = common::test_settings();
    s.sockjs.heartbeat_ms = 500;
    s.sockjs.disconnect_delay_ms = 1_000;
    s
}

#[allow(unused_imports)] // Not every including test file starts its own server.
pub use common::start;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `/echo/websocket`: one text frame per packet, no SockJS framing.
    RawWebsocket,
    /// `/echo/<server>/<session>/websocket`.
    FramedWebsocket,
    XhrStreaming,
    /// `xhr` polling.
    XhrPolling,
    /// `eventsource` receiving, `xhr_send` sending.
    EventSource,
    /// `jsonp` polling, `jsonp_send` (form field `d`) sending.
    JsonpPolling,
}

pub const ALL: [Transport; 6] = [
    Transport::RawWebsocket,
    Transport::FramedWebsocket,
    Transport::XhrStreaming,
    Transport::XhrPolling,
    Transport::EventSource,
    Transport::JsonpPolling,
];

/// What the reader saw.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Message(String),
    Closed(u16, String),
}

type WsSink = futures_util::stream::SplitSink<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    WsMessage,
>;

enum Sender {
    Raw(WsSink),
    Framed(WsSink),
    Xhr { http: reqwest::Client, url: String },
    Jsonp { http: reqwest::Client, url: String },
}

pub struct Client {
    pub transport: Transport,
    sender: Sender,
    inbox: mpsc::UnboundedReceiver<Incoming>,
    reader: JoinHandle<()>,
    /// Tells a polling reader not to poll again.
    stop: Arc<AtomicBool>,
}

static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

fn session_path(prefix: &str) -> String {
    let n = NEXT_SESSION.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}/{:03}/t{}x{n}", n % 1000, std::process::id())
}

impl Client {
    /// Opens a session on `transport` and waits for it to be open.
    pub async fn open(server: &BackgroundServer, transport: Transport) -> Client {
        Client::open_at(&server.http_url(""), transport).await
    }

    /// Opens a session on `transport` at `base` (`http://host:port`, e.g.
    /// a load balancer in front of several servers) and waits for it to be
    /// open.
    pub async fn open_at(base: &str, transport: Transport) -> Client {
        let http_url = |path: &str| format!("{base}{path}");
        let ws_url = |path: &str| format!("ws{}{path}", base.strip_prefix("http").unwrap_or(base));
        let (tx, inbox) = mpsc::unbounded_channel();
        let stop = Arc::new(AtomicBool::new(false));
        let (sender, reader) = match transport {
            Transport::RawWebsocket => {
                let url = ws_url("/echo/websocket");
                let (ws, _) = timeout(WAIT, tokio_tungstenite::connect_async(url))
                    .await
                    .expect("ws connect in time")
                    .expect("ws connect");
                let (sink, stream) = ws.split();
                (Sender::Raw(sink), tokio::spawn(read_ws(stream, tx, false)))
            }
            Transport::FramedWebsocket => {
                let url = ws_url(&format!("{}/websocket", session_path("/echo")));
                let (ws, _) = timeout(WAIT, tokio_tungstenite::connect_async(url))
                    .await
                    .expect("ws connect in time")
                    .expect("ws connect");
                let (sink, stream) = ws.split();
                (
                    Sender::Framed(sink),
                    tokio::spawn(read_ws(stream, tx, true)),
                )
            }
            Transport::XhrStreaming | Transport::XhrPolling => {
                let http = reqwest::Client::new();
                let base = http_url(&session_path("/echo"));
                let streaming = transport == Transport::XhrStreaming;
                let reader = tokio::spawn(read_xhr(
                    http.clone(),
                    base.clone(),
                    streaming,
                    tx,
                    stop.clone(),
                ));
                (
                    Sender::Xhr {
                        http,
                        url: format!("{base}/xhr_send"),
                    },
                    reader,
                )
            }
            Transport::EventSource => {
                let http = reqwest::Client::new();
                let base = http_url(&session_path("/echo"));
                let reader = tokio::spawn(read_eventsource(http.clone(), base.clone(), tx));
                (
                    Sender::Xhr {
                        http,
                        url: format!("{base}/xhr_send"),
                    },
                    reader,
                )
            }
            Transport::JsonpPolling => {
                let http = reqwest::Client::new();
                let base = http_url(&session_path("/echo"));
                let reader = tokio::spawn(read_jsonp(http.clone(), base.clone(), tx, stop.clone()));
                (
                    Sender::Jsonp {
                        http,
                        url: format!("{base}/jsonp_send"),
                    },
                    reader,
                )
            }
        };
        let mut client = Client {
            transport,
            sender,
            inbox,
            reader,
            stop,
        };
        if transport != Transport::RawWebsocket {
            // The reader turns `o` into this marker so `open` knows.
            assert_eq!(
                client.next().await,
                Incoming::Message(OPEN_MARKER.into()),
                "{transport:?} opens"
            );
        }
        client
    }

    /// Opens a raw WebSocket session (`/echo/websocket`) at `url` (for a
    /// server the test did not start in process, e.g. a `sigway` child).
    pub async fn open_websocket_url(url: &str) -> Client {
        let (tx, inbox) = mpsc::unbounded_channel();
        let (ws, _) = timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .expect("ws connect in time")
            .expect("ws connect");
        let (sink, stream) = ws.split();
        Client {
            transport: Transport::RawWebsocket,
            sender: Sender::Raw(sink),
            inbox,
            reader: tokio::spawn(read_ws(stream, tx, false)),
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Sends one message.
    pub async fn send(&mut self, text: &str) {
        match &mut self.sender {
            Sender::Raw(sink) => timeout(WAIT, sink.send(WsMessage::text(text)))
                .await
                .expect("ws send in time")
                .expect("ws send"),
            Sender::Framed(sink) => {
                let frame = serde_json::to_string(&[text]).expect("frame");
                timeout(WAIT, sink.send(WsMessage::text(frame)))
                    .await
                    .expect("ws send in time")
                    .expect("ws send")
            }
            Sender::Xhr { http, url } => {
                let body = serde_json::to_string(&[text]).expect("frame");
                let response = timeout(WAIT, http.post(url.as_str()).body(body).send())
                    .await
                    .expect("xhr_send in time")
                    .expect("xhr_send");
                assert_eq!(response.status(), 204, "xhr_send is answered 204");
            }
            Sender::Jsonp { http, url } => {
                let frame = serde_json::to_string(&[text]).expect("frame");
                let response = timeout(
                    WAIT,
                    http.post(url.as_str())
                        .header("Content-Type", "application/x-www-form-urlencoded")
                        .body(format!("d={}", form_encode(&frame)))
                        .send(),
                )
                .await
                .expect("jsonp_send in time")
                .expect("jsonp_send");
                assert_eq!(response.status(), 200, "jsonp_send is answered 200");
            }
        }
    }

    /// Sends on a WebSocket where the server may close the connection before
    /// the frame is fully written; returns whether the write went through.
    pub async fn send_may_fail(&mut self, text: &str) -> bool {
        match &mut self.sender {
            Sender::Raw(sink) => matches!(
                timeout(WAIT, sink.send(WsMessage::text(text))).await,
                Ok(Ok(()))
            ),
            _ => panic!("only for the raw WebSocket"),
        }
    }

    /// Sends several messages in one SockJS frame / `xhr_send` body.
    pub async fn send_batch(&mut self, texts: &[&str]) {
        let frame = serde_json::to_string(texts).expect("frame");
        match &mut self.sender {
            Sender::Raw(_) => panic!("the raw WebSocket has no batches"),
            Sender::Framed(sink) => timeout(WAIT, sink.send(WsMessage::text(frame)))
                .await
                .expect("ws send in time")
                .expect("ws send"),
            Sender::Xhr { .. } => {
                let status = self.send_raw_body(frame).await;
                assert_eq!(status, 204, "xhr_send is answered 204");
            }
            Sender::Jsonp { .. } => panic!("batches are tested over xhr_send"),
        }
    }

    /// Posts `body` to `xhr_send` as is; returns the status.
    pub async fn send_raw_body(&mut self, body: String) -> reqwest::StatusCode {
        let Sender::Xhr { http, url } = &self.sender else {
            panic!("only xhr transports post bodies");
        };
        timeout(WAIT, http.post(url.as_str()).body(body).send())
            .await
            .expect("xhr_send in time")
            .map(|r| r.status())
            .unwrap_or(reqwest::StatusCode::INTERNAL_SERVER_ERROR)
    }

    pub async fn send_json(&mut self, packet: &Value) {
        self.send(&packet.to_string()).await;
    }

    /// The next thing the reader saw (a message or the close).
    pub async fn next(&mut self) -> Incoming {
        timeout(WAIT, self.inbox.recv())
            .await
            .unwrap_or_else(|_| panic!("{:?}: nothing received within {WAIT:?}", self.transport))
            .unwrap_or(Incoming::Closed(0, "reader ended".into()))
    }

    /// The next message, as text.
    pub async fn recv(&mut self) -> String {
        match self.next().await {
            Incoming::Message(text) => text,
            closed => panic!("{:?}: expected a message, got {closed:?}", self.transport),
        }
    }

    /// The next message, parsed.
    pub async fn recv_json(&mut self) -> Value {
        let text = self.recv().await;
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    /// Asserts that nothing arrives for [`QUIET`].
    pub async fn expect_quiet(&mut self) {
        if let Ok(Some(got)) = timeout(QUIET, self.inbox.recv()).await {
            panic!("{:?}: expected nothing, got {got:?}", self.transport);
        }
    }

    /// A polling client finishes its current request and polls no more, so
    /// the server sees no receiver (unlike [`Client::close`], which cuts the
    /// pending request).
    pub fn stop_polling(&self) {
        assert!(
            matches!(
                self.transport,
                Transport::XhrPolling | Transport::JsonpPolling
            ),
            "only polling transports"
        );
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Closes the transport as a browser would (polling clients just stop).
    pub async fn close(mut self) {
        match &mut self.sender {
            Sender::Raw(sink) | Sender::Framed(sink) => {
                let _ = timeout(WAIT, sink.close()).await;
            }
            Sender::Xhr { .. } | Sender::Jsonp { .. } => {}
        }
        self.reader.abort();
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

const OPEN_MARKER: &str = "\u{0}open";

/// Turns one SockJS frame into what it carries; `false` once closed.
fn unframe(frame: &str, tx: &mpsc::UnboundedSender<Incoming>) -> bool {
    let frame = frame.trim_end_matches('\n');
    match frame.as_bytes().first() {
        Some(b'o') => tx.send(Incoming::Message(OPEN_MARKER.into())).is_ok(),
        Some(b'h') => true,
        Some(b'a') => {
            let messages: Vec<String> = serde_json::from_str(&frame[1..])
                .unwrap_or_else(|e| panic!("bad a-frame ({e}): {frame}"));
            messages
                .into_iter()
                .all(|m| tx.send(Incoming::Message(m)).is_ok())
        }
        Some(b'c') => {
            let (code, reason): (u16, String) = serde_json::from_str(&frame[1..])
                .unwrap_or_else(|e| panic!("bad c-frame ({e}): {frame}"));
            let _ = tx.send(Incoming::Closed(code, reason));
            false
        }
        _ => panic!("unknown SockJS frame: {frame:?}"),
    }
}

async fn read_ws(
    mut stream: futures_util::stream::SplitStream<
        tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
    >,
    tx: mpsc::UnboundedSender<Incoming>,
    framed: bool,
) {
    while let Some(message) = stream.next().await {
        match message {
            Ok(WsMessage::Text(text)) => {
                let keep_going = if framed {
                    unframe(text.as_str(), &tx)
                } else {
                    tx.send(Incoming::Message(text.as_str().to_owned())).is_ok()
                };
                if !keep_going {
                    return;
                }
            }
            Ok(WsMessage::Close(frame)) => {
                let (code, reason) = frame
                    .map(|f| (u16::from(f.code), f.reason.as_str().to_owned()))
                    .unwrap_or((1005, String::new()));
                let _ = tx.send(Incoming::Closed(code, reason));
                return;
            }
            Ok(_) => {}
            Err(e) => {
                let _ = tx.send(Incoming::Closed(1006, e.to_string()));
                return;
            }
        }
    }
    let _ = tx.send(Incoming::Closed(1006, "stream ended".into()));
}

/// Keeps one receiving request open at a time, as sockjs-client does.
async fn read_xhr(
    http: reqwest::Client,
    base: String,
    streaming: bool,
    tx: mpsc::UnboundedSender<Incoming>,
    stop: Arc<AtomicBool>,
) {
    let url = format!("{base}/{}", if streaming { "xhr_streaming" } else { "xhr" });
    // Bounded: a test lives far shorter than this many requests.
    for _ in 0..100_000 {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let response = match http.post(url.as_str()).send().await {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.send(Incoming::Closed(1006, e.to_string()));
                return;
            }
        };
        let mut body = response.bytes_stream();
        let mut pending = String::new();
        while let Some(chunk) = body.next().await {
            let Ok(chunk) = chunk else { break };
            pending.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = pending.find('\n') {
                let frame: String = pending.drain(..=end).collect();
                if !unframe(&frame, &tx) {
                    return;
                }
            }
        }
        if tx.is_closed() {
            return;
        }
    }
}

/// Keeps one `eventsource` stream open at a time, re-opening it when the
/// server ends it (response limit).
async fn read_eventsource(
    http: reqwest::Client,
    base: String,
    tx: mpsc::UnboundedSender<Incoming>,
) {
    let url = format!("{base}/eventsource");
    for _ in 0..10_000 {
        let response = match http.get(url.as_str()).send().await {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.send(Incoming::Closed(1006, e.to_string()));
                return;
            }
        };
        let mut body = response.bytes_stream();
        let mut pending = String::new();
        while let Some(chunk) = body.next().await {
            let Ok(chunk) = chunk else { break };
            pending.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = pending.find("\r\n\r\n") {
                let event: String = pending.drain(..end + 4).collect();
                if let Some(frame) = event.trim_start_matches("\r\n").strip_prefix("data: ")
                    && !unframe(frame.trim_end(), &tx)
                {
                    return;
                }
            }
        }
        if tx.is_closed() {
            return;
        }
    }
}

/// Polls `jsonp?c=cb` as sockjs-client's jsonp transport does.
async fn read_jsonp(
    http: reqwest::Client,
    base: String,
    tx: mpsc::UnboundedSender<Incoming>,
    stop: Arc<AtomicBool>,
) {
    let url = format!("{base}/jsonp?c=cb");
    for _ in 0..100_000 {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let body = match http.get(url.as_str()).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(e) => {
                let _ = tx.send(Incoming::Closed(1006, e.to_string()));
                return;
            }
        };
        let (Some(start), Some(end)) = (body.find('('), body.rfind(')')) else {
            panic!("not a jsonp answer: {body:?}");
        };
        let frame: String = serde_json::from_str(&body[start + 1..end])
            .unwrap_or_else(|e| panic!("bad jsonp argument ({e}): {body:?}"));
        if !unframe(&frame, &tx) {
            return;
        }
    }
}

/// `application/x-www-form-urlencoded` value encoding.
fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.*".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A videre packet.
pub fn packet(event: &str, user: &str, room: &str, payload: Value) -> Value {
    json!({"Header": {"Event": event, "UserId": user, "RoomId": room}, "Payload": payload})
}

/// Sends a connect and returns nothing; callers read the answers.
pub async fn connect(client: &mut Client, user: &str, room: &str) {
    client
        .send_json(&packet("connect", user, room, json!("{}")))
        .await;
}

/// Reads the next packet and checks its event, user and room.
pub async fn expect_packet(client: &mut Client, event: &str, user: &str, room: &str) -> Value {
    let got = client.recv_json().await;
    assert_eq!(
        got["Header"]["Event"], event,
        "{:?} got {got}",
        client.transport
    );
    assert_eq!(
        got["Header"]["UserId"], user,
        "{:?} got {got}",
        client.transport
    );
    assert_eq!(
        got["Header"]["RoomId"], room,
        "{:?} got {got}",
        client.transport
    );
    got
}

/// The live videre rooms according to `/stats`.
pub async fn videre_rooms(server: &BackgroundServer) -> i64 {
    stats(server).await["rooms"]["videre"]
        .as_i64()
        .expect("rooms.videre")
}

/// The `/stats` snapshot.
pub async fn stats(server: &BackgroundServer) -> Value {
    let stats: Value = timeout(WAIT, async {
        let body = reqwest::get(server.http_url("/stats"))
            .await
            .expect("GET /stats")
            .text()
            .await
            .expect("stats body");
        serde_json::from_str(&body).expect("stats JSON")
    })
    .await
    .expect("/stats in time");
    stats
}

/// Waits (bounded) until `/stats` counts `expected` open connections.
pub async fn wait_for_connections(server: &BackgroundServer, expected: i64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let open = stats(server).await["connections_open"]
            .as_i64()
            .expect("connections_open");
        if open == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "open connections stayed at {open}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (bounded) until `/stats` counts `expected` videre rooms.
pub async fn wait_for_rooms(server: &BackgroundServer, expected: i64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let rooms = videre_rooms(server).await;
        if rooms == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "videre rooms stayed at {rooms}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
