//! `.remove <id>` (and its alias `.rm`): delete a frame.

use nu_engine::command_prelude::*;

use super::{generic, store_error};
use crate::store::id::parse_id;
use crate::store::Store;

#[derive(Clone)]
pub struct Remove {
    store: Store,
    name: &'static str,
}

impl Remove {
    pub fn named(store: Store, name: &'static str) -> Remove {
        Remove { store, name }
    }
}

impl Command for Remove {
    fn name(&self) -> &str {
        self.name
    }

    fn description(&self) -> &str {
        "Remove a frame by its id."
    }

    fn signature(&self) -> Signature {
        Signature::build(self.name)
            .input_output_types(vec![(Type::Nothing, Type::Nothing)])
            .required("id", SyntaxShape::String, "the frame's id")
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
        let id: String = call.req(engine_state, stack, 0)?;
        let id = parse_id(&id).map_err(|e| generic("invalid id", e, span))?;
        self.store.remove(id).map_err(|e| store_error(e, span))?;
        Ok(PipelineData::empty())
    }
}
