//! Payloads: stored before their frame is appended, pinned until it is,
//! read back by hash. Ephemeral payloads stay in memory; on the local
//! backend small ones are journaled with their frame and large ones synced
//! here; on Redis they are kept with the frame. A payload whose append is
//! refused, or that no stored frame references any more, is collected
//! (`collect_payload`) under the garbage collector's lock, never between
//! its write and its pin.

use std::io::Read;

use cacache::Integrity;

use super::local::cas::JOURNALED_PAYLOAD_MAX;
use super::{metrics, redis, Backend, FsyncPolicy, Store, StoreError, WriteOp};

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

impl Store {
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
            drop(self.submit(WriteOp::PayloadsSynced(vec![hash.as_bytes().to_vec()])));
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
