//! sigway's soak client: thousands of clients of both protocols, over every
//! SockJS transport, against one running gateway on loopback, then a check
//! that the gateway let go of everything. `tests/soak/soak.sh` builds a
//! release gateway, starts it with short timings and runs this against it;
//! the script then checks the gateway's log.
//!
//! The run is a series of rounds (bounded by `--rounds` and `--seconds`).
//! In each round, at once and in random order:
//! - Netflux pairs (current dialect, and legacy ones): a member and a
//!   joiner bound to it relay `--messages` contents each way; every content
//!   must arrive, in order; then each side leaves cleanly (close frame) or
//!   vanishes (the TCP connection dropped, no close frame), at random;
//! - videre rooms of `--users` users, each user on a random SockJS
//!   transport (websocket, xhr-streaming, xhr-polling, eventsource,
//!   htmlfile, jsonp-polling, raw websocket): everyone joins, everyone
//!   broadcasts `--messages` packets, and everyone must receive every
//!   broadcast of the room, its own included, in each sender's order; then
//!   each leaves with a `disconnect` packet and a clean close, or vanishes;
//! - misbehaving clients: a Netflux peer that floods contents, a Netflux
//!   joiner that never reads while its member sends it megabytes, a videre
//!   user that floods broadcasts into a room whose other user never reads,
//!   and a silent videre user that never reads in an ordinary room.
//!
//! The first round is a warm-up: the gateway's RSS after it (and its
//! clients' departure) is the baseline "start" figure, since the allocator
//! keeps the memory of the first wave's peak for the next ones; the RSS of
//! the idle gateway before any client is printed too. At the end the client
//! waits (bounded) until `/stats` shows no open connection or session and no
//! room, then prints clients, messages, RSS (idle, start, peak, end) and
//! leftovers, and fails (exit 1) if a well-behaved client missed a message,
//! something is left over, or RSS ended more than `--rss-slack-mib` above
//! its steady figure, read a quarter into the run (the allocator keeps the
//! working set of the busiest round reached so far; what grows after that
//! is a leak).
//!
//! ```text
//! cargo run --release --example soak -- --url http://127.0.0.1:8000 --server-pid <pid>
//! ```
//! Loopback only: the URL must name 127.0.0.1 or localhost.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use rand::Rng;
use rand::seq::SliceRandom;
use sigway::proto::legacy as legacy_wire;
use sigway::proto::sigver::{Content, GroupData, Message, message::Type};
use tokio::net::TcpStream;
use tokio::sync::{Barrier, mpsc};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message as Ws;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Error = Box<dyn std::error::Error + Send + Sync>;
/// One client flow of a round, named for the report.
type Flow = (
    String,
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), Error>> + Send>>,
);

/// How long any one wait of a well-behaved client may take.
const WAIT: Duration = Duration::from_secs(30);
/// How long one client flow may take in all.
const FLOW_LIMIT: Duration = Duration::from_secs(120);

#[derive(Parser, Clone)]
#[command(about = "Soak test client for sigway (loopback only)")]
struct Cli {
    /// The gateway, http://127.0.0.1:PORT.
    #[arg(long)]
    url: String,
    /// The gateway's process id (its RSS is read from /proc).
    #[arg(long)]
    server_pid: u32,
    /// Rounds at most (the first is the warm-up).
    #[arg(long, default_value_t = 100)]
    rounds: usize,
    /// No new round starts after this many seconds.
    #[arg(long, default_value_t = 100)]
    seconds: u64,
    /// Netflux pairs per round (a tenth of them in the legacy dialect).
    #[arg(long, default_value_t = 150)]
    pairs: usize,
    /// videre rooms per round.
    #[arg(long, default_value_t = 60)]
    rooms: usize,
    /// Users per videre room.
    #[arg(long, default_value_t = 3)]
    users: usize,
    /// Messages each well-behaved client sends.
    #[arg(long, default_value_t = 10)]
    messages: usize,
    /// The gateway's SockJS prefix.
    #[arg(long, default_value = "/echo")]
    prefix: String,
    /// How long leftovers may take to go (SockJS disconnect delay,
    /// heartbeat expiry), at most.
    #[arg(long, default_value_t = 30)]
    settle_seconds: u64,
    /// The end RSS may exceed the steady figure (a quarter in) by this much.
    #[arg(long, default_value_t = 8)]
    rss_slack_mib: u64,
}

/// What the run counted.
#[derive(Default)]
struct Tally {
    clients: AtomicU64,
    /// Messages a well-behaved client received and checked.
    delivered: AtomicU64,
    /// Messages misbehaving clients sent.
    flooded: AtomicU64,
    clean_leaves: AtomicU64,
    vanished: AtomicU64,
    /// Well-behaved flows that failed, with why (the first few kept).
    failures: AtomicU64,
    failure_notes: std::sync::Mutex<Vec<String>>,
}

impl Tally {
    fn failed(&self, what: &str, error: &Error) {
        self.failures.fetch_add(1, Relaxed);
        if let Ok(mut notes) = self.failure_notes.lock()
            && notes.len() < 10
        {
            notes.push(format!("{what}: {error}"));
        }
    }

    fn left(&self, clean: bool) {
        if clean {
            self.clean_leaves.fetch_add(1, Relaxed);
        } else {
            self.vanished.fetch_add(1, Relaxed);
        }
    }
}

// ---------------------------------------------------------------- sigver

fn frame(r#type: Type) -> Ws {
    Ws::Binary(
        Message {
            r#type: Some(r#type),
        }
        .encode_to_vec()
        .into(),
    )
}

fn legacy_frame(r#type: legacy_wire::message::Type) -> Ws {
    Ws::Binary(
        legacy_wire::Message {
            r#type: Some(r#type),
        }
        .encode_to_vec()
        .into(),
    )
}

async fn open_ws(url: &str) -> Result<Socket, Error> {
    let (ws, _) = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::connect_async_with_config(url, None, true),
    )
    .await??;
    Ok(ws)
}

/// The next binary frame, answering heartbeats on the way (`answer`
/// builds the dialect's heartbeat from a frame, if it is one).
async fn next_binary(
    ws: &mut Socket,
    heartbeat: fn(&[u8]) -> Option<Ws>,
) -> Result<Vec<u8>, Error> {
    loop {
        let message = tokio::time::timeout(WAIT, ws.next())
            .await?
            .ok_or("connection ended")??;
        match message {
            Ws::Binary(bytes) => match heartbeat(&bytes) {
                Some(answer) => ws.send(answer).await?,
                None => return Ok(bytes.to_vec()),
            },
            Ws::Close(close) => return Err(format!("closed by the server: {close:?}").into()),
            _ => {}
        }
    }
}

fn current_heartbeat(bytes: &[u8]) -> Option<Ws> {
    match Message::decode(bytes).ok()?.r#type {
        Some(Type::Heartbeat(_)) => Some(frame(Type::Heartbeat(true))),
        _ => None,
    }
}

fn legacy_heartbeat(bytes: &[u8]) -> Option<Ws> {
    use legacy_wire::message::Type as L;
    match legacy_wire::Message::decode(bytes).ok()?.r#type {
        Some(L::Heartbeat(_)) => Some(legacy_frame(L::Heartbeat(true))),
        _ => None,
    }
}

async fn next_current(ws: &mut Socket) -> Result<Type, Error> {
    let bytes = next_binary(ws, current_heartbeat).await?;
    Message::decode(bytes.as_slice())?
        .r#type
        .ok_or_else(|| "a message with no type".into())
}

async fn next_legacy(ws: &mut Socket) -> Result<legacy_wire::message::Type, Error> {
    let bytes = next_binary(ws, legacy_heartbeat).await?;
    legacy_wire::Message::decode(bytes.as_slice())?
        .r#type
        .ok_or_else(|| "a message with no type".into())
}

/// A fair coin (its generator never held across an `await`, which would
/// make the flow's future not `Send`).
fn coin() -> bool {
    rand::rng().random_bool(0.5)
}

/// Ends a connection as the flow decided: a close frame (and the server's
/// answer, bounded), or dropping the TCP connection without one.
async fn end_ws(mut ws: Socket, clean: bool, tally: &Tally) {
    tally.left(clean);
    if clean {
        let _ = ws.close(None).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(Ok(_)) = ws.next().await {}
        })
        .await;
    }
    drop(ws);
}

/// A Netflux pair in the current dialect: relay both ways, check every
/// content, leave in a random way and order.
async fn current_pair(
    ws_base: String,
    key: String,
    messages: usize,
    tally: Arc<Tally>,
) -> Result<(), Error> {
    let url = format!("{ws_base}/{key}");
    let mut member = open_ws(&url).await?;
    member
        .send(frame(Type::Connect(GroupData {
            id: 1,
            members: vec![],
        })))
        .await?;
    match next_current(&mut member).await? {
        Type::Connected(true) => {}
        other => return Err(format!("member expected connected:true, got {other:?}").into()),
    }
    let mut joiner = open_ws(&url).await?;
    joiner
        .send(frame(Type::Connect(GroupData {
            id: 2,
            members: vec![],
        })))
        .await?;
    match next_current(&mut joiner).await? {
        Type::Connected(false) => {}
        other => return Err(format!("joiner expected connected:false, got {other:?}").into()),
    }
    tally.clients.fetch_add(2, Relaxed);
    for n in 0..messages {
        let data = format!("up {n}").into_bytes().into();
        joiner
            .send(frame(Type::Content(Content {
                data,
                ..Content::default()
            })))
            .await?;
    }
    let mut signaling_id = 0;
    for n in 0..messages {
        match next_current(&mut member).await? {
            Type::Content(c) if c.data == format!("up {n}").as_bytes() && c.sender_id != 0 => {
                signaling_id = c.sender_id;
            }
            other => return Err(format!("member expected up {n}, got {other:?}").into()),
        }
        tally.delivered.fetch_add(1, Relaxed);
    }
    for n in 0..messages {
        let data = format!("down {n}").into_bytes().into();
        let content = Content {
            recipient_id: signaling_id,
            data,
            ..Content::default()
        };
        member.send(frame(Type::Content(content))).await?;
    }
    for n in 0..messages {
        match next_current(&mut joiner).await? {
            Type::Content(c) if c.data == format!("down {n}").as_bytes() => {}
            other => return Err(format!("joiner expected down {n}, got {other:?}").into()),
        }
        tally.delivered.fetch_add(1, Relaxed);
    }
    let (first, second) = if coin() {
        (member, joiner)
    } else {
        (joiner, member)
    };
    end_ws(first, coin(), &tally).await;
    end_ws(second, coin(), &tally).await;
    Ok(())
}

/// A Netflux pair in the legacy dialect (sigver 18): the first peer is
/// answered `isFirst: true`, the second `false` and bound to it.
async fn legacy_pair(
    ws_base: String,
    key: String,
    messages: usize,
    tally: Arc<Tally>,
) -> Result<(), Error> {
    use legacy_wire::content::Type as Payload;
    use legacy_wire::message::Type as L;
    let url = format!("{ws_base}/{key}?protocol=legacy");
    let mut member = open_ws(&url).await?;
    match next_legacy(&mut member).await? {
        L::IsFirst(true) => {}
        other => return Err(format!("legacy member expected isFirst:true, got {other:?}").into()),
    }
    member.send(legacy_frame(L::Stable(true))).await?;
    let mut joiner = open_ws(&url).await?;
    match next_legacy(&mut joiner).await? {
        L::IsFirst(false) => {}
        other => return Err(format!("legacy joiner expected isFirst:false, got {other:?}").into()),
    }
    tally.clients.fetch_add(2, Relaxed);
    for n in 0..messages {
        let content = legacy_wire::Content {
            id: 0,
            r#type: Some(Payload::Data(format!("up {n}").into_bytes().into())),
        };
        joiner.send(legacy_frame(L::Content(content))).await?;
    }
    let mut route = 0;
    for n in 0..messages {
        match next_legacy(&mut member).await? {
            L::Content(c)
                if c.r#type == Some(Payload::Data(format!("up {n}").into_bytes().into())) =>
            {
                route = c.id
            }
            other => return Err(format!("legacy member expected up {n}, got {other:?}").into()),
        }
        tally.delivered.fetch_add(1, Relaxed);
    }
    for n in 0..messages {
        let content = legacy_wire::Content {
            id: route,
            r#type: Some(Payload::Data(format!("down {n}").into_bytes().into())),
        };
        member.send(legacy_frame(L::Content(content))).await?;
    }
    for n in 0..messages {
        match next_legacy(&mut joiner).await? {
            L::Content(c)
                if c.r#type == Some(Payload::Data(format!("down {n}").into_bytes().into())) => {}
            other => return Err(format!("legacy joiner expected down {n}, got {other:?}").into()),
        }
        tally.delivered.fetch_add(1, Relaxed);
    }
    joiner.send(legacy_frame(L::Stable(true))).await?;
    let (first, second) = if coin() {
        (member, joiner)
    } else {
        (joiner, member)
    };
    end_ws(first, coin(), &tally).await;
    end_ws(second, coin(), &tally).await;
    Ok(())
}

/// A Netflux peer that floods contents (to nowhere: it is alone) as fast
/// as the socket takes them, then vanishes.
async fn sigver_flooder(ws_base: String, key: String, tally: Arc<Tally>) -> Result<(), Error> {
    let mut ws = open_ws(&format!("{ws_base}/{key}")).await?;
    ws.send(frame(Type::Connect(GroupData {
        id: 9,
        members: vec![],
    })))
    .await?;
    tally.clients.fetch_add(1, Relaxed);
    let data = bytes::Bytes::from(vec![b'f'; 512]);
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut sent = 0u64;
    while Instant::now() < deadline && sent < 20_000 {
        let content = Content {
            recipient_id: 77,
            data: data.clone(),
            ..Content::default()
        };
        if ws.send(frame(Type::Content(content))).await.is_err() {
            break;
        }
        sent += 1;
    }
    tally.flooded.fetch_add(sent, Relaxed);
    end_ws(ws, false, &tally).await;
    Ok(())
}

/// A joiner that never reads while its member sends it megabytes: the
/// gateway must cut the joiner off and keep serving the member.
async fn sigver_non_reader(ws_base: String, key: String, tally: Arc<Tally>) -> Result<(), Error> {
    let url = format!("{ws_base}/{key}");
    let mut member = open_ws(&url).await?;
    member
        .send(frame(Type::Connect(GroupData {
            id: 1,
            members: vec![],
        })))
        .await?;
    next_current(&mut member).await?;
    let mut joiner = open_ws(&url).await?;
    joiner
        .send(frame(Type::Connect(GroupData {
            id: 2,
            members: vec![],
        })))
        .await?;
    next_current(&mut joiner).await?;
    tally.clients.fetch_add(2, Relaxed);
    joiner
        .send(frame(Type::Content(Content {
            data: bytes::Bytes::from_static(b"hello"),
            ..Content::default()
        })))
        .await?;
    let id = match next_current(&mut member).await? {
        Type::Content(c) => c.sender_id,
        other => return Err(format!("expected the joiner's content, got {other:?}").into()),
    };
    let data = bytes::Bytes::from(vec![b'n'; 4096]);
    let mut sent = 0u64;
    // The joiner reads nothing from here on; its queue overflows and the
    // gateway closes it, after which contents to it go nowhere.
    for _ in 0..3_000 {
        let content = Content {
            recipient_id: id,
            data: data.clone(),
            ..Content::default()
        };
        if tokio::time::timeout(WAIT, member.send(frame(Type::Content(content))))
            .await
            .is_err()
        {
            return Err("the member could not send while its joiner did not read".into());
        }
        sent += 1;
    }
    tally.flooded.fetch_add(sent, Relaxed);
    // The member is still served: a heartbeat exchange works.
    let alive = tokio::time::timeout(WAIT, async {
        loop {
            let message = member.next().await.ok_or("member connection ended")??;
            if let Ws::Binary(bytes) = message
                && let Some(answer) = current_heartbeat(&bytes)
            {
                member.send(answer).await?;
                return Ok::<(), Error>(());
            }
        }
    })
    .await;
    match alive {
        Ok(Ok(())) => {}
        Ok(Err(error)) => return Err(format!("member after a non-reader: {error}").into()),
        Err(_) => return Err("member heard no heartbeat after a non-reader".into()),
    }
    end_ws(joiner, false, &tally).await;
    end_ws(member, true, &tally).await;
    Ok(())
}

// ---------------------------------------------------------------- SockJS

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Websocket,
    XhrStreaming,
    XhrPolling,
    EventSource,
    HtmlFile,
    JsonpPolling,
    RawWebsocket,
}

const TRANSPORTS: [Transport; 7] = [
    Transport::Websocket,
    Transport::XhrStreaming,
    Transport::XhrPolling,
    Transport::EventSource,
    Transport::HtmlFile,
    Transport::JsonpPolling,
    Transport::RawWebsocket,
];

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::Websocket => "websocket",
            Transport::XhrStreaming => "xhr-streaming",
            Transport::XhrPolling => "xhr-polling",
            Transport::EventSource => "eventsource",
            Transport::HtmlFile => "htmlfile",
            Transport::JsonpPolling => "jsonp-polling",
            Transport::RawWebsocket => "raw websocket",
        }
    }
}

/// Where a SockJS client's messages come from: a task reading its
/// transport and handing over each message (or the reason it ended).
type Inbox = mpsc::UnboundedReceiver<Result<String, String>>;

/// How a SockJS client sends.
enum Sender {
    Ws(futures_util::stream::SplitSink<Socket, Ws>, bool),
    Http {
        http: reqwest::Client,
        url: String,
        jsonp: bool,
    },
}

/// One SockJS session of some transport, as a videre client uses it.
struct SockjsClient {
    transport: Transport,
    sender: Sender,
    inbox: Inbox,
    reader: JoinHandle<()>,
}

/// SockJS frames (`o`, `h`, `a[...]`, `c[...]`) as messages for the inbox;
/// `false` when the session is over.
fn deliver(frame: &str, inbox: &mpsc::UnboundedSender<Result<String, String>>) -> bool {
    match frame.as_bytes().first() {
        Some(b'o' | b'h') | None => true,
        Some(b'a') => match serde_json::from_str::<Vec<String>>(&frame[1..]) {
            Ok(messages) => messages.into_iter().all(|m| inbox.send(Ok(m)).is_ok()),
            Err(error) => {
                let _ = inbox.send(Err(format!("bad frame {frame:?}: {error}")));
                false
            }
        },
        _ => {
            let _ = inbox.send(Err(format!("session closed: {frame}")));
            false
        }
    }
}

/// eventsource's percent escapes (`%`, CR, LF, NUL) undone.
fn eventsource_unescape(data: &str) -> String {
    data.replace("%0D", "\r")
        .replace("%0A", "\n")
        .replace("%00", "\0")
        .replace("%25", "%")
}

/// The next complete frame in a streaming body, if any, and what it used.
fn take_streamed(buffer: &str, transport: Transport) -> Option<(String, usize)> {
    match transport {
        Transport::XhrStreaming => {
            let end = buffer.find('\n')?;
            Some((buffer[..end].to_owned(), end + 1))
        }
        Transport::EventSource => {
            let end = buffer.find("\r\n\r\n")?;
            let event = buffer[..end].trim_start_matches("\r\n");
            let data = event.strip_prefix("data: ").unwrap_or("h");
            Some((eventsource_unescape(data), end + 4))
        }
        _ => {
            // htmlfile: frames are `<script>\np("<frame>");\n</script>\r\n`.
            const OPEN: &str = "<script>\np(";
            const CLOSE: &str = ");\n</script>\r\n";
            let start = buffer.find(OPEN)?;
            let rest = &buffer[start + OPEN.len()..];
            let end = rest.find(CLOSE)?;
            let frame = serde_json::from_str::<String>(&rest[..end])
                .unwrap_or_else(|_| "c[0,\"unreadable\"]".into());
            Some((frame, start + OPEN.len() + end + CLOSE.len()))
        }
    }
}

fn session_path() -> String {
    let mut rng = rand::rng();
    let session: String = (0..12)
        .map(|_| rng.sample(rand::distr::Alphanumeric) as char)
        .collect();
    format!("{}/{session}", rng.random_range(100..999))
}

impl SockjsClient {
    /// Opens a session and starts its reader; `read` false: nothing reads
    /// it (a client that stops reading; WebSocket transports only).
    async fn open(
        http: &reqwest::Client,
        base: &str,
        transport: Transport,
        read: bool,
    ) -> Result<Self, Error> {
        let (tx, inbox) = mpsc::unbounded_channel();
        let session = format!("{base}/{}", session_path());
        let ws_base = base.replacen("http://", "ws://", 1);
        match transport {
            Transport::Websocket | Transport::RawWebsocket => {
                let raw = transport == Transport::RawWebsocket;
                let url = if raw {
                    format!("{ws_base}/websocket")
                } else {
                    format!("{}/websocket", session.replacen("http://", "ws://", 1))
                };
                let ws = open_ws(&url).await?;
                let (sink, mut stream) = ws.split();
                let reader = tokio::spawn(async move {
                    if !read {
                        // Hold the socket without reading it.
                        std::future::pending::<()>().await;
                    }
                    while let Some(message) = stream.next().await {
                        let go_on = match message {
                            Ok(Ws::Text(text)) if raw => tx.send(Ok(text.to_string())).is_ok(),
                            Ok(Ws::Text(text)) => deliver(&text, &tx),
                            Ok(Ws::Close(close)) => {
                                let _ = tx.send(Err(format!("closed: {close:?}")));
                                false
                            }
                            Ok(_) => true,
                            Err(error) => {
                                let _ = tx.send(Err(error.to_string()));
                                false
                            }
                        };
                        if !go_on {
                            break;
                        }
                    }
                });
                // The framed WebSocket says `o` first; the reader skips it.
                Ok(Self {
                    transport,
                    sender: Sender::Ws(sink, raw),
                    inbox,
                    reader,
                })
            }
            Transport::XhrPolling | Transport::JsonpPolling => {
                let jsonp = transport == Transport::JsonpPolling;
                let poll = if jsonp {
                    format!("{session}/jsonp?c=cb")
                } else {
                    format!("{session}/xhr")
                };
                let first = Self::poll_once(http, &poll, jsonp).await?;
                if first != "o" {
                    return Err(format!("{}: expected o, got {first:?}", transport.name()).into());
                }
                let http_reader = http.clone();
                let reader = tokio::spawn(async move {
                    loop {
                        match Self::poll_once(&http_reader, &poll, jsonp).await {
                            Ok(frame) => {
                                if !deliver(&frame, &tx) {
                                    break;
                                }
                            }
                            Err(error) => {
                                let _ = tx.send(Err(error.to_string()));
                                break;
                            }
                        }
                    }
                });
                let send_url = if jsonp {
                    format!("{session}/jsonp_send")
                } else {
                    format!("{session}/xhr_send")
                };
                Ok(Self {
                    transport,
                    sender: Sender::Http {
                        http: http.clone(),
                        url: send_url,
                        jsonp,
                    },
                    inbox,
                    reader,
                })
            }
            Transport::XhrStreaming | Transport::EventSource | Transport::HtmlFile => {
                let url = match transport {
                    Transport::XhrStreaming => format!("{session}/xhr_streaming"),
                    Transport::EventSource => format!("{session}/eventsource"),
                    _ => format!("{session}/htmlfile?c=cb"),
                };
                let (opened_tx, opened) = tokio::sync::oneshot::channel();
                let http_reader = http.clone();
                let reader = tokio::spawn(async move {
                    let mut opened_tx = Some(opened_tx);
                    // A streaming response ends after `response_limit`
                    // bytes; the client then opens the next one.
                    for _ in 0..1_000 {
                        let request = if transport == Transport::XhrStreaming {
                            http_reader.post(&url)
                        } else {
                            http_reader.get(&url)
                        };
                        let response = match request.send().await {
                            Ok(response) if response.status().is_success() => response,
                            Ok(response) => {
                                let _ = tx.send(Err(format!("status {}", response.status())));
                                return;
                            }
                            Err(error) => {
                                let _ = tx.send(Err(error.to_string()));
                                return;
                            }
                        };
                        let mut body = response.bytes_stream();
                        let mut buffer = String::new();
                        let mut pending = Vec::new();
                        while let Some(chunk) = body.next().await {
                            let Ok(chunk) = chunk else { break };
                            pending.extend_from_slice(&chunk);
                            // Chunks may split a UTF-8 character.
                            let valid = match std::str::from_utf8(&pending) {
                                Ok(text) => text.len(),
                                Err(error) => error.valid_up_to(),
                            };
                            buffer.push_str(
                                std::str::from_utf8(&pending[..valid]).unwrap_or_default(),
                            );
                            pending.drain(..valid);
                            while let Some((frame, used)) = take_streamed(&buffer, transport) {
                                buffer.drain(..used);
                                if frame == "o"
                                    && let Some(opened) = opened_tx.take()
                                {
                                    let _ = opened.send(());
                                }
                                if frame.chars().all(|c| c == 'h') {
                                    continue; // prelude or heartbeat
                                }
                                if !deliver(&frame, &tx) {
                                    return;
                                }
                            }
                        }
                    }
                });
                tokio::time::timeout(WAIT, opened)
                    .await?
                    .map_err(|_| format!("{}: no open frame", transport.name()))?;
                let send_url = format!("{session}/xhr_send");
                Ok(Self {
                    transport,
                    sender: Sender::Http {
                        http: http.clone(),
                        url: send_url,
                        jsonp: false,
                    },
                    inbox,
                    reader,
                })
            }
        }
    }

    /// One xhr or jsonp poll: the frame it returns.
    async fn poll_once(http: &reqwest::Client, url: &str, jsonp: bool) -> Result<String, Error> {
        let response = if jsonp {
            http.get(url).send().await?
        } else {
            http.post(url).send().await?
        };
        if !response.status().is_success() {
            return Err(format!("poll status {}", response.status()).into());
        }
        let body = response.text().await?;
        if jsonp {
            // `/**/cb("<frame>");\r\n`
            let literal = body
                .strip_prefix("/**/cb(")
                .and_then(|rest| rest.trim_end().strip_suffix(");"))
                .ok_or_else(|| format!("not a jsonp answer: {body:?}"))?;
            Ok(serde_json::from_str::<String>(literal)?)
        } else {
            Ok(body.trim_end_matches('\n').to_owned())
        }
    }

    async fn send(&mut self, message: &str) -> Result<(), Error> {
        match &mut self.sender {
            Sender::Ws(sink, raw) => {
                let text = if *raw {
                    message.to_owned()
                } else {
                    serde_json::to_string(&[message])?
                };
                tokio::time::timeout(WAIT, sink.send(Ws::text(text))).await??;
            }
            Sender::Http { http, url, jsonp } => {
                let batch = serde_json::to_string(&[message])?;
                let request = if *jsonp {
                    http.post(url.as_str())
                        .header("content-type", "application/x-www-form-urlencoded")
                        .body(serde_urlencoded::to_string([("d", batch.as_str())])?)
                } else {
                    http.post(url.as_str())
                        .header("content-type", "text/plain;charset=UTF-8")
                        .body(batch)
                };
                let response = request.send().await?;
                if !response.status().is_success() {
                    return Err(format!(
                        "{} send: status {}",
                        self.transport.name(),
                        response.status()
                    )
                    .into());
                }
            }
        }
        Ok(())
    }

    async fn recv(&mut self) -> Result<String, Error> {
        match tokio::time::timeout(WAIT, self.inbox.recv()).await {
            Ok(Some(Ok(message))) => Ok(message),
            Ok(Some(Err(error))) => Err(format!("{}: {error}", self.transport.name()).into()),
            Ok(None) => Err(format!("{}: reader ended", self.transport.name()).into()),
            Err(_) => {
                Err(format!("{}: nothing received for {WAIT:?}", self.transport.name()).into())
            }
        }
    }

    /// Ends the session: a WebSocket close frame for the WebSocket
    /// transports (clean), or just going away (every HTTP transport, and
    /// `clean == false`): the gateway closes the session after its
    /// disconnect delay.
    async fn end(mut self, clean: bool, tally: &Tally) {
        tally.left(clean);
        if clean && let Sender::Ws(sink, _) = &mut self.sender {
            let _ = tokio::time::timeout(Duration::from_secs(5), sink.close()).await;
        }
        self.reader.abort();
    }
}

/// A client dropped on a failure path stops its reader too, so that it
/// holds no session open behind the run's back.
impl Drop for SockjsClient {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

fn videre_packet(event: &str, user: &str, room: &str, payload: &str) -> String {
    serde_json::json!({"Header": {"Event": event, "UserId": user, "RoomId": room}, "Payload": payload})
        .to_string()
}

/// What a packet a client received says: (event, user, payload).
fn read_packet(text: &str) -> Result<(String, String, String), Error> {
    let value: serde_json::Value = serde_json::from_str(text)?;
    let field = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    Ok((
        field(&value["Header"]["Event"]),
        field(&value["Header"]["UserId"]),
        field(&value["Payload"]),
    ))
}

/// Waits for the others of a room at a barrier, bounded.
async fn meet(barrier: &Barrier) -> Result<(), Error> {
    tokio::time::timeout(WAIT, barrier.wait())
        .await
        .map(drop)
        .map_err(|_| "the others of the room did not arrive".into())
}

/// One user of an ordinary videre room: join, wait for everyone, broadcast,
/// check every broadcast of the room arrived in each sender's order, leave.
#[allow(clippy::too_many_arguments)]
async fn videre_user(
    http: reqwest::Client,
    base: String,
    room: String,
    index: usize,
    users: usize,
    messages: usize,
    transport: Transport,
    ready: Arc<Barrier>,
    tally: Arc<Tally>,
) -> Result<(), Error> {
    let user = format!("user{index}");
    let joined = async {
        let mut client = SockjsClient::open(&http, &base, transport, true).await?;
        tally.clients.fetch_add(1, Relaxed);
        client
            .send(&videre_packet("connect", &user, &room, ""))
            .await?;
        // Our own connect comes back once we are in; the announces of those
        // who join after us may come later, among the broadcasts.
        loop {
            let (event, from, _) = read_packet(&client.recv().await?)?;
            if event == "connect" && from == user {
                return Ok::<SockjsClient, Error>(client);
            }
        }
    }
    .await;
    // Everyone reaches the barrier, even after a failure, so that no one
    // waits long for a user that is gone.
    meet(&ready).await?;
    let mut client = joined?;
    for n in 0..messages {
        client
            .send(&videre_packet(
                "broadcast",
                &user,
                &room,
                &format!("{user} {n}"),
            ))
            .await?;
    }
    let mut next_from = vec![0usize; users];
    let mut received = 0;
    while received < users * messages {
        let (event, from, payload) = read_packet(&client.recv().await?)?;
        if event != "broadcast" {
            continue;
        }
        let sender: usize = from
            .strip_prefix("user")
            .and_then(|n| n.parse().ok())
            .ok_or("broadcast from a stranger")?;
        let expected = format!(
            "{from} {}",
            next_from.get(sender).copied().unwrap_or(usize::MAX)
        );
        if payload != expected {
            return Err(format!(
                "{}: expected {expected:?}, got {payload:?}",
                transport.name()
            )
            .into());
        }
        next_from[sender] += 1;
        received += 1;
        tally.delivered.fetch_add(1, Relaxed);
    }
    meet(&ready).await?;
    let clean = coin();
    if clean {
        client
            .send(&videre_packet("disconnect", &user, &room, ""))
            .await?;
    }
    client.end(clean, &tally).await;
    Ok(())
}

/// A user that joins an ordinary room over a WebSocket and then never
/// reads: the others must be served all the same.
async fn videre_silent(
    http: reqwest::Client,
    base: String,
    room: String,
    ready: Arc<Barrier>,
    tally: Arc<Tally>,
) -> Result<(), Error> {
    let transport = if coin() {
        Transport::Websocket
    } else {
        Transport::RawWebsocket
    };
    let joined = async {
        let mut client = SockjsClient::open(&http, &base, transport, false).await?;
        tally.clients.fetch_add(1, Relaxed);
        client
            .send(&videre_packet("connect", "silent", &room, ""))
            .await?;
        Ok::<SockjsClient, Error>(client)
    }
    .await;
    meet(&ready).await?;
    meet(&ready).await?;
    joined?.end(false, &tally).await;
    Ok(())
}

/// A room with a flooding user and a user that never reads.
async fn videre_flood(
    http: reqwest::Client,
    base: String,
    room: String,
    tally: Arc<Tally>,
) -> Result<(), Error> {
    let mut sleeper = SockjsClient::open(&http, &base, Transport::Websocket, false).await?;
    sleeper
        .send(&videre_packet("connect", "sleeper", &room, ""))
        .await?;
    let mut flooder = SockjsClient::open(&http, &base, Transport::Websocket, true).await?;
    flooder
        .send(&videre_packet("connect", "flooder", &room, ""))
        .await?;
    tally.clients.fetch_add(2, Relaxed);
    let payload = "x".repeat(1024);
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut sent = 0u64;
    while Instant::now() < deadline && sent < 5_000 {
        if flooder
            .send(&videre_packet("broadcast", "flooder", &room, &payload))
            .await
            .is_err()
        {
            break;
        }
        sent += 1;
    }
    tally.flooded.fetch_add(sent, Relaxed);
    flooder.end(false, &tally).await;
    sleeper.end(false, &tally).await;
    Ok(())
}

// ---------------------------------------------------------------- the run

fn rss_kib(pid: u32, field: &str) -> Result<u64, Error> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .ok_or("no such /proc field")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .ok_or("bad /proc line")?
        .parse()?)
}

async fn stats(http: &reqwest::Client, url: &str) -> Result<serde_json::Value, Error> {
    Ok(http
        .get(format!("{url}/stats"))
        .send()
        .await?
        .json()
        .await?)
}

/// Open connections and sessions, and rooms of each kind, per `/stats`.
fn leftovers(stats: &serde_json::Value) -> (u64, u64, u64, u64) {
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(u64::MAX);
    (
        n(&stats["connections_open"]),
        n(&stats["rooms"]["sigver"]),
        n(&stats["rooms"]["sigver_legacy"]),
        n(&stats["rooms"]["videre"]),
    )
}

/// Waits (bounded) until the gateway holds nothing; returns what it still
/// held at the end.
async fn settle(
    http: &reqwest::Client,
    url: &str,
    seconds: u64,
) -> Result<(u64, u64, u64, u64), Error> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        let left = leftovers(&stats(http, url).await?);
        if left == (0, 0, 0, 0) || Instant::now() >= deadline {
            return Ok(left);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn round(cli: &Cli, http: &reqwest::Client, round: usize, tally: &Arc<Tally>) {
    let ws_base = cli.url.replacen("http://", "ws://", 1);
    let sockjs = format!("{}{}", cli.url, cli.prefix);
    let mut flows: Vec<Flow> = Vec::new();
    for pair in 0..cli.pairs {
        let key = format!("soak-{round}-{pair}");
        let what = format!("netflux pair {key}");
        if pair % 10 == 9 {
            flows.push((
                what,
                Box::pin(legacy_pair(
                    ws_base.clone(),
                    key,
                    cli.messages,
                    tally.clone(),
                )),
            ));
        } else {
            flows.push((
                what,
                Box::pin(current_pair(
                    ws_base.clone(),
                    key,
                    cli.messages,
                    tally.clone(),
                )),
            ));
        }
    }
    for room in 0..cli.rooms {
        let name = format!("room-{round}-{room}");
        let silent = room % 10 == 0;
        let ready = Arc::new(Barrier::new(cli.users + usize::from(silent)));
        for index in 0..cli.users {
            // Every transport in every round, in turn, whatever the counts.
            let transport = TRANSPORTS[(room * cli.users + index + round) % TRANSPORTS.len()];
            let future = videre_user(
                http.clone(),
                sockjs.clone(),
                name.clone(),
                index,
                cli.users,
                cli.messages,
                transport,
                ready.clone(),
                tally.clone(),
            );
            flows.push((
                format!("videre {name} user{index} over {}", transport.name()),
                Box::pin(future),
            ));
        }
        if silent {
            let future = videre_silent(
                http.clone(),
                sockjs.clone(),
                name.clone(),
                ready,
                tally.clone(),
            );
            flows.push((format!("silent user of {name}"), Box::pin(future)));
        }
    }
    let misbehaving: Vec<Flow> = vec![
        (
            "netflux flooder".into(),
            Box::pin(sigver_flooder(
                ws_base.clone(),
                format!("flood-{round}"),
                tally.clone(),
            )),
        ),
        (
            "netflux non-reader".into(),
            Box::pin(sigver_non_reader(
                ws_base.clone(),
                format!("slow-{round}"),
                tally.clone(),
            )),
        ),
        (
            "videre flood".into(),
            Box::pin(videre_flood(
                http.clone(),
                sockjs.clone(),
                format!("flood-{round}"),
                tally.clone(),
            )),
        ),
    ];
    flows.extend(misbehaving);
    flows.shuffle(&mut rand::rng());
    let handles: Vec<(String, JoinHandle<Result<(), Error>>)> = flows
        .into_iter()
        .map(|(what, flow)| {
            let delay = Duration::from_millis(rand::rng().random_range(0..500));
            (
                what,
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    flow.await
                }),
            )
        })
        .collect();
    for (what, mut handle) in handles {
        match tokio::time::timeout(FLOW_LIMIT, &mut handle).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => tally.failed(&what, &error),
            Ok(Err(join)) => tally.failed(&what, &join.to_string().into()),
            Err(_) => {
                // Dropping its sockets and readers ends what it held.
                handle.abort();
                tally.failed(
                    &what,
                    &format!("did not finish within {FLOW_LIMIT:?}").into(),
                );
            }
        }
    }
}

async fn run(cli: Cli) -> Result<bool, Error> {
    let host_ok = ["http://127.0.0.1:", "http://localhost:"]
        .iter()
        .any(|p| cli.url.starts_with(p));
    if !host_ok {
        return Err(
            "the soak only runs against a gateway on loopback (http://127.0.0.1:PORT)".into(),
        );
    }
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let tally = Arc::new(Tally::default());
    let idle = rss_kib(cli.server_pid, "VmRSS:")?;
    let started = Instant::now();
    let mut start_rss = None;
    let mut steady_rss = None;
    let mut rounds = 0;
    while rounds < cli.rounds
        && (rounds == 0 || started.elapsed() < Duration::from_secs(cli.seconds))
    {
        round(&cli, &http, rounds, &tally).await;
        rounds += 1;
        if rounds == 1 {
            // The warm-up's clients are gone once the gateway holds nothing.
            settle(&http, &cli.url, cli.settle_seconds).await?;
            start_rss = Some(rss_kib(cli.server_pid, "VmRSS:")?);
        }
        // A quarter into the run the allocator has reached the working set
        // of a round (in CI: 31 MiB by round 17 of 78, flat after): what
        // grows after that is what a leak looks like.
        if steady_rss.is_none() && started.elapsed() >= Duration::from_secs(cli.seconds) / 4 {
            steady_rss = Some(rss_kib(cli.server_pid, "VmRSS:")?);
        }
        eprintln!(
            "round {rounds}: {:.0}s, clients {}, messages {}, failures {}, rss {} MiB",
            started.elapsed().as_secs_f64(),
            tally.clients.load(Relaxed),
            tally.delivered.load(Relaxed),
            tally.failures.load(Relaxed),
            rss_kib(cli.server_pid, "VmRSS:")? / 1024,
        );
    }
    let left = settle(&http, &cli.url, cli.settle_seconds).await?;
    let end = rss_kib(cli.server_pid, "VmRSS:")?;
    let peak = rss_kib(cli.server_pid, "VmHWM:")?;
    let start = start_rss.unwrap_or(idle);
    let steady = steady_rss.unwrap_or(start).max(start);
    let final_stats = stats(&http, &cli.url).await?;
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "soak: {rounds} rounds in {:.0}s against {}",
        started.elapsed().as_secs_f64(),
        cli.url
    );
    println!(
        "clients: {} (clean leaves {}, vanished {}), messages checked: {}, flood messages: {}",
        tally.clients.load(Relaxed),
        tally.clean_leaves.load(Relaxed),
        tally.vanished.load(Relaxed),
        tally.delivered.load(Relaxed),
        tally.flooded.load(Relaxed),
    );
    println!(
        "gateway: messages received {}, sent {}, dropped at full client queues {}, protocol errors {}, refusals {}",
        final_stats["messages_received"],
        final_stats["messages_sent"],
        final_stats["slow_consumers"],
        final_stats["protocol_errors"],
        final_stats["refusals"],
    );
    println!(
        "rss: idle {:.1} MiB, start (after warm-up round) {:.1} MiB, steady (a quarter in) {:.1} MiB, peak {:.1} MiB, end {:.1} MiB",
        mib(idle),
        mib(start),
        mib(steady),
        mib(peak),
        mib(end)
    );
    println!(
        "leftovers: connections/sessions {}, sigver rooms {}, legacy rooms {}, videre rooms {}",
        left.0, left.1, left.2, left.3
    );
    let failures = tally.failures.load(Relaxed);
    if let Ok(notes) = tally.failure_notes.lock() {
        for note in notes.iter() {
            println!("failure: {note}");
        }
    }
    let rss_ok = end <= steady + cli.rss_slack_mib * 1024;
    let ok = failures == 0 && left == (0, 0, 0, 0) && rss_ok;
    println!(
        "soak: {} (well-behaved failures {failures}, leftovers {}, end RSS {} steady + {} MiB)",
        if ok { "PASS" } else { "FAIL" },
        if left == (0, 0, 0, 0) { "none" } else { "some" },
        if rss_ok { "within" } else { "beyond" },
        cli.rss_slack_mib
    );
    Ok(ok)
}

fn main() -> Result<(), Error> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    if runtime.block_on(run(cli))? {
        Ok(())
    } else {
        std::process::exit(1)
    }
}
