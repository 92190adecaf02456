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
            let Some(mut reader) = stream.reader() else {
                return Ok(PipelineData::empty());
            };
            // Our own split rather than Nushell's `lines()`, which turns a
            // program's failure or interruption (a Nushell error carried
            // in an I/O error) into a bare I/O error.
            let mut failed = false;
            let values = std::iter::from_fn(move || {
                if failed {
                    return None;
                }
                let mut line = Vec::new();
                match std::io::BufRead::read_until(&mut reader, b'\n', &mut line) {
                    Ok(0) => None,
                    Ok(_) => {
                        if line.last() == Some(&b'\n') {
                            line.pop();
                            if line.last() == Some(&b'\r') {
                                line.pop();
                            }
                        }
                        Some(Value::string(String::from_utf8_lossy(&line), span))
                    }
                    Err(error) => {
                        failed = true;
                        Some(Value::error(shell_error(error, span), span))
                    }
                }
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

/// An I/O error as a Nushell error: the Nushell error it carries, if any.
fn shell_error(error: std::io::Error, span: Span) -> ShellError {
    match nu_protocol::shell_error::bridge::ShellErrorBridge::try_from(error) {
        Ok(bridge) => bridge.0,
        Err(error) => super::generic("read failed", error.to_string(), span),
    }
}
