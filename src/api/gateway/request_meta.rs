//! The meta of an `http.request` frame: what a handler knows of a request.
//!
//! Keys, in this order: `proto`, `method`, `authority`, `remote_ip`,
//! `remote_port`, `headers`, `uri`, `path`, `query` — the shape of
//! cross.stream's old built-in HTTP server (`proto` and `authority` are
//! its extras over the contract's list). tiny_http has already turned an
//! absolute-form target (`http://host/p?q`) into its origin form (`/p?q`)
//! and made its host the `Host` header, so `uri` is always the origin form
//! and `authority` the `Host` header.

use serde_json::{Map, Value};
use tiny_http::Request;

use crate::api::query::parse_query;

/// The meta of a request's frame.
pub fn request_meta(request: &Request) -> Value {
    let uri = request.url();
    let (path, query) = split_target(uri);
    let headers = headers_record(request);
    let authority = headers.get("host").cloned().unwrap_or(Value::Null);
    let remote = request.remote_addr();
    let mut meta = Map::new();
    meta.insert(
        "proto".into(),
        format!("HTTP/{}", request.http_version()).into(),
    );
    meta.insert("method".into(), request.method().as_str().into());
    meta.insert("authority".into(), authority);
    meta.insert(
        "remote_ip".into(),
        remote.map_or(Value::Null, |r| r.ip().to_string().into()),
    );
    meta.insert(
        "remote_port".into(),
        remote.map_or(Value::Null, |r| r.port().into()),
    );
    meta.insert("headers".into(), Value::Object(headers));
    meta.insert("uri".into(), uri.into());
    meta.insert("path".into(), path.into());
    meta.insert("query".into(), query_record(query));
    Value::Object(meta)
}

/// Header names in lower case, in order of first appearance; a repeated
/// header's values joined with `, `.
fn headers_record(request: &Request) -> Map<String, Value> {
    let mut record = Map::new();
    for header in request.headers() {
        let name = header.field.as_str().as_str().to_ascii_lowercase();
        let value = header.value.as_str();
        match record.get_mut(&name) {
            Some(Value::String(joined)) => {
                joined.push_str(", ");
                joined.push_str(value);
            }
            _ => {
                record.insert(name, value.into());
            }
        }
    }
    record
}

/// The decoded query pairs as a record; a repeated key gives a list.
fn query_record(query: &str) -> Value {
    let mut record = Map::new();
    for (key, value) in parse_query(query) {
        match record.get_mut(&key) {
            Some(Value::Array(values)) => values.push(value.into()),
            Some(first) => *first = Value::Array(vec![first.take(), value.into()]),
            None => {
                record.insert(key, value.into());
            }
        }
    }
    Value::Object(record)
}

/// The path (raw, as sent) and the query text of an origin-form target.
fn split_target(uri: &str) -> (&str, &str) {
    uri.split_once('?').unwrap_or((uri, ""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn targets() {
        assert_eq!(split_target("/a/b?x=1"), ("/a/b", "x=1"));
        assert_eq!(split_target("/a%20b"), ("/a%20b", ""));
        assert_eq!(split_target("*"), ("*", ""));
    }

    #[test]
    fn repeated_query_keys_give_lists() {
        assert_eq!(
            query_record("a=1&b=x%20y&a=2&flag&a=3"),
            json!({"a": ["1", "2", "3"], "b": "x y", "flag": ""})
        );
        assert_eq!(query_record(""), json!({}));
    }
}
