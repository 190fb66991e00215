//! Snapshots of a sigver group's state, so that another node can adopt it.
//!
//! In cluster mode (`../shared/cluster.md`) the node that owns a Netflux
//! group writes the group's state to Redis after each change of membership
//! or bindings; when that node dies, a survivor claims the group and
//! rebuilds it from the last snapshot with the same member order, tried
//! lists, favored flags, bindings and signaling ids, then runs `leave` for
//! the dead node's peers. This module is the pure half of that: both
//! dialects' states ([`GroupState`], [`LegacyGroupState`]) written as a
//! `GroupSnapshot` (`proto/cluster.proto`) and rebuilt from one, with the
//! group's id allocator ([`GroupIds`]) holding exactly the live ids. Peers
//! are named in a snapshot by a [`PeerAddress`] (node, session number) the
//! gateway maps its own keys to and from. The encoding depends on the state
//! only, never on hash order: peers sorted by address, members in their
//! order, bindings in the order they were made, ids ascending. A snapshot is
//! input from outside the process: [`restore`](GroupState::restore) checks
//! it whole and refuses what no state could have written
//! ([`SnapshotError`]) rather than rebuild a group that would misbehave.
//!
//! About 500 lines of code (tests apart): both dialects' encodings and the
//! consistency checks of restore, which share the peer, member and binding
//! checks; split by dialect, those would be written twice.

use std::collections::{HashMap, HashSet};

use prost::Message;

use crate::proto::cluster as wire;
use crate::sigver::bindings::{Binding, Bindings};
use crate::sigver::ids::GroupIds;
use crate::sigver::legacy::state::LegacyGroupState;
use crate::sigver::membership::{GroupCore, GroupLimits, MembershipRules, PeerRecord, Record};
use crate::sigver::state::GroupState;
use crate::sigver::types::{NetfluxId, PeerKey};

/// What a snapshot calls a peer: the node it is connected to and its number
/// there.
pub type PeerAddress = (u32, u64);

/// Why a snapshot could not be restored.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The bytes are not a `GroupSnapshot`.
    #[error("undecodable snapshot: {0}")]
    Undecodable(#[from] prost::DecodeError),
    /// The snapshot holds the other dialect's group (or none).
    #[error("snapshot of a {found:?} group, expected {expected:?}")]
    WrongDialect {
        /// The dialect of the state being restored.
        expected: wire::SnapshotDialect,
        /// What the snapshot says (its raw value when unknown).
        found: i32,
    },
    /// The snapshot decodes but describes no state the rules could be in:
    /// a binding naming an unknown peer, a member not attached, an id held
    /// twice, …
    #[error("inconsistent snapshot: {0}")]
    Inconsistent(String),
}

/// Dialect rules that can be written down and rebuilt: both
/// [`GroupState`] and [`LegacyGroupState`] (what each writes is on its
/// impl), for a gateway generic over the dialect.
pub trait Snapshot<P: PeerKey>: Sized {
    /// The state (rules + the group's live signaling ids), encoded;
    /// `address` must name each peer differently.
    fn snapshot(&self, ids: &GroupIds, address: impl Fn(&P) -> PeerAddress) -> Vec<u8>;
    /// The state a snapshot describes, under `limits`, with an allocator
    /// holding exactly its live ids; `peer` maps each address back to a key
    /// (and must map different addresses to different keys).
    fn restore(
        bytes: &[u8],
        limits: GroupLimits,
        peer: impl Fn(PeerAddress) -> P,
    ) -> Result<(Self, GroupIds), SnapshotError>;
    /// Every attached peer, in no particular order.
    fn peers(&self) -> Vec<P>;
}

/// How a dialect's per-peer data goes into a snapshot and comes back.
trait SnapshotRules<P: PeerKey>: MembershipRules<P> {
    /// The dialect snapshots of these rules say they hold.
    const DIALECT: wire::SnapshotDialect;

    fn core(&self) -> &GroupCore<P, Self>;

    fn from_core(core: GroupCore<P, Self>) -> Self;

    /// A member's data, as `SnapshotMember.netflux_id`.
    fn write_member(member: &Self::Member) -> Option<NetfluxId>;

    fn read_member(netflux_id: Option<NetfluxId>) -> Result<Self::Member, String>;

    /// What the record holds besides its member data.
    fn write_record(
        record: &Record<P, Self>,
        address: &dyn Fn(&P) -> PeerAddress,
        into: &mut wire::SnapshotPeer,
    );

    /// The record `from` describes, not (yet) a member.
    fn read_record(
        from: &wire::SnapshotPeer,
        peer: &dyn Fn(PeerAddress) -> P,
    ) -> Result<Record<P, Self>, String>;

    /// Whether the dialect can hold `binding` with its joiner and member
    /// attached or not.
    fn check_binding(
        joiner_attached: bool,
        member_attached: bool,
        binding: &Binding<P>,
    ) -> Result<(), String>;
}

impl<P: PeerKey> SnapshotRules<P> for GroupState<P> {
    const DIALECT: wire::SnapshotDialect = wire::SnapshotDialect::Current;

    fn core(&self) -> &GroupCore<P, Self> {
        GroupState::core(self)
    }

    fn from_core(core: GroupCore<P, Self>) -> Self {
        GroupState::from_core(core)
    }

    fn write_member(member: &NetfluxId) -> Option<NetfluxId> {
        Some(*member)
    }

    fn read_member(netflux_id: Option<NetfluxId>) -> Result<NetfluxId, String> {
        netflux_id.ok_or_else(|| "a member without a Netflux id".into())
    }

    fn write_record(
        record: &Record<P, Self>,
        _: &dyn Fn(&P) -> PeerAddress,
        into: &mut wire::SnapshotPeer,
    ) {
        into.favored = record.favored;
        into.tried_netflux_ids = record.tried.clone();
    }

    fn read_record(
        from: &wire::SnapshotPeer,
        _: &dyn Fn(PeerAddress) -> P,
    ) -> Result<Record<P, Self>, String> {
        if !from.tried_routes.is_empty() || from.times_bound != 0 {
            return Err("sigver 18.x data in a sigver 20.x peer".into());
        }
        Ok(PeerRecord {
            member: None,
            favored: from.favored,
            tried: unique(from.tried_netflux_ids.clone())?,
            extra: (),
        })
    }

    /// A departure drops every binding of the departed peer: both ends of a
    /// binding are attached.
    fn check_binding(
        joiner_attached: bool,
        member_attached: bool,
        _: &Binding<P>,
    ) -> Result<(), String> {
        if joiner_attached && member_attached {
            Ok(())
        } else {
            Err("a binding names a peer that is not attached".into())
        }
    }
}

impl<P: PeerKey> SnapshotRules<P> for LegacyGroupState<P> {
    const DIALECT: wire::SnapshotDialect = wire::SnapshotDialect::Legacy;

    fn core(&self) -> &GroupCore<P, Self> {
        LegacyGroupState::core(self)
    }

    fn from_core(core: GroupCore<P, Self>) -> Self {
        LegacyGroupState::from_core(core)
    }

    fn write_member(_: &()) -> Option<NetfluxId> {
        None
    }

    fn read_member(netflux_id: Option<NetfluxId>) -> Result<(), String> {
        match netflux_id {
            None => Ok(()),
            Some(_) => Err("a Netflux id in a sigver 18.x member".into()),
        }
    }

    fn write_record(
        record: &Record<P, Self>,
        address: &dyn Fn(&P) -> PeerAddress,
        into: &mut wire::SnapshotPeer,
    ) {
        into.favored = record.favored;
        into.tried_routes = record
            .tried
            .iter()
            .map(|(peer, times_bound)| wire::RouteIdentity {
                address: Some(write_address(address(peer))),
                times_bound: *times_bound,
            })
            .collect();
        into.times_bound = record.extra;
    }

    fn read_record(
        from: &wire::SnapshotPeer,
        peer: &dyn Fn(PeerAddress) -> P,
    ) -> Result<Record<P, Self>, String> {
        // sigver 18.x has no favored peers, and member choice would read
        // the flag: a set one is not this dialect's state.
        if from.favored || !from.tried_netflux_ids.is_empty() {
            return Err("sigver 20.x data in a sigver 18.x peer".into());
        }
        let tried = from
            .tried_routes
            .iter()
            .map(|t| Ok((peer(read_address(t.address.as_ref())?), t.times_bound)))
            .collect::<Result<Vec<_>, String>>()?;
        Ok(PeerRecord {
            member: None,
            favored: false,
            tried: unique(tried)?,
            extra: from.times_bound,
        })
    }

    /// A departed peer's binding lives on while the other side may still
    /// end its direction towards it: one end is attached, the directions a
    /// departed end fed have ended, and a binding with both ended is gone.
    fn check_binding(
        joiner_attached: bool,
        member_attached: bool,
        binding: &Binding<P>,
    ) -> Result<(), String> {
        if !joiner_attached && !member_attached {
            return Err("a binding between two departed peers".into());
        }
        if (!joiner_attached && binding.upstream_open)
            || (!member_attached && binding.downstream_open)
        {
            return Err("a binding still fed by a departed peer".into());
        }
        if binding.finished() {
            return Err("a binding with both directions ended".into());
        }
        Ok(())
    }
}

/// A tried list names each member at most once per round.
fn unique<T: PartialEq + std::fmt::Debug>(list: Vec<T>) -> Result<Vec<T>, String> {
    for (i, item) in list.iter().enumerate() {
        if list[..i].contains(item) {
            return Err(format!("{item:?} tried twice"));
        }
    }
    Ok(list)
}

fn write_address((node, number): PeerAddress) -> wire::PeerAddress {
    wire::PeerAddress { node, number }
}

fn read_address(address: Option<&wire::PeerAddress>) -> Result<PeerAddress, String> {
    let address = address.ok_or("a peer without an address")?;
    Ok((address.node, address.number))
}

fn snapshot<P: PeerKey, R: SnapshotRules<P>>(
    state: &R,
    ids: &GroupIds,
    address: impl Fn(&P) -> PeerAddress,
) -> Vec<u8> {
    let core = state.core();
    let mut peers: Vec<(PeerAddress, wire::SnapshotPeer)> = core
        .records()
        .map(|(peer, record)| {
            let at = address(&peer);
            let mut written = wire::SnapshotPeer {
                address: Some(write_address(at)),
                ..wire::SnapshotPeer::default()
            };
            R::write_record(record, &address, &mut written);
            (at, written)
        })
        .collect();
    peers.sort_unstable_by_key(|&(at, _)| at);
    let members = core
        .members()
        .iter()
        .filter_map(|&member| {
            Some(wire::SnapshotMember {
                address: Some(write_address(address(&member))),
                netflux_id: R::write_member(core.member(member)?),
            })
        })
        .collect();
    let bindings = core.bindings();
    let written_bindings = bindings
        .in_order()
        .into_iter()
        .map(|(joiner, binding)| wire::SnapshotBinding {
            joiner: Some(write_address(address(&joiner))),
            member: Some(write_address(address(&binding.member))),
            id: binding.id,
            upstream_open: binding.upstream_open,
            downstream_open: binding.downstream_open,
            order: binding.order,
        })
        .collect();
    let mut live_ids: Vec<_> = ids.held().collect();
    live_ids.sort_unstable();
    wire::GroupSnapshot {
        dialect: R::DIALECT.into(),
        peers: peers.into_iter().map(|(_, peer)| peer).collect(),
        members,
        bindings: written_bindings,
        bindings_made: bindings.made(),
        live_ids,
    }
    .encode_to_vec()
}

fn restore<P: PeerKey, R: SnapshotRules<P>>(
    bytes: &[u8],
    limits: GroupLimits,
    peer: impl Fn(PeerAddress) -> P,
) -> Result<(R, GroupIds), SnapshotError> {
    let written = wire::GroupSnapshot::decode(bytes)?;
    if written.dialect != i32::from(R::DIALECT) {
        return Err(SnapshotError::WrongDialect {
            expected: R::DIALECT,
            found: written.dialect,
        });
    }
    rebuild(&written, limits, &peer).map_err(SnapshotError::Inconsistent)
}

/// The state and allocator a decoded snapshot of `R`'s dialect describes.
fn rebuild<P: PeerKey, R: SnapshotRules<P>>(
    written: &wire::GroupSnapshot,
    limits: GroupLimits,
    peer: &dyn Fn(PeerAddress) -> P,
) -> Result<(R, GroupIds), String> {
    let mut records = HashMap::default();
    let mut addresses = HashSet::new();
    for written_peer in &written.peers {
        let at = read_address(written_peer.address.as_ref())?;
        if !addresses.insert(at) {
            return Err(format!("peer {at:?} listed twice"));
        }
        let record = R::read_record(written_peer, peer)?;
        if records.insert(peer(at), record).is_some() {
            return Err(format!("peer {at:?} is another peer's key too"));
        }
    }

    let mut members = Vec::new();
    for written_member in &written.members {
        let key = peer(read_address(written_member.address.as_ref())?);
        let data = R::read_member(written_member.netflux_id)?;
        match records.get_mut(&key) {
            Some(record) if record.member.is_none() => record.member = Some(data),
            Some(_) => return Err(format!("{key:?} is a member twice")),
            None => return Err(format!("member {key:?} is not attached")),
        }
        members.push(key);
    }

    let mut bindings = Vec::new();
    for written_binding in &written.bindings {
        let joiner = peer(read_address(written_binding.joiner.as_ref())?);
        let binding = Binding {
            member: peer(read_address(written_binding.member.as_ref())?),
            id: written_binding.id,
            upstream_open: written_binding.upstream_open,
            downstream_open: written_binding.downstream_open,
            order: written_binding.order,
        };
        let attached = |p| records.contains_key(&p);
        R::check_binding(attached(joiner), attached(binding.member), &binding)?;
        bindings.push((joiner, binding));
    }
    let bindings = Bindings::from_parts(bindings, written.bindings_made)?;

    // The allocator holds exactly the bindings' ids: one it does not hold
    // could be drawn for a second binding, one no binding holds would never
    // come back.
    let live: HashSet<_> = written.live_ids.iter().copied().collect();
    if live.len() != written.live_ids.len() {
        return Err("a live id listed twice".into());
    }
    let bound: HashSet<_> = bindings.routes().map(|(id, _)| id).collect();
    if live != bound {
        return Err("the live ids are not the bindings' ids".into());
    }

    let core = GroupCore::from_parts(limits, records, members, bindings)?;
    Ok((R::from_core(core), GroupIds::holding(live)))
}

fn peers<P: PeerKey, R: SnapshotRules<P>>(state: &R) -> Vec<P> {
    state.core().records().map(|(peer, _)| peer).collect()
}

/// sigver 20.x: every attached peer (favored flag, tried list), the
/// members in order with their Netflux ids, every binding and how many were
/// made. `address` must name each peer differently.
impl<P: PeerKey> Snapshot<P> for GroupState<P> {
    fn snapshot(&self, ids: &GroupIds, address: impl Fn(&P) -> PeerAddress) -> Vec<u8> {
        snapshot(self, ids, address)
    }

    fn restore(
        bytes: &[u8],
        limits: GroupLimits,
        peer: impl Fn(PeerAddress) -> P,
    ) -> Result<(Self, GroupIds), SnapshotError> {
        restore(bytes, limits, peer)
    }

    fn peers(&self) -> Vec<P> {
        peers(self)
    }
}

/// sigver 18.x: every attached peer (how many times it was bound, the route
/// identities it tried), the members in order, every binding (including
/// those whose other side has left) and how many were made. `address` must
/// name each peer differently, including peers that have left but are still
/// named by a binding or a tried list.
impl<P: PeerKey> Snapshot<P> for LegacyGroupState<P> {
    fn snapshot(&self, ids: &GroupIds, address: impl Fn(&P) -> PeerAddress) -> Vec<u8> {
        snapshot(self, ids, address)
    }

    fn restore(
        bytes: &[u8],
        limits: GroupLimits,
        peer: impl Fn(PeerAddress) -> P,
    ) -> Result<(Self, GroupIds), SnapshotError> {
        restore(bytes, limits, peer)
    }

    fn peers(&self) -> Vec<P> {
        peers(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::SigverError;
    use crate::sigver::legacy::state::tests::properties as legacy_ops;
    use crate::sigver::legacy::state::{LegacyAction, Payload, untyped_from_joiner};
    use crate::sigver::state::tests::properties as current_ops;
    use crate::sigver::state::{Action, ContentIn};
    use crate::sigver::types::{PeerId, SignalingId};
    use bytes::Bytes;
    use proptest::prelude::*;
    use proptest::test_runner::TestCaseError;

    /// The tests' peers live on three nodes: a peer's node is its number
    /// modulo 3.
    fn address(peer: &PeerId) -> PeerAddress {
        ((*peer % 3) as u32, *peer)
    }

    fn key((_, number): PeerAddress) -> PeerId {
        number
    }

    const LIMITS: GroupLimits = GroupLimits { max_members: 4 };

    fn sorted(ids: impl Iterator<Item = SignalingId>) -> Vec<SignalingId> {
        let mut ids: Vec<_> = ids.collect();
        ids.sort_unstable();
        ids
    }

    /// A dialect as the tests drive it: a random `Op` of its own proptest
    /// becomes an `Event` whose peers and ids are resolved against the
    /// original state (a slot's peer, a live id picked by index); the copy
    /// gets the same event with the ids renamed to its own.
    trait Driven: Snapshot<PeerId> + PartialEq + std::fmt::Debug {
        type Op: Clone + std::fmt::Debug;
        type Event: Clone + std::fmt::Debug;
        type Action: PartialEq + std::fmt::Debug;
        /// What the resolution of ops remembers between them.
        type Driver: Default;

        fn empty(limits: GroupLimits) -> Self;
        fn resolve(&self, op: &Self::Op, driver: &mut Self::Driver) -> Self::Event;
        fn renamed_event(
            event: &Self::Event,
            rename: &dyn Fn(SignalingId) -> SignalingId,
        ) -> Self::Event;
        fn run(&mut self, event: &Self::Event, ids: &mut GroupIds) -> Vec<Self::Action>;
        fn leave(&mut self, peer: PeerId, ids: &mut GroupIds) -> Vec<Self::Action>;
        /// The signaling ids an action names, in order.
        fn action_ids(action: &Self::Action) -> Vec<SignalingId>;
        fn renamed_action(
            action: &Self::Action,
            rename: &dyn Fn(SignalingId) -> SignalingId,
        ) -> Self::Action;
    }

    /// A sigver 20.x event with its peer and ids resolved.
    #[derive(Debug, Clone)]
    enum CurrentEvent {
        Attach(PeerId, bool),
        Connect(PeerId, NetfluxId, Vec<NetfluxId>),
        Send(PeerId, SignalingId, bool),
        Leave(PeerId),
    }

    /// Half the time a live id (picked by index), else a raw small one
    /// (as the legacy proptest picks route ids; ids are random here).
    fn live_or_raw<P: PeerKey>(bindings: &Bindings<P>, r: u8) -> SignalingId {
        let live = sorted(bindings.routes().map(|(id, _)| id));
        if r < 6 && !live.is_empty() {
            live[usize::from(r) % live.len()]
        } else {
            u32::from(r)
        }
    }

    impl Driven for GroupState {
        type Op = current_ops::Op;
        type Event = CurrentEvent;
        type Action = Action;
        type Driver = ();

        fn empty(limits: GroupLimits) -> Self {
            GroupState::new(limits)
        }

        fn resolve(&self, op: &current_ops::Op, _: &mut ()) -> CurrentEvent {
            match op {
                current_ops::Op::Attach(p, favored) => CurrentEvent::Attach((*p).into(), *favored),
                current_ops::Op::Connect(p, id, view) => CurrentEvent::Connect(
                    (*p).into(),
                    (*id).into(),
                    view.iter().copied().map(u32::from).collect(),
                ),
                current_ops::Op::Send(p, r, last) => {
                    CurrentEvent::Send((*p).into(), live_or_raw(self.core().bindings(), *r), *last)
                }
                current_ops::Op::Leave(p) => CurrentEvent::Leave((*p).into()),
            }
        }

        fn renamed_event(
            event: &CurrentEvent,
            rename: &dyn Fn(SignalingId) -> SignalingId,
        ) -> CurrentEvent {
            match event {
                CurrentEvent::Send(p, id, last) => CurrentEvent::Send(*p, rename(*id), *last),
                other => other.clone(),
            }
        }

        fn run(&mut self, event: &CurrentEvent, ids: &mut GroupIds) -> Vec<Action> {
            let mut out = Vec::new();
            match event {
                CurrentEvent::Attach(p, favored) => self.attach(*p, *favored),
                CurrentEvent::Connect(p, id, view) => self.connect(*p, *id, view, ids, &mut out),
                CurrentEvent::Send(p, recipient_id, last_data) => {
                    let content = ContentIn {
                        sender_id: 0,
                        recipient_id: *recipient_id,
                        last_data: *last_data,
                        data: Bytes::from_static(b"d"),
                    };
                    self.content(*p, content, &mut out);
                }
                CurrentEvent::Leave(p) => GroupState::leave(self, *p, ids, &mut out),
            }
            out
        }

        fn leave(&mut self, peer: PeerId, ids: &mut GroupIds) -> Vec<Action> {
            let mut out = Vec::new();
            GroupState::leave(self, peer, ids, &mut out);
            out
        }

        fn action_ids(action: &Action) -> Vec<SignalingId> {
            match action {
                Action::Content {
                    sender_id,
                    recipient_id,
                    ..
                } => vec![*sender_id, *recipient_id],
                _ => vec![],
            }
        }

        fn renamed_action(action: &Action, rename: &dyn Fn(SignalingId) -> SignalingId) -> Action {
            match action {
                Action::Content {
                    to,
                    sender_id,
                    recipient_id,
                    data,
                } => Action::Content {
                    to: *to,
                    sender_id: rename(*sender_id),
                    recipient_id: rename(*recipient_id),
                    data: data.clone(),
                },
                other => other.clone(),
            }
        }
    }

    /// A sigver 18.x event with its peer and ids resolved.
    #[derive(Debug, Clone)]
    enum LegacyEvent {
        Open(PeerId),
        Stable(PeerId),
        TryAnother(PeerId),
        Send(PeerId, SignalingId, Payload),
        Untyped(PeerId, SignalingId),
        Leave(PeerId),
    }

    /// The legacy proptest's slots: a slot opened again after its peer
    /// left is a new connection.
    struct Slots {
        peers: [PeerId; 6],
        next: PeerId,
    }

    impl Default for Slots {
        fn default() -> Self {
            Self {
                peers: [0, 1, 2, 3, 4, 5],
                next: 6,
            }
        }
    }

    impl Driven for LegacyGroupState {
        type Op = legacy_ops::Op;
        type Event = LegacyEvent;
        type Action = LegacyAction;
        type Driver = Slots;

        fn empty(limits: GroupLimits) -> Self {
            LegacyGroupState::new(limits)
        }

        fn resolve(&self, op: &legacy_ops::Op, slots: &mut Slots) -> LegacyEvent {
            use legacy_ops::Op;
            let at = |slot: &u8| slots.peers[usize::from(*slot)];
            match op {
                Op::Open(slot) => {
                    let slot = usize::from(*slot);
                    if !self.core().is_attached(slots.peers[slot]) {
                        slots.peers[slot] = slots.next;
                        slots.next += 1;
                    }
                    LegacyEvent::Open(slots.peers[slot])
                }
                Op::Stable(slot) => LegacyEvent::Stable(at(slot)),
                Op::TryAnother(slot) => LegacyEvent::TryAnother(at(slot)),
                Op::Send(slot, r, kind) => LegacyEvent::Send(
                    at(slot),
                    legacy_ops::route_id(self, *r),
                    legacy_ops::payload(*kind),
                ),
                Op::Untyped(slot, r) => {
                    LegacyEvent::Untyped(at(slot), legacy_ops::route_id(self, *r))
                }
                Op::Leave(slot) => LegacyEvent::Leave(at(slot)),
            }
        }

        fn renamed_event(
            event: &LegacyEvent,
            rename: &dyn Fn(SignalingId) -> SignalingId,
        ) -> LegacyEvent {
            match event {
                LegacyEvent::Send(p, id, payload) => {
                    LegacyEvent::Send(*p, rename(*id), payload.clone())
                }
                LegacyEvent::Untyped(p, id) => LegacyEvent::Untyped(*p, rename(*id)),
                other => other.clone(),
            }
        }

        fn run(&mut self, event: &LegacyEvent, ids: &mut GroupIds) -> Vec<LegacyAction> {
            let mut out = Vec::new();
            match event {
                LegacyEvent::Open(p) => self.attach(*p, ids, &mut out),
                LegacyEvent::Stable(p) => self.stable(*p, ids, &mut out),
                LegacyEvent::TryAnother(p) => self.try_another(*p, ids, &mut out),
                LegacyEvent::Send(p, id, payload) => {
                    self.content(*p, *id, payload.clone(), ids, &mut out);
                }
                LegacyEvent::Untyped(p, id) => self.untyped_content(*p, *id, ids, &mut out),
                LegacyEvent::Leave(p) => LegacyGroupState::leave(self, *p, ids, &mut out),
            }
            out
        }

        fn leave(&mut self, peer: PeerId, ids: &mut GroupIds) -> Vec<LegacyAction> {
            let mut out = Vec::new();
            LegacyGroupState::leave(self, peer, ids, &mut out);
            out
        }

        fn action_ids(action: &LegacyAction) -> Vec<SignalingId> {
            match action {
                LegacyAction::Content { id, .. } => vec![*id],
                LegacyAction::Close { error, .. } => untyped_reason_id(error).into_iter().collect(),
                LegacyAction::IsFirst { .. } => vec![],
            }
        }

        fn renamed_action(
            action: &LegacyAction,
            rename: &dyn Fn(SignalingId) -> SignalingId,
        ) -> LegacyAction {
            match action {
                LegacyAction::Content { to, id, payload } => LegacyAction::Content {
                    to: *to,
                    id: rename(*id),
                    payload: payload.clone(),
                },
                LegacyAction::Close { to, error } => LegacyAction::Close {
                    to: *to,
                    error: match untyped_reason_id(error) {
                        Some(id) => untyped_from_joiner(rename(id)),
                        None => error.clone(),
                    },
                },
                other => other.clone(),
            }
        }
    }

    /// sigver 18 names the joiner's route id in the reason it closes a
    /// joiner with for a `content` with no type: an id like any other.
    fn untyped_reason_id(error: &SigverError) -> Option<SignalingId> {
        let SigverError::BadMessage(reason) = error else {
            return None;
        };
        let id = reason.strip_suffix(" joining peer")?.rsplit(' ').next()?;
        let id = id.parse().ok()?;
        (&untyped_from_joiner(id) == error).then_some(id)
    }

    /// Which id of the copy stands for which id of the original: paired on
    /// first appearance, one to one; 0 ("the member side") only with 0.
    #[derive(Default)]
    struct IdMap {
        to_copy: HashMap<SignalingId, SignalingId>,
        to_original: HashMap<SignalingId, SignalingId>,
    }

    impl IdMap {
        fn pair(&mut self, original: SignalingId, copy: SignalingId) -> Result<(), TestCaseError> {
            if original == 0 || copy == 0 {
                prop_assert_eq!(original, copy, "0 stands only for 0");
                return Ok(());
            }
            match (self.to_copy.get(&original), self.to_original.get(&copy)) {
                (None, None) => {
                    self.to_copy.insert(original, copy);
                    self.to_original.insert(copy, original);
                }
                (to_copy, to_original) => prop_assert!(
                    to_copy == Some(&copy) && to_original == Some(&original),
                    "ids {} and {} already stand for others",
                    original,
                    copy
                ),
            }
            Ok(())
        }

        /// The copy's id for an id of the original (a raw id that names no
        /// binding stays as it is).
        fn to_copy(&self, id: SignalingId) -> SignalingId {
            self.to_copy.get(&id).copied().unwrap_or(id)
        }

        fn to_original(&self, id: SignalingId) -> SignalingId {
            self.to_original.get(&id).copied().unwrap_or(id)
        }
    }

    /// The same decisions, the copy's ids read through `ids`.
    fn same_actions<D: Driven>(
        original: &[D::Action],
        copy: &[D::Action],
        ids: &mut IdMap,
    ) -> Result<(), TestCaseError> {
        prop_assert_eq!(original.len(), copy.len(), "{:?} vs {:?}", original, copy);
        for (a, b) in original.iter().zip(copy) {
            for (x, y) in D::action_ids(a).into_iter().zip(D::action_ids(b)) {
                ids.pair(x, y)?;
            }
            prop_assert_eq!(a, &D::renamed_action(b, &|id| ids.to_original(id)));
        }
        Ok(())
    }

    fn decoded(bytes: &[u8]) -> wire::GroupSnapshot {
        wire::GroupSnapshot::decode(bytes).expect("a snapshot we wrote decodes")
    }

    /// The two states are the same but for the ids of bindings made since
    /// the copy was taken (paired anew in `ids`, binding by binding), and
    /// each allocator holds exactly its bindings' ids.
    fn same_state<D: Driven>(
        original: (&D, &GroupIds),
        copy: (&D, &GroupIds),
        ids: &mut IdMap,
    ) -> Result<(), TestCaseError> {
        let a = decoded(&original.0.snapshot(original.1, address));
        let mut b = decoded(&copy.0.snapshot(copy.1, address));
        for written in [&a, &b] {
            let bound = sorted(written.bindings.iter().map(|b| b.id));
            prop_assert_eq!(&written.live_ids, &bound, "ids held = ids bound");
        }
        prop_assert_eq!(a.bindings.len(), b.bindings.len());
        *ids = IdMap::default();
        for (x, y) in a.bindings.iter().zip(&b.bindings) {
            ids.pair(x.id, y.id)?;
        }
        for binding in &mut b.bindings {
            binding.id = ids.to_original(binding.id);
        }
        b.live_ids = sorted(b.live_ids.iter().map(|&id| ids.to_original(id)));
        prop_assert_eq!(a, b);
        Ok(())
    }

    fn restored<D: Driven>(state: &D, ids: &GroupIds) -> Result<(D, GroupIds), TestCaseError> {
        let bytes = state.snapshot(ids, address);
        let (copy, copy_ids) = D::restore(&bytes, LIMITS, key)
            .map_err(|e| TestCaseError::fail(format!("restore: {e}")))?;
        prop_assert_eq!(&copy, state, "restored equal");
        prop_assert_eq!(sorted(copy_ids.held()), sorted(ids.held()));
        prop_assert_eq!(copy.snapshot(&copy_ids, address), bytes, "stable encoding");
        Ok((copy, copy_ids))
    }

    /// Runs `events` on the original and on the copy; they decide alike.
    fn run_both<D: Driven>(
        original: (&mut D, &mut GroupIds),
        copy: (&mut D, &mut GroupIds),
        events: impl IntoIterator<Item = D::Event>,
    ) -> Result<(), TestCaseError> {
        let mut ids = IdMap::default();
        same_state::<D>((original.0, original.1), (copy.0, copy.1), &mut ids)?;
        for event in events {
            let a = original.0.run(&event, original.1);
            let b = copy
                .0
                .run(&D::renamed_event(&event, &|id| ids.to_copy(id)), copy.1);
            same_actions::<D>(&a, &b, &mut ids)?;
            same_state::<D>((original.0, original.1), (copy.0, copy.1), &mut ids)?;
        }
        Ok(())
    }

    /// The key property: snapshot at any point, restore, feed the rest to
    /// both: the copy decides exactly as the original would have.
    fn snapshot_midway<D: Driven>(ops: &[D::Op], split: usize) -> Result<(), TestCaseError> {
        let split = split % (ops.len() + 1);
        let mut driver = D::Driver::default();
        let (mut state, mut ids) = (D::empty(LIMITS), GroupIds::default());
        for op in &ops[..split] {
            let event = state.resolve(op, &mut driver);
            state.run(&event, &mut ids);
        }
        let (mut copy, mut copy_ids) = restored(&state, &ids)?;
        let mut map = IdMap::default();
        same_state::<D>((&state, &ids), (&copy, &copy_ids), &mut map)?;
        for op in &ops[split..] {
            let event = state.resolve(op, &mut driver);
            let a = state.run(&event, &mut ids);
            let b = copy.run(
                &D::renamed_event(&event, &|id| map.to_copy(id)),
                &mut copy_ids,
            );
            same_actions::<D>(&a, &b, &mut map)?;
            same_state::<D>((&state, &ids), (&copy, &copy_ids), &mut map)?;
        }
        Ok(())
    }

    /// What the adopter does for a dead node: every peer of that node
    /// leaves the copy; the original gives exactly the same notices.
    fn dead_node_leaves<D: Driven>(ops: &[D::Op], dead: u32) -> Result<(), TestCaseError> {
        let mut driver = D::Driver::default();
        let (mut state, mut ids) = (D::empty(LIMITS), GroupIds::default());
        for op in ops {
            let event = state.resolve(op, &mut driver);
            state.run(&event, &mut ids);
        }
        let (mut copy, mut copy_ids) = restored(&state, &ids)?;
        let mut on_dead_node: Vec<PeerId> = copy
            .peers()
            .into_iter()
            .filter(|p| address(p).0 == dead)
            .collect();
        on_dead_node.sort_unstable();
        for peer in on_dead_node {
            // No id is drawn on leaving: the very same ids on both sides.
            let a = state.leave(peer, &mut ids);
            prop_assert_eq!(a, copy.leave(peer, &mut copy_ids));
        }
        prop_assert_eq!(&copy, &state);
        prop_assert_eq!(sorted(copy_ids.held()), sorted(ids.held()));
        prop_assert!(copy.peers().iter().all(|p| address(p).0 != dead));
        Ok(())
    }

    /// A state restored from a damaged snapshot that was accepted is one the
    /// rules can run: more events, then everyone leaves and every id and
    /// binding is gone.
    fn usable<D: Driven>(bytes: &[u8], ops: &[D::Op]) -> Result<(), TestCaseError> {
        let Ok((mut state, mut ids)) = D::restore(bytes, LIMITS, key) else {
            return Ok(());
        };
        let mut driver = D::Driver::default();
        for op in ops {
            let event = state.resolve(op, &mut driver);
            state.run(&event, &mut ids);
        }
        for peer in state.peers() {
            state.leave(peer, &mut ids);
        }
        prop_assert!(state.peers().is_empty());
        prop_assert_eq!(ids.held().count(), 0, "every id released");
        let left = decoded(&state.snapshot(&ids, address));
        prop_assert!(left.bindings.is_empty() && left.members.is_empty());
        Ok(())
    }

    fn state_after<D: Driven>(ops: &[D::Op]) -> (D, GroupIds) {
        let mut driver = D::Driver::default();
        let (mut state, mut ids) = (D::empty(LIMITS), GroupIds::default());
        for op in ops {
            let event = state.resolve(op, &mut driver);
            state.run(&event, &mut ids);
        }
        (state, ids)
    }

    /// A damage done to a decoded snapshot, picked by number.
    fn damage(written: &mut wire::GroupSnapshot, kind: u8, at: usize, value: u32) {
        let other = wire::PeerAddress {
            node: value % 3,
            number: u64::from(value % 12),
        };
        let nth = |len: usize| at % len.max(1);
        match kind % 12 {
            0 => written.dialect = (value % 4) as i32,
            1 => {
                let i = nth(written.peers.len());
                if let Some(peer) = written.peers.get_mut(i) {
                    peer.address = Some(other);
                }
            }
            2 => {
                if let Some(peer) = written.peers.get(nth(written.peers.len())).cloned() {
                    written.peers.push(peer);
                }
            }
            3 => {
                if !written.peers.is_empty() {
                    written.peers.remove(nth(written.peers.len()));
                }
            }
            4 => written.members.push(wire::SnapshotMember {
                address: Some(other),
                netflux_id: Some(value).filter(|_| value.is_multiple_of(2)),
            }),
            5 => {
                let i = nth(written.members.len());
                if let Some(member) = written.members.get_mut(i) {
                    member.netflux_id = member.netflux_id.xor(Some(value));
                }
            }
            6 => {
                let i = nth(written.bindings.len());
                if let Some(binding) = written.bindings.get_mut(i) {
                    match value % 3 {
                        0 => binding.joiner = Some(other),
                        1 => binding.member = Some(other),
                        _ => binding.order = u64::from(value % 8),
                    }
                }
            }
            7 => {
                let i = nth(written.bindings.len());
                if let Some(binding) = written.bindings.get_mut(i) {
                    binding.upstream_open ^= value.is_multiple_of(2);
                    binding.downstream_open ^= value.is_multiple_of(3);
                }
            }
            8 => {
                let i = nth(written.bindings.len());
                let id = written
                    .live_ids
                    .get(value as usize % written.live_ids.len().max(1));
                if let (Some(&id), Some(binding)) = (id, written.bindings.get_mut(i)) {
                    binding.id = id;
                }
            }
            9 => {
                if value.is_multiple_of(2) && !written.live_ids.is_empty() {
                    written.live_ids.remove(nth(written.live_ids.len()));
                } else {
                    written.live_ids.push(value);
                }
            }
            10 => written.bindings_made = u64::from(value % 8),
            _ => {
                let i = nth(written.peers.len());
                if let Some(peer) = written.peers.get_mut(i) {
                    match value % 4 {
                        0 => peer.favored ^= true,
                        1 => peer.tried_netflux_ids.push(value % 6),
                        2 => peer.tried_routes.push(wire::RouteIdentity {
                            address: Some(other),
                            times_bound: value % 3,
                        }),
                        _ => peer.times_bound = value % 3,
                    }
                }
            }
        }
    }

    #[test]
    fn a_current_group_restored_answers_as_the_original() {
        let (mut g, mut ids, mut out) = (GroupState::new(LIMITS), GroupIds::default(), vec![]);
        for (peer, favored) in [(1, false), (2, false), (3, true), (4, false), (5, false)] {
            g.attach(peer, favored);
        }
        g.connect(1, 100, &[], &mut ids, &mut out);
        g.connect(3, 300, &[100], &mut ids, &mut out);
        g.connect(2, 200, &[], &mut ids, &mut out); // bound to 3, the favored one
        g.connect(4, 400, &[], &mut ids, &mut out); // bound to 3
        g.connect(4, 400, &[], &mut ids, &mut out); // then to 1: tried 300, 100
        g.connect(5, 500, &[], &mut ids, &mut out); // bound to 3
        let (s2, s5) = (
            g.binding_id(2).expect("bound"),
            g.binding_id(5).expect("bound"),
        );
        let last = |recipient_id| ContentIn {
            recipient_id,
            last_data: true,
            data: Bytes::from_static(b"bye"),
            ..ContentIn::default()
        };
        g.content(2, last(0), &mut out); // 2 → 3 ended
        g.content(3, last(s5), &mut out); // 3 → 5 ended
        assert_eq!(g.bound_member(4), Some(1));

        let (mut copy, mut copy_ids) = restored(&g, &ids).expect("restores");
        assert_eq!(
            sorted(copy.peers().into_iter().map(|p| p as u32)),
            vec![1, 2, 3, 4, 5]
        );
        let events = [
            CurrentEvent::Send(2, 0, false),       // ended: nothing
            CurrentEvent::Send(3, s2, false),      // still open down to 2
            CurrentEvent::Send(5, 0, false),       // still open up to 3
            CurrentEvent::Send(3, s5, false),      // ended: nothing
            CurrentEvent::Connect(4, 400, vec![]), // rebound: a fresh id
            CurrentEvent::Send(4, 0, false),       // on the fresh binding
            CurrentEvent::Attach(6, false),
            CurrentEvent::Connect(6, 600, vec![300]),
            CurrentEvent::Connect(7, 700, vec![]), // not attached: nothing
            CurrentEvent::Leave(3),
            CurrentEvent::Connect(2, 200, vec![]),
        ];
        run_both((&mut g, &mut ids), (&mut copy, &mut copy_ids), events).expect("alike");
    }

    #[test]
    fn a_legacy_group_restored_answers_as_the_original() {
        let (mut g, mut ids, mut out) =
            (LegacyGroupState::new(LIMITS), GroupIds::default(), vec![]);
        g.attach(1, &mut ids, &mut out); // first
        g.attach(2, &mut ids, &mut out); // bound to 1
        g.stable(2, &mut ids, &mut out); // member, still bound to 1
        g.attach(3, &mut ids, &mut out); // bound to 1
        g.try_another(3, &mut ids, &mut out); // bound to 2: tried (1, 0), (2, 1)
        g.attach(4, &mut ids, &mut out); // bound to 1
        g.content(4, 0, Payload::IsEnd, &mut ids, &mut out); // 4 → 1 ended
        g.attach(5, &mut ids, &mut out); // bound to 1
        let (s5, s4) = (
            g.binding_id(5).expect("bound"),
            g.binding_id(4).expect("bound"),
        );
        g.leave(5, &mut ids, &mut out); // 1 → 5 stays open: 5 is gone but named
        assert_eq!(g.bound_member(3), Some(2));
        assert_eq!(
            g.binding_id(5),
            Some(s5),
            "the departed joiner's binding lives on"
        );

        let (mut copy, mut copy_ids) = restored(&g, &ids).expect("restores");
        assert_eq!(
            sorted(copy.peers().into_iter().map(|p| p as u32)),
            vec![1, 2, 3, 4]
        );
        let events = [
            LegacyEvent::Send(4, 0, Payload::Data(Bytes::from_static(b"x"))), // ended
            LegacyEvent::Send(1, s4, Payload::Data(Bytes::from_static(b"y"))), // down to 4
            LegacyEvent::Send(1, s5, Payload::IsEnd), // 5 is gone: forgotten
            LegacyEvent::TryAnother(3),               // tried both: start over, bound to 1
            LegacyEvent::Send(3, 0, Payload::Data(Bytes::from_static(b"z"))),
            LegacyEvent::Open(6),
            LegacyEvent::Untyped(2, 0), // up to 1: closed
            LegacyEvent::TryAnother(6),
            LegacyEvent::Leave(1),
            LegacyEvent::TryAnother(3),
        ];
        run_both((&mut g, &mut ids), (&mut copy, &mut copy_ids), events).expect("alike");
    }

    #[test]
    fn a_snapshot_of_one_dialect_is_refused_by_the_other() {
        let (mut g, mut ids, mut out) =
            (LegacyGroupState::new(LIMITS), GroupIds::default(), vec![]);
        g.attach(1, &mut ids, &mut out);
        let bytes = g.snapshot(&ids, address);
        assert!(matches!(
            GroupState::restore(&bytes, LIMITS, key),
            Err(SnapshotError::WrongDialect { found: 2, .. })
        ));
        assert!(LegacyGroupState::restore(&bytes, LIMITS, key).is_ok());
        assert!(matches!(
            GroupState::restore(b"\xff", LIMITS, key),
            Err(SnapshotError::Undecodable(_))
        ));
    }

    #[test]
    fn inconsistent_snapshots_are_refused_with_what_is_wrong() {
        let (mut g, mut ids, mut out) = (GroupState::new(LIMITS), GroupIds::default(), vec![]);
        g.attach(1, false);
        g.attach(2, false);
        g.connect(1, 100, &[], &mut ids, &mut out);
        g.connect(2, 200, &[], &mut ids, &mut out);
        let good = decoded(&g.snapshot(&ids, address));
        let unknown = Some(wire::PeerAddress { node: 0, number: 9 });
        let refused = |change: &dyn Fn(&mut wire::GroupSnapshot)| {
            let mut written = good.clone();
            change(&mut written);
            match GroupState::restore(&written.encode_to_vec(), LIMITS, key) {
                Err(SnapshotError::Inconsistent(why)) => why,
                other => panic!("not refused as inconsistent: {other:?}"),
            }
        };
        assert!(refused(&|w| w.bindings[0].member = unknown).contains("not attached"));
        assert!(refused(&|w| w.members[0].address = unknown).contains("not attached"));
        assert!(refused(&|w| w.members.push(w.members[0])).contains("twice"));
        assert!(refused(&|w| w.members[0].netflux_id = None).contains("Netflux id"));
        assert!(refused(&|w| w.peers.push(w.peers[0].clone())).contains("twice"));
        assert!(refused(&|w| w.live_ids.push(w.live_ids[0])).contains("twice"));
        assert!(refused(&|w| w.live_ids.clear()).contains("live ids"));
        assert!(refused(&|w| w.live_ids[0] += 1).contains("live ids"));
        assert!(refused(&|w| w.bindings_made = 0).contains("order"));
        assert!(refused(&|w| w.peers[0].tried_netflux_ids = vec![7, 7]).contains("tried twice"));
        assert!(refused(&|w| w.peers[1].times_bound = 1).contains("18.x"));
        assert!(refused(&|w| w.bindings[0].id = 0).contains("range"));
        let other_node = Some(wire::PeerAddress { node: 2, number: 1 });
        assert!(
            refused(&|w| w.peers[1].address = other_node).contains("another peer's key"),
            "two addresses the gateway maps to one key"
        );
        assert!(GroupState::restore(&good.encode_to_vec(), LIMITS, key).is_ok());
    }

    #[test]
    fn a_legacy_binding_may_name_a_departed_peer_only_on_the_side_that_ended() {
        let (mut g, mut ids, mut out) =
            (LegacyGroupState::new(LIMITS), GroupIds::default(), vec![]);
        g.attach(1, &mut ids, &mut out);
        g.attach(2, &mut ids, &mut out);
        g.leave(2, &mut ids, &mut out); // 2 → 1 ended, 1 → 2 open
        let good = decoded(&g.snapshot(&ids, address));
        assert_eq!(good.peers.len(), 1);
        assert_eq!(good.bindings.len(), 1);
        let refused = |change: &dyn Fn(&mut wire::GroupSnapshot)| {
            let mut written = good.clone();
            change(&mut written);
            LegacyGroupState::restore(&written.encode_to_vec(), LIMITS, key).is_err()
        };
        assert!(!refused(&|_| {}));
        assert!(
            refused(&|w| w.bindings[0].upstream_open = true),
            "fed by the departed"
        );
        assert!(
            refused(&|w| w.bindings[0].downstream_open = false),
            "finished"
        );
        assert!(refused(&|w| w.peers.clear()), "both sides departed");
        assert!(
            refused(&|w| w.peers[0].favored = true),
            "no favored peers in 18.x"
        );
        assert!(refused(&|w| w.members[0].netflux_id = Some(1)));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn a_current_group_restored_midway_decides_as_the_original(
            ops in prop::collection::vec(current_ops::op(), 1..60),
            split in any::<usize>(),
        ) {
            snapshot_midway::<GroupState>(&ops, split)?;
        }

        #[test]
        fn a_legacy_group_restored_midway_decides_as_the_original(
            ops in prop::collection::vec(legacy_ops::op(), 1..80),
            split in any::<usize>(),
        ) {
            snapshot_midway::<LegacyGroupState>(&ops, split)?;
        }

        #[test]
        fn a_dead_nodes_peers_leaving_a_restored_current_group_owe_what_they_would_have(
            ops in prop::collection::vec(current_ops::op(), 1..60),
            dead in 0u32..3,
        ) {
            dead_node_leaves::<GroupState>(&ops, dead)?;
        }

        #[test]
        fn a_dead_nodes_peers_leaving_a_restored_legacy_group_owe_what_they_would_have(
            ops in prop::collection::vec(legacy_ops::op(), 1..80),
            dead in 0u32..3,
        ) {
            dead_node_leaves::<LegacyGroupState>(&ops, dead)?;
        }

        #[test]
        fn arbitrary_bytes_never_make_restore_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            usable::<GroupState>(&bytes, &[])?;
            usable::<LegacyGroupState>(&bytes, &[])?;
        }

        #[test]
        fn a_damaged_current_snapshot_is_refused_or_runs(
            ops in prop::collection::vec(current_ops::op(), 1..40),
            more in prop::collection::vec(current_ops::op(), 0..20),
            damages in prop::collection::vec((any::<u8>(), any::<usize>(), any::<u32>()), 1..4),
            flips in prop::collection::vec((any::<usize>(), any::<u8>()), 0..3),
        ) {
            let (state, ids) = state_after::<GroupState>(&ops);
            let bytes = damaged(&state.snapshot(&ids, address), &damages, &flips);
            usable::<GroupState>(&bytes, &more)?;
        }

        #[test]
        fn a_damaged_legacy_snapshot_is_refused_or_runs(
            ops in prop::collection::vec(legacy_ops::op(), 1..50),
            more in prop::collection::vec(legacy_ops::op(), 0..20),
            damages in prop::collection::vec((any::<u8>(), any::<usize>(), any::<u32>()), 1..4),
            flips in prop::collection::vec((any::<usize>(), any::<u8>()), 0..3),
        ) {
            let (state, ids) = state_after::<LegacyGroupState>(&ops);
            let bytes = damaged(&state.snapshot(&ids, address), &damages, &flips);
            usable::<LegacyGroupState>(&bytes, &more)?;
        }
    }

    /// A snapshot with fields damaged (`damage`), then bytes flipped.
    fn damaged(bytes: &[u8], damages: &[(u8, usize, u32)], flips: &[(usize, u8)]) -> Vec<u8> {
        let mut written = decoded(bytes);
        for &(kind, at, value) in damages {
            damage(&mut written, kind, at, value);
        }
        let mut bytes = written.encode_to_vec();
        for &(at, mask) in flips {
            if !bytes.is_empty() {
                let at = at % bytes.len();
                bytes[at] ^= mask;
            }
        }
        bytes
    }
}
