//! The k/v store's change feed.
//!
//! Values live in the `kv` keyspace, written by the writer thread like
//! frames. After each batch the writer appends the batch's changes to this
//! in-memory log (bounded) and wakes watchers. A watcher remembers the
//! sequence number of the last change it saw; one that falls further
//! behind than the log re-reads the current value instead, so it can miss
//! intermediate values but never the latest.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Keys under this prefix hold views' states (`view.<name>`): the k/v
/// store's one reserved namespace.
const VIEW_KEY_PREFIX: &str = "view.";

/// The k/v key holding view `name`'s state.
pub fn view_key(name: &str) -> String {
    format!("{VIEW_KEY_PREFIX}{name}")
}

/// Why a client (HTTP, `xs kv`, `.kv` in a script) may not write `key`:
/// it belongs to a view, which alone writes it. `None` when it may.
pub fn reserved_key(key: &str) -> Option<String> {
    key.starts_with(VIEW_KEY_PREFIX)
        .then(|| format!("{key} belongs to a view: only the view writes it"))
}

/// Changes kept for watchers.
const LOG_LEN: usize = 10_000;

/// One change: the key and its new value (`None` when deleted).
#[derive(Debug, Clone, PartialEq)]
pub struct KvChange {
    pub seq: u64,
    pub key: String,
    pub value: Option<Vec<u8>>,
}

#[derive(Debug, Default)]
struct KvLog {
    /// The sequence number of the newest change (0: none yet).
    last_seq: u64,
    changes: VecDeque<KvChange>,
}

#[derive(Debug, Default)]
pub struct KvSignal {
    log: Mutex<KvLog>,
    changed: Condvar,
}

/// What a watcher gets when it asks for news.
#[derive(Debug)]
pub enum KvNews {
    /// The changes after the asked sequence number, oldest first.
    Changes(Vec<KvChange>),
    /// The watcher fell out of the log: re-read the value; resume from here.
    Lagged(u64),
}

impl KvSignal {
    fn lock(&self) -> MutexGuard<'_, KvLog> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a committed batch's changes and wakes watchers.
    pub fn publish(&self, changes: Vec<(String, Option<Vec<u8>>)>) {
        let mut log = self.lock();
        for (key, value) in changes {
            log.last_seq += 1;
            let seq = log.last_seq;
            log.changes.push_back(KvChange { seq, key, value });
            if log.changes.len() > LOG_LEN {
                log.changes.pop_front();
            }
        }
        drop(log);
        self.changed.notify_all();
    }

    /// The newest sequence number: a watcher starts from here.
    pub fn last_seq(&self) -> u64 {
        self.lock().last_seq
    }

    /// Waits up to `timeout` for changes after `seen`.
    pub fn wait_after(&self, seen: u64, timeout: Duration) -> KvNews {
        let log = self.lock();
        let (log, _) = self
            .changed
            .wait_timeout_while(log, timeout, |l| l.last_seq == seen)
            .unwrap_or_else(|e| e.into_inner());
        match log.changes.front() {
            Some(oldest) if oldest.seq > seen + 1 => KvNews::Lagged(log.last_seq),
            _ => KvNews::Changes(
                log.changes
                    .iter()
                    .filter(|c| c.seq > seen)
                    .cloned()
                    .collect(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_views_key_is_reserved_and_others_are_not() {
        assert!(reserved_key(&view_key("count")).is_some());
        assert_eq!(reserved_key("views.count"), None);
        assert_eq!(reserved_key("count.view."), None);
    }

    use super::*;

    #[test]
    fn watchers_see_every_change_in_order() {
        let signal = KvSignal::default();
        let start = signal.last_seq();
        signal.publish(vec![("a".into(), Some(b"1".to_vec()))]);
        signal.publish(vec![("a".into(), Some(b"2".to_vec())), ("a".into(), None)]);
        let KvNews::Changes(changes) = signal.wait_after(start, Duration::ZERO) else {
            panic!("lagged");
        };
        let values: Vec<_> = changes.iter().map(|c| c.value.clone()).collect();
        assert_eq!(values, vec![Some(b"1".to_vec()), Some(b"2".to_vec()), None]);
    }

    #[test]
    fn a_watcher_out_of_the_log_is_told_to_reread() {
        let signal = KvSignal::default();
        for n in 0..(LOG_LEN + 5) {
            signal.publish(vec![("k".into(), Some(n.to_string().into_bytes()))]);
        }
        assert!(matches!(
            signal.wait_after(0, Duration::ZERO),
            KvNews::Lagged(_)
        ));
    }
}
