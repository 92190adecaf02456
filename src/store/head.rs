//! The head of the stream, and how followers learn that it moved.
//!
//! The writer publishes after every batch: the newest id, a version number
//! that only grows, and any ephemeral frames of the batch (they never reach
//! disk, so they are kept here, in a bounded window). A follower remembers
//! the version it last saw and sleeps on the condvar until the version
//! changes; then it reads the store from its last delivered id. Nothing is
//! queued per follower, so a slow follower costs no memory: it catches up
//! from disk.
//!
//! The local writer also leaves the stored frames of its latest batches
//! here (`recent`, bounded): a follower that is close behind reads them
//! from memory instead of opening a store scan on every wake-up. Opening
//! a fjall range (snapshot, version, memtable seek) for one new frame was
//! a third of the server's CPU per append with one client, spent by the
//! frame logger and the processor dispatcher, which follow every frame.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use super::id::Id;
use super::topic::is_control_topic;
use super::RawFrame;

/// Bounds of the in-memory window of ephemeral frames and payloads.
#[derive(Debug, Clone, Copy)]
pub struct EphemeralLimits {
    pub max_frames: usize,
    pub max_bytes: usize,
}

impl Default for EphemeralLimits {
    fn default() -> Self {
        EphemeralLimits {
            max_frames: 10_000,
            max_bytes: 64 * 1024 * 1024,
        }
    }
}

/// A frame kept in the head (ephemeral, or recently stored) as followers
/// filter it: its topic beside its id and JSON.
#[derive(Debug, Clone)]
pub struct TopicFrame {
    pub topic: String,
    pub frame: RawFrame,
}

#[derive(Debug, Default)]
struct HeadState {
    /// The newest id committed (appended, imported or ephemeral).
    last_id: Option<Id>,
    /// Bumped on every publish; followers wait for it to change.
    version: u64,
    /// Bumped on a publish that may hold a control frame (`xs.*`,
    /// `*.call`): the processor dispatcher waits for this one.
    control_version: u64,
    /// Set once the server shuts down: followers end their streams.
    closed: bool,
    /// Recent ephemeral frames, oldest first.
    ephemeral_frames: VecDeque<TopicFrame>,
    ephemeral_frame_bytes: usize,
    /// Recent ephemeral payloads by hash, with their arrival order.
    ephemeral_payloads: HashMap<String, Vec<u8>>,
    ephemeral_payload_order: VecDeque<String>,
    ephemeral_payload_bytes: usize,
    /// Imported ids that lie above what followers had seen: history, not
    /// news, so live readers skip them.
    imported_ahead: HashSet<Id>,
    /// Stored frames of the latest batches, in id order.
    recent: VecDeque<TopicFrame>,
    recent_bytes: usize,
    /// `recent` holds every frame stored with an id above this one (zero:
    /// since the first). `None` while the window is off: on the Redis
    /// backend other nodes store frames this node never sees in memory.
    recent_covers_after: Option<Id>,
}

impl HeadState {
    fn view(&self) -> HeadView {
        HeadView {
            last_id: self.last_id,
            version: self.version,
            closed: self.closed,
        }
    }
}

/// Bounds of the window of recently stored frames: enough for followers
/// a few batches behind; anyone further back reads the store.
const RECENT_MAX_FRAMES: usize = 4096;
const RECENT_MAX_BYTES: usize = 4 * 1024 * 1024;

/// What one committed batch changed, as the head publishes it.
#[derive(Debug, Default)]
pub struct Published {
    /// The newest id committed so far.
    pub last_id: Option<Id>,
    pub ephemeral: Vec<TopicFrame>,
    /// Frames stored by this batch's appends, in id order.
    pub stored: Vec<TopicFrame>,
    /// Ids imported by this batch.
    pub imported: Vec<Id>,
    /// Ids removed by this batch.
    pub removed: Vec<Id>,
}

/// Shared by the writer (publishes) and every follower (waits).
#[derive(Debug)]
pub struct Head {
    state: Mutex<HeadState>,
    moved: Condvar,
    /// Waited on by `wait_control_past`: a batch of ordinary frames does
    /// not wake the dispatcher (a wake-up per append was 10% of the CPU).
    control_moved: Condvar,
    limits: EphemeralLimits,
    /// Readers alive (`Reader` counts itself in and out): shutdown lets
    /// them write their last frames before the process ends.
    readers: std::sync::atomic::AtomicUsize,
}

/// What a follower sees when it looks at the head.
#[derive(Debug, Clone, Copy)]
pub struct HeadView {
    pub last_id: Option<Id>,
    pub version: u64,
    pub closed: bool,
}

impl Head {
    pub fn new(last_id: Option<Id>, limits: EphemeralLimits) -> Head {
        Head {
            state: Mutex::new(HeadState {
                last_id,
                ..HeadState::default()
            }),
            moved: Condvar::new(),
            control_moved: Condvar::new(),
            limits,
            readers: Default::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HeadState> {
        // A panicking holder cannot leave the state half-written in a way
        // that matters to readers, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn reader_started(&self) {
        self.readers
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn reader_ended(&self) {
        self.readers
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// After `close`: waits (at most `limit`) until every reader is done.
    pub fn wait_readers_done(&self, limit: Duration) {
        let deadline = std::time::Instant::now() + limit;
        while self.readers.load(std::sync::atomic::Ordering::Relaxed) > 0
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    pub fn view(&self) -> HeadView {
        self.lock().view()
    }

    /// Turns the window of recently stored frames on: from now on every
    /// frame stored is published with its batch (the local writer does).
    pub fn keep_recent(&self) {
        let mut state = self.lock();
        state.recent_covers_after = Some(state.last_id.unwrap_or(Id::from_u128(0)));
    }

    /// Publishes a committed batch and wakes every follower.
    pub fn publish(&self, last_id: Option<Id>, ephemeral: Vec<TopicFrame>, imported: &[Id]) {
        self.publish_batch(Published {
            last_id,
            ephemeral,
            imported: imported.to_vec(),
            ..Published::default()
        });
    }

    /// Publishes a committed batch, with what it stored, and wakes every
    /// follower.
    pub fn publish_batch(&self, batch: Published) {
        let Published {
            last_id,
            ephemeral,
            stored,
            imported,
            removed,
        } = batch;
        let mut state = self.lock();
        // Without the window (Redis) the frames of other nodes are not
        // seen here: any batch may hold a control frame.
        let control = state.recent_covers_after.is_none()
            || stored
                .iter()
                .chain(&ephemeral)
                .any(|f| is_control_topic(&f.topic));
        Self::remember_recent(&mut state, last_id, stored, &imported, &removed);
        for id in &imported {
            if state.last_id.is_none_or(|last| *id > last) {
                state.imported_ahead.insert(*id);
            }
        }
        if last_id > state.last_id {
            state.last_id = last_id;
        }
        for frame in ephemeral {
            // Kept in id order (followers binary-search it): a frame from
            // another node may arrive after a newer one of ours. One kept
            // already (the Redis backend's writer and watcher may both
            // bring this node's own) is not kept twice.
            let bytes = frame.frame.json.len();
            let frames = &mut state.ephemeral_frames;
            if frames
                .back()
                .is_none_or(|last| last.frame.id < frame.frame.id)
            {
                frames.push_back(frame);
            } else {
                let at = frames.partition_point(|e| e.frame.id < frame.frame.id);
                if frames.get(at).is_some_and(|e| e.frame.id == frame.frame.id) {
                    continue;
                }
                frames.insert(at, frame);
            }
            state.ephemeral_frame_bytes += bytes;
        }
        while state.ephemeral_frames.len() > self.limits.max_frames
            || state.ephemeral_frame_bytes > self.limits.max_bytes
        {
            match state.ephemeral_frames.pop_front() {
                Some(old) => state.ephemeral_frame_bytes -= old.frame.json.len(),
                None => break,
            }
        }
        state.version += 1;
        if control {
            state.control_version += 1;
        }
        drop(state);
        self.moved.notify_all();
        if control {
            self.control_moved.notify_all();
        }
    }

    fn remember_recent(
        state: &mut HeadState,
        last_id: Option<Id>,
        stored: Vec<TopicFrame>,
        imported: &[Id],
        removed: &[Id],
    ) {
        if state.recent_covers_after.is_none() {
            return;
        }
        if !imported.is_empty() {
            // Imports land anywhere in the order: start the window afresh
            // after them rather than sort them in.
            state.recent.clear();
            state.recent_bytes = 0;
            state.recent_covers_after = Some(last_id.unwrap_or(Id::from_u128(0)));
            return;
        }
        for id in removed {
            let at = state.recent.partition_point(|f| f.frame.id < *id);
            if state.recent.get(at).is_some_and(|f| f.frame.id == *id) {
                if let Some(gone) = state.recent.remove(at) {
                    state.recent_bytes -= gone.frame.json.len();
                }
            }
        }
        for frame in stored {
            state.recent_bytes += frame.frame.json.len();
            state.recent.push_back(frame);
        }
        while state.recent.len() > RECENT_MAX_FRAMES || state.recent_bytes > RECENT_MAX_BYTES {
            let Some(old) = state.recent.pop_front() else {
                break;
            };
            state.recent_bytes -= old.frame.json.len();
            state.recent_covers_after = Some(old.frame.id);
        }
    }

    /// Stored frames with `after < id <= upto` whose topic passes `keep`,
    /// at most `limit`, when the window of recent frames holds all of
    /// them; `None` when the store must be read instead.
    pub fn recent_between(
        &self,
        after: Option<Id>,
        upto: Id,
        limit: usize,
        keep: impl Fn(&str) -> bool,
    ) -> Option<Vec<RawFrame>> {
        let state = self.lock();
        let after = after.unwrap_or(Id::from_u128(0));
        if state
            .recent_covers_after
            .is_none_or(|covers| after < covers)
        {
            return None;
        }
        let frames = &state.recent;
        let from = frames.partition_point(|f| f.frame.id <= after);
        Some(
            frames
                .range(from..)
                .take_while(|f| f.frame.id <= upto)
                .filter(|f| keep(&f.topic))
                .take(limit)
                .map(|f| f.frame.clone())
                .collect(),
        )
    }

    /// Ends every follow stream (server shutdown).
    pub fn close(&self) {
        self.lock().closed = true;
        self.moved.notify_all();
        self.control_moved.notify_all();
    }

    /// The version of control publishes (see `control_version`).
    pub fn control_version(&self) -> u64 {
        self.lock().control_version
    }

    /// Waits until a publish that may hold a control frame, past `seen`,
    /// or `timeout`; returns the control version then.
    pub fn wait_control_past(&self, seen: u64, timeout: Duration) -> u64 {
        self.wait_on(&self.control_moved, timeout, |s| s.control_version == seen)
            .control_version
    }

    /// Waits until the version differs from `seen` or `timeout` passes.
    pub fn wait_past(&self, seen: u64, timeout: Duration) -> HeadView {
        self.wait_on(&self.moved, timeout, |s| s.version == seen)
            .view()
    }

    /// Sleeps on `condvar` while `unchanged` holds, the head is open and
    /// `timeout` has not passed.
    fn wait_on(
        &self,
        condvar: &Condvar,
        timeout: Duration,
        unchanged: impl Fn(&HeadState) -> bool,
    ) -> MutexGuard<'_, HeadState> {
        condvar
            .wait_timeout_while(self.lock(), timeout, |s| unchanged(s) && !s.closed)
            .unwrap_or_else(|e| e.into_inner())
            .0
    }

    /// Ephemeral frames with `after < id <= upto` whose topic passes `keep`.
    pub fn ephemeral_between(
        &self,
        after: Option<Id>,
        upto: Id,
        keep: impl Fn(&str) -> bool,
    ) -> Vec<RawFrame> {
        let state = self.lock();
        // The window is in id order: start at the first frame after
        // `after` rather than walking up to 10,000 frames on every wake-up.
        let frames = &state.ephemeral_frames;
        let from = match after {
            Some(after) => frames.partition_point(|e| e.frame.id <= after),
            None => 0,
        };
        frames
            .range(from..)
            .take_while(|e| e.frame.id <= upto)
            .filter(|e| keep(&e.topic))
            .map(|e| e.frame.clone())
            .collect()
    }

    /// Whether a live reader should skip this id (an import, not news).
    pub fn is_imported_ahead(&self, id: Id) -> bool {
        let state = self.lock();
        !state.imported_ahead.is_empty() && state.imported_ahead.contains(&id)
    }

    /// Keeps an ephemeral payload in memory, evicting the oldest beyond
    /// the byte bound. A payload larger than the whole bound is not kept.
    pub fn keep_ephemeral_payload(&self, hash: String, bytes: Vec<u8>) {
        if bytes.len() > self.limits.max_bytes {
            return;
        }
        let mut state = self.lock();
        if state.ephemeral_payloads.contains_key(&hash) {
            return;
        }
        state.ephemeral_payload_bytes += bytes.len();
        state.ephemeral_payload_order.push_back(hash.clone());
        state.ephemeral_payloads.insert(hash, bytes);
        while state.ephemeral_payload_bytes > self.limits.max_bytes
            || state.ephemeral_payload_order.len() > self.limits.max_frames
        {
            let Some(old) = state.ephemeral_payload_order.pop_front() else {
                break;
            };
            if let Some(bytes) = state.ephemeral_payloads.remove(&old) {
                state.ephemeral_payload_bytes -= bytes.len();
            }
        }
    }

    /// An ephemeral payload still in the window.
    pub fn ephemeral_payload(&self, hash: &str) -> Option<Vec<u8>> {
        self.lock().ephemeral_payloads.get(hash).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: u128, topic: &str) -> TopicFrame {
        TopicFrame {
            topic: topic.into(),
            frame: RawFrame {
                id: Id::from_u128(n),
                json: format!("{{\"n\":{n}}}").into_bytes(),
            },
        }
    }

    fn ids(frames: Vec<RawFrame>) -> Vec<u128> {
        frames.iter().map(|f| f.id.to_u128()).collect()
    }

    #[test]
    fn ephemeral_window_is_read_in_id_order_from_a_position() {
        let head = Head::new(None, EphemeralLimits::default());
        head.publish(None, vec![frame(10, "a"), frame(20, "b")], &[]);
        // A late frame from another node lands in its place; a repeat
        // is dropped.
        head.publish(
            None,
            vec![frame(30, "a"), frame(15, "a"), frame(20, "b")],
            &[],
        );
        let all = |_: &str| true;
        assert_eq!(
            ids(head.ephemeral_between(None, Id::from_u128(99), all)),
            [10, 15, 20, 30]
        );
        assert_eq!(
            ids(head.ephemeral_between(Some(Id::from_u128(10)), Id::from_u128(20), all)),
            [15, 20]
        );
        let only_a = |t: &str| t == "a";
        assert_eq!(
            ids(head.ephemeral_between(Some(Id::from_u128(12)), Id::from_u128(99), only_a)),
            [15, 30]
        );
        assert!(head
            .ephemeral_between(Some(Id::from_u128(30)), Id::from_u128(99), all)
            .is_empty());
    }

    fn stored(ids: &[u128]) -> Published {
        Published {
            last_id: ids.last().map(|n| Id::from_u128(*n)),
            stored: ids
                .iter()
                .map(|n| frame(*n, if n % 2 == 0 { "even" } else { "odd" }))
                .collect(),
            ..Published::default()
        }
    }

    #[test]
    fn recent_frames_are_served_only_where_the_window_holds_them_all() {
        let all = |_: &str| true;
        let upto = Id::from_u128(1_000_000);
        // Off (the Redis backend): always read the store.
        let head = Head::new(Some(Id::from_u128(5)), EphemeralLimits::default());
        head.publish_batch(stored(&[6, 7]));
        assert!(head
            .recent_between(Some(Id::from_u128(5)), upto, 10, all)
            .is_none());

        let head = Head::new(Some(Id::from_u128(5)), EphemeralLimits::default());
        head.keep_recent();
        head.publish_batch(stored(&[6, 7, 8]));
        // Behind the window's start: from the store.
        assert!(head
            .recent_between(Some(Id::from_u128(4)), upto, 10, all)
            .is_none());
        assert!(head.recent_between(None, upto, 10, all).is_none());
        let got = head.recent_between(Some(Id::from_u128(5)), upto, 10, all);
        assert_eq!(got.map(ids), Some(vec![6, 7, 8]));
        let got = head.recent_between(Some(Id::from_u128(6)), Id::from_u128(7), 10, all);
        assert_eq!(got.map(ids), Some(vec![7]));
        let got = head.recent_between(Some(Id::from_u128(5)), upto, 1, |t: &str| t == "even");
        assert_eq!(got.map(ids), Some(vec![6]));

        // A removed frame is gone from memory too.
        head.publish_batch(Published {
            last_id: Some(Id::from_u128(8)),
            removed: vec![Id::from_u128(7)],
            ..Published::default()
        });
        let got = head.recent_between(Some(Id::from_u128(5)), upto, 10, all);
        assert_eq!(got.map(ids), Some(vec![6, 8]));

        // Eviction moves the start up (6, 8 and 9 leave).
        let many: Vec<u128> = (9..10 + RECENT_MAX_FRAMES as u128).collect();
        head.publish_batch(stored(&many));
        assert!(head
            .recent_between(Some(Id::from_u128(8)), upto, 10, all)
            .is_none());
        let got = head.recent_between(Some(Id::from_u128(9)), upto, 2, all);
        assert_eq!(got.map(ids), Some(vec![10, 11]));

        // An import starts the window afresh after it.
        let last = 10 + RECENT_MAX_FRAMES as u128;
        head.publish_batch(Published {
            last_id: Some(Id::from_u128(last)),
            stored: vec![frame(last, "odd")],
            imported: vec![Id::from_u128(3)],
            ..Published::default()
        });
        assert!(head
            .recent_between(Some(Id::from_u128(9)), upto, 10, all)
            .is_none());
        let got = head.recent_between(Some(Id::from_u128(last)), upto, 10, all);
        assert_eq!(got.map(ids), Some(vec![]));
    }

    #[test]
    fn only_control_frames_move_the_control_version_when_the_window_is_on() {
        let head = Head::new(None, EphemeralLimits::default());
        head.keep_recent();
        let v0 = head.control_version();
        head.publish_batch(stored(&[1, 2]));
        assert_eq!(head.control_version(), v0, "ordinary frames");
        let wait = Duration::from_millis(5);
        assert_eq!(head.wait_control_past(v0, wait), v0, "timed out");
        head.publish_batch(Published {
            last_id: Some(Id::from_u128(3)),
            stored: vec![frame(3, "greet.call")],
            ..Published::default()
        });
        assert_eq!(head.wait_control_past(v0, wait), v0 + 1);
        head.publish(None, vec![frame(4, "xs.actor.a.spawn")], &[]);
        assert_eq!(
            head.control_version(),
            v0 + 2,
            "an ephemeral one counts too"
        );

        // Window off (Redis): any batch may hold one.
        let head = Head::new(None, EphemeralLimits::default());
        head.publish_batch(stored(&[1]));
        assert_eq!(head.control_version(), 1);
    }
}
