//! The response router: one follower of `http.response` for the whole
//! gateway, handing each response to the request it answers.
//!
//! How it works. A single thread follows the stream from the moment the
//! gateway starts, topic `http.response` only (stored frames through the
//! topic index, ephemeral ones from the head's in-memory window), and looks
//! up `meta.request_id` in a map of waiting requests, each with a channel.
//! A waiting request costs one map entry, not a reader of its own.
//!
//! A request learns its id only once its frame is appended, and a quick
//! handler can answer before the request's thread has registered that id.
//! So a response for an id nobody waits for is kept for a while ("early"),
//! and registering an id first takes whatever arrived early, both under one
//! lock: no response is lost to that race. Early responses nobody claims
//! (answers to requests that already finished, or to another server's) are
//! dropped after `EARLY_KEPT_FOR`, and at most `EARLY_MAX` are kept.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::store::id::parse_id;
use crate::store::{Follow, ReadEvent, ReadOptions, Reader};
use crate::store::{Frame, Id, RawFrame, Store, TopicFilter};

/// The topic the router follows.
pub const RESPONSE_TOPIC: &str = "http.response";

/// How long a response for an unknown request is kept for it.
const EARLY_KEPT_FOR: Duration = Duration::from_secs(10);

/// The most requests with early responses kept at once.
const EARLY_MAX: usize = 10_000;

/// How often unclaimed early responses are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Waiting requests and early responses.
#[derive(Default)]
struct Slots {
    waiting: HashMap<Id, Sender<Frame>>,
    early: HashMap<Id, (Instant, Vec<Frame>)>,
    /// The stream has ended (server shutdown): nobody waits any more.
    closed: bool,
}

/// Hands `http.response` frames to the requests they answer.
pub struct Router {
    slots: Mutex<Slots>,
}

impl Router {
    /// Starts following `http.response` frames from now on.
    pub fn start(store: Store) -> Result<Arc<Router>, String> {
        let router = Arc::new(Router {
            slots: Mutex::new(Slots::default()),
        });
        let options = ReadOptions {
            follow: Follow::On,
            new: true,
            topic: TopicFilter::parse(RESPONSE_TOPIC),
            ..ReadOptions::default()
        };
        // The reader notes the head now, so nothing appended after `start`
        // returns is missed, even before the thread first runs.
        let mut reader = Reader::new(store, options);
        let first = reader
            .next_event(Duration::ZERO)
            .map_err(|e| format!("cannot follow {RESPONSE_TOPIC}: {e}"))?;
        if let ReadEvent::Live(raw) = first {
            router.take(raw);
        }
        let routing = router.clone();
        std::thread::Builder::new()
            .name("http-router".into())
            .spawn(move || routing.run(reader))
            .map_err(|e| format!("cannot start the HTTP response router: {e}"))?;
        Ok(router)
    }

    fn lock(&self) -> MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a request: its responses arrive on the returned channel,
    /// starting with any that came early. `None` once the server stops.
    pub fn wait_for(&self, request_id: Id) -> Option<Receiver<Frame>> {
        let (sender, receiver) = crossbeam_channel::unbounded();
        let mut slots = self.lock();
        if slots.closed {
            return None;
        }
        if let Some((_, frames)) = slots.early.remove(&request_id) {
            for frame in frames {
                let _ = sender.send(frame);
            }
        }
        slots.waiting.insert(request_id, sender);
        Some(receiver)
    }

    /// Unregisters a request that is done: later answers to it are dropped.
    pub fn forget(&self, request_id: Id) {
        self.lock().waiting.remove(&request_id);
    }

    fn run(&self, mut reader: Reader) {
        let mut last_sweep = Instant::now();
        loop {
            match reader.next_event(SWEEP_EVERY) {
                Ok(ReadEvent::Live(raw)) => self.take(raw),
                Ok(ReadEvent::History(_)) | Ok(ReadEvent::Idle) => {}
                Ok(ReadEvent::End) => break,
                Err(e) => {
                    eprintln!("xs: http gateway: reading {RESPONSE_TOPIC}: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            if last_sweep.elapsed() >= SWEEP_EVERY {
                self.sweep();
                last_sweep = Instant::now();
            }
        }
        let mut slots = self.lock();
        slots.closed = true;
        slots.waiting.clear();
        slots.early.clear();
    }

    /// Hands a response to its request, or keeps it until one registers.
    fn take(&self, raw: RawFrame) {
        let frame = match raw.parse() {
            Ok(frame) => frame,
            Err(e) => return eprintln!("xs: http gateway: {e}"),
        };
        let Some(request_id) = request_id_of(&frame) else {
            return;
        };
        let mut slots = self.lock();
        if let Some(sender) = slots.waiting.get(&request_id) {
            if sender.send(frame).is_err() {
                slots.waiting.remove(&request_id);
            }
            return;
        }
        let full = slots.early.len() >= EARLY_MAX;
        match slots.early.get_mut(&request_id) {
            Some((_, frames)) => frames.push(frame),
            None if !full => {
                slots
                    .early
                    .insert(request_id, (Instant::now(), vec![frame]));
            }
            None => {}
        }
    }

    fn sweep(&self) {
        let now = Instant::now();
        self.lock()
            .early
            .retain(|_, (arrived, _)| now.duration_since(*arrived) < EARLY_KEPT_FOR);
    }
}

/// The request a response answers: `meta.request_id`.
pub fn request_id_of(frame: &Frame) -> Option<Id> {
    let text = frame.meta.as_ref()?.get("request_id")?.as_str()?;
    parse_id(text).ok()
}
