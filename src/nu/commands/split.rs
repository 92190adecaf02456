//! `.split <separator>`: split text into a list of strings (the core has no
//! `split row`).

use nu_engine::command_prelude::*;

#[derive(Clone)]
pub struct Split;

impl Command for Split {
    fn name(&self) -> &str {
        ".split"
    }

    fn description(&self) -> &str {
        "Split text at every occurrence of a separator."
    }

    fn signature(&self) -> Signature {
        Signature::build(".split")
            .input_output_types(vec![(Type::Any, Type::List(Box::new(Type::String)))])
            .required("separator", SyntaxShape::String, "where to split")
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
        let separator: String = call.req(engine_state, stack, 0)?;
        let text = input.into_value(span)?.coerce_into_string()?;
        let parts: Vec<Value> = if separator.is_empty() {
            text.chars()
                .map(|c| Value::string(c.to_string(), span))
                .collect()
        } else {
            text.split(separator.as_str())
                .map(|part| Value::string(part, span))
                .collect()
        };
        Ok(Value::list(parts, span).into_pipeline_data())
    }
}
