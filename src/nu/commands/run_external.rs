//! `run-external` (what `^prog args` and a word that is no command call):
//! our own small one, not nu-command's (which comes with its `os`
//! commands): its children live in process groups the server tracks, so
//! they never outlive it and `term` stops them. The pipeline input
//! goes to the program's stdin, its stdout comes back as a byte stream, and
//! a non-zero exit is an error. The program runs in a process group of its
//! own, spawned so it cannot outlive the server (`sys::process`).
//! Reading its output waits in short polls, so an interrupted script
//! (term, timeout, client gone, memory cap) stops waiting at once and the
//! program is killed.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::process::{Child, ChildStdout, Command as Process, Stdio};
use std::time::Duration;

use nu_engine::command_prelude::*;
use nu_protocol::Signals;

use super::append::input_bytes;
use super::generic;
use crate::sys;
use crate::sys::process::ChildGroups;

/// Nushell's SQLite commands (nu-command's `sqlite` feature, in no xs
/// build): a script naming one is told so.
const SQLITE_COMMANDS: &[&str] = &["stor", "query", "schema"];

/// Nushell's commands that come with nu-command's `os` feature (the
/// filesystem, processes, the terminal). Without `nushell-os` a script
/// naming one gets an error that says so, rather than a program of the
/// same name run by surprise.
const OS_COMMANDS: &[&str] = &[
    "cd",
    "clear",
    "clip",
    "complete",
    "cp",
    "du",
    "exec",
    "glob",
    "idx",
    "input",
    "is-redirected",
    "is-terminal",
    "kill",
    "ls",
    "mkdir",
    "mktemp",
    "mv",
    "nu-check",
    "open",
    "ps",
    "rm",
    "run-internal",
    "save",
    "start",
    "sys",
    "term",
    "touch",
    "ulimit",
    "umask",
    "uname",
    "watch",
    "which",
    "whoami",
];

/// Whether the word at `span` was written `^word`: a program on purpose.
fn written_with_caret(engine_state: &EngineState, span: Span) -> bool {
    span.start > 0 && engine_state.get_span_contents(Span::new(span.start - 1, span.start)) == b"^"
}

#[derive(Clone)]
pub struct RunExternal {
    groups: ChildGroups,
}

impl RunExternal {
    pub fn new(groups: ChildGroups) -> RunExternal {
        RunExternal { groups }
    }
}

impl Command for RunExternal {
    fn name(&self) -> &str {
        "run-external"
    }

    fn description(&self) -> &str {
        "Run an external program: input to its stdin, its stdout as bytes."
    }

    fn signature(&self) -> Signature {
        Signature::build("run-external")
            .input_output_types(vec![(Type::Any, Type::Any)])
            .rest("command", SyntaxShape::Any, "the program and its arguments")
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
        let words: Vec<Value> = call.rest(engine_state, stack, 0)?;
        let words_span = words.first().map(Value::span);
        let mut words = words
            .into_iter()
            .map(|v| v.coerce_into_string())
            .collect::<Result<Vec<String>, _>>()?
            .into_iter();
        let program = words
            .next()
            .ok_or_else(|| generic("missing program", "run-external needs a program", span))?;
        let caret = words_span.is_some_and(|at| written_with_caret(engine_state, at));
        if !caret && cfg!(not(feature = "nushell-os")) && OS_COMMANDS.contains(&program.as_str()) {
            return Err(generic(
                "command not found",
                format!(
                    "`{program}` is one of Nushell's filesystem and system commands, which this xs \
                     is built without (cargo feature nushell-os); to run the program `{program}`, \
                     write `^{program}`"
                ),
                span,
            ));
        }
        if !caret && SQLITE_COMMANDS.contains(&program.as_str()) {
            return Err(generic(
                "command not found",
                format!(
                    "`{program}` is one of Nushell's SQLite commands, which no xs build includes \
                     (they need a C library); keep state in the k/v store (`.kv`) or in frames"
                ),
                span,
            ));
        }
        if !program_exists(&program) {
            return Err(generic(
                "command not found",
                format!("`{program}` is neither a Nushell command nor a program on the PATH"),
                span,
            ));
        }
        let stdin_bytes = input_bytes(input, span)?;
        let mut process = Process::new(&program);
        process
            .args(words)
            .stdin(if stdin_bytes.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Ok(cwd) = std::env::current_dir() {
            process.current_dir(cwd);
        }
        let mut child = sys::process::spawn(process).map_err(|e| {
            generic(
                "command not found",
                format!("cannot run `{program}`: {e}"),
                span,
            )
        })?;
        self.groups.add(child.id());
        if let (Some(bytes), Some(mut stdin)) = (stdin_bytes, child.stdin.take()) {
            // A separate writer, so a program that writes before it reads
            // everything cannot deadlock with us.
            std::thread::spawn(move || {
                let _ = stdin.write_all(&bytes);
            });
        }
        let Some(stdout) = child.stdout.take() else {
            return Err(generic(
                "no stdout",
                "the program's stdout is missing",
                span,
            ));
        };
        let output = ChildOutput {
            program,
            span,
            child,
            stdout,
            groups: self.groups.clone(),
            reaped: false,
            signals: engine_state.signals().clone(),
        };
        Ok(PipelineData::byte_stream(
            ByteStream::read(
                output,
                span,
                engine_state.signals().clone(),
                ByteStreamType::Unknown,
            ),
            None,
        ))
    }
}

/// Whether `program` names an executable: a path as given, else a file in
/// one of the `PATH` folders.
fn program_exists(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let runnable = |path: &std::path::Path| {
        path.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if program.contains('/') {
        return runnable(std::path::Path::new(program));
    }
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| runnable(&dir.join(program))))
        .unwrap_or(false)
}

/// The title of the error a program killed by a signal ends its output
/// with (`program_end.rs` knows it by this).
pub const PROGRAM_FAILED: &str = "program failed";

/// A child's stdout; at its end the child is reaped and a failure reported.
struct ChildOutput {
    program: String,
    span: Span,
    child: Child,
    stdout: ChildStdout,
    groups: ChildGroups,
    reaped: bool,
    signals: Signals,
}

/// How long one wait for the program's output lasts before the script's
/// interrupt flag is looked at again.
const POLL_WAIT: Duration = Duration::from_millis(100);

impl ChildOutput {
    fn reap(&mut self) -> std::io::Result<std::process::ExitStatus> {
        let status = self.child.wait()?;
        self.reaped = true;
        self.groups.remove(self.child.id());
        sys::process::forget(self.child.id());
        Ok(status)
    }
}

impl ChildOutput {
    /// Waits until the program's stdout has something (or has ended);
    /// an interrupted script kills the program instead.
    fn wait_readable(&mut self) -> std::io::Result<()> {
        loop {
            if self.signals.interrupted() {
                sys::process::kill_group(self.child.id());
                return Err(std::io::Error::from(
                    nu_protocol::shell_error::bridge::ShellErrorBridge(ShellError::Interrupted {
                        span: self.span,
                    }),
                ));
            }
            match sys::fd::wait_readable(self.stdout.as_fd(), POLL_WAIT) {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // Let the read itself report what is wrong.
                Err(_) => return Ok(()),
            }
        }
    }
}

impl Read for ChildOutput {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if !self.reaped {
            self.wait_readable()?;
        }
        let n = self.stdout.read(buf)?;
        if n > 0 || self.reaped {
            return Ok(n);
        }
        let status = self.reap()?;
        if status.success() {
            return Ok(0);
        }
        // Handed back as a Nushell error (Nushell unwraps the bridge).
        let error = match std::num::NonZeroI32::new(status.code().unwrap_or(1)) {
            Some(exit_code) if status.code().is_some() => ShellError::NonZeroExitCode {
                exit_code,
                span: self.span,
            },
            _ => generic(
                PROGRAM_FAILED,
                format!("`{}` ended: {status}", self.program),
                self.span,
            ),
        };
        Err(std::io::Error::from(
            nu_protocol::shell_error::bridge::ShellErrorBridge(error),
        ))
    }
}

impl Drop for ChildOutput {
    fn drop(&mut self) {
        if !self.reaped {
            // Nobody read to the end: stop the program rather than leave it.
            sys::process::kill_group(self.child.id());
            let _ = self.reap();
        }
    }
}
