//! Starts this node's part of a cluster (`[cluster]` settings): a
//! dedicated arbiter that connects to Redis (retrying, one log line per
//! attempt), runs the cluster bus on it, hands the room layer the bus and
//! the directory, and then feeds the room layer what the bus delivers, in
//! order. Rooms that members of other nodes open here start on this
//! arbiter. All Redis I/O stays on it, the dashboard's per-node board
//! ([`node_board`](super::node_board)) included.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use sigway_cluster::{
    Bus, BusConfig, BusEvent, BusHandle, Claim, GroupHash, NodeId, RedisTransport, Transport,
    TransportError,
};
use tokio::sync::oneshot;

use super::node_board::{self, NodeBoard};
use crate::config::ClusterSettings;
use crate::observe::{ClusterFigures, ClusterSource, Stats};
use crate::rooms::{BoxFuture, Cluster, ClusterStart, Directory, NodeLink, Rooms};

/// This node's cluster machinery, as the composition root holds it.
/// Dropping it stops the bus too (with a goodbye), without waiting.
pub(crate) struct ClusterNode {
    stop: Option<oneshot::Sender<oneshot::Sender<()>>>,
    _arbiter: Arbiter,
}

impl ClusterNode {
    /// Says goodbye to the other nodes (so they do not wait for the dead
    /// timeout) and stops the bus; waits at most `patience`.
    pub(crate) async fn stop(mut self, patience: Duration) {
        if let Some(stop) = self.stop.take() {
            let (done, stopped) = oneshot::channel();
            if stop.send(done).is_ok() {
                let _ = tokio::time::timeout(patience, stopped).await;
            }
        }
    }
}

/// A node id for this run: the configured one, or a random one.
pub(crate) fn node_id(settings: &ClusterSettings) -> NodeId {
    match settings.node_id {
        0 => loop {
            let id: NodeId = rand::random();
            if id != 0 {
                break id;
            }
        },
        id => id,
    }
}

/// Starts the cluster arbiter for `cluster`, whose room layer is `rooms`
/// and whose dashboard feeds read `board`.
pub(crate) fn launch(
    settings: ClusterSettings,
    cluster: Arc<Cluster>,
    rooms: Rooms,
    stats: Arc<Stats>,
    board: Arc<NodeBoard>,
) -> ClusterNode {
    let arbiter = Arbiter::with_tokio_rt(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread tokio runtime builds")
    });
    let (stop, stop_requests) = oneshot::channel();
    arbiter.spawn(run(settings, cluster, rooms, stats, board, stop_requests));
    ClusterNode {
        stop: Some(stop),
        _arbiter: arbiter,
    }
}

async fn run(
    settings: ClusterSettings,
    cluster: Arc<Cluster>,
    rooms: Rooms,
    stats: Arc<Stats>,
    board: Arc<NodeBoard>,
    mut stop: oneshot::Receiver<oneshot::Sender<()>>,
) {
    let me = cluster.node();
    let urls: Vec<String> = settings
        .redis_url
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let transport = tokio::select! {
        transport = connect(&urls, &settings.prefix, settings.require) => match transport {
            Some(transport) => Arc::new(transport),
            None => {
                tracing::warn!(
                    node = me,
                    "cluster.require = false and Redis does not answer: serving as a node alone until restarted"
                );
                cluster.serve_alone();
                return;
            }
        },
        _ = &mut stop => return,
    };
    let mut config = BusConfig::new(me, incarnation());
    config.heartbeat = Duration::from_millis(settings.heartbeat_ms);
    config.dead_after = Duration::from_millis(settings.dead_after_ms);
    config.send_queue_bytes = settings.send_queue_bytes;
    config.recovery_grace = Duration::from_millis(settings.recovery_grace_ms);
    // What is in flight between two nodes survives an engine outage this
    // long (Redis paused or restarting); the ring's byte bound still holds.
    config.link.ring_age = (config.dead_after * 3).max(Duration::from_secs(10));
    let dead_after = config.dead_after;
    let (bus, mut events) = Bus::start(transport.clone(), config);
    let figures = {
        let bus = bus.clone();
        let cluster = cluster.clone();
        let board = board.clone();
        move || {
            let counters = bus.counters();
            let (owned, visitors, away) = cluster.census();
            ClusterFigures {
                node: me,
                ready: bus.is_ready(),
                nodes: bus.alive_nodes().len() as u64 + u64::from(bus.is_ready()),
                rooms_owned: owned as u64,
                remote_members: visitors as u64,
                members_away: away as u64,
                messages_sent: counters.messages_sent,
                messages_received: counters.messages_received,
                retransmits: counters.retransmits,
                link_resets: counters.link_resets,
                board_failures: board.failures(),
            }
        }
    };
    let board_writer = {
        let (alive, ready) = (bus.clone(), bus.clone());
        tokio::spawn(node_board::publish(
            transport.clone(),
            board,
            stats.clone(),
            move || alive.alive_nodes(),
            move || ready.is_ready(),
        ))
    };
    stats.set_cluster_source(ClusterSource(Box::new(figures)));
    cluster.connected(ClusterStart {
        link: Arc::new(BusLink {
            bus: bus.clone(),
            since: Instant::now(),
            dead_after,
            closed: std::sync::atomic::AtomicBool::new(false),
        }),
        directory: Arc::new(RedisDirectory { transport, me }),
    });
    tracing::info!(
        node = me,
        "cluster: bus started, waiting to hear this node's own heartbeat"
    );
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(event) => handle(&cluster, &rooms, event).await,
                None => break,
            },
            done = &mut stop => {
                // The rooms this node owns are adopted from their last
                // snapshots: stop sending, write them all, then say goodbye.
                cluster.leave();
                if tokio::time::timeout(Duration::from_secs(2), cluster.flush_snapshots())
                    .await
                    .is_err()
                {
                    tracing::warn!(
                        "cluster: leaving with snapshots not written; the nodes adopting \
                         those rooms rebuild them from older ones"
                    );
                }
                board_writer.abort();
                bus.shutdown().await;
                if let Ok(done) = done {
                    let _ = done.send(());
                }
                break;
            }
        }
    }
}

async fn handle(cluster: &Arc<Cluster>, rooms: &Rooms, event: BusEvent) {
    match event {
        BusEvent::Message { from, payload } => cluster.received(rooms, from, payload).await,
        BusEvent::NodeUp(node) => {
            tracing::info!(node, "cluster: node up");
            cluster.node_up(node);
        }
        BusEvent::NodeDown(node) => {
            tracing::info!(node, "cluster: node down");
            cluster.node_gone(rooms, node).await;
        }
        BusEvent::LinkReset { peer } => {
            tracing::warn!(peer, "cluster: link reset, bouncing what depended on it");
            cluster.link_reset(peer);
        }
        BusEvent::Ready(ready) => {
            tracing::info!(ready, "cluster: readiness");
            if ready {
                // Back after an interruption (or ready the first time, with
                // nothing owned yet): Redis may have restarted empty.
                cluster.reassert(rooms);
            }
        }
    }
}

/// Connects to Redis, retrying until it answers; gives up after the first
/// failure unless `require`.
async fn connect(urls: &[String], prefix: &str, require: bool) -> Option<RedisTransport> {
    let mut delay = Duration::from_millis(100);
    let mut attempt = 1u32;
    loop {
        match RedisTransport::connect(urls, prefix).await {
            Ok(transport) => {
                tracing::info!(attempt, "cluster: connected to Redis");
                return Some(transport);
            }
            Err(error) if !require => {
                tracing::warn!(%error, "cluster: Redis unreachable");
                return None;
            }
            Err(error) => {
                tracing::warn!(attempt, %error, retry_in_ms = delay.as_millis() as u64, "cluster: Redis unreachable");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
                attempt += 1;
            }
        }
    }
}

/// Larger than any earlier run's of this node: the start time in ms.
fn incarnation() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |since| since.as_millis() as u64)
}

/// The bus as the room layer uses it.
struct BusLink {
    bus: BusHandle,
    since: Instant,
    dead_after: Duration,
    closed: std::sync::atomic::AtomicBool,
}

impl NodeLink for BusLink {
    fn send(&self, to: NodeId, payload: Bytes) -> bool {
        if self.closed.load(std::sync::atomic::Ordering::Acquire) {
            return false;
        }
        match self.bus.send(to, payload) {
            Ok(()) => true,
            Err(error) => {
                tracing::debug!(%error, "cluster: payload not sent");
                false
            }
        }
    }

    fn send_paced(&self, to: NodeId, payload: Bytes, credit: Arc<crate::rooms::InFlight>) -> bool {
        if self.closed.load(std::sync::atomic::Ordering::Acquire) {
            return false;
        }
        match self.bus.send_paced(to, payload, credit) {
            Ok(()) => true,
            Err(error) => {
                tracing::debug!(%error, "cluster: payload not sent");
                false
            }
        }
    }

    fn may_be_alive(&self, node: NodeId) -> bool {
        // A node we have not heard yet may simply have started after us.
        self.since.elapsed() < self.dead_after * 2 || self.bus.alive_nodes().contains(&node)
    }

    fn is_ready(&self) -> bool {
        self.bus.is_ready()
    }

    fn close(&self) {
        self.closed
            .store(true, std::sync::atomic::Ordering::Release);
    }
}

/// The directory in Redis.
struct RedisDirectory {
    transport: Arc<RedisTransport>,
    me: NodeId,
}

impl Directory for RedisDirectory {
    fn claim(
        &self,
        group: GroupHash,
        expected: Option<(NodeId, u64)>,
    ) -> BoxFuture<Result<Claim, TransportError>> {
        let transport = self.transport.clone();
        let me = self.me;
        Box::pin(async move { transport.claim(group, me, expected).await })
    }

    fn release(&self, group: GroupHash, epoch: u64) -> BoxFuture<Result<bool, TransportError>> {
        let transport = self.transport.clone();
        let me = self.me;
        Box::pin(async move { transport.release(group, me, epoch).await })
    }

    fn write_snapshot(
        &self,
        group: GroupHash,
        epoch: u64,
        snapshot: Bytes,
    ) -> BoxFuture<Result<bool, TransportError>> {
        let transport = self.transport.clone();
        let me = self.me;
        Box::pin(async move { transport.write_snapshot(group, me, epoch, snapshot).await })
    }
}
