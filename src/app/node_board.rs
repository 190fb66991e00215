//! The per-node board of a cluster's dashboard: every node writes its own
//! figures to the cluster transport once a second, with a TTL, and reads
//! the other live nodes' back, so that `/dashboard/feed` on any node shows
//! every node and the cluster's totals.
//!
//! A node's entry is what its feed sends for it (`t` and `metrics`) plus
//! its `node` id, `started_ms` and `ready` flag ([`NodeBoard::own_entry`]).
//! [`publish`] runs on the cluster arbiter, off every session's path: one
//! write a second (SET with a TTL of [`FIGURES_TTL`], so a killed node's
//! entry is gone within it), and, while a feed has asked in the last few
//! seconds, one read a second of the nodes the bus knows alive (one MGET,
//! never one per feed client). The read is kept in the board and shared
//! by every feed; a read older than the TTL is not shown. A failed write
//! or read is counted and logged once when failing starts and once when
//! it ends, and nothing else happens: the dashboard is not worth a
//! session. Shaping the feed's `nodes` and `cluster` ([`assemble`]) and
//! checking what another node wrote ([`parse_entry`]) are pure.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use serde_json::{Value, json};
use sigway_cluster::{NodeId, Transport, TransportError};

use crate::observe::Stats;

/// Time between two writes (and reads) of the board.
pub(crate) const BOARD_PERIOD: Duration = Duration::from_secs(1);

/// How long a node's figures live after its last write: three missed
/// writes and the node is off the board.
pub(crate) const FIGURES_TTL: Duration = Duration::from_secs(3);

/// How long after the last feed's question the board keeps reading.
const WATCHED_FOR: Duration = Duration::from_secs(5);

/// The other nodes' figures as last read.
#[derive(Debug)]
struct BoardRead {
    at: Instant,
    entries: Vec<Value>,
}

/// What this node's feeds and its board writer share.
#[derive(Debug)]
pub(crate) struct NodeBoard {
    node: NodeId,
    /// When this node started, in ms since the Unix epoch.
    started_ms: u64,
    /// When this board was made: the clock of `watched_at`.
    since: Instant,
    /// When a feed last asked, in ms after `since` (0: never).
    watched_at: AtomicU64,
    latest: ArcSwapOption<BoardRead>,
    /// Failed writes and reads of the figures.
    failures: AtomicU64,
}

impl NodeBoard {
    /// The board of node `node`, started now.
    pub(crate) fn new(node: NodeId) -> Self {
        Self {
            node,
            started_ms: unix_ms(),
            since: Instant::now(),
            watched_at: AtomicU64::new(0),
            latest: ArcSwapOption::empty(),
            failures: AtomicU64::new(0),
        }
    }

    /// This node's id.
    pub(crate) fn node(&self) -> NodeId {
        self.node
    }

    /// Failed writes and reads so far (`sigway_cluster_board_failures_total`).
    pub(crate) fn failures(&self) -> u64 {
        self.failures.load(Relaxed)
    }

    /// This node's entry now: what its feed sends, and who it is.
    pub(crate) fn own_entry(&self, metrics: Value, ready: bool) -> Value {
        json!({
            "node": self.node,
            "started_ms": self.started_ms,
            "ready": ready,
            "t": unix_ms(),
            "metrics": metrics,
        })
    }

    /// What a feed adds to its event: every node's entry (this one fresh,
    /// the others as last read, if recently) and the cluster's totals.
    /// Asking keeps the board reading for [`WATCHED_FOR`].
    /// `metrics` are this node's, as the feed just read them.
    pub(crate) fn view(&self, metrics: Value, ready: bool) -> (Value, Value) {
        let now_ms = u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.watched_at.store(now_ms.max(1), Relaxed);
        let others = self
            .latest
            .load_full()
            .filter(|read| read.at.elapsed() <= FIGURES_TTL)
            .map(|read| read.entries.clone())
            .unwrap_or_default();
        assemble(self.own_entry(metrics, ready), others)
    }

    fn watched(&self) -> bool {
        match self.watched_at.load(Relaxed) {
            0 => false,
            at => {
                let now = u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX);
                now.saturating_sub(at) <= WATCHED_FOR.as_millis() as u64
            }
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

/// Logs a failing operation once when it starts failing and once when it
/// works again, and counts every failure.
struct Trouble {
    what: &'static str,
    failing: bool,
}

impl Trouble {
    fn note<T>(&mut self, board: &NodeBoard, result: Result<T, TransportError>) -> Option<T> {
        match result {
            Ok(value) => {
                if std::mem::take(&mut self.failing) {
                    tracing::info!(what = self.what, "cluster dashboard: works again");
                }
                Some(value)
            }
            Err(error) => {
                board.failures.fetch_add(1, Relaxed);
                if !std::mem::replace(&mut self.failing, true) {
                    tracing::warn!(what = self.what, %error,
                        "cluster dashboard: failing (the nodes' figures are not shared until it works again)");
                }
                None
            }
        }
    }
}

/// Writes this node's figures every [`BOARD_PERIOD`] and, while feeds
/// watch, reads those of `others()` (the other live nodes) into `board`.
/// Runs until aborted (the cluster arbiter aborts it when it stops).
pub(crate) async fn publish<T: Transport>(
    transport: T,
    board: Arc<NodeBoard>,
    stats: Arc<Stats>,
    others: impl Fn() -> Vec<NodeId>,
    ready: impl Fn() -> bool,
) {
    let mut ticks = tokio::time::interval(BOARD_PERIOD);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut writing = Trouble {
        what: "write",
        failing: false,
    };
    let mut reading = Trouble {
        what: "read",
        failing: false,
    };
    loop {
        ticks.tick().await;
        let entry = board.own_entry(stats.metrics_json(), ready());
        let written = transport
            .write_node_figures(board.node, Bytes::from(entry.to_string()), FIGURES_TTL)
            .await;
        writing.note(&board, written);
        if !board.watched() {
            continue;
        }
        let read = transport.read_node_figures(others()).await;
        if let Some(found) = reading.note(&board, read) {
            let entries = found
                .iter()
                .filter_map(|(node, bytes)| parse_entry(*node, bytes))
                .collect();
            board.latest.store(Some(Arc::new(BoardRead {
                at: Instant::now(),
                entries,
            })));
        }
    }
}

/// `bytes` as node `node`'s entry, if it is one: a JSON object naming
/// that node, with a `metrics` object (anything else is skipped).
pub(crate) fn parse_entry(node: NodeId, bytes: &[u8]) -> Option<Value> {
    let entry: Value = serde_json::from_slice(bytes).ok()?;
    let names_node = entry["node"].as_u64() == Some(u64::from(node));
    (names_node && entry["metrics"].is_object()).then_some(entry)
}

/// The feed's `nodes` (every entry, by node id) and `cluster` (totals
/// over them: nodes, ready nodes, connections, rooms, messages and bytes
/// relayed so far, resident memory).
pub(crate) fn assemble(own: Value, others: Vec<Value>) -> (Value, Value) {
    let mut nodes = others;
    let own_node = own["node"].as_u64();
    nodes.retain(|entry| entry["node"].as_u64() != own_node);
    nodes.push(own);
    nodes.sort_by_key(|entry| entry["node"].as_u64());
    let total =
        |figure: fn(&Value) -> i64| nodes.iter().map(|e| figure(&e["metrics"])).sum::<i64>();
    let cluster = json!({
        "nodes": nodes.len(),
        "ready": nodes.iter().filter(|e| e["ready"] == true).count(),
        "connections": total(|m| m["sigway_connections_open"].as_i64().unwrap_or(0)),
        "rooms": total(|m| labelled_sum(&m["sigway_rooms"])),
        "messages_sent_total": total(|m| m["sigway_messages_sent_total"].as_i64().unwrap_or(0)),
        "messages_received_total": total(|m| m["sigway_messages_received_total"].as_i64().unwrap_or(0)),
        "bytes_sent_total": total(|m| m["sigway_bytes_sent_total"].as_i64().unwrap_or(0)),
        "bytes_received_total": total(|m| m["sigway_bytes_received_total"].as_i64().unwrap_or(0)),
        "resident_memory_bytes": total(|m| m["process_resident_memory_bytes"].as_i64().unwrap_or(0)),
    });
    (Value::Array(nodes), cluster)
}

/// The sum of a labelled family's samples (`{labels: value}`).
fn labelled_sum(family: &Value) -> i64 {
    family.as_object().map_or(0, |samples| {
        samples.values().filter_map(Value::as_i64).sum()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sigway_cluster::MemoryTransport;

    fn entry(node: u32, ready: bool, connections: i64, sent: i64) -> Value {
        json!({
            "node": node,
            "started_ms": 1,
            "ready": ready,
            "t": 2,
            "metrics": {
                "sigway_connections_open": connections,
                "sigway_rooms": {"protocol=\"sigver\"": 2, "protocol=\"videre\"": 1},
                "sigway_messages_sent_total": sent,
                "process_resident_memory_bytes": 1000,
            },
        })
    }

    #[test]
    fn nodes_are_listed_by_id_with_totals() {
        let (nodes, cluster) = assemble(
            entry(2, true, 5, 10),
            vec![entry(3, false, 7, 1), entry(1, true, 1, 100)],
        );
        let ids: Vec<u64> = nodes
            .as_array()
            .expect("array")
            .iter()
            .filter_map(|e| e["node"].as_u64())
            .collect();
        assert_eq!(ids, [1, 2, 3]);
        assert_eq!(cluster["nodes"], 3);
        assert_eq!(cluster["ready"], 2);
        assert_eq!(cluster["connections"], 13);
        assert_eq!(cluster["rooms"], 9);
        assert_eq!(cluster["messages_sent_total"], 111);
        assert_eq!(cluster["resident_memory_bytes"], 3000);
        assert_eq!(cluster["bytes_sent_total"], 0, "absent figures count 0");
    }

    #[test]
    fn this_nodes_fresh_entry_replaces_a_read_one() {
        let (nodes, cluster) = assemble(entry(1, true, 4, 0), vec![entry(1, true, 99, 0)]);
        assert_eq!(nodes.as_array().map(Vec::len), Some(1));
        assert_eq!(cluster["connections"], 4);
    }

    #[test]
    fn entries_that_are_not_the_nodes_are_skipped() {
        let good = entry(4, true, 1, 1).to_string();
        assert!(parse_entry(4, good.as_bytes()).is_some());
        assert!(
            parse_entry(5, good.as_bytes()).is_none(),
            "names another node"
        );
        assert!(parse_entry(4, b"not json").is_none());
        assert!(parse_entry(4, b"{\"node\":4}").is_none(), "no metrics");
        assert!(parse_entry(4, b"[4]").is_none());
    }

    #[tokio::test]
    async fn the_board_writes_its_figures_and_reads_the_others_while_watched() {
        let hub = MemoryTransport::new();
        let stats = Arc::new(Stats::default());
        stats.connection_opened();
        let board = Arc::new(NodeBoard::new(1));
        let other = NodeBoard::new(2);
        hub.write_node_figures(
            2,
            Bytes::from(
                other
                    .own_entry(Stats::default().metrics_json(), true)
                    .to_string(),
            ),
            FIGURES_TTL,
        )
        .await
        .expect("write");
        let writer = tokio::spawn(publish(
            hub.clone(),
            board.clone(),
            stats.clone(),
            || vec![2, 3],
            || true,
        ));
        // Written at once (the first tick is immediate).
        let deadline = Instant::now() + Duration::from_secs(10);
        while hub
            .read_node_figures(vec![1])
            .await
            .expect("read")
            .is_empty()
        {
            assert!(Instant::now() < deadline, "node 1 wrote nothing");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let written = hub.read_node_figures(vec![1]).await.expect("read");
        let own = parse_entry(1, &written[0].1).expect("an entry");
        assert_eq!(own["metrics"]["sigway_connections_open"], 1);
        assert_eq!(own["ready"], true);
        // Not watched yet: nothing read. Watched: node 2 appears.
        let (nodes, _) = board.view(stats.metrics_json(), true);
        assert_eq!(nodes.as_array().map(Vec::len), Some(1));
        loop {
            let (nodes, cluster) = board.view(stats.metrics_json(), true);
            if nodes.as_array().map(Vec::len) == Some(2) {
                assert_eq!(cluster["connections"], 1);
                break;
            }
            assert!(Instant::now() < deadline, "node 2 never read");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The hub fails: counted, and the writer keeps going.
        hub.set_unreachable(true);
        while board.failures() == 0 {
            assert!(Instant::now() < deadline, "no failure counted");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(!writer.is_finished());
        writer.abort();
    }
}
