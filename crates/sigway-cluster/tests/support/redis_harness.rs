//! Real `redis-server`s for tests: a standalone server, a 3-master Redis
//! Cluster, and a Sentinel setup (a master, a replica and one sentinel),
//! each on loopback ports the harness picks, in its own temporary
//! directory, without persistence, killed on drop.
//!
//! Self-contained (std only) so that any test crate can include it with
//! `#[path = ".../redis_harness.rs"] mod redis_harness;`. Tests call
//! [`redis_server_available`] first: when `redis-server` is not on PATH it
//! prints the one line `skipped: redis-server not found` and the test
//! returns. Every wait is bounded in time; a server that does not come up
//! makes the harness panic with the end of its log.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a server may take to answer PING after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Serializes "pick a free port, start a server on it" within this test
/// binary, so that two tests never pick the same port.
static PORT_LOCK: Mutex<()> = Mutex::new(());

/// Whether `redis-server` can be run; prints the skip line when not.
pub fn redis_server_available() -> bool {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !found {
        println!("skipped: redis-server not found");
    }
    found
}

/// A temporary directory removed on drop.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new(label: &str) -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "sigway-{label}-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("create the server's temporary directory");
        Self(path)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("bind 127.0.0.1:0 to pick a port")
}

/// One `redis-server` (or sentinel) child process.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    args: Vec<String>,
    dir: ScratchDir,
}

impl RedisServer {
    /// A standalone server.
    pub fn start() -> Self {
        Self::start_with("redis", |_, _| Vec::new(), |_, _| Vec::new())
    }

    /// A server whose extra arguments (before and after the common ones)
    /// depend on its port and directory, started on a free port (retried
    /// on another one if it fails to come up, e.g. because another process
    /// took the port meanwhile).
    fn start_with(
        label: &str,
        leading_args: impl Fn(u16, &Path) -> Vec<String>,
        trailing_args: impl Fn(u16, &Path) -> Vec<String>,
    ) -> Self {
        let _serial = PORT_LOCK
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut dir = ScratchDir::new(label);
        let mut last_failure = String::new();
        for _attempt in 0..5 {
            let port = free_port();
            let mut args = leading_args(port, &dir.0);
            args.extend([
                "--port".to_owned(),
                port.to_string(),
                "--bind".to_owned(),
                "127.0.0.1".to_owned(),
                "--save".to_owned(),
                String::new(),
                "--appendonly".to_owned(),
                "no".to_owned(),
                "--dir".to_owned(),
                dir.0.display().to_string(),
                "--logfile".to_owned(),
                dir.0.join("redis.log").display().to_string(),
            ]);
            args.extend(trailing_args(port, &dir.0));
            let mut server = Self {
                child: None,
                port,
                args,
                dir,
            };
            match server.spawn_and_wait() {
                Ok(()) => return server,
                Err(failure) => {
                    last_failure = failure;
                    server.kill();
                    dir = ScratchDir(std::mem::take(&mut server.dir.0));
                }
            }
        }
        panic!("redis-server did not start: {last_failure}");
    }

    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let child = Command::new("redis-server")
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|error| format!("spawn redis-server: {error}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!("exited with {status}; log: {}", self.log_tail()));
            }
            if self.command(&["PING"]).is_ok_and(|reply| reply == "PONG") {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no PONG within {START_TIMEOUT:?}; log: {}",
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.0.join("redis.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(8)..].join(" | ")
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The process id (while running).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn signal(&self, signal: &str) {
        if let Some(pid) = self.pid() {
            let status = Command::new("kill")
                .args([signal, &pid.to_string()])
                .status()
                .expect("run kill");
            assert!(status.success(), "kill {signal} {pid} failed");
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Thaws a paused server (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// Kills the server (SIGKILL) and waits for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .stderr(Stdio::null())
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server and starts it again on the same port (its data is
    /// lost, as there is no persistence; a cluster node keeps its
    /// `nodes.conf`).
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.spawn_and_wait() {
                Ok(()) => return,
                Err(failure) if Instant::now() > deadline => {
                    panic!("redis-server did not restart: {failure}")
                }
                Err(_) => {
                    self.kill();
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    /// Sends one command and returns the reply as text: a status or bulk
    /// string as is, an integer as its digits, an error as `ERR...`
    /// prefixed with `-`, an array as its items joined by newlines (one
    /// level).
    pub fn command(&self, args: &[&str]) -> std::io::Result<String> {
        command(self.port, args)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends one command to `127.0.0.1:port` (see [`RedisServer::command`]).
pub fn command(port: u16, args: &[&str]) -> std::io::Result<String> {
    let stream =
        TcpStream::connect_timeout(&(Ipv4Addr::LOCALHOST, port).into(), Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    (&stream).write_all(request.as_bytes())?;
    let mut reader = BufReader::new(stream);
    read_reply(&mut reader, true)
}

fn read_reply(reader: &mut impl BufRead, nested_allowed: bool) -> std::io::Result<String> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let line = line.trim_end_matches("\r\n");
    let invalid = || std::io::Error::new(std::io::ErrorKind::InvalidData, line.to_owned());
    let (kind, rest) = line.split_at_checked(1).ok_or_else(invalid)?;
    match kind {
        "+" | ":" => Ok(rest.to_owned()),
        "-" => Ok(line.to_owned()),
        "$" => {
            let len: i64 = rest.parse().map_err(|_| invalid())?;
            if len < 0 {
                return Ok(String::new());
            }
            let mut body = vec![0; usize::try_from(len).map_err(|_| invalid())? + 2];
            reader.read_exact(&mut body)?;
            body.truncate(body.len() - 2);
            Ok(String::from_utf8_lossy(&body).into_owned())
        }
        "*" if nested_allowed => {
            let count: i64 = rest.parse().map_err(|_| invalid())?;
            let mut items = Vec::new();
            for _ in 0..count.max(0) {
                items.push(read_reply(reader, true)?);
            }
            Ok(items.join("\n"))
        }
        _ => Err(invalid()),
    }
}

/// A 3-master Redis Cluster (no replicas).
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three `--cluster-enabled` servers, joins them with
    /// `redis-cli --cluster create`, and waits for `cluster_state:ok` on
    /// every node.
    pub fn start() -> Self {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                RedisServer::start_with(
                    "redis-cluster",
                    |_, _| Vec::new(),
                    |_, dir| {
                        vec![
                            "--cluster-enabled".to_owned(),
                            "yes".to_owned(),
                            "--cluster-config-file".to_owned(),
                            dir.join("nodes.conf").display().to_string(),
                            "--cluster-port".to_owned(),
                            free_port().to_string(),
                            "--cluster-node-timeout".to_owned(),
                            "5000".to_owned(),
                        ]
                    },
                )
            })
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port()))
            .collect();
        let output = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        let cluster = Self { nodes };
        cluster.wait_until_ok();
        cluster
    }

    /// Waits until every node reports `cluster_state:ok` and knows all
    /// three nodes.
    pub fn wait_until_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let all_ok = self.nodes.iter().all(|node| {
                node.command(&["CLUSTER", "INFO"]).is_ok_and(|info| {
                    info.contains("cluster_state:ok") && info.contains("cluster_known_nodes:3")
                })
            });
            if all_ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the Redis Cluster did not reach cluster_state:ok"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every node as a seed URL.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The node serving `key`'s slot.
    pub fn node_for(&self, key: &str) -> &RedisServer {
        let slot: u16 = self.nodes[0]
            .command(&["CLUSTER", "KEYSLOT", key])
            .expect("CLUSTER KEYSLOT")
            .parse()
            .expect("a slot number");
        self.nodes
            .iter()
            .find(|node| {
                node.command(&["CLUSTER", "NODES"])
                    .is_ok_and(|nodes| serves_slot(&nodes, slot))
            })
            .expect("a node serves the slot")
    }
}

/// Whether the `myself` line of a `CLUSTER NODES` reply lists `slot`.
fn serves_slot(cluster_nodes: &str, slot: u16) -> bool {
    cluster_nodes
        .lines()
        .find(|line| line.contains("myself"))
        .is_some_and(|line| {
            line.split_whitespace().skip(8).any(|range| {
                let (start, end) = range.split_once('-').unwrap_or((range, range));
                match (start.parse::<u16>(), end.parse::<u16>()) {
                    (Ok(start), Ok(end)) => (start..=end).contains(&slot),
                    _ => false,
                }
            })
        })
}

/// A master, one replica and one sentinel (or several) watching them under
/// the name `mymaster` (quorum: a majority of the sentinels; down after
/// 500 ms).
pub struct RedisSentinel {
    pub master: RedisServer,
    pub replica: RedisServer,
    pub sentinel: RedisServer,
    /// The sentinels beyond the first one.
    pub more_sentinels: Vec<RedisServer>,
}

/// The name the sentinel monitors the master under.
pub const SENTINEL_MASTER_NAME: &str = "mymaster";

impl RedisSentinel {
    /// Starts the three and waits until the replica is in sync and the
    /// sentinel knows it.
    pub fn start() -> Self {
        Self::start_with_sentinels(1)
    }

    /// Starts a master, a replica and `count` sentinels (at least one), and
    /// waits until the replica is in sync and every sentinel knows it and
    /// the other sentinels.
    pub fn start_with_sentinels(count: usize) -> Self {
        let count = count.max(1);
        let quorum = count / 2 + 1;
        // No delay before the first (diskless) sync, so the replica holds
        // the data quickly.
        let master = RedisServer::start_with(
            "redis-master",
            |_, _| Vec::new(),
            |_, _| vec!["--repl-diskless-sync-delay".to_owned(), "0".to_owned()],
        );
        let master_port = master.port();
        let replica = RedisServer::start_with(
            "redis-replica",
            |_, _| Vec::new(),
            |_, _| {
                vec![
                    "--replicaof".to_owned(),
                    "127.0.0.1".to_owned(),
                    master_port.to_string(),
                ]
            },
        );
        let start_sentinel = || {
            RedisServer::start_with(
                "redis-sentinel",
                |port, dir| {
                    let config = dir.join("sentinel.conf");
                    std::fs::write(
                        &config,
                        format!(
                            "port {port}\nbind 127.0.0.1\ndir {}\n\
                     sentinel monitor {SENTINEL_MASTER_NAME} 127.0.0.1 {master_port} {quorum}\n\
                     sentinel down-after-milliseconds {SENTINEL_MASTER_NAME} 500\n\
                     sentinel failover-timeout {SENTINEL_MASTER_NAME} 2000\n",
                            dir.display()
                        ),
                    )
                    .expect("write sentinel.conf");
                    // The config file must be the first argument.
                    vec![config.display().to_string(), "--sentinel".to_owned()]
                },
                |_, _| Vec::new(),
            )
        };
        let sentinel = start_sentinel();
        let more_sentinels = (1..count).map(|_| start_sentinel()).collect();
        let setup = Self {
            master,
            replica,
            sentinel,
            more_sentinels,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !setup
            .replica
            .command(&["INFO", "replication"])
            .is_ok_and(|info| info.contains("master_link_status:up"))
        {
            assert!(Instant::now() < deadline, "the replica never synced");
            std::thread::sleep(Duration::from_millis(50));
        }
        for sentinel in setup.sentinels() {
            while !sentinel
                .command(&["SENTINEL", "REPLICAS", SENTINEL_MASTER_NAME])
                .is_ok_and(|replicas| replicas.contains(&setup.replica.port().to_string()))
            {
                assert!(
                    Instant::now() < deadline,
                    "the sentinel never saw the replica"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            // Sentinels find each other through the master (a hello every
            // 2 s); a failover needs a majority of them to agree.
            let all_known = format!("sentinels={count}");
            while !sentinel
                .command(&["INFO", "sentinel"])
                .is_ok_and(|info| info.contains(&all_known))
            {
                assert!(
                    Instant::now() < deadline,
                    "the sentinels never found each other"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        setup
    }

    /// Every sentinel, the first one first.
    pub fn sentinels(&self) -> impl Iterator<Item = &RedisServer> {
        std::iter::once(&self.sentinel).chain(&self.more_sentinels)
    }

    /// `redis+sentinel://127.0.0.1:<s1>,127.0.0.1:<s2>.../mymaster`: every
    /// sentinel.
    pub fn url_of_all(&self) -> String {
        let sentinels: Vec<String> = self
            .sentinels()
            .map(|sentinel| format!("127.0.0.1:{}", sentinel.port()))
            .collect();
        format!(
            "redis+sentinel://{}/{SENTINEL_MASTER_NAME}",
            sentinels.join(",")
        )
    }

    /// `redis+sentinel://127.0.0.1:<sentinel>/mymaster`.
    pub fn url(&self) -> String {
        format!(
            "redis+sentinel://127.0.0.1:{}/{SENTINEL_MASTER_NAME}",
            self.sentinel.port()
        )
    }

    /// The port of the server the sentinel currently names as master.
    pub fn master_port(&self) -> Option<u16> {
        self.sentinel
            .command(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_MASTER_NAME])
            .ok()
            .and_then(|reply| reply.lines().nth(1).and_then(|port| port.parse().ok()))
    }
}
