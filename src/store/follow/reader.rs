//! Reading the stream: history, the threshold, then live frames.
//!
//! How a follow works. A `Reader` first notes the head (the newest id
//! committed); everything up to it is history, read from the store in
//! large chunks. Then it emits `xs.threshold` and turns live: it sleeps on
//! the head's condvar, and each time the head moves it reads the store
//! after its last delivered id, up to the new head (plus ephemeral frames
//! from the in-memory window). Because a live reader reads the store rather
//! than a queue, one that falls behind simply reads more at its next turn:
//! it is never cut off and holds no backlog in memory.

use std::collections::VecDeque;
use std::ops::Bound;
use std::time::{Duration, Instant};

use crate::store::frame::synthetic;
use crate::store::id::Id;
use crate::store::topic::TopicFilter;
use crate::store::FrameIter;
use crate::store::{RawFrame, Store, StoreError};

/// Frames read from the store per step.
const CHUNK: usize = 1024;

/// Whether and how a read follows the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Follow {
    #[default]
    Off,
    On,
    /// On, with an `xs.pulse` every this many milliseconds.
    Pulse(u64),
}

impl Follow {
    pub fn is_on(&self) -> bool {
        !matches!(self, Follow::Off)
    }
}

/// What to read (`GET /` fills it from its query, src/api/read.rs).
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    pub follow: Follow,
    pub new: bool,
    pub after: Option<Id>,
    pub from: Option<Id>,
    pub limit: Option<u64>,
    pub last: Option<u64>,
    pub topic: TopicFilter,
    pub with_timestamp: bool,
    /// Newest first, history only.
    pub rev: bool,
    /// With `rev`: start below this id.
    pub before: Option<Id>,
    /// Live, wake only for batches that may hold a control frame
    /// (`StoreOptions::control_topic`); others are read at the next such
    /// wake-up or idle timeout. The processor dispatcher's reader.
    pub wake_on_control: bool,
}

/// One step of a read, for the caller to write out.
#[derive(Debug)]
pub enum ReadEvent {
    /// A chunk of history (write it in one go).
    History(Vec<RawFrame>),
    /// One live frame (write and flush).
    Live(RawFrame),
    /// Nothing happened for a while: a chance to check the client is there.
    Idle,
    /// The read is over.
    End,
}

enum Phase {
    Start,
    History(FrameIter),
    Threshold,
    Live,
    Done,
}

/// Produces the events of one read.
pub struct Reader {
    store: Store,
    options: ReadOptions,
    phase: Phase,
    delivered: u64,
    last_seen: Option<Id>,
    head_version: u64,
    /// The control version last seen (`wake_on_control`).
    control_version: u64,
    live_queue: VecDeque<RawFrame>,
    next_pulse: Option<Instant>,
}

impl Reader {
    pub fn new(store: Store, options: ReadOptions) -> Reader {
        let next_pulse = match options.follow {
            Follow::Pulse(ms) => Some(Instant::now() + Duration::from_millis(ms)),
            _ => None,
        };
        store.head().reader_started();
        let control_version = store.head().control_version();
        Reader {
            store,
            options,
            phase: Phase::Start,
            delivered: 0,
            last_seen: None,
            head_version: 0,
            control_version,
            live_queue: VecDeque::new(),
            next_pulse,
        }
    }

    pub fn options(&self) -> &ReadOptions {
        &self.options
    }

    /// Live frames already read and waiting: `next_event` returns them
    /// without waiting (a consumer may gather its output until none is).
    pub fn queued(&self) -> usize {
        self.live_queue.len()
    }

    fn limit_reached(&self) -> bool {
        self.options
            .limit
            .is_some_and(|limit| self.delivered >= limit)
    }

    fn pulse_due(&mut self) -> Option<RawFrame> {
        let (Follow::Pulse(ms), Some(at)) = (self.options.follow, self.next_pulse) else {
            return None;
        };
        let now = Instant::now();
        if now < at {
            return None;
        }
        self.next_pulse = Some(now + Duration::from_millis(ms));
        Some(synthetic_raw("xs.pulse"))
    }

    /// The next event; blocks while following and nothing happens, for at
    /// most `idle` before returning `Idle`.
    pub fn next_event(&mut self, idle: Duration) -> Result<ReadEvent, StoreError> {
        loop {
            if let Some(pulse) = self.pulse_due() {
                return Ok(ReadEvent::Live(pulse));
            }
            match std::mem::replace(&mut self.phase, Phase::Done) {
                Phase::Start => self.start()?,
                Phase::History(iter) => return self.history_step(iter),
                Phase::Threshold => {
                    self.phase = Phase::Live;
                    return Ok(ReadEvent::Live(synthetic_raw("xs.threshold")));
                }
                Phase::Live => {
                    self.phase = Phase::Live;
                    return self.live_step(idle);
                }
                Phase::Done => {
                    // With a pulse, a read that ended its frames stays open
                    // for pulses (as cross.stream does).
                    if let Follow::Pulse(_) = self.options.follow {
                        if self.store.head().view().closed {
                            return Ok(ReadEvent::End);
                        }
                        std::thread::sleep(self.until_pulse().min(idle));
                        if self.next_pulse.is_some_and(|p| Instant::now() < p) {
                            return Ok(ReadEvent::Idle);
                        }
                        continue;
                    }
                    return Ok(ReadEvent::End);
                }
            }
        }
    }

    fn until_pulse(&self) -> Duration {
        self.next_pulse
            .map(|p| p.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(3600))
    }

    fn start(&mut self) -> Result<(), StoreError> {
        let view = self.store.head().view();
        self.head_version = view.version;
        let newest = self.store.newest_id(view.last_id);
        let upper = match newest {
            Some(id) => Bound::Included(id),
            None => Bound::Excluded(Id::from_u128(0)),
        };
        let options = &self.options;
        if options.rev {
            let upper = match options.before {
                Some(before) => Bound::Excluded(before),
                None => upper,
            };
            let iter = self
                .store
                .scan(&options.topic, Bound::Unbounded, upper, true);
            self.phase = Phase::History(iter);
            return Ok(());
        }
        self.last_seen = newest;
        if options.new {
            self.phase = if options.follow.is_on() {
                Phase::Live
            } else {
                Phase::Done
            };
            return Ok(());
        }
        if let Some(n) = options.last {
            let frames = self.store.last_n(&options.topic, n as usize, upper)?;
            self.delivered = frames.len() as u64;
            self.phase = Phase::History(Box::new(frames.into_iter().map(Ok)));
            return Ok(());
        }
        let lower = match (options.from, options.after) {
            (Some(from), _) => Bound::Included(from),
            (None, Some(after)) => Bound::Excluded(after),
            (None, None) => Bound::Unbounded,
        };
        let iter = self.store.scan(&options.topic, lower, upper, false);
        self.phase = Phase::History(iter);
        Ok(())
    }

    fn history_step(&mut self, mut iter: FrameIter) -> Result<ReadEvent, StoreError> {
        let counted = self.options.last.is_none();
        let mut chunk = Vec::with_capacity(CHUNK);
        while chunk.len() < CHUNK {
            if counted && self.limit_reached() {
                break;
            }
            match iter.next() {
                Some(frame) => {
                    chunk.push(frame?);
                    if counted {
                        self.delivered += 1;
                    }
                }
                None => {
                    self.phase = self.after_history();
                    return Ok(history_event(chunk));
                }
            }
        }
        if counted && self.limit_reached() {
            // The limit cut the history short: if more remains, the read
            // ends here, without a threshold (as cross.stream does).
            self.phase = match iter.next() {
                Some(_) => Phase::Done,
                None => self.after_history(),
            };
            return Ok(history_event(chunk));
        }
        self.phase = Phase::History(iter);
        Ok(history_event(chunk))
    }

    fn after_history(&self) -> Phase {
        if self.options.follow.is_on() && !self.options.rev {
            Phase::Threshold
        } else {
            Phase::Done
        }
    }

    fn live_step(&mut self, idle: Duration) -> Result<ReadEvent, StoreError> {
        let deadline = Instant::now() + idle;
        loop {
            if let Some(frame) = self.live_queue.pop_front() {
                self.delivered += 1;
                if self.limit_reached() {
                    self.phase = Phase::Done;
                    self.options.follow = Follow::Off;
                }
                return Ok(ReadEvent::Live(frame));
            }
            let view = self.store.head().view();
            // Even when closing, what was committed (`xs.stopping`) goes out.
            if view.last_id > self.last_seen {
                self.head_version = view.version;
                match self.fill_live_queue(view.last_id) {
                    Ok(()) => continue,
                    // The store is out of reach (Redis went away): wait
                    // and read again from the same place, losing nothing.
                    Err(StoreError::Unavailable(_)) => {
                        std::thread::sleep(UNAVAILABLE_RETRY.min(idle));
                        return Ok(ReadEvent::Idle);
                    }
                    Err(e) => return Err(e),
                }
            }
            if view.closed {
                self.phase = Phase::Done;
                self.options.follow = Follow::Off;
                return Ok(ReadEvent::End);
            }
            if let Some(pulse) = self.pulse_due() {
                return Ok(ReadEvent::Live(pulse));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(ReadEvent::Idle);
            }
            let wait = (deadline - now).min(self.until_pulse());
            if self.options.wake_on_control {
                let seen = self.control_version;
                self.control_version = self.store.head().wait_control_past(seen, wait);
            } else {
                let seen = self.head_version;
                self.head_version = self.store.head().wait_past(seen, wait).version;
            }
        }
    }

    /// Reads what landed after the last seen id, up to `upto`.
    fn fill_live_queue(&mut self, upto: Option<Id>) -> Result<(), StoreError> {
        let Some(upto) = upto else { return Ok(()) };
        let lower = match self.last_seen {
            Some(id) => Bound::Excluded(id),
            None => Bound::Unbounded,
        };
        let filter = &self.options.topic;
        let recent = self
            .store
            .head()
            .recent_between(self.last_seen, upto, CHUNK, |topic| filter.matches(topic));
        let from_memory = recent.is_some();
        let mut stored: Vec<RawFrame> = match recent {
            Some(frames) => frames,
            None => self
                .store
                .scan(filter, lower, Bound::Included(upto), false)
                .take(CHUNK)
                .collect::<Result<_, _>>()?,
        };
        // When the chunk is full, read the rest next time, from its end.
        let bound = if stored.len() == CHUNK {
            stored.last().map(|f| f.id).unwrap_or(upto)
        } else {
            upto
        };
        if from_memory {
            // The scan leaves out `time:` frames that ran out; so must memory.
            let now = crate::store::id::now_ms();
            stored.retain(|f| !f.is_expired(now));
        }
        let ephemeral = self
            .store
            .head()
            .ephemeral_between(self.last_seen, bound, |topic| filter.matches(topic));
        let head = self.store.head();
        let mut merged: Vec<RawFrame> = stored
            .into_iter()
            .filter(|f| !head.is_imported_ahead(f.id))
            .chain(ephemeral)
            .collect();
        merged.sort_by_key(|f| f.id);
        self.live_queue.extend(merged);
        self.last_seen = Some(bound);
        Ok(())
    }
}

/// How long a follower waits before reading an unreachable store again.
const UNAVAILABLE_RETRY: Duration = Duration::from_millis(200);

impl Drop for Reader {
    fn drop(&mut self) {
        self.store.head().reader_ended();
    }
}

fn history_event(chunk: Vec<RawFrame>) -> ReadEvent {
    if chunk.is_empty() {
        ReadEvent::Idle
    } else {
        ReadEvent::History(chunk)
    }
}

fn synthetic_raw(topic: &str) -> RawFrame {
    let frame = synthetic(topic);
    RawFrame {
        id: frame.id,
        json: frame.to_json().into_bytes(),
    }
}
