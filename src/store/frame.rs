//! The frame: one entry of the stream, and its JSON form.

use serde_json::{Map, Value};

use super::id::{parse_id, rfc3339_from_ms, Id};
use super::topic::validate_topic;
use super::ttl::Ttl;

/// One entry of the stream. The payload itself lives in CAS under `hash`.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub topic: String,
    pub id: Id,
    /// SRI of the payload (`sha256-<base64>`), `None` for no payload.
    pub hash: Option<String>,
    pub meta: Option<Value>,
    /// `None` is "not set" (behaves as forever), as in frames made by the
    /// server itself; it is written as `null`.
    pub ttl: Option<Ttl>,
}

impl Frame {
    /// The JSON object with keys `topic, id, hash, meta, ttl` in that order,
    /// all present, `null` when absent — the wire and on-disk form.
    pub fn to_json(&self) -> String {
        self.render(false)
    }

    /// As `to_json`, with `timestamp` last when asked for.
    pub fn render(&self, with_timestamp: bool) -> String {
        let mut out = String::with_capacity(160);
        out.push_str("{\"topic\":");
        push_json_string(&mut out, &self.topic);
        out.push_str(",\"id\":\"");
        out.push_str(&self.id.to_string());
        out.push_str("\",\"hash\":");
        match &self.hash {
            Some(hash) => push_json_string(&mut out, hash),
            None => out.push_str("null"),
        }
        out.push_str(",\"meta\":");
        match &self.meta {
            Some(meta) => out.push_str(&meta.to_string()),
            None => out.push_str("null"),
        }
        out.push_str(",\"ttl\":");
        match &self.ttl {
            Some(ttl) => {
                out.push('"');
                out.push_str(&ttl.to_string());
                out.push('"');
            }
            None => out.push_str("null"),
        }
        if with_timestamp {
            out.push_str(",\"timestamp\":\"");
            out.push_str(&rfc3339_from_ms(self.id.timestamp()));
            out.push('"');
        }
        out.push('}');
        out
    }

    /// Parses a frame as stored or imported: `topic` and `id` required,
    /// `hash`/`meta`/`ttl` optional or null, unknown keys ignored, the topic
    /// checked against the rules.
    pub fn from_json(text: &[u8]) -> Result<Frame, String> {
        let value: Value = serde_json::from_slice(text).map_err(|e| e.to_string())?;
        let Value::Object(map) = value else {
            return Err("expected a JSON object".into());
        };
        Frame::from_map(map)
    }

    fn from_map(mut map: Map<String, Value>) -> Result<Frame, String> {
        let topic = match map.remove("topic") {
            Some(Value::String(topic)) => topic,
            Some(_) => return Err("invalid type: `topic` must be a string".into()),
            None => return Err("missing field `topic`".into()),
        };
        let id = match map.remove("id") {
            Some(Value::String(id)) => parse_id(&id)?,
            Some(_) => return Err("invalid type: `id` must be a string".into()),
            None => return Err("missing field `id`".into()),
        };
        let hash = match map.remove("hash") {
            Some(Value::String(hash)) => Some(hash),
            None | Some(Value::Null) => None,
            Some(_) => return Err("invalid type: `hash` must be a string or null".into()),
        };
        let meta = match map.remove("meta") {
            None | Some(Value::Null) => None,
            Some(meta) => Some(meta),
        };
        let ttl = match map.remove("ttl") {
            Some(Value::String(ttl)) => Some(Ttl::parse(&ttl)?),
            None | Some(Value::Null) => None,
            Some(_) => return Err("invalid type: `ttl` must be a string or null".into()),
        };
        validate_topic(&topic)?;
        Ok(Frame {
            topic,
            id,
            hash,
            meta,
            ttl,
        })
    }

    /// The ttl in force: unset counts as forever.
    pub fn effective_ttl(&self) -> Ttl {
        self.ttl.unwrap_or(Ttl::Forever)
    }

    /// Whether this frame has expired at `now_ms` (only `time:` frames do).
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.effective_ttl().is_expired(self.id.timestamp(), now_ms)
    }
}

fn push_json_string(out: &mut String, text: &str) {
    // serde_json's string escaping, without building a Value.
    out.push_str(&Value::String(text.to_string()).to_string());
}

/// A synthetic frame (`xs.threshold`, `xs.pulse`): fresh id, no payload,
/// ephemeral, never stored.
pub fn synthetic(topic: &str) -> Frame {
    Frame {
        topic: topic.to_string(),
        id: super::id::fresh_id(),
        hash: None,
        meta: None,
        ttl: Some(Ttl::Ephemeral),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_keeps_key_order_and_nulls() {
        let line = r#"{"topic":"note","id":"03hb7ob4f89a6rwghzgwu0myh","hash":"sha256-uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek=","meta":{"author":"ann","n":1},"ttl":"forever"}"#;
        let frame = Frame::from_json(line.as_bytes()).unwrap();
        assert_eq!(frame.to_json(), line);
        let bare = r#"{"topic":"xs.start","id":"03hb7oay5warmpyenes4bmsxk"}"#;
        assert_eq!(
            Frame::from_json(bare.as_bytes()).unwrap().to_json(),
            r#"{"topic":"xs.start","id":"03hb7oay5warmpyenes4bmsxk","hash":null,"meta":null,"ttl":null}"#
        );
    }

    #[test]
    fn import_requires_topic_and_id() {
        assert!(Frame::from_json(br#"{"id":"03hb7oay5warmpyenes4bmsxk"}"#)
            .unwrap_err()
            .contains("topic"));
        assert!(Frame::from_json(br#"{"topic":"a"}"#)
            .unwrap_err()
            .contains("id"));
        assert!(Frame::from_json(br#"{"topic":"a.","id":"03hb7oay5warmpyenes4bmsxk"}"#).is_err());
    }

    #[test]
    fn timestamp_is_last() {
        let frame = synthetic("xs.pulse");
        assert!(frame.render(true).contains(",\"timestamp\":\""));
        assert!(frame.render(true).ends_with("+00:00\"}"));
    }
}
