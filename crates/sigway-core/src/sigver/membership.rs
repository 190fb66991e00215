//! The membership core both sigver dialects are built on.
//!
//! Whatever their messages, sigver 20.x ([`state`](super::state)) and 18.x
//! ([`legacy::state`](super::legacy::state)) keep the same things about the
//! peers under one key and decide some of them the same way: who is
//! attached, who is a member (in the order they became one), which members
//! each peer has tried, the [`Bindings`] between joiners and members, the
//! member limit and the refusal past it, what a peer owes when it goes, the
//! closing of a blocking member, and which member a joiner is bound to
//! ([`choose_member`]). That is `GroupCore` (crate-private). Each dialect's
//! rules own one, answer in their own messages and keep their own moments
//! of decision; the few things the core cannot know it asks them through
//! `MembershipRules`: what a member and a tried member are, what a
//! departure does to bindings, and how an end notice and a close are worded.

use foldhash::{HashMap, HashMapExt as _};

use crate::error::{Refusal, SigverError};
use crate::sigver::bindings::{Bindings, Leg};
use crate::sigver::types::{PeerKey, SignalingId, SignalingIds};

/// Limits the rules enforce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupLimits {
    /// Members a group may have; a peer that would be one more is refused
    /// and closed ([`Refusal::RoomFull`]).
    pub max_members: usize,
}

impl Default for GroupLimits {
    fn default() -> Self {
        Self {
            max_members: usize::MAX,
        }
    }
}

/// Picks the member a joiner is bound to: among members it has not tried (in
/// membership order) the first favored one, else the first one; when it has
/// tried them all, its tried list is forgotten and the choice made again.
/// `K` is whatever a dialect remembers a tried member by (sigver 20.x: its
/// Netflux id; sigver 18.x: the connection as it was then). `None` only
/// when `members` is empty.
pub fn choose_member<M: Copy, K: PartialEq>(
    members: impl Iterator<Item = (M, K, bool)> + Clone,
    tried: &mut Vec<K>,
) -> Option<M> {
    for _ in 0..2 {
        let mut first = None;
        for (member, key, favored) in members.clone() {
            if tried.contains(&key) {
                continue;
            }
            if favored {
                return Some(member);
            }
            first.get_or_insert(member);
        }
        if first.is_some() {
            return first;
        }
        tried.clear();
    }
    None
}

/// What [`GroupCore`] asks of a dialect's rules. Implemented by each
/// dialect's state, which owns a `GroupCore<P, Self>`.
pub(crate) trait MembershipRules<P: PeerKey>: Sized {
    /// What the dialect keeps of a peer while it is a member.
    type Member: Copy + std::fmt::Debug;
    /// How a peer remembers a member it has tried.
    type Tried: Copy + PartialEq + std::fmt::Debug;
    /// Per-peer data only this dialect keeps.
    type Extra: std::fmt::Debug;
    /// The dialect's "what to do next".
    type Action;

    /// How `record`'s peer is remembered by those that try it; `None` when
    /// it cannot be tried (it is not a member, where that matters).
    fn tried_key(peer: P, record: &Record<P, Self>) -> Option<Self::Tried>;

    /// What `peer`'s departure does to its bindings: the legs that owe it
    /// an end notice.
    fn part(bindings: &mut Bindings<P>, peer: P, ids: &mut impl SignalingIds) -> Vec<Leg<P>>;

    /// The end-of-binding notice a leg owed by a departed peer gets.
    fn end_notice(leg: Leg<P>) -> Self::Action;

    /// Closes `to`, already gone from the state, for `error`.
    fn close(to: P, error: SigverError) -> Self::Action;
}

/// What the core keeps of one connection.
#[derive(Debug, PartialEq)]
pub(crate) struct PeerRecord<M, T, X> {
    /// Set while the peer is a member: what the dialect keeps of it as one.
    pub(crate) member: Option<M>,
    /// Preferred entry point (`?favored`; sigver 18.x has none).
    pub(crate) favored: bool,
    /// Members this peer was bound to, as the dialect remembers them.
    pub(crate) tried: Vec<T>,
    /// The dialect's own data about the peer.
    pub(crate) extra: X,
}

/// The record of one peer of the rules `R`.
pub(crate) type Record<P, R> = PeerRecord<
    <R as MembershipRules<P>>::Member,
    <R as MembershipRules<P>>::Tried,
    <R as MembershipRules<P>>::Extra,
>;

/// The peers of one key, its members in order and its bindings, with the
/// decisions both dialects make alike. "The group" of the spec is the
/// member list: when it empties, the group is gone.
#[derive(Debug)]
pub(crate) struct GroupCore<P: PeerKey, R: MembershipRules<P>> {
    peers: HashMap<P, Record<P, R>>,
    /// Members in the order they became members.
    members: Vec<P>,
    bindings: Bindings<P>,
    limits: GroupLimits,
}

/// Two cores are equal when they hold the same peers with the same records,
/// the same members in the same order, the same bindings and limits.
impl<P: PeerKey, R: MembershipRules<P>> PartialEq for GroupCore<P, R>
where
    Record<P, R>: PartialEq,
{
    fn eq(&self, other: &Self) -> bool {
        self.peers == other.peers
            && self.members == other.members
            && self.bindings == other.bindings
            && self.limits == other.limits
    }
}

impl<P: PeerKey, R: MembershipRules<P>> GroupCore<P, R> {
    pub(crate) fn new(limits: GroupLimits) -> Self {
        Self {
            peers: HashMap::new(),
            members: Vec::new(),
            bindings: Bindings::default(),
            limits,
        }
    }

    /// A connection opened: records it unless it already is. Returns
    /// whether it is new.
    pub(crate) fn attach(&mut self, peer: P, favored: bool, extra: R::Extra) -> bool {
        if self.peers.contains_key(&peer) {
            return false;
        }
        let record = PeerRecord {
            member: None,
            favored,
            tried: Vec::new(),
            extra,
        };
        self.peers.insert(peer, record);
        true
    }

    /// The peer is attached (opened and not gone).
    pub(crate) fn is_attached(&self, peer: P) -> bool {
        self.peers.contains_key(&peer)
    }

    pub(crate) fn is_member(&self, peer: P) -> bool {
        self.member(peer).is_some()
    }

    /// What the dialect keeps of the peer as a member, if it is one.
    pub(crate) fn member(&self, peer: P) -> Option<&R::Member> {
        self.peers.get(&peer)?.member.as_ref()
    }

    /// Members in membership order; empty means "no group".
    pub(crate) fn members(&self) -> &[P] {
        &self.members
    }

    pub(crate) fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Every attached peer's record, in no particular order (the test
    /// kit's invariants, snapshots).
    pub(crate) fn records(&self) -> impl Iterator<Item = (P, &Record<P, R>)> {
        self.peers.iter().map(|(&peer, record)| (peer, record))
    }

    #[cfg(test)]
    pub(crate) fn limits(&self) -> GroupLimits {
        self.limits
    }

    /// The core holding exactly these parts (what [`GroupCore::records`],
    /// [`GroupCore::members`] and [`GroupCore::bindings`] read, back), under
    /// `limits`. Refuses a member list that does not match the records:
    /// a member twice, a member not attached, or a record holding member
    /// data whose peer is not listed. The bindings are the caller's to check
    /// against the peers (what a dialect allows of departed peers differs).
    /// The member count may exceed `limits` (they may have changed since):
    /// the limit then only refuses new members.
    pub(crate) fn from_parts(
        limits: GroupLimits,
        peers: HashMap<P, Record<P, R>>,
        members: Vec<P>,
        bindings: Bindings<P>,
    ) -> Result<Self, String> {
        for (i, member) in members.iter().enumerate() {
            if members[..i].contains(member) {
                return Err(format!("{member:?} is a member twice"));
            }
            if peers.get(member).is_none_or(|r| r.member.is_none()) {
                return Err(format!("member {member:?} is not an attached member"));
            }
        }
        let seated = peers.values().filter(|r| r.member.is_some()).count();
        if seated != members.len() {
            return Err("a peer holds member data but is not a member".into());
        }
        Ok(Self {
            peers,
            members,
            bindings,
            limits,
        })
    }

    pub(crate) fn record_mut(&mut self, peer: P) -> Option<&mut Record<P, R>> {
        self.peers.get_mut(&peer)
    }

    pub(crate) fn bindings(&self) -> &Bindings<P> {
        &self.bindings
    }

    pub(crate) fn bindings_mut(&mut self) -> &mut Bindings<P> {
        &mut self.bindings
    }

    /// The id of the peer's current binding, if bound.
    pub(crate) fn binding_id(&self, peer: P) -> Option<SignalingId> {
        self.bindings.of(peer).map(|b| b.id)
    }

    /// The member the peer is bound to, if bound.
    pub(crate) fn bound_member(&self, peer: P) -> Option<P> {
        self.bindings.of(peer).map(|b| b.member)
    }

    /// How `peer` is remembered by those that try it.
    pub(crate) fn tried_key(&self, peer: P) -> Option<R::Tried> {
        R::tried_key(peer, self.peers.get(&peer)?)
    }

    /// `peer` has tried `member` (as `member` is now).
    pub(crate) fn has_tried(&self, peer: P, member: P) -> bool {
        let (Some(member), Some(record)) = (self.tried_key(member), self.peers.get(&peer)) else {
            return false;
        };
        record.tried.contains(&member)
    }

    /// Makes the attached `peer` a member holding `member` (a member already
    /// just gets `member` again), unless the group is full: then the peer
    /// is refused, removed and closed ([`Refusal::RoomFull`]). Returns
    /// whether it is a member.
    pub(crate) fn admit(
        &mut self,
        peer: P,
        member: R::Member,
        ids: &mut impl SignalingIds,
        out: &mut Vec<R::Action>,
    ) -> bool {
        if !self.peers.contains_key(&peer) {
            return false;
        }
        let already = self.is_member(peer);
        if !already && self.members.len() >= self.limits.max_members {
            // Refused peers leave at once: what they owe (end notices) goes
            // out now, not when the socket ends.
            let refusal = Refusal::RoomFull(self.limits.max_members);
            self.expel(peer, SigverError::Refused(refusal), ids, out);
            return false;
        }
        self.seat(peer, member, already);
        true
    }

    /// The lone member `blocking` was tried and could not be reached: the
    /// attached `peer` takes its place, with no limit (the member count does
    /// not change), then `blocking` is removed and closed
    /// ([`SigverError::BlockingMember`]).
    pub(crate) fn replace_blocking(
        &mut self,
        blocking: P,
        peer: P,
        member: R::Member,
        ids: &mut impl SignalingIds,
        out: &mut Vec<R::Action>,
    ) {
        if self.peers.contains_key(&peer) {
            let already = self.is_member(peer);
            self.seat(peer, member, already);
        }
        self.expel(blocking, SigverError::BlockingMember, ids, out);
    }

    fn seat(&mut self, peer: P, member: R::Member, already: bool) {
        if let Some(record) = self.peers.get_mut(&peer) {
            record.member = Some(member);
            if !already {
                self.members.push(peer);
            }
        }
    }

    /// The peer is no longer a member; it stays attached, bindings and all.
    pub(crate) fn demote(&mut self, peer: P) {
        if let Some(record) = self.peers.get_mut(&peer) {
            record.member = None;
        }
        self.members.retain(|&m| m != peer);
    }

    /// Binds `peer` to the member [`choose_member`] picks among the others
    /// (the ones it has not tried, favored first) and records it as tried.
    /// Returns that member; `None` when there is no other member.
    pub(crate) fn bind_to_untried(&mut self, peer: P, ids: &mut impl SignalingIds) -> Option<P> {
        let mut tried = self
            .peers
            .get_mut(&peer)
            .map(|p| std::mem::take(&mut p.tried))
            .unwrap_or_default();
        let candidates = self
            .members
            .iter()
            .filter(|&&m| m != peer)
            .filter_map(|&m| {
                let record = self.peers.get(&m)?;
                Some((m, R::tried_key(m, record)?, record.favored))
            });
        let chosen = choose_member(candidates, &mut tried);
        if let Some(member) = chosen {
            self.bindings.bind(peer, member, ids);
            tried.extend(self.tried_key(member));
        }
        if let Some(record) = self.peers.get_mut(&peer) {
            record.tried = tried;
        }
        chosen
    }

    /// Removes the peer (it leaves, or is closed by the rules), sending the
    /// end-of-binding notices it owes to those still attached.
    pub(crate) fn remove(
        &mut self,
        peer: P,
        ids: &mut impl SignalingIds,
        out: &mut Vec<R::Action>,
    ) {
        if self.peers.remove(&peer).is_none() {
            return;
        }
        self.members.retain(|&m| m != peer);
        for leg in R::part(&mut self.bindings, peer, ids) {
            if self.peers.contains_key(&leg.to) {
                out.push(R::end_notice(leg));
            }
        }
    }

    /// Removes the peer as [`GroupCore::remove`] does, then closes it.
    pub(crate) fn expel(
        &mut self,
        peer: P,
        error: SigverError,
        ids: &mut impl SignalingIds,
        out: &mut Vec<R::Action>,
    ) {
        self.remove(peer, ids, out);
        out.push(R::close(peer, error));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sigver::testkit::SeqIds;
    use crate::sigver::types::PeerId;

    /// A dialect cut down to what the core asks: members hold a number,
    /// are tried by connection, and a departure keeps the directions
    /// towards the departed peer (so notices to it must be skipped).
    #[derive(Debug)]
    struct Toy;

    #[derive(Debug, PartialEq)]
    enum Said {
        End(PeerId, SignalingId),
        Close(PeerId, SigverError),
    }

    impl MembershipRules<PeerId> for Toy {
        type Member = u32;
        type Tried = PeerId;
        type Extra = ();
        type Action = Said;

        fn tried_key(peer: PeerId, record: &Record<PeerId, Self>) -> Option<PeerId> {
            record.member.map(|_| peer)
        }
        fn part(
            b: &mut Bindings<PeerId>,
            peer: PeerId,
            ids: &mut impl SignalingIds,
        ) -> Vec<Leg<PeerId>> {
            b.depart(peer, ids)
        }
        fn end_notice(leg: Leg<PeerId>) -> Said {
            Said::End(leg.to, leg.id)
        }
        fn close(to: PeerId, error: SigverError) -> Said {
            Said::Close(to, error)
        }
    }

    fn core(max_members: usize, peers: &[PeerId]) -> GroupCore<PeerId, Toy> {
        let mut core = GroupCore::new(GroupLimits { max_members });
        for &p in peers {
            core.attach(p, false, ());
        }
        core
    }

    #[test]
    fn admission_past_the_limit_removes_the_peer_with_what_it_owes_then_closes_it() {
        let (mut g, mut ids, mut out) = (core(1, &[1, 2]), SeqIds::default(), vec![]);
        assert!(g.admit(1, 10, &mut ids, &mut out));
        assert_eq!(g.bind_to_untried(2, &mut ids), Some(1));
        let id = g.binding_id(2).expect("bound");
        assert!(!g.admit(2, 20, &mut ids, &mut out));
        let refusal = SigverError::Refused(Refusal::RoomFull(1));
        assert_eq!(out, vec![Said::End(1, id), Said::Close(2, refusal)]);
        assert!(!g.is_attached(2));
        assert_eq!(g.members(), &[1]);
    }

    #[test]
    fn a_member_admitted_again_keeps_its_place_and_its_new_data_even_when_full() {
        let (mut g, mut ids, mut out) = (core(2, &[1, 2]), SeqIds::default(), vec![]);
        assert!(g.admit(1, 10, &mut ids, &mut out));
        assert!(g.admit(2, 20, &mut ids, &mut out));
        assert!(g.admit(1, 11, &mut ids, &mut out));
        assert_eq!(g.members(), &[1, 2]);
        assert_eq!(g.member(1), Some(&11));
        assert!(out.is_empty());
        assert!(!g.admit(9, 90, &mut ids, &mut out), "not attached");
        assert!(out.is_empty());
    }

    #[test]
    fn a_blocking_member_is_replaced_whatever_the_limit_and_closed_after_its_notices() {
        let (mut g, mut ids, mut out) = (core(1, &[1, 2]), SeqIds::default(), vec![]);
        g.admit(1, 10, &mut ids, &mut out);
        g.bind_to_untried(2, &mut ids);
        let id = g.binding_id(2).expect("bound");
        assert!(g.has_tried(2, 1));
        g.replace_blocking(1, 2, 20, &mut ids, &mut out);
        assert_eq!(
            out,
            vec![
                Said::End(2, id),
                Said::Close(1, SigverError::BlockingMember)
            ]
        );
        assert_eq!(g.members(), &[2]);
        assert!(!g.is_attached(1));
    }

    #[test]
    fn member_choice_skips_the_peer_itself_prefers_favored_and_starts_over() {
        let mut g: GroupCore<PeerId, Toy> = GroupCore::new(GroupLimits::default());
        let (mut ids, mut out) = (SeqIds::default(), vec![]);
        for (p, favored) in [(1, false), (2, false), (3, true)] {
            g.attach(p, favored, ());
            g.admit(p, 0, &mut ids, &mut out);
        }
        let chosen: Vec<_> = (0..3).map(|_| g.bind_to_untried(1, &mut ids)).collect();
        assert_eq!(chosen, vec![Some(3), Some(2), Some(3)]);
        assert_eq!(g.record_mut(1).map(|r| r.tried.clone()), Some(vec![3]));
        assert!(g.is_member(1), "binding a member does not demote it");
        g.demote(2);
        g.demote(3);
        assert_eq!(g.bind_to_untried(1, &mut ids), None, "no other member");
    }

    #[test]
    fn notices_owed_by_a_departure_go_to_attached_peers_only() {
        let (mut g, mut ids, mut out) = (core(9, &[1, 2]), SeqIds::default(), vec![]);
        g.admit(1, 10, &mut ids, &mut out);
        g.bind_to_untried(2, &mut ids);
        let id = g.binding_id(2).expect("bound");
        g.remove(2, &mut ids, &mut out);
        assert_eq!(out, vec![Said::End(1, id)]);
        // 1 → 2 stayed open (this dialect keeps it), but 2 is gone.
        g.remove(1, &mut ids, &mut out);
        assert_eq!(out.len(), 1);
        assert!(ids.live.is_empty() && g.members().is_empty());
        g.remove(1, &mut ids, &mut out);
        assert_eq!(out.len(), 1, "removing twice owes nothing");
    }
}
