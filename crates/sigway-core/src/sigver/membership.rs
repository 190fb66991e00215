//! What both dialects decide the same way about membership: the limits the
//! rules enforce and which member a joiner is bound to. Each dialect's rules
//! ([`state`](super::state), [`legacy::state`](super::legacy::state)) keep
//! their own member list and answer in their own messages.

/// Limits the rules enforce.
#[derive(Debug, Clone, Copy)]
pub struct GroupLimits {
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
/// Shared with the legacy dialect, which has no Netflux ids and so keys its
/// tried lists by connection: `K` is whatever a dialect remembers a tried
/// member by. `None` only when `members` is empty.
pub fn choose_member<M: Copy, K: PartialEq>(
    members: impl Iterator<Item = (M, K, bool)> + Clone,
    tried: &mut Vec<K>,
) -> Option<M> {
    for _ in 0..2 {
        let mut first = None;
        for (member, netflux_id, favored) in members.clone() {
            if tried.contains(&netflux_id) {
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
