//! Restoring a sigver group from a cluster snapshot (bytes another node
//! wrote to Redis: input from outside the process) on any bytes, for both
//! dialects. Restore never panics; what it accepts is a state the rules
//! can run: written again it restores to the same state with the same ids,
//! and when every peer then leaves, the group empties and every id held
//! comes back.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sigway_core::sigver::ids::GroupIds;
use sigway_core::sigver::legacy::state::LegacyGroupState;
use sigway_core::sigver::snapshot::{PeerAddress, Snapshot};
use sigway_core::sigver::state::{GroupLimits, GroupState};

/// The gateway's own mapping is one-to-one as well (node, session number).
fn key((node, number): PeerAddress) -> (u32, u64) {
    (node, number)
}

fuzz_target!(|input: &[u8]| {
    let Some((&choice, bytes)) = input.split_first() else {
        return;
    };
    let limits = GroupLimits {
        max_members: match choice >> 1 {
            0 => usize::MAX,
            n => usize::from(n % 8),
        },
    };
    if choice % 2 == 0 {
        if let Ok((state, ids)) = GroupState::<(u32, u64)>::restore(bytes, limits, key) {
            let leftovers = {
                let mut state = state;
                let mut ids = ids;
                rewritten(&state, &ids, limits);
                for peer in state.peers() {
                    state.leave(peer, &mut ids, &mut Vec::new());
                }
                assert_eq!(state.peer_count(), 0);
                assert!(state.member_ids().is_empty());
                ids.held().count()
            };
            assert_eq!(leftovers, 0, "every id comes back when all have left");
        }
    } else if let Ok((state, ids)) = LegacyGroupState::<(u32, u64)>::restore(bytes, limits, key) {
        let mut state = state;
        let mut ids = ids;
        rewritten(&state, &ids, limits);
        for peer in state.peers() {
            state.leave(peer, &mut ids, &mut Vec::new());
        }
        assert_eq!(state.peer_count(), 0);
        assert!(state.members().is_empty());
        assert_eq!(
            ids.held().count(),
            0,
            "every id comes back when all have left"
        );
    }
});

/// A restored state written again restores to itself with the same ids.
fn rewritten<S>(state: &S, ids: &GroupIds, limits: GroupLimits)
where
    S: Snapshot<(u32, u64)> + PartialEq + std::fmt::Debug,
{
    let bytes = state.snapshot(ids, |&peer| peer);
    let (again, again_ids) = match S::restore(&bytes, limits, key) {
        Ok(restored) => restored,
        Err(error) => panic!("a restored state's own snapshot is refused: {error}"),
    };
    assert_eq!(&again, state, "restore ∘ snapshot is the identity");
    let mut held: Vec<u32> = ids.held().collect();
    let mut held_again: Vec<u32> = again_ids.held().collect();
    held.sort_unstable();
    held_again.sort_unstable();
    assert_eq!(held, held_again, "the same ids are held");
}
