//! `--backend redis://host:port/db?ns=<name>`: where the Redis is, and
//! which namespace of it this stream lives in.

/// A parsed `--backend` address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisAddress {
    /// The address handed to the redis client (without `ns`).
    pub url: String,
    /// The namespace: every key carries the hash tag `{<ns>}`.
    pub namespace: String,
    /// `host:port`, for messages.
    pub shown: String,
}

/// The namespace when the address names none.
pub const DEFAULT_NAMESPACE: &str = "xs";

impl RedisAddress {
    pub fn parse(text: &str) -> Result<RedisAddress, String> {
        let rest = text
            .strip_prefix("redis://")
            .or_else(|| text.strip_prefix("valkey://"))
            .ok_or_else(|| {
                format!("invalid --backend '{text}': expected redis://host:port/db?ns=<name>")
            })?;
        let (location, query) = match rest.split_once('?') {
            Some((location, query)) => (location, query),
            None => (rest, ""),
        };
        let mut namespace = DEFAULT_NAMESPACE.to_string();
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("ns", value)) => namespace = value.to_string(),
                _ => kept.push(pair),
            }
        }
        let valid = !namespace.is_empty()
            && namespace.len() <= 64
            && namespace
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !valid {
            return Err(format!(
                "invalid --backend namespace '{namespace}': use 1-64 letters, digits, '-', '_' or '.'"
            ));
        }
        let host_port = location.split('/').next().unwrap_or("");
        let host_port = host_port.rsplit('@').next().unwrap_or("");
        if host_port.is_empty() {
            return Err(format!("invalid --backend '{text}': no host"));
        }
        let mut url = format!("redis://{location}");
        if !kept.is_empty() {
            url.push('?');
            url.push_str(&kept.join("&"));
        }
        Ok(RedisAddress {
            url,
            namespace,
            shown: host_port.to_string(),
        })
    }

    /// The prefix of every key of the namespace.
    pub fn key_prefix(&self) -> String {
        format!("{{{}}}:", self.namespace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_comes_out_of_the_url() {
        let a = RedisAddress::parse("redis://127.0.0.1:6379/0?ns=team").unwrap();
        assert_eq!(a.url, "redis://127.0.0.1:6379/0");
        assert_eq!(a.namespace, "team");
        assert_eq!(a.shown, "127.0.0.1:6379");
        assert_eq!(a.key_prefix(), "{team}:");
        let b = RedisAddress::parse("redis://:secret@host:7000/2?protocol=resp3&ns=a").unwrap();
        assert_eq!(b.url, "redis://:secret@host:7000/2?protocol=resp3");
        assert_eq!(b.shown, "host:7000");
        assert_eq!(
            RedisAddress::parse("redis://h:1").unwrap().namespace,
            DEFAULT_NAMESPACE
        );
    }

    #[test]
    fn bad_addresses_say_why() {
        assert!(RedisAddress::parse("http://h:1").is_err());
        assert!(RedisAddress::parse("redis://h:1?ns=a}b").is_err());
        assert!(RedisAddress::parse("redis://h:1?ns=").is_err());
        assert!(RedisAddress::parse("redis:///0").is_err());
    }
}
