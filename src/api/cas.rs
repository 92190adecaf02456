//! CAS routes: `GET /cas/<sri>` and `POST /cas`.

use std::io::Read;

use tiny_http::{Request, Response, StatusCode};

use super::respond::{Answer, Handled, Reply};
use super::write::WriteLimits;
use crate::store::parse_sri;
use crate::store::{Store, StoreError};

/// What a payload's answer says to a browser: never guess a type (an HTML
/// payload opened from a link must not render as a page of the listener's
/// origin, such as the `--ui` viewer's) and, if shown, run no script in it.
/// API clients ignore both.
const INERT: [(&str, &str); 2] = [
    ("X-Content-Type-Options", "nosniff"),
    ("Content-Security-Policy", "sandbox; default-src 'none'"),
];

/// `GET /cas/<sri>`: the raw bytes; 404 when absent.
pub fn get(store: &Store, sri: &str) -> Handled {
    let sri = parse_sri(sri).map_err(|e| Reply::error(400, e))?;
    let mut reader = store.open_payload(&sri)?.ok_or_else(Reply::not_found)?;
    // Small payloads go out in one write; large ones stream.
    let mut bytes = Vec::new();
    let limit = 1024 * 1024;
    if let Err(e) = reader.by_ref().take(limit).read_to_end(&mut bytes) {
        return Err(Reply::error(500, StoreError::io("reading payload", e)));
    }
    if (bytes.len() as u64) < limit {
        return Ok(Reply {
            status: 200,
            content_type: None,
            body: bytes,
            extra_headers: INERT.map(|(k, v)| (k, v.to_string())).to_vec(),
        }
        .into());
    }
    Ok(Answer::stream(move |request| {
        let body = std::io::Cursor::new(bytes).chain(reader);
        let headers = INERT
            .iter()
            .filter_map(|(k, v)| tiny_http::Header::from_bytes(*k, *v).ok())
            .collect();
        let _ = request.respond(Response::new(StatusCode(200), headers, body, None, None));
    }))
}

/// `POST /cas`: stores the body, answers its SRI.
pub fn post(store: &Store, request: &mut Request, limits: WriteLimits) -> Handled<Reply> {
    let declared = request.body_length().map(|n| n as u64);
    if declared == Some(0) {
        return Err(Reply::error(400, "Empty body"));
    }
    if declared.is_some_and(|n| n > limits.max_payload) {
        return Err(Reply::error(413, StoreError::TooLarge(limits.max_payload)));
    }
    let stored = store.put_payload(request.as_reader(), declared, limits.max_payload, false)?;
    if stored.size == 0 {
        return Err(Reply::error(400, "Empty body"));
    }
    if declared.is_some_and(|n| n != stored.size) {
        // Dropping `stored` removes its file.
        let e = StoreError::BadBody(format!("expected {} bytes", declared.unwrap_or(0)));
        return Err(e.into());
    }
    let hash = store.sync_payload(stored)?;
    Ok(Reply::with_type(200, "text/plain", hash.to_string()))
}
