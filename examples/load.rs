//! sigway's load tool: drives a running gateway over real sockets and prints
//! medians and percentiles. Used for every figure in the README.
//!
//! ```text
//! cargo run --release --example load -- --url ws://127.0.0.1:8000 relay --pairs 100 --size 100
//! cargo run --release --example load -- --url ws://127.0.0.1:8000 rtt --pairs 100
//! cargo run --release --example load -- --url ws://127.0.0.1:8000 joins --total 20000 --concurrency 100
//! cargo run --release --example load -- --url ws://127.0.0.1:8000 idle --connections 10000 --pid <gateway pid>
//! cargo run --release --example load -- --url ws://127.0.0.1:8000 videre --rooms 25 --users 4
//! ```
//! `benches/load.sh` builds the gateway, starts it and runs them all. Every
//! loop is bounded by `--seconds` (and counts); targets must be loopback.
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
        /// What each idle peer is: a sigver peer (`sigver`, `legacy`:
        /// joined to one of 100 groups) or a videre user (`sockjs`: the
        /// framed SockJS websocket, `raw`: /echo/websocket; joined to one
        /// of 100 rooms).
        #[arg(long, value_enum, default_value_t = IdleKind::Sigver)]
        kind: IdleKind,
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

/// What an idle peer is (see `Scenario::Idle`).
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum IdleKind {
    Sigver,
    Legacy,
    Sockjs,
    Raw,
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
    let (ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(url),
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

fn report_latencies(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{what}: n={} p50={:?} p90={:?} p99={:?} max={:?}",
        samples.len(),
        percentile(&samples, 0.5),
        percentile(&samples, 0.9),
        percentile(&samples, 0.99),
        samples.last().copied().unwrap_or_default()
    );
}

async fn relay(
    target: &Target,
    pairs: usize,
    size: usize,
    window: u64,
    seconds: u64,
) -> Result<(), Error> {
    let received = Arc::new(AtomicU64::new(0));
    // Every pair is set up before any sends, so set-up is not measured.
    let mut ready = Vec::with_capacity(pairs);
    for i in 0..pairs {
        let key = format!("relay-{i}-{}", std::process::id());
        ready.push(pair(target.node(i), target.node(i + 1), &key).await?);
    }
    let deadline = Instant::now() + Duration::from_secs(seconds) + Duration::from_secs(2);
    let mut tasks = Vec::new();
    for (member, joiner, _) in ready {
        let received = received.clone();
        tasks.push(tokio::spawn(async move {
            let (mut member_tx, mut member_rx) = member.split();
            let (mut joiner_tx, mut joiner_rx) = joiner.split();
            let payload = vec![b'x'; size];
            let acked = Arc::new(AtomicU64::new(0));
            let acked_by_member = acked.clone();
            // Member: count, ack every window/2 messages back to the joiner.
            let member_task = tokio::spawn(async move {
                let mut count = 0u64;
                while Instant::now() < deadline {
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
                    }
                }
            });
            let ack_task = tokio::spawn(async move {
                while let Ok(Some(Ok(Ws::Binary(bytes)))) =
                    tokio::time::timeout_at(deadline.into(), joiner_rx.next()).await
                {
                    if let Ok(Message {
                        r#type: Some(Type::Content(c)),
                    }) = Message::decode(bytes)
                        && let Ok(n) = <[u8; 8]>::try_from(&c.data[..])
                    {
                        acked_by_member.store(u64::from_le_bytes(n), Ordering::Relaxed);
                    }
                }
            });
            send_windowed(
                &mut joiner_tx,
                || content(0, &payload),
                &acked,
                window,
                deadline,
            )
            .await;
            let _ = member_task.await;
            ack_task.abort();
        }));
    }
    measure_rate(
        &format!(
            "relay{}: pairs={pairs} size={size}B window={window} one-way msgs/s",
            target.across()
        ),
        &received,
        seconds,
        target,
    )
    .await;
    for t in tasks {
        let _ = t.await;
    }
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
    report_latencies(
        &format!(
            "joins{} ({concurrency} in flight, {rate:.0} joins/s, {failures} failed)",
            target.across()
        ),
        samples,
    );
    Ok(())
}

/// Sends `frame()` until `deadline`, never more than `window` ahead of what
/// `acked` says arrived, flushing every 16 frames (pipelined, yet bounded).
async fn send_windowed<S>(
    tx: &mut S,
    frame: impl Fn() -> Ws,
    acked: &AtomicU64,
    window: u64,
    deadline: Instant,
) where
    S: futures_util::Sink<Ws> + Unpin,
{
    let (mut sent, mut unflushed) = (0u64, 0u64);
    while Instant::now() < deadline {
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
/// a Redis port, the Redis commands over the window).
async fn measure_rate(what: &str, counter: &AtomicU64, seconds: u64, target: &Target) {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let redis_before = target.redis_port.map(redis_command_calls);
    let (start_count, start, start_cpu) = (
        counter.load(Ordering::Relaxed),
        Instant::now(),
        servers_cpu_seconds(&target.server_pids),
    );
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let (events, elapsed) = (
        counter.load(Ordering::Relaxed) - start_count,
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
    println!("{what}={rate:.0}{cpu}{redis}");
}

fn rss_kib(pid: u32) -> Result<u64, Error> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or("no VmRSS")?;
    Ok(line.split_whitespace().nth(1).ok_or("bad VmRSS")?.parse()?)
}

async fn idle(
    url: &str,
    connections: usize,
    pid: u32,
    seconds: u64,
    kind: IdleKind,
) -> Result<(), Error> {
    let before = rss_kib(pid)?;
    let mut sockets = Vec::with_capacity(connections);
    for i in 0..connections {
        let room = format!("idle-{}", i % 100);
        let ws = match kind {
            IdleKind::Sigver | IdleKind::Legacy => {
                let query = if kind == IdleKind::Legacy {
                    "?protocol=legacy"
                } else {
                    ""
                };
                let mut ws = open(&format!("{url}/{room}{query}")).await?;
                if kind == IdleKind::Sigver {
                    connect(&mut ws, i as u32 + 1, &[]).await?;
                } else {
                    // sigver 18: `isFirst` comes first; `stable: true`
                    // (field 3) makes the peer a member.
                    let _ = tokio::time::timeout(Duration::from_secs(10), ws.next()).await;
                    ws.send(Ws::Binary(vec![0x18, 0x01].into())).await?;
                }
                ws
            }
            IdleKind::Sockjs | IdleKind::Raw => {
                let packet = format!(
                    r#"{{"Header":{{"Event":"connect","UserId":"user-{i}","RoomId":"{room}"}},"Payload":"{{}}"}}"#
                );
                if kind == IdleKind::Raw {
                    let mut ws = open(&format!("{url}/echo/websocket")).await?;
                    ws.send(Ws::Text(packet.into())).await?;
                    ws
                } else {
                    let mut ws = open(&format!("{url}/echo/000/idle{i:08}/websocket")).await?;
                    let batch = serde_json::to_string(&[packet])?;
                    ws.send(Ws::Text(batch.into())).await?;
                    ws
                }
            }
        };
        sockets.push(ws);
    }
    // Keep them alive (answer heartbeats) while the server settles.
    let settle = Instant::now() + Duration::from_secs(seconds.min(4));
    let holders: Vec<_> = sockets
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                while let Ok(Some(Ok(frame))) =
                    tokio::time::timeout_at((settle + Duration::from_secs(2)).into(), ws.next())
                        .await
                {
                    if let Ws::Binary(bytes) = frame
                        && let Ok(Message {
                            r#type: Some(Type::Heartbeat(_)),
                        }) = Message::decode(bytes)
                    {
                        let _ = ws.send(encode(Type::Heartbeat(true))).await;
                    }
                }
                ws
            })
        })
        .collect();
    tokio::time::sleep_until(settle.into()).await;
    let after = rss_kib(pid)?;
    let per = (after.saturating_sub(before)) as f64 * 1024.0 / connections as f64;
    println!(
        "idle: connections={connections} server RSS before={before} KiB after={after} KiB per connection={per:.0} B"
    );
    for h in holders {
        let _ = h.await;
    }
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
            send_windowed(&mut tx, || Ws::Text(packet.clone().into()), &own, window, deadline).await;
            let _ = reader.await;
        }));
    }
    measure_rate(
        &format!(
            "videre{}: rooms={rooms} users={users} broadcast deliveries/s",
            target.across()
        ),
        &delivered,
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
            } => relay(target, pairs, size, window, cli.seconds).await,
            Scenario::Rtt { pairs, size } => rtt(target, pairs, size, cli.seconds).await,
            Scenario::Joins { total, concurrency } => {
                joins(target, total, concurrency, cli.seconds).await
            }
            // Memory is a per-process figure: measured on the first node.
            Scenario::Idle {
                connections,
                pid,
                kind,
            } => idle(target.node(0), connections, pid, cli.seconds, kind).await,
            Scenario::Videre {
                rooms,
                users,
                window,
            } => videre(target, rooms, users, window, cli.seconds).await,
        }
    })
}
