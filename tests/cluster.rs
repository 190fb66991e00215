//! Cluster mode through real sockets and a real Redis: three gateways on
//! loopback share one `redis-server` or a 3-master Redis Cluster (started
//! here on ports of their own; each scenario runs on both, as
//! `<scenario>::standalone_redis` and `<scenario>::redis_cluster`), and
//! Netflux peers of one key spread over them see every rule of
//! `spec/sigver.md` hold as on one node: the join flow and end-of-binding
//! notices, favored choice and rotation, blocking-member replacement (the
//! 4744 lands on the member's node), both dialects; a node that goes away
//! (stopped, SIGTERM, SIGKILL) takes its peers out of the groups of the
//! others and its groups are adopted; Redis paused for two seconds closes
//! nothing and loses nothing; `/readyz` follows the node's reach. Skips
//! with one line when `redis-server` is not installed.

mod cluster_support;
mod common;

use std::time::Duration;

use cluster_support::redis_harness::{self, RedisServer, redis_server_available};
use cluster_support::{
    Backend, DEAD_AFTER_MS, HEARD_EACH_OTHER, NodeProcess, Redis, RedisProxy, bound_pair,
    join_through, node_settings, on_both_backends, owner_key, ready, start_nodes,
};
use common::{Peer, WAIT, test_settings};
use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use sigway::app::BackgroundServer;
use sigway::proto::legacy;
use sigway::proto::sigver::message::Type;
use tokio_tungstenite::tungstenite::Message as Ws;

/// Three nodes on `redis`, each ready and having heard the others.
async fn cluster_of_three(redis: &Redis) -> Vec<BackgroundServer> {
    start_nodes(
        (1..=3)
            .map(|node| node_settings(test_settings(), &redis.url(), node))
            .collect(),
    )
    .await
}

on_both_backends!(a_group_spread_over_three_nodes_follows_every_rule);
async fn a_group_spread_over_three_nodes_follows_every_rule(backend: Backend) {
    let redis = Redis::start(backend);
    let nodes = cluster_of_three(&redis).await;
    let [n1, n2, n3] = [&nodes[0], &nodes[1], &nodes[2]];

    // The join flow with A on node 1, B on node 2, C on node 3.
    let mut a = Peer::open(n1, "/spread").await;
    assert!(a.connect(1, &[]).await, "the first peer founds the group");
    let mut b = Peer::open(n2, "/spread").await;
    assert!(!b.connect(2, &[]).await);
    for data in [&b"offer"[..], b"candidate-b1", b"candidate-b2"] {
        b.content(0, 0, data, false).await;
    }
    let (sb, _, _) = a.recv_content().await;
    assert_eq!(a.recv_content().await, (sb, 0, b"candidate-b1".to_vec()));
    assert_eq!(a.recv_content().await, (sb, 0, b"candidate-b2".to_vec()));
    a.content(0, sb, b"answer", false).await;
    assert_eq!(b.recv_content().await, (0, sb, b"answer".to_vec()));
    assert!(
        b.connect(2, &[1]).await,
        "B is a member once its view has A"
    );
    let mut c = Peer::open(n3, "/spread").await;
    let sc = join_through(&mut c, &mut a, 3, &[1, 2]).await;
    assert_ne!(sc, sb);

    // lastData ends the binding: C's next content is not relayed to A.
    c.content(0, 0, b"late", true).await;
    assert_eq!(a.recv_content().await, (sc, 0, b"late".to_vec()));

    // A leaves: B (node 2) gets its end-of-binding notice.
    a.leave().await;
    assert_eq!(b.recv_content().await, (0, sb, vec![]));
    assert!(b.connect(2, &[3]).await, "the group still holds B and C");

    // A newcomer on node 1 is bound to B, the first remaining member.
    let mut d = Peer::open(n1, "/spread").await;
    join_through(&mut d, &mut b, 4, &[2]).await;
}

on_both_backends!(favored_choice_rotation_and_blocking_member_across_nodes);
async fn favored_choice_rotation_and_blocking_member_across_nodes(backend: Backend) {
    let redis = Redis::start(backend);
    let nodes = cluster_of_three(&redis).await;

    let mut a = Peer::open(&nodes[0], "/k").await;
    assert!(a.connect(1, &[]).await);
    let mut b = Peer::open(&nodes[1], "/k?favored").await;
    join_through(&mut b, &mut a, 2, &[1]).await;
    let mut c = Peer::open(&nodes[2], "/k").await;
    join_through(&mut c, &mut b, 3, &[1]).await; // favored B first

    let mut j = Peer::open(&nodes[2], "/k").await;
    let mut members = [a, b, c];
    let mut ids = Vec::new();
    for (round, expected) in [1usize, 0, 2, 1].into_iter().enumerate() {
        assert!(!j.connect(9, &[]).await);
        let data = [round as u8];
        j.content(0, 0, &data, false).await;
        let (s, _, got) = members[expected].recv_content().await;
        assert_eq!(got, data, "round {round} went to member {expected}");
        ids.push(s);
    }
    ids.dedup();
    assert_eq!(ids.len(), 4, "a fresh signaling id on every binding");

    // A lone member on node 1 blocks a joiner on node 2: 4744 on node 1.
    let (mut lone, mut joiner, s) =
        bound_pair(&nodes[0].ws_url("/lonely"), &nodes[1].ws_url("/lonely")).await;
    assert!(
        joiner.connect(2, &[]).await,
        "the joiner replaces the blocker"
    );
    assert_eq!(
        lone.closed().await,
        (
            4744,
            "replaced by a peer as prevented him from joining the group".into()
        )
    );
    assert_eq!(joiner.recv_content().await, (0, s, vec![]));
}

/// A legacy (sigver 18) message to send.
async fn send_legacy(peer: &mut Peer, message: legacy::message::Type) {
    let bytes = legacy::Message {
        r#type: Some(message),
    }
    .encode_to_vec();
    peer.ws.send(Ws::Binary(bytes.into())).await.expect("send");
}

/// The next legacy message other than a heartbeat.
async fn recv_legacy(peer: &mut Peer) -> legacy::message::Type {
    loop {
        let frame = tokio::time::timeout(WAIT, peer.ws.next())
            .await
            .expect("a frame in time")
            .expect("socket open")
            .expect("frame ok");
        if let Ws::Binary(bytes) = frame {
            let message = legacy::Message::decode(bytes).expect("valid message");
            match message.r#type.expect("a type") {
                legacy::message::Type::Heartbeat(_) => {}
                other => return other,
            }
        }
    }
}

fn legacy_data(id: u32, data: &[u8]) -> legacy::message::Type {
    legacy::message::Type::Content(legacy::Content {
        id,
        r#type: Some(legacy::content::Type::Data(data.to_vec().into())),
    })
}

on_both_backends!(the_legacy_dialect_spans_nodes_too);
async fn the_legacy_dialect_spans_nodes_too(backend: Backend) {
    let redis = Redis::start(backend);
    let nodes = cluster_of_three(&redis).await;
    use legacy::message::Type as L;
    let mut first = Peer::open(&nodes[0], "/old?protocol=legacy").await;
    assert_eq!(recv_legacy(&mut first).await, L::IsFirst(true));
    let mut second = Peer::open(&nodes[1], "/old?protocol=legacy").await;
    assert_eq!(recv_legacy(&mut second).await, L::IsFirst(false));
    send_legacy(&mut second, legacy_data(0, b"offer")).await;
    let L::Content(legacy::Content { id, .. }) = recv_legacy(&mut first).await else {
        panic!("the offer reaches the member on node 1");
    };
    send_legacy(&mut first, legacy_data(id, b"answer")).await;
    assert_eq!(recv_legacy(&mut second).await, legacy_data(0, b"answer"));
    // The member leaves: the joiner on node 2 hears isError.
    first.leave().await;
    assert_eq!(
        recv_legacy(&mut second).await,
        L::Content(legacy::Content {
            id: 0,
            r#type: Some(legacy::content::Type::IsError(true)),
        })
    );
}

on_both_backends!(a_node_that_goes_away_takes_its_peers_out_of_the_others_groups);
async fn a_node_that_goes_away_takes_its_peers_out_of_the_others_groups(backend: Backend) {
    let redis = Redis::start(backend);
    let mut nodes = cluster_of_three(&redis).await;
    let (mut a, _b, sb) = bound_pair(&nodes[0].ws_url("/gone"), &nodes[1].ws_url("/gone")).await;

    // Node 2 stops: B's binding with A ends as if B's socket had dropped.
    let gone = nodes.remove(1);
    std::thread::spawn(move || gone.stop());
    assert_eq!(a.recv_content().await, (sb, 0, vec![]));

    // The group lives on: a newcomer on node 3 is bound to A.
    let mut c = Peer::open(&nodes[1], "/gone").await;
    join_through(&mut c, &mut a, 3, &[1]).await;
}

on_both_backends!(a_group_whose_owner_stops_is_adopted_with_its_order_and_bindings);
async fn a_group_whose_owner_stops_is_adopted_with_its_order_and_bindings(backend: Backend) {
    let redis = Redis::start(backend);
    let mut nodes = cluster_of_three(&redis).await;
    // The group is founded on node 1, which owns it; B (node 2) and C
    // (node 3) join through A, and D (node 3) is bound to B, mid-join.
    let mut a = Peer::open(&nodes[0], "/moved").await;
    assert!(a.connect(1, &[]).await);
    let mut b = Peer::open(&nodes[1], "/moved?favored").await;
    let sb = join_through(&mut b, &mut a, 2, &[1]).await;
    let mut c = Peer::open(&nodes[2], "/moved").await;
    let sc = join_through(&mut c, &mut b, 3, &[1, 2]).await;
    let mut d = Peer::open(&nodes[2], "/moved").await;
    assert!(!d.connect(4, &[]).await);
    d.content(0, 0, b"offer-d", false).await;
    let (sd, _, _) = b.recv_content().await;

    // Node 1 stops: A is closed (1001) and the group moves to a node that
    // rebuilds it from its snapshot. Nobody else is bounced: B hears only
    // the end of its binding with A.
    let owner = nodes.remove(0);
    std::thread::spawn(move || owner.stop());
    assert_eq!(
        b.recv_content().await,
        (0, sb, vec![]),
        "B's binding with A ends"
    );
    b.silent_for(Duration::from_millis(300)).await;

    // The binding D-B survived the move: D's answer still reaches it.
    b.content(0, sd, b"answer-d", false).await;
    assert_eq!(d.recv_content().await, (0, sd, b"answer-d".to_vec()));
    // And the order and favored flag too: a newcomer is bound to favored B.
    let mut e = Peer::open(&nodes[0], "/moved").await;
    join_through(&mut e, &mut b, 5, &[2, 3]).await;
    // C is still a member: its end notice for B's binding never came.
    c.silent_for(Duration::from_millis(100)).await;
    assert_ne!(sc, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_redis_is_not_ready_and_refuses_peers() {
    if !redis_server_available() {
        return;
    }
    // A port nothing listens on.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let node = BackgroundServer::start(node_settings(
        test_settings(),
        &format!("redis://127.0.0.1:{port}"),
        7,
    ))
    .expect("starts without Redis");
    let healthz = reqwest::get(node.http_url("/healthz")).await.expect("get");
    assert_eq!(healthz.status(), 200, "alive all the same");
    let readyz = reqwest::get(node.http_url("/readyz")).await.expect("get");
    assert_eq!(readyz.status(), 503);
    let mut peer = Peer::open(&node, "/key").await;
    peer.send(Type::Connect(sigway::proto::sigver::GroupData {
        id: 1,
        members: vec![],
    }))
    .await;
    assert_eq!(
        peer.closed().await,
        (1013, "cluster unavailable".into()),
        "try again later"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_require_false_a_node_without_redis_serves_alone() {
    if !redis_server_available() {
        return;
    }
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let mut settings = node_settings(test_settings(), &format!("redis://127.0.0.1:{port}"), 8);
    settings.cluster.require = false;
    let node = BackgroundServer::start(settings).expect("starts without Redis");
    let deadline = tokio::time::Instant::now() + WAIT;
    while !ready(&node).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "ready as a node alone"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut a = Peer::open(&node, "/alone").await;
    assert!(a.connect(1, &[]).await);
    let mut b = Peer::open(&node, "/alone").await;
    join_through(&mut b, &mut a, 2, &[1]).await;
}

/// What happens to Redis while a group relays across nodes.
enum Outage {
    /// Stopped (SIGSTOP) for two seconds, longer than a node's dead timeout
    /// here, then resumed: connections survive, nothing answers meanwhile.
    Pause,
    /// Killed and started again, empty (no persistence): the directory
    /// (who owns the group) and every snapshot are gone.
    Restart,
}

on_both_backends!(redis_paused_for_two_seconds_closes_no_session_and_loses_nothing);
async fn redis_paused_for_two_seconds_closes_no_session_and_loses_nothing(backend: Backend) {
    relay_through(backend, Outage::Pause, "paused").await;
}

on_both_backends!(redis_restarted_empty_closes_no_session_loses_nothing_and_keeps_its_groups);
async fn redis_restarted_empty_closes_no_session_loses_nothing_and_keeps_its_groups(
    backend: Backend,
) {
    relay_through(backend, Outage::Restart, "restarted").await;
}

/// B (node 2) keeps sending to A (node 1, the owner) while `outage` hits
/// the Redis servers that carry the group: the one server, or the masters
/// of a Redis Cluster holding its directory entry and the two nodes'
/// inboxes. No session closes, every message arrives once and in order,
/// and the group is still the one group: a newcomer on node 3, which never
/// saw the key, joins it (after a restart, a node that did not claim the
/// group again would leave node 3 to found a second one).
async fn relay_through(backend: Backend, outage: Outage, key: &str) {
    let mut redis = Redis::start(backend);
    let nodes = cluster_of_three(&redis).await;
    let path = format!("/{key}");
    let (mut a, mut b, sb) = bound_pair(&nodes[0].ws_url(&path), &nodes[1].ws_url(&path)).await;

    const COUNT: usize = 150;
    let sender = tokio::spawn(async move {
        for i in 0..COUNT {
            b.content(0, 0, format!("m{i}").as_bytes(), false).await;
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        b
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    match outage {
        Outage::Pause => {
            let paused = redis.servers_of_room("sigver", key, &[1, 2]);
            for server in &paused {
                server.pause();
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            for server in &paused {
                server.resume();
            }
        }
        Outage::Restart => redis.restart_servers_of_room("sigver", key, &[1, 2]),
    }
    for i in 0..COUNT {
        assert_eq!(
            a.recv_content().await,
            (sb, 0, format!("m{i}").into_bytes()),
            "message {i} arrives once and in order"
        );
    }
    let mut b = sender.await.expect("sender");
    // Both sessions are still open and the group still works.
    a.content(0, sb, b"still here", false).await;
    assert_eq!(b.recv_content().await, (0, sb, b"still here".to_vec()));

    let deadline = tokio::time::Instant::now() + WAIT;
    for node in &nodes {
        while !ready(node).await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "every node is ready again"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let owner = owner_key("sigver", key);
    while redis.command_on_key(&owner, &["EXISTS", &owner]) != "1" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the owner holds its claim"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut c = Peer::open(&nodes[2], &path).await;
    join_through(&mut c, &mut a, 3, &[1, 2]).await;
}

on_both_backends!(
    a_newcomer_just_after_an_empty_redis_restart_joins_the_group_its_owner_claims_back
);
/// Redis restarts empty while the group's owner (node 1) is frozen, so it
/// cannot claim its group back yet, and a newcomer on node 3, which never
/// saw the key, joins meanwhile. Node 3's claim is held until node 1,
/// thawed, has written the group down again: the newcomer is bound to A in
/// the one group instead of founding a second group of the key.
async fn a_newcomer_just_after_an_empty_redis_restart_joins_the_group_its_owner_claims_back(
    backend: Backend,
) {
    let mut redis = Redis::start(backend);
    // A long dead timeout: node 1 is frozen for a while and must not be
    // judged dead meanwhile.
    let slow_death = [("SIGWAY_CLUSTER__DEAD_AFTER_MS", "8000")];
    let mut nodes: Vec<NodeProcess> = (1..=3)
        .map(|node| NodeProcess::spawn_with(&redis.url(), node, &slow_death))
        .collect();
    for node in &mut nodes {
        node.wait_ready().await;
    }
    tokio::time::sleep(HEARD_EACH_OTHER).await;
    let key = "held";
    let (mut a, _b, _) = bound_pair(&nodes[0].ws_url("/held"), &nodes[1].ws_url("/held")).await;
    // Only nodes that were in the cluster before the restart are held (a
    // fresh deployment is not), certainly so two seconds before it (Redis
    // counts its uptime in whole seconds of the clock).
    tokio::time::sleep(Duration::from_millis(2200)).await;

    nodes[0].freeze();
    tokio::task::block_in_place(|| redis.restart_servers_of_room("sigver", key, &[1, 2, 3]));
    // Node 3 noticed the restart and is ready again (it refuses joins
    // while it is not).
    tokio::time::sleep(Duration::from_millis(300)).await;
    nodes[2].wait_ready().await;
    let mut c = Peer::open_url(&nodes[2].ws_url("/held")).await;
    let joining = tokio::spawn(async move {
        let founded = c.connect(3, &[]).await;
        (c, founded)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    nodes[0].thaw();
    let (mut c, founded) = tokio::time::timeout(WAIT, joining)
        .await
        .expect("the newcomer's join is answered")
        .expect("join task");
    assert!(
        !founded,
        "the newcomer founded a second group of the key instead of being bound in the owner's"
    );
    c.content(0, 0, b"offer", false).await;
    let (_, to, data) = a.recv_content().await;
    assert_eq!((to, data.as_slice()), (0, &b"offer"[..]), "A got C's offer");
}

/// After a Redis restart, node 2 (behind its own proxy) is back more than
/// `dead_after` later than node 1: node 1 gives it the recovery grace (5 s
/// here, on top of `dead_after`) instead of judging it dead, so A on node 1
/// hears no end of its binding with B on node 2, and the two still relay.
/// (With `cluster.recovery_grace_ms = 0` node 2 is judged dead.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_back_later_than_the_others_after_a_redis_restart_keeps_its_peers() {
    if !redis_server_available() {
        return;
    }
    let mut redis = RedisServer::start();
    let proxy = RedisProxy::start(redis.port()).await;
    let grace = [("SIGWAY_CLUSTER__RECOVERY_GRACE_MS", "5000")];
    let mut nodes = vec![
        NodeProcess::spawn_with(&redis.url(), 1, &grace),
        NodeProcess::spawn_with(&proxy.url(), 2, &grace),
    ];
    for node in &mut nodes {
        node.wait_ready().await;
    }
    tokio::time::sleep(HEARD_EACH_OTHER).await;
    let (mut a, mut b, sb) = bound_pair(&nodes[0].ws_url("/late"), &nodes[1].ws_url("/late")).await;

    // Node 1 reconnects within its backoff (50 ms first); node 2 is
    // refused for 1.2 s, and back at its next attempt after that (about
    // 1.55 s): well over `dead_after` (600 ms) after node 1.
    let restarted = tokio::time::Instant::now();
    proxy.refuse_for(Duration::from_millis(1200));
    tokio::task::block_in_place(|| redis.restart());
    tokio::time::sleep(Duration::from_millis(1300)).await;
    nodes[1].wait_ready().await;
    let late_by = restarted.elapsed();
    // Time for a wrong verdict to show.
    tokio::time::sleep(Duration::from_millis(DEAD_AFTER_MS + 300)).await;

    // A node judged dead has its members dropped: B would then never get
    // A's message (and A would hear the end of the binding first).
    let judged_dead = format!("node 2, back {late_by:?} after the restart, was judged dead");
    a.content(0, sb, b"still here", false).await;
    let to_b = tokio::time::timeout(Duration::from_secs(5), b.recv_content())
        .await
        .unwrap_or_else(|_| panic!("B got nothing from A: {judged_dead}"));
    assert_eq!(to_b, (0, sb, b"still here".to_vec()));
    b.content(0, 0, b"and back", false).await;
    assert_eq!(
        a.recv_content().await,
        (sb, 0, b"and back".to_vec()),
        "A heard the end of its binding with B: {judged_dead}"
    );
}

/// Members that send faster than the bus carries to their groups' owner
/// node wait for it (each reads no more of its client meanwhile) instead of
/// being told the link is lost: the joiners of 20 groups on node 2, whose
/// owner is node 1, each send a burst of 5,000 frames in one write, with
/// the bus's send queue at 1 KiB; every member on node 1 gets its
/// joiner's frames, all of them and in order, and every joiner stays
/// connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_across_nodes_is_paced_not_bounced() {
    if !redis_server_available() {
        return;
    }
    const GROUPS: usize = 20;
    const BURST: usize = 5_000;
    const SEND_QUEUE_BYTES: usize = 1024;
    let redis = Redis::start(Backend::Standalone);
    let nodes = two_nodes_with_send_queue(&redis, SEND_QUEUE_BYTES).await;
    let mut pairs = Vec::new();
    for group in 0..GROUPS {
        let path = format!("/burst-{group}");
        let (member, joiner, id) =
            bound_pair(&nodes[0].ws_url(&path), &nodes[1].ws_url(&path)).await;
        pairs.push((member, joiner, id));
    }
    let mut bursts = Vec::new();
    for (mut member, mut joiner, id) in pairs {
        let receiver = tokio::spawn(async move {
            for i in 0..BURST {
                let (from, _, data) = member.recv_content().await;
                assert_eq!(from, id);
                assert_eq!(data, format!("m{i}").into_bytes(), "frame {i} in order");
            }
            member
        });
        bursts.push(tokio::spawn(async move {
            for i in 0..BURST {
                joiner.ws.feed(content_frame(0, i)).await.expect("feed");
            }
            joiner.ws.flush().await.expect("flush");
            let mut member = tokio::time::timeout(Duration::from_secs(60), receiver)
                .await
                .expect("the burst arrives")
                .expect("all of it, in order");
            member.content(0, id, b"all here", false).await;
            assert_eq!(
                joiner.recv_content().await,
                (0, id, b"all here".to_vec()),
                "the joiner is still connected and in its group"
            );
        }));
    }
    for burst in bursts {
        burst.await.expect("burst");
    }
}

/// What a room sends the other way, to a member on a node whose bus queue
/// is full, is not dropped silently: the link to that node starts over, so
/// the member gets 1012 (and rejoins) after a prefix of what was sent, in
/// order and without a hole, and the member on the owner's node hears the
/// end of its binding with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_to_a_members_node_closes_the_member_rather_than_losing_frames() {
    if !redis_server_available() {
        return;
    }
    const BURST: usize = 5_000;
    let redis = Redis::start(Backend::Standalone);
    let nodes = two_nodes_with_send_queue(&redis, 256).await;
    let (mut a, mut b, sb) =
        bound_pair(&nodes[0].ws_url("/overflow"), &nodes[1].ws_url("/overflow")).await;

    let reader = tokio::spawn(async move {
        let mut next = 0usize;
        loop {
            let frame = tokio::time::timeout(WAIT, b.ws.next())
                .await
                .expect("a frame or the close in time")
                .expect("socket open")
                .expect("frame ok");
            match frame {
                Ws::Binary(bytes) => {
                    let message = sigway::proto::sigver::Message::decode(bytes).expect("valid");
                    if let Some(Type::Content(content)) = message.r#type {
                        assert_eq!(
                            content.data,
                            format!("m{next}").into_bytes(),
                            "frame {next} arrives next: no hole before the close"
                        );
                        next += 1;
                    }
                }
                Ws::Close(close) => {
                    return (next, close.map(|close| u16::from(close.code)));
                }
                _ => {}
            }
        }
    });
    for i in 0..BURST {
        a.ws.feed(content_frame(sb, i)).await.expect("feed");
    }
    a.ws.flush().await.expect("flush");
    let (received, code) = tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .expect("B is closed in time")
        .expect("in order");
    assert_eq!(
        code,
        Some(1012),
        "B got {received} of {BURST} frames, then this close"
    );
    assert!(received < BURST);
    // A hears the end of its binding with B.
    loop {
        let (from, to, data) = a.recv_content().await;
        if (from, to, data.is_empty()) == (sb, 0, true) {
            break;
        }
    }
}

/// Two in-process nodes on `redis` whose bus queues at most `bytes` for
/// another node.
async fn two_nodes_with_send_queue(redis: &Redis, bytes: usize) -> Vec<BackgroundServer> {
    start_nodes(
        (1..=2)
            .map(|node| {
                let mut settings = node_settings(test_settings(), &redis.url(), node);
                settings.cluster.send_queue_bytes = bytes;
                settings
            })
            .collect(),
    )
    .await
}

/// The `i`th frame of a burst: content `m{i}` for `recipient` (0: the
/// member the sender is bound to).
fn content_frame(recipient: u32, i: usize) -> Ws {
    let frame = sigway::proto::sigver::Message {
        r#type: Some(Type::Content(sigway::proto::sigver::Content {
            sender_id: 0,
            recipient_id: recipient,
            last_data: false,
            data: format!("m{i}").into_bytes().into(),
        })),
    }
    .encode_to_vec();
    Ws::Binary(frame.into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_stats_show_the_cluster() {
    if !redis_server_available() {
        return;
    }
    let redis = Redis::start(Backend::Standalone);
    let nodes = cluster_of_three(&redis).await;
    let (_a, _b, _) = bound_pair(&nodes[0].ws_url("/counted"), &nodes[1].ws_url("/counted")).await;

    let stats: serde_json::Value = reqwest::get(nodes[0].http_url("/stats"))
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    let cluster = &stats["cluster"];
    assert_eq!(cluster["node"], 1);
    assert_eq!(cluster["ready"], true);
    assert_eq!(cluster["nodes"], 3, "{stats}");
    assert_eq!(cluster["rooms_owned"], 1, "node 1 founded the group");
    assert_eq!(cluster["remote_members"], 1, "B is on node 2");
    assert!(
        cluster["messages_received"].as_u64() >= Some(2),
        "attach and offer"
    );
    let metrics = reqwest::get(nodes[1].http_url("/metrics"))
        .await
        .expect("get")
        .text()
        .await
        .expect("text");
    for line in [
        "sigway_cluster_nodes 3\n",
        "sigway_cluster_members_away 1\n",
        "sigway_cluster_node_info{node=\"2\"} 1\n",
        "sigway_cluster_ready 1\n",
    ] {
        assert!(metrics.contains(line), "{line:?} in\n{metrics}");
    }
    // A node alone says nothing about a cluster.
    let alone = common::start(test_settings());
    let stats: serde_json::Value = reqwest::get(alone.http_url("/stats"))
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert!(stats.get("cluster").is_none());
}

on_both_backends!(a_node_killed_with_sigkill_is_noticed_within_the_dead_timeout);
async fn a_node_killed_with_sigkill_is_noticed_within_the_dead_timeout(backend: Backend) {
    let redis = Redis::start(backend);
    let mut nodes = NodeProcess::start_all(&redis.url(), 3).await;

    // A (node 1) owns the group; B on node 2 is bound to A; C on node 3 is
    // a member in a group owned by node 1 too.
    let (mut a, _b, sb) =
        bound_pair(&nodes[0].ws_url("/killed"), &nodes[1].ws_url("/killed")).await;

    // A non-owner dies: A hears the end of B's binding within
    // dead_after + 0.5 s, as for a dropped socket.
    let killed = tokio::time::Instant::now();
    nodes[1].kill_hard();
    assert_eq!(a.recv_content().await, (sb, 0, vec![]));
    let noticed = killed.elapsed();
    println!(
        "non-owner killed: its peer's end of binding reached the owner's member after {noticed:?} (dead_after 600 ms)"
    );
    assert!(
        noticed < Duration::from_millis(600 + 500),
        "noticed after {noticed:?}"
    );

    // The owner dies: node 3 adopts the group from its snapshot; C, bound
    // to A, hears the end of that binding within the same bound, and stays.
    let mut c = Peer::open_url(&nodes[2].ws_url("/killed")).await;
    let sc = join_through(&mut c, &mut a, 3, &[1]).await;
    // The owner writes the group's snapshot (C now a member) right after
    // admitting C, asynchronously: killed within that write, it would leave
    // the snapshot before it, where C is still a joiner, and D would found
    // the group (seen here 1 run in 4 before this wait). That window is a
    // documented limit (README, "Running a cluster"); this test is about
    // the notices and the adoption.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let killed = tokio::time::Instant::now();
    nodes[0].kill_hard();
    assert_eq!(c.recv_content().await, (0, sc, vec![]));
    let noticed = killed.elapsed();
    println!(
        "owner killed: group adopted, the survivor heard the end of its binding after {noticed:?} (dead_after 600 ms)"
    );
    assert!(
        noticed < Duration::from_millis(600 + 500),
        "noticed after {noticed:?}"
    );
    // The group goes on with C: a newcomer on node 3 is bound to it.
    let mut d = Peer::open_url(&nodes[2].ws_url("/killed")).await;
    join_through(&mut d, &mut c, 4, &[3]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_spans_nodes_on_a_three_master_redis_cluster() {
    if !redis_server_available() {
        return;
    }
    let redis = redis_harness::RedisCluster::start();
    let seeds = redis.urls().join(" ");
    let nodes = start_nodes(
        (1..=2)
            .map(|node| node_settings(test_settings(), &seeds, node))
            .collect(),
    )
    .await;
    // Several keys, so that their directory entries fall on every master.
    for key in ["/k1", "/k2", "/k3", "/k4", "/k5", "/k6"] {
        let mut a = Peer::open(&nodes[0], key).await;
        assert!(a.connect(1, &[]).await);
        let mut b = Peer::open(&nodes[1], key).await;
        let s = join_through(&mut b, &mut a, 2, &[1]).await;
        a.leave().await;
        assert_eq!(b.recv_content().await, (0, s, vec![]), "{key}");
    }
}

on_both_backends!(sigterm_closes_the_nodes_peers_with_1001_and_moves_its_groups_without_a_bounce);
async fn sigterm_closes_the_nodes_peers_with_1001_and_moves_its_groups_without_a_bounce(
    backend: Backend,
) {
    let redis = Redis::start(backend);
    let mut nodes = NodeProcess::start_all(&redis.url(), 2).await;
    // A on node 1 owns the group; B and C on node 2 joined through A; C is
    // also bound to B.
    let mut a = Peer::open_url(&nodes[0].ws_url("/term")).await;
    assert!(a.connect(1, &[]).await);
    let mut b = Peer::open_url(&nodes[1].ws_url("/term")).await;
    let sb = join_through(&mut b, &mut a, 2, &[1]).await;
    let mut c = Peer::open_url(&nodes[1].ws_url("/term")).await;
    assert!(!c.connect(3, &[]).await);
    c.content(0, 0, b"offer", false).await;
    let (sc, _, _) = a.recv_content().await;

    nodes[0].terminate();
    assert_eq!(a.closed().await.0, 1001, "the node's own peers get 1001");
    assert_eq!(
        b.recv_content().await,
        (0, sb, vec![]),
        "B's binding with A ends once"
    );
    assert_eq!(
        c.recv_content().await,
        (0, sc, vec![]),
        "C's binding with A ends once"
    );
    b.silent_for(Duration::from_millis(300)).await;
    // The group moved to node 2 with B in it: C is bound to B next.
    assert!(!c.connect(3, &[]).await);
    c.content(0, 0, b"offer again", false).await;
    let (s, _, data) = b.recv_content().await;
    assert_eq!(data, b"offer again");
    b.content(0, s, b"answer", false).await;
    assert_eq!(c.recv_content().await, (0, s, b"answer".to_vec()));
    let status = nodes[0].exited().await;
    assert!(status.success(), "a clean exit on SIGTERM: {status:?}");
}

on_both_backends!(a_member_that_left_while_its_owner_died_leaves_the_adopted_group_too);
async fn a_member_that_left_while_its_owner_died_leaves_the_adopted_group_too(backend: Backend) {
    let redis = Redis::start(backend);
    let mut nodes = NodeProcess::start_all(&redis.url(), 3).await;
    // A (node 1) owns the group; favored B (node 2) joined through A; C
    // (node 3) joined through B.
    let mut a = Peer::open_url(&nodes[0].ws_url("/ghost")).await;
    assert!(a.connect(1, &[]).await);
    let mut b = Peer::open_url(&nodes[1].ws_url("/ghost?favored")).await;
    join_through(&mut b, &mut a, 2, &[1]).await;
    let mut c = Peer::open_url(&nodes[2].ws_url("/ghost")).await;
    let sc = join_through(&mut c, &mut b, 3, &[1, 2]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    // The owner dies, and B leaves before its node notices: B's leave goes
    // to the dead owner. The group is adopted from a snapshot that still
    // holds B; node 2 does not attach B again, so B leaves the adopted
    // group too and C hears the end of its binding with B.
    nodes[0].kill_hard();
    b.leave().await;
    let (s, r, data) = c.recv_content().await;
    assert_eq!((s, r, data), (0, sc, vec![]), "C's binding with B ends");
}

/// How a room's snapshot is made unusable before a survivor adopts it.
#[derive(Debug, Clone, Copy)]
enum SnapshotLoss {
    Deleted,
    Corrupted,
}

impl SnapshotLoss {
    fn apply(self, redis: &Redis, kind: &str, key: &str) {
        let snapshot = cluster_support::snapshot_key(kind, key);
        match self {
            SnapshotLoss::Deleted => {
                assert_eq!(redis.command_on_key(&snapshot, &["DEL", &snapshot]), "1");
            }
            SnapshotLoss::Corrupted => {
                assert_eq!(
                    redis.command_on_key(&snapshot, &["SET", &snapshot, "\u{1}not a snapshot"]),
                    "OK"
                );
            }
        }
    }
}

/// Waits (bounded) until room `key` of `kind` has a snapshot holding
/// `members` members: its owner wrote what the test set up.
async fn wait_for_snapshot(redis: &Redis, kind: &str, key: &str) {
    let snapshot = cluster_support::snapshot_key(kind, key);
    let deadline = tokio::time::Instant::now() + WAIT;
    while redis.command_on_key(&snapshot, &["EXISTS", &snapshot]) != "1" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the owner writes the snapshot of {kind} {key}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The close code and reason `peer` gets, skipping whatever frames (of
/// either dialect) come first.
async fn close_of(peer: &mut Peer) -> (u16, String) {
    loop {
        let frame = tokio::time::timeout(WAIT, peer.ws.next())
            .await
            .expect("a close in time")
            .expect("the socket ends with a close frame")
            .expect("frame ok");
        if let Ws::Close(close) = frame {
            return close.map_or((1005, String::new()), |close| {
                (u16::from(close.code), close.reason.to_string())
            });
        }
    }
}

on_both_backends!(a_group_whose_snapshot_is_lost_bounces_its_peers_with_1012_and_they_rejoin);
async fn a_group_whose_snapshot_is_lost_bounces_its_peers_with_1012_and_they_rejoin(
    backend: Backend,
) {
    use legacy::message::Type as L;
    let redis = Redis::start(backend);
    let mut nodes = NodeProcess::start_all(&redis.url(), 2).await;
    // Node 1 owns two groups, one of each dialect; their other members are
    // on node 2.
    let mut a = Peer::open_url(&nodes[0].ws_url("/lost")).await;
    assert!(a.connect(1, &[]).await);
    let mut b = Peer::open_url(&nodes[1].ws_url("/lost")).await;
    join_through(&mut b, &mut a, 2, &[1]).await;
    let mut c = Peer::open_url(&nodes[1].ws_url("/lost")).await;
    join_through(&mut c, &mut a, 3, &[1, 2]).await;
    let mut old_first = Peer::open_url(&nodes[0].ws_url("/lost-old?protocol=legacy")).await;
    assert_eq!(recv_legacy(&mut old_first).await, L::IsFirst(true));
    let mut old_second = Peer::open_url(&nodes[1].ws_url("/lost-old?protocol=legacy")).await;
    assert_eq!(recv_legacy(&mut old_second).await, L::IsFirst(false));
    send_legacy(&mut old_second, legacy_data(0, b"offer")).await;
    assert!(matches!(recv_legacy(&mut old_first).await, L::Content(_)));
    wait_for_snapshot(&redis, "sigver", "lost").await;
    wait_for_snapshot(&redis, "sigver-legacy", "lost-old").await;
    // Whatever the owner still had to write is written by now.
    tokio::time::sleep(Duration::from_millis(200)).await;

    // The owner dies and, before node 2 adopts its groups, their snapshots
    // become unusable: one deleted, the other corrupted.
    nodes[0].kill_hard();
    SnapshotLoss::Deleted.apply(&redis, "sigver", "lost");
    SnapshotLoss::Corrupted.apply(&redis, "sigver-legacy", "lost-old");
    let bounced = (1012, "room moved: join again".to_owned());
    for peer in [&mut b, &mut c, &mut old_second] {
        assert_eq!(close_of(peer).await, bounced);
    }

    // They join again, on node 2: the groups start afresh.
    let mut b = Peer::open_url(&nodes[1].ws_url("/lost")).await;
    assert!(b.connect(2, &[]).await, "B founds the group again");
    let mut c = Peer::open_url(&nodes[1].ws_url("/lost")).await;
    join_through(&mut c, &mut b, 3, &[2]).await;
    let mut old_second = Peer::open_url(&nodes[1].ws_url("/lost-old?protocol=legacy")).await;
    assert_eq!(recv_legacy(&mut old_second).await, L::IsFirst(true));
}

/// `node`'s cluster figures from `/stats`.
async fn cluster_stats(node: &NodeProcess) -> serde_json::Value {
    let stats: serde_json::Value = reqwest::get(node.http_url("/stats"))
        .await
        .expect("GET /stats")
        .json()
        .await
        .expect("stats JSON");
    stats["cluster"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_reset_bounces_the_members_whose_traffic_crossed_it() {
    if !redis_server_available() {
        return;
    }
    let redis = RedisServer::start();
    // A long dead timeout: node 2 is frozen for a while and must not be
    // judged dead meanwhile (a link reset, not a node death, is tested).
    let slow_death = [("SIGWAY_CLUSTER__DEAD_AFTER_MS", "8000")];
    let mut nodes = vec![
        NodeProcess::spawn_with(&redis.url(), 1, &slow_death),
        NodeProcess::spawn_with(&redis.url(), 2, &slow_death),
    ];
    for node in &mut nodes {
        node.wait_ready().await;
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    // X on node 1 owns the group; Y on node 2 joined through X.
    let mut x = Peer::open_url(&nodes[0].ws_url("/reset")).await;
    assert!(x.connect(1, &[]).await);
    let mut y = Peer::open_url(&nodes[1].ws_url("/reset")).await;
    let sy = join_through(&mut y, &mut x, 2, &[1]).await;

    // Node 2 freezes and loses its subscription (as when Redis drops a
    // subscriber): what node 1 sends it meanwhile is lost, and more than
    // node 1's retransmit ring holds (4 MiB) goes to Y.
    nodes[1].freeze();
    let killed = redis
        .command(&["CLIENT", "KILL", "TYPE", "pubsub"])
        .expect("CLIENT KILL");
    assert!(killed.parse::<u32>().is_ok_and(|n| n >= 2), "{killed}");
    let sent_before = cluster_stats(&nodes[0]).await["messages_sent"]
        .as_u64()
        .expect("messages_sent");
    const CHUNKS: u64 = 96;
    let chunk = vec![b'x'; 64 * 1024];
    for _ in 0..CHUNKS {
        x.content(0, sy, &chunk, false).await;
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    while cluster_stats(&nodes[0]).await["messages_sent"].as_u64() < Some(sent_before + CHUNKS) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "node 1 relays the chunks to node 2"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    nodes[1].thaw();

    // Node 2 subscribes again and asks for what it missed, which node 1
    // no longer has: the link resets. Y, whose group runs on node 1, is
    // bounced (1012) and X hears the end of its binding with Y.
    assert_eq!(
        close_of(&mut y).await,
        (1012, "room moved: join again".to_owned())
    );
    assert_eq!(x.recv_content().await, (sy, 0, vec![]));
    for node in &nodes {
        let resets = cluster_stats(node).await["link_resets"].as_u64();
        assert!(resets >= Some(1), "link resets counted: {resets:?}");
    }
    // Y joins again, through X, across the new generation of the link.
    let mut y = Peer::open_url(&nodes[1].ws_url("/reset")).await;
    join_through(&mut y, &mut x, 2, &[1]).await;
}
