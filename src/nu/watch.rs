//! The watchdog: one thread for every running script that has a deadline
//! or a client to watch.
//!
//! A script registers its interrupt, its deadline (if any) and a probe
//! (if any: "has my client gone?"); the registration ends when its guard
//! drops. Every `TICK` the thread looks at each: past its deadline, or its
//! probe says the client left, the script is stopped with that reason.
//! A stopped script's flag is set again at every tick until it ends,
//! because a `try` in the script clears the flag when it catches the
//! interruption. The thread sleeps without ticking while nobody is
//! watched.

use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::engine::{Interrupt, StopReason};

/// How often deadlines and probes are looked at.
const TICK: Duration = Duration::from_millis(50);

/// "Has the client gone?", asked at each tick; must not block.
pub type Probe = Box<dyn FnMut() -> bool + Send>;

struct Entry {
    id: u64,
    interrupt: Interrupt,
    deadline: Option<Instant>,
    probe: Option<Probe>,
    stopped: bool,
}

struct Watchdog {
    entries: Mutex<(u64, Vec<Entry>)>,
    wake: Condvar,
}

fn watchdog() -> Option<&'static Watchdog> {
    static WATCHDOG: OnceLock<Option<&'static Watchdog>> = OnceLock::new();
    *WATCHDOG.get_or_init(|| {
        let dog: &'static Watchdog = Box::leak(Box::new(Watchdog {
            entries: Mutex::new((0, Vec::new())),
            wake: Condvar::new(),
        }));
        match std::thread::Builder::new()
            .name("script watchdog".into())
            .spawn(move || dog.run())
        {
            Ok(_) => Some(dog),
            Err(e) => {
                eprintln!("xs: cannot start the script watchdog (no eval timeout): {e}");
                None
            }
        }
    })
}

impl Watchdog {
    fn run(&self) {
        let mut guard = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if guard.1.is_empty() {
                guard = self.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            let now = Instant::now();
            for entry in guard.1.iter_mut() {
                if entry.stopped {
                    entry.interrupt.renew();
                    continue;
                }
                let reason = if entry.deadline.is_some_and(|d| now >= d) {
                    Some(StopReason::Timeout)
                } else if entry.probe.as_mut().is_some_and(|gone| gone()) {
                    Some(StopReason::Disconnected)
                } else {
                    None
                };
                if let Some(reason) = reason {
                    entry.interrupt.stop(reason);
                    entry.stopped = true;
                }
            }
            guard = self
                .wake
                .wait_timeout(guard, TICK)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// A script being watched; dropping it ends the watch.
pub struct Watched {
    id: Option<u64>,
}

impl Watched {
    /// Watches a script: stopped at `deadline`, or when `probe` says its
    /// client has gone. With neither, nothing is registered.
    pub fn start(
        interrupt: &Interrupt,
        deadline: Option<Instant>,
        probe: Option<Probe>,
    ) -> Watched {
        if deadline.is_none() && probe.is_none() {
            return Watched { id: None };
        }
        let Some(dog) = watchdog() else {
            return Watched { id: None };
        };
        let mut guard = dog.entries.lock().unwrap_or_else(|e| e.into_inner());
        guard.0 += 1;
        let id = guard.0;
        // The thread waits untimed only while nobody is watched.
        let idle = guard.1.is_empty();
        guard.1.push(Entry {
            id,
            interrupt: interrupt.clone(),
            deadline,
            probe,
            stopped: false,
        });
        if idle {
            dog.wake.notify_one();
        }
        Watched { id: Some(id) }
    }

    /// Drops the deadline (the script keeps its probe).
    pub fn clear_deadline(&self) {
        self.edit(|entry| entry.deadline = None);
    }

    fn edit(&self, change: impl FnOnce(&mut Entry)) {
        let (Some(id), Some(dog)) = (self.id, watchdog()) else {
            return;
        };
        let mut guard = dog.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = guard.1.iter_mut().find(|e| e.id == id) {
            change(entry);
        }
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        let (Some(id), Some(dog)) = (self.id, watchdog()) else {
            return;
        };
        let removed = {
            let mut guard = dog.entries.lock().unwrap_or_else(|e| e.into_inner());
            let at = guard.1.iter().position(|e| e.id == id);
            at.map(|at| guard.1.swap_remove(at))
        };
        // The probe (and whatever it holds, a socket) is dropped here,
        // outside the lock.
        drop(removed);
    }
}
