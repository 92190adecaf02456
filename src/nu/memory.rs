//! The memory cap of a script: a global allocator that knows which
//! script built each block.
//!
//! How it works. While a script runs, its thread holds a `Meter`: a budget
//! slot (live bytes, a generation) named in a thread-local. Every
//! allocation of alignment 16 or less carries a small header in front of
//! it (8 bytes, 16 for 16-aligned blocks) holding the tag of the budget
//! that made it, or 0. A free, on whatever thread it happens, credits the
//! tagged budget if the slot still has that generation (on the script's
//! own thread, the common case, a plain thread-local count: no atomic
//! operation on the hot path). So a budget is the
//! bytes a script made and that are still alive anywhere: a frame it
//! appended, freed later by the store's writer thread, stops counting
//! then. (A count per thread alone would only ever grow for a service that
//! hands its output to the writer, and would stop it one day for nothing.)
//!
//! A script that allocates past its cap does not get a failed allocation:
//! in Rust that aborts the whole process. The allocation succeeds, and the
//! script's interrupt flag is set (again at each later allocation, since a
//! `try` in the script clears it), so Nushell stops it at its next check —
//! every loop turn and command call. A script can therefore overshoot its
//! cap by what one step builds (one string concatenation: at most twice
//! its largest value), and then everything it built is dropped.
//!
//! The meter also keeps an interruption in force: once the script's
//! stop reason is set (timeout, client gone), every allocation sets its
//! flag again, so a script that catches the interruption (`loop { try
//! { … } catch { } }`, where the catch clears the flag and builds an
//! error value) is stopped at its next check after all.
//!
//! A reallocation keeps its block's tag and charges the growth to it; a
//! block with no live tag that a script grows becomes that script's.
//! Blocks aligned to more than 16 bytes (never Nushell values) carry no
//! header and are not counted. At most `SLOTS - 1` scripts are metered at
//! once; beyond that a script runs unmetered (and says so on stderr).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

/// Budget slots: slot 0 is "no script".
const SLOTS: usize = 4096;

struct Slot {
    /// Bumped when the slot's script ends, so its blocks stop counting.
    generation: AtomicU32,
    /// Live bytes tagged with this slot's current generation, as counted
    /// by other threads (frees, mostly); the script's own thread keeps
    /// its part in `LOCAL`.
    used: AtomicI64,
    /// Whether the script went over its cap.
    tripped: AtomicBool,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY_SLOT: Slot = Slot {
    generation: AtomicU32::new(0),
    used: AtomicI64::new(0),
    tripped: AtomicBool::new(false),
};

static SLOT_TABLE: [Slot; SLOTS] = [EMPTY_SLOT; SLOTS];

/// Slots never used yet start here; returned ones wait in `FREE`.
static NEXT_UNUSED: AtomicU32 = AtomicU32::new(1);
static FREE: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// The script metered on this thread, if any.
#[derive(Clone, Copy)]
struct Current {
    /// `slot << 32 | generation`, 0 for none.
    tag: u64,
    cap: i64,
    /// The script's interrupt flag and stop reason (kept alive by its
    /// `Meter`).
    flag: *const AtomicBool,
    reason: *const AtomicU8,
}

const NONE: Current = Current {
    tag: 0,
    cap: 0,
    flag: std::ptr::null(),
    reason: std::ptr::null(),
};

thread_local! {
    // A const-initialised Cell with no destructor: reading it never
    // allocates, so the allocator may use it.
    static CURRENT: Cell<Current> = const { Cell::new(NONE) };
    // The metered script's own count of its live bytes.
    static LOCAL: Cell<i64> = const { Cell::new(0) };
}

fn current() -> Current {
    CURRENT.try_with(Cell::get).unwrap_or(NONE)
}

/// The header in front of a block of this alignment, if it has one.
fn header(align: usize) -> Option<usize> {
    match align {
        0..=8 => Some(8),
        16 => Some(16),
        _ => None,
    }
}

/// The layout asked of the system for a block with a header.
fn outer(size: usize, align: usize, header: usize) -> Option<Layout> {
    Layout::from_size_align(size.checked_add(header)?, align.max(header)).ok()
}

fn slot_of(tag: u64) -> Option<&'static Slot> {
    let index = (tag >> 32) as usize;
    if index == 0 {
        return None;
    }
    let slot = SLOT_TABLE.get(index)?;
    (slot.generation.load(Ordering::Relaxed) == tag as u32).then_some(slot)
}

/// Adds `bytes` (negative for a free) to the budget `tag` (not 0). On
/// the script's own thread a growth past the cap stops the script.
fn charge(tag: u64, bytes: i64, now: Current) {
    if tag != now.tag {
        if let Some(slot) = slot_of(tag) {
            slot.used.fetch_add(bytes, Ordering::Relaxed);
        }
        return;
    }
    let local = LOCAL
        .try_with(|local| {
            local.set(local.get() + bytes);
            local.get()
        })
        .unwrap_or(0);
    if bytes <= 0 {
        return;
    }
    // The meter of this thread is alive: its slot is ours.
    let slot = &SLOT_TABLE[(tag >> 32) as usize];
    let used = local + slot.used.load(Ordering::Relaxed);
    // SAFETY: the flag and the reason outlive the Meter that put them in
    // `CURRENT`, and `now` is this thread's.
    unsafe {
        if now.cap > 0 && used > now.cap {
            slot.tripped.store(true, Ordering::Relaxed);
            (*now.flag).store(true, Ordering::Relaxed);
        } else if (*now.reason).load(Ordering::Relaxed) != 0 {
            (*now.flag).store(true, Ordering::Relaxed);
        }
    }
}

/// The system allocator with a budget tag in front of each block.
pub struct Metered;

// SAFETY: every block handed out is `header` bytes into a block of the
// system allocator laid out by `outer`, and freed/reallocated with the
// same computation; the alignment stays that of the caller's layout.
unsafe impl GlobalAlloc for Metered {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.alloc_with(layout, false)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.alloc_with(layout, true)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let Some(h) = header(layout.align()) else {
            return System.dealloc(ptr, layout);
        };
        let base = ptr.sub(h);
        let tag = (ptr.sub(8) as *const u64).read();
        if tag != 0 {
            charge(tag, -(layout.size() as i64), current());
        }
        // The layout was valid when the block was made.
        if let Some(full) = outer(layout.size(), layout.align(), h) {
            System.dealloc(base, full);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Some(h) = header(layout.align()) else {
            return System.realloc(ptr, layout, new_size);
        };
        let (Some(full), Some(_)) = (
            outer(layout.size(), layout.align(), h),
            outer(new_size, layout.align(), h),
        ) else {
            return std::ptr::null_mut();
        };
        let base = System.realloc(ptr.sub(h), full, new_size + h);
        if base.is_null() {
            return base;
        }
        let ptr = base.add(h);
        let tag_at = ptr.sub(8) as *mut u64;
        let tag = tag_at.read();
        let now = current();
        if slot_of(tag).is_some() {
            charge(tag, new_size as i64 - layout.size() as i64, now);
        } else if now.tag != 0 {
            // A block the script grows is the script's.
            tag_at.write(now.tag);
            charge(now.tag, new_size as i64, now);
        }
        ptr
    }
}

impl Metered {
    unsafe fn alloc_with(&self, layout: Layout, zeroed: bool) -> *mut u8 {
        let Some(h) = header(layout.align()) else {
            return if zeroed {
                System.alloc_zeroed(layout)
            } else {
                System.alloc(layout)
            };
        };
        let Some(full) = outer(layout.size(), layout.align(), h) else {
            return std::ptr::null_mut();
        };
        let base = if zeroed {
            System.alloc_zeroed(full)
        } else {
            System.alloc(full)
        };
        if base.is_null() {
            return base;
        }
        let ptr = base.add(h);
        let now = current();
        (ptr.sub(8) as *mut u64).write(now.tag);
        if now.tag != 0 {
            charge(now.tag, layout.size() as i64, now);
        }
        ptr
    }
}

#[global_allocator]
static GLOBAL: Metered = Metered;

/// Whether the script metered on this thread has gone over its cap: for
/// Rust code that builds a large value from a script's (JSON of a
/// binary), which no Nushell check interrupts, to stop early.
pub fn over_cap() -> bool {
    let now = current();
    now.tag != 0 && slot_of(now.tag).is_some_and(|slot| slot.tripped.load(Ordering::Relaxed))
}

/// How many more bytes the script metered on this thread may build
/// before its cap; `None` when no cap applies here.
pub fn headroom() -> Option<u64> {
    let now = current();
    if now.tag == 0 || now.cap <= 0 {
        return None;
    }
    let slot = slot_of(now.tag)?;
    let used = LOCAL.try_with(Cell::get).unwrap_or(0) + slot.used.load(Ordering::Relaxed);
    Some(u64::try_from(now.cap.saturating_sub(used)).unwrap_or(0))
}

/// A script's budget on this thread, from `start` until dropped.
pub struct Meter {
    slot: u32,
    previous: Current,
    previous_local: i64,
    /// Keep what `CURRENT` points at alive.
    _flag: Arc<AtomicBool>,
    _reason: Arc<AtomicU8>,
    /// A meter belongs to the thread that started it.
    _thread: PhantomData<*const ()>,
}

impl Meter {
    /// Meters what this thread allocates from now on against `cap` bytes
    /// (0: counted, never stopped); over it, `flag` is set, and so it is
    /// at every allocation once `reason` is not 0.
    pub fn start(cap: u64, flag: Arc<AtomicBool>, reason: Arc<AtomicU8>) -> Meter {
        let previous = current();
        let slot = take_slot();
        // Nothing allocates from here until `CURRENT` names the new meter.
        let previous_local = LOCAL.try_with(|local| local.replace(0)).unwrap_or(0);
        if let Some(slot) = slot {
            let entry = &SLOT_TABLE[slot as usize];
            entry.used.store(0, Ordering::Relaxed);
            entry.tripped.store(false, Ordering::Relaxed);
            let generation = entry.generation.load(Ordering::Relaxed);
            let now = Current {
                tag: (slot as u64) << 32 | generation as u64,
                cap: i64::try_from(cap).unwrap_or(i64::MAX),
                flag: Arc::as_ptr(&flag),
                reason: Arc::as_ptr(&reason),
            };
            let _ = CURRENT.try_with(|c| c.set(now));
        } else {
            let _ = CURRENT.try_with(|c| c.set(NONE));
            eprintln!("xs: too many scripts at once: this one runs without a memory cap");
        }
        Meter {
            slot: slot.unwrap_or(0),
            previous,
            previous_local,
            _flag: flag,
            _reason: reason,
            _thread: PhantomData,
        }
    }

    /// Whether the script went over its cap.
    pub fn tripped(&self) -> bool {
        self.slot != 0
            && SLOT_TABLE[self.slot as usize]
                .tripped
                .load(Ordering::Relaxed)
    }

    /// The live bytes the script has made.
    #[cfg(test)]
    pub fn used(&self) -> i64 {
        if self.slot == 0 {
            return 0;
        }
        let local = LOCAL.try_with(Cell::get).unwrap_or(0);
        local + SLOT_TABLE[self.slot as usize].used.load(Ordering::Relaxed)
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        let _ = CURRENT.try_with(|c| c.set(self.previous));
        let _ = LOCAL.try_with(|local| local.set(self.previous_local));
        if self.slot == 0 {
            return;
        }
        let entry = &SLOT_TABLE[self.slot as usize];
        // Its blocks still alive stop counting; the next script starts a
        // new generation. Generation 0 is skipped on wrap-around only by
        // chance, which at worst credits a few stale bytes.
        let next = entry.generation.load(Ordering::Relaxed).wrapping_add(1);
        entry.generation.store(next, Ordering::Relaxed);
        entry.used.store(0, Ordering::Relaxed);
        FREE.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(self.slot);
    }
}

fn take_slot() -> Option<u32> {
    if let Some(slot) = FREE.lock().unwrap_or_else(|e| e.into_inner()).pop() {
        return Some(slot);
    }
    let slot = NEXT_UNUSED.fetch_add(1, Ordering::Relaxed);
    if (slot as usize) < SLOTS {
        Some(slot)
    } else {
        NEXT_UNUSED.store(SLOTS as u32, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_live_bytes_and_credits_frees_on_other_threads() {
        let flag = Arc::new(AtomicBool::new(false));
        let meter = Meter::start(1 << 20, flag.clone(), Default::default());
        let kept = vec![0u8; 100_000];
        let before = meter.used();
        assert!(before >= 100_000, "{before}");
        // Freed by another thread: the budget is credited.
        std::thread::spawn(move || drop(kept)).join().unwrap();
        assert!(meter.used() < before - 90_000, "{}", meter.used());
        assert!(!meter.tripped());
        assert!(!flag.load(Ordering::Relaxed));
    }

    #[test]
    fn going_over_the_cap_sets_the_flag() {
        let flag = Arc::new(AtomicBool::new(false));
        let meter = Meter::start(1 << 20, flag.clone(), Default::default());
        let mut s = String::from("x");
        while s.len() < 4 << 20 {
            s = s.clone() + &s;
        }
        assert!(meter.tripped());
        assert!(flag.load(Ordering::Relaxed));
        drop(s);
        drop(meter);
        // Unmetered again: nothing is charged to the old slot.
        let flag2 = Arc::new(AtomicBool::new(false));
        let other = Meter::start(1 << 30, flag2, Default::default());
        assert!(!other.tripped());
    }

    #[test]
    fn growth_of_a_block_is_charged() {
        let flag = Arc::new(AtomicBool::new(false));
        let meter = Meter::start(0, flag.clone(), Default::default());
        let mut v: Vec<u8> = Vec::with_capacity(16);
        let start = meter.used();
        v.reserve_exact(1_000_000);
        assert!(meter.used() - start >= 999_000);
        drop(v);
        assert!(meter.used() - start < 1_000);
        assert!(!flag.load(Ordering::Relaxed));
    }
}
