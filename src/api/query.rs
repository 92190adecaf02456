//! Query strings: `application/x-www-form-urlencoded` pairs.

/// Splits a request URL into its path (raw, as cross.stream routes it) and
/// its decoded query pairs, in order.
pub fn split_url(url: &str) -> (&str, Vec<(String, String)>) {
    match url.split_once('?') {
        Some((path, query)) => (path, parse_query(query)),
        None => (url, Vec::new()),
    }
}

pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(key), decode(value))
        })
        .collect()
}

/// The value of the first pair named `key`.
pub fn get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Whether a presence flag is on: present with any value but `false`/`no`.
pub fn flag(pairs: &[(String, String)], key: &str) -> bool {
    get(pairs, key).is_some_and(|v| !matches!(v, "false" | "no"))
}

/// Percent-decoding with `+` as space; invalid escapes are kept as typed.
pub fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'+' => out.push(b' '),
            b'%' if at + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[at + 1..at + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(byte) => {
                        out.push(byte);
                        at += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        at += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_pairs() {
        let (path, pairs) = split_url("/last/a,b?follow&topic=a%2Cb&x=1+2&bad=%zz&end=%4");
        assert_eq!(path, "/last/a,b");
        assert_eq!(get(&pairs, "follow"), Some(""));
        assert_eq!(get(&pairs, "topic"), Some("a,b"));
        assert_eq!(get(&pairs, "x"), Some("1 2"));
        assert_eq!(get(&pairs, "bad"), Some("%zz"));
        assert_eq!(get(&pairs, "end"), Some("%4"));
        assert!(flag(&pairs, "follow"));
        assert!(!flag(&pairs, "missing"));
    }
}
