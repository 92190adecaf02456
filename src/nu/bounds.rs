//! What bounds a running script, so that no script can hurt the server:
//! a memory cap (`memory.rs`), a timeout and, for `/eval`, its client
//! (`watch.rs`). The server's limits are set once at start
//! (`xs serve --eval-timeout/--eval-memory`); each run of a script holds
//! a `Bounds` while it runs and asks it afterwards why it was stopped.
//!
//! Which bound applies where: `/eval` has all three, its timeout counting
//! until its answer starts (a streamed answer then runs while its client
//! stays); an action call and the evaluation of a processor's script have
//! the timeout and the cap; actors, services and views run for as long as
//! they are meant to and have only the cap.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::engine::{Engine, Interrupt, StopReason};
use super::memory::Meter;
use super::watch::{Probe, Watched};

/// The default `--eval-timeout`, in seconds.
pub const DEFAULT_TIMEOUT_SECS: u64 = 30;

/// The default `--eval-memory`, in bytes (512 MiB).
pub const DEFAULT_MEMORY: u64 = 512 << 20;

/// The server's script limits; 0 means none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub timeout_secs: u64,
    pub memory: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            timeout_secs: DEFAULT_TIMEOUT_SECS,
            memory: DEFAULT_MEMORY,
        }
    }
}

static TIMEOUT_SECS: AtomicU64 = AtomicU64::new(DEFAULT_TIMEOUT_SECS);
static MEMORY: AtomicU64 = AtomicU64::new(DEFAULT_MEMORY);

/// Sets the limits of every script started from now on.
pub fn set_limits(limits: Limits) {
    TIMEOUT_SECS.store(limits.timeout_secs, Ordering::Relaxed);
    MEMORY.store(limits.memory, Ordering::Relaxed);
}

pub fn limits() -> Limits {
    Limits {
        timeout_secs: TIMEOUT_SECS.load(Ordering::Relaxed),
        memory: MEMORY.load(Ordering::Relaxed),
    }
}

/// Whether a run gets the eval timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timed {
    Yes,
    No,
}

/// The bounds of one run of a script, on the thread that runs it.
pub struct Bounds {
    interrupt: Interrupt,
    meter: Meter,
    watched: Watched,
    limits: Limits,
}

impl Bounds {
    /// Bounds what `engine` runs on this thread from now on until the
    /// result is dropped.
    pub fn start(engine: &Engine, timed: Timed, probe: Option<Probe>) -> Bounds {
        let limits = limits();
        let interrupt = engine.interrupter().clone();
        let deadline = match (timed, limits.timeout_secs) {
            // A deadline past what the clock can hold is none.
            (Timed::Yes, secs) if secs > 0 => Instant::now().checked_add(Duration::from_secs(secs)),
            _ => None,
        };
        // Metered even without a cap: the meter also keeps a stop in force.
        let meter = Meter::start(
            limits.memory,
            interrupt.flag().clone(),
            interrupt.reason_code().clone(),
        );
        let watched = Watched::start(&interrupt, deadline, probe);
        Bounds {
            interrupt,
            meter,
            watched,
            limits,
        }
    }

    /// The answer has started: the timeout no longer applies.
    pub fn answering(&self) {
        self.watched.clear_deadline();
    }

    /// Why a bound stopped the script, if one did: the one-line error its
    /// client or its error frame gets. Once this is `Some`, the script's
    /// result (possibly a stream cut short) is not to be used.
    pub fn verdict(&self) -> Option<String> {
        if self.meter.tripped() {
            return Some(format!(
                "the script was stopped: it went over its memory cap of {} (--eval-memory)",
                bytes_text(self.limits.memory)
            ));
        }
        match self.interrupt.reason() {
            Some(StopReason::Timeout) => Some(format!(
                "the script was stopped: it ran longer than {}s (--eval-timeout)",
                self.limits.timeout_secs
            )),
            Some(StopReason::Disconnected) => {
                Some("the script was stopped: its client disconnected".to_string())
            }
            Some(StopReason::Stopped) | None => None,
        }
    }
}

/// `536870912` as "512 MiB"; sizes that are no whole MiB in bytes.
fn bytes_text(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{bytes} bytes")
    }
}
