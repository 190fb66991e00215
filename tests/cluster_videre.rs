//! videre rooms across cluster nodes, through real sockets and a real
//! Redis: three gateways on loopback share one `redis-server` (started here
//! on a port of its own; the main scenarios also on a 3-master Redis
//! Cluster), and videre users of one room, each on another
//! node, see every rule of `spec/videre.md` as on one node: initiator
//! flags, the announce to everyone, broadcast to every member including the
//! sender, `ping` answered to the sender only with the users in join order,
//! a `connect` elsewhere leaving the first room, disconnect notices (event,
//! closed socket, stopped node), and the member limit's refusal notice,
//! word for word the one a node alone sends. A room whose owner node stops
//! or is killed (SIGKILL, with `sigway` processes) is adopted by a survivor
//! from its snapshot: its other users stay, in join order, and hear the
//! gone node's users' disconnect notices once, as for dropped sockets.
//! Clients use raw SockJS WebSockets (`/echo/websocket`) unless a test
//! needs another transport. Skips with one line when `redis-server` is not
//! installed.

mod cluster_support;
mod videre_support;

// The sigver helpers, shared with cluster_support (loaded once).
use videre_support::common;

use std::time::Duration;

use cluster_support::redis_harness::redis_server_available;
use cluster_support::{
    Backend, DEAD_AFTER_MS, NodeProcess, Redis, node_settings, on_both_backends, start_nodes,
};
use serde_json::json;
use sigway::app::BackgroundServer;
use sigway::config::Settings;
use videre_support::{Client, Transport, connect, expect_packet, packet};

/// Three nodes on `redis` with `adjust`ed settings, each ready and having
/// heard the others.
async fn cluster_of_three(redis: &Redis, adjust: impl Fn(&mut Settings)) -> Vec<BackgroundServer> {
    start_nodes(
        (1..=3)
            .map(|node| {
                let mut settings = node_settings(videre_support::settings(), &redis.url(), node);
                adjust(&mut settings);
                settings
            })
            .collect(),
    )
    .await
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

on_both_backends!(a_room_spread_over_three_nodes_follows_every_rule);
async fn a_room_spread_over_three_nodes_follows_every_rule(backend: Backend) {
    let redis = Redis::start(backend);
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
    let redis = Redis::start(Backend::Standalone);
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

/// `client` receives the disconnect notices of `users` (in any order: they
/// left as their node went), each once, and nothing else meanwhile.
async fn expect_disconnects(client: &mut Client, users: &[&str], room: &str) {
    let mut heard = Vec::new();
    for _ in users {
        let notice = client.recv_json().await;
        assert_eq!(notice["Header"]["Event"], "disconnect", "{notice}");
        assert_eq!(notice["Header"]["RoomId"], room, "{notice}");
        assert_eq!(notice["Payload"], "", "{notice}");
        heard.push(notice["Header"]["UserId"].as_str().unwrap_or("").to_owned());
    }
    heard.sort();
    let mut expected: Vec<&str> = users.to_vec();
    expected.sort_unstable();
    assert_eq!(heard, expected, "each gone user's notice, once");
}

/// A broadcast of `user` reaches every client of `members` (the sender
/// included), unchanged.
async fn broadcast(sender: &mut Client, user: &str, room: &str, others: &mut [&mut Client]) {
    let offer = packet(
        "broadcast",
        user,
        room,
        json!({"Type": "Ice Offer", "n": 1}),
    )
    .to_string();
    sender.send(&offer).await;
    assert_eq!(sender.recv().await, offer, "{user} hears its own broadcast");
    for other in others.iter_mut() {
        assert_eq!(other.recv().await, offer, "broadcast of {user}");
    }
}

on_both_backends!(a_room_whose_owner_stopped_is_adopted_with_its_users_in_join_order);
async fn a_room_whose_owner_stopped_is_adopted_with_its_users_in_join_order(backend: Backend) {
    let redis = Redis::start(backend);
    // A small outbox gives each session a credit of 2 packets in flight:
    // the adopted room must give it back for the adopter's own sessions.
    let mut nodes = cluster_of_three(&redis, |settings| settings.limits.outbound_queue = 8).await;
    // Node 1 owns the room (its user joined first); the users of nodes 1,
    // 2 and 3 alternate in the join order. B is on the framed WebSocket,
    // which carries a close code as is (a raw WebSocket's close frame says
    // 1000), so a bounce (1012) would show.
    let mut a = open(&nodes[0]).await;
    let mut b = Client::open(&nodes[1], Transport::FramedWebsocket).await;
    let mut a2 = open(&nodes[0]).await;
    let mut c = open(&nodes[2]).await;
    let mut d = open(&nodes[1]).await;
    join(&mut a, &mut [], "a", "adopted", true).await;
    join(&mut b, &mut [&mut a], "b", "adopted", false).await;
    join(&mut a2, &mut [&mut a, &mut b], "a2", "adopted", false).await;
    join(
        &mut c,
        &mut [&mut a, &mut b, &mut a2],
        "c",
        "adopted",
        false,
    )
    .await;
    join(
        &mut d,
        &mut [&mut a, &mut b, &mut a2, &mut c],
        "d",
        "adopted",
        false,
    )
    .await;

    // Node 1 stops: its users' sessions close, and the room moves to node
    // 2 or 3, rebuilt from its snapshot. Nobody else is bounced: each
    // survivor hears A's and A2's disconnect once (from node 1 before it
    // left, or from the adopter), and nothing else.
    let owner = nodes.remove(0);
    let stopping = std::thread::spawn(move || owner.stop());
    for survivor in [&mut b, &mut c, &mut d] {
        expect_disconnects(survivor, &["a", "a2"], "adopted").await;
    }
    for survivor in [&mut b, &mut c, &mut d] {
        survivor.expect_quiet().await;
    }

    // The room goes on, its order intact: ping (more packets than a
    // session's credit), broadcast, a newcomer who is not the initiator.
    for _ in 0..4 {
        ping(&mut c, "c", "adopted", &["b", "c", "d"]).await;
        ping(&mut b, "b", "adopted", &["b", "c", "d"]).await;
        ping(&mut d, "d", "adopted", &["b", "c", "d"]).await;
    }
    broadcast(&mut d, "d", "adopted", &mut [&mut b, &mut c]).await;
    let mut e = open(&nodes[1]).await;
    join(&mut e, &mut [&mut b, &mut c, &mut d], "e", "adopted", false).await;
    ping(&mut d, "d", "adopted", &["b", "c", "d", "e"]).await;
    // Leaving still works in the adopted room.
    c.close().await;
    for other in [&mut b, &mut d, &mut e] {
        expect_disconnect(other, "c", "adopted").await;
    }
    ping(&mut e, "e", "adopted", &["b", "d", "e"]).await;
    b.expect_quiet().await;
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

    let redis = Redis::start(Backend::Standalone);
    let nodes = cluster_of_three(&redis, limit).await;
    let across_nodes = refused_third(&nodes[0], &nodes[1], &nodes[2]).await;
    assert_eq!(
        across_nodes, on_one_node,
        "the refusal notice, word for word"
    );
}

/// A videre client on a raw SockJS WebSocket to `node`.
async fn open_on(node: &NodeProcess) -> Client {
    Client::open_websocket_url(&node.ws_url("/echo/websocket")).await
}

/// Within the dead timeout and half a second of `since`.
fn in_time(since: tokio::time::Instant, what: &str) {
    let elapsed = since.elapsed();
    assert!(
        elapsed < Duration::from_millis(DEAD_AFTER_MS + 500),
        "{what} after {elapsed:?}"
    );
}

on_both_backends!(nodes_killed_with_sigkill_leave_the_room_and_its_owner_is_adopted);
async fn nodes_killed_with_sigkill_leave_the_room_and_its_owner_is_adopted(backend: Backend) {
    let redis = Redis::start(backend);
    let mut nodes = NodeProcess::start_all(&redis.url(), 4).await;

    // A (node 1) owns the room; B is on node 2, C on node 3, D on node 4.
    let mut a = open_on(&nodes[0]).await;
    let mut b = open_on(&nodes[1]).await;
    let mut c = open_on(&nodes[2]).await;
    let mut d = open_on(&nodes[3]).await;
    join(&mut a, &mut [], "a", "killed", true).await;
    join(&mut b, &mut [&mut a], "b", "killed", false).await;
    join(&mut c, &mut [&mut a, &mut b], "c", "killed", false).await;
    join(&mut d, &mut [&mut a, &mut b, &mut c], "d", "killed", false).await;

    // A non-owner dies: the others hear B's disconnect within
    // dead_after + 0.5 s, as for a dropped socket, and only once.
    let killed = tokio::time::Instant::now();
    nodes[1].kill_hard();
    expect_disconnect(&mut a, "b", "killed").await;
    in_time(killed, "B's disconnect noticed");
    for other in [&mut c, &mut d] {
        expect_disconnect(other, "b", "killed").await;
    }
    ping(&mut d, "d", "killed", &["a", "c", "d"]).await;
    // (Quiet a while: the owner has written its snapshot without B.)
    for client in [&mut a, &mut c, &mut d] {
        client.expect_quiet().await;
    }

    // The owner dies: node 3 or 4 adopts the room from its snapshot. C and
    // D stay (no bounce), hear A's disconnect within the same bound, once,
    // and the room goes on in join order.
    let killed = tokio::time::Instant::now();
    nodes[0].kill_hard();
    expect_disconnect(&mut c, "a", "killed").await;
    in_time(killed, "A's disconnect noticed");
    expect_disconnect(&mut d, "a", "killed").await;
    c.expect_quiet().await;
    d.expect_quiet().await;
    ping(&mut d, "d", "killed", &["c", "d"]).await;
    ping(&mut c, "c", "killed", &["c", "d"]).await;
    broadcast(&mut c, "c", "killed", &mut [&mut d]).await;
    let mut e = open_on(&nodes[3]).await;
    join(&mut e, &mut [&mut c, &mut d], "e", "killed", false).await;
    let mut f = open_on(&nodes[2]).await;
    join(&mut f, &mut [&mut c, &mut d, &mut e], "f", "killed", false).await;
    ping(&mut e, "e", "killed", &["c", "d", "e", "f"]).await;
}
