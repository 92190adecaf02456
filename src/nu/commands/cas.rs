//! `.cas <hash> [--json]`: a payload, as a string when it is UTF-8, else
//! binary; `--json` parses it into a value.

use nu_engine::command_prelude::*;

use super::{generic, store_error};
use crate::nu::value::from_json;
use crate::store::parse_sri;
use crate::store::Store;

#[derive(Clone)]
pub struct Cas(pub Store);

impl Command for Cas {
    fn name(&self) -> &str {
        ".cas"
    }

    fn description(&self) -> &str {
        "Read a payload from the content store by its hash."
    }

    fn signature(&self) -> Signature {
        Signature::build(".cas")
            .input_output_types(vec![(Type::Any, Type::Any)])
            .optional(
                "hash",
                SyntaxShape::Any,
                "the hash, or a frame record (its `hash`)",
            )
            .switch("json", "parse the payload as JSON", None)
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
        let arg: Option<Value> = call.opt(engine_state, stack, 0)?;
        let target = match arg {
            Some(value) => value,
            None => input.into_value(span)?,
        };
        let hash = match &target {
            Value::String { val, .. } => val.clone(),
            Value::Record { val, .. } => match val.get("hash") {
                Some(Value::String { val, .. }) => val.clone(),
                _ => return Ok(PipelineData::empty()),
            },
            Value::Nothing { .. } => return Ok(PipelineData::empty()),
            other => {
                return Err(generic(
                    "invalid hash",
                    format!("expected a hash string, got {}", other.get_type()),
                    span,
                ))
            }
        };
        let sri = parse_sri(&hash).map_err(|e| store_error(e, span))?;
        let bytes = self
            .0
            .read_payload(&sri)
            .map_err(|e| store_error(e, span))?
            .ok_or_else(|| generic("not found", format!("no content for {hash}"), span))?;
        if call.has_flag(engine_state, stack, "json")? {
            let json: serde_json::Value = serde_json::from_slice(&bytes)
                .map_err(|e| generic("invalid JSON", e.to_string(), span))?;
            return Ok(from_json(&json, span).into_pipeline_data());
        }
        Ok(match String::from_utf8(bytes) {
            Ok(text) => Value::string(text, span),
            Err(e) => Value::binary(e.into_bytes(), span),
        }
        .into_pipeline_data())
    }
}
