//! The free-space reserve every write of the local store keeps.
//!
//! fjall treats a failed journal write as fatal: the database is poisoned
//! and refuses every later write until it is reopened. So it must never
//! meet a full disk, and the store keeps `DISK_RESERVE_BYTES` free for it.
//! Every write claims its bytes here first, whoever makes it: the writer
//! for each batch, connection threads for payload files (small ones
//! before they are written, streamed ones before each chunk, or all at
//! once when the size is declared). A claim that would leave less than the
//! reserve is refused (`NoSpace`) before a byte is written. Writes
//! that only delete may use half the reserve (`claim_for_deletion`).
//!
//! The reserve grows with what fjall holds in memory and has yet to
//! write out (its write buffer, reported by the writer after each batch):
//! a flush of it to a segment file must find room too, or fjall's
//! background worker fails and poisons the database all the same.
//!
//! A claim is a guard (`Claim`): its bytes count as outstanding until
//! they are written (`Claim::written`, after which the file system's own
//! answer includes them) or the guard is dropped (a refused or aborted
//! write). Every fresh free-space answer has the outstanding bytes taken
//! off, so two uploads that each declared most of the free space cannot
//! both pass because the answer came between the first's claim and its
//! bytes.
//!
//! Asking the file system (`statvfs`) for every claim would cost a system
//! call per append; the last answer is kept with the bytes claimed since,
//! and asked again once those could have used up the margin, a second has
//! passed, or the answer was close to the reserve.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::store::StoreError;

/// Free space kept in reserve: no claim may leave less.
pub const DISK_RESERVE_BYTES: u64 = 4 * 1024 * 1024;

/// How long a free-space answer is trusted when far from the reserve.
const TRUSTED_FOR: Duration = Duration::from_secs(1);

/// Free space on the file system of one store folder.
#[derive(Debug)]
pub struct DiskSpace {
    dir: PathBuf,
    seen: Mutex<Seen>,
    /// Bytes the index holds in memory, to be written out by a flush.
    unflushed: AtomicU64,
    /// Bytes claimed by live `Claim`s and not yet written: no free-space
    /// answer includes them yet.
    outstanding: AtomicU64,
}

/// Room claimed for a write: counted as outstanding until its bytes are
/// `written` or it is dropped. Hold it across the write.
#[must_use = "a claim counts only while it is held across the write"]
#[derive(Debug)]
pub struct Claim<'a> {
    space: Option<&'a DiskSpace>,
    outstanding: u64,
}

impl Claim<'_> {
    /// A claim on nothing (a backend without a reserve).
    pub fn none() -> Claim<'static> {
        Claim {
            space: None,
            outstanding: 0,
        }
    }

    /// `bytes` of the claim are now on disk: the next free-space answer
    /// includes them, so they stop counting as outstanding.
    pub fn written(&mut self, bytes: u64) {
        let bytes = bytes.min(self.outstanding);
        self.outstanding -= bytes;
        if let Some(space) = self.space {
            space.outstanding.fetch_sub(bytes, Ordering::Relaxed);
        }
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let rest = self.outstanding;
        self.written(rest);
    }
}

/// The last free-space answer, when it came, and what was claimed since.
#[derive(Debug)]
struct Seen {
    free: u64,
    at: Option<Instant>,
    claimed: u64,
}

impl DiskSpace {
    /// The space of the file system holding `dir` (which must exist when
    /// the first claim is made).
    pub fn new(dir: &Path) -> DiskSpace {
        DiskSpace {
            dir: dir.to_path_buf(),
            seen: Mutex::new(Seen {
                free: 0,
                at: None,
                claimed: 0,
            }),
            unflushed: AtomicU64::new(0),
            outstanding: AtomicU64::new(0),
        }
    }

    /// Records how much the index has yet to flush to disk (fjall's write
    /// buffer): every claim keeps room for it besides the reserve.
    pub fn set_unflushed(&self, bytes: u64) {
        self.unflushed.store(bytes, Ordering::Relaxed);
    }

    /// Claims room for `bytes` more, for `what` (said in the refusal):
    /// refused when writing them would leave less than the reserve, counting
    /// what other claims still hold.
    pub fn claim(&self, bytes: u64, what: &str) -> Result<Claim<'_>, StoreError> {
        self.claim_above(bytes, what, DISK_RESERVE_BYTES)
    }

    /// Claims room for a write that only deletes (frames, k/v keys): it may
    /// go halfway into the reserve, since deleting is how space is made
    /// again, but no further, so that even a flood of deletions (each a
    /// tombstone in the journal) never leaves fjall without room.
    pub fn claim_for_deletion(&self, bytes: u64) -> Result<Claim<'_>, StoreError> {
        self.claim_above(bytes, "the deletion", DISK_RESERVE_BYTES / 2)
    }

    fn claim_above(&self, bytes: u64, what: &str, reserve: u64) -> Result<Claim<'_>, StoreError> {
        let reserve = reserve.saturating_add(self.unflushed.load(Ordering::Relaxed));
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let claimed = seen.claimed.saturating_add(bytes);
        let plenty = seen.free > claimed.saturating_mul(2) + reserve.saturating_mul(16);
        if !(plenty && seen.at.is_some_and(|at| at.elapsed() < TRUSTED_FOR)) {
            // Outstanding bytes are read before the file system: a claim
            // written in between is then counted twice, never not at all.
            // (New claims wait for this lock.)
            let outstanding = self.outstanding.load(Ordering::Relaxed);
            let free = free_bytes(&self.dir)?.saturating_sub(outstanding);
            *seen = Seen {
                free,
                at: Some(Instant::now()),
                claimed: 0,
            };
            if free < bytes.saturating_add(reserve) {
                let held = if outstanding > 0 {
                    format!(" ({outstanding} more claimed by writes under way)")
                } else {
                    String::new()
                };
                return Err(StoreError::NoSpace(format!(
                    "{free} bytes free in {}{held}, {what} needs {bytes} plus a reserve of {reserve}",
                    self.dir.display()
                )));
            }
        }
        seen.claimed = seen.claimed.saturating_add(bytes);
        self.outstanding.fetch_add(bytes, Ordering::Relaxed);
        Ok(Claim {
            space: Some(self),
            outstanding: bytes,
        })
    }
}

/// Bytes available to us on the file system holding `dir`.
pub fn free_bytes(dir: &Path) -> Result<u64, StoreError> {
    use std::os::unix::ffi::OsStrExt;
    if dir.as_os_str().as_bytes().contains(&0) {
        return Err(StoreError::BadInput("store path contains NUL".into()));
    }
    crate::sys::fs::free_bytes(dir).map_err(|e| StoreError::io("statvfs", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_past_the_reserve_is_refused_and_a_small_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let space = DiskSpace::new(dir.path());
        let free = free_bytes(dir.path()).unwrap();
        drop(space.claim(1, "a test").unwrap());
        let e = space.claim(free, "a huge payload").unwrap_err();
        assert!(matches!(e, StoreError::NoSpace(_)), "{e:?}");
        assert!(e.to_string().contains("a huge payload needs"), "{e}");
        // The refused bytes were not counted: a small claim still passes.
        let _small = space.claim(1, "a test").unwrap();
    }

    #[test]
    fn a_claim_not_yet_written_counts_across_a_fresh_free_space_answer() {
        let dir = tempfile::tempdir().unwrap();
        let space = DiskSpace::new(dir.path());
        // Each claim is most of the free space: far from "plenty", so
        // every claim asks the file system afresh.
        let big = free_bytes(dir.path()).unwrap() / 10 * 6;
        let first = space.claim(big, "the first upload").unwrap();
        // Claimed from another thread (another connection), while the
        // first has written nothing: the fresh answer still shows all the
        // space free, and must not be taken at its word.
        let refused = std::thread::scope(|s| {
            s.spawn(|| space.claim(big, "the second upload").map(|_| ()))
                .join()
                .unwrap()
        });
        let e = refused.unwrap_err();
        assert!(matches!(e, StoreError::NoSpace(_)), "{e:?}");
        assert!(e.to_string().contains("claimed by writes under way"), "{e}");
        // A refused or aborted upload gives its claim back.
        drop(first);
        let mut second = space.claim(big, "the second upload").unwrap();
        // Written bytes are the file system's to count: not outstanding.
        second.written(big);
        assert_eq!(space.outstanding.load(Ordering::Relaxed), 0);
        drop(second);
        assert_eq!(space.outstanding.load(Ordering::Relaxed), 0);
    }
}
