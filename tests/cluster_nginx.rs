//! The load balancer snippet of README "Running a cluster"
//! (`config/nginx-cluster.conf`) under a real nginx in front of two
//! cluster nodes on a real `redis-server`. The committed file is the one
//! tested: only its two upstream servers and its listen port are replaced
//! (each must occur exactly once), and it is included in a minimal
//! `nginx.conf` that keeps pid, logs and temporary files in a temporary
//! directory and logs which node answered each request.
//!
//! Through nginx: a Netflux peer joins a member that landed on the other
//! node; a videre call between a SockJS `xhr_streaming` user and an
//! `xhr_polling` user on different nodes works, every request of each
//! SockJS session reached one node (nginx's log) and no node holds a
//! session it should not (`/stats`); and users on the `websocket`
//! transports (framed and raw) join the same call. Prints one `skipped:`
//! line when nginx or `redis-server` is not installed.

mod cluster_support;
mod videre_support;

// The sigver helpers, shared with cluster_support (loaded once).
use videre_support::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cluster_support::redis_harness::{RedisServer, redis_server_available};
use cluster_support::{NODE_WAIT, free_port, join_through, node_settings, start_nodes};
use common::Peer;
use serde_json::json;
use sigway::app::BackgroundServer;
use videre_support::{Client, Transport, connect, expect_packet, packet};

/// The committed snippet.
const SNIPPET: &str = include_str!("../config/nginx-cluster.conf");

/// Where Debian installs nginx; otherwise it is looked for on PATH.
const DEBIAN_NGINX: &str = "/usr/sbin/nginx";

/// The nginx binary, or `None` after printing the one skip line.
fn nginx_binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("nginx"))
            .find(|candidate| candidate.is_file())
    });
    let found = on_path.or_else(|| Some(PathBuf::from(DEBIAN_NGINX)).filter(|p| p.is_file()));
    if found.is_none() {
        println!("skipped: nginx not found");
    }
    found
}

/// `text` with its only occurrence of `from` replaced by `to`.
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "config/nginx-cluster.conf holds {from:?} exactly once"
    );
    text.replacen(from, to, 1)
}

/// The committed snippet with the test's upstreams and listen port.
fn render_snippet(upstreams: [u16; 2], listen: u16) -> String {
    let snippet = replace_once(
        SNIPPET,
        "server sigway-1:8000",
        &format!("server 127.0.0.1:{}", upstreams[0]),
    );
    let snippet = replace_once(
        &snippet,
        "server sigway-2:8000",
        &format!("server 127.0.0.1:{}", upstreams[1]),
    );
    replace_once(
        &snippet,
        "listen 8080;",
        &format!("listen 127.0.0.1:{listen};"),
    )
}

/// Whether this process runs as root (nginx's workers would then switch
/// to an unprivileged user that cannot write the temporary directory).
fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| output.stdout.trim_ascii() == b"0")
}

/// An nginx (a master and one worker) on a loopback port, stopped on drop.
struct Nginx {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its worker, then exits (a SIGKILL would
        // leave the worker running, orphaned). SIGKILL only if it hangs.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Nginx {
    /// Runs `binary` with the snippet in front of `upstreams` (retried on
    /// another port if the chosen one was taken meanwhile).
    fn start(binary: &Path, upstreams: [u16; 2]) -> Nginx {
        let mut failure = String::new();
        for _attempt in 0..5 {
            match Nginx::try_start(binary, upstreams) {
                Ok(nginx) => return nginx,
                Err(error) => failure = error,
            }
        }
        panic!("nginx did not start: {failure}");
    }

    fn try_start(binary: &Path, upstreams: [u16; 2]) -> Result<Nginx, String> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let port = free_port();
        let root = dir.path().display().to_string();
        std::fs::write(
            dir.path().join("sigway-cluster.conf"),
            render_snippet(upstreams, port),
        )
        .expect("write the snippet");
        let user = if running_as_root() { "user root;" } else { "" };
        let main = format!(
            "{user}\n\
             daemon off;\n\
             worker_processes 1;\n\
             pid {root}/nginx.pid;\n\
             error_log {root}/error.log info;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n\
                 log_format upstreams '$request_uri $upstream_addr';\n\
                 access_log {root}/access.log upstreams;\n\
                 client_body_temp_path {root}/client_body;\n\
                 proxy_temp_path {root}/proxy;\n\
                 fastcgi_temp_path {root}/fastcgi;\n\
                 uwsgi_temp_path {root}/uwsgi;\n\
                 scgi_temp_path {root}/scgi;\n\
                 include {root}/sigway-cluster.conf;\n\
             }}\n"
        );
        std::fs::write(dir.path().join("nginx.conf"), main).expect("write nginx.conf");
        let child = Command::new(binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|error| format!("spawn nginx: {error}"))?;
        let mut nginx = Nginx { child, port, dir };
        let deadline = std::time::Instant::now() + NODE_WAIT;
        loop {
            if let Ok(Some(status)) = nginx.child.try_wait() {
                return Err(format!("exited with {status}: {}", nginx.error_log()));
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(nginx);
            }
            if std::time::Instant::now() > deadline {
                return Err(format!("not listening in time: {}", nginx.error_log()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    fn ws_url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{path}", self.port)
    }

    fn http_base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The upstreams that answered the requests of each SockJS session
    /// (`/echo/<server>/<session>/...`), from the access log.
    fn upstreams_by_session(&self) -> BTreeMap<String, BTreeSet<String>> {
        let log = std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default();
        let mut sessions: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for line in log.lines() {
            let Some((uri, upstream)) = line.split_once(' ') else {
                continue;
            };
            let segments: Vec<&str> = uri.split('/').collect();
            if let ["", "echo", _server, session, _transport, ..] = segments.as_slice() {
                sessions
                    .entry((*session).to_owned())
                    .or_default()
                    .insert(upstream.to_owned());
            }
        }
        sessions
    }
}

/// Two cluster nodes on `redis` (videre test timings) and nginx in front.
async fn deployment(nginx: &Path, redis: &RedisServer) -> (Vec<BackgroundServer>, Nginx) {
    let nodes = start_nodes(
        (1..=2)
            .map(|node| node_settings(videre_support::settings(), &redis.url(), node))
            .collect(),
    )
    .await;
    let ports = [port_of(&nodes[0]), port_of(&nodes[1])];
    let nginx = Nginx::start(nginx, ports);
    (nodes, nginx)
}

fn port_of(node: &BackgroundServer) -> u16 {
    let url = node.http_url("");
    url.rsplit(':')
        .next()
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("a port in {url}"))
}

/// Each node's open connections and SockJS sessions, once they add up to
/// `total` (bounded wait: a closed one leaves its node's count soon after).
async fn connections_when(nodes: &[BackgroundServer], total: i64) -> Vec<i64> {
    let deadline = tokio::time::Instant::now() + NODE_WAIT;
    loop {
        let mut counts = Vec::new();
        for node in nodes {
            let stats = videre_support::stats(node).await;
            counts.push(
                stats["connections_open"]
                    .as_i64()
                    .expect("connections_open"),
            );
        }
        if counts.iter().sum::<i64>() == total {
            return counts;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "open connections {counts:?} never added up to {total}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The node whose count went up from `before` to `after`.
fn landed_on(before: &[i64], after: &[i64]) -> usize {
    let grew: Vec<usize> = (0..before.len())
        .filter(|&node| after[node] > before[node])
        .collect();
    assert_eq!(grew.len(), 1, "one node took it: {before:?} -> {after:?}");
    grew[0]
}

/// How many times a client is opened again until nginx puts it on the
/// wanted node (each try lands there with probability 1/2).
const PLACEMENT_TRIES: usize = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_netflux_peer_through_nginx_joins_a_member_on_the_other_node() {
    let Some(binary) = nginx_binary() else {
        return;
    };
    if !redis_server_available() {
        return;
    }
    let redis = RedisServer::start();
    let (nodes, nginx) = deployment(&binary, &redis).await;

    let mut x = Peer::open_url(&nginx.ws_url("/through-nginx")).await;
    assert!(x.connect(1, &[]).await, "the first peer founds the group");
    let x_node = landed_on(&[0, 0], &connections_when(&nodes, 1).await);

    // Plain WebSockets are spread at random: open again until one lands on
    // the other node.
    let mut y = None;
    for _ in 0..PLACEMENT_TRIES {
        let candidate = Peer::open_url(&nginx.ws_url("/through-nginx")).await;
        let counts = connections_when(&nodes, 2).await;
        if landed_on(&[i64::from(x_node == 0), i64::from(x_node == 1)], &counts) != x_node {
            y = Some(candidate);
            break;
        }
        candidate.leave().await;
        connections_when(&nodes, 1).await;
    }
    let mut y = y.expect("nginx spreads WebSockets over both nodes");
    let s = join_through(&mut y, &mut x, 2, &[1]).await;

    // The member is on the other node: its node holds it away from the owner.
    let y_node = &nodes[1 - x_node];
    let stats = videre_support::stats(y_node).await;
    assert_eq!(stats["cluster"]["members_away"], 1, "{stats}");
    // Content goes both ways along the binding, through nginx and across
    // the nodes.
    x.content(0, s, b"to y", false).await;
    assert_eq!(y.recv_content().await, (0, s, b"to y".to_vec()));
    y.content(0, 0, b"to x", false).await;
    assert_eq!(x.recv_content().await, (s, 0, b"to x".to_vec()));
    assert!(
        nginx
            .error_log()
            .lines()
            .all(|line| !line.contains("[error]")),
        "{}",
        nginx.error_log()
    );
}

/// `joiner` (as `user`) connects to `room`; `hearers` and then `joiner`
/// receive its announce with `initiator` as payload.
async fn join(
    joiner: &mut Client,
    hearers: &mut [&mut Client],
    user: &str,
    room: &str,
    initiator: bool,
) {
    connect(joiner, user, room).await;
    let flag = if initiator { "true" } else { "false" };
    for hearer in hearers.iter_mut() {
        let announce = expect_packet(hearer, "connect", user, room).await;
        assert_eq!(announce["Payload"], flag, "announce of {user}");
    }
    let own = expect_packet(joiner, "connect", user, room).await;
    assert_eq!(own["Payload"], flag, "announce of {user} to itself");
}

/// A broadcast of `user` reaches every client of `all` (the sender first).
async fn broadcast(all: &mut [&mut Client], user: &str, room: &str) {
    let offer = packet("broadcast", user, room, json!({"Type": "Ice Offer"})).to_string();
    all[0].send(&offer).await;
    for client in all.iter_mut() {
        assert_eq!(client.recv().await, offer, "broadcast of {user}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_videre_call_over_sockjs_polling_streaming_and_websocket_through_nginx() {
    let Some(binary) = nginx_binary() else {
        return;
    };
    if !redis_server_available() {
        return;
    }
    let redis = RedisServer::start();
    let (nodes, nginx) = deployment(&binary, &redis).await;
    let base = nginx.http_base();

    let mut a = Client::open_at(&base, Transport::XhrStreaming).await;
    let a_node = landed_on(&[0, 0], &connections_when(&nodes, 1).await);
    // B polls; its session must live on the other node (SockJS sessions are
    // hashed on their id: a new session is a new draw).
    let mut b = None;
    let mut abandoned: i64 = 0;
    for _ in 0..PLACEMENT_TRIES {
        let before = connections_when(&nodes, 1).await;
        let candidate = Client::open_at(&base, Transport::XhrPolling).await;
        let counts = connections_when(&nodes, 2).await;
        if landed_on(&before, &counts) != a_node {
            b = Some(candidate);
            break;
        }
        // Left to expire (the SockJS disconnect delay): the next try
        // starts once only A's session is left.
        candidate.stop_polling();
        drop(candidate);
        abandoned += 1;
    }
    let mut b = b.expect("nginx spreads SockJS sessions over both nodes");

    join(&mut a, &mut [], "a", "lb", true).await;
    join(&mut b, &mut [&mut a], "b", "lb", false).await;
    broadcast(&mut [&mut b, &mut a], "b", "lb").await;
    broadcast(&mut [&mut a, &mut b], "a", "lb").await;

    // The websocket transports through nginx join the same call.
    let mut c = Client::open_at(&base, Transport::FramedWebsocket).await;
    join(&mut c, &mut [&mut a, &mut b], "c", "lb", false).await;
    let mut d = Client::open_at(&base, Transport::RawWebsocket).await;
    join(&mut d, &mut [&mut a, &mut b, &mut c], "d", "lb", false).await;
    broadcast(&mut [&mut d, &mut a, &mut b, &mut c], "d", "lb").await;
    b.send_json(&packet("ping", "b", "lb", json!("{}"))).await;
    let answer = expect_packet(&mut b, "ping", "b", "lb").await;
    assert_eq!(answer["Payload"], r#"["a","b","c","d"]"#);

    // Every request of a SockJS session went to one node, and A's and B's
    // to different ones; no node opened a session of its own for a
    // request that strayed.
    let sessions = nginx.upstreams_by_session();
    assert!(
        sessions.len() as i64 >= 2 + abandoned,
        "the polling and streaming sessions are logged: {sessions:?}"
    );
    for (session, upstreams) in &sessions {
        assert_eq!(
            upstreams.len(),
            1,
            "session {session} went to {upstreams:?}"
        );
    }
    let used: BTreeSet<&String> = sessions.values().flatten().collect();
    assert_eq!(used.len(), 2, "both nodes served sessions: {sessions:?}");
    connections_when(&nodes, 4).await;
    for client in [&mut a, &mut b, &mut c, &mut d] {
        client.expect_quiet().await;
    }
}
