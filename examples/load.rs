//! sigway's load tool: drives a running gateway over real sockets and prints
//! medians and percentiles. Used for every figure in the README.
//!
//! ```text
//! cargo run --release --example load -- --url ws://127.0.0.1:8000 relay --pairs 100 --size 100
//! cargo run --release --example load -- --url ws://127.0.0.1:8000 rtt --pairs 100
//! cargo run --release --example load -- --url ws://127.0.0.1:8000 joins --total 20000 --concurrency 100
//! cargo run --release --example load -- --url ws://127.0.0.1:8000 idle --connections 10000 --pid <gateway pid>
//! cargo run --release --example load -- --url ws://127.0.0.1:8000 videre --rooms 25 --users 4
//! cargo run --release --example load -- --url ws://127.0.0.1:8000 idle --kind sockjs --connections 10000 --pid <pid>
//! cargo run --release --example load -- --url ws://127.0.0.1:9000 echo --connections 100 --window 16
//! ```
//! `benches/load.sh` builds the gateway, starts it and runs them all;
//! `benches/compare.sh` runs them against sigway, the Node references and
//! the floor servers (`examples/raw_echo.rs`, `examples/minimal_relay.rs`)
//! in one run. Every loop is bounded by `--seconds` (and counts); targets
//! must be loopback (`wss://` is accepted with any certificate: the test
//! servers' are self-signed).
//!
//! Figures for comparing a relay with an echo: `relay` also prints
//! `server_cpu_us_per_forwarded`, the server CPU per message it forwarded
//! (the counted payloads and the acks going back), which is what `echo`
//! prints too (each echo is one forwarded message). `relay --messages N`
//! and `echo --messages N` send exactly N messages and stop (for
//! `benches/instructions.sh`, which counts the server's instructions).
//!
//! Several gateway URLs (`--url` repeated, or `--urls a,b,c`: the nodes of
//! one cluster) spread the peers round-robin so that what is measured
//! crosses nodes: in `relay` and `rtt` each pair's member (the first peer
//! of its key, so its node owns the group) and joiner are on different
//! nodes; in `joins` each timed join enters a group whose member is on
//! another node; in `videre` each room's users are spread over the nodes.
//! `--server-pid` repeated sums the CPU of every node; `--redis-port` adds
//! the Redis commands per event over the window (`redis-cli INFO
//! commandstats`). `benches/cluster.sh` runs these against a cluster. With
//! one URL the scenarios and their output are exactly the single-node ones.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use sigway::proto::legacy::{Message as LegacyMessage, message::Type as LegacyType};
use sigway::proto::sigver::{Content, GroupData, Message, message::Type};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message as Ws;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Error = Box<dyn std::error::Error + Send + Sync>;

#[derive(Parser)]
#[command(about = "Load generator for sigway (loopback only)")]
struct Cli {
    /// Gateway base URL (ws://127.0.0.1:PORT); repeat it for the nodes of
    /// a cluster (peers are then spread over them, see the module doc).
    #[arg(long)]
    url: Vec<String>,
    /// The nodes' URLs, comma-separated (added after the `--url`s).
    #[arg(long, value_delimiter = ',')]
    urls: Vec<String>,
    /// Measurement window per scenario.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// The gateway's process id: throughput scenarios then also report the
    /// CPU it used over the measurement window (from /proc). Repeat it for
    /// the nodes of a cluster: their CPU is summed.
    #[arg(long)]
    server_pid: Vec<u32>,
    /// A loopback Redis port (the cluster's): throughput scenarios then
    /// also report the Redis commands per event over the window, from
    /// `redis-cli INFO commandstats`.
    #[arg(long)]
    redis_port: Option<u16>,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// One-way relayed messages/s, joiner → member, pipelined (windowed).
    Relay {
        #[arg(long, default_value_t = 100)]
        pairs: usize,
        #[arg(long, default_value_t = 100)]
        size: usize,
        /// Messages in flight per pair.
        #[arg(long, default_value_t = 256)]
        window: u64,
        /// Send exactly this many messages (spread over the pairs), wait
        /// until they arrived (at most `--seconds`) and stop, printing the
        /// count instead of a rate.
        #[arg(long)]
        messages: Option<u64>,
    },
    /// Echoed messages/s over plain WebSockets (`--url` an echo server such
    /// as examples/raw_echo.rs), pipelined like `relay`: the floor a relay
    /// is compared with.
    Echo {
        #[arg(long, default_value_t = 100)]
        connections: usize,
        #[arg(long, default_value_t = 100)]
        size: usize,
        /// Messages in flight per connection.
        #[arg(long, default_value_t = 16)]
        window: u64,
        /// As for `relay`: exactly this many messages, then stop.
        #[arg(long)]
        messages: Option<u64>,
    },
    /// Round trip joiner → member → joiner, one message in flight per pair.
    Rtt {
        #[arg(long, default_value_t = 100)]
        pairs: usize,
        #[arg(long, default_value_t = 100)]
        size: usize,
    },
    /// Joins per second: open → `connect` → `connected`, then close.
    Joins {
        #[arg(long, default_value_t = 20_000)]
        total: usize,
        #[arg(long, default_value_t = 100)]
        concurrency: usize,
    },
    /// Server memory per idle connection (reads /proc/PID/status).
    Idle {
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        #[arg(long)]
        pid: u32,
        /// What each idle peer is.
        #[arg(long, value_enum, default_value_t = IdleKind::Sigver)]
        kind: IdleKind,
        /// How long the peers are held before RSS is read.
        #[arg(long, default_value_t = 4)]
        hold_seconds: u64,
    },
    /// videre broadcast deliveries/s over /echo/websocket.
    Videre {
        #[arg(long, default_value_t = 25)]
        rooms: usize,
        #[arg(long, default_value_t = 4)]
        users: usize,
        #[arg(long, default_value_t = 64)]
        window: u64,
    },
}

/// The idle peers of the `idle` scenario.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum IdleKind {
    /// sigver, current dialect: `/<key>`, `connect`, answers heartbeats
    /// (100 keys: one member and many bound joiners each).
    Sigver,
    /// sigver 18.x dialect: `/<key>?protocol=legacy`, reads `isFirst`,
    /// answers heartbeats.
    Legacy,
    /// videre over the SockJS framed WebSocket
    /// (`/echo/<server>/<session>/websocket`): reads `o`, joins a room of two.
    Sockjs,
    /// videre over the raw SockJS WebSocket (`/echo/websocket`): joins a
    /// room of two.
    Raw,
    /// A bare WebSocket on `/idle-<n>` that says nothing (for an echo).
    Open,
}

fn encode(r#type: Type) -> Ws {
    Ws::Binary(
        Message {
            r#type: Some(r#type),
        }
        .encode_to_vec()
        .into(),
    )
}

fn content(recipient_id: u32, data: &[u8]) -> Ws {
    encode(Type::Content(Content {
        sender_id: 0,
        recipient_id,
        last_data: false,
        data: data.to_vec().into(),
    }))
}

async fn open(url: &str) -> Result<Socket, Error> {
    // Loopback servers under test have self-signed certificates: any
    // certificate is accepted (main() refuses non-loopback URLs). Built
    // once: building one reads the system's trust store.
    static TLS: std::sync::OnceLock<Result<native_tls::TlsConnector, String>> =
        std::sync::OnceLock::new();
    let connector = if url.starts_with("wss://") {
        let tls = TLS.get_or_init(|| {
            native_tls::TlsConnector::builder()
                .danger_accept_invalid_certs(true)
                .build()
                .map_err(|error| error.to_string())
        });
        Some(tokio_tungstenite::Connector::NativeTls(tls.clone()?))
    } else {
        None
    };
    let (ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        // Nagle off, as browsers have it: a small frame is not held back
        // while the previous one is unacknowledged.
        tokio_tungstenite::connect_async_tls_with_config(url, None, true, connector),
    )
    .await??;
    Ok(ws)
}

/// Next non-heartbeat sigver message (answering heartbeats).
async fn recv(ws: &mut Socket) -> Result<Type, Error> {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await?
            .ok_or("closed")??;
        if let Ws::Binary(bytes) = frame {
            match Message::decode(bytes)?.r#type {
                Some(Type::Heartbeat(_)) => ws.send(encode(Type::Heartbeat(true))).await?,
                Some(other) => return Ok(other),
                None => return Err("empty message".into()),
            }
        } else if let Ws::Close(c) = frame {
            return Err(format!("closed: {c:?}").into());
        }
    }
}

async fn connect(ws: &mut Socket, id: u32, members: &[u32]) -> Result<bool, Error> {
    ws.send(encode(Type::Connect(GroupData {
        id,
        members: members.to_vec(),
    })))
    .await?;
    match recv(ws).await? {
        Type::Connected(member) => Ok(member),
        other => Err(format!("expected connected, got {other:?}").into()),
    }
}

/// What the load goes to: one gateway, or the nodes of a cluster.
struct Target {
    urls: Vec<String>,
    server_pids: Vec<u32>,
    redis_port: Option<u16>,
}

impl Target {
    /// The node the `i`-th peer (or pair, or room) starts on: round-robin.
    fn node(&self, i: usize) -> &str {
        &self.urls[i % self.urls.len()]
    }

    fn nodes(&self) -> usize {
        self.urls.len()
    }

    /// What a scenario's label says about the nodes: nothing for one (the
    /// single-node output stays as it always was).
    fn across(&self) -> String {
        match self.nodes() {
            1 => String::new(),
            n => format!(" across {n} nodes"),
        }
    }
}

/// A member (on `member_url`, the first of the key: its node owns the
/// group) and a joiner bound to it (on `joiner_url`); returns (member,
/// joiner, joiner's id).
async fn pair(
    member_url: &str,
    joiner_url: &str,
    key: &str,
) -> Result<(Socket, Socket, u32), Error> {
    let mut member = open(&format!("{member_url}/{key}")).await?;
    connect(&mut member, 1, &[]).await?;
    let mut joiner = open(&format!("{joiner_url}/{key}")).await?;
    if connect(&mut joiner, 2, &[]).await? {
        return Err("joiner unexpectedly admitted".into());
    }
    joiner.send(content(0, b"hello")).await?;
    let Type::Content(c) = recv(&mut member).await? else {
        return Err("expected content".into());
    };
    Ok((member, joiner, c.sender_id))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn report_latencies(what: &str, samples: Vec<Duration>) {
    println!("{}", latencies_line(what, samples));
}

fn latencies_line(what: &str, mut samples: Vec<Duration>) -> String {
    samples.sort();
    format!(
        "{what}: n={} p50={:?} p90={:?} p99={:?} max={:?}",
        samples.len(),
        percentile(&samples, 0.5),
        percentile(&samples, 0.9),
        percentile(&samples, 0.99),
        samples.last().copied().unwrap_or_default()
    )
}

async fn relay(
    target: &Target,
    pairs: usize,
    size: usize,
    window: u64,
    messages: Option<u64>,
    seconds: u64,
) -> Result<(), Error> {
    let received = Arc::new(AtomicU64::new(0));
    // Acks the members sent back, as the joiners received them: with the
    // payloads, what the server forwarded.
    let acks_received = Arc::new(AtomicU64::new(0));
    // Acks the members sent: what a counted run's server forwarded back
    // (the last ones may still be on their way when the joiner stops).
    let acks_sent = Arc::new(AtomicU64::new(0));
    // Every pair is set up before any sends, so set-up is not measured.
    let mut ready = Vec::with_capacity(pairs);
    for i in 0..pairs {
        let key = format!("relay-{i}-{}", std::process::id());
        ready.push(pair(target.node(i), target.node(i + 1), &key).await?);
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds) + Duration::from_secs(2);
    let mut tasks = Vec::new();
    for (i, (member, joiner, _)) in ready.into_iter().enumerate() {
        let received = received.clone();
        let acks_received = acks_received.clone();
        let acks_sent = acks_sent.clone();
        // With --messages, the pairs share them out (the first ones one more).
        let quota = messages.map(|n| n / pairs as u64 + u64::from((i as u64) < n % pairs as u64));
        tasks.push(tokio::spawn(async move {
            let (mut member_tx, mut member_rx) = member.split();
            let (mut joiner_tx, mut joiner_rx) = joiner.split();
            let payload = vec![b'x'; size];
            let acked = Arc::new(AtomicU64::new(0));
            let acked_by_member = acked.clone();
            // Member: count, ack every window/2 messages back to the joiner.
            let member_task = tokio::spawn(async move {
                let mut count = 0u64;
                while Instant::now() < deadline && quota.is_none_or(|quota| count < quota) {
                    let Ok(Some(Ok(frame))) =
                        tokio::time::timeout_at(deadline.into(), member_rx.next()).await
                    else {
                        break;
                    };
                    let Ws::Binary(bytes) = frame else { continue };
                    let Ok(Message {
                        r#type: Some(Type::Content(c)),
                    }) = Message::decode(bytes)
                    else {
                        continue;
                    };
                    count += 1;
                    received.fetch_add(1, Ordering::Relaxed);
                    if count.is_multiple_of((window / 2).max(1)) {
                        let ack = count.to_le_bytes();
                        if member_tx.send(content(c.sender_id, &ack)).await.is_err() {
                            break;
                        }
                        acks_sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
                (member_tx, member_rx)
            });
            // In a counted run, the count the member's last ack carries.
            let step = (window / 2).max(1);
            let last_ack = quota.map(|quota| quota - quota % step);
            let ack_task = tokio::spawn(async move {
                if last_ack == Some(0) {
                    return;
                }
                while let Ok(Some(Ok(Ws::Binary(bytes)))) =
                    tokio::time::timeout_at(deadline.into(), joiner_rx.next()).await
                {
                    if let Ok(Message {
                        r#type: Some(Type::Content(c)),
                    }) = Message::decode(bytes)
                        && let Ok(n) = <[u8; 8]>::try_from(&c.data[..])
                    {
                        acks_received.fetch_add(1, Ordering::Relaxed);
                        let n = u64::from_le_bytes(n);
                        acked_by_member.store(n, Ordering::Relaxed);
                        if last_ack == Some(n) {
                            break;
                        }
                    }
                }
            });
            send_windowed(
                &mut joiner_tx,
                || content(0, &payload),
                &acked,
                window,
                quota,
                deadline,
            )
            .await;
            let member_halves = member_task.await;
            if quota.is_some() {
                // Every ack forwarded before the joiner closes.
                let _ = ack_task.await;
            } else {
                ack_task.abort();
            }
            // Close both peers: in a counted run the server's work for
            // the closes is then the same whatever the count.
            if let Ok((mut member_tx, _)) = member_halves {
                let _ = member_tx.close().await;
            }
            let _ = joiner_tx.close().await;
        }));
    }
    let what = format!(
        "relay{}: pairs={pairs} size={size}B window={window}",
        target.across()
    );
    let run = ForwardingRun {
        what,
        rate: "one-way msgs/s",
        started,
        delivered: &received,
        acks: Some((&acks_sent, &acks_received)),
    };
    run.finish(tasks, messages, seconds, target).await;
    Ok(())
}

/// The end of a run that forwards messages (`relay`, `echo`).
struct ForwardingRun<'a> {
    /// The run's description, first on every line it prints.
    what: String,
    /// What the rate line counts.
    rate: &'static str,
    started: Instant,
    /// Messages that arrived where they were sent.
    delivered: &'a AtomicU64,
    /// Acknowledgements sent back and received, when the run has them.
    acks: Option<(&'a AtomicU64, &'a AtomicU64)>,
}

impl ForwardingRun<'_> {
    /// With a message quota: waits for every task, then prints what was
    /// delivered. Without: measures the rate over `seconds`, then waits.
    async fn finish(
        self,
        tasks: Vec<tokio::task::JoinHandle<()>>,
        messages: Option<u64>,
        seconds: u64,
        target: &Target,
    ) {
        if let Some(messages) = messages {
            for t in tasks {
                let _ = t.await;
            }
            let acks = self
                .acks
                .map(|(sent, _)| format!(" acks={}", sent.load(Ordering::Relaxed)))
                .unwrap_or_default();
            println!(
                "{} messages={messages} delivered={}{acks} in {:.2} s",
                self.what,
                self.delivered.load(Ordering::Relaxed),
                self.started.elapsed().as_secs_f64()
            );
            return;
        }
        let no_acks = AtomicU64::new(0);
        let acks_received = self.acks.map_or(&no_acks, |(_, received)| received);
        measure_rate(
            &format!("{} {}", self.what, self.rate),
            self.delivered,
            Some(acks_received),
            seconds,
            target,
        )
        .await;
        for t in tasks {
            let _ = t.await;
        }
    }
}

/// Echoed messages/s: each connection sends `size`-byte binary messages,
/// at most `window` ahead of the echoes it got back.
async fn echo(
    target: &Target,
    connections: usize,
    size: usize,
    window: u64,
    messages: Option<u64>,
    seconds: u64,
) -> Result<(), Error> {
    let echoed = Arc::new(AtomicU64::new(0));
    let mut ready = Vec::with_capacity(connections);
    for i in 0..connections {
        ready.push(open(&format!("{}/echo-{i}", target.node(i))).await?);
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds) + Duration::from_secs(2);
    let mut tasks = Vec::new();
    for (i, ws) in ready.into_iter().enumerate() {
        let echoed = echoed.clone();
        let quota = messages
            .map(|n| n / connections as u64 + u64::from((i as u64) < n % connections as u64));
        tasks.push(tokio::spawn(async move {
            let (mut tx, mut rx) = ws.split();
            let payload = vec![b'x'; size];
            let back = Arc::new(AtomicU64::new(0));
            let back_rx = back.clone();
            let reader = tokio::spawn(async move {
                let mut count = 0u64;
                while quota.is_none_or(|quota| count < quota) {
                    match tokio::time::timeout_at(deadline.into(), rx.next()).await {
                        Ok(Some(Ok(Ws::Binary(_)))) => {
                            count += 1;
                            back_rx.store(count, Ordering::Relaxed);
                            echoed.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(Some(Ok(_))) => {}
                        _ => break,
                    }
                }
            });
            send_windowed(
                &mut tx,
                || Ws::Binary(payload.clone().into()),
                &back,
                window,
                quota,
                deadline,
            )
            .await;
            let _ = reader.await;
            let _ = tx.close().await;
        }));
    }
    let run = ForwardingRun {
        what: format!("echo: connections={connections} size={size}B window={window}"),
        rate: "echoed msgs/s",
        started,
        delivered: &echoed,
        acks: None,
    };
    run.finish(tasks, messages, seconds, target).await;
    Ok(())
}

async fn rtt(target: &Target, pairs: usize, size: usize, seconds: u64) -> Result<(), Error> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for i in 0..pairs {
        let key = format!("rtt-{i}-{}", std::process::id());
        let (mut member, mut joiner, s) = pair(target.node(i), target.node(i + 1), &key).await?;
        tasks.push(tokio::spawn(async move {
            let payload = vec![b'x'; size];
            let mut samples = Vec::new();
            while Instant::now() < deadline && samples.len() < 1_000_000 {
                let t0 = Instant::now();
                if joiner.send(content(0, &payload)).await.is_err()
                    || recv(&mut member).await.is_err()
                {
                    break;
                }
                if member.send(content(s, &payload)).await.is_err()
                    || recv(&mut joiner).await.is_err()
                {
                    break;
                }
                samples.push(t0.elapsed());
            }
            samples
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await?);
    }
    let rate = all.len() as f64 / seconds as f64;
    report_latencies(
        &format!(
            "rtt{} (pairs={pairs}, {size}B, one in flight, {rate:.0} round trips/s)",
            target.across()
        ),
        all,
    );
    Ok(())
}

/// Joins per second. On one node each join opens a fresh group. Across
/// nodes each timed join is a joiner entering a group whose member (its
/// owner's peer, connected first, untimed) is on the next node, so every
/// timed join crosses nodes.
async fn joins(
    target: &Target,
    total: usize,
    concurrency: usize,
    seconds: u64,
) -> Result<(), Error> {
    let permits = Arc::new(Semaphore::new(concurrency));
    let deadline = Instant::now() + Duration::from_secs(seconds.max(1) * 6);
    let started = Instant::now();
    let start_cpu = servers_cpu_seconds(&target.server_pids);
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        if Instant::now() > deadline {
            break;
        }
        let permit = permits.clone().acquire_owned().await?;
        let key = format!("join-{i}-{}", std::process::id());
        let url = format!("{}/{key}", target.node(i));
        let member_url = (target.nodes() > 1).then(|| format!("{}/{key}", target.node(i + 1)));
        tasks.push(tokio::spawn(async move {
            let result = async {
                let member = match member_url {
                    Some(member_url) => {
                        let mut member = open(&member_url).await?;
                        connect(&mut member, 1, &[]).await?;
                        Some(member)
                    }
                    None => None,
                };
                let t0 = Instant::now();
                let mut ws = open(&url).await?;
                let id = if member.is_some() { 2 } else { 1 };
                let admitted = connect(&mut ws, id, &[]).await?;
                let elapsed = t0.elapsed();
                if member.is_some() && admitted {
                    return Err("a joiner of a group with a member was admitted".into());
                }
                let _ = ws.close(None).await;
                if let Some(mut member) = member {
                    let _ = member.close(None).await;
                }
                Ok::<_, Error>(elapsed)
            }
            .await;
            drop(permit);
            result
        }));
    }
    let mut samples = Vec::with_capacity(tasks.len());
    let mut failures = 0;
    for t in tasks {
        match t.await? {
            Ok(d) => samples.push(d),
            Err(_) => failures += 1,
        }
    }
    let rate = samples.len() as f64 / started.elapsed().as_secs_f64();
    // Server CPU over all the joins (opens, joins and closes), per join.
    let cpu = match (servers_cpu_seconds(&target.server_pids), start_cpu) {
        (Some(end), Some(start)) if !samples.is_empty() => format!(
            " server_cpu_us_per_event={:.2}",
            (end - start) * 1e6 / samples.len() as f64
        ),
        _ => String::new(),
    };
    let what = format!(
        "joins{} ({concurrency} in flight, {rate:.0} joins/s, {failures} failed)",
        target.across()
    );
    println!("{}{cpu}", latencies_line(&what, samples));
    Ok(())
}

/// Sends `frame()` until `deadline` (or `quota` frames were sent), never
/// more than `window` ahead of what `acked` says arrived, flushing every 16
/// frames (pipelined, yet bounded).
async fn send_windowed<S>(
    tx: &mut S,
    frame: impl Fn() -> Ws,
    acked: &AtomicU64,
    window: u64,
    quota: Option<u64>,
    deadline: Instant,
) where
    S: futures_util::Sink<Ws> + Unpin,
{
    let (mut sent, mut unflushed) = (0u64, 0u64);
    while Instant::now() < deadline {
        if quota.is_some_and(|quota| sent >= quota) {
            let _ = tx.flush().await;
            break;
        }
        if sent.saturating_sub(acked.load(Ordering::Relaxed)) >= window {
            // The window is full: what was fed must go out before any ack
            // can come back (with a window under 16 it never would).
            if unflushed > 0 {
                if tx.flush().await.is_err() {
                    break;
                }
                unflushed = 0;
            }
            tokio::task::yield_now().await;
            continue;
        }
        if tx.feed(frame()).await.is_err() {
            break;
        }
        sent += 1;
        unflushed += 1;
        if unflushed >= 16 {
            if tx.flush().await.is_err() {
                break;
            }
            unflushed = 0;
        }
    }
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the line, in clock ticks (100 per second).
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// CPU seconds the gateway processes used so far, summed (None when there
/// are none, or one cannot be read).
fn servers_cpu_seconds(pids: &[u32]) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&pid| cpu_seconds(pid)).sum()
}

/// Calls so far of each Redis command (`cmdstat_<name>:calls=N,...` lines
/// of `INFO commandstats`, read with `redis-cli`).
fn redis_command_calls(port: u16) -> Result<BTreeMap<String, u64>, Error> {
    let output = std::process::Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["INFO", "commandstats"])
        .output()?;
    if !output.status.success() {
        return Err(format!("redis-cli failed: {}", output.status).into());
    }
    Ok(parse_command_calls(&String::from_utf8_lossy(
        &output.stdout,
    )))
}

fn parse_command_calls(info: &str) -> BTreeMap<String, u64> {
    info.lines()
        .filter_map(|line| {
            let (name, stats) = line.trim().strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats
                .split(',')
                .find_map(|field| field.strip_prefix("calls="))?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

/// The Redis commands called per event between two `INFO commandstats`
/// readings: the publishes, the writes (scripts and plain writes: content
/// relay should make none) and all commands.
fn redis_per_event(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
    events: u64,
) -> String {
    let delta = |name: &str| {
        let calls = |stats: &BTreeMap<String, u64>| stats.get(name).copied().unwrap_or(0);
        calls(after).saturating_sub(calls(before))
    };
    let total: u64 = after.keys().map(|name| delta(name)).sum();
    let publishes = delta("publish") + delta("spublish");
    // The directory's writes (scripts, plain writes); the registry's ZADD
    // (one per node and heartbeat, whatever the load) is shown apart.
    let writes: u64 = ["evalsha", "eval", "set", "hset", "del"]
        .iter()
        .map(|name| delta(name))
        .sum();
    let per = |n: u64| n as f64 / events as f64;
    format!(
        " redis_publish_per_event={:.4} redis_evalsha={} redis_set={} redis_writes={writes} redis_zadd={} redis_commands_per_event={:.4}",
        per(publishes),
        delta("evalsha") + delta("eval"),
        delta("set"),
        delta("zadd"),
        per(total),
    )
}

/// Measures `counter` over `seconds` after a 1 s warm-up; prints the rate
/// and, with server pids, the servers' CPU use per counted event (and with
/// a Redis port, the Redis commands over the window). With `also_forwarded`
/// (messages the server forwarded besides the counted ones, e.g. acks) it
/// adds the forwarded rate and the CPU per forwarded message at the end.
async fn measure_rate(
    what: &str,
    counter: &AtomicU64,
    also_forwarded: Option<&AtomicU64>,
    seconds: u64,
    target: &Target,
) {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let redis_before = target.redis_port.map(redis_command_calls);
    let also_forwarded_count = || also_forwarded.map(|c| c.load(Ordering::Relaxed));
    let (start_count, start_also, start, start_cpu) = (
        counter.load(Ordering::Relaxed),
        also_forwarded_count(),
        Instant::now(),
        servers_cpu_seconds(&target.server_pids),
    );
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let (events, end_also, elapsed) = (
        counter.load(Ordering::Relaxed) - start_count,
        also_forwarded_count(),
        start.elapsed().as_secs_f64(),
    );
    let end_cpu = servers_cpu_seconds(&target.server_pids);
    let redis_after = target.redis_port.map(redis_command_calls);
    let rate = events as f64 / elapsed;
    let cpu = match (end_cpu, start_cpu) {
        (Some(end), Some(start)) if events > 0 => format!(
            " server_cpu_cores={:.2} server_cpu_us_per_event={:.2}",
            (end - start) / elapsed,
            (end - start) * 1e6 / events as f64
        ),
        _ => String::new(),
    };
    let redis = match (redis_before, redis_after) {
        (Some(Ok(before)), Some(Ok(after))) if events > 0 => {
            redis_per_event(&before, &after, events)
        }
        (Some(Err(error)), _) | (_, Some(Err(error))) => format!(" redis_error={error:?}"),
        _ => String::new(),
    };
    let forwarded = match (start_also, end_also) {
        (Some(start_also), Some(end_also)) => {
            let forwarded = events + end_also.saturating_sub(start_also);
            let cpu = match (end_cpu, start_cpu) {
                (Some(end), Some(start)) if forwarded > 0 => format!(
                    " server_cpu_us_per_forwarded={:.2}",
                    (end - start) * 1e6 / forwarded as f64
                ),
                _ => String::new(),
            };
            format!(
                " forwarded_msgs_per_s={:.0}{cpu}",
                forwarded as f64 / elapsed
            )
        }
        _ => String::new(),
    };
    println!("{what}={rate:.0}{cpu}{redis}{forwarded}");
}

fn rss_kib(pid: u32) -> Result<u64, Error> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or("no VmRSS")?;
    Ok(line.split_whitespace().nth(1).ok_or("bad VmRSS")?.parse()?)
}

/// A videre `connect` packet.
fn videre_connect(user: &str, room: &str) -> String {
    format!(
        r#"{{"Header":{{"Event":"connect","UserId":"{user}","RoomId":"{room}"}},"Payload":"{{}}"}}"#
    )
}

/// Opens the `i`-th idle peer of `kind` and brings it to its idle state.
async fn open_idle_peer(url: &str, kind: IdleKind, i: usize) -> Result<Socket, Error> {
    let room = format!("idle-room-{}-{}", i / 2, std::process::id());
    let user = format!("user-{}", i % 2);
    match kind {
        IdleKind::Sigver => {
            let mut ws = open(&format!("{url}/idle-{}", i % 100)).await?;
            connect(&mut ws, i as u32 + 1, &[]).await?;
            Ok(ws)
        }
        IdleKind::Legacy => {
            let mut ws = open(&format!("{url}/idle-legacy-{}?protocol=legacy", i % 100)).await?;
            let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
                .await?
                .ok_or("closed before isFirst")??;
            let Ws::Binary(bytes) = frame else {
                return Err(format!("expected isFirst, got {frame:?}").into());
            };
            match LegacyMessage::decode(bytes)?.r#type {
                Some(LegacyType::IsFirst(_)) => Ok(ws),
                other => Err(format!("expected isFirst, got {other:?}").into()),
            }
        }
        IdleKind::Sockjs => {
            // Server and session ids are path segments without dots.
            let mut ws = open(&format!("{url}/echo/{:03}/idle{i}/websocket", i % 1000)).await?;
            let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
                .await?
                .ok_or("closed before the open frame")??;
            if frame != Ws::Text("o".into()) {
                return Err(format!("expected the SockJS open frame, got {frame:?}").into());
            }
            let batch = serde_json::to_string(&[videre_connect(&user, &room)])?;
            ws.send(Ws::Text(batch.into())).await?;
            Ok(ws)
        }
        IdleKind::Raw => {
            let mut ws = open(&format!("{url}/echo/websocket")).await?;
            ws.send(Ws::Text(videre_connect(&user, &room).into()))
                .await?;
            Ok(ws)
        }
        IdleKind::Open => open(&format!("{url}/idle-{i}")).await,
    }
}

/// Answers what an idle peer of `kind` must answer to stay connected
/// (sigver heartbeats, either dialect) until `stop` says so; everything else
/// is read and dropped. Returns the socket, or None when the server closed
/// it first.
async fn keep_idle_peer(
    mut ws: Socket,
    kind: IdleKind,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Option<Socket> {
    loop {
        let frame = tokio::select! {
            frame = ws.next() => match frame {
                Some(Ok(frame)) => frame,
                _ => return None,
            },
            _ = stop.wait_for(|stop| *stop) => return Some(ws),
        };
        if matches!(frame, Ws::Close(_)) {
            return None;
        }
        let Ws::Binary(bytes) = frame else { continue };
        let answer = match kind {
            IdleKind::Sigver => matches!(
                Message::decode(bytes),
                Ok(Message {
                    r#type: Some(Type::Heartbeat(_))
                })
            )
            .then(|| encode(Type::Heartbeat(true))),
            IdleKind::Legacy => matches!(
                LegacyMessage::decode(bytes),
                Ok(LegacyMessage {
                    r#type: Some(LegacyType::Heartbeat(_))
                })
            )
            .then(|| {
                Ws::Binary(
                    LegacyMessage {
                        r#type: Some(LegacyType::Heartbeat(true)),
                    }
                    .encode_to_vec()
                    .into(),
                )
            }),
            IdleKind::Sockjs | IdleKind::Raw | IdleKind::Open => None,
        };
        if let Some(answer) = answer {
            let _ = ws.send(answer).await;
        }
    }
}

async fn idle(
    url: &str,
    connections: usize,
    pid: u32,
    kind: IdleKind,
    hold_seconds: u64,
) -> Result<(), Error> {
    let before = rss_kib(pid)?;
    // Each peer is kept alive (heartbeats answered) from the moment it is
    // open: opening many can take longer than a heartbeat timeout.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut holders = Vec::with_capacity(connections);
    for i in 0..connections {
        let ws = open_idle_peer(url, kind, i).await?;
        holders.push(tokio::spawn(keep_idle_peer(ws, kind, stopped.clone())));
    }
    // Held while the server settles.
    tokio::time::sleep(Duration::from_secs(hold_seconds)).await;
    let after = rss_kib(pid)?;
    // Peers the server closed make the figure meaningless: say so.
    let closed_by_server = holders.iter().filter(|h| h.is_finished()).count();
    let per = (after.saturating_sub(before)) as f64 * 1024.0 / connections as f64;
    // The sigver line stays as it always was (benches/ab.sh reads it).
    let label = match kind {
        IdleKind::Sigver => "idle",
        IdleKind::Legacy => "idle (legacy)",
        IdleKind::Sockjs => "idle (sockjs)",
        IdleKind::Raw => "idle (raw)",
        IdleKind::Open => "idle (open)",
    };
    let warning = match closed_by_server {
        0 => String::new(),
        n => format!(" (WARNING: the server closed {n} of them before RSS was read)"),
    };
    println!(
        "{label}: connections={connections} server RSS before={before} KiB after={after} KiB per connection={per:.0} B{warning}"
    );
    let _ = stop.send(true);
    let mut closing = Vec::with_capacity(holders.len());
    for h in holders {
        if let Ok(Some(ws)) = h.await {
            closing.push(ws);
        }
    }
    // Close politely, so that a server reused after this run (or measured
    // under a profiler) sees ordinary closes rather than resets.
    futures_util::future::join_all(closing.iter_mut().map(|ws| ws.close(None))).await;
    Ok(())
}

async fn videre(
    target: &Target,
    rooms: usize,
    users: usize,
    window: u64,
    seconds: u64,
) -> Result<(), Error> {
    let delivered = Arc::new(AtomicU64::new(0));
    let mut ready = Vec::with_capacity(rooms * users);
    for r in 0..rooms {
        for u in 0..users {
            // Each room's users spread over the nodes (room r starts on
            // node r, so the rooms' first users spread too).
            let url = target.node(r + u);
            let mut ws = open(&format!("{url}/echo/websocket")).await?;
            let room = format!("room-{r}-{}", std::process::id());
            let user = format!("user-{u}");
            let connect = format!(
                r#"{{"Header":{{"Event":"connect","UserId":"{user}","RoomId":"{room}"}},"Payload":"{{}}"}}"#
            );
            ws.send(Ws::Text(connect.into())).await?;
            ready.push((ws, room, user));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(seconds) + Duration::from_secs(2);
    let mut tasks = Vec::new();
    for (ws, room, user) in ready {
        let delivered = delivered.clone();
        tasks.push(tokio::spawn(async move {
            let (mut tx, mut rx) = ws.split();
            let own = Arc::new(AtomicU64::new(0));
            let own_rx = own.clone();
            let marker = format!(r#""UserId":"{user}""#);
            let reader = tokio::spawn(async move {
                while let Ok(Some(Ok(Ws::Text(text)))) = tokio::time::timeout_at(deadline.into(), rx.next()).await {
                    if text.contains(r#""Event":"broadcast""#) {
                        delivered.fetch_add(1, Ordering::Relaxed);
                        if text.contains(&marker) {
                            own_rx.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            });
            let packet = format!(
                r#"{{"Header":{{"Event":"broadcast","UserId":"{user}","RoomId":"{room}"}},"Payload":{{"Type":"Ice Candidate","IcePacket":{{"candidate":"candidate:1 1 udp 2122260223 127.0.0.1 54321 typ host","sdpMid":"0","sdpMLineIndex":0}}}}}}"#
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
            send_windowed(&mut tx, || Ws::Text(packet.clone().into()), &own, window, None, deadline).await;
            let _ = reader.await;
        }));
    }
    measure_rate(
        &format!(
            "videre{}: rooms={rooms} users={users} broadcast deliveries/s",
            target.across()
        ),
        &delivered,
        None,
        seconds,
        target,
    )
    .await;
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

fn main() -> Result<(), Error> {
    let cli = Cli::parse();
    let mut urls: Vec<String> = cli
        .url
        .iter()
        .chain(&cli.urls)
        .map(|url| url.trim_end_matches('/').to_string())
        .filter(|url| !url.is_empty())
        .collect();
    if urls.is_empty() {
        urls.push("ws://127.0.0.1:8000".to_owned());
    }
    for url in &urls {
        if !(url.contains("://127.") || url.contains("://localhost") || url.contains("://[::1]")) {
            return Err("the load tool only targets loopback addresses".into());
        }
    }
    let target = Target {
        urls,
        server_pids: cli.server_pid,
        redis_port: cli.redis_port,
    };
    let target = &target;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.scenario {
            Scenario::Relay {
                pairs,
                size,
                window,
                messages,
            } => relay(target, pairs, size, window, messages, cli.seconds).await,
            Scenario::Echo {
                connections,
                size,
                window,
                messages,
            } => echo(target, connections, size, window, messages, cli.seconds).await,
            Scenario::Rtt { pairs, size } => rtt(target, pairs, size, cli.seconds).await,
            Scenario::Joins { total, concurrency } => {
                joins(target, total, concurrency, cli.seconds).await
            }
            // Memory is a per-process figure: measured on the first node.
            Scenario::Idle {
                connections,
                pid,
                kind,
                hold_seconds,
            } => idle(target.node(0), connections, pid, kind, hold_seconds).await,
            Scenario::Videre {
                rooms,
                users,
                window,
            } => videre(target, rooms, users, window, cli.seconds).await,
        }
    })
}
