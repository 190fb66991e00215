//! The relay-shaped floor of the benchmarks: the least server that can
//! stand in for sigway in the load tool's `relay`, `rtt`, `joins` and
//! `videre` scenarios, on tokio-tungstenite with one global lock. What
//! sigway does beyond it (heartbeats, limits, the full join rules, the
//! tried lists, end-of-binding notices, the SockJS framing, logs, metrics)
//! is its overhead over the floor; `benches/compare.sh` quotes the ratios.
//!
//! - sigver, any path but `/echo/websocket`: the key is the path. The
//!   first peer to `connect` on a key is its member (`connected: true`);
//!   later ones are bound to it (`connected: false`) under a fresh
//!   signaling id. A joiner's `content` goes to its member with `senderId`
//!   set; a member's `content` goes to the joiner its `recipientId` names.
//!   Heartbeats are neither sent nor required; a closed member's group is
//!   gone (its joiners are not told).
//! - videre, `/echo/websocket` (raw SockJS WebSocket): `connect` joins
//!   `RoomId` and goes to the whole room with Payload `"true"` for the
//!   first user, `"false"` otherwise; `broadcast` goes, unchanged, to every
//!   member of `RoomId`; a closed session leaves its room silently.
//!
//! ```text
//! cargo run --release --example minimal_relay -- --port 9001 [--workers 2]
//! ```
//! It listens on 127.0.0.1 only and exits cleanly on SIGTERM or Ctrl-C.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use sigway::proto::sigver::{Content, Message, message::Type};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as Ws;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

#[path = "support/floor.rs"]
mod floor;
use floor::Error;
type Outbox = mpsc::UnboundedSender<Ws>;

#[derive(Parser)]
#[command(about = "Minimal sigver/videre relay (loopback only): the benchmarks' relay floor")]
struct Cli {
    /// Port on 127.0.0.1 (0: any free one, printed on stdout).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Runtime worker threads (0: one per core, as sigway's default).
    #[arg(long, default_value_t = 0)]
    workers: usize,
}

/// Every connection's outbox by its id, the sigver groups and the videre
/// rooms. One lock: the minimal design, not a scalable one.
#[derive(Default)]
struct State {
    outboxes: HashMap<u32, Outbox>,
    /// sigver key → its member's connection id.
    members: HashMap<String, u32>,
    /// joiner's connection id (its signaling id) → its member's.
    bound_to: HashMap<u32, u32>,
    /// videre RoomId → (connection id, UserId), in join order.
    rooms: HashMap<String, Vec<(u32, String)>>,
    /// videre connection id → the room it joined last.
    room_of: HashMap<u32, String>,
    next_id: u32,
}

#[derive(Clone, Default)]
struct Shared(Arc<Mutex<State>>);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere leaves the maps usable: nothing is half-updated.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    fn send(&self, to: u32, frame: Ws) {
        if let Some(outbox) = self.outboxes.get(&to) {
            let _ = outbox.send(frame);
        }
    }
}

fn encode(r#type: Type) -> Ws {
    Ws::Binary(
        Message {
            r#type: Some(r#type),
        }
        .encode_to_vec()
        .into(),
    )
}

/// What a sigver frame from connection `me` (on `key`) does.
fn on_sigver_frame(state: &mut State, me: u32, key: &str, bytes: &[u8]) {
    let Ok(Message { r#type: Some(kind) }) = Message::decode(bytes) else {
        return;
    };
    match kind {
        Type::Connect(_) => {
            let member = *state.members.entry(key.to_owned()).or_insert(me);
            let is_member = member == me;
            if !is_member {
                state.bound_to.insert(me, member);
            }
            state.send(me, encode(Type::Connected(is_member)));
        }
        Type::Content(content) => {
            if let Some(&member) = state.bound_to.get(&me) {
                let relayed = Content {
                    sender_id: me,
                    recipient_id: 0,
                    ..content
                };
                state.send(member, encode(Type::Content(relayed)));
            } else if state.bound_to.get(&content.recipient_id) == Some(&me) {
                let to = content.recipient_id;
                let relayed = Content {
                    sender_id: 0,
                    ..content
                };
                state.send(to, encode(Type::Content(relayed)));
            }
        }
        _ => {}
    }
}

#[derive(serde::Deserialize)]
struct VidereHeader {
    #[serde(rename = "Event")]
    event: String,
    #[serde(rename = "UserId")]
    user_id: String,
    #[serde(rename = "RoomId")]
    room_id: String,
}

#[derive(serde::Deserialize)]
struct ViderePacket {
    #[serde(rename = "Header")]
    header: VidereHeader,
}

/// What a videre packet from connection `me` does.
fn on_videre_text(state: &mut State, me: u32, text: &str) {
    let Ok(ViderePacket { header }) = serde_json::from_str::<ViderePacket>(text) else {
        return;
    };
    let frame = match header.event.as_str() {
        "connect" => {
            // A session is in one room at most: a second connect moves it.
            leave_room(state, me);
            let room = state.rooms.entry(header.room_id.clone()).or_default();
            let initiator = room.is_empty();
            room.push((me, header.user_id.clone()));
            state.room_of.insert(me, header.room_id.clone());
            let packet = serde_json::json!({
                "Header": {"Event": "connect", "UserId": header.user_id, "RoomId": header.room_id},
                "Payload": if initiator { "true" } else { "false" },
            });
            Ws::Text(packet.to_string().into())
        }
        "broadcast" => Ws::Text(text.into()),
        _ => return,
    };
    if let Some(room) = state.rooms.get(&header.room_id) {
        for (member, _) in room {
            state.send(*member, frame.clone());
        }
    }
}

fn leave_room(state: &mut State, me: u32) {
    let Some(room_id) = state.room_of.remove(&me) else {
        return;
    };
    if let Some(room) = state.rooms.get_mut(&room_id) {
        room.retain(|(member, _)| *member != me);
        if room.is_empty() {
            state.rooms.remove(&room_id);
        }
    }
}

/// Connection `me` (opened on `key`) is gone.
fn on_close(state: &mut State, me: u32, key: &str) {
    state.outboxes.remove(&me);
    state.bound_to.remove(&me);
    if state.members.get(key) == Some(&me) {
        state.members.remove(key);
        state.bound_to.retain(|_, member| *member != me);
    }
    leave_room(state, me);
}

/// tungstenite's defaults give every connection a 128 KiB read buffer, which
/// would make this floor heavier per idle peer than the servers it is a
/// floor for; 4 KiB holds any benchmark message.
fn lean_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(4096)
}

// The handshake callback's error type is tungstenite's HTTP response.
#[allow(clippy::result_large_err)]
async fn serve_connection(stream: TcpStream, shared: Shared) -> Result<(), Error> {
    stream.set_nodelay(true)?;
    let mut path = String::new();
    let ws = tokio_tungstenite::accept_hdr_async_with_config(
        stream,
        |request: &Request, response: Response| {
            path = request.uri().path().to_owned();
            Ok(response)
        },
        Some(lean_config()),
    )
    .await?;
    let key = path.trim_start_matches('/').to_owned();
    let videre = path == "/echo/websocket";
    let (outbox, mut inbox) = mpsc::unbounded_channel();
    let me = {
        let mut state = shared.lock();
        state.next_id = state.next_id % 0x7fff_fffe + 1;
        let me = state.next_id;
        state.outboxes.insert(me, outbox);
        me
    };
    let (mut sink, mut source) = ws.split();
    let result = async {
        loop {
            tokio::select! {
                frame = source.next() => match frame {
                    Some(Ok(Ws::Binary(bytes))) if !videre => {
                        on_sigver_frame(&mut shared.lock(), me, &key, &bytes);
                    }
                    Some(Ok(Ws::Text(text))) if videre => {
                        on_videre_text(&mut shared.lock(), me, text.as_str());
                    }
                    Some(Ok(Ws::Close(_))) | None => return Ok(()),
                    Some(Ok(_)) => {}
                    Some(Err(error)) => return Err(error.into()),
                },
                Some(frame) = inbox.recv() => {
                    // Everything queued goes out in one write.
                    sink.feed(frame).await?;
                    while let Ok(frame) = inbox.try_recv() {
                        sink.feed(frame).await?;
                    }
                    sink.flush().await?;
                }
            }
        }
    }
    .await;
    on_close(&mut shared.lock(), me, &key);
    result
}

fn main() -> Result<(), Error> {
    let cli = Cli::parse();
    let shared = Shared::default();
    floor::serve("minimal relay", cli.port, cli.workers, move |stream| {
        let shared = shared.clone();
        async move {
            let _ = serve_connection(stream, shared).await;
        }
    })
}
