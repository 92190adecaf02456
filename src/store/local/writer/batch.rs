//! One batch of the local writer, staged request by request.
//!
//! How it works. `Batch::open` picks the keyspaces the batch writes to
//! (a new store makes its own only when a request needs them: see
//! `local::Keyspaces`). Each request is then staged into one fjall write
//! batch by a step of its own (`stage_append`, `stage_import`,
//! `stage_remove`, `stage_payload`, `stage_kv`), which records its reply
//! and what to publish once the batch is committed. `commit` adds the
//! payload reference counts, claims the batch's disk room and commits (and
//! syncs, per the policy) once; what it returns (`Committed`) is what the
//! writer publishes and answers. A step's `Err` fails the whole batch; a
//! request refused on its own (a bad import, an id space run out) only
//! gets its error in its reply.
//!
//! Conditional appends are decided here, against what is committed plus
//! what this batch staged before them: `expect_last` against the topic's
//! newest frame (`topic_last`: the committed index, minus frames this
//! batch removes and expired `time:` frames, plus frames staged earlier);
//! an idempotency key against the keys staged earlier and the `dedup`
//! keyspace. Two racing appends land in one batch or in two, in order,
//! so at most one passes. The `dedup` keyspace holds, per key,
//! `k<key>` -> (seen at ms, frame JSON) and `t<ms><key>` -> "" (oldest
//! first); `stage_dedup_sweep` drops keys older than the window, and the
//! oldest ones beyond `DEDUP_MAX_KEYS`, at the commit of any batch that
//! adds a key (and when the housekeeper asks).

use std::collections::{BTreeSet, HashMap, HashSet};

use fjall::{Keyspace, OwnedWriteBatch};

use super::Writer;
use crate::store::frame::Frame;
use crate::store::head::{Published, TopicFrame};
use crate::store::id::{check_room_after, next_id_after, now_ms, Id};
use crate::store::local::dedup::DedupKey;
use crate::store::local::{Keyspaces, Ours};
use crate::store::metrics::Metrics;
use crate::store::topic::index_prefixes;
use crate::store::ttl::Ttl;
use crate::store::write::{
    import_conflict, not_last, same_frame, Draft, WriteOp, WriteOutcome, WriteReply, WriteRequest,
};
use crate::store::{RawFrame, StoreError};

/// Journal bytes a deletion adds beyond its key, about.
const TOMBSTONE_BYTES: u64 = 32;

/// Journal bytes the removal of one frame adds, about: its stream key, a
/// few index keys, an expiry key.
const TOMBSTONES_PER_FRAME: u64 = 256;

/// The most expired keys one batch sweeps (the next batch goes on).
const DEDUP_SWEEP_MAX: u64 = 10_000;

/// A batch being staged. Borrows the writer: ids are handed out from its
/// `last_id` as appends are staged (`Writer::fail` takes them back).
pub(super) struct Batch<'w> {
    writer: &'w mut Writer,
    staging: Staging,
    write: OwnedWriteBatch,
    /// Bytes the batch adds to disk, and what its deletions add to the
    /// journal (their tombstones), roughly: claimed before the commit.
    bytes_to_disk: u64,
    deletion_bytes: u64,
    /// Payload reference count changes, applied once at `commit`.
    ref_deltas: HashMap<String, i64>,
    /// Frames imported by this batch, to hold later imports of the same
    /// id to the same bytes.
    imported_json: HashMap<Id, Vec<u8>>,
    /// Per topic, the newest frame this batch stored so far.
    staged_last: HashMap<String, Id>,
    /// Frames this batch removes.
    removed: HashSet<Id>,
    /// Idempotency keys this batch recorded, with their frames.
    keys: HashMap<String, Frame>,
    /// Whether to sweep the dedup keys at commit.
    sweep_dedup: bool,
    /// Idempotency keys this batch adds to the count.
    added_keys: u64,
    done: Committed,
}

/// What a committed batch leaves the writer to do: answer, publish, and
/// hand chores to the housekeeper.
pub(super) struct Committed {
    /// One reply per request, in order.
    pub outcomes: Vec<WriteReply>,
    /// The news for followers (`last_id` is set by the writer).
    pub published: Published,
    /// Removals of frames that were there (`published.removed` also holds
    /// ids asked for that were already gone).
    pub frames_removed: u64,
    /// The topics of the frames removed (for `Metrics::removed_under`).
    pub removed_topics: Vec<String>,
    pub kv_changes: Vec<(String, Option<Vec<u8>>)>,
    /// `last:<n>` topics to prune.
    pub prune: BTreeSet<(String, u32)>,
    /// Payloads no frame references any more.
    pub unreferenced: Vec<String>,
    /// Journaled payload keys, for the housekeeper to forget once synced.
    pub journaled: Vec<Vec<u8>>,
    /// Whether anything was written to disk.
    pub wrote: bool,
}

impl<'w> Batch<'w> {
    /// A batch for `requests`, on the keyspaces they need; fails (the
    /// whole batch) when the store is broken or they cannot be made.
    pub fn open(
        writer: &'w mut Writer,
        requests: &[WriteRequest],
    ) -> Result<Batch<'w>, StoreError> {
        if let Some(reason) = writer.local.broken.reason() {
            return Err(StoreError::Unavailable(reason));
        }
        let spaces = writer.local.keyspaces()?.clone();
        // A new store's first batch writes only to `stream` (see
        // `local::Keyspaces`): the writer files its frames when it makes
        // the index, right after. Any later batch needs the index.
        let index = match spaces.index_if_made() {
            Some(index) => Some(index.clone()),
            None if writer.first_batch => None,
            None => Some(spaces.index()?.clone()),
        };
        // A new store makes ours after its first batch too, unless a
        // request needs them sooner.
        let ours = if requests.iter().any(|r| needs_ours(&r.op)) {
            Some(spaces.ours()?.clone())
        } else {
            spaces.ours_if_made().cloned()
        };
        let write = spaces.db.batch();
        Ok(Batch {
            writer,
            staging: Staging {
                spaces,
                index,
                ours,
            },
            write,
            bytes_to_disk: 0,
            deletion_bytes: 0,
            ref_deltas: HashMap::new(),
            imported_json: HashMap::new(),
            staged_last: HashMap::new(),
            removed: HashSet::new(),
            keys: HashMap::new(),
            sweep_dedup: false,
            added_keys: 0,
            done: Committed {
                outcomes: Vec::with_capacity(requests.len()),
                published: Published {
                    last_id: None,
                    ephemeral: Vec::new(),
                    stored: Vec::new(),
                    imported: Vec::new(),
                    removed: Vec::new(),
                },
                frames_removed: 0,
                removed_topics: Vec::new(),
                kv_changes: Vec::new(),
                prune: BTreeSet::new(),
                unreferenced: Vec::new(),
                journaled: Vec::new(),
                wrote: false,
            },
        })
    }

    /// Stages one request and records its reply. Appends and imports
    /// return `Ok(reply)`, their own refusal inside; their `Err` (and any
    /// other step's `?`) fails the whole batch. The other steps' errors
    /// are their request's reply.
    pub fn stage(&mut self, op: &WriteOp) -> Result<(), StoreError> {
        let outcome = match op {
            WriteOp::Append(draft, payload) => self.stage_append(draft, payload.as_deref())?,
            WriteOp::Import(frame, payload) => self.stage_import(frame, payload.as_deref())?,
            WriteOp::Remove(id) => self.stage_remove(*id),
            WriteOp::RemoveIfUnchanged { index, ids, seen } => {
                self.stage_remove_if_unchanged(index, ids, *seen)
            }
            WriteOp::KeepPayload(hash, bytes) => self.stage_payload(hash, bytes),
            WriteOp::PayloadsSynced(keys) => self.stage_forget(keys),
            WriteOp::ForgetOldKeys => {
                self.sweep_dedup = true;
                Ok(WriteOutcome::Done)
            }
            WriteOp::Groups(writes) => self.stage_groups(writes),
            WriteOp::KvSet(key, value) => self.stage_kv(key, Some(value)),
            WriteOp::KvDelete(key) => self.stage_kv(key, None),
            WriteOp::Nothing => Ok(WriteOutcome::Done),
        };
        self.done.outcomes.push(outcome);
        Ok(())
    }

    /// An append: its conditions (an idempotency key seen before answers
    /// the frame appended then; an unmet `expect_last` refuses it), the
    /// next id, then the frame (kept in memory only when ephemeral), a
    /// small payload journaled with it and its idempotency key.
    fn stage_append(
        &mut self,
        draft: &Draft,
        payload: Option<&[u8]>,
    ) -> Result<WriteReply, StoreError> {
        let dedup_window = self
            .writer
            .dedup_window
            .filter(|_| draft.idempotency_key.is_some());
        let mut replaced_key = None;
        if let (Some(window), Some(key)) = (dedup_window, &draft.idempotency_key) {
            // An unreadable entry refuses this append only.
            match self.seen_key(key, window) {
                Ok(Seen::Within(frame)) => return Ok(Ok(WriteOutcome::Duplicate(frame))),
                Ok(Seen::Expired(at)) => replaced_key = Some(at),
                Ok(Seen::Never) => {}
                Err(e) => return Ok(Err(e)),
            }
        }
        if let Some(expected) = draft.expect_last {
            let last = match self.topic_last(&draft.topic) {
                Ok(last) => last,
                Err(e) => return Ok(Err(e)),
            };
            if last != expected.id() {
                return Ok(Err(not_last(&draft.topic, expected, last)));
            }
        }
        let reply = self.stage_new_frame(draft, payload)?;
        if let (Some(_), Some(key), Ok(WriteOutcome::Frame(frame))) =
            (dedup_window, &draft.idempotency_key, &reply)
        {
            self.record_key(key, frame, replaced_key)?;
        }
        Ok(reply)
    }

    /// The id of the topic's newest frame as this batch leaves it so far.
    fn topic_last(&self, topic: &str) -> Result<Option<Id>, StoreError> {
        let stored = self
            .writer
            .local
            .last_of_topic(topic, now_ms(), &self.removed)?;
        Ok(stored.max(self.staged_last.get(topic).copied()))
    }

    /// Whether an idempotency key was recorded within `window`.
    fn seen_key(&self, key: &str, window: std::time::Duration) -> Result<Seen, StoreError> {
        if let Some(frame) = self.keys.get(key) {
            return Ok(Seen::Within(frame.clone()));
        }
        let ours = self.staging.ours()?;
        let Some(value) = ours
            .dedup
            .get(DedupKey::seen(key))
            .map_err(StoreError::fjall)?
        else {
            return Ok(Seen::Never);
        };
        let (at, json) = DedupKey::split_value(&value).ok_or_else(|| {
            StoreError::Storage(format!("idempotency key {key}: unreadable entry"))
        })?;
        if at < now_ms().saturating_sub(window.as_millis() as u64) {
            return Ok(Seen::Expired(at));
        }
        let frame = Frame::from_json(json).map_err(|e| {
            StoreError::Storage(format!("idempotency key {key}: unreadable frame: {e}"))
        })?;
        Ok(Seen::Within(frame))
    }

    /// Records an idempotency key with the frame it appended; `replaced`:
    /// when the key's expired entry (not swept yet) was seen.
    fn record_key(
        &mut self,
        key: &str,
        frame: &Frame,
        replaced: Option<u64>,
    ) -> Result<(), StoreError> {
        let dedup = self.staging.ours()?.dedup.clone();
        let at = now_ms();
        let json = frame.to_json();
        let mut value = at.to_be_bytes().to_vec();
        value.extend_from_slice(json.as_bytes());
        let seen = DedupKey::seen(key);
        self.bytes_to_disk += (seen.len() + value.len() + key.len() + 9) as u64;
        self.write.insert(&dedup, seen, value);
        self.write.insert(&dedup, DedupKey::by_time(at, key), []);
        match replaced {
            Some(old) => {
                self.deletion_bytes += key.len() as u64 + TOMBSTONE_BYTES;
                self.write.remove(&dedup, DedupKey::by_time(old, key));
            }
            None => self.added_keys += 1,
        }
        self.keys.insert(key.to_string(), frame.clone());
        self.sweep_dedup = true;
        Ok(())
    }

    /// Drops the keys older than the window (at most `DEDUP_SWEEP_MAX`
    /// of them) and the oldest ones beyond `DEDUP_MAX_KEYS`. Keys this
    /// batch recorded stay (their old entry's removal is staged already).
    fn stage_dedup_sweep(&mut self) -> Result<(), StoreError> {
        let Some(window) = self.writer.dedup_window else {
            return Ok(());
        };
        let Some(ours) = self.staging.ours.clone() else {
            return Ok(());
        };
        let committed = match self.writer.dedup_keys {
            Some(count) => count,
            None => {
                let mut count = 0u64;
                for guard in ours.dedup.prefix(b"t") {
                    guard.key().map_err(StoreError::fjall)?;
                    count += 1;
                }
                count
            }
        };
        let count = committed + self.added_keys;
        let over = count.saturating_sub(self.writer.dedup_max_keys);
        let cutoff = now_ms().saturating_sub(window.as_millis() as u64);
        let mut dropped = 0u64;
        for guard in ours.dedup.prefix(b"t") {
            if dropped >= over + DEDUP_SWEEP_MAX {
                break;
            }
            let by_time = guard.key().map_err(StoreError::fjall)?;
            let Some((at, key)) = DedupKey::split_by_time(&by_time) else {
                continue;
            };
            if at >= cutoff && dropped >= over {
                break;
            }
            if self.keys.contains_key(key) {
                continue;
            }
            self.deletion_bytes += 2 * (by_time.len() as u64 + TOMBSTONE_BYTES);
            self.write.remove(&ours.dedup, DedupKey::seen(key));
            self.write.remove(&ours.dedup, by_time.to_vec());
            dropped += 1;
        }
        self.writer.dedup_keys = Some(count - dropped);
        Ok(())
    }

    /// A new frame: the next id, then the frame (kept in memory only when
    /// ephemeral) and a small payload journaled with it.
    fn stage_new_frame(
        &mut self,
        draft: &Draft,
        payload: Option<&[u8]>,
    ) -> Result<WriteReply, StoreError> {
        let id = match next_id_after(self.writer.last_id) {
            Ok(id) => id,
            Err(e) => return Ok(Err(e)),
        };
        self.writer.last_id = Some(id);
        let frame = Frame {
            topic: draft.topic.clone(),
            id,
            hash: draft.hash.clone(),
            meta: draft.meta.clone(),
            ttl: draft.ttl,
        };
        let json = frame.to_json().into_bytes();
        let news = TopicFrame {
            topic: frame.topic.clone(),
            frame: RawFrame { id, json },
        };
        if draft.ttl == Some(Ttl::Ephemeral) {
            self.done.published.ephemeral.push(news);
            return Ok(Ok(WriteOutcome::Frame(frame)));
        }
        self.stage_frame(&frame, &news.frame.json, payload)?;
        self.staged_last.insert(frame.topic.clone(), id);
        self.done.published.stored.push(news);
        if let (Some(hash), Some(_)) = (&frame.hash, payload) {
            self.done.journaled.push(hash.as_bytes().to_vec());
        }
        if let Some(Ttl::Last(n)) = frame.ttl {
            self.done.prune.insert((frame.topic.clone(), n));
        }
        Ok(Ok(WriteOutcome::Frame(frame)))
    }

    /// An import: stored verbatim unless the same bytes already are.
    fn stage_import(
        &mut self,
        frame: &Frame,
        payload: Option<&[u8]>,
    ) -> Result<WriteReply, StoreError> {
        let json = frame.to_json().into_bytes();
        match self.check_import(frame) {
            Ok(true) => {}
            // Already stored, byte for byte: nothing to do.
            Ok(false) => return Ok(Ok(WriteOutcome::Frame(frame.clone()))),
            Err(e) => return Ok(Err(e)),
        }
        self.stage_frame(frame, &json, payload)?;
        let last_id = &mut self.writer.last_id;
        if last_id.is_none_or(|last| frame.id > last) {
            *last_id = Some(frame.id);
        }
        self.done.published.imported.push(frame.id);
        let newest = self
            .staged_last
            .entry(frame.topic.clone())
            .or_insert(frame.id);
        *newest = (*newest).max(frame.id);
        self.imported_json.insert(frame.id, json);
        Ok(Ok(WriteOutcome::Frame(frame.clone())))
    }

    /// Whether an imported frame is to be stored: `false` when the same
    /// bytes are already stored under its id (importing twice adds
    /// nothing); refused when other bytes are (an acknowledged frame is
    /// never replaced), or when its id leaves no room for later ids.
    fn check_import(&self, frame: &Frame) -> Result<bool, StoreError> {
        check_room_after(frame.id).map_err(StoreError::BadInput)?;
        let stored = match self.imported_json.get(&frame.id) {
            Some(json) => Some(json.clone()),
            None => self.writer.local.get(frame.id)?.map(|raw| raw.json),
        };
        match stored {
            None => Ok(true),
            Some(stored) if same_frame(&stored, frame) => Ok(false),
            Some(_) => Err(import_conflict(frame.id)),
        }
    }

    /// Adds a frame, its index keys, its expiry key and a journaled
    /// payload to the batch, and counts its payload reference.
    fn stage_frame(
        &mut self,
        frame: &Frame,
        json: &[u8],
        payload: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let spaces = &self.staging.spaces;
        let key = frame.id.to_bytes();
        let mut bytes = (json.len() + 16) as u64;
        self.write.insert(&spaces.stream, key, json);
        if let Some(index) = &self.staging.index {
            for mut index_key in index_prefixes(&frame.topic) {
                index_key.extend_from_slice(&key);
                bytes += index_key.len() as u64;
                self.write.insert(index, index_key, []);
            }
        }
        if let Some(Ttl::Time(ms)) = frame.ttl {
            self.write
                .insert(&self.staging.ours()?.ttl_time, expiry_key(frame.id, ms), []);
        }
        if let (Some(hash), Some(payload)) = (&frame.hash, payload) {
            bytes += payload.len() as u64;
            self.write
                .insert(&self.staging.ours()?.cas_pending, hash.as_bytes(), payload);
        }
        self.bytes_to_disk += bytes;
        self.count_ref(&frame.hash, 1);
        Ok(())
    }

    /// A removal: the frame, its index keys and its expiry key; removing
    /// an id that is not there (or that this batch already removes)
    /// succeeds and changes nothing.
    fn stage_remove(&mut self, id: Id) -> WriteReply {
        if self.removed.contains(&id) {
            return Ok(WriteOutcome::Done);
        }
        if let Some(hash) = self.stage_remove_frame(id)? {
            self.removed.insert(id);
            self.deletion_bytes += TOMBSTONES_PER_FRAME;
            self.count_ref(&hash, -1);
            self.done.frames_removed += 1;
        }
        self.done.published.removed.push(id);
        Ok(WriteOutcome::Done)
    }

    /// Removals that go only if the frames removed under `index` are still
    /// `seen`: those committed (the writer's count) and those this batch
    /// staged before this request. Answers how many frames it removed.
    fn stage_remove_if_unchanged(&mut self, index: &str, ids: &[Id], seen: u64) -> WriteReply {
        let staged = self
            .done
            .removed_topics
            .iter()
            .filter(|topic| Metrics::counts_under(index, topic))
            .count() as u64;
        if self.writer.metrics.removed_under(index) + staged != seen {
            return Ok(WriteOutcome::Removed(None));
        }
        let before = self.done.frames_removed;
        for id in ids {
            self.stage_remove(*id)?;
        }
        Ok(WriteOutcome::Removed(Some(
            self.done.frames_removed - before,
        )))
    }

    /// Stages the removal of a frame; returns `None` when there is no such
    /// frame, else its payload hash (if it has one).
    fn stage_remove_frame(&mut self, id: Id) -> Result<Option<Option<String>>, StoreError> {
        let Some(raw) = self.writer.local.get(id)? else {
            return Ok(None);
        };
        let spaces = &self.staging.spaces;
        let key = id.to_bytes();
        self.write.remove(&spaces.stream, key);
        // A frame we cannot parse still leaves the stream; its index keys
        // are found by `xs check --repair`.
        let Ok(frame) = Frame::from_json(&raw.json) else {
            return Ok(Some(None));
        };
        if let Some(index) = &self.staging.index {
            for mut index_key in index_prefixes(&frame.topic) {
                index_key.extend_from_slice(&key);
                self.write.remove(index, index_key);
            }
        }
        self.done.removed_topics.push(frame.topic.clone());
        if let Some(Ttl::Time(ms)) = frame.ttl {
            self.write
                .remove(&self.staging.ours()?.ttl_time, expiry_key(id, ms));
        }
        Ok(Some(frame.hash))
    }

    /// A payload kept without a frame (`POST /cas`): journaled, so the
    /// batch's one sync makes it durable.
    fn stage_payload(&mut self, hash: &str, bytes: &[u8]) -> WriteReply {
        let ours = self.staging.ours()?;
        self.bytes_to_disk += bytes.len() as u64;
        self.write.insert(&ours.cas_pending, hash.as_bytes(), bytes);
        self.done.journaled.push(hash.as_bytes().to_vec());
        Ok(WriteOutcome::Done)
    }

    /// Journaled payload copies whose files are synced now.
    fn stage_forget(&mut self, keys: &[Vec<u8>]) -> WriteReply {
        if keys.is_empty() {
            return Ok(WriteOutcome::Done);
        }
        let ours = self.staging.ours()?;
        for key in keys {
            self.deletion_bytes += key.len() as u64 + TOMBSTONE_BYTES;
            self.write.remove(&ours.cas_pending, key.clone());
        }
        Ok(WriteOutcome::Done)
    }

    /// Consumer group state: reserved keys of the `kv` keyspace, not
    /// news for k/v watchers.
    fn stage_groups(&mut self, writes: &[crate::store::groups::local::GroupWrite]) -> WriteReply {
        let ours = self.staging.ours()?;
        for (key, value) in writes {
            match value {
                Some(value) => {
                    self.bytes_to_disk += (key.len() + value.len()) as u64;
                    self.write.insert(&ours.kv, key.clone(), value.clone());
                }
                None => {
                    self.deletion_bytes += key.len() as u64 + TOMBSTONE_BYTES;
                    self.write.remove(&ours.kv, key.clone());
                }
            }
        }
        Ok(WriteOutcome::Done)
    }

    /// A k/v set (`Some` value) or delete.
    fn stage_kv(&mut self, key: &str, value: Option<&Vec<u8>>) -> WriteReply {
        let ours = self.staging.ours()?;
        match value {
            Some(value) => {
                self.bytes_to_disk += (key.len() + value.len()) as u64;
                self.write.insert(&ours.kv, key.as_bytes(), value.clone());
            }
            None => {
                self.deletion_bytes += key.len() as u64 + TOMBSTONE_BYTES;
                self.write.remove(&ours.kv, key.as_bytes());
            }
        }
        self.done.kv_changes.push((key.to_string(), value.cloned()));
        Ok(WriteOutcome::Done)
    }

    /// Adds `delta` to the batch's count for a payload hash.
    fn count_ref(&mut self, hash: &Option<String>, delta: i64) {
        if let Some(hash) = hash {
            *self.ref_deltas.entry(hash.clone()).or_default() += delta;
        }
    }

    /// Stages the reference counts, then claims the batch's room, commits
    /// and syncs it (`Writer::commit`).
    pub fn commit(mut self) -> Result<Committed, StoreError> {
        if self.sweep_dedup {
            self.stage_dedup_sweep()?;
        }
        self.stage_ref_counts()?;
        self.done.wrote = !self.write.is_empty();
        self.writer.commit(
            &self.staging.spaces.db,
            self.write,
            self.bytes_to_disk,
            self.deletion_bytes,
        )?;
        Ok(self.done)
    }

    /// Applies the batch's reference count changes; notes the hashes no
    /// frame references any more.
    fn stage_ref_counts(&mut self) -> Result<(), StoreError> {
        for (hash, delta) in std::mem::take(&mut self.ref_deltas) {
            if delta == 0 {
                continue;
            }
            let count = self.writer.local.refs(&hash)? as i64 + delta;
            let refs = &self.staging.ours()?.cas_refs;
            if count <= 0 {
                self.write.remove(refs, hash.as_bytes());
                self.done.unreferenced.push(hash);
            } else {
                self.write
                    .insert(refs, hash.as_bytes(), (count as u64).to_be_bytes());
            }
        }
        Ok(())
    }
}

/// The keyspaces one batch writes to.
struct Staging {
    spaces: Keyspaces,
    /// The topic index; `None` in a new store's first batch, whose frames
    /// are filed when the index is made (`Keyspaces::index`).
    index: Option<Keyspace>,
    /// Made before the batch if any of its requests needs them
    /// (`needs_ours`).
    ours: Option<Ours>,
}

impl Staging {
    fn ours(&self) -> Result<&Ours, StoreError> {
        // Unreachable while `needs_ours` names every request that writes
        // to them; if not, the batch fails rather than lose a write.
        self.ours.as_ref().ok_or_else(|| {
            StoreError::Storage("a write needs keyspaces the store has not made yet".into())
        })
    }
}

/// Whether a request writes to our keyspaces (`local::Ours`), which a new
/// store makes only after its first batch: a payload reference, an
/// expiry, a journaled payload, the k/v store.
fn needs_ours(op: &WriteOp) -> bool {
    let frame_needs = |hash: &Option<String>, ttl: Option<Ttl>| {
        hash.is_some() || matches!(ttl, Some(Ttl::Time(_)))
    };
    match op {
        WriteOp::Append(draft, _) => {
            frame_needs(&draft.hash, draft.ttl) || draft.idempotency_key.is_some()
        }
        WriteOp::Import(frame, _) => frame_needs(&frame.hash, frame.ttl),
        WriteOp::PayloadsSynced(keys) => !keys.is_empty(),
        WriteOp::ForgetOldKeys => false,
        WriteOp::Groups(writes) => !writes.is_empty(),
        WriteOp::Nothing => false,
        WriteOp::Remove(_)
        | WriteOp::RemoveIfUnchanged { .. }
        | WriteOp::KeepPayload(..)
        | WriteOp::KvSet(..)
        | WriteOp::KvDelete(_) => true,
    }
}

/// The key of a `time:` frame in `ttl_time`: when it expires, then its id.
fn expiry_key(id: Id, ttl_ms: u64) -> Vec<u8> {
    let expires = id.timestamp().saturating_add(ttl_ms);
    let mut key = expires.to_be_bytes().to_vec();
    key.extend_from_slice(&id.to_bytes());
    key
}

/// What the dedup keyspace knows of an idempotency key.
enum Seen {
    /// Recorded within the window, with the frame it appended.
    Within(Frame),
    /// Recorded at this time (ms), before the window: not swept yet.
    Expired(u64),
    Never,
}
