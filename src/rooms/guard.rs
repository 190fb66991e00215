//! The guard: rate limits and room authorization, asked by both adapters
//! before a connection takes a place, before each join, and for every
//! message a connection sends.
//!
//! The arithmetic is pure and lives in `sigway_core` (`rate`'s token
//! buckets, `auth`'s signed keys); this module holds the shared state (one
//! bucket per client address and per room key, behind a mutex each, their
//! idle buckets pruned), reads the clock, and applies `limits.dry_run`: a
//! violation then is counted and logged and let through. What is refused
//! is returned to the caller, which counts it, logs it once and tells the
//! client in its protocol's words (close 1008, 4741/4001, an error notice).

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use sigway_core::auth::{KeyRejection, KeySecrets};
use sigway_core::rate::{KeyedBuckets, Rate, TokenBucket};
use sigway_core::redact::ShownKey;

use crate::config::Settings;
use crate::error::{RateLimit, Refusal};
use crate::observe::{Reason, Stats};

/// Rate limits and signed keys for every session of this node.
pub(crate) struct Guard {
    /// What SIGHUP may change: swapped whole, read without a lock.
    policy: ArcSwap<GuardPolicy>,
    show_keys: bool,
    connections: Mutex<KeyedBuckets<IpAddr>>,
    joins: Mutex<KeyedBuckets<String>>,
    stats: Arc<Stats>,
}

/// The guard's settings that a reload replaces.
struct GuardPolicy {
    secrets: Option<KeySecrets>,
    bind_videre_user: bool,
    dry_run: bool,
    message_rate: Rate,
}

impl GuardPolicy {
    fn of(settings: &Settings) -> Self {
        let limits = &settings.limits;
        let auth = &settings.auth;
        let secrets = auth.enabled().then(|| {
            let previous = (!auth.previous_key_secret.is_empty()).then(|| {
                (
                    auth.previous_key_secret.expose().as_bytes(),
                    auth.previous_until,
                )
            });
            KeySecrets::new(auth.key_secret.expose().as_bytes(), previous)
        });
        Self {
            secrets,
            bind_videre_user: auth.bind_videre_user,
            dry_run: limits.dry_run,
            message_rate: Rate::new(limits.messages_per_sec, limits.message_burst),
        }
    }
}

fn connection_rate(settings: &Settings) -> Rate {
    let limits = &settings.limits;
    Rate::new(limits.connections_per_ip_per_sec, limits.connection_burst)
}

fn join_rate(settings: &Settings) -> Rate {
    let limits = &settings.limits;
    Rate::new(limits.joins_per_key_per_sec, limits.join_burst)
}

impl Guard {
    pub(crate) fn new(settings: &Settings, stats: Arc<Stats>) -> Self {
        Self {
            policy: ArcSwap::from_pointee(GuardPolicy::of(settings)),
            show_keys: settings.log.show_keys,
            connections: Mutex::new(KeyedBuckets::new(connection_rate(settings))),
            joins: Mutex::new(KeyedBuckets::new(join_rate(settings))),
            stats,
        }
    }

    /// Takes the rate limits, `dry_run` and `auth` of reloaded `settings`
    /// (SIGHUP). Open connections keep their message rate; a changed
    /// connection or join rate starts from full buckets.
    pub(crate) fn apply(&self, settings: &Settings) {
        self.policy.store(Arc::new(GuardPolicy::of(settings)));
        let connections = connection_rate(settings);
        let mut buckets = lock(&self.connections);
        if buckets.rate() != connections {
            *buckets = KeyedBuckets::new(connections);
        }
        drop(buckets);
        let joins = join_rate(settings);
        let mut buckets = lock(&self.joins);
        if buckets.rate() != joins {
            *buckets = KeyedBuckets::new(joins);
        }
    }

    /// `key` as logs and `/stats` may show it.
    pub(crate) fn shown<'k>(&self, key: &'k str) -> ShownKey<'k> {
        ShownKey::new(key, self.show_keys)
    }

    /// Whether keys are shown as they are (`log.show_keys`).
    pub(crate) fn shows_keys(&self) -> bool {
        self.show_keys
    }

    /// Whether `key` may be used as a room key: always without
    /// `auth.key_secret`, else only a valid, unexpired signed key (for
    /// `user` too when videre keys bind users).
    pub(crate) fn check_key(
        &self,
        key: &str,
        videre_user: Option<&str>,
    ) -> Result<(), KeyRejection> {
        let policy = self.policy.load();
        let Some(secrets) = &policy.secrets else {
            return Ok(());
        };
        let user = videre_user.filter(|_| policy.bind_videre_user);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        secrets.check(key, user, now)
    }

    /// A new connection from `ip` under `limits.connections_per_ip_per_sec`
    /// (an unknown address is not limited).
    pub(crate) fn connection(&self, ip: Option<IpAddr>) -> Result<(), Refusal> {
        let Some(ip) = ip else { return Ok(()) };
        let within = lock(&self.connections).try_take(&ip, Instant::now());
        self.verdict(within, RateLimit::Connections, || {
            tracing::info!(%ip, "rate limit (dry run): too many connections from this address");
        })
    }

    /// A join of room `key` of `kind` under `limits.joins_per_key_per_sec`.
    pub(crate) fn join(&self, kind: &str, key: &str) -> Result<(), Refusal> {
        let mut joins = lock(&self.joins);
        if !joins.rate().is_limited() {
            return Ok(());
        }
        // Kinds never contain a newline, so kind and key read back one way.
        let within = joins.try_take(&format!("{kind}\n{key}"), Instant::now());
        drop(joins);
        self.verdict(within, RateLimit::Joins, || {
            tracing::info!(kind, key = %self.shown(key), "rate limit (dry run): too many joins of this room");
        })
    }

    /// The message limit of one new connection.
    pub(crate) fn message_gate(&self) -> MessageGate {
        let policy = self.policy.load();
        MessageGate {
            rate: policy.message_rate,
            bucket: policy
                .message_rate
                .is_limited()
                .then(|| TokenBucket::full(policy.message_rate, Instant::now())),
            dry_run: policy.dry_run,
            reported: false,
        }
    }

    fn verdict(
        &self,
        within: bool,
        limit: RateLimit,
        log_dry_run: impl FnOnce(),
    ) -> Result<(), Refusal> {
        if within {
            return Ok(());
        }
        let refusal = Refusal::RateLimited(limit);
        if self.policy.load().dry_run {
            self.stats.would_refuse(Reason::of_refusal(&refusal));
            log_dry_run();
            return Ok(());
        }
        Err(refusal)
    }

    #[cfg(test)]
    fn buckets(&self) -> (usize, usize) {
        (lock(&self.connections).len(), lock(&self.joins).len())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A bucket map is consistent after any single update.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One connection's `limits.messages_per_sec`: the session asks it once
/// per message received. Without a limit it is a branch and nothing else.
pub(crate) struct MessageGate {
    rate: Rate,
    bucket: Option<TokenBucket>,
    dry_run: bool,
    /// A dry run logs the first violation of a connection only.
    reported: bool,
}

impl MessageGate {
    /// Counts one message: `Err` when it is over the limit (and the limit
    /// is enforced); a dry run counts the violation and lets it pass.
    pub(crate) fn check(&mut self, stats: &Stats) -> Result<(), Refusal> {
        let Some(bucket) = &mut self.bucket else {
            return Ok(());
        };
        if bucket.try_take(self.rate, Instant::now()) {
            return Ok(());
        }
        let refusal = Refusal::RateLimited(RateLimit::Messages);
        if !self.dry_run {
            return Err(refusal);
        }
        stats.would_refuse(Reason::of_refusal(&refusal));
        if !std::mem::replace(&mut self.reported, true) {
            tracing::info!("rate limit (dry run): too many messages on this connection");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sigway_core::auth::sign;

    fn guard_with(edit: impl FnOnce(&mut Settings)) -> (Guard, Arc<Stats>) {
        let mut settings = Settings::default();
        edit(&mut settings);
        let stats = Arc::new(Stats::default());
        (Guard::new(&settings, stats.clone()), stats)
    }

    #[test]
    fn without_settings_nothing_is_limited_or_checked() {
        let (guard, _) = guard_with(|_| {});
        let ip: IpAddr = [10, 0, 0, 1].into();
        let mut gate = guard.message_gate();
        let stats = Stats::default();
        for _ in 0..10_000 {
            assert!(guard.connection(Some(ip)).is_ok());
            assert!(guard.join("sigver", "k").is_ok());
            assert!(gate.check(&stats).is_ok());
        }
        assert_eq!(guard.check_key("anything", None), Ok(()));
        assert_eq!(guard.buckets(), (0, 0), "no state kept when off");
    }

    #[test]
    fn limits_refuse_past_the_burst_and_a_dry_run_only_counts() {
        let edit = |dry_run| {
            move |s: &mut Settings| {
                s.limits.messages_per_sec = 1.0;
                s.limits.message_burst = 3;
                s.limits.joins_per_key_per_sec = 1.0;
                s.limits.join_burst = 2;
                s.limits.connections_per_ip_per_sec = 1.0;
                s.limits.connection_burst = 2;
                s.limits.dry_run = dry_run;
            }
        };
        let (guard, stats) = guard_with(edit(false));
        let mut gate = guard.message_gate();
        let results: Vec<bool> = (0..4).map(|_| gate.check(&stats).is_ok()).collect();
        assert_eq!(results, [true, true, true, false]);
        assert!(guard.join("videre", "r").is_ok());
        assert!(guard.join("videre", "r").is_ok());
        assert_eq!(
            guard.join("videre", "r"),
            Err(Refusal::RateLimited(RateLimit::Joins))
        );
        assert!(
            guard.join("sigver", "r").is_ok(),
            "another kind, another key"
        );
        let ip: IpAddr = [10, 0, 0, 1].into();
        assert!(guard.connection(Some(ip)).is_ok());
        assert!(guard.connection(Some(ip)).is_ok());
        assert_eq!(
            guard.connection(Some(ip)),
            Err(Refusal::RateLimited(RateLimit::Connections))
        );
        assert!(guard.connection(None).is_ok());

        let (guard, stats) = guard_with(edit(true));
        let mut gate = guard.message_gate();
        assert!((0..10).all(|_| gate.check(&stats).is_ok()));
        assert!((0..10).all(|_| guard.join("videre", "r").is_ok()));
        let json = stats.snapshot_json();
        assert_eq!(json["rate_limit_dry_run"]["rate_messages"], 7);
        assert_eq!(json["rate_limit_dry_run"]["rate_joins"], 8);
        assert_eq!(json["refusals"], 0);
    }

    #[test]
    fn signed_keys_are_checked_with_the_user_when_bound() {
        let (guard, _) = guard_with(|s| {
            s.auth.key_secret = "k".into();
            s.auth.bind_videre_user = true;
        });
        let signed = "room.99999999999";
        let key = format!("{signed}.{}", sign(b"k", signed));
        assert_eq!(guard.check_key(&key, None), Ok(()));
        assert_eq!(
            guard.check_key(&key, Some("alice")),
            Err(KeyRejection::BadSignature),
            "a bound key signs the user"
        );
        let text = sigway_core::auth::signed_text(signed, Some("alice"));
        let bound = format!("{signed}.{}", sign(b"k", &text));
        assert_eq!(guard.check_key(&bound, Some("alice")), Ok(()));
        assert_eq!(guard.check_key("room", None), Err(KeyRejection::Malformed));
        assert_eq!(
            guard.check_key("room.1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", None),
            Err(KeyRejection::BadSignature)
        );
    }
}
