//! `.lines`: split text (or a byte stream) into a list of lines.

use nu_engine::command_prelude::*;

#[derive(Clone)]
pub struct Lines;

impl Command for Lines {
    fn name(&self) -> &str {
        ".lines"
    }

    fn description(&self) -> &str {
        "Split text into lines."
    }

    fn signature(&self) -> Signature {
        Signature::build(".lines")
            .input_output_types(vec![(Type::Any, Type::List(Box::new(Type::String)))])
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
        // A byte stream (a duplex service's input, `^prog` output) is split
        // as it arrives.
        if let PipelineData::ByteStream(stream, _) = input {
            let signals = stream.signals().clone();
            let Some(lines) = stream.lines() else {
                return Ok(PipelineData::empty());
            };
            let values = lines.map(move |line| match line {
                Ok(line) => Value::string(line, span),
                Err(error) => Value::error(error, span),
            });
            return Ok(PipelineData::list_stream(
                nu_protocol::ListStream::new(values, span, signals),
                None,
            ));
        }
        let text = input.into_value(span)?.coerce_into_string()?;
        let lines = text.lines().map(|line| Value::string(line, span)).collect();
        Ok(Value::list(lines, span).into_pipeline_data())
    }
}
