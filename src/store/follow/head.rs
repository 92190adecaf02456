//! The head of the stream, and how followers learn that it moved.
//!
//! The writer publishes after every batch: the newest id and a version
//! number that only grows, under this lock alone, and wakes the followers
//! sleeping on its condvar. A follower remembers the version it last saw
//! and sleeps until the version changes; then it reads the store from its
//! last delivered id. Nothing is queued per follower, so a slow follower
//! costs no memory: it catches up from disk.
//!
//! What a batch leaves in memory (its ephemeral frames, which never reach
//! disk, and on the local backend its stored frames, so a follower close
//! behind reads them without opening a store scan) goes to the window
//! beside the head (`window.rs`, its own lock), before the batch is
//! announced here.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::window::Window;
pub use super::window::{EphemeralLimits, Published, TopicFrame};
use crate::store::id::Id;
use crate::store::RawFrame;

/// The wake-up state: what followers wait on.
#[derive(Debug, Default)]
struct HeadState {
    /// The newest id committed (appended, imported or ephemeral).
    last_id: Option<Id>,
    /// Bumped on every publish; followers wait for it to change.
    version: u64,
    /// Bumped on a publish that may hold a control frame (a topic
    /// `control_topic` names): the processor dispatcher waits for this one.
    control_version: u64,
    /// Set once the server shuts down: followers end their streams.
    closed: bool,
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

/// Shared by the writer (publishes) and every follower (waits).
#[derive(Debug)]
pub struct Head {
    state: Mutex<HeadState>,
    moved: Condvar,
    /// Waited on by `wait_control_past`: a batch of ordinary frames does
    /// not wake the dispatcher (a wake-up per append was 10% of the CPU).
    control_moved: Condvar,
    /// Ephemeral and recent frames, imported ids. Lock order: the window,
    /// then the head state (only `publish_batch` and `keep_recent` hold
    /// both).
    window: Window,
    limits: EphemeralLimits,
    /// Whether a topic wakes `wait_control_past` (`StoreOptions`).
    control_topic: fn(&str) -> bool,
    /// Readers alive (`Reader` counts itself in and out): shutdown lets
    /// them write their last frames before the process ends.
    readers: AtomicUsize,
}

/// What a follower sees when it looks at the head.
#[derive(Debug, Clone, Copy)]
pub struct HeadView {
    pub last_id: Option<Id>,
    pub version: u64,
    pub closed: bool,
}

impl Head {
    pub fn new(
        last_id: Option<Id>,
        limits: EphemeralLimits,
        control_topic: fn(&str) -> bool,
    ) -> Head {
        Head {
            state: Mutex::new(HeadState {
                last_id,
                ..HeadState::default()
            }),
            moved: Condvar::new(),
            control_moved: Condvar::new(),
            window: Window::new(limits),
            limits,
            control_topic,
            readers: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HeadState> {
        // A panicking holder cannot leave the state half-written in a way
        // that matters to readers, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn reader_started(&self) {
        self.readers.fetch_add(1, Ordering::Relaxed);
    }

    pub fn reader_ended(&self) {
        self.readers.fetch_sub(1, Ordering::Relaxed);
    }

    /// After `close`: waits (at most `limit`) until every reader is done.
    pub fn wait_readers_done(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.readers.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    pub fn view(&self) -> HeadView {
        self.lock().view()
    }

    /// Turns the window of recently stored frames on: from now on every
    /// frame stored is published with its batch (the local writer does).
    pub fn keep_recent(&self) {
        let mut window = self.window.lock();
        let last_id = self.lock().last_id;
        window.keep_recent(last_id);
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
        // Both locks, the window's first: the batch's frames are in the
        // window before a follower can see the head move, and concurrent
        // publishers (the Redis writer and watcher) take turns whole.
        let mut window = self.window.lock();
        let mut state = self.lock();
        // Without the window (Redis) the frames of other nodes are not
        // seen here: any batch may hold a control frame.
        let control = !window.keeps_recent()
            || batch
                .stored
                .iter()
                .chain(&batch.ephemeral)
                .any(|f| (self.control_topic)(&f.topic));
        let last_id = batch.last_id;
        window.take(batch, state.last_id, &self.limits);
        drop(window);
        if last_id > state.last_id {
            state.last_id = last_id;
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
        self.window.recent_between(after, upto, limit, keep)
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
        self.window.ephemeral_between(after, upto, keep)
    }

    /// Whether a live reader should skip this id (an import, not news).
    pub fn is_imported_ahead(&self, id: Id) -> bool {
        self.window.is_imported_ahead(id)
    }

    /// Keeps an ephemeral payload in memory, evicting the oldest beyond
    /// the byte bound. A payload larger than the whole bound is not kept.
    pub fn keep_ephemeral_payload(&self, hash: String, bytes: Vec<u8>) {
        self.window.keep_ephemeral_payload(hash, bytes);
    }

    /// An ephemeral payload still in the window.
    pub fn ephemeral_payload(&self, hash: &str) -> Option<Vec<u8>> {
        self.window.ephemeral_payload(hash)
    }
}

#[cfg(test)]
mod tests {
    use super::super::window::{IMPORTED_AHEAD_MAX, RECENT_MAX_FRAMES};
    use super::*;

    /// A rule like the processors' (`StoreOptions::control_topic`).
    fn control(topic: &str) -> bool {
        topic.starts_with("xs.") || topic.ends_with(".call")
    }

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
        let head = Head::new(None, EphemeralLimits::default(), control);
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
        let head = Head::new(Some(Id::from_u128(5)), EphemeralLimits::default(), control);
        head.publish_batch(stored(&[6, 7]));
        assert!(head
            .recent_between(Some(Id::from_u128(5)), upto, 10, all)
            .is_none());

        let head = Head::new(Some(Id::from_u128(5)), EphemeralLimits::default(), control);
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
        let head = Head::new(None, EphemeralLimits::default(), control);
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
        let head = Head::new(None, EphemeralLimits::default(), control);
        head.publish_batch(stored(&[1]));
        assert_eq!(head.control_version(), 1);
    }

    #[test]
    fn imported_ids_ahead_of_the_head_are_kept_only_up_to_the_bound() {
        let head = Head::new(Some(Id::from_u128(10)), EphemeralLimits::default(), control);
        // Below the head: history already, not kept.
        head.publish(Some(Id::from_u128(10)), vec![], &[Id::from_u128(5)]);
        assert!(!head.is_imported_ahead(Id::from_u128(5)));
        // Ahead of it: the bound's worth in one import, then appends
        // (not imported: never skipped), then `over` more imported.
        let over = 10;
        let top = 11 + IMPORTED_AHEAD_MAX as u128;
        let first: Vec<Id> = (11..top).map(Id::from_u128).collect();
        head.publish(first.last().copied(), vec![], &first);
        head.publish(Some(Id::from_u128(top + over - 1)), vec![], &[]);
        let ahead: Vec<Id> = (top + over..top + 2 * over).map(Id::from_u128).collect();
        head.publish(ahead.last().copied(), vec![], &ahead);
        // Past the bound the lowest went.
        assert_eq!(head.window.lock().imported_ahead_len(), IMPORTED_AHEAD_MAX);
        assert!(!head.is_imported_ahead(Id::from_u128(11)));
        assert!(!head.is_imported_ahead(Id::from_u128(20)));
        assert!(head.is_imported_ahead(Id::from_u128(21)));
        assert!(head.is_imported_ahead(Id::from_u128(top + 2 * over - 1)));
        assert!(!head.is_imported_ahead(Id::from_u128(top)), "appended");
    }
}
