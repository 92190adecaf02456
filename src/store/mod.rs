//! The stream store: frames, topics, ids, and the storage interface every
//! caller uses. `Store` is that interface; behind it is one of two
//! backends: `local/` (fjall for frames, cacache for payloads, the default)
//! or `redis/` (one namespace of a Redis shared by several nodes). Each has
//! its single writer thread fed by the same channel of `WriteRequest`s
//! (`write/`: the protocol both serve).
//! Nothing here knows about HTTP, the CLI or Nushell.

pub mod error;
mod follow;
pub mod frame;
pub mod groups;
pub mod housekeeping;
pub mod id;
pub mod kv;
pub mod local;
pub mod merge;
pub mod metrics;
pub mod queue;
pub mod redis;
pub mod topic;
pub mod ttl;
pub mod write;

/// The follow machinery (src/store/follow/), at its old paths.
pub use follow::{head, reader as read};

use std::collections::HashMap;
use std::io::Read;
use std::ops::Bound;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use cacache::Integrity;
use crossbeam_channel::{Receiver, Sender};

pub use error::StoreError;
pub use frame::Frame;
pub use id::Id;
pub use topic::TopicFilter;
pub use ttl::Ttl;
pub use write::{import_conflict, same_frame, Draft, WriteOutcome, WriteReply};

use head::{EphemeralLimits, Head};
use housekeeping::Chore;
use kv::KvSignal;
use local::cas::JOURNALED_PAYLOAD_MAX;
use local::schema::Schema;
use local::writer::{LocalOp, Writer};
use local::Local;
use queue::{QueueReceiver, QueueSender};
use write::{Answer, ReplyTo, Waiter, WriteOp, WriteRequest};

/// A frame as read from the store: its id and its JSON, exactly the stored
/// bytes (so a store written by cross.stream is served byte for byte).
#[derive(Debug, Clone, PartialEq)]
pub struct RawFrame {
    pub id: Id,
    pub json: Vec<u8>,
}

impl RawFrame {
    /// Parses the JSON into a `Frame`.
    pub fn parse(&self) -> Result<Frame, StoreError> {
        Frame::from_json(&self.json).map_err(|e| {
            StoreError::Storage(format!("stored frame {} is unreadable: {e}", self.id))
        })
    }

    /// The topic, read off the front of the JSON without parsing the rest
    /// (every frame's JSON starts with it); `None` when it is not there
    /// plainly, without escapes: then parse.
    pub fn quick_topic(&self) -> Option<&str> {
        const MARK: &[u8] = b"{\"topic\":\"";
        let rest = self.json.strip_prefix(MARK)?;
        let end = rest.iter().position(|b| *b == b'"' || *b == b'\\')?;
        if rest[end] != b'"' {
            return None;
        }
        std::str::from_utf8(&rest[..end]).ok()
    }

    /// Whether a `time:` ttl has run out. Cheap for every other frame: it
    /// reads the JSON backwards from its end, where `ttl`, the last key
    /// (ours and cross.stream's), ends as `"ttl":"time:<digits>"}`; any
    /// other ending is told apart by its last two bytes. Every replayed
    /// frame passes here.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        const MARK: &[u8] = b"\"ttl\":\"time:";
        let json = self.json.trim_ascii_end();
        let Some(rest) = json.strip_suffix(b"\"}") else {
            return false;
        };
        let digits = rest.iter().rev().take_while(|b| b.is_ascii_digit()).count();
        let (rest, digits) = rest.split_at(rest.len() - digits);
        if digits.is_empty() || !rest.ends_with(MARK) {
            return false;
        }
        let ms = std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse::<u64>().ok());
        match ms {
            Some(ms) => Ttl::Time(ms).is_expired(self.id.timestamp(), now_ms),
            None => false,
        }
    }

    /// The JSON with `timestamp` added last when asked for.
    pub fn render(&self, with_timestamp: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.json.len() + 48);
        self.render_into(&mut out, with_timestamp);
        out
    }

    /// As `render`, appended to `out` (no copy in between).
    pub fn render_into(&self, out: &mut Vec<u8>, with_timestamp: bool) {
        if !with_timestamp || self.json.last() != Some(&b'}') {
            out.extend_from_slice(&self.json);
            return;
        }
        out.extend_from_slice(&self.json[..self.json.len() - 1]);
        out.extend_from_slice(b",\"timestamp\":\"");
        out.extend_from_slice(id::rfc3339_from_ms(self.id.timestamp()).as_bytes());
        out.extend_from_slice(b"\"}");
    }
}

/// A boxed iterator over frames, oldest first or newest first.
pub type FrameIter = Box<dyn Iterator<Item = Result<RawFrame, StoreError>> + Send>;

/// When an acknowledged append is on stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Before the append is answered (the default).
    Always,
    /// At most this long after the answer.
    Interval(Duration),
    /// Whenever the OS writes it back.
    Never,
}

impl FsyncPolicy {
    pub fn parse(text: &str) -> Result<FsyncPolicy, String> {
        match text {
            "always" => Ok(FsyncPolicy::Always),
            "never" => Ok(FsyncPolicy::Never),
            _ => text
                .strip_prefix("interval:")
                .and_then(|ms| ms.parse::<u64>().ok())
                .filter(|ms| *ms > 0)
                .map(|ms| FsyncPolicy::Interval(Duration::from_millis(ms)))
                .ok_or_else(|| {
                    format!("invalid --fsync '{text}': expected always, interval:<ms> or never")
                }),
        }
    }
}

/// How a store is opened.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub fsync: FsyncPolicy,
    pub ephemeral: EphemeralLimits,
    /// `--backend redis://...`: frames, payloads and k/v live there; the
    /// folder only holds the socket.
    pub redis: Option<redis::RedisAddress>,
    /// `--redis-replicas N`: replicas that must acknowledge each write.
    pub redis_replicas: u32,
    /// `--ttl-sweep <ms>`: how often expired `time:` frames are removed;
    /// `None` (`0`): never by this server (reads still skip them).
    pub ttl_sweep: Option<Duration>,
}

/// How often expired `time:` frames are removed unless told otherwise.
pub const DEFAULT_TTL_SWEEP: Duration = Duration::from_millis(1000);

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            fsync: FsyncPolicy::Always,
            ephemeral: EphemeralLimits::default(),
            redis: None,
            redis_replicas: 0,
            ttl_sweep: Some(DEFAULT_TTL_SWEEP),
        }
    }
}

/// A payload stored (or kept in memory) before its frame is appended.
/// Dropped without its frame appended (`Store::append_with_payload`) or
/// kept on its own (`Store::sync_payload`), its file is removed again:
/// see `PayloadPin`.
pub struct StoredPayload {
    pub hash: Integrity,
    pub size: u64,
    /// The bytes, when the backend keeps them with the frame (a small
    /// payload on the local backend, any on Redis).
    pub(in crate::store) bytes: Option<Vec<u8>>,
    /// Keeps garbage collection off this payload until its frame is
    /// written; removes the file when dropped uncommitted.
    pub(in crate::store) pin: Option<PayloadPin>,
}

/// While alive, the payload's file is not garbage collected, even if no
/// stored frame references it yet. Dropped without `commit` (the append
/// that was to use it was refused, or never made), it removes the file
/// unless a stored frame references the same content or another write of
/// it is under way (`Store::collect_payload` checks both under the
/// garbage collector's lock), so no caller leaves an orphan behind.
pub struct PayloadPin {
    store: Store,
    hash: String,
    committed: bool,
}

impl PayloadPin {
    /// The frame that uses the payload is stored (or it is kept on its
    /// own): let go without removing anything.
    pub fn commit(mut self) {
        self.committed = true;
    }
}

impl Drop for PayloadPin {
    fn drop(&mut self) {
        {
            let mut pins = self
                .store
                .inner
                .pins
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(count) = pins.get_mut(&self.hash) {
                *count -= 1;
                if *count == 0 {
                    pins.remove(&self.hash);
                }
            }
        }
        if self.committed {
            return;
        }
        // Another pin of the same content keeps the file ("try later"):
        // that write removes it in turn if it is refused too.
        if let Err(e) = self.store.collect_payload(&self.hash) {
            eprintln!(
                "xs: removing the payload {} of a refused write: {e}",
                self.hash
            );
        }
    }
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
        let folder_lock = lock_folder(dir)?;
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
        let head = Arc::new(Head::new(local.last_id()?, options.ephemeral));
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
        )?;
        std::thread::Builder::new()
            .name("writer".into())
            .spawn(move || writer.run(writer_rx))
            .map_err(|e| StoreError::io("starting the writer thread", e))?;
        let store = Store::assemble(dir, Backend::Local(local), shared, options, folder_lock);
        housekeeping::start(store.clone(), chores_rx, after_rx, journaled)?;
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
        let head = Arc::new(Head::new(redis.last_id()?, options.ephemeral));
        let (shared, writer_rx, chores_rx) = Shared::new(head);
        let writer = redis::writer::RedisWriter::new(
            redis.clone(),
            shared.head.clone(),
            shared.metrics.clone(),
        );
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
        Ok(Store::assemble(
            dir,
            Backend::Redis(redis),
            shared,
            options,
            folder_lock,
        ))
    }

    fn assemble(
        dir: &Path,
        backend: Backend,
        shared: Shared,
        options: StoreOptions,
        folder_lock: std::fs::File,
    ) -> Store {
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
        let waiter = Arc::new(Waiter::default());
        let request = WriteRequest {
            op,
            reply: Some(ReplyTo::Waiter(Answer::new(waiter.clone()))),
        };
        // A failed send drops the request, whose `Answer` then says Closed.
        let _ = self.inner.writer.send(request);
        waiter.wait()
    }

    /// Appends a frame; returns it with its id once acknowledged.
    pub fn append(&self, draft: Draft) -> Result<Frame, StoreError> {
        self.append_op(WriteOp::Append(draft, None))
    }

    fn append_op(&self, op: WriteOp) -> Result<Frame, StoreError> {
        match self.write(op)? {
            WriteOutcome::Frame(frame) => Ok(frame),
            WriteOutcome::Done => Err(StoreError::Storage("append returned no frame".into())),
        }
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
        let (op, pin) = append_op(draft, payload);
        let frame = self.append_op(op)?;
        if let Some(pin) = pin {
            pin.commit();
        }
        Ok(frame)
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
            WriteOutcome::Frame(frame) => Ok(frame),
            WriteOutcome::Done => Err(StoreError::Storage("import returned no frame".into())),
        }
    }

    /// Sends an import without waiting for it: the reply says whether it
    /// was stored (a restore or `POST /import` keeps a window of them in
    /// flight; the writer keeps their order).
    pub fn import_queued(&self, frame: Frame) -> Receiver<WriteReply> {
        self.submit(WriteOp::Import(frame, None))
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

    /// Stores a payload from `body` (at most `max_bytes`). Ephemeral
    /// payloads stay in memory; small ones are written unsynced and
    /// journaled with their frame; large ones are synced here when the
    /// policy is `always`.
    pub fn put_payload(
        &self,
        body: &mut dyn Read,
        size_hint: Option<u64>,
        max_bytes: u64,
        ephemeral: bool,
    ) -> Result<StoredPayload, StoreError> {
        if let Some(size) = size_hint {
            if size > max_bytes {
                return Err(StoreError::TooLarge(max_bytes));
            }
        }
        let small = size_hint.is_some_and(|s| s <= JOURNALED_PAYLOAD_MAX as u64);
        let local = match &self.inner.backend {
            Backend::Local(local) => local,
            Backend::Redis(_) => return self.put_redis_payload(body, max_bytes, ephemeral),
        };
        if ephemeral {
            let bytes = read_bounded(body, max_bytes)?;
            let hash = Integrity::from(&bytes);
            let size = bytes.len() as u64;
            self.inner
                .head
                .keep_ephemeral_payload(hash.to_string(), bytes);
            return Ok(StoredPayload {
                hash,
                size,
                bytes: None,
                pin: None,
            });
        }
        let _writing = self.inner.gc_lock.read().unwrap_or_else(|e| e.into_inner());
        let (hash, size, bytes) = if small {
            let bytes = read_bounded(body, max_bytes)?;
            let _claim = local.space.claim(bytes.len() as u64, "the payload")?;
            let hash = local.cas.write_bytes(&bytes)?;
            (hash, bytes.len() as u64, Some(bytes))
        } else {
            let sync = self.inner.options.fsync == FsyncPolicy::Always;
            let (hash, size) = local.cas.write_stream(body, size_hint, max_bytes, sync)?;
            (hash, size, None)
        };
        metrics::Metrics::add(&self.inner.metrics.payload_bytes_appended, size);
        let pin = self.pin(hash.to_string());
        Ok(StoredPayload {
            hash,
            size,
            bytes,
            pin: Some(pin),
        })
    }

    /// A payload on Redis: one string keyed by its hash, written by the
    /// writer with its frame. An ephemeral one also stays in memory here
    /// and travels with its frame to other nodes.
    fn put_redis_payload(
        &self,
        body: &mut dyn Read,
        max_bytes: u64,
        ephemeral: bool,
    ) -> Result<StoredPayload, StoreError> {
        let bytes = read_bounded(body, max_bytes.min(redis::MAX_PAYLOAD))?;
        let hash = Integrity::from(&bytes);
        let size = bytes.len() as u64;
        if ephemeral {
            self.inner
                .head
                .keep_ephemeral_payload(hash.to_string(), bytes.clone());
            return Ok(StoredPayload {
                hash,
                size,
                bytes: Some(bytes),
                pin: None,
            });
        }
        // The writer SETs it with its frame (or alone: `sync_payload`).
        metrics::Metrics::add(&self.inner.metrics.payload_bytes_appended, size);
        Ok(StoredPayload {
            hash,
            size,
            bytes: Some(bytes),
            pin: None,
        })
    }

    fn pin(&self, hash: String) -> PayloadPin {
        let mut pins = self.inner.pins.lock().unwrap_or_else(|e| e.into_inner());
        *pins.entry(hash.clone()).or_default() += 1;
        PayloadPin {
            store: self.clone(),
            hash,
            committed: false,
        }
    }

    /// Deletes a payload's file if no stored frame references it and no
    /// append is about to. Returns whether it is settled (deleted, or
    /// referenced again); `false` means "pinned, try later".
    pub(crate) fn collect_payload(&self, hash: &str) -> Result<bool, StoreError> {
        let Backend::Local(local) = &self.inner.backend else {
            return Ok(true);
        };
        let _alone = self
            .inner
            .gc_lock
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if self
            .inner
            .pins
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(hash)
        {
            return Ok(false);
        }
        let started = std::time::Instant::now();
        if local.refs(hash)? > 0 {
            return Ok(true);
        }
        if let Ok(sri) = hash.parse::<Integrity>() {
            local.cas.remove(&sri)?;
        }
        let took = started.elapsed().as_nanos().try_into().unwrap_or(u64::MAX);
        metrics::Metrics::add(&self.inner.metrics.gc_drains, 1);
        metrics::Metrics::add(&self.inner.metrics.gc_nanos, took);
        // A journaled copy must not bring the file back after a crash.
        // (Only when there is one: a refused append has none, and a
        // needless tombstone would eat into the disk reserve.)
        let pending = match local.ours_if_made() {
            Some(ours) => ours
                .cas_pending
                .contains_key(hash.as_bytes())
                .map_err(StoreError::fjall)?,
            None => false,
        };
        if pending {
            drop(self.submit(WriteOp::Local(LocalOp::ForgetPending(vec![
                hash.as_bytes().to_vec(),
            ]))));
        }
        Ok(true)
    }

    /// Keeps a payload stored without a frame (`POST /cas`, `.cas-post`,
    /// a restored dump), made durable: a small one rides in a journal
    /// batch (shared with concurrent writes), a large one was synced as it
    /// was written. Returns its hash; on failure the file goes again.
    pub fn sync_payload(&self, stored: StoredPayload) -> Result<Integrity, StoreError> {
        if let Some(bytes) = stored.bytes {
            self.write(WriteOp::KeepPayload(stored.hash.to_string(), bytes))?;
        }
        if let Some(pin) = stored.pin {
            pin.commit();
        }
        Ok(stored.hash)
    }

    /// Reads a payload: from the ephemeral window, else from cacache.
    pub fn open_payload(
        &self,
        sri: &Integrity,
    ) -> Result<Option<Box<dyn Read + Send>>, StoreError> {
        if let Some(bytes) = self.inner.head.ephemeral_payload(&sri.to_string()) {
            return Ok(Some(Box::new(std::io::Cursor::new(bytes))));
        }
        match &self.inner.backend {
            Backend::Local(local) => Ok(local
                .cas
                .open(sri)?
                .map(|f| Box::new(f) as Box<dyn Read + Send>)),
            Backend::Redis(redis) => Ok(redis
                .read_payload(&sri.to_string())?
                .map(|bytes| Box::new(std::io::Cursor::new(bytes)) as Box<dyn Read + Send>)),
        }
    }

    /// Reads a whole payload into memory.
    pub fn read_payload(&self, sri: &Integrity) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(mut reader) = self.open_payload(sri)? else {
            return Ok(None);
        };
        let mut bytes = Vec::new();
        reader
            .read_to_end(&mut bytes)
            .map_err(|e| StoreError::io("reading payload", e))?;
        Ok(Some(bytes))
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
        let _ = self.inner.chores.send(Chore::Stop);
        let _ = self.write(WriteOp::Nothing);
        if let Backend::Local(local) = &self.inner.backend {
            if let Some(spaces) = local.keyspaces_if_made() {
                let _ = spaces.db.persist(fjall::PersistMode::SyncAll);
            }
        }
    }
}

/// Creates the folder (0700) when missing and takes `<dir>/lock`
/// exclusively: a second server on the same folder is refused, on either
/// backend (fjall's own lock covers only its keyspaces).
fn lock_folder(dir: &Path) -> Result<std::fs::File, StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| StoreError::io("creating the store folder", e))?;
    } else {
        tighten_folder(dir)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(dir.join("lock"))
        .map_err(|e| StoreError::io("opening the folder lock", e))?;
    match crate::sys::fs::try_lock(&file) {
        Ok(true) => Ok(file),
        // Another server holds it; a lock that fails otherwise is
        // reported the same way (the folder cannot be made ours).
        Ok(false) | Err(_) => Err(StoreError::Locked(dir.display().to_string())),
    }
}

/// Takes group and others off an existing store folder: only its owner
/// gets in (the socket, the payloads), as for a folder made here. Says so
/// on stderr, since it changes what the user set.
/// A shared folder (sticky, like /tmp) or another user's is left alone,
/// with a warning: taking it from everyone else is not ours to do.
fn tighten_folder(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::metadata(dir)
        .map_err(|e| StoreError::io("reading the store folder's permissions", e))?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    let ours = meta.uid() == crate::sys::fs::effective_uid();
    if !ours || mode & 0o1000 != 0 {
        eprintln!(
            "xs: warning: {} is {mode:04o} and shared or not ours: left as it is, \
             so others may reach the store; use a folder of your own",
            dir.display()
        );
        return Ok(());
    }
    let tight = mode & 0o700;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(tight))
        .map_err(|e| StoreError::io("tightening the store folder's permissions", e))?;
    eprintln!(
        "xs: {} was {mode:04o}; made it {tight:04o} so only its owner gets in",
        dir.display()
    );
    Ok(())
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

fn read_bounded(body: &mut dyn Read, max_bytes: u64) -> Result<Vec<u8>, StoreError> {
    let mut bytes = Vec::new();
    let read = body
        .take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| StoreError::BadBody(e.to_string()))?;
    if read as u64 > max_bytes {
        return Err(StoreError::TooLarge(max_bytes));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: &str) -> RawFrame {
        let frame = Frame::from_json(json.as_bytes()).unwrap();
        RawFrame {
            id: frame.id,
            json: json.as_bytes().to_vec(),
        }
    }

    #[test]
    fn expiry_reads_the_ttl_at_the_end_only() {
        let created = raw(
            r#"{"topic":"a","id":"03hb7oay5warmpyenes4bmsxk","hash":null,"meta":null,"ttl":"time:100"}"#,
        );
        let at = created.id.timestamp();
        assert!(!created.is_expired(at + 99));
        assert!(created.is_expired(at + 100));
        let decoy = raw(
            r#"{"topic":"a","id":"03hb7oay5warmpyenes4bmsxk","hash":null,"meta":{"note":"\"ttl\":\"time:1\" is not this frame's ttl, it is a string in meta"},"ttl":"forever"}"#,
        );
        assert!(!decoy.is_expired(u64::MAX));
        let spaced = raw(
            r#"{"topic":"a","id":"03hb7oay5warmpyenes4bmsxk","hash":null,"meta":null,"ttl":"time:100"}
"#,
        );
        assert!(spaced.is_expired(at + 100));
        let last = raw(
            r#"{"topic":"a","id":"03hb7oay5warmpyenes4bmsxk","hash":null,"meta":null,"ttl":"last:100"}"#,
        );
        assert!(!last.is_expired(u64::MAX));
    }

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
        let exists = |sri: &Integrity| store.local().unwrap().cas.path_of(sri).exists();

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

    #[test]
    fn timestamp_goes_last() {
        let frame = raw(
            r#"{"topic":"a","id":"03hb7oay5warmpyenes4bmsxk","hash":null,"meta":null,"ttl":null}"#,
        );
        let mut out = Vec::new();
        frame.render_into(&mut out, true);
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with("+00:00\"}"), "{text}");
        assert_eq!(frame.render(false), frame.json);
    }
}
