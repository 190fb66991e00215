//! Differential test against the reference: the same scripted sigver
//! sessions run against the Node `sigver` 20.1.0 server (installed from npm
//! into `tests/reference/` by this test when missing) and against sigway,
//! and what every peer receives must be the same. Signaling ids are random,
//! so transcripts name them `s1`, `s2`, ... in order of first appearance.
//!
//! Only behaviour both servers share is scripted here; the deliberate
//! differences (the quirk the spec tells us not to copy, limits, 1009) have
//! their own tests in `tests/sigver.rs`.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use sigway::proto::sigver::{Content, GroupData, Message, message::Type};
use tokio_tungstenite::tungstenite::Message as Ws;

use common::{Socket, WAIT, start, test_settings};

/// A peer that received nothing for this long has received all a step causes.
const QUIET: Duration = Duration::from_millis(120);

fn reference_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference")
}

/// Installs the Node reference server if needed; returns its entry script.
fn node_sigver() -> PathBuf {
    let dir = reference_dir();
    let script = dir.join("node_modules/sigver/dist/server.js");
    if !script.exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .expect("npm is needed to install the Node reference server (tests/reference)");
        assert!(status.success(), "npm ci in tests/reference failed");
    }
    script
}

struct NodeServer {
    child: Child,
    port: u16,
}

impl NodeServer {
    fn start() -> Self {
        let script = node_sigver();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let child = Command::new("node")
            .arg(script)
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("node runs");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "Node sigver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, port }
    }
}

impl Drop for NodeServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a scripted step does.
enum Step {
    Open(&'static str, &'static str),
    Connect(&'static str, u32, &'static [u32]),
    /// Content from a peer: recipient given as a name (`s1`...) or 0.
    Send(&'static str, &'static str, &'static [u8], bool),
    Raw(&'static str, Ws),
    /// Close with a close frame.
    Leave(&'static str),
    /// Drop TCP without a close frame.
    Vanish(&'static str),
}

/// Runs a script against `base` (ws://host:port) and returns each peer's
/// transcript, with signaling ids named by first appearance.
async fn run(base: &str, script: Vec<Step>) -> Vec<(String, Vec<String>)> {
    let mut peers: Vec<(&'static str, Option<Socket>)> = Vec::new();
    let mut transcripts: HashMap<&'static str, Vec<String>> = HashMap::new();
    let mut names: HashMap<u32, String> = HashMap::new();
    let mut ids: HashMap<String, u32> = HashMap::new();
    for step in script {
        match step {
            Step::Open(peer, path) => {
                let (ws, _) = tokio::time::timeout(
                    WAIT,
                    tokio_tungstenite::connect_async(format!("{base}{path}")),
                )
                .await
                .expect("in time")
                .expect("upgrade");
                peers.push((peer, Some(ws)));
            }
            Step::Connect(peer, id, members) => {
                let msg = Type::Connect(GroupData {
                    id,
                    members: members.to_vec(),
                });
                send(
                    &mut peers,
                    peer,
                    Ws::Binary(Message { r#type: Some(msg) }.encode_to_vec().into()),
                )
                .await;
            }
            Step::Send(peer, to, data, last_data) => {
                let recipient_id = if to == "0" {
                    0
                } else {
                    *ids.get(to).unwrap_or_else(|| panic!("no id {to} yet"))
                };
                let c = Content {
                    sender_id: 0,
                    recipient_id,
                    last_data,
                    data: data.to_vec().into(),
                };
                let frame = Message {
                    r#type: Some(Type::Content(c)),
                }
                .encode_to_vec();
                send(&mut peers, peer, Ws::Binary(frame.into())).await;
            }
            Step::Raw(peer, frame) => send(&mut peers, peer, frame).await,
            Step::Leave(peer) => {
                if let Some(ws) = socket(&mut peers, peer).take() {
                    let mut ws = ws;
                    let _ = ws.close(None).await;
                    let _ = tokio::time::timeout(WAIT, async {
                        while let Some(Ok(_)) = ws.next().await {}
                    })
                    .await;
                }
            }
            Step::Vanish(peer) => drop(socket(&mut peers, peer).take()),
        }
        // After each step, everything each open peer receives until quiet.
        for (peer, ws) in peers.iter_mut() {
            let Some(socket) = ws.as_mut() else { continue };
            let log = transcripts.entry(peer).or_default();
            loop {
                match tokio::time::timeout(QUIET, socket.next()).await {
                    Err(_) => break,
                    Ok(Some(Ok(Ws::Binary(bytes)))) => {
                        let text = describe(&bytes, &mut names, &mut ids);
                        if text != "heartbeat" {
                            log.push(text);
                        }
                    }
                    Ok(Some(Ok(Ws::Close(frame)))) => {
                        log.push(format!(
                            "close {}",
                            frame.map(|f| u16::from(f.code)).unwrap_or(1005)
                        ));
                        *ws = None;
                        break;
                    }
                    Ok(Some(Ok(_))) => {}
                    Ok(Some(Err(_)) | None) => {
                        log.push("dropped".into());
                        *ws = None;
                        break;
                    }
                }
            }
        }
    }
    let mut out: Vec<_> = transcripts
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    out.sort();
    out
}

fn socket<'a>(
    peers: &'a mut [(&'static str, Option<Socket>)],
    name: &str,
) -> &'a mut Option<Socket> {
    &mut peers
        .iter_mut()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no peer {name}"))
        .1
}

async fn send(peers: &mut [(&'static str, Option<Socket>)], peer: &str, frame: Ws) {
    if let Some(ws) = socket(peers, peer).as_mut() {
        let _ = ws.send(frame).await;
    }
}

fn describe(
    bytes: &[u8],
    names: &mut HashMap<u32, String>,
    ids: &mut HashMap<String, u32>,
) -> String {
    let mut name = |id: u32| -> String {
        if id == 0 {
            return "0".into();
        }
        let next = format!("s{}", names.len() + 1);
        let n = names.entry(id).or_insert(next).clone();
        ids.insert(n.clone(), id);
        n
    };
    match Message::decode(bytes).map(|m| m.r#type) {
        Ok(Some(Type::Heartbeat(_))) => "heartbeat".into(),
        Ok(Some(Type::Connected(b))) => format!("connected {b}"),
        Ok(Some(Type::Content(c))) => format!(
            "content {}->{} {:?}{}",
            name(c.sender_id),
            name(c.recipient_id),
            String::from_utf8_lossy(&c.data),
            if c.last_data { " lastData" } else { "" }
        ),
        Ok(Some(Type::Connect(_))) => "connect?".into(),
        Ok(None) => "empty".into(),
        Err(e) => format!("undecodable {e}"),
    }
}

fn scripts() -> Vec<(&'static str, Vec<Step>)> {
    use Step::*;
    vec![
        (
            "full join flow, three peers, member leaves",
            vec![
                Open("a", "/flow"),
                Connect("a", 1, &[]),
                Open("b", "/flow"),
                Connect("b", 2, &[]),
                Send("b", "0", b"offer", false),
                Send("a", "s1", b"answer", false),
                Send("b", "0", b"cand-b", false),
                Send("a", "s1", b"cand-a", false),
                Connect("b", 2, &[1]),
                Open("c", "/flow?favored"),
                Connect("c", 3, &[]),
                Send("c", "0", b"offer-c", false),
                Send("a", "s2", b"answer-c", false),
                Connect("c", 3, &[1, 2]),
                Leave("a"),
                Connect("b", 2, &[3]),
                Open("d", "/flow"),
                Connect("d", 4, &[]),
                Send("d", "0", b"offer-d", false),
                Vanish("d"),
            ],
        ),
        (
            "blocking member, favored and rotation",
            vec![
                Open("a", "/block"),
                Connect("a", 1, &[]),
                Open("b", "/block"),
                Connect("b", 2, &[]),
                Send("b", "0", b"x", false),
                Connect("b", 2, &[]),
                Open("f", "/block?favored=1"),
                Connect("f", 6, &[]),
                Send("f", "0", b"y", false),
                Connect("f", 6, &[2]),
                Open("j", "/block"),
                Connect("j", 7, &[]),
                Send("j", "0", b"1", false),
                Connect("j", 7, &[]),
                Send("j", "0", b"2", false),
                Connect("j", 7, &[]),
                Send("j", "0", b"3", false),
            ],
        ),
        (
            "lastData, rebinding and ignored input",
            vec![
                Open("a", "/last"),
                Connect("a", 1, &[]),
                Raw(
                    "a",
                    Ws::Binary(
                        Message {
                            r#type: Some(Type::Connected(true)),
                        }
                        .encode_to_vec()
                        .into(),
                    ),
                ),
                Send("a", "0", b"nobody", false),
                Open("b", "/last"),
                Connect("b", 2, &[]),
                Send("b", "0", b"last-up", true),
                Send("b", "0", b"dropped", false),
                Send("a", "s1", b"last-down", true),
                Send("a", "s1", b"dropped", false),
                Open("c", "/last"),
                Connect("c", 3, &[1]),
                Connect("b", 2, &[]),
                Send("b", "0", b"rebound", false),
                Leave("b"),
            ],
        ),
        (
            "close codes for keys and messages",
            vec![
                Open("empty", "/"),
                Open(
                    "long",
                    Box::leak(format!("/{}", "k".repeat(513)).into_boxed_str()),
                ),
                Open("garbage", "/msg"),
                Raw("garbage", Ws::Binary(vec![0xff, 0xff, 0xff].into())),
                Open("nofield", "/msg"),
                Raw("nofield", Ws::Binary(Vec::new().into())),
                Open("text", "/msg"),
                Raw("text", Ws::Text("hello".into())),
            ],
        ),
    ]
}

#[tokio::test]
async fn scripted_sessions_match_node_sigver_20() {
    let node = NodeServer::start();
    let ours = start(test_settings());
    let node_base = format!("ws://127.0.0.1:{}", node.port);
    let our_base = ours.ws_url("");
    let mut mismatches = Vec::new();
    for (name, _) in scripts() {
        let script = || {
            scripts()
                .into_iter()
                .find(|(n, _)| *n == name)
                .map(|(_, s)| s)
                .expect("script")
        };
        let (expected, actual) = tokio::join!(run(&node_base, script()), run(&our_base, script()));
        if expected != actual {
            mismatches.push(format!(
                "{name}:\n  node:   {expected:?}\n  sigway: {actual:?}"
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "differences from Node sigver 20.1.0:\n{}",
        mismatches.join("\n")
    );
}
