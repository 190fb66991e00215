//! An in-process [`Transport`]: one hub shared by several nodes of one
//! test, with faults on demand.
//!
//! It keeps the same promises as the Redis transport (per-node inboxes, a
//! control channel every subscriber gets, the node registry, and the
//! directory's claim, fenced snapshot and fenced release as the trait docs
//! say, and node figures that expire), so the bus and the gateway's
//! cluster rooms can be tested without a
//! Redis server. The faults are the ways pub/sub really fails: lose the
//! next deliveries to a node, duplicate them, hold them back (with a
//! bounded queue, as Redis' output buffer limit drops a slow subscriber),
//! interrupt a subscription (what is published meanwhile is lost) or close
//! it, and make every call fail as if the engine were unreachable.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::transport::{Claim, Delivery, GroupHash, NodeId, Transport, TransportError};

/// How many deliveries a subscriber's channel holds before the hub drops
/// more (a subscriber that does not read loses messages, as in Redis).
const SUBSCRIBER_CAPACITY: usize = 1 << 16;

/// The shared in-memory hub; clones are handles on the same hub.
#[derive(Debug, Clone, Default)]
pub struct MemoryTransport {
    hub: Arc<Mutex<Hub>>,
}

#[derive(Debug, Default)]
struct Hub {
    subscribers: HashMap<NodeId, Subscriber>,
    registry: BTreeMap<NodeId, u64>,
    directory: HashMap<GroupHash, Entry>,
    /// Each node's figures, and until when they live.
    figures: HashMap<NodeId, (Bytes, Instant)>,
    unreachable: bool,
}

#[derive(Debug)]
struct Subscriber {
    sender: mpsc::Sender<Delivery>,
    interrupted: bool,
    drop_next: usize,
    duplicate_next: usize,
    /// While paused: what waits, and how much may wait.
    held: Option<(VecDeque<Delivery>, usize)>,
}

/// The owner of a released group's tombstone (no node has id 0).
const RELEASED: NodeId = 0;

#[derive(Debug, Clone)]
struct Entry {
    owner: NodeId,
    epoch: u64,
    snapshot: Option<Bytes>,
}

impl Subscriber {
    /// Hands `delivery` on (or holds, drops, duplicates it); returns
    /// whether the subscriber counts as a receiver.
    fn offer(&mut self, delivery: Delivery, is_inbox: bool) -> bool {
        if self.interrupted || self.sender.is_closed() {
            return false;
        }
        let copies = if is_inbox && self.drop_next > 0 {
            // Counted as received: Redis had it, the subscriber lost it.
            self.drop_next -= 1;
            return true;
        } else if is_inbox && self.duplicate_next > 0 {
            self.duplicate_next -= 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            match &mut self.held {
                Some((queue, limit)) => {
                    if queue.len() < *limit {
                        queue.push_back(delivery.clone());
                    }
                }
                None => {
                    let _ = self.sender.try_send(delivery.clone());
                }
            }
        }
        true
    }
}

impl MemoryTransport {
    /// A new, empty hub.
    pub fn new() -> Self {
        Self::default()
    }

    fn hub(&self) -> MutexGuard<'_, Hub> {
        // A test that panicked while holding the lock must not hide its
        // own failure behind a poisoned-lock panic elsewhere.
        self.hub
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn with_subscriber(&self, node: NodeId, change: impl FnOnce(&mut Subscriber)) {
        if let Some(subscriber) = self.hub().subscribers.get_mut(&node) {
            change(subscriber);
        }
    }

    fn reachable(&self) -> Result<MutexGuard<'_, Hub>, TransportError> {
        let hub = self.hub();
        if hub.unreachable {
            return Err(TransportError::Unreachable(
                "memory hub set unreachable".into(),
            ));
        }
        Ok(hub)
    }

    /// Loses the next `count` inbox deliveries to `node`.
    pub fn drop_inbox(&self, node: NodeId, count: usize) {
        self.with_subscriber(node, |s| s.drop_next += count);
    }

    /// Delivers the next `count` inbox deliveries to `node` twice.
    pub fn duplicate_inbox(&self, node: NodeId, count: usize) {
        self.with_subscriber(node, |s| s.duplicate_next += count);
    }

    /// Holds back everything for `node` (at most `limit` deliveries; more
    /// are lost) until [`MemoryTransport::resume`].
    pub fn pause(&self, node: NodeId, limit: usize) {
        self.with_subscriber(node, |s| s.held = Some((VecDeque::new(), limit)));
    }

    /// Delivers what [`MemoryTransport::pause`] held back, in order.
    pub fn resume(&self, node: NodeId) {
        self.with_subscriber(node, |s| {
            if let Some((queue, _)) = s.held.take() {
                for delivery in queue {
                    let _ = s.sender.try_send(delivery);
                }
            }
        });
    }

    /// Breaks `node`'s subscription: it gets [`Delivery::Interrupted`] and
    /// loses everything until [`MemoryTransport::resubscribe`].
    pub fn interrupt(&self, node: NodeId) {
        self.with_subscriber(node, |s| {
            s.interrupted = true;
            let _ = s.sender.try_send(Delivery::Interrupted);
        });
    }

    /// Restores an interrupted subscription ([`Delivery::Resubscribed`]).
    pub fn resubscribe(&self, node: NodeId) {
        self.with_subscriber(node, |s| {
            s.interrupted = false;
            let _ = s.sender.try_send(Delivery::Resubscribed);
        });
    }

    /// Closes `node`'s subscription channel (the node must subscribe again).
    pub fn kill_subscription(&self, node: NodeId) {
        self.hub().subscribers.remove(&node);
    }

    /// Makes every call fail with [`TransportError::Unreachable`] (or work
    /// again). Subscriptions already made keep delivering nothing new.
    pub fn set_unreachable(&self, unreachable: bool) {
        self.hub().unreachable = unreachable;
    }

    /// The node registry: node → last registration time in ms.
    pub fn registry(&self) -> BTreeMap<NodeId, u64> {
        self.hub().registry.clone()
    }
}

impl Transport for MemoryTransport {
    async fn subscribe(&self, me: NodeId) -> Result<mpsc::Receiver<Delivery>, TransportError> {
        let mut hub = self.reachable()?;
        let (sender, receiver) = mpsc::channel(SUBSCRIBER_CAPACITY);
        hub.subscribers.insert(
            me,
            Subscriber {
                sender,
                interrupted: false,
                drop_next: 0,
                duplicate_next: 0,
                held: None,
            },
        );
        Ok(receiver)
    }

    async fn publish_inbox(&self, node: NodeId, payload: Bytes) -> Result<usize, TransportError> {
        let mut hub = self.reachable()?;
        Ok(hub
            .subscribers
            .get_mut(&node)
            .map_or(0, |s| usize::from(s.offer(Delivery::Inbox(payload), true))))
    }

    async fn publish_control(&self, payload: Bytes) -> Result<usize, TransportError> {
        let mut hub = self.reachable()?;
        Ok(hub
            .subscribers
            .values_mut()
            .filter_map(|s| {
                s.offer(Delivery::Control(payload.clone()), false)
                    .then_some(())
            })
            .count())
    }

    async fn register(&self, me: NodeId, now_ms: u64) -> Result<(), TransportError> {
        self.reachable()?.registry.insert(me, now_ms);
        Ok(())
    }

    async fn deregister(&self, node: NodeId) -> Result<(), TransportError> {
        self.reachable()?.registry.remove(&node);
        Ok(())
    }

    async fn claim(
        &self,
        group: GroupHash,
        me: NodeId,
        expected: Option<(NodeId, u64)>,
    ) -> Result<Claim, TransportError> {
        let mut hub = self.reachable()?;
        let entry = match hub.directory.get_mut(&group) {
            None => hub.directory.entry(group).or_insert(Entry {
                owner: me,
                epoch: 1,
                snapshot: None,
            }),
            // Released: claimed again, continuing the epochs.
            Some(entry) if entry.owner == RELEASED => {
                entry.owner = me;
                entry.epoch += 1;
                entry
            }
            Some(entry) => {
                if expected == Some((entry.owner, entry.epoch)) && entry.owner != me {
                    entry.owner = me;
                    entry.epoch += 1;
                }
                entry
            }
        };
        Ok(Claim {
            owner: entry.owner,
            epoch: entry.epoch,
            snapshot: if entry.owner == me {
                entry.snapshot.clone()
            } else {
                None
            },
        })
    }

    async fn write_snapshot(
        &self,
        group: GroupHash,
        me: NodeId,
        epoch: u64,
        snapshot: Bytes,
    ) -> Result<bool, TransportError> {
        let mut hub = self.reachable()?;
        match hub.directory.get_mut(&group) {
            Some(entry) if entry.owner == me && entry.epoch == epoch => {
                entry.snapshot = Some(snapshot);
                Ok(true)
            }
            Some(_) => Ok(false),
            // The directory lost the group (see the trait): claimed again.
            None => {
                let snapshot = Some(snapshot);
                let entry = Entry {
                    owner: me,
                    epoch,
                    snapshot,
                };
                hub.directory.insert(group, entry);
                Ok(true)
            }
        }
    }

    async fn release(
        &self,
        group: GroupHash,
        me: NodeId,
        epoch: u64,
    ) -> Result<bool, TransportError> {
        let mut hub = self.reachable()?;
        let owned = hub
            .directory
            .get(&group)
            .is_some_and(|entry| entry.owner == me && entry.epoch == epoch);
        if let Some(entry) = hub.directory.get_mut(&group).filter(|_| owned) {
            // A tombstone, as Redis keeps one: epochs continue, and a late
            // snapshot write cannot claim the group again.
            entry.owner = RELEASED;
            entry.snapshot = None;
        }
        Ok(owned)
    }

    async fn write_node_figures(
        &self,
        me: NodeId,
        figures: Bytes,
        ttl: Duration,
    ) -> Result<(), TransportError> {
        let until = Instant::now() + ttl;
        self.reachable()?.figures.insert(me, (figures, until));
        Ok(())
    }

    async fn read_node_figures(
        &self,
        nodes: Vec<NodeId>,
    ) -> Result<Vec<(NodeId, Bytes)>, TransportError> {
        let mut hub = self.reachable()?;
        let now = Instant::now();
        hub.figures.retain(|_, (_, until)| *until > now);
        Ok(nodes
            .into_iter()
            .filter_map(|node| Some((node, hub.figures.get(&node)?.0.clone())))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: GroupHash = [7; 16];

    #[tokio::test]
    async fn a_free_group_goes_to_the_first_claimer_at_epoch_1() {
        let hub = MemoryTransport::new();
        let claim = hub.claim(G, 1, None).await.expect("claim");
        assert_eq!(
            claim,
            Claim {
                owner: 1,
                epoch: 1,
                snapshot: None
            }
        );
    }

    #[tokio::test]
    async fn a_held_group_answers_its_owner_and_no_snapshot_to_others() {
        let hub = MemoryTransport::new();
        hub.claim(G, 1, None).await.expect("claim");
        assert!(
            hub.write_snapshot(G, 1, 1, Bytes::from_static(b"s1"))
                .await
                .expect("write")
        );
        let other = hub.claim(G, 2, None).await.expect("claim");
        assert_eq!((other.owner, other.epoch, other.snapshot), (1, 1, None));
        let stale = hub.claim(G, 2, Some((1, 0))).await.expect("claim");
        assert_eq!((stale.owner, stale.epoch), (1, 1), "wrong epoch: unchanged");
        let again = hub.claim(G, 1, None).await.expect("claim");
        assert_eq!(
            again.snapshot,
            Some(Bytes::from_static(b"s1")),
            "the owner sees it"
        );
    }

    #[tokio::test]
    async fn a_claim_naming_the_current_owner_and_epoch_takes_over_with_the_snapshot() {
        let hub = MemoryTransport::new();
        hub.claim(G, 1, None).await.expect("claim");
        hub.write_snapshot(G, 1, 1, Bytes::from_static(b"s1"))
            .await
            .expect("write");
        let adopted = hub.claim(G, 2, Some((1, 1))).await.expect("claim");
        assert_eq!(
            adopted,
            Claim {
                owner: 2,
                epoch: 2,
                snapshot: Some(Bytes::from_static(b"s1"))
            }
        );
        let late = hub.claim(G, 3, Some((1, 1))).await.expect("claim");
        assert_eq!(
            (late.owner, late.epoch, late.snapshot),
            (2, 2, None),
            "one winner"
        );
    }

    #[tokio::test]
    async fn snapshots_and_releases_are_fenced_by_owner_and_epoch() {
        let hub = MemoryTransport::new();
        hub.claim(G, 1, None).await.expect("claim");
        hub.claim(G, 2, Some((1, 1))).await.expect("claim");
        assert!(
            !hub.write_snapshot(G, 1, 1, Bytes::from_static(b"old"))
                .await
                .expect("write")
        );
        assert!(
            !hub.write_snapshot(G, 2, 1, Bytes::from_static(b"x"))
                .await
                .expect("write")
        );
        assert!(
            hub.write_snapshot(G, 2, 2, Bytes::from_static(b"s2"))
                .await
                .expect("write")
        );
        assert!(
            !hub.release(G, 1, 1).await.expect("release"),
            "no longer owner"
        );
        assert!(!hub.release(G, 2, 1).await.expect("release"), "wrong epoch");
        assert!(hub.release(G, 2, 2).await.expect("release"));
        assert!(
            !hub.write_snapshot(G, 2, 2, Bytes::from_static(b"late"))
                .await
                .expect("write"),
            "a late write does not claim a released group again"
        );
        let fresh = hub.claim(G, 3, None).await.expect("claim");
        assert_eq!(
            fresh,
            Claim {
                owner: 3,
                epoch: 3,
                snapshot: None
            },
            "released: owner and snapshot are gone, epochs continue"
        );
    }

    #[tokio::test]
    async fn a_snapshot_of_a_group_the_directory_lost_claims_it_again() {
        let hub = MemoryTransport::new();
        assert!(
            hub.write_snapshot(G, 4, 9, Bytes::from_static(b"s9"))
                .await
                .expect("write")
        );
        let other = hub.claim(G, 5, None).await.expect("claim");
        assert_eq!(
            (other.owner, other.epoch),
            (4, 9),
            "owned again at its epoch"
        );
        let owner = hub.claim(G, 4, None).await.expect("claim");
        assert_eq!(owner.snapshot, Some(Bytes::from_static(b"s9")));
    }

    #[tokio::test]
    async fn inbox_faults_drop_duplicate_hold_and_interrupt() {
        let hub = MemoryTransport::new();
        let mut inbox = hub.subscribe(1).await.expect("subscribe");
        let message = |n: u8| Bytes::from(vec![n]);
        hub.drop_inbox(1, 1);
        hub.duplicate_inbox(1, 1);
        assert_eq!(
            hub.publish_inbox(1, message(1)).await,
            Ok(1),
            "lost after Redis"
        );
        assert_eq!(hub.publish_inbox(1, message(2)).await, Ok(1));
        hub.pause(1, 2);
        for n in 3..=5 {
            hub.publish_inbox(1, message(n)).await.expect("publish");
        }
        assert!(
            inbox
                .try_recv()
                .is_ok_and(|d| d == Delivery::Inbox(message(2)))
        );
        assert!(
            inbox
                .try_recv()
                .is_ok_and(|d| d == Delivery::Inbox(message(2)))
        );
        assert!(inbox.try_recv().is_err(), "held back");
        hub.resume(1);
        assert_eq!(inbox.try_recv(), Ok(Delivery::Inbox(message(3))));
        assert_eq!(inbox.try_recv(), Ok(Delivery::Inbox(message(4))));
        assert!(inbox.try_recv().is_err(), "5 was over the pause limit");
        hub.interrupt(1);
        assert_eq!(hub.publish_inbox(1, message(6)).await, Ok(0));
        assert_eq!(hub.publish_control(message(7)).await, Ok(0));
        hub.resubscribe(1);
        assert_eq!(hub.publish_control(message(8)).await, Ok(1));
        assert_eq!(inbox.try_recv(), Ok(Delivery::Interrupted));
        assert_eq!(inbox.try_recv(), Ok(Delivery::Resubscribed));
        assert_eq!(inbox.try_recv(), Ok(Delivery::Control(message(8))));
        hub.kill_subscription(1);
        assert_eq!(hub.publish_inbox(1, message(9)).await, Ok(0));
        assert!(inbox.recv().await.is_none(), "closed");
        hub.set_unreachable(true);
        assert!(hub.publish_control(message(10)).await.is_err());
        assert!(hub.subscribe(1).await.is_err());
    }

    #[tokio::test]
    async fn node_figures_are_read_in_order_until_they_expire() {
        let hub = MemoryTransport::new();
        let long = Duration::from_secs(60);
        hub.write_node_figures(2, Bytes::from_static(b"two"), long)
            .await
            .expect("write");
        hub.write_node_figures(1, Bytes::from_static(b"one"), long)
            .await
            .expect("write");
        hub.write_node_figures(3, Bytes::from_static(b"brief"), Duration::from_millis(30))
            .await
            .expect("write");
        let read = hub.read_node_figures(vec![1, 2, 3, 4]).await.expect("read");
        assert_eq!(
            read,
            vec![
                (1, Bytes::from_static(b"one")),
                (2, Bytes::from_static(b"two")),
                (3, Bytes::from_static(b"brief")),
            ]
        );
        tokio::time::sleep(Duration::from_millis(60)).await;
        let read = hub.read_node_figures(vec![3, 1]).await.expect("read");
        assert_eq!(read, vec![(1, Bytes::from_static(b"one"))], "3 expired");
        hub.set_unreachable(true);
        assert!(hub.read_node_figures(vec![1]).await.is_err());
    }

    #[tokio::test]
    async fn the_registry_lists_registered_nodes() {
        let hub = MemoryTransport::new();
        hub.register(1, 10).await.expect("register");
        hub.register(2, 20).await.expect("register");
        hub.register(1, 30).await.expect("register");
        hub.deregister(2).await.expect("deregister");
        assert_eq!(hub.registry(), BTreeMap::from([(1, 30)]));
    }
}
