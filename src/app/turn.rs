//! `GET /turn`: short-lived TURN credentials in the TURN REST scheme that
//! coturn checks with `use-auth-secret` (username `<expiry>:<user>`,
//! password base64(HMAC-SHA1(secret, username))), so web clients stop
//! shipping fixed TURN passwords in their JavaScript.
//!
//! The arithmetic ([`credential`], [`sanitize_user`]) is pure and unit
//! tested; [`TurnEndpoint`] is the HTTP side: 404 while `turn.secret` is
//! unset, the origin check the sigver upgrade has, a token bucket per
//! client address (`turn.requests_per_minute`, 429 with `Retry-After`),
//! `Cache-Control: no-store`, and CORS for allowed origins (a page on
//! another origin fetches its credentials). The secret is never logged:
//! it lives in a [`Secret`](crate::config::Secret) whose `Debug` redacts it.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;
use serde_json::json;
use sigway_core::rate::{KeyedBuckets, Rate};
use sigway_sockjs::edge::Edge;

use crate::config::TurnSettings;

/// Longest user part taken from `?user=`, in characters.
pub(crate) const MAX_USER_CHARS: usize = 64;

/// One TURN REST credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TurnCredential {
    /// `<expiry unix seconds>:<user>`.
    pub(crate) username: String,
    /// base64(HMAC-SHA1(secret, username)).
    pub(crate) password: String,
}

/// The credential of `user` valid until `now + ttl` (Unix seconds) under
/// `secret`: what coturn recomputes from the username to check it.
pub(crate) fn credential(
    secret: &[u8],
    user: &str,
    now: u64,
    ttl: u64,
) -> Result<TurnCredential, openssl::error::ErrorStack> {
    let username = format!("{}:{user}", now.saturating_add(ttl));
    let key = PKey::hmac(secret)?;
    let mut signer = Signer::new(MessageDigest::sha1(), &key)?;
    signer.update(username.as_bytes())?;
    let password = openssl::base64::encode_block(&signer.sign_to_vec()?);
    Ok(TurnCredential { username, password })
}

/// The user part a client asked for, kept to [`MAX_USER_CHARS`]
/// characters of `A-Z a-z 0-9 . _ - @` (no `:`, which would split the
/// username differently for coturn; nothing a log line could be forged
/// with). `None` when nothing usable is left.
pub(crate) fn sanitize_user(raw: &str) -> Option<String> {
    let user: String = raw
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
        .take(MAX_USER_CHARS)
        .collect();
    (!user.is_empty()).then_some(user)
}

/// Seconds a client refused by a per-minute limit should wait for one
/// token (at least one).
fn retry_after_secs(requests_per_minute: u32) -> u64 {
    60u64.div_ceil(u64::from(requests_per_minute.max(1)))
}

/// The endpoint's settings and its per-address buckets.
pub(crate) struct TurnEndpoint {
    settings: TurnSettings,
    requests: Mutex<KeyedBuckets<IpAddr>>,
}

impl TurnEndpoint {
    pub(crate) fn new(settings: TurnSettings) -> Self {
        let per_minute = settings.requests_per_minute;
        let rate = Rate::new(f64::from(per_minute) / 60.0, per_minute);
        Self {
            settings,
            requests: Mutex::new(KeyedBuckets::new(rate)),
        }
    }

    /// Whether `ip` may fetch one more credential now.
    fn within_rate(&self, ip: Option<IpAddr>) -> bool {
        let Some(ip) = ip else { return true };
        self.requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .try_take(&ip, Instant::now())
    }
}

#[derive(serde::Deserialize)]
struct TurnQuery {
    user: Option<String>,
}

/// `GET /turn[?user=NAME]`.
pub(super) async fn turn_credentials(
    req: HttpRequest,
    endpoint: web::Data<TurnEndpoint>,
    edge: web::Data<Edge>,
) -> HttpResponse {
    let settings = &endpoint.settings;
    if !settings.enabled() {
        return HttpResponse::NotFound()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(json!({"error": "TURN credentials are not configured (turn.secret)"}));
    }
    if let Some(refusal) = edge.origin_refusal(&req, "TURN credentials") {
        return refusal;
    }
    let client = edge.client_addr(&req);
    if !endpoint.within_rate(client.map(|addr| addr.ip())) {
        tracing::info!(client = ?client, "TURN credentials refused: rate limit");
        return HttpResponse::TooManyRequests()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header((
                header::RETRY_AFTER,
                retry_after_secs(settings.requests_per_minute).to_string(),
            ))
            .json(json!({"error": "too many TURN credential requests from this address"}));
    }
    // A malformed query string is treated as no user: the default applies.
    let asked = web::Query::<TurnQuery>::from_query(req.query_string())
        .ok()
        .and_then(|query| query.into_inner().user);
    let user = asked
        .as_deref()
        .and_then(sanitize_user)
        .unwrap_or_else(|| settings.user.clone());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let credential = match credential(
        settings.secret.expose().as_bytes(),
        &user,
        now,
        settings.ttl,
    ) {
        Ok(credential) => credential,
        Err(error) => {
            tracing::error!("TURN credentials: HMAC failed: {error}");
            return HttpResponse::InternalServerError().finish();
        }
    };
    tracing::debug!(client = ?client, username = %credential.username, "TURN credentials issued");
    let mut answer = HttpResponse::Ok();
    answer.insert_header((header::CACHE_CONTROL, "no-store"));
    // The origin check passed: a page on that origin may read the answer.
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        answer
            .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone()))
            .insert_header((header::VARY, "Origin"));
    }
    answer.json(json!({
        "username": credential.username,
        "password": credential.password,
        "ttl": settings.ttl,
        "uris": settings.uris,
        "iceServers": [{
            "urls": settings.uris,
            "username": credential.username,
            "credential": credential.password,
        }],
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_is_base64_hmac_sha1_of_the_username() {
        // Computed independently with the openssl command line:
        // printf %s '1700086400:alice' | openssl dgst -sha1 -hmac north -binary | base64
        let got = credential(b"north", "alice", 1_700_000_000, 86_400).expect("hmac");
        assert_eq!(got.username, "1700086400:alice");
        assert_eq!(got.password, "SXua5ne/+mDhiHTp0pQJzRO4ESg=");
    }

    #[test]
    fn the_primitive_is_hmac_sha1_by_rfc_2202() {
        // RFC 2202 test case 2 (a published vector, not our own output).
        let key = PKey::hmac(b"Jefe").expect("key");
        let mut signer = Signer::new(MessageDigest::sha1(), &key).expect("signer");
        signer
            .update(b"what do ya want for nothing?")
            .expect("update");
        let digest = signer.sign_to_vec().expect("sign");
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
    }

    #[test]
    fn expiry_is_now_plus_ttl_and_saturates() {
        let got = credential(b"s", "u", u64::MAX - 1, 10).expect("hmac");
        assert_eq!(got.username, format!("{}:u", u64::MAX));
    }

    #[test]
    fn user_is_sanitized_and_capped() {
        assert_eq!(sanitize_user("alice"), Some("alice".into()));
        assert_eq!(sanitize_user("a:b c\nd"), Some("abcd".into()));
        assert_eq!(
            sanitize_user("bob@example.org"),
            Some("bob@example.org".into())
        );
        assert_eq!(sanitize_user("::: \u{e9}"), None);
        assert_eq!(sanitize_user(""), None);
        let long = "x".repeat(500);
        assert_eq!(sanitize_user(&long).map(|u| u.len()), Some(MAX_USER_CHARS));
    }

    #[test]
    fn retry_after_is_one_tokens_wait() {
        assert_eq!(retry_after_secs(60), 1);
        assert_eq!(retry_after_secs(7), 9);
        assert_eq!(retry_after_secs(1), 60);
        assert_eq!(retry_after_secs(0), 60);
    }
}
