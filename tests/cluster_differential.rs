//! The cluster against a node alone, mechanically: the same random
//! sequences of Netflux events (peers opening with or without `?favored`,
//! `connect` with random views, content along the bindings they learnt,
//! `lastData`, peers leaving) are played against one gateway and against
//! three gateways on a real `redis-server` (8 seeds) and on a 3-master
//! Redis Cluster (3 seeds) with the peers spread round-robin; every peer's
//! transcript must be the same (signaling ids, random on both, are compared
//! by order of first appearance). Each event is followed by a quiet period,
//! so that what it caused has arrived everywhere before the next one.
//! Skips with one line when `redis-server` is not installed.

mod cluster_support;
mod common;

use std::collections::HashMap;
use std::time::Duration;

use cluster_support::{Backend, Redis, node_settings, on_both_backends, start_nodes};
use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use sigway::app::BackgroundServer;
use sigway::proto::sigver::{Content, GroupData, Message, message::Type};
use tokio_tungstenite::tungstenite::Message as Ws;

use common::{Socket, WAIT, test_settings};

/// How long nothing must arrive before the next event is played (room
/// for a cross-node round trip on a busy 2-core machine).
const QUIET: Duration = Duration::from_millis(250);

/// A small deterministic generator (xorshift), so a failing seed replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

#[derive(Debug, Clone)]
enum Op {
    Open {
        favored: bool,
    },
    Connect {
        peer: usize,
        view: Vec<u32>,
    },
    /// Content to the k-th signaling id the peer has seen (or 0 = up to
    /// its member when `k` is past them).
    Content {
        peer: usize,
        k: usize,
        last: bool,
    },
    Leave {
        peer: usize,
    },
}

fn script(seed: u64, len: usize) -> Vec<Op> {
    let mut rng = Rng(seed);
    let mut ops = vec![Op::Open { favored: false }];
    let mut opened = 1;
    for _ in 0..len {
        let op = match rng.below(11) {
            0..=2 => Op::Open {
                favored: rng.chance(40),
            },
            3..=5 => {
                let view = (0..1 + rng.below(2))
                    .map(|_| rng.below(opened) as u32 + 1)
                    .collect();
                Op::Connect {
                    peer: rng.below(opened),
                    view,
                }
            }
            6..=9 => Op::Content {
                peer: rng.below(opened),
                k: rng.below(3),
                last: rng.chance(15),
            },
            _ => Op::Leave {
                peer: rng.below(opened),
            },
        };
        if matches!(op, Op::Open { .. }) {
            opened += 1;
        }
        ops.push(op);
    }
    ops
}

/// One deployment's peers and what each of them received.
struct Run {
    urls: Vec<String>,
    peers: Vec<Option<Socket>>,
    /// Signaling ids each peer saw, in order (raw).
    seen: Vec<Vec<u32>>,
    transcripts: Vec<Vec<String>>,
    /// Raw signaling id → order of first appearance in this deployment.
    ids: HashMap<u32, usize>,
    sent: usize,
}

impl Run {
    fn new(urls: Vec<String>) -> Self {
        Self {
            urls,
            peers: Vec::new(),
            seen: Vec::new(),
            transcripts: Vec::new(),
            ids: HashMap::new(),
            sent: 0,
        }
    }

    fn id(&mut self, raw: u32) -> String {
        if raw == 0 {
            return "0".into();
        }
        let next = self.ids.len();
        format!("s{}", self.ids.entry(raw).or_insert(next))
    }

    async fn send(&mut self, peer: usize, r#type: Type) {
        if let Some(ws) = self.peers[peer].as_mut() {
            let bytes = Message {
                r#type: Some(r#type),
            }
            .encode_to_vec();
            // A peer closed by the server meanwhile fails to send: its
            // transcript already says so.
            let _ = ws.send(Ws::Binary(bytes.into())).await;
        }
    }

    async fn play(&mut self, op: &Op, key: &str) {
        match op {
            Op::Open { favored } => {
                let index = self.peers.len();
                let url = &self.urls[index % self.urls.len()];
                let path = if *favored {
                    if key.contains('?') {
                        format!("{key}&favored")
                    } else {
                        format!("{key}?favored")
                    }
                } else {
                    key.to_owned()
                };
                let (ws, _) = tokio::time::timeout(
                    WAIT,
                    tokio_tungstenite::connect_async(format!("{url}{path}")),
                )
                .await
                .expect("connect in time")
                .expect("upgrade");
                self.peers.push(Some(ws));
                self.seen.push(Vec::new());
                self.transcripts.push(Vec::new());
                let id = index as u32 + 1;
                self.send(
                    index,
                    Type::Connect(GroupData {
                        id,
                        members: vec![],
                    }),
                )
                .await;
            }
            Op::Connect { peer, view } => {
                let id = *peer as u32 + 1;
                self.send(
                    *peer,
                    Type::Connect(GroupData {
                        id,
                        members: view.clone(),
                    }),
                )
                .await;
            }
            Op::Content { peer, k, last } => {
                let recipient = self.seen[*peer].get(*k).copied().unwrap_or(0);
                self.sent += 1;
                let data = format!("m{}", self.sent).into_bytes();
                self.send(
                    *peer,
                    Type::Content(Content {
                        sender_id: 0,
                        recipient_id: recipient,
                        last_data: *last,
                        data: data.into(),
                    }),
                )
                .await;
            }
            Op::Leave { peer } => {
                if let Some(mut ws) = self.peers[*peer].take() {
                    let _ = ws.close(None).await;
                    self.transcripts[*peer].push("left".into());
                }
            }
        }
        self.settle().await;
    }

    /// Reads every peer until nothing arrived for `QUIET`.
    async fn settle(&mut self) {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut quiet_since = tokio::time::Instant::now();
        while quiet_since.elapsed() < QUIET && tokio::time::Instant::now() < deadline {
            let mut got = false;
            for peer in 0..self.peers.len() {
                let Some(ws) = self.peers[peer].as_mut() else {
                    continue;
                };
                let Ok(frame) = tokio::time::timeout(Duration::from_millis(5), ws.next()).await
                else {
                    continue;
                };
                got = true;
                match frame {
                    Some(Ok(Ws::Binary(bytes))) => {
                        let message = Message::decode(bytes).expect("valid message");
                        let line = match message.r#type.expect("a type") {
                            Type::Heartbeat(_) => continue,
                            Type::Connected(member) => format!("connected {member}"),
                            Type::Content(c) => {
                                for raw in [c.sender_id, c.recipient_id] {
                                    if raw != 0 && !self.seen[peer].contains(&raw) {
                                        self.seen[peer].push(raw);
                                    }
                                }
                                let (s, r) = (self.id(c.sender_id), self.id(c.recipient_id));
                                format!(
                                    "content {s} {r} {:?} last={}",
                                    String::from_utf8_lossy(&c.data),
                                    c.last_data
                                )
                            }
                            other => format!("{other:?}"),
                        };
                        self.transcripts[peer].push(line);
                    }
                    Some(Ok(Ws::Close(frame))) => {
                        let code = frame.map_or(1005, |f| u16::from(f.code));
                        self.transcripts[peer].push(format!("closed {code}"));
                        self.peers[peer] = None;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => {
                        self.transcripts[peer].push("dropped".into());
                        self.peers[peer] = None;
                    }
                }
            }
            if got {
                quiet_since = tokio::time::Instant::now();
            }
        }
    }
}

async fn transcripts(urls: Vec<String>, ops: &[Op], key: &str) -> Vec<Vec<String>> {
    let mut run = Run::new(urls);
    for op in ops {
        run.play(op, key).await;
    }
    run.transcripts
}

on_both_backends!(random_sequences_give_the_same_transcripts_on_one_node_and_on_three);
async fn random_sequences_give_the_same_transcripts_on_one_node_and_on_three(backend: Backend) {
    // One backend at a time: each run already has four gateways, and the
    // quiet periods must not stretch under their combined load.
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _turn = ONE_AT_A_TIME.lock().await;
    let redis = Redis::start(backend);
    // Fewer seeds on a Redis Cluster, whose start costs a few seconds more.
    let seed_count = match backend {
        Backend::Standalone => 8,
        Backend::Cluster => 3,
    };
    // Peers here do not answer heartbeats: none is due during a run.
    let quiet_heartbeat = |mut settings: sigway::config::Settings| {
        settings.sigver.heartbeat_interval_ms = 120_000;
        settings
    };
    let alone = BackgroundServer::start(quiet_heartbeat(test_settings())).expect("node alone");
    let nodes = start_nodes(
        (1..=3)
            .map(|node| {
                let mut settings =
                    node_settings(quiet_heartbeat(test_settings()), &redis.url(), node);
                // Empty groups keep their claim as long as by default.
                settings.cluster.release_after_ms =
                    sigway::config::ClusterSettings::default().release_after_ms;
                settings
            })
            .collect(),
    )
    .await;

    let seeds = (1..=seed_count).map(|n| 0x5eed_0000_u64 + n);
    let mut relayed = 0;
    for (round, seed) in seeds.into_iter().enumerate() {
        let ops = script(seed, 30);
        let key = format!("/diff{round}");
        // Both deployments play at once (they share nothing but the machine).
        let (single, spread) = tokio::join!(
            transcripts(vec![alone.ws_url("")], &ops, &key),
            transcripts(nodes.iter().map(|n| n.ws_url("")).collect(), &ops, &key),
        );
        relayed += single
            .iter()
            .flatten()
            .filter(|line| line.starts_with("content"))
            .count();
        for (peer, (one, three)) in single.iter().zip(&spread).enumerate() {
            assert_eq!(
                one, three,
                "seed {seed:#x}, peer {peer}: one node vs three\nscript: {ops:?}"
            );
        }
    }
    assert!(
        relayed >= 5 * seed_count as usize,
        "the scripts exercise the groups: {relayed} contents"
    );
}
