//! Test helpers shared by the integration tests: a gateway on 127.0.0.1
//! port 0 and a sigver client over a real WebSocket, with every wait bounded.
#![allow(dead_code)]

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use sigway::app::BackgroundServer;
use sigway::config::Settings;
use sigway::proto::sigver::{Content, GroupData, Message, message::Type};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message as Ws};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const WAIT: Duration = Duration::from_secs(5);

/// Settings for a test server: loopback, ephemeral port, no log file.
pub fn test_settings() -> Settings {
    let mut s = Settings {
        host: "127.0.0.1".into(),
        port: 0,
        workers: 2,
        shutdown_timeout_secs: 1,
        ..Settings::default()
    };
    s.log.file = String::new();
    s
}

pub fn start(settings: Settings) -> BackgroundServer {
    BackgroundServer::start(settings).expect("server starts")
}

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A Netflux-like peer speaking sigver over a real WebSocket.
pub struct Peer {
    pub ws: Socket,
    /// Heartbeats received and skipped by `recv`.
    pub heartbeats: usize,
}

impl Peer {
    pub async fn open(server: &BackgroundServer, path: &str) -> Peer {
        Peer::open_url(&server.ws_url(path)).await
    }

    /// Opens a WebSocket to any gateway (e.g. a spawned `sigway` process).
    pub async fn open_url(url: &str) -> Peer {
        let (ws, _) = timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .expect("connect in time")
            .expect("websocket upgrade");
        Peer { ws, heartbeats: 0 }
    }

    pub async fn send(&mut self, r#type: Type) {
        let bytes = Message {
            r#type: Some(r#type),
        }
        .encode_to_vec();
        self.ws.send(Ws::Binary(bytes.into())).await.expect("send");
    }

    pub async fn send_raw(&mut self, frame: Ws) {
        self.ws.send(frame).await.expect("send raw");
    }

    /// Next sigver message other than a heartbeat.
    pub async fn recv(&mut self) -> Type {
        loop {
            match self.next_frame().await {
                Ws::Binary(bytes) => {
                    let message = Message::decode(bytes).expect("server sends valid messages");
                    match message.r#type.expect("server sets a type") {
                        Type::Heartbeat(_) => self.heartbeats += 1,
                        other => return other,
                    }
                }
                Ws::Close(frame) => panic!("unexpected close: {frame:?}"),
                other => panic!("unexpected frame: {other:?}"),
            }
        }
    }

    async fn next_frame(&mut self) -> Ws {
        loop {
            let frame = timeout(WAIT, self.ws.next())
                .await
                .expect("a frame in time")
                .expect("socket open")
                .expect("frame ok");
            if !matches!(frame, Ws::Ping(_) | Ws::Pong(_)) {
                return frame;
            }
        }
    }

    /// Waits for the server's close frame; returns its code and reason.
    pub async fn closed(&mut self) -> (u16, String) {
        loop {
            let frame = timeout(WAIT, self.ws.next()).await.expect("close in time");
            match frame {
                Some(Ok(Ws::Close(Some(close)))) => {
                    return (u16::from(close.code), close.reason.to_string());
                }
                Some(Ok(Ws::Close(None))) => return (u16::from(CloseCode::Status), String::new()),
                Some(Ok(Ws::Binary(bytes))) => {
                    let message = Message::decode(bytes).expect("valid message");
                    assert!(
                        matches!(message.r#type, Some(Type::Heartbeat(_))),
                        "expected a close, got {message:?}"
                    );
                    self.heartbeats += 1;
                }
                Some(Ok(_)) => {}
                Some(Err(tungstenite::Error::ConnectionClosed)) | None => {
                    panic!("closed without a close frame")
                }
                Some(Err(e)) => panic!("socket error before close: {e}"),
            }
        }
    }

    /// Asserts that nothing but heartbeats arrives for `quiet`.
    pub async fn silent_for(&mut self, quiet: Duration) {
        let deadline = tokio::time::Instant::now() + quiet;
        while let Ok(frame) = tokio::time::timeout_at(deadline, self.ws.next()).await {
            match frame {
                Some(Ok(Ws::Binary(bytes))) => {
                    let message = Message::decode(bytes).expect("valid message");
                    assert!(
                        matches!(message.r#type, Some(Type::Heartbeat(_))),
                        "unexpected {message:?}"
                    );
                }
                Some(Ok(Ws::Ping(_) | Ws::Pong(_))) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    /// Closes with a close frame (1000) and waits for the server's answer.
    pub async fn leave(mut self) {
        self.ws.close(None).await.expect("send close");
        let _ = timeout(WAIT, async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
    }

    pub async fn connect(&mut self, id: u32, members: &[u32]) -> bool {
        self.send(Type::Connect(GroupData {
            id,
            members: members.to_vec(),
        }))
        .await;
        match self.recv().await {
            Type::Connected(member) => member,
            other => panic!("expected connected, got {other:?}"),
        }
    }

    pub async fn content(
        &mut self,
        sender_id: u32,
        recipient_id: u32,
        data: &[u8],
        last_data: bool,
    ) {
        self.send(Type::Content(Content {
            sender_id,
            recipient_id,
            last_data,
            data: data.to_vec().into(),
        }))
        .await;
    }

    /// Next message, which must be content; returns (senderId, recipientId, data).
    pub async fn recv_content(&mut self) -> (u32, u32, Vec<u8>) {
        match self.recv().await {
            Type::Content(c) => {
                assert!(!c.last_data, "lastData is never passed on");
                (c.sender_id, c.recipient_id, c.data.to_vec())
            }
            other => panic!("expected content, got {other:?}"),
        }
    }
}

/// Lines from `lines` until one contains `wanted` (returned, with the
/// lines before it), within `within`; panics with what was seen otherwise.
pub fn wait_for_line(
    lines: &std::sync::mpsc::Receiver<String>,
    wanted: &str,
    within: Duration,
) -> (String, Vec<String>) {
    let deadline = std::time::Instant::now() + within;
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(wanted) => return (line, seen),
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    panic!("no line with {wanted:?} within {within:?}; saw {seen:#?}");
}

/// The port of a gateway's "listening on <addr>:<port> (http/ws)" line.
pub fn listening_port(line: &str) -> u16 {
    line.split_once("listening on ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|addr| addr.rsplit_once(':'))
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"))
}

/// Lines of a child's stdout and stderr, as they come, on a channel (one
/// reader thread per stream, ending with the stream).
pub fn output_lines(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::{BufRead as _, BufReader, Read};
    let (send, receive) = std::sync::mpsc::channel();
    let streams: [Box<dyn Read + Send>; 2] = [
        Box::new(child.stdout.take().expect("stdout")),
        Box::new(child.stderr.take().expect("stderr")),
    ];
    for stream in streams {
        let send = send.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
    }
    receive
}
