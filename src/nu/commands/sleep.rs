//! `sleep <duration> ...rest`: wait, interruptibly (a `term`, a shutdown
//! or a client that leaves ends it at once). Nushell's own `sleep` comes
//! with its `os` commands; this one has its signature and is always
//! there.

use std::time::{Duration, Instant};

use nu_engine::command_prelude::*;

#[derive(Clone)]
pub struct Sleep;

impl Command for Sleep {
    fn name(&self) -> &str {
        "sleep"
    }

    fn description(&self) -> &str {
        "Delay for a specified amount of time; interrupted by term and shutdown."
    }

    fn signature(&self) -> Signature {
        Signature::build("sleep")
            .input_output_types(vec![(Type::Any, Type::Nothing)])
            .required("duration", SyntaxShape::Duration, "Time to sleep.")
            .rest("rest", SyntaxShape::Duration, "Additional time to sleep.")
            .category(Category::Platform)
    }

    fn run(
        &self,
        engine_state: &EngineState,
        stack: &mut Stack,
        call: &Call,
        _input: PipelineData,
    ) -> Result<PipelineData, ShellError> {
        let first: i64 = call.req(engine_state, stack, 0)?;
        let rest: Vec<i64> = call.rest(engine_state, stack, 1)?;
        let nanos = std::iter::once(first)
            .chain(rest)
            .map(|n| n.max(0) as u64)
            .fold(0u64, u64::saturating_add);
        // Too far to represent: until interrupted.
        let until = Instant::now().checked_add(Duration::from_nanos(nanos));
        loop {
            engine_state.signals().check(&call.head)?;
            let left = until.map_or(Duration::MAX, |until| {
                until.saturating_duration_since(Instant::now())
            });
            if left.is_zero() {
                return Ok(PipelineData::empty());
            }
            std::thread::sleep(left.min(Duration::from_millis(20)));
        }
    }
}
