//! videre rooms across cluster nodes, through real sockets and a real
//! Redis: three gateways on loopback share one `redis-server` (started here
//! on a port of its own), and videre users of one room, each on another
//! node, see every rule of `spec/videre.md` as on one node: initiator
//! flags, the announce to everyone, broadcast to every member including the
//! sender, `ping` answered to the sender only with the users in join order,
//! a `connect` elsewhere leaving the first room, disconnect notices (event,
//! closed socket, stopped node), and the member limit's refusal notice,
//! word for word the one a node alone sends. A stopped owner node bounces
//! the members of its rooms on other nodes (1012), as for sigver groups.
//! Clients use raw SockJS WebSockets (`/echo/websocket`). Skips with one
//! line when `redis-server` is not installed.

mod videre_support;

#[path = "../crates/sigway-cluster/tests/support/redis_harness.rs"]
mod redis_harness;

use std::time::Duration;

use redis_harness::{RedisServer, redis_server_available};
use serde_json::json;
use sigway::app::BackgroundServer;
use sigway::config::Settings;
use videre_support::{Client, Incoming, Transport, WAIT, connect, expect_packet, packet};

/// Settings of one node of a test cluster on `redis`: fast heartbeats so
/// that a node that goes away is noticed within a second.
fn node_settings(redis: &str, node: u32) -> Settings {
    let mut settings = videre_support::settings();
    settings.workers = 1;
    settings.cluster.redis_url = redis.to_owned();
    settings.cluster.node_id = node;
    settings.cluster.heartbeat_ms = 100;
    settings.cluster.dead_after_ms = 600;
    settings.cluster.release_after_ms = 300;
    settings
}

async fn ready(server: &BackgroundServer) -> bool {
    reqwest::get(server.http_url("/readyz"))
        .await
        .is_ok_and(|response| response.status() == 200)
}

/// Three nodes on `redis` with `adjust`ed settings, each ready and having
/// heard the others.
async fn cluster_of_three(
    redis: &RedisServer,
    adjust: impl Fn(&mut Settings),
) -> Vec<BackgroundServer> {
    let nodes: Vec<BackgroundServer> = (1..=3)
        .map(|node| {
            let mut settings = node_settings(&redis.url(), node);
            adjust(&mut settings);
            BackgroundServer::start(settings).expect("node starts")
        })
        .collect();
    let deadline = tokio::time::Instant::now() + WAIT;
    for node in &nodes {
        while !ready(node).await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "every node gets ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // A few heartbeats, so that each node has heard the others.
    tokio::time::sleep(Duration::from_millis(400)).await;
    nodes
}

async fn open(node: &BackgroundServer) -> Client {
    Client::open(node, Transport::RawWebsocket).await
}

/// `user` connects to `room`; every client of `hearers` (the joiner last)
/// receives its announce with `initiator` as payload.
async fn join(
    joiner: &mut Client,
    hearers: &mut [&mut Client],
    user: &str,
    room: &str,
    initiator: bool,
) {
    connect(joiner, user, room).await;
    let flag = if initiator { "true" } else { "false" };
    for hearer in hearers.iter_mut() {
        let announce = expect_packet(hearer, "connect", user, room).await;
        assert_eq!(
            announce["Payload"], flag,
            "announce of {user} to the others"
        );
    }
    let own = expect_packet(joiner, "connect", user, room).await;
    assert_eq!(own["Payload"], flag, "announce of {user} to itself");
}

/// `pinger` (as `user`) pings `room` and gets `users` back.
async fn ping(pinger: &mut Client, user: &str, room: &str, users: &[&str]) {
    pinger
        .send_json(&packet("ping", user, room, json!("{}")))
        .await;
    let answer = expect_packet(pinger, "ping", user, room).await;
    let expected = serde_json::to_string(users).expect("json");
    assert_eq!(answer["Payload"], expected.as_str(), "ping of {user}");
}

async fn expect_disconnect(client: &mut Client, user: &str, room: &str) {
    let notice = expect_packet(client, "disconnect", user, room).await;
    assert_eq!(notice["Payload"], "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_spread_over_three_nodes_follows_every_rule() {
    if !redis_server_available() {
        return;
    }
    let redis = RedisServer::start();
    let nodes = cluster_of_three(&redis, |_| {}).await;
    let mut a = open(&nodes[0]).await;
    let mut b = open(&nodes[1]).await;
    let mut c = open(&nodes[2]).await;

    // The first user is the initiator; later ones are not, and everyone
    // (the joiner included) hears each announce.
    join(&mut a, &mut [], "a", "call", true).await;
    join(&mut b, &mut [&mut a], "b", "call", false).await;
    join(&mut c, &mut [&mut a, &mut b], "c", "call", false).await;

    // A broadcast reaches every member, the sender included, unchanged.
    let offer = packet(
        "broadcast",
        "b",
        "call",
        json!({"Type": "Ice Offer", "IcePacket": {"sdp": "v=0\r\n\u{e9}", "extra": [1, 2]}}),
    )
    .to_string();
    b.send(&offer).await;
    for client in [&mut a, &mut b, &mut c] {
        assert_eq!(client.recv().await, offer);
    }

    // A ping is answered to its sender only, with the users in join order.
    ping(&mut c, "c", "call", &["a", "b", "c"]).await;
    ping(&mut a, "a", "call", &["a", "b", "c"]).await;
    a.expect_quiet().await;
    b.expect_quiet().await;
    c.expect_quiet().await;

    // Connecting again to the same room leaves first: the others hear the
    // disconnect, then the new announce; the user moves to the end.
    connect(&mut a, "a", "call").await;
    for other in [&mut b, &mut c] {
        expect_disconnect(other, "a", "call").await;
        let announce = expect_packet(other, "connect", "a", "call").await;
        assert_eq!(announce["Payload"], "false");
    }
    assert_eq!(
        expect_packet(&mut a, "connect", "a", "call").await["Payload"],
        "false"
    );
    ping(&mut b, "b", "call", &["b", "c", "a"]).await;

    // A connect to another room leaves the first one.
    join(&mut c, &mut [], "c", "elsewhere", true).await;
    for other in [&mut a, &mut b] {
        expect_disconnect(other, "c", "call").await;
    }
    ping(&mut a, "a", "call", &["b", "a"]).await;
    ping(&mut c, "c", "elsewhere", &["c"]).await;

    // A disconnect event: the others hear it, the session stays usable.
    b.send_json(&packet("disconnect", "b", "call", json!("")))
        .await;
    expect_disconnect(&mut a, "b", "call").await;
    b.send_json(&packet("ping", "b", "call", json!("{}"))).await;
    let refused = expect_packet(&mut b, "error", "b", "call").await;
    assert_eq!(refused["Payload"], "not connected to this room");
    join(&mut b, &mut [&mut c], "b", "elsewhere", false).await;

    // A closed socket: the others hear the disconnect.
    c.close().await;
    expect_disconnect(&mut b, "c", "elsewhere").await;
    ping(&mut b, "b", "elsewhere", &["b"]).await;
    a.expect_quiet().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_node_takes_its_users_out_of_the_rooms_of_the_others() {
    if !redis_server_available() {
        return;
    }
    let redis = RedisServer::start();
    let mut nodes = cluster_of_three(&redis, |_| {}).await;
    // Node 1 owns the room (its user joined first).
    let mut a = open(&nodes[0]).await;
    let mut b = open(&nodes[1]).await;
    let mut c = open(&nodes[2]).await;
    join(&mut a, &mut [], "a", "r", true).await;
    join(&mut b, &mut [&mut a], "b", "r", false).await;
    join(&mut c, &mut [&mut a, &mut b], "c", "r", false).await;

    // Node 2 stops: its user is gone from the room, as if its socket had
    // dropped.
    let gone = nodes.remove(1);
    let stopping = std::thread::spawn(move || gone.stop());
    for survivor in [&mut a, &mut c] {
        expect_disconnect(survivor, "b", "r").await;
    }
    ping(&mut c, "c", "r", &["a", "c"]).await;
    // The room lives on: a newcomer on node 3 joins it.
    let mut d = open(&nodes[1]).await;
    join(&mut d, &mut [&mut a, &mut c], "d", "r", false).await;
    ping(&mut a, "a", "r", &["a", "c", "d"]).await;
    stopping.join().expect("node 2 stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_of_a_room_whose_owner_stopped_are_told_to_come_again() {
    if !redis_server_available() {
        return;
    }
    let redis = RedisServer::start();
    let mut nodes = cluster_of_three(&redis, |_| {}).await;
    let mut a = open(&nodes[0]).await;
    // SockJS framing carries the close code as is (a raw WebSocket's close
    // frame says 1000, the SockJS layer's choice for codes outside its list).
    let mut b = Client::open(&nodes[1], Transport::FramedWebsocket).await;
    join(&mut a, &mut [], "a", "moved", true).await;
    join(&mut b, &mut [&mut a], "b", "moved", false).await;
    // Node 1 ran the room; a videre room has no snapshot to be adopted
    // from, so B is closed with 1012 ("service restart") to join again.
    let owner = nodes.remove(0);
    let stopping = std::thread::spawn(move || owner.stop());
    // (A's session, closed by its stopping node, may be announced first.)
    let mut closed = None;
    for _ in 0..3 {
        match b.next().await {
            Incoming::Closed(code, reason) => {
                closed = Some((code, reason));
                break;
            }
            Incoming::Message(text) => {
                let notice: serde_json::Value = serde_json::from_str(&text).expect("json");
                assert_eq!(notice["Header"]["Event"], "disconnect", "{text}");
                assert_eq!(notice["Header"]["UserId"], "a", "{text}");
            }
        }
    }
    let (code, reason) = closed.expect("B's session is closed");
    assert_eq!((code, reason.as_str()), (1012, "room moved: join again"));
    // Joining again works at once, on a new owner.
    let mut b = open(&nodes[0]).await;
    let mut c = open(&nodes[1]).await;
    join(&mut b, &mut [], "b", "moved", true).await;
    join(&mut c, &mut [&mut b], "c", "moved", false).await;
    stopping.join().expect("node 1 stopped");
}

/// Fills room `full` (limit 2) with users on `first` and `second`, then
/// has a third user on `third` try to join: returns the notice it gets.
async fn refused_third(
    first: &BackgroundServer,
    second: &BackgroundServer,
    third: &BackgroundServer,
) -> String {
    let mut a = open(first).await;
    let mut b = open(second).await;
    let mut c = open(third).await;
    join(&mut a, &mut [], "a", "full", true).await;
    join(&mut b, &mut [&mut a], "b", "full", false).await;
    connect(&mut c, "c", "full").await;
    let notice = c.recv().await;
    a.expect_quiet().await;
    b.expect_quiet().await;
    // Refused, so not a member: strict mode refuses its broadcasts.
    c.send_json(&packet("broadcast", "c", "full", json!({})))
        .await;
    let refused = expect_packet(&mut c, "error", "c", "full").await;
    assert_eq!(refused["Payload"], "not connected to this room");
    // Once a place is free, the third user gets in.
    b.send_json(&packet("disconnect", "b", "full", json!("")))
        .await;
    expect_disconnect(&mut a, "b", "full").await;
    join(&mut c, &mut [&mut a], "c", "full", false).await;
    ping(&mut c, "c", "full", &["a", "c"]).await;
    notice
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_member_limit_refuses_across_nodes_exactly_as_on_one_node() {
    if !redis_server_available() {
        return;
    }
    let limit = |settings: &mut Settings| settings.limits.max_members_per_room = 2;
    let mut alone = videre_support::settings();
    limit(&mut alone);
    let alone = videre_support::start(alone);
    let on_one_node = refused_third(&alone, &alone, &alone).await;
    let notice: serde_json::Value = serde_json::from_str(&on_one_node).expect("json");
    assert_eq!(notice["Header"]["Event"], "error");
    assert_eq!(notice["Payload"], "room full (limit 2 members)");

    let redis = RedisServer::start();
    let nodes = cluster_of_three(&redis, limit).await;
    let across_nodes = refused_third(&nodes[0], &nodes[1], &nodes[2]).await;
    assert_eq!(
        across_nodes, on_one_node,
        "the refusal notice, word for word"
    );
}
