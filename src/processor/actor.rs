//! Actors (`xs.actor.<name>.create`): a closure `{|frame, state| …}` run on
//! each frame it follows, one thread per actor, threading its state. An
//! actor has the memory cap (`nu::bounds`), not the eval timeout: going
//! over the cap ends it with `fin.error`.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nu_protocol::{PipelineData, Value};
use serde_json::{json, Map, Value as Json};

use super::lifecycle::{self, Event, Kind};
use super::output;
use super::ps::{ProcessTable, State};
use super::script::{self, Loaded, ReturnOptions};
use super::{Running, DEFAULT_GRACE};
use crate::nu::bounds::{Bounds, Timed};
use crate::nu::commands::{self, AppendBuffer, AppendMode};
use crate::nu::engine::collect;
use crate::nu::value::{frame_record, FrameShape};
use crate::store::{Draft, Frame, Id, Store, StoredPayload, TopicFilter};
use crate::store::{Follow, ReadEvent, ReadOptions, Reader};
use crate::sys::process::ChildGroups;

/// Where an actor starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    New,
    First,
    After(Id),
}

impl Start {
    fn meta(self) -> Json {
        match self {
            Start::New => json!("new"),
            Start::First => json!("first"),
            Start::After(id) => json!({ "after": id.to_string() }),
        }
    }
}

/// How an actor's thread ended.
enum Ending {
    /// Stopped from outside (term, replacement, shutdown).
    Stopped,
    /// `fin.ok`.
    Finished,
    /// `fin.error`, with the error.
    Failed(String),
}

/// An actor ready to run: its script and options, checked.
pub struct Actor {
    name: String,
    create_id: Id,
    loaded: Loaded,
    buffer: AppendBuffer,
    groups: ChildGroups,
    start: Start,
    pulse: Option<u64>,
    topics: TopicFilter,
    initial: Value,
    returns: ReturnOptions,
}

impl Actor {
    /// Loads and checks the script of a create frame.
    pub fn load(store: &Store, name: &str, create: &Frame) -> Result<Actor, String> {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let groups = ChildGroups::default();
        let builtins =
            commands::with_append(store, AppendMode::Buffered(buffer.clone()), groups.clone());
        let loaded = script::load(store, create, builtins, &[])?;
        let block = loaded.engine.closure_arity(&loaded.run);
        if block != 2 {
            return Err(format!(
                "the actor's 'run' closure must take exactly 2 parameters (frame, state): it takes {block}"
            ));
        }
        let options = &loaded.options;
        let start = match options.get("start").map(|v| v.as_str()) {
            None | Some(Ok("new")) => Start::New,
            Some(Ok("first")) => Start::First,
            Some(Ok(id)) => Start::After(
                crate::store::id::parse_id(id).map_err(|e| format!("invalid 'start' id: {e}"))?,
            ),
            Some(Err(_)) => return Err("'start' must be \"new\", \"first\" or an id".into()),
        };
        let pulse = match options.get("pulse") {
            Some(value) => Some(value.as_int().map_err(|_| "'pulse' must be an int (ms)")? as u64),
            None => None,
        };
        let topics = match options.get("topics") {
            None => TopicFilter::All,
            Some(value) => {
                let spec = match value {
                    Value::List { vals, .. } => vals
                        .iter()
                        .map(|v| v.as_str().map(str::to_string))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|_| "'topics' must be strings")?
                        .join(","),
                    other => other
                        .as_str()
                        .map_err(|_| "'topics' must be a list or a comma-separated string")?
                        .to_string(),
                };
                // The actor's own create/term always reach it.
                TopicFilter::parse(&format!(
                    "{spec},{},{}",
                    lifecycle::topic(Kind::Actor, name, Event::Create),
                    lifecycle::topic(Kind::Actor, name, Event::Term)
                ))
            }
        };
        // `initial`, else the state parameter's default, else null.
        let initial = options
            .get("initial")
            .cloned()
            .or_else(|| loaded.engine.closure_default(&loaded.run, 1))
            .unwrap_or_else(|| Value::nothing(script::span()));
        let returns = ReturnOptions::read(options, ".out")?;
        Ok(Actor {
            name: name.to_string(),
            create_id: create.id,
            loaded,
            buffer,
            groups,
            start,
            pulse,
            topics,
            initial,
            returns,
        })
    }

    /// Starts the actor's thread; it emits `active` once subscribed.
    pub fn spawn(self, store: Store, table: ProcessTable) -> Result<Running, String> {
        let interrupt = self.loaded.engine.interrupter().clone();
        let groups = self.groups.clone();
        let name = self.name.clone();
        table.started(Kind::Actor, &name, None, false);
        // Actors run no programs of their own beyond `^prog` calls.
        Running::spawn(
            Kind::Actor,
            &name,
            interrupt,
            groups,
            DEFAULT_GRACE,
            move |stop| {
                let name = self.name.clone();
                match self.run(&store, stop) {
                    Ending::Finished => table.set_state(Kind::Actor, &name, State::Stopped),
                    Ending::Failed(error) => {
                        table.failed(Kind::Actor, &name, error);
                        table.set_state(Kind::Actor, &name, State::Failed);
                    }
                    Ending::Stopped => {}
                }
            },
        )
    }

    fn run(self, store: &Store, stop: &AtomicBool) -> Ending {
        let ids = lifecycle::meta(Kind::Actor, self.create_id, &[]);
        let follow = match self.pulse {
            Some(ms) => Follow::Pulse(ms),
            None => Follow::On,
        };
        let options = ReadOptions {
            follow,
            new: self.start == Start::New,
            after: match self.start {
                Start::After(id) => Some(id),
                _ => None,
            },
            topic: self.topics.clone(),
            ..ReadOptions::default()
        };
        let mut reader = Reader::new(store.clone(), options);
        // Take the head now, so nothing appended after `active` is missed.
        let mut first = Some(reader.next_event(Duration::ZERO));
        let active = lifecycle::meta(Kind::Actor, self.create_id, &[("start", self.start.meta())]);
        if lifecycle::emit(store, Kind::Actor, &self.name, Event::Active, active).is_err() {
            return Ending::Stopped;
        }
        let bounds = Bounds::start(&self.loaded.engine, Timed::No, None);
        let mut state = self.initial.clone();
        loop {
            if stop.load(Ordering::Relaxed) {
                return Ending::Stopped;
            }
            let event = match first.take() {
                Some(event) => event,
                None => reader.next_event(Duration::from_millis(100)),
            };
            let frames = match event {
                Ok(ReadEvent::History(frames)) => frames,
                Ok(ReadEvent::Live(frame)) => vec![frame],
                Ok(ReadEvent::Idle) => continue,
                Ok(ReadEvent::End) | Err(_) => return Ending::Stopped,
            };
            for raw in frames {
                if stop.load(Ordering::Relaxed) {
                    return Ending::Stopped;
                }
                let Ok(frame) = raw.parse() else { continue };
                if self.skips(&frame) {
                    continue;
                }
                match self.step(store, &frame, state, &ids, &bounds) {
                    ControlFlow::Continue(next) => state = next,
                    ControlFlow::Break(ending) => return ending,
                }
            }
        }
    }

    /// The actor's own create/term and its own outputs are not its input.
    fn skips(&self, frame: &Frame) -> bool {
        if let Some(topic) = lifecycle::parse_topic(&frame.topic) {
            if topic.kind == Kind::Actor
                && topic.name == self.name
                && matches!(topic.event, Event::Create | Event::Term)
            {
                return true;
            }
        }
        lifecycle::source_id(Kind::Actor, frame) == Some(self.create_id)
    }

    /// Runs the closure on one frame: the next state, or the end.
    fn step(
        &self,
        store: &Store,
        frame: &Frame,
        state: Value,
        ids: &Map<String, Json>,
        bounds: &Bounds,
    ) -> ControlFlow<Ending, Value> {
        let span = script::span();
        let shape = FrameShape {
            ttl: true,
            timestamp: false,
        };
        let input = frame_record(frame, shape, span);
        let result = self
            .loaded
            .engine
            .call_closure(&self.loaded.run, vec![input, state], PipelineData::empty())
            .and_then(collect);
        let trigger = [("frame_id", Json::String(frame.id.to_string()))];
        let mut frame_ids = ids.clone();
        frame_ids.insert("frame_id".into(), trigger[0].1.clone());
        if let Some(verdict) = bounds.verdict() {
            return self.finish(store, Event::FinError, frame, Some(verdict));
        }
        let value = match result {
            Ok(value) => value,
            Err(e) => {
                if self
                    .loaded
                    .engine
                    .interrupt_handle()
                    .load(Ordering::Relaxed)
                {
                    return ControlFlow::Break(Ending::Stopped);
                }
                let error = self.loaded.engine.render_shell_error(&e);
                return self.finish(store, Event::FinError, frame, Some(error));
            }
        };
        let buffered: Vec<(Draft, Option<StoredPayload>)> =
            std::mem::take(&mut *self.buffer.lock().unwrap_or_else(|e| e.into_inner()));
        for (draft, payload) in buffered {
            let draft = output::tag(draft, &frame_ids);
            output::send(store, output::Output { draft, payload });
        }
        let (out, next) = match &value {
            Value::Nothing { .. } => (None, None),
            Value::Record { val, .. } => {
                if let Some(key) = val.columns().find(|k| *k != "out" && *k != "next") {
                    let error = format!(
                        "the closure returned an unexpected key '{key}': expected out and/or next"
                    );
                    return self.finish(store, Event::FinError, frame, Some(error));
                }
                (val.get("out").cloned(), val.get("next").cloned())
            }
            other => {
                let error = format!(
                    "the closure must return a record {{out, next}} or nothing: got {}",
                    other.get_type()
                );
                return self.finish(store, Event::FinError, frame, Some(error));
            }
        };
        if let Some(out) = &out {
            let topic = format!("{}{}", self.name, self.returns.suffix);
            match output::draft(store, topic, out, &self.returns, &frame_ids) {
                Ok(draft) => output::send(store, draft),
                Err(error) => return self.finish(store, Event::FinError, frame, Some(error)),
            }
        }
        match next {
            Some(next) => ControlFlow::Continue(next),
            None => self.finish(store, Event::FinOk, frame, None),
        }
    }

    fn finish(
        &self,
        store: &Store,
        event: Event,
        frame: &Frame,
        error: Option<String>,
    ) -> ControlFlow<Ending, Value> {
        let mut more = vec![("frame_id", Json::String(frame.id.to_string()))];
        if let Some(error) = &error {
            more.push(("error", Json::String(error.clone())));
        }
        let meta = lifecycle::meta(Kind::Actor, self.create_id, &more);
        let _ = lifecycle::emit(store, Kind::Actor, &self.name, event, meta);
        ControlFlow::Break(match error {
            Some(error) => Ending::Failed(error),
            None => Ending::Finished,
        })
    }
}
