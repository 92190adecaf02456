//! The process table behind `GET /ps` and `xs ps`: one entry per actor,
//! service, action (and view), updated by the processors themselves.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value as Json};

use super::lifecycle::Kind;
use crate::store::id::{now_ms, rfc3339_from_ms};

/// What a processor is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Running,
    Backoff,
    Stopped,
    Failed,
}

impl State {
    fn word(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Backoff => "backoff",
            State::Stopped => "stopped",
            State::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    state: State,
    pid: Option<u32>,
    since_ms: u64,
    restarts: u64,
    last_exit: Option<String>,
    last_error: Option<String>,
}

/// Shared by the dispatcher, the processors and the `/ps` route.
#[derive(Clone, Default)]
pub struct ProcessTable(Arc<Mutex<BTreeMap<(String, &'static str), Entry>>>);

impl ProcessTable {
    fn update(&self, kind: Kind, name: &str, change: impl FnOnce(&mut Entry)) {
        let mut table = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let entry = table
            .entry((name.to_string(), kind.word()))
            .or_insert_with(|| Entry {
                state: State::Running,
                pid: None,
                since_ms: now_ms(),
                restarts: 0,
                last_exit: None,
                last_error: None,
            });
        change(entry);
    }

    /// A new state (and the time it began).
    pub fn set_state(&self, kind: Kind, name: &str, state: State) {
        self.update(kind, name, |entry| {
            if entry.state != state {
                entry.since_ms = now_ms();
            }
            entry.state = state;
            if state != State::Running {
                entry.pid = None;
            }
        });
    }

    /// A run started (a restart unless it is the first since `registered`).
    pub fn started(&self, kind: Kind, name: &str, pid: Option<u32>, restart: bool) {
        self.update(kind, name, |entry| {
            entry.state = State::Running;
            entry.since_ms = now_ms();
            entry.pid = pid;
            if restart {
                entry.restarts += 1;
            }
        });
    }

    /// A (re)registration: a fresh entry.
    pub fn registered(&self, kind: Kind, name: &str) {
        let mut table = self.0.lock().unwrap_or_else(|e| e.into_inner());
        table.remove(&(name.to_string(), kind.word()));
        drop(table);
        self.update(kind, name, |_| {});
    }

    pub fn exited(&self, kind: Kind, name: &str, how: String) {
        self.update(kind, name, |entry| {
            entry.last_exit = Some(how);
            entry.pid = None;
        });
    }

    pub fn failed(&self, kind: Kind, name: &str, error: String) {
        self.update(kind, name, |entry| {
            entry.last_error = Some(error);
        });
    }

    /// How many processors are in each state (every state listed).
    pub fn count_by_state(&self) -> Vec<(&'static str, usize)> {
        let table = self.0.lock().unwrap_or_else(|e| e.into_inner());
        [
            State::Running,
            State::Backoff,
            State::Stopped,
            State::Failed,
        ]
        .iter()
        .map(|state| {
            let count = table.values().filter(|e| e.state == *state).count();
            (state.word(), count)
        })
        .collect()
    }

    /// One JSON object per entry, by name.
    pub fn rows(&self) -> Vec<Json> {
        let table = self.0.lock().unwrap_or_else(|e| e.into_inner());
        table
            .iter()
            .map(|((name, kind), entry)| {
                json!({
                    "name": name,
                    "kind": kind,
                    "state": entry.state.word(),
                    "pid": entry.pid,
                    "since": rfc3339_from_ms(entry.since_ms),
                    "restarts": entry.restarts,
                    "last_exit": entry.last_exit,
                    "last_error": entry.last_error,
                })
            })
            .collect()
    }
}
