//! The writer thread of the Redis backend.
//!
//! Same contract as the local writer: requests arrive on the store's
//! channel, the writer drains what is queued, and consecutive appends go to
//! Redis as one script call (group commit: one round trip, one AOF write
//! for the lot). Ids are assigned here, above the newest id this node
//! knows; if another node appended meanwhile, the script refuses the whole
//! call and answers the namespace's newest id, and the writer takes new
//! ids above it and tries again. So ids strictly increase in stream order
//! across nodes, and a node's own frames keep the order they were sent in.
//!
//! A stored frame's payload travels with it (the connection thread hands
//! the bytes over with the draft) and is SET by the same script: frame and
//! payload in one round trip, one AOF write. An append is acknowledged once
//! Redis acknowledged the script (and, with `--redis-replicas N`, once N
//! replicas did: WAIT).
//!
//! Conditional appends (`expect_last`, `idempotency_key`) are decided by
//! the same script, frame by frame in order, so two racing appends (from
//! this node or another) cannot both pass; the script answers a verdict
//! per frame, and a refused or duplicate frame's id is simply not used.

use std::sync::Arc;

use crate::store::queue::QueueReceiver;
use redis::Value;

use super::{bytes, hex_id, id_from_stream_id, stream_id, text, Redis};
use crate::store::frame::Frame;
use crate::store::head::{Head, TopicFrame};
use crate::store::id::{next_id_after, now_ms, Id};
use crate::store::metrics::Metrics;
use crate::store::ttl::Ttl;
use crate::store::write::{
    not_last, Draft, ExpectLast, WriteOp, WriteOutcome, WriteReply, WriteRequest,
};
use crate::store::{RawFrame, StoreError};

/// The most requests folded into one batch.
const MAX_BATCH: usize = 512;
/// How long a batch waits for the watcher before it leaves moving the
/// head to it.
const HEAD_CATCH_UP: std::time::Duration = std::time::Duration::from_millis(50);
/// Tries before an append gives up racing other nodes for ids.
const MAX_RETRIES: usize = 64;

pub struct RedisWriter {
    redis: Arc<Redis>,
    head: Arc<Head>,
    metrics: Arc<Metrics>,
    last_id: Option<Id>,
    /// `--dedup-window`: how long an idempotency key is kept (PX);
    /// `None`: keys are ignored.
    dedup_window: Option<std::time::Duration>,
}

impl RedisWriter {
    pub fn new(redis: Arc<Redis>, head: Arc<Head>, metrics: Arc<Metrics>) -> RedisWriter {
        let last_id = head.view().last_id;
        RedisWriter {
            redis,
            head,
            metrics,
            last_id,
            dedup_window: None,
        }
    }

    /// Keeps idempotency keys for `window` (`None`: ignores them).
    pub fn with_dedup_window(mut self, window: Option<std::time::Duration>) -> RedisWriter {
        self.dedup_window = window;
        self
    }

    pub(in crate::store) fn run(mut self, requests: QueueReceiver<WriteRequest>) {
        while let Some(batch) = requests.recv_batch(MAX_BATCH) {
            self.apply(batch);
        }
    }

    /// Consecutive appends go as one script call, and so do consecutive
    /// imports; anything else one by one, in order.
    fn apply(&mut self, batch: Vec<WriteRequest>) {
        let mut run: Vec<WriteRequest> = Vec::new();
        for request in batch {
            let same_kind = run.first().is_none_or(|first| {
                std::mem::discriminant(&first.op) == std::mem::discriminant(&request.op)
            });
            if !same_kind {
                self.flush_run(std::mem::take(&mut run));
            }
            if matches!(request.op, WriteOp::Append(..) | WriteOp::Import(..)) {
                run.push(request);
                continue;
            }
            let outcome = self.apply_one(&request.op);
            if let Some(reply) = request.reply {
                reply.send(outcome);
            }
        }
        self.flush_run(run);
    }

    fn flush_run(&mut self, run: Vec<WriteRequest>) {
        match run.first().map(|r| &r.op) {
            Some(WriteOp::Append(..)) => self.append_run(run),
            Some(WriteOp::Import(..)) => self.import_run(run),
            _ => {}
        }
    }

    fn apply_one(&mut self, op: &WriteOp) -> WriteReply {
        match op {
            WriteOp::Append(..) | WriteOp::Import(..) => {
                Err(StoreError::Storage("append or import outside a run".into()))
            }
            WriteOp::Remove(id) => {
                let sid = stream_id(*id);
                let removed = self.redis.run_script(&[b"remove", sid.as_bytes()])?;
                super::sweeper::count_removed(&self.metrics, &removed);
                Ok(WriteOutcome::Done)
            }
            // The check and the removals are one script.
            WriteOp::RemoveIfUnchanged { index, ids, seen } => {
                let removed = self.redis.remove_if_unchanged(index, ids, *seen)?;
                if let Some(n @ 1..) = removed {
                    Metrics::add(&self.metrics.removed_frames, n);
                    Metrics::add(&self.metrics.remove_commits, 1);
                }
                Ok(WriteOutcome::Removed(removed))
            }
            WriteOp::KvSet(key, value) => self
                .redis
                .run_script(&[b"kvset", key.as_bytes(), value])
                .map(|_| WriteOutcome::Done),
            WriteOp::KvDelete(key) => self
                .redis
                .run_script(&[b"kvdel", key.as_bytes()])
                .map(|_| WriteOutcome::Done),
            // A payload without a frame (`POST /cas`).
            WriteOp::KeepPayload(hash, bytes) => self
                .redis
                .put_payload(hash, bytes)
                .map(|_| WriteOutcome::Done),
            WriteOp::Nothing
            | WriteOp::PayloadsSynced(_)
            | WriteOp::ForgetOldKeys
            | WriteOp::Groups(_) => Ok(WriteOutcome::Done),
        }
    }

    /// Imports consecutive frames with as few script calls as the
    /// conflicts allow: each call stores frames until one is refused.
    fn import_run(&mut self, run: Vec<WriteRequest>) {
        let frames: Vec<&Frame> = run
            .iter()
            .filter_map(|r| match &r.op {
                WriteOp::Import(frame, _) => Some(frame),
                _ => None,
            })
            .collect();
        let mut outcomes: Vec<WriteReply> = Vec::with_capacity(frames.len());
        while outcomes.len() < frames.len() {
            let rest = &frames[outcomes.len()..];
            match self.import_some(rest) {
                Ok(ImportAnswer::All) => {
                    outcomes.extend(rest.iter().map(|f| Ok(WriteOutcome::Frame((*f).clone()))));
                }
                Ok(ImportAnswer::Refused { at, last }) => {
                    let at = at.min(rest.len() - 1);
                    outcomes.extend(
                        rest[..at]
                            .iter()
                            .map(|f| Ok(WriteOutcome::Frame((*f).clone()))),
                    );
                    outcomes.push(Err(StoreError::Conflict(format!(
                        "cannot import {}: on the redis backend an imported id must be above the stream's last id {}",
                        rest[at].id,
                        last.map(|l| l.to_string()).unwrap_or_default()
                    ))));
                }
                Err(e) => {
                    outcomes.extend(rest.iter().map(|_| Err(e.relay())));
                }
            }
        }
        let stored: Vec<Id> = frames
            .iter()
            .zip(&outcomes)
            .filter(|(_, outcome)| outcome.is_ok())
            .map(|(frame, _)| frame.id)
            .collect();
        if let Some(newest) = stored.iter().max().copied() {
            if self.last_id.is_none_or(|last| newest > last) {
                self.last_id = Some(newest);
            }
            self.head.publish(Some(newest), Vec::new(), &stored);
        }
        for (request, outcome) in run.into_iter().zip(outcomes) {
            if let Some(reply) = request.reply {
                reply.send(outcome);
            }
        }
    }

    fn import_some(&self, frames: &[&Frame]) -> Result<ImportAnswer, StoreError> {
        let mut owned: Vec<Vec<u8>> = vec![b"import".to_vec(), frames.len().to_string().into()];
        for frame in frames {
            let expiry = match frame.ttl {
                Some(Ttl::Time(ms)) => frame.id.timestamp().saturating_add(ms).to_string(),
                _ => String::new(),
            };
            owned.push(hex_id(frame.id).into_bytes());
            owned.push(stream_id(frame.id).into_bytes());
            owned.push(frame.to_json().into_bytes());
            owned.push(frame.topic.clone().into_bytes());
            owned.push(frame.hash.clone().unwrap_or_default().into_bytes());
            owned.push(expiry.into_bytes());
        }
        let args: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
        let Value::Array(items) = self.redis.run_script(&args)? else {
            return Err(StoreError::Storage(
                "unexpected answer from the import script".into(),
            ));
        };
        let mut items = items.into_iter();
        match items.next().and_then(text).as_deref() {
            Some("ok") => Ok(ImportAnswer::All),
            Some("conflict") => {
                let last = items
                    .next()
                    .and_then(text)
                    .and_then(|hex| u128::from_str_radix(&hex, 16).ok())
                    .map(Id::from_u128);
                let at = match items.next() {
                    Some(Value::Int(at)) => usize::try_from(at).unwrap_or(0),
                    _ => 0,
                };
                Ok(ImportAnswer::Refused { at, last })
            }
            other => Err(StoreError::Storage(format!(
                "unexpected answer from the import script: {other:?}"
            ))),
        }
    }

    /// Appends consecutive drafts in one script call, retrying with new
    /// ids while another node is ahead.
    fn append_run(&mut self, run: Vec<WriteRequest>) {
        let drafts: Vec<(&Draft, &Option<Vec<u8>>)> = run
            .iter()
            .filter_map(|r| match &r.op {
                WriteOp::Append(draft, payload) => Some((draft, payload)),
                _ => None,
            })
            .collect();
        let mut outcome = Err(StoreError::Storage("appends were not attempted".into()));
        let mut before = None;
        for _ in 0..MAX_RETRIES {
            let frames = match self.frames_for(&drafts) {
                Ok(frames) => frames,
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            };
            match self.send(&drafts, &frames) {
                Ok(Sent::Stored {
                    last_before,
                    verdicts,
                }) => {
                    before = last_before;
                    outcome = Ok(frames
                        .into_iter()
                        .zip(&drafts)
                        .enumerate()
                        .map(|(at, (frame, (draft, _)))| {
                            let verdict = verdicts.get(at).map(Vec::as_slice).unwrap_or(b"");
                            verdict_outcome(frame, draft, verdict)
                        })
                        .collect::<Vec<WriteReply>>());
                    break;
                }
                Ok(Sent::Ahead(ahead)) => {
                    self.last_id = Some(ahead);
                }
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        let outcomes = match outcome {
            Ok(outcomes) => outcomes,
            Err(error) => {
                Metrics::add(&self.metrics.appends_failed, drafts.len() as u64);
                for request in run {
                    if let Some(reply) = request.reply {
                        reply.send(Err(error.relay()));
                    }
                }
                return;
            }
        };
        let stored: Vec<&Frame> = outcomes
            .iter()
            .filter_map(|o| match o {
                Ok(WriteOutcome::Frame(frame)) => Some(frame),
                _ => None,
            })
            .collect();
        let count = stored.len() as u64;
        Metrics::add(&self.metrics.appends_ok, count);
        Metrics::add(&self.metrics.frames_appended, count);
        let ephemeral = stored
            .iter()
            .filter(|f| f.ttl == Some(Ttl::Ephemeral))
            .map(|f| TopicFrame {
                topic: f.topic.clone(),
                frame: RawFrame {
                    id: f.id,
                    json: f.to_json().into_bytes(),
                },
            })
            .collect();
        // Move the head at once (an appender reads its own frames back
        // right away) only when it already covers everything below this
        // batch: else a follower here could pass another node's ephemeral
        // frame the watcher has not brought yet. Then the watcher moves it.
        if self.head_reaches(before) {
            self.head.publish(self.last_id, ephemeral, &[]);
        }
        for (request, outcome) in run.into_iter().zip(outcomes) {
            if let Some(reply) = request.reply {
                reply.send(outcome);
            }
        }
    }

    /// Whether this node's head covers `id`, waiting a little for the
    /// watcher to bring it.
    fn head_reaches(&self, id: Option<Id>) -> bool {
        let Some(id) = id else { return true };
        let deadline = std::time::Instant::now() + HEAD_CATCH_UP;
        loop {
            let view = self.head.view();
            if view.last_id >= Some(id) {
                return true;
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return false;
            }
            self.head.wait_past(view.version, deadline - now);
        }
    }

    /// The drafts as frames with ids above the newest known.
    fn frames_for(
        &mut self,
        drafts: &[(&Draft, &Option<Vec<u8>>)],
    ) -> Result<Vec<Frame>, StoreError> {
        drafts
            .iter()
            .map(|(draft, _)| {
                let id = next_id_after(self.last_id)?;
                self.last_id = Some(id);
                Ok(Frame {
                    topic: draft.topic.clone(),
                    id,
                    hash: draft.hash.clone(),
                    meta: draft.meta.clone(),
                    ttl: draft.ttl,
                })
            })
            .collect()
    }

    /// One script call.
    fn send(
        &self,
        drafts: &[(&Draft, &Option<Vec<u8>>)],
        frames: &[Frame],
    ) -> Result<Sent, StoreError> {
        let window_ms = self.dedup_window.map_or(0, |w| w.as_millis() as u64);
        let mut owned: Vec<Vec<u8>> = vec![
            b"append".to_vec(),
            self.redis.node().as_bytes().to_vec(),
            frames.len().to_string().into(),
            now_ms().to_string().into(),
            window_ms.to_string().into(),
        ];
        for ((draft, payload), frame) in drafts.iter().zip(frames) {
            let (kind, arg) = match frame.ttl {
                Some(Ttl::Time(ms)) => ("t", frame.id.timestamp().saturating_add(ms).to_string()),
                Some(Ttl::Last(n)) => ("l", n.to_string()),
                Some(Ttl::Ephemeral) => ("e", String::new()),
                Some(Ttl::Forever) | None => ("f", String::new()),
            };
            let (has_payload, payload) = match payload {
                Some(bytes) => (&b"1"[..], bytes.clone()),
                None => (&b""[..], Vec::new()),
            };
            owned.push(hex_id(frame.id).into_bytes());
            owned.push(stream_id(frame.id).into_bytes());
            owned.push(frame.to_json().into_bytes());
            owned.push(frame.topic.clone().into_bytes());
            owned.push(frame.hash.clone().unwrap_or_default().into_bytes());
            owned.push(kind.as_bytes().to_vec());
            owned.push(arg.into_bytes());
            owned.push(has_payload.to_vec());
            owned.push(payload);
            owned.push(match draft.expect_last {
                None => Vec::new(),
                Some(ExpectLast::Empty) => b"none".to_vec(),
                Some(ExpectLast::Id(id)) => stream_id(id).into_bytes(),
            });
            owned.push(
                draft
                    .idempotency_key
                    .clone()
                    .unwrap_or_default()
                    .into_bytes(),
            );
        }
        let args: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
        let mut answer = self.redis.run_script(&args)?;
        // The fourth item, the verdicts, is taken before the rest is read.
        let verdicts = match &mut answer {
            Value::Array(items) if items.len() > 3 => match items.remove(3) {
                Value::Array(verdicts) => verdicts
                    .into_iter()
                    .map(|v| bytes(v).unwrap_or_default())
                    .collect(),
                _ => Vec::new(),
            },
            _ => Vec::new(),
        };
        match script_answer(answer) {
            (verdict, _, last_before) if verdict == "ok" => Ok(Sent::Stored {
                last_before,
                verdicts,
            }),
            (verdict, Some(last), _) if verdict == "retry" => Ok(Sent::Ahead(last)),
            (verdict, ..) => Err(StoreError::Storage(format!(
                "unexpected answer from the append script: {verdict}"
            ))),
        }
    }
}

/// What became of one import script call.
enum ImportAnswer {
    /// Every frame is in (or was already).
    All,
    /// The frame at this index was refused (those before it are in).
    Refused { at: usize, last: Option<Id> },
}

/// What became of one append script call.
enum Sent {
    /// Stored; the namespace's newest id before it, and the verdict on
    /// each frame (see `verdict_outcome`).
    Stored {
        last_before: Option<Id>,
        verdicts: Vec<Vec<u8>>,
    },
    /// Another node is ahead: its newest id.
    Ahead(Id),
}

/// What the script's verdict on one frame means: "" stored, "c<stream id>"
/// its expected last was not met (the topic's last, "" none), "d<json>"
/// its idempotency key had appended that frame.
fn verdict_outcome(frame: Frame, draft: &Draft, verdict: &[u8]) -> WriteReply {
    match verdict.split_first() {
        None => Ok(WriteOutcome::Frame(frame)),
        Some((b'c', last)) => {
            let last = std::str::from_utf8(last).ok().and_then(id_from_stream_id);
            let expected = draft.expect_last.unwrap_or(ExpectLast::Empty);
            Err(not_last(&draft.topic, expected, last))
        }
        Some((b'd', json)) => Frame::from_json(json)
            .map(WriteOutcome::Duplicate)
            .map_err(|e| {
                StoreError::Storage(format!("an idempotency key's frame is unreadable: {e}"))
            }),
        Some(_) => Err(StoreError::Storage(
            "unexpected verdict from the append script".into(),
        )),
    }
}

/// A script's `{verdict, hex id, hex id}` answer (the ids optional).
fn script_answer(answer: Value) -> (String, Option<Id>, Option<Id>) {
    let Value::Array(items) = answer else {
        return (format!("{answer:?}"), None, None);
    };
    let mut items = items.into_iter();
    let verdict = items.next().and_then(text).unwrap_or_default();
    let mut id = || {
        items
            .next()
            .and_then(text)
            .and_then(|hex| u128::from_str_radix(&hex, 16).ok())
            .map(Id::from_u128)
    };
    let first = id();
    let second = id();
    (verdict, first, second)
}
