//! Refused requests, limited per who was refused: after `per_minute`
//! refusals within a minute, every request of that kind gets 429 until the
//! minute is over. A request without a known credential (401) counts
//! against its client address, so a token cannot be guessed at network
//! speed; a known credential refused what it asked (403: the wrong role,
//! or sending as a name it may not) counts against that credential, so
//! one misconfigured agent behind a NAT locks out itself, not every agent
//! sharing its address. A token is a secret several agents may share (one
//! per group of nodes, bound to `cmp-*`): its refusals count per token and
//! address, so one misconfigured agent does not lock out the whole group.
//! What is remembered is bounded.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);
/// Addresses and credentials remembered at most (stale ones are dropped first).
const MAX_REMEMBERED: usize = 10_000;

/// Who a refusal counts against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Offender {
    /// A client that showed no known credential.
    Address(IpAddr),
    /// A known credential, by its audit label (`agent token 2`, `node
    /// ctl9`), and for a token the address it came from.
    Credential { label: String, from: Option<IpAddr> },
}

impl std::fmt::Display for Offender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Offender::Address(ip) => write!(f, "failed authentications from {ip}"),
            Offender::Credential { label, from: None } => {
                write!(f, "refused requests with {label}")
            }
            Offender::Credential {
                label,
                from: Some(ip),
            } => write!(f, "refused requests with {label} from {ip}"),
        }
    }
}

pub struct FailureLimit {
    per_minute: u32,
    seen: Mutex<HashMap<Offender, Window>>,
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

    /// Err(how long until it may try again) while `who` is over its limit.
    pub fn check(&self, who: &Offender) -> Result<(), Duration> {
        self.check_at(who, Instant::now())
    }

    pub fn failed(&self, who: Offender) {
        self.failed_at(who, Instant::now())
    }

    fn check_at(&self, who: &Offender, now: Instant) -> Result<(), Duration> {
        if self.per_minute == 0 {
            return Ok(());
        }
        match self.seen.lock().unwrap().get(who) {
            Some(w) if w.failures >= self.per_minute && now < w.start + WINDOW => {
                Err(w.start + WINDOW - now)
            }
            _ => Ok(()),
        }
    }

    fn failed_at(&self, who: Offender, now: Instant) {
        if self.per_minute == 0 {
            return;
        }
        let mut seen = self.seen.lock().unwrap();
        if seen.len() >= MAX_REMEMBERED && !seen.contains_key(&who) {
            seen.retain(|_, w| now < w.start + WINDOW);
        }
        if seen.len() >= MAX_REMEMBERED && !seen.contains_key(&who) {
            // Still full of fresh failures: forget the oldest window.
            if let Some(oldest) = seen
                .iter()
                .min_by_key(|(_, w)| w.start)
                .map(|(k, _)| k.clone())
            {
                seen.remove(&oldest);
            }
        }
        let w = seen.entry(who).or_insert(Window {
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

    fn ip(s: &str) -> Offender {
        Offender::Address(s.parse().unwrap())
    }

    #[test]
    fn blocked_after_the_limit_until_the_minute_is_over() {
        let limit = FailureLimit::new(3);
        let (a, b) = (ip("10.0.0.1"), ip("10.0.0.2"));
        let t0 = Instant::now();
        for _ in 0..2 {
            limit.failed_at(a.clone(), t0);
        }
        assert!(limit.check_at(&a, t0).is_ok());
        limit.failed_at(a.clone(), t0 + Duration::from_secs(1));
        let wait = limit.check_at(&a, t0 + Duration::from_secs(1)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(59));
        assert!(
            limit.check_at(&b, t0).is_ok(),
            "another address is not blocked"
        );
        assert!(
            limit.check_at(&a, t0 + WINDOW).is_ok(),
            "the next minute is free"
        );
        limit.failed_at(a.clone(), t0 + WINDOW);
        assert!(
            limit.check_at(&a, t0 + WINDOW).is_ok(),
            "a new window counts anew"
        );
        assert!(FailureLimit::new(0).check_at(&a, t0).is_ok());
    }

    #[test]
    fn a_credential_counts_apart_from_its_address() {
        let limit = FailureLimit::new(2);
        let t0 = Instant::now();
        let node = |label: &str| Offender::Credential {
            label: label.into(),
            from: None,
        };
        let (bad, good) = (node("node ctl1"), node("node ctl2"));
        limit.failed_at(bad.clone(), t0);
        limit.failed_at(bad.clone(), t0);
        assert!(limit.check_at(&bad, t0).is_err());
        assert!(limit.check_at(&good, t0).is_ok(), "another credential");
        assert!(limit.check_at(&ip("10.0.0.1"), t0).is_ok(), "its address");
        assert_eq!(
            limit.check_at(&bad, t0).map_err(|_| bad.to_string()),
            Err("refused requests with node ctl1".into())
        );
        // A shared token: the misconfigured agent's address only.
        let token = |ip: &str| Offender::Credential {
            label: "agent token 1".into(),
            from: Some(ip.parse().unwrap()),
        };
        limit.failed_at(token("10.0.0.7"), t0);
        limit.failed_at(token("10.0.0.7"), t0);
        assert!(limit.check_at(&token("10.0.0.7"), t0).is_err());
        assert!(limit.check_at(&token("10.0.0.8"), t0).is_ok());
        assert_eq!(
            token("10.0.0.7").to_string(),
            "refused requests with agent token 1 from 10.0.0.7"
        );
    }

    #[test]
    fn memory_is_bounded() {
        let limit = FailureLimit::new(1);
        let t0 = Instant::now();
        for i in 0..(MAX_REMEMBERED as u32 - 50) {
            limit.failed_at(Offender::Address(IpAddr::from(i.to_be_bytes())), t0);
        }
        for i in 0..100 {
            let label = format!("node n{i}");
            limit.failed_at(Offender::Credential { label, from: None }, t0);
        }
        assert!(limit.seen.lock().unwrap().len() <= MAX_REMEMBERED);
    }
}
