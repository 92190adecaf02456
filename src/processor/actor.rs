//! Actors (`xs.actor.<name>.create`): a closure `{|frame, state| …}` run on
//! each frame it follows, one thread per actor, threading its state. An
//! actor has the memory cap (`nu::bounds`), not the eval timeout: going
//! over the cap ends it with `fin.error`.
//!
//! With `group: <name>` in its options an actor is a member of that
//! consumer group (`store::groups`) instead of a follower: it runs on the
//! frames the group hands it, acks each one its closure handled without
//! error and nacks one whose closure failed (the frame goes to another
//! member, or to this one again; the actor carries on with the state it
//! had). Its members on several nodes of one Redis share the frames.

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
use crate::store::groups::{self, Member};
use crate::store::{Draft, Frame, Id, Store, StoreError, StoredPayload, TopicFilter};
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
    /// `group: <name>`: a consumer group member (see the top).
    group: Option<Member>,
}

/// The closure's failure on one frame.
enum Failure {
    /// The actor was stopped while it ran.
    Stopped,
    /// An error the closure raised or caused.
    Error(String),
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
        let group = group_member(name, options, start)?;
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
            group,
        })
    }

    /// Whether it consumes as a group member (it may then run on every
    /// node of a shared Redis, each a member).
    pub fn is_group_member(&self) -> bool {
        self.group.is_some()
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
        if let Some(member) = self.group.clone() {
            return self.run_member(store, stop, &member);
        }
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
        let value = match self.call(frame, state, bounds) {
            Ok(value) => value,
            Err(Failure::Stopped) => return ControlFlow::Break(Ending::Stopped),
            Err(Failure::Error(error)) => {
                return self.finish(store, Event::FinError, frame, Some(error))
            }
        };
        self.settle(store, frame, value, ids)
    }

    /// The closure's value for one frame.
    fn call(&self, frame: &Frame, state: Value, bounds: &Bounds) -> Result<Value, Failure> {
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
        if let Some(verdict) = bounds.verdict() {
            return Err(Failure::Error(verdict));
        }
        result.map_err(|e| {
            if self
                .loaded
                .engine
                .interrupt_handle()
                .load(Ordering::Relaxed)
            {
                Failure::Stopped
            } else {
                Failure::Error(self.loaded.engine.render_shell_error(&e))
            }
        })
    }

    /// Sends what the closure appended and returned for `frame`: the next
    /// state, or the end.
    fn settle(
        &self,
        store: &Store,
        frame: &Frame,
        value: Value,
        ids: &Map<String, Json>,
    ) -> ControlFlow<Ending, Value> {
        let trigger = [("frame_id", Json::String(frame.id.to_string()))];
        let mut frame_ids = ids.clone();
        frame_ids.insert("frame_id".into(), trigger[0].1.clone());
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

    /// A group member's life: join, then run on each frame handed to it,
    /// acking or nacking it; leave when it ends (its unacked frames go to
    /// the other members at once).
    fn run_member(self, store: &Store, stop: &AtomicBool, member: &Member) -> Ending {
        if let Err(e) = store.group_join(member) {
            return self.fail_member(store, format!("joining group {}: {e}", member.group));
        }
        struct Leave<'a>(&'a Store, &'a Member);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                self.0.group_leave(self.1);
            }
        }
        let _leave = Leave(store, member);
        let ids = lifecycle::meta(Kind::Actor, self.create_id, &[]);
        let active = lifecycle::meta(
            Kind::Actor,
            self.create_id,
            &[
                ("start", self.start.meta()),
                ("group", Json::String(member.group.clone())),
            ],
        );
        if lifecycle::emit(store, Kind::Actor, &self.name, Event::Active, active).is_err() {
            return Ending::Stopped;
        }
        let bounds = Bounds::start(&self.loaded.engine, Timed::No, None);
        let mut state = self.initial.clone();
        loop {
            if stop.load(Ordering::Relaxed) {
                return Ending::Stopped;
            }
            let head = store.head().view();
            if head.closed {
                return Ending::Stopped;
            }
            let claim = match store.group_claim(member) {
                Ok(claim) => claim,
                // Deleted under it: the actor ends as a consumer's stream
                // does, rather than make the group again.
                Err(e @ StoreError::NoGroup(_)) => return self.fail_member(store, e.to_string()),
                Err(e) => {
                    // The store may come back (Redis away): try again.
                    eprintln!("xs: actor {} in group {}: {e}", self.name, member.group);
                    store.group_wait(member, head.version, true, Duration::from_millis(500));
                    continue;
                }
            };
            if claim.deliveries.is_empty() {
                store.group_wait(member, head.version, claim.full, Duration::from_millis(100));
                continue;
            }
            for delivery in claim.deliveries {
                if stop.load(Ordering::Relaxed) {
                    return Ending::Stopped;
                }
                let Ok(frame) = delivery.frame.parse() else {
                    let _ = store.group_ack(&member.group, &[delivery.frame.id]);
                    continue;
                };
                let value = match self.call(&frame, state.clone(), &bounds) {
                    Ok(value) => value,
                    Err(Failure::Stopped) => return Ending::Stopped,
                    Err(Failure::Error(error)) => {
                        if bounds.verdict().is_some() {
                            return match self.finish(store, Event::FinError, &frame, Some(error)) {
                                ControlFlow::Break(ending) => ending,
                                ControlFlow::Continue(_) => Ending::Stopped,
                            };
                        }
                        // Handed out again; what it appended is dropped.
                        self.buffer
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .clear();
                        eprintln!(
                            "xs: actor {} failed on {} (nacked): {}",
                            self.name,
                            frame.id,
                            error.lines().next().unwrap_or("")
                        );
                        let _ = store.group_nack(&member.group, &[frame.id]);
                        continue;
                    }
                };
                let flow = self.settle(store, &frame, value, &ids);
                // Handled: what it sent is queued before the ack, so the
                // writer stores it first.
                if let Err(e) = store.group_ack(&member.group, &[frame.id]) {
                    eprintln!("xs: actor {}: acking {}: {e}", self.name, frame.id);
                }
                match flow {
                    ControlFlow::Continue(next) => state = next,
                    ControlFlow::Break(ending) => return ending,
                }
            }
        }
    }

    /// A group member's `fin.error` with `error` in its meta.
    fn fail_member(&self, store: &Store, error: String) -> Ending {
        let meta = lifecycle::meta(
            Kind::Actor,
            self.create_id,
            &[("error", Json::String(error.clone()))],
        );
        let _ = lifecycle::emit(store, Kind::Actor, &self.name, Event::FinError, meta);
        Ending::Failed(error)
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

/// The `group` option and its settings: `group` (the name), `topics`
/// (required with it), `ack_wait` (a duration string such as "30s", or ms),
/// `max_inflight` (default 1: one frame at a time), `max_deliver`.
fn group_member(
    name: &str,
    options: &nu_protocol::Record,
    start: Start,
) -> Result<Option<Member>, String> {
    let Some(group) = options.get("group") else {
        return Ok(None);
    };
    let group = group.as_str().map_err(|_| "'group' must be a string")?;
    let topics = match options.get("topics") {
        Some(Value::List { vals, .. }) => vals
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| "'topics' must be strings")?
            .join(","),
        Some(other) => other
            .as_str()
            .map_err(|_| "'topics' must be a list or a comma-separated string")?
            .to_string(),
        None => return Err("a group member ('group') needs 'topics'".into()),
    };
    let count = |key: &str| -> Result<Option<u64>, String> {
        match options.get(key) {
            None => Ok(None),
            Some(value) => value
                .as_int()
                .ok()
                .and_then(|n| u64::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| format!("'{key}' must be a non-negative int")),
        }
    };
    let ack_wait = match options.get("ack_wait") {
        None => groups::DEFAULT_ACK_WAIT,
        Some(Value::Int { val, .. }) if *val > 0 => Duration::from_millis(*val as u64),
        Some(Value::Duration { val, .. }) if *val > 0 => Duration::from_nanos(*val as u64),
        Some(other) => {
            let text = other
                .as_str()
                .map_err(|_| "'ack_wait' must be a duration, \"30s\" or ms")?;
            groups::parse_duration(text)?
        }
    };
    let member = Member {
        group: group.to_string(),
        consumer: format!("actor-{name}-{}", crate::store::id::fresh_id()),
        topics,
        start: match start {
            Start::New => groups::Start::New,
            Start::First => groups::Start::First,
            Start::After(id) => groups::Start::After(id),
        },
        ack_wait,
        max_inflight: count("max_inflight")?.unwrap_or(1).min(usize::MAX as u64) as usize,
        max_deliver: count("max_deliver")?.map(|n| n.min(u32::MAX as u64) as u32),
    };
    member.check().map_err(|e| e.to_string())?;
    Ok(Some(member))
}
