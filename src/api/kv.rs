//! K/V routes: `GET /kv?prefix=`, `GET|PUT|DELETE /kv/<key>`, and
//! `GET /kv/<key>?follow` (the current state, then one line per change).

use std::time::Duration;

use serde_json::Value;
use tiny_http::Request;

use super::query;
use super::respond::{Answer, ChunkedStream, Handled, Reply};
use super::write::read_small_body;
use crate::store::reserved_key;
use crate::store::topic::validate_topic;
use crate::store::KvNews;
use crate::store::Store;

/// The largest value accepted, in bytes.
const MAX_VALUE: u64 = 16 * 1024 * 1024;

/// How long a watch stays silent before probing its client.
const IDLE_PROBE: Duration = Duration::from_secs(20);

fn check_writable(key: &str) -> Result<(), Reply> {
    match reserved_key(key) {
        Some(why) => Err(Reply::error(409, why)),
        None => Ok(()),
    }
}

/// `GET /kv?prefix=<p>`: NDJSON `{"key","value"}` in key order.
pub fn list(store: &Store, pairs: &[(String, String)]) -> Handled<Reply> {
    let prefix = query::get(pairs, "prefix").unwrap_or("");
    let mut body = Vec::new();
    for (key, value) in store.kv_list(prefix)? {
        body.extend_from_slice(&entry_line(&key, Some(&value)));
    }
    Ok(Reply::with_type(200, "application/x-ndjson", body))
}

/// `GET /kv/<key>`, or its watch with `follow`.
pub fn get(store: &Store, key: &str, pairs: &[(String, String)]) -> Handled {
    validate_topic(key)
        .map_err(|e| Reply::error(400, format!("invalid key: {}", e.replace("Topic", "Key"))))?;
    if query::flag(pairs, "follow") {
        return watch(store, key);
    }
    let value = store.kv_get(key)?.ok_or_else(Reply::not_found)?;
    Ok(Reply::json(value).into())
}

/// `PUT /kv/<key>` with a JSON body.
pub fn put(store: &Store, request: &mut Request, key: &str) -> Handled<Reply> {
    check_writable(key)?;
    let body = read_small_body(request, MAX_VALUE)?;
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| Reply::error(400, format!("value is not valid JSON: {e}")))?;
    store.kv_set(key, &value)?;
    Ok(Reply::status(204))
}

/// `DELETE /kv/<key>`.
pub fn delete(store: &Store, key: &str) -> Handled<Reply> {
    check_writable(key)?;
    store.kv_delete(key)?;
    Ok(Reply::status(204))
}

/// One NDJSON line: `{"key":…,"value":…}` or `{"key":…,"deleted":true}`.
fn entry_line(key: &str, value: Option<&[u8]>) -> Vec<u8> {
    let mut line = b"{\"key\":".to_vec();
    line.extend_from_slice(Value::String(key.to_string()).to_string().as_bytes());
    match value {
        Some(value) => {
            line.extend_from_slice(b",\"value\":");
            line.extend_from_slice(value);
        }
        None => line.extend_from_slice(b",\"deleted\":true"),
    }
    line.extend_from_slice(b"}\n");
    line
}

/// The key's current state, then every change to it, streamed.
fn watch(store: &Store, key: &str) -> Handled {
    // Note the sequence before reading, so no change slips between the two.
    let seen = store.kv_signal().last_seq();
    let current = store.kv_get(key)?;
    let (store, key) = (store.clone(), key.to_string());
    Ok(Answer::stream(move |request| {
        write_watch(&store, request, &key, seen, current)
    }))
}

/// Writes a watch from `current` (as of change `seen`) until the client
/// leaves or the server stops.
fn write_watch(
    store: &Store,
    request: Request,
    key: &str,
    mut seen: u64,
    current: Option<Vec<u8>>,
) {
    let signal = store.kv_signal();
    let Ok(mut out) = ChunkedStream::start(request, "application/x-ndjson") else {
        return;
    };
    if out
        .chunk(&entry_line(key, current.as_deref()))
        .and_then(|_| out.flush())
        .is_err()
    {
        return;
    }
    loop {
        if store.head().view().closed {
            break;
        }
        let mut lines = Vec::new();
        let mut quiet = false;
        match signal.wait_after(seen, IDLE_PROBE) {
            KvNews::Changes(changes) => {
                quiet = changes.is_empty();
                for change in changes {
                    seen = change.seq;
                    if change.key == key {
                        lines.extend_from_slice(&entry_line(key, change.value.as_deref()));
                    }
                }
            }
            KvNews::Lagged(now) => {
                seen = now;
                match store.kv_get(key) {
                    Ok(value) => lines.extend_from_slice(&entry_line(key, value.as_deref())),
                    Err(_) => break,
                }
            }
        }
        if lines.is_empty() && !quiet {
            continue;
        }
        // A quiet spell: a lone newline checks the client is still there.
        let bytes: &[u8] = if lines.is_empty() { b"\n" } else { &lines };
        if out.chunk(bytes).and_then(|_| out.flush()).is_err() {
            return;
        }
    }
    let _ = out.finish();
}
