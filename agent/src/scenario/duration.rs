//! Durations as operators write them: `200ms`, `90s`, `2m`, `1h`, `1m30s`, `1.5s`.

use serde::de::{self, Deserialize, Deserializer};
use std::fmt;
use std::time::Duration;

/// A duration read from a scenario. A bare number is refused: `10` could mean
/// seconds or milliseconds, and guessing wrong on a production cluster is costly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span(pub Duration);

impl Span {
    pub const fn secs(s: u64) -> Span {
        Span(Duration::from_secs(s))
    }
    pub const fn millis(ms: u64) -> Span {
        Span(Duration::from_millis(ms))
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms == 0 {
            f.write_str("0s")
        } else if ms.is_multiple_of(3_600_000) {
            write!(f, "{}h", ms / 3_600_000)
        } else if ms.is_multiple_of(60_000) {
            write!(f, "{}m", ms / 60_000)
        } else if ms.is_multiple_of(1000) {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

pub fn parse(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("{s:?} has no unit (write e.g. 10s, 200ms, 2m)"))?;
        if num_len == 0 {
            return Err(format!(
                "{s:?} is not a duration (expected e.g. 10s, 200ms, 2m, 1h)"
            ));
        }
        let value: f64 = rest[..num_len]
            .parse()
            .map_err(|_| format!("{:?} is not a number", &rest[..num_len]))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            other => {
                return Err(format!(
                    "unknown unit {other:?} in {s:?} (use ms, s, m or h)"
                ));
            }
        };
        rest = &rest[unit_len..];
        total += value * scale;
    }
    if total > 86_400.0 {
        return Err(format!("{s:?} is longer than a day"));
    }
    Ok(Duration::from_secs_f64(total))
}

impl Span {
    /// Reads a duration and checks it inside the deserializer, so an error
    /// points at the value itself.
    pub fn deserialize_checked<'de, D: Deserializer<'de>, T>(
        d: D,
        check: impl FnOnce(Span) -> Result<T, String>,
    ) -> Result<T, D::Error> {
        struct V<F>(F);
        impl<T, F: FnOnce(Span) -> Result<T, String>> de::Visitor<'_> for V<F> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration with a unit, e.g. 200ms, 10s, 2m, 1h")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
                let span = parse(v).map(Span).map_err(E::custom)?;
                (self.0)(span).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
                Err(E::custom(format!("{v} has no unit: write {v}s or {v}ms")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
                Err(E::custom(format!("{v} is not a duration (write e.g. 10s)")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
                Err(E::custom(format!("{v} has no unit: write {v}s")))
            }
        }
        d.deserialize_any(V(check))
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Span::deserialize_checked(d, Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_operators_write() {
        assert_eq!(parse("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse("200ms").unwrap(), Duration::from_millis(200));
        assert_eq!(parse("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse("1h").unwrap(), Duration::from_secs(3600));
    }

    #[test]
    fn refuses_ambiguous_or_broken_durations() {
        assert!(parse("10").unwrap_err().contains("no unit"));
        assert!(parse("10 parsecs").is_err());
        assert!(parse("5d").unwrap_err().contains("unknown unit"));
        assert!(parse("s").is_err());
        assert!(parse("25h").unwrap_err().contains("longer than a day"));
    }

    #[test]
    fn displays_compactly() {
        assert_eq!(Span::secs(90).to_string(), "90s");
        assert_eq!(Span::secs(120).to_string(), "2m");
        assert_eq!(Span::millis(200).to_string(), "200ms");
    }
}
