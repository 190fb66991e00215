//! What the cluster test files (`tests/cluster*.rs`) share: the Redis
//! backends they run on (one standalone `redis-server`, or a 3-master Redis
//! Cluster, both from the `sigway-cluster` test harness), the settings of a
//! test node, in-process nodes started together and waited for, `sigway`
//! child processes (for signals: SIGKILL, SIGTERM, SIGSTOP), a TCP proxy
//! that cuts one node off from Redis, and the sigver join flow through a
//! member.
//!
//! A test file includes it with `mod cluster_support;` next to `mod
//! common;` (or, when it includes `videre_support`, which loads `common`
//! itself, `use videre_support::common;`): the sigver helpers here use the
//! crate's `common`. Every wait is bounded; child processes are killed on
//! drop.

#![allow(dead_code)]

#[path = "../../crates/sigway-cluster/tests/support/redis_harness.rs"]
pub mod redis_harness;

use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use redis_harness::{RedisCluster, RedisServer};
use sigway::app::BackgroundServer;
use sigway::config::Settings;

use crate::common::Peer;

/// Longest wait for a node to get ready, or for anything else a node does.
pub const NODE_WAIT: Duration = Duration::from_secs(10);

/// How often a test node says it is alive, in milliseconds.
pub const HEARTBEAT_MS: u64 = 100;

/// After how long without a heartbeat a test node counts as dead.
pub const DEAD_AFTER_MS: u64 = 600;

/// How long after their start every node has heard the others (a few
/// heartbeats).
pub const HEARD_EACH_OTHER: Duration = Duration::from_millis(400);

/// The Redis deployment a cluster test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// One standalone `redis-server`.
    Standalone,
    /// A 3-master Redis Cluster (node inboxes on sharded pub/sub).
    Cluster,
}

/// A running Redis of either [`Backend`], stopped on drop.
pub enum Redis {
    Standalone(RedisServer),
    Cluster(RedisCluster),
}

impl Redis {
    pub fn start(backend: Backend) -> Redis {
        match backend {
            Backend::Standalone => Redis::Standalone(RedisServer::start()),
            Backend::Cluster => Redis::Cluster(RedisCluster::start()),
        }
    }

    /// What `cluster.redis_url` is set to: the server's URL, or every
    /// master as a seed.
    pub fn url(&self) -> String {
        match self {
            Redis::Standalone(server) => server.url(),
            Redis::Cluster(cluster) => cluster.urls().join(" "),
        }
    }

    /// Every server.
    pub fn servers(&self) -> Vec<&RedisServer> {
        match self {
            Redis::Standalone(server) => vec![server],
            Redis::Cluster(cluster) => cluster.nodes.iter().collect(),
        }
    }

    /// The server that holds `key` (a key or a shard channel name).
    pub fn server_for(&self, key: &str) -> &RedisServer {
        match self {
            Redis::Standalone(server) => server,
            Redis::Cluster(cluster) => cluster.node_for(key),
        }
    }

    /// The servers that hold the directory entry and snapshot of room
    /// `key` of `kind` and the inboxes of `nodes`: what a room's traffic
    /// between those nodes goes through (each server once).
    pub fn servers_of_room(&self, kind: &str, key: &str, nodes: &[u32]) -> Vec<&RedisServer> {
        let mut names = vec![owner_key(kind, key)];
        names.extend(nodes.iter().map(|node| inbox_channel(*node)));
        let mut servers: Vec<&RedisServer> = Vec::new();
        for name in names {
            let server = self.server_for(&name);
            if !servers.iter().any(|known| known.port() == server.port()) {
                servers.push(server);
            }
        }
        servers
    }

    /// Kills the servers [`Redis::servers_of_room`] names and starts them
    /// again, empty (a Cluster master keeps its `nodes.conf`, so its slots).
    pub fn restart_servers_of_room(&mut self, kind: &str, key: &str, nodes: &[u32]) {
        let ports: Vec<u16> = self
            .servers_of_room(kind, key, nodes)
            .iter()
            .map(|server| server.port())
            .collect();
        match self {
            Redis::Standalone(server) => server.restart(),
            Redis::Cluster(cluster) => {
                for server in &mut cluster.nodes {
                    if ports.contains(&server.port()) {
                        server.restart();
                    }
                }
                cluster.wait_until_ok();
            }
        }
    }

    /// Runs one command on the server holding `key`.
    pub fn command_on_key(&self, key: &str, args: &[&str]) -> String {
        self.server_for(key)
            .command(args)
            .unwrap_or_else(|error| panic!("{args:?} on the server of {key}: {error}"))
    }
}

/// The directory key (`own`) of room `key` of `kind` under the default
/// prefix (`../shared/cluster.md`, "Redis layout").
pub fn owner_key(kind: &str, key: &str) -> String {
    let hash = sigway_core::cluster::hash::group_hash(kind, key);
    format!("sw:{{g:{}}}:own", sigway_core::cluster::hash::hex(&hash))
}

/// The snapshot key of room `key` of `kind` under the default prefix.
pub fn snapshot_key(kind: &str, key: &str) -> String {
    let hash = sigway_core::cluster::hash::group_hash(kind, key);
    format!("sw:{{g:{}}}:snap", sigway_core::cluster::hash::hex(&hash))
}

/// The inbox channel of `node` under the default prefix.
pub fn inbox_channel(node: u32) -> String {
    format!("sw:in:{{n:{node}}}")
}

/// `base` made node `node` of a test cluster on `redis`: one worker, fast
/// heartbeats so that a node that goes away is noticed within a second.
pub fn node_settings(mut base: Settings, redis: &str, node: u32) -> Settings {
    base.workers = 1;
    base.cluster.redis_url = redis.to_owned();
    base.cluster.node_id = node;
    base.cluster.heartbeat_ms = HEARTBEAT_MS;
    base.cluster.dead_after_ms = DEAD_AFTER_MS;
    base.cluster.release_after_ms = 300;
    base
}

/// Whether `server` answers `/readyz` with 200.
pub async fn ready(server: &BackgroundServer) -> bool {
    reqwest::get(server.http_url("/readyz"))
        .await
        .is_ok_and(|response| response.status() == 200)
}

/// Waits (bounded) until `server` is ready.
pub async fn wait_ready(server: &BackgroundServer) {
    let deadline = tokio::time::Instant::now() + NODE_WAIT;
    while !ready(server).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the node gets ready in time"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts an in-process node with each of `settings`, waits until every
/// one is ready and has heard the others.
pub async fn start_nodes(settings: Vec<Settings>) -> Vec<BackgroundServer> {
    let nodes: Vec<BackgroundServer> = settings
        .into_iter()
        .map(|settings| BackgroundServer::start(settings).expect("node starts"))
        .collect();
    for node in &nodes {
        wait_ready(node).await;
    }
    tokio::time::sleep(HEARD_EACH_OTHER).await;
    nodes
}

/// A free port on 127.0.0.1 (nothing listens on it once returned).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// A `sigway` process of a test cluster (for what only a process can
/// undergo: SIGKILL, SIGTERM, SIGSTOP), killed on drop.
pub struct NodeProcess {
    child: Child,
    pub port: u16,
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl NodeProcess {
    /// Node `node` on `redis` with the test timings.
    pub fn spawn(redis: &str, node: u32) -> NodeProcess {
        NodeProcess::spawn_with(redis, node, &[])
    }

    /// Node `node` on `redis` with the test timings and `env` on top
    /// (`SIGWAY_*` settings).
    pub fn spawn_with(redis: &str, node: u32, env: &[(&str, &str)]) -> NodeProcess {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_sigway"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .env("SIGWAY_LOG__FILE", "")
            // `SIGWAY_TEST_NODE_LOG=debug` shows what the nodes did.
            .env(
                "SIGWAY_LOG__LEVEL",
                std::env::var("SIGWAY_TEST_NODE_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .env("SIGWAY_WORKERS", "1")
            .env("SIGWAY_CLUSTER__REDIS_URL", redis)
            .env("SIGWAY_CLUSTER__NODE_ID", node.to_string())
            .env("SIGWAY_CLUSTER__HEARTBEAT_MS", HEARTBEAT_MS.to_string())
            .env("SIGWAY_CLUSTER__DEAD_AFTER_MS", DEAD_AFTER_MS.to_string())
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn sigway");
        NodeProcess { child, port }
    }

    /// `count` nodes (1..=count) on `redis`, ready and having heard each
    /// other.
    pub async fn start_all(redis: &str, count: u32) -> Vec<NodeProcess> {
        let mut nodes: Vec<NodeProcess> = (1..=count)
            .map(|node| NodeProcess::spawn(redis, node))
            .collect();
        for node in &mut nodes {
            node.wait_ready().await;
        }
        tokio::time::sleep(HEARD_EACH_OTHER).await;
        nodes
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{path}", self.port)
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Waits (bounded) until the node answers `/readyz` with 200.
    pub async fn wait_ready(&mut self) {
        let url = self.http_url("/readyz");
        let deadline = tokio::time::Instant::now() + NODE_WAIT;
        loop {
            if reqwest::get(&url).await.is_ok_and(|r| r.status() == 200) {
                return;
            }
            assert!(
                self.child.try_wait().expect("status").is_none(),
                "node exited before it was ready"
            );
            assert!(tokio::time::Instant::now() < deadline, "node ready in time");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal}");
    }

    /// SIGTERM: the node closes its peers with 1001 and hands its rooms over.
    pub fn terminate(&mut self) {
        self.signal("-TERM");
    }

    /// SIGKILL: no goodbye, no close frames, nothing flushed.
    pub fn kill_hard(&mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }

    /// SIGSTOP: the node is frozen, its sockets stay open.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT after [`NodeProcess::freeze`].
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    /// Waits (bounded) for the process to exit; returns its status.
    pub async fn exited(&mut self) -> ExitStatus {
        let deadline = tokio::time::Instant::now() + NODE_WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("status") {
                return status;
            }
            assert!(tokio::time::Instant::now() < deadline, "node exits in time");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Joins `peer` through `through` (a member) as in tests/sigver.rs: bound
/// first, offer, answer, then a view sharing the member admits. Returns
/// the signaling id `through` saw for the binding.
pub async fn join_through(peer: &mut Peer, through: &mut Peer, id: u32, view: &[u32]) -> u32 {
    assert!(!peer.connect(id, &[]).await, "a newcomer is bound first");
    peer.content(0, 0, b"offer", false).await;
    let (s, r, data) = through.recv_content().await;
    assert_eq!((r, data.as_slice()), (0, &b"offer"[..]));
    through.content(0, s, b"answer", false).await;
    assert_eq!(peer.recv_content().await, (0, s, b"answer".to_vec()));
    assert!(
        peer.connect(id, view).await,
        "a view sharing a member admits"
    );
    s
}

/// Declares the tests of scenario `async fn $scenario(backend: Backend)`:
/// `$scenario::standalone_redis` and `$scenario::redis_cluster` (a
/// 3-master Redis Cluster), each printing the one skip line and passing
/// when `redis-server` is not installed.
#[allow(unused_macros)] // Not every test file has scenarios for both.
macro_rules! on_both_backends {
    ($scenario:ident) => {
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn standalone_redis() {
                if $crate::cluster_support::redis_harness::redis_server_available() {
                    super::$scenario($crate::cluster_support::Backend::Standalone).await;
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis_cluster() {
                if $crate::cluster_support::redis_harness::redis_server_available() {
                    super::$scenario($crate::cluster_support::Backend::Cluster).await;
                }
            }
        }
    };
}
#[allow(unused_imports)]
pub(crate) use on_both_backends;

/// A member and a joiner bound to it, each at its own gateway URL (two
/// nodes, say): the member founds the group, the joiner is bound to it and
/// sends it an offer, which the member receives. Returns both and the
/// joiner's signaling id as the member knows it.
pub async fn bound_pair(member_url: &str, joiner_url: &str) -> (Peer, Peer, u32) {
    let mut member = Peer::open_url(member_url).await;
    assert!(member.connect(1, &[]).await, "the first peer is the member");
    let mut joiner = Peer::open_url(joiner_url).await;
    assert!(!joiner.connect(2, &[]).await, "the second peer is bound");
    joiner.content(0, 0, b"offer", false).await;
    let (joiner_id, _, _) = member.recv_content().await;
    (member, joiner, joiner_id)
}

/// A TCP proxy on loopback in front of a Redis server, for one node: while
/// it refuses ([`RedisProxy::refuse_for`]), the connections it accepts are
/// dropped at once, so that node alone cannot reach Redis. Connections
/// through it end when Redis ends them.
pub struct RedisProxy {
    pub port: u16,
    refuse_until: std::sync::Arc<std::sync::Mutex<Option<tokio::time::Instant>>>,
    accepting: tokio::task::JoinHandle<()>,
}

impl Drop for RedisProxy {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl RedisProxy {
    /// Listens on an ephemeral loopback port, forwarding to `upstream`.
    pub async fn start(upstream: u16) -> RedisProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let port = listener.local_addr().expect("addr").port();
        let refuse_until = std::sync::Arc::new(std::sync::Mutex::new(None));
        let refusing = refuse_until.clone();
        let accepting = tokio::spawn(async move {
            while let Ok((mut down, _)) = listener.accept().await {
                let refused = refusing
                    .lock()
                    .expect("proxy state")
                    .is_some_and(|until| tokio::time::Instant::now() < until);
                if refused {
                    continue;
                }
                tokio::spawn(async move {
                    if let Ok(mut up) =
                        tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    }
                });
            }
        });
        RedisProxy {
            port,
            refuse_until,
            accepting,
        }
    }

    /// The URL a node reaches Redis by through this proxy.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Drops the connections it accepts from now on, for `how_long`.
    pub fn refuse_for(&self, how_long: Duration) {
        *self.refuse_until.lock().expect("proxy state") =
            Some(tokio::time::Instant::now() + how_long);
    }
}
