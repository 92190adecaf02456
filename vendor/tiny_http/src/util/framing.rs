//! xs patch: where a request's body ends, decided once and strictly.
//!
//! Upstream tiny_http read the request target as it came, took the first
//! of several `Content-Length` headers, ignored one it could not parse
//! (the body then ran as a second request) and let `Transfer-Encoding`
//! override `Content-Length` silently. Each of those lets a client (or a
//! proxy in front that frames the body differently) smuggle a request in
//! a body. Here (RFC 9112 §3.2, §6):
//! - an absolute-form target (`http://host/p?q`) becomes its origin form
//!   (`/p?q`) and its host replaces any `Host` header (§3.2.2);
//! - `Content-Length` must be one u64 (a repeated or comma-listed value
//!   only if every copy is the same), never beside `Transfer-Encoding`;
//! - `Transfer-Encoding` must be exactly `chunked`.
//!
//! Anything else is a `Refusal`: the connection answers it and closes,
//! because nobody can tell where the next request would start. A body
//! reader that stops before the end of its body (the client went away,
//! a handler refused it unread and it was too long to drain, or the client
//! sent nothing more for the idle timeout) sets the connection's `Poison`:
//! the bytes after it are never read as a request. So does a response
//! that could not be sent whole.

use std::convert::TryFrom;
use std::io::{ErrorKind, Result as IoResult, Write};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use crate::{HTTPVersion, Header, StatusCode};

/// How a request's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyFraming {
    /// No body: neither header.
    Empty,
    /// Exactly this many bytes.
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A request head whose framing cannot be trusted: answered with `status`
/// and `reason`, then the connection closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub reason: &'static str,
}

const fn bad(reason: &'static str) -> Refusal {
    Refusal {
        status: 400,
        reason,
    }
}

/// Set once the connection cannot carry another request: a body reader
/// left it at an unknown place (it failed, or was dropped with too much
/// unread), or a response could not be sent whole. `ClientConnection`
/// then reads no further request and closes. It also remembers whether a
/// body read timed out, so that the request is answered `408`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Poison(Arc<AtomicU8>);

/// `Poison` states, in increasing order (a state only ever rises).
const CLEAN: u8 = 0;
const POISONED: u8 = 1;
const BODY_TIMED_OUT: u8 = 2;

impl Poison {
    pub(crate) fn set(&self) {
        self.0.fetch_max(POISONED, Ordering::AcqRel);
    }

    /// A body read failed with `error`.
    pub(crate) fn set_by(&self, error: &std::io::Error) {
        let state = if error.kind() == ErrorKind::TimedOut {
            BODY_TIMED_OUT
        } else {
            POISONED
        };
        self.0.fetch_max(state, Ordering::AcqRel);
    }

    pub(crate) fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire) != CLEAN
    }

    /// Whether a body read gave up on a client that sent nothing more.
    pub(crate) fn body_timed_out(&self) -> bool {
        self.0.load(Ordering::Acquire) == BODY_TIMED_OUT
    }
}

/// The body framing the headers declare, or why they cannot be trusted.
pub(crate) fn body_framing(headers: &[Header]) -> Result<BodyFraming, Refusal> {
    let lengths = values(headers, "Content-Length");
    let codings = values(headers, "Transfer-Encoding");
    if !codings.is_empty() {
        if !lengths.is_empty() {
            return Err(bad("Content-Length together with Transfer-Encoding"));
        }
        let codings: Vec<String> = codings.iter().map(|c| c.to_ascii_lowercase()).collect();
        return match codings.as_slice() {
            [only] if only == "chunked" => Ok(BodyFraming::Chunked),
            [.., last] if last == "chunked" => Err(Refusal {
                status: 501,
                reason: "unsupported Transfer-Encoding: only chunked is understood",
            }),
            _ => Err(bad("Transfer-Encoding does not end with chunked")),
        };
    }
    let mut declared: Option<u64> = None;
    for text in lengths {
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("invalid Content-Length header"));
        }
        let length: u64 = text
            .parse()
            .map_err(|_| bad("Content-Length is larger than a u64"))?;
        if declared.is_some_and(|first| first != length) {
            return Err(bad("differing Content-Length headers"));
        }
        declared = Some(length);
    }
    match declared {
        None => Ok(BodyFraming::Empty),
        Some(length) => usize::try_from(length)
            .map(BodyFraming::Length)
            .map_err(|_| bad("Content-Length is too large")),
    }
}

/// The comma-separated items of every header named `name`, trimmed.
fn values<'a>(headers: &'a [Header], name: &'static str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|h| h.field.equiv(name))
        .flat_map(|h| h.value.as_str().split(','))
        .map(str::trim)
        .collect()
}

/// The origin form of a request target and, for an absolute-form one, its
/// host (`http://h:8/p?q` → `/p?q` and `h:8`). Other forms pass as they
/// are (`/p?q`, `*`).
pub(crate) fn origin_form(target: &str) -> Result<(String, Option<String>), Refusal> {
    let Some(scheme_end) = target.find("://") else {
        return Ok((target.to_string(), None));
    };
    let scheme = &target[..scheme_end];
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Ok((target.to_string(), None));
    }
    let rest = &target[scheme_end + 3..];
    let path_start = rest.find(['/', '?']).unwrap_or(rest.len());
    // `user:pass@` is never sent for http URIs; it names no host.
    let authority = match rest[..path_start].rsplit_once('@') {
        Some((_, host)) => host,
        None => &rest[..path_start],
    };
    if authority.is_empty() {
        return Err(bad("absolute-form request target without a host"));
    }
    let origin = match &rest[path_start..] {
        "" => "/".to_string(),
        query if query.starts_with('?') => format!("/{query}"),
        path => path.to_string(),
    };
    Ok((origin, Some(authority.to_string())))
}

/// Makes `authority` the request's only `Host` header (RFC 9112 §3.2.2:
/// the target's host wins over a `Host` header).
pub(crate) fn set_host(headers: &mut Vec<Header>, authority: &str) -> Result<(), Refusal> {
    let host = Header::from_bytes(&b"Host"[..], authority.as_bytes())
        .map_err(|_| bad("invalid host in the request target"))?;
    headers.retain(|h| !h.field.equiv("Host"));
    headers.push(host);
    Ok(())
}

/// Writes a refusal: a one-line plain-text reason, `Connection: close`.
pub(crate) fn write_refusal<W: Write>(
    mut writer: W,
    version: &HTTPVersion,
    refusal: &Refusal,
) -> IoResult<()> {
    let status = StatusCode(refusal.status);
    let version = if *version == HTTPVersion(1, 0) {
        "1.0"
    } else {
        "1.1"
    };
    write!(
        writer,
        "HTTP/{version} {} {}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{}",
        status.0,
        status.default_reason_phrase(),
        refusal.reason.len(),
        refusal.reason,
    )?;
    writer.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn headers(lines: &[&str]) -> Vec<Header> {
        lines.iter().map(|l| Header::from_str(l).unwrap()).collect()
    }

    fn framing(lines: &[&str]) -> Result<BodyFraming, u16> {
        body_framing(&headers(lines)).map_err(|r| r.status)
    }

    #[test]
    fn content_length() {
        assert_eq!(framing(&[]), Ok(BodyFraming::Empty));
        assert_eq!(framing(&["Content-Length: 0"]), Ok(BodyFraming::Length(0)));
        assert_eq!(
            framing(&["Content-Length: 12"]),
            Ok(BodyFraming::Length(12))
        );
        assert_eq!(
            framing(&["Content-Length: 12", "content-length: 12"]),
            Ok(BodyFraming::Length(12))
        );
        assert_eq!(
            framing(&["Content-Length: 12, 12"]),
            Ok(BodyFraming::Length(12))
        );
        assert_eq!(
            framing(&["Content-Length: 18446744073709551615"]),
            Ok(BodyFraming::Length(usize::MAX))
        );
        for bad in [
            &["Content-Length: 18446744073709551616"][..],
            &["Content-Length: 99999999999999999999999"],
            &["Content-Length: -5"],
            &["Content-Length: +5"],
            &["Content-Length: 0x10"],
            &["Content-Length: banana"],
            &["Content-Length: 1 2"],
            &["Content-Length:"],
            &["Content-Length: 3", "Content-Length: 5"],
            &["Content-Length: 3, 5"],
            &["Content-Length: 3,"],
        ] {
            assert_eq!(framing(bad), Err(400), "{bad:?}");
        }
    }

    #[test]
    fn transfer_encoding() {
        assert_eq!(
            framing(&["Transfer-Encoding: chunked"]),
            Ok(BodyFraming::Chunked)
        );
        assert_eq!(
            framing(&["Transfer-Encoding: Chunked"]),
            Ok(BodyFraming::Chunked)
        );
        assert_eq!(framing(&["Transfer-Encoding: gzip, chunked"]), Err(501));
        assert_eq!(
            framing(&["Transfer-Encoding: gzip", "Transfer-Encoding: chunked"]),
            Err(501)
        );
        assert_eq!(framing(&["Transfer-Encoding: chunked, gzip"]), Err(400));
        assert_eq!(framing(&["Transfer-Encoding: identity"]), Err(400));
        assert_eq!(
            framing(&["Transfer-Encoding: chunked", "Content-Length: 5"]),
            Err(400)
        );
        assert_eq!(
            framing(&["Content-Length: 0", "Transfer-Encoding: chunked"]),
            Err(400)
        );
    }

    #[test]
    fn targets() {
        let origin = |t: &str| origin_form(t).map_err(|r| r.status);
        assert_eq!(origin("/a?b"), Ok(("/a?b".into(), None)));
        assert_eq!(origin("*"), Ok(("*".into(), None)));
        assert_eq!(
            origin("http://localhost/append/x?ttl=forever"),
            Ok(("/append/x?ttl=forever".into(), Some("localhost".into())))
        );
        assert_eq!(origin("HTTPS://h:8"), Ok(("/".into(), Some("h:8".into()))));
        assert_eq!(
            origin("http://h?follow"),
            Ok(("/?follow".into(), Some("h".into())))
        );
        assert_eq!(
            origin("http://u:p@h/x"),
            Ok(("/x".into(), Some("h".into())))
        );
        assert_eq!(
            origin("/a?next=http://b/"),
            Ok(("/a?next=http://b/".into(), None))
        );
        assert_eq!(origin("http:///x"), Err(400));
    }
}
