//! `.append <topic> [--meta <record>] [--ttl <ttl>] [--with-timestamp]
//! [--expect-last <id|none>] [--idempotency-key <key>]`:
//! the pipeline input becomes the payload (a string as UTF-8, binary as is,
//! a byte stream read through, anything else as JSON text; nothing means no
//! payload). Meta is `$env.XS_APPEND_META` (set per processor) merged with
//! `--meta`, always a record. `--expect-last` appends only if the topic's
//! newest frame is that id (else an error naming the actual one);
//! `--idempotency-key` returns the original frame for a key seen within the
//! dedup window. Neither is taken by an actor's `.append`, whose frames
//! are written after its closure returns, with nobody to hear a refusal.

use std::sync::{Arc, Mutex};

use nu_engine::command_prelude::*;

use super::{generic, json_of, store_error};
use crate::nu::value::{frame_record, FrameShape};
use crate::store::topic::validate_topic;
use crate::store::{
    validate_idempotency_key, Draft, ExpectLast, Store, StoreError, StoredPayload, Ttl,
};

/// Where `.append` sends its frames.
#[derive(Clone)]
pub enum AppendMode {
    /// Straight to the store; returns the frame.
    Direct,
    /// Into a buffer the caller empties after the closure returns (actors),
    /// each draft with its stored payload; returns nothing.
    Buffered(AppendBuffer),
}

/// An actor's buffered appends: each draft with its stored payload (kept
/// pinned until its frame is stored).
pub type AppendBuffer = Arc<Mutex<Vec<(Draft, Option<StoredPayload>)>>>;

#[derive(Clone)]
pub struct Append {
    store: Store,
    mode: AppendMode,
}

impl Append {
    pub fn new(store: Store, mode: AppendMode) -> Append {
        Append { store, mode }
    }
}

impl Command for Append {
    fn name(&self) -> &str {
        ".append"
    }

    fn description(&self) -> &str {
        "Append a frame to the stream; the input is its payload."
    }

    fn signature(&self) -> Signature {
        Signature::build(".append")
            .input_output_types(vec![(Type::Any, Type::Any)])
            .required("topic", SyntaxShape::String, "the topic to append to")
            .named("meta", SyntaxShape::Any, "metadata for the frame", None)
            .named(
                "ttl",
                SyntaxShape::String,
                "forever, ephemeral, time:<ms> or last:<n>",
                None,
            )
            .switch(
                "with-timestamp",
                "add the frame's time as `timestamp`",
                None,
            )
            .named(
                "expect-last",
                SyntaxShape::String,
                "append only if the topic's newest frame is this id (none: no frame)",
                None,
            )
            .named(
                "idempotency-key",
                SyntaxShape::String,
                "append once per key within the dedup window; a repeat returns the original frame",
                None,
            )
            .category(Category::Custom("xs".into()))
    }

    fn run(
        &self,
        engine_state: &EngineState,
        stack: &mut Stack,
        call: &Call,
        input: PipelineData,
    ) -> Result<PipelineData, ShellError> {
        let span = call.head;
        let topic: String = call.req(engine_state, stack, 0)?;
        validate_topic(&topic).map_err(|e| generic("invalid topic", e, span))?;
        let ttl = match call.get_flag::<String>(engine_state, stack, "ttl")? {
            Some(text) => Some(Ttl::parse(&text).map_err(|e| generic("invalid ttl", e, span))?),
            None => None,
        };
        let expect_last = match call.get_flag::<String>(engine_state, stack, "expect-last")? {
            Some(text) => Some(
                ExpectLast::parse(&text).map_err(|e| generic("invalid --expect-last", e, span))?,
            ),
            None => None,
        };
        let idempotency_key = call.get_flag::<String>(engine_state, stack, "idempotency-key")?;
        if let Some(key) = &idempotency_key {
            validate_idempotency_key(key)
                .map_err(|e| generic("invalid --idempotency-key", e, span))?;
        }
        let conditional = expect_last.is_some() || idempotency_key.is_some();
        if conditional && matches!(self.mode, AppendMode::Buffered(_)) {
            return Err(generic(
                "not in an actor",
                "--expect-last and --idempotency-key are not taken by an actor's .append: \
                 its frames are written after the closure returns",
                span,
            ));
        }
        let meta = merged_meta(engine_state, stack, call)?;
        let payload = input_bytes(input, span)?;
        let with_timestamp = call.has_flag(engine_state, stack, "with-timestamp")?;
        let ephemeral = ttl == Some(Ttl::Ephemeral);
        let stored = match payload {
            Some(bytes) => {
                let len = bytes.len() as u64;
                let stored = self
                    .store
                    .put_payload(&mut bytes.as_slice(), Some(len), u64::MAX, ephemeral)
                    .map_err(|e| store_error(e, span))?;
                Some(stored)
            }
            None => None,
        };
        let draft = Draft::new(topic)
            .meta(Some(meta))
            .ttl(ttl)
            .expect_last(expect_last)
            .idempotency_key(idempotency_key);
        match &self.mode {
            AppendMode::Buffered(buffer) => {
                // The actor's frames land right after its closure returns;
                // the payload goes with its frame (dropped unsent, its
                // file goes too).
                buffer
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((draft, stored));
                Ok(PipelineData::empty())
            }
            AppendMode::Direct => {
                // Refused, the payload file goes again (`PayloadPin`).
                let appended = self
                    .store
                    .append_checked(draft, stored)
                    .map_err(|e| match e {
                        StoreError::NotLast { .. } => generic("not appended", e.to_string(), span),
                        e => store_error(e, span),
                    })?;
                let frame = appended.frame;
                let shape = FrameShape {
                    ttl: true,
                    timestamp: with_timestamp,
                };
                Ok(frame_record(&frame, shape, span).into_pipeline_data())
            }
        }
    }
}

/// `$env.XS_APPEND_META` (a JSON object string) merged with `--meta`.
fn merged_meta(
    engine_state: &EngineState,
    stack: &mut Stack,
    call: &Call,
) -> Result<serde_json::Value, ShellError> {
    let mut meta = serde_json::Map::new();
    if let Some(Value::String { val, .. }) = stack.get_env_var(engine_state, "XS_APPEND_META") {
        if let Ok(serde_json::Value::Object(base)) = serde_json::from_str(val) {
            meta = base;
        }
    }
    if let Some(value) = call.get_flag::<Value>(engine_state, stack, "meta")? {
        if let serde_json::Value::Object(given) = json_of(&value, call.head)? {
            for (key, value) in given {
                meta.insert(key, value);
            }
        }
    }
    Ok(serde_json::Value::Object(meta))
}

/// The payload bytes of a pipeline input; `None` for nothing.
pub fn input_bytes(input: PipelineData, span: Span) -> Result<Option<Vec<u8>>, ShellError> {
    match input {
        PipelineData::Empty => Ok(None),
        PipelineData::Value(Value::Nothing { .. }, _) => Ok(None),
        PipelineData::Value(Value::String { val, .. }, _) => Ok(Some(val.into_bytes())),
        PipelineData::Value(Value::Binary { val, .. }, _) => Ok(Some(val.to_vec())),
        PipelineData::Value(value, _) => Ok(Some(json_of(&value, span)?.to_string().into_bytes())),
        PipelineData::ByteStream(stream, _) => stream.into_bytes().map(Some),
        PipelineData::ListStream(..) => Err(generic(
            "unsupported input",
            "a list stream cannot be a payload: collect it first",
            span,
        )),
    }
}
