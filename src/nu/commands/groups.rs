//! `.ack <group> <id>...` and `.nack <group> <id>...`: settle frames of a
//! consumer group from a script (an actor with `group` in its options acks
//! and nacks by itself; these are for the rest). The answer is a record
//! `{acked: [ids], unknown: [ids]}` (`nacked` for `.nack`): unknown ids
//! were not pending.

use nu_engine::command_prelude::*;

use super::{generic, store_error};
use crate::store::id::parse_id;
use crate::store::Store;

#[derive(Clone)]
pub struct Settle {
    store: Store,
    nack: bool,
}

impl Settle {
    pub fn ack(store: Store) -> Settle {
        Settle { store, nack: false }
    }

    pub fn nack(store: Store) -> Settle {
        Settle { store, nack: true }
    }
}

impl Command for Settle {
    fn name(&self) -> &str {
        if self.nack {
            ".nack"
        } else {
            ".ack"
        }
    }

    fn description(&self) -> &str {
        if self.nack {
            "Give frames of a consumer group back: handed out again now."
        } else {
            "Acknowledge frames of a consumer group: done, never handed out again."
        }
    }

    fn signature(&self) -> Signature {
        Signature::build(self.name())
            .input_output_types(vec![(Type::Nothing, Type::record())])
            .required("group", SyntaxShape::String, "the consumer group")
            .rest("ids", SyntaxShape::String, "frame ids")
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
        let group: String = call.req(engine_state, stack, 0)?;
        let texts: Vec<String> = call.rest(engine_state, stack, 1)?;
        let ids = texts
            .iter()
            .map(|t| parse_id(t).map_err(|e| generic("invalid id", e, span)))
            .collect::<Result<Vec<_>, _>>()?;
        let settled = if self.nack {
            self.store.group_nack(&group, &ids)
        } else {
            self.store.group_ack(&group, &ids)
        }
        .map_err(|e| store_error(e, span))?;
        let list = |ids: Vec<String>| {
            Value::list(
                ids.into_iter().map(|id| Value::string(id, span)).collect(),
                span,
            )
        };
        let unknown: Vec<String> = ids
            .iter()
            .filter(|id| !settled.contains(id))
            .map(|id| id.to_string())
            .collect();
        let settled: Vec<String> = settled.iter().map(|id| id.to_string()).collect();
        let key = if self.nack { "nacked" } else { "acked" };
        let record = record! { key => list(settled), "unknown" => list(unknown) };
        Ok(Value::record(record, span).into_pipeline_data())
    }
}
