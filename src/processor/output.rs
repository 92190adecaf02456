//! Turning a processor's results into frames.
//!
//! An output is a draft and, when its payload is stored, that payload
//! (`Output`). `send` queues the frame without waiting
//! (`Store::append_in_background`); the store keeps the payload pinned
//! until the writer answers: refused, or never sent, its file goes again.

use serde_json::{Map, Value as Json};

use nu_protocol::Value;

use super::script::{cas_bytes, ReturnOptions};
use crate::nu::memory;
use crate::nu::value::to_json;
use crate::store::{Draft, Store, StoredPayload};

/// A frame to append and its stored payload, if any.
pub struct Output {
    pub draft: Draft,
    pub payload: Option<StoredPayload>,
}

impl From<Draft> for Output {
    fn from(draft: Draft) -> Output {
        Output {
            draft,
            payload: None,
        }
    }
}

/// The frame for one output value: with `target: "cas"` the value is the
/// payload; otherwise it must be a record, which becomes the meta. Either
/// way `ids` (the processor's `*_id` keys) are added to the meta.
pub fn draft(
    store: &Store,
    topic: String,
    value: &Value,
    options: &ReturnOptions,
    ids: &Map<String, Json>,
) -> Result<Output, String> {
    let mut meta = Map::new();
    let mut payload = None;
    if options.to_cas {
        let bytes = cas_bytes(value, options.raw_strings);
        let len = bytes.len() as u64;
        let stored = store
            .put_payload(&mut bytes.as_slice(), Some(len), u64::MAX, false)
            .map_err(|e| e.to_string())?;
        payload = Some(stored);
    } else {
        match to_json(value) {
            Json::Object(fields) => meta = fields,
            _ => {
                return Err(format!(
                    "output must be a record (or set return_options.target to \"cas\"): got {}",
                    value.get_type()
                ))
            }
        }
    }
    if memory::over_cap() {
        // The JSON was cut short (`to_json`).
        return Err(crate::nu::value::OVER_CAP.into());
    }
    for (key, value) in ids {
        meta.insert(key.clone(), value.clone());
    }
    let draft = Draft::new(topic)
        .meta(Some(Json::Object(meta)))
        .ttl(options.ttl);
    Ok(Output { draft, payload })
}

/// A frame whose payload is `bytes` (a byte stream's chunk).
pub fn bytes_draft(
    store: &Store,
    topic: String,
    bytes: &[u8],
    options: &ReturnOptions,
    ids: &Map<String, Json>,
) -> Result<Output, String> {
    let stored = store
        .put_payload(&mut &bytes[..], Some(bytes.len() as u64), u64::MAX, false)
        .map_err(|e| e.to_string())?;
    let draft = Draft::new(topic)
        .meta(Some(Json::Object(ids.clone())))
        .ttl(options.ttl);
    Ok(Output {
        draft,
        payload: Some(stored),
    })
}

/// Queues a frame behind the processor's earlier ones, without waiting
/// for it to be synced (the writer keeps the order); its payload stays
/// pinned until the writer answers.
pub fn send(store: &Store, output: impl Into<Output>) {
    let Output { draft, payload } = output.into();
    store.append_in_background(draft, payload);
}

/// Adds the `*_id` keys to a buffered `.append`'s meta.
pub fn tag(mut draft: Draft, ids: &Map<String, Json>) -> Draft {
    let mut meta = match draft.meta.take() {
        Some(Json::Object(meta)) => meta,
        _ => Map::new(),
    };
    for (key, value) in ids {
        meta.insert(key.clone(), value.clone());
    }
    draft.meta = Some(Json::Object(meta));
    draft
}
