//! sockjs-client 1.6.1 itself, run in Node (`tests/reference/sockjs/
//! client_echo.js`, installed from npm by this test when missing), echoes
//! awkward messages through sigway's `/echo` over each transport it can use
//! outside a browser: `websocket`, `xhr-streaming`, `eventsource` (through
//! the `eventsource` npm package, which sockjs-client uses in Node) and
//! `xhr-polling`. htmlfile and jsonp need a DOM; the browser suite
//! (`tests/e2e`) covers them.
//!
//! The eventsource case is the one users hit: sockjs-client `decodeURI`s
//! every eventsource data line, so a server that sends `%` raw (a chat
//! line like "50% off") makes it throw `URIError: URI malformed`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sigway_sockjs::Options;
use sigway_sockjs::echo::{ProtocolTestServer, protocol_test_options};

fn reference_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/sockjs")
}

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

/// Installs sockjs-client (and sockjs-node) with `npm ci` when missing.
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

/// The messages of the round trip: everything that stresses an escaping
/// layer on the way out and back.
fn messages() -> Vec<String> {
    let mut messages: Vec<String> = [
        "%",
        "50% off",
        "%E0%A4%A",
        "100%25 %23 %%",
        r#"say "hi" 'there'"#,
        r"back\slash \\ \u0041 \n",
        "line\nbreak\r\nand\ttab",
        "a\u{2028}b\u{2029}c",
        "emoji 😀 clef 𝄞",
        "</script><script>alert(1)</script>",
        "héllo ж 中文",
        "\u{200c}\u{200f}\u{2060}\u{feff}\u{fff0}\u{fffd}",
        "",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    messages.push((1u32..0x20).filter_map(char::from_u32).collect());
    messages.push((0x7fu32..=0x9f).filter_map(char::from_u32).collect());
    messages
}

/// What client_echo.js reports.
#[derive(Debug, serde::Deserialize)]
struct Report {
    transport: Option<String>,
    received: Vec<String>,
    error: Option<String>,
}

/// Runs one round trip through sockjs-client with only `transport` allowed.
fn round_trip(url: &str, transport: &str, messages: &[String]) -> Report {
    let mut child = Command::new("node")
        .arg(reference_dir().join("client_echo.js"))
        .current_dir(reference_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node runs");
    let input = serde_json::json!({ "url": url, "transport": transport, "messages": messages });
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.to_string().as_bytes())
            .expect("write to node");
    }
    // The script gives up after 10 s itself; this bound is for a stuck Node.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match child.try_wait().expect("wait") {
            Some(_) => break,
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("sockjs-client ({transport}) did not finish within 30 s");
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    let output = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("bad report {line:?}: {e}"))
}

#[test]
fn sockjs_client_echoes_awkward_text_over_every_node_transport() {
    if !node_tools_present() {
        println!("skipped: node/npm not found");
        return;
    }
    install_reference();
    let server =
        ProtocolTestServer::start(protocol_test_options(Options::default()), "127.0.0.1", 0)
            .expect("server starts");
    let url = server.http_url("/echo");
    let messages = messages();
    let mut failures = Vec::new();
    for transport in ["eventsource", "xhr-streaming", "xhr-polling", "websocket"] {
        let report = round_trip(&url, transport, &messages);
        if report.transport.as_deref() != Some(transport) {
            failures.push(format!(
                "{transport}: sockjs-client used {:?} ({:?})",
                report.transport, report.error
            ));
            continue;
        }
        if report.error.is_some() || report.received != messages {
            let wrong: Vec<String> = messages
                .iter()
                .zip(
                    report
                        .received
                        .iter()
                        .map(Some)
                        .chain(std::iter::repeat(None)),
                )
                .filter(|(sent, got)| Some(*sent) != *got)
                .map(|(sent, got)| format!("    sent {sent:?}, got {got:?}"))
                .collect();
            failures.push(format!(
                "{transport}: error {:?}, {} of {} echoed\n{}",
                report.error,
                report.received.len(),
                messages.len(),
                wrong.join("\n")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "sockjs-client 1.6.1 round trips failed:\n{}",
        failures.join("\n")
    );
}
