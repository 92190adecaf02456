//! The writer thread: the one place that writes a local store.
//!
//! How it works. Connection threads validate a request, store its payload
//! and send a `WriteRequest` (`store::write`) on the writer's queue. The
//! writer blocks for the first request, then drains whatever else is queued
//! (up to `MAX_BATCH`) into one `Batch` (`batch.rs`): ids assigned in order
//! (`max(now-based SCRU128, last + 1)`), one fjall write batch, one commit,
//! one sync. Only then does it publish the new head (waking followers) and
//! answer every requester. Requests pile up while a sync runs, so under
//! load batches grow and appends share syncs (group commit): durability
//! costs latency, not throughput. A small payload is journaled in the same
//! batch (`cas_pending`), so that one sync covers frame and payload; the
//! housekeeper syncs its file later and forgets the copy. If the disk lacks
//! room (`space.rs`) or a write or sync fails, every request of the batch
//! gets the error and its ids are taken back; a failed journal write
//! poisons fjall, and the store is then marked broken (`Broken`). Why it is
//! shaped so, and what was measured and dropped: docs/design.md.

mod batch;

use std::time::Instant;

use crossbeam_channel::Sender;
use fjall::{Database, OwnedWriteBatch, PersistMode};

use super::Local;
use crate::store::head::Head;
use crate::store::housekeeping::{AfterCommit, JournaledKeys};
use crate::store::id::Id;
use crate::store::metrics::Metrics;
use crate::store::queue::{Empty, QueueReceiver};
use crate::store::write::{WriteOp, WriteRequest};
use crate::store::{FsyncPolicy, StoreError};
use batch::{Batch, Committed};

/// The most requests folded into one batch.
const MAX_BATCH: usize = 4096;

pub struct Writer {
    pub(super) local: Local,
    head: std::sync::Arc<Head>,
    fsync: FsyncPolicy,
    /// The newest id handed out (`Batch` hands out the next ones).
    pub(super) last_id: Option<Id>,
    after_commit: Sender<AfterCommit>,
    /// Journaled payload copies for the housekeeper to forget once synced.
    journaled: JournaledKeys,
    kv_changed: std::sync::Arc<crate::store::kv::KvSignal>,
    metrics: std::sync::Arc<Metrics>,
    /// Whether no batch has run yet (a new store's first batch goes in
    /// before its index is made: see `local::Keyspaces`).
    pub(super) first_batch: bool,
    /// Whether `make_the_rest` ran (it tries once; see there).
    tried_rest: bool,
    /// `--dedup-window`: how long an idempotency key is remembered;
    /// `None`: keys are ignored.
    pub(super) dedup_window: Option<std::time::Duration>,
    /// How many idempotency keys are kept, once counted (`None` until
    /// the first batch that needs it, and after a failed batch).
    pub(super) dedup_keys: Option<u64>,
    /// The most idempotency keys kept (`batch::DEDUP_MAX_KEYS`).
    pub(super) dedup_max_keys: u64,
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
            first_batch: true,
            tried_rest: false,
            dedup_window: None,
            dedup_keys: None,
            dedup_max_keys: super::dedup::DEDUP_MAX_KEYS,
        })
    }

    /// Remembers idempotency keys for `window` (`None`: ignores them).
    pub fn with_dedup_window(mut self, window: Option<std::time::Duration>) -> Writer {
        self.dedup_window = window;
        self
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
            self.make_the_rest();
            if let FsyncPolicy::Interval(every) = self.fsync {
                if unsynced_since.is_some_and(|s| s.elapsed() >= every) {
                    self.sync_journal();
                    unsynced_since = None;
                }
            }
        }
        self.sync_journal();
    }

    /// A new store's topic index (filing the first batch's frames) and
    /// own keyspaces, made once its first batch is answered (see
    /// `local::Keyspaces`); a batch that needs ours earlier makes them
    /// itself. Tried once here: if it fails (a full disk, say), it is said
    /// once, and each batch that needs them tries again and fails with
    /// the reason.
    fn make_the_rest(&mut self) {
        if self.tried_rest {
            return;
        }
        let Some(spaces) = self.local.keyspaces_if_made() else {
            return;
        };
        self.tried_rest = true;
        if let Err(e) = spaces.index().and_then(|_| spaces.ours()) {
            eprintln!("xs: {e}");
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
    fn apply(&mut self, requests: Vec<WriteRequest>) -> bool {
        let last_before = self.last_id;
        let staged = Batch::open(self, &requests).and_then(|mut batch| {
            for request in &requests {
                batch.stage(&request.op)?;
            }
            batch.commit()
        });
        self.first_batch = false;
        match staged {
            Ok(committed) => self.finish(requests, committed),
            Err(error) => {
                self.fail(requests, last_before, &error);
                false
            }
        }
    }

    /// After the commit: counts, publishes the news, answers every
    /// request, hands chores to the housekeeper; returns whether anything
    /// was written to disk.
    fn finish(&mut self, requests: Vec<WriteRequest>, done: Committed) -> bool {
        let Committed {
            outcomes,
            mut published,
            frames_removed,
            removed_topics,
            kv_changes,
            prune,
            unreferenced,
            journaled,
            wrote,
        } = done;
        // Appends that wrote a frame: not a duplicate, nor a refusal.
        let appended = requests
            .iter()
            .zip(&outcomes)
            .filter(|(request, outcome)| {
                matches!(request.op, WriteOp::Append(..))
                    && matches!(outcome, Ok(crate::store::write::WriteOutcome::Frame(_)))
            })
            .count() as u64;
        Metrics::add(&self.metrics.appends_ok, appended);
        Metrics::add(&self.metrics.frames_appended, appended);
        if frames_removed > 0 {
            Metrics::add(&self.metrics.removed_frames, frames_removed);
            Metrics::add(&self.metrics.remove_commits, 1);
            self.metrics.count_removed_topics(&removed_topics);
        }
        published.last_id = self.last_id;
        self.head.publish_batch(published);
        if !kv_changes.is_empty() {
            self.kv_changed.publish(kv_changes);
        }
        for (request, outcome) in requests.into_iter().zip(outcomes) {
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
    fn fail(&mut self, requests: Vec<WriteRequest>, last_before: Option<Id>, error: &StoreError) {
        self.last_id = last_before;
        // The batch's key count changes are lost with it: count again.
        self.dedup_keys = None;
        Metrics::add(&self.metrics.appends_failed, appends(&requests));
        for request in requests {
            if let Some(reply) = request.reply {
                reply.send(Err(error.relay()));
            }
        }
    }

    /// Claims the batch's room (`bytes` it adds, `deletion_bytes` of
    /// tombstones), commits and syncs it per the policy.
    pub(super) fn commit(
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

/// How many of the requests are appends.
fn appends(requests: &[WriteRequest]) -> u64 {
    requests
        .iter()
        .filter(|r| matches!(r.op, WriteOp::Append(..)))
        .count() as u64
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crossbeam_channel::Receiver;

    use std::ops::Bound;

    use super::*;
    use crate::store::frame::Frame;
    use crate::store::head::EphemeralLimits;
    use crate::store::write::{Draft, ReplyTo, WriteOutcome, WriteReply};

    fn writer(dir: &std::path::Path) -> Writer {
        let local = Local::open(dir).unwrap();
        let head = Arc::new(Head::new(None, EphemeralLimits::default(), |_| false));
        let (after_commit, _) = crossbeam_channel::unbounded();
        Writer::new(
            local,
            head,
            FsyncPolicy::Never,
            after_commit,
            JournaledKeys::default(),
            Default::default(),
            Default::default(),
        )
        .unwrap()
    }

    /// Applies `ops` as one batch; the reply to each.
    fn apply(writer: &mut Writer, ops: Vec<WriteOp>) -> Vec<WriteReply> {
        let (requests, replies): (Vec<_>, Vec<Receiver<WriteReply>>) = ops
            .into_iter()
            .map(|op| {
                let (tx, rx) = crossbeam_channel::bounded(1);
                let reply = Some(ReplyTo::Channel(tx));
                (WriteRequest { op, reply }, rx)
            })
            .collect();
        writer.apply(requests);
        replies.iter().map(|rx| rx.recv().unwrap()).collect()
    }

    /// The ids a read of `topic` finds, oldest first.
    fn topic_ids(local: &Local, topic: &str) -> Vec<crate::store::Id> {
        let filter = crate::store::TopicFilter::parse(topic);
        local
            .scan(&filter, Bound::Unbounded, Bound::Unbounded, false)
            .map(|frame| frame.unwrap().id)
            .collect()
    }

    fn frame(reply: &WriteReply) -> &Frame {
        match reply {
            Ok(WriteOutcome::Frame(frame)) => frame,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    #[test]
    fn a_batch_answers_each_request_and_a_failed_one_takes_its_ids_back() {
        let tmp = tempfile::tempdir().unwrap();
        let mut writer = writer(&tmp.path().join("store"));

        // A new store's first batch of plain appends: ids in order, and
        // our keyspaces are not made by it.
        let first = apply(
            &mut writer,
            vec![
                WriteOp::Append(Draft::new("a"), None),
                WriteOp::Append(Draft::new("b"), None),
            ],
        );
        let (a, b) = (frame(&first[0]).clone(), frame(&first[1]).clone());
        assert!(a.id < b.id);
        assert!(writer.local.ours_if_made().is_none());
        // Nor the topic index: a topic read finds its frame in the stream.
        let spaces = writer.local.keyspaces_if_made().unwrap().clone();
        assert!(spaces.index_if_made().is_none());
        assert_eq!(topic_ids(&writer.local, "b"), vec![b.id]);

        // One request refused on its own (another frame under that id)
        // leaves the rest of its batch stored; a k/v write makes ours.
        let mut other = a.clone();
        other.meta = Some(serde_json::json!({ "not": "the same" }));
        let second = apply(
            &mut writer,
            vec![
                WriteOp::Import(other, None),
                WriteOp::Append(Draft::new("c"), None),
                WriteOp::KvSet("k".into(), b"1".to_vec()),
            ],
        );
        assert!(
            matches!(second[0], Err(StoreError::Conflict(_))),
            "{second:?}"
        );
        let c = frame(&second[1]).clone();
        assert!(c.id > b.id);
        // The next batch made the index first, filing the first batch's
        // frames, then filed its own.
        assert!(spaces.index_if_made().is_some());
        assert_eq!(topic_ids(&writer.local, "a"), vec![a.id]);
        assert_eq!(topic_ids(&writer.local, "c"), vec![c.id]);
        assert!(matches!(second[2], Ok(WriteOutcome::Done)));
        assert!(writer.local.ours_if_made().is_some());

        // A batch that fails at its commit (no room on the disk, as far
        // as the reserve knows): every request gets the error, and the
        // ids its appends were given are handed out again.
        writer.local.space.set_unflushed(1 << 50);
        let failed = apply(
            &mut writer,
            vec![
                WriteOp::Append(Draft::new("d"), None),
                WriteOp::Append(Draft::new("e"), None),
            ],
        );
        assert!(
            failed
                .iter()
                .all(|r| matches!(r, Err(StoreError::NoSpace(_)))),
            "{failed:?}"
        );
        assert_eq!(writer.last_id, Some(c.id));
        writer.local.space.set_unflushed(0);
        let after = apply(&mut writer, vec![WriteOp::Append(Draft::new("f"), None)]);
        assert!(frame(&after[0]).id > c.id);
    }

    #[test]
    fn a_new_index_is_marked_even_when_the_first_batch_stored_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let mut writer = writer(&tmp.path().join("store"));
        writer.local.prepare().unwrap();
        // The first batch fails (no room, as far as the reserve knows).
        writer.local.space.set_unflushed(1 << 50);
        let failed = apply(
            &mut writer,
            vec![WriteOp::Append(Draft::new("order.ready"), None)],
        );
        assert!(
            matches!(failed[0], Err(StoreError::NoSpace(_))),
            "{failed:?}"
        );
        writer.local.space.set_unflushed(0);
        let spaces = writer.local.keyspaces_if_made().unwrap().clone();
        let index = spaces.index().unwrap();
        assert_eq!(
            crate::store::local::schema::read(index).unwrap(),
            Some(crate::store::local::schema::SCHEMA_VERSION)
        );
        // A topic newer cross.stream's migration would rename is ours.
        let stored = apply(
            &mut writer,
            vec![WriteOp::Append(Draft::new("order.ready"), None)],
        );
        assert_eq!(
            topic_ids(&writer.local, "order.ready"),
            vec![frame(&stored[0]).id]
        );
    }

    #[test]
    fn a_crash_before_the_index_is_made_is_mended_at_the_next_open() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let started = {
            let mut writer = writer(&dir);
            writer.local.prepare().unwrap();
            let first = apply(
                &mut writer,
                vec![WriteOp::Append(Draft::new("xs.start"), None)],
            );
            writer.sync_journal();
            frame(&first[0]).clone()
            // Dropped here, before `make_the_rest`: as a crash would.
        };
        let local = Local::open(&dir).unwrap();
        let spaces = local.keyspaces_if_made().unwrap();
        assert!(spaces.index_if_made().is_some());
        assert_eq!(topic_ids(&local, "xs.start"), vec![started.id]);
        assert_eq!(topic_ids(&local, "xs.*"), vec![started.id]);
        let index = spaces.index().unwrap();
        assert_eq!(
            crate::store::local::schema::read(index).unwrap(),
            Some(crate::store::local::schema::SCHEMA_VERSION)
        );
    }

    #[test]
    fn idempotency_keys_are_decided_in_the_batch_capped_and_swept_after_the_window() {
        let tmp = tempfile::tempdir().unwrap();
        let window = std::time::Duration::from_millis(100);
        let mut writer = writer(&tmp.path().join("store")).with_dedup_window(Some(window));
        writer.dedup_max_keys = 3;
        let keyed =
            |key: &str| WriteOp::Append(Draft::new("t").idempotency_key(Some(key.into())), None);
        let kept = |writer: &Writer| {
            let ours = writer.local.ours_if_made().unwrap();
            (
                ours.dedup.prefix(b"t").count(),
                ours.dedup.prefix(b"k").count(),
            )
        };
        // One key twice in one batch: one frame, the second answered with it.
        let replies = apply(&mut writer, vec![keyed("a"), keyed("a"), keyed("b")]);
        let a = frame(&replies[0]).clone();
        assert!(
            matches!(&replies[1], Ok(WriteOutcome::Duplicate(f)) if *f == a),
            "{replies:?}"
        );
        assert_eq!(kept(&writer), (2, 2));
        // Beyond the cap, the oldest key goes first.
        apply(&mut writer, vec![keyed("c"), keyed("d")]);
        assert_eq!(kept(&writer), (3, 3));
        let again = apply(&mut writer, vec![keyed("a"), keyed("d")]);
        assert!(matches!(again[0], Ok(WriteOutcome::Frame(_))), "{again:?}");
        assert!(
            matches!(again[1], Ok(WriteOutcome::Duplicate(_))),
            "{again:?}"
        );
        assert_eq!(kept(&writer), (3, 3));
        // Once the window has passed, a sweep leaves none.
        std::thread::sleep(window + std::time::Duration::from_millis(20));
        apply(&mut writer, vec![WriteOp::ForgetOldKeys]);
        assert_eq!(kept(&writer), (0, 0));
        assert_eq!(writer.dedup_keys, Some(0));
    }

    #[test]
    fn an_expected_last_counts_what_the_same_batch_staged_before_it() {
        use crate::store::write::ExpectLast;
        let tmp = tempfile::tempdir().unwrap();
        let mut writer = writer(&tmp.path().join("store"));
        let expecting =
            |expect: ExpectLast| WriteOp::Append(Draft::new("t").expect_last(Some(expect)), None);
        let replies = apply(
            &mut writer,
            vec![expecting(ExpectLast::Empty), expecting(ExpectLast::Empty)],
        );
        let first = frame(&replies[0]).clone();
        assert!(
            matches!(&replies[1], Err(StoreError::NotLast { last, .. }) if *last == Some(first.id)),
            "{replies:?}"
        );
        // A removal staged before it in the batch: the topic is empty again.
        let replies = apply(
            &mut writer,
            vec![WriteOp::Remove(first.id), expecting(ExpectLast::Empty)],
        );
        let second = frame(&replies[1]).clone();
        let replies = apply(&mut writer, vec![expecting(ExpectLast::Id(second.id))]);
        frame(&replies[0]);
    }

    #[test]
    fn a_conditional_removal_counts_what_its_batch_removed_before_it() {
        let tmp = tempfile::tempdir().unwrap();
        let mut writer = writer(&tmp.path().join("store"));
        let appended = apply(
            &mut writer,
            ["log", "log", "log", "other"]
                .iter()
                .map(|topic| WriteOp::Append(Draft::new(*topic), None))
                .collect(),
        );
        let ids: Vec<_> = appended.iter().map(|reply| frame(reply).id).collect();
        let unless_removed = |seen: u64, id| WriteOp::RemoveIfUnchanged {
            index: "t:log".into(),
            ids: vec![id],
            seen,
        };
        // A removal under the index earlier in the same batch: refused,
        // nothing removed by it.
        let replies = apply(
            &mut writer,
            vec![WriteOp::Remove(ids[0]), unless_removed(0, ids[1])],
        );
        assert!(
            matches!(replies[1], Ok(WriteOutcome::Removed(None))),
            "{replies:?}"
        );
        assert_eq!(topic_ids(&writer.local, "log"), vec![ids[1], ids[2]]);
        // Counted from the committed removal on; one under another topic
        // does not count.
        let replies = apply(
            &mut writer,
            vec![WriteOp::Remove(ids[3]), unless_removed(1, ids[1])],
        );
        assert!(
            matches!(replies[1], Ok(WriteOutcome::Removed(Some(1)))),
            "{replies:?}"
        );
        assert_eq!(topic_ids(&writer.local, "log"), vec![ids[2]]);
    }

    #[test]
    fn a_frame_removed_twice_in_one_batch_releases_its_payload_once() {
        let tmp = tempfile::tempdir().unwrap();
        let mut writer = writer(&tmp.path().join("store"));
        let hash = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
        let with_payload = || WriteOp::Append(Draft::new("t").hash(Some(hash.into())), None);
        let appended = apply(&mut writer, vec![with_payload(), with_payload()]);
        let first = frame(&appended[0]).id;
        assert_eq!(writer.local.refs(hash).unwrap(), 2);
        let replies = apply(
            &mut writer,
            vec![WriteOp::Remove(first), WriteOp::Remove(first)],
        );
        assert!(replies.iter().all(|r| r.is_ok()), "{replies:?}");
        // The other frame still holds it.
        assert_eq!(writer.local.refs(hash).unwrap(), 1);
    }
}
