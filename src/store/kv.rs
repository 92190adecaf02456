//! Waking k/v watchers: the writer bumps a version after every batch that
//! changed keys; a watcher re-reads its key when the version moves.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

#[derive(Debug, Default)]
pub struct KvSignal {
    version: Mutex<u64>,
    changed: Condvar,
}

impl KvSignal {
    pub fn publish(&self, _keys: &[String]) {
        let mut version = self.version.lock().unwrap_or_else(|e| e.into_inner());
        *version += 1;
        drop(version);
        self.changed.notify_all();
    }

    pub fn version(&self) -> u64 {
        *self.version.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until the version differs from `seen` or `timeout` passes.
    pub fn wait_past(&self, seen: u64, timeout: Duration) -> u64 {
        let version = self.version.lock().unwrap_or_else(|e| e.into_inner());
        let (version, _) = self
            .changed
            .wait_timeout_while(version, timeout, |v| *v == seen)
            .unwrap_or_else(|e| e.into_inner());
        *version
    }
}
