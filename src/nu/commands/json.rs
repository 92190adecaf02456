//! `.from-json` and `.to-json`: JSON text <-> values, for payloads and
//! meta in a core-only engine.

use nu_engine::command_prelude::*;

use super::{generic, json_of};
use crate::nu::value::from_json;

#[derive(Clone)]
pub struct FromJson;

impl Command for FromJson {
    fn name(&self) -> &str {
        ".from-json"
    }

    fn description(&self) -> &str {
        "Parse JSON text into a value."
    }

    fn signature(&self) -> Signature {
        Signature::build(".from-json")
            .input_output_types(vec![(Type::Any, Type::Any)])
            .category(Category::Custom("xs".into()))
    }

    fn run(
        &self,
        _engine_state: &EngineState,
        _stack: &mut Stack,
        call: &Call,
        input: PipelineData,
    ) -> Result<PipelineData, ShellError> {
        let span = call.head;
        let text = input.into_value(span)?.coerce_into_string()?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| generic("invalid JSON", e.to_string(), span))?;
        Ok(from_json(&json, span).into_pipeline_data())
    }
}

#[derive(Clone)]
pub struct ToJson;

impl Command for ToJson {
    fn name(&self) -> &str {
        ".to-json"
    }

    fn description(&self) -> &str {
        "Render a value as JSON text."
    }

    fn signature(&self) -> Signature {
        Signature::build(".to-json")
            .input_output_types(vec![(Type::Any, Type::String)])
            .category(Category::Custom("xs".into()))
    }

    fn run(
        &self,
        _engine_state: &EngineState,
        _stack: &mut Stack,
        call: &Call,
        input: PipelineData,
    ) -> Result<PipelineData, ShellError> {
        let span = call.head;
        let value = input.into_value(span)?;
        Ok(Value::string(json_of(&value, span)?.to_string(), span).into_pipeline_data())
    }
}
