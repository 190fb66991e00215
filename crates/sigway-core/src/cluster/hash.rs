//! The directory's name for a group: 128 bits of SHA-256 over its kind and
//! key.
//!
//! Every node must compute the same name for the same group whatever its
//! version or platform, so this is a fixed cryptographic hash (never std's
//! `DefaultHasher`, which is randomly seeded and may change between Rust
//! releases). Hashing also keeps 512-character Netflux keys and characters
//! like `{` (Redis Cluster hash tags) out of Redis key names, and keeps the
//! keys themselves, which grant entry to a group, out of Redis. The 0 byte
//! separates kind from key so `("ab", "c")` and `("a", "bc")` differ.

use sha2::{Digest, Sha256};

/// The first 16 bytes of SHA-256 of `kind ‖ 0x00 ‖ key`.
pub fn group_hash(kind: &str, key: &str) -> [u8; 16] {
    let mut hasher = Sha256::new();
    hasher.update(kind.as_bytes());
    hasher.update([0u8]);
    hasher.update(key.as_bytes());
    let digest = hasher.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

/// Lower-case hex of a group hash (32 characters), as used in key names.
pub fn hex(hash: &[u8; 16]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(32);
    for byte in hash {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Vectors computed outside Rust: `printf 'sigver\0abc' | sha256sum`.
    #[test]
    fn matches_sha256_of_kind_zero_key_computed_elsewhere() {
        assert_eq!(
            hex(&group_hash("sigver", "abc")),
            "4e71fb0fe3801f624ac99d01d6d5f281"
        );
        assert_eq!(
            hex(&group_hash("videre", "room-1")),
            "42a8439096804d767e340f91deb0d583"
        );
        assert_eq!(hex(&group_hash("", "")), "6e340b9cffb37a989ca544e6bb780a2c");
    }

    #[test]
    fn the_separator_keeps_kind_and_key_apart() {
        assert_ne!(group_hash("ab", "c"), group_hash("a", "bc"));
        assert_ne!(group_hash("sigver", "k"), group_hash("videre", "k"));
    }

    #[test]
    fn hex_is_32_lowercase_digits() {
        let text = hex(&[0xab; 16]);
        assert_eq!(text.len(), 32);
        assert_eq!(text, "ab".repeat(16));
    }
}
