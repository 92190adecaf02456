//! `.kv get|set|del|ls`: the k/v store from Nushell (SPEC §7.3). Values
//! are JSON, so they come back as Nushell values; `view.` keys belong to
//! views and are read-only here as over HTTP.

use nu_engine::command_prelude::*;

use super::{generic, json_of, store_error};
use crate::nu::value::from_json;
use crate::store::reserved_key;
use crate::store::Store;

fn check_writable(key: &str, span: Span) -> Result<(), ShellError> {
    match reserved_key(key) {
        Some(why) => Err(generic("read-only key", why, span)),
        None => Ok(()),
    }
}

fn signature(name: &str, key: bool) -> Signature {
    let signature = Signature::build(name)
        .input_output_types(vec![(Type::Any, Type::Any)])
        .category(Category::Custom("xs".into()));
    if key {
        signature.required("key", SyntaxShape::String, "the key")
    } else {
        signature.optional(
            "prefix",
            SyntaxShape::String,
            "only keys starting with this",
        )
    }
}

/// `.kv get <key>`: the value, or nothing when absent.
#[derive(Clone)]
pub struct KvGet(pub Store);

impl Command for KvGet {
    fn name(&self) -> &str {
        ".kv get"
    }

    fn description(&self) -> &str {
        "A k/v value (nothing when the key is absent)."
    }

    fn signature(&self) -> Signature {
        signature(".kv get", true)
    }

    fn run(
        &self,
        engine_state: &EngineState,
        stack: &mut Stack,
        call: &Call,
        _input: PipelineData,
    ) -> Result<PipelineData, ShellError> {
        let span = call.head;
        let key: String = call.req(engine_state, stack, 0)?;
        let Some(bytes) = self.0.kv_get(&key).map_err(|e| store_error(e, span))? else {
            return Ok(PipelineData::empty());
        };
        let json: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| generic("invalid JSON", e.to_string(), span))?;
        Ok(from_json(&json, span).into_pipeline_data())
    }
}

/// `<value> | .kv set <key>`: stores the input as JSON.
#[derive(Clone)]
pub struct KvSet(pub Store);

impl Command for KvSet {
    fn name(&self) -> &str {
        ".kv set"
    }

    fn description(&self) -> &str {
        "Set a k/v value to the input."
    }

    fn signature(&self) -> Signature {
        signature(".kv set", true)
    }

    fn run(
        &self,
        engine_state: &EngineState,
        stack: &mut Stack,
        call: &Call,
        input: PipelineData,
    ) -> Result<PipelineData, ShellError> {
        let span = call.head;
        let key: String = call.req(engine_state, stack, 0)?;
        check_writable(&key, span)?;
        let value = json_of(&input.into_value(span)?, span)?;
        self.0
            .kv_set(&key, &value)
            .map_err(|e| store_error(e, span))?;
        Ok(PipelineData::empty())
    }
}

/// `.kv del <key>`.
#[derive(Clone)]
pub struct KvDel(pub Store);

impl Command for KvDel {
    fn name(&self) -> &str {
        ".kv del"
    }

    fn description(&self) -> &str {
        "Delete a k/v key."
    }

    fn signature(&self) -> Signature {
        signature(".kv del", true)
    }

    fn run(
        &self,
        engine_state: &EngineState,
        stack: &mut Stack,
        call: &Call,
        _input: PipelineData,
    ) -> Result<PipelineData, ShellError> {
        let span = call.head;
        let key: String = call.req(engine_state, stack, 0)?;
        check_writable(&key, span)?;
        self.0.kv_delete(&key).map_err(|e| store_error(e, span))?;
        Ok(PipelineData::empty())
    }
}

/// `.kv ls [prefix]`: a list of `{key, value}` records in key order.
#[derive(Clone)]
pub struct KvLs(pub Store);

impl Command for KvLs {
    fn name(&self) -> &str {
        ".kv ls"
    }

    fn description(&self) -> &str {
        "The k/v entries, in key order: {key, value} records."
    }

    fn signature(&self) -> Signature {
        signature(".kv ls", false)
    }

    fn run(
        &self,
        engine_state: &EngineState,
        stack: &mut Stack,
        call: &Call,
        _input: PipelineData,
    ) -> Result<PipelineData, ShellError> {
        let span = call.head;
        let prefix: Option<String> = call.opt(engine_state, stack, 0)?;
        let entries = self
            .0
            .kv_list(prefix.as_deref().unwrap_or(""))
            .map_err(|e| store_error(e, span))?;
        let rows = entries
            .into_iter()
            .map(|(key, bytes)| {
                let value = serde_json::from_slice::<serde_json::Value>(&bytes)
                    .map(|json| from_json(&json, span))
                    .unwrap_or_else(|_| Value::nothing(span));
                Value::record(
                    record! { "key" => Value::string(key, span), "value" => value },
                    span,
                )
            })
            .collect();
        Ok(Value::list(rows, span).into_pipeline_data())
    }
}
