//! Loading a processor's script: its create frame's payload, evaluated in
//! an engine that has the builtins and the modules as of that frame, must
//! give a record with a `run` closure. That evaluation runs on the
//! dispatcher's thread, so it has the eval timeout and the memory cap.

use std::collections::BTreeMap;
use std::ops::Bound;

use nu_protocol::engine::{Closure, Command};
use nu_protocol::{Record, Span, Value};

use crate::nu::bounds::{Bounds, Timed};
use crate::nu::engine::collect;
use crate::nu::Engine;
use crate::store::parse_sri;
use crate::store::{Frame, Store, TopicFilter};

/// A script evaluated and ready to run.
pub struct Loaded {
    pub engine: Engine,
    /// The script's record (its options).
    pub options: Record,
    pub run: Closure,
}

/// The script text of a create frame.
pub fn source(store: &Store, create: &Frame) -> Result<String, String> {
    let hash = create
        .hash
        .as_deref()
        .ok_or("the create frame has no script (its payload is empty)")?;
    let sri = parse_sri(hash).map_err(|e| e.to_string())?;
    let bytes = store
        .read_payload(&sri)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("the script's content {hash} is missing"))?;
    String::from_utf8(bytes).map_err(|_| "the script is not valid UTF-8".to_string())
}

/// The newest `xs.module.<name>` of each name with an id up to `upto`.
pub fn modules_as_of(store: &Store, upto: crate::store::Id) -> BTreeMap<String, String> {
    let mut modules = BTreeMap::new();
    let filter = TopicFilter::parse("xs.module.*");
    for raw in store
        .scan(&filter, Bound::Unbounded, Bound::Included(upto), false)
        .flatten()
    {
        let Ok(frame) = raw.parse() else { continue };
        let Some(name) = frame.topic.strip_prefix("xs.module.") else {
            continue;
        };
        if frame.hash.is_none() {
            continue;
        }
        if let Ok(text) = source(store, &frame) {
            modules.insert(name.to_string(), text);
        }
    }
    modules
}

/// As `load`, for a service, whose record may give `command` instead of
/// `run` (the closure is then never called).
pub fn load_service(
    store: &Store,
    create: &Frame,
    builtins: Vec<Box<dyn Command>>,
    env: &[(&str, Value)],
) -> Result<Loaded, String> {
    load_with(store, create, builtins, env, true)
}

/// Evaluates a create frame's script with `builtins`, the modules as of
/// the frame, and `env` variables.
pub fn load(
    store: &Store,
    create: &Frame,
    builtins: Vec<Box<dyn Command>>,
    env: &[(&str, Value)],
) -> Result<Loaded, String> {
    load_with(store, create, builtins, env, false)
}

fn load_with(
    store: &Store,
    create: &Frame,
    builtins: Vec<Box<dyn Command>>,
    env: &[(&str, Value)],
    command_allowed: bool,
) -> Result<Loaded, String> {
    let text = source(store, create)?;
    let mut engine = Engine::with_builtins(builtins);
    for (name, module) in modules_as_of(store, create.id) {
        engine.add_module(&name, &module).map_err(|e| e.0)?;
    }
    for (name, value) in env {
        engine.set_env(name, value.clone());
    }
    let value = {
        let bounds = Bounds::start(&engine, Timed::Yes, None);
        let value = engine
            .run(&create.topic, &text)
            .map_err(|e| e.0)
            .and_then(|data| collect(data).map_err(|e| engine.render_shell_error(&e)));
        if let Some(verdict) = bounds.verdict() {
            return Err(verdict);
        }
        value?
    };
    let Value::Record { val, .. } = value else {
        return Err("Script must define a 'run' closure.".into());
    };
    let options = val.into_owned();
    if command_allowed && options.get("run").is_none() && options.get("command").is_some() {
        // A plain command: an empty closure stands in for `run`.
        let data = engine.run("command", "{||}").map_err(|e| e.0)?;
        if let Ok(Value::Closure { val, .. }) = collect(data) {
            return Ok(Loaded {
                engine,
                options,
                run: val.as_ref().clone(),
            });
        }
    }
    let run = match options.get("run") {
        Some(Value::Closure { val, .. }) => val.as_ref().clone(),
        Some(other) => {
            return Err(format!(
                "'run' field must be a closure: got {}",
                other.get_type()
            ))
        }
        None => return Err("Script must define a 'run' closure.".into()),
    };
    Ok(Loaded {
        engine,
        options,
        run,
    })
}

/// Where a processor's outputs go: `return_options {suffix, ttl, target}`.
#[derive(Debug, Clone)]
pub struct ReturnOptions {
    pub suffix: String,
    pub ttl: Option<crate::store::Ttl>,
    /// `target: "cas"`: the value is the payload, not the meta.
    pub to_cas: bool,
    /// Strings go to CAS as they are (services), not as JSON text.
    pub raw_strings: bool,
}

impl ReturnOptions {
    pub fn read(options: &Record, default_suffix: &str) -> Result<ReturnOptions, String> {
        let mut out = ReturnOptions {
            suffix: default_suffix.to_string(),
            ttl: None,
            to_cas: false,
            raw_strings: false,
        };
        let Some(value) = options.get("return_options") else {
            return Ok(out);
        };
        let record = value
            .as_record()
            .map_err(|_| "'return_options' must be a record".to_string())?;
        if let Some(suffix) = record.get("suffix") {
            out.suffix = suffix
                .as_str()
                .map_err(|_| "'return_options.suffix' must be a string".to_string())?
                .to_string();
        }
        if let Some(ttl) = record.get("ttl") {
            let text = ttl
                .as_str()
                .map_err(|_| "'return_options.ttl' must be a string".to_string())?;
            out.ttl = Some(crate::store::Ttl::parse(text)?);
        }
        if let Some(target) = record.get("target") {
            out.to_cas = target.as_str().ok() == Some("cas");
        }
        Ok(out)
    }
}

/// A value's payload bytes for `target: "cas"`: binary raw; a string raw
/// for services, as JSON text (quoted) for actors and actions, as in
/// cross.stream; anything else as JSON text.
pub fn cas_bytes(value: &Value, raw_strings: bool) -> Vec<u8> {
    match value {
        Value::Binary { val, .. } => val.to_vec(),
        Value::String { val, .. } if raw_strings => val.clone().into_bytes(),
        other => crate::nu::value::to_json(other).to_string().into_bytes(),
    }
}

/// An unknown span, for values we build.
pub fn span() -> Span {
    Span::unknown()
}
