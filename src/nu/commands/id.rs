//! `.id`, `.id unpack`, `.id pack`: SCRU128 ids.

use nu_engine::command_prelude::*;

use super::generic;
use crate::nu::value::timestamp_value;
use crate::store::id::{parse_id, Id};

#[derive(Clone)]
pub struct IdNew;

impl Command for IdNew {
    fn name(&self) -> &str {
        ".id"
    }

    fn description(&self) -> &str {
        "A new SCRU128 id."
    }

    fn signature(&self) -> Signature {
        Signature::build(".id")
            .input_output_types(vec![(Type::Nothing, Type::String)])
            .category(Category::Custom("xs".into()))
    }

    fn run(
        &self,
        _engine_state: &EngineState,
        _stack: &mut Stack,
        call: &Call,
        _input: PipelineData,
    ) -> Result<PipelineData, ShellError> {
        Ok(Value::string(scru128::new().to_string(), call.head).into_pipeline_data())
    }
}

#[derive(Clone)]
pub struct IdUnpack;

impl Command for IdUnpack {
    fn name(&self) -> &str {
        ".id unpack"
    }

    fn description(&self) -> &str {
        "An id's parts: {ts_ms, when, counter_hi, counter_lo, node}."
    }

    fn signature(&self) -> Signature {
        Signature::build(".id unpack")
            .input_output_types(vec![(Type::Any, Type::Any)])
            .optional("id", SyntaxShape::String, "the id (or piped in)")
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
        let text: String = match call.opt(engine_state, stack, 0)? {
            Some(text) => text,
            None => input.into_value(span)?.coerce_into_string()?,
        };
        let id = parse_id(text.trim()).map_err(|e| generic("invalid id", e, span))?;
        Ok(Value::record(
            record! {
                "ts_ms" => Value::int(id.timestamp() as i64, span),
                "when" => timestamp_value(id.timestamp(), span),
                "counter_hi" => Value::int(i64::from(id.counter_hi()), span),
                "counter_lo" => Value::int(i64::from(id.counter_lo()), span),
                "node" => Value::string(format!("{:08x}", id.entropy()), span),
            },
            span,
        )
        .into_pipeline_data())
    }
}

#[derive(Clone)]
pub struct IdPack;

impl Command for IdPack {
    fn name(&self) -> &str {
        ".id pack"
    }

    fn description(&self) -> &str {
        "An id from its parts (the record `.id unpack` gives; `when` is ignored)."
    }

    fn signature(&self) -> Signature {
        Signature::build(".id pack")
            .input_output_types(vec![(Type::Any, Type::String)])
            .optional("parts", SyntaxShape::Any, "the parts (or piped in)")
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
        let parts: Value = match call.opt(engine_state, stack, 0)? {
            Some(parts) => parts,
            None => input.into_value(span)?,
        };
        let record = parts.as_record()?;
        let int = |name: &str| -> Result<i64, ShellError> {
            record
                .get(name)
                .ok_or_else(|| generic("missing field", format!("missing `{name}`"), span))?
                .as_int()
        };
        let node = match record.get("node") {
            Some(Value::String { val, .. }) => u32::from_str_radix(val, 16)
                .map_err(|e| generic("invalid node", e.to_string(), span))?,
            _ => return Err(generic("missing field", "missing `node`", span)),
        };
        let id = Id::try_from_fields(
            int("ts_ms")? as u64,
            int("counter_hi")? as u32,
            int("counter_lo")? as u32,
            node,
        )
        .map_err(|_| generic("invalid id parts", "a field is out of range", span))?;
        Ok(Value::string(id.to_string(), span).into_pipeline_data())
    }
}
