//! The dashboard of a cluster, through real sockets, real `sigway`
//! processes and a real Redis (standalone, and a 3-master Redis Cluster):
//! the feed of node 1 lists node 2 with node 2's own connections, and the
//! cluster's totals; once node 2 is killed (SIGKILL: no goodbye) its entry
//! leaves the feed and its figures leave Redis within their TTL (3 s) plus
//! a second. Skips with one line when `redis-server` is not installed.

mod cluster_support;
mod common;

use std::time::Duration;

use cluster_support::{Backend, NodeProcess, Redis, on_both_backends};
use common::Peer;
use futures_util::StreamExt;
use tokio::time::{Instant, timeout};

/// How long a node's figures live without a write (`FIGURES_TTL`).
const FIGURES_TTL: Duration = Duration::from_secs(3);

/// A node's dashboard figures in Redis, under the default prefix.
fn figures_key(node: u32) -> String {
    format!("sw:dash:{{sw}}:{node}")
}

/// The events of one node's `/dashboard/feed`, read with bounded waits.
struct Feed {
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffered: String,
}

impl Feed {
    async fn open(node: &NodeProcess) -> Feed {
        let response = timeout(
            Duration::from_secs(5),
            reqwest::get(node.http_url("/dashboard/feed")),
        )
        .await
        .expect("the feed answers in time")
        .expect("feed");
        assert_eq!(response.status(), 200);
        Feed {
            body: Box::pin(response.bytes_stream()),
            buffered: String::new(),
        }
    }

    /// The next event's JSON (one comes every second).
    async fn next(&mut self) -> serde_json::Value {
        loop {
            if let Some(end) = self.buffered.find("\n\n") {
                let event: String = self.buffered.drain(..end + 2).collect();
                let data = event
                    .lines()
                    .find_map(|line| line.strip_prefix("data: "))
                    .expect("a data line");
                return serde_json::from_str(data).expect("event JSON");
            }
            let chunk = timeout(Duration::from_secs(3), self.body.next())
                .await
                .expect("an event every second")
                .expect("the feed goes on")
                .expect("chunk");
            self.buffered
                .push_str(std::str::from_utf8(&chunk).expect("utf-8"));
        }
    }

    /// Events until one satisfies `wanted` (returned), within `within`.
    async fn until(
        &mut self,
        within: Duration,
        what: &str,
        wanted: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + within;
        let mut last = serde_json::Value::Null;
        while Instant::now() < deadline {
            let event = self.next().await;
            if wanted(&event) {
                return event;
            }
            last = event;
        }
        panic!("no event with {what} within {within:?}; the last one: {last}");
    }
}

/// The entry of `node` in an event's `nodes`.
fn entry(event: &serde_json::Value, node: u32) -> Option<&serde_json::Value> {
    event["nodes"]
        .as_array()?
        .iter()
        .find(|entry| entry["node"] == node)
}

fn connections_of(event: &serde_json::Value, node: u32) -> Option<i64> {
    entry(event, node)?["metrics"]["sigway_connections_open"].as_i64()
}

on_both_backends!(a_nodes_feed_shows_the_others_and_forgets_a_killed_one);
async fn a_nodes_feed_shows_the_others_and_forgets_a_killed_one(backend: Backend) {
    let redis = Redis::start(backend);
    let mut nodes = NodeProcess::start_all(&redis.url(), 2).await;

    // One peer on node 1, two on node 2 (one group spanning both).
    let mut a = Peer::open_url(&nodes[0].ws_url("/board")).await;
    assert!(a.connect(1, &[]).await);
    let b = Peer::open_url(&nodes[1].ws_url("/board")).await;
    let c = Peer::open_url(&nodes[1].ws_url("/board-too")).await;

    let mut feed = Feed::open(&nodes[0]).await;
    let event = feed
        .until(
            Duration::from_secs(8),
            "node 2's two connections",
            |event| connections_of(event, 2) == Some(2) && connections_of(event, 1) == Some(1),
        )
        .await;
    assert_eq!(event["node"], 1);
    let node2 = entry(&event, 2).expect("node 2");
    assert_eq!(node2["ready"], true, "{node2}");
    assert!(node2["started_ms"].as_u64().is_some_and(|ms| ms > 0));
    assert_eq!(event["cluster"]["nodes"], 2, "{event}");
    assert_eq!(event["cluster"]["ready"], 2);
    assert_eq!(event["cluster"]["connections"], 3);
    assert!(
        event["cluster"]["resident_memory_bytes"]
            .as_i64()
            .is_some_and(|rss| rss > 1 << 20),
        "{event}"
    );
    assert_eq!(
        redis.command_on_key(&figures_key(2), &["EXISTS", &figures_key(2)]),
        "1"
    );

    // SIGKILL: node 2 writes nothing more, says no goodbye.
    let killed = Instant::now();
    nodes[1].kill_hard();
    drop((b, c));
    feed.until(
        FIGURES_TTL + Duration::from_secs(2),
        "node 2 gone",
        |event| entry(event, 2).is_none(),
    )
    .await;
    let gone_from_feed = killed.elapsed();
    assert!(
        gone_from_feed <= FIGURES_TTL + Duration::from_secs(1),
        "node 2 left the feed after {gone_from_feed:?}"
    );
    let deadline = killed + FIGURES_TTL + Duration::from_secs(1);
    loop {
        let exists = redis.command_on_key(&figures_key(2), &["EXISTS", &figures_key(2)]);
        if exists == "0" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 2's figures outlived their TTL ({:?} after the kill)",
            killed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let event = feed.next().await;
    assert_eq!(event["cluster"]["nodes"], 1, "{event}");
    assert_eq!(connections_of(&event, 1), Some(1));
    a.leave().await;
}
