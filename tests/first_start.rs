//! First impressions of the `sigway` binary: a first start in an empty
//! folder prints nothing alarming (no `Error` line, the default log folder
//! is made), and `-h ::` serves IPv4 and IPv6 clients on one port (dual
//! stack), proved with a sigver peer over `[::1]` and one over `127.0.0.1`
//! joining the same group.

mod common;

use std::net::Ipv6Addr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Peer, listening_port, wait_for_line};

/// The child is killed when the test ends, passing or not.
struct Gateway(Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `sigway ARGS` in `dir`, with no settings from the environment.
fn spawn(dir: &std::path::Path, args: &[&str]) -> Gateway {
    let child = Command::new(env!("CARGO_BIN_EXE_sigway"))
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sigway starts");
    Gateway(child)
}

#[test]
fn a_first_start_in_an_empty_folder_prints_no_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Port 0: the kernel picks one when the gateway binds (a port picked
    // here and freed could be taken by another test's child first).
    let mut gateway = spawn(dir.path(), &["-h", "127.0.0.1", "-p", "0"]);
    let output = common::output_lines(&mut gateway.0);
    let (_, before) = wait_for_line(&output, "listening on", Duration::from_secs(10));
    // Whatever follows the start within a second counts too (the log
    // folder's pruning runs on the appender's first write).
    let settle = Instant::now() + Duration::from_secs(1);
    let mut printed = before;
    while let Some(left) = settle.checked_duration_since(Instant::now()) {
        if let Ok(line) = output.recv_timeout(left) {
            printed.push(line);
        }
    }
    let alarming: Vec<_> = printed
        .iter()
        .filter(|line| line.contains("Error") || line.contains("ERROR"))
        .collect();
    assert!(alarming.is_empty(), "a first start printed {alarming:#?}");
    assert!(
        dir.path().join("log").is_dir(),
        "the default log folder is made"
    );
}

#[tokio::test]
async fn host_any_v6_serves_ipv4_and_ipv6_clients() {
    if std::net::TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).is_err() {
        println!("skipped: this machine has no IPv6 on loopback (::1)");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let mut gateway = spawn(dir.path(), &["-h", "::", "-p", "0"]);
    let output = common::output_lines(&mut gateway.0);
    let (line, _) = wait_for_line(&output, "listening on", Duration::from_secs(10));
    let port = listening_port(&line);
    assert!(line.contains(&format!("[::]:{port}")), "{line}");

    let mut over_v6 = Peer::open_url(&format!("ws://[::1]:{port}/dual-stack")).await;
    assert!(
        over_v6.connect(1, &[]).await,
        "the first peer, over ::1, founds the group"
    );
    let mut over_v4 = Peer::open_url(&format!("ws://127.0.0.1:{port}/dual-stack")).await;
    assert!(
        !over_v4.connect(2, &[]).await,
        "the second, over 127.0.0.1, is bound first"
    );
    // Its offer reaches the IPv6 member: one group over both stacks.
    over_v4.content(0, 0, b"offer over IPv4", false).await;
    let (signaling, recipient, data) = over_v6.recv_content().await;
    assert_eq!((recipient, data.as_slice()), (0, &b"offer over IPv4"[..]));
    over_v6
        .content(0, signaling, b"answer over IPv6", false)
        .await;
    assert_eq!(
        over_v4.recv_content().await,
        (0, signaling, b"answer over IPv6".to_vec())
    );
    assert!(
        over_v4.connect(2, &[1]).await,
        "a member once its view has the first"
    );
}
