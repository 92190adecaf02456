//! `.cat`: the stream as a lazy list of frame records; with `--follow` it
//! goes on forever (with `xs.threshold` and `xs.pulse` records), until the
//! script is interrupted.

use std::time::Duration;

use nu_engine::command_prelude::*;

use super::{generic, store_error};
use crate::nu::value::{frame_record, FrameShape};
use crate::store::id::parse_id;
use crate::store::{Follow, ReadEvent, ReadOptions, Reader};
use crate::store::{Store, TopicFilter};

#[derive(Clone)]
pub struct Cat(pub Store);

impl Command for Cat {
    fn name(&self) -> &str {
        ".cat"
    }

    fn description(&self) -> &str {
        "Read frames from the stream, oldest first."
    }

    fn signature(&self) -> Signature {
        Signature::build(".cat")
            .input_output_types(vec![(Type::Nothing, Type::Any)])
            .switch("follow", "keep reading new frames", Some('f'))
            .named(
                "pulse",
                SyntaxShape::Int,
                "follow with an xs.pulse every <ms>",
                Some('p'),
            )
            .switch("new", "only frames appended from now on", Some('n'))
            .switch("detail", "include each frame's ttl", Some('d'))
            .named(
                "limit",
                SyntaxShape::Int,
                "stop after this many frames",
                None,
            )
            .named(
                "after",
                SyntaxShape::String,
                "start after this id",
                Some('a'),
            )
            .named("from", SyntaxShape::String, "start at this id", None)
            .named(
                "last",
                SyntaxShape::Int,
                "start with the newest <n> frames",
                None,
            )
            .named(
                "topic",
                SyntaxShape::Any,
                "topics: a string or a list",
                Some('T'),
            )
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
        let follow = match call.get_flag::<i64>(engine_state, stack, "pulse")? {
            Some(ms) => Follow::Pulse(ms.max(0) as u64),
            None if call.has_flag(engine_state, stack, "follow")? => Follow::On,
            None => Follow::Off,
        };
        let id_flag = |name: &str, stack: &mut Stack| -> Result<_, ShellError> {
            match call.get_flag::<String>(engine_state, stack, name)? {
                Some(text) => parse_id(&text)
                    .map(Some)
                    .map_err(|e| generic(&format!("Invalid {name}"), e, span)),
                None => Ok(None),
            }
        };
        let count = |name: &str, stack: &mut Stack| -> Result<Option<u64>, ShellError> {
            Ok(call
                .get_flag::<i64>(engine_state, stack, name)?
                .map(|n| n.max(0) as u64))
        };
        let options = ReadOptions {
            follow,
            new: call.has_flag(engine_state, stack, "new")?,
            after: id_flag("after", stack)?,
            from: id_flag("from", stack)?,
            limit: count("limit", stack)?,
            last: count("last", stack)?,
            topic: topic_flag(call.get_flag::<Value>(engine_state, stack, "topic")?)?,
            with_timestamp: false,
            rev: false,
            before: None,
            wake_on_control: false,
        };
        let shape = FrameShape {
            ttl: call.has_flag(engine_state, stack, "detail")?,
            timestamp: call.has_flag(engine_state, stack, "with-timestamp")?,
        };
        let signals = engine_state.signals().clone();
        let frames = FrameRecords::new(
            Reader::new(self.0.clone(), options),
            shape,
            span,
            signals.clone(),
        );
        Ok(PipelineData::list_stream(
            nu_protocol::ListStream::new(frames, span, signals),
            None,
        ))
    }
}

/// A topic filter from a string (`"a,b"`) or a list of strings.
pub fn topic_flag(value: Option<Value>) -> Result<TopicFilter, ShellError> {
    match value {
        None => Ok(TopicFilter::All),
        Some(Value::List { vals, .. }) => {
            let names = vals
                .iter()
                .map(|v| v.coerce_str().map(|s| s.into_owned()))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(TopicFilter::parse(&names.join(",")))
        }
        Some(value) => Ok(TopicFilter::parse(&value.coerce_into_string()?)),
    }
}

/// Frames of a read as records, one at a time.
pub struct FrameRecords {
    reader: Reader,
    shape: FrameShape,
    span: Span,
    signals: nu_protocol::Signals,
    pending: std::collections::VecDeque<Value>,
    done: bool,
}

impl FrameRecords {
    pub fn new(
        reader: Reader,
        shape: FrameShape,
        span: Span,
        signals: nu_protocol::Signals,
    ) -> Self {
        FrameRecords {
            reader,
            shape,
            span,
            signals,
            pending: Default::default(),
            done: false,
        }
    }

    fn record(&self, raw: &crate::store::RawFrame) -> Value {
        match raw.parse() {
            Ok(frame) => frame_record(&frame, self.shape, self.span),
            Err(e) => Value::error(store_error(e, self.span), self.span),
        }
    }
}

impl Iterator for FrameRecords {
    type Item = Value;

    fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(value) = self.pending.pop_front() {
                return Some(value);
            }
            if self.done || self.signals.interrupted() {
                return None;
            }
            // Short idle turns, so an interrupt is noticed promptly.
            match self.reader.next_event(Duration::from_millis(100)) {
                Ok(ReadEvent::History(frames)) => {
                    let records: Vec<Value> = frames.iter().map(|f| self.record(f)).collect();
                    self.pending.extend(records);
                }
                Ok(ReadEvent::Live(frame)) => return Some(self.record(&frame)),
                Ok(ReadEvent::Idle) => {}
                Ok(ReadEvent::End) => self.done = true,
                Err(e) => {
                    self.done = true;
                    return Some(Value::error(store_error(e, self.span), self.span));
                }
            }
        }
    }
}
