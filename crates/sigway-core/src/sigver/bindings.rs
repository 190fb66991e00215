//! The bindings of one group: which joiner is bound to which member, under
//! which id, and which of the two directions still relay.
//!
//! Both dialects keep exactly this table (sigver 20.x calls the id a
//! signaling id, sigver 18.x a route id); they differ only in what they tell
//! peers about it. So the table tells no one anything: it answers where
//! content goes and whom a departing peer owes an end notice, and each
//! dialect's state turns that into its own messages. Pure, like the states
//! that own it.
//!
//! The dialects part on what a departure leaves behind: sigver 20.x drops
//! every binding of the departed peer ([`Bindings::drop_peer`]); sigver 18.x
//! ends only the directions the departed peer fed, and a direction towards
//! it lives on until its sender ends it ([`Bindings::depart`]).

use foldhash::{HashMap, HashMapExt as _};

use crate::sigver::ids::MAX_ID;
use crate::sigver::types::{PeerId, PeerKey, SignalingId, SignalingIds};

/// Which way content travels along a binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hop {
    /// From the member down to the joiner.
    Down,
    /// From the joiner up to its member.
    Up,
}

/// A joiner's link to the member it connects through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding<P = PeerId> {
    /// The member the joiner connects through.
    pub member: P,
    /// How the member sees and addresses the joiner.
    pub id: SignalingId,
    /// joiner → member still relayed.
    pub upstream_open: bool,
    /// member → joiner still relayed.
    pub downstream_open: bool,
    /// Bindings are numbered as they are made: sigver 18.x hands a message
    /// to the bindings it concerns in that order.
    pub order: u64,
}

impl<P> Binding<P> {
    /// Content going `hop` is still relayed.
    pub fn is_open(&self, hop: Hop) -> bool {
        match hop {
            Hop::Up => self.upstream_open,
            Hop::Down => self.downstream_open,
        }
    }

    /// Stops relaying in one direction.
    pub fn end(&mut self, hop: Hop) {
        match hop {
            Hop::Up => self.upstream_open = false,
            Hop::Down => self.downstream_open = false,
        }
    }

    /// Both directions have ended.
    pub fn finished(&self) -> bool {
        !self.upstream_open && !self.downstream_open
    }
}

/// One way along a binding: to the peer `to`, going `hop`, on the binding
/// whose id is `id`. Each dialect writes it as its own message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leg<P = PeerId> {
    /// The peer at the end of the leg.
    pub to: P,
    /// Which way it goes.
    pub hop: Hop,
    /// The binding's id.
    pub id: SignalingId,
}

impl<P> Leg<P> {
    /// The leg to `to`, going `hop`, on the binding `id`.
    pub fn new(to: P, hop: Hop, id: SignalingId) -> Self {
        Self { to, hop, id }
    }
}

/// Every binding of one group, found by joiner, by member and by id.
#[derive(Debug)]
pub struct Bindings<P = PeerId> {
    by_joiner: HashMap<P, Binding<P>>,
    /// Member → the ids of its joiners, in the order they were bound.
    joiners: HashMap<P, Vec<SignalingId>>,
    /// Id → the joiner holding it.
    routes: HashMap<SignalingId, P>,
    /// Bindings made so far.
    made: u64,
}

impl<P: PeerKey> Default for Bindings<P> {
    fn default() -> Self {
        Self {
            by_joiner: HashMap::new(),
            joiners: HashMap::new(),
            routes: HashMap::new(),
            made: 0,
        }
    }
}

impl<P: PeerKey> Bindings<P> {
    /// Binds `joiner` to `member` under a fresh id, silently dropping its
    /// previous binding.
    pub fn bind(&mut self, joiner: P, member: P, ids: &mut impl SignalingIds) {
        self.unbind(joiner, ids);
        let id = ids.allocate();
        self.joiners.entry(member).or_default().push(id);
        self.made += 1;
        let binding = Binding {
            member,
            id,
            upstream_open: true,
            downstream_open: true,
            order: self.made,
        };
        self.by_joiner.insert(joiner, binding);
        self.routes.insert(id, joiner);
    }

    /// Drops the joiner's binding without any notice and releases its id;
    /// returns it.
    pub fn unbind(&mut self, joiner: P, ids: &mut impl SignalingIds) -> Option<Binding<P>> {
        let binding = self.by_joiner.remove(&joiner)?;
        self.routes.remove(&binding.id);
        ids.release(binding.id);
        if let Some(joiners) = self.joiners.get_mut(&binding.member) {
            joiners.retain(|&id| id != binding.id);
            if joiners.is_empty() {
                self.joiners.remove(&binding.member);
            }
        }
        Some(binding)
    }

    /// The joiner's current binding.
    pub fn of(&self, joiner: P) -> Option<&Binding<P>> {
        self.by_joiner.get(&joiner)
    }

    /// The joiner holding `id`.
    pub fn joiner_of(&self, id: SignalingId) -> Option<P> {
        self.routes.get(&id).copied()
    }

    /// The ids of the joiners bound to `member`, in the order they were bound.
    pub fn joiners_of(&self, member: P) -> &[SignalingId] {
        self.joiners.get(&member).map_or(&[], Vec::as_slice)
    }

    /// Every live id with the joiner holding it.
    pub fn routes(&self) -> impl Iterator<Item = (SignalingId, P)> + '_ {
        self.routes.iter().map(|(&id, &joiner)| (id, joiner))
    }

    /// Where content `peer` sends naming `id` goes, and the binding it
    /// travels along: down to the joiner `id` names if it is one of the
    /// peer's own joiners, else up the peer's own binding.
    pub fn route(&mut self, peer: P, id: SignalingId) -> Option<(Leg<P>, &mut Binding<P>)> {
        if id != 0
            && let Some(joiner) = self.joiner_of(id)
            && self.of(joiner).is_some_and(|b| b.member == peer)
        {
            let binding = self.by_joiner.get_mut(&joiner)?;
            return Some((Leg::new(joiner, Hop::Down, id), binding));
        }
        let binding = self.by_joiner.get_mut(&peer)?;
        Some((Leg::new(binding.member, Hop::Up, binding.id), binding))
    }

    /// Drops every binding `peer` is part of, as it leaves; returns the
    /// legs that owe an end notice, those still open from the peer: up to
    /// its member first, then down to its joiners in the order they were
    /// bound.
    pub fn drop_peer(&mut self, peer: P, ids: &mut impl SignalingIds) -> Vec<Leg<P>> {
        let mut owed = Vec::new();
        if let Some(binding) = self.unbind(peer, ids)
            && binding.upstream_open
        {
            owed.push(Leg::new(binding.member, Hop::Up, binding.id));
        }
        for id in self.joiners.remove(&peer).unwrap_or_default() {
            if let Some(joiner) = self.joiner_of(id)
                && let Some(binding) = self.unbind(joiner, ids)
                && binding.downstream_open
            {
                owed.push(Leg::new(joiner, Hop::Down, id));
            }
        }
        owed
    }

    /// The peer is gone, as sigver 18.x sees it: the directions it fed (up
    /// to its member, down to its joiners) end and owe an end notice, as in
    /// [`Bindings::drop_peer`]; a direction towards it stays open until its
    /// sender ends it, rebinds or leaves too. A binding with both directions
    /// ended is dropped and its id released.
    pub fn depart(&mut self, peer: P, ids: &mut impl SignalingIds) -> Vec<Leg<P>> {
        let mut owed = Vec::new();
        if let Some(binding) = self.by_joiner.get_mut(&peer)
            && binding.upstream_open
        {
            binding.upstream_open = false;
            owed.push(Leg::new(binding.member, Hop::Up, binding.id));
        }
        self.forget_if_finished(peer, ids);
        for id in self.joiners_of(peer).to_vec() {
            let Some(joiner) = self.joiner_of(id) else {
                continue;
            };
            if let Some(binding) = self.by_joiner.get_mut(&joiner)
                && binding.downstream_open
            {
                binding.downstream_open = false;
                owed.push(Leg::new(joiner, Hop::Down, id));
            }
            self.forget_if_finished(joiner, ids);
        }
        owed
    }

    /// Drops the joiner's binding if both its directions have ended.
    pub fn forget_if_finished(&mut self, joiner: P, ids: &mut impl SignalingIds) {
        if self.of(joiner).is_some_and(Binding::finished) {
            self.unbind(joiner, ids);
        }
    }

    /// Every binding with its joiner, in the order they were made (for a
    /// snapshot: no hash order leaks out).
    pub(crate) fn in_order(&self) -> Vec<(P, &Binding<P>)> {
        let mut all: Vec<_> = self.by_joiner.iter().map(|(&j, b)| (j, b)).collect();
        all.sort_unstable_by_key(|(_, b)| b.order);
        all
    }

    /// Bindings made so far (the last one's `order`, or more).
    pub(crate) fn made(&self) -> u64 {
        self.made
    }

    /// The table holding exactly `bindings` (joiner, binding), having made
    /// `made` so far: what [`Bindings::in_order`] and [`Bindings::made`]
    /// read, back. Refuses what no table could hold: a joiner bound twice or
    /// to itself, an id that is 0, past 31 bits or held twice, an order
    /// that is 0, repeated or beyond `made`. A member's joiners are listed
    /// by order, as `bind` appends them.
    pub(crate) fn from_parts(
        bindings: impl IntoIterator<Item = (P, Binding<P>)>,
        made: u64,
    ) -> Result<Self, String> {
        let mut table = Self {
            made,
            ..Self::default()
        };
        let mut orders = std::collections::HashSet::new();
        let mut listed: Vec<(u64, P, SignalingId)> = Vec::new();
        for (joiner, binding) in bindings {
            if binding.member == joiner {
                return Err(format!("{joiner:?} is bound to itself"));
            }
            if binding.id == 0 || binding.id > MAX_ID {
                return Err(format!("binding id {} out of range", binding.id));
            }
            if binding.order == 0 || binding.order > made || !orders.insert(binding.order) {
                return Err(format!(
                    "binding order {} repeated or out of range",
                    binding.order
                ));
            }
            if table.routes.insert(binding.id, joiner).is_some() {
                return Err(format!("binding id {} held twice", binding.id));
            }
            listed.push((binding.order, binding.member, binding.id));
            if table.by_joiner.insert(joiner, binding).is_some() {
                return Err(format!("{joiner:?} is bound twice"));
            }
        }
        listed.sort_unstable_by_key(|&(order, _, _)| order);
        for (_, member, id) in listed {
            table.joiners.entry(member).or_default().push(id);
        }
        Ok(table)
    }
}

/// Two tables are equal when they hold the same bindings, index them alike
/// and have made as many.
impl<P: PeerKey> PartialEq for Bindings<P> {
    fn eq(&self, other: &Self) -> bool {
        self.made == other.made
            && self.by_joiner == other.by_joiner
            && self.joiners == other.joiners
            && self.routes == other.routes
    }
}

impl<P: PeerKey> Eq for Bindings<P> {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sigver::testkit::SeqIds;

    #[test]
    fn rebinding_drops_the_old_id_everywhere() {
        let (mut b, mut ids) = (Bindings::default(), SeqIds::default());
        b.bind(10, 1, &mut ids);
        b.bind(10, 2, &mut ids);
        assert_eq!(b.of(10).map(|b| (b.member, b.id)), Some((2, 2)));
        assert_eq!(b.joiner_of(1), None);
        assert_eq!(b.joiners_of(1), &[] as &[SignalingId]);
        assert_eq!(b.joiners_of(2), &[2]);
        assert_eq!(ids.live.len(), 1);
        assert_eq!(b.unbind(10, &mut ids).map(|b| b.id), Some(2));
        assert!(ids.live.is_empty() && b.routes().next().is_none());
    }

    #[test]
    fn content_goes_down_to_own_joiners_only_else_up() {
        let (mut b, mut ids) = (Bindings::default(), SeqIds::default());
        b.bind(10, 1, &mut ids); // id 1
        b.bind(1, 2, &mut ids); // id 2: the member 1 is itself bound to 2
        b.bind(20, 2, &mut ids); // id 3
        let hop = |b: &mut Bindings, peer, id| b.route(peer, id).map(|(leg, _)| (leg.hop, leg.to));
        assert_eq!(hop(&mut b, 1, 1), Some((Hop::Down, 10)));
        assert_eq!(hop(&mut b, 1, 3), Some((Hop::Up, 2)), "not its joiner");
        assert_eq!(hop(&mut b, 1, 0), Some((Hop::Up, 2)));
        assert_eq!(hop(&mut b, 2, 3), Some((Hop::Down, 20)));
        assert_eq!(hop(&mut b, 2, 9), None, "unbound and no such joiner");
    }

    #[test]
    fn a_departing_peer_owes_notices_on_open_directions_only() {
        let (mut b, mut ids) = (Bindings::default(), SeqIds::default());
        b.bind(1, 9, &mut ids); // id 1: peer 1's own binding
        b.bind(10, 1, &mut ids); // id 2
        b.bind(11, 1, &mut ids); // id 3
        b.bind(12, 1, &mut ids); // id 4
        b.route(1, 3).expect("joiner 11").1.end(Hop::Down);
        assert_eq!(
            b.drop_peer(1, &mut ids),
            vec![
                Leg::new(9, Hop::Up, 1),
                Leg::new(10, Hop::Down, 2),
                Leg::new(12, Hop::Down, 4),
            ]
        );
        assert!(ids.live.is_empty(), "every id released");
        assert!(b.by_joiner.is_empty() && b.joiners.is_empty() && b.routes.is_empty());
        b.bind(2, 9, &mut ids);
        b.route(2, 0).expect("bound").1.end(Hop::Up);
        assert!(
            b.drop_peer(2, &mut ids).is_empty(),
            "upstream already ended"
        );
    }

    #[test]
    fn a_table_rebuilt_from_its_parts_is_equal_and_refuses_impossible_ones() {
        let (mut b, mut ids) = (Bindings::default(), SeqIds::default());
        b.bind(10, 1, &mut ids); // id 1, dropped below
        b.bind(11, 1, &mut ids); // id 2
        b.bind(12, 2, &mut ids); // id 3
        b.bind(13, 1, &mut ids); // id 4
        b.bind(10, 2, &mut ids); // id 5
        b.route(2, 5).expect("joiner 10").1.end(Hop::Down);
        let parts = |b: &Bindings| -> Vec<(PeerId, Binding)> {
            b.in_order()
                .into_iter()
                .map(|(j, b)| (j, b.clone()))
                .collect()
        };
        let rebuilt = Bindings::from_parts(parts(&b).into_iter().rev(), b.made());
        assert_eq!(rebuilt.as_ref(), Ok(&b));
        assert_eq!(b.joiners_of(1), &[2, 4], "a member's joiners in bind order");

        let with = |change: fn(&mut Vec<(PeerId, Binding)>)| {
            let mut all = parts(&b);
            change(&mut all);
            Bindings::from_parts(all, b.made()).err()
        };
        assert!(with(|all| all[0].1.member = all[0].0).is_some(), "self");
        assert!(with(|all| all[0].1.id = 0).is_some(), "id 0");
        assert!(
            with(|all| all[0].1.id = MAX_ID + 1).is_some(),
            "id > 31 bits"
        );
        assert!(with(|all| all[1].1.id = all[0].1.id).is_some(), "id twice");
        assert!(
            with(|all| all[1].1.order = all[0].1.order).is_some(),
            "order twice"
        );
        assert!(with(|all| all[0].1.order = 0).is_some(), "order 0");
        assert!(with(|all| all[0].1.order = 99).is_some(), "order > made");
        assert!(with(|all| all[1].0 = all[0].0).is_some(), "joiner twice");
        assert_eq!(with(|_| {}), None);
    }

    #[test]
    fn bindings_are_numbered_as_they_are_made() {
        let (mut b, mut ids) = (Bindings::default(), SeqIds::default());
        b.bind(10, 1, &mut ids);
        b.bind(11, 1, &mut ids);
        b.bind(10, 2, &mut ids);
        let order = |b: &Bindings, joiner| b.of(joiner).map(|b| b.order);
        assert_eq!((order(&b, 11), order(&b, 10)), (Some(2), Some(3)));
    }

    #[test]
    fn a_departure_ends_what_the_peer_fed_and_keeps_what_was_sent_to_it() {
        let (mut b, mut ids) = (Bindings::default(), SeqIds::default());
        b.bind(1, 9, &mut ids); // id 1: peer 1 joined through 9
        b.bind(10, 1, &mut ids); // id 2
        b.bind(11, 1, &mut ids); // id 3
        b.route(1, 3).expect("joiner 11").1.end(Hop::Down);
        b.route(11, 0).expect("bound").1.end(Hop::Up);
        assert_eq!(
            b.depart(1, &mut ids),
            vec![Leg::new(9, Hop::Up, 1), Leg::new(10, Hop::Down, 2)]
        );
        // 9 can still end its direction towards 1, and 10 its own up to 1.
        let (leg, binding) = b.route(9, 1).expect("9 → 1 stays open");
        assert_eq!(
            (leg.to, leg.hop, binding.upstream_open),
            (1, Hop::Down, false)
        );
        let (leg, binding) = b.route(10, 0).expect("10 → 1 stays open");
        assert_eq!(
            (leg.to, leg.hop, binding.downstream_open),
            (1, Hop::Up, false)
        );
        assert!(b.of(11).is_none(), "both directions had ended: dropped");
        assert_eq!(ids.live.len(), 2);
        // When the other side leaves too, nothing is owed to 1 any more
        // than it was (the caller skips departed peers) and all is dropped.
        assert_eq!(b.depart(9, &mut ids), vec![Leg::new(1, Hop::Down, 1)]);
        assert_eq!(b.depart(10, &mut ids), vec![Leg::new(1, Hop::Up, 2)]);
        assert!(ids.live.is_empty() && b.routes().next().is_none());
        assert!(b.by_joiner.is_empty() && b.joiners.is_empty());
    }
}
