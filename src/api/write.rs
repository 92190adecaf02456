//! Write routes: `POST /append/<topic>`, `POST /import`, `DELETE /<id>`.
//!
//! An append may be conditional: `xs-expect-last: <id>|none` (refused with
//! 409, the topic's actual last id in `xs-last-id` and the body, unless its
//! newest frame is that id) and `xs-idempotency-key: <key>` (a key seen
//! within the server's dedup window answers the original frame, 200 with
//! `xs-duplicate: true`, and writes nothing). The writer decides both
//! (src/store/local/batch.rs, the Redis script).

use base64::Engine;
use serde_json::Value;
use tiny_http::Request;

use super::query;
use super::read::path_id;
use super::respond::{status_of, Handled, Reply};
use crate::store::topic::validate_topic;
use crate::store::{validate_idempotency_key, Draft, ExpectLast, Frame, Store, StoreError, Ttl};

/// The largest `xs-meta` header accepted, in bytes.
pub const MAX_META_HEADER: usize = 64 * 1024;

/// Limits of the write routes.
#[derive(Debug, Clone, Copy)]
pub struct WriteLimits {
    /// The largest payload, in bytes (`--max-payload`).
    pub max_payload: u64,
}

/// `POST /append/<topic>`: everything is checked before any byte of the
/// payload is stored.
pub fn append(
    store: &Store,
    request: &mut Request,
    topic: &str,
    pairs: &[(String, String)],
    limits: WriteLimits,
) -> Handled<Reply> {
    validate_topic(topic).map_err(|e| Reply::error(400, e))?;
    let ttl = match query::get(pairs, "ttl") {
        Some(text) => Ttl::parse(text).map_err(|e| Reply::error(400, e))?,
        None => Ttl::Forever,
    };
    let meta = meta_header(request)?;
    let (expect_last, idempotency_key) = conditions(request).map_err(|e| Reply::error(400, e))?;
    let declared = request.body_length().map(|n| n as u64);
    if declared.is_some_and(|n| n > limits.max_payload) {
        return Err(Reply::error(413, StoreError::TooLarge(limits.max_payload)));
    }
    let payload = if declared == Some(0) {
        None
    } else {
        read_payload(store, request, declared, limits, ttl == Ttl::Ephemeral)?
    };
    let draft = Draft::new(topic)
        .meta(meta)
        .ttl(Some(ttl))
        .expect_last(expect_last)
        .idempotency_key(idempotency_key);
    // A refused append leaves no payload file behind (`PayloadPin`).
    let appended = store.append_checked(draft, payload)?;
    let with_timestamp = query::get(pairs, "with-timestamp").is_some();
    let mut reply = Reply::json(appended.frame.render(with_timestamp));
    if appended.duplicate {
        reply.extra_headers.push(("xs-duplicate", "true".into()));
    }
    Ok(reply)
}

/// `xs-expect-last` and `xs-idempotency-key`, checked.
fn conditions(request: &Request) -> Result<(Option<ExpectLast>, Option<String>), String> {
    let header = |name: &'static str| {
        request
            .headers()
            .iter()
            .find(|h| h.field.equiv(name))
            .map(|h| h.value.as_str().trim().to_string())
    };
    let expect_last = match header("xs-expect-last") {
        Some(text) => Some(ExpectLast::parse(&text).map_err(|e| format!("xs-expect-last: {e}"))?),
        None => None,
    };
    let key = match header("xs-idempotency-key") {
        Some(key) => {
            validate_idempotency_key(&key).map_err(|e| format!("xs-idempotency-key: {e}"))?;
            Some(key)
        }
        None => None,
    };
    Ok((expect_last, key))
}

/// Reads and stores the body; `None` for an empty body. A body shorter
/// than its `Content-Length` (the client went away) is refused.
fn read_payload(
    store: &Store,
    request: &mut Request,
    declared: Option<u64>,
    limits: WriteLimits,
    ephemeral: bool,
) -> Result<Option<crate::store::StoredPayload>, StoreError> {
    let stored = store.put_payload(request.as_reader(), declared, limits.max_payload, ephemeral)?;
    if let Some(declared) = declared {
        if stored.size != declared {
            // Dropping `stored` removes its file.
            return Err(StoreError::BadBody(format!(
                "expected {declared} bytes, got {}",
                stored.size
            )));
        }
    }
    Ok(if stored.size == 0 { None } else { Some(stored) })
}

/// Decodes `xs-meta`: standard base64 of UTF-8 JSON.
fn meta_header(request: &Request) -> Result<Option<Value>, Reply> {
    let Some(header) = request.headers().iter().find(|h| h.field.equiv("xs-meta")) else {
        return Ok(None);
    };
    let text = header.value.as_str();
    if text.len() > MAX_META_HEADER {
        return Err(Reply::error(
            413,
            format!("xs-meta is too large: the limit is {MAX_META_HEADER} bytes"),
        ));
    }
    let bad = |text: String| Reply::error(400, text);
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| bad(format!("xs-meta isn't valid Base64: {e}")))?;
    let json =
        String::from_utf8(bytes).map_err(|e| bad(format!("xs-meta isn't valid UTF-8: {e}")))?;
    let value: Value =
        serde_json::from_str(&json).map_err(|e| bad(format!("xs-meta isn't valid JSON: {e}")))?;
    Ok(Some(value))
}

/// `POST /import`: one frame JSON, stored verbatim; or, with
/// `Content-Type: application/x-ndjson`, many (one per line), sent to the
/// writer without waiting for each so they share syncs.
pub fn import(store: &Store, request: &mut Request, limits: WriteLimits) -> Handled<Reply> {
    let ndjson = request.headers().iter().any(|h| {
        h.field.equiv("Content-Type") && h.value.as_str().starts_with("application/x-ndjson")
    });
    if ndjson {
        return import_many(store, request);
    }
    let body = read_small_body(request, MAX_FRAME_JSON.min(limits.max_payload))?;
    let frame = Frame::from_json(&body)
        .map_err(|e| Reply::error(400, format!("Invalid frame JSON: {e}")))?;
    Ok(Reply::json(store.import(frame)?.to_json()))
}

/// The NDJSON form of `POST /import`: answers `{"imported":<n>}`, or the
/// first bad line's error. Every line is checked before anything is
/// written, so a bad line stores nothing: the checked lines wait in a
/// scratch file (memory stays flat whatever the body's size), then go to
/// the writer.
/// The largest frame JSON an import accepts (its meta included): frames
/// are held whole in memory while they are checked.
const MAX_FRAME_JSON: u64 = 16 * 1024 * 1024;

fn import_many(store: &Store, request: &mut Request) -> Handled<Reply> {
    use std::io::BufRead;
    let checked =
        check_import_lines(store, request).map_err(|(status, text)| Reply::error(status, text))?;
    let mut import = store.bulk_import();
    // A frame the store refused (`push`) comes before anything after it; a
    // scratch file that cannot be read comes after what was sent before.
    let mut refused = None;
    let mut unread = None;
    for line in checked.split(b'\n') {
        let frame = line
            .map_err(|e| StoreError::io("reading the scratch file", e))
            .and_then(|line| {
                Frame::from_json(&line)
                    .map_err(|e| StoreError::Storage(format!("a checked frame is unreadable: {e}")))
            });
        let sent = match frame {
            Ok(frame) => import.push(frame),
            Err(e) => {
                unread = Some(e);
                break;
            }
        };
        if let Err(e) = sent {
            refused = Some(e);
            break;
        }
    }
    // Every frame sent is answered either way; the first failure in order
    // is the one reported.
    let settled = import.finish();
    let imported = match (refused, settled, unread) {
        (Some(e), _, _) | (None, Err(e), _) | (None, Ok(_), Some(e)) => return Err(e.into()),
        (None, Ok(imported), None) => imported,
    };
    Ok(Reply::json(format!("{{\"imported\":{imported}}}")))
}

/// Reads every line of an NDJSON import and checks it: a frame JSON that
/// `Store::check_import` accepts, its id not given twice with different
/// bytes (ids are remembered, not frames). Returns the checked frames, one
/// per line, from the start of a scratch file.
fn check_import_lines(
    store: &Store,
    request: &mut Request,
) -> Result<std::io::BufReader<std::fs::File>, (u16, String)> {
    use std::io::{BufRead, Seek, Write};
    let fail = |e: StoreError| (status_of(&e), e.to_string());
    let scratch = store.scratch_file().map_err(fail)?;
    let mut spool = std::io::BufWriter::new(scratch);
    // Each id with a short digest of its frame (a repeat must be the same
    // bytes; the digest tells them apart without keeping the frame).
    let mut seen: std::collections::HashMap<crate::store::Id, u64> = Default::default();
    let mut reader = std::io::BufReader::with_capacity(256 * 1024, request.as_reader());
    let mut line = Vec::new();
    for number in 1u64.. {
        line.clear();
        // One line is held whole: a line without an end must not grow
        // without bound.
        let n = std::io::Read::take(&mut reader, MAX_FRAME_JSON + 1)
            .read_until(b'\n', &mut line)
            .map_err(|e| fail(StoreError::BadBody(e.to_string())))?;
        if n == 0 {
            break;
        }
        if n as u64 > MAX_FRAME_JSON {
            return Err((
                413,
                format!("line {number}: a frame's JSON is larger than {MAX_FRAME_JSON} bytes"),
            ));
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        if text.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let frame = Frame::from_json(text)
            .map_err(|e| (400, format!("Invalid frame JSON on line {number}: {e}")))?;
        store
            .check_import(&frame)
            .map_err(|e| (status_of(&e), format!("line {number}: {e}")))?;
        let json = frame.to_json();
        let digest = {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            json.hash(&mut hasher);
            hasher.finish()
        };
        if seen.insert(frame.id, digest).is_some_and(|d| d != digest) {
            let e = crate::store::import_conflict(frame.id);
            return Err((status_of(&e), format!("line {number}: {e}")));
        }
        let _claim = store
            .claim_space(json.len() as u64 + 1, "the import")
            .map_err(fail)?;
        let written = spool
            .write_all(json.as_bytes())
            .and_then(|()| spool.write_all(b"\n"));
        written.map_err(|e| fail(StoreError::io("writing a scratch file", e)))?;
    }
    let mut scratch = spool
        .into_inner()
        .map_err(|e| fail(StoreError::io("writing a scratch file", e.into_error())))?;
    scratch
        .rewind()
        .map_err(|e| fail(StoreError::io("reading a scratch file", e)))?;
    Ok(std::io::BufReader::new(scratch))
}

/// Waits for one queued write.
/// Reads a whole body that is meant to be small (JSON, scripts).
pub fn read_small_body(request: &mut Request, max: u64) -> Result<Vec<u8>, StoreError> {
    use std::io::Read;
    if request.body_length().is_some_and(|n| n as u64 > max) {
        return Err(StoreError::TooLarge(max));
    }
    let mut body = Vec::new();
    request
        .as_reader()
        .take(max.saturating_add(1))
        .read_to_end(&mut body)
        .map_err(|e| StoreError::BadBody(e.to_string()))?;
    if body.len() as u64 > max {
        return Err(StoreError::TooLarge(max));
    }
    Ok(body)
}

/// `DELETE /<id>`.
pub fn remove(store: &Store, id: &str) -> Handled<Reply> {
    store.remove(path_id(id)?)?;
    Ok(Reply::status(204))
}
