//! The node bus over the in-memory transport: nodes find each other, go
//! down when silent or on `Bye`, deliver in order exactly once through
//! injected loss, duplication and pauses, reset a link when a pause
//! outlives the retransmit ring, and report readiness as the subscription
//! breaks and heals. Timers are short (heartbeat 50 ms) and every wait is
//! bounded, with slack for a loaded machine.

use std::time::{Duration, Instant};

use bytes::Bytes;
use sigway_cluster::{
    Bus, BusConfig, BusEvent, BusHandle, LinkConfig, MemoryTransport, NodeId, SendError,
};
use tokio::sync::mpsc;

const HEARTBEAT: Duration = Duration::from_millis(50);
const DEAD_AFTER: Duration = Duration::from_millis(300);
/// Upper bound for anything that should happen "soon".
const PATIENCE: Duration = Duration::from_secs(10);

fn config(node: NodeId) -> BusConfig {
    BusConfig {
        heartbeat: HEARTBEAT,
        dead_after: DEAD_AFTER,
        link: LinkConfig {
            resend_after: Duration::from_millis(50),
            ack_after: Duration::from_millis(5),
            ..LinkConfig::default()
        },
        ..BusConfig::new(node, 1000 + u64::from(node))
    }
}

struct Node {
    bus: BusHandle,
    events: mpsc::Receiver<BusEvent>,
}

fn start(hub: &MemoryTransport, config: BusConfig) -> Node {
    let (bus, events) = Bus::start(hub.clone(), config);
    Node { bus, events }
}

impl Node {
    /// Waits for the first event `wanted` accepts, skipping others.
    async fn wait_for(
        &mut self,
        what: &str,
        within: Duration,
        mut wanted: impl FnMut(&BusEvent) -> bool,
    ) -> BusEvent {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(event)) if wanted(&event) => return event,
                Ok(Some(_)) => {}
                Ok(None) => panic!("node {}: events ended before {what}", self.bus.node()),
                Err(_) => panic!("node {}: no {what} within {within:?}", self.bus.node()),
            }
        }
    }

    /// Waits until the node is ready (the event may already have been
    /// skipped by an earlier wait: the flag is set before it is sent).
    async fn wait_ready(&mut self) {
        if self.bus.is_ready() {
            return;
        }
        self.wait_for("Ready(true)", PATIENCE, |e| *e == BusEvent::Ready(true))
            .await;
    }

    /// Waits until every node in `peers` is up, whatever order they come.
    async fn wait_up(&mut self, peers: &[NodeId]) {
        let mut missing: Vec<NodeId> = peers.to_vec();
        while !missing.is_empty() {
            let event = self
                .wait_for("NodeUp", PATIENCE, |e| matches!(e, BusEvent::NodeUp(_)))
                .await;
            if let BusEvent::NodeUp(node) = event {
                missing.retain(|n| *n != node);
            }
        }
    }
}

fn numbered(i: u32) -> Bytes {
    Bytes::copy_from_slice(&i.to_be_bytes())
}

fn number(payload: &Bytes) -> u32 {
    u32::from_be_bytes(payload[..].try_into().expect("4-byte payload"))
}

#[tokio::test]
async fn two_nodes_see_each_other_up_and_become_ready() {
    let hub = MemoryTransport::new();
    let mut a = start(&hub, config(1));
    let mut b = start(&hub, config(2));
    a.wait_up(&[2]).await;
    b.wait_up(&[1]).await;
    a.wait_ready().await;
    b.wait_ready().await;
    assert!(a.bus.is_ready() && b.bus.is_ready());
    assert_eq!(a.bus.alive_nodes(), [2]);
    assert_eq!(b.bus.alive_nodes(), [1]);
    assert_eq!(a.bus.counters().nodes_up, 1);
    let registry = hub.registry();
    assert!(registry.contains_key(&1) && registry.contains_key(&2));
}

#[tokio::test]
async fn three_nodes_see_each_other_up_and_exchange_messages() {
    let hub = MemoryTransport::new();
    let mut nodes: Vec<Node> = (1..=3).map(|n| start(&hub, config(n))).collect();
    for node in &mut nodes {
        let me = node.bus.node();
        let others: Vec<NodeId> = (1..=3).filter(|n| *n != me).collect();
        node.wait_up(&others).await;
        assert_eq!(node.bus.alive_nodes(), others);
    }
    nodes[0]
        .bus
        .send(3, Bytes::from_static(b"from 1"))
        .expect("send");
    nodes[1]
        .bus
        .send(3, Bytes::from_static(b"from 2"))
        .expect("send");
    let mut got = Vec::new();
    for _ in 0..2 {
        let event = nodes[2]
            .wait_for("a message", PATIENCE, |e| {
                matches!(e, BusEvent::Message { .. })
            })
            .await;
        got.push(event);
    }
    got.sort_by_key(|e| format!("{e:?}"));
    assert_eq!(
        got,
        [
            BusEvent::Message {
                from: 1,
                payload: Bytes::from_static(b"from 1")
            },
            BusEvent::Message {
                from: 2,
                payload: Bytes::from_static(b"from 2")
            },
        ]
    );
}

#[tokio::test]
async fn a_node_that_stops_heartbeating_is_down_within_dead_after_and_a_heartbeat() {
    let hub = MemoryTransport::new();
    let mut a = start(&hub, config(1));
    // Node 2 runs on its own runtime, which is then dropped: the process
    // "dies" without a Bye, as with SIGKILL.
    let doomed = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let b = {
        let _inside = doomed.enter();
        start(&hub, config(2))
    };
    a.wait_up(&[2]).await;
    a.wait_ready().await;
    let killed = Instant::now();
    // The handle stays alive: closing it would make the bus say Bye if
    // its task still ran for a moment.
    doomed.shutdown_background();
    a.wait_for("NodeDown(2)", PATIENCE, |e| *e == BusEvent::NodeDown(2))
        .await;
    let took = killed.elapsed();
    // Its last heartbeat was at most one period before the kill; the
    // slack is for a machine shared with other builds.
    let slack = Duration::from_millis(250);
    assert!(
        took <= DEAD_AFTER + HEARTBEAT + slack,
        "down after {took:?}"
    );
    assert!(took + HEARTBEAT >= DEAD_AFTER, "down too early: {took:?}");
    assert_eq!(a.bus.alive_nodes(), Vec::<NodeId>::new());
    assert_eq!(
        a.bus.send(2, Bytes::from_static(b"late")),
        Err(SendError::NotAlive(2))
    );
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_is_ordered_and_exactly_once_through_loss_duplication_and_pauses() {
    const A_TO_B: u32 = 3000;
    const B_TO_A: u32 = 1000;
    let hub = MemoryTransport::new();
    let mut a = start(&hub, config(1));
    let mut b = start(&hub, config(2));
    a.wait_up(&[2]).await;
    b.wait_up(&[1]).await;

    let sender_a = a.bus.clone();
    let sender_b = b.bus.clone();
    let faults = hub.clone();
    let traffic = tokio::spawn(async move {
        for i in 0..A_TO_B {
            if i % 100 == 0 {
                faults.drop_inbox(2, 3);
                faults.duplicate_inbox(2, 3);
                faults.drop_inbox(1, 1);
                faults.duplicate_inbox(1, 1);
            }
            if i % 1000 == 500 {
                faults.pause(2, 100_000);
                tokio::time::sleep(Duration::from_millis(30)).await;
                faults.resume(2);
            }
            send_patiently(&sender_a, 2, numbered(i)).await;
            if i < B_TO_A {
                send_patiently(&sender_b, 1, numbered(i)).await;
            }
            if i % 50 == 0 {
                tokio::task::yield_now().await;
            }
        }
    });

    let (at_b, at_a) = tokio::join!(
        receive_in_order(&mut b, 1, A_TO_B),
        receive_in_order(&mut a, 2, B_TO_A)
    );
    traffic.await.expect("traffic task");
    assert_eq!(at_b, A_TO_B);
    assert_eq!(at_a, B_TO_A);
    let counters = a.bus.counters();
    assert_eq!(counters.messages_sent, u64::from(A_TO_B));
    assert_eq!(counters.messages_received, u64::from(B_TO_A));
    assert_eq!(counters.link_resets, 0);
    assert!(
        counters.retransmits > 0,
        "losses were repaired by resending"
    );
}

/// Sends, waiting (bounded) while the destination's queue is full.
async fn send_patiently(bus: &BusHandle, to: NodeId, payload: Bytes) {
    for _ in 0..10_000 {
        match bus.send(to, payload.clone()) {
            Ok(()) => return,
            Err(SendError::QueueFull(_)) => tokio::time::sleep(Duration::from_millis(1)).await,
            Err(error) => panic!("send to {to}: {error}"),
        }
    }
    panic!("send queue to {to} stayed full");
}

/// Receives `count` messages from `from`, checking they come 0, 1, 2, ...
/// with no reset; returns how many came.
async fn receive_in_order(node: &mut Node, from: NodeId, count: u32) -> u32 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut next = 0;
    while next < count {
        let event = tokio::time::timeout_at(deadline, node.events.recv())
            .await
            .unwrap_or_else(|_| panic!("only {next} of {count} messages from {from}"))
            .expect("events open");
        match event {
            BusEvent::Message {
                from: sender,
                payload,
            } => {
                assert_eq!(sender, from);
                assert_eq!(number(&payload), next, "out of order, lost or twice");
                next += 1;
            }
            BusEvent::LinkReset { peer } => panic!("link with {peer} reset"),
            BusEvent::NodeDown(peer) => panic!("node {peer} reported down"),
            _ => {}
        }
    }
    next
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_longer_than_the_ring_age_resets_the_link() {
    let hub = MemoryTransport::new();
    let short_ring = |node| BusConfig {
        dead_after: Duration::from_secs(3),
        link: LinkConfig {
            ring_age: Duration::from_millis(150),
            resend_after: Duration::from_millis(50),
            ack_after: Duration::from_millis(5),
            ..LinkConfig::default()
        },
        ..config(node)
    };
    let mut a = start(&hub, short_ring(1));
    let mut b = start(&hub, short_ring(2));
    a.wait_up(&[2]).await;
    b.wait_up(&[1]).await;

    // B's subscriber stalls and its buffer overflows after 5 deliveries,
    // while A keeps sending for longer than the ring keeps anything.
    hub.pause(2, 5);
    for i in 0..40 {
        a.bus.send(2, numbered(i)).expect("send");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    hub.resume(2);
    a.wait_for("LinkReset at A", PATIENCE, |e| {
        *e == BusEvent::LinkReset { peer: 2 }
    })
    .await;

    // B: whatever it got of the old generation came before its reset,
    // and nothing of it after.
    let mut before_reset = Vec::new();
    let is_message_or_reset =
        |e: &BusEvent| matches!(e, BusEvent::Message { .. } | BusEvent::LinkReset { .. });
    while let BusEvent::Message { payload, .. } = b
        .wait_for("LinkReset at B", PATIENCE, is_message_or_reset)
        .await
    {
        before_reset.push(number(&payload));
    }
    let expected: Vec<u32> = (0..before_reset.len() as u32).collect();
    assert_eq!(before_reset, expected, "an in-order prefix");
    assert!(before_reset.len() < 40, "something was lost");
    a.bus.send(2, numbered(1000)).expect("send after the reset");
    let after = b
        .wait_for("the message after the reset", PATIENCE, |e| {
            matches!(e, BusEvent::Message { .. })
        })
        .await;
    assert_eq!(
        after,
        BusEvent::Message {
            from: 1,
            payload: numbered(1000)
        }
    );
    assert!(a.bus.counters().link_resets >= 1);
}

#[tokio::test]
async fn bye_is_an_immediate_node_down() {
    let hub = MemoryTransport::new();
    let slow_death = |node| BusConfig {
        dead_after: Duration::from_secs(30),
        ..config(node)
    };
    let mut a = start(&hub, slow_death(1));
    let b = start(&hub, slow_death(2));
    a.wait_up(&[2]).await;
    let asked = Instant::now();
    b.bus.shutdown().await;
    a.wait_for("NodeDown(2)", Duration::from_secs(2), |e| {
        *e == BusEvent::NodeDown(2)
    })
    .await;
    assert!(asked.elapsed() < Duration::from_secs(2));
    assert!(!hub.registry().contains_key(&2), "deregistered");
    assert!(!b.bus.is_ready());
    assert!(
        b.bus.send(1, Bytes::new()).is_err(),
        "a stopped bus refuses"
    );
}

#[tokio::test]
async fn readiness_follows_the_subscription() {
    let hub = MemoryTransport::new();
    let mut a = start(&hub, config(1));
    a.wait_ready().await;
    hub.interrupt(1);
    a.wait_for("Ready(false)", PATIENCE, |e| *e == BusEvent::Ready(false))
        .await;
    assert!(!a.bus.is_ready());
    hub.resubscribe(1);
    a.wait_ready().await;
    assert!(a.bus.is_ready());

    // A closed subscription: the bus subscribes again by itself.
    hub.kill_subscription(1);
    a.wait_for("Ready(false)", PATIENCE, |e| *e == BusEvent::Ready(false))
        .await;
    a.wait_ready().await;

    // Own heartbeats that stop coming back (subscriber stalled) also count.
    hub.pause(1, 0);
    a.wait_for("Ready(false)", PATIENCE, |e| *e == BusEvent::Ready(false))
        .await;
    hub.resume(1);
    a.wait_ready().await;
}

#[tokio::test]
async fn an_unreachable_transport_is_retried_until_it_answers() {
    let hub = MemoryTransport::new();
    hub.set_unreachable(true);
    let mut a = start(&hub, config(1));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!a.bus.is_ready());
    hub.set_unreachable(false);
    a.wait_ready().await;
}

#[tokio::test]
async fn sends_are_refused_for_nodes_not_alive_and_a_full_queue_starts_the_link_over() {
    let hub = MemoryTransport::new();
    let mut a = start(
        &hub,
        BusConfig {
            // Eight 4-byte payloads.
            send_queue_bytes: 32,
            ..config(1)
        },
    );
    let mut b = start(&hub, config(2));
    a.wait_up(&[2]).await;
    assert_eq!(a.bus.send(3, Bytes::new()), Err(SendError::NotAlive(3)));
    assert_eq!(
        a.bus.send(1, Bytes::new()),
        Err(SendError::NotAlive(1)),
        "itself"
    );
    // B hears the link's first generation.
    a.bus.send(2, numbered(100)).expect("send");
    b.wait_for("the first payload", PATIENCE, |e| {
        matches!(e, BusEvent::Message { .. })
    })
    .await;
    // This test's runtime has one thread: the bus task cannot take the
    // queue in while this loop runs.
    let results: Vec<_> = (0..10).map(|i| a.bus.send(2, numbered(i))).collect();
    assert!(results[..8].iter().all(Result::is_ok));
    assert_eq!(
        results[8..],
        [Err(SendError::QueueFull(2)), Err(SendError::QueueFull(2))]
    );
    // A payload was lost: the link starts over (both ends hear of it)
    // before anything more goes to that node, so nothing sent after the
    // lost payload arrives as if none were missing.
    a.wait_for("LinkReset at A", PATIENCE, |e| {
        *e == BusEvent::LinkReset { peer: 2 }
    })
    .await;
    assert_eq!(a.bus.send(2, numbered(10)), Ok(()), "open again after");
    b.wait_for("LinkReset at B", PATIENCE, |e| {
        *e == BusEvent::LinkReset { peer: 1 }
    })
    .await;
    let after = b
        .wait_for("the payload sent after", PATIENCE, |e| {
            matches!(e, BusEvent::Message { .. })
        })
        .await;
    assert_eq!(
        after,
        BusEvent::Message {
            from: 1,
            payload: numbered(10)
        },
        "nothing of the old stream after the reset"
    );
}
