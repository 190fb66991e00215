//! Signaling ids of one group: random, non-zero, 31 bits, unique among the
//! group's live bindings.
//!
//! A signaling id (a route id in the legacy dialect) is only ever seen by
//! the two peers of one binding inside one group, so each group draws its
//! own: no lock shared between groups, and a group that moves (cluster mode)
//! keeps its ids ([`GroupIds::holding`] rebuilds an adopted group's
//! allocator from its snapshot). Ids are random in `1..=2^31-1` (0 means
//! "the member side" on the wire).

use foldhash::HashSet;

use rand::Rng;

use crate::sigver::types::{SignalingId, SignalingIds};

/// The largest signaling id drawn (31 bits).
pub(crate) const MAX_ID: u32 = 0x7fff_ffff;

/// The allocator a group actor hands its rules.
#[derive(Debug, Default)]
pub struct GroupIds {
    live: HashSet<SignalingId>,
}

impl GroupIds {
    /// An allocator holding exactly `ids`, the live ids of a group rebuilt
    /// from a snapshot: none of them is drawn again until released.
    pub fn holding(ids: impl IntoIterator<Item = SignalingId>) -> Self {
        Self {
            live: ids.into_iter().collect(),
        }
    }

    /// The ids held (drawn and not yet released), in no particular order.
    pub fn held(&self) -> impl Iterator<Item = SignalingId> + '_ {
        self.live.iter().copied()
    }
}

impl SignalingIds for GroupIds {
    fn allocate(&mut self) -> SignalingId {
        let mut rng = rand::rng();
        loop {
            let id = rng.random_range(1..=MAX_ID);
            // A group holds far fewer than 2^31 ids: retrying terminates.
            if self.live.insert(id) {
                return id;
            }
        }
    }

    fn release(&mut self, id: SignalingId) {
        self.live.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_non_zero_31_bit_and_unique_while_held() {
        let mut ids = GroupIds::default();
        let held: Vec<u32> = (0..10_000).map(|_| ids.allocate()).collect();
        let unique: HashSet<u32> = held.iter().copied().collect();
        assert_eq!(unique.len(), held.len());
        assert!(held.iter().all(|&id| id != 0 && id <= MAX_ID));
        for id in held {
            ids.release(id);
        }
        assert!(ids.live.is_empty(), "released ids are forgotten");
    }

    #[test]
    fn an_allocator_holding_ids_never_draws_them_until_released() {
        let mut ids = GroupIds::holding([1, 2, 3]);
        let mut held: Vec<u32> = ids.held().collect();
        held.sort_unstable();
        assert_eq!(held, vec![1, 2, 3]);
        // `allocate` only returns an id it could add to `live`: a held one
        // never comes back while held.
        let drawn = ids.allocate();
        assert!(!(1..=3).contains(&drawn));
        assert_eq!(ids.held().count(), 4);
        ids.release(2);
        let mut held: Vec<u32> = ids.held().filter(|&id| id != drawn).collect();
        held.sort_unstable();
        assert_eq!(held, vec![1, 3]);
    }
}
