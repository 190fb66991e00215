//! Which nodes are alive, from the announcements on the control channel.
//!
//! Every node publishes [`Announcement::Hello`] when it starts, then
//! [`Announcement::Heartbeat`] every heartbeat period, and
//! [`Announcement::Bye`] when it stops. [`Liveness`] turns what a node hears
//! into [`LivenessEvent`]s: a node is up from its first announcement, and
//! down after `dead_after` without one (measured with the local receive
//! time only, so nodes need no clock sync), at once on `Bye`, or when it is
//! heard with a higher incarnation (it restarted: the old run goes down
//! before the new one comes up). Incarnations grow with every start, so a
//! lower one is a stale message of an earlier run and is ignored.
//!
//! A node also hears its own heartbeats (the control channel reaches the
//! publisher too). That proves its receive path works, which is what
//! [`Liveness::receiving`] reports: the bus is ready only while it holds.
//!
//! After an outage of our own (our heartbeats stopped coming back, or the
//! subscription was re-made after it had worked), every peer gets
//! `dead_after` plus a recovery grace from the moment we hear ourselves
//! again: the others reconnect on their own, each on its own backoff, and
//! one that is back later than us is not dead. The grace is not given at
//! start (nobody was heard before), so a start does not slow down noticing
//! a node killed right after it.
//!
//! A node declared down for silence and then heard again with the same
//! incarnation (a healed partition) comes up again: whoever saw it go down
//! has already dropped what depended on it, so it is treated as new.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{Incarnation, NodeId};

/// Why a node was reported down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownReason {
    /// Nothing heard from it for `dead_after`.
    Silent,
    /// It said goodbye.
    Bye,
    /// It was heard with a higher incarnation: this run ended.
    Restarted,
}

/// A change in the set of live nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LivenessEvent {
    /// A node (run) became alive.
    NodeUp {
        /// The node.
        node: NodeId,
        /// Its run.
        incarnation: Incarnation,
    },
    /// A node (run) is gone.
    NodeDown {
        /// The node.
        node: NodeId,
        /// The run that ended.
        incarnation: Incarnation,
        /// How it was noticed.
        why: DownReason,
    },
}

/// What a node announces on the control channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announcement {
    /// The node just started (others answer with a heartbeat at once, so
    /// it learns of them without waiting a period).
    Hello,
    /// The node is alive.
    Heartbeat,
    /// The node is stopping.
    Bye,
}

/// One control-channel message: who announces what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlMessage {
    /// What is announced.
    pub announcement: Announcement,
    /// The announcing node.
    pub node: NodeId,
    /// Its run.
    pub incarnation: Incarnation,
}

/// Version byte of the control encoding (so a later format can coexist).
const CONTROL_VERSION: u8 = 1;
const CONTROL_LEN: usize = 1 + 1 + 4 + 8;

/// A control message that is not one this version understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed cluster control message")]
pub struct MalformedControl;

impl ControlMessage {
    /// The 14-byte wire form: version, kind, node (big-endian u32),
    /// incarnation (big-endian u64).
    pub fn encode(&self) -> [u8; CONTROL_LEN] {
        let mut out = [0u8; CONTROL_LEN];
        out[0] = CONTROL_VERSION;
        out[1] = match self.announcement {
            Announcement::Hello => 1,
            Announcement::Heartbeat => 2,
            Announcement::Bye => 3,
        };
        out[2..6].copy_from_slice(&self.node.to_be_bytes());
        out[6..14].copy_from_slice(&self.incarnation.to_be_bytes());
        out
    }

    /// Parses [`ControlMessage::encode`]'s form; anything else is an error.
    pub fn decode(bytes: &[u8]) -> Result<Self, MalformedControl> {
        let bytes: &[u8; CONTROL_LEN] = bytes.try_into().map_err(|_| MalformedControl)?;
        if bytes[0] != CONTROL_VERSION {
            return Err(MalformedControl);
        }
        let announcement = match bytes[1] {
            1 => Announcement::Hello,
            2 => Announcement::Heartbeat,
            3 => Announcement::Bye,
            _ => return Err(MalformedControl),
        };
        let mut node = [0u8; 4];
        node.copy_from_slice(&bytes[2..6]);
        let mut incarnation = [0u8; 8];
        incarnation.copy_from_slice(&bytes[6..14]);
        Ok(Self {
            announcement,
            node: NodeId::from_be_bytes(node),
            incarnation: Incarnation::from_be_bytes(incarnation),
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct Alive {
    incarnation: Incarnation,
    last_heard: Instant,
}

/// How a node that is not alive ended, to tell stale messages from news.
#[derive(Debug, Clone, Copy)]
struct Gone {
    incarnation: Incarnation,
    said_bye: bool,
}

/// The view of live nodes from one node.
#[derive(Debug)]
pub struct Liveness {
    me: NodeId,
    my_incarnation: Incarnation,
    dead_after: Duration,
    // BTreeMaps so events come out in node order (deterministic).
    alive: BTreeMap<NodeId, Alive>,
    gone: BTreeMap<NodeId, Gone>,
    own_last_heard: Option<Instant>,
    // Whether the own deadline is still worth waking up for (false once it
    // passed, so `next_deadline` never returns a past instant forever).
    own_deadline_armed: bool,
    // Set when the receive path was re-made (`forget_own`): until our own
    // heartbeat comes back on it, nobody's silence is judged, and then
    // everyone gets a fresh grace (the outage was ours to see too).
    awaiting_own: bool,
    // Extra grace each peer gets when we hear ourselves after an outage.
    recovery_grace: Duration,
    // Whether the receive path worked before it was re-made (an outage,
    // not the start).
    re_made_after_working: bool,
}

impl Liveness {
    /// The view of node `me` (run `my_incarnation`): nobody alive yet, not
    /// receiving until its own first heartbeat comes back.
    pub fn new(me: NodeId, my_incarnation: Incarnation, dead_after: Duration) -> Self {
        Self {
            me,
            my_incarnation,
            dead_after,
            alive: BTreeMap::new(),
            gone: BTreeMap::new(),
            own_last_heard: None,
            own_deadline_armed: false,
            awaiting_own: false,
            recovery_grace: Duration::ZERO,
            re_made_after_working: false,
        }
    }

    /// Gives every peer `grace` more than `dead_after` when we hear
    /// ourselves again after an outage of our own: at least how much later
    /// than us another node may reconnect (its reconnect backoff and one
    /// connection attempt).
    pub fn with_recovery_grace(mut self, grace: Duration) -> Self {
        self.recovery_grace = grace;
        self
    }

    /// Feeds one control message (a `Hello` or `Heartbeat` means heard, a
    /// `Bye` means gone).
    pub fn on_control(&mut self, message: ControlMessage, now: Instant) -> Vec<LivenessEvent> {
        match message.announcement {
            Announcement::Hello | Announcement::Heartbeat => {
                self.heard(message.node, message.incarnation, now)
            }
            Announcement::Bye => self.bye(message.node, message.incarnation),
        }
    }

    /// `node` (run `incarnation`) was heard at `now`.
    pub fn heard(
        &mut self,
        node: NodeId,
        incarnation: Incarnation,
        now: Instant,
    ) -> Vec<LivenessEvent> {
        if node == self.me {
            // Another process with our id and another incarnation is a
            // misconfiguration; it must not count as our receive path.
            if incarnation == self.my_incarnation {
                if self.suspended(now) {
                    // We heard nobody while our own heartbeats did not come
                    // back (the engine between nodes was away): the others'
                    // silence proves nothing, so each gets a fresh grace,
                    // longer after an outage, when the others reconnect
                    // on their own time.
                    let outage = self.re_made_after_working || self.own_last_heard.is_some();
                    let from = if outage {
                        now + self.recovery_grace
                    } else {
                        now
                    };
                    for alive in self.alive.values_mut() {
                        alive.last_heard = alive.last_heard.max(from);
                    }
                    self.re_made_after_working = false;
                }
                self.own_last_heard = Some(self.own_last_heard.map_or(now, |t| t.max(now)));
                self.own_deadline_armed = true;
                self.awaiting_own = false;
            }
            return Vec::new();
        }
        let mut events = Vec::new();
        match self.alive.get_mut(&node) {
            Some(known) if incarnation == known.incarnation => {
                known.last_heard = known.last_heard.max(now);
                return events;
            }
            Some(known) if incarnation < known.incarnation => return events,
            Some(known) => {
                events.push(LivenessEvent::NodeDown {
                    node,
                    incarnation: known.incarnation,
                    why: DownReason::Restarted,
                });
            }
            None => {
                if let Some(gone) = self.gone.get(&node) {
                    let stale = incarnation < gone.incarnation
                        || (incarnation == gone.incarnation && gone.said_bye);
                    if stale {
                        return events;
                    }
                }
            }
        }
        self.gone.remove(&node);
        self.alive.insert(
            node,
            Alive {
                incarnation,
                last_heard: now,
            },
        );
        events.push(LivenessEvent::NodeUp { node, incarnation });
        events
    }

    /// `node` (run `incarnation`) said goodbye.
    pub fn bye(&mut self, node: NodeId, incarnation: Incarnation) -> Vec<LivenessEvent> {
        if node == self.me {
            return Vec::new();
        }
        let mut events = Vec::new();
        if let Some(known) = self.alive.get(&node).copied() {
            if incarnation < known.incarnation {
                return events;
            }
            self.alive.remove(&node);
            events.push(LivenessEvent::NodeDown {
                node,
                incarnation: known.incarnation,
                why: if incarnation == known.incarnation {
                    DownReason::Bye
                } else {
                    DownReason::Restarted
                },
            });
        } else if self
            .gone
            .get(&node)
            .is_some_and(|gone| gone.incarnation > incarnation)
        {
            return events;
        }
        self.gone.insert(
            node,
            Gone {
                incarnation,
                said_bye: true,
            },
        );
        events
    }

    /// Reports every node silent for `dead_after` or more at `now`, unless
    /// our own heartbeats stopped coming back too: then nobody can be heard
    /// (the engine between nodes is away) and judging waits until we hear
    /// ourselves again.
    pub fn sweep(&mut self, now: Instant) -> Vec<LivenessEvent> {
        if self.suspended(now) {
            self.own_deadline_armed = false;
            return Vec::new();
        }
        let dead_after = self.dead_after;
        let silent: Vec<(NodeId, Incarnation)> = self
            .alive
            .iter()
            .filter(|(_, a)| {
                now.saturating_duration_since(a.last_heard) >= dead_after
                    && self.heard_ourselves_since(a.last_heard)
            })
            .map(|(node, a)| (*node, a.incarnation))
            .collect();
        let mut events = Vec::with_capacity(silent.len());
        for (node, incarnation) in silent {
            self.alive.remove(&node);
            self.gone.insert(
                node,
                Gone {
                    incarnation,
                    said_bye: false,
                },
            );
            events.push(LivenessEvent::NodeDown {
                node,
                incarnation,
                why: DownReason::Silent,
            });
        }
        if self.own_deadline_armed && !self.receiving(now) {
            self.own_deadline_armed = false;
        }
        events
    }

    /// When [`Liveness::sweep`] must next run: the earliest moment a live
    /// node (or our own receive path) goes silent for `dead_after`.
    pub fn next_deadline(&self) -> Option<Instant> {
        let own = self
            .own_last_heard
            .filter(|_| self.own_deadline_armed)
            .map(|t| t + self.dead_after);
        // A peer whose silence cannot be judged yet waits for our own next
        // heartbeat (which calls for a new deadline), not for a timer.
        let peers = self
            .alive
            .values()
            .filter(|a| self.heard_ourselves_since(a.last_heard))
            .map(|a| a.last_heard + self.dead_after)
            .min()
            .filter(|_| {
                !self.awaiting_own && (self.own_last_heard.is_none() || self.own_deadline_armed)
            });
        match (own, peers) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether our own heartbeats proved our receive path while a peer
    /// heard last at `last_heard` was silent: one came back at least half
    /// of `dead_after` later. A pause of the engine between nodes silences
    /// everyone at once, ourselves included, so it never passes for a
    /// peer's death. Before our first own heartbeat nothing can be proved
    /// and silence alone decides.
    fn heard_ourselves_since(&self, last_heard: Instant) -> bool {
        self.own_last_heard
            .is_none_or(|own| own >= last_heard + self.dead_after / 2)
    }

    /// Whether silence is not being judged at `now`: our receive path was
    /// re-made and our own heartbeat has not come back on it yet, or our
    /// own heartbeats came back once, but not within `dead_after`.
    fn suspended(&self, now: Instant) -> bool {
        self.awaiting_own || (self.own_last_heard.is_some() && !self.receiving(now))
    }

    /// Whether our own heartbeats come back: false until the first one
    /// and after `dead_after` without one.
    pub fn receiving(&self, now: Instant) -> bool {
        self.own_last_heard
            .is_some_and(|t| now.saturating_duration_since(t) < self.dead_after)
    }

    /// Forgets our own heartbeats (after the subscription was re-made,
    /// only a fresh one proves the new receive path). Until it comes, no
    /// node is judged silent; when it comes, each gets a fresh grace.
    pub fn forget_own(&mut self) {
        self.re_made_after_working |= self.own_last_heard.is_some();
        self.own_last_heard = None;
        self.own_deadline_armed = false;
        self.awaiting_own = true;
    }

    /// The run of `node` if it is alive.
    pub fn incarnation_of(&self, node: NodeId) -> Option<Incarnation> {
        self.alive.get(&node).map(|a| a.incarnation)
    }

    /// The live nodes (other than us) and their runs, in node order.
    pub fn alive(&self) -> impl Iterator<Item = (NodeId, Incarnation)> + '_ {
        self.alive.iter().map(|(node, a)| (*node, a.incarnation))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    const MS: Duration = Duration::from_millis(1);
    const DEAD: Duration = Duration::from_millis(300);

    fn up(node: NodeId, incarnation: Incarnation) -> LivenessEvent {
        LivenessEvent::NodeUp { node, incarnation }
    }

    fn down(node: NodeId, incarnation: Incarnation, why: DownReason) -> LivenessEvent {
        LivenessEvent::NodeDown {
            node,
            incarnation,
            why,
        }
    }

    #[test]
    fn a_node_is_up_when_first_heard_and_down_after_dead_after_of_silence() {
        let t0 = Instant::now();
        let mut view = Liveness::new(1, 10, DEAD);
        assert_eq!(view.heard(2, 5, t0), vec![up(2, 5)]);
        assert_eq!(view.heard(2, 5, t0 + 100 * MS), vec![], "already up");
        assert_eq!(view.next_deadline(), Some(t0 + 400 * MS));
        assert_eq!(view.sweep(t0 + 399 * MS), vec![]);
        assert_eq!(
            view.sweep(t0 + 400 * MS),
            vec![down(2, 5, DownReason::Silent)]
        );
        assert_eq!(view.incarnation_of(2), None);
        assert_eq!(view.next_deadline(), None);
    }

    #[test]
    fn after_the_receive_path_is_re_made_nobody_is_judged_until_we_hear_ourselves() {
        // A Sentinel failover: the subscription broke and was made again on
        // the new master after longer than `dead_after`; the others were as
        // deaf as we were, so the silence before proves nothing.
        let t0 = Instant::now();
        let mut view = Liveness::new(1, 10, DEAD);
        view.heard(1, 10, t0);
        view.heard(2, 5, t0);
        view.forget_own();
        let back = t0 + 2 * DEAD;
        assert_eq!(view.sweep(back), vec![], "not judged before our heartbeat");
        assert_eq!(view.next_deadline(), None, "no timer spins meanwhile");
        assert_eq!(view.heard(1, 10, back), vec![]);
        assert_eq!(view.sweep(back + DEAD - MS), vec![], "a fresh grace");
        // Our heartbeats keep coming back; node 2's do not.
        view.heard(1, 10, back + DEAD - MS);
        assert_eq!(
            view.sweep(back + DEAD),
            vec![down(2, 5, DownReason::Silent)],
            "still silent a full dead_after after we hear ourselves"
        );
    }

    #[test]
    fn nobody_is_judged_silent_while_our_own_heartbeats_do_not_come_back() {
        let t0 = Instant::now();
        let mut view = Liveness::new(1, 10, DEAD);
        view.heard(1, 10, t0);
        view.heard(2, 5, t0);
        // The engine between nodes goes away: nothing, ourselves included,
        // is heard for twice dead_after.
        assert_eq!(view.sweep(t0 + 800 * MS), vec![], "suspended");
        assert!(!view.receiving(t0 + 800 * MS));
        assert_eq!(view.incarnation_of(2), Some(5), "still up");
        // Back: node 2 gets a full dead_after from now to be heard again
        // (while our own heartbeats keep coming back).
        view.heard(1, 10, t0 + 900 * MS);
        view.heard(1, 10, t0 + 1_100 * MS);
        assert_eq!(view.sweep(t0 + 1_199 * MS), vec![]);
        assert_eq!(
            view.sweep(t0 + 1_200 * MS),
            vec![down(2, 5, DownReason::Silent)],
            "a node that stays silent once we hear again is dead"
        );
    }

    #[test]
    fn a_pause_that_silences_us_and_a_peer_together_is_no_death() {
        let t0 = Instant::now();
        let mut view = Liveness::new(1, 10, DEAD);
        // The peer was heard last just before our own last heartbeat came
        // back; then the engine pauses: the peer's deadline comes first.
        view.heard(2, 5, t0);
        view.heard(1, 10, t0 + 50 * MS);
        assert_eq!(
            view.sweep(t0 + 300 * MS),
            vec![],
            "no proof: we heard nobody either"
        );
        assert_eq!(
            view.next_deadline(),
            Some(t0 + 350 * MS),
            "only our own deadline"
        );
        // Had our heartbeats kept coming back, the silent peer is dead on time.
        let mut view = Liveness::new(1, 10, DEAD);
        view.heard(2, 5, t0);
        view.heard(1, 10, t0 + 50 * MS);
        view.heard(1, 10, t0 + 200 * MS);
        assert_eq!(view.next_deadline(), Some(t0 + 300 * MS));
        assert_eq!(
            view.sweep(t0 + 300 * MS),
            vec![down(2, 5, DownReason::Silent)]
        );
    }

    #[test]
    fn after_our_own_outage_a_peer_that_reconnects_later_gets_the_recovery_grace() {
        let grace = Duration::from_millis(500);
        let t0 = Instant::now();
        for re_made in [false, true] {
            let mut l = Liveness::new(1, 10, DEAD).with_recovery_grace(grace);
            l.heard(1, 10, t0);
            l.heard(2, 7, t0);
            let back = if re_made {
                // The subscription broke and was made again.
                l.forget_own();
                t0 + 100 * MS
            } else {
                // Our heartbeats stopped coming back for longer than DEAD.
                assert!(l.sweep(t0 + DEAD + 10 * MS).is_empty(), "suspended");
                t0 + DEAD + 200 * MS
            };
            l.heard(1, 10, back);
            // Our heartbeats keep coming; the peer is still reconnecting.
            let mut at = back;
            while at + 50 * MS < back + grace + DEAD {
                at += 50 * MS;
                l.heard(1, 10, at);
                assert!(
                    l.sweep(at).is_empty(),
                    "re_made {re_made}: judged at {:?}",
                    at - back
                );
            }
            assert_eq!(
                l.next_deadline(),
                Some(back + grace + DEAD),
                "re_made {re_made}"
            );
            l.heard(1, 10, back + DEAD + grace + 50 * MS);
            assert_eq!(
                l.sweep(back + DEAD + grace + 50 * MS),
                vec![down(2, 7, DownReason::Silent)],
                "re_made {re_made}: silent past the grace"
            );
        }
    }

    #[test]
    fn the_recovery_grace_is_not_given_at_start() {
        let t0 = Instant::now();
        let mut l = Liveness::new(1, 10, DEAD).with_recovery_grace(Duration::from_secs(5));
        // The first subscription: a peer is heard before our own heartbeat.
        l.forget_own();
        l.heard(2, 7, t0);
        l.heard(1, 10, t0 + 10 * MS);
        l.heard(1, 10, t0 + DEAD);
        l.heard(1, 10, t0 + DEAD + 20 * MS);
        assert_eq!(
            l.sweep(t0 + DEAD + 20 * MS),
            vec![down(2, 7, DownReason::Silent)]
        );
    }

    #[test]
    fn bye_is_an_immediate_down_and_later_messages_of_that_run_are_stale() {
        let t0 = Instant::now();
        let mut view = Liveness::new(1, 10, DEAD);
        view.heard(2, 5, t0);
        assert_eq!(view.bye(2, 5), vec![down(2, 5, DownReason::Bye)]);
        assert_eq!(view.heard(2, 5, t0 + MS), vec![], "a late heartbeat");
        assert_eq!(view.bye(2, 5), vec![]);
        assert_eq!(view.heard(2, 6, t0 + 2 * MS), vec![up(2, 6)], "restart");
    }

    #[test]
    fn a_higher_incarnation_is_a_restart_the_old_run_goes_down_first() {
        let t0 = Instant::now();
        let mut view = Liveness::new(1, 10, DEAD);
        view.heard(2, 5, t0);
        assert_eq!(
            view.heard(2, 7, t0 + MS),
            vec![down(2, 5, DownReason::Restarted), up(2, 7)]
        );
        assert_eq!(view.heard(2, 5, t0 + 2 * MS), vec![], "stale run");
        assert_eq!(view.incarnation_of(2), Some(7));
    }

    #[test]
    fn a_silent_node_heard_again_with_the_same_run_comes_back_up() {
        let t0 = Instant::now();
        let mut view = Liveness::new(1, 10, DEAD);
        view.heard(2, 5, t0);
        view.sweep(t0 + DEAD);
        assert_eq!(view.heard(2, 5, t0 + 2 * DEAD), vec![up(2, 5)]);
        assert_eq!(view.heard(2, 4, t0 + 2 * DEAD), vec![], "older run");
    }

    #[test]
    fn a_bye_of_a_newer_run_ends_the_known_run_as_restarted() {
        let t0 = Instant::now();
        let mut view = Liveness::new(1, 10, DEAD);
        view.heard(2, 5, t0);
        assert_eq!(view.bye(2, 6), vec![down(2, 5, DownReason::Restarted)]);
        assert_eq!(view.heard(2, 6, t0 + MS), vec![], "that run said bye");
    }

    #[test]
    fn receiving_follows_our_own_heartbeats_and_never_emits_events_for_us() {
        let t0 = Instant::now();
        let mut view = Liveness::new(1, 10, DEAD);
        assert!(!view.receiving(t0), "nothing heard yet");
        assert_eq!(view.heard(1, 10, t0), vec![]);
        assert!(view.receiving(t0 + 299 * MS));
        assert_eq!(view.next_deadline(), Some(t0 + DEAD));
        assert_eq!(view.sweep(t0 + DEAD), vec![]);
        assert!(!view.receiving(t0 + DEAD));
        assert_eq!(view.next_deadline(), None, "disarmed once passed");
        assert_eq!(view.heard(1, 9, t0 + DEAD), vec![], "another process");
        assert!(!view.receiving(t0 + DEAD));
        view.heard(1, 10, t0 + DEAD);
        assert!(view.receiving(t0 + DEAD));
        view.forget_own();
        assert!(!view.receiving(t0 + DEAD));
        assert_eq!(view.bye(1, 10), vec![]);
    }

    #[test]
    fn control_messages_round_trip_and_reject_anything_else() {
        for announcement in [
            Announcement::Hello,
            Announcement::Heartbeat,
            Announcement::Bye,
        ] {
            let message = ControlMessage {
                announcement,
                node: 0xdead_beef,
                incarnation: u64::MAX - 3,
            };
            assert_eq!(ControlMessage::decode(&message.encode()), Ok(message));
        }
        let good = ControlMessage {
            announcement: Announcement::Bye,
            node: 1,
            incarnation: 2,
        }
        .encode();
        assert!(ControlMessage::decode(&good[..13]).is_err());
        let mut bad_kind = good;
        bad_kind[1] = 9;
        assert!(ControlMessage::decode(&bad_kind).is_err());
        let mut bad_version = good;
        bad_version[0] = 2;
        assert!(ControlMessage::decode(&bad_version).is_err());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Heard { node: NodeId, incarnation: u64 },
        Bye { node: NodeId, incarnation: u64 },
        Sweep,
        Advance(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (1u32..5, 1u64..4).prop_map(|(node, incarnation)| Op::Heard { node, incarnation }),
            1 => (1u32..5, 1u64..4).prop_map(|(node, incarnation)| Op::Bye { node, incarnation }),
            2 => Just(Op::Sweep),
            3 => (0u64..400).prop_map(Op::Advance),
        ]
    }

    proptest! {
        // Random heard/bye/sweep with monotone time: at most one NodeDown per
        // NodeUp (and never a Down without an Up), no event about ourselves
        // (node 1), and after every sweep no node stays up past dead_after
        // of silence, unless our own heartbeats stopped coming back.
        #[test]
        fn ups_and_downs_pair_up_and_silence_is_always_noticed(ops in prop::collection::vec(op(), 1..200)) {
            let t0 = Instant::now();
            let mut now = t0;
            let mut view = Liveness::new(1, 2, DEAD);
            let mut open: HashMap<NodeId, u64> = HashMap::new();
            let mut last_heard: HashMap<NodeId, Instant> = HashMap::new();
            for op in ops {
                let events = match op {
                    Op::Heard { node, incarnation } => {
                        let resumed = node == 1 && incarnation == 2 && view.suspended(now);
                        let events = view.heard(node, incarnation, now);
                        if view.incarnation_of(node) == Some(incarnation) {
                            last_heard.insert(node, now);
                        }
                        if resumed {
                            // Our own heartbeat is back: everyone gets a fresh grace.
                            for (node, _) in view.alive() {
                                last_heard.insert(node, now);
                            }
                        }
                        events
                    }
                    Op::Bye { node, incarnation } => view.bye(node, incarnation),
                    Op::Sweep => {
                        let judging = !view.suspended(now);
                        let events = view.sweep(now);
                        let alive: Vec<NodeId> = view
                            .alive()
                            .map(|(node, _)| node)
                            .filter(|&node| judging && view.heard_ourselves_since(last_heard[&node]))
                            .collect();
                        for node in alive {
                            let heard = last_heard[&node];
                            prop_assert!(now.duration_since(heard) < DEAD, "node {node} silent too long");
                        }
                        events
                    }
                    Op::Advance(ms) => {
                        now += Duration::from_millis(ms);
                        Vec::new()
                    }
                };
                for event in events {
                    match event {
                        LivenessEvent::NodeUp { node, incarnation } => {
                            prop_assert_ne!(node, 1);
                            prop_assert!(open.insert(node, incarnation).is_none(), "up twice: {node}");
                        }
                        LivenessEvent::NodeDown { node, incarnation, .. } => {
                            prop_assert_ne!(node, 1);
                            prop_assert_eq!(open.remove(&node), Some(incarnation), "down without up");
                        }
                    }
                }
                let alive: HashMap<NodeId, u64> = view.alive().collect();
                prop_assert_eq!(&alive, &open);
            }
        }
    }
}
