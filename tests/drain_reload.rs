//! Drain and reload on a real `sigway` process with real signals (sent
//! with `/usr/bin/kill`): SIGTERM keeps connected peers up while `/readyz`
//! says 503 and new upgrades are refused, closes them with 1001 after
//! `drain_timeout_secs` (or exits early once they left); SIGHUP swaps the
//! TLS pair for new handshakes while an open connection keeps working,
//! keeps the old settings on a broken file, and raises a limit.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Peer, WAIT};
use openssl::ssl::{SslConnector, SslMethod, SslStream, SslVerifyMode};

/// A `sigway` process run with `--config FILE`, its console log
/// collected as it is written; killed on drop.
struct Sigway {
    child: Child,
    port: u16,
    log: Arc<Mutex<String>>,
}

/// The port of sigway's "Signaling server is listening on 127.0.0.1:PORT"
/// line, once it was logged.
fn listening_port(log: &str) -> Option<u16> {
    let (_, rest) = log.split_once("Signaling server is listening on 127.0.0.1:")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

impl Sigway {
    /// Starts sigway on `config`, whose port is 0: the port it bound is
    /// read from its "listening on" line (a port picked by the test and
    /// freed before the child binds it may be taken meanwhile by another
    /// test's child, whose sessions the test would then be talking to).
    fn start(config: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sigway"))
            .arg("--config")
            .arg(config)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sigway starts");
        let log = Arc::new(Mutex::new(String::new()));
        let lines = common::output_lines(&mut child);
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in lines {
                    let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        let deadline = Instant::now() + WAIT;
        let port = loop {
            let text = log.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if let Some(port) = listening_port(&text) {
                break port;
            }
            assert!(Instant::now() < deadline, "sigway listens: {text}");
            std::thread::sleep(Duration::from_millis(20));
        };
        Self { child, port, log }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name}");
    }

    fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits (bounded) until the log has `needle` `times` times.
    async fn logged(&self, needle: &str, times: usize) {
        let deadline = Instant::now() + WAIT;
        while self.log().matches(needle).count() < times {
            assert!(
                Instant::now() < deadline,
                "never logged {needle:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (bounded by `limit`) for the process to exit; its success.
    async fn exited(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.success();
            }
            assert!(Instant::now() < deadline, "still running:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn url(&self, scheme: &str, path: &str) -> String {
        format!("{scheme}://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Sigway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_config(dir: &Path, port: u16, extra: &str) -> PathBuf {
    let path = dir.join("sigway.toml");
    let text = format!(
        "host = \"127.0.0.1\"\nport = {port}\nworkers = 1\nshutdown_timeout_secs = 1\n{extra}\n[log]\nfile = \"\"\nlevel = \"info\"\n"
    );
    std::fs::write(&path, text).expect("config written");
    path
}

/// Whether a new WebSocket upgrade is served within a second.
async fn upgrade_accepted(url: &str) -> bool {
    matches!(
        tokio::time::timeout(
            Duration::from_secs(1),
            tokio_tungstenite::connect_async(url)
        )
        .await,
        Ok(Ok(_))
    )
}

#[tokio::test]
async fn sigterm_drains_then_closes_the_rest_with_1001() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), 0, "drain_timeout_secs = 3");
    let mut sigway = Sigway::start(&config);
    let mut peer = Peer::open_url(&sigway.url("ws", "/group")).await;
    assert!(peer.connect(1, &[]).await);
    // A keep-alive connection opened before the drain may still ask.
    let http = reqwest::Client::new();
    let ready = http
        .get(sigway.url("http", "/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status().as_u16(), 200);
    let _ = ready.text().await;

    sigway.signal("TERM");
    let started = Instant::now();
    sigway.logged("draining", 1).await;
    let ready = http
        .get(sigway.url("http", "/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status().as_u16(), 503);
    assert_eq!(ready.text().await.expect("body"), "draining\n");
    assert!(
        !upgrade_accepted(&sigway.url("ws", "/group")).await,
        "no new upgrade while draining"
    );
    // The peer stays up (heartbeats only) ...
    peer.silent_for(Duration::from_millis(500)).await;
    // ... until the drain's time is up: then 1001.
    let (code, _) = tokio::time::timeout(Duration::from_secs(6), peer.closed())
        .await
        .expect("closed after the drain");
    assert_eq!(code, 1001);
    assert!(
        started.elapsed() >= Duration::from_millis(2500),
        "closed only once drain_timeout_secs passed ({:?})",
        started.elapsed()
    );
    assert!(sigway.exited(WAIT).await, "exit status 0");
}

#[tokio::test]
async fn the_process_exits_once_the_last_peer_left() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), 0, "drain_timeout_secs = 60");
    let mut sigway = Sigway::start(&config);
    let mut peer = Peer::open_url(&sigway.url("ws", "/group")).await;
    assert!(peer.connect(1, &[]).await);
    sigway.signal("TERM");
    sigway.logged("draining", 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        sigway.child.try_wait().expect("try_wait").is_none(),
        "a peer is still connected: the process drains"
    );
    let left = Instant::now();
    peer.leave().await;
    assert!(sigway.exited(Duration::from_secs(10)).await);
    assert!(left.elapsed() < Duration::from_secs(10));
    sigway.logged("every session left", 1).await;
}

/// A self-signed pair for `CN=<name>` written as `<name>.crt`/`.key`.
fn make_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    let status = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
        ])
        .arg(format!("/CN={name}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success(), "openssl req");
    (cert, key)
}

fn tls_connect(port: u16) -> SslStream<TcpStream> {
    let mut connector = SslConnector::builder(SslMethod::tls()).expect("connector");
    connector.set_verify(SslVerifyMode::NONE);
    let connector = connector.build();
    let tcp = TcpStream::connect(("127.0.0.1", port)).expect("tcp");
    tcp.set_read_timeout(Some(WAIT)).expect("timeout");
    connector
        .configure()
        .expect("configure")
        .verify_hostname(false)
        .connect("localhost", tcp)
        .expect("TLS handshake")
}

fn subject(stream: &SslStream<TcpStream>) -> String {
    let cert = stream.ssl().peer_certificate().expect("a certificate");
    let names: Vec<String> = cert
        .subject_name()
        .entries()
        .map(|entry| String::from_utf8_lossy(entry.data().as_slice()).into_owned())
        .collect();
    names.join(",")
}

/// One request on an open TLS connection; its status line.
fn healthz(stream: &mut SslStream<TcpStream>) -> String {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("write");
    let mut buffer = [0u8; 512];
    let read = stream.read(&mut buffer).expect("read");
    String::from_utf8_lossy(&buffer[..read])
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

#[tokio::test]
async fn sighup_swaps_the_certificate_for_new_handshakes_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (first_cert, first_key) = make_pair(dir.path(), "first");
    let (second_cert, second_key) = make_pair(dir.path(), "second");
    let (cert, key) = (dir.path().join("live.crt"), dir.path().join("live.key"));
    std::fs::copy(&first_cert, &cert).expect("copy");
    std::fs::copy(&first_key, &key).expect("copy");
    let tls = format!(
        "[tls]\ncert = {:?}\nkey = {:?}\n",
        cert.display().to_string(),
        key.display().to_string()
    );
    let config = write_config(dir.path(), 0, &tls);
    let sigway = Sigway::start(&config);

    let mut open = tls_connect(sigway.port);
    assert_eq!(subject(&open), "first");
    assert!(healthz(&mut open).contains("200"));

    std::fs::copy(&second_cert, &cert).expect("copy");
    std::fs::copy(&second_key, &key).expect("copy");
    sigway.signal("HUP");
    sigway.logged("settings reloaded", 1).await;
    let fresh = tls_connect(sigway.port);
    assert_eq!(
        subject(&fresh),
        "second",
        "a new handshake gets the new pair"
    );
    assert_eq!(
        subject(&open),
        "first",
        "the open connection keeps its pair"
    );
    assert!(healthz(&mut open).contains("200"), "and still works");

    // A key that does not match the certificate: the old pair stays.
    std::fs::copy(&first_key, &key).expect("copy");
    sigway.signal("HUP");
    sigway.logged("settings reload refused", 1).await;
    assert!(sigway.log().contains("does not match"), "{}", sigway.log());
    assert_eq!(subject(&tls_connect(sigway.port)), "second");
}

#[tokio::test]
async fn sighup_keeps_the_old_settings_on_a_broken_file_and_raises_a_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), 0, "[limits]\nmax_connections = 1");
    let sigway = Sigway::start(&config);
    let mut first = Peer::open_url(&sigway.url("ws", "/group")).await;
    assert!(first.connect(1, &[]).await);
    let mut refused = Peer::open_url(&sigway.url("ws", "/group")).await;
    let (code, reason) = refused.closed().await;
    assert!(reason.contains("connections"), "{code} {reason}");

    // Broken TOML: refused, one line why, the limit stays.
    std::fs::write(&config, "port = \"not a number\n").expect("broken file");
    sigway.signal("HUP");
    sigway
        .logged("settings reload refused, the old settings stay", 1)
        .await;
    let mut still_refused = Peer::open_url(&sigway.url("ws", "/group")).await;
    assert_eq!(still_refused.closed().await, (code, reason));

    // A raised limit (and a port change, which needs a restart).
    write_config(
        dir.path(),
        sigway.port + 1,
        "[limits]\nmax_connections = 10",
    );
    sigway.signal("HUP");
    sigway.logged("settings reloaded", 1).await;
    sigway.logged("need a restart", 1).await;
    assert!(sigway.log().contains("port"), "{}", sigway.log());
    let mut second = Peer::open_url(&sigway.url("ws", "/group")).await;
    assert!(
        !second.connect(2, &[]).await,
        "accepted, bound to the first"
    );
    first.leave().await;
}
