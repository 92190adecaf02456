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
use super::respond::{status_of, Reply};
use crate::store::id::parse_id;
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
    mut request: Request,
    topic: &str,
    pairs: &[(String, String)],
    limits: WriteLimits,
) {
    if let Err(e) = validate_topic(topic) {
        return Reply::error(400, e).send(request);
    }
    let ttl = match query::get(pairs, "ttl") {
        Some(text) => match Ttl::parse(text) {
            Ok(ttl) => ttl,
            Err(e) => return Reply::error(400, e).send(request),
        },
        None => Ttl::Forever,
    };
    let meta = match meta_header(&request) {
        Ok(meta) => meta,
        Err((status, text)) => return Reply::error(status, text).send(request),
    };
    let (expect_last, idempotency_key) = match conditions(&request) {
        Ok(conditions) => conditions,
        Err(text) => return Reply::error(400, text).send(request),
    };
    let declared = request.body_length().map(|n| n as u64);
    if declared.is_some_and(|n| n > limits.max_payload) {
        return Reply::error(413, StoreError::TooLarge(limits.max_payload)).send(request);
    }
    let payload = if declared == Some(0) {
        None
    } else {
        match read_payload(store, &mut request, declared, limits, ttl == Ttl::Ephemeral) {
            Ok(payload) => payload,
            Err(e) => return Reply::store_error(e).send(request),
        }
    };
    let draft = Draft::new(topic)
        .meta(meta)
        .ttl(Some(ttl))
        .expect_last(expect_last)
        .idempotency_key(idempotency_key);
    // A refused append leaves no payload file behind (`PayloadPin`).
    match store.append_checked(draft, payload) {
        Ok(appended) => {
            let with_timestamp = query::get(pairs, "with-timestamp").is_some();
            let mut reply = Reply::json(appended.frame.render(with_timestamp));
            if appended.duplicate {
                reply.extra_headers.push(("xs-duplicate", "true".into()));
            }
            reply.send(request)
        }
        Err(e) => Reply::store_error(e).send(request),
    }
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
fn meta_header(request: &Request) -> Result<Option<Value>, (u16, String)> {
    let Some(header) = request.headers().iter().find(|h| h.field.equiv("xs-meta")) else {
        return Ok(None);
    };
    let text = header.value.as_str();
    if text.len() > MAX_META_HEADER {
        return Err((
            413,
            format!("xs-meta is too large: the limit is {MAX_META_HEADER} bytes"),
        ));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| (400, format!("xs-meta isn't valid Base64: {e}")))?;
    let json =
        String::from_utf8(bytes).map_err(|e| (400, format!("xs-meta isn't valid UTF-8: {e}")))?;
    let value: Value =
        serde_json::from_str(&json).map_err(|e| (400, format!("xs-meta isn't valid JSON: {e}")))?;
    Ok(Some(value))
}

/// `POST /import`: one frame JSON, stored verbatim; or, with
/// `Content-Type: application/x-ndjson`, many (one per line), sent to the
/// writer without waiting for each so they share syncs.
pub fn import(store: &Store, mut request: Request, limits: WriteLimits) {
    let ndjson = request.headers().iter().any(|h| {
        h.field.equiv("Content-Type") && h.value.as_str().starts_with("application/x-ndjson")
    });
    if ndjson {
        return import_many(store, request);
    }
    let body = match read_small_body(&mut request, MAX_FRAME_JSON.min(limits.max_payload)) {
        Ok(body) => body,
        Err(e) => return Reply::store_error(e).send(request),
    };
    let frame = match Frame::from_json(&body) {
        Ok(frame) => frame,
        Err(e) => return Reply::error(400, format!("Invalid frame JSON: {e}")).send(request),
    };
    match store.import(frame) {
        Ok(frame) => Reply::json(frame.to_json()).send(request),
        Err(e) => Reply::store_error(e).send(request),
    }
}

/// How many bulk-imported frames may wait for the writer at once.
const IMPORT_WINDOW: usize = 4096;

/// The NDJSON form of `POST /import`: answers `{"imported":<n>}`, or the
/// first bad line's error. Every line is checked before anything is
/// written, so a bad line stores nothing: the checked lines wait in a
/// scratch file (memory stays flat whatever the body's size), then go to
/// the writer.
/// The largest frame JSON an import accepts (its meta included): frames
/// are held whole in memory while they are checked.
const MAX_FRAME_JSON: u64 = 16 * 1024 * 1024;

fn import_many(store: &Store, mut request: Request) {
    use std::io::BufRead;
    let checked = match check_import_lines(store, &mut request) {
        Ok(checked) => checked,
        Err((status, text)) => return Reply::error(status, text).send(request),
    };
    let mut pending = std::collections::VecDeque::new();
    let mut imported: u64 = 0;
    let mut failure: Option<(u16, String)> = None;
    for line in checked.split(b'\n') {
        let frame = match line.map_err(|e| StoreError::io("reading the scratch file", e)) {
            Ok(line) => Frame::from_json(&line)
                .map_err(|e| StoreError::Storage(format!("a checked frame is unreadable: {e}"))),
            Err(e) => Err(e),
        };
        let frame = match frame {
            Ok(frame) => frame,
            Err(e) => {
                failure = Some((status_of(&e), e.to_string()));
                break;
            }
        };
        pending.push_back(store.import_queued(frame));
        if pending.len() >= IMPORT_WINDOW {
            if let Err(e) = settle(pending.pop_front()) {
                failure = Some((status_of(&e), e.to_string()));
                break;
            }
            imported += 1;
        }
    }
    for reply in pending {
        match settle(Some(reply)) {
            Ok(()) => imported += 1,
            Err(e) => {
                failure.get_or_insert((status_of(&e), e.to_string()));
            }
        }
    }
    match failure {
        Some((status, text)) => Reply::error(status, text).send(request),
        None => Reply::json(format!("{{\"imported\":{imported}}}")).send(request),
    }
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
fn settle(
    reply: Option<crossbeam_channel::Receiver<crate::store::WriteReply>>,
) -> Result<(), StoreError> {
    match reply {
        Some(reply) => reply.recv().unwrap_or(Err(StoreError::Closed)).map(|_| ()),
        None => Ok(()),
    }
}

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
pub fn remove(store: &Store, request: Request, id: &str) {
    let id = match parse_id(id) {
        Ok(id) => id,
        Err(e) => return Reply::error(400, format!("Invalid frame ID: {e}")).send(request),
    };
    match store.remove(id) {
        Ok(()) => Reply::status(204).send(request),
        Err(e) => Reply::store_error(e).send(request),
    }
}
