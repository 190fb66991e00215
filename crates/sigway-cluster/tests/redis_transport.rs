//! `RedisTransport` against real Redis servers: a standalone server, a
//! 3-master Redis Cluster and a Sentinel setup, started by
//! `support/redis_harness.rs` on loopback ports.
//!
//! The same scenarios run on each deployment: inbox delivery to the right
//! node only and in order, control reaching every subscriber, binary
//! payloads, receiver counts, the directory's claim/snapshot/release rules
//! with fencing, concurrent claims with one winner, node figures that are
//! read together and expire with their TTL, and what a Redis pause
//! (SIGSTOP) or restart does to calls and subscriptions. Each transport
//! stands for one node, as separate processes would. Every test is bounded
//! by [`TEST_BUDGET`] and every wait by a few seconds; when `redis-server`
//! is missing each test prints one `skipped:` line and passes.

#[path = "support/redis_harness.rs"]
mod redis_harness;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use redis_harness::{RedisCluster, RedisSentinel, RedisServer, redis_server_available};
use sigway_cluster::{
    Claim, Delivery, GroupHash, NodeId, RedisOptions, RedisTransport, Transport, TransportError,
};
use tokio::sync::mpsc;

/// Longest a whole test may run.
const TEST_BUDGET: Duration = Duration::from_secs(90);
/// Longest wait for one expected delivery.
const DELIVERY_WAIT: Duration = Duration::from_secs(5);

fn options(prefix: &str) -> RedisOptions {
    RedisOptions {
        prefix: prefix.to_owned(),
        probe_interval: Duration::from_millis(300),
        ..RedisOptions::default()
    }
}

async fn connect(urls: &[String], prefix: &str) -> RedisTransport {
    RedisTransport::connect_with(urls, options(prefix))
        .await
        .expect("connect to the test's Redis")
}

/// Runs a test body within the budget.
async fn bounded(body: impl Future<Output = ()>) {
    tokio::time::timeout(TEST_BUDGET, body)
        .await
        .expect("the test ran over its time budget");
}

/// A distinct group hash per `n` (spread over slots by the hex encoding).
fn group(n: u32) -> GroupHash {
    let mut hash = [0u8; 16];
    for (chunk, salt) in hash.chunks_mut(4).zip([0x9e37_79b9u32, 7, 0x85eb_ca6b, 13]) {
        chunk.copy_from_slice(&n.wrapping_mul(salt).wrapping_add(salt).to_be_bytes());
    }
    hash
}

async fn next_delivery(receiver: &mut mpsc::Receiver<Delivery>) -> Delivery {
    tokio::time::timeout(DELIVERY_WAIT, receiver.recv())
        .await
        .expect("a delivery within the wait")
        .expect("the subscription is still open")
}

/// The next inbox or control payload, skipping reconnection notices.
async fn next_payload(receiver: &mut mpsc::Receiver<Delivery>) -> Delivery {
    loop {
        match next_delivery(receiver).await {
            Delivery::Interrupted | Delivery::Resubscribed => continue,
            payload => return payload,
        }
    }
}

fn inbox(text: &str) -> Delivery {
    Delivery::Inbox(Bytes::copy_from_slice(text.as_bytes()))
}

fn control(text: &str) -> Delivery {
    Delivery::Control(Bytes::copy_from_slice(text.as_bytes()))
}

// ---------------------------------------------------------------- scenarios

/// Three nodes; two publishers fill node 2's inbox and one fills node 3's,
/// concurrently: each inbox gets exactly its messages, per publisher in
/// order, and node 1 gets none of them.
async fn inbox_reaches_its_node_only_in_order(urls: &[String], prefix: &str) {
    const COUNT: usize = 2000;
    let nodes = [
        connect(urls, prefix).await,
        connect(urls, prefix).await,
        connect(urls, prefix).await,
    ];
    let mut receivers = Vec::new();
    for (index, node) in nodes.iter().enumerate() {
        receivers.push(
            node.subscribe(index as NodeId + 1)
                .await
                .expect("subscribe"),
        );
    }
    let publish_all = |from: usize, to: NodeId| {
        let node = &nodes[from];
        async move {
            for sequence in 0..COUNT {
                let payload = Bytes::from(format!("{from}:{sequence}"));
                let receivers = node.publish_inbox(to, payload).await.expect("publish");
                assert_eq!(receivers, 1, "one subscriber to node {to}'s inbox");
            }
        }
    };
    tokio::join!(publish_all(0, 2), publish_all(2, 2), publish_all(1, 3));

    let mut next_expected: HashMap<(NodeId, String), usize> = HashMap::new();
    for (node, from, total) in [(2, ["0", "2"], 2 * COUNT), (3, ["1", "1"], COUNT)] {
        let receiver = &mut receivers[node as usize - 1];
        for _ in 0..total {
            let Delivery::Inbox(payload) = next_delivery(receiver).await else {
                panic!("node {node} got something other than an inbox message");
            };
            let text = String::from_utf8(payload.to_vec()).expect("utf-8 payload");
            let (publisher, sequence) = text.split_once(':').expect("publisher:sequence");
            assert!(from.contains(&publisher), "node {node} got {text}");
            let expected = next_expected
                .entry((node, publisher.to_owned()))
                .or_default();
            assert_eq!(
                sequence.parse::<usize>().ok(),
                Some(*expected),
                "order at node {node}"
            );
            *expected += 1;
        }
    }
    // Nothing else is pending for node 1: a marker sent now is the first
    // thing it receives.
    nodes[1]
        .publish_inbox(1, Bytes::from_static(b"marker"))
        .await
        .expect("publish the marker");
    assert_eq!(next_delivery(&mut receivers[0]).await, inbox("marker"));
}

/// Control messages reach every subscriber, the publisher included, in
/// order. `exact_count`: PUBLISH reports all subscribers (not on a Redis
/// Cluster, where it counts only those connected to the node that took
/// the PUBLISH, possibly none).
async fn control_reaches_every_node(urls: &[String], prefix: &str, exact_count: bool) {
    let nodes = [
        connect(urls, prefix).await,
        connect(urls, prefix).await,
        connect(urls, prefix).await,
    ];
    let mut receivers = Vec::new();
    for (index, node) in nodes.iter().enumerate() {
        receivers.push(
            node.subscribe(index as NodeId + 11)
                .await
                .expect("subscribe"),
        );
    }
    for sequence in 0..50 {
        let count = nodes[0]
            .publish_control(Bytes::from(format!("hello {sequence}")))
            .await
            .expect("publish control");
        if exact_count {
            assert_eq!(count, 3);
        } else {
            assert!(count <= 3, "count {count}");
        }
    }
    for receiver in &mut receivers {
        for sequence in 0..50 {
            assert_eq!(
                next_delivery(receiver).await,
                control(&format!("hello {sequence}"))
            );
        }
    }
}

/// Payloads and snapshots are bytes: every byte value, empty, and RESP
/// look-alikes arrive unchanged.
async fn binary_payloads_survive(urls: &[String], prefix: &str) {
    let node = connect(urls, prefix).await;
    let mut receiver = node.subscribe(21).await.expect("subscribe");
    let every_byte: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
    let payloads = [
        Bytes::from(every_byte),
        Bytes::new(),
        Bytes::from_static(b"\r\n$-1\r\n*3\r\n\0"),
        Bytes::from(vec![0xff; 70_000]),
    ];
    for payload in &payloads {
        assert_eq!(node.publish_inbox(21, payload.clone()).await, Ok(1));
        assert_eq!(
            next_delivery(&mut receiver).await,
            Delivery::Inbox(payload.clone())
        );
        node.publish_control(payload.clone())
            .await
            .expect("publish control");
        assert_eq!(
            next_delivery(&mut receiver).await,
            Delivery::Control(payload.clone())
        );
    }
    for (index, payload) in payloads.iter().enumerate() {
        let group = group(1000 + index as u32);
        let claim = node.claim(group, 21, None).await.expect("claim");
        assert_eq!(claim.owner, 21);
        assert_eq!(
            node.write_snapshot(group, 21, claim.epoch, payload.clone())
                .await,
            Ok(true)
        );
        let again = node.claim(group, 21, None).await.expect("claim again");
        assert_eq!(again.snapshot.as_ref(), Some(payload));
    }
}

/// Publishes report how many subscribers got them: 0 when nobody listens,
/// one per subscription of that node, and fewer once one is dropped.
async fn receiver_counts_are_reported(urls: &[String], prefix: &str) {
    let first = connect(urls, prefix).await;
    let second = connect(urls, prefix).await;
    let payload = || Bytes::from_static(b"count me");
    assert_eq!(first.publish_inbox(31, payload()).await, Ok(0));
    let mut one = first.subscribe(31).await.expect("subscribe");
    assert_eq!(second.publish_inbox(31, payload()).await, Ok(1));
    let two = second.subscribe(31).await.expect("subscribe again");
    assert_eq!(second.publish_inbox(31, payload()).await, Ok(2));
    assert_eq!(next_delivery(&mut one).await, inbox("count me"));
    drop(two);
    wait_for_count(&first, 31, 1).await;
    drop(one);
    wait_for_count(&first, 31, 0).await;
}

async fn wait_for_count(node: &RedisTransport, inbox_of: NodeId, expected: usize) {
    let deadline = Instant::now() + DELIVERY_WAIT;
    loop {
        let count = node
            .publish_inbox(inbox_of, Bytes::from_static(b"probe"))
            .await
            .expect("publish");
        if count == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "receiver count stayed {count}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The directory: first claim wins at epoch 1, others see the owner; a
/// takeover needs the exact (node, epoch) and bumps the epoch; the winner
/// gets the snapshot; a stale epoch can neither write nor release; a
/// released group forgets its snapshot but not its epoch; a group the
/// directory lost is claimed again by its owner's snapshot write.
async fn directory_claims_are_fenced(urls: &[String], prefix: &str) {
    let node = connect(urls, prefix).await;
    let other = connect(urls, prefix).await;
    let group = group(1);
    let owned_by = |owner, epoch, snapshot: Option<&'static [u8]>| Claim {
        owner,
        epoch,
        snapshot: snapshot.map(Bytes::from_static),
    };

    assert_eq!(node.claim(group, 1, None).await, Ok(owned_by(1, 1, None)));
    assert_eq!(other.claim(group, 2, None).await, Ok(owned_by(1, 1, None)));
    assert_eq!(
        node.write_snapshot(group, 1, 1, Bytes::from_static(b"s1"))
            .await,
        Ok(true)
    );
    // The owner claiming again gets its own snapshot, epoch unchanged;
    // another node never sees it.
    assert_eq!(
        node.claim(group, 1, None).await,
        Ok(owned_by(1, 1, Some(b"s1")))
    );
    assert_eq!(other.claim(group, 2, None).await, Ok(owned_by(1, 1, None)));
    // Only the owner at its epoch writes.
    assert_eq!(
        other
            .write_snapshot(group, 2, 1, Bytes::from_static(b"x"))
            .await,
        Ok(false)
    );
    assert_eq!(
        node.write_snapshot(group, 1, 2, Bytes::from_static(b"x"))
            .await,
        Ok(false)
    );
    // A takeover with the wrong epoch or node changes nothing.
    assert_eq!(
        other.claim(group, 2, Some((1, 0))).await,
        Ok(owned_by(1, 1, None))
    );
    assert_eq!(
        other.claim(group, 2, Some((3, 1))).await,
        Ok(owned_by(1, 1, None))
    );
    // The right one wins, at epoch 2, with the snapshot.
    assert_eq!(
        other.claim(group, 2, Some((1, 1))).await,
        Ok(owned_by(2, 2, Some(b"s1")))
    );
    // A second takeover attempt against the same stale owner loses.
    assert_eq!(
        node.claim(group, 3, Some((1, 1))).await,
        Ok(owned_by(2, 2, None))
    );
    // The former owner is fenced off.
    assert_eq!(
        node.write_snapshot(group, 1, 1, Bytes::from_static(b"stale"))
            .await,
        Ok(false)
    );
    assert_eq!(node.release(group, 1, 1).await, Ok(false));
    assert_eq!(
        other.claim(group, 2, None).await,
        Ok(owned_by(2, 2, Some(b"s1")))
    );
    // The new owner writes, then releases; releasing twice does nothing.
    assert_eq!(
        other
            .write_snapshot(group, 2, 2, Bytes::from_static(b"s2"))
            .await,
        Ok(true)
    );
    assert_eq!(other.release(group, 2, 1).await, Ok(false));
    assert_eq!(other.release(group, 2, 2).await, Ok(true));
    assert_eq!(other.release(group, 2, 2).await, Ok(false));
    assert_eq!(
        other
            .write_snapshot(group, 2, 2, Bytes::from_static(b"s3"))
            .await,
        Ok(false)
    );
    // Claimed again: no snapshot, the epoch continues.
    assert_eq!(node.claim(group, 3, None).await, Ok(owned_by(3, 3, None)));
    // Other groups are independent.
    assert_eq!(
        node.claim(self::group(2), 4, None).await,
        Ok(owned_by(4, 1, None))
    );
    // A group the directory has no record of (Redis restarted empty) is
    // claimed again by its owner's snapshot write, at the owner's epoch.
    let lost = self::group(3);
    assert_eq!(
        node.write_snapshot(lost, 5, 7, Bytes::from_static(b"s7"))
            .await,
        Ok(true)
    );
    assert_eq!(other.claim(lost, 6, None).await, Ok(owned_by(5, 7, None)));
    assert_eq!(
        node.claim(lost, 5, None).await,
        Ok(owned_by(5, 7, Some(b"s7")))
    );
}

/// Many tasks on several transports claim the same groups at once: every
/// answer names the same owner, and exactly one task is it; then they all
/// try to take over from it at once, with the same outcome one epoch up.
async fn concurrent_claims_have_one_winner(urls: &[String], prefix: &str) {
    const TRANSPORTS: usize = 4;
    const TASKS: u32 = 32;
    let mut transports = Vec::new();
    for _ in 0..TRANSPORTS {
        transports.push(Arc::new(connect(urls, prefix).await));
    }
    for group_number in 0..10 {
        let group = group(500 + group_number);
        let mut expected = None;
        for round in 1..=2u64 {
            let mut tasks = Vec::new();
            for me in 1..=TASKS {
                let transport = Arc::clone(&transports[me as usize % TRANSPORTS]);
                tasks.push(tokio::spawn(async move {
                    (me, transport.claim(group, me, expected).await)
                }));
            }
            let mut answers = Vec::new();
            for task in tasks {
                let (me, claim) = task.await.expect("claim task");
                answers.push((me, claim.expect("claim")));
            }
            let (_, first) = &answers[0];
            let (owner, epoch) = (first.owner, first.epoch);
            assert_eq!(
                epoch, round,
                "group {group_number}: one change of hands per round"
            );
            assert!(
                answers
                    .iter()
                    .all(|(_, claim)| (claim.owner, claim.epoch) == (owner, epoch)),
                "group {group_number}: answers disagree: {answers:?}"
            );
            let winners = answers
                .iter()
                .filter(|(me, claim)| claim.owner == *me)
                .count();
            assert_eq!(winners, 1, "group {group_number}: exactly one winner");
            expected = Some((owner, epoch));
        }
    }
}

/// Redis frozen for 1.5 s: calls made meanwhile end within the call
/// timeout (with an answer or `Unreachable`), and afterwards the
/// subscription delivers again and the directory answers.
async fn pause_is_survived(urls: &[String], prefix: &str, paused: &RedisServer) {
    let subscriber = connect(urls, prefix).await;
    let publisher = connect(urls, prefix).await;
    let mut receiver = subscriber.subscribe(41).await.expect("subscribe");
    assert_eq!(
        publisher
            .publish_inbox(41, Bytes::from_static(b"before"))
            .await,
        Ok(1)
    );
    assert_eq!(next_delivery(&mut receiver).await, inbox("before"));

    paused.pause();
    let paused_at = Instant::now();
    let during = async {
        let started = Instant::now();
        let publish = publisher
            .publish_inbox(41, Bytes::from_static(b"during"))
            .await;
        let claim = publisher.claim(group(41), 41, None).await;
        (started.elapsed(), publish, claim)
    };
    let (elapsed, publish, claim) = during.await;
    assert!(
        elapsed < Duration::from_millis(2 * 1000 + 1000),
        "two calls took {elapsed:?}"
    );
    assert!(
        matches!(publish, Ok(_) | Err(TransportError::Unreachable(_))),
        "{publish:?}"
    );
    assert!(
        matches!(claim, Ok(_) | Err(TransportError::Unreachable(_))),
        "{claim:?}"
    );
    tokio::time::sleep(Duration::from_millis(1500).saturating_sub(paused_at.elapsed())).await;
    paused.resume();

    // Publish markers until one arrives (the subscription may have been
    // replaced meanwhile, which loses what was published in between).
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut attempt = 0;
    'delivered: loop {
        assert!(Instant::now() < deadline, "no delivery after the pause");
        attempt += 1;
        let marker = format!("after {attempt}");
        let _ = publisher
            .publish_inbox(41, Bytes::from(marker.clone()))
            .await;
        let until = Instant::now() + Duration::from_millis(500);
        while let Ok(Some(delivery)) = tokio::time::timeout_at(until.into(), receiver.recv()).await
        {
            if delivery == inbox(&marker) {
                break 'delivered;
            }
        }
    }
    let claim = retry(|| publisher.claim(group(42), 42, None)).await;
    assert_eq!(claim.owner, 42);
}

/// Retries a call until it succeeds (bounded).
async fn retry<T, F, Fut>(mut call: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, TransportError>>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match call().await {
            Ok(value) => return value,
            Err(error) => {
                assert!(
                    matches!(error, TransportError::Unreachable(_)),
                    "not a transient error: {error}"
                );
                assert!(Instant::now() < deadline, "still failing: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Redis restarted: the subscription reports `Interrupted` then
/// `Resubscribed`, and publishing and claiming work again (the scripts
/// are loaded again by the EVALSHA fallback).
async fn restart_is_survived(urls: &[String], prefix: &str, restart: impl FnOnce()) {
    let subscriber = connect(urls, prefix).await;
    let publisher = connect(urls, prefix).await;
    let mut receiver = subscriber.subscribe(51).await.expect("subscribe");
    assert_eq!(
        publisher
            .claim(group(51), 51, None)
            .await
            .map(|claim| claim.epoch),
        Ok(1)
    );
    assert_eq!(
        publisher
            .publish_inbox(51, Bytes::from_static(b"before"))
            .await,
        Ok(1)
    );
    assert_eq!(next_delivery(&mut receiver).await, inbox("before"));

    tokio::task::block_in_place(restart);
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(10), receiver.recv()).await,
        Ok(Some(Delivery::Interrupted))
    );
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(15), receiver.recv()).await,
        Ok(Some(Delivery::Resubscribed))
    );
    let count = retry(|| publisher.publish_inbox(51, Bytes::from_static(b"after"))).await;
    assert_eq!(count, 1);
    assert_eq!(next_payload(&mut receiver).await, inbox("after"));
    let claim = retry(|| publisher.claim(group(52), 52, None)).await;
    assert_eq!((claim.owner, claim.epoch), (52, 1));
}

/// Redis restarted empty: a node that was in the cluster before claims a
/// group Redis lost only once its owner wrote it down again (instead of
/// founding a second group); a group nobody owned is claimed once the hold
/// is over; a node that connected after the restart is not held.
async fn claims_wait_for_the_owners_after_an_empty_restart(
    urls: &[String],
    prefix: &str,
    restart: impl FnOnce(),
) {
    let owner = connect(urls, prefix).await;
    let newcomer = connect(urls, prefix).await;
    let kept = group(61);
    assert_eq!(
        owner.claim(kept, 61, None).await.map(|claim| claim.epoch),
        Ok(1)
    );
    assert_eq!(
        owner
            .write_snapshot(kept, 61, 1, Bytes::from_static(b"s1"))
            .await,
        Ok(true)
    );
    // Both were in the cluster well before the restart (over the two
    // seconds the uptime's rounding needs).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    tokio::task::block_in_place(restart);
    let restarted = Instant::now();

    let late = connect(urls, prefix).await;
    let not_held = retry(|| late.claim(group(65), 65, None)).await;
    assert_eq!((not_held.owner, not_held.epoch), (65, 1));
    assert!(
        restarted.elapsed() < Duration::from_secs(2),
        "a node that connected after the restart was held {:?}",
        restarted.elapsed()
    );

    // The owner writes its group down again a little later, as it does
    // once it has resubscribed.
    let rewrite = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        retry(|| owner.write_snapshot(kept, 61, 1, Bytes::from_static(b"s1"))).await
    });
    let claim = retry(|| newcomer.claim(kept, 62, None)).await;
    assert_eq!(
        (claim.owner, claim.epoch),
        (61, 1),
        "the newcomer's node waited for the owner instead of founding the group again"
    );
    assert!(
        rewrite.await.expect("rewrite"),
        "the owner holds its group again"
    );

    let unowned = retry(|| newcomer.claim(group(63), 62, None)).await;
    assert_eq!((unowned.owner, unowned.epoch), (62, 1));
    let held_for = restarted.elapsed();
    assert!(
        held_for >= Duration::from_millis(4900) && held_for < Duration::from_secs(9),
        "a group nobody owned was claimed {held_for:?} after the restart, not at the end of the 5 s hold"
    );
}

/// A node that does not read its deliveries: the subscription queues at
/// most `delivery_capacity` deliveries and as many messages from Redis,
/// drops the rest, and is made again (reported as an interruption), so
/// memory stays bounded; after that it delivers as before.
async fn a_stalled_reader_costs_bounded_memory(urls: &[String], prefix: &str) {
    const CAPACITY: usize = 8;
    const SENT: usize = 200;
    let options = RedisOptions {
        delivery_capacity: CAPACITY,
        ..options(prefix)
    };
    let subscriber = RedisTransport::connect_with(urls, options)
        .await
        .expect("connect");
    let publisher = connect(urls, prefix).await;
    let mut receiver = subscriber.subscribe(71).await.expect("subscribe");
    for i in 0..SENT {
        let payload = Bytes::from(format!("m{i}"));
        assert_eq!(publisher.publish_inbox(71, payload).await, Ok(1));
    }
    // Let every message reach the subscriber's connection.
    let _ = publisher
        .publish_inbox(71, Bytes::from_static(b"sync"))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut delivered = 0;
    loop {
        match next_delivery(&mut receiver).await {
            Delivery::Inbox(_) => delivered += 1,
            Delivery::Interrupted => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        delivered <= 2 * CAPACITY + 1,
        "{delivered} of {SENT} messages were queued for a reader that did not read"
    );
    assert_eq!(next_delivery(&mut receiver).await, Delivery::Resubscribed);
    let count = retry(|| publisher.publish_inbox(71, Bytes::from_static(b"after"))).await;
    assert_eq!(count, 1);
    assert_eq!(next_payload(&mut receiver).await, inbox("after"));
}

/// Two nodes' figures are read in one call, in the order asked; a node's
/// figures are gone once their TTL is over; a later write replaces them.
async fn node_figures_expire(urls: &[String], prefix: &str) {
    let one = connect(urls, prefix).await;
    let two = connect(urls, prefix).await;
    let long = Duration::from_secs(30);
    let brief = Duration::from_millis(400);
    one.write_node_figures(1, Bytes::from_static(b"{\"n\":1}"), long)
        .await
        .expect("write 1");
    two.write_node_figures(2, Bytes::from_static(b"{\"n\":2}"), brief)
        .await
        .expect("write 2");
    let read = one.read_node_figures(vec![2, 1, 3]).await.expect("read");
    assert_eq!(
        read,
        vec![
            (2, Bytes::from_static(b"{\"n\":2}")),
            (1, Bytes::from_static(b"{\"n\":1}")),
        ],
        "3 never wrote"
    );
    let written = Instant::now();
    let deadline = written + brief + Duration::from_secs(2);
    loop {
        let read = one.read_node_figures(vec![1, 2]).await.expect("read");
        if read.len() == 1 {
            assert_eq!(read[0].0, 1);
            break;
        }
        assert!(Instant::now() < deadline, "2's figures outlived their TTL");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(written.elapsed() >= brief - Duration::from_millis(50));
    one.write_node_figures(1, Bytes::from_static(b"{\"n\":11}"), long)
        .await
        .expect("write again");
    assert_eq!(
        two.read_node_figures(vec![1]).await.expect("read"),
        vec![(1, Bytes::from_static(b"{\"n\":11}"))]
    );
    assert_eq!(
        one.read_node_figures(Vec::new())
            .await
            .expect("read nothing"),
        Vec::new()
    );
}

// ------------------------------------------------------- standalone Redis

fn standalone() -> Option<RedisServer> {
    redis_server_available().then(RedisServer::start)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_node_figures_expire() {
    let Some(server) = standalone() else { return };
    bounded(node_figures_expire(&[server.url()], "t-figures")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_inbox_reaches_its_node_only_in_order() {
    let Some(server) = standalone() else { return };
    bounded(inbox_reaches_its_node_only_in_order(
        &[server.url()],
        "t-inbox",
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_control_reaches_every_node() {
    let Some(server) = standalone() else { return };
    bounded(control_reaches_every_node(&[server.url()], "t-ctl", true)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_binary_payloads_survive() {
    let Some(server) = standalone() else { return };
    bounded(binary_payloads_survive(&[server.url()], "t-bin")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_receiver_counts_are_reported() {
    let Some(server) = standalone() else { return };
    bounded(receiver_counts_are_reported(&[server.url()], "t-count")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_directory_claims_are_fenced() {
    let Some(server) = standalone() else { return };
    bounded(directory_claims_are_fenced(&[server.url()], "t-dir")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_concurrent_claims_have_one_winner() {
    let Some(server) = standalone() else { return };
    bounded(concurrent_claims_have_one_winner(&[server.url()], "t-race")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_pause_is_survived() {
    let Some(server) = standalone() else { return };
    bounded(pause_is_survived(&[server.url()], "t-pause", &server)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_restart_is_survived() {
    let Some(mut server) = standalone() else {
        return;
    };
    let urls = [server.url()];
    bounded(restart_is_survived(&urls, "t-restart", || server.restart())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_claims_wait_for_the_owners_after_an_empty_restart() {
    let Some(mut server) = standalone() else {
        return;
    };
    let urls = [server.url()];
    bounded(claims_wait_for_the_owners_after_an_empty_restart(
        &urls,
        "t-hold",
        || server.restart(),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_a_stalled_reader_costs_bounded_memory() {
    let Some(server) = standalone() else { return };
    bounded(a_stalled_reader_costs_bounded_memory(
        &[server.url()],
        "t-stall",
    ))
    .await;
}

/// The keys are where `../shared/cluster.md` says, under the prefix; the
/// registry is a ZSET of heartbeat times; a release keeps only the epoch,
/// and only for `released_epoch_ttl`, after which a claim starts at 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_key_layout_and_released_epoch_memory() {
    let Some(server) = standalone() else { return };
    bounded(async {
        let node = RedisTransport::connect_with(
            &[server.url()],
            RedisOptions {
                released_epoch_ttl: Duration::from_millis(300),
                ..options("lay")
            },
        )
        .await
        .expect("connect");
        let redis = |args: &[&str]| server.command(args).expect("redis command");

        node.register(7, 1_700_000_000_123).await.expect("register");
        node.register(8, 5).await.expect("register");
        assert_eq!(redis(&["ZSCORE", "lay:nodes", "7"]), "1700000000123");
        node.deregister(8).await.expect("deregister");
        assert_eq!(redis(&["ZRANGE", "lay:nodes", "0", "-1"]), "7");

        let group = [0xab; 16];
        let own = "lay:{g:abababababababababababababababab}:own";
        let snap = "lay:{g:abababababababababababababababab}:snap";
        let claim = node.claim(group, 7, None).await.expect("claim");
        node.write_snapshot(group, 7, claim.epoch, Bytes::from_static(b"state"))
            .await
            .expect("write");
        assert_eq!(redis(&["HGET", own, "node"]), "7");
        assert_eq!(redis(&["HGET", own, "epoch"]), "1");
        assert_eq!(redis(&["GET", snap]), "state");
        assert_eq!(redis(&["TTL", own]), "-1", "an owned group does not expire");

        assert_eq!(node.release(group, 7, 1).await, Ok(true));
        assert_eq!(redis(&["EXISTS", snap]), "0");
        assert_eq!(redis(&["HGETALL", own]), "epoch\n1");
        assert_eq!(node.claim(group, 8, None).await.map(|c| c.epoch), Ok(2));
        assert_eq!(redis(&["TTL", own]), "-1", "claimed again: no expiry");
        assert_eq!(node.release(group, 8, 2).await, Ok(true));
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(redis(&["EXISTS", own]), "0", "the remembered epoch expired");
        assert_eq!(node.claim(group, 9, None).await.map(|c| c.epoch), Ok(1));

        let mut receiver = node.subscribe(7).await.expect("subscribe");
        assert_eq!(
            redis(&["PUBSUB", "NUMSUB", "lay:in:{n:7}", "lay:ctl"]),
            "lay:in:{n:7}\n1\nlay:ctl\n1"
        );
        assert_eq!(redis(&["PUBLISH", "lay:in:{n:7}", "raw"]), "1");
        assert_eq!(next_delivery(&mut receiver).await, inbox("raw"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_redis_fails_within_the_timeout() {
    if !redis_server_available() {
        return;
    }
    bounded(async {
        // A port nobody listens on: refused at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("pick a port")
            .port();
        let started = Instant::now();
        let refused = RedisTransport::connect(&[format!("redis://127.0.0.1:{port}")], "x").await;
        assert!(
            matches!(refused, Err(TransportError::Unreachable(_))),
            "{refused:?}"
        );
        // A paused server: accepts, never answers.
        let server = RedisServer::start();
        server.pause();
        let silent = RedisTransport::connect(&[server.url()], "x").await;
        server.resume();
        assert!(
            matches!(silent, Err(TransportError::Unreachable(_))),
            "{silent:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{:?}",
            started.elapsed()
        );
        let bad = RedisTransport::connect(&["rediss://127.0.0.1:1".to_owned()], "x").await;
        assert!(matches!(bad, Err(TransportError::Protocol(_))), "{bad:?}");
        let bad_prefix = RedisTransport::connect(&[server.url()], "a{b").await;
        assert!(
            matches!(bad_prefix, Err(TransportError::Protocol(_))),
            "{bad_prefix:?}"
        );
    })
    .await;
}

// ------------------------------------------------------ Redis Cluster

fn cluster() -> Option<RedisCluster> {
    redis_server_available().then(RedisCluster::start)
}

/// Every scenario on one 3-master cluster (starting one takes seconds),
/// plus what is special to it: inboxes are shard channels on the master
/// of their slot, and groups spread over the masters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_delivery_and_directory() {
    let Some(cluster) = cluster() else { return };
    let urls = cluster.urls();
    bounded(async {
        inbox_reaches_its_node_only_in_order(&urls, "c-inbox").await;
        control_reaches_every_node(&urls, "c-ctl", false).await;
        binary_payloads_survive(&urls, "c-bin").await;
        receiver_counts_are_reported(&urls, "c-count").await;
        directory_claims_are_fenced(&urls, "c-dir").await;
        concurrent_claims_have_one_winner(&urls, "c-race").await;
        node_figures_expire(&urls, "c-figures").await;

        let node = connect(&urls, "c-shard").await;
        let _receiver = node.subscribe(61).await.expect("subscribe");
        let channel = "c-shard:in:{n:61}";
        let home = cluster.node_for(channel).port();
        for server in &cluster.nodes {
            let subscribers = server
                .command(&["PUBSUB", "SHARDNUMSUB", channel])
                .expect("PUBSUB SHARDNUMSUB");
            let expected = if server.port() == home { 1 } else { 0 };
            assert_eq!(
                subscribers,
                format!("{channel}\n{expected}"),
                "node {}",
                server.port()
            );
            assert_eq!(
                server
                    .command(&["PUBSUB", "NUMSUB", channel])
                    .expect("NUMSUB"),
                format!("{channel}\n0"),
                "the inbox is not an ordinary channel"
            );
        }
        // Only an URL form differs: one redis+cluster:// URL with the seeds.
        let seeds: Vec<String> = cluster
            .nodes
            .iter()
            .map(|server| format!("127.0.0.1:{}", server.port()))
            .collect();
        let single = connect(&[format!("redis+cluster://{}", seeds.join(","))], "c-shard").await;
        for number in 0..64 {
            single.claim(group(number), 1, None).await.expect("claim");
        }
        for server in &cluster.nodes {
            let keys: u64 = server
                .command(&["DBSIZE"])
                .expect("DBSIZE")
                .parse()
                .expect("a count");
            assert!(keys > 5, "node {} holds only {keys} keys", server.port());
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_pause_is_survived() {
    let Some(cluster) = cluster() else { return };
    let urls = cluster.urls();
    let home = cluster.node_for("c-pause:in:{n:41}");
    bounded(pause_is_survived(&urls, "c-pause", home)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_restart_is_survived() {
    let Some(mut cluster) = cluster() else { return };
    let urls = cluster.urls();
    let home_port = cluster.node_for("c-restart:in:{n:51}").port();
    bounded(restart_is_survived(&urls, "c-restart", || {
        let home = cluster
            .nodes
            .iter_mut()
            .find(|server| server.port() == home_port)
            .expect("the inbox's node");
        home.restart();
        cluster.wait_until_ok();
    }))
    .await;
}

// ------------------------------------------------------------ Sentinel

/// Through a sentinel: the master is found, and when it dies the replica
/// is promoted and the transport follows: calls work again, the
/// subscription is restored on the new master, claims and receiver counts
/// are right there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_follows_a_failover() {
    if !redis_server_available() {
        return;
    }
    let mut setup = RedisSentinel::start();
    let urls = [setup.url()];
    let old_master = setup.master.port();
    bounded(async {
        let subscriber = connect(&urls, "s").await;
        let publisher = connect(&urls, "s").await;
        let mut receiver = subscriber.subscribe(71).await.expect("subscribe");
        assert_eq!(
            publisher
                .publish_inbox(71, Bytes::from_static(b"one"))
                .await,
            Ok(1)
        );
        assert_eq!(next_delivery(&mut receiver).await, inbox("one"));
        assert_eq!(
            publisher.claim(group(71), 71, None).await.map(|c| c.epoch),
            Ok(1)
        );
        // The claim reached the replica before the master dies. (WAIT from
        // another connection proves nothing: it only waits for that
        // connection's own writes; so look at the replica itself.)
        let own: String = group(71).iter().map(|b| format!("{b:02x}")).collect();
        let own = format!("s:{{g:{own}}}:own");
        let replicated = Instant::now() + Duration::from_secs(10);
        loop {
            let epoch =
                tokio::task::block_in_place(|| setup.replica.command(&["HGET", &own, "epoch"]));
            if epoch.expect("HGET on the replica").trim() == "1" {
                break;
            }
            assert!(
                Instant::now() < replicated,
                "the claim never reached the replica"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        tokio::task::block_in_place(|| setup.master.kill());
        let deadline = Instant::now() + Duration::from_secs(30);
        while setup.master_port() == Some(old_master) {
            assert!(Instant::now() < deadline, "the sentinel did not fail over");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(setup.master_port(), Some(setup.replica.port()));

        let count = retry(|| publisher.publish_inbox(71, Bytes::from_static(b"two"))).await;
        // The subscription may still be moving to the new master: wait
        // until the new master counts it, then check delivery.
        if count != 1 {
            wait_for_count(&publisher, 71, 1).await;
        }
        let marker = Bytes::from_static(b"three");
        assert_eq!(publisher.publish_inbox(71, marker.clone()).await, Ok(1));
        loop {
            if next_payload(&mut receiver).await == Delivery::Inbox(marker.clone()) {
                break;
            }
        }
        // The replica had the group (replication), at epoch 1.
        let claim = retry(|| publisher.claim(group(71), 72, Some((71, 1)))).await;
        assert_eq!((claim.owner, claim.epoch), (72, 2));
    })
    .await;
}
