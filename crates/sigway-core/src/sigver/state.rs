//! The sigver group rules as a pure state machine (no sockets, no clocks).
//!
//! One [`GroupState`] holds everything sigver 20.x knows about the peers
//! connected under one key: who is a member (in the order they became one),
//! each peer's Netflux id, tried members and favored flag, and the bindings
//! between joiners and members with their signaling ids (a [`Bindings`]
//! table, which the legacy dialect keeps too). The group actor
//! feeds it events (`attach`, `connect`, `content`, `leave`) and carries out
//! the [`Action`]s it returns. Every rule of `spec/sigver.md` is here, so
//! each is a unit test and the whole is property-tested.
//!
//! "The group" of the spec is the member list: when it empties, the group is
//! gone and the next `connect` makes its sender first again.

use std::collections::HashMap;

use bytes::Bytes;

use crate::error::{Refusal, SigverError};
use crate::sigver::bindings::{Bindings, Hop, Leg};

pub use crate::sigver::membership::{GroupLimits, choose_member};
pub use crate::sigver::types::{ContentIn, NetfluxId, PeerId, PeerKey, SignalingId, SignalingIds};

/// What the caller must do after an event, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<P = PeerId> {
    /// Answer a `connect`.
    Connected { to: P, member: bool },
    /// Send `content {senderId, recipientId, data}`; empty `data` with a
    /// zero id on one side is an end-of-binding notice.
    Content {
        to: P,
        sender_id: SignalingId,
        recipient_id: SignalingId,
        data: Bytes,
    },
    /// Close the peer's connection (it has already been removed from the state).
    Close { to: P, error: SigverError },
}

#[derive(Debug, Clone, Default)]
struct Peer {
    favored: bool,
    /// Set while the peer is a member.
    netflux_id: Option<NetfluxId>,
    /// Netflux ids of members this peer was bound to since it last became a
    /// member (sigver keys them by Netflux id, and so do we).
    tried: Vec<NetfluxId>,
}

#[derive(Debug)]
pub struct GroupState<P = PeerId> {
    peers: HashMap<P, Peer>,
    /// Members in the order they became members.
    members: Vec<P>,
    bindings: Bindings<P>,
    limits: GroupLimits,
}

/// `content` along a binding: the member side's id is 0, the joiner's is
/// the binding's. Empty `data` makes it an end-of-binding notice.
fn relay<P>(leg: Leg<P>, data: Bytes) -> Action<P> {
    let (sender_id, recipient_id) = match leg.hop {
        Hop::Up => (leg.id, 0),
        Hop::Down => (0, leg.id),
    };
    Action::Content {
        to: leg.to,
        sender_id,
        recipient_id,
        data,
    }
}

impl<P: PeerKey> Default for GroupState<P> {
    fn default() -> Self {
        Self::new(GroupLimits::default())
    }
}

impl<P: PeerKey> GroupState<P> {
    pub fn new(limits: GroupLimits) -> Self {
        Self {
            peers: HashMap::new(),
            members: Vec::new(),
            bindings: Bindings::default(),
            limits,
        }
    }

    /// A connection opened under this key.
    pub fn attach(&mut self, peer: P, favored: bool) {
        self.peers.entry(peer).or_insert_with(|| Peer {
            favored,
            ..Peer::default()
        });
    }

    pub fn is_member(&self, peer: P) -> bool {
        self.peers
            .get(&peer)
            .is_some_and(|p| p.netflux_id.is_some())
    }

    /// Members' Netflux ids in membership order.
    pub fn member_ids(&self) -> Vec<NetfluxId> {
        self.members
            .iter()
            .filter_map(|m| self.peers.get(m)?.netflux_id)
            .collect()
    }

    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// The signaling id of the peer's current binding, if bound.
    pub fn binding_id(&self, peer: P) -> Option<SignalingId> {
        self.bindings.of(peer).map(|b| b.id)
    }

    /// The member the peer is bound to, if bound.
    pub fn bound_member(&self, peer: P) -> Option<P> {
        self.bindings.of(peer).map(|b| b.member)
    }

    /// `connect {id, members}`: the four rules of the spec, in order.
    pub fn connect(
        &mut self,
        peer: P,
        id: NetfluxId,
        view: &[NetfluxId],
        ids: &mut impl SignalingIds,
        out: &mut Vec<Action<P>>,
    ) {
        if !self.peers.contains_key(&peer) {
            return;
        }
        // 1. No group: the peer founds it.
        if self.members.is_empty() {
            return self.admit(peer, id, ids, out);
        }
        // 2. A group of one.
        if let [only] = self.members[..] {
            if only == peer {
                out.push(Action::Connected {
                    to: peer,
                    member: true,
                });
                return;
            }
            if self.shares_member(view) {
                return self.admit(peer, id, ids, out);
            }
            let only_id = self.peers.get(&only).and_then(|m| m.netflux_id);
            let tried_it = only_id.is_some_and(|only_id| {
                self.peers
                    .get(&peer)
                    .is_some_and(|p| p.tried.contains(&only_id))
            });
            if tried_it {
                // The lone member could not be reached: it blocks the group.
                self.admit(peer, id, ids, out);
                if self.is_member(peer) {
                    self.remove(only, ids, out);
                    out.push(Action::Close {
                        to: only,
                        error: SigverError::BlockingMember,
                    });
                }
                return;
            }
        }
        // 3. The peer's view shares a member with the group.
        if self.shares_member(view) {
            return self.admit(peer, id, ids, out);
        }
        // 4. Not (or no longer) a member: bind it to a member.
        self.demote(peer);
        let mut tried = self
            .peers
            .get_mut(&peer)
            .map(|p| std::mem::take(&mut p.tried))
            .unwrap_or_default();
        let candidates = self.members.iter().filter_map(|&m| {
            self.peers
                .get(&m)
                .and_then(|p| Some((m, p.netflux_id?, p.favored)))
        });
        let chosen = choose_member(candidates, &mut tried);
        if let Some(p) = self.peers.get_mut(&peer) {
            p.tried = tried;
        }
        match chosen {
            Some(member) => {
                self.bindings.bind(peer, member, ids);
                let member_id = self.peers.get(&member).and_then(|m| m.netflux_id);
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.tried.extend(member_id);
                }
                out.push(Action::Connected {
                    to: peer,
                    member: false,
                });
            }
            // Unreachable: the group had members and the peer was not the last.
            None => self.admit(peer, id, ids, out),
        }
    }

    /// `content` from `peer`: to the joiner it names, else up to the member
    /// the peer is bound to, else nowhere. Addressed to one of the peer's
    /// joiners, it goes to that joiner only (the Node server also copied it
    /// up to the peer's own member; we do not).
    pub fn content(&mut self, peer: P, content: ContentIn, out: &mut Vec<Action<P>>) {
        let Some((leg, binding)) = self.bindings.route(peer, content.recipient_id) else {
            return;
        };
        if binding.is_open(leg.hop) {
            if content.last_data {
                binding.end(leg.hop);
            }
            out.push(relay(leg, content.data));
        }
    }

    /// The peer's connection is gone (closed, dropped or closed by us).
    pub fn leave(&mut self, peer: P, ids: &mut impl SignalingIds, out: &mut Vec<Action<P>>) {
        self.remove(peer, ids, out);
    }

    fn shares_member(&self, view: &[NetfluxId]) -> bool {
        !view.is_empty()
            && self.members.iter().any(|m| {
                self.peers
                    .get(m)
                    .and_then(|p| p.netflux_id)
                    .is_some_and(|id| view.contains(&id))
            })
    }

    fn admit(
        &mut self,
        peer: P,
        id: NetfluxId,
        ids: &mut impl SignalingIds,
        out: &mut Vec<Action<P>>,
    ) {
        let already = self.members.contains(&peer);
        if !already && self.members.len() >= self.limits.max_members {
            // Refused peers leave at once, as in the legacy dialect: what
            // they owe (end notices) goes out now, not when the socket ends.
            self.remove(peer, ids, out);
            out.push(Action::Close {
                to: peer,
                error: SigverError::Refused(Refusal::RoomFull(self.limits.max_members)),
            });
            return;
        }
        if let Some(p) = self.peers.get_mut(&peer) {
            p.netflux_id = Some(id);
            p.tried.clear();
            if !already {
                self.members.push(peer);
            }
            out.push(Action::Connected {
                to: peer,
                member: true,
            });
        }
    }

    fn demote(&mut self, peer: P) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.netflux_id = None;
        }
        self.members.retain(|&m| m != peer);
    }

    /// Removes a peer entirely, sending the end-of-binding notices it owes.
    fn remove(&mut self, peer: P, ids: &mut impl SignalingIds, out: &mut Vec<Action<P>>) {
        if !self.peers.contains_key(&peer) {
            return;
        }
        self.demote(peer);
        let owed = self.bindings.drop_peer(peer, ids);
        out.extend(owed.into_iter().map(|leg| relay(leg, Bytes::new())));
        self.peers.remove(&peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sigver::bindings::SeqIds;
    use std::collections::HashSet;

    struct Fixture {
        g: GroupState,
        ids: SeqIds,
        out: Vec<Action>,
    }

    impl Fixture {
        fn new() -> Self {
            Self {
                g: GroupState::default(),
                ids: SeqIds::default(),
                out: vec![],
            }
        }
        fn attach(&mut self, peers: &[PeerId]) {
            for &p in peers {
                self.g.attach(p, false);
            }
        }
        fn connect(&mut self, peer: PeerId, id: u32, view: &[u32]) -> Vec<Action> {
            self.g.connect(peer, id, view, &mut self.ids, &mut self.out);
            std::mem::take(&mut self.out)
        }
        fn send(
            &mut self,
            peer: PeerId,
            recipient_id: u32,
            last_data: bool,
            data: &'static [u8],
        ) -> Vec<Action> {
            let c = ContentIn {
                sender_id: 0,
                recipient_id,
                last_data,
                data: Bytes::from_static(data),
            };
            self.g.content(peer, c, &mut self.out);
            std::mem::take(&mut self.out)
        }
        fn leave(&mut self, peer: PeerId) -> Vec<Action> {
            self.g.leave(peer, &mut self.ids, &mut self.out);
            std::mem::take(&mut self.out)
        }
    }

    fn connected(to: PeerId, member: bool) -> Action {
        Action::Connected { to, member }
    }

    fn content(to: PeerId, sender_id: u32, recipient_id: u32, data: &'static [u8]) -> Action {
        Action::Content {
            to,
            sender_id,
            recipient_id,
            data: Bytes::from_static(data),
        }
    }

    #[test]
    fn first_peer_founds_the_group() {
        let mut f = Fixture::new();
        f.attach(&[1]);
        assert_eq!(f.connect(1, 100, &[]), vec![connected(1, true)]);
        assert_eq!(f.g.member_ids(), vec![100]);
    }

    #[test]
    fn lone_member_asking_again_is_still_in() {
        let mut f = Fixture::new();
        f.attach(&[1]);
        f.connect(1, 100, &[]);
        assert_eq!(f.connect(1, 100, &[]), vec![connected(1, true)]);
    }

    #[test]
    fn joiner_is_bound_to_the_member_then_admitted_with_its_view() {
        let mut f = Fixture::new();
        f.attach(&[1, 2]);
        f.connect(1, 100, &[]);
        assert_eq!(f.connect(2, 200, &[]), vec![connected(2, false)]);
        let s = f.g.binding_id(2).expect("bound");
        assert_eq!(f.g.bound_member(2), Some(1));
        assert_eq!(
            f.send(2, 0, false, b"offer"),
            vec![content(1, s, 0, b"offer")]
        );
        assert_eq!(
            f.send(1, s, false, b"answer"),
            vec![content(2, 0, s, b"answer")]
        );
        assert_eq!(f.connect(2, 200, &[100]), vec![connected(2, true)]);
        assert_eq!(f.g.member_ids(), vec![100, 200]);
        // The binding survives membership.
        assert_eq!(
            f.send(2, 0, false, b"late"),
            vec![content(1, s, 0, b"late")]
        );
    }

    #[test]
    fn blocking_lone_member_is_replaced_and_closed() {
        let mut f = Fixture::new();
        f.attach(&[1, 2]);
        f.connect(1, 100, &[]);
        f.connect(2, 200, &[]);
        let s = f.g.binding_id(2).expect("bound");
        let actions = f.connect(2, 200, &[]);
        assert_eq!(
            actions,
            vec![
                connected(2, true),
                content(2, 0, s, b""),
                Action::Close {
                    to: 1,
                    error: SigverError::BlockingMember
                },
            ]
        );
        assert_eq!(f.g.member_ids(), vec![200]);
        assert!(
            f.leave(1).is_empty(),
            "the replaced member owes nothing more"
        );
    }

    #[test]
    fn view_sharing_a_member_admits_in_a_larger_group() {
        let mut f = Fixture::new();
        f.attach(&[1, 2, 3]);
        f.connect(1, 100, &[]);
        f.connect(2, 200, &[100]);
        assert_eq!(f.connect(3, 300, &[999, 200]), vec![connected(3, true)]);
        assert_eq!(f.g.member_ids(), vec![100, 200, 300]);
    }

    #[test]
    fn member_whose_view_shares_nothing_is_demoted_and_bound() {
        let mut f = Fixture::new();
        f.attach(&[1, 2, 3]);
        f.connect(1, 100, &[]);
        f.connect(2, 200, &[100]);
        assert_eq!(f.connect(2, 200, &[]), vec![connected(2, false)]);
        assert_eq!(f.g.member_ids(), vec![100]);
        assert_eq!(f.g.bound_member(2), Some(1));
    }

    #[test]
    fn favored_member_is_preferred_then_untried_members_rotate() {
        let mut f = Fixture::new();
        f.g.attach(1, false);
        f.g.attach(2, false);
        f.g.attach(3, true);
        f.g.attach(4, false);
        f.connect(1, 100, &[]);
        f.connect(2, 200, &[100]);
        f.connect(3, 300, &[100]);
        f.connect(4, 400, &[]);
        assert_eq!(f.g.bound_member(4), Some(3), "favored first");
        f.connect(4, 400, &[]);
        assert_eq!(f.g.bound_member(4), Some(1), "then the first untried");
        f.connect(4, 400, &[]);
        assert_eq!(f.g.bound_member(4), Some(2));
        f.connect(4, 400, &[]);
        assert_eq!(f.g.bound_member(4), Some(3), "all tried: start over");
    }

    #[test]
    fn rebinding_gives_a_fresh_id_and_drops_the_old_binding_silently() {
        let mut f = Fixture::new();
        f.attach(&[1, 2, 3]);
        f.connect(1, 100, &[]);
        f.connect(2, 200, &[100]);
        f.connect(3, 300, &[]);
        let first = f.g.binding_id(3).expect("bound");
        assert_eq!(f.connect(3, 300, &[]), vec![connected(3, false)]);
        let second = f.g.binding_id(3).expect("bound");
        assert_ne!(first, second);
        assert!(
            f.send(1, first, false, b"stale").is_empty(),
            "old id routes nowhere"
        );
        assert!(
            f.leave(1).is_empty(),
            "old member gets no notice from a rebound joiner"
        );
    }

    #[test]
    fn last_data_ends_one_direction_and_its_notice() {
        let mut f = Fixture::new();
        f.attach(&[1, 2]);
        f.connect(1, 100, &[]);
        f.connect(2, 200, &[]);
        let s = f.g.binding_id(2).expect("bound");
        assert_eq!(f.send(2, 0, true, b"last"), vec![content(1, s, 0, b"last")]);
        assert!(f.send(2, 0, false, b"more").is_empty());
        assert_eq!(
            f.send(1, s, false, b"still"),
            vec![content(2, 0, s, b"still")]
        );
        assert!(
            f.leave(2).is_empty(),
            "upstream already ended: no notice to the member"
        );
    }

    #[test]
    fn member_leaving_notifies_each_joiner_and_the_group_survives() {
        let mut f = Fixture::new();
        f.attach(&[1, 2, 3]);
        f.connect(1, 100, &[]);
        f.connect(2, 200, &[]);
        let s2 = f.g.binding_id(2).expect("bound");
        f.connect(2, 200, &[100]);
        f.connect(3, 300, &[]);
        let s3 = f.g.binding_id(3).expect("bound");
        assert_eq!(f.g.bound_member(3), Some(1));
        f.connect(3, 300, &[100, 200]);
        let mut actions = f.leave(1);
        actions.sort_by_key(|a| format!("{a:?}"));
        assert_eq!(
            actions,
            vec![content(2, 0, s2, b""), content(3, 0, s3, b"")]
        );
        assert_eq!(f.g.member_ids(), vec![200, 300]);
    }

    #[test]
    fn joiner_leaving_notifies_its_member_even_after_becoming_member() {
        let mut f = Fixture::new();
        f.attach(&[1, 2]);
        f.connect(1, 100, &[]);
        f.connect(2, 200, &[]);
        let s = f.g.binding_id(2).expect("bound");
        f.connect(2, 200, &[100]);
        assert_eq!(f.leave(2), vec![content(1, s, 0, b"")]);
    }

    #[test]
    fn content_to_own_joiner_is_not_copied_to_own_member() {
        let mut f = Fixture::new();
        f.attach(&[1, 2, 3]);
        f.connect(1, 100, &[]);
        f.connect(2, 200, &[]); // 2 bound to 1
        f.connect(2, 200, &[100]); // 2 member, still bound to 1
        f.g.attach(4, false);
        f.connect(3, 300, &[]); // 3 bound to 1 (first untried)
        f.connect(3, 300, &[]); // 3 rebound to 2
        let s3 = f.g.binding_id(3).expect("bound");
        assert_eq!(f.g.bound_member(3), Some(2));
        assert_eq!(f.send(2, s3, false, b"x"), vec![content(3, 0, s3, b"x")]);
    }

    #[test]
    fn content_without_binding_is_ignored() {
        let mut f = Fixture::new();
        f.attach(&[1]);
        f.connect(1, 100, &[]);
        assert!(f.send(1, 0, false, b"x").is_empty());
        assert!(f.send(1, 12345, false, b"x").is_empty());
    }

    #[test]
    fn empty_group_disappears_and_next_peer_is_first() {
        let mut f = Fixture::new();
        f.attach(&[1, 2]);
        f.connect(1, 100, &[]);
        f.connect(2, 200, &[]);
        let s = f.g.binding_id(2).expect("bound");
        assert_eq!(f.leave(1), vec![content(2, 0, s, b"")]);
        assert_eq!(f.connect(2, 200, &[]), vec![connected(2, true)]);
    }

    #[test]
    fn member_limit_refuses_with_room_full() {
        let mut f = Fixture::new();
        f.g = GroupState::new(GroupLimits { max_members: 1 });
        f.attach(&[1, 2]);
        f.connect(1, 100, &[]);
        let actions = f.connect(2, 200, &[100]);
        assert!(matches!(
            actions[..],
            [Action::Close {
                to: 2,
                error: SigverError::Refused(Refusal::RoomFull(1))
            }]
        ));
    }

    #[test]
    fn refused_joiner_leaves_at_once_and_its_member_hears_the_end() {
        let mut f = Fixture::new();
        f.g = GroupState::new(GroupLimits { max_members: 1 });
        f.attach(&[1, 2]);
        f.connect(1, 100, &[]);
        f.connect(2, 200, &[]);
        let s = f.g.binding_id(2).expect("bound");
        let actions = f.connect(2, 200, &[100]);
        assert_eq!(actions[0], content(1, s, 0, b""));
        assert!(matches!(actions[1], Action::Close { to: 2, .. }));
        assert_eq!(f.g.peer_count(), 1);
        assert!(f.leave(2).is_empty(), "nothing owed twice");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Op {
            Attach(u8, bool),
            Connect(u8, u8, Vec<u8>),
            Send(u8, u8, bool),
            Leave(u8),
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                (0u8..6, any::<bool>()).prop_map(|(p, f)| Op::Attach(p, f)),
                (0u8..6, 0u8..6, prop::collection::vec(0u8..8, 0..4))
                    .prop_map(|(p, i, v)| Op::Connect(p, i, v)),
                (0u8..6, 0u8..12, any::<bool>()).prop_map(|(p, r, l)| Op::Send(p, r, l)),
                (0u8..6).prop_map(Op::Leave),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]
            #[test]
            fn random_sequences_keep_the_group_consistent(ops in prop::collection::vec(op(), 1..60)) {
                let mut f = Fixture::new();
                let mut alive: HashSet<PeerId> = HashSet::new();
                for op in ops {
                    let actions = match op {
                        Op::Attach(p, fav) => { f.g.attach(p as PeerId, fav); alive.insert(p as PeerId); vec![] }
                        Op::Connect(p, id, view) => {
                            let view: Vec<u32> = view.into_iter().map(u32::from).collect();
                            let actions = f.connect(p as PeerId, u32::from(id), &view);
                            if alive.contains(&(p as PeerId)) {
                                let answers = actions.iter().filter(|a| matches!(a, Action::Connected { to, .. } if *to == p as PeerId)).count();
                                prop_assert_eq!(answers, 1, "exactly one answer to a connect");
                                prop_assert!(!f.g.members.is_empty(), "a connect always leaves a group");
                            } else {
                                prop_assert!(actions.is_empty());
                            }
                            actions
                        }
                        Op::Send(p, r, last) => f.send(p as PeerId, u32::from(r), last, b"d"),
                        Op::Leave(p) => { alive.remove(&(p as PeerId)); f.leave(p as PeerId) }
                    };
                    for a in &actions {
                        let to = match a { Action::Connected { to, .. } | Action::Content { to, .. } | Action::Close { to, .. } => *to };
                        prop_assert!(alive.contains(&to), "action for a departed peer: {:?}", a);
                        if let Action::Close { to, .. } = a { alive.remove(to); }
                        if let Action::Content { sender_id, recipient_id, .. } = a {
                            prop_assert!((*sender_id == 0) != (*recipient_id == 0), "exactly one side is the member: {:?}", a);
                        }
                    }
                    // Invariants: members are live, unique; routes match bindings; ids held = bindings.
                    let members: HashSet<_> = f.g.members.iter().copied().collect();
                    prop_assert_eq!(members.len(), f.g.members.len());
                    for m in &f.g.members { prop_assert!(f.g.is_member(*m)); }
                    let bound: usize = f.g.peers.keys().filter(|&&p| f.g.bindings.of(p).is_some()).count();
                    prop_assert_eq!(bound, f.g.bindings.routes().count());
                    prop_assert_eq!(bound, f.ids.live.len());
                    for (id, joiner) in f.g.bindings.routes() {
                        let b = f.g.bindings.of(joiner).expect("route has binding");
                        prop_assert_eq!(b.id, id);
                        prop_assert!(f.g.peers.contains_key(&b.member) && f.g.bindings.joiners_of(b.member).contains(&id));
                        prop_assert!(b.member != joiner, "never bound to itself");
                    }
                }
            }
        }
    }
}
