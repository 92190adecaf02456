//! Write routes: `POST /append/<topic>`, `POST /import`, `DELETE /<id>`.

use base64::Engine;
use serde_json::Value;
use tiny_http::Request;

use super::query;
use super::respond::Reply;
use crate::store::id::parse_id;
use crate::store::topic::validate_topic;
use crate::store::{Draft, Frame, Store, StoreError, Ttl, WriteOp};

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
    let declared = request.body_length().map(|n| n as u64);
    if declared.is_some_and(|n| n > limits.max_payload) {
        return Reply::error(413, StoreError::TooLarge(limits.max_payload)).send(request);
    }
    let hash = if declared == Some(0) {
        None
    } else {
        match read_payload(store, &mut request, declared, limits, ttl == Ttl::Ephemeral) {
            Ok(payload) => payload,
            Err(e) => return Reply::error(e.status(), e).send(request),
        }
    };
    let (hash, journal_payload, _pin) = match hash {
        Some(stored) => (
            Some(stored.hash.to_string()),
            stored.journal_bytes,
            stored.pin,
        ),
        None => (None, None, None),
    };
    let draft = Draft {
        topic: topic.to_string(),
        hash,
        meta,
        ttl: Some(ttl),
        journal_payload,
    };
    match store.append(draft) {
        Ok(frame) => {
            let with_timestamp = query::get(pairs, "with-timestamp").is_some();
            Reply::json(frame.render(with_timestamp)).send(request)
        }
        Err(e) => Reply::error(e.status(), e).send(request),
    }
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
    let body = match read_small_body(&mut request, limits.max_payload) {
        Ok(body) => body,
        Err(e) => return Reply::error(e.status(), e).send(request),
    };
    let frame = match Frame::from_json(&body) {
        Ok(frame) => frame,
        Err(e) => return Reply::error(400, format!("Invalid frame JSON: {e}")).send(request),
    };
    match store.import(frame) {
        Ok(frame) => Reply::json(frame.to_json()).send(request),
        Err(e) => Reply::error(e.status(), e).send(request),
    }
}

/// How many bulk-imported frames may wait for the writer at once.
const IMPORT_WINDOW: usize = 4096;

/// The NDJSON form of `POST /import`: answers `{"imported":<n>}`, or the
/// first bad line's error (frames before it are stored).
fn import_many(store: &Store, mut request: Request) {
    use std::io::BufRead;
    let mut pending = std::collections::VecDeque::new();
    let mut imported: u64 = 0;
    let mut failure: Option<(u16, String)> = None;
    let reader = std::io::BufReader::with_capacity(256 * 1024, request.as_reader());
    for (number, line) in reader.split(b'\n').enumerate() {
        let line = match line {
            Ok(line) => line,
            Err(e) => {
                failure = Some((400, StoreError::BadBody(e.to_string()).to_string()));
                break;
            }
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let frame = match Frame::from_json(&line) {
            Ok(frame) => frame,
            Err(e) => {
                failure = Some((
                    400,
                    format!("Invalid frame JSON on line {}: {e}", number + 1),
                ));
                break;
            }
        };
        pending.push_back(store.submit(WriteOp::Import(frame, None)));
        if pending.len() >= IMPORT_WINDOW {
            if let Err(e) = settle(pending.pop_front()) {
                failure = Some((e.status(), e.to_string()));
                break;
            }
            imported += 1;
        }
    }
    for reply in pending {
        match settle(Some(reply)) {
            Ok(()) => imported += 1,
            Err(e) => {
                failure.get_or_insert((e.status(), e.to_string()));
            }
        }
    }
    match failure {
        Some((status, text)) => Reply::error(status, text).send(request),
        None => Reply::json(format!("{{\"imported\":{imported}}}")).send(request),
    }
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
        Err(e) => Reply::error(e.status(), e).send(request),
    }
}
