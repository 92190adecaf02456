//! What the head keeps in memory beside its wake-up state: the window of
//! ephemeral frames and payloads (they never reach disk), the window of
//! recently stored frames, and the imported ids live readers skip.
//!
//! The writer fills it with each batch, before the batch is announced
//! (`Head::publish_batch` holds this lock, then the head's, so a follower
//! woken by a batch finds its frames here). Followers read it after each
//! wake-up under this lock alone: a long filter over the window does not
//! hold up a follower that only looks at the head, nor the writer's
//! announcement of the next batch once this batch is in.
//!
//! Every part is bounded: ephemeral frames and payloads by
//! `EphemeralLimits`, stored frames by `RECENT_MAX_*`, imported ids by
//! `IMPORTED_AHEAD_MAX` (the lowest go first: live readers pass the
//! lowest first).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use crate::store::id::Id;
use crate::store::RawFrame;

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

/// Bounds of the window of recently stored frames: enough for followers
/// a few batches behind; anyone further back reads the store.
pub(super) const RECENT_MAX_FRAMES: usize = 4096;
const RECENT_MAX_BYTES: usize = 4 * 1024 * 1024;

/// Imported ids kept for live readers to skip. A live reader only meets
/// an imported id while it is still behind it, and it passes the lowest
/// first, so beyond this many the lowest are dropped: an import of a
/// million frames ahead of the head costs ~2 MB here, not ~50 MB for the
/// server's lifetime. Only a live reader still behind more than this many
/// imported ids would see the dropped ones, as live frames.
pub(super) const IMPORTED_AHEAD_MAX: usize = 65_536;

#[derive(Debug, Default)]
pub(super) struct WindowState {
    /// Recent ephemeral frames, oldest first.
    ephemeral_frames: VecDeque<TopicFrame>,
    ephemeral_frame_bytes: usize,
    /// Recent ephemeral payloads by hash, with their arrival order.
    ephemeral_payloads: HashMap<String, Vec<u8>>,
    ephemeral_payload_order: VecDeque<String>,
    ephemeral_payload_bytes: usize,
    /// Imported ids that lay above what followers had seen: history, not
    /// news, so live readers skip them. At most `IMPORTED_AHEAD_MAX`.
    imported_ahead: BTreeSet<Id>,
    /// Stored frames of the latest batches, in id order.
    recent: VecDeque<TopicFrame>,
    recent_bytes: usize,
    /// `recent` holds every frame stored with an id above this one (zero:
    /// since the first). `None` while the window is off: on the Redis
    /// backend other nodes store frames this node never sees in memory.
    recent_covers_after: Option<Id>,
}

/// The window, under its own lock.
#[derive(Debug)]
pub(super) struct Window {
    state: Mutex<WindowState>,
    limits: EphemeralLimits,
}

impl Window {
    pub(super) fn new(limits: EphemeralLimits) -> Window {
        Window {
            state: Mutex::new(WindowState::default()),
            limits,
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, WindowState> {
        // A panicking holder cannot leave the window half-written in a
        // way that matters to readers, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stored frames with `after < id <= upto` whose topic passes `keep`,
    /// at most `limit`, when the window of recent frames holds all of
    /// them; `None` when the store must be read instead.
    pub(super) fn recent_between(
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

    /// Ephemeral frames with `after < id <= upto` whose topic passes `keep`.
    pub(super) fn ephemeral_between(
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
    pub(super) fn is_imported_ahead(&self, id: Id) -> bool {
        let state = self.lock();
        !state.imported_ahead.is_empty() && state.imported_ahead.contains(&id)
    }

    /// Keeps an ephemeral payload in memory, evicting the oldest beyond
    /// the byte bound. A payload larger than the whole bound is not kept.
    pub(super) fn keep_ephemeral_payload(&self, hash: String, bytes: Vec<u8>) {
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
    pub(super) fn ephemeral_payload(&self, hash: &str) -> Option<Vec<u8>> {
        self.lock().ephemeral_payloads.get(hash).cloned()
    }
}

impl WindowState {
    /// Whether the window of recent frames is on (the local backend).
    pub(super) fn keeps_recent(&self) -> bool {
        self.recent_covers_after.is_some()
    }

    /// Turns the window of recent frames on, holding every frame stored
    /// after `last_id`.
    pub(super) fn keep_recent(&mut self, last_id: Option<Id>) {
        self.recent_covers_after = Some(last_id.unwrap_or(Id::from_u128(0)));
    }

    /// Takes in a committed batch. `head` is the newest id followers
    /// could have seen before it.
    pub(super) fn take(&mut self, batch: Published, head: Option<Id>, limits: &EphemeralLimits) {
        let Published {
            last_id,
            ephemeral,
            stored,
            imported,
            removed,
        } = batch;
        self.remember_recent(last_id, stored, &imported, &removed);
        for id in imported {
            if head.is_none_or(|last| id > last) {
                self.imported_ahead.insert(id);
            }
        }
        while self.imported_ahead.len() > IMPORTED_AHEAD_MAX {
            self.imported_ahead.pop_first();
        }
        for frame in ephemeral {
            // Kept in id order (followers binary-search it): a frame from
            // another node may arrive after a newer one of ours. One kept
            // already (the Redis backend's writer and watcher may both
            // bring this node's own) is not kept twice.
            let bytes = frame.frame.json.len();
            let frames = &mut self.ephemeral_frames;
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
            self.ephemeral_frame_bytes += bytes;
        }
        while self.ephemeral_frames.len() > limits.max_frames
            || self.ephemeral_frame_bytes > limits.max_bytes
        {
            match self.ephemeral_frames.pop_front() {
                Some(old) => self.ephemeral_frame_bytes -= old.frame.json.len(),
                None => break,
            }
        }
    }

    fn remember_recent(
        &mut self,
        last_id: Option<Id>,
        stored: Vec<TopicFrame>,
        imported: &[Id],
        removed: &[Id],
    ) {
        if self.recent_covers_after.is_none() {
            return;
        }
        if !imported.is_empty() {
            // Imports land anywhere in the order: start the window afresh
            // after them rather than sort them in.
            self.recent.clear();
            self.recent_bytes = 0;
            self.recent_covers_after = Some(last_id.unwrap_or(Id::from_u128(0)));
            return;
        }
        for id in removed {
            let at = self.recent.partition_point(|f| f.frame.id < *id);
            if self.recent.get(at).is_some_and(|f| f.frame.id == *id) {
                if let Some(gone) = self.recent.remove(at) {
                    self.recent_bytes -= gone.frame.json.len();
                }
            }
        }
        for frame in stored {
            self.recent_bytes += frame.frame.json.len();
            self.recent.push_back(frame);
        }
        while self.recent.len() > RECENT_MAX_FRAMES || self.recent_bytes > RECENT_MAX_BYTES {
            let Some(old) = self.recent.pop_front() else {
                break;
            };
            self.recent_bytes -= old.frame.json.len();
            self.recent_covers_after = Some(old.frame.id);
        }
    }

    #[cfg(test)]
    pub(super) fn imported_ahead_len(&self) -> usize {
        self.imported_ahead.len()
    }
}
