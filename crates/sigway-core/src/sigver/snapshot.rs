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
/// [`GroupState`] and [`LegacyGroupState`], for a gateway generic over the
/// dialect. Each method is the state's inherent one of the same name.
pub trait Snapshot<P: PeerKey>: Sized {
    /// The state (rules + the group's live signaling ids), encoded.
    fn snapshot(&self, ids: &GroupIds, address: impl Fn(&P) -> PeerAddress) -> Vec<u8>;
    /// The state a snapshot describes, under `limits`, with an allocator
    /// holding exactly its live ids.
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
    let mut records = HashMap::new();
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

impl<P: PeerKey> GroupState<P> {
    /// The state and the group's live signaling ids, encoded: every
    /// attached peer (favored flag, tried list), the members in order with
    /// their Netflux ids, every binding and how many were made. `address`
    /// must name each peer differently.
    pub fn snapshot(&self, ids: &GroupIds, address: impl Fn(&P) -> PeerAddress) -> Vec<u8> {
        snapshot(self, ids, address)
    }

    /// The state a sigver 20.x snapshot describes, under `limits`, with an
    /// allocator holding exactly its live ids; `peer` maps each address back
    /// to a key (and must map different addresses to different keys).
    pub fn restore(
        bytes: &[u8],
        limits: GroupLimits,
        peer: impl Fn(PeerAddress) -> P,
    ) -> Result<(Self, GroupIds), SnapshotError> {
        restore(bytes, limits, peer)
    }

    /// Every attached peer, member or not, in no particular order.
    pub fn peers(&self) -> Vec<P> {
        peers(self)
    }
}

impl<P: PeerKey> LegacyGroupState<P> {
    /// The state and the group's live route ids, encoded: every attached
    /// peer (how many times it was bound, the route identities it tried),
    /// the members in order, every binding (including those whose other
    /// side has left) and how many were made. `address` must name each
    /// peer differently, including peers that have left but are still
    /// named by a binding or a tried list.
    pub fn snapshot(&self, ids: &GroupIds, address: impl Fn(&P) -> PeerAddress) -> Vec<u8> {
        snapshot(self, ids, address)
    }

    /// The state a sigver 18.x snapshot describes, under `limits`, with an
    /// allocator holding exactly its live ids; `peer` maps each address back
    /// to a key (and must map different addresses to different keys).
    pub fn restore(
        bytes: &[u8],
        limits: GroupLimits,
        peer: impl Fn(PeerAddress) -> P,
    ) -> Result<(Self, GroupIds), SnapshotError> {
        restore(bytes, limits, peer)
    }

    /// Every attached peer, member or not, in no particular order.
    pub fn peers(&self) -> Vec<P> {
        peers(self)
    }
}

impl<P: PeerKey> Snapshot<P> for GroupState<P> {
    fn snapshot(&self, ids: &GroupIds, address: impl Fn(&P) -> PeerAddress) -> Vec<u8> {
        GroupState::snapshot(self, ids, address)
    }

    fn restore(
        bytes: &[u8],
        limits: GroupLimits,
        peer: impl Fn(PeerAddress) -> P,
    ) -> Result<(Self, GroupIds), SnapshotError> {
        GroupState::restore(bytes, limits, peer)
    }

    fn peers(&self) -> Vec<P> {
        GroupState::peers(self)
    }
}

impl<P: PeerKey> Snapshot<P> for LegacyGroupState<P> {
    fn snapshot(&self, ids: &GroupIds, address: impl Fn(&P) -> PeerAddress) -> Vec<u8> {
        LegacyGroupState::snapshot(self, ids, address)
    }

    fn restore(
        bytes: &[u8],
        limits: GroupLimits,
        peer: impl Fn(PeerAddress) -> P,
    ) -> Result<(Self, GroupIds), SnapshotError> {
        LegacyGroupState::restore(bytes, limits, peer)
    }

    fn peers(&self) -> Vec<P> {
        LegacyGroupState::peers(self)
    }
}
