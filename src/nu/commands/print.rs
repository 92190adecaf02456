//! `print`: write values to the server's stdout (or stderr), as `nu`
//! does on its terminal. Nushell's own `print` lives in nu-cli, with the
//! line editor, which a server does not link; the std library's `log`
//! calls it.

use std::io::Write;

use nu_engine::command_prelude::*;

#[derive(Clone)]
pub struct Print;

impl Command for Print {
    fn name(&self) -> &str {
        "print"
    }

    fn description(&self) -> &str {
        "Print the given values to the server's stdout (or stderr)."
    }

    fn signature(&self) -> Signature {
        Signature::build("print")
            .input_output_types(vec![(Type::Any, Type::Nothing)])
            .allow_variants_without_examples(true)
            .rest("rest", SyntaxShape::Any, "the values to print")
            .switch(
                "no-newline",
                "print without inserting a newline for the line ending",
                Some('n'),
            )
            .switch("stderr", "print to stderr instead of stdout", Some('e'))
            .switch(
                "raw",
                "print without formatting (including binary data)",
                Some('r'),
            )
            .category(Category::Strings)
    }

    fn run(
        &self,
        engine_state: &EngineState,
        stack: &mut Stack,
        call: &Call,
        input: PipelineData,
    ) -> Result<PipelineData, ShellError> {
        let mut values: Vec<Value> = call.rest(engine_state, stack, 0)?;
        let no_newline = call.has_flag(engine_state, stack, "no-newline")?;
        let to_stderr = call.has_flag(engine_state, stack, "stderr")?;
        if values.is_empty() {
            values.push(input.into_value(call.head)?);
        }
        let config = stack.get_config(engine_state);
        let mut text = Vec::new();
        for value in values {
            match value {
                Value::Nothing { .. } => continue,
                Value::Binary { val, .. } => text.extend_from_slice(&val),
                Value::Error { error, .. } => return Err(*error),
                other => text.extend_from_slice(other.to_expanded_string("\n", &config).as_bytes()),
            }
            if !no_newline {
                text.push(b'\n');
            }
        }
        // A closed stdout or stderr is no reason to fail a script.
        let _ = if to_stderr {
            std::io::stderr().lock().write_all(&text)
        } else {
            std::io::stdout().lock().write_all(&text)
        };
        Ok(PipelineData::empty())
    }
}
