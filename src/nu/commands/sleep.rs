//! `.sleep <duration>`: wait, interruptibly (a `term` ends it at once).

use std::time::{Duration, Instant};

use nu_engine::command_prelude::*;

#[derive(Clone)]
pub struct Sleep;

impl Command for Sleep {
    fn name(&self) -> &str {
        ".sleep"
    }

    fn description(&self) -> &str {
        "Wait for a while; interrupted by term and shutdown."
    }

    fn signature(&self) -> Signature {
        Signature::build(".sleep")
            .input_output_types(vec![(Type::Any, Type::Nothing)])
            .required("duration", SyntaxShape::Duration, "how long")
            .category(Category::Custom("xs".into()))
    }

    fn run(
        &self,
        engine_state: &EngineState,
        stack: &mut Stack,
        call: &Call,
        _input: PipelineData,
    ) -> Result<PipelineData, ShellError> {
        let nanos: i64 = call.req(engine_state, stack, 0)?;
        let until = Instant::now() + Duration::from_nanos(nanos.max(0) as u64);
        loop {
            engine_state.signals().check(&call.head)?;
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(PipelineData::empty());
            }
            std::thread::sleep(left.min(Duration::from_millis(20)));
        }
    }
}
