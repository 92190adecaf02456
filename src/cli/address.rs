//! The `<addr>` argument: where a store's HTTP API listens.
//!
//! Paths mean the store's Unix socket, which is how a local store is always
//! reached; anything that looks like `host:port` means plain HTTP over TCP.
//! There is deliberately no TLS in the binary, so `https://` (and cross.
//! stream's `iroh://`) are refused with the way around it rather than failing
//! somewhere deep in a connect.

use std::path::{Path, PathBuf};

use base64::Engine as _;

use super::args::{usage, Stop};

/// What to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A Unix socket at this path.
    Unix(PathBuf),
    /// HTTP over TCP.
    Tcp {
        /// Host name or IP literal, without IPv6 brackets (what `connect`
        /// wants).
        host: String,
        port: u16,
        /// The `Host` header value (brackets kept, port left off when 80).
        host_header: String,
        /// A complete `Authorization` header value, from `user:pass@`.
        authorization: Option<String>,
    },
}

/// A parsed `<addr>`, with the text the user typed for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub endpoint: Endpoint,
    /// The address exactly as given, for "no store at: <addr>".
    pub shown: String,
}

/// Why `https://` is refused; the same reason serves `iroh://`.
const NO_TLS: &str = "xs has no TLS built in: put a TLS terminator or an SSH tunnel \
                      in front of the store and give xs its http://host:port or local socket";

impl Address {
    /// Reads an `<addr>` argument.
    ///
    /// Order matters: a scheme decides first; then anything that starts
    /// like a path is a path (so `./store` never becomes a host name);
    /// `:port` is the local loopback; a bare name is a path only when it
    /// exists here, otherwise it is a host, as in cross.stream.
    pub fn parse(text: &str) -> Result<Address, Stop> {
        let shown = text.to_string();
        if text.is_empty() {
            return Err(usage("<addr> cannot be empty"));
        }
        let endpoint = if let Some((scheme, rest)) = text.split_once("://") {
            match scheme.to_ascii_lowercase().as_str() {
                "http" => tcp(rest)?,
                "https" => return Err(Stop::Failed(format!("cannot reach {text}: {NO_TLS}"))),
                "iroh" => {
                    return Err(Stop::Failed(format!(
                        "cannot reach {text}: iroh is not supported; {NO_TLS}"
                    )))
                }
                _ => return Err(usage(format!("unsupported address scheme '{scheme}://'"))),
            }
        } else if text.starts_with('/') || text.starts_with('.') {
            unix(text)
        } else if text.starts_with(':') {
            tcp(&format!("127.0.0.1{text}"))?
        } else if Path::new(text).exists() {
            unix(text)
        } else {
            tcp(text)?
        };
        Ok(Address { endpoint, shown })
    }
}

/// A store directory means its `sock`; any other path is the socket itself
/// (which may not exist yet: connecting then reports "no store at").
fn unix(path: &str) -> Endpoint {
    let path = Path::new(path);
    if path.is_dir() {
        Endpoint::Unix(path.join("sock"))
    } else {
        Endpoint::Unix(path.to_path_buf())
    }
}

/// Parses `[user[:pass]@]host[:port][/anything]`; the port defaults to 80.
fn tcp(authority_and_path: &str) -> Result<Endpoint, Stop> {
    let authority = authority_and_path
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default();
    let (userinfo, host_port) = match authority.rsplit_once('@') {
        Some((userinfo, host_port)) => (Some(userinfo), host_port),
        None => (None, authority),
    };
    let (host, port_text) = split_host_port(host_port)?;
    let port = match port_text {
        None | Some("") => 80,
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| usage(format!("invalid port '{p}' in address")))?,
    };
    let host = if host.is_empty() { "127.0.0.1" } else { host };
    let bracketed = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let host_header = if port == 80 {
        bracketed
    } else {
        format!("{bracketed}:{port}")
    };
    let authorization = userinfo.map(basic_authorization);
    Ok(Endpoint::Tcp {
        host: host.to_string(),
        port,
        host_header,
        authorization,
    })
}

/// Splits `host:port` or `[v6]:port`; the host comes back without brackets.
fn split_host_port(host_port: &str) -> Result<(&str, Option<&str>), Stop> {
    if let Some(rest) = host_port.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| usage(format!("missing ']' in address '{host_port}'")))?;
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err(usage(format!("invalid address '{host_port}'"))),
            },
        };
    }
    match host_port.split_once(':') {
        Some((host, port)) if !port.contains(':') => Ok((host, Some(port))),
        Some(_) => Err(usage(format!(
            "invalid address '{host_port}' (write IPv6 hosts as [addr]:port)"
        ))),
        None => Ok((host_port, None)),
    }
}

/// `Basic <base64(user:pass)>`, with URL percent-escapes in the userinfo
/// undone first, as a browser or curl would.
fn basic_authorization(userinfo: &str) -> String {
    let (user, pass) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let credentials = [percent_decode(user), b":".to_vec(), percent_decode(pass)].concat();
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(credentials)
    )
}

/// Undoes `%XX` escapes; a malformed escape is kept as written.
fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let escaped = bytes
            .get(at + 1..at + 3)
            .filter(|_| bytes[at] == b'%')
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                at += 3;
            }
            None => {
                out.push(bytes[at]);
                at += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp_parts(text: &str) -> (String, u16, String, Option<String>) {
        match Address::parse(text).unwrap().endpoint {
            Endpoint::Tcp {
                host,
                port,
                host_header,
                authorization,
            } => (host, port, host_header, authorization),
            other => panic!("{text} parsed as {other:?}"),
        }
    }

    #[test]
    fn paths_are_unix_sockets() {
        assert_eq!(
            Address::parse("./no-such-store").unwrap().endpoint,
            Endpoint::Unix(PathBuf::from("./no-such-store"))
        );
        assert_eq!(
            Address::parse("/tmp/x/sock").unwrap().endpoint,
            Endpoint::Unix(PathBuf::from("/tmp/x/sock"))
        );
        assert_eq!(
            Address::parse("../up").unwrap().endpoint,
            Endpoint::Unix(PathBuf::from("../up"))
        );
    }

    #[test]
    fn a_directory_means_its_sock() {
        let dir = std::env::temp_dir();
        let text = dir.to_string_lossy().to_string();
        assert_eq!(
            Address::parse(&text).unwrap().endpoint,
            Endpoint::Unix(dir.join("sock"))
        );
        // `src` exists in the crate root where tests run: a bare name that
        // exists locally is a path, not a host.
        assert_eq!(
            Address::parse("src").unwrap().endpoint,
            Endpoint::Unix(PathBuf::from("src/sock"))
        );
        assert_eq!(Address::parse("./src").unwrap().shown, "./src".to_string());
    }

    #[test]
    fn port_only_is_loopback() {
        assert_eq!(
            tcp_parts(":8080"),
            ("127.0.0.1".into(), 8080, "127.0.0.1:8080".into(), None)
        );
    }

    #[test]
    fn hosts_and_urls_are_tcp() {
        assert_eq!(
            tcp_parts("example.com:400"),
            ("example.com".into(), 400, "example.com:400".into(), None)
        );
        assert_eq!(
            tcp_parts("no-such-host-here"),
            (
                "no-such-host-here".into(),
                80,
                "no-such-host-here".into(),
                None
            )
        );
        assert_eq!(
            tcp_parts("http://[::1]:9000/"),
            ("::1".into(), 9000, "[::1]:9000".into(), None)
        );
        assert_eq!(
            tcp_parts("HTTP://example.com/some/path"),
            ("example.com".into(), 80, "example.com".into(), None)
        );
    }

    #[test]
    fn userinfo_becomes_basic_auth() {
        let (host, port, _, auth) = tcp_parts("http://user:pass@example.com:400");
        assert_eq!((host.as_str(), port), ("example.com", 400));
        assert_eq!(auth.as_deref(), Some("Basic dXNlcjpwYXNz"));
        let (_, _, _, auth) = tcp_parts("http://us%40er:p%3Ass@h:1");
        assert_eq!(
            auth,
            Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("us@er:p:ss")
            ))
        );
    }

    #[test]
    fn tls_and_iroh_are_refused_with_a_reason() {
        for text in ["https://example.com", "iroh://ticket"] {
            match Address::parse(text) {
                Err(Stop::Failed(reason)) => {
                    assert!(reason.contains("TLS terminator"), "{reason}");
                    assert!(!reason.contains('\n'));
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn malformed_addresses_are_usage_errors() {
        for text in ["", "host:notaport", "[::1", "ftp://x", "a:b:c"] {
            assert!(
                matches!(Address::parse(text), Err(Stop::Usage(_))),
                "{text}"
            );
        }
    }
}
