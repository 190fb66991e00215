//! How a room key appears in logs, `/stats` and any listing.
//!
//! A Netflux key (or a videre `RoomId`) is what lets a peer into a group,
//! so by default it is shown only as `key_hash:` and the first 12 hex
//! characters of its SHA-256: enough to tell rooms apart and to find one
//! whose key you know (`printf %s KEY | sha256sum`), useless for joining
//! it. [`ShownKey`] does the choice lazily, so a log line that is filtered
//! out costs no hash.

use std::fmt;

use sha2::{Digest, Sha256};

/// Hex characters of the SHA-256 a hidden key is shown as.
pub const KEY_HASH_CHARS: usize = 12;

/// The first [`KEY_HASH_CHARS`] hex characters of SHA-256(`key`).
pub fn key_hash(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let mut hex = String::with_capacity(KEY_HASH_CHARS);
    for byte in &digest[..KEY_HASH_CHARS / 2] {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

/// A key as it may be shown: itself when keys are shown, else
/// `key_hash:<12 hex>`.
#[derive(Debug, Clone, Copy)]
pub struct ShownKey<'k> {
    key: &'k str,
    show: bool,
}

impl<'k> ShownKey<'k> {
    /// `key`, shown as itself only when `show` (the `log.show_keys` setting).
    pub fn new(key: &'k str, show: bool) -> Self {
        Self { key, show }
    }
}

impl fmt::Display for ShownKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.show {
            f.write_str(self.key)
        } else {
            write!(f, "key_hash:{}", key_hash(self.key))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hidden_key_is_its_sha256_prefix() {
        // printf %s secret-room | sha256sum
        assert_eq!(key_hash("secret-room").len(), KEY_HASH_CHARS);
        assert_eq!(key_hash(""), "e3b0c44298fc");
        assert_eq!(
            ShownKey::new("", false).to_string(),
            "key_hash:e3b0c44298fc"
        );
        assert_eq!(ShownKey::new("room.1.sig", true).to_string(), "room.1.sig");
        let hidden = ShownKey::new("room.1.sig", false).to_string();
        assert!(!hidden.contains("room"), "{hidden}");
    }
}
