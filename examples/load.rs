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
    /// Gateway base URL (ws://127.0.0.1:PORT).
    #[arg(long, default_value = "ws://127.0.0.1:8000")]
    url: String,
    /// Measurement window per scenario.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// The gateway's process id: throughput scenarios then also report the
    /// CPU it used over the measurement window (from /proc).
    #[arg(long)]
    server_pid: Option<u32>,
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

/// A member and a joiner bound to it; returns (member, joiner, joiner's id).
async fn pair(url: &str, key: &str) -> Result<(Socket, Socket, u32), Error> {
    let mut member = open(&format!("{url}/{key}")).await?;
    connect(&mut member, 1, &[]).await?;
    let mut joiner = open(&format!("{url}/{key}")).await?;
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
    url: &str,
    pairs: usize,
    size: usize,
    window: u64,
    seconds: u64,
    server_pid: Option<u32>,
) -> Result<(), Error> {
    let received = Arc::new(AtomicU64::new(0));
    // Every pair is set up before any sends, so set-up is not measured.
    let mut ready = Vec::with_capacity(pairs);
    for i in 0..pairs {
        ready.push(pair(url, &format!("relay-{i}-{}", std::process::id())).await?);
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
        &format!("relay: pairs={pairs} size={size}B window={window} one-way msgs/s"),
        &received,
        seconds,
        server_pid,
    )
    .await;
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

async fn rtt(url: &str, pairs: usize, size: usize, seconds: u64) -> Result<(), Error> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for i in 0..pairs {
        let (mut member, mut joiner, s) =
            pair(url, &format!("rtt-{i}-{}", std::process::id())).await?;
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
        &format!("rtt (pairs={pairs}, {size}B, one in flight, {rate:.0} round trips/s)"),
        all,
    );
    Ok(())
}

async fn joins(url: &str, total: usize, concurrency: usize, seconds: u64) -> Result<(), Error> {
    let permits = Arc::new(Semaphore::new(concurrency));
    let deadline = Instant::now() + Duration::from_secs(seconds.max(1) * 6);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        if Instant::now() > deadline {
            break;
        }
        let permit = permits.clone().acquire_owned().await?;
        let url = format!("{url}/join-{i}-{}", std::process::id());
        tasks.push(tokio::spawn(async move {
            let t0 = Instant::now();
            let result = async {
                let mut ws = open(&url).await?;
                connect(&mut ws, 1, &[]).await?;
                let elapsed = t0.elapsed();
                let _ = ws.close(None).await;
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
        &format!("joins ({concurrency} in flight, {rate:.0} joins/s, {failures} failed)"),
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

/// Measures `counter` over `seconds` after a 1 s warm-up; prints the rate
/// and, with a server pid, the server's CPU use per counted event.
async fn measure_rate(what: &str, counter: &AtomicU64, seconds: u64, server_pid: Option<u32>) {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (start_count, start, start_cpu) = (
        counter.load(Ordering::Relaxed),
        Instant::now(),
        server_pid.and_then(cpu_seconds),
    );
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let (events, elapsed) = (
        counter.load(Ordering::Relaxed) - start_count,
        start.elapsed().as_secs_f64(),
    );
    let rate = events as f64 / elapsed;
    let cpu = match (server_pid.and_then(cpu_seconds), start_cpu) {
        (Some(end), Some(start)) if events > 0 => format!(
            " server_cpu_cores={:.2} server_cpu_us_per_event={:.2}",
            (end - start) / elapsed,
            (end - start) * 1e6 / events as f64
        ),
        _ => String::new(),
    };
    println!("{what}={rate:.0}{cpu}");
}

fn rss_kib(pid: u32) -> Result<u64, Error> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or("no VmRSS")?;
    Ok(line.split_whitespace().nth(1).ok_or("bad VmRSS")?.parse()?)
}

async fn idle(url: &str, connections: usize, pid: u32, seconds: u64) -> Result<(), Error> {
    let before = rss_kib(pid)?;
    let mut sockets = Vec::with_capacity(connections);
    for i in 0..connections {
        let mut ws = open(&format!("{url}/idle-{}", i % 100)).await?;
        connect(&mut ws, i as u32 + 1, &[]).await?;
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
    url: &str,
    rooms: usize,
    users: usize,
    window: u64,
    seconds: u64,
    server_pid: Option<u32>,
) -> Result<(), Error> {
    let delivered = Arc::new(AtomicU64::new(0));
    let mut ready = Vec::with_capacity(rooms * users);
    for r in 0..rooms {
        for u in 0..users {
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
        &format!("videre: rooms={rooms} users={users} broadcast deliveries/s"),
        &delivered,
        seconds,
        server_pid,
    )
    .await;
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

fn main() -> Result<(), Error> {
    let cli = Cli::parse();
    let url = cli.url.trim_end_matches('/').to_string();
    if !(url.contains("://127.") || url.contains("://localhost") || url.contains("://[::1]")) {
        return Err("the load tool only targets loopback addresses".into());
    }
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
            } => relay(&url, pairs, size, window, cli.seconds, cli.server_pid).await,
            Scenario::Rtt { pairs, size } => rtt(&url, pairs, size, cli.seconds).await,
            Scenario::Joins { total, concurrency } => {
                joins(&url, total, concurrency, cli.seconds).await
            }
            Scenario::Idle { connections, pid } => idle(&url, connections, pid, cli.seconds).await,
            Scenario::Videre {
                rooms,
                users,
                window,
            } => videre(&url, rooms, users, window, cli.seconds, cli.server_pid).await,
        }
    })
}
