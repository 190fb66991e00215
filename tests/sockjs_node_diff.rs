//! Differential test of sigway's SockJS layer against sockjs-node 0.3.24,
//! the server videre-server ran: the same raw HTTP and WebSocket exchanges
//! go to `tests/reference/sockjs/server.js` (installed from npm by this
//! test when missing) and to sigway's protocol test server started
//! in-process with the same options, and what each connection receives must
//! be the same, byte for byte, apart from the normalisations listed below.
//!
//! Requests are written by hand on plain TCP sockets, so header case and
//! order, chunking, HTTP/1.0 and WebSocket handshakes are all visible. Each
//! exchange is a named [`Case`]; every case runs against both servers at
//! once (cases run a few at a time) and yields one transcript per server:
//! per connection, the status line, the headers (sorted, names lowercased),
//! each body chunk / WebSocket frame, the end of each body and the closing
//! of the connection. A case that differs on purpose is listed once, in
//! [`DELIBERATE`], with the reason and the exact lines that differ, so the
//! list cannot rot: a deliberate case that stops differing in exactly that
//! way fails too.
//!
//! What is normalised, and why (nothing else is):
//! - `Date`, `Expires`: times. `"entropy":N` in `info`: random.
//! - `Keep-Alive: timeout=5` and `Connection: keep-alive` on HTTP/1.1
//!   answers: Node 20's keep-alive advertisement, connection-level (older
//!   Node versions behind videre-server did not send it); `Connection`
//!   values are compared case-insensitively (RFC 9110 tokens).
//! - `Content-Length` / `Transfer-Encoding: chunked`: message framing, a
//!   hop-by-hop detail that no XHR, EventSource or script loader can see.
//!   The decoded body is compared instead, chunk by chunk where the body is
//!   chunked (a chunk is a SockJS frame) and whole otherwise.
//! - Header order (not significant in HTTP) and header-name case (HTTP
//!   names are case-insensitive); header values are compared exactly.
//! - An HTTP/1.0 status line (actix answers in the request's version, Node
//!   always says HTTP/1.1) is read as HTTP/1.1 with `Connection: close`,
//!   which is what it means; and `Connection: close` on the last answer of
//!   a connection that then closes is dropped (the close says it).
//! - The `Date` of a 101 handshake answer, and the TCP close after a
//!   WebSocket close frame: who tears the connection down, and when, is
//!   connection-level (RFC 6455 7.1.1 lets either side); sigway's comes
//!   a little later than Node's.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use sigway_sockjs::Options;
use sigway_sockjs::echo::{ProtocolTestServer, protocol_test_options};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as Ws;
use tokio_tungstenite::tungstenite::protocol::Role;

/// A transcript that received nothing for this long has all a step causes.
const QUIET: Duration = Duration::from_millis(250);
/// Longest wait for the first bytes of an answer that should come at once.
const FIRST_BYTES: Duration = Duration::from_secs(5);
/// Longest a step may keep producing output before the case moves on.
const MAX_SETTLE: Duration = Duration::from_secs(10);
/// Cases run at once (per server).
const PARALLEL: usize = 6;
/// Timings of the second server pair, for heartbeats and expiry.
const SHORT_HEARTBEAT_MS: u64 = 2500;
const SHORT_DISCONNECT_MS: u64 = 2500;

// ---------------------------------------------------------------------------
// The Node reference server

fn reference_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/sockjs")
}

/// True when `node` and `npm` both run.
fn node_tools_present() -> bool {
    ["node", "npm"].iter().all(|tool| {
        Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// Installs sockjs-node (and sockjs-client) with `npm ci` when missing.
fn install_reference() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let dir = reference_dir();
        let have = ["sockjs", "sockjs-client"].iter().all(|pkg| {
            dir.join("node_modules")
                .join(pkg)
                .join("package.json")
                .exists()
        });
        if !have {
            let status = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&dir)
                .status()
                .expect("npm runs");
            assert!(status.success(), "npm ci in tests/reference/sockjs failed");
        }
    });
}

/// `node server.js PORT [HEARTBEAT DISCONNECT]`, killed on drop.
struct NodeSockjs {
    child: Child,
    port: u16,
}

impl NodeSockjs {
    fn start(timings: Option<(u64, u64)>) -> Self {
        install_reference();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut command = Command::new("node");
        command
            .arg(reference_dir().join("server.js"))
            .arg(port.to_string());
        if let Some((heartbeat, disconnect)) = timings {
            command.args([heartbeat.to_string(), disconnect.to_string()]);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node runs");
        let node = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "sockjs-node did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        node
    }
}

impl Drop for NodeSockjs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// sigway's protocol test server with the options of `server.js`.
fn start_sigway(timings: Option<(u64, u64)>) -> ProtocolTestServer {
    let mut options = protocol_test_options(Options::default());
    if let Some((heartbeat, disconnect)) = timings {
        options.heartbeat = Duration::from_millis(heartbeat);
        options.disconnect_delay = Duration::from_millis(disconnect);
    }
    ProtocolTestServer::start(options, "127.0.0.1", 0).expect("sigway starts")
}

// ---------------------------------------------------------------------------
// Cases

/// One exchange step. Connections are named; `{s}` and `{t}` in request
/// bytes become the case's two session ids.
enum Step {
    /// Writes a request on `conn` (connecting first if needed) and waits
    /// for the first bytes of its answer.
    Http(&'static str, Vec<u8>),
    /// Writes a request whose answer may not start yet (a waiting poll).
    Pending(&'static str, Vec<u8>),
    /// Closes the connection from the client side.
    Drop(&'static str),
    /// Lets time pass (heartbeats, expiry).
    Wait(Duration),
    /// A WebSocket handshake (raw request bytes) on a new connection; a 101
    /// turns it into a WebSocket, anything else stays HTTP.
    WsOpen(&'static str, Vec<u8>),
    /// Sends a WebSocket message.
    WsSend(&'static str, Ws),
}

struct Case {
    name: String,
    steps: Vec<Step>,
}

fn case(name: impl Into<String>, steps: Vec<Step>) -> Case {
    Case {
        name: name.into(),
        steps,
    }
}

/// An HTTP request; `Content-Length` whenever there is a body or a POST.
fn http(version: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/{version}\r\n");
    if version == "1.1" {
        out.push_str("Host: 127.0.0.1\r\n");
    }
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

fn get(path: &str) -> Vec<u8> {
    http("1.1", "GET", path, &[], b"")
}

fn get_with(path: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    http("1.1", "GET", path, headers, b"")
}

fn post(path: &str, body: &str) -> Vec<u8> {
    http("1.1", "POST", path, &[], body.as_bytes())
}

fn post_with(path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    http("1.1", "POST", path, headers, body)
}

fn options(path: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    http("1.1", "OPTIONS", path, headers, b"")
}

fn ws_handshake(path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut headers = vec![
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
    ];
    headers.extend_from_slice(extra);
    http("1.1", "GET", path, &headers, b"")
}

fn ws_text(conn: &'static str, text: &str) -> Step {
    Step::WsSend(conn, Ws::Text(text.into()))
}

fn wait_ms(ms: u64) -> Step {
    Step::Wait(Duration::from_millis(ms))
}

/// Message texts that stress every escaping layer, by name.
fn stress_messages() -> Vec<(&'static str, String)> {
    let range = |from: u32, to: u32| -> String { (from..=to).filter_map(char::from_u32).collect() };
    vec![
        ("percent", "50% off % %E0%A4%A 100%%25".into()),
        ("quotes", r#"say "hi" 'there' \ back\slash /"#.into()),
        ("c0 controls", range(0x00, 0x1f)),
        ("del and c1 controls", range(0x7f, 0x9f)),
        ("separators", "a\u{2028}b\u{2029}c".into()),
        ("u200c-u206f", range(0x200c, 0x206f)),
        ("ufff0-uffff", range(0xfff0, 0xffff)),
        (
            "other invisibles",
            "\u{ad}\u{600}\u{604}\u{70f}\u{17b4}\u{17b5}\u{feff}".into(),
        ),
        ("astral", "emoji 😀 clef 𝄞 🇫🇷".into()),
        (
            "script end",
            "</script><script>alert(1)</script><!--".into(),
        ),
        ("plain utf-8", "héllo ж 中文 ü".into()),
    ]
}

/// A JSON array of every stress message (the body clients send).
fn stress_batch() -> String {
    let texts: Vec<String> = stress_messages().into_iter().map(|(_, t)| t).collect();
    serde_json::to_string(&texts).expect("json")
}

/// Lone surrogates only exist as JSON escapes; clients' JSON.stringify
/// sends them so.
const LONE_SURROGATES: &str = r#"["\ud800","x\udfffy","\ud83d","\ude00\ud83d"]"#;

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    static_cases(&mut cases);
    xhr_cases(&mut cases);
    streaming_cases(&mut cases);
    jsonp_cases(&mut cases);
    cookie_cases(&mut cases);
    http10_cases(&mut cases);
    websocket_cases(&mut cases);
    escaping_cases(&mut cases);
    limit_cases(&mut cases);
    cases
}

fn static_cases(cases: &mut Vec<Case>) {
    use Step::*;
    cases.push(case(
        "greeting",
        vec![
            Http("a", get("/echo")),
            Http("a", get("/echo/")),
            Http("a", get("/disabled_websocket_echo")),
        ],
    ));
    cases.push(case(
        "greeting wrong methods",
        vec![
            Http("a", post("/echo", "")),
            Http("b", http("1.1", "HEAD", "/echo/", &[], b"")),
        ],
    ));
    for (label, headers) in [
        ("no origin", vec![]),
        ("origin", vec![("Origin", "https://app.test")]),
        ("origin null", vec![("Origin", "null")]),
        (
            "requested headers",
            vec![
                ("Origin", "https://app.test"),
                ("Access-Control-Request-Headers", "a, b"),
            ],
        ),
    ] {
        cases.push(case(
            format!("info GET {label}"),
            vec![
                Http("a", get_with("/echo/info", &headers)),
                Http("a", get_with("/disabled_websocket_echo/info/", &headers)),
                Http("a", get_with("/cookie_needed_echo/info", &headers)),
            ],
        ));
        cases.push(case(
            format!("info OPTIONS {label}"),
            vec![
                Http("a", options("/echo/info", &headers)),
                Http("a", options("/cookie_needed_echo/info", &headers)),
            ],
        ));
    }
    cases.push(case(
        "info wrong methods",
        vec![
            Http("a", post("/echo/info", "")),
            Http("a", http("1.1", "PUT", "/echo/info", &[], b"x")),
        ],
    ));
    cases.push(case(
        "iframe",
        vec![
            Http("a", get("/echo/iframe.html")),
            Http("a", get("/echo/iframe-abc.html")),
            Http("a", get("/echo/iframe-0.3.4.html")),
            Http("a", get("/echo/iframe-0.3.4.html/")),
        ],
    ));
    // sockjs-node's `iframe[0-9-.a-z_]*.html` leaves its dot unescaped.
    cases.push(case(
        "iframe name pattern",
        vec![
            Http("a", get("/echo/iframexhtml")),
            Http("a", get("/echo/iframe-1_html")),
            Http("a", get("/echo/iframe.htm")),
            Http("a", get("/echo/IFRAME.HTML")),
            Http("a", get("/echo/iframe")),
        ],
    ));
    // The ETag sockjs-node gives its iframe page (md5 of the page), an input
    // here: a server with another page or hash answers 200.
    let etag = "\"08c88a6396a2481f245d665a53d9dc14\"";
    cases.push(case(
        "iframe 304",
        vec![
            Http(
                "a",
                get_with("/echo/iframe.html", &[("If-None-Match", etag)]),
            ),
            Http(
                "a",
                get_with("/echo/iframe-x.html", &[("If-None-Match", "\"nope\"")]),
            ),
            Http(
                "a",
                get_with(
                    "/echo/iframe.html",
                    &[("If-None-Match", &format!("\"x\", {etag}"))],
                ),
            ),
            Http(
                "a",
                get_with("/echo/iframe.html", &[("If-None-Match", "*")]),
            ),
        ],
    ));
    cases.push(case(
        "iframe wrong method",
        vec![Http("a", post("/echo/iframe.html", ""))],
    ));
    cases.push(case(
        "chunking_test",
        vec![
            Http(
                "a",
                post_with(
                    "/echo/chunking_test",
                    &[("Origin", "https://app.test")],
                    b"",
                ),
            ),
            wait_ms(4200),
        ],
    ));
    cases.push(case(
        "chunking_test OPTIONS and GET",
        vec![
            Http("a", options("/echo/chunking_test", &[])),
            Http(
                "a",
                options(
                    "/cookie_needed_echo/chunking_test",
                    &[("Origin", "https://app.test")],
                ),
            ),
            Http("a", get("/echo/chunking_test")),
        ],
    ));
    cases.push(case(
        "not found",
        vec![
            Http("a", get("/echo/a")),
            Http("a", get("/echo/a.html")),
            Http("a", get("/echo//")),
            Http("a", get("/echo/a/a")),
            Http("a", get("/echo/a/a/")),
            Http("a", post("/echo/a./a/xhr", "")),
            Http("a", post("/echo/a/a./xhr", "")),
            Http("a", post("/echo//a/xhr", "")),
            Http("a", get("/echo/0/0/nope")),
            Http("a", get("/echo/0/0/0/xhr")),
        ],
    ));
    cases.push(case(
        "wrong methods on transports",
        vec![
            Http("a", get("/echo/0/{s}/xhr")),
            Http("a", get("/echo/0/{s}/xhr_send")),
            Http("a", get("/echo/0/{s}/xhr_streaming")),
            Http("a", post("/echo/0/{s}/eventsource", "")),
            Http("a", post("/echo/0/{s}/htmlfile", "")),
            Http("a", post("/echo/0/{s}/jsonp", "")),
            Http("a", get("/echo/0/{s}/jsonp_send")),
            Http("a", post("/echo/0/{s}/websocket", "")),
            Http("a", post("/echo/websocket", "")),
            Http("a", http("1.1", "DELETE", "/echo/0/{s}/xhr", &[], b"")),
        ],
    ));
}

fn xhr_cases(cases: &mut Vec<Case>) {
    use Step::*;
    for (label, headers) in [
        ("no origin", vec![]),
        ("origin", vec![("Origin", "https://app.test")]),
        ("origin null", vec![("Origin", "null")]),
    ] {
        cases.push(case(
            format!("xhr polling {label}"),
            vec![
                Http("a", post_with("/echo/000/{s}/xhr", &headers, b"")),
                Http(
                    "a",
                    post_with("/echo/000/{s}/xhr_send", &headers, br#"["a","b"]"#),
                ),
                Http("a", post_with("/echo/000/{s}/xhr", &headers, b"")),
                Http(
                    "a",
                    post_with("/echo/000/{s}/xhr_send", &headers, br#"["c"]"#),
                ),
                Http("a", post_with("/echo/000/{s}/xhr/", &headers, b"")),
            ],
        ));
        let mut preflight = headers.clone();
        preflight.push(("Access-Control-Request-Headers", "content-type"));
        cases.push(case(
            format!("xhr OPTIONS {label}"),
            vec![
                Http("a", options("/echo/000/{s}/xhr", &preflight)),
                Http("a", options("/echo/000/{s}/xhr_send", &headers)),
                Http("a", options("/echo/000/{s}/xhr_streaming", &headers)),
            ],
        ));
    }
    cases.push(case(
        "xhr second receiver",
        vec![
            Http("a", post("/echo/000/{s}/xhr", "")),
            Pending("a", post("/echo/000/{s}/xhr", "")),
            Http("b", post("/echo/000/{s}/xhr", "")),
            Http("c", post("/echo/000/{s}/xhr_send", r#"["x"]"#)),
        ],
    ));
    cases.push(case(
        "xhr aborted poll",
        vec![
            Http("a", post("/echo/000/{s}/xhr", "")),
            Pending("a", post("/echo/000/{s}/xhr", "")),
            Drop("a"),
            wait_ms(200),
            Http("b", post("/echo/000/{s}/xhr", "")),
            Http("b", post("/echo/000/{s}/xhr_send", r#"["x"]"#)),
            Http("b", post("/echo/000/{s}/xhr", "")),
        ],
    ));
    cases.push(case(
        "xhr_send errors",
        vec![
            Http("a", post("/echo/000/{s}/xhr_send", r#"["x"]"#)),
            Http("a", post("/echo/000/{s}/xhr", "")),
            Http("a", post("/echo/000/{s}/xhr_send", "")),
            Http("a", post("/echo/000/{s}/xhr_send", "[\"x")),
            Http("a", post("/echo/000/{s}/xhr_send", "{}")),
            Http("a", post("/echo/000/{s}/xhr_send", "\"x\"")),
            Http("a", post("/echo/000/{s}/xhr_send", "null")),
            Http("a", post("/echo/000/{s}/xhr_send", "[]")),
            Http(
                "a",
                post_with(
                    "/echo/000/{s}/xhr_send",
                    &[("Origin", "https://app.test")],
                    b"",
                ),
            ),
            Http("a", post("/echo/000/{t}/xhr_send", "")),
            Http("a", post("/echo/000/{t}/xhr_send", "[\"x\"]")),
            Http("a", post("/echo/000/{s}/xhr", "")),
        ],
    ));
    cases.push(case(
        "xhr_send content types",
        vec![
            Http("a", post("/echo/000/{s}/xhr", "")),
            Http(
                "a",
                post_with(
                    "/echo/000/{s}/xhr_send",
                    &[("Content-Type", "text/plain;charset=UTF-8")],
                    br#"["plain"]"#,
                ),
            ),
            Http(
                "a",
                post_with(
                    "/echo/000/{s}/xhr_send",
                    &[("Content-Type", "application/json")],
                    br#"["json"]"#,
                ),
            ),
            Http(
                "a",
                post_with(
                    "/echo/000/{s}/xhr_send",
                    &[("Content-Type", "T")],
                    br#"["T"]"#,
                ),
            ),
            Http(
                "a",
                post_with(
                    "/echo/000/{s}/xhr_send",
                    &[("Content-Type", "application/x-www-form-urlencoded")],
                    br#"["form"]"#,
                ),
            ),
            Http(
                "a",
                post_with(
                    "/echo/000/{s}/xhr_send",
                    &[("Content-Type", "Text/Plain")],
                    br#"["case"]"#,
                ),
            ),
            Http("a", post("/echo/000/{s}/xhr", "")),
        ],
    ));
    cases.push(case(
        "xhr_send non-string elements",
        vec![
            Http("a", post("/echo/000/{s}/xhr", "")),
            Http(
                "a",
                post(
                    "/echo/000/{s}/xhr_send",
                    r#"[1,2.50,null,true,{"k":1},[1,[2,"x"]]]"#,
                ),
            ),
            Http("a", post("/echo/000/{s}/xhr", "")),
        ],
    ));
    cases.push(case(
        "xhr_send invalid utf-8",
        vec![
            Http("a", post("/echo/000/{s}/xhr", "")),
            Http(
                "a",
                post_with("/echo/000/{s}/xhr_send", &[], b"[\"a\xff\xfeb\"]"),
            ),
            Http("a", post("/echo/000/{s}/xhr", "")),
        ],
    ));
    cases.push(case(
        "close app over xhr",
        vec![
            Http("a", post("/close/000/{s}/xhr", "")),
            Http("a", post("/close/000/{s}/xhr", "")),
            Http("a", post("/close/000/{s}/xhr_send", r#"["x"]"#)),
            Http("a", post("/close/000/{s}/xhr", "")),
        ],
    ));
}

fn streaming_cases(cases: &mut Vec<Case>) {
    use Step::*;
    cases.push(case(
        "xhr_streaming",
        vec![
            Http(
                "a",
                post_with(
                    "/echo/000/{s}/xhr_streaming",
                    &[("Origin", "https://app.test")],
                    b"",
                ),
            ),
            Http("b", post("/echo/000/{s}/xhr_send", r#"["a","b"]"#)),
            Http("b", post("/echo/000/{s}/xhr_send", r#"["c"]"#)),
        ],
    ));
    let big = |c: char| serde_json::to_string(&vec![c.to_string().repeat(1000); 5]).expect("json");
    cases.push(case(
        "xhr_streaming response limit",
        vec![
            Http("a", post("/echo/000/{s}/xhr_streaming", "")),
            Http("b", post("/echo/000/{s}/xhr_send", &big('x'))),
            Http("b", post("/echo/000/{s}/xhr_send", &big('y'))),
            Http("c", post("/echo/000/{s}/xhr_streaming", "")),
        ],
    ));
    cases.push(case(
        "xhr_streaming limit counts characters",
        vec![
            Http("a", post("/echo/000/{s}/xhr_streaming", "")),
            Http("b", post("/echo/000/{s}/xhr_send", &big('é'))),
            Http("c", post("/echo/000/{s}/xhr_streaming", "")),
        ],
    ));
    cases.push(case(
        "xhr_streaming second receiver",
        vec![
            Http("a", post("/echo/000/{s}/xhr_streaming", "")),
            Http("b", post("/echo/000/{s}/xhr_streaming", "")),
            Http("c", post("/echo/000/{s}/xhr_send", r#"["x"]"#)),
        ],
    ));
    cases.push(case(
        "xhr_streaming aborted",
        vec![
            Http("a", post("/echo/000/{s}/xhr_streaming", "")),
            Drop("a"),
            wait_ms(200),
            Http("b", post("/echo/000/{s}/xhr_streaming", "")),
            Http("c", post("/echo/000/{s}/xhr_send", r#"["x"]"#)),
        ],
    ));
    cases.push(case(
        "queued messages reach the next receiver",
        vec![
            Http("a", post("/echo/000/{s}/xhr", "")),
            Http("a", post("/echo/000/{s}/xhr_send", r#"["a"]"#)),
            Http("a", post("/echo/000/{s}/xhr_send", r#"["b","c"]"#)),
            Http("b", post("/echo/000/{s}/xhr_streaming", "")),
        ],
    ));
    for (label, headers) in [
        ("no origin", vec![]),
        ("origin", vec![("Origin", "https://app.test")]),
        ("origin null", vec![("Origin", "null")]),
        (
            "requested headers",
            vec![("Access-Control-Request-Headers", "x-a")],
        ),
    ] {
        cases.push(case(
            format!("eventsource {label}"),
            vec![
                Http("a", get_with("/echo/000/{s}/eventsource", &headers)),
                Http("b", post("/echo/000/{s}/xhr_send", r#"["a","50% off"]"#)),
            ],
        ));
    }
    cases.push(case(
        "eventsource response limit",
        vec![
            Http("a", get("/echo/000/{s}/eventsource")),
            Http(
                "b",
                post(
                    "/echo/000/{s}/xhr_send",
                    &serde_json::to_string(&vec!["%".repeat(700); 3]).expect("json"),
                ),
            ),
            Http("c", get("/echo/000/{s}/eventsource")),
        ],
    ));
    cases.push(case(
        "htmlfile",
        vec![
            Http(
                "a",
                get_with(
                    "/echo/000/{s}/htmlfile?c=%63allback",
                    &[("Origin", "https://app.test")],
                ),
            ),
            Http("b", post("/echo/000/{s}/xhr_send", r#"["a","</script>"]"#)),
        ],
    ));
    cases.push(case(
        "htmlfile callbacks",
        vec![
            Http("a", get("/echo/000/{s}/htmlfile")),
            Http("a", get("/echo/000/{s}/htmlfile?c=")),
            Http("a", get("/echo/000/{s}/htmlfile?c=a(b)")),
            Http("a", get("/echo/000/{s}/htmlfile?c=%D0%B9")),
            Http("a", get("/echo/000/{s}/htmlfile?c=a&c=b")),
            Http("b", get("/echo/000/{t}/htmlfile?callback=x.y_z-1")),
        ],
    ));
    cases.push(case(
        "htmlfile long callback",
        vec![Http(
            "a",
            get(&format!("/echo/000/{{s}}/htmlfile?c={}", "c".repeat(300))),
        )],
    ));
    cases.push(case(
        "close app over streaming transports",
        vec![
            Http("a", post("/close/000/{s}/xhr_streaming", "")),
            Http("b", get("/close/000/{t}/eventsource")),
            Http("c", get("/close/000/{t}/htmlfile?c=cb")),
            Http("d", post("/close/000/{s}/xhr", "")),
        ],
    ));
}

fn jsonp_cases(cases: &mut Vec<Case>) {
    use Step::*;
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let plain = [("Content-Type", "text/plain")];
    cases.push(case(
        "jsonp",
        vec![
            Http("a", get("/echo/000/{s}/jsonp?c=callback")),
            Http(
                "a",
                post_with("/echo/000/{s}/jsonp_send", &form, b"d=%5B%22x%22%5D"),
            ),
            Http(
                "a",
                post_with("/echo/000/{s}/jsonp_send", &plain, br#"["y"]"#),
            ),
            Http("a", post_with("/echo/000/{s}/jsonp_send", &[], br#"["z"]"#)),
            Http("a", get("/echo/000/{s}/jsonp?callback=cb2")),
        ],
    ));
    cases.push(case(
        "jsonp callbacks",
        vec![
            Http("a", get("/echo/000/{s}/jsonp")),
            Http("a", get("/echo/000/{s}/jsonp?c=")),
            Http("a", get("/echo/000/{t}/jsonp?c=a%28b")),
            Http("a", get("/echo/000/{t}/jsonp?c=a&c=b")),
            Http(
                "a",
                get(&format!("/echo/000/{{t}}/jsonp?c={}", "j".repeat(32))),
            ),
            Http(
                "a",
                get(&format!("/echo/000/{{t}}/jsonp?c={}", "j".repeat(33))),
            ),
            Http("a", get("/echo/000/{t}/jsonp?c=x&callback=y")),
        ],
    ));
    cases.push(case(
        "jsonp_send bodies",
        vec![
            Http("a", get("/echo/000/{s}/jsonp?c=cb")),
            Http("a", post_with("/echo/000/{s}/jsonp_send", &form, b"")),
            Http("a", post_with("/echo/000/{s}/jsonp_send", &form, b"d=")),
            Http("a", post_with("/echo/000/{s}/jsonp_send", &form, b"p=p")),
            Http(
                "a",
                post_with("/echo/000/{s}/jsonp_send", &form, b"d=%5B%22x"),
            ),
            Http(
                "a",
                post_with(
                    "/echo/000/{s}/jsonp_send",
                    &form,
                    b"d=%5B%22a%22%5D&d=%5B%22b%22%5D",
                ),
            ),
            Http(
                "a",
                post_with(
                    "/echo/000/{s}/jsonp_send",
                    &form,
                    b"d=%22%5B%5C%22s%5C%22%5D%22",
                ),
            ),
            Http("a", post_with("/echo/000/{s}/jsonp_send", &plain, b"")),
            Http("a", post_with("/echo/000/{s}/jsonp_send", &plain, b"[\"x")),
            Http(
                "a",
                post_with("/echo/000/{s}/jsonp_send", &plain, br#""[\"double\"]""#),
            ),
            Http(
                "a",
                post_with(
                    "/echo/000/{s}/jsonp_send",
                    &[("Content-Type", "application/json")],
                    br#"["json"]"#,
                ),
            ),
            Http(
                "a",
                post_with(
                    "/echo/000/{s}/jsonp_send",
                    &[(
                        "Content-Type",
                        "application/x-www-form-urlencoded; charset=UTF-8",
                    )],
                    b"d=%5B%22charset%22%5D",
                ),
            ),
            Http(
                "a",
                post_with("/echo/000/{t}/jsonp_send", &form, b"d=%5B%22x%22%5D"),
            ),
            Http("a", get("/echo/000/{s}/jsonp?c=cb")),
        ],
    ));
    cases.push(case(
        "close app over jsonp",
        vec![
            Http("a", get("/close/000/{s}/jsonp?c=cb")),
            Http("a", get("/close/000/{s}/jsonp?c=cb")),
        ],
    ));
}

fn cookie_cases(cases: &mut Vec<Case>) {
    use Step::*;
    for (label, headers) in [
        ("no cookie", vec![]),
        ("JSESSIONID", vec![("Cookie", "JSESSIONID=abc123")]),
        (
            "among others",
            vec![("Cookie", "a=1; JSESSIONID=x.y-z ; b=2")],
        ),
        ("empty", vec![("Cookie", "JSESSIONID=")]),
        ("twice", vec![("Cookie", "JSESSIONID=one; JSESSIONID=two")]),
        ("with equals", vec![("Cookie", "JSESSIONID=a=b")]),
        ("quoted", vec![("Cookie", "JSESSIONID=\"q,w\"")]),
    ] {
        cases.push(case(
            format!("cookie_needed {label}"),
            vec![
                Http(
                    "a",
                    post_with("/cookie_needed_echo/000/{s}/xhr", &headers, b""),
                ),
                Http(
                    "a",
                    post_with(
                        "/cookie_needed_echo/000/{s}/xhr_send",
                        &headers,
                        br#"["x"]"#,
                    ),
                ),
                Http("a", options("/cookie_needed_echo/000/{s}/xhr", &headers)),
                Http(
                    "a",
                    post_with("/cookie_needed_echo/000/{s}/xhr", &headers, b""),
                ),
            ],
        ));
    }
    let cookie = [("Cookie", "JSESSIONID=abc")];
    cases.push(case(
        "cookie on every transport",
        vec![
            Http(
                "a",
                get_with("/cookie_needed_echo/000/{s}/jsonp?c=cb", &cookie),
            ),
            Http(
                "a",
                post_with(
                    "/cookie_needed_echo/000/{s}/jsonp_send",
                    &[
                        ("Cookie", "JSESSIONID=abc"),
                        ("Content-Type", "application/x-www-form-urlencoded"),
                    ],
                    b"d=%5B%22x%22%5D",
                ),
            ),
            Http(
                "b",
                get_with("/cookie_needed_echo/000/{t}/eventsource", &cookie),
            ),
            Http("c", get("/cookie_needed_echo/000/{t}/htmlfile?c=cb")),
            Http("d", post("/cookie_needed_echo/000/{s}/xhr_streaming", "")),
            Http("e", get_with("/cookie_needed_echo/info", &cookie)),
            Http("e", get_with("/cookie_needed_echo/iframe.html", &cookie)),
            Http("e", get_with("/cookie_needed_echo", &cookie)),
            Http(
                "e",
                post_with("/cookie_needed_echo/000/{s}/nope", &cookie, b""),
            ),
            Http("e", get_with("/cookie_needed_echo/000/{s}/jsonp", &cookie)),
        ],
    ));
    cases.push(case(
        "no cookie without cookie_needed",
        vec![
            Http("a", post_with("/echo/000/{s}/xhr", &cookie, b"")),
            Http("a", options("/echo/info", &cookie)),
        ],
    ));
}

fn http10_cases(cases: &mut Vec<Case>) {
    use Step::*;
    cases.push(case(
        "HTTP/1.0 static",
        vec![
            Http("a", http("1.0", "GET", "/echo", &[], b"")),
            Http("b", http("1.0", "GET", "/echo/info", &[], b"")),
            Http("c", http("1.0", "GET", "/echo/iframe.html", &[], b"")),
            Http("d", http("1.0", "GET", "/echo/nope", &[], b"")),
            Http("e", http("1.0", "GET", "/echo/0/0/xhr", &[], b"")),
            Http("f", http("1.0", "OPTIONS", "/echo/info", &[], b"")),
        ],
    ));
    cases.push(case(
        "HTTP/1.0 keep-alive",
        vec![
            Http(
                "a",
                http("1.0", "GET", "/echo", &[("Connection", "keep-alive")], b""),
            ),
            Http(
                "a",
                http(
                    "1.0",
                    "GET",
                    "/echo/info",
                    &[("Connection", "keep-alive")],
                    b"",
                ),
            ),
        ],
    ));
    cases.push(case(
        "HTTP/1.0 transports",
        vec![
            Http("a", http("1.0", "POST", "/echo/000/{s}/xhr", &[], b"")),
            Http(
                "b",
                http("1.0", "POST", "/echo/000/{s}/xhr_send", &[], br#"["a"]"#),
            ),
            Http("c", http("1.0", "POST", "/echo/000/{s}/xhr", &[], b"")),
            Http(
                "d",
                http("1.0", "POST", "/echo/000/{s}/xhr_streaming", &[], b""),
            ),
            Http(
                "e",
                http("1.0", "POST", "/echo/000/{s}/xhr_send", &[], br#"["b"]"#),
            ),
            Http(
                "f",
                http(
                    "1.0",
                    "POST",
                    "/echo/000/{s}/jsonp_send",
                    &[("Content-Type", "text/plain")],
                    br#"["c"]"#,
                ),
            ),
        ],
    ));
    cases.push(case(
        "HTTP/1.0 eventsource and jsonp",
        vec![
            Http(
                "a",
                http("1.0", "GET", "/echo/000/{s}/eventsource", &[], b""),
            ),
            Http(
                "b",
                http("1.0", "POST", "/echo/000/{s}/xhr_send", &[], br#"["a"]"#),
            ),
            Http(
                "c",
                http("1.0", "GET", "/echo/000/{t}/jsonp?c=cb", &[], b""),
            ),
            Http(
                "d",
                http("1.0", "GET", "/echo/000/{t}/htmlfile?c=cb", &[], b""),
            ),
        ],
    ));
}

fn websocket_cases(cases: &mut Vec<Case>) {
    use Step::*;
    cases.push(case(
        "websocket framed echo",
        vec![
            WsOpen("a", ws_handshake("/echo/000/{s}/websocket", &[])),
            ws_text("a", r#"["a","b"]"#),
            ws_text("a", r#""single""#),
            ws_text("a", ""),
            ws_text("a", "[]"),
            ws_text("a", r#"[1,null,{"k":1}]"#),
            Step::WsSend("a", Ws::Close(None)),
        ],
    ));
    cases.push(case(
        "websocket framed broken framing",
        vec![
            WsOpen("a", ws_handshake("/echo/000/{s}/websocket", &[])),
            ws_text("a", "[\"a"),
        ],
    ));
    cases.push(case(
        "websocket framed close app",
        vec![WsOpen("a", ws_handshake("/close/000/{s}/websocket", &[]))],
    ));
    cases.push(case(
        "websocket framed shares no session with polling",
        vec![
            Http("h", post("/echo/000/{s}/xhr", "")),
            WsOpen("a", ws_handshake("/echo/000/{s}/websocket", &[])),
            WsOpen("b", ws_handshake("/echo/000/{s}/websocket", &[])),
            ws_text("b", r#"["b"]"#),
        ],
    ));
    cases.push(case(
        "websocket framed client close codes",
        vec![
            WsOpen("a", ws_handshake("/echo/000/{s}/websocket", &[])),
            Step::WsSend(
                "a",
                Ws::Close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                    code: 4000.into(),
                    reason: "bye".into(),
                })),
            ),
        ],
    ));
    cases.push(case(
        "websocket raw",
        vec![
            WsOpen("a", ws_handshake("/echo/websocket", &[])),
            ws_text("a", r#"["not framed"]"#),
            ws_text("a", "plain"),
            Step::WsSend("a", Ws::Close(None)),
        ],
    ));
    cases.push(case(
        "websocket raw close app",
        vec![WsOpen("a", ws_handshake("/close/websocket", &[]))],
    ));
    cases.push(case(
        "websocket disabled",
        vec![
            WsOpen(
                "a",
                ws_handshake("/disabled_websocket_echo/000/{s}/websocket", &[]),
            ),
            WsOpen("b", ws_handshake("/disabled_websocket_echo/websocket", &[])),
            Http("c", get("/disabled_websocket_echo/000/{s}/websocket")),
            Http("c", get("/disabled_websocket_echo/websocket")),
        ],
    ));
    cases.push(case(
        "websocket without upgrade",
        vec![
            Http("a", get("/echo/000/{s}/websocket")),
            Http("a", get("/echo/websocket")),
            Http(
                "a",
                get_with("/echo/websocket", &[("Upgrade", "websocket")]),
            ),
            Http(
                "a",
                get_with("/echo/websocket/", &[("Connection", "Upgrade")]),
            ),
        ],
    ));
    cases.push(case(
        "websocket versions",
        vec![
            WsOpen("a", ws_handshake_version("/echo/websocket", "8")),
            WsOpen("b", ws_handshake_version("/echo/000/{s}/websocket", "8")),
        ],
    ));
    cases.push(case(
        "websocket cookie_needed",
        vec![WsOpen(
            "a",
            ws_handshake(
                "/cookie_needed_echo/000/{s}/websocket",
                &[("Cookie", "JSESSIONID=abc")],
            ),
        )],
    ));
}

/// sigway bounds what one message may weigh (`limits.max_frame_bytes`,
/// 1 MiB by default); sockjs-node does not.
fn limit_cases(cases: &mut Vec<Case>) {
    use Step::*;
    let huge = serde_json::to_string(&["x".repeat(1_100_000)]).expect("json");
    cases.push(case(
        "xhr_send over the size limit",
        vec![
            Http("a", post("/echo/000/{s}/xhr", "")),
            Http("b", post("/echo/000/{s}/xhr_send", &huge)),
            Pending("c", post("/echo/000/{s}/xhr", "")),
        ],
    ));
    cases.push(case(
        "websocket message over the size limit",
        vec![
            WsOpen("a", ws_handshake("/echo/000/{s}/websocket", &[])),
            ws_text("a", &huge),
        ],
    ));
}

fn ws_handshake_version(path: &str, version: &str) -> Vec<u8> {
    let headers = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", version),
    ];
    http("1.1", "GET", path, &headers, b"")
}

fn escaping_cases(cases: &mut Vec<Case>) {
    use Step::*;
    let batch = stress_batch();
    cases.push(case(
        "escaping over xhr",
        vec![
            Http("a", post("/echo/000/{s}/xhr", "")),
            Http("a", post("/echo/000/{s}/xhr_send", &batch)),
            Http("a", post("/echo/000/{s}/xhr", "")),
        ],
    ));
    for (name, text) in stress_messages() {
        let one = serde_json::to_string(&[text]).expect("json");
        cases.push(case(
            format!("escaping over xhr_streaming: {name}"),
            vec![
                Http("a", post("/echo/000/{s}/xhr_streaming", "")),
                Http("b", post("/echo/000/{s}/xhr_send", &one)),
            ],
        ));
        cases.push(case(
            format!("escaping over eventsource: {name}"),
            vec![
                Http("a", get("/echo/000/{s}/eventsource")),
                Http("b", post("/echo/000/{s}/xhr_send", &one)),
            ],
        ));
        cases.push(case(
            format!("escaping over htmlfile: {name}"),
            vec![
                Http("a", get("/echo/000/{s}/htmlfile?c=cb")),
                Http("b", post("/echo/000/{s}/xhr_send", &one)),
            ],
        ));
        cases.push(case(
            format!("escaping over websocket: {name}"),
            vec![
                WsOpen("a", ws_handshake("/echo/000/{s}/websocket", &[])),
                ws_text("a", &one),
            ],
        ));
    }
    cases.push(case(
        "escaping over jsonp",
        vec![
            Http("a", get("/echo/000/{s}/jsonp?c=cb")),
            Http(
                "a",
                post_with(
                    "/echo/000/{s}/jsonp_send",
                    &[("Content-Type", "application/x-www-form-urlencoded")],
                    format!("d={}", percent_encode(&batch)).as_bytes(),
                ),
            ),
            Http("a", get("/echo/000/{s}/jsonp?c=cb")),
        ],
    ));
    cases.push(case(
        "escaping over raw websocket",
        vec![
            WsOpen("a", ws_handshake("/echo/websocket", &[])),
            ws_text(
                "a",
                &stress_messages()
                    .into_iter()
                    .map(|(_, t)| t)
                    .collect::<String>(),
            ),
        ],
    ));
    cases.push(case(
        "lone surrogates over xhr",
        vec![
            Http("a", post("/echo/000/{s}/xhr", "")),
            Http("a", post("/echo/000/{s}/xhr_send", LONE_SURROGATES)),
            Http("a", post("/echo/000/{s}/xhr", "")),
        ],
    ));
    cases.push(case(
        "lone surrogates over websocket",
        vec![
            WsOpen("a", ws_handshake("/echo/000/{s}/websocket", &[])),
            ws_text("a", LONE_SURROGATES),
        ],
    ));
    cases.push(case(
        "lone surrogates over eventsource",
        vec![
            Http("a", get("/echo/000/{s}/eventsource")),
            Http("b", post("/echo/000/{s}/xhr_send", LONE_SURROGATES)),
        ],
    ));
}

/// Heartbeats and expiry, on the server pair with short timings.
fn timed_cases() -> Vec<Case> {
    use Step::*;
    // Past the first heartbeat, and (with the settling that follows) well
    // before the second.
    let beat = SHORT_HEARTBEAT_MS + 300;
    vec![
        case(
            "heartbeat on xhr_streaming",
            vec![
                Http("a", post("/echo/000/{s}/xhr_streaming", "")),
                wait_ms(beat),
            ],
        ),
        case(
            "heartbeat on eventsource",
            vec![Http("a", get("/echo/000/{s}/eventsource")), wait_ms(beat)],
        ),
        case(
            "heartbeat ends a poll",
            vec![
                Http("a", post("/echo/000/{s}/xhr", "")),
                Pending("a", post("/echo/000/{s}/xhr", "")),
                wait_ms(beat),
                Http("a", post("/echo/000/{s}/xhr_send", r#"["x"]"#)),
                Http("a", post("/echo/000/{s}/xhr", "")),
            ],
        ),
        case(
            "heartbeat on framed websocket",
            vec![
                WsOpen("a", ws_handshake("/echo/000/{s}/websocket", &[])),
                wait_ms(beat),
            ],
        ),
        case(
            "no heartbeat on raw websocket",
            vec![
                WsOpen("a", ws_handshake("/echo/websocket", &[])),
                wait_ms(beat),
            ],
        ),
        case(
            "session expires without receiver",
            vec![
                Http("a", post("/echo/000/{s}/xhr", "")),
                wait_ms(SHORT_DISCONNECT_MS * 2),
                // A new connection: the first has idled past keep-alive.
                Http("b", post("/echo/000/{s}/xhr_send", r#"["x"]"#)),
                Http("b", post("/echo/000/{s}/xhr", "")),
            ],
        ),
        case(
            "closed session expires",
            vec![
                Http("a", post("/close/000/{s}/xhr", "")),
                Http("a", post("/close/000/{s}/xhr", "")),
                wait_ms(SHORT_DISCONNECT_MS * 2),
                Http("b", post("/close/000/{s}/xhr", "")),
            ],
        ),
    ]
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Deliberate differences

/// A case where sigway differs from sockjs-node on purpose: exactly these
/// lines are only in the Node transcript, exactly these only in sigway's.
struct Deliberate {
    case: &'static str,
    why: &'static str,
    node_only: &'static [&'static str],
    sigway_only: &'static [&'static str],
}

const DELIBERATE: &[Deliberate] = &[
    Deliberate {
        case: r#"websocket message over the size limit"#,
        why: "videre.md: sigway bounds a message (limits.max_frame_bytes, 1 MiB by default) and closes a framed WebSocket that sends more with c[1009,...]; sockjs-node has no limit",
        node_only: &[r#"a: text a[\"x{x1100000}\"]"#],
        sigway_only: &[
            r#"a: text c[1009,\"Message too big (limit 1048576 bytes)\"]"#,
            r#"a: close 1000 Normal closure"#,
        ],
    },
    Deliberate {
        case: r#"xhr_send over the size limit"#,
        why: "videre.md: sigway bounds a message (limits.max_frame_bytes, 1 MiB by default) and refuses a larger xhr_send with 413 (then closes the connection, whose body it does not read); sockjs-node has no limit",
        node_only: &[
            r#"b: HTTP/1.1 204 No Content"#,
            r#"b:   content-type: text/plain; charset=UTF-8"#,
            r#"c: HTTP/1.1 200 OK"#,
            r#"c:   access-control-allow-origin: *"#,
            r#"c:   cache-control: no-store, no-cache, no-transform, must-revalidate, max-age=0"#,
            r#"c:   content-type: application/javascript; charset=UTF-8"#,
            r#"c:   date: <time>"#,
            r#"c:   vary: Origin"#,
            r#"c: data a[\"x{x1100000}\"]\n"#,
            r#"c: end"#,
        ],
        sigway_only: &[
            r#"b: HTTP/1.1 413 Payload Too Large"#,
            r#"b: data Payload too large (limit 1048576 bytes)"#,
            r#"b: closed"#,
        ],
    },
    Deliberate {
        case: r#"HTTP/1.0 keep-alive"#,
        why: "connection-level: an HTTP/1.0 client asking for keep-alive gets it from sigway, whose answer has a Content-Length; Node closes instead (its body is delimited by the close)",
        node_only: &[r#"a: closed"#],
        sigway_only: &[
            r#"a: HTTP/1.1 200 OK"#,
            r#"a:   access-control-allow-origin: *"#,
            r#"a:   cache-control: no-store, no-cache, no-transform, must-revalidate, max-age=0"#,
            r#"a:   content-type: application/json; charset=UTF-8"#,
            r#"a:   date: <time>"#,
            r#"a:   vary: Origin"#,
            r#"a: data {\"websocket\":true,\"origins\":[\"*:*\"],\"cookie_needed\":false,\"entropy\":<random>}"#,
            r#"a: end"#,
        ],
    },
    Deliberate {
        case: r#"escaping over htmlfile: script end"#,
        why: "harmful sockjs-node bug: in htmlfile pages it leaves `<` raw, so a message holding `</script>` ends the script element and runs as HTML on the server's origin; sigway sends `<` as \\u003c (same string once decoded)",
        node_only: &[
            r#"a: data <script>\np(\"a[\\\"</script><script>alert(1)</script><!--\\\"]\");\n</script>\r\n"#,
        ],
        sigway_only: &[
            r#"a: data <script>\np(\"a[\\\"\\u003c/script>\\u003cscript>alert(1)\\u003c/script>\\u003c!--\\\"]\");\n</script>\r\n"#,
        ],
    },
    Deliberate {
        case: r#"htmlfile"#,
        why: "harmful sockjs-node bug: in htmlfile pages it leaves `<` raw, so a message holding `</script>` ends the script element and runs as HTML on the server's origin; sigway sends `<` as \\u003c (same string once decoded)",
        node_only: &[r#"a: data <script>\np(\"a[\\\"</script>\\\"]\");\n</script>\r\n"#],
        sigway_only: &[r#"a: data <script>\np(\"a[\\\"\\u003c/script>\\\"]\");\n</script>\r\n"#],
    },
    Deliberate {
        case: r#"lone surrogates over eventsource"#,
        why: "messages are UTF-8 strings in sigway, which cannot hold a lone UTF-16 surrogate: an escaped one (`\\ud800`) becomes U+FFFD (sockjs-node passes it through); the session and the rest of the payload are kept",
        node_only: &[
            r#"a: data data: a[\"\\ud800\"]\r\n\r\n"#,
            r#"a: data data: a[\"x\\udfffy\"]\r\n\r\n"#,
            r#"a: data data: a[\"\\ud83d\"]\r\n\r\n"#,
            r#"a: data data: a[\"\\ude00\\ud83d\"]\r\n\r\n"#,
        ],
        sigway_only: &[
            r#"a: data data: a[\"\\ufffd\"]\r\n\r\n"#,
            r#"a: data data: a[\"x\\ufffdy\"]\r\n\r\n"#,
            r#"a: data data: a[\"\\ufffd\"]\r\n\r\n"#,
            r#"a: data data: a[\"\\ufffd\\ufffd\"]\r\n\r\n"#,
        ],
    },
    Deliberate {
        case: r#"lone surrogates over websocket"#,
        why: "messages are UTF-8 strings in sigway, which cannot hold a lone UTF-16 surrogate: an escaped one (`\\ud800`) becomes U+FFFD (sockjs-node passes it through); the session and the rest of the payload are kept",
        node_only: &[
            r#"a: text a[\"\\ud800\"]"#,
            r#"a: text a[\"x\\udfffy\"]"#,
            r#"a: text a[\"\\ud83d\"]"#,
            r#"a: text a[\"\\ude00\\ud83d\"]"#,
        ],
        sigway_only: &[
            r#"a: text a[\"\\ufffd\"]"#,
            r#"a: text a[\"x\\ufffdy\"]"#,
            r#"a: text a[\"\\ufffd\"]"#,
            r#"a: text a[\"\\ufffd\\ufffd\"]"#,
        ],
    },
    Deliberate {
        case: r#"lone surrogates over xhr"#,
        why: "messages are UTF-8 strings in sigway, which cannot hold a lone UTF-16 surrogate: an escaped one (`\\ud800`) becomes U+FFFD (sockjs-node passes it through); the session and the rest of the payload are kept",
        node_only: &[r#"a: data a[\"\\ud800\",\"x\\udfffy\",\"\\ud83d\",\"\\ude00\\ud83d\"]\n"#],
        sigway_only: &[r#"a: data a[\"\\ufffd\",\"x\\ufffdy\",\"\\ufffd\",\"\\ufffd\\ufffd\"]\n"#],
    },
    Deliberate {
        case: r#"websocket disabled"#,
        why: "connection-level: the 404 to a WebSocket upgrade on a disabled endpoint carries a Date header; sockjs-node writes that answer by hand on the raw socket, without one",
        node_only: &[],
        sigway_only: &[r#"a:   date: <time>"#, r#"b:   date: <time>"#],
    },
    Deliberate {
        case: r#"websocket framed echo"#,
        why: "non-string elements of a client batch: sockjs-node hands the echo app a JavaScript value whose String() is `[object Object]`; sigway hands apps the element's JSON text (sockjs-client only sends strings).",
        node_only: &[r#"a: text a[\"[object Object]\"]"#],
        sigway_only: &[r#"a: text a[\"{\\\"k\\\":1}\"]"#],
    },
    Deliberate {
        case: r#"websocket versions"#,
        why: "connection-level: the 400 to an unsupported WebSocket version carries a Date header; websocket-driver writes that answer by hand on the raw socket, without one",
        node_only: &[],
        sigway_only: &[r#"a:   date: <time>"#, r#"b:   date: <time>"#],
    },
    Deliberate {
        case: r#"websocket without upgrade"#,
        why: "connection-level: a plain GET that carries `Connection: Upgrade` but no `Upgrade: websocket` gets the same 400 from both, but actix then closes the connection (it took the request for an upgrade) where Node serves the next request on it",
        node_only: &[
            r#"a: HTTP/1.1 400 Bad Request"#,
            r#"a:   date: <time>"#,
            r#"a: data Not a valid websocket request"#,
            r#"a: end"#,
        ],
        sigway_only: &[r#"a: closed"#],
    },
    Deliberate {
        case: r#"xhr_send non-string elements"#,
        why: "non-string elements of a client batch: sockjs-node hands the echo app a JavaScript value whose String() is `[object Object]` or `1,2,x`; sigway hands apps the element's JSON text (sockjs-client only sends strings)",
        node_only: &[
            r#"a: data a[\"1\",\"2.5\",\"null\",\"true\",\"[object Object]\",\"1,2,x\"]\n"#,
        ],
        sigway_only: &[
            r#"a: data a[\"1\",\"2.5\",\"null\",\"true\",\"{\\\"k\\\":1}\",\"[1,[2,\\\"x\\\"]]\"]\n"#,
        ],
    },
];

// ---------------------------------------------------------------------------
// Running a case

/// What one connection received, as transcript lines.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    fn push(&self, activity: &AtomicU64, line: String) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(line);
        activity.fetch_add(1, Ordering::SeqCst);
    }
    fn take(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

type WsSink = SplitSink<WebSocketStream<TcpStream>, Ws>;

enum Writer {
    Tcp(OwnedWriteHalf),
    Ws(WsSink),
    Gone,
}

struct Conn {
    name: &'static str,
    /// Per request written, whether it was a HEAD (its answer has no body).
    heads: HeadQueue,
    lines: Lines,
    /// Bytes received so far (WebSocket: messages), to wait for answers.
    received: Arc<AtomicU64>,
    writer: Writer,
    reader: tokio::task::JoinHandle<()>,
    /// Lines recorded when the client dropped the connection: what the
    /// reader saw after that (a race with its abort) is not kept.
    cut: Option<usize>,
}

struct Run {
    addr: String,
    sessions: [String; 2],
    conns: Vec<Conn>,
    activity: Arc<AtomicU64>,
}

impl Run {
    fn substitute(&self, bytes: &[u8]) -> Vec<u8> {
        let text = String::from_utf8_lossy(bytes);
        if !text.contains("{s}") && !text.contains("{t}") {
            return bytes.to_vec();
        }
        // Request templates are ASCII apart from bodies, which hold no
        // placeholders: replace on bytes to keep invalid UTF-8 bodies intact.
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i..].starts_with(b"{s}") {
                out.extend_from_slice(self.sessions[0].as_bytes());
                i += 3;
            } else if bytes[i..].starts_with(b"{t}") {
                out.extend_from_slice(self.sessions[1].as_bytes());
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        out
    }

    async fn connect(&mut self, name: &'static str) -> usize {
        if let Some(at) = self.conns.iter().position(|c| c.name == name) {
            return at;
        }
        let stream = tokio::time::timeout(FIRST_BYTES, TcpStream::connect(&self.addr))
            .await
            .expect("connect in time")
            .expect("connect");
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        let lines = Lines::default();
        let received = Arc::new(AtomicU64::new(0));
        let heads = HeadQueue::default();
        let reader = tokio::spawn(read_http(
            read,
            Vec::new(),
            heads.clone(),
            lines.clone(),
            self.activity.clone(),
            received.clone(),
        ));
        self.conns.push(Conn {
            name,
            heads,
            lines,
            received,
            writer: Writer::Tcp(write),
            reader,
            cut: None,
        });
        self.conns.len() - 1
    }

    async fn write(&mut self, name: &'static str, request: &[u8]) -> usize {
        let at = self.connect(name).await;
        let request = self.substitute(request);
        self.conns[at]
            .heads
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(request.starts_with(b"HEAD "));
        if let Writer::Tcp(write) = &mut self.conns[at].writer {
            let _ = write.write_all(&request).await;
        }
        at
    }

    async fn wait_for_bytes(&self, at: usize, before: u64) {
        let deadline = Instant::now() + FIRST_BYTES;
        while self.conns[at].received.load(Ordering::SeqCst) == before && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until no connection received anything for `QUIET`.
    async fn settle(&self) {
        self.settle_for(QUIET).await;
    }

    /// Waits until no connection received anything for `quiet`.
    async fn settle_for(&self, quiet: Duration) {
        let deadline = Instant::now() + MAX_SETTLE;
        loop {
            let before = self.activity.load(Ordering::SeqCst);
            tokio::time::sleep(quiet).await;
            if self.activity.load(Ordering::SeqCst) == before || Instant::now() > deadline {
                return;
            }
        }
    }

    async fn step(&mut self, step: &Step) {
        match step {
            Step::Http(name, request) => {
                let before = match self.conns.iter().find(|c| c.name == *name) {
                    Some(conn) => conn.received.load(Ordering::SeqCst),
                    None => 0,
                };
                let at = self.write(name, request).await;
                self.wait_for_bytes(at, before).await;
            }
            Step::Pending(name, request) => {
                self.write(name, request).await;
            }
            Step::Drop(name) => {
                if let Some(conn) = self.conns.iter_mut().find(|c| c.name == *name) {
                    conn.reader.abort();
                    conn.cut = Some(conn.lines.take().len());
                    conn.writer = Writer::Gone;
                }
            }
            Step::Wait(pause) => tokio::time::sleep(*pause).await,
            Step::WsOpen(name, request) => self.ws_open(name, request).await,
            Step::WsSend(name, message) => {
                if let Some(conn) = self.conns.iter_mut().find(|c| c.name == *name)
                    && let Writer::Ws(sink) = &mut conn.writer
                {
                    let _ = tokio::time::timeout(FIRST_BYTES, sink.send(message.clone())).await;
                }
            }
        }
        self.settle().await;
    }

    async fn ws_open(&mut self, name: &'static str, request: &[u8]) {
        let request = self.substitute(request);
        let mut stream = tokio::time::timeout(FIRST_BYTES, TcpStream::connect(&self.addr))
            .await
            .expect("connect in time")
            .expect("connect");
        let _ = stream.set_nodelay(true);
        let _ = stream.write_all(&request).await;
        // Read the answer's head; what follows it is already the body (or
        // the first WebSocket frames).
        let mut buffer = Vec::new();
        let deadline = tokio::time::Instant::now() + FIRST_BYTES;
        let head_end = loop {
            if let Some(at) = find(&buffer, b"\r\n\r\n") {
                break Some(at + 4);
            }
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => buffer.extend_from_slice(&chunk[..n]),
                _ => break None,
            }
        };
        let lines = Lines::default();
        let received = Arc::new(AtomicU64::new(0));
        let heads = HeadQueue::default();
        let upgraded = head_end.is_some() && buffer.starts_with(b"HTTP/1.1 101 ");
        let (writer, reader) = match head_end {
            Some(end) if upgraded => {
                let (head, _) = parse_head(&buffer[..end]);
                for line in head {
                    lines.push(&self.activity, line);
                }
                let rest = buffer[end..].to_vec();
                let ws =
                    WebSocketStream::from_partially_read(stream, rest, Role::Client, None).await;
                let (sink, source) = ws.split();
                let reader = tokio::spawn(read_ws(
                    source,
                    lines.clone(),
                    self.activity.clone(),
                    received.clone(),
                ));
                (Writer::Ws(sink), reader)
            }
            _ => {
                let (read, write) = stream.into_split();
                let reader = tokio::spawn(read_http(
                    read,
                    buffer,
                    heads.clone(),
                    lines.clone(),
                    self.activity.clone(),
                    received.clone(),
                ));
                (Writer::Tcp(write), reader)
            }
        };
        self.conns.push(Conn {
            name,
            heads,
            lines,
            received,
            writer,
            reader,
            cut: None,
        });
    }

    /// Every connection's lines, prefixed with its name, in order of first use.
    fn transcript(&self) -> Vec<String> {
        self.conns
            .iter()
            .flat_map(|conn| {
                let mut lines = conn.lines.take();
                if let Some(cut) = conn.cut {
                    lines.truncate(cut);
                }
                if lines.last().is_some_and(|l| l == "closed")
                    && let Some(head) = lines.iter().rposition(|l| l.starts_with("HTTP/"))
                    && let Some(at) = lines[head..]
                        .iter()
                        .position(|l| l == "  connection: close")
                {
                    lines.remove(head + at);
                }
                lines
                    .into_iter()
                    .map(move |line| format!("{}: {line}", conn.name))
            })
            .collect()
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        for conn in &self.conns {
            conn.reader.abort();
        }
    }
}

async fn run_case(addr: String, index: usize, case: &Case) -> Vec<String> {
    let tag = format!("{index:03}x{:08x}", rand_tag());
    let mut run = Run {
        addr,
        sessions: [format!("s{tag}"), format!("t{tag}")],
        conns: Vec::new(),
        activity: Arc::new(AtomicU64::new(0)),
    };
    for step in &case.steps {
        run.step(step).await;
    }
    // Late closes and last frames (a loaded machine may be slow to send
    // them): a longer quiet period before the transcript is read.
    run.settle_for(QUIET * 2).await;
    run.transcript()
}

fn rand_tag() -> u32 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    nanos ^ (NEXT.fetch_add(1, Ordering::Relaxed) as u32).rotate_left(20)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------------------
// Reading and describing what arrives

/// How the body of the response being read is delimited.
enum Body {
    /// Between responses: the next bytes are a status line.
    Head,
    Length(usize),
    Chunked,
    /// HTTP/1.0 style: until the connection closes.
    UntilClose,
}

/// Whether each request written on a connection was a HEAD, oldest first.
#[derive(Clone, Default)]
struct HeadQueue(Arc<Mutex<std::collections::VecDeque<bool>>>);

struct HttpParser {
    heads: HeadQueue,
    buffer: Vec<u8>,
    body: Body,
    /// Bytes of a close-delimited body not yet reported.
    pending: Vec<u8>,
}

impl HttpParser {
    /// Reports everything complete in the buffer.
    fn parse(&mut self, out: &mut Vec<String>) {
        loop {
            match self.body {
                Body::Head => {
                    let Some(end) = find(&self.buffer, b"\r\n\r\n") else {
                        return;
                    };
                    let head: Vec<u8> = self.buffer.drain(..end + 4).collect();
                    let (lines, body) = parse_head(&head);
                    out.extend(lines);
                    let to_head = self
                        .heads
                        .0
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .pop_front()
                        .unwrap_or(false);
                    self.body = if to_head { Body::Head } else { body };
                    if matches!(self.body, Body::Head) {
                        out.push("end".into());
                    }
                }
                Body::Length(length) => {
                    if self.buffer.len() < length {
                        return;
                    }
                    let data: Vec<u8> = self.buffer.drain(..length).collect();
                    if !data.is_empty() {
                        out.push(data_line(&data));
                    }
                    out.push("end".into());
                    self.body = Body::Head;
                }
                Body::Chunked => {
                    let Some(line_end) = find(&self.buffer, b"\r\n") else {
                        return;
                    };
                    let size_text = String::from_utf8_lossy(&self.buffer[..line_end]).to_string();
                    let size_hex = size_text.split(';').next().unwrap_or("").trim();
                    let Ok(size) = usize::from_str_radix(size_hex, 16) else {
                        out.push(format!("bad chunk size {size_text:?}"));
                        self.buffer.clear();
                        return;
                    };
                    let needed = line_end + 2 + size + 2;
                    if self.buffer.len() < needed {
                        return;
                    }
                    let data = self.buffer[line_end + 2..line_end + 2 + size].to_vec();
                    self.buffer.drain(..needed);
                    if size == 0 {
                        out.push("end".into());
                        self.body = Body::Head;
                    } else {
                        out.push(data_line(&data));
                    }
                }
                Body::UntilClose => {
                    self.pending.append(&mut self.buffer);
                    return;
                }
            }
        }
    }

    /// A close-delimited body's bytes that arrived in one burst.
    fn flush(&mut self, out: &mut Vec<String>) {
        if !self.pending.is_empty() {
            out.push(data_line(&self.pending));
            self.pending.clear();
        }
    }
}

/// Status line and normalised headers of a response head, and how its body
/// is delimited.
fn parse_head(head: &[u8]) -> (Vec<String>, Body) {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n").filter(|l| !l.is_empty());
    let mut status = lines.next().unwrap_or("").to_string();
    // An HTTP/1.0 answer is an HTTP/1.1 one that closes the connection.
    let mut closes = false;
    if let Some(rest) = status.strip_prefix("HTTP/1.0 ") {
        status = format!("HTTP/1.1 {rest}");
        closes = true;
    }
    let code: u16 = status
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        let name = name.trim().to_ascii_lowercase();
        let value = value.trim().to_string();
        match name.as_str() {
            "transfer-encoding" if value.eq_ignore_ascii_case("chunked") => chunked = true,
            "content-length" => length = value.parse::<usize>().ok(),
            "keep-alive" => {}
            "connection" if value.eq_ignore_ascii_case("keep-alive") => closes = false,
            "connection" => {
                closes = false;
                headers.push((name, value.to_ascii_lowercase()))
            }
            // A handshake answer's Date says nothing.
            "date" if code == 101 => {}
            "date" | "expires" | "last-modified" => headers.push((name, "<time>".into())),
            _ => headers.push((name, value)),
        }
    }
    if closes {
        headers.push(("connection".into(), "close".into()));
    }
    headers.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = vec![status];
    out.extend(
        headers
            .into_iter()
            .map(|(n, v)| format!("  {n}: {}", show(v.as_bytes()))),
    );
    let body = if code == 101 || code == 204 || code == 304 || (100..200).contains(&code) {
        Body::Head
    } else if chunked {
        Body::Chunked
    } else if let Some(length) = length {
        Body::Length(length)
    } else {
        Body::UntilClose
    };
    (out, body)
}

fn data_line(data: &[u8]) -> String {
    let mut text = show(data);
    // info's entropy is random.
    if let Some(at) = text
        .find("\\\"entropy\\\":")
        .or_else(|| text.find("\"entropy\":"))
    {
        let digits_from = text[at..].find(':').map_or(at, |c| at + c + 1);
        let digits_to = text[digits_from..]
            .find(|c: char| !c.is_ascii_digit())
            .map_or(text.len(), |e| digits_from + e);
        text.replace_range(digits_from..digits_to, "<random>");
    }
    format!("data {text}")
}

/// Bytes as text: valid UTF-8 escaped like Rust's `{:?}` (without quotes),
/// anything else byte by byte; runs of one character shortened.
fn show(bytes: &[u8]) -> String {
    let escaped = match std::str::from_utf8(bytes) {
        Ok(text) => text.escape_debug().to_string(),
        Err(_) => format!("(not utf-8) {}", bytes.escape_ascii()),
    };
    let mut out = String::new();
    let chars: Vec<char> = escaped.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let mut run = 1;
        while i + run < chars.len() && chars[i + run] == chars[i] {
            run += 1;
        }
        if run >= 16 {
            out.push_str(&format!("{}{{x{run}}}", chars[i]));
        } else {
            out.extend(std::iter::repeat_n(chars[i], run));
        }
        i += run;
    }
    out
}

async fn read_http(
    mut read: OwnedReadHalf,
    already: Vec<u8>,
    heads: HeadQueue,
    lines: Lines,
    activity: Arc<AtomicU64>,
    received: Arc<AtomicU64>,
) {
    let mut parser = HttpParser {
        heads,
        buffer: already,
        body: Body::Head,
        pending: Vec::new(),
    };
    let mut out = Vec::new();
    let emit = |out: &mut Vec<String>| {
        for line in out.drain(..) {
            lines.push(&activity, line);
        }
    };
    if !parser.buffer.is_empty() {
        received.fetch_add(parser.buffer.len() as u64, Ordering::SeqCst);
        parser.parse(&mut out);
        emit(&mut out);
    }
    let mut chunk = vec![0u8; 65536];
    loop {
        match tokio::time::timeout(Duration::from_millis(60), read.read(&mut chunk)).await {
            Err(_) => {
                parser.flush(&mut out);
                emit(&mut out);
            }
            Ok(Ok(0)) | Ok(Err(_)) => {
                parser.flush(&mut out);
                if matches!(parser.body, Body::UntilClose) {
                    // The close is what ends such a body.
                    out.push("end".into());
                }
                if !parser.buffer.is_empty() {
                    out.push(format!("incomplete {}", show(&parser.buffer)));
                }
                out.push("closed".into());
                emit(&mut out);
                return;
            }
            Ok(Ok(n)) => {
                received.fetch_add(n as u64, Ordering::SeqCst);
                parser.buffer.extend_from_slice(&chunk[..n]);
                parser.parse(&mut out);
                emit(&mut out);
            }
        }
    }
}

async fn read_ws(
    mut source: futures_util::stream::SplitStream<WebSocketStream<TcpStream>>,
    lines: Lines,
    activity: Arc<AtomicU64>,
    received: Arc<AtomicU64>,
) {
    let mut closed_by_frame = false;
    loop {
        let line = match source.next().await {
            Some(Ok(Ws::Text(text))) => format!("text {}", show(text.as_bytes())),
            Some(Ok(Ws::Binary(bytes))) => format!("binary {}", show(&bytes)),
            Some(Ok(Ws::Ping(bytes))) => format!("ping {}", show(&bytes)),
            Some(Ok(Ws::Pong(bytes))) => format!("pong {}", show(&bytes)),
            Some(Ok(Ws::Close(Some(frame)))) => {
                format!(
                    "close {} {}",
                    u16::from(frame.code),
                    show(frame.reason.as_bytes())
                )
            }
            Some(Ok(Ws::Close(None))) => "close (no code)".into(),
            Some(Ok(Ws::Frame(_))) => continue,
            Some(Err(err)) => {
                lines.push(&activity, format!("error {err}"));
                return;
            }
            None => {
                if !closed_by_frame {
                    lines.push(&activity, "closed".into());
                }
                return;
            }
        };
        closed_by_frame = line.starts_with("close");
        received.fetch_add(1, Ordering::SeqCst);
        lines.push(&activity, line);
    }
}

// ---------------------------------------------------------------------------
// Comparing

/// Lines only in `a` and only in `b` (longest common subsequence), and the
/// side-by-side view of both.
fn diff(a: &[String], b: &[String]) -> (Vec<String>, Vec<String>, String) {
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let (mut only_a, mut only_b, mut view) = (Vec::new(), Vec::new(), String::new());
    let clip = |s: &str| -> String {
        if s.chars().count() > 110 {
            format!("{}…", s.chars().take(109).collect::<String>())
        } else {
            s.to_string()
        }
    };
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            view.push_str(&format!("    {:<112} | {}\n", clip(&a[i]), clip(&b[j])));
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            view.push_str(&format!("  > {:<112} | {}\n", "", b[j]));
            only_b.push(b[j].clone());
            j += 1;
        } else {
            view.push_str(&format!("  < {:<112} |\n", a[i]));
            only_a.push(a[i].clone());
            i += 1;
        }
    }
    (only_a, only_b, view)
}

/// Runs `cases` against both servers and returns a report per failing case.
async fn compare(cases: Vec<Case>, node_addr: String, sigway_addr: String) -> Vec<String> {
    let results = futures_util::stream::iter(cases.into_iter().enumerate())
        .map(|(index, case)| {
            let (node_addr, sigway_addr) = (node_addr.clone(), sigway_addr.clone());
            async move {
                let (node, sigway) = tokio::join!(
                    run_case(node_addr, index, &case),
                    run_case(sigway_addr, index, &case)
                );
                (case.name, node, sigway)
            }
        })
        .buffer_unordered(PARALLEL)
        .collect::<Vec<_>>()
        .await;
    let mut failures = Vec::new();
    for (name, node, sigway) in results {
        let (node_only, sigway_only, view) = diff(&node, &sigway);
        let deliberate = DELIBERATE.iter().find(|d| d.case == name);
        let ok = match deliberate {
            None => node_only.is_empty() && sigway_only.is_empty(),
            Some(d) => node_only == d.node_only && sigway_only == d.sigway_only,
        };
        if !ok {
            let expectation = match deliberate {
                None => "must match sockjs-node".to_string(),
                Some(d) => format!(
                    "deliberate difference ({}) expected node-only {:?} and sigway-only {:?}",
                    d.why, d.node_only, d.sigway_only
                ),
            };
            failures.push(format!(
                "=== {name}: {expectation}\n    {:<112} | sigway\n{view}",
                "sockjs-node 0.3.24"
            ));
        }
    }
    failures.sort();
    failures
}

fn report(failures: &[String], total: usize) {
    assert!(
        failures.is_empty(),
        "{} of {total} cases differ from sockjs-node 0.3.24 (< only in Node, > only in sigway):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn deliberate_differences_name_existing_cases() {
    let names: Vec<String> = cases()
        .into_iter()
        .chain(timed_cases())
        .map(|c| c.name)
        .collect();
    for deliberate in DELIBERATE {
        assert!(
            names.iter().any(|n| n == deliberate.case),
            "DELIBERATE names no case: {}",
            deliberate.case
        );
        assert!(!deliberate.why.is_empty());
    }
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), names.len(), "case names are unique");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchanges_match_sockjs_node() {
    if !node_tools_present() {
        println!("skipped: node/npm not found");
        return;
    }
    let node = NodeSockjs::start(None);
    let sigway = start_sigway(None);
    let cases = cases();
    let total = cases.len();
    let failures = compare(
        cases,
        format!("127.0.0.1:{}", node.port),
        sigway.addr().to_string(),
    )
    .await;
    report(&failures, total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_and_expiry_match_sockjs_node() {
    if !node_tools_present() {
        println!("skipped: node/npm not found");
        return;
    }
    let timings = Some((SHORT_HEARTBEAT_MS, SHORT_DISCONNECT_MS));
    let node = NodeSockjs::start(timings);
    let sigway = start_sigway(timings);
    let cases = timed_cases();
    let total = cases.len();
    let failures = compare(
        cases,
        format!("127.0.0.1:{}", node.port),
        sigway.addr().to_string(),
    )
    .await;
    report(&failures, total);
}
