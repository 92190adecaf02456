//! Materialized views (`xs.view.<name>.create`): a closure
//! `{|frame, state| <new state>}` folded over the frames of `topics`, its
//! state persisted at k/v `view.<name>` as `{"state": …, "last_id": …}`.
//!
//! The state is saved in batches — at least every 100 ms while frames
//! flow, and whenever the view catches up or stops — and each save holds
//! the state as of exactly its `last_id`. A server restart resumes after
//! `last_id`; it does not refold. A new `create` (hot replacement) starts
//! over from the first frame.
//!
//! A view has the memory cap (`nu::bounds`), not the eval timeout: going
//! over the cap ends it with `fin.error`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nu_protocol::{PipelineData, Value};
use serde_json::{json, Value as Json};

use super::lifecycle::{self, Event, Kind};
use super::ps::{ProcessTable, State};
use super::script::{self, Loaded};
use super::{Running, DEFAULT_GRACE};
use crate::nu::bounds::{Bounds, Timed};
use crate::nu::commands::{self, AppendMode};
use crate::nu::engine::collect;
use crate::nu::value::{frame_record, from_json, to_json_checked, FrameShape, OVER_CAP};
use crate::store::view_key;
use crate::store::{Follow, ReadEvent, ReadOptions, Reader};
use crate::store::{Frame, Id, Store, TopicFilter};
use crate::sys::process::ChildGroups;

/// The longest a changed state waits before it is saved.
const SAVE_EVERY: Duration = Duration::from_millis(100);

pub struct View {
    name: String,
    create_id: Id,
    loaded: Loaded,
    groups: ChildGroups,
    topics: TopicFilter,
    initial: Value,
}

impl View {
    pub fn load(store: &Store, name: &str, create: &Frame) -> Result<View, String> {
        let groups = ChildGroups::default();
        let builtins = commands::with_append(store, AppendMode::Direct, groups.clone());
        let loaded = script::load(store, create, builtins, &[])?;
        let arity = loaded.engine.closure_arity(&loaded.run);
        if arity != 2 {
            return Err(format!(
                "the view's 'run' closure must take exactly 2 parameters (frame, state): it takes {arity}"
            ));
        }
        let topics = match loaded.options.get("topics") {
            None => TopicFilter::All,
            Some(Value::List { vals, .. }) => TopicFilter::parse(
                &vals
                    .iter()
                    .map(|v| v.as_str().map(str::to_string))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| "'topics' must be strings")?
                    .join(","),
            ),
            Some(other) => TopicFilter::parse(
                other
                    .as_str()
                    .map_err(|_| "'topics' must be a list or a comma-separated string")?,
            ),
        };
        let initial = loaded
            .options
            .get("initial")
            .cloned()
            .or_else(|| loaded.engine.closure_default(&loaded.run, 1))
            .unwrap_or_else(|| Value::nothing(script::span()));
        Ok(View {
            name: name.to_string(),
            create_id: create.id,
            loaded,
            groups,
            topics,
            initial,
        })
    }

    /// Starts folding. `fresh`: a new create, so any saved state (of an
    /// earlier script) is dropped and the fold starts from the first frame.
    pub fn spawn(self, store: Store, table: ProcessTable, fresh: bool) -> Result<Running, String> {
        if fresh {
            store
                .kv_delete(&view_key(&self.name))
                .map_err(|e| e.to_string())?;
        }
        let interrupt = self.loaded.engine.interrupter().clone();
        let groups = self.groups.clone();
        let name = self.name.clone();
        table.started(Kind::View, &name, None, false);
        Running::spawn(
            Kind::View,
            &name,
            interrupt,
            groups,
            DEFAULT_GRACE,
            move |stop| {
                let name = self.name.clone();
                if let Err(error) = self.run(&store, stop) {
                    table.failed(Kind::View, &name, error);
                    table.set_state(Kind::View, &name, State::Failed);
                }
            },
        )
    }

    /// The saved state and the id it is current to, if any.
    fn saved(&self, store: &Store) -> Option<(Value, Id)> {
        let bytes = store.kv_get(&view_key(&self.name)).ok()??;
        let saved: Json = serde_json::from_slice(&bytes).ok()?;
        let last_id = crate::store::id::parse_id(saved.get("last_id")?.as_str()?).ok()?;
        let state = from_json(saved.get("state")?, script::span());
        Some((state, last_id))
    }

    fn run(self, store: &Store, stop: &AtomicBool) -> Result<(), String> {
        let (mut state, after) = match self.saved(store) {
            Some((state, last_id)) => (state, Some(last_id)),
            None => (self.initial.clone(), None),
        };
        let options = ReadOptions {
            follow: Follow::On,
            after,
            topic: self.topics.clone(),
            ..ReadOptions::default()
        };
        let mut reader = Reader::new(store.clone(), options);
        let active = lifecycle::meta(Kind::View, self.create_id, &[]);
        lifecycle::emit(store, Kind::View, &self.name, Event::Active, active)
            .map_err(|e| e.to_string())?;
        let bounds = Bounds::start(&self.loaded.engine, Timed::No, None);
        let mut unsaved: Option<Id> = None;
        let mut last_save = Instant::now();
        loop {
            if stop.load(Ordering::Relaxed) {
                self.save(store, &state, unsaved);
                return Ok(());
            }
            let frames = match reader.next_event(SAVE_EVERY) {
                Ok(ReadEvent::History(frames)) => frames,
                Ok(ReadEvent::Live(frame)) => vec![frame],
                Ok(ReadEvent::Idle) => {
                    // Caught up: what was folded is saved now.
                    self.save(store, &state, unsaved.take());
                    continue;
                }
                Ok(ReadEvent::End) | Err(_) => {
                    self.save(store, &state, unsaved);
                    return Ok(());
                }
            };
            for raw in frames {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(frame) = raw.parse() else { continue };
                if frame.topic == "xs.threshold" {
                    self.save(store, &state, unsaved.take());
                    continue;
                }
                if self.skips(&frame) {
                    continue;
                }
                let folded = self.fold(&frame, state);
                let folded = match bounds.verdict() {
                    Some(verdict) => Err(verdict),
                    None => folded,
                };
                state = match folded {
                    Ok(next) => next,
                    Err(error) => {
                        if bounds.verdict().is_none()
                            && self
                                .loaded
                                .engine
                                .interrupt_handle()
                                .load(Ordering::Relaxed)
                        {
                            return Ok(());
                        }
                        let meta = lifecycle::meta(
                            Kind::View,
                            self.create_id,
                            &[
                                ("frame_id", json!(frame.id.to_string())),
                                ("error", json!(error.clone())),
                            ],
                        );
                        let _ =
                            lifecycle::emit(store, Kind::View, &self.name, Event::FinError, meta);
                        return Err(error);
                    }
                };
                unsaved = Some(frame.id);
                if last_save.elapsed() >= SAVE_EVERY {
                    self.save(store, &state, unsaved.take());
                    last_save = Instant::now();
                }
            }
        }
    }

    /// A view does not fold its own lifecycle frames.
    fn skips(&self, frame: &Frame) -> bool {
        frame.topic.starts_with(&format!("xs.view.{}.", self.name)) || frame.topic == "xs.pulse"
    }

    fn fold(&self, frame: &Frame, state: Value) -> Result<Value, String> {
        let shape = FrameShape {
            ttl: true,
            timestamp: false,
        };
        let input = frame_record(frame, shape, script::span());
        self.loaded
            .engine
            .call_closure(&self.loaded.run, vec![input, state], PipelineData::empty())
            .and_then(collect)
            .map_err(|e| self.loaded.engine.render_shell_error(&e))
    }

    /// Persists the state as of `last_id` (nothing when nothing changed).
    fn save(&self, store: &Store, state: &Value, last_id: Option<Id>) {
        let Some(last_id) = last_id else { return };
        let Ok(state) = to_json_checked(state) else {
            // Cut short by the memory cap: not saved; the view fails at
            // its next frame.
            eprintln!("xs: view {}: state not saved: {OVER_CAP}", self.name);
            return;
        };
        let value = json!({ "state": state, "last_id": last_id.to_string() });
        if let Ok(bytes) = serde_json::to_vec(&value) {
            store.kv_set_queued(&view_key(&self.name), bytes);
        }
    }
}
