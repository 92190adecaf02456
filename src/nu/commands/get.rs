//! `.get <id>`: one frame.

use nu_engine::command_prelude::*;

use super::{generic, store_error};
use crate::nu::value::{frame_record, FrameShape};
use crate::store::id::parse_id;
use crate::store::Store;

#[derive(Clone)]
pub struct Get(pub Store);

impl Command for Get {
    fn name(&self) -> &str {
        ".get"
    }

    fn description(&self) -> &str {
        "Get a frame by its id."
    }

    fn signature(&self) -> Signature {
        Signature::build(".get")
            .input_output_types(vec![(Type::Nothing, Type::Any)])
            .required("id", SyntaxShape::String, "the frame's id")
            .switch(
                "with-timestamp",
                "add the frame's time as `timestamp`",
                None,
            )
            .category(Category::Custom("xs".into()))
    }

    fn run(
        &self,
        engine_state: &EngineState,
        stack: &mut Stack,
        call: &Call,
        _input: PipelineData,
    ) -> Result<PipelineData, ShellError> {
        let span = call.head;
        let id: String = call.req(engine_state, stack, 0)?;
        let id = parse_id(&id).map_err(|e| generic("invalid id", e, span))?;
        let raw = self
            .0
            .get(id)
            .map_err(|e| store_error(e, span))?
            .ok_or_else(|| generic("Frame not found", "Frame not found", span))?;
        let frame = raw.parse().map_err(|e| store_error(e, span))?;
        let shape = FrameShape {
            ttl: true,
            timestamp: call.has_flag(engine_state, stack, "with-timestamp")?,
        };
        Ok(frame_record(&frame, shape, span).into_pipeline_data())
    }
}
