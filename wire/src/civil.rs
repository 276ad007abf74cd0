//! Calendar dates from Unix time and back, without a time-zone database:
//! run ids and reports print UTC, and report ranges are read in it.

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// (year, month, day) to days since 1970-01-01 (Hinnant's `days_from_civil`).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Unix nanoseconds of a UTC instant written `2026-11-30`,
/// `2026-11-30T10:15:00Z`, `2026-11-30 10:15` or as [`utc`] prints it;
/// `None` if it is none of these.
pub fn parse_utc(s: &str) -> Option<i64> {
    let s = s.trim();
    let s = s
        .strip_suffix(" UTC")
        .or_else(|| s.strip_suffix('Z'))
        .unwrap_or(s);
    let (date, time) = match s.split_once(['T', ' ']) {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let num = |x: &str, len: usize| (x.len() == len).then(|| x.parse::<u32>().ok())?;
    let mut d = date.split('-');
    let (y, m, day) = (num(d.next()?, 4)?, num(d.next()?, 2)?, num(d.next()?, 2)?);
    if d.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return None;
    }
    let mut secs = 0i64;
    if let Some(t) = time {
        let mut parts = t.split(':');
        let h = num(parts.next()?, 2)?;
        let min = num(parts.next()?, 2)?;
        let sec = parts.next().map(|x| num(x, 2)).unwrap_or(Some(0))?;
        if parts.next().is_some() || h > 23 || min > 59 || sec > 60 {
            return None;
        }
        secs = i64::from(h * 3600 + min * 60 + sec);
    }
    let days = days_from_civil(i64::from(y), m, day);
    if civil_from_days(days) != (i64::from(y), m, day) {
        return None; // 2026-02-30
    }
    Some((days * 86_400 + secs) * 1_000_000_000)
}

/// `2026-11-25 15:04:05 UTC` from Unix nanoseconds.
pub fn utc(unix_nanos: i64) -> String {
    let secs = unix_nanos.div_euclid(1_000_000_000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_417), (2025, 11, 25));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(
            utc(1_795_000_000 * 1_000_000_000),
            "2026-11-18 11:06:40 UTC"
        );
        assert_eq!(utc(951_782_400 * 1_000_000_000), "2000-02-29 00:00:00 UTC");
    }

    #[test]
    fn utc_instants_read_back() {
        for days in [0, 11_016, 20_417, -1, 40_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        let at = 1_795_000_000 * 1_000_000_000;
        assert_eq!(parse_utc(&utc(at)), Some(at));
        assert_eq!(parse_utc("2026-11-18T11:06:40Z"), Some(at));
        assert_eq!(parse_utc("2026-11-18 11:06"), Some(at - 40_000_000_000));
        assert_eq!(
            parse_utc("2026-11-18"),
            Some(at - (11 * 3600 + 6 * 60 + 40) * 1_000_000_000)
        );
        for bad in [
            "2026-02-30",
            "2026-13-01",
            "26-11-18",
            "2026-11-18T25:00Z",
            "yesterday",
        ] {
            assert_eq!(parse_utc(bad), None, "{bad}");
        }
    }
}
