//! A lock-free latency histogram with fixed buckets, rendered in the
//! Prometheus text format (`_bucket{le=..}`, `_sum`, `_count`) and read as
//! percentiles by `/stats` and the dashboard feed.
//!
//! Recording is one relaxed add on the bucket, one on the sum and one on the
//! count: no lock and no allocation, so the relay path can record without a
//! measurable cost. Buckets hold their own counts (not cumulative ones);
//! rendering makes them cumulative, as Prometheus expects. The bounds are
//! fixed for every histogram of the gateway (50 µs to 10 s), which covers a
//! relay on loopback as well as a join that waits for a cluster.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the buckets, in microseconds (`+Inf` follows).
pub(crate) const BOUNDS_MICROS: [u64; 17] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// Counts of durations by bucket, their sum and their number.
#[derive(Debug, Default)]
pub(crate) struct Histogram {
    /// One count per bound, and the last for what exceeds every bound.
    buckets: [AtomicU64; BOUNDS_MICROS.len() + 1],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

/// A histogram's figures read at one moment (cumulative bucket counts).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HistogramReading {
    /// Cumulative counts, one per bound then `+Inf`.
    pub cumulative: Vec<u64>,
    pub sum_seconds: f64,
    pub count: u64,
}

impl Histogram {
    /// Counts one duration.
    pub(crate) fn record(&self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let bucket = BOUNDS_MICROS.partition_point(|bound| *bound < micros);
        self.buckets[bucket].fetch_add(1, Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    /// The figures now (a scrape racing a record may see a count one ahead
    /// of its bucket, which Prometheus tolerates).
    pub(crate) fn read(&self) -> HistogramReading {
        let mut running = 0;
        let cumulative = self
            .buckets
            .iter()
            .map(|bucket| {
                running += bucket.load(Relaxed);
                running
            })
            .collect();
        HistogramReading {
            cumulative,
            sum_seconds: self.sum_nanos.load(Relaxed) as f64 / 1e9,
            count: self.count.load(Relaxed),
        }
    }
}

impl HistogramReading {
    /// The `q` quantile (0..=1) in seconds, interpolated inside its bucket
    /// as Prometheus' `histogram_quantile` does; `None` without samples.
    /// Past the last bound it answers the last bound.
    pub(crate) fn quantile(&self, q: f64) -> Option<f64> {
        let total = *self.cumulative.last()?;
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let bucket = self
            .cumulative
            .iter()
            .position(|count| *count as f64 >= rank)
            .unwrap_or(self.cumulative.len() - 1);
        let Some(&upper_micros) = BOUNDS_MICROS.get(bucket) else {
            return Some(BOUNDS_MICROS[BOUNDS_MICROS.len() - 1] as f64 / 1e6);
        };
        let lower_micros = if bucket == 0 {
            0
        } else {
            BOUNDS_MICROS[bucket - 1]
        };
        let below = if bucket == 0 {
            0
        } else {
            self.cumulative[bucket - 1]
        };
        let in_bucket = self.cumulative[bucket] - below;
        let fraction = if in_bucket == 0 {
            1.0
        } else {
            (rank - below as f64) / in_bucket as f64
        };
        let micros = lower_micros as f64 + (upper_micros - lower_micros) as f64 * fraction;
        Some(micros / 1e6)
    }

    /// Appends the `_bucket`, `_sum` and `_count` lines of `name` with the
    /// extra `labels` (`key="value"` pairs, comma-separated, or empty).
    pub(crate) fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, count) in self.cumulative.iter().enumerate() {
            let le = match BOUNDS_MICROS.get(i) {
                Some(micros) => format!("{}", *micros as f64 / 1e6),
                None => "+Inf".to_owned(),
            };
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {count}");
        }
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum_seconds);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }

    /// `/stats`' and the feed's view: count, sum and the usual percentiles.
    pub(crate) fn summary_json(&self) -> serde_json::Value {
        serde_json::json!({
            "count": self.count,
            "sum_seconds": self.sum_seconds,
            "p50_seconds": self.quantile(0.5),
            "p90_seconds": self.quantile(0.9),
            "p99_seconds": self.quantile(0.99),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_land_in_the_first_bucket_that_holds_them() {
        let histogram = Histogram::default();
        histogram.record(Duration::from_micros(50));
        histogram.record(Duration::from_micros(51));
        histogram.record(Duration::from_secs(60));
        let reading = histogram.read();
        assert_eq!(reading.cumulative[0], 1, "50 µs is at most 50 µs");
        assert_eq!(reading.cumulative[1], 2);
        assert_eq!(reading.cumulative[BOUNDS_MICROS.len() - 1], 2);
        assert_eq!(reading.cumulative[BOUNDS_MICROS.len()], 3, "+Inf");
        assert_eq!(reading.count, 3);
        assert!((reading.sum_seconds - 60.000101).abs() < 1e-9);
    }

    #[test]
    fn quantiles_interpolate_inside_the_bucket() {
        let histogram = Histogram::default();
        assert_eq!(histogram.read().quantile(0.5), None);
        for _ in 0..10 {
            // All in the (500 µs, 1 ms] bucket.
            histogram.record(Duration::from_micros(800));
        }
        let reading = histogram.read();
        let median = reading.quantile(0.5).expect("samples");
        assert!((median - 0.00075).abs() < 1e-9, "{median}");
        assert!((reading.quantile(1.0).expect("samples") - 0.001).abs() < 1e-9);
        histogram.record(Duration::from_secs(100));
        assert_eq!(histogram.read().quantile(1.0), Some(10.0));
    }

    #[test]
    fn rendering_is_cumulative_with_sum_and_count() {
        let histogram = Histogram::default();
        histogram.record(Duration::from_micros(70));
        histogram.record(Duration::from_millis(3));
        let mut out = String::new();
        histogram
            .read()
            .render(&mut out, "sigway_x_seconds", "protocol=\"sigver\"");
        assert!(
            out.contains("sigway_x_seconds_bucket{protocol=\"sigver\",le=\"0.0001\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("sigway_x_seconds_bucket{protocol=\"sigver\",le=\"+Inf\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("sigway_x_seconds_count{protocol=\"sigver\"} 2\n"),
            "{out}"
        );
        let mut bare = String::new();
        histogram.read().render(&mut bare, "y", "");
        assert!(bare.contains("y_bucket{le=\"0.00005\"} 0\n"), "{bare}");
        assert!(bare.contains("y_sum 0.00307\n"), "{bare}");
    }
}
