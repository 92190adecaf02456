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
//! the bytes over in the draft) and is SET by the same script: frame and
//! payload in one round trip, one AOF write. An append is acknowledged once
//! Redis acknowledged the script (and, with `--redis-replicas N`, once N
//! replicas did: WAIT).

use std::sync::Arc;

use crossbeam_channel::Receiver;
use redis::Value;

use super::{hex_id, stream_id, text, Redis};
use crate::store::frame::Frame;
use crate::store::head::{EphemeralFrame, Head};
use crate::store::id::{next_id_after, Id};
use crate::store::metrics::Metrics;
use crate::store::ttl::Ttl;
use crate::store::{Draft, RawFrame, StoreError, WriteOp, WriteOutcome, WriteReply, WriteRequest};

/// The most requests folded into one batch.
const MAX_BATCH: usize = 512;
/// Tries before an append gives up racing other nodes for ids.
const MAX_RETRIES: usize = 64;

pub struct RedisWriter {
    redis: Arc<Redis>,
    head: Arc<Head>,
    metrics: Arc<Metrics>,
    last_id: Option<Id>,
}

impl RedisWriter {
    pub fn new(redis: Arc<Redis>, head: Arc<Head>, metrics: Arc<Metrics>) -> RedisWriter {
        let last_id = head.view().last_id;
        RedisWriter {
            redis,
            head,
            metrics,
            last_id,
        }
    }

    pub fn run(mut self, requests: Receiver<WriteRequest>) {
        while let Ok(first) = requests.recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match requests.try_recv() {
                    Ok(request) => batch.push(request),
                    Err(_) => break,
                }
            }
            self.apply(batch);
        }
    }

    fn apply(&mut self, batch: Vec<WriteRequest>) {
        let mut run: Vec<WriteRequest> = Vec::new();
        for request in batch {
            if matches!(request.op, WriteOp::Append(_)) {
                run.push(request);
                continue;
            }
            if !run.is_empty() {
                self.append_run(std::mem::take(&mut run));
            }
            let outcome = self.apply_one(&request.op);
            if let Some(reply) = request.reply {
                let _ = reply.send(outcome);
            }
        }
        if !run.is_empty() {
            self.append_run(run);
        }
    }

    fn apply_one(&mut self, op: &WriteOp) -> WriteReply {
        match op {
            WriteOp::Append(_) => Err(StoreError::Storage("append outside a run".into())),
            WriteOp::Import(frame, _) => self.import(frame),
            WriteOp::Remove(id) => {
                let sid = stream_id(*id);
                self.redis
                    .run_script(&[b"remove", sid.as_bytes()])
                    .map(|_| WriteOutcome::Done)
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
            WriteOp::JournalPayload(hash, bytes) => self
                .redis
                .put_payload(hash, bytes)
                .map(|_| WriteOutcome::Done),
            WriteOp::ForgetPending(_) => Ok(WriteOutcome::Done),
        }
    }

    fn import(&mut self, frame: &Frame) -> WriteReply {
        let expiry = match frame.ttl {
            Some(Ttl::Time(ms)) => frame.id.timestamp().saturating_add(ms).to_string(),
            _ => String::new(),
        };
        let hex = hex_id(frame.id);
        let sid = stream_id(frame.id);
        let json = frame.to_json();
        let hash = frame.hash.clone().unwrap_or_default();
        let answer = self.redis.run_script(&[
            b"import",
            hex.as_bytes(),
            sid.as_bytes(),
            json.as_bytes(),
            frame.topic.as_bytes(),
            hash.as_bytes(),
            expiry.as_bytes(),
        ])?;
        match status(answer) {
            (status, _) if status == "same" => Ok(WriteOutcome::Frame(frame.clone())),
            (status, _) if status == "ok" => {
                if self.last_id.is_none_or(|last| frame.id > last) {
                    self.last_id = Some(frame.id);
                }
                self.head.publish(Some(frame.id), Vec::new(), &[frame.id]);
                Ok(WriteOutcome::Frame(frame.clone()))
            }
            (status, last) if status == "conflict" => Err(StoreError::Conflict(format!(
                "cannot import {}: on the redis backend an imported id must be above the stream's last id {}",
                frame.id,
                last.map(|l| l.to_string()).unwrap_or_default()
            ))),
            (status, _) => Err(StoreError::Storage(format!(
                "unexpected answer from the import script: {status}"
            ))),
        }
    }

    /// Appends consecutive drafts in one script call, retrying with new
    /// ids while another node is ahead.
    fn append_run(&mut self, run: Vec<WriteRequest>) {
        let drafts: Vec<&Draft> = run
            .iter()
            .filter_map(|r| match &r.op {
                WriteOp::Append(draft) => Some(draft),
                _ => None,
            })
            .collect();
        let count = drafts.len() as u64;
        let mut outcome = Err(StoreError::Storage("appends were not attempted".into()));
        for _ in 0..MAX_RETRIES {
            let frames = self.frames_for(&drafts);
            match self.send(&drafts, &frames) {
                Ok(None) => {
                    outcome = Ok(frames);
                    break;
                }
                Ok(Some(ahead)) => {
                    self.last_id = Some(ahead);
                }
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        let frames = match outcome {
            Ok(frames) => frames,
            Err(error) => {
                Metrics::add(&self.metrics.appends_failed, count);
                let text = error.to_string();
                let status = error.status();
                for request in run {
                    if let Some(reply) = request.reply {
                        let _ = reply.send(Err(StoreError::Relayed {
                            status,
                            text: text.clone(),
                        }));
                    }
                }
                return;
            }
        };
        Metrics::add(&self.metrics.appends_ok, count);
        Metrics::add(&self.metrics.frames_appended, count);
        let ephemeral = frames
            .iter()
            .filter(|f| f.ttl == Some(Ttl::Ephemeral))
            .map(|f| EphemeralFrame {
                topic: f.topic.clone(),
                frame: RawFrame {
                    id: f.id,
                    json: f.to_json().into_bytes(),
                },
            })
            .collect();
        self.head.publish(self.last_id, ephemeral, &[]);
        for (request, frame) in run.into_iter().zip(frames) {
            if let Some(reply) = request.reply {
                let _ = reply.send(Ok(WriteOutcome::Frame(frame)));
            }
        }
    }

    /// The drafts as frames with ids above the newest known.
    fn frames_for(&mut self, drafts: &[&Draft]) -> Vec<Frame> {
        drafts
            .iter()
            .map(|draft| {
                let id = next_id_after(self.last_id);
                self.last_id = Some(id);
                Frame {
                    topic: draft.topic.clone(),
                    id,
                    hash: draft.hash.clone(),
                    meta: draft.meta.clone(),
                    ttl: draft.ttl,
                }
            })
            .collect()
    }

    /// One script call; `Some(last)` when another node is ahead.
    fn send(&self, drafts: &[&Draft], frames: &[Frame]) -> Result<Option<Id>, StoreError> {
        let mut owned: Vec<Vec<u8>> = vec![
            b"append".to_vec(),
            self.redis.node().as_bytes().to_vec(),
            frames.len().to_string().into(),
        ];
        for (draft, frame) in drafts.iter().zip(frames) {
            let (kind, arg) = match frame.ttl {
                Some(Ttl::Time(ms)) => ("t", frame.id.timestamp().saturating_add(ms).to_string()),
                Some(Ttl::Last(n)) => ("l", n.to_string()),
                Some(Ttl::Ephemeral) => ("e", String::new()),
                Some(Ttl::Forever) | None => ("f", String::new()),
            };
            let (has_payload, payload) = match &draft.journal_payload {
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
        }
        let args: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
        let answer = self.redis.run_script(&args)?;
        match status(answer) {
            (status, _) if status == "ok" => Ok(None),
            (status, Some(last)) if status == "retry" => Ok(Some(last)),
            (status, _) => Err(StoreError::Storage(format!(
                "unexpected answer from the append script: {status}"
            ))),
        }
    }
}

/// A script's `{status, hex id}` answer.
fn status(answer: Value) -> (String, Option<Id>) {
    let Value::Array(mut items) = answer else {
        return (format!("{answer:?}"), None);
    };
    let last = if items.len() > 1 {
        text(items.remove(1))
            .and_then(|hex| u128::from_str_radix(&hex, 16).ok())
            .map(Id::from_u128)
    } else {
        None
    };
    let status = items.into_iter().next().and_then(text).unwrap_or_default();
    (status, last)
}
