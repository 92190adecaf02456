//! Services (`xs.service.<name>.create`): a closure `{|| …}` run on a
//! thread of its own; what it produces becomes `<name>.recv` frames, and a
//! clean finish runs it again a second later.

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nu_protocol::{ByteStream, ByteStreamType, PipelineData, Signals, Value};
use serde_json::{json, Map, Value as Json};

use super::lifecycle::{self, Event, Kind};
use super::output;
use super::script::{self, Loaded, ReturnOptions};
use super::Running;
use crate::nu::commands;
use crate::store::read::{Follow, ReadEvent, ReadOptions, Reader};
use crate::store::{Frame, Id, Store, TopicFilter};

/// Byte streams become frames of at most this many bytes.
const CHUNK: usize = 8192;

/// How long a service waits before running again after a clean finish.
const RERUN_AFTER: Duration = Duration::from_secs(1);

pub struct Service {
    name: String,
    create_id: Id,
    loaded: Loaded,
    duplex: bool,
    returns: ReturnOptions,
}

impl Service {
    pub fn load(store: &Store, name: &str, create: &Frame) -> Result<Service, String> {
        let env_meta = json!({ "service_id": create.id.to_string() }).to_string();
        let env = [("XS_APPEND_META", Value::string(env_meta, script::span()))];
        let loaded = script::load(store, create, commands::all(store), &env)?;
        let duplex = loaded
            .options
            .get("duplex")
            .map(|v| v.as_bool().unwrap_or(false))
            .unwrap_or(false);
        let returns = ReturnOptions::read(&loaded.options, ".recv")?;
        Ok(Service {
            name: name.to_string(),
            create_id: create.id,
            loaded,
            duplex,
            returns,
        })
    }

    pub fn spawn(self, store: Store) -> Result<Running, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let interrupt = self.loaded.engine.interrupt_handle();
        let thread_stop = stop.clone();
        let handle = std::thread::Builder::new()
            .name(format!("service {}", self.name))
            .spawn(move || self.run(&store, &thread_stop))
            .map_err(|e| format!("cannot start a thread: {e}"))?;
        Ok(Running::new(Kind::Service, stop, interrupt, handle))
    }

    fn run(self, store: &Store, stop: &AtomicBool) {
        let ids = lifecycle::meta(Kind::Service, self.create_id, &[]);
        loop {
            let active =
                match lifecycle::emit(store, Kind::Service, &self.name, Event::Active, ids.clone())
                {
                    Ok(frame) => frame,
                    Err(_) => return,
                };
            let input = if self.duplex {
                self.duplex_input(store, active.id)
            } else {
                PipelineData::empty()
            };
            let outcome = self
                .loaded
                .engine
                .call_closure(&self.loaded.run, Vec::new(), input)
                .map_err(|e| self.loaded.engine.render_shell_error(&e))
                .and_then(|data| self.emit_outputs(store, data, &ids, stop));
            if stop.load(Ordering::Relaxed) {
                return;
            }
            if let Err(message) = outcome {
                let meta = lifecycle::meta(
                    Kind::Service,
                    self.create_id,
                    &[("message", Json::String(message))],
                );
                let _ = lifecycle::emit(store, Kind::Service, &self.name, Event::FinError, meta);
                return;
            }
            let until = Instant::now() + RERUN_AFTER;
            while Instant::now() < until {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// A byte stream of the payloads of `<name>.send` frames appended after
    /// `active`, as they arrive.
    fn duplex_input(&self, store: &Store, active: Id) -> PipelineData {
        let options = ReadOptions {
            follow: Follow::On,
            after: Some(active),
            topic: TopicFilter::parse(&format!("{}.send", self.name)),
            ..ReadOptions::default()
        };
        let reader = SendReader {
            store: store.clone(),
            reader: Reader::new(store.clone(), options),
            pending: Vec::new(),
            signals: self.loaded.engine.signals().clone(),
        };
        PipelineData::byte_stream(
            ByteStream::read(
                reader,
                script::span(),
                self.loaded.engine.signals().clone(),
                ByteStreamType::Unknown,
            ),
            None,
        )
    }

    /// Turns what the closure produced into frames.
    fn emit_outputs(
        &self,
        store: &Store,
        data: PipelineData,
        ids: &Map<String, Json>,
        stop: &AtomicBool,
    ) -> Result<(), String> {
        let topic = format!("{}{}", self.name, self.returns.suffix);
        match data {
            PipelineData::Empty => Ok(()),
            PipelineData::Value(Value::Nothing { .. }, _) => Ok(()),
            PipelineData::Value(Value::Error { error, .. }, _) => {
                Err(self.loaded.engine.render_shell_error(&error))
            }
            PipelineData::Value(value, _) => {
                let draft = output::draft(store, topic, &value, &self.returns, ids)?;
                output::send(store, draft);
                Ok(())
            }
            PipelineData::ListStream(stream, _) => {
                for value in stream.into_iter() {
                    if stop.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    if let Value::Error { error, .. } = &value {
                        return Err(self.loaded.engine.render_shell_error(error));
                    }
                    let draft = output::draft(store, topic.clone(), &value, &self.returns, ids)?;
                    output::send(store, draft);
                }
                Ok(())
            }
            PipelineData::ByteStream(stream, _) => {
                let Some(mut reader) = stream.reader() else {
                    return Ok(());
                };
                let mut buf = vec![0u8; CHUNK];
                loop {
                    let n = match reader.read(&mut buf) {
                        Ok(0) => return Ok(()),
                        Ok(n) => n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e.to_string()),
                    };
                    let draft =
                        output::bytes_draft(store, topic.clone(), &buf[..n], &self.returns, ids)?;
                    output::send(store, draft);
                }
            }
        }
    }
}

/// Reads the payloads of followed frames as one byte stream.
struct SendReader {
    store: Store,
    reader: Reader,
    pending: Vec<u8>,
    signals: Signals,
}

impl Read for SendReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pending.is_empty() {
            if self.signals.interrupted() {
                return Ok(0);
            }
            let frames = match self.reader.next_event(Duration::from_millis(100)) {
                Ok(ReadEvent::History(frames)) => frames,
                Ok(ReadEvent::Live(frame)) => vec![frame],
                Ok(ReadEvent::Idle) => continue,
                Ok(ReadEvent::End) => return Ok(0),
                Err(e) => return Err(std::io::Error::other(e.to_string())),
            };
            for raw in frames {
                let Ok(frame) = raw.parse() else { continue };
                if frame.topic == "xs.threshold" {
                    continue;
                }
                let Some(hash) = frame.hash.as_deref() else {
                    continue;
                };
                let Ok(sri) = crate::store::local::cas::parse_sri(hash) else {
                    continue;
                };
                if let Ok(Some(bytes)) = self.store.read_payload(&sri) {
                    self.pending.extend_from_slice(&bytes);
                }
            }
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        self.pending.drain(..n);
        Ok(n)
    }
}
