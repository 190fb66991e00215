//! The current sigver dialect's group rules (`GroupState`) driven by random
//! event sequences from up to six peers, as the gateway's group actor
//! drives them: connections open (favored or not) and go, peers send
//! `connect`, `content` (with or without `lastData`), heartbeats carrying a
//! content, and raw frames read by the real codec (an undecodable one
//! closes its sender, as the session does). After every event the
//! invariants of the core's test kit are checked (see `check`), a request
//! is answered once and truthfully, relayed content reaches exactly the
//! peer its binding names, and a snapshot restores to an equal state; at
//! the end everyone leaves and every id has come back.

#![no_main]

use arbitrary::Arbitrary;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sigway_core::sigver::codec::{self, Inbound};
use sigway_core::sigver::ids::GroupIds;
use sigway_core::sigver::merged::connect_with_content;
use sigway_core::sigver::snapshot::Snapshot;
use sigway_core::sigver::state::{Action, ContentIn, GroupLimits, GroupState, PeerId};
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
        favored: bool,
    },
    Gone {
        slot: u8,
    },
    Connect {
        slot: u8,
        id: u8,
        members: Vec<u8>,
        content: Option<Content>,
    },
    Content {
        slot: u8,
        content: Content,
    },
    Heartbeat {
        slot: u8,
        content: Option<Content>,
    },
    Connected {
        slot: u8,
        content: Option<Content>,
    },
    Frame {
        slot: u8,
        bytes: Vec<u8>,
    },
    /// A connect or content from a peer that has gone (an event that was
    /// in flight when it left): it must change nothing.
    Late {
        index: u8,
        connect: bool,
        content: Content,
    },
    Snapshot,
}

/// A content with small ids, so that they name live bindings often.
#[derive(Debug, Clone, Arbitrary)]
struct Content {
    sender_id: u8,
    recipient_id: u8,
    last_data: bool,
    data: Vec<u8>,
}

impl Content {
    fn into_core(self) -> ContentIn {
        ContentIn {
            sender_id: u32::from(self.sender_id % 8),
            recipient_id: u32::from(self.recipient_id % 8),
            last_data: self.last_data,
            data: Bytes::from(self.data),
        }
    }
}

/// What a decoded event asks of the rules (the gateway's `FromPeer`).
enum Told {
    Connect {
        id: u32,
        members: Vec<u32>,
        content: Option<ContentIn>,
    },
    Content(ContentIn),
    Nothing,
    /// Undecodable: the session closes its peer, which leaves.
    Closed,
}

struct Run {
    state: GroupState,
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
        state: GroupState::new(limits),
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
    assert!(run.state.member_ids().is_empty(), "no group left");
    assert!(
        run.ids.live().is_empty(),
        "every id released: {:?}",
        run.ids.live()
    );
});

impl Run {
    fn step(&mut self, event: Event) {
        let told = match event {
            Event::Open { slot, favored } => {
                if let Some(peer) = self.peers.open(Peers::slot(slot)) {
                    self.state.attach(peer, favored);
                    self.check(&[]);
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
            Event::Late {
                index,
                connect,
                content,
            } => return self.late(index, connect, content),
            Event::Connect {
                slot,
                id,
                members,
                content,
            } => (
                slot,
                Told::Connect {
                    id: u32::from(id % 8),
                    members: members.into_iter().map(|m| u32::from(m % 8)).collect(),
                    content: content.map(Content::into_core),
                },
            ),
            Event::Content { slot, content } => (slot, Told::Content(content.into_core())),
            Event::Heartbeat { slot, content } | Event::Connected { slot, content } => {
                match content {
                    Some(content) => (slot, Told::Content(content.into_core())),
                    None => (slot, Told::Nothing),
                }
            }
            Event::Frame { slot, bytes } => (slot, decoded(bytes)),
        };
        let (slot, told) = told;
        let Some(peer) = self.peers.open_in(Peers::slot(slot)) else {
            return;
        };
        let mut out = Vec::new();
        match told {
            Told::Nothing => return,
            Told::Closed => return self.leave(peer),
            Told::Connect {
                id,
                members,
                content,
            } => {
                let relayed = content.clone();
                connect_with_content(
                    &mut self.state,
                    peer,
                    (id, &members),
                    content,
                    &mut self.ids,
                    &mut out,
                );
                self.answered_once(peer, &out);
                if let Some(content) = relayed {
                    self.relays_follow_bindings(peer, &content, &out);
                }
            }
            Told::Content(content) => {
                let bindings_before = self.bindings_of_all();
                self.state.content(peer, content.clone(), &mut out);
                assert!(out.len() <= 1, "one content relays to one peer at most");
                self.relayed_along_binding(peer, &content, &out, &bindings_before);
            }
        }
        self.check(&out);
    }

    fn late(&mut self, index: u8, connect: bool, content: Content) {
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
        if connect {
            let id = u32::from(content.sender_id % 8);
            self.state.connect(peer, id, &[id], &mut self.ids, &mut out);
        } else {
            self.state.content(peer, content.into_core(), &mut out);
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
                matches!(action, Action::Content { data, .. } if data.is_empty()),
                "a departure sends end notices only: {action:?}"
            );
        }
        self.check(&out);
    }

    /// What holds after every event: actions only for open peers, a close
    /// removes its peer, the state holds exactly the open peers, members
    /// within the limit, the bindings consistent with the ids held.
    fn check(&mut self, out: &[Action]) {
        for action in out {
            let to = match action {
                Action::Connected { to, .. } | Action::Content { to, .. } => *to,
                Action::Close { to, .. } => *to,
            };
            assert!(
                self.peers.is_open(to),
                "action for a peer that is not open: {action:?}"
            );
        }
        for action in out {
            if let Action::Close { to, .. } = action {
                self.peers.close(*to);
                assert!(!self.state.is_member(*to), "a closed peer is no member");
                assert!(
                    self.state.binding_id(*to).is_none(),
                    "a closed peer is unbound"
                );
            }
        }
        let open = self.peers.open_peers();
        assert_eq!(
            self.state.peer_count(),
            open.len(),
            "state holds exactly the open peers"
        );
        let members = open.iter().filter(|&&p| self.state.is_member(p)).count();
        assert_eq!(
            members,
            self.state.member_ids().len(),
            "members are open peers"
        );
        assert!(members <= self.limits.max_members, "member limit");
        check_bindings(
            &self.peers,
            &self.ids,
            |p| self.state.binding_id(p),
            |p| self.state.bound_member(p),
        );
        for &peer in self.peers.known() {
            if let Some(member) = self.state.bound_member(peer) {
                // The current dialect drops every binding of a departed peer.
                assert!(self.peers.is_open(peer), "a departed joiner is unbound");
                assert!(self.peers.is_open(member), "bound to a departed member");
            }
        }
    }

    /// `connect` from an open peer: exactly one answer (or its refusal when
    /// the group is full), which tells the truth; a group exists after.
    fn answered_once(&self, peer: PeerId, out: &[Action]) {
        let answers: Vec<bool> = out
            .iter()
            .filter_map(|a| match a {
                Action::Connected { to, member } if *to == peer => Some(*member),
                _ => None,
            })
            .collect();
        let refused = out
            .iter()
            .any(|a| matches!(a, Action::Close { to, .. } if *to == peer));
        assert_eq!(
            answers.len() + usize::from(refused),
            1,
            "one answer per connect: {out:?}"
        );
        match answers[..] {
            [true] => assert!(self.state.is_member(peer), "answered as a member: a member"),
            [false] => {
                let member = self.state.bound_member(peer);
                assert!(
                    member.is_some_and(|m| m != peer && self.state.is_member(m)),
                    "answered as a joiner: bound to another member"
                );
            }
            _ => assert!(
                self.state.member_ids().len() >= self.limits.max_members,
                "refused only when full"
            ),
        }
        assert!(
            !self.state.member_ids().is_empty(),
            "a connect leaves a group"
        );
    }

    /// Every peer's binding (id, member) before an event.
    fn bindings_of_all(&self) -> Vec<(PeerId, u32, PeerId)> {
        self.peers
            .known()
            .iter()
            .filter_map(|&p| Some((p, self.state.binding_id(p)?, self.state.bound_member(p)?)))
            .collect()
    }

    /// A content goes up to the sender's own member under the sender's
    /// binding id, or down to the sender's joiner it names, nowhere else.
    fn relayed_along_binding(
        &self,
        sender: PeerId,
        content: &ContentIn,
        out: &[Action],
        bindings: &[(PeerId, u32, PeerId)],
    ) {
        for action in out {
            let Action::Content {
                to,
                sender_id,
                recipient_id,
                data,
            } = action
            else {
                panic!("a content only relays: {action:?}");
            };
            assert_eq!(data, &content.data, "relayed as sent");
            let up = bindings
                .iter()
                .any(|&(j, id, m)| j == sender && m == *to && id == *sender_id);
            let down = bindings
                .iter()
                .any(|&(j, id, m)| m == sender && j == *to && id == *recipient_id);
            assert!(
                (*sender_id == 0) != (*recipient_id == 0),
                "one side of a relay is the member's 0: {action:?}"
            );
            assert!(
                up || down,
                "relayed along no binding of the sender: {action:?}"
            );
            if down {
                assert_eq!(
                    content.recipient_id, *recipient_id,
                    "down to the joiner named"
                );
            }
        }
    }

    /// The content of a `connect` frame is relayed only along a binding the
    /// sender holds after the connect, and never to the sender itself.
    fn relays_follow_bindings(&self, sender: PeerId, content: &ContentIn, out: &[Action]) {
        for action in out {
            if let Action::Content { to, data, .. } = action
                && !data.is_empty()
            {
                assert_eq!(data, &content.data, "relayed as sent");
                assert_ne!(*to, sender, "a content never goes back to its sender");
            }
        }
    }

    /// The state written as a cluster snapshot and rebuilt is the same
    /// state with the same ids held; the run goes on with the rebuilt one.
    fn snapshot_round_trip(&mut self) {
        let held = GroupIds::holding(self.ids.live().iter().copied());
        let bytes = self.state.snapshot(&held, |&peer| (7, peer));
        let (restored, ids) = match GroupState::restore(&bytes, self.limits, |(_, peer)| peer) {
            Ok(restored) => restored,
            Err(error) => panic!("a snapshot of a live state is refused: {error}"),
        };
        assert_eq!(restored, self.state, "the snapshot restores the same state");
        let restored_ids: std::collections::BTreeSet<u32> = ids.held().collect();
        assert_eq!(&restored_ids, self.ids.live(), "the same ids are held");
        self.state = restored;
    }
}

/// A raw frame as the gateway's session reads it.
fn decoded(bytes: Vec<u8>) -> Told {
    match codec::decode(Bytes::from(bytes)) {
        Err(_) => Told::Closed,
        Ok(Inbound::Connect {
            id,
            members,
            content,
        }) => Told::Connect {
            id,
            members,
            content,
        },
        Ok(Inbound::Content(content)) => Told::Content(content),
        Ok(Inbound::Heartbeat { content } | Inbound::Connected { content }) => {
            content.map_or(Told::Nothing, Told::Content)
        }
    }
}
