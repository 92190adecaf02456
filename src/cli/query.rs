//! Request targets: a path plus a query string whose keys keep the order
//! they were added in, so requests read the same as cross.stream's.

use std::fmt::Display;

/// A query string under construction.
#[derive(Debug, Default)]
pub struct Query {
    parts: Vec<String>,
}

impl Query {
    pub fn new() -> Query {
        Query::default()
    }

    /// Adds `key=value`, escaping the value.
    pub fn pair(&mut self, key: &str, value: impl Display) -> &mut Query {
        self.parts
            .push(format!("{key}={}", escape(&value.to_string())));
        self
    }

    /// Adds `key=value` when there is a value.
    pub fn maybe(&mut self, key: &str, value: Option<impl Display>) -> &mut Query {
        if let Some(value) = value {
            self.pair(key, value);
        }
        self
    }

    /// Adds a bare `key` (presence-only flags such as `with-timestamp`) when
    /// `on`.
    pub fn flag(&mut self, key: &str, on: bool) -> &mut Query {
        if on {
            self.parts.push(key.to_string());
        }
        self
    }

    /// `path`, followed by `?query` only when something was added.
    pub fn target(&self, path: &str) -> String {
        if self.parts.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{}", self.parts.join("&"))
        }
    }
}

/// Percent-escapes everything but the characters our values are made of
/// (ids, numbers, topic filters with `,` and `*`, ttls with `:`), so the
/// common requests stay readable and a server that does not decode still
/// understands them.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~,*:".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_query_means_no_question_mark() {
        assert_eq!(Query::new().target("/"), "/");
    }

    #[test]
    fn keys_keep_their_order_and_values_are_escaped() {
        let target = Query::new()
            .pair("follow", "true")
            .maybe("limit", None::<u64>)
            .maybe("last", Some(3))
            .pair("topic", "a.*,b")
            .pair("odd", "a b&c")
            .flag("with-timestamp", true)
            .flag("rev", false)
            .target("/");
        assert_eq!(
            target,
            "/?follow=true&last=3&topic=a.*,b&odd=a%20b%26c&with-timestamp"
        );
    }
}
