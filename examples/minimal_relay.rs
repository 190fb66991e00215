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
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as Ws;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

type Error = Box<dyn std::error::Error + Send + Sync>;
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

async fn serve(listener: TcpListener) -> Result<(), Error> {
    let shared = Shared::default();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = accepted?;
                let shared = shared.clone();
                tokio::spawn(async move {
                    let _ = serve_connection(stream, shared).await;
                });
            }
            _ = terminate.recv() => return Ok(()),
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

fn main() -> Result<(), Error> {
    let cli = Cli::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if cli.workers > 0 {
        runtime.worker_threads(cli.workers);
    }
    let runtime = runtime.enable_all().build()?;
    runtime.block_on(async {
        let listener = TcpListener::bind(("127.0.0.1", cli.port)).await?;
        println!("minimal relay listening on {}", listener.local_addr()?);
        serve(listener).await
    })?;
    runtime.shutdown_background();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(state: &mut State) -> (u32, mpsc::UnboundedReceiver<Ws>) {
        let (outbox, inbox) = mpsc::unbounded_channel();
        state.next_id += 1;
        state.outboxes.insert(state.next_id, outbox);
        (state.next_id, inbox)
    }

    fn decode(frame: Ws) -> Type {
        let Ws::Binary(bytes) = frame else {
            panic!("expected a binary frame, got {frame:?}")
        };
        Message::decode(bytes)
            .expect("sigver")
            .r#type
            .expect("type")
    }

    fn connect() -> Vec<u8> {
        Message {
            r#type: Some(Type::Connect(Default::default())),
        }
        .encode_to_vec()
    }

    fn content(recipient_id: u32, data: &[u8]) -> Vec<u8> {
        Message {
            r#type: Some(Type::Content(Content {
                recipient_id,
                data: data.to_vec().into(),
                ..Default::default()
            })),
        }
        .encode_to_vec()
    }

    #[test]
    fn the_first_peer_is_member_and_content_is_routed_both_ways() {
        let mut state = State::default();
        let (member, mut member_inbox) = connection(&mut state);
        let (joiner, mut joiner_inbox) = connection(&mut state);
        on_sigver_frame(&mut state, member, "k", &connect());
        assert_eq!(
            decode(member_inbox.try_recv().expect("answer")),
            Type::Connected(true)
        );
        on_sigver_frame(&mut state, joiner, "k", &connect());
        assert_eq!(
            decode(joiner_inbox.try_recv().expect("answer")),
            Type::Connected(false)
        );

        on_sigver_frame(&mut state, joiner, "k", &content(0, b"offer"));
        let Type::Content(up) = decode(member_inbox.try_recv().expect("relayed")) else {
            panic!("expected content")
        };
        assert_eq!((up.sender_id, &up.data[..]), (joiner, &b"offer"[..]));

        on_sigver_frame(&mut state, member, "k", &content(joiner, b"answer"));
        let Type::Content(down) = decode(joiner_inbox.try_recv().expect("relayed")) else {
            panic!("expected content")
        };
        assert_eq!((down.sender_id, down.recipient_id), (0, joiner));
        assert_eq!(&down.data[..], b"answer");

        // Content to a joiner that is not bound to the sender goes nowhere.
        on_sigver_frame(&mut state, joiner, "k", &content(member, b"x"));
        on_sigver_frame(&mut state, member, "k", &content(member, b"x"));
        assert!(
            member_inbox.try_recv().is_ok(),
            "the joiner's content still goes up"
        );
        assert!(member_inbox.try_recv().is_err());
        assert!(joiner_inbox.try_recv().is_err());
    }

    #[test]
    fn a_closed_member_frees_its_key() {
        let mut state = State::default();
        let (first, _first_inbox) = connection(&mut state);
        on_sigver_frame(&mut state, first, "k", &connect());
        on_close(&mut state, first, "k");
        let (second, mut second_inbox) = connection(&mut state);
        on_sigver_frame(&mut state, second, "k", &connect());
        assert_eq!(
            decode(second_inbox.try_recv().expect("answer")),
            Type::Connected(true)
        );
    }

    #[test]
    fn videre_connect_tells_the_room_and_broadcast_reaches_everyone() {
        let mut state = State::default();
        let (a, mut a_inbox) = connection(&mut state);
        let (b, mut b_inbox) = connection(&mut state);
        let packet = |event: &str, user: &str| {
            format!(
                r#"{{"Header":{{"Event":"{event}","UserId":"{user}","RoomId":"r"}},"Payload":"{{}}"}}"#
            )
        };
        on_videre_text(&mut state, a, &packet("connect", "a"));
        on_videre_text(&mut state, b, &packet("connect", "b"));
        let text = |frame: Ws| frame.into_text().expect("text").to_string();
        assert!(text(a_inbox.try_recv().expect("own connect")).ends_with(r#""Payload":"true"}"#));
        assert!(text(a_inbox.try_recv().expect("b's connect")).contains(r#""UserId":"b""#));
        assert!(text(b_inbox.try_recv().expect("own connect")).ends_with(r#""Payload":"false"}"#));

        let broadcast = packet("broadcast", "a");
        on_videre_text(&mut state, a, &broadcast);
        assert_eq!(text(a_inbox.try_recv().expect("to a")), broadcast);
        assert_eq!(text(b_inbox.try_recv().expect("to b")), broadcast);

        on_close(&mut state, a, "echo/websocket");
        on_videre_text(&mut state, b, &packet("broadcast", "b"));
        assert!(b_inbox.try_recv().is_ok());
        assert!(state.rooms["r"].len() == 1);
    }
}
