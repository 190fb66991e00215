//! The Redis key and channel names of a deployment (`../shared/cluster.md`,
//! "Redis layout"), and the Redis Cluster hash slot of a name.
//!
//! Every name starts with the configured prefix (`sw` by default). The
//! parts in braces are hash tags: a group's owner hash and snapshot share
//! the tag `{g:<hex>}`, so one script can touch both on Redis Cluster, and
//! each node's inbox channel has its own tag `{n:<node>}`, so inboxes
//! spread over the shards. Every node's dashboard figures share one tag,
//! the prefix (`sw:dash:{sw}:<node>`), so one MGET reads them all on a
//! Redis Cluster too (a multi-key command must stay in one slot; a SCAN
//! would have to visit every shard). Pure: no I/O.

use crate::{GroupHash, NodeId};

/// The prefix used when the operator sets none.
pub const DEFAULT_PREFIX: &str = "sw";

/// Builds the names of one deployment's keys and channels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyLayout {
    prefix: String,
}

impl KeyLayout {
    /// A layout under `prefix`, which must be non-empty and free of `{`,
    /// `}` (they would change the hash tags) and whitespace.
    pub(crate) fn new(prefix: &str) -> Result<Self, String> {
        if prefix.is_empty()
            || prefix
                .chars()
                .any(|c| c == '{' || c == '}' || c.is_whitespace() || c.is_control())
        {
            return Err(format!(
                "cluster prefix {prefix:?} must be non-empty, without braces or spaces"
            ));
        }
        Ok(Self {
            prefix: prefix.to_owned(),
        })
    }

    /// The node registry (a ZSET node → last heartbeat in ms).
    pub(crate) fn nodes(&self) -> String {
        format!("{}:nodes", self.prefix)
    }

    /// The control channel every node subscribes to.
    pub(crate) fn control(&self) -> String {
        format!("{}:ctl", self.prefix)
    }

    /// `node`'s inbox channel.
    pub(crate) fn inbox(&self, node: NodeId) -> String {
        format!("{}:in:{{n:{node}}}", self.prefix)
    }

    /// `node`'s dashboard figures (a string with a TTL); every node's in
    /// one hash slot.
    pub(crate) fn node_figures(&self, node: NodeId) -> String {
        format!("{prefix}:dash:{{{prefix}}}:{node}", prefix = self.prefix)
    }

    /// `group`'s owner hash {node, epoch}.
    pub(crate) fn owner(&self, group: &GroupHash) -> String {
        format!("{}:{{g:{}}}:own", self.prefix, lower_hex(group))
    }

    /// `group`'s snapshot (same hash slot as its owner hash).
    pub(crate) fn snapshot(&self, group: &GroupHash) -> String {
        format!("{}:{{g:{}}}:snap", self.prefix, lower_hex(group))
    }
}

fn lower_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

/// The Redis Cluster hash slot of a key or shard channel name: CRC16
/// (XMODEM) of the hash tag (the part between the first `{` and the next
/// `}`, when non-empty) or of the whole name, modulo 16384.
pub(crate) fn hash_slot(name: &[u8]) -> u16 {
    let tagged = name
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &name[open + 1..];
            rest.iter()
                .position(|&b| b == b'}')
                .filter(|&close| close > 0)
                .map(|close| &rest[..close])
        })
        .unwrap_or(name);
    crc16_xmodem(tagged) % 16384
}

fn crc16_xmodem(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0u16, |crc, &byte| {
        (0..8).fold(crc ^ (u16::from(byte) << 8), |crc, _| {
            if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_documented_layout() {
        let keys = KeyLayout::new(DEFAULT_PREFIX).expect("default prefix");
        let group: GroupHash = [
            0x00, 0x01, 0x0a, 0xff, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xa0,
            0xb0, 0xc0,
        ];
        assert_eq!(keys.nodes(), "sw:nodes");
        assert_eq!(keys.control(), "sw:ctl");
        assert_eq!(keys.inbox(42), "sw:in:{n:42}");
        assert_eq!(
            keys.owner(&group),
            "sw:{g:00010aff102030405060708090a0b0c0}:own"
        );
        assert_eq!(
            keys.snapshot(&group),
            "sw:{g:00010aff102030405060708090a0b0c0}:snap"
        );
        assert_eq!(keys.node_figures(42), "sw:dash:{sw}:42");
        let other = KeyLayout::new("prod:sig").expect("prefix with a colon");
        assert_eq!(other.inbox(7), "prod:sig:in:{n:7}");
        assert_eq!(other.node_figures(7), "prod:sig:dash:{prod:sig}:7");
    }

    #[test]
    fn every_nodes_figures_share_a_slot() {
        let keys = KeyLayout::new("sw").expect("prefix");
        let slot = hash_slot(keys.node_figures(1).as_bytes());
        for node in [2, 3, 1000, u32::MAX] {
            assert_eq!(hash_slot(keys.node_figures(node).as_bytes()), slot);
        }
    }

    #[test]
    fn prefixes_that_break_hash_tags_are_refused() {
        for prefix in ["", "a{b", "a}b", "a b", "a\nb"] {
            assert!(KeyLayout::new(prefix).is_err(), "{prefix:?} accepted");
        }
    }

    #[test]
    fn slots_match_redis() {
        // Values from `CLUSTER KEYSLOT` on Redis 7.
        assert_eq!(hash_slot(b"foo"), 12182);
        assert_eq!(hash_slot(b"123456789"), 12739);
        assert_eq!(hash_slot(b"{user1000}.following"), hash_slot(b"user1000"));
        assert_eq!(hash_slot(b"foo{}{bar}"), hash_slot(b"foo{}{bar}"));
        assert_ne!(hash_slot(b"foo{}{bar}"), hash_slot(b"bar"));
        assert_eq!(hash_slot(b"foo{{bar}}zap"), hash_slot(b"{bar"));
        assert_eq!(hash_slot(b"foo{bar}{zap}"), hash_slot(b"bar"));
    }

    #[test]
    fn a_groups_owner_and_snapshot_share_a_slot() {
        let keys = KeyLayout::new("sw").expect("prefix");
        for seed in 0u8..64 {
            let group = [seed; 16];
            assert_eq!(
                hash_slot(keys.owner(&group).as_bytes()),
                hash_slot(keys.snapshot(&group).as_bytes())
            );
        }
    }
}
