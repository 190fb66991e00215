//! The deterministic harness both sigver dialects are tested on.
//!
//! A [`Fixture`] holds a dialect's rules with [`SeqIds`] (ids 1, 2, 3, ...
//! that also check each id is released exactly once) and returns what each
//! event decided. A [`Model`] is the test's own view of the peers (which
//! are open, which ever were); [`Model::step`] runs one event of a proptest
//! and checks the invariants both dialects share: members unique, live and
//! within the limit; an event from a peer that is not open does nothing;
//! actions only for live peers; a close removes its peer; every request
//! answered once (or refused when full), and truthfully; bound peers =
//! routes = ids held; every route with its binding, known to its member;
//! nobody bound to itself; nobody trying a member twice in a round; and,
//! at the end ([`Model::everyone_leaves`]), every id released. Each
//! dialect's own tests add only what is its own: its messages, its moments
//! of decision, its model of relaying.

use std::collections::{BTreeSet, HashSet};

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use crate::sigver::membership::{GroupCore, MembershipRules};
use crate::sigver::types::{PeerId, SignalingId, SignalingIds};

/// Deterministic ids 1, 2, 3, ... that also check release discipline.
#[derive(Default)]
pub(crate) struct SeqIds {
    next: u32,
    /// Ids allocated and not yet released.
    pub(crate) live: HashSet<u32>,
}

impl SignalingIds for SeqIds {
    fn allocate(&mut self) -> SignalingId {
        self.next += 1;
        assert!(self.live.insert(self.next));
        self.next
    }
    fn release(&mut self, id: SignalingId) {
        assert!(self.live.remove(&id), "released {id} twice");
    }
}

/// What the harness reads in an action of either dialect.
pub(crate) trait Said {
    /// The peer the action is for.
    fn to(&self) -> PeerId;
    /// For the answer to a request (`connected`, `isFirst`): whether it
    /// says the peer is a member.
    fn answer(&self) -> Option<bool>;
    /// The action closes its peer.
    fn is_close(&self) -> bool;
}

/// A dialect's rules as the harness drives them.
pub(crate) trait UnderTest: MembershipRules<PeerId, Action: Said> {
    /// The membership core the rules are built on.
    fn core(&self) -> &GroupCore<PeerId, Self>;
    /// The peer's connection is gone.
    fn leave(&mut self, peer: PeerId, ids: &mut SeqIds, out: &mut Vec<Self::Action>);
}

/// A dialect's rules and the ids they draw from.
pub(crate) struct Fixture<G> {
    pub(crate) g: G,
    pub(crate) ids: SeqIds,
}

impl<G: Default> Default for Fixture<G> {
    fn default() -> Self {
        Self::new(G::default())
    }
}

impl<G> Fixture<G> {
    pub(crate) fn new(g: G) -> Self {
        Self {
            g,
            ids: SeqIds::default(),
        }
    }

    /// Runs one event on the rules; returns what they decided.
    pub(crate) fn run<A>(
        &mut self,
        event: impl FnOnce(&mut G, &mut SeqIds, &mut Vec<A>),
    ) -> Vec<A> {
        let mut out = Vec::new();
        event(&mut self.g, &mut self.ids, &mut out);
        out
    }
}

impl<G: UnderTest> Fixture<G> {
    /// The peer's connection is gone.
    pub(crate) fn leave(&mut self, peer: PeerId) -> Vec<G::Action> {
        self.run(|g, ids, out| g.leave(peer, ids, out))
    }
}

/// One event as the model sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Event {
    /// A connection opens; `answered`: the dialect answers it at once.
    Open { peer: PeerId, answered: bool },
    /// A request the server must answer (`connect`, `tryAnother`).
    Request(PeerId),
    /// Any other frame.
    Frame(PeerId),
    /// The connection is gone.
    Gone(PeerId),
}

/// The peers as a proptest sees them.
#[derive(Debug, Default)]
pub(crate) struct Model {
    /// Opened, and neither gone nor closed by the rules.
    alive: HashSet<PeerId>,
    /// Every peer ever opened.
    known: BTreeSet<PeerId>,
}

impl Model {
    pub(crate) fn is_alive(&self, peer: PeerId) -> bool {
        self.alive.contains(&peer)
    }

    /// Runs `event` on the rules (`run` feeds it to them) and checks what
    /// it decided and the state it left against the invariants both
    /// dialects share; returns what it decided, for the dialect's own
    /// checks.
    pub(crate) fn step<G: UnderTest>(
        &mut self,
        f: &mut Fixture<G>,
        event: Event,
        run: impl FnOnce(&mut G, &mut SeqIds, &mut Vec<G::Action>),
    ) -> Result<Vec<G::Action>, TestCaseError> {
        let (from, was_alive, request) = match event {
            Event::Open { peer, answered } => {
                self.known.insert(peer);
                let fresh = self.alive.insert(peer);
                (peer, true, fresh && answered)
            }
            Event::Request(peer) => (peer, self.is_alive(peer), true),
            Event::Frame(peer) => (peer, self.is_alive(peer), false),
            // Gone before the rules hear of it: nothing the departure
            // decides may be for it.
            Event::Gone(peer) => (peer, self.alive.remove(&peer), false),
        };
        let actions = f.run(run);
        let core = f.g.core();
        if !was_alive {
            prop_assert!(
                actions.is_empty(),
                "an event from a peer that is not open does nothing"
            );
        } else if request {
            answered_once(core, from, &actions)?;
        }
        for action in &actions {
            prop_assert!(self.is_alive(action.to()), "action for a departed peer");
            if action.is_close() {
                self.alive.remove(&action.to());
                prop_assert!(!core.is_attached(action.to()), "a close removes the peer");
            }
        }
        self.check_group(core, &f.ids)?;
        Ok(actions)
    }

    /// What holds of every state, whatever happened before.
    fn check_group<R: MembershipRules<PeerId>>(
        &self,
        core: &GroupCore<PeerId, R>,
        ids: &SeqIds,
    ) -> Result<(), TestCaseError> {
        let members = core.members();
        let unique: HashSet<_> = members.iter().collect();
        prop_assert_eq!(unique.len(), members.len(), "members unique");
        prop_assert!(members.len() <= core.limits().max_members, "member limit");
        for &m in members {
            prop_assert!(
                core.is_member(m) && self.is_alive(m),
                "members are live members"
            );
        }
        prop_assert_eq!(
            core.peer_count(),
            self.alive.len(),
            "state holds exactly the live peers"
        );
        for &p in &self.alive {
            prop_assert!(core.is_attached(p));
        }

        let bindings = core.bindings();
        let routes: Vec<_> = bindings.routes().collect();
        let bound = self
            .known
            .iter()
            .filter(|&&p| bindings.of(p).is_some())
            .count();
        prop_assert_eq!(bound, routes.len(), "bound peers = routes");
        prop_assert_eq!(routes.len(), ids.live.len(), "routes = ids held");
        let mut bound_to = HashSet::new();
        for &(id, joiner) in &routes {
            let binding = bindings.of(joiner).expect("route has a binding");
            prop_assert_eq!(binding.id, id);
            prop_assert!(binding.member != joiner, "never bound to itself");
            prop_assert!(
                bindings.joiners_of(binding.member).contains(&id),
                "the member knows the route"
            );
            bound_to.insert(binding.member);
        }
        let joiner_ids: usize = bound_to.iter().map(|&m| bindings.joiners_of(m).len()).sum();
        prop_assert_eq!(joiner_ids, routes.len(), "members know no other routes");

        for (_, record) in core.records() {
            let distinct: Vec<_> = record.tried.iter().collect();
            for (i, tried) in distinct.iter().enumerate() {
                prop_assert!(
                    !distinct[..i].contains(tried),
                    "no member tried twice in a round"
                );
            }
        }
        Ok(())
    }

    /// Everyone still open leaves: the state is empty again and every id
    /// has come back.
    pub(crate) fn everyone_leaves<G: UnderTest>(
        &mut self,
        f: &mut Fixture<G>,
    ) -> Result<(), TestCaseError> {
        let alive: Vec<PeerId> = self.alive.iter().copied().collect();
        for peer in alive {
            self.step(f, Event::Gone(peer), |g, ids, out| g.leave(peer, ids, out))?;
        }
        prop_assert_eq!(f.g.core().peer_count(), 0);
        prop_assert!(f.g.core().members().is_empty());
        prop_assert!(f.ids.live.is_empty(), "ids released when all left");
        Ok(())
    }
}

/// A request from a live peer gets exactly one answer, or a refusal (its
/// close) when the group is full; the answer is true (the peer is a
/// member) or false (it is bound to another member); a group exists after.
fn answered_once<R: MembershipRules<PeerId, Action: Said>>(
    core: &GroupCore<PeerId, R>,
    peer: PeerId,
    actions: &[R::Action],
) -> Result<(), TestCaseError> {
    let answers: Vec<bool> = actions
        .iter()
        .filter(|a| a.to() == peer)
        .filter_map(Said::answer)
        .collect();
    let refused = actions.iter().any(|a| a.to() == peer && a.is_close());
    prop_assert_eq!(
        answers.len() + usize::from(refused),
        1,
        "one answer (or a refusal) per request"
    );
    if refused {
        prop_assert!(
            core.members().len() >= core.limits().max_members,
            "refused only when full"
        );
    }
    match answers[..] {
        [true] => prop_assert!(core.is_member(peer), "answered as a member: a member"),
        [false] => {
            let member = core.bound_member(peer);
            prop_assert!(
                member.is_some_and(|m| m != peer && core.is_member(m)),
                "answered as a joiner: bound to another member"
            );
        }
        _ => {}
    }
    prop_assert!(
        !core.members().is_empty(),
        "a request always leaves a group"
    );
    Ok(())
}
