//! `.import`: store a frame (a record or its JSON text) verbatim.

use nu_engine::command_prelude::*;

use super::{generic, json_of, store_error};
use crate::nu::value::{frame_record, FrameShape};
use crate::store::{Frame, Store};

#[derive(Clone)]
pub struct Import(pub Store);

impl Command for Import {
    fn name(&self) -> &str {
        ".import"
    }

    fn description(&self) -> &str {
        "Store a frame exactly as given (id, hash and ttl kept)."
    }

    fn signature(&self) -> Signature {
        Signature::build(".import")
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
        let json = match input.into_value(span)? {
            Value::String { val, .. } => val,
            value => json_of(&value, span)?.to_string(),
        };
        let frame = Frame::from_json(json.as_bytes())
            .map_err(|e| generic("Invalid frame JSON", e, span))?;
        let frame = self.0.import(frame).map_err(|e| store_error(e, span))?;
        let shape = FrameShape {
            ttl: true,
            timestamp: false,
        };
        Ok(frame_record(&frame, shape, span).into_pipeline_data())
    }
}
