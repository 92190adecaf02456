//! Services (`xs.service.<name>.create`): a closure `{|| …}` run on a
//! thread of its own; what it produces becomes `<name>.recv` frames, and a
//! clean finish runs it again a second later. A closure's run has the
//! memory cap (`nu::bounds`), not the eval timeout: going over the cap
//! fails the run, which the restart policy then handles like any failure.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nu_protocol::{ByteStream, ByteStreamType, PipelineData, Signals, Value};
use serde_json::{json, Map, Value as Json};

use super::lifecycle::{self, Event, Kind};
use super::output;
use super::ps::{ProcessTable, State};
use super::script::{self, Loaded, ReturnOptions};
use super::supervise::{self, Backoff, Restart};
use super::{Running, DEFAULT_GRACE};
use crate::nu::bounds::{Bounds, Timed};
use crate::nu::commands::{self, AppendMode};
use crate::store::{Follow, ReadEvent, ReadOptions, Reader};
use crate::store::{Frame, Id, Store, TopicFilter};
use crate::sys;
use crate::sys::process::ChildGroups;

/// Byte streams become frames of at most this many bytes.
const CHUNK: usize = 8192;

/// How long a service waits before running again after a clean finish.
const RERUN_AFTER: Duration = Duration::from_secs(1);

/// What a service runs.
enum Program {
    /// A Nushell closure `{|| …}`.
    Closure,
    /// A program and its arguments, run directly (no shell).
    Command(Vec<String>),
}

/// How one run ended.
enum RunEnd {
    /// A clean finish; a program's exit status (0).
    Clean(Option<i32>),
    Failed {
        message: String,
        status: Option<i32>,
        signal: Option<i32>,
    },
}

pub struct Service {
    name: String,
    create_id: Id,
    loaded: Loaded,
    program: Program,
    groups: ChildGroups,
    duplex: bool,
    returns: ReturnOptions,
    restart: Restart,
    healthy: Duration,
    grace: Duration,
    table: ProcessTable,
}

/// The default run length that counts as healthy (resets the back-off).
const HEALTHY: Duration = Duration::from_secs(60);

impl Service {
    pub fn load(
        store: &Store,
        name: &str,
        create: &Frame,
        table: &ProcessTable,
    ) -> Result<Service, String> {
        let env_meta = json!({ "service_id": create.id.to_string() }).to_string();
        let env = [("XS_APPEND_META", Value::string(env_meta, script::span()))];
        let groups = ChildGroups::default();
        let builtins = commands::with_append(store, AppendMode::Direct, groups.clone());
        let loaded = script::load_service(store, create, builtins, &env)?;
        let options = &loaded.options;
        let program = match options.get("command") {
            Some(Value::List { vals, .. }) => {
                let words = vals
                    .iter()
                    .map(|v| v.as_str().map(str::to_string))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| "'command' must be a list of strings")?;
                if words.is_empty() {
                    return Err("'command' must name a program".into());
                }
                Program::Command(words)
            }
            Some(_) => return Err("'command' must be a list: [program, arg, ...]".into()),
            None => Program::Closure,
        };
        let restart = match options.get("restart") {
            Some(value) => {
                Restart::parse(value.as_str().map_err(|_| "'restart' must be a string")?)?
            }
            None if matches!(program, Program::Command(_)) => Restart::Always,
            None => Restart::CrossStream,
        };
        let millis = |key: &str, default: Duration| -> Result<Duration, String> {
            match options.get(key) {
                Some(value) => value
                    .as_int()
                    .map(|ms| Duration::from_millis(ms.max(0) as u64))
                    .map_err(|_| format!("'{key}' must be an int (ms)")),
                None => Ok(default),
            }
        };
        let healthy = millis("healthy_ms", HEALTHY)?;
        let grace = millis("grace_ms", DEFAULT_GRACE)?;
        let duplex = options
            .get("duplex")
            .map(|v| v.as_bool().unwrap_or(false))
            .unwrap_or(false);
        let returns = ReturnOptions {
            raw_strings: true,
            ..ReturnOptions::read(options, ".recv")?
        };
        Ok(Service {
            name: name.to_string(),
            create_id: create.id,
            loaded,
            program,
            groups,
            duplex,
            returns,
            restart,
            healthy,
            grace,
            table: table.clone(),
        })
    }

    pub fn spawn(self, store: Store) -> Result<Running, String> {
        let interrupt = self.loaded.engine.interrupter().clone();
        let groups = self.groups.clone();
        let name = self.name.clone();
        let grace = self.grace;
        Running::spawn(
            Kind::Service,
            &name,
            interrupt,
            groups,
            grace,
            move |stop| self.run(&store, stop),
        )
    }

    fn run(self, store: &Store, stop: &AtomicBool) {
        let ids = lifecycle::meta(Kind::Service, self.create_id, &[]);
        let mut backoff = Backoff::new(self.healthy);
        let mut restarted = false;
        loop {
            let active =
                match lifecycle::emit(store, Kind::Service, &self.name, Event::Active, ids.clone())
                {
                    Ok(frame) => frame,
                    Err(_) => return,
                };
            let started = Instant::now();
            self.table
                .started(Kind::Service, &self.name, None, restarted);
            let end = match &self.program {
                Program::Closure => self.run_closure(store, active.id, &ids, stop),
                Program::Command(words) => self.run_command(store, words, &ids),
            };
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let (clean, status, signal, message) = match end {
                RunEnd::Clean(status) => (true, status, None, None),
                RunEnd::Failed {
                    message,
                    status,
                    signal,
                } => (false, status, signal, Some(message)),
            };
            self.table.exited(
                Kind::Service,
                &self.name,
                describe_exit(clean, status, signal, message.as_deref()),
            );
            if let Some(message) = &message {
                self.table
                    .failed(Kind::Service, &self.name, message.clone());
            }
            if !self.restart.reruns(clean) {
                self.stop_for_good(store, clean, status, message);
                return;
            }
            let delay = match self.restart {
                Restart::CrossStream => RERUN_AFTER,
                _ => backoff.next_delay(started.elapsed()),
            };
            if self.restart != Restart::CrossStream {
                let meta = lifecycle::meta(
                    Kind::Service,
                    self.create_id,
                    &[
                        ("status", json!(status)),
                        ("signal", json!(signal)),
                        ("restart_in_ms", json!(delay.as_millis() as u64)),
                    ],
                );
                let _ = lifecycle::emit(store, Kind::Service, &self.name, Event::Exited, meta);
            }
            self.table
                .set_state(Kind::Service, &self.name, State::Backoff);
            let deadline = Instant::now() + delay;
            if supervise::wait_until(deadline, || stop.load(Ordering::Relaxed)) {
                return;
            }
            restarted = true;
        }
    }

    /// `fin.ok` after a clean exit, `fin.error` (with the status) after a
    /// failure: the service does not come back, not even after a restart.
    fn stop_for_good(
        &self,
        store: &Store,
        clean: bool,
        status: Option<i32>,
        message: Option<String>,
    ) {
        let (event, state, more) = if clean {
            (Event::FinOk, State::Stopped, Vec::new())
        } else {
            (
                Event::FinError,
                State::Failed,
                vec![
                    ("message", json!(message.unwrap_or_default())),
                    ("status", json!(status)),
                ],
            )
        };
        let meta = lifecycle::meta(Kind::Service, self.create_id, &more);
        let _ = lifecycle::emit(store, Kind::Service, &self.name, event, meta);
        self.table.set_state(Kind::Service, &self.name, state);
    }

    /// One run of the Nushell closure.
    fn run_closure(
        &self,
        store: &Store,
        active: Id,
        ids: &Map<String, Json>,
        stop: &AtomicBool,
    ) -> RunEnd {
        // A run after one a bound stopped starts with a clear flag; a stop
        // asked meanwhile is seen just below (it sets `stop` first).
        self.loaded.engine.interrupter().clear();
        if stop.load(Ordering::Relaxed) {
            return RunEnd::Clean(None);
        }
        let bounds = Bounds::start(&self.loaded.engine, Timed::No, None);
        let input = if self.duplex {
            self.duplex_input(store, active)
        } else {
            PipelineData::empty()
        };
        let outcome = self
            .loaded
            .engine
            .call_closure(&self.loaded.run, Vec::new(), input)
            .map_err(|e| self.loaded.engine.render_shell_error(&e))
            .and_then(|data| self.emit_outputs(store, data, ids, stop));
        let outcome = match bounds.verdict() {
            Some(verdict) => Err(verdict),
            None => outcome,
        };
        match outcome {
            Ok(()) => RunEnd::Clean(None),
            Err(message) => RunEnd::Failed {
                message,
                status: None,
                signal: None,
            },
        }
    }

    /// One run of a plain program: stdout lines to `<name>.recv`, stderr
    /// lines to `<name>.stderr`.
    fn run_command(&self, store: &Store, words: &[String], ids: &Map<String, Json>) -> RunEnd {
        let mut process = Command::new(&words[0]);
        process
            .args(&words[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = match sys::process::spawn(process) {
            Ok(child) => child,
            Err(e) => {
                return RunEnd::Failed {
                    message: format!("cannot run `{}`: {e}", words[0]),
                    status: None,
                    signal: None,
                }
            }
        };
        let pid = child.id();
        self.groups.add(pid);
        self.table
            .started(Kind::Service, &self.name, Some(pid), false);
        let readers: Vec<_> = [
            child.stdout.take().map(|out| {
                (
                    Box::new(out) as Box<dyn Read + Send>,
                    self.returns.suffix.clone(),
                )
            }),
            child
                .stderr
                .take()
                .map(|err| (Box::new(err) as Box<dyn Read + Send>, ".stderr".to_string())),
        ]
        .into_iter()
        .flatten()
        .map(|(source, suffix)| {
            let store = store.clone();
            let topic = format!("{}{suffix}", self.name);
            let ids = ids.clone();
            let returns = self.returns.clone();
            std::thread::spawn(move || forward_lines(&store, source, topic, &returns, &ids))
        })
        .collect();
        let status = child.wait();
        for reader in readers {
            let _ = reader.join();
        }
        self.groups.remove(pid);
        sys::process::forget(pid);
        match status {
            Ok(status) if status.success() => RunEnd::Clean(status.code()),
            Ok(status) => {
                use std::os::unix::process::ExitStatusExt;
                let message = match (status.code(), status.signal()) {
                    (Some(code), _) => format!("`{}` exited with status {code}", words[0]),
                    (None, Some(signal)) => format!("`{}` was killed by signal {signal}", words[0]),
                    _ => format!("`{}` ended: {status}", words[0]),
                };
                RunEnd::Failed {
                    message,
                    status: status.code(),
                    signal: status.signal(),
                }
            }
            Err(e) => RunEnd::Failed {
                message: format!("waiting for `{}`: {e}", words[0]),
                status: None,
                signal: None,
            },
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

/// One frame per line of `source` (the line, without its newline, is the
/// payload).
fn forward_lines(
    store: &Store,
    source: Box<dyn Read + Send>,
    topic: String,
    returns: &ReturnOptions,
    ids: &Map<String, Json>,
) {
    use std::io::BufRead;
    let reader = std::io::BufReader::new(source);
    for line in reader.split(b'\n') {
        let Ok(mut line) = line else { return };
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if let Ok(draft) = output::bytes_draft(store, topic.clone(), &line, returns, ids) {
            output::send(store, draft);
        }
    }
}

/// How a run ended, for `xs ps`.
fn describe_exit(
    clean: bool,
    status: Option<i32>,
    signal: Option<i32>,
    message: Option<&str>,
) -> String {
    match (clean, status, signal) {
        (true, _, _) => "exited cleanly".into(),
        (false, Some(code), _) => format!("exit status {code}"),
        (false, None, Some(signal)) => format!("signal {signal}"),
        (false, None, None) => message
            .unwrap_or("failed")
            .lines()
            .next()
            .unwrap_or("failed")
            .to_string(),
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
                let Ok(sri) = crate::store::parse_sri(hash) else {
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
