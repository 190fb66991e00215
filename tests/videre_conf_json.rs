//! videre-server's `conf.json` drives the real `sigway` binary end to end, and
//! the binary logs every packet at debug level under `log/debug.log*` in its
//! working directory, as videre-server did.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(15);

/// Stops the child however the test ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

fn wait_until_listening(port: u16, child: &mut Child) {
    let deadline = Instant::now() + WAIT;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("sigway exited early: {status}");
        }
        assert!(Instant::now() < deadline, "sigway did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Everything written so far to `dir/log/debug.log*`.
fn debug_logs(dir: &std::path::Path) -> String {
    let Ok(entries) = std::fs::read_dir(dir.join("log")) else {
        return String::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("debug.log"))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .collect()
}

async fn recv_json(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Value {
    loop {
        let message = timeout(WAIT, ws.next())
            .await
            .expect("answer in time")
            .expect("socket open")
            .expect("frame");
        if let Message::Text(text) = message {
            return serde_json::from_str(text.as_str()).expect("JSON packet");
        }
    }
}

#[tokio::test]
async fn conf_json_runs_the_binary_and_packets_are_logged_at_debug() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let conf = dir.path().join("conf.json");
    std::fs::write(
        &conf,
        format!(
            r#"{{ "Port": {port}, "TLS": false, "Cert": "path_to_cert_file", "Key": "path_to_key_file" }}"#
        ),
    )
    .expect("write conf.json");

    let mut command = Command::new(env!("CARGO_BIN_EXE_sigway"));
    command
        .arg("--config")
        .arg(&conf)
        .args(["-h", "127.0.0.1"])
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (key, _) in std::env::vars() {
        if key.starts_with("SIGWAY_") {
            command.env_remove(key);
        }
    }
    let mut child = Running(command.spawn().expect("start sigway"));
    wait_until_listening(port, &mut child.0);

    let url = format!("ws://127.0.0.1:{port}/echo/websocket");
    let (mut ws, _) = timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("connect in time")
        .expect("connect");
    let connect = json!({"Header": {"Event": "connect", "UserId": "conf-user", "RoomId": "conf-room"}, "Payload": "{}"});
    ws.send(Message::text(connect.to_string()))
        .await
        .expect("send connect");
    let answer = recv_json(&mut ws).await;
    assert_eq!(answer["Header"]["Event"], "connect");
    assert_eq!(answer["Payload"], "true");

    let ping = json!({"Header": {"Event": "ping", "UserId": "conf-user", "RoomId": "conf-room"}, "Payload": "{}"});
    ws.send(Message::text(ping.to_string()))
        .await
        .expect("send ping");
    let pong = recv_json(&mut ws).await;
    assert_eq!(pong["Payload"], r#"["conf-user"]"#);
    let _ = ws.close(None).await;

    // The file writer runs on its own thread: wait (bounded) for the lines.
    let deadline = Instant::now() + WAIT;
    loop {
        let logs = debug_logs(dir.path());
        let packet_lines: Vec<&str> = logs
            .lines()
            .filter(|l| l.contains("videre packet") && l.contains("DEBUG"))
            .collect();
        if packet_lines.iter().any(|l| l.contains("ping")) {
            // The RoomId is logged as its hash (`log.show_keys` is off).
            let hashed = format!("key_hash:{}", sigway_core::redact::key_hash("conf-room"));
            assert!(packet_lines.iter().any(|l| l.contains(&hashed)), "{logs}");
            assert!(!logs.contains("conf-room"), "{logs}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no per-packet debug lines in log/debug.log*:\n{logs}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
