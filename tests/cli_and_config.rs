//! The `sigway` binary: sigver's command line, layered settings (TOML file,
//! conf.json, environment, flags) and clear start-up errors, run for real.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Peer, listening_port, wait_for_line};
use sigway::proto::sigver::message::Type;

const BIN: &str = env!("CARGO_BIN_EXE_sigway");

/// A running `sigway` process, killed on drop, with the lines it prints.
struct Gateway {
    child: Child,
    output: std::sync::mpsc::Receiver<String>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `sigway ARGS` in `dir` with `env`; it is given port 0 (by a flag, the
/// settings file or conf.json), so that tests running in parallel never
/// race for a port.
fn spawn(args: &[&str], dir: &Path, env: &[(&str, &str)]) -> Gateway {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn sigway");
    let output = common::output_lines(&mut child);
    Gateway { child, output }
}

/// The port `gw` listens on, from its "listening on" line.
fn listening(gw: &Gateway) -> u16 {
    let (line, _) = wait_for_line(&gw.output, "listening on", Duration::from_secs(20));
    listening_port(&line)
}

fn run_to_end(args: &[&str], dir: &Path) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run sigway");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Counts heartbeats a silent peer gets before its 4742 close.
async fn heartbeat_period(port: u16) -> Duration {
    let mut peer = Peer::open_url(&format!("ws://127.0.0.1:{port}/k")).await;
    let started = Instant::now();
    let (code, _) = peer.closed().await;
    assert_eq!(code, 4742);
    started.elapsed() / 3
}

#[test]
fn help_shows_sigver_flags_and_examples() {
    let dir = tempfile::tempdir().expect("tmp");
    let (code, out, _) = run_to_end(&["--help"], dir.path());
    assert_eq!(code, 0);
    for needle in [
        "-h, --host",
        "-p, --port",
        "-k, --key",
        "-c, --cert",
        "-a, --ca",
        "--config",
        "Examples:",
        "-V, --version",
    ] {
        assert!(out.contains(needle), "--help lacks {needle}:\n{out}");
    }
    let (code, out, _) = run_to_end(&["-V"], dir.path());
    assert_eq!(code, 0);
    assert!(out.contains(env!("CARGO_PKG_VERSION")), "{out}");
}

#[test]
fn invalid_settings_stop_start_up_with_one_clear_line() {
    let dir = tempfile::tempdir().expect("tmp");
    let cert = dir.path().join("cert.pem");
    std::fs::write(&cert, "not really a cert").expect("write");
    let cert = cert.to_string_lossy().into_owned();
    let cases: &[(&[&str], &str)] = &[
        (&["--config", "/nonexistent/sigway.toml"], "does not exist"),
        (&["-p", "70000"], "70000"),
        (&["-k", &cert], "without a certificate"),
        (
            &["-c", &cert, "-k", "/nonexistent/key.pem"],
            "/nonexistent/key.pem",
        ),
        (
            &["-c", "/nonexistent/cert.pem", "-k", &cert],
            "/nonexistent/cert.pem",
        ),
    ];
    for (args, needle) in cases {
        let (code, _, err) = run_to_end(args, dir.path());
        assert_ne!(code, 0, "{args:?} must fail");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(
            err.trim().lines().count() <= 3,
            "{args:?}: short error, got {err}"
        );
    }
}

#[tokio::test]
async fn toml_file_env_and_flags_layer_in_order() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("sigway.toml");
    std::fs::write(
        &file,
        "port = 1\nhost = \"127.0.0.1\"\n[sigver]\nheartbeat_interval_ms = 5000\n[log]\nfile = \"\"\n",
    )
    .expect("write");
    // File says port 1 and 5 s heartbeats; env shortens the heartbeat; the
    // flag picks the port (0: any free one).
    let gw = spawn(
        &["--config", file.to_str().expect("utf-8"), "-p", "0"],
        dir.path(),
        &[
            ("SIGWAY_SIGVER__HEARTBEAT_INTERVAL_MS", "100"),
            ("SIGWAY_PORT", "2"),
        ],
    );
    let port = listening(&gw);
    assert!(
        ![1, 2, 8000].contains(&port),
        "the flag's port 0 won: {port}"
    );
    let period = heartbeat_period(port).await;
    assert!(
        period < Duration::from_millis(1000),
        "env heartbeat applied: {period:?}"
    );
}

#[tokio::test]
async fn conf_json_in_the_working_directory_is_read_like_videre_server() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(
        dir.path().join("conf.json"),
        r#"{ "Port": 0, "TLS": false, "Cert": "path_to_cert_file", "Key": "path_to_key_file" }"#,
    )
    .expect("write");
    let gw = spawn(
        &["-h", "127.0.0.1"],
        dir.path(),
        &[("SIGWAY_LOG__FILE", "")],
    );
    // Port 0 is conf.json's: without it the gateway would listen on 8000.
    let port = listening(&gw);
    assert_ne!(port, 8000, "conf.json's Port was not read");
    let mut peer = Peer::open_url(&format!("ws://127.0.0.1:{port}/room")).await;
    assert!(peer.connect(1, &[]).await);
    peer.send(Type::Heartbeat(true)).await;
}

#[tokio::test]
async fn sigterm_closes_peers_with_1001_and_exits_cleanly() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut gw = spawn(
        &["-h", "127.0.0.1", "-p", "0"],
        dir.path(),
        &[("SIGWAY_LOG__FILE", "")],
    );
    let port = listening(&gw);
    let mut peer = Peer::open_url(&format!("ws://127.0.0.1:{port}/room")).await;
    assert!(peer.connect(1, &[]).await);
    let pid = gw.child.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    assert_eq!(peer.closed().await.0, 1001);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = gw.child.try_wait().expect("wait") {
            assert!(status.success(), "clean exit: {status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "sigway did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
