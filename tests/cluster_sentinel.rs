//! Cluster mode through Redis Sentinel, end to end: a master, a replica
//! and three sentinels (real `redis-server`s on loopback ports of their
//! own), two gateways with `redis+sentinel://s1,s2,s3/mymaster`, and a
//! Netflux group spread over both. The master is killed (SIGKILL) while a
//! peer keeps sending; the sentinels promote the replica and the nodes
//! find the new master (README "Running a cluster": the master is found
//! again after a failover, and an outage of Redis closes no session and
//! loses nothing relayed). Afterwards the old group still relays both
//! ways, newcomers join it across nodes, and a new group is claimed on the
//! new master. Skips with one line when `redis-server` is not installed.

mod cluster_support;
mod common;

use std::time::Duration;

use cluster_support::redis_harness::{RedisSentinel, redis_server_available};
use cluster_support::{NODE_WAIT, join_through, node_settings, owner_key, start_nodes, wait_ready};
use common::{Peer, test_settings};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_across_two_nodes_survives_a_sentinel_failover() {
    if !redis_server_available() {
        return;
    }
    let mut redis = tokio::task::block_in_place(|| RedisSentinel::start_with_sentinels(3));
    let url = redis.url_of_all();
    let nodes = start_nodes(
        (1..=2)
            .map(|node| {
                let mut settings = node_settings(test_settings(), &url, node);
                // The default silence limit: after a failover each node
                // finds the new master through the sentinels on its own,
                // and a node that got there first grants the others
                // `dead_after` to follow. The suite's 600 ms was shorter
                // than that lag on a loaded CI machine (the owner reported
                // B's end of binding while B's node was still reconnecting).
                settings.cluster.dead_after_ms = 3000;
                settings
            })
            .collect(),
    )
    .await;

    // A on node 1 founds the group (node 1 owns it); B and C on node 2 join
    // through A.
    let mut a = Peer::open(&nodes[0], "/failover").await;
    assert!(a.connect(1, &[]).await);
    let mut b = Peer::open(&nodes[1], "/failover").await;
    let sb = join_through(&mut b, &mut a, 2, &[1]).await;
    let mut c = Peer::open(&nodes[1], "/failover").await;
    let sc = join_through(&mut c, &mut a, 3, &[1, 2]).await;

    // The claim is on the replica before the master dies (replication is
    // asynchronous: what it never got, the new master never has).
    let own = owner_key("sigver", "failover");
    let deadline = tokio::time::Instant::now() + NODE_WAIT;
    while tokio::task::block_in_place(|| redis.replica.command(&["HGET", &own, "node"]))
        .map_or(true, |node| node.trim() != "1")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the claim reaches the replica"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // B keeps sending to A while the master dies and the replica takes over.
    const COUNT: usize = 200;
    let sender = tokio::spawn(async move {
        for i in 0..COUNT {
            b.content(0, 0, format!("m{i}").as_bytes(), false).await;
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        b
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let old_master = redis.master.port();
    tokio::task::block_in_place(|| redis.master.kill());
    let failed_over = tokio::time::Instant::now();
    let deadline = failed_over + Duration::from_secs(30);
    while redis.master_port() == Some(old_master) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the sentinels fail over"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(redis.master_port(), Some(redis.replica.port()));
    println!("failover took {:?}", failed_over.elapsed());

    // Nothing relayed was lost, nothing came twice, no session closed.
    for i in 0..COUNT {
        assert_eq!(
            a.recv_content().await,
            (sb, 0, format!("m{i}").into_bytes()),
            "message {i} arrives once and in order"
        );
    }
    let mut b = sender.await.expect("sender");
    for node in &nodes {
        wait_ready(node).await;
    }
    a.content(0, sb, b"after", false).await;
    assert_eq!(b.recv_content().await, (0, sb, b"after".to_vec()));
    c.content(0, 0, b"c after", false).await;
    assert_eq!(a.recv_content().await, (sc, 0, b"c after".to_vec()));

    // Newcomers join the old group across nodes, and a new group is
    // claimed on the new master with members on both nodes.
    let mut d = Peer::open(&nodes[1], "/failover").await;
    join_through(&mut d, &mut a, 4, &[1]).await;
    let mut e = Peer::open(&nodes[1], "/after-failover").await;
    assert!(e.connect(1, &[]).await);
    let mut f = Peer::open(&nodes[0], "/after-failover").await;
    join_through(&mut f, &mut e, 2, &[1]).await;
    let owner = redis
        .replica
        .command(&["HGET", &owner_key("sigver", "after-failover"), "node"])
        .expect("HGET on the new master");
    assert_eq!(
        owner.trim(),
        "2",
        "the new group is claimed on the new master"
    );
    for peer in [&mut a, &mut b, &mut c] {
        peer.silent_for(Duration::from_millis(200)).await;
    }
}
