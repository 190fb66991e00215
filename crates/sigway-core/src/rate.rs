//! Token buckets: the arithmetic behind every rate limit (connections per
//! address, messages per connection, joins per key).
//!
//! A bucket holds up to `burst` tokens, refills at `per_sec` tokens a
//! second, and each event takes one; an event that finds no whole token is
//! over the limit. [`KeyedBuckets`] keeps one bucket per key (an address, a
//! room key) and drops the buckets that refilled completely (an idle key
//! is indistinguishable from a new one), so its memory follows the keys
//! active within one refill period, not every key ever seen. Time is an
//! argument (an `Instant` the caller reads), so the rules are unit tests.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::time::Instant;

/// A rate with a burst: `per_sec` tokens a second, at most `burst` saved.
/// A rate of zero (or less) means no limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Tokens added per second.
    pub per_sec: f64,
    /// Most tokens the bucket holds: the events allowed at once.
    pub burst: u32,
}

impl Rate {
    /// `per_sec` with `burst`.
    pub fn new(per_sec: f64, burst: u32) -> Self {
        Self { per_sec, burst }
    }

    /// Whether the rate limits anything (a positive rate).
    pub fn is_limited(&self) -> bool {
        self.per_sec > 0.0
    }

    /// Seconds an empty bucket takes to fill up again.
    fn refill_secs(&self) -> f64 {
        f64::from(self.burst) / self.per_sec
    }
}

/// One bucket's level, refilled lazily when an event reads it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenBucket {
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket (a new key may use its whole burst at once).
    pub fn full(rate: Rate, now: Instant) -> Self {
        Self {
            tokens: f64::from(rate.burst),
            updated: now,
        }
    }

    /// Refills to `now` (a clock that went backwards adds nothing).
    fn refill(&mut self, rate: Rate, now: Instant) {
        if now > self.updated {
            let elapsed = now.duration_since(self.updated).as_secs_f64();
            self.tokens = (self.tokens + elapsed * rate.per_sec).min(f64::from(rate.burst));
            self.updated = now;
        }
    }

    /// Takes one token for an event at `now`: `true` when the event is
    /// within the rate. An unlimited rate always answers `true`.
    pub fn try_take(&mut self, rate: Rate, now: Instant) -> bool {
        if !rate.is_limited() {
            return true;
        }
        self.refill(rate, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether the bucket is full again at `now` (nothing to remember).
    pub fn is_full(&self, rate: Rate, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens + elapsed * rate.per_sec >= f64::from(rate.burst)
    }
}

/// Fewest buckets kept before the map is first pruned.
const MIN_PRUNE_AT: usize = 1024;

/// One bucket per key, the full ones dropped.
#[derive(Debug)]
pub struct KeyedBuckets<K> {
    rate: Rate,
    buckets: HashMap<K, TokenBucket>,
    /// Size at which the next insert prunes first: twice what survived
    /// the last prune, so pruning costs O(1) per event, amortized.
    prune_at: usize,
    last_prune: Option<Instant>,
}

impl<K: Hash + Eq> KeyedBuckets<K> {
    /// An empty map of buckets at `rate`.
    pub fn new(rate: Rate) -> Self {
        Self {
            rate,
            buckets: HashMap::new(),
            prune_at: MIN_PRUNE_AT,
            last_prune: None,
        }
    }

    /// The rate of every bucket.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Takes a token from `key`'s bucket at `now` (a new key starts full):
    /// `true` when the event is within the rate.
    pub fn try_take<Q>(&mut self, key: &Q, now: Instant) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if !self.rate.is_limited() {
            return true;
        }
        let rate = self.rate;
        if let Some(bucket) = self.buckets.get_mut(key) {
            return bucket.try_take(rate, now);
        }
        // Before the map grows: drop what refilled, when it doubled since
        // the last prune or one refill period passed (so a map that
        // stopped growing is emptied too).
        let period_passed = self.last_prune.is_none_or(|last| {
            now.saturating_duration_since(last).as_secs_f64() >= rate.refill_secs()
        });
        if self.buckets.len() >= self.prune_at || period_passed {
            self.prune(now);
        }
        let mut bucket = TokenBucket::full(rate, now);
        let within = bucket.try_take(rate, now);
        self.buckets.insert(key.to_owned(), bucket);
        within
    }

    /// Drops every bucket that is full at `now`.
    pub fn prune(&mut self, now: Instant) {
        let rate = self.rate;
        self.buckets.retain(|_, bucket| !bucket.is_full(rate, now));
        self.prune_at = (self.buckets.len() * 2).max(MIN_PRUNE_AT);
        self.last_prune = Some(now);
    }

    /// Buckets held.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no bucket is held.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let rate = Rate::new(10.0, 5);
        let t0 = Instant::now();
        let mut bucket = TokenBucket::full(rate, t0);
        for i in 0..5 {
            assert!(bucket.try_take(rate, t0), "burst event {i}");
        }
        assert!(!bucket.try_take(rate, t0), "the sixth at once is over");
        assert!(!bucket.try_take(rate, t0 + ms(99)), "not yet a token");
        assert!(bucket.try_take(rate, t0 + ms(100)), "one token per 100 ms");
        assert!(!bucket.try_take(rate, t0 + ms(150)));
        // A long pause refills only up to the burst.
        let later = t0 + Duration::from_secs(60);
        for i in 0..5 {
            assert!(bucket.try_take(rate, later), "refilled event {i}");
        }
        assert!(!bucket.try_take(rate, later));
    }

    #[test]
    fn a_zero_rate_limits_nothing_and_a_clock_going_back_adds_nothing() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let off = Rate::new(0.0, 0);
        let mut bucket = TokenBucket::full(off, t0);
        assert!((0..10_000).all(|_| bucket.try_take(off, t0)));
        let rate = Rate::new(1.0, 1);
        let mut bucket = TokenBucket::full(rate, t0);
        assert!(bucket.try_take(rate, t0));
        assert!(!bucket.try_take(rate, t0 - Duration::from_secs(5)));
        assert!(!bucket.try_take(rate, t0 + ms(999)));
        assert!(bucket.try_take(rate, t0 + ms(1000)));
    }

    #[test]
    fn keys_have_their_own_buckets() {
        let mut keyed = KeyedBuckets::<String>::new(Rate::new(1.0, 2));
        let t0 = Instant::now();
        assert!(keyed.try_take("a", t0));
        assert!(keyed.try_take("a", t0));
        assert!(!keyed.try_take("a", t0));
        assert!(keyed.try_take("b", t0), "another key is not limited by a");
        assert_eq!(keyed.len(), 2);
    }

    #[test]
    fn idle_buckets_are_dropped_so_memory_follows_active_keys() {
        let mut keyed = KeyedBuckets::<u32>::new(Rate::new(100.0, 10));
        let t0 = Instant::now();
        for key in 0..100_000u32 {
            // One event per key, 10 µs apart: each bucket refills in 100 ms
            // (10 tokens at 100/s), so about 10 000 keys are live at once.
            keyed.try_take(&key, t0 + Duration::from_micros(u64::from(key) * 10));
        }
        assert!(
            keyed.len() <= 2 * 10_001 + MIN_PRUNE_AT,
            "{} buckets held for ~10 000 active keys",
            keyed.len()
        );
        // A refill period later, the next event empties the map of them.
        let later = t0 + Duration::from_secs(2);
        keyed.try_take(&u32::MAX, later);
        assert_eq!(keyed.len(), 1);
        keyed.prune(later + Duration::from_secs(1));
        assert!(keyed.is_empty());
    }

    #[test]
    fn a_bucket_still_limiting_is_kept_by_a_prune() {
        let mut keyed = KeyedBuckets::<u8>::new(Rate::new(1.0, 3));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(keyed.try_take(&1, t0));
        }
        keyed.prune(t0 + ms(500));
        assert_eq!(keyed.len(), 1, "an emptied bucket is not forgotten");
        assert!(!keyed.try_take(&1, t0 + ms(600)), "and still limits");
    }

    proptest! {
        /// Over any sequence of event times, the events let through never
        /// exceed burst + rate × elapsed, and a bucket never refuses while
        /// it has had time to hold a token since its last refusal-free take.
        #[test]
        fn no_more_than_burst_plus_rate_times_time_passes(
            per_sec in 0.5f64..200.0,
            burst in 1u32..50,
            gaps in proptest::collection::vec(0u64..50_000, 1..400),
        ) {
            let rate = Rate::new(per_sec, burst);
            let t0 = Instant::now();
            let mut bucket = TokenBucket::full(rate, t0);
            let mut now = t0;
            let mut passed = 0u64;
            for gap in gaps {
                now += Duration::from_micros(gap);
                if bucket.try_take(rate, now) {
                    passed += 1;
                }
                let allowed = f64::from(burst) + now.duration_since(t0).as_secs_f64() * per_sec;
                prop_assert!(passed as f64 <= allowed + 1e-9, "{passed} > {allowed}");
            }
        }

        /// Events spaced at least one token apart are never refused.
        #[test]
        fn events_at_the_rate_always_pass(per_sec in 0.5f64..200.0, burst in 1u32..50, n in 1usize..300) {
            let rate = Rate::new(per_sec, burst);
            let t0 = Instant::now();
            let mut bucket = TokenBucket::full(rate, t0);
            let step = Duration::from_secs_f64(1.0 / per_sec) + Duration::from_micros(1);
            for i in 0..n {
                prop_assert!(bucket.try_take(rate, t0 + step * i as u32), "event {i}");
            }
        }
    }
}
