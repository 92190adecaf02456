//! Nushell values <-> JSON, and frames as Nushell records.

use nu_protocol::{Record, Span, Value};
use serde_json::{Map, Number, Value as Json};

use super::memory;
use crate::store::id::rfc3339_from_ms;
use crate::store::{Frame, Ttl};

/// A Nushell value as JSON, the way cross.stream renders `/eval` results:
/// records become objects in key order, dates RFC 3339 strings, file sizes
/// their bytes, durations nanoseconds, binary a list of bytes; types with no
/// JSON form (closures, errors, custom values) become null.
///
/// JSON can be far larger than the value (a byte becomes a number of 32
/// bytes), so lists stop early once the script converting them is over
/// its memory cap (`memory::over_cap`); its caller then has a verdict and
/// drops the cut result.
pub fn to_json(value: &Value) -> Json {
    match value {
        Value::Nothing { .. } => Json::Null,
        Value::Bool { val, .. } => Json::Bool(*val),
        Value::Int { val, .. } => Json::Number((*val).into()),
        Value::Float { val, .. } => Number::from_f64(*val).map_or(Json::Null, Json::Number),
        Value::Filesize { val, .. } => Json::Number(val.get().into()),
        Value::Duration { val, .. } => Json::Number((*val).into()),
        Value::Date { val, .. } => Json::String(val.to_rfc3339()),
        Value::String { val, .. } => Json::String(val.clone()),
        Value::Glob { val, .. } => Json::String(val.clone()),
        Value::CellPath { val, .. } => Json::String(val.to_string()),
        Value::Binary { val, .. } => {
            Json::Array(until_over_cap(val.iter()).map(|b| Json::from(*b)).collect())
        }
        Value::List { vals, .. } => Json::Array(until_over_cap(vals.iter()).map(to_json).collect()),
        Value::Record { val, .. } => {
            let mut map = Map::new();
            for (key, value) in val.iter() {
                map.insert(key.clone(), to_json(value));
            }
            Json::Object(map)
        }
        Value::Range { val, .. } => match val.as_ref() {
            nu_protocol::Range::IntRange(range) => Json::Array(
                range
                    .into_range_iter(nu_protocol::Signals::empty())
                    .map(Json::from)
                    .take(1_000_000)
                    .collect(),
            ),
            nu_protocol::Range::FloatRange(_) => Json::Null,
        },
        _ => Json::Null,
    }
}

/// As `to_json`, for JSON that is kept (written to the store, handed to
/// the script): an error instead of a result cut short by the memory cap.
pub fn to_json_checked(value: &Value) -> Result<Json, String> {
    let json = to_json(value);
    if memory::over_cap() {
        return Err(OVER_CAP.to_string());
    }
    Ok(json)
}

/// What a conversion cut short by the memory cap says.
pub const OVER_CAP: &str = "the value's JSON went over the script's memory cap (--eval-memory)";

/// The items of `iter` until the current script goes over its memory cap
/// (looked at every 4096 items).
fn until_over_cap<I: Iterator>(iter: I) -> impl Iterator<Item = I::Item> {
    iter.enumerate()
        .take_while(|(i, _)| i % 4096 != 0 || !memory::over_cap())
        .map(|(_, item)| item)
}

/// JSON as a Nushell value: objects become records in key order, integers
/// that fit `i64` ints, other numbers floats.
pub fn from_json(json: &Json, span: Span) -> Value {
    match json {
        Json::Null => Value::nothing(span),
        Json::Bool(b) => Value::bool(*b, span),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::int(i, span),
            None => Value::float(n.as_f64().unwrap_or(f64::NAN), span),
        },
        Json::String(s) => Value::string(s.clone(), span),
        Json::Array(items) => Value::list(items.iter().map(|j| from_json(j, span)).collect(), span),
        Json::Object(map) => {
            let mut record = Record::new();
            for (key, value) in map {
                record.push(key.clone(), from_json(value, span));
            }
            Value::record(record, span)
        }
    }
}

/// How a frame record is shaped.
#[derive(Debug, Clone, Copy, Default)]
pub struct FrameShape {
    /// Include `ttl` (`.cat --detail`, and everything but `.cat`).
    pub ttl: bool,
    pub timestamp: bool,
}

/// A frame as cross.stream's builtins give it: `id`, `topic`, then `hash`,
/// `meta`, `ttl` only when present, then `timestamp` (a date) if asked for.
/// Inside Nushell a `time:` ttl reads as whole seconds, e.g. `"1s"`.
pub fn frame_record(frame: &Frame, shape: FrameShape, span: Span) -> Value {
    let mut record = Record::new();
    record.push("id", Value::string(frame.id.to_string(), span));
    record.push("topic", Value::string(frame.topic.clone(), span));
    if let Some(hash) = &frame.hash {
        record.push("hash", Value::string(hash.clone(), span));
    }
    if let Some(meta) = &frame.meta {
        record.push("meta", from_json(meta, span));
    }
    if shape.ttl {
        if let Some(ttl) = frame.ttl {
            let text = match ttl {
                Ttl::Time(ms) => format!("{}s", ms / 1000),
                other => other.to_string(),
            };
            record.push("ttl", Value::string(text, span));
        }
    }
    if shape.timestamp {
        record.push("timestamp", timestamp_value(frame.id.timestamp(), span));
    }
    Value::record(record, span)
}

/// A millisecond time as a Nushell date (UTC).
pub fn timestamp_value(ms: u64, span: Span) -> Value {
    match chrono_from_rfc3339(&rfc3339_from_ms(ms)) {
        Some(date) => Value::date(date, span),
        None => Value::nothing(span),
    }
}

fn chrono_from_rfc3339(text: &str) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    chrono::DateTime::parse_from_rfc3339(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_keeps_key_order() {
        let json: Json = serde_json::from_str(r#"{"b":1,"a":[true,null,"x",1.5]}"#).unwrap();
        let value = from_json(&json, Span::unknown());
        assert_eq!(
            to_json(&value).to_string(),
            r#"{"b":1,"a":[true,null,"x",1.5]}"#
        );
    }
}
