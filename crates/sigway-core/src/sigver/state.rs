//! The sigver 20.x group rules as a pure state machine (no sockets, no clocks).
//!
//! One [`GroupState`] holds what sigver 20.x knows about the peers connected
//! under one key. It is built on the membership core both dialects share
//! ([`membership`](crate::sigver::membership): peers, members in order,
//! bindings, the member limit, departures, member choice) and keeps what is
//! this dialect's own: a member is known by the Netflux id it sent in
//! `connect`, and so are the members a joiner tried; a new member forgets
//! what it tried; `?favored` peers are chosen first; a departure drops every
//! binding of the departed peer; and the four rules of `connect`, answered
//! with `connected`. The group actor feeds it events (`attach`, `connect`,
//! `content`, `leave`) and carries out the [`Action`]s it returns. Every rule
//! of `spec/sigver.md` is here, so each is a unit test and the whole is
//! property-tested (with the invariants of the shared test kit).
//!
//! "The group" of the spec is the member list: when it empties, the group is
//! gone and the next `connect` makes its sender first again.

use bytes::Bytes;

use crate::error::SigverError;
use crate::sigver::bindings::{Bindings, Hop, Leg};
use crate::sigver::membership::{GroupCore, MembershipRules, Record};

pub use crate::sigver::membership::{GroupLimits, choose_member};
pub use crate::sigver::types::{ContentIn, NetfluxId, PeerId, PeerKey, SignalingId, SignalingIds};

/// What the caller must do after an event, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<P = PeerId> {
    /// Answer a `connect`.
    Connected {
        /// The peer that asked.
        to: P,
        /// `true`: it is a member; `false`: it is bound to one.
        member: bool,
    },
    /// Send `content {senderId, recipientId, data}`; empty `data` with a
    /// zero id on one side is an end-of-binding notice.
    Content {
        /// The peer to send it to.
        to: P,
        /// The joiner's signaling id going up to its member, else 0.
        sender_id: SignalingId,
        /// The joiner's signaling id going down to it, else 0.
        recipient_id: SignalingId,
        /// The bytes relayed (none on an end-of-binding notice).
        data: Bytes,
    },
    /// Close the peer's connection (it has already been removed from the state).
    Close {
        /// The peer to close.
        to: P,
        /// Why: it names the close code and reason.
        error: SigverError,
    },
}

/// The rules of one key in sigver 20.x, on the shared membership core: a
/// member is known by its Netflux id, and so is a member its joiners tried.
///
/// Two states are equal when they hold the same peers, members, bindings and
/// limits: they then answer every event alike (given ids drawn alike).
#[derive(Debug, PartialEq)]
pub struct GroupState<P: PeerKey = PeerId> {
    core: GroupCore<P, Self>,
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

/// What sigver 20.x tells the membership core.
impl<P: PeerKey> MembershipRules<P> for GroupState<P> {
    /// A member's Netflux id.
    type Member = NetfluxId;
    /// sigver keys tried members by Netflux id, and so do we.
    type Tried = NetfluxId;
    type Extra = ();
    type Action = Action<P>;

    fn tried_key(_: P, record: &Record<P, Self>) -> Option<NetfluxId> {
        record.member
    }

    /// A departed peer's bindings are all dropped, both ways.
    fn part(bindings: &mut Bindings<P>, peer: P, ids: &mut impl SignalingIds) -> Vec<Leg<P>> {
        bindings.drop_peer(peer, ids)
    }

    fn end_notice(leg: Leg<P>) -> Action<P> {
        relay(leg, Bytes::new())
    }

    fn close(to: P, error: SigverError) -> Action<P> {
        Action::Close { to, error }
    }
}

impl<P: PeerKey> Default for GroupState<P> {
    fn default() -> Self {
        Self::new(GroupLimits::default())
    }
}

impl<P: PeerKey> GroupState<P> {
    /// An empty group (no peers yet) under `limits`.
    pub fn new(limits: GroupLimits) -> Self {
        Self {
            core: GroupCore::new(limits),
        }
    }

    /// The membership core the rules are built on (snapshots read it).
    pub(crate) fn core(&self) -> &GroupCore<P, Self> {
        &self.core
    }

    /// The rules on a core rebuilt from a snapshot.
    pub(crate) fn from_core(core: GroupCore<P, Self>) -> Self {
        Self { core }
    }

    /// A connection opened under this key; `favored` is its `?favored` flag.
    pub fn attach(&mut self, peer: P, favored: bool) {
        self.core.attach(peer, favored, ());
    }

    /// The peer is a member of the group.
    pub fn is_member(&self, peer: P) -> bool {
        self.core.is_member(peer)
    }

    /// Members' Netflux ids in membership order.
    pub fn member_ids(&self) -> Vec<NetfluxId> {
        self.member_netflux_ids().collect()
    }

    /// Connections attached under this key, members or not.
    pub fn peer_count(&self) -> usize {
        self.core.peer_count()
    }

    /// The signaling id of the peer's current binding, if bound.
    pub fn binding_id(&self, peer: P) -> Option<SignalingId> {
        self.core.binding_id(peer)
    }

    /// The member the peer is bound to, if bound.
    pub fn bound_member(&self, peer: P) -> Option<P> {
        self.core.bound_member(peer)
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
        if !self.core.is_attached(peer) {
            return;
        }
        // 1. No group: the peer founds it.
        if self.core.members().is_empty() {
            self.admit(peer, id, ids, out);
            return;
        }
        // 2. A group of one.
        if let [only] = self.core.members()[..] {
            if only == peer {
                out.push(Action::Connected {
                    to: peer,
                    member: true,
                });
                return;
            }
            if self.shares_member(view) {
                self.admit(peer, id, ids, out);
                return;
            }
            if self.core.has_tried(peer, only) {
                // The lone member could not be reached: it blocks the group.
                // sigver 20 admits the peer first, as any member (under the
                // limit, answered at once), and closes the blocking one after.
                if self.admit(peer, id, ids, out) {
                    self.core.expel(only, SigverError::BlockingMember, ids, out);
                }
                return;
            }
        }
        // 3. The peer's view shares a member with the group.
        if self.shares_member(view) {
            self.admit(peer, id, ids, out);
            return;
        }
        // 4. Not (or no longer) a member: bind it to a member.
        self.core.demote(peer);
        match self.core.bind_to_untried(peer, ids) {
            Some(_) => out.push(Action::Connected {
                to: peer,
                member: false,
            }),
            // Unreachable: the group had members and the peer was not the last.
            None => {
                self.admit(peer, id, ids, out);
            }
        }
    }

    /// `content` from `peer`: to the joiner it names, else up to the member
    /// the peer is bound to, else nowhere. Addressed to one of the peer's
    /// joiners, it goes to that joiner only (the Node server also copied it
    /// up to the peer's own member; we do not).
    pub fn content(&mut self, peer: P, content: ContentIn, out: &mut Vec<Action<P>>) {
        let Some((leg, binding)) = self.core.bindings_mut().route(peer, content.recipient_id)
        else {
            return;
        };
        if binding.is_open(leg.hop) {
            if content.last_data {
                binding.end(leg.hop);
            }
            out.push(relay(leg, content.data));
        }
    }

    /// The peer's connection is gone (closed, dropped or closed by us): it
    /// leaves, and the other side of each of its bindings hears the end.
    pub fn leave(&mut self, peer: P, ids: &mut impl SignalingIds, out: &mut Vec<Action<P>>) {
        self.core.remove(peer, ids, out);
    }

    fn member_netflux_ids(&self) -> impl Iterator<Item = NetfluxId> + '_ {
        let members = self.core.members().iter();
        members.filter_map(|&m| self.core.member(m).copied())
    }

    fn shares_member(&self, view: &[NetfluxId]) -> bool {
        !view.is_empty() && self.member_netflux_ids().any(|id| view.contains(&id))
    }

    /// Admits the peer as a member known by `id` and answers it, unless the
    /// limit refuses it. A member forgets the members it tried. Returns
    /// whether it is a member.
    fn admit(
        &mut self,
        peer: P,
        id: NetfluxId,
        ids: &mut impl SignalingIds,
        out: &mut Vec<Action<P>>,
    ) -> bool {
        if !self.core.admit(peer, id, ids, out) {
            return false;
        }
        if let Some(record) = self.core.record_mut(peer) {
            record.tried.clear();
        }
        out.push(Action::Connected {
            to: peer,
            member: true,
        });
        true
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::error::Refusal;
    use crate::sigver::testkit::{self, Said, SeqIds, UnderTest};

    impl Said for Action {
        fn to(&self) -> PeerId {
            match self {
                Action::Connected { to, .. }
                | Action::Content { to, .. }
                | Action::Close { to, .. } => *to,
            }
        }
        fn answer(&self) -> Option<bool> {
            match self {
                Action::Connected { member, .. } => Some(*member),
                _ => None,
            }
        }
        fn is_close(&self) -> bool {
            matches!(self, Action::Close { .. })
        }
    }

    impl UnderTest for GroupState {
        fn core(&self) -> &GroupCore<PeerId, Self> {
            &self.core
        }
        fn leave(&mut self, peer: PeerId, ids: &mut SeqIds, out: &mut Vec<Action>) {
            GroupState::leave(self, peer, ids, out);
        }
    }

    type Fixture = testkit::Fixture<GroupState>;

    impl Fixture {
        fn attach(&mut self, peers: &[PeerId]) {
            for &p in peers {
                self.g.attach(p, false);
            }
        }
        fn connect(&mut self, peer: PeerId, id: u32, view: &[u32]) -> Vec<Action> {
            self.run(|g, ids, out| g.connect(peer, id, view, ids, out))
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
            self.run(|g, _, out| g.content(peer, c, out))
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
        let mut f = Fixture::default();
        f.attach(&[1]);
        assert_eq!(f.connect(1, 100, &[]), vec![connected(1, true)]);
        assert_eq!(f.g.member_ids(), vec![100]);
    }

    #[test]
    fn lone_member_asking_again_is_still_in() {
        let mut f = Fixture::default();
        f.attach(&[1]);
        f.connect(1, 100, &[]);
        assert_eq!(f.connect(1, 100, &[]), vec![connected(1, true)]);
    }

    #[test]
    fn joiner_is_bound_to_the_member_then_admitted_with_its_view() {
        let mut f = Fixture::default();
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
        let mut f = Fixture::default();
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
        let mut f = Fixture::default();
        f.attach(&[1, 2, 3]);
        f.connect(1, 100, &[]);
        f.connect(2, 200, &[100]);
        assert_eq!(f.connect(3, 300, &[999, 200]), vec![connected(3, true)]);
        assert_eq!(f.g.member_ids(), vec![100, 200, 300]);
    }

    #[test]
    fn member_whose_view_shares_nothing_is_demoted_and_bound() {
        let mut f = Fixture::default();
        f.attach(&[1, 2, 3]);
        f.connect(1, 100, &[]);
        f.connect(2, 200, &[100]);
        assert_eq!(f.connect(2, 200, &[]), vec![connected(2, false)]);
        assert_eq!(f.g.member_ids(), vec![100]);
        assert_eq!(f.g.bound_member(2), Some(1));
    }

    #[test]
    fn favored_member_is_preferred_then_untried_members_rotate() {
        let mut f = Fixture::default();
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
        let mut f = Fixture::default();
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
        let mut f = Fixture::default();
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
        let mut f = Fixture::default();
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
        let mut f = Fixture::default();
        f.attach(&[1, 2]);
        f.connect(1, 100, &[]);
        f.connect(2, 200, &[]);
        let s = f.g.binding_id(2).expect("bound");
        f.connect(2, 200, &[100]);
        assert_eq!(f.leave(2), vec![content(1, s, 0, b"")]);
    }

    #[test]
    fn content_to_own_joiner_is_not_copied_to_own_member() {
        let mut f = Fixture::default();
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
        let mut f = Fixture::default();
        f.attach(&[1]);
        f.connect(1, 100, &[]);
        assert!(f.send(1, 0, false, b"x").is_empty());
        assert!(f.send(1, 12345, false, b"x").is_empty());
    }

    #[test]
    fn empty_group_disappears_and_next_peer_is_first() {
        let mut f = Fixture::default();
        f.attach(&[1, 2]);
        f.connect(1, 100, &[]);
        f.connect(2, 200, &[]);
        let s = f.g.binding_id(2).expect("bound");
        assert_eq!(f.leave(1), vec![content(2, 0, s, b"")]);
        assert_eq!(f.connect(2, 200, &[]), vec![connected(2, true)]);
    }

    #[test]
    fn member_limit_refuses_with_room_full() {
        let mut f = Fixture::new(GroupState::new(GroupLimits { max_members: 1 }));
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
        let mut f = Fixture::new(GroupState::new(GroupLimits { max_members: 1 }));
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

    pub(crate) mod properties {
        use super::*;
        use crate::sigver::testkit::{Event, Model};
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        pub(crate) enum Op {
            Attach(u8, bool),
            Connect(u8, u8, Vec<u8>),
            Send(u8, u8, bool),
            Leave(u8),
        }

        pub(crate) fn op() -> impl Strategy<Value = Op> {
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
            /// The shared invariants (see `testkit`), and sigver 20.x's own:
            /// every `content` has exactly one zero side, and a binding
            /// joins two live peers (a departure drops all of its own).
            #[test]
            fn random_sequences_keep_the_group_consistent(ops in prop::collection::vec(op(), 1..60)) {
                let mut f = Fixture::default();
                let mut model = Model::default();
                for op in ops {
                    let actions = match op {
                        Op::Attach(p, fav) => {
                            let p = PeerId::from(p);
                            model.step(&mut f, Event::Open { peer: p, answered: false }, |g, _, _| g.attach(p, fav))?
                        }
                        Op::Connect(p, id, view) => {
                            let p = PeerId::from(p);
                            let view: Vec<u32> = view.into_iter().map(u32::from).collect();
                            model.step(&mut f, Event::Request(p), |g, ids, out| g.connect(p, u32::from(id), &view, ids, out))?
                        }
                        Op::Send(p, r, last) => {
                            let p = PeerId::from(p);
                            let c = ContentIn { sender_id: 0, recipient_id: u32::from(r), last_data: last, data: Bytes::from_static(b"d") };
                            model.step(&mut f, Event::Frame(p), |g, _, out| g.content(p, c, out))?
                        }
                        Op::Leave(p) => {
                            let p = PeerId::from(p);
                            model.step(&mut f, Event::Gone(p), |g, ids, out| g.leave(p, ids, out))?
                        }
                    };
                    for a in &actions {
                        if let Action::Content { sender_id, recipient_id, .. } = a {
                            prop_assert!((*sender_id == 0) != (*recipient_id == 0), "exactly one side is the member: {:?}", a);
                        }
                    }
                    for (_, joiner) in f.g.core.bindings().routes() {
                        let member = f.g.core.bound_member(joiner).expect("route has a binding");
                        prop_assert!(model.is_alive(joiner) && model.is_alive(member), "a binding joins two live peers");
                    }
                }
                model.everyone_leaves(&mut f)?;
            }
        }
    }
}
