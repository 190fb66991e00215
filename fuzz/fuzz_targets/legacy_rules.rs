//! The legacy sigver dialect's group rules (`LegacyGroupState`, sigver
//! 18.x) driven by random event sequences from up to six peers, as the
//! legacy group actor drives them: connections open (and are answered at
//! once) and go, peers send `stable`, `tryAnother`, `content` (data, isEnd,
//! isError), a `content` with no type, and raw frames read by the real
//! legacy codec (an undecodable one closes its sender). After every event:
//! the invariants of the core's test kit (members unique, open and within
//! the limit; the state holds exactly the open peers; bindings, their ids
//! and the ids held agree; nobody bound to itself), requests answered once
//! and truthfully, `stable` never answered, a relay only along a binding
//! of its sender and only to an open peer; a snapshot restores to an equal
//! state; at the end everyone leaves and every id has come back.

#![no_main]

use arbitrary::Arbitrary;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sigway_core::sigver::ids::GroupIds;
use sigway_core::sigver::legacy::codec::{self, LegacyInbound};
use sigway_core::sigver::legacy::state::{LegacyAction, LegacyGroupState, Payload};
use sigway_core::sigver::snapshot::Snapshot;
use sigway_core::sigver::state::{GroupLimits, PeerId};
use sigway_fuzz::{Peers, SeqIds, check_bindings};

#[derive(Debug, Arbitrary)]
struct Input {
    /// 0: no member limit; else that many members at most.
    max_members: u8,
    events: Vec<Event>,
}

#[derive(Debug, Arbitrary)]
enum Event {
    Open {
        slot: u8,
    },
    Gone {
        slot: u8,
    },
    Stable {
        slot: u8,
    },
    TryAnother {
        slot: u8,
    },
    Content {
        slot: u8,
        id: u8,
        payload: Sent,
    },
    Untyped {
        slot: u8,
        id: u8,
    },
    Frame {
        slot: u8,
        bytes: Vec<u8>,
    },
    /// An event from a peer that has gone: it must change nothing.
    Late {
        index: u8,
        id: u8,
        payload: Sent,
    },
    Snapshot,
}

#[derive(Debug, Clone, Arbitrary)]
enum Sent {
    Data(Vec<u8>),
    IsEnd,
    IsError,
}

impl Sent {
    fn payload(self) -> Payload {
        match self {
            Sent::Data(data) => Payload::Data(Bytes::from(data)),
            Sent::IsEnd => Payload::IsEnd,
            Sent::IsError => Payload::IsError,
        }
    }
}

/// A decoded frame as the legacy session hands it to the group.
enum Told {
    Stable,
    TryAnother,
    Content {
        id: u32,
        payload: Payload,
    },
    Untyped {
        id: u32,
    },
    Nothing,
    /// Undecodable: the session closes its peer, which leaves.
    Closed,
}

struct Run {
    state: LegacyGroupState,
    ids: SeqIds,
    peers: Peers,
    limits: GroupLimits,
}

fuzz_target!(|input: Input| {
    let limits = GroupLimits {
        max_members: match input.max_members % 5 {
            0 => usize::MAX,
            n => usize::from(n),
        },
    };
    let mut run = Run {
        state: LegacyGroupState::new(limits),
        ids: SeqIds::default(),
        peers: Peers::default(),
        limits,
    };
    for event in input.events.into_iter().take(256) {
        run.step(event);
    }
    for peer in run.peers.open_peers() {
        run.leave(peer);
    }
    assert_eq!(run.state.peer_count(), 0, "everyone left");
    assert!(run.state.members().is_empty(), "no group left");
    assert!(
        run.ids.live().is_empty(),
        "every id released: {:?}",
        run.ids.live()
    );
});

/// Small route ids name live bindings often; 0 is "towards my member".
fn route_id(byte: u8) -> u32 {
    u32::from(byte % 8)
}

impl Run {
    fn step(&mut self, event: Event) {
        let (slot, told) = match event {
            Event::Open { slot } => {
                if let Some(peer) = self.peers.open(Peers::slot(slot)) {
                    let mut out = Vec::new();
                    self.state.attach(peer, &mut self.ids, &mut out);
                    self.answered_once(peer, &out);
                    self.check(&out);
                }
                return;
            }
            Event::Gone { slot } => {
                if let Some(peer) = self.peers.open_in(Peers::slot(slot)) {
                    self.leave(peer);
                }
                return;
            }
            Event::Snapshot => return self.snapshot_round_trip(),
            Event::Late { index, id, payload } => return self.late(index, id, payload),
            Event::Stable { slot } => (slot, Told::Stable),
            Event::TryAnother { slot } => (slot, Told::TryAnother),
            Event::Content { slot, id, payload } => (
                slot,
                Told::Content {
                    id: route_id(id),
                    payload: payload.payload(),
                },
            ),
            Event::Untyped { slot, id } => (slot, Told::Untyped { id: route_id(id) }),
            Event::Frame { slot, bytes } => (slot, decoded(bytes)),
        };
        let Some(peer) = self.peers.open_in(Peers::slot(slot)) else {
            return;
        };
        let mut out = Vec::new();
        match told {
            Told::Nothing => return,
            Told::Closed => return self.leave(peer),
            Told::Stable => {
                self.state.stable(peer, &mut self.ids, &mut out);
                assert!(
                    !out.iter()
                        .any(|a| matches!(a, LegacyAction::IsFirst { .. })),
                    "stable is not answered: {out:?}"
                );
                let refused = out
                    .iter()
                    .any(|a| matches!(a, LegacyAction::Close { to, .. } if *to == peer));
                if refused {
                    assert!(
                        self.state.members().len() >= self.limits.max_members,
                        "refused only when full"
                    );
                } else {
                    assert!(self.state.is_member(peer), "stable makes a member");
                }
            }
            Told::TryAnother => {
                self.state.try_another(peer, &mut self.ids, &mut out);
                self.answered_once(peer, &out);
            }
            Told::Content { id, payload } => {
                let before = self.bindings_of_all();
                self.state
                    .content(peer, id, payload.clone(), &mut self.ids, &mut out);
                assert!(
                    out.len() <= 1,
                    "one content relays to one peer at most: {out:?}"
                );
                for action in &out {
                    let LegacyAction::Content {
                        to,
                        id: sent_id,
                        payload: sent,
                    } = action
                    else {
                        panic!("a content only relays: {action:?}");
                    };
                    assert_eq!(sent, &payload, "relayed as sent");
                    let up = before
                        .iter()
                        .any(|&(j, bid, m)| j == peer && m == *to && bid == *sent_id);
                    let down = *sent_id == 0
                        && before
                            .iter()
                            .any(|&(j, bid, m)| m == peer && j == *to && bid == id);
                    assert!(
                        up || down,
                        "relayed along no binding of the sender: {action:?}"
                    );
                }
            }
            Told::Untyped { id } => {
                self.state
                    .untyped_content(peer, id, &mut self.ids, &mut out);
                for action in &out {
                    if let LegacyAction::Close { to, .. } = action {
                        // Only the sender is closed for its own bad content;
                        // others closing would be a rule leaking.
                        assert_eq!(*to, peer, "an untyped content closes its sender only");
                    }
                }
            }
        }
        self.check(&out);
    }

    fn late(&mut self, index: u8, id: u8, payload: Sent) {
        let gone: Vec<PeerId> = self
            .peers
            .known()
            .iter()
            .copied()
            .filter(|&p| !self.peers.is_open(p))
            .collect();
        let Some(&peer) = gone.get(usize::from(index) % gone.len().max(1)) else {
            return;
        };
        let mut out = Vec::new();
        match id % 4 {
            0 => self.state.stable(peer, &mut self.ids, &mut out),
            1 => self.state.try_another(peer, &mut self.ids, &mut out),
            2 => self
                .state
                .untyped_content(peer, route_id(id), &mut self.ids, &mut out),
            _ => self.state.content(
                peer,
                route_id(id),
                payload.payload(),
                &mut self.ids,
                &mut out,
            ),
        }
        assert!(
            out.is_empty(),
            "an event from a peer that is not open does nothing: {out:?}"
        );
        self.check(&out);
    }

    fn leave(&mut self, peer: PeerId) {
        let mut out = Vec::new();
        self.peers.close(peer);
        self.state.leave(peer, &mut self.ids, &mut out);
        for action in &out {
            assert!(
                matches!(
                    action,
                    LegacyAction::Content {
                        payload: Payload::IsError,
                        ..
                    }
                ),
                "a departure sends isError notices only: {action:?}"
            );
        }
        self.check(&out);
    }

    /// An open or `tryAnother`: exactly one `isFirst` (or the peer's
    /// refusal when full) that tells the truth; a group exists after.
    fn answered_once(&self, peer: PeerId, out: &[LegacyAction]) {
        let answers: Vec<bool> = out
            .iter()
            .filter_map(|a| match a {
                LegacyAction::IsFirst { to, first } if *to == peer => Some(*first),
                _ => None,
            })
            .collect();
        let refused = out
            .iter()
            .any(|a| matches!(a, LegacyAction::Close { to, .. } if *to == peer));
        assert_eq!(
            answers.len() + usize::from(refused),
            1,
            "one answer per request: {out:?}"
        );
        match answers[..] {
            [true] => assert!(self.state.is_member(peer), "answered first: a member"),
            [false] => {
                let member = self.state.bound_member(peer);
                assert!(
                    member.is_some_and(|m| m != peer && self.state.is_member(m)),
                    "answered as a joiner: bound to another member"
                );
            }
            _ => assert!(
                self.state.members().len() >= self.limits.max_members,
                "refused only when full"
            ),
        }
        assert!(!self.state.members().is_empty(), "a request leaves a group");
    }

    /// Every peer's binding (id, member) before an event.
    fn bindings_of_all(&self) -> Vec<(PeerId, u32, PeerId)> {
        self.peers
            .known()
            .iter()
            .filter_map(|&p| Some((p, self.state.binding_id(p)?, self.state.bound_member(p)?)))
            .collect()
    }

    /// What holds after every event.
    fn check(&mut self, out: &[LegacyAction]) {
        for action in out {
            let to = match action {
                LegacyAction::IsFirst { to, .. }
                | LegacyAction::Content { to, .. }
                | LegacyAction::Close { to, .. } => *to,
            };
            assert!(
                self.peers.is_open(to),
                "action for a peer that is not open: {action:?}"
            );
        }
        for action in out {
            if let LegacyAction::Close { to, .. } = action {
                self.peers.close(*to);
                assert!(!self.state.is_member(*to), "a closed peer is no member");
            }
        }
        let open = self.peers.open_peers();
        assert_eq!(
            self.state.peer_count(),
            open.len(),
            "state holds exactly the open peers"
        );
        let members = self.state.members();
        let unique: std::collections::HashSet<_> = members.iter().collect();
        assert_eq!(unique.len(), members.len(), "members unique");
        assert!(members.len() <= self.limits.max_members, "member limit");
        for &m in members {
            assert!(
                self.peers.is_open(m) && self.state.is_member(m),
                "members are open members"
            );
        }
        check_bindings(
            &self.peers,
            &self.ids,
            |p| self.state.binding_id(p),
            |p| self.state.bound_member(p),
        );
        for &joiner in self.peers.known() {
            if let Some(member) = self.state.bound_member(joiner) {
                assert!(
                    self.peers.is_open(joiner) || self.peers.is_open(member),
                    "a binding needs one side open"
                );
            }
        }
    }

    /// The state written as a cluster snapshot and rebuilt is the same
    /// state with the same ids held; the run goes on with the rebuilt one.
    fn snapshot_round_trip(&mut self) {
        let held = GroupIds::holding(self.ids.live().iter().copied());
        let bytes = self.state.snapshot(&held, |&peer| (3, peer));
        let (restored, ids) = match LegacyGroupState::restore(&bytes, self.limits, |(_, peer)| peer)
        {
            Ok(restored) => restored,
            Err(error) => panic!("a snapshot of a live state is refused: {error}"),
        };
        assert_eq!(restored, self.state, "the snapshot restores the same state");
        let restored_ids: std::collections::BTreeSet<u32> = ids.held().collect();
        assert_eq!(&restored_ids, self.ids.live(), "the same ids are held");
        self.state = restored;
    }
}

/// A raw frame as the legacy session reads it.
fn decoded(bytes: Vec<u8>) -> Told {
    match codec::decode(Bytes::from(bytes)) {
        Err(_) => Told::Closed,
        Ok(LegacyInbound::Heartbeat | LegacyInbound::Nothing) => Told::Nothing,
        Ok(LegacyInbound::Stable) => Told::Stable,
        Ok(LegacyInbound::TryAnother) => Told::TryAnother,
        Ok(LegacyInbound::Content { id, payload }) => Told::Content { id, payload },
        Ok(LegacyInbound::UntypedContent { id }) => Told::Untyped { id },
    }
}
