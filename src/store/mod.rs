//! The stream store: frames, topics, ids, and the storage interface every
//! caller uses. `Store` is that interface; behind it is one of two
//! backends: `local/` (fjall for frames, cacache for payloads, the default)
//! or `redis/` (one namespace of a Redis shared by several nodes). Each has
//! its single writer thread fed by the same channel of `WriteRequest`s
//! (`write/`: the protocol both serve).
//! Nothing here knows about HTTP, the CLI or Nushell.
//!
//! This file is the facade: opening and closing, appends, imports and
//! removals, reads, the k/v store. Beside it: payloads (`payloads.rs`),
//! the store folder and its lock (`folder.rs`), the open options
//! (`options.rs`), bulk imports (`bulk_import.rs`).

mod bulk_import;
mod error;
mod folder;
mod follow;
mod frame;
mod housekeeping;
mod kv;
mod local;
mod merge;
mod metrics;
mod options;
mod payloads;
mod queue;
mod redis;
mod retain;
mod ttl;
mod write;

// Three namespaces are public as a whole by design: ids and topic names
// are values every layer parses, checks and prints; a consumer group's
// member is set up by the CLI, the API and actors alike.
pub mod groups;
pub mod id;
pub mod topic;

use follow::head;
pub use follow::reader::{Follow, ReadEvent, ReadOptions, Reader};

use std::collections::HashMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

pub use bulk_import::BulkImport;
pub use error::StoreError;
pub use follow::head::EphemeralLimits;
pub use frame::{Frame, FrameIter, RawFrame};
pub use id::Id;
pub use kv::{reserved_key, view_key, KvNews};
pub use local::cas::parse_sri;
pub use local::{check, CheckFixes, CheckReport};
pub use metrics::{FollowerGuard, Metrics};
pub use options::{FsyncPolicy, StoreOptions, DEFAULT_DEDUP_WINDOW, DEFAULT_TTL_SWEEP};
pub use payloads::{PayloadPin, StoredPayload};
pub use redis::RedisAddress;
pub use retain::{RetainRule, Retention};
pub use topic::TopicFilter;
pub use ttl::Ttl;
pub use write::{
    import_conflict, same_frame, validate_idempotency_key, Draft, ExpectLast, WriteOutcome,
    WriteReply,
};

use head::Head;
use housekeeping::Chore;
use kv::KvSignal;
use local::schema::Schema;
use local::writer::Writer;
use local::Local;
use queue::{QueueReceiver, QueueSender};
use write::{Answer, ReplyTo, Waiter, WriteOp, WriteRequest};

/// What an append returned.
#[derive(Debug)]
pub struct Appended {
    pub frame: Frame,
    /// The frame was appended before, with the same idempotency key.
    pub duplicate: bool,
}

/// The open store. Cheap to clone; every clone talks to the same writer.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    backend: Backend,
    head: Arc<Head>,
    kv_signal: Arc<KvSignal>,
    metrics: Arc<metrics::Metrics>,
    writer: QueueSender<WriteRequest>,
    chores: Sender<Chore>,
    options: StoreOptions,
    /// Payloads being written whose frames are not yet stored.
    pins: Mutex<HashMap<String, usize>>,
    /// Appends sent without waiting whose payload pins await the answer
    /// (`append_in_background`); the thread behind it starts on first use.
    settling: std::sync::OnceLock<Sender<(Receiver<WriteReply>, PayloadPin)>>,
    /// Writers of payload files share it; the garbage collector takes it
    /// alone, so it never deletes a file between its write and its pin.
    gc_lock: RwLock<()>,
    /// `--retain` rules and what their sweeper last saw.
    retention: retain::Retention,
    /// Consumer group state (local backend) and the signal consumers
    /// wait on for room (both backends).
    groups: groups::local::LocalGroups,
    /// `<dir>/lock`, held while the store is open: one server per folder,
    /// whichever backend it runs on.
    _folder_lock: std::fs::File,
}

enum Backend {
    Local(Local),
    Redis(Arc<redis::Redis>),
}

/// What both backends hand every part of the store: the head followers
/// wait on, the k/v change signal, the counters, and the channels to the
/// writer and the housekeeper.
struct Shared {
    head: Arc<Head>,
    kv_signal: Arc<KvSignal>,
    metrics: Arc<metrics::Metrics>,
    writer: QueueSender<WriteRequest>,
    chores: Sender<Chore>,
}

impl Shared {
    /// The parts around `head`, with the receiving ends of the writer's
    /// and the housekeeper's channels.
    fn new(head: Arc<Head>) -> (Shared, QueueReceiver<WriteRequest>, Receiver<Chore>) {
        let (writer, writer_rx) = queue::queue();
        let (chores, chores_rx) = crossbeam_channel::unbounded();
        let shared = Shared {
            head,
            kv_signal: Arc::new(KvSignal::default()),
            metrics: Arc::new(metrics::Metrics::default()),
            writer,
            chores,
        };
        (shared, writer_rx, chores_rx)
    }
}

impl Store {
    /// Opens the store at `dir`, creating it (mode 0700) when missing, and
    /// starts its writer and housekeeping threads.
    pub fn open(dir: &Path, options: StoreOptions) -> Result<Store, StoreError> {
        let folder_lock = folder::lock_folder(dir)?;
        if let Some(address) = &options.redis {
            return Store::open_redis(dir, address.clone(), options, folder_lock);
        }
        let local = Local::open(dir).map_err(|e| match e {
            StoreError::Locked(_) => StoreError::Locked(dir.display().to_string()),
            other => other,
        })?;
        // A new store's database and keyspaces are made by the writer,
        // off the start-up path; one that has them is checked here.
        if local.keyspaces_if_made().is_some() {
            housekeeping::recover_pending_payloads(&local)?;
            if let Schema::Unmarked { renamable } = local.prepare()? {
                eprintln!(
                    "xs: note: {} has no schema version, and newer cross.stream would take topics \
                     such as {} for its old lifecycle topics and rename them; if they are yours, \
                     mark the store with `xs check {} --mark-schema` (server stopped)",
                    dir.display(),
                    renamable.join(", "),
                    dir.display()
                );
            }
        }
        let head = Arc::new(Head::new(
            local.last_id()?,
            options.ephemeral,
            options.control_topic,
        ));
        // Only this process writes a local store: every stored frame
        // passes through its head.
        head.keep_recent();
        let (shared, writer_rx, chores_rx) = Shared::new(head);
        let (after_tx, after_rx) = crossbeam_channel::unbounded();
        let journaled = housekeeping::JournaledKeys::default();
        let writer = Writer::new(
            local.clone(),
            shared.head.clone(),
            options.fsync,
            after_tx,
            journaled.clone(),
            shared.kv_signal.clone(),
            shared.metrics.clone(),
        )?
        .with_dedup_window(options.dedup_window);
        std::thread::Builder::new()
            .name("writer".into())
            .spawn(move || writer.run(writer_rx))
            .map_err(|e| StoreError::io("starting the writer thread", e))?;
        let store = Store::assemble(dir, Backend::Local(local), shared, options, folder_lock);
        housekeeping::start(store.clone(), chores_rx, after_rx, journaled)?;
        retain::start(&store)?;
        Ok(store)
    }

    /// Opens a namespace of a Redis: its writer, watcher and sweeper.
    fn open_redis(
        dir: &Path,
        address: redis::RedisAddress,
        options: StoreOptions,
        folder_lock: std::fs::File,
    ) -> Result<Store, StoreError> {
        let redis = Arc::new(redis::Redis::open(address, options.redis_replicas)?);
        let cursors = redis::watcher::start_cursors(&redis)?;
        let head = Arc::new(Head::new(
            redis.last_id()?,
            options.ephemeral,
            options.control_topic,
        ));
        let (shared, writer_rx, chores_rx) = Shared::new(head);
        let writer = redis::writer::RedisWriter::new(
            redis.clone(),
            shared.head.clone(),
            shared.metrics.clone(),
        )
        .with_dedup_window(options.dedup_window);
        std::thread::Builder::new()
            .name("writer".into())
            .spawn(move || writer.run(writer_rx))
            .map_err(|e| StoreError::io("starting the writer thread", e))?;
        redis::watcher::start(
            redis.clone(),
            shared.head.clone(),
            shared.kv_signal.clone(),
            cursors,
        )?;
        redis::sweeper::start(
            redis.clone(),
            chores_rx,
            options.ttl_sweep,
            shared.metrics.clone(),
        )?;
        let store = Store::assemble(dir, Backend::Redis(redis), shared, options, folder_lock);
        retain::start(&store)?;
        Ok(store)
    }

    fn assemble(
        dir: &Path,
        backend: Backend,
        shared: Shared,
        options: StoreOptions,
        folder_lock: std::fs::File,
    ) -> Store {
        let retention = retain::Retention::new(options.retain.clone());
        Store {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                backend,
                head: shared.head,
                kv_signal: shared.kv_signal,
                metrics: shared.metrics,
                writer: shared.writer,
                chores: shared.chores,
                options,
                pins: Mutex::new(HashMap::new()),
                settling: std::sync::OnceLock::new(),
                gc_lock: RwLock::new(()),
                retention,
                groups: Default::default(),
                _folder_lock: folder_lock,
            }),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The Redis behind this store, when it runs on one.
    pub fn redis(&self) -> Option<&redis::Redis> {
        match &self.inner.backend {
            Backend::Redis(redis) => Some(redis),
            Backend::Local(_) => None,
        }
    }

    pub fn options(&self) -> &StoreOptions {
        &self.inner.options
    }

    pub fn head(&self) -> &Head {
        &self.inner.head
    }

    pub fn kv_signal(&self) -> &KvSignal {
        &self.inner.kv_signal
    }

    pub fn metrics(&self) -> &metrics::Metrics {
        &self.inner.metrics
    }

    /// Bytes the store's folder takes on disk (index and payloads):
    /// allocated blocks, as `du` counts them (fjall's journal is a large
    /// sparse file).
    pub fn disk_usage(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        let Backend::Local(local) = &self.inner.backend else {
            return 0;
        };
        fn walk(path: &Path) -> u64 {
            let Ok(entries) = std::fs::read_dir(path) else {
                return 0;
            };
            entries
                .flatten()
                .map(|entry| match entry.metadata() {
                    Ok(meta) if meta.is_dir() => walk(&entry.path()),
                    Ok(meta) => meta.blocks() * 512,
                    Err(_) => 0,
                })
                .sum()
        }
        walk(&local.dir.join("fjall")) + walk(local.cas.dir())
    }

    /// The newest id a read starting now must cover, given the head's:
    /// on Redis, also what other nodes appended that this node's watcher
    /// has not brought yet (an append acknowledged on one node is in the
    /// next read on any node).
    pub fn newest_id(&self, head: Option<Id>) -> Option<Id> {
        match &self.inner.backend {
            Backend::Local(_) => head,
            Backend::Redis(redis) => head.max(redis.last_id().ok().flatten()),
        }
    }

    /// The `--retain` rules and what their sweeper last saw.
    pub fn retention(&self) -> &retain::Retention {
        &self.inner.retention
    }

    /// Frames removed so far under `filter` (one retention pattern), by
    /// anyone: on Redis every node's (`P.removed`), here the writer's (it is
    /// the only one). The retention sweeper's check for removals it did not
    /// make.
    pub(in crate::store) fn removal_count(&self, filter: &TopicFilter) -> Result<u64, StoreError> {
        match &self.inner.backend {
            Backend::Local(_) => Ok(self
                .inner
                .metrics
                .removed_under(&retain::removal_index(filter))),
            Backend::Redis(redis) => redis.removal_count(&retain::removal_index(filter)),
        }
    }

    /// Removes `ids` (the retention sweeper's oldest frames under
    /// `filter`) through the normal remove path, unless frames were
    /// removed since the count of removals was `seen` (`removal_count`):
    /// then `None`, nothing removed (the caller's totals may overstate).
    /// The check and the removals are one step on both backends: one
    /// script on Redis, one request in the writer's batch locally.
    pub(in crate::store) fn remove_if_unchanged(
        &self,
        filter: &TopicFilter,
        ids: &[Id],
        seen: u64,
    ) -> Result<Option<u64>, StoreError> {
        let op = WriteOp::RemoveIfUnchanged {
            index: retain::removal_index(filter),
            ids: ids.to_vec(),
            seen,
        };
        match self.write(op)? {
            WriteOutcome::Removed(removed) => Ok(removed),
            other => Err(StoreError::Storage(format!(
                "a conditional removal was answered {other:?}"
            ))),
        }
    }

    /// A stored payload's size in bytes (0 when it is gone).
    pub(in crate::store) fn payload_size(&self, hash: &str) -> Result<u64, StoreError> {
        match &self.inner.backend {
            Backend::Local(local) => Ok(hash
                .parse::<cacache::Integrity>()
                .ok()
                .and_then(|sri| std::fs::metadata(local.cas.path_of(&sri)).ok())
                .map_or(0, |meta| meta.len())),
            Backend::Redis(redis) => redis.payload_size(hash),
        }
    }

    /// The local backend, unless the store runs on Redis.
    pub(crate) fn local(&self) -> Option<&Local> {
        match &self.inner.backend {
            Backend::Local(local) => Some(local),
            Backend::Redis(_) => None,
        }
    }

    /// Sends a change to the writer; the reply arrives once it is durable
    /// per the fsync policy (for callers that go on without waiting).
    pub(in crate::store) fn submit(&self, op: WriteOp) -> Receiver<WriteReply> {
        let (reply_tx, reply_rx) = crossbeam_channel::bounded(1);
        let request = WriteRequest {
            op,
            reply: Some(ReplyTo::Channel(reply_tx)),
        };
        if let Err(failed) = self.inner.writer.send(request) {
            if let Some(reply) = failed.reply {
                reply.send(Err(StoreError::Closed));
            }
        }
        reply_rx
    }

    /// Whether the writer answers an empty request within `within`: a
    /// liveness probe (a stuck or dead writer fails it).
    pub fn writer_answers(&self, within: Duration) -> bool {
        matches!(
            self.submit(WriteOp::Nothing).recv_timeout(within),
            Ok(Ok(_))
        )
    }

    /// Sends a change and waits for its outcome.
    pub(in crate::store) fn write(&self, op: WriteOp) -> WriteReply {
        self.queue(op).wait()
    }

    /// Sends a change; its outcome is waited for with the `Waiter` (for
    /// callers that must queue under a lock and wait without it).
    pub(in crate::store) fn queue(&self, op: WriteOp) -> Arc<Waiter> {
        let waiter = Arc::new(Waiter::default());
        let request = WriteRequest {
            op,
            reply: Some(ReplyTo::Waiter(Answer::new(waiter.clone()))),
        };
        // A failed send drops the request, whose `Answer` then says Closed.
        let _ = self.inner.writer.send(request);
        waiter
    }

    /// Appends a frame; returns it with its id once acknowledged.
    pub fn append(&self, draft: Draft) -> Result<Frame, StoreError> {
        self.append_op(WriteOp::Append(draft, None))
            .map(|a| a.frame)
    }

    fn append_op(&self, op: WriteOp) -> Result<Appended, StoreError> {
        match self.write(op)? {
            WriteOutcome::Frame(frame) => Ok(Appended {
                frame,
                duplicate: false,
            }),
            WriteOutcome::Duplicate(frame) => Ok(Appended {
                frame,
                duplicate: true,
            }),
            WriteOutcome::Done | WriteOutcome::Removed(_) => {
                Err(StoreError::Storage("append returned no frame".into()))
            }
        }
    }

    /// As `append_with_payload`, saying whether the frame is one appended
    /// before (its idempotency key was seen within the dedup window:
    /// nothing was written now, and the payload goes again unless that
    /// frame holds the same).
    pub fn append_checked(
        &self,
        draft: Draft,
        payload: Option<StoredPayload>,
    ) -> Result<Appended, StoreError> {
        let (op, pin) = append_op(draft, payload);
        let appended = self.append_op(op)?;
        if let (Some(pin), false) = (pin, appended.duplicate) {
            pin.commit();
        }
        Ok(appended)
    }

    /// Appends a frame with a payload stored for it (`put_payload`): the
    /// draft's hash is the payload's; the payload is pinned until the
    /// frame is stored, then released. Refused, the payload's file goes
    /// again (see `PayloadPin`).
    pub fn append_with_payload(
        &self,
        draft: Draft,
        payload: Option<StoredPayload>,
    ) -> Result<Frame, StoreError> {
        self.append_checked(draft, payload).map(|a| a.frame)
    }

    /// Sends an append without waiting for it: the reply brings the frame
    /// (a caller keeping many in flight; the writer keeps their order).
    pub fn append_queued(&self, draft: Draft) -> Receiver<WriteReply> {
        self.submit(WriteOp::Append(draft, None))
    }

    /// As `append_with_payload`, without waiting for it (processors: the
    /// writer keeps their order). The payload stays pinned until the
    /// writer answers, on a thread of its own, and its file goes if the
    /// append was refused.
    pub fn append_in_background(&self, draft: Draft, payload: Option<StoredPayload>) {
        let (op, pin) = append_op(draft, payload);
        let reply = self.submit(op);
        let Some(pin) = pin else {
            return;
        };
        let settling = self.inner.settling.get_or_init(|| {
            let (tx, rx) = crossbeam_channel::unbounded::<(Receiver<WriteReply>, PayloadPin)>();
            let spawned = std::thread::Builder::new()
                .name("payload-settle".into())
                .spawn(move || {
                    // Answers come in the order appends were sent.
                    for (reply, pin) in rx {
                        if let Ok(Ok(_)) = reply.recv() {
                            pin.commit();
                        }
                    }
                });
            if let Err(e) = spawned {
                eprintln!("xs: cannot start the payload-settle thread: {e}");
            }
            tx
        });
        if let Err(failed) = settling.send((reply, pin)) {
            // No thread to wait on it: wait here.
            let (reply, pin) = failed.into_inner();
            if let Ok(Ok(_)) = reply.recv() {
                pin.commit();
            }
        }
    }

    /// Checks a frame before it is imported, as far as it can be without
    /// writing: its id leaves room for later ids, and no other frame is
    /// stored under it (the same bytes may be imported again). The writer
    /// checks again when it stores it.
    pub fn check_import(&self, frame: &Frame) -> Result<(), StoreError> {
        id::check_room_after(frame.id).map_err(StoreError::BadInput)?;
        let stored = match &self.inner.backend {
            Backend::Local(local) => local.get(frame.id)?,
            Backend::Redis(redis) => redis.get(frame.id)?,
        };
        match stored {
            Some(stored) if !same_frame(&stored.json, frame) => Err(import_conflict(frame.id)),
            _ => Ok(()),
        }
    }

    /// An anonymous scratch file in the store folder (0600, already
    /// unlinked: it goes away when closed): room to hold a large request
    /// while it is checked, before any of it is written to the store.
    /// Bytes written to it are claimed from the reserve with `claim_space`.
    pub fn scratch_file(&self) -> Result<std::fs::File, StoreError> {
        use std::os::unix::fs::OpenOptionsExt;
        static SCRATCH_COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SCRATCH_COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = self
            .dir()
            .join(format!(".scratch-{}-{n}", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| StoreError::io("creating a scratch file", e))?;
        let _ = std::fs::remove_file(&path);
        Ok(file)
    }

    /// Claims room for `bytes` from the local store's free-space reserve
    /// (see `local::space`); nothing to claim on Redis.
    /// Hold the claim until the bytes are written.
    pub fn claim_space(
        &self,
        bytes: u64,
        what: &str,
    ) -> Result<local::space::Claim<'_>, StoreError> {
        match &self.inner.backend {
            Backend::Local(local) => local.space.claim(bytes, what),
            Backend::Redis(_) => Ok(local::space::Claim::none()),
        }
    }

    /// Why the store takes no more writes, if it broke (see
    /// `local::Broken`); blocks until then with `wait`.
    pub fn broken(&self) -> Option<&local::Broken> {
        match &self.inner.backend {
            Backend::Local(local) => Some(&local.broken),
            Backend::Redis(_) => None,
        }
    }

    /// Stores a frame verbatim (import): not delivered to live readers.
    pub fn import(&self, frame: Frame) -> Result<Frame, StoreError> {
        id::check_room_after(frame.id).map_err(StoreError::BadInput)?;
        match self.write(WriteOp::Import(frame, None))? {
            WriteOutcome::Frame(frame) | WriteOutcome::Duplicate(frame) => Ok(frame),
            WriteOutcome::Done | WriteOutcome::Removed(_) => {
                Err(StoreError::Storage("import returned no frame".into()))
            }
        }
    }

    /// A bulk import (a restore, `POST /import` of NDJSON): frames sent
    /// in order with a window of them in flight, so they share syncs.
    pub fn bulk_import(&self) -> BulkImport<'_> {
        BulkImport {
            store: self,
            in_flight: std::collections::VecDeque::new(),
            imported: 0,
        }
    }

    /// Removes a frame; removing an unknown id succeeds.
    pub fn remove(&self, id: Id) -> Result<(), StoreError> {
        self.write(WriteOp::Remove(id)).map(|_| ())
    }

    /// One stored frame by id (expired and ephemeral frames are absent).
    pub fn get(&self, id: Id) -> Result<Option<RawFrame>, StoreError> {
        let frame = match &self.inner.backend {
            Backend::Local(local) => local.get(id)?,
            Backend::Redis(redis) => redis.get(id)?,
        };
        match frame {
            Some(frame) if frame.is_expired(id::now_ms()) => {
                self.report_expired(frame.id);
                Ok(None)
            }
            other => Ok(other),
        }
    }

    /// Stored frames matching `filter` between the bounds, oldest first or
    /// newest first, with expired frames left out.
    pub fn scan(
        &self,
        filter: &TopicFilter,
        lower: Bound<Id>,
        upper: Bound<Id>,
        reverse: bool,
    ) -> FrameIter {
        let store = self.clone();
        let now = id::now_ms();
        let frames = match &self.inner.backend {
            Backend::Local(local) => local.scan(filter, lower, upper, reverse),
            Backend::Redis(redis) => redis.scan(filter, lower, upper, reverse),
        };
        let mut counter = metrics::ScanCounter::new(self.inner.metrics.clone());
        let frames = frames.inspect(move |_| counter.saw_frame());
        Box::new(frames.filter(move |frame| match frame {
            Ok(frame) if frame.is_expired(now) => {
                store.report_expired(frame.id);
                false
            }
            _ => true,
        }))
    }

    /// The `n` newest frames matching `filter` up to `upper`, oldest first.
    pub fn last_n(
        &self,
        filter: &TopicFilter,
        n: usize,
        upper: Bound<Id>,
    ) -> Result<Vec<RawFrame>, StoreError> {
        let mut frames = self
            .scan(filter, Bound::Unbounded, upper, true)
            .take(n)
            .collect::<Result<Vec<_>, _>>()?;
        frames.reverse();
        Ok(frames)
    }

    /// The `n` oldest frames matching `filter`.
    pub fn first_n(&self, filter: &TopicFilter, n: usize) -> Result<Vec<RawFrame>, StoreError> {
        self.scan(filter, Bound::Unbounded, Bound::Unbounded, false)
            .take(n)
            .collect()
    }

    /// Asks the housekeeper to remove an expired frame a reader met,
    /// unless sweeping is off (`--ttl-sweep 0`: expired frames stay).
    fn report_expired(&self, id: Id) {
        if self.inner.options.ttl_sweep.is_none() {
            return;
        }
        let _ = self.inner.chores.send(Chore::Expired(id));
    }

    /// A k/v value, as stored JSON bytes.
    pub fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let local = match &self.inner.backend {
            Backend::Local(local) => local,
            Backend::Redis(redis) => return redis.kv_get(key),
        };
        let Some(ours) = local.ours_if_made() else {
            return Ok(None);
        };
        Ok(ours
            .kv
            .get(key.as_bytes())
            .map_err(StoreError::fjall)?
            .map(|v| v.to_vec()))
    }

    /// Sets a k/v value (JSON), as durable as an append.
    pub fn kv_set(&self, key: &str, value: &serde_json::Value) -> Result<(), StoreError> {
        topic::validate_topic(key).map_err(|e| StoreError::BadInput(kv_key_error(e)))?;
        let bytes = serde_json::to_vec(value)
            .map_err(|e| StoreError::BadInput(format!("value is not JSON: {e}")))?;
        self.write(WriteOp::KvSet(key.to_string(), bytes))
            .map(|_| ())
    }

    /// Sets a k/v value (JSON bytes) without waiting for it (a view
    /// saving its state as it folds; the writer keeps the order).
    pub fn kv_set_queued(&self, key: &str, bytes: Vec<u8>) {
        drop(self.submit(WriteOp::KvSet(key.to_string(), bytes)));
    }

    /// Deletes a k/v key; deleting an absent key succeeds.
    pub fn kv_delete(&self, key: &str) -> Result<(), StoreError> {
        topic::validate_topic(key).map_err(|e| StoreError::BadInput(kv_key_error(e)))?;
        self.write(WriteOp::KvDelete(key.to_string())).map(|_| ())
    }

    /// Keys starting with `prefix` and their values, in key order.
    pub fn kv_list(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let local = match &self.inner.backend {
            Backend::Local(local) => local,
            Backend::Redis(redis) => return redis.kv_list(prefix),
        };
        let Some(ours) = local.ours_if_made() else {
            return Ok(Vec::new());
        };
        // Keys starting with `\0` hold consumer groups (`groups/local.rs`):
        // no k/v key can (keys are valid topics).
        ours.kv
            .prefix(prefix.as_bytes())
            .map(|guard| guard.into_inner().map_err(StoreError::fjall))
            .filter(|pair| !pair.as_ref().is_ok_and(|(key, _)| key.starts_with(b"\0")))
            .map(|pair| {
                let (key, value) = pair?;
                Ok((String::from_utf8_lossy(&key).into_owned(), value.to_vec()))
            })
            .collect()
    }

    /// Stops taking writes, ends follow streams, and waits for the writer
    /// to make everything durable.
    pub fn close(&self) {
        if let Backend::Redis(redis) = &self.inner.backend {
            // Followers get what was written up to now (`xs.stopping`)
            // before their streams end: let the watcher bring it.
            if let Ok(Some(last)) = redis.last_id() {
                let deadline = std::time::Instant::now() + Duration::from_secs(1);
                loop {
                    let view = self.inner.head.view();
                    let now = std::time::Instant::now();
                    if view.last_id >= Some(last) || now >= deadline {
                        break;
                    }
                    self.inner.head.wait_past(view.version, deadline - now);
                }
            }
        }
        self.inner.head.close();
        self.inner.retention.stop();
        let _ = self.inner.chores.send(Chore::Stop);
        let _ = self.write(WriteOp::Nothing);
        if let Backend::Local(local) = &self.inner.backend {
            if let Some(spaces) = local.keyspaces_if_made() {
                let _ = spaces.db.persist(fjall::PersistMode::SyncAll);
            }
        }
    }
}

/// The op that appends `draft` with `payload` (its hash, and the bytes the
/// backend keeps with the frame), and the payload's pin to release once
/// the frame is stored.
fn append_op(draft: Draft, payload: Option<StoredPayload>) -> (WriteOp, Option<PayloadPin>) {
    match payload {
        None => (WriteOp::Append(draft, None), None),
        Some(stored) => {
            let draft = draft.hash(Some(stored.hash.to_string()));
            (WriteOp::Append(draft, stored.bytes), stored.pin)
        }
    }
}

fn kv_key_error(topic_error: String) -> String {
    format!("invalid key: {}", topic_error.replace("Topic", "Key"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_batch_answers_each_writer_with_the_failure_itself() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("store"), StoreOptions::default()).unwrap();
        store.broken().unwrap().set("the journal failed".into());
        let draft = Draft::new("a");
        // The writer fails the whole batch; the caller still sees which
        // failure it was, not just its text.
        match store.append(draft) {
            Err(e @ StoreError::Unavailable(_)) => {
                assert_eq!(e.to_string(), "store unavailable: the journal failed")
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }

    #[test]
    fn a_payload_whose_append_is_refused_goes_unless_a_frame_or_a_write_holds_it() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("store"), StoreOptions::default()).unwrap();
        let put = |bytes: &[u8]| {
            store
                .put_payload(&mut &bytes[..], Some(bytes.len() as u64), u64::MAX, false)
                .unwrap()
        };
        let draft = || Draft::new("a");
        let exists = |sri: &cacache::Integrity| store.local().unwrap().cas.path_of(sri).exists();

        // Content of its own, its append never made: the file goes.
        let lone = put(b"lone");
        let sri = lone.hash.clone();
        assert!(exists(&sri));
        drop(lone);
        assert!(!exists(&sri));

        // The same content as a stored frame's: kept for that frame.
        store
            .append_with_payload(draft(), Some(put(b"shared")))
            .unwrap();
        let again = put(b"shared");
        let sri = again.hash.clone();
        drop(again);
        assert!(exists(&sri));

        // Two writes of the same new content: the first to give up leaves
        // the file to the other, whose frame then keeps it.
        let first = put(b"twice");
        let second = put(b"twice");
        let sri = first.hash.clone();
        drop(first);
        assert!(exists(&sri));
        store.append_with_payload(draft(), Some(second)).unwrap();
        assert!(exists(&sri));

        // Sent without waiting (processors): kept while the append is
        // under way and after it is stored.
        let stored = put(b"in the background");
        let sri = stored.hash.clone();
        store.append_in_background(draft(), Some(stored));
        assert!(exists(&sri));
        let landed = (0..1000).any(|_| {
            std::thread::sleep(Duration::from_millis(5));
            store.inner.pins.lock().unwrap().is_empty()
        });
        assert!(landed, "the background append was never answered");
        assert!(exists(&sri));
        assert_eq!(store.local().unwrap().refs(&sri.to_string()).unwrap(), 1);

        // Kept on its own (`POST /cas`): stays.
        let posted = put(b"posted");
        let sri = store.sync_payload(posted).unwrap();
        assert!(exists(&sri));
        store.close();
    }
}
