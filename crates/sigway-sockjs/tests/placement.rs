//! Sessions accepted at a room's place run on its worker thread, through
//! real sockets: a two-worker server whose sessions report the thread they
//! run on, with a toy room registry (the first session of a key records
//! its place, later ones are accepted there). actix-server hands
//! connections to its workers in turn, so sessions accepted without a
//! place spread over both threads (which shows the check can fail), while
//! every session of one key reports one thread, and the bytes a client
//! sent right behind its handshake travel with a moved session.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use actix_codec::{Decoder as _, Encoder as _};
use actix_http::ws::{Codec, Frame, Message};
use actix_web::{HttpRequest, web};
use bytes::BytesMut;
use sigway_sockjs::testing::BackgroundServer;
use sigway_sockjs::{Event, Place, WsConnection, accept, accept_at};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(5);

/// Says which thread it runs on, then echoes text until the client goes.
async fn report_thread(mut socket: WsConnection) {
    socket.send_text(format!("{:?}", std::thread::current().id()).into());
    for _ in 0..16 {
        match socket.next(true).await {
            Event::Message(actix_ws::AggregatedMessage::Text(text)) => socket.send_text(text),
            Event::Drained => {}
            _ => return,
        }
    }
}

/// Where each key's first session ran.
type Places = std::sync::Arc<std::sync::Mutex<HashMap<String, Place>>>;

fn routes(cfg: &mut web::ServiceConfig, places: &Places) {
    let places = places.clone();
    cfg.route(
        "/room/{key}",
        web::get().to(move |req: HttpRequest| {
            let places = places.clone();
            async move {
                let key = req.match_info().get("key").unwrap_or_default().to_owned();
                let place = places.lock().expect("unpoisoned").get(&key).cloned();
                accept_at(&req, place, move |socket| {
                    if let Some(here) = Place::here() {
                        places
                            .lock()
                            .expect("unpoisoned")
                            .entry(key)
                            .or_insert(here);
                    }
                    report_thread(socket)
                })
            }
        }),
    )
    .route(
        "/anywhere",
        web::get().to(|req: HttpRequest| async move { accept(&req, report_thread) }),
    );
}

/// Opens a WebSocket on `path` with one text frame sent in the same write
/// as the handshake, and returns the first two texts the server sends: the
/// thread it reports and the echo of that frame.
async fn open(server: &BackgroundServer, path: &str) -> (String, String) {
    let mut socket = TcpStream::connect(server.addr).await.expect("connects");
    let mut codec = Codec::new().client_mode();
    let mut out = BytesMut::from(
        format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            server.addr
        )
        .as_bytes(),
    );
    codec
        .encode(Message::Text("early".into()), &mut out)
        .expect("encodes");
    socket.write_all(&out).await.expect("written");
    let mut read = BytesMut::new();
    let head_end = loop {
        if let Some(end) = read.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let got = tokio::time::timeout(WAIT, socket.read_buf(&mut read))
            .await
            .expect("an answer in time")
            .expect("reads");
        assert!(got > 0, "closed before the handshake's answer");
    };
    let head = String::from_utf8_lossy(&read[..head_end]).into_owned();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let _ = read.split_to(head_end);
    let mut texts = Vec::new();
    while texts.len() < 2 {
        match codec.decode(&mut read).expect("a valid frame") {
            Some(Frame::Text(text)) => texts.push(String::from_utf8_lossy(&text).into_owned()),
            Some(other) => panic!("unexpected frame {other:?}"),
            None => {
                let got = tokio::time::timeout(WAIT, socket.read_buf(&mut read))
                    .await
                    .expect("a frame in time")
                    .expect("reads");
                assert!(got > 0, "closed before two texts");
            }
        }
    }
    let echo = texts.pop().unwrap_or_default();
    let thread = texts.pop().unwrap_or_default();
    (thread, echo)
}

#[tokio::test(flavor = "current_thread")]
async fn the_sessions_of_one_room_run_on_its_worker_thread() {
    let places = Places::default();
    let server = BackgroundServer::serve("127.0.0.1", 0, move |cfg| routes(cfg, &places))
        .expect("server starts");
    let mut anywhere = HashSet::new();
    for _ in 0..8 {
        let (thread, echo) = open(&server, "/anywhere").await;
        assert_eq!(echo, "early");
        anywhere.insert(thread);
    }
    assert_eq!(anywhere.len(), 2, "ungrouped sessions use both workers");

    let mut homes: HashMap<String, HashSet<String>> = HashMap::new();
    for round in 0..5 {
        // An odd number of keys: connections go to the workers in turn,
        // so without placement each key would meet both.
        for key in ["alpha", "beta", "gamma", "delta", "epsilon"] {
            let (thread, echo) = open(&server, &format!("/room/{key}")).await;
            assert_eq!(
                echo, "early",
                "round {round}, key {key}: the early frame moved along"
            );
            homes.entry(key.to_owned()).or_default().insert(thread);
        }
    }
    for (key, threads) in &homes {
        assert_eq!(threads.len(), 1, "{key} ran on {threads:?}");
    }
    let used: HashSet<&String> = homes.values().flatten().collect();
    assert!(
        used.iter().all(|thread| anywhere.contains(*thread)),
        "groups run on the workers: {used:?} vs {anywhere:?}"
    );
}
