//! Signaling ids unique among every live binding of the server.
//!
//! sigver draws ids from one process-wide set; so do we, sharded so that
//! groups on different arbiters rarely meet on a lock. Ids are random in
//! `1..=2^31-1` (31 bits, never 0: 0 means "the member side" on the wire).

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex};

use rand::Rng;

use crate::sigver::state::{SignalingId, SignalingIds};

const SHARDS: usize = 16;
const MAX_ID: u32 = 0x7fff_ffff;

static LIVE: LazyLock<[Mutex<HashSet<u32>>; SHARDS]> =
    LazyLock::new(|| std::array::from_fn(|_| Mutex::new(HashSet::new())));

/// The process-wide allocator (a unit handle on the shared sets).
#[derive(Debug, Default, Clone, Copy)]
pub struct GlobalIds;

impl SignalingIds for GlobalIds {
    fn allocate(&mut self) -> SignalingId {
        let mut rng = rand::rng();
        loop {
            let id = rng.random_range(1..=MAX_ID);
            let mut shard = LIVE[id as usize % SHARDS]
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            // With 2^31 ids a collision is rare; retrying terminates.
            if shard.insert(id) {
                return id;
            }
        }
    }

    fn release(&mut self, id: SignalingId) {
        LIVE[id as usize % SHARDS]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_non_zero_31_bit_and_unique_while_held() {
        let mut ids = GlobalIds;
        let held: Vec<u32> = (0..10_000).map(|_| ids.allocate()).collect();
        let unique: HashSet<u32> = held.iter().copied().collect();
        assert_eq!(unique.len(), held.len());
        assert!(held.iter().all(|&id| id != 0 && id <= MAX_ID));
        for id in held {
            ids.release(id);
        }
    }
}
