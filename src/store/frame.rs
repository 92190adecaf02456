//! The frame: one entry of the stream, and its JSON form.

use serde_json::{Map, Value};

use super::id::{parse_id, rfc3339_from_ms, Id};
use super::topic::validate_topic;
use super::ttl::Ttl;
use super::StoreError;

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

/// A frame as read from the store: its id and its JSON, exactly the stored
/// bytes (so a store written by cross.stream is served byte for byte).
#[derive(Debug, Clone, PartialEq)]
pub struct RawFrame {
    pub id: Id,
    pub json: Vec<u8>,
}

impl RawFrame {
    /// Parses the JSON into a `Frame`.
    pub fn parse(&self) -> Result<Frame, StoreError> {
        Frame::from_json(&self.json).map_err(|e| {
            StoreError::Storage(format!("stored frame {} is unreadable: {e}", self.id))
        })
    }

    /// The topic, read off the front of the JSON without parsing the rest
    /// (every frame's JSON starts with it); `None` when it is not there
    /// plainly, without escapes: then parse.
    pub fn quick_topic(&self) -> Option<&str> {
        const MARK: &[u8] = b"{\"topic\":\"";
        let rest = self.json.strip_prefix(MARK)?;
        let end = rest.iter().position(|b| *b == b'"' || *b == b'\\')?;
        if rest[end] != b'"' {
            return None;
        }
        std::str::from_utf8(&rest[..end]).ok()
    }

    /// Whether a `time:` ttl has run out. Cheap for every other frame: it
    /// reads the JSON backwards from its end, where `ttl`, the last key
    /// (ours and cross.stream's), ends as `"ttl":"time:<digits>"}`; any
    /// other ending is told apart by its last two bytes. Every replayed
    /// frame passes here.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        const MARK: &[u8] = b"\"ttl\":\"time:";
        let json = self.json.trim_ascii_end();
        let Some(rest) = json.strip_suffix(b"\"}") else {
            return false;
        };
        let digits = rest.iter().rev().take_while(|b| b.is_ascii_digit()).count();
        let (rest, digits) = rest.split_at(rest.len() - digits);
        if digits.is_empty() || !rest.ends_with(MARK) {
            return false;
        }
        let ms = std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse::<u64>().ok());
        match ms {
            Some(ms) => Ttl::Time(ms).is_expired(self.id.timestamp(), now_ms),
            None => false,
        }
    }

    /// The JSON with `timestamp` added last when asked for.
    pub fn render(&self, with_timestamp: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.json.len() + 48);
        self.render_into(&mut out, with_timestamp);
        out
    }

    /// As `render`, appended to `out` (no copy in between).
    pub fn render_into(&self, out: &mut Vec<u8>, with_timestamp: bool) {
        if !with_timestamp || self.json.last() != Some(&b'}') {
            out.extend_from_slice(&self.json);
            return;
        }
        out.extend_from_slice(&self.json[..self.json.len() - 1]);
        out.extend_from_slice(b",\"timestamp\":\"");
        out.extend_from_slice(rfc3339_from_ms(self.id.timestamp()).as_bytes());
        out.extend_from_slice(b"\"}");
    }
}

/// A boxed iterator over frames, oldest first or newest first.
pub type FrameIter = Box<dyn Iterator<Item = Result<RawFrame, StoreError>> + Send>;

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: &str) -> RawFrame {
        let frame = Frame::from_json(json.as_bytes()).unwrap();
        RawFrame {
            id: frame.id,
            json: json.as_bytes().to_vec(),
        }
    }

    #[test]
    fn expiry_reads_the_ttl_at_the_end_only() {
        let created = raw(
            r#"{"topic":"a","id":"03hb7oay5warmpyenes4bmsxk","hash":null,"meta":null,"ttl":"time:100"}"#,
        );
        let at = created.id.timestamp();
        assert!(!created.is_expired(at + 99));
        assert!(created.is_expired(at + 100));
        let decoy = raw(
            r#"{"topic":"a","id":"03hb7oay5warmpyenes4bmsxk","hash":null,"meta":{"note":"\"ttl\":\"time:1\" is not this frame's ttl, it is a string in meta"},"ttl":"forever"}"#,
        );
        assert!(!decoy.is_expired(u64::MAX));
        let spaced = raw(
            r#"{"topic":"a","id":"03hb7oay5warmpyenes4bmsxk","hash":null,"meta":null,"ttl":"time:100"}
"#,
        );
        assert!(spaced.is_expired(at + 100));
        let last = raw(
            r#"{"topic":"a","id":"03hb7oay5warmpyenes4bmsxk","hash":null,"meta":null,"ttl":"last:100"}"#,
        );
        assert!(!last.is_expired(u64::MAX));
    }

    #[test]
    fn timestamp_goes_last() {
        let frame = raw(
            r#"{"topic":"a","id":"03hb7oay5warmpyenes4bmsxk","hash":null,"meta":null,"ttl":null}"#,
        );
        let mut out = Vec::new();
        frame.render_into(&mut out, true);
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with("+00:00\"}"), "{text}");
        assert_eq!(frame.render(false), frame.json);
    }

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
