//! Actions (`xs.action.<name>.create`): a closure `{|frame| …}` run once
//! per `<name>.call` frame, each call on a thread of its own; the result
//! is `<name>.response`, a failure `<name>.error`. A call has the eval
//! timeout and the memory cap (`nu::bounds`); either ends it with
//! `<name>.error`.

use nu_protocol::{PipelineData, Value};
use serde_json::Value as Json;

use super::lifecycle::{self, Kind};
use super::output;
use super::script::{self, Loaded, ReturnOptions};
use crate::nu::bounds::{Bounds, Timed};
use crate::nu::commands;
use crate::nu::engine::collect;
use crate::nu::value::{frame_record, FrameShape};
use crate::store::{Draft, Frame, Id, Store};

/// A registered action.
pub struct Action {
    name: String,
    create_id: Id,
    loaded: Loaded,
    returns: ReturnOptions,
}

impl Action {
    pub fn load(store: &Store, name: &str, create: &Frame) -> Result<Action, String> {
        let loaded = script::load(store, create, commands::all(store), &[])?;
        let returns = ReturnOptions::read(&loaded.options, ".response")?;
        Ok(Action {
            name: name.to_string(),
            create_id: create.id,
            loaded,
            returns,
        })
    }

    /// The topics that answer a call: the response and the error.
    pub fn answer_topics(&self) -> [String; 2] {
        [
            format!("{}{}", self.name, self.returns.suffix),
            format!("{}.error", self.name),
        ]
    }

    /// Handles one call on a new thread.
    pub fn call(&self, store: &Store, call: Frame) {
        let mut engine = self.loaded.engine.fork();
        let ids = lifecycle::meta(
            Kind::Action,
            self.create_id,
            &[("frame_id", Json::String(call.id.to_string()))],
        );
        engine.set_env(
            "XS_APPEND_META",
            Value::string(Json::Object(ids.clone()).to_string(), script::span()),
        );
        let run = self.loaded.run.clone();
        let returns = self.returns.clone();
        let name = self.name.clone();
        let store = store.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("action {name}"))
            .spawn(move || {
                let shape = FrameShape {
                    ttl: true,
                    timestamp: false,
                };
                let input = frame_record(&call, shape, script::span());
                let bounds = Bounds::start(&engine, Timed::Yes, None);
                let result = engine
                    .call_closure(&run, vec![input], PipelineData::empty())
                    .and_then(collect)
                    .map_err(|e| engine.render_shell_error(&e));
                let result = match bounds.verdict() {
                    Some(verdict) => Err(verdict),
                    None => result,
                };
                let draft = match result {
                    Ok(value) => respond(&store, &name, &value, &returns, &ids, call.id),
                    Err(error) => {
                        let mut meta = ids.clone();
                        meta.insert("error".into(), Json::String(error));
                        error_draft(&name, meta).into()
                    }
                };
                output::send(&store, draft);
            });
        if let Err(e) = spawned {
            eprintln!("xs: cannot start action {}: {e}", self.name);
        }
    }
}

/// The response frame for a call's result.
fn respond(
    store: &Store,
    name: &str,
    value: &Value,
    returns: &ReturnOptions,
    ids: &serde_json::Map<String, Json>,
    call_id: Id,
) -> output::Output {
    let topic = format!("{name}{}", returns.suffix);
    if let Value::Nothing { .. } = value {
        return Draft::new(topic)
            .meta(Some(Json::Object(ids.clone())))
            .ttl(returns.ttl)
            .into();
    }
    match output::draft(store, topic, value, returns, ids) {
        Ok(output) => output,
        Err(error) => {
            let mut meta = serde_json::Map::new();
            meta.insert("error".into(), Json::String(error));
            meta.insert("call_id".into(), Json::String(call_id.to_string()));
            error_draft(name, meta).into()
        }
    }
}

fn error_draft(name: &str, meta: serde_json::Map<String, Json>) -> Draft {
    Draft::new(format!("{name}.error")).meta(Some(Json::Object(meta)))
}
