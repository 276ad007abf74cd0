//! Restart-time histograms: one (lowest, highest, significant figures) everywhere,
//! so that histograms merge exactly, and the standard HdrHistogram V2 compressed
//! encoding inside a standard interval log (`.hlog`) so that any HdrHistogram
//! library (Java, Python, JS) reads what bounce writes.

use crate::timeline::{Phase, TimelineRecord};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriterBuilder, LogEntry, Tag,
};
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, SystemTime};

/// Values are microseconds.
pub const LOWEST_US: u64 = 1;
/// One day: longer than any restart timeout bounce accepts.
pub const HIGHEST_US: u64 = 86_400 * 1_000_000;
pub const SIGFIG: u8 = 3;
/// The `.hlog` "max" column is in seconds, as Java's writer does with a 1e6 ratio for µs.
const MAX_VALUE_DIVISOR: f64 = 1e6;

#[derive(Debug, thiserror::Error)]
pub enum HistError {
    #[error("service name {0:?} cannot be a histogram tag (no ',', ' ', '/' or line breaks)")]
    BadTag(String),
    #[error("writing the histogram log: {0}")]
    Write(String),
    #[error("line {line} of the histogram log: {reason}")]
    Read { line: usize, reason: String },
}

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(LOWEST_US, HIGHEST_US, SIGFIG).expect("constant bounds are valid")
}

/// Seconds to the histogram's unit, saturating at the histogram's range.
pub fn to_micros(seconds: f64) -> u64 {
    if seconds.is_nan() || seconds <= 0.0 {
        return 0;
    }
    ((seconds * 1e6).round() as u64).min(HIGHEST_US)
}

/// The hlog tag of one (service, phase): `nova_api/stop`.
pub fn tag_for(service: &str, phase: Phase) -> Result<String, HistError> {
    if service.is_empty() || service.contains(['/', ',', ' ', '\r', '\n']) {
        return Err(HistError::BadTag(service.to_string()));
    }
    Ok(format!("{service}/{}", phase.as_str()))
}

pub fn parse_tag(tag: &str) -> Option<(String, Phase)> {
    let (service, phase) = tag.rsplit_once('/')?;
    Some((service.to_string(), Phase::parse(phase)?))
}

/// One histogram in the standard V2 compressed encoding, base64 (as in an
/// `.hlog` line): how histograms travel from agent to collector.
pub fn encode(h: &Histogram<u64>) -> Result<String, HistError> {
    let mut buf = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut buf)
        .map_err(|e| HistError::Write(format!("{e:?}")))?;
    Ok(BASE64.encode(buf))
}

/// Decodes [`encode`]'s output, refusing histograms of another shape (their
/// values would not merge exactly) and anything that is not a histogram.
/// The shape is checked on the inflated header ([`inflate_v2`]) before
/// HdrHistogram sizes anything by it: a crafted header cannot make it
/// allocate a histogram of any range.
pub fn decode(text: &str) -> Result<Histogram<u64>, String> {
    let v2 = inflate_v2(text)?;
    let h: Histogram<u64> = Deserializer::new()
        .deserialize(&mut v2.uncompressed())
        .map_err(|e| format!("not an HdrHistogram V2 encoding: {e:?}"))?;
    let mut out = new_histogram();
    out.add(&h).map_err(|e| format!("{e:?}"))?;
    Ok(out)
}

const V2_COOKIE: u32 = 0x1c84_9303 | 0x10;
const V2_COMPRESSED_COOKIE: u32 = 0x1c84_9304 | 0x10;
/// cookie, payload length, normalizing offset, digits, low, high, ratio.
const V2_HEADER: usize = 40;

/// An inflated V2 encoding whose header says bounce's shape.
pub struct V2Inflated {
    /// The uncompressed V2 encoding: header, then the counts payload.
    bytes: Vec<u8>,
    payload_len: usize,
}

impl V2Inflated {
    /// The counts: ZigZag LEB128 varints, a negative one a run of empty buckets.
    pub fn payload(&self) -> &[u8] {
        &self.bytes[V2_HEADER..V2_HEADER + self.payload_len]
    }

    /// The uncompressed V2 encoding, which HdrHistogram's deserializer reads.
    fn uncompressed(&self) -> &[u8] {
        &self.bytes[..V2_HEADER + self.payload_len]
    }
}

/// The one reading of an agent's V2-deflate base64 up to its counts, shared
/// by [`decode`] and the collector's sparse decoder: base64, the compressed
/// cookie, inflation bounded by the largest honest encoding (a header and a
/// varint per bucket: a deflate bomb stops there), the header's cookie and
/// bounce's shape.
pub fn inflate_v2(text: &str) -> Result<V2Inflated, String> {
    use std::io::Read;
    let bytes = BASE64
        .decode(text)
        .map_err(|e| format!("not base64: {e}"))?;
    let not_v2 = || "not an HdrHistogram V2 compressed encoding".to_string();
    let u32_in = |b: &[u8], i: usize| -> Option<u32> {
        Some(u32::from_be_bytes(b.get(i..i + 4)?.try_into().ok()?))
    };
    let (cookie, len) = (u32_in(&bytes, 0), u32_in(&bytes, 4));
    let (Some(V2_COMPRESSED_COOKIE), Some(len)) = (cookie, len) else {
        return Err(not_v2());
    };
    let deflated = bytes.get(8..8 + len as usize).ok_or_else(not_v2)?;
    static LIMIT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let limit = *LIMIT.get_or_init(|| (V2_HEADER + 9 * new_histogram().distinct_values()) as u64);
    let mut inner = Vec::new();
    flate2::read::ZlibDecoder::new(deflated)
        .take(limit + 1)
        .read_to_end(&mut inner)
        .map_err(|e| format!("not an HdrHistogram V2 encoding: {e}"))?;
    if inner.len() as u64 > limit {
        return Err("the encoding inflates beyond any histogram of bounce's shape".into());
    }
    let header = inner.get(..V2_HEADER).ok_or_else(not_v2)?;
    let u32_at = |i: usize| u32::from_be_bytes(header[i..i + 4].try_into().expect("4 bytes"));
    let u64_at = |i: usize| u64::from_be_bytes(header[i..i + 8].try_into().expect("8 bytes"));
    let (payload_len, offset, digits) = (u32_at(4) as usize, u32_at(8), u32_at(12));
    let (low, high, ratio) = (u64_at(16), u64_at(24), f64::from_bits(u64_at(32)));
    if u32_at(0) != V2_COOKIE || offset != 0 || ratio != 1.0 {
        return Err(not_v2());
    }
    if digits != u32::from(SIGFIG) || low != LOWEST_US || high > HIGHEST_US || high < 2 * low {
        return Err(format!(
            "histogram shape ({low}..{high} µs, {digits} digits) is not bounce's ({LOWEST_US}..{HIGHEST_US} µs, {SIGFIG} digits)"
        ));
    }
    if inner.len() < V2_HEADER + payload_len {
        return Err("the payload is shorter than its header says".into());
    }
    Ok(V2Inflated {
        bytes: inner,
        payload_len,
    })
}

/// The observed durations (seconds) per (service, phase), in key order.
pub fn samples_by_key(timelines: &[TimelineRecord]) -> BTreeMap<(String, Phase), Vec<f64>> {
    let mut out: BTreeMap<(String, Phase), Vec<f64>> = BTreeMap::new();
    for t in timelines {
        for (phase, secs) in &t.phases {
            out.entry((t.service.clone(), *phase))
                .or_default()
                .push(*secs);
        }
    }
    out
}

/// Each (service, phase) of these timelines with its histogram, in key
/// order, built one at a time in one reused histogram: memory for the
/// values, not a dense ~230 KiB histogram per series.
pub fn each_histogram(
    timelines: &[TimelineRecord],
    mut f: impl FnMut(&(String, Phase), &Histogram<u64>),
) {
    let mut h = new_histogram();
    for (key, values) in samples_by_key(timelines) {
        h.reset();
        for v in values {
            h.saturating_record(to_micros(v));
        }
        f(&key, &h);
    }
}

/// The histogram of one (service, phase) of these timelines.
pub fn histogram_of(timelines: &[TimelineRecord], service: &str, phase: Phase) -> Histogram<u64> {
    let mut h = new_histogram();
    for t in timelines.iter().filter(|t| t.service == service) {
        if let Some(v) = t.phases.get(&phase) {
            h.saturating_record(to_micros(*v));
        }
    }
    h
}

/// [`PhaseHistograms::write_hlog`] for the timelines' histograms, built one
/// at a time (see [`each_histogram`]).
pub fn write_hlog_from_timelines<W: Write>(
    timelines: &[TimelineRecord],
    out: &mut W,
    start: SystemTime,
    length: Duration,
    comment: &str,
) -> Result<(), HistError> {
    write_log(out, start, length, comment, |emit| {
        let mut result = Ok(());
        each_histogram(timelines, |key, h| {
            if result.is_ok() {
                result = emit(key, h);
            }
        });
        result
    })
}

/// Emits one tagged histogram into the log being written.
pub(crate) type Emit<'e> =
    dyn FnMut(&(String, Phase), &Histogram<u64>) -> Result<(), HistError> + 'e;

/// The interval log's header, then whatever `body` emits.
pub(crate) fn write_log<W: Write>(
    out: &mut W,
    start: SystemTime,
    length: Duration,
    comment: &str,
    body: impl FnOnce(&mut Emit<'_>) -> Result<(), HistError>,
) -> Result<(), HistError> {
    let mut serializer = V2DeflateSerializer::new();
    let mut builder = IntervalLogWriterBuilder::new();
    builder
        .add_comment(comment)
        .with_start_time(start)
        .with_base_time(start)
        .with_max_value_divisor(MAX_VALUE_DIVISOR);
    let mut writer = builder
        .begin_log_with(out, &mut serializer)
        .map_err(|e| HistError::Write(e.to_string()))?;
    body(&mut |(service, phase), h| {
        let text = tag_for(service, *phase)?;
        let tag = Tag::new(&text).ok_or(HistError::BadTag(text.clone()))?;
        writer
            .write_histogram(h, Duration::ZERO, length, Some(tag))
            .map_err(|e| HistError::Write(e.to_string()))
    })
}

/// Histograms per (service, phase), with the exact sum kept beside each
/// (HdrHistogram has none, Prometheus wants one).
#[derive(Debug, Clone, Default)]
pub struct PhaseHistograms {
    pub by_key: BTreeMap<(String, Phase), Histogram<u64>>,
}

impl PhaseHistograms {
    pub fn record(&mut self, service: &str, phase: Phase, seconds: f64) {
        let h = self
            .by_key
            .entry((service.to_string(), phase))
            .or_insert_with(new_histogram);
        h.saturating_record(to_micros(seconds));
    }

    /// Every observed phase of these timelines, once each.
    pub fn from_timelines(timelines: &[TimelineRecord]) -> PhaseHistograms {
        let mut hs = PhaseHistograms::default();
        for t in timelines {
            for (phase, secs) in &t.phases {
                hs.record(&t.service, *phase, *secs);
            }
        }
        hs
    }

    pub fn get(&self, service: &str, phase: Phase) -> Option<&Histogram<u64>> {
        self.by_key.get(&(service.to_string(), phase))
    }

    /// Writes a standard interval log: one tagged histogram per (service, phase),
    /// all spanning the run from `start` for `length`.
    pub fn write_hlog<W: Write>(
        &self,
        out: &mut W,
        start: SystemTime,
        length: Duration,
        comment: &str,
    ) -> Result<(), HistError> {
        write_log(out, start, length, comment, |emit| {
            for (key, h) in &self.by_key {
                emit(key, h)?;
            }
            Ok(())
        })
    }

    /// Reads an interval log written by [`write_hlog`](Self::write_hlog) (or by any
    /// tool that tags histograms `service/phase`); histograms with the same tag merge.
    pub fn read_hlog(bytes: &[u8]) -> Result<PhaseHistograms, HistError> {
        let mut out = PhaseHistograms::default();
        each_logged(bytes, |line, key, h| {
            let slot = out.by_key.entry(key).or_insert_with(new_histogram);
            slot.add(h).map_err(|e| HistError::Read {
                line,
                reason: format!("{e:?}"),
            })
        })?;
        Ok(out)
    }
}

/// Each tagged histogram of an interval log with its line and
/// (service, phase), one at a time: a log of many series read back
/// without holding a dense histogram per series.
pub fn each_logged(
    bytes: &[u8],
    mut f: impl FnMut(usize, (String, Phase), &Histogram<u64>) -> Result<(), HistError>,
) -> Result<(), HistError> {
    let mut deserializer = Deserializer::new();
    for (i, entry) in IntervalLogIterator::new(bytes).enumerate() {
        let line = i + 1;
        let entry = entry.map_err(|e| HistError::Read {
            line,
            reason: format!("{e:?}"),
        })?;
        let LogEntry::Interval(ih) = entry else {
            continue;
        };
        let Some(tag) = ih.tag() else { continue };
        let key = parse_tag(&tag).ok_or_else(|| HistError::Read {
            line,
            reason: format!("tag {:?} is not service/phase", tag.as_str()),
        })?;
        let decoded = BASE64
            .decode(ih.encoded_histogram())
            .map_err(|e| HistError::Read {
                line,
                reason: e.to_string(),
            })?;
        let h: Histogram<u64> = deserializer
            .deserialize(&mut decoded.as_slice())
            .map_err(|e| HistError::Read {
                line,
                reason: format!("{e:?}"),
            })?;
        f(line, key, &h)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hlog_round_trip_keeps_counts_and_quantiles() {
        let mut hs = PhaseHistograms::default();
        for i in 1..=100 {
            hs.record("nova_api", Phase::Stop, i as f64 * 0.01);
        }
        hs.record("keystone", Phase::Ready, 12.5);
        let mut buf = Vec::new();
        hs.write_hlog(
            &mut buf,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            Duration::from_secs(60),
            "test",
        )
        .unwrap();
        let text = String::from_utf8(buf.clone()).unwrap();
        assert!(text.contains("Tag=nova_api/stop,"), "{text}");
        let back = PhaseHistograms::read_hlog(&buf).unwrap();
        let a = hs.get("nova_api", Phase::Stop).unwrap();
        let b = back.get("nova_api", Phase::Stop).unwrap();
        assert_eq!(a.len(), 100);
        assert_eq!(a.len(), b.len());
        assert_eq!(a.value_at_quantile(0.9), b.value_at_quantile(0.9));
        assert_eq!(
            back.get("keystone", Phase::Ready).unwrap().max(),
            a_max_of(&hs, "keystone")
        );
    }

    fn a_max_of(hs: &PhaseHistograms, s: &str) -> u64 {
        hs.get(s, Phase::Ready).unwrap().max()
    }

    #[test]
    fn encoded_histograms_round_trip_and_foreign_shapes_are_refused() {
        let mut h = new_histogram();
        h.record(1234).unwrap();
        h.record(5_000_000).unwrap();
        let back = decode(&encode(&h).unwrap()).unwrap();
        assert_eq!(back, h);
        let mut other = Histogram::<u64>::new_with_bounds(1, 1000, 2).unwrap();
        other.record(5).unwrap();
        assert!(
            decode(&encode(&other).unwrap())
                .unwrap_err()
                .contains("shape")
        );
        assert!(
            decode("bm90IGEgaGlzdG9ncmFt")
                .unwrap_err()
                .contains("not an HdrHistogram")
        );
        assert!(decode("***").unwrap_err().contains("not base64"));
    }

    #[test]
    fn bad_service_names_are_refused_as_tags() {
        assert!(tag_for("a,b", Phase::Stop).is_err());
        assert!(tag_for("a b", Phase::Stop).is_err());
        assert_eq!(
            parse_tag("kolla-nova_api-container.service/ready")
                .unwrap()
                .1,
            Phase::Ready
        );
    }
}
