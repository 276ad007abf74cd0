//! The shape of a series as /metrics shows it: the classic histogram's
//! buckets, the quantiles taken from the exactly merged HDR histogram, and
//! the numbers the store keeps beside each merged histogram so that a
//! scrape decodes nothing. The store computes them, /metrics prints them.

use bounce_wire::sparse::SparseHistogram;

/// Classic histogram buckets for restart phases: tens of ms to an hour.
pub const BUCKETS: [f64; 18] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    1800.0, 3600.0,
];
/// Quantiles taken from the exactly merged HDR histograms.
pub const QUANTILES: [f64; 4] = [0.5, 0.9, 0.99, 0.999];

/// What /metrics shows of one (deployment, scenario, service, origin,
/// cause, phase).
pub struct SeriesStats {
    pub deployment: String,
    pub scenario: String,
    pub service: String,
    /// `run` (bounce's own restarts) or `watch` (observed ones).
    pub origin: String,
    /// An observed restart's cause (`restart`, `stop-start`, `crash`,
    /// `recreate`); empty for bounce's own, and then no label.
    pub cause: String,
    pub phase: String,
    pub numbers: SeriesNumbers,
}

/// Derived from a merged histogram when it changes: a scrape of 10,000
/// series must not decode 10,000 histograms (each ~230 KiB in memory).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SeriesNumbers {
    pub count: u64,
    pub sum_seconds: f64,
    /// Cumulative counts at [`BUCKETS`].
    pub buckets: Vec<u64>,
    /// Values at [`QUANTILES`], seconds.
    pub quantiles: Vec<f64>,
    pub max_seconds: f64,
}

impl SeriesNumbers {
    /// One pass over the recorded buckets, with HdrHistogram's semantics
    /// (a bucket counts at its highest equivalent value).
    pub fn of(h: &SparseHistogram, sum_seconds: f64) -> SeriesNumbers {
        let total = h.len();
        let mut buckets = vec![0u64; BUCKETS.len()];
        let mut quantiles = vec![None; QUANTILES.len()];
        let mut seen = 0u64;
        let mut max = 0u64;
        for (value, n) in h.iter() {
            max = value;
            // Values are µs; count those at or below each bound.
            for (i, le) in BUCKETS.iter().enumerate() {
                if value <= (le * 1e6) as u64 {
                    buckets[i] += n;
                }
            }
            seen += n;
            for (i, q) in QUANTILES.iter().enumerate() {
                if quantiles[i].is_none() && seen as f64 >= (q * total as f64).ceil().max(1.0) {
                    quantiles[i] = Some(value as f64 / 1e6);
                }
            }
        }
        SeriesNumbers {
            count: total,
            sum_seconds,
            buckets,
            quantiles: quantiles.into_iter().map(|q| q.unwrap_or(0.0)).collect(),
            max_seconds: max as f64 / 1e6,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bounce_wire::hist::new_histogram;

    #[test]
    fn one_pass_numbers_match_the_histograms_own() {
        let mut h = new_histogram();
        let mut x: u64 = 7;
        for _ in 0..10_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            h.record(1 + (x >> 40) % 50_000_000).unwrap();
        }
        let n = SeriesNumbers::of(&SparseHistogram::from_hdr(&h), 1.0);
        for (i, q) in QUANTILES.iter().enumerate() {
            assert_eq!(n.quantiles[i], h.value_at_quantile(*q) as f64 / 1e6, "q{q}");
        }
        for (i, le) in BUCKETS.iter().enumerate() {
            let exact: u64 = h
                .iter_recorded()
                .filter(|v| h.highest_equivalent(v.value_iterated_to()) <= (le * 1e6) as u64)
                .map(|v| v.count_at_value())
                .sum();
            assert_eq!(n.buckets[i], exact);
        }
        assert_eq!(n.count, 10_000);
        assert_eq!(n.max_seconds, h.max() as f64 / 1e6);
    }
}
