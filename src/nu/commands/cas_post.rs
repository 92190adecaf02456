//! `.cas-post`: store the input as content, return its hash.

use nu_engine::command_prelude::*;

use super::append::input_bytes;
use super::{generic, store_error};
use crate::store::Store;

#[derive(Clone)]
pub struct CasPost(pub Store);

impl Command for CasPost {
    fn name(&self) -> &str {
        ".cas-post"
    }

    fn description(&self) -> &str {
        "Store the input in the content store; returns its hash."
    }

    fn signature(&self) -> Signature {
        Signature::build(".cas-post")
            .input_output_types(vec![(Type::Any, Type::String)])
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
        let bytes =
            input_bytes(input, span)?.ok_or_else(|| generic("Empty input", "Empty input", span))?;
        let len = bytes.len() as u64;
        let stored = self
            .0
            .put_payload(&mut bytes.as_slice(), Some(len), u64::MAX, false)
            .map_err(|e| store_error(e, span))?;
        let hash = self
            .0
            .sync_payload(stored)
            .map_err(|e| store_error(e, span))?;
        Ok(Value::string(hash.to_string(), span).into_pipeline_data())
    }
}
