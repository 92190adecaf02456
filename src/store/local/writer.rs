//! The writer thread: the one place that writes the stream.
//!
//! How it works. Connection threads validate a request, store its payload,
//! and send a `WriteRequest` on a crossbeam channel. The writer blocks for
//! the first request, then drains whatever else is queued (up to
//! `MAX_BATCH`) into one fjall write batch: it assigns ids in order
//! (`max(now-based SCRU128, last + 1)`), adds each frame and its index keys,
//! commits once and syncs once. Only then does it publish the new head
//! (waking followers) and answer every requester. Under load, requests pile
//! up while a sync is running, so the next batch is larger: concurrent
//! appends share syncs (group commit) and durability costs latency, not
//! throughput.
//!
//! Payload durability, measured and chosen: a small payload (up to
//! `JOURNALED_PAYLOAD_MAX`) rides in the same batch, in the `cas_pending`
//! keyspace, so the batch's single journal sync covers frame and payload
//! together. Its cacache file is written by the connection thread without a
//! sync; the housekeeper later syncs the file system (one `syncfs`) and then
//! forgets the pending copies. At start-up, `recover_pending_payloads`
//! rewrites any payload file a crash lost. Large payloads are streamed to
//! cacache and synced file by file by the connection thread before the
//! frame is sent here. The alternative — one fdatasync per payload file
//! plus its folder — costs two or three extra syncs per append, on the
//! append's critical path; this costs none.
//!
//! Failures: if the disk lacks room for the batch (every batch claims its
//! bytes from the free-space reserve first, `space.rs`), or a write or
//! sync fails, every request of the batch gets the error and none is
//! acknowledged or published. A failed journal write or sync leaves fjall
//! refusing every later write ("poisoned"), with no way back in place: the
//! writer then marks the store broken (`Broken`), refuses everything with
//! the reason, and the server stops with it rather than stay half alive.
//!
//! The append's path, and what it costs (profiled with `perf` on the
//! 2-core bench machines). A request is parsed and answered on the
//! tiny_http thread that read its connection (`api/server.rs`: no hand-off
//! to a worker). Its small payload file is written relative to an open
//! `content-v2/sha256` folder (`cas.rs`: a short path walk, no `stat` in
//! a folder it just made), then the request comes here; a blocked
//! requester is answered through a one-shot condvar (`Waiter`), which
//! wakes exactly that thread without the spinning and `sched_yield` of a
//! channel receiver. After a commit nothing else is woken per batch: the
//! journaled payload keys go into a shared list (`JournaledKeys`), not in
//! a message; the housekeeper syncs their files (`syncfs`) and forgets
//! them once appends pause, so that sync does not slow the writer's. What remains is mostly
//! the kernel's: allocating the payload file's inode and, in a young
//! store, its fan-out folder's (`mkdir`), and the journal sync.
//!
//! Measured and dropped: a pool of empty files and folders made ahead of
//! need by a background thread and renamed into place. It moved the inode
//! allocations off the append's path but not off the CPU, and all of them
//! landed in one block group (the pool folder's) instead of spreading
//! with the fan-out folders, so on the journal-less ext4 each cost more
//! (recently deleted inodes of that group are scanned one by one): server
//! CPU per append about doubled, throughput halved.
//!
//! Also measured and dropped: syncing on other threads. The writer
//! committed a batch, handed it to one of three sync threads (an
//! `fdatasync` of fjall's journal file through our own descriptor, since
//! fjall's `persist` holds its journal lock while it syncs) and went on
//! with the next batch. Several syncs could run at once, and batches were
//! published in commit order as their syncs ended. With 16 clients
//! appending stored content it did 8,600–9,700 appends/s where this
//! loop did 11,600–12,100 (A/B, alternating runs); with one sync thread
//! it was no better. Smaller batches meant more syncs, each a flush of
//! the disk's cache, and each batch one more thread hand-off.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use crossbeam_channel::Sender;
use fjall::{Database, OwnedWriteBatch, PersistMode};

use super::{Keyspaces, Local, Ours};
use crate::store::frame::Frame;
use crate::store::head::{Head, Published, TopicFrame};
use crate::store::housekeeping::JournaledKeys;
use crate::store::id::{check_room_after, next_id_after, Id};
use crate::store::metrics::Metrics;
use crate::store::queue::{Empty, QueueReceiver};
use crate::store::topic::index_prefixes;
use crate::store::ttl::Ttl;
use crate::store::write::{
    import_conflict, same_frame, WriteOp, WriteOutcome, WriteReply, WriteRequest,
};
use crate::store::{FsyncPolicy, RawFrame, StoreError};

/// The most requests folded into one batch.
const MAX_BATCH: usize = 4096;

/// Journal bytes a deletion adds beyond its key, about.
const TOMBSTONE_BYTES: u64 = 32;

/// Journal bytes the removal of one frame adds, about: its stream key, a
/// few index keys, an expiry key.
const TOMBSTONES_PER_FRAME: u64 = 256;

/// What only the local backend is asked to do (`WriteOp::Local`).
#[derive(Debug)]
pub enum LocalOp {
    /// Pending payload copies whose files are now known to be synced.
    ForgetPending(Vec<Vec<u8>>),
}

/// Whether a request writes to our keyspaces (`local::Ours`), which a new
/// store makes only after its first batch: a payload reference, an
/// expiry, a journaled payload, the k/v store.
fn needs_ours(op: &WriteOp) -> bool {
    let frame_needs = |hash: &Option<String>, ttl: Option<Ttl>| {
        hash.is_some() || matches!(ttl, Some(Ttl::Time(_)))
    };
    match op {
        WriteOp::Append(draft, _) => frame_needs(&draft.hash, draft.ttl),
        WriteOp::Import(frame, _) => frame_needs(&frame.hash, frame.ttl),
        WriteOp::Local(LocalOp::ForgetPending(keys)) => !keys.is_empty(),
        WriteOp::Nothing => false,
        WriteOp::Remove(_)
        | WriteOp::KeepPayload(..)
        | WriteOp::KvSet(..)
        | WriteOp::KvDelete(_) => true,
    }
}

/// Work the writer hands to the housekeeper after a commit.
#[derive(Debug)]
pub enum AfterCommit {
    /// A `last:<n>` frame landed on this topic: prune older ones.
    Prune(String, u32),
    /// No stored frame references this payload any more.
    Unreferenced(String),
}

pub struct Writer {
    local: Local,
    head: std::sync::Arc<Head>,
    fsync: FsyncPolicy,
    last_id: Option<Id>,
    after_commit: Sender<AfterCommit>,
    /// Journaled payload copies for the housekeeper to forget once synced.
    journaled: JournaledKeys,
    kv_changed: std::sync::Arc<crate::store::kv::KvSignal>,
    metrics: std::sync::Arc<Metrics>,
}

impl Writer {
    pub fn new(
        local: Local,
        head: std::sync::Arc<Head>,
        fsync: FsyncPolicy,
        after_commit: Sender<AfterCommit>,
        journaled: JournaledKeys,
        kv_changed: std::sync::Arc<crate::store::kv::KvSignal>,
        metrics: std::sync::Arc<Metrics>,
    ) -> Result<Writer, StoreError> {
        let last_id = local.last_id()?;
        Ok(Writer {
            local,
            head,
            fsync,
            last_id,
            after_commit,
            journaled,
            kv_changed,
            metrics,
        })
    }

    /// Runs until every sender is gone, then makes everything durable.
    pub(in crate::store) fn run(mut self, requests: QueueReceiver<WriteRequest>) {
        // A new store's database and cross.stream's keyspaces are made
        // here, before the first batch, rather than before the socket
        // opens (see `local::Keyspaces`).
        // If making them fails, each batch tries again and fails with the
        // reason; if only the schema version failed, the next open writes
        // it.
        if let Err(e) = self.local.prepare() {
            eprintln!("xs: {e}");
        }
        // What a reopened database replayed from its journal is yet to be
        // flushed: the reserve covers it from the first claim.
        if let Some(spaces) = self.local.keyspaces_if_made() {
            self.local
                .space
                .set_unflushed(spaces.db.write_buffer_size());
        }
        let mut unsynced_since: Option<Instant> = None;
        loop {
            let batch = match (self.fsync, unsynced_since) {
                (FsyncPolicy::Interval(every), Some(since)) => {
                    let wait = every.saturating_sub(since.elapsed());
                    match requests.recv_batch_timeout(MAX_BATCH, wait) {
                        Ok(batch) => batch,
                        Err(Empty::Timeout) => {
                            self.sync_journal();
                            unsynced_since = None;
                            continue;
                        }
                        Err(Empty::Closed) => break,
                    }
                }
                _ => match requests.recv_batch(MAX_BATCH) {
                    Some(batch) => batch,
                    None => break,
                },
            };
            if self.apply(batch) && unsynced_since.is_none() {
                if let FsyncPolicy::Interval(_) = self.fsync {
                    unsynced_since = Some(Instant::now());
                }
            }
            self.make_ours();
            if let FsyncPolicy::Interval(every) = self.fsync {
                if unsynced_since.is_some_and(|s| s.elapsed() >= every) {
                    self.sync_journal();
                    unsynced_since = None;
                }
            }
        }
        self.sync_journal();
    }

    /// A new store's own keyspaces, made once its first batch is
    /// answered (see `local::Keyspaces`); a batch that needs them earlier
    /// makes them itself. If it fails, the next batch that needs them
    /// tries again and fails with the reason.
    fn make_ours(&self) {
        let Some(spaces) = self.local.keyspaces_if_made() else {
            return;
        };
        if spaces.ours_if_made().is_none() {
            if let Err(e) = spaces.ours() {
                eprintln!("xs: {e}");
            }
        }
    }

    fn sync_journal(&self) {
        let Some(spaces) = self.local.keyspaces_if_made() else {
            return;
        };
        // A broken database refuses this too; its reason is said already.
        if self.local.broken.reason().is_some() {
            return;
        }
        let started = Instant::now();
        match spaces.db.persist(PersistMode::SyncData) {
            Ok(()) => self.metrics.observe_sync(started.elapsed()),
            Err(e) => eprintln!("xs: syncing the journal failed: {e:?}"),
        }
    }

    /// Applies one batch; returns whether anything was written to disk.
    fn apply(&mut self, batch: Vec<WriteRequest>) -> bool {
        let last_before = self.last_id;
        if let Some(reason) = self.local.broken.reason() {
            self.fail(batch, last_before, &StoreError::Unavailable(reason));
            return false;
        }
        let spaces = match self.local.keyspaces() {
            Ok(spaces) => spaces.clone(),
            Err(error) => {
                self.fail(batch, last_before, &error);
                return false;
            }
        };
        // A new store's first batch writes only to cross.stream's
        // keyspaces (see `local::Keyspaces`); any other makes ours first.
        let ours = if batch.iter().any(|r| needs_ours(&r.op)) {
            match spaces.ours() {
                Ok(ours) => Some(ours.clone()),
                Err(error) => {
                    self.fail(batch, last_before, &error);
                    return false;
                }
            }
        } else {
            spaces.ours_if_made().cloned()
        };
        let staging = Staging {
            spaces: &spaces,
            ours: ours.as_ref(),
        };
        let mut write = spaces.db.batch();
        let mut outcomes: Vec<WriteReply> = Vec::with_capacity(batch.len());
        let mut ephemeral = Vec::new();
        let mut stored = Vec::new();
        let mut removed = Vec::new();
        // Removals of frames that were there (`removed` also holds ids
        // asked for that were already gone).
        let mut frames_removed: u64 = 0;
        let mut imported = Vec::new();
        let mut prune = BTreeSet::new();
        let mut bytes_to_disk: u64 = 0;
        // What deletions add to the journal (their tombstones), roughly.
        let mut deletion_bytes: u64 = 0;
        let mut kv_changes = Vec::new();
        let mut ref_deltas: HashMap<String, i64> = HashMap::new();
        let mut journaled: Vec<Vec<u8>> = Vec::new();
        // Frames imported by this batch, to hold later imports of the same
        // id to the same bytes.
        let mut imported_json: HashMap<Id, Vec<u8>> = HashMap::new();

        for request in &batch {
            let outcome = match &request.op {
                WriteOp::Append(draft, payload) => {
                    let id = match next_id_after(self.last_id) {
                        Ok(id) => id,
                        Err(e) => {
                            outcomes.push(Err(e));
                            continue;
                        }
                    };
                    self.last_id = Some(id);
                    let frame = Frame {
                        topic: draft.topic.clone(),
                        id,
                        hash: draft.hash.clone(),
                        meta: draft.meta.clone(),
                        ttl: draft.ttl,
                    };
                    if draft.ttl == Some(Ttl::Ephemeral) {
                        ephemeral.push(TopicFrame {
                            topic: frame.topic.clone(),
                            frame: RawFrame {
                                id,
                                json: frame.to_json().into_bytes(),
                            },
                        });
                    } else {
                        let json = frame.to_json().into_bytes();
                        match stage_frame(&mut write, &staging, &frame, &json, payload.as_deref()) {
                            Ok(bytes) => bytes_to_disk += bytes,
                            Err(error) => {
                                self.fail(batch, last_before, &error);
                                return false;
                            }
                        }
                        stored.push(TopicFrame {
                            topic: frame.topic.clone(),
                            frame: RawFrame { id, json },
                        });
                        if let (Some(hash), Some(_)) = (&frame.hash, payload) {
                            journaled.push(hash.as_bytes().to_vec());
                        }
                        count_ref(&mut ref_deltas, &frame.hash, 1);
                        if let Some(Ttl::Last(n)) = frame.ttl {
                            prune.insert((frame.topic.clone(), n));
                        }
                    }
                    Ok(WriteOutcome::Frame(frame))
                }
                WriteOp::Import(frame, payload) => {
                    let json = frame.to_json().into_bytes();
                    match self.check_import(frame, &imported_json) {
                        Ok(true) => {}
                        // Already stored, byte for byte: nothing to do.
                        Ok(false) => {
                            outcomes.push(Ok(WriteOutcome::Frame(frame.clone())));
                            continue;
                        }
                        Err(e) => {
                            outcomes.push(Err(e));
                            continue;
                        }
                    }
                    match stage_frame(&mut write, &staging, frame, &json, payload.as_deref()) {
                        Ok(bytes) => bytes_to_disk += bytes,
                        Err(error) => {
                            self.fail(batch, last_before, &error);
                            return false;
                        }
                    }
                    count_ref(&mut ref_deltas, &frame.hash, 1);
                    if self.last_id.is_none_or(|last| frame.id > last) {
                        self.last_id = Some(frame.id);
                    }
                    imported.push(frame.id);
                    imported_json.insert(frame.id, json);
                    Ok(WriteOutcome::Frame(frame.clone()))
                }
                WriteOp::Remove(id) => self.stage_remove(&mut write, &staging, *id).map(|found| {
                    if let Some(hash) = found {
                        deletion_bytes += TOMBSTONES_PER_FRAME;
                        count_ref(&mut ref_deltas, &hash, -1);
                        frames_removed += 1;
                    }
                    removed.push(*id);
                    WriteOutcome::Done
                }),
                WriteOp::KeepPayload(hash, bytes) => staging.ours().map(|ours| {
                    bytes_to_disk += bytes.len() as u64;
                    write.insert(&ours.cas_pending, hash.as_bytes(), bytes.clone());
                    journaled.push(hash.as_bytes().to_vec());
                    WriteOutcome::Done
                }),
                WriteOp::Nothing => Ok(WriteOutcome::Done),
                WriteOp::Local(LocalOp::ForgetPending(keys)) if keys.is_empty() => {
                    Ok(WriteOutcome::Done)
                }
                WriteOp::Local(LocalOp::ForgetPending(keys)) => staging.ours().map(|ours| {
                    for key in keys {
                        deletion_bytes += key.len() as u64 + TOMBSTONE_BYTES;
                        write.remove(&ours.cas_pending, key.clone());
                    }
                    WriteOutcome::Done
                }),
                WriteOp::KvSet(key, value) => staging.ours().map(|ours| {
                    bytes_to_disk += (key.len() + value.len()) as u64;
                    write.insert(&ours.kv, key.as_bytes(), value.clone());
                    kv_changes.push((key.clone(), Some(value.clone())));
                    WriteOutcome::Done
                }),
                WriteOp::KvDelete(key) => staging.ours().map(|ours| {
                    deletion_bytes += key.len() as u64 + TOMBSTONE_BYTES;
                    write.remove(&ours.kv, key.as_bytes());
                    kv_changes.push((key.clone(), None));
                    WriteOutcome::Done
                }),
            };
            outcomes.push(outcome);
        }

        let unreferenced = match self.stage_ref_counts(&mut write, &staging, ref_deltas) {
            Ok(unreferenced) => unreferenced,
            Err(error) => {
                self.fail(batch, last_before, &error);
                return false;
            }
        };
        let wrote = !write.is_empty();
        if let Err(error) = self.commit(&spaces.db, write, bytes_to_disk, deletion_bytes) {
            self.fail(batch, last_before, &error);
            return false;
        }

        let appended = batch
            .iter()
            .filter(|r| matches!(r.op, WriteOp::Append(..)))
            .count() as u64;
        Metrics::add(&self.metrics.appends_ok, appended);
        Metrics::add(&self.metrics.frames_appended, appended);
        if frames_removed > 0 {
            Metrics::add(&self.metrics.removed_frames, frames_removed);
            Metrics::add(&self.metrics.remove_commits, 1);
        }
        self.head.publish_batch(Published {
            last_id: self.last_id,
            ephemeral,
            stored,
            imported,
            removed,
        });
        if !kv_changes.is_empty() {
            self.kv_changed.publish(kv_changes);
        }
        for (request, outcome) in batch.into_iter().zip(outcomes) {
            if let Some(reply) = request.reply {
                reply.send(outcome);
            }
        }
        for (topic, n) in prune {
            let _ = self.after_commit.send(AfterCommit::Prune(topic, n));
        }
        for hash in unreferenced {
            let _ = self.after_commit.send(AfterCommit::Unreferenced(hash));
        }
        if !journaled.is_empty() {
            // Forgotten once synced, at the housekeeper's next tick.
            self.journaled
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(journaled);
        }
        wrote
    }

    /// Answers every request of a failed batch with its error and takes
    /// back the ids it had handed out.
    fn fail(&mut self, batch: Vec<WriteRequest>, last_before: Option<Id>, error: &StoreError) {
        self.last_id = last_before;
        let appends = batch
            .iter()
            .filter(|r| matches!(r.op, WriteOp::Append(..)))
            .count() as u64;
        Metrics::add(&self.metrics.appends_failed, appends);
        for request in batch {
            if let Some(reply) = request.reply {
                reply.send(Err(error.relay()));
            }
        }
    }

    /// Stages the removal of a frame; returns `None` when there is no such
    /// frame, else its payload hash (if it has one).
    fn stage_remove(
        &self,
        write: &mut OwnedWriteBatch,
        staging: &Staging,
        id: Id,
    ) -> Result<Option<Option<String>>, StoreError> {
        let spaces = staging.spaces;
        let Some(raw) = self.local.get(id)? else {
            return Ok(None);
        };
        let key = id.to_bytes();
        write.remove(&spaces.stream, key);
        // A frame we cannot parse still leaves the stream; its index keys
        // are found by `xs check --repair`.
        if let Ok(frame) = Frame::from_json(&raw.json) {
            for mut index_key in index_prefixes(&frame.topic) {
                index_key.extend_from_slice(&key);
                write.remove(&spaces.idx_topic, index_key);
            }
            if let Some(Ttl::Time(ms)) = frame.ttl {
                write.remove(&staging.ours()?.ttl_time, expiry_key(id, ms));
            }
            return Ok(Some(frame.hash));
        }
        Ok(Some(None))
    }

    /// Applies the batch's reference count changes; returns the hashes no
    /// frame references any more.
    fn stage_ref_counts(
        &self,
        write: &mut OwnedWriteBatch,
        staging: &Staging,
        deltas: HashMap<String, i64>,
    ) -> Result<Vec<String>, StoreError> {
        let mut unreferenced = Vec::new();
        for (hash, delta) in deltas {
            if delta == 0 {
                continue;
            }
            let count = self.local.refs(&hash)? as i64 + delta;
            if count <= 0 {
                write.remove(&staging.ours()?.cas_refs, hash.as_bytes());
                unreferenced.push(hash);
            } else {
                write.insert(
                    &staging.ours()?.cas_refs,
                    hash.as_bytes(),
                    (count as u64).to_be_bytes(),
                );
            }
        }
        Ok(unreferenced)
    }

    /// Whether an imported frame is to be stored: `false` when the same
    /// bytes are already stored under its id (importing twice adds
    /// nothing); refused when other bytes are (an acknowledged frame is
    /// never replaced), or when its id leaves no room for later ids.
    fn check_import(
        &self,
        frame: &Frame,
        imported_json: &HashMap<Id, Vec<u8>>,
    ) -> Result<bool, StoreError> {
        check_room_after(frame.id).map_err(StoreError::BadInput)?;
        let stored = match imported_json.get(&frame.id) {
            Some(json) => Some(json.clone()),
            None => self.local.get(frame.id)?.map(|raw| raw.json),
        };
        match stored {
            None => Ok(true),
            Some(stored) if same_frame(&stored, frame) => Ok(false),
            Some(_) => Err(import_conflict(frame.id)),
        }
    }

    /// Claims the batch's room (`bytes` it adds, `deletion_bytes` of
    /// tombstones), commits and syncs it per the policy.
    fn commit(
        &self,
        db: &Database,
        write: OwnedWriteBatch,
        bytes: u64,
        deletion_bytes: u64,
    ) -> Result<(), StoreError> {
        if write.is_empty() {
            return Ok(());
        }
        // Held until the batch is written (see `space::Claim`).
        let _claim = if bytes > 0 {
            self.local
                .space
                .claim(bytes + deletion_bytes, "the batch")?
        } else {
            self.local.space.claim_for_deletion(deletion_bytes)?
        };
        let written = write.commit().and_then(|()| {
            if self.fsync != FsyncPolicy::Always {
                return db.persist(PersistMode::Buffer);
            }
            let started = Instant::now();
            db.persist(PersistMode::SyncData)?;
            self.metrics.observe_sync(started.elapsed());
            Ok(())
        });
        self.local.space.set_unflushed(db.write_buffer_size());
        written.map_err(|error| {
            let error = StoreError::fjall(error);
            self.check_poisoned(db, &error);
            error
        })
    }

    /// After a failed write: if fjall now refuses every write (it poisons
    /// itself after a failed journal write or sync), marks the store broken
    /// and says so once.
    fn check_poisoned(&self, db: &Database, error: &StoreError) {
        // A poisoned database answers any persist with `Poisoned` at once,
        // touching nothing; a healthy one has nothing buffered to flush.
        if let Err(fjall::Error::Poisoned) = db.persist(PersistMode::Buffer) {
            let reason = format!(
                "the index database refuses every write after a failed write ({error}); \
                 restart xs once the cause is fixed (the store reopens as it was)"
            );
            eprintln!("xs: {reason}");
            self.local.broken.set(reason);
        }
    }
}

/// Adds a frame, its index keys, its expiry key and a journaled payload
/// to the batch; returns the bytes it adds.
fn stage_frame(
    write: &mut OwnedWriteBatch,
    staging: &Staging,
    frame: &Frame,
    json: &[u8],
    payload: Option<&[u8]>,
) -> Result<u64, StoreError> {
    let key = frame.id.to_bytes();
    let mut bytes = (json.len() + 16) as u64;
    write.insert(&staging.spaces.stream, key, json);
    for mut index_key in index_prefixes(&frame.topic) {
        index_key.extend_from_slice(&key);
        bytes += index_key.len() as u64;
        write.insert(&staging.spaces.idx_topic, index_key, []);
    }
    if let Some(Ttl::Time(ms)) = frame.ttl {
        write.insert(&staging.ours()?.ttl_time, expiry_key(frame.id, ms), []);
    }
    if let (Some(hash), Some(payload)) = (&frame.hash, payload) {
        bytes += payload.len() as u64;
        write.insert(&staging.ours()?.cas_pending, hash.as_bytes(), payload);
    }
    Ok(bytes)
}

/// The keyspaces one batch writes to.
struct Staging<'a> {
    spaces: &'a Keyspaces,
    /// Made before the batch if any of its requests needs them
    /// (`WriteOp::needs_ours`).
    ours: Option<&'a Ours>,
}

impl Staging<'_> {
    fn ours(&self) -> Result<&Ours, StoreError> {
        // Unreachable while `needs_ours` names every request that writes
        // to them; if not, the batch fails rather than lose a write.
        self.ours.ok_or_else(|| {
            StoreError::Storage("a write needs keyspaces the store has not made yet".into())
        })
    }
}

/// Adds `delta` to the batch's count for a payload hash.
fn count_ref(deltas: &mut HashMap<String, i64>, hash: &Option<String>, delta: i64) {
    if let Some(hash) = hash {
        *deltas.entry(hash.clone()).or_default() += delta;
    }
}

/// The key of a `time:` frame in `ttl_time`: when it expires, then its id.
pub fn expiry_key(id: Id, ttl_ms: u64) -> Vec<u8> {
    let expires = id.timestamp().saturating_add(ttl_ms);
    let mut key = expires.to_be_bytes().to_vec();
    key.extend_from_slice(&id.to_bytes());
    key
}
