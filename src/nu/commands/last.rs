//! `.last [topic] [count] [--follow]`: the newest frame(s). Nothing found
//! is nothing; exactly one frame is a record (even when more were asked
//! for, as in cross.stream); several are a list.

use std::ops::Bound;

use nu_engine::command_prelude::*;

use super::cat::{topic_flag, FrameRecords};
use super::store_error;
use crate::nu::value::{frame_record, FrameShape};
use crate::store::Store;
use crate::store::{Follow, ReadOptions, Reader};

#[derive(Clone)]
pub struct Last(pub Store);

impl Command for Last {
    fn name(&self) -> &str {
        ".last"
    }

    fn description(&self) -> &str {
        "The newest frame(s), optionally of some topics."
    }

    fn signature(&self) -> Signature {
        Signature::build(".last")
            .input_output_types(vec![(Type::Nothing, Type::Any)])
            .optional(
                "topic",
                SyntaxShape::Any,
                "topics (string or list), or the count",
            )
            .optional("count", SyntaxShape::Int, "how many")
            .switch("follow", "then keep reading new frames", Some('f'))
            .switch(
                "with-timestamp",
                "add each frame's time as `timestamp`",
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
        let first: Option<Value> = call.opt(engine_state, stack, 0)?;
        let second: Option<i64> = call.opt(engine_state, stack, 1)?;
        // A number (or numeric string) alone is the count.
        let (topic, count) = match (first, second) {
            (Some(Value::Int { val, .. }), None) => (None, val),
            (Some(Value::String { val, .. }), None) if val.parse::<i64>().is_ok() => {
                (None, val.parse::<i64>().unwrap_or(1))
            }
            (topic, count) => (topic, count.unwrap_or(1)),
        };
        let filter = topic_flag(topic)?;
        let count = count.max(0) as u64;
        let shape = FrameShape {
            ttl: true,
            timestamp: call.has_flag(engine_state, stack, "with-timestamp")?,
        };
        if call.has_flag(engine_state, stack, "follow")? {
            let options = ReadOptions {
                follow: Follow::On,
                last: Some(count),
                topic: filter,
                ..ReadOptions::default()
            };
            let signals = engine_state.signals().clone();
            let frames = FrameRecords::new(
                Reader::new(self.0.clone(), options),
                shape,
                span,
                signals.clone(),
            );
            return Ok(PipelineData::list_stream(
                nu_protocol::ListStream::new(frames, span, signals),
                None,
            ));
        }
        let frames = self
            .0
            .last_n(&filter, count as usize, Bound::Unbounded)
            .map_err(|e| store_error(e, span))?;
        let mut records = Vec::with_capacity(frames.len());
        for raw in &frames {
            let frame = raw.parse().map_err(|e| store_error(e, span))?;
            records.push(frame_record(&frame, shape, span));
        }
        Ok(match records.len() {
            0 => PipelineData::empty(),
            1 => records.remove(0).into_pipeline_data(),
            _ => Value::list(records, span).into_pipeline_data(),
        })
    }
}
