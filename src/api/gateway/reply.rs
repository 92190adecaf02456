//! Answers on the wire: an `http.response` frame's meta checked, then the
//! status line, headers and body written by the gateway itself on the
//! connection's raw writer.
//!
//! Why by hand: tiny_http's responses hold back 8 KiB of a streamed body
//! and swallow "broken pipe", and the gateway needs both a chunk on the
//! wire the moment its frame lands and to know when a client has gone.
//! The body's framing is the gateway's alone: a handler's
//! `content-length`, `transfer-encoding` and `connection` headers are
//! dropped, and the gateway sends `Content-Length` for a whole answer and
//! `Transfer-Encoding: chunked` for a streamed one.

use std::io::{self, Write};

use serde_json::Value;
use tiny_http::{Request, StatusCode};

/// Headers whose job is the body's framing, which the gateway owns.
const FRAMING_HEADERS: [&str; 3] = ["content-length", "transfer-encoding", "connection"];

/// What a handler's `http.response` meta asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseMeta {
    pub status: u16,
    /// In order; a header given a list appears once per item.
    pub headers: Vec<(String, String)>,
    /// More `http.response` frames follow (a streamed body).
    pub more: bool,
}

impl ResponseMeta {
    /// Reads `status` (default 200), `headers` (a record of strings or
    /// lists of strings) and `more` from a response's meta.
    pub fn from_meta(meta: Option<&Value>) -> Result<ResponseMeta, String> {
        let field = |key: &str| meta.and_then(|m| m.get(key)).filter(|v| !v.is_null());
        let status = match field("status") {
            None => 200,
            Some(value) => value
                .as_u64()
                .filter(|s| (200..=599).contains(s))
                .map(|s| s as u16)
                .ok_or_else(|| format!("status must be a number from 200 to 599, got {value}"))?,
        };
        let mut headers = Vec::new();
        match field("headers") {
            None => {}
            Some(Value::Object(record)) => {
                for (name, value) in record {
                    check_name(name)?;
                    let values = match value {
                        Value::Array(items) => items.iter().collect(),
                        single => vec![single],
                    };
                    for value in values {
                        let text = header_text(name, value)?;
                        if !FRAMING_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                            headers.push((name.clone(), text));
                        }
                    }
                }
            }
            Some(other) => return Err(format!("headers must be a record, got {other}")),
        }
        let more = field("more").and_then(Value::as_bool).unwrap_or(false);
        Ok(ResponseMeta {
            status,
            headers,
            more,
        })
    }

    fn has_content_type(&self) -> bool {
        self.headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
    }

    /// Whether this status may carry a body (RFC 9110: not 204, not 304).
    fn allows_body(&self) -> bool {
        !matches!(self.status, 204 | 304)
    }
}

/// A header name must be an HTTP token.
fn check_name(name: &str) -> Result<(), String> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(token) {
        return Err(format!("invalid header name {name:?}"));
    }
    Ok(())
}

/// A header value as text: strings as they are, numbers and booleans
/// written out; no line breaks (they would forge headers).
fn header_text(name: &str, value: &Value) -> Result<String, String> {
    let text = match value {
        Value::String(text) => text.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => return Err(format!("header {name}: expected text, got {other}")),
    };
    if text.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(format!("header {name}: the value contains a line break"));
    }
    Ok(text)
}

/// The type of a body sent without `content-type`.
pub fn default_content_type(body: &[u8]) -> &'static str {
    if std::str::from_utf8(body).is_ok() {
        "text/plain; charset=utf-8"
    } else {
        "application/octet-stream"
    }
}

/// What the request implies for the answer's framing.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// `HEAD`: headers only.
    pub head_only: bool,
    /// An HTTP/1.0 client: no chunked bodies.
    pub http10: bool,
    /// The connection stays open for another request (tiny_http's rule).
    pub keep_alive: bool,
}

impl Shape {
    pub fn of(request: &Request) -> Shape {
        let http10 = request.http_version() == &tiny_http::HTTPVersion(1, 0);
        let connection = request
            .headers()
            .iter()
            .find(|h| h.field.equiv("Connection"))
            .map(|h| h.value.as_str().to_ascii_lowercase());
        let keep_alive = match connection.as_deref() {
            Some(c) if c.contains("close") || c.contains("upgrade") => false,
            Some(c) if http10 => c.contains("keep-alive"),
            None if http10 => false,
            _ => true,
        };
        Shape {
            head_only: request.method() == &tiny_http::Method::Head,
            http10,
            keep_alive,
        }
    }
}

/// How the body that follows the head is delimited.
enum Framing {
    Length(usize),
    Chunked,
}

fn write_head(
    out: &mut dyn Write,
    shape: &Shape,
    answer: &ResponseMeta,
    content_type: &str,
    framing: Framing,
) -> io::Result<()> {
    let reason = StatusCode(answer.status).default_reason_phrase();
    let mut head = format!("HTTP/1.1 {} {reason}\r\n", answer.status);
    for (name, value) in &answer.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if answer.allows_body() {
        if !answer.has_content_type() {
            head.push_str(&format!("Content-Type: {content_type}\r\n"));
        }
        match framing {
            Framing::Length(n) => head.push_str(&format!("Content-Length: {n}\r\n")),
            Framing::Chunked => head.push_str("Transfer-Encoding: chunked\r\n"),
        }
    }
    if !shape.keep_alive {
        head.push_str("Connection: close\r\n");
    } else if shape.http10 {
        head.push_str("Connection: keep-alive\r\n");
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())
}

/// Writes a whole answer with its `Content-Length`.
pub fn write_whole(
    out: &mut dyn Write,
    shape: &Shape,
    answer: &ResponseMeta,
    body: &[u8],
) -> io::Result<()> {
    let content_type = default_content_type(body);
    write_head(
        out,
        shape,
        answer,
        content_type,
        Framing::Length(body.len()),
    )?;
    if answer.allows_body() && !shape.head_only {
        out.write_all(body)?;
    }
    out.flush()
}

/// A streamed answer: the head at once, then each chunk as it comes.
pub struct Chunked {
    out: Box<dyn Write + Send>,
    /// No body goes out (`HEAD`, `204`, `304`): chunks are dropped.
    silent: bool,
}

impl Chunked {
    /// Writes the head; the first chunk's bytes choose the default type.
    pub fn start(
        mut out: Box<dyn Write + Send>,
        shape: &Shape,
        answer: &ResponseMeta,
        first_chunk: &[u8],
    ) -> io::Result<Chunked> {
        let content_type = default_content_type(first_chunk);
        write_head(&mut out, shape, answer, content_type, Framing::Chunked)?;
        let mut chunked = Chunked {
            out,
            silent: shape.head_only || !answer.allows_body(),
        };
        chunked.chunk(first_chunk)?;
        Ok(chunked)
    }

    /// Sends one chunk now (an empty one sends nothing).
    pub fn chunk(&mut self, bytes: &[u8]) -> io::Result<()> {
        if !self.silent && !bytes.is_empty() {
            write!(self.out, "{:x}\r\n", bytes.len())?;
            self.out.write_all(bytes)?;
            self.out.write_all(b"\r\n")?;
        }
        self.out.flush()
    }

    /// Ends the body.
    pub fn finish(mut self) -> io::Result<()> {
        if !self.silent {
            self.out.write_all(b"0\r\n\r\n")?;
        }
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn answer(meta: Value) -> Result<ResponseMeta, String> {
        ResponseMeta::from_meta(Some(&meta))
    }

    #[test]
    fn defaults() {
        let a = ResponseMeta::from_meta(None).unwrap();
        assert_eq!((a.status, a.headers.len(), a.more), (200, 0, false));
        let a = answer(json!({"request_id": "x", "status": null, "more": true})).unwrap();
        assert_eq!((a.status, a.more), (200, true));
    }

    #[test]
    fn headers_lists_and_framing() {
        let a = answer(json!({"status": 201, "headers": {
            "Set-Cookie": ["a=1", "b=2"], "x-n": 3, "Content-Length": "9", "connection": "close"
        }}))
        .unwrap();
        assert_eq!(a.status, 201);
        assert_eq!(
            a.headers,
            vec![
                ("Set-Cookie".to_string(), "a=1".to_string()),
                ("Set-Cookie".to_string(), "b=2".to_string()),
                ("x-n".to_string(), "3".to_string()),
            ]
        );
    }

    #[test]
    fn bad_meta_is_refused() {
        assert!(answer(json!({"status": 99})).is_err());
        assert!(answer(json!({"status": "200"})).is_err());
        assert!(answer(json!({"headers": ["a"]})).is_err());
        assert!(answer(json!({"headers": {"a b": "x"}})).is_err());
        assert!(answer(json!({"headers": {"x": "1\r\nInjected: yes"}})).is_err());
        assert!(answer(json!({"headers": {"x": {"y": 1}}})).is_err());
    }

    #[test]
    fn whole_answers() {
        let shape = Shape {
            head_only: false,
            http10: false,
            keep_alive: true,
        };
        let mut out = Vec::new();
        let a = answer(json!({"status": 404})).unwrap();
        write_whole(&mut out, &shape, &a, b"nope").unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: 4\r\n\r\nnope"
        );
        let mut out = Vec::new();
        let closing = Shape {
            keep_alive: false,
            head_only: true,
            ..shape
        };
        write_whole(
            &mut out,
            &closing,
            &ResponseMeta::from_meta(None).unwrap(),
            &[0xff],
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\
             Content-Length: 1\r\nConnection: close\r\n\r\n"
        );
    }
}
