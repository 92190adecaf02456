//! How a program's failure reaches the commands that read its output.
//!
//! `nu` itself: `let x = (^prog)` and `^prog | str trim` fail when `prog`
//! exits non-zero, but the commands that take a stream piece by piece —
//! `^prog | lines`, `^prog | each {…}`, `bytes split`, … — give what the
//! program printed and ignore how it ended. Our `run-external` reports a
//! failure as an error at the end of its output stream
//! (`run_external.rs`), which Nushell's collecting paths turn back into
//! its own error ("non-zero exit code"); its piecewise readers (`Lines`,
//! `Chunks`, `SplitRead`) would instead turn it into an opaque "I/O error"
//! (and a debug build of Nushell stops on an assertion there). So those
//! commands are wrapped here: a program's ending, in their input, is just
//! the end of the stream, as in `nu`. Any other error still reaches them.

use std::io::{self, Read};

use nu_engine::command_prelude::*;
use nu_protocol::shell_error::bridge::ShellErrorBridge;

use super::guard::described_as_inner;

/// The commands that read a byte stream piece by piece, by name.
pub const PIECEWISE: &[&str] = &["lines", "each", "bytes split", "find", "chunks"];

/// A piecewise reader for which a program's ending is the end of input.
#[derive(Clone)]
pub struct EndsWithProgram {
    inner: Box<dyn Command>,
}

impl EndsWithProgram {
    pub fn new(inner: Box<dyn Command>) -> EndsWithProgram {
        EndsWithProgram { inner }
    }
}

impl Command for EndsWithProgram {
    described_as_inner!();

    fn run(
        &self,
        engine_state: &EngineState,
        stack: &mut Stack,
        call: &Call,
        input: PipelineData,
    ) -> Result<PipelineData, ShellError> {
        let input = match input {
            PipelineData::ByteStream(stream, metadata) => {
                let span = stream.span();
                let kind = stream.type_();
                let signals = stream.signals().clone();
                match stream.reader() {
                    Some(reader) => PipelineData::byte_stream(
                        ByteStream::read(QuietEnd(reader), span, signals, kind),
                        metadata,
                    ),
                    None => PipelineData::empty(),
                }
            }
            other => other,
        };
        self.inner.run(engine_state, stack, call, input)
    }
}

/// A reader whose program's ending (a non-zero exit or a death by
/// signal, as `run-external` reports them) reads as its end.
struct QuietEnd<R>(R);

impl<R: Read> Read for QuietEnd<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.0.read(buf) {
            Err(error) if is_program_end(&error) => Ok(0),
            other => other,
        }
    }
}

fn is_program_end(error: &io::Error) -> bool {
    let Some(ShellErrorBridge(shell_error)) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<ShellErrorBridge>())
    else {
        return false;
    };
    match shell_error {
        ShellError::NonZeroExitCode { .. } => true,
        ShellError::Generic(generic) => generic.error == super::run_external::PROGRAM_FAILED,
        _ => false,
    }
}
