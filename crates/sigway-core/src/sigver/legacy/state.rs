//! The rules of the legacy sigver dialect (sigver 18.x) as a pure state
//! machine: no sockets, no clocks.
//!
//! One [`LegacyGroupState`] holds the peers connected under one key. It is
//! built on the membership core both dialects share
//! ([`membership`](crate::sigver::membership): peers, members in order, the
//! [`Bindings`] with their route ids, the member limit ([`GroupLimits`]),
//! departures, the closing of a blocking member, member choice
//! ([`choose_member`](crate::sigver::membership::choose_member))); the
//! messages and the moments of decision are this dialect's own. The legacy
//! group actor feeds it events (`attach` when a socket opens, `stable`,
//! `try_another`, `content`, `untyped_content`, `leave`) and carries out the
//! [`LegacyAction`]s it returns.
//!
//! These are the rules of sigver 18.0.0 as `tests/node_conformance_legacy.rs`
//! observes them on the real server, down to what follows from how it is
//! built: each direction of a binding is an RxJS subscription, so
//! - a direction towards a peer that left stays open until its sender ends
//!   it ([`Bindings::depart`]); it matters to a `content` with no type;
//! - a `content` with no type closes its sender (4003) when one of those
//!   subscriptions sees it: the sender's own binding up to its member, or
//!   the binding of its joiner the id names; the older one names the reason;
//! - a peer gets a new route id each time it is bound, and tried members are
//!   remembered by the route id they had, so a member that has since been
//!   rebound counts as untried; a tried list is never emptied but when every
//!   member has been tried;
//! - `?favored` means nothing.
//!
//! Where sigver 18.x is wrong, and we are not (the spec's list; the
//! differential test shows each side by side):
//! - a peer is never bound to itself: a member that sends `tryAnother` is
//!   bound to another member if there is one (it stays a member, as in
//!   sigver 18.x); the lone member sending it is answered `isFirst: true`
//!   and nothing changes;
//! - what a member sends to one of its joiners goes to that joiner only,
//!   never also up to the member it is itself bound to.
//!
//! A binding whose two directions have both ended is forgotten (its route id
//! is released), which no client can tell apart from keeping it.

use crate::error::SigverError;
use crate::sigver::bindings::{Bindings, Hop, Leg};
use crate::sigver::membership::{GroupCore, GroupLimits, MembershipRules, Record};
use crate::sigver::types::{PeerId, PeerKey, SignalingId, SignalingIds};

pub use crate::sigver::legacy::action::{LegacyAction, Payload};

/// A peer as tried members remember it: the connection and how many times
/// it had been bound (sigver 18.x's id for it changed at each binding).
type Identity<P> = (P, u32);

/// The rules of one key in sigver 18.x, on the shared membership core: a
/// member is just a member, and a member its joiners tried is remembered by
/// the route identity it had then.
///
/// Two states are equal when they hold the same peers, members, bindings and
/// limits: they then answer every event alike (given ids drawn alike).
#[derive(Debug, PartialEq)]
pub struct LegacyGroupState<P: PeerKey = PeerId> {
    core: GroupCore<P, Self>,
}

/// sigver 18's reasons for a `content` with no type, as the binding that saw
/// it words them.
pub(crate) fn untyped_from_joiner(id: SignalingId) -> SigverError {
    SigverError::BadMessage(
        format!("4003: Unknown message type \"undefined\" from the {id} joining peer").into(),
    )
}

const UNTYPED_FROM_MEMBER: &str = "4003: Unknown message type \"undefined\" from a group member";

/// What sigver 18.x tells the membership core.
impl<P: PeerKey> MembershipRules<P> for LegacyGroupState<P> {
    /// A member is just a member: sigver 18.x has no Netflux ids.
    type Member = ();
    /// Tried members are remembered by route identity.
    type Tried = Identity<P>;
    /// Bindings made for this peer so far.
    type Extra = u32;
    type Action = LegacyAction<P>;

    fn tried_key(peer: P, record: &Record<P, Self>) -> Option<Identity<P>> {
        Some((peer, record.extra))
    }

    /// Only the directions the departed peer fed end; those towards it stay
    /// open until their sender ends them.
    fn part(bindings: &mut Bindings<P>, peer: P, ids: &mut impl SignalingIds) -> Vec<Leg<P>> {
        bindings.depart(peer, ids)
    }

    fn end_notice(leg: Leg<P>) -> LegacyAction<P> {
        LegacyAction::relay(leg, Payload::IsError)
    }

    fn close(to: P, error: SigverError) -> LegacyAction<P> {
        LegacyAction::Close { to, error }
    }
}

impl<P: PeerKey> Default for LegacyGroupState<P> {
    fn default() -> Self {
        Self::new(GroupLimits::default())
    }
}

impl<P: PeerKey> LegacyGroupState<P> {
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

    /// A connection opened under this key: it is answered at once, either
    /// as the group's first member or bound to a member.
    pub fn attach(&mut self, peer: P, ids: &mut impl SignalingIds, out: &mut Vec<LegacyAction<P>>) {
        // sigver 18.x had no favored peers: `?favored` means nothing.
        if self.core.attach(peer, false, 0) {
            self.seek_member(peer, ids, out);
        }
    }

    /// `stable`: the peer has joined the group and becomes a member (its
    /// tried list is kept). Its binding, if any, stays usable.
    pub fn stable(&mut self, peer: P, ids: &mut impl SignalingIds, out: &mut Vec<LegacyAction<P>>) {
        self.core.admit(peer, (), ids, out);
    }

    /// `tryAnother`: the peer could not join through its member; bind it to
    /// another one (the old member is told nothing) and answer `isFirst`.
    pub fn try_another(
        &mut self,
        peer: P,
        ids: &mut impl SignalingIds,
        out: &mut Vec<LegacyAction<P>>,
    ) {
        if self.core.is_attached(peer) {
            self.seek_member(peer, ids, out);
        }
    }

    /// `content {id, payload}` from `peer`: to the joiner `id` names if it
    /// is one of the peer's own joiners, else up to the member the peer is
    /// bound to (whatever `id` it wrote), else nowhere. A direction towards
    /// a peer that left relays nothing but can still be ended.
    pub fn content(
        &mut self,
        peer: P,
        id: SignalingId,
        payload: Payload,
        ids: &mut impl SignalingIds,
        out: &mut Vec<LegacyAction<P>>,
    ) {
        if !self.core.is_attached(peer) {
            return;
        }
        let Some((leg, binding)) = self.core.bindings_mut().route(peer, id) else {
            return;
        };
        if !binding.is_open(leg.hop) {
            return;
        }
        match payload {
            Payload::Data(_) => {}
            Payload::IsEnd => binding.end(leg.hop),
            Payload::IsError => {
                binding.end(Hop::Up);
                binding.end(Hop::Down);
            }
        }
        if self.core.is_attached(leg.to) {
            out.push(LegacyAction::relay(leg, payload));
        }
        let bindings = self.core.bindings_mut();
        if let Some(joiner) = bindings.joiner_of(leg.id) {
            bindings.forget_if_finished(joiner, ids);
        }
    }

    /// A `content` with no type from `peer`. sigver 18 closes the peer
    /// (4003) if an open direction sees it: the peer's own binding up to its
    /// member (whatever `id` says), or the binding down to the peer's joiner
    /// `id` names. When both do, the older binding words the reason.
    /// Otherwise it is ignored.
    pub fn untyped_content(
        &mut self,
        peer: P,
        id: SignalingId,
        ids: &mut impl SignalingIds,
        out: &mut Vec<LegacyAction<P>>,
    ) {
        if !self.core.is_attached(peer) {
            return;
        }
        let bindings = self.core.bindings();
        let up = bindings
            .of(peer)
            .filter(|b| b.upstream_open)
            .map(|b| (b.order, untyped_from_joiner(b.id)));
        let down = bindings
            .joiner_of(id)
            .filter(|_| id != 0)
            .and_then(|joiner| bindings.of(joiner))
            .filter(|b| b.member == peer && b.downstream_open)
            .map(|b| (b.order, SigverError::BadMessage(UNTYPED_FROM_MEMBER.into())));
        let Some((_, error)) = up.into_iter().chain(down).min_by_key(|(order, _)| *order) else {
            return;
        };
        self.core.expel(peer, error, ids, out);
    }

    /// The peer's connection is gone (closed, dropped or closed by us): the
    /// peers on the other side of the directions it fed get `isError`.
    pub fn leave(&mut self, peer: P, ids: &mut impl SignalingIds, out: &mut Vec<LegacyAction<P>>) {
        self.core.remove(peer, ids, out);
    }

    /// The peer is a member of the group.
    pub fn is_member(&self, peer: P) -> bool {
        self.core.is_member(peer)
    }

    /// Members in membership order.
    pub fn members(&self) -> &[P] {
        self.core.members()
    }

    /// Connections attached under this key, members or not.
    pub fn peer_count(&self) -> usize {
        self.core.peer_count()
    }

    /// The route id of the peer's current binding, if bound.
    pub fn binding_id(&self, peer: P) -> Option<SignalingId> {
        self.core.binding_id(peer)
    }

    /// The member the peer is bound to, if bound.
    pub fn bound_member(&self, peer: P) -> Option<P> {
        self.core.bound_member(peer)
    }

    /// The decision of sigver 18.x on open and on `tryAnother`, in order:
    /// no group → first member; the peer is the lone member → stays so; the
    /// lone member was already tried → it is replaced by the peer (4004);
    /// otherwise → bound to the first member it has not tried, in
    /// membership order (after a reset if it has tried them all).
    fn seek_member(
        &mut self,
        peer: P,
        ids: &mut impl SignalingIds,
        out: &mut Vec<LegacyAction<P>>,
    ) {
        match self.core.members()[..] {
            [] => return self.become_first(peer, ids, out),
            [only] if only == peer => {
                out.push(LegacyAction::IsFirst {
                    to: peer,
                    first: true,
                });
                return;
            }
            [only] if self.core.has_tried(peer, only) => {
                // The lone member could not be reached: the peer takes its
                // place (no limit: the count is unchanged). sigver 18 closes
                // it first, so its notices (an `isError` to the peer, among
                // others) go out before the peer's `isFirst: true`.
                self.core.replace_blocking(only, peer, (), ids, out);
                out.push(LegacyAction::IsFirst {
                    to: peer,
                    first: true,
                });
                return;
            }
            _ => {}
        }
        self.forget_unreachable_tries(peer);
        match self.core.bind_to_untried(peer, ids) {
            Some(_) => {
                if let Some(record) = self.core.record_mut(peer) {
                    record.extra += 1;
                }
                out.push(LegacyAction::IsFirst {
                    to: peer,
                    first: false,
                });
            }
            // Unreachable (the group has a member other than the peer); were
            // it reached, the peer would be alone: first, as for no group.
            None => self.become_first(peer, ids, out),
        }
    }

    /// The peer is the group's first member (unless the limit refuses it)
    /// and is told so.
    fn become_first(
        &mut self,
        peer: P,
        ids: &mut impl SignalingIds,
        out: &mut Vec<LegacyAction<P>>,
    ) {
        if self.core.admit(peer, (), ids, out) {
            out.push(LegacyAction::IsFirst {
                to: peer,
                first: true,
            });
        }
    }

    /// A member that left or has been rebound since the peer tried it can
    /// never match again: forgetting it keeps the tried list no longer than
    /// the member list without changing any choice.
    fn forget_unreachable_tries(&mut self, peer: P) {
        let members = self.core.members().iter().filter(|&&m| m != peer);
        let reachable: Vec<Identity<P>> = members.filter_map(|&m| self.core.tried_key(m)).collect();
        if let Some(record) = self.core.record_mut(peer) {
            record.tried.retain(|t| reachable.contains(t));
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::error::Refusal;
    use crate::sigver::testkit::{self, Said, SeqIds, UnderTest};
    use bytes::Bytes;
    use std::collections::HashSet;

    impl Said for LegacyAction {
        fn to(&self) -> PeerId {
            match self {
                LegacyAction::IsFirst { to, .. }
                | LegacyAction::Content { to, .. }
                | LegacyAction::Close { to, .. } => *to,
            }
        }
        fn answer(&self) -> Option<bool> {
            match self {
                LegacyAction::IsFirst { first, .. } => Some(*first),
                _ => None,
            }
        }
        fn is_close(&self) -> bool {
            matches!(self, LegacyAction::Close { .. })
        }
    }

    impl UnderTest for LegacyGroupState {
        fn core(&self) -> &GroupCore<PeerId, Self> {
            &self.core
        }
        fn leave(&mut self, peer: PeerId, ids: &mut SeqIds, out: &mut Vec<LegacyAction>) {
            LegacyGroupState::leave(self, peer, ids, out);
        }
    }

    type Fixture = testkit::Fixture<LegacyGroupState>;

    impl Fixture {
        fn with_limit(max_members: usize) -> Self {
            Fixture::new(LegacyGroupState::new(GroupLimits { max_members }))
        }
        fn open(&mut self, peer: PeerId) -> Vec<LegacyAction> {
            self.run(|g, ids, out| g.attach(peer, ids, out))
        }
        fn stable(&mut self, peer: PeerId) -> Vec<LegacyAction> {
            self.run(|g, ids, out| g.stable(peer, ids, out))
        }
        fn try_another(&mut self, peer: PeerId) -> Vec<LegacyAction> {
            self.run(|g, ids, out| g.try_another(peer, ids, out))
        }
        fn send(&mut self, peer: PeerId, id: u32, payload: Payload) -> Vec<LegacyAction> {
            self.run(|g, ids, out| g.content(peer, id, payload, ids, out))
        }
        fn untyped(&mut self, peer: PeerId, id: u32) -> Vec<LegacyAction> {
            self.run(|g, ids, out| g.untyped_content(peer, id, ids, out))
        }
        /// Opens `peer` as a member (bound first if the group exists).
        fn member(&mut self, peer: PeerId) {
            self.open(peer);
            self.stable(peer);
        }
    }

    fn is_first(to: PeerId, first: bool) -> LegacyAction {
        LegacyAction::IsFirst { to, first }
    }

    fn data(to: PeerId, id: u32, bytes: &'static [u8]) -> LegacyAction {
        LegacyAction::Content {
            to,
            id,
            payload: Payload::Data(Bytes::from_static(bytes)),
        }
    }

    fn signal(to: PeerId, id: u32, payload: Payload) -> LegacyAction {
        LegacyAction::Content { to, id, payload }
    }

    fn d(bytes: &'static [u8]) -> Payload {
        Payload::Data(Bytes::from_static(bytes))
    }

    #[test]
    fn first_peer_of_a_key_is_first_and_a_member() {
        let mut f = Fixture::default();
        assert_eq!(f.open(1), vec![is_first(1, true)]);
        assert_eq!(f.g.members(), &[1]);
    }

    #[test]
    fn next_peer_is_bound_at_once_and_relays_with_its_route_id() {
        let mut f = Fixture::default();
        f.open(1);
        assert_eq!(f.open(2), vec![is_first(2, false)]);
        assert_eq!(f.g.bound_member(2), Some(1));
        let s = f.g.binding_id(2).expect("bound");
        assert_eq!(f.send(2, 999, d(b"offer")), vec![data(1, s, b"offer")]);
        assert_eq!(f.send(1, s, d(b"answer")), vec![data(2, 0, b"answer")]);
    }

    #[test]
    fn member_content_to_zero_or_an_unknown_id_is_dropped() {
        let mut f = Fixture::default();
        f.open(1);
        f.open(2);
        let s = f.g.binding_id(2).expect("bound");
        assert!(f.send(1, 0, d(b"x")).is_empty());
        assert!(f.send(1, s + 1000, d(b"x")).is_empty());
    }

    #[test]
    fn route_id_of_another_members_joiner_is_not_reachable() {
        let mut f = Fixture::default();
        f.member(1);
        f.member(2); // bound to 1, then member
        f.open(3); // bound to 1 (first untried)
        let s3 = f.g.binding_id(3).expect("bound");
        assert_eq!(f.g.bound_member(3), Some(1));
        // 2 is bound to 1 itself: its content goes up to 1, not to 3.
        let s2 = f.g.binding_id(2).expect("bound");
        assert_eq!(f.send(2, s3, d(b"x")), vec![data(1, s2, b"x")]);
    }

    #[test]
    fn is_end_ends_one_direction_only() {
        let mut f = Fixture::default();
        f.open(1);
        f.open(2);
        let s = f.g.binding_id(2).expect("bound");
        assert_eq!(
            f.send(2, 0, Payload::IsEnd),
            vec![signal(1, s, Payload::IsEnd)]
        );
        assert!(f.send(2, 0, d(b"more")).is_empty());
        assert_eq!(f.send(1, s, d(b"still")), vec![data(2, 0, b"still")]);
        assert_eq!(
            f.send(1, s, Payload::IsEnd),
            vec![signal(2, 0, Payload::IsEnd)]
        );
        assert!(f.send(1, s, d(b"more")).is_empty());
        assert_eq!(f.g.binding_id(2), None, "a finished binding is forgotten");
        assert!(f.leave(2).is_empty());
        assert!(f.leave(1).is_empty());
    }

    #[test]
    fn is_error_ends_both_directions() {
        let mut f = Fixture::default();
        f.open(1);
        f.open(2);
        let s = f.g.binding_id(2).expect("bound");
        assert_eq!(
            f.send(1, s, Payload::IsError),
            vec![signal(2, 0, Payload::IsError)]
        );
        assert!(f.send(2, 0, d(b"x")).is_empty());
        assert!(f.send(1, s, d(b"x")).is_empty());
        assert!(f.leave(1).is_empty(), "nothing owed after isError");
    }

    #[test]
    fn joiner_leaving_sends_is_error_to_its_member_unless_it_ended() {
        let mut f = Fixture::default();
        f.open(1);
        f.open(2);
        f.open(3);
        let s2 = f.g.binding_id(2).expect("bound");
        assert_eq!(f.leave(2), vec![signal(1, s2, Payload::IsError)]);
        f.send(3, 0, Payload::IsEnd);
        assert!(f.leave(3).is_empty(), "3 had ended its direction");
    }

    #[test]
    fn member_leaving_sends_is_error_to_each_joiner_unless_it_ended() {
        let mut f = Fixture::default();
        f.open(1);
        f.open(2);
        f.open(3);
        f.open(4);
        let s3 = f.g.binding_id(3).expect("bound");
        f.send(1, s3, Payload::IsEnd);
        let mut actions = f.leave(1);
        actions.sort_by_key(|a| format!("{a:?}"));
        assert_eq!(
            actions,
            vec![
                signal(2, 0, Payload::IsError),
                signal(4, 0, Payload::IsError)
            ]
        );
        assert!(f.g.members().is_empty());
    }

    #[test]
    fn stable_makes_a_member_and_keeps_the_binding() {
        let mut f = Fixture::default();
        f.open(1);
        f.open(2);
        let s = f.g.binding_id(2).expect("bound");
        assert!(f.stable(2).is_empty(), "stable is not answered");
        assert_eq!(f.g.members(), &[1, 2]);
        assert!(f.stable(2).is_empty());
        assert_eq!(f.g.members(), &[1, 2], "twice is once");
        assert_eq!(f.send(2, 0, d(b"late")), vec![data(1, s, b"late")]);
        assert_eq!(f.leave(2), vec![signal(1, s, Payload::IsError)]);
    }

    #[test]
    fn try_another_rotates_in_membership_order_then_starts_over() {
        let mut f = Fixture::default();
        for m in [1, 2, 3] {
            f.member(m);
        }
        f.open(4);
        let mut seen = vec![f.g.bound_member(4)];
        let mut route_ids = vec![f.g.binding_id(4)];
        for _ in 0..3 {
            assert_eq!(f.try_another(4), vec![is_first(4, false)]);
            seen.push(f.g.bound_member(4));
            route_ids.push(f.g.binding_id(4));
        }
        assert_eq!(seen, vec![Some(1), Some(2), Some(3), Some(1)]);
        let unique: HashSet<_> = route_ids.iter().collect();
        assert_eq!(unique.len(), 4, "a fresh route id per binding");
    }

    #[test]
    fn try_another_tells_the_old_member_nothing() {
        let mut f = Fixture::default();
        f.member(1);
        f.member(2);
        f.open(3);
        let old = f.g.binding_id(3).expect("bound");
        assert_eq!(f.try_another(3), vec![is_first(3, false)]);
        assert_eq!(f.g.bound_member(3), Some(2));
        let new = f.g.binding_id(3).expect("bound");
        assert_ne!(new, old);
        assert!(f.send(1, old, d(b"stale")).is_empty(), "old route is gone");
        assert_eq!(
            f.leave(3),
            vec![signal(2, new, Payload::IsError)],
            "only the current member hears of the departure"
        );
    }

    #[test]
    fn lone_member_already_tried_is_replaced_with_4004() {
        let mut f = Fixture::default();
        f.open(1);
        f.open(2);
        f.open(3);
        let actions = f.try_another(2);
        assert_eq!(
            actions,
            vec![
                signal(2, 0, Payload::IsError),
                signal(3, 0, Payload::IsError),
                LegacyAction::Close {
                    to: 1,
                    error: SigverError::BlockingMember
                },
                is_first(2, true),
            ],
            "sigver 18 closes the blocking member before it answers"
        );
        assert_eq!(f.g.members(), &[2]);
        assert!(f.leave(1).is_empty(), "the replaced member owes nothing");
        assert_eq!(f.try_another(3), vec![is_first(3, false)]);
        assert_eq!(f.g.bound_member(3), Some(2));
    }

    #[test]
    fn a_rebound_member_counts_as_untried() {
        let mut f = Fixture::default();
        f.member(1);
        f.member(2);
        f.member(3); // joined through 1: has tried 1
        f.open(4);
        f.try_another(4);
        f.try_another(4);
        assert_eq!(f.g.bound_member(4), Some(3), "4 has tried 1, 2 and 3");
        assert_eq!(f.try_another(3), vec![is_first(3, false)]);
        assert_eq!(f.g.bound_member(3), Some(2), "3 had tried 1 only");
        // 3 has a new route id since 4 tried it: sigver 18 sees a new member.
        f.try_another(4);
        assert_eq!(f.g.bound_member(4), Some(3));
    }

    #[test]
    fn stable_does_not_empty_the_tried_list() {
        let mut f = Fixture::default();
        f.member(1);
        f.member(2);
        f.member(3); // joined through 1
        f.try_another(3);
        assert_eq!(f.g.bound_member(3), Some(2), "1 is still tried");
    }

    #[test]
    fn untyped_content_from_a_bound_joiner_closes_it_with_its_route_id() {
        let mut f = Fixture::default();
        f.open(1);
        f.open(2);
        let s = f.g.binding_id(2).expect("bound");
        assert_eq!(
            f.untyped(2, 12345),
            vec![
                signal(1, s, Payload::IsError),
                LegacyAction::Close {
                    to: 2,
                    error: untyped_from_joiner(s)
                }
            ]
        );
        assert_eq!(
            untyped_from_joiner(7),
            SigverError::BadMessage(
                "4003: Unknown message type \"undefined\" from the 7 joining peer".into()
            )
        );
        assert_eq!(f.g.peer_count(), 1);
    }

    #[test]
    fn untyped_content_from_a_member_to_its_joiner_closes_the_member() {
        let mut f = Fixture::default();
        f.open(1);
        f.open(2);
        f.open(3);
        let s2 = f.g.binding_id(2).expect("bound");
        let actions = f.untyped(1, s2);
        assert_eq!(
            actions,
            vec![
                signal(2, 0, Payload::IsError),
                signal(3, 0, Payload::IsError),
                LegacyAction::Close {
                    to: 1,
                    error: SigverError::BadMessage(UNTYPED_FROM_MEMBER.into())
                }
            ]
        );
    }

    #[test]
    fn untyped_content_seen_by_two_bindings_is_worded_by_the_older_one() {
        let mut f = Fixture::default();
        f.member(1);
        f.member(2); // bound to 1
        f.open(3); // bound to 1
        f.try_another(3); // bound to 2, after 2's own binding
        let s3 = f.g.binding_id(3).expect("bound");
        let s2 = f.g.binding_id(2).expect("bound");
        let closed = |actions: Vec<LegacyAction>| {
            actions.into_iter().find_map(|a| match a {
                LegacyAction::Close { error, .. } => Some(error),
                _ => None,
            })
        };
        assert_eq!(closed(f.untyped(2, s3)), Some(untyped_from_joiner(s2)));

        let mut f = Fixture::default();
        f.member(1);
        f.member(2); // bound to 1
        f.open(3); // bound to 1
        f.try_another(3); // bound to 2
        f.try_another(2); // 2 rebinds (to 1): now younger than 3's binding
        let s3 = f.g.binding_id(3).expect("bound");
        assert_eq!(
            closed(f.untyped(2, s3)),
            Some(SigverError::BadMessage(UNTYPED_FROM_MEMBER.into()))
        );
    }

    #[test]
    fn untyped_content_no_open_direction_sees_is_ignored() {
        let mut f = Fixture::default();
        f.open(1);
        assert!(f.untyped(1, 0).is_empty(), "unbound, no joiner");
        f.open(2);
        let s = f.g.binding_id(2).expect("bound");
        assert!(f.untyped(1, 0).is_empty(), "0 names no joiner");
        assert!(f.untyped(1, s + 1).is_empty(), "nor does an unknown id");
        f.send(2, 0, Payload::IsEnd);
        assert!(f.untyped(2, 0).is_empty(), "2 ended its direction");
        f.send(1, s, d(b"x"));
        f.send(1, s, Payload::IsEnd);
        assert!(f.untyped(1, s).is_empty(), "1 ended its direction");
        assert!(f.untyped(9, 0).is_empty(), "unknown peer");
        assert_eq!(f.g.peer_count(), 2);
    }

    #[test]
    fn a_direction_towards_a_departed_peer_stays_open_until_ended() {
        let mut f = Fixture::default();
        f.open(1);
        f.open(2);
        f.open(3);
        let s2 = f.g.binding_id(2).expect("bound");
        f.leave(2);
        // 1 → 2 is still open: data goes nowhere, no type closes 1.
        assert!(f.send(1, s2, d(b"x")).is_empty());
        assert_eq!(
            f.untyped(1, s2).last(),
            Some(&LegacyAction::Close {
                to: 1,
                error: SigverError::BadMessage(UNTYPED_FROM_MEMBER.into())
            })
        );
        // 3 → 1 is still open after 1 left: no type closes 3.
        let s3 = f.g.binding_id(3).expect("bound");
        assert!(f.send(3, 0, d(b"x")).is_empty());
        assert_eq!(
            f.untyped(3, 0),
            vec![LegacyAction::Close {
                to: 3,
                error: untyped_from_joiner(s3)
            }]
        );
        assert!(f.ids.live.is_empty(), "all ended, all ids released");

        // isEnd towards a departed peer ends that direction.
        let mut f = Fixture::default();
        f.open(1);
        f.open(2);
        let s2 = f.g.binding_id(2).expect("bound");
        f.leave(2);
        assert!(f.send(1, s2, Payload::IsEnd).is_empty());
        assert!(f.untyped(1, s2).is_empty());
        assert!(f.ids.live.is_empty());
    }

    #[test]
    fn try_another_after_the_group_vanished_makes_the_peer_first() {
        let mut f = Fixture::default();
        f.open(1);
        f.open(2);
        f.leave(1);
        assert_eq!(f.try_another(2), vec![is_first(2, true)]);
        assert_eq!(f.g.members(), &[2]);
        assert_eq!(f.open(3), vec![is_first(3, false)]);
    }

    #[test]
    fn empty_group_makes_the_next_peer_first() {
        let mut f = Fixture::default();
        f.open(1);
        f.leave(1);
        assert_eq!(f.open(2), vec![is_first(2, true)]);
    }

    #[test]
    fn lone_member_asking_for_another_stays_first_and_is_never_bound_to_itself() {
        let mut f = Fixture::default();
        f.open(1);
        assert_eq!(f.try_another(1), vec![is_first(1, true)]);
        assert_eq!(f.g.bound_member(1), None);
        assert_eq!(f.g.members(), &[1]);
    }

    #[test]
    fn member_asking_for_another_is_bound_elsewhere_and_stays_member() {
        let mut f = Fixture::default();
        f.member(1);
        f.member(2);
        assert_eq!(f.g.bound_member(2), Some(1));
        assert_eq!(f.try_another(1), vec![is_first(1, false)]);
        assert_eq!(f.g.bound_member(1), Some(2));
        assert_eq!(f.g.members(), &[1, 2]);
    }

    #[test]
    fn content_to_own_joiner_is_not_copied_to_own_member() {
        let mut f = Fixture::default();
        f.member(1);
        f.member(2); // member, still bound to 1
        f.open(3); // bound to 1
        f.try_another(3); // bound to 2
        let s3 = f.g.binding_id(3).expect("bound");
        assert_eq!(f.g.bound_member(3), Some(2));
        assert_eq!(f.send(2, s3, d(b"x")), vec![data(3, 0, b"x")]);
    }

    #[test]
    fn unbound_peers_content_goes_nowhere() {
        let mut f = Fixture::default();
        f.open(1);
        assert!(f.send(1, 0, d(b"x")).is_empty());
        assert!(f.send(1, 5, Payload::IsError).is_empty());
    }

    #[test]
    fn stable_beyond_the_member_limit_is_refused_with_room_full() {
        let mut f = Fixture::with_limit(1);
        f.open(1);
        f.open(2);
        let s = f.g.binding_id(2).expect("bound");
        assert_eq!(
            f.stable(2),
            vec![
                signal(1, s, Payload::IsError),
                LegacyAction::Close {
                    to: 2,
                    error: SigverError::Refused(Refusal::RoomFull(1))
                }
            ]
        );
        assert_eq!(f.g.members(), &[1]);
        assert_eq!(f.g.peer_count(), 1);
    }

    #[test]
    fn events_from_unknown_peers_are_ignored() {
        let mut f = Fixture::default();
        assert!(f.stable(9).is_empty());
        assert!(f.try_another(9).is_empty());
        assert!(f.send(9, 0, d(b"x")).is_empty());
        assert!(f.leave(9).is_empty());
        assert!(f.g.members().is_empty());
    }

    pub(crate) mod properties {
        use super::*;
        use crate::sigver::testkit::{Event, Model};
        use proptest::prelude::*;

        /// Peers are named by slot; a slot opened again is a new connection
        /// (the server never reuses a `PeerId`, and a departed peer's
        /// bindings may outlive it).
        #[derive(Debug, Clone)]
        pub(crate) enum Op {
            Open(u8),
            Stable(u8),
            TryAnother(u8),
            /// slot, route id (index into live route ids, or raw), payload kind
            Send(u8, u8, u8),
            /// slot, route id as for `Send`
            Untyped(u8, u8),
            Leave(u8),
        }

        pub(crate) fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                (0u8..6).prop_map(Op::Open),
                (0u8..6).prop_map(Op::Stable),
                (0u8..6).prop_map(Op::TryAnother),
                (0u8..6, 0u8..12, 0u8..3).prop_map(|(p, r, k)| Op::Send(p, r, k)),
                (0u8..6, 0u8..12).prop_map(|(p, r)| Op::Untyped(p, r)),
                (0u8..6).prop_map(Op::Leave),
            ]
        }

        pub(crate) fn payload(kind: u8) -> Payload {
            match kind {
                0 => Payload::IsEnd,
                1 => Payload::IsError,
                _ => Payload::Data(Bytes::from_static(b"d")),
            }
        }

        /// Half the time a route id that is live, else a raw small one.
        pub(crate) fn route_id(g: &LegacyGroupState, r: u8) -> u32 {
            let mut routes: Vec<_> = g.core.bindings().routes().map(|(id, _)| id).collect();
            routes.sort_unstable();
            if r < 6 && !routes.is_empty() {
                routes[r as usize % routes.len()]
            } else {
                u32::from(r)
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]
            /// The shared invariants (see `testkit`), and sigver 18.x's own:
            /// `stable` makes a member and is not answered, content and a
            /// `content` with no type follow a model of the subscriptions,
            /// and what is left of a departed peer's bindings is what it
            /// did not feed.
            #[test]
            fn random_sequences_keep_the_group_consistent(ops in prop::collection::vec(op(), 1..80)) {
                let mut f = Fixture::with_limit(4);
                let mut model = Model::default();
                let mut slots: [PeerId; 6] = [0, 1, 2, 3, 4, 5];
                let mut next_peer: PeerId = 6;
                for op in ops {
                    match op {
                        Op::Open(slot) => {
                            let slot = usize::from(slot);
                            if !model.is_alive(slots[slot]) {
                                slots[slot] = next_peer;
                                next_peer += 1;
                            }
                            let p = slots[slot];
                            model.step(&mut f, Event::Open { peer: p, answered: true }, |g, ids, out| g.attach(p, ids, out))?;
                        }
                        Op::Stable(slot) => {
                            let p = slots[usize::from(slot)];
                            let alive = model.is_alive(p);
                            let actions = model.step(&mut f, Event::Frame(p), |g, ids, out| g.stable(p, ids, out))?;
                            if alive && !actions.iter().any(|a| matches!(a, LegacyAction::Close { to, .. } if *to == p)) {
                                prop_assert!(f.g.is_member(p), "stable makes a member");
                            }
                            prop_assert!(!actions.iter().any(|a| matches!(a, LegacyAction::IsFirst { .. })), "stable is not answered");
                        }
                        Op::TryAnother(slot) => {
                            let p = slots[usize::from(slot)];
                            model.step(&mut f, Event::Request(p), |g, ids, out| g.try_another(p, ids, out))?;
                        }
                        Op::Send(slot, r, k) => {
                            let id = route_id(&f.g, r);
                            let p = slots[usize::from(slot)];
                            // The model: to the sender's own joiner named by
                            // `id` (if that direction is open), else up to
                            // its member (if open), else nowhere; and only
                            // to a peer still there.
                            let bindings = f.g.core.bindings();
                            let own_joiner = bindings.joiner_of(id).filter(|&j| {
                                id != 0 && bindings.of(j).is_some_and(|b| b.member == p)
                            });
                            let expected = match own_joiner {
                                Some(j) => bindings.of(j).filter(|b| b.downstream_open).map(|_| (j, 0)),
                                None => bindings.of(p).filter(|b| b.upstream_open).map(|b| (b.member, b.id)),
                            };
                            let expected: Vec<_> = expected
                                .into_iter()
                                .filter(|(to, _)| model.is_alive(p) && model.is_alive(*to))
                                .map(|(to, id)| LegacyAction::Content { to, id, payload: payload(k) })
                                .collect();
                            let actions = model.step(&mut f, Event::Frame(p), |g, ids, out| g.content(p, id, payload(k), ids, out))?;
                            prop_assert_eq!(&actions, &expected);
                        }
                        Op::Untyped(slot, r) => {
                            let id = route_id(&f.g, r);
                            let p = slots[usize::from(slot)];
                            // The model: the open directions that see it,
                            // the older naming the reason.
                            let bindings = f.g.core.bindings();
                            let up = bindings.of(p).filter(|b| b.upstream_open).map(|b| (b.order, untyped_from_joiner(b.id)));
                            let down = bindings.joiner_of(id)
                                .filter(|_| id != 0)
                                .and_then(|j| bindings.of(j))
                                .filter(|b| b.member == p && b.downstream_open)
                                .map(|b| (b.order, SigverError::BadMessage(UNTYPED_FROM_MEMBER.into())));
                            let expected = up.into_iter().chain(down).min_by_key(|(order, _)| *order)
                                .filter(|_| model.is_alive(p))
                                .map(|(_, error)| LegacyAction::Close { to: p, error });
                            let actions = model.step(&mut f, Event::Frame(p), |g, ids, out| g.untyped_content(p, id, ids, out))?;
                            prop_assert_eq!(actions.last().filter(|a| matches!(a, LegacyAction::Close { .. })), expected.as_ref());
                        }
                        Op::Leave(slot) => {
                            let p = slots[usize::from(slot)];
                            model.step(&mut f, Event::Gone(p), |g, ids, out| g.leave(p, ids, out))?;
                        }
                    }
                    let bindings = f.g.core.bindings();
                    for (_, joiner) in bindings.routes() {
                        let b = bindings.of(joiner).expect("route has a binding");
                        prop_assert!(!b.finished(), "finished bindings are forgotten");
                        prop_assert!(model.is_alive(joiner) || !b.upstream_open, "what a departed joiner fed has ended");
                        prop_assert!(model.is_alive(b.member) || !b.downstream_open, "what a departed member fed has ended");
                        prop_assert!(model.is_alive(joiner) || model.is_alive(b.member), "a binding needs one side alive");
                    }
                }
                model.everyone_leaves(&mut f)?;
            }

            #[test]
            fn try_another_visits_every_other_member_before_repeating(n in 1usize..7, rounds in 1usize..20) {
                let mut f = Fixture::default();
                for m in 1..=n as PeerId {
                    f.member(m);
                }
                let joiner = 100;
                f.open(joiner);
                let mut seen = vec![f.g.bound_member(joiner).expect("bound")];
                for _ in 0..rounds {
                    let actions = f.try_another(joiner);
                    if n == 1 {
                        // The lone member was tried: it is replaced.
                        prop_assert_eq!(actions.last(), Some(&is_first(joiner, true)));
                        prop_assert_eq!(f.g.members(), &[joiner][..]);
                        return Ok(());
                    }
                    prop_assert_eq!(actions, vec![is_first(joiner, false)]);
                    seen.push(f.g.bound_member(joiner).expect("bound"));
                }
                let expected: Vec<PeerId> = (0..seen.len()).map(|i| (i % n) as PeerId + 1).collect();
                prop_assert_eq!(seen, expected);
            }
        }
    }
}
