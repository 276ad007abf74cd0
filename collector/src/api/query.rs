//! A request's query string as pairs: `a=b&c=d`, percent-decoded. `+` is
//! not a space here: bounce's agent encodes everything but unreserved
//! characters.

use std::collections::BTreeMap;

pub fn pairs(q: &str) -> BTreeMap<String, String> {
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoded_and_plus_kept() {
        let q = pairs("agent=ctl%2D1&run_id=a%3Ab+c&empty=&bad=%zz&novalue");
        assert_eq!(q["agent"], "ctl-1");
        assert_eq!(q["run_id"], "a:b+c");
        assert_eq!(q["empty"], "");
        assert_eq!(q["bad"], "%zz");
        assert!(!q.contains_key("novalue"));
    }
}
