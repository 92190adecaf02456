//! The write protocol both backends serve.
//!
//! How it works. `Store` (the facade) turns a caller's request into a
//! `WriteOp` and sends it, as a `WriteRequest`, on the channel of the
//! backend's single writer thread; the writer answers each request through
//! its `ReplyTo`: a channel (the caller goes on and reads the answer later)
//! or a `Waiter` (the caller blocks right now). Everything here is said in
//! the interface's words: what to append, import, remove or keep. What a
//! backend does to make it durable (the local backend journals small
//! payloads; Redis SETs them with the frame) is the backend's business.
//!
//! An append may carry two conditions, checked by the writer inside its
//! batch (so two racing appends cannot both pass): `expect_last` (the
//! topic's newest frame must be that id, or none) and `idempotency_key`
//! (a key seen within the dedup window answers the original frame,
//! `WriteOutcome::Duplicate`, and writes nothing). The key is looked at
//! first: a duplicate is answered even when the topic has moved on.

use std::sync::{Arc, Condvar, Mutex};

use crossbeam_channel::Sender;
use serde_json::Value;

use super::frame::Frame;
use super::id::Id;
use super::ttl::Ttl;
use super::StoreError;

/// A frame to append; the writer gives it its id. Build it with
/// `Draft::new(topic)` and the builder methods.
#[derive(Debug, Clone)]
pub struct Draft {
    pub topic: String,
    pub hash: Option<String>,
    pub meta: Option<Value>,
    pub ttl: Option<Ttl>,
    /// Append only if the topic's newest frame is this (`xs-expect-last`).
    pub expect_last: Option<ExpectLast>,
    /// Append only once per key within the dedup window
    /// (`xs-idempotency-key`; see `validate_idempotency_key`).
    pub idempotency_key: Option<String>,
}

/// What an append expects the topic's newest frame to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectLast {
    /// The topic has no frame (`none`).
    Empty,
    /// The topic's newest frame has this id.
    Id(Id),
}

impl ExpectLast {
    /// `none` or a frame id.
    pub fn parse(text: &str) -> Result<ExpectLast, String> {
        if text == "none" {
            return Ok(ExpectLast::Empty);
        }
        super::id::parse_id(text)
            .map(ExpectLast::Id)
            .map_err(|e| format!("'{text}' is neither none nor a frame id: {e}"))
    }

    /// The id, `None` for `Empty`.
    pub fn id(self) -> Option<Id> {
        match self {
            ExpectLast::Empty => None,
            ExpectLast::Id(id) => Some(id),
        }
    }
}

/// The longest idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY: usize = 256;

/// An idempotency key is 1 to 256 visible ASCII characters (it travels as
/// a header value).
pub fn validate_idempotency_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("invalid idempotency key: it is empty".into());
    }
    if key.len() > MAX_IDEMPOTENCY_KEY {
        return Err(format!(
            "invalid idempotency key: {} bytes, the limit is {MAX_IDEMPOTENCY_KEY}",
            key.len()
        ));
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(
            "invalid idempotency key: only visible ASCII characters (no spaces) are allowed".into(),
        );
    }
    Ok(())
}

/// The refusal of an append whose topic's newest frame is not the one
/// expected.
pub fn not_last(topic: &str, expected: ExpectLast, last: Option<Id>) -> StoreError {
    StoreError::NotLast {
        topic: topic.to_string(),
        expected: expected.id(),
        last,
    }
}

impl Draft {
    /// A frame on `topic` with no payload, meta or ttl.
    pub fn new(topic: impl Into<String>) -> Draft {
        Draft {
            topic: topic.into(),
            hash: None,
            meta: None,
            ttl: None,
            expect_last: None,
            idempotency_key: None,
        }
    }

    pub fn expect_last(mut self, expect: Option<ExpectLast>) -> Draft {
        self.expect_last = expect;
        self
    }

    pub fn idempotency_key(mut self, key: Option<String>) -> Draft {
        self.idempotency_key = key;
        self
    }

    /// The payload's hash (one already stored; see
    /// `Store::append_with_payload` for one stored for this frame).
    pub fn hash(mut self, hash: Option<String>) -> Draft {
        self.hash = hash;
        self
    }

    pub fn meta(mut self, meta: Option<Value>) -> Draft {
        self.meta = meta;
        self
    }

    pub fn ttl(mut self, ttl: Option<Ttl>) -> Draft {
        self.ttl = ttl;
        self
    }
}

/// One change to the store. Built by `Store` only.
#[derive(Debug)]
pub(in crate::store) enum WriteOp {
    /// A new frame, with its payload's bytes when the backend may keep
    /// them with the frame (a small payload on the local backend, any on
    /// Redis).
    Append(Draft, Option<Vec<u8>>),
    /// A frame stored verbatim (id, hash and ttl kept); not news.
    Import(Frame, Option<Vec<u8>>),
    Remove(Id),
    /// Removals that go only if no frame under `index` (`t:<topic>`,
    /// `p:<prefix.>`, `*`) was removed since the requester counted `seen`
    /// removals there: the check and the removals are one step, so nothing
    /// removed in between (`xs remove`, a ttl) makes them remove more than
    /// the requester's count allows (the retention sweeper's batches).
    RemoveIfUnchanged {
        index: String,
        ids: Vec<Id>,
        seen: u64,
    },
    /// A payload kept without a frame (`POST /cas`), made durable by the
    /// backend with its next write.
    KeepPayload(String, Vec<u8>),
    KvSet(String, Vec<u8>),
    KvDelete(String),
    /// Nothing: answered once every request sent before it is (a
    /// liveness probe, the last write at close).
    Nothing,
    /// These payloads' files are synced now: a copy a backend kept with
    /// their frames to make them durable may go (the local backend's
    /// journal); a backend that keeps none answers `Done`.
    PayloadsSynced(Vec<Vec<u8>>),
    /// Idempotency keys older than the dedup window may go; a backend
    /// whose keys expire by themselves (Redis) answers `Done`.
    ForgetOldKeys,
    /// Consumer group state: keys to put (`Some` value) or delete, as the
    /// local backend keeps it (`groups/local.rs`); Redis changes its
    /// groups in their own scripts and never gets this.
    Groups(Vec<(Vec<u8>, Option<Vec<u8>>)>),
}

/// What a successful write returns.
#[derive(Debug)]
pub enum WriteOutcome {
    Frame(Frame),
    /// An append whose idempotency key was seen within the dedup window:
    /// the frame it appended then; nothing was written now.
    Duplicate(Frame),
    /// `RemoveIfUnchanged`: how many ids were removed, or `None` when a
    /// removal under the index came first and nothing was removed.
    Removed(Option<u64>),
    Done,
}

pub type WriteReply = Result<WriteOutcome, StoreError>;

pub(in crate::store) struct WriteRequest {
    pub op: WriteOp,
    pub reply: Option<ReplyTo>,
}

/// Where the writer answers a request.
pub(in crate::store) enum ReplyTo {
    /// A channel the requester may wait on later (`Store::submit`).
    Channel(Sender<WriteReply>),
    /// A requester blocked right now (`Store::write`): one condvar wake,
    /// no spinning (a crossbeam receiver spins and `sched_yield`s before
    /// it sleeps, CPU a busy 2-core machine lacks).
    Waiter(Answer),
}

impl ReplyTo {
    pub fn send(self, reply: WriteReply) {
        match self {
            ReplyTo::Channel(sender) => {
                let _ = sender.send(reply);
            }
            ReplyTo::Waiter(mut answer) => answer.put(reply),
        }
    }
}

/// A one-shot slot for one reply.
#[derive(Default)]
pub(in crate::store) struct Waiter {
    slot: Mutex<Option<WriteReply>>,
    ready: Condvar,
}

impl Waiter {
    /// Blocks until the reply is there.
    pub fn wait(&self) -> WriteReply {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(reply) = slot.take() {
                return reply;
            }
            slot = self.ready.wait(slot).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// The writer's end of a `Waiter`. Dropped unanswered (the writer gone,
/// or a panic), it answers `Closed`, so no requester waits forever.
pub(in crate::store) struct Answer {
    waiter: Arc<Waiter>,
    answered: bool,
}

impl Answer {
    pub fn new(waiter: Arc<Waiter>) -> Answer {
        Answer {
            waiter,
            answered: false,
        }
    }

    fn put(&mut self, reply: WriteReply) {
        self.answered = true;
        *self.waiter.slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(reply);
        self.waiter.ready.notify_one();
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        if !self.answered {
            self.put(Err(StoreError::Closed));
        }
    }
}

/// Whether stored JSON is `frame`: the same bytes, or (a frame written by
/// cross.stream, spelled its way) the same frame once read.
pub fn same_frame(stored: &[u8], frame: &Frame) -> bool {
    stored == frame.to_json().as_bytes()
        || Frame::from_json(stored).is_ok_and(|stored| stored == *frame)
}

/// The refusal of an import whose id holds another frame.
pub fn import_conflict(id: Id) -> StoreError {
    StoreError::Conflict(format!(
        "cannot import {id}: a different frame is stored under that id (only the same bytes may be imported again)"
    ))
}
