//! Signed room keys: opt-in room authorization that needs no client change.
//!
//! A Netflux key (or a videre `RoomId`) is an arbitrary string, so an
//! application backend can hand its users keys of the form
//! `<room>.<expiry>.<signature>`: `expiry` in Unix seconds, `signature` the
//! unpadded base64url of HMAC-SHA256(secret, `<room>.<expiry>`). The key is
//! read from the right, so rooms may contain dots; the group (or room) is
//! the whole key, so two expiries of one room are two groups. A videre key
//! may also bind the user: the signed text is then
//! `<room>.<expiry>.<base64url(UserId)>` (base64url has no dot, so the text
//! splits one way only).
//!
//! Secrets rotate: a key signed with the previous secret is accepted until
//! that secret's end. Time is an argument; signatures are compared in
//! constant time.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Why a key is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyRejection {
    /// Not `<room>.<expiry>.<signature>` (an empty room, an expiry that is
    /// not a number, a signature that is not 32 bytes of base64url).
    #[error("the key is not a signed key")]
    Malformed,
    /// No accepted secret signed it.
    #[error("the key's signature is not valid")]
    BadSignature,
    /// Signed, but its expiry has passed.
    #[error("the key has expired")]
    Expired,
}

/// The secrets keys may be signed with.
#[derive(Clone)]
pub struct KeySecrets {
    current: Vec<u8>,
    /// The previous secret and the Unix second it stops being accepted.
    previous: Option<(Vec<u8>, u64)>,
}

impl std::fmt::Debug for KeySecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets never reach a log.
        f.debug_struct("KeySecrets")
            .field(
                "previous_until",
                &self.previous.as_ref().map(|(_, until)| until),
            )
            .finish_non_exhaustive()
    }
}

/// The parts of a signed key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedKey<'k> {
    /// What is signed (without a bound user): `<room>.<expiry>`.
    pub signed: &'k str,
    /// The room name, dots allowed.
    pub room: &'k str,
    /// Unix seconds after which the key is refused.
    pub expiry: u64,
    signature: [u8; 32],
}

/// Reads `<room>.<expiry>.<signature>` from the right.
pub fn parse(key: &str) -> Result<SignedKey<'_>, KeyRejection> {
    let (signed, signature) = key.rsplit_once('.').ok_or(KeyRejection::Malformed)?;
    let (room, expiry) = signed.rsplit_once('.').ok_or(KeyRejection::Malformed)?;
    // Digits only (no sign, no spaces), and within u64.
    if room.is_empty() || expiry.is_empty() || !expiry.bytes().all(|b| b.is_ascii_digit()) {
        return Err(KeyRejection::Malformed);
    }
    let expiry = expiry.parse().map_err(|_| KeyRejection::Malformed)?;
    let mut decoded = [0u8; 32];
    match URL_SAFE_NO_PAD.decode_slice(signature, &mut decoded) {
        Ok(32) => {}
        _ => return Err(KeyRejection::Malformed),
    }
    Ok(SignedKey {
        signed,
        room,
        expiry,
        signature: decoded,
    })
}

/// The text a key binding `user` signs: `<room>.<expiry>.<base64url(user)>`.
pub fn signed_text(signed: &str, user: Option<&str>) -> String {
    match user {
        Some(user) => format!("{signed}.{}", URL_SAFE_NO_PAD.encode(user)),
        None => signed.to_owned(),
    }
}

/// The signature part of a key signing `text` with `secret` (what an
/// application backend computes; here for tests and tools).
pub fn sign(secret: &[u8], text: &str) -> String {
    URL_SAFE_NO_PAD.encode(mac(secret, text.as_bytes()))
}

fn hmac(secret: &[u8], text: &[u8]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256>>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(text);
    mac
}

fn mac(secret: &[u8], text: &[u8]) -> [u8; 32] {
    hmac(secret, text).finalize().into_bytes().into()
}

impl KeySecrets {
    /// Keys signed with `current`, and with `previous` until its end (Unix
    /// seconds).
    pub fn new(current: &[u8], previous: Option<(&[u8], u64)>) -> Self {
        Self {
            current: current.to_vec(),
            previous: previous.map(|(secret, until)| (secret.to_vec(), until)),
        }
    }

    /// Whether `key` is a signed key, unexpired at `now` (Unix seconds),
    /// signed by an accepted secret (for `user`, when the key binds one).
    pub fn check(&self, key: &str, user: Option<&str>, now: u64) -> Result<(), KeyRejection> {
        let key = parse(key)?;
        let text = signed_text(key.signed, user);
        // `verify_slice` compares in constant time.
        let signed_by = |secret: &[u8]| {
            hmac(secret, text.as_bytes())
                .verify_slice(&key.signature)
                .is_ok()
        };
        let accepted = signed_by(&self.current)
            || self
                .previous
                .as_ref()
                .is_some_and(|(secret, until)| now < *until && signed_by(secret));
        if !accepted {
            return Err(KeyRejection::BadSignature);
        }
        if now >= key.expiry {
            return Err(KeyRejection::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn key(secret: &[u8], room: &str, expiry: u64, user: Option<&str>) -> String {
        let signed = format!("{room}.{expiry}");
        format!("{signed}.{}", sign(secret, &signed_text(&signed, user)))
    }

    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        // RFC 4231 test case 2.
        let expected = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        let hex: String = mac(b"Jefe", b"what do ya want for nothing?")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, expected);
    }

    #[test]
    fn a_signed_key_is_read_from_the_right() {
        let secrets = KeySecrets::new(b"s3cret", None);
        let k = key(b"s3cret", "team.42.call", NOW + 60, None);
        let parsed = parse(&k).expect("parses");
        assert_eq!((parsed.room, parsed.expiry), ("team.42.call", NOW + 60));
        assert_eq!(secrets.check(&k, None, NOW), Ok(()));
    }

    #[test]
    fn expired_forged_and_malformed_keys_are_refused() {
        let secrets = KeySecrets::new(b"s3cret", None);
        let expired = key(b"s3cret", "room", NOW, None);
        assert_eq!(
            secrets.check(&expired, None, NOW),
            Err(KeyRejection::Expired)
        );
        let forged = key(b"other", "room", NOW + 60, None);
        assert_eq!(
            secrets.check(&forged, None, NOW),
            Err(KeyRejection::BadSignature)
        );
        let valid = key(b"s3cret", "room", NOW + 60, None);
        let moved = valid.replacen("room", "rooms", 1);
        assert_eq!(
            secrets.check(&moved, None, NOW),
            Err(KeyRejection::BadSignature)
        );
        let later = valid.replace(&format!(".{}.", NOW + 60), &format!(".{}.", NOW + 6000));
        assert_eq!(
            secrets.check(&later, None, NOW),
            Err(KeyRejection::BadSignature)
        );
        for bad in [
            "",
            "room",
            "room.123",
            ".123.AAAA",
            "room..sig",
            "room.-5.sig",
            "room.+5.sig",
            "room.99999999999999999999999.sig",
            &format!("room.{}.{}", NOW + 60, "A".repeat(42)),
            &format!("room.{}.{}=", NOW + 60, "A".repeat(43)),
            &format!("room.{}.{}", NOW + 60, "A".repeat(44)),
        ] {
            assert_eq!(
                secrets.check(bad, None, NOW),
                Err(KeyRejection::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_previous_secret_is_accepted_until_its_end() {
        let secrets = KeySecrets::new(b"new", Some((b"old", NOW + 10)));
        let old = key(b"old", "room", NOW + 60, None);
        assert_eq!(secrets.check(&old, None, NOW + 9), Ok(()));
        assert_eq!(
            secrets.check(&old, None, NOW + 10),
            Err(KeyRejection::BadSignature)
        );
        let new = key(b"new", "room", NOW + 60, None);
        assert_eq!(secrets.check(&new, None, NOW + 10), Ok(()));
    }

    #[test]
    fn a_key_binding_a_user_admits_only_that_user() {
        let secrets = KeySecrets::new(b"s3cret", None);
        let k = key(b"s3cret", "room", NOW + 60, Some("alice.1900000000.x"));
        assert_eq!(secrets.check(&k, Some("alice.1900000000.x"), NOW), Ok(()));
        assert_eq!(
            secrets.check(&k, Some("bob"), NOW),
            Err(KeyRejection::BadSignature)
        );
        assert_eq!(
            secrets.check(&k, None, NOW),
            Err(KeyRejection::BadSignature)
        );
    }

    proptest! {
        #[test]
        fn what_a_secret_signs_it_accepts_and_nothing_else_does(
            room in "[a-z.]{1,20}",
            expiry in (NOW + 1)..u64::MAX,
            user in proptest::option::of(".{0,12}"),
            flip in 0usize..32,
        ) {
            let secrets = KeySecrets::new(b"k", None);
            let k = key(b"k", &room, expiry, user.as_deref());
            prop_assert_eq!(secrets.check(&k, user.as_deref(), NOW), Ok(()));
            // Any one bit of the signature changed: refused.
            let mut parsed = parse(&k).expect("parses");
            parsed.signature[flip] ^= 1;
            let tampered = format!("{}.{}", parsed.signed, URL_SAFE_NO_PAD.encode(parsed.signature));
            prop_assert_eq!(secrets.check(&tampered, user.as_deref(), NOW), Err(KeyRejection::BadSignature));
        }

        #[test]
        fn any_text_is_checked_without_panic(key in ".{0,80}") {
            let _ = KeySecrets::new(b"k", None).check(&key, None, NOW);
        }
    }
}
