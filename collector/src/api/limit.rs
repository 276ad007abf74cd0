//! Failed authentication, limited per client address: after
//! `per_minute` failures (401/403) within a minute, every request from that
//! address gets 429 until the minute is over, so a token cannot be guessed
//! at network speed. What is remembered is bounded.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered at most (stale ones are dropped first).
const MAX_ADDRESSES: usize = 10_000;

pub struct FailureLimit {
    per_minute: u32,
    seen: Mutex<HashMap<IpAddr, Window>>,
}

struct Window {
    start: Instant,
    failures: u32,
}

impl FailureLimit {
    /// `per_minute` 0: no limit.
    pub fn new(per_minute: u32) -> FailureLimit {
        FailureLimit {
            per_minute,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Err(how long until it may try again) while `ip` is over its limit.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        self.check_at(ip, Instant::now())
    }

    pub fn failed(&self, ip: IpAddr) {
        self.failed_at(ip, Instant::now())
    }

    fn check_at(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        if self.per_minute == 0 {
            return Ok(());
        }
        match self.seen.lock().unwrap().get(&ip) {
            Some(w) if w.failures >= self.per_minute && now < w.start + WINDOW => {
                Err(w.start + WINDOW - now)
            }
            _ => Ok(()),
        }
    }

    fn failed_at(&self, ip: IpAddr, now: Instant) {
        if self.per_minute == 0 {
            return;
        }
        let mut seen = self.seen.lock().unwrap();
        if seen.len() >= MAX_ADDRESSES && !seen.contains_key(&ip) {
            seen.retain(|_, w| now < w.start + WINDOW);
        }
        if seen.len() >= MAX_ADDRESSES && !seen.contains_key(&ip) {
            // Still full of fresh failures: forget the oldest window.
            if let Some(oldest) = seen.iter().min_by_key(|(_, w)| w.start).map(|(k, _)| *k) {
                seen.remove(&oldest);
            }
        }
        let w = seen.entry(ip).or_insert(Window {
            start: now,
            failures: 0,
        });
        if now >= w.start + WINDOW {
            *w = Window {
                start: now,
                failures: 0,
            };
        }
        w.failures += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocked_after_the_limit_until_the_minute_is_over() {
        let limit = FailureLimit::new(3);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        for _ in 0..2 {
            limit.failed_at(a, t0);
        }
        assert!(limit.check_at(a, t0).is_ok());
        limit.failed_at(a, t0 + Duration::from_secs(1));
        let wait = limit.check_at(a, t0 + Duration::from_secs(1)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(59));
        assert!(
            limit.check_at(b, t0).is_ok(),
            "another address is not blocked"
        );
        assert!(
            limit.check_at(a, t0 + WINDOW).is_ok(),
            "the next minute is free"
        );
        limit.failed_at(a, t0 + WINDOW);
        assert!(
            limit.check_at(a, t0 + WINDOW).is_ok(),
            "a new window counts anew"
        );
        assert!(FailureLimit::new(0).check_at(a, t0).is_ok());
    }

    #[test]
    fn memory_is_bounded() {
        let limit = FailureLimit::new(1);
        let t0 = Instant::now();
        for i in 0..(MAX_ADDRESSES as u32 + 50) {
            limit.failed_at(IpAddr::from(i.to_be_bytes()), t0);
        }
        assert!(limit.seen.lock().unwrap().len() <= MAX_ADDRESSES);
    }
}
