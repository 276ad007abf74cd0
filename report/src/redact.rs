//! `--redact`: host names and IP addresses out of everything a report
//! writes, replaced consistently (`node-01`, `ip-01`) so that the numbers
//! still line up across files and between the run and its baseline.

use bounce_wire::RunData;
use std::collections::BTreeMap;

/// A host name that is also a word of the timeline format (e.g. a host
/// called `docker`): redacting it would break the files.
#[derive(Debug, thiserror::Error)]
#[error(
    "--redact: a host name is also a word of the timeline format ({0}); report without --redact"
)]
pub struct RedactError(String);

/// The run with host names and addresses replaced. Fails (rather than
/// writing a broken file) when a host name is also a word the formats use.
pub fn run(data: &RunData, r: &Redactor) -> Result<RunData, RedactError> {
    fn through<T: serde::Serialize + serde::de::DeserializeOwned>(
        r: &Redactor,
        v: &T,
    ) -> Result<T, RedactError> {
        let value = serde_json::to_value(v).expect("bounce's own types serialize");
        serde_json::from_value(r.json(&value)).map_err(|e| RedactError(e.to_string()))
    }
    Ok(RunData {
        run_id: data.run_id.clone(),
        deployment: r.text(&data.deployment),
        scenario: r.text(&data.scenario),
        scenario_yaml: data.scenario_yaml.as_deref().map(|s| r.text(s)),
        nodes: data
            .nodes
            .iter()
            .map(|n| through(r, n))
            .collect::<Result<_, _>>()?,
        timelines: data
            .timelines
            .iter()
            .map(|t| through(r, t))
            .collect::<Result<_, _>>()?,
        origin: "(redacted)".into(),
        ..data.clone()
    })
}

#[derive(Debug, Default)]
pub struct Redactor {
    /// Host name → pseudonym, tried longest first.
    hosts: Vec<(String, String)>,
    ips: std::cell::RefCell<BTreeMap<String, String>>,
}

impl Redactor {
    /// A redactor for these host names (node names, agent names, FQDNs).
    pub fn new<'a>(hosts: impl IntoIterator<Item = &'a str>) -> Redactor {
        let mut names: Vec<&str> = hosts.into_iter().filter(|h| !h.is_empty()).collect();
        names.sort();
        names.dedup();
        let mut pairs: Vec<(String, String)> = names
            .iter()
            .enumerate()
            .map(|(i, h)| (h.to_string(), format!("node-{:02}", i + 1)))
            .collect();
        pairs.sort_by_key(|(h, _)| std::cmp::Reverse(h.len()));
        Redactor {
            hosts: pairs,
            ips: Default::default(),
        }
    }

    /// The text with every known host name (as a whole word) and every IPv4
    /// or IPv6 address replaced.
    pub fn text(&self, s: &str) -> String {
        let mut out = s.to_string();
        for (host, alias) in &self.hosts {
            out = replace_word(&out, host, alias);
        }
        self.addresses(&out)
    }

    /// Every string inside a JSON value (keys included).
    pub fn json(&self, v: &serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match v {
            Value::String(s) => Value::String(self.text(s)),
            Value::Array(a) => Value::Array(a.iter().map(|x| self.json(x)).collect()),
            Value::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, x)| (self.text(k), self.json(x)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    fn alias_for_ip(&self, ip: &str) -> String {
        let mut ips = self.ips.borrow_mut();
        let n = ips.len() + 1;
        ips.entry(ip.to_string())
            .or_insert_with(|| format!("ip-{n:02}"))
            .clone()
    }

    fn addresses(&self, s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while !rest.is_empty() {
            let start = rest
                .char_indices()
                .find(|(i, c)| {
                    (c.is_ascii_hexdigit() || *c == ':')
                        && !rest[..*i].chars().next_back().is_some_and(is_word)
                })
                .map(|(i, _)| i);
            let Some(start) = start else {
                out.push_str(rest);
                break;
            };
            out.push_str(&rest[..start]);
            let tail = &rest[start..];
            let prefix = |ok: fn(char) -> bool, trim: &[char]| {
                let len = tail.find(|c: char| !ok(c)).unwrap_or(tail.len());
                tail[..len].trim_end_matches(trim)
            };
            let v4 = prefix(|c| c.is_ascii_digit() || c == '.', &['.']);
            let v6 = prefix(|c| c.is_ascii_hexdigit() || c == ':', &[':']);
            let ends_word = |t: &str| !tail[t.len()..].chars().next().is_some_and(is_word_not_sep);
            let found = [v4, v6]
                .into_iter()
                .find(|t| ends_word(t) && (is_ipv4(t) || is_ipv6(t)));
            if let Some(token) = found {
                out.push_str(&self.alias_for_ip(token));
                rest = &tail[token.len()..];
            } else {
                // Not an address: copy up to the end of this word.
                let first = tail.chars().next().map(char::len_utf8).unwrap_or(1);
                let skip = tail
                    .find(|c: char| !is_word(c))
                    .unwrap_or(tail.len())
                    .max(first);
                out.push_str(&tail[..skip]);
                rest = &tail[skip..];
            }
        }
        out
    }
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == ':' || c == '.'
}

fn is_word_not_sep(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn is_ipv4(t: &str) -> bool {
    let parts: Vec<&str> = t.split('.').collect();
    parts.len() == 4
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.parse::<u8>().is_ok())
}

fn is_ipv6(t: &str) -> bool {
    // At least "::" or four groups, so clock times (12:30:45) are not addresses.
    let groups: Vec<&str> = t.split(':').collect();
    (t.contains("::") || groups.len() >= 4)
        && groups.len() <= 8
        && t.parse::<std::net::Ipv6Addr>().is_ok()
}

fn replace_word(s: &str, word: &str, with: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while let Some(off) = s[i..].find(word) {
        let at = i + off;
        let end = at + word.len();
        let before_ok = !s[..at]
            .chars()
            .next_back()
            .is_some_and(char::is_alphanumeric);
        let after_ok = !s[end..].chars().next().is_some_and(char::is_alphanumeric);
        out.push_str(&s[i..at]);
        out.push_str(if before_ok && after_ok { with } else { word });
        i = end;
    }
    out.push_str(&s[i..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_addresses_are_replaced_consistently() {
        let r = Redactor::new(["ctl1", "ctl1.example.net", "cmp10"]);
        assert_eq!(
            r.text("ceph-mon-ctl1 on ctl1.example.net, ctl10 stays, cmp10 goes"),
            "ceph-mon-node-02 on node-03, ctl10 stays, node-01 goes"
        );
        assert_eq!(
            r.text("tcp 10.0.0.7:8774 and http://10.0.0.7/x, then 192.168.1.1."),
            "tcp ip-01:8774 and http://ip-01/x, then ip-02."
        );
        assert_eq!(
            r.text("[fe80::1]:80 and 2001:db8:0:0:1:0:0:1"),
            "[ip-03]:80 and ip-04"
        );
        // Not addresses: times, versions, hex ids, words.
        let keep =
            "at 12:30:45, docker 24.0.7, id deadbeef, kernel 6.1.0-13, ceph 16.2.11, std::io";
        assert_eq!(r.text(keep), keep);
    }

    #[test]
    fn json_strings_and_keys() {
        let r = Redactor::new(["ctl1"]);
        let v = serde_json::json!({"node": "ctl1", "ctl1": [1, "x 127.0.0.1"]});
        assert_eq!(
            r.json(&v),
            serde_json::json!({"node": "node-01", "node-01": [1, "x ip-01"]})
        );
    }
}
