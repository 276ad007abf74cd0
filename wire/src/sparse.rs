//! A merged series histogram kept sparse: (bucket → count) for the buckets
//! that hold values, in HdrHistogram's own bucketing (bounce's shape, 1 µs
//! to 1 day, 3 digits), so every number derived from it is the one the
//! dense histogram would give.
//!
//! Why: a dense histogram of this shape is a ~230 KiB counts array, and a
//! merge that decodes, adds and re-encodes it costs that much whatever the
//! handful of values it adds. A series of restart times holds a few hundred
//! distinct buckets; merging them sparse costs those. The collector keeps
//! its series in this form; the agent tallies a run's phases in it.

use crate::hist::{self, new_histogram};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// The stored form: `sparse1:` then `lowest_µs:count` pairs, comma separated.
const TAG: &str = "sparse1:";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SparseHistogram {
    /// A bucket's lowest equivalent value (µs) → count.
    counts: BTreeMap<u64, u64>,
}

/// Bucketing of bounce's shape (1 µs lowest: unit magnitude 0; 3 digits:
/// 2,048 sub-buckets, half of them 1,024 = 2^10).
const HALF_MAGNITUDE: u32 = 10;
const HALF_COUNT: usize = 1 << HALF_MAGNITUDE;

/// The lowest value of counts-array index `index` (HdrHistogram's `value_for`).
fn value_for(index: usize) -> u64 {
    let bucket = (index >> HALF_MAGNITUDE) as i64 - 1;
    let sub = (index & (HALF_COUNT - 1)) + HALF_COUNT;
    if bucket < 0 {
        (sub - HALF_COUNT) as u64
    } else {
        (sub as u64) << bucket
    }
}

/// LEB128, at most 9 bytes (HdrHistogram's variant: the 9th byte is whole).
fn varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for i in 0..9 {
        let byte = *b.get(i)?;
        if i == 8 {
            return Some((v | (u64::from(byte) << 56), 9));
        }
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// The bucketing of bounce's histograms (no counts are ever added to it).
fn shape() -> &'static Histogram<u64> {
    static SHAPE: OnceLock<Histogram<u64>> = OnceLock::new();
    SHAPE.get_or_init(new_histogram)
}

impl SparseHistogram {
    pub fn from_hdr(h: &Histogram<u64>) -> SparseHistogram {
        let mut counts = BTreeMap::new();
        for v in h.iter_recorded() {
            counts.insert(
                h.lowest_equivalent(v.value_iterated_to()),
                v.count_at_value(),
            );
        }
        SparseHistogram { counts }
    }

    /// Straight from the V2-deflate base64 an agent sends (`hist::encode`),
    /// without the dense histogram in between: the same reading as
    /// `hist::decode` up to the counts (`inflate_v2`), the same buckets
    /// as decoding and [`from_hdr`](Self::from_hdr).
    pub fn from_v2_deflate(text: &str) -> Result<SparseHistogram, String> {
        let v2 = hist::inflate_v2(text)?;
        let payload = v2.payload();
        let mut counts = BTreeMap::new();
        let (mut index, mut at) = (0usize, 0usize);
        let buckets = shape().distinct_values();
        while at < payload.len() {
            let (zz, used) = varint(&payload[at..]).ok_or("a truncated count")?;
            at += used;
            // ZigZag: a negative number is a run of empty buckets.
            let n = ((zz >> 1) as i64) ^ -((zz & 1) as i64);
            if n < 0 {
                index = index.saturating_add(n.unsigned_abs() as usize);
                continue;
            }
            if index >= buckets {
                return Err(format!("bucket {index} is beyond bounce's histogram shape"));
            }
            if n > 0 {
                counts.insert(value_for(index), n as u64);
            }
            index += 1;
        }
        Ok(SparseHistogram { counts })
    }

    /// Counts one value (µs, saturating at the shape's range), as
    /// `Histogram::saturating_record` would.
    pub fn record(&mut self, micros: u64) {
        let v = micros.min(hist::HIGHEST_US);
        *self.counts.entry(shape().lowest_equivalent(v)).or_default() += 1;
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    pub fn len(&self) -> u64 {
        self.counts.values().sum()
    }

    pub fn add(&mut self, other: &SparseHistogram) {
        for (k, n) in &other.counts {
            *self.counts.entry(*k).or_default() += n;
        }
    }

    /// Reads the stored form, or the V2-deflate base64 of stores written
    /// before series were kept sparse.
    pub fn parse(text: &str) -> Result<SparseHistogram, String> {
        let Some(pairs) = text.strip_prefix(TAG) else {
            return Ok(SparseHistogram::from_hdr(&hist::decode(text)?));
        };
        let mut counts = BTreeMap::new();
        for pair in pairs.split(',').filter(|p| !p.is_empty()) {
            let (k, n) = pair
                .split_once(':')
                .and_then(|(k, n)| Some((k.parse::<u64>().ok()?, n.parse::<u64>().ok()?)))
                .ok_or_else(|| format!("bad sparse histogram entry {pair:?}"))?;
            if shape().lowest_equivalent(k) != k {
                return Err(format!("{k} is not a bucket boundary"));
            }
            counts.insert(k, n);
        }
        Ok(SparseHistogram { counts })
    }

    pub fn to_text(&self) -> String {
        let mut out = String::with_capacity(TAG.len() + self.counts.len() * 16);
        out.push_str(TAG);
        for (i, (k, n)) in self.counts.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&k.to_string());
            out.push(':');
            out.push_str(&n.to_string());
        }
        out
    }

    /// (highest equivalent value µs, count) per bucket, ascending: what a
    /// dense histogram's `iter_recorded` reports.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.counts
            .iter()
            .map(|(k, n)| (shape().highest_equivalent(*k), *n))
    }

    /// The dense histogram (for an export, a log, quantiles): one at a
    /// time, ~230 KiB each.
    pub fn to_hdr(&self) -> Histogram<u64> {
        let mut h = new_histogram();
        for (k, n) in &self.counts {
            h.record_n(*k, *n).expect("bucket values are in range");
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(seed: u64, n: usize) -> Histogram<u64> {
        let mut h = new_histogram();
        let mut x = seed;
        for _ in 0..n {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            h.record(1 + (x >> 40) % 50_000_000).unwrap();
        }
        h
    }

    #[test]
    fn sparse_merges_equal_dense_merges() {
        let (a, b) = (sample(1, 3000), sample(2, 500));
        let mut dense = a.clone();
        dense.add(&b).unwrap();
        let mut sparse = SparseHistogram::from_hdr(&a);
        sparse.add(&SparseHistogram::from_hdr(&b));
        assert_eq!(sparse.len(), dense.len());
        assert_eq!(sparse.to_hdr(), dense);
        let dense_iter: Vec<(u64, u64)> = dense
            .iter_recorded()
            .map(|v| {
                (
                    dense.highest_equivalent(v.value_iterated_to()),
                    v.count_at_value(),
                )
            })
            .collect();
        assert_eq!(sparse.iter().collect::<Vec<_>>(), dense_iter);
    }

    #[test]
    fn v2_decodes_straight_to_the_same_buckets() {
        // Random values, and one value in every bucket of the shape.
        let mut every = new_histogram();
        for i in 0..shape().distinct_values() {
            let v = value_for(i);
            assert_eq!(shape().lowest_equivalent(v), v, "index {i}");
            every.record(v.max(1)).unwrap();
        }
        for h in [sample(4, 5000), every, new_histogram()] {
            let text = hist::encode(&h).unwrap();
            assert_eq!(
                SparseHistogram::from_v2_deflate(&text).unwrap(),
                SparseHistogram::from_hdr(&h)
            );
        }
        // Not bounce's shape, not a histogram: refused like wire::hist::decode.
        let other = Histogram::<u64>::new_with_bounds(1, 1000, 2).unwrap();
        let e = SparseHistogram::from_v2_deflate(&hist::encode(&other).unwrap()).unwrap_err();
        assert!(e.contains("not bounce's"), "{e}");
        assert!(SparseHistogram::from_v2_deflate("aGVsbG8=").is_err());
        assert!(SparseHistogram::from_v2_deflate("%%%").is_err());
    }

    #[test]
    fn stored_form_round_trips_and_old_stores_still_read() {
        let h = sample(3, 1000);
        let s = SparseHistogram::from_hdr(&h);
        assert_eq!(SparseHistogram::parse(&s.to_text()).unwrap(), s);
        // A series written by an earlier collector: V2 deflate, base64.
        assert_eq!(
            SparseHistogram::parse(&hist::encode(&h).unwrap()).unwrap(),
            s
        );
        assert!(SparseHistogram::parse("sparse1:5:x").is_err());
        assert!(
            SparseHistogram::parse("sparse1:2049:1").is_err(),
            "not a bucket boundary"
        );
        assert_eq!(SparseHistogram::parse("sparse1:").unwrap().len(), 0);
    }
}
