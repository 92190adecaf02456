//! The local backend: frames in fjall, payloads in cacache.
//!
//! Keyspaces (the first two exactly as cross.stream writes them, so its
//! store folders open here and ours open there):
//! - `stream`: 16-byte big-endian id → the frame's JSON;
//! - `idx_topic`: `topic 0x00 id` and `prefix. 0x00 id` for every dot → empty
//!   (newer cross.stream may store a value: it is never read), plus the
//!   reserved `\0schema_version` (`schema.rs`);
//! - `cas_pending`: hash → payload bytes of small payloads whose files are
//!   not yet known to be synced (see `writer.rs`);
//! - `ttl_time`: expiry ms (8 bytes BE) + id → empty, for the sweep;
//! - `cas_refs`: hash → how many stored frames reference it (u64 BE), so
//!   content nothing references any more can be deleted (see
//!   `housekeeping.rs`); built once by scanning when a store written by
//!   cross.stream is first opened;
//! - `kv`: the k/v store, key → JSON.
//!
//! A new store gets its database and keyspaces from the writer, after its
//! socket opens (`Keyspaces`).

pub(in crate::store) mod cas;
mod check;
pub(in crate::store) mod dedup;
pub(in crate::store) mod schema;
pub(in crate::store) mod space;
pub(in crate::store) mod writer;

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, OwnedWriteBatch as WriteBatch};

use super::id::Id;
use super::merge::MergeIds;
use super::topic::{TopicFilter, TopicPattern};
use super::{RawFrame, StoreError};
use cas::Cas;
use schema::Schema;
use space::DiskSpace;

pub use check::{check, CheckFixes, CheckReport};

/// The store's fjall database and content folder.
#[derive(Clone)]
pub struct Local {
    /// The database and keyspaces, once they exist (see `Keyspaces`).
    spaces: Arc<OnceLock<Keyspaces>>,
    /// Held while making them, so they are made once.
    making: Arc<Mutex<()>>,
    pub cas: Cas,
    pub dir: PathBuf,
    /// The free-space reserve every write claims from (see `space.rs`).
    pub space: Arc<DiskSpace>,
    /// Set when the database can take no more writes (see `Broken`).
    pub broken: Arc<Broken>,
}

/// Set once when the index database refuses every write until it is
/// reopened (fjall "poisons" itself after a failed journal write or sync,
/// and has no way back in place): the writer refuses everything from then
/// on, and the server stops with the reason rather than stay half alive.
#[derive(Debug, Default)]
pub struct Broken {
    reason: Mutex<Option<String>>,
    changed: std::sync::Condvar,
}

impl Broken {
    /// Records why; the first reason stays.
    pub fn set(&self, reason: String) {
        let mut slot = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(reason);
            self.changed.notify_all();
        }
    }

    /// Why, if it happened.
    pub fn reason(&self) -> Option<String> {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Blocks until it happens; returns why.
    pub fn wait(&self) -> String {
        let mut slot = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(reason) = slot.as_ref() {
                return reason.clone();
            }
            slot = self.changed.wait(slot).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// The fjall database and the store's keyspaces: cross.stream's two
/// (`stream`, then the topic index), then ours (`Ours`).
///
/// A new store (no `fjall` folder yet) opens its socket first, and the
/// writer makes the database and `stream` before its first batch
/// (`xs.start`), as sqlite makes its file on the first write; it makes the
/// topic index (filing every frame of that batch) and ours right after
/// that batch. fjall syncs four times to make a database and about
/// fifteen times for each keyspace (`strace`: 31 syncs before `xs.start`
/// instead of 115; docs/benchmarks.md has the times). Until a keyspace
/// exists it holds nothing, and
/// readers treat it so: a topic read before the index exists reads the
/// stream (`Local::scan`). A store that has a database opens it and gets
/// every keyspace at once (a folder written by cross.stream has only the
/// first two: ours are made then), and files its first frame in the
/// index if a crash came between that first batch and the index.
#[derive(Clone)]
pub struct Keyspaces {
    pub db: Database,
    pub stream: Keyspace,
    /// `idx_topic`, once it files every stored frame (`index`).
    index: Arc<OnceLock<Keyspace>>,
    /// Held while making the index, so it is made once.
    making_index: Arc<Mutex<()>>,
    ours: Arc<OnceLock<Ours>>,
    /// Held while making ours, so they are made once.
    making_ours: Arc<Mutex<()>>,
}

/// The keyspaces cross.stream does not have.
#[derive(Clone)]
pub struct Ours {
    pub cas_pending: Keyspace,
    pub ttl_time: Keyspace,
    pub cas_refs: Keyspace,
    pub kv: Keyspace,
    /// Idempotency keys seen within the dedup window (see
    /// `batch::DedupKey`).
    pub dedup: Keyspace,
}

impl Keyspaces {
    /// The topic index if it is made; `None`: a new store's, not yet.
    pub fn index_if_made(&self) -> Option<&Keyspace> {
        self.index.get()
    }

    /// The topic index (`idx_topic`), made now when missing. It is handed
    /// out only once it files every stored frame: a new one files the
    /// frames already stored (a new store's first batch goes in before the
    /// index exists) and is marked with the schema version in the same
    /// commit, synced; an unmarked one whose first frame is not filed (a
    /// crash between the two) is mended first.
    pub fn index(&self) -> Result<&Keyspace, StoreError> {
        if let Some(index) = self.index.get() {
            return Ok(index);
        }
        let _making = self.making_index.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(index) = self.index.get() {
            return Ok(index);
        }
        let new = !self.db.keyspace_exists("idx_topic");
        let index = self
            .db
            .keyspace("idx_topic", KeyspaceCreateOptions::default)
            .map_err(StoreError::fjall)?;
        if new {
            // Ours: filed and marked with the schema version in one
            // commit, so a marked index is a whole one.
            let mut batch = self.db.batch();
            file_every_frame(&self.stream, &index, &mut batch)?;
            schema::mark(&index, &mut batch);
            batch.commit().map_err(StoreError::fjall)?;
            self.db
                .persist(fjall::PersistMode::SyncData)
                .map_err(StoreError::fjall)?;
        } else if schema::read(&index)?.is_none() && !first_frame_filed(&self.stream, &index)? {
            // Unmarked and its first frame not filed: ours, made by a
            // server that stopped before filing it (or damaged). Filing
            // what is missing mends it; the schema version goes where
            // that is safe, as at any open.
            let mut batch = self.db.batch();
            file_every_frame(&self.stream, &index, &mut batch)?;
            batch.commit().map_err(StoreError::fjall)?;
            let mut batch = self.db.batch();
            schema::ensure(&index, &mut batch)?;
            if !batch.is_empty() {
                batch.commit().map_err(StoreError::fjall)?;
            }
            self.db
                .persist(fjall::PersistMode::SyncData)
                .map_err(StoreError::fjall)?;
        }
        Ok(self.index.get_or_init(|| index))
    }

    /// Ours if they exist yet; `None`: they hold nothing.
    pub fn ours_if_made(&self) -> Option<&Ours> {
        self.ours.get()
    }

    /// Ours, made now when missing, with the payload references counted
    /// (committed and synced) before anything can change them.
    pub fn ours(&self) -> Result<&Ours, StoreError> {
        if let Some(ours) = self.ours.get() {
            return Ok(ours);
        }
        let _making = self.making_ours.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ours) = self.ours.get() {
            return Ok(ours);
        }
        let keyspace = |name: &str| {
            self.db
                .keyspace(name, KeyspaceCreateOptions::default)
                .map_err(StoreError::fjall)
        };
        let made = Ours {
            cas_pending: keyspace("cas_pending")?,
            ttl_time: keyspace("ttl_time")?,
            cas_refs: keyspace("cas_refs")?,
            kv: keyspace("kv")?,
            dedup: keyspace("dedup")?,
        };
        let mut batch = self.db.batch();
        count_refs(&self.stream, &made.cas_refs, &mut batch)?;
        if !batch.is_empty() {
            batch.commit().map_err(StoreError::fjall)?;
            self.db
                .persist(fjall::PersistMode::SyncData)
                .map_err(StoreError::fjall)?;
        }
        Ok(self.ours.get_or_init(|| made))
    }
}

pub use crate::store::FrameIter;

impl Local {
    /// Opens the store's database, if it has one, and content folder.
    pub fn open(dir: &Path) -> Result<Local, StoreError> {
        let space = Arc::new(DiskSpace::new(dir));
        let local = Local {
            spaces: Default::default(),
            making: Default::default(),
            cas: Cas::new(dir.join("cacache"), space.clone()),
            dir: dir.to_path_buf(),
            space,
            broken: Default::default(),
        };
        if local.fjall_dir().exists() {
            let spaces = local.keyspaces()?;
            spaces.index()?;
            spaces.ours()?;
        }
        Ok(local)
    }

    fn fjall_dir(&self) -> PathBuf {
        self.dir.join("fjall")
    }

    /// The database and keyspaces if they exist yet; `None`: a new, empty
    /// store.
    pub fn keyspaces_if_made(&self) -> Option<&Keyspaces> {
        self.spaces.get()
    }

    /// Our keyspaces if they exist yet; `None`: they hold nothing.
    pub fn ours_if_made(&self) -> Option<&Ours> {
        self.keyspaces_if_made()?.ours_if_made()
    }

    /// The database and `stream`, made now when missing (the index:
    /// `Keyspaces::index`; ours: `Keyspaces::ours`).
    pub fn keyspaces(&self) -> Result<&Keyspaces, StoreError> {
        if let Some(spaces) = self.spaces.get() {
            return Ok(spaces);
        }
        let _making = self.making.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(spaces) = self.spaces.get() {
            return Ok(spaces);
        }
        let new = !self.fjall_dir().exists();
        let made = open_database(&self.fjall_dir()).inspect_err(|_| {
            // A database being made holds nothing yet. What fjall left of
            // it goes (on a full disk, an empty `version` file that it
            // would refuse to open ever after), so the next try starts
            // clean.
            if new {
                let _ = std::fs::remove_dir_all(self.fjall_dir());
            }
        })?;
        Ok(self.spaces.get_or_init(|| made))
    }

    /// How many stored frames reference `hash`.
    pub fn refs(&self, hash: &str) -> Result<u64, StoreError> {
        let Some(ours) = self.ours_if_made() else {
            return Ok(0);
        };
        Ok(ours
            .cas_refs
            .get(hash.as_bytes())
            .map_err(StoreError::fjall)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0))
    }

    /// Readies the database for writing: makes it and `stream` if they
    /// are missing, and on a store that has its index writes the schema
    /// version where that is safe (`schema.rs`; a new store's index is
    /// marked when it is made). That commit is not synced on its own: the
    /// journal is one sequence, so the next synced batch (`xs.start`)
    /// makes it durable, and if a crash comes first the next open writes
    /// it again.
    pub fn prepare(&self) -> Result<Schema, StoreError> {
        let spaces = self.keyspaces()?;
        let Some(index) = spaces.index_if_made() else {
            return Ok(Schema::Marked(schema::SCHEMA_VERSION));
        };
        let mut batch = spaces.db.batch();
        let schema = schema::ensure(index, &mut batch)?;
        if !batch.is_empty() {
            batch.commit().map_err(StoreError::fjall)?;
        }
        Ok(schema)
    }

    /// The newest stored id.
    pub fn last_id(&self) -> Result<Option<Id>, StoreError> {
        let Some(spaces) = self.keyspaces_if_made() else {
            return Ok(None);
        };
        match spaces.stream.last_key_value() {
            Some(guard) => {
                let key = guard.key().map_err(StoreError::fjall)?;
                Ok(id_from_key(&key))
            }
            None => Ok(None),
        }
    }

    /// One frame by id.
    pub fn get(&self, id: Id) -> Result<Option<RawFrame>, StoreError> {
        let Some(spaces) = self.keyspaces_if_made() else {
            return Ok(None);
        };
        let value = spaces
            .stream
            .get(id.to_bytes())
            .map_err(StoreError::fjall)?;
        Ok(value.map(|json| RawFrame {
            id,
            json: json.to_vec(),
        }))
    }

    /// The id of the newest frame of exactly `topic` a read shows at
    /// `now_ms`: expired `time:` frames (not yet swept) are passed over,
    /// and so are the ids in `skip` (removed by the batch being staged).
    pub fn last_of_topic(
        &self,
        topic: &str,
        now_ms: u64,
        skip: &std::collections::HashSet<Id>,
    ) -> Result<Option<Id>, StoreError> {
        let filter = TopicFilter::Patterns(vec![TopicPattern::Exact(topic.to_string())]);
        for frame in self.scan(&filter, Bound::Unbounded, Bound::Unbounded, true) {
            let frame = frame?;
            if !skip.contains(&frame.id) && !frame.is_expired(now_ms) {
                return Ok(Some(frame.id));
            }
        }
        Ok(None)
    }

    /// Frames matching `filter` with ids inside `(lower, upper)` bounds, in
    /// id order (or reverse). Seeks in the index; never scans what the
    /// filter excludes.
    pub fn scan(
        &self,
        filter: &TopicFilter,
        lower: Bound<Id>,
        upper: Bound<Id>,
        reverse: bool,
    ) -> FrameIter {
        let Some(spaces) = self.keyspaces_if_made() else {
            return Box::new(std::iter::empty());
        };
        match filter {
            TopicFilter::All => {
                let range = (map_bound(lower, &[]), map_bound(upper, &[]));
                let iter = spaces.stream.range(range);
                let map = |guard: fjall::Guard| {
                    let (key, value) = guard.into_inner().map_err(StoreError::fjall)?;
                    let id = id_from_key(&key)
                        .ok_or_else(|| StoreError::Storage("stream key is not an id".into()))?;
                    Ok(RawFrame {
                        id,
                        json: value.to_vec(),
                    })
                };
                if reverse {
                    Box::new(iter.rev().map(map))
                } else {
                    Box::new(iter.map(map))
                }
            }
            TopicFilter::Patterns(patterns) => {
                let Some(index) = spaces.index_if_made().cloned() else {
                    // A new store's first frames, before the index exists:
                    // a few, read from the stream itself.
                    let filter = filter.clone();
                    let all = self.scan(&TopicFilter::All, lower, upper, reverse);
                    return Box::new(all.filter(move |frame| match frame {
                        Ok(frame) => match frame.quick_topic() {
                            Some(topic) => filter.matches(topic),
                            None => frame.parse().is_ok_and(|f| filter.matches(&f.topic)),
                        },
                        Err(_) => true,
                    }));
                };
                let sources: Vec<IdIter> = patterns
                    .iter()
                    .map(|p| index_ids(&index, p, lower, upper, reverse))
                    .collect();
                let stream = spaces.stream.clone();
                let merged = MergeIds::new(sources, reverse);
                Box::new(merged.filter_map(move |id| {
                    let id = match id {
                        Ok(id) => id,
                        Err(e) => return Some(Err(e)),
                    };
                    match stream.get(id.to_bytes()) {
                        Ok(Some(json)) => Some(Ok(RawFrame {
                            id,
                            json: json.to_vec(),
                        })),
                        // An index entry whose frame is gone (removed between
                        // the two reads): nothing to deliver.
                        Ok(None) => None,
                        Err(e) => Some(Err(StoreError::fjall(e))),
                    }
                }))
            }
        }
    }
}

/// The database in `dir`, made when missing, and its `stream`.
fn open_database(dir: &Path) -> Result<Keyspaces, StoreError> {
    let db = Database::builder(dir)
        .cache_size(4 * 1024 * 1024)
        .manual_journal_persist(true)
        .open()
        .map_err(StoreError::fjall)?;
    Ok(Keyspaces {
        stream: db
            .keyspace("stream", KeyspaceCreateOptions::default)
            .map_err(StoreError::fjall)?,
        index: Default::default(),
        making_index: Default::default(),
        ours: Default::default(),
        making_ours: Default::default(),
        db,
    })
}

/// Whether the stream's first frame is filed in the index (true when the
/// stream is empty; false when the frame is unreadable, so filing looks
/// at the rest). Every batch files its frames with them, but for the first
/// batch of a new store, which goes in before the index exists: so if the
/// first frame is filed, every frame is.
fn first_frame_filed(stream: &Keyspace, index: &Keyspace) -> Result<bool, StoreError> {
    let Some(guard) = stream.first_key_value() else {
        return Ok(true);
    };
    let (key, json) = guard.into_inner().map_err(StoreError::fjall)?;
    let Ok(frame) = super::frame::Frame::from_json(&json) else {
        return Ok(false);
    };
    let mut entry = frame.topic.into_bytes();
    entry.push(0);
    entry.extend_from_slice(&key);
    index.contains_key(entry).map_err(StoreError::fjall)
}

/// Files every frame of the stream in the index (in `batch`); entries
/// already there are left as they are (newer cross.stream may keep a
/// value in them).
fn file_every_frame(
    stream: &Keyspace,
    index: &Keyspace,
    batch: &mut WriteBatch,
) -> Result<(), StoreError> {
    for guard in stream.iter() {
        let (key, json) = guard.into_inner().map_err(StoreError::fjall)?;
        let Ok(frame) = super::frame::Frame::from_json(&json) else {
            continue;
        };
        for mut entry in super::topic::index_prefixes(&frame.topic) {
            entry.extend_from_slice(&key);
            if !index.contains_key(&entry).map_err(StoreError::fjall)? {
                batch.insert(index, entry, []);
            }
        }
    }
    Ok(())
}

/// Adds the payload reference counts to `batch` unless they were counted
/// before (a store written by cross.stream, or before counting existed,
/// has none).
fn count_refs(
    stream: &Keyspace,
    cas_refs: &Keyspace,
    batch: &mut WriteBatch,
) -> Result<(), StoreError> {
    if cas_refs
        .contains_key(REFS_MARKER)
        .map_err(StoreError::fjall)?
    {
        return Ok(());
    }
    let mut counts: std::collections::HashMap<String, u64> = Default::default();
    for guard in stream.iter() {
        let (_, value) = guard.into_inner().map_err(StoreError::fjall)?;
        if let Ok(frame) = super::frame::Frame::from_json(&value) {
            if let Some(hash) = frame.hash {
                *counts.entry(hash).or_default() += 1;
            }
        }
    }
    for (hash, count) in counts {
        batch.insert(cas_refs, hash.into_bytes(), count.to_be_bytes());
    }
    batch.insert(cas_refs, REFS_MARKER, []);
    Ok(())
}

/// Ids filed under `pattern` in `idx_topic`, within the bounds.
fn index_ids(
    idx_topic: &Keyspace,
    pattern: &TopicPattern,
    lower: Bound<Id>,
    upper: Bound<Id>,
    reverse: bool,
) -> IdIter {
    let prefix = pattern.index_prefix();
    let lower_key = match lower {
        Bound::Unbounded => Bound::Included(prefix.clone()),
        other => map_bound(other, &prefix),
    };
    let upper_key = match upper {
        Bound::Unbounded => {
            let mut end = prefix.clone();
            end.extend_from_slice(&[0xff; 16]);
            Bound::Included(end)
        }
        other => map_bound(other, &prefix),
    };
    let iter = idx_topic.range((lower_key, upper_key));
    let map = |guard: fjall::Guard| {
        let key = guard.key().map_err(StoreError::fjall)?;
        key.len()
            .checked_sub(16)
            .and_then(|at| id_from_key(&key[at..]))
            .ok_or_else(|| StoreError::Storage("index key without an id".into()))
    };
    if reverse {
        Box::new(iter.rev().map(map))
    } else {
        Box::new(iter.map(map))
    }
}

/// Present in `cas_refs` once references are counted; never a hash.
const REFS_MARKER: &[u8] = b"\0counted";

type IdIter = Box<dyn Iterator<Item = Result<Id, StoreError>> + Send>;

fn map_bound(bound: Bound<Id>, prefix: &[u8]) -> Bound<Vec<u8>> {
    let key = |id: Id| {
        let mut key = prefix.to_vec();
        key.extend_from_slice(&id.to_bytes());
        key
    };
    match bound {
        Bound::Included(id) => Bound::Included(key(id)),
        Bound::Excluded(id) => Bound::Excluded(key(id)),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// A 16-byte key as an id.
pub fn id_from_key(key: &[u8]) -> Option<Id> {
    let bytes: [u8; 16] = key.try_into().ok()?;
    Some(Id::from_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_store_makes_its_keyspaces_later_and_a_used_one_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let local = Local::open(dir.path()).unwrap();
        assert!(local.keyspaces_if_made().is_none(), "made at open");
        assert!(!dir.path().join("fjall").exists(), "a database at open");
        assert_eq!(local.last_id().unwrap(), None);
        assert!(local
            .scan(&TopicFilter::All, Bound::Unbounded, Bound::Unbounded, false)
            .next()
            .is_none());
        assert_eq!(local.refs("sha256-x").unwrap(), 0);
        // What the writer does before its first batch...
        local.prepare().unwrap();
        let spaces = local.keyspaces_if_made().expect("made by prepare");
        assert!(
            spaces.ours_if_made().is_none(),
            "ours before the first batch"
        );
        assert_eq!(local.refs("sha256-x").unwrap(), 0);
        // ...and after it.
        let ours = spaces.ours().unwrap();
        assert!(ours.cas_refs.contains_key(REFS_MARKER).unwrap());
        drop(local);

        let local = Local::open(dir.path()).unwrap();
        assert!(
            local.ours_if_made().is_some(),
            "an existing set opens at once"
        );
    }

    #[test]
    fn a_store_with_frames_but_not_our_keyspaces_counts_its_references_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::builder(dir.path().join("fjall")).open().unwrap();
        let stream = db
            .keyspace("stream", KeyspaceCreateOptions::default)
            .unwrap();
        let frame = r#"{"topic":"a","id":"03d4q1qhbiv09ovtuhokw5yxv","hash":"sha256-abc","meta":null,"ttl":null}"#;
        stream.insert([1u8; 16], frame).unwrap();
        drop(stream);
        drop(db);
        // As cross.stream leaves a folder: frames, none of our keyspaces.
        let local = Local::open(dir.path()).unwrap();
        assert!(local.ours_if_made().is_some());
        assert_eq!(local.refs("sha256-abc").unwrap(), 1);
    }
}
