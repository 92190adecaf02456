//! Housekeeping: the chores kept off the append path.
//!
//! One thread, woken by the writer (a `last:<n>` frame landed), by readers
//! (they met an expired `time:` frame) and by a timer. It never writes
//! itself: it decides what to delete and hands removals to the writer.
//! - `last:<n>` pruning: keep the newest n frames of the topic.
//! - `time:` sweep: frames whose expiry (the `ttl_time` keyspace) passed,
//!   every `--ttl-sweep` ms (default 1000; never with `0`).
//! - payload garbage collection: delete content no stored frame
//!   references any more (see `Store::collect_payload` for the race with
//!   an append of the same bytes).
//! - idempotency keys: ask the writer to sweep those older than the
//!   dedup window.
//! - pending payloads: sync the content folder's file system once, then
//!   forget the journaled copies of the payloads it covered.

use std::collections::HashSet;
use std::ops::Bound;
use std::time::Duration;

use cacache::Integrity;
use crossbeam_channel::Receiver;

use super::id::{now_ms, Id};
use super::local::{id_from_key, Local};
use super::topic::TopicFilter;
use super::write::WriteOp;
use super::{Store, StoreError};

/// Work the writer hands to the housekeeper after a commit.
#[derive(Debug)]
pub enum AfterCommit {
    /// A `last:<n>` frame landed on this topic: prune older ones.
    Prune(String, u32),
    /// No stored frame references this payload any more.
    Unreferenced(String),
}

/// How often the timer chores run.
const TICK: Duration = Duration::from_millis(250);

/// Journaled payload keys after which their files are synced even while
/// appends go on (about 6 MB of keys).
const PENDING_FLUSH_AT: usize = 100_000;

/// Work sent to the housekeeper by readers and by `Store::close`.
#[derive(Debug)]
pub enum Chore {
    Expired(Id),
    Stop,
}

pub fn start(
    store: Store,
    chores: Receiver<Chore>,
    after_commit: Receiver<AfterCommit>,
    journaled: JournaledKeys,
) -> Result<(), StoreError> {
    std::thread::Builder::new()
        .name("housekeeping".into())
        .spawn(move || run(store, chores, after_commit, journaled))
        .map(|_| ())
        .map_err(|e| StoreError::io("starting the housekeeping thread", e))
}

fn run(
    store: Store,
    chores: Receiver<Chore>,
    after_commit: Receiver<AfterCommit>,
    journaled: JournaledKeys,
) {
    let mut removing: HashSet<Id> = HashSet::new();
    // Unreferenced payloads still pinned by an append in flight.
    let mut deferred: HashSet<String> = HashSet::new();
    // A clock of its own: the timer chores run every TICK even while
    // messages keep coming (a `default` arm would starve under load).
    let ticks = crossbeam_channel::tick(TICK);
    let sweeps = match store.options().ttl_sweep {
        Some(every) => crossbeam_channel::tick(every),
        None => crossbeam_channel::never(),
    };
    // Journaled keys seen at the last tick: unchanged means appends paused.
    let mut journaled_seen = 0;
    loop {
        crossbeam_channel::select! {
            recv(chores) -> chore => match chore {
                Ok(Chore::Expired(id)) => {
                    if removing.insert(id) {
                        drop(store.submit(WriteOp::Remove(id)));
                    }
                }
                Ok(Chore::Stop) | Err(_) => {
                    flush_pending_payloads(&store, take_journaled(&journaled));
                    return;
                }
            },
            recv(after_commit) -> done => match done {
                Ok(AfterCommit::Prune(topic, keep)) => prune(&store, &topic, keep as usize),
                Ok(AfterCommit::Unreferenced(hash)) => collect(&store, hash, &mut deferred),
                Err(_) => return,
            },
            recv(ticks) -> _ => {
                removing.clear();
                ask_dedup_sweep(&store);
                for hash in std::mem::take(&mut deferred) {
                    collect(&store, hash, &mut deferred);
                }
                // `syncfs` flushes the whole file system, other programs'
                // dirty data included, and slows the writer's own syncs
                // while it runs: wait for a pause in appends, unless the
                // list grows large (then its memory matters more).
                let now = journaled.lock().unwrap_or_else(|e| e.into_inner()).len();
                if now == journaled_seen || now >= PENDING_FLUSH_AT {
                    flush_pending_payloads(&store, take_journaled(&journaled));
                    journaled_seen = 0;
                } else {
                    journaled_seen = now;
                }
            }
            recv(sweeps) -> _ => sweep_expired(&store),
        }
    }
}

/// Asks the writer to sweep idempotency keys once the oldest has outlived
/// the dedup window (the writer also sweeps at each batch that adds one).
fn ask_dedup_sweep(store: &Store) {
    let (Some(window), Some(ours)) = (
        store.options().dedup_window,
        store.local().and_then(Local::ours_if_made),
    ) else {
        return;
    };
    let cutoff = now_ms().saturating_sub(window.as_millis() as u64);
    if super::local::dedup::DedupKey::oldest(&ours.dedup).is_some_and(|at| at < cutoff) {
        drop(store.submit(WriteOp::ForgetOldKeys));
    }
}

/// Journaled payload copies whose files are not yet known synced: the
/// writer adds each batch's, the housekeeper takes them every tick. A
/// shared list rather than a message per batch, so an append does not
/// also wake this thread.
pub type JournaledKeys = std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>;

fn take_journaled(journaled: &JournaledKeys) -> Vec<Vec<u8>> {
    std::mem::take(&mut *journaled.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Deletes an unreferenced payload, or defers it while an append pins it.
fn collect(store: &Store, hash: String, deferred: &mut HashSet<String>) {
    match store.collect_payload(&hash) {
        Ok(true) => {}
        Ok(false) => {
            deferred.insert(hash);
        }
        Err(e) => eprintln!("xs: collecting payload {hash}: {e}"),
    }
}

/// Removes all but the newest `keep` frames of exactly `topic`.
fn prune(store: &Store, topic: &str, keep: usize) {
    let Some(local) = store.local() else { return };
    let filter = TopicFilter::parse(topic);
    let doomed = local
        .scan(&filter, Bound::Unbounded, Bound::Unbounded, true)
        .skip(keep)
        .filter_map(Result::ok)
        .map(|frame| frame.id);
    for id in doomed {
        drop(store.submit(WriteOp::Remove(id)));
    }
}

/// Removes frames whose `time:` ttl ran out.
fn sweep_expired(store: &Store) {
    let Some(ours) = store.local().and_then(|local| local.ours_if_made()) else {
        return;
    };
    let now = now_ms().to_be_bytes();
    for entry in ours.ttl_time.range(..now.to_vec()) {
        let Ok(key) = entry.key() else { continue };
        if let Some(id) = key.get(8..).and_then(id_from_key) {
            drop(store.submit(WriteOp::Remove(id)));
        }
    }
}

/// Syncs the content folder once, then forgets the journaled copies of the
/// payloads written before that sync (the writer reports which; a crash
/// before this leaves them for `recover_pending_payloads`).
fn flush_pending_payloads(store: &Store, keys: Vec<Vec<u8>>) {
    if keys.is_empty() {
        return;
    }
    let Some(local) = store.local() else { return };
    match local.cas.sync_all() {
        Ok(()) => drop(store.submit(WriteOp::PayloadsSynced(keys))),
        Err(e) => eprintln!("xs: syncing payloads failed: {e}"),
    }
}

/// At start-up: rewrites any journaled payload whose file a crash lost,
/// syncs, and forgets the copies.
pub fn recover_pending_payloads(local: &Local) -> Result<(), StoreError> {
    let (Some(spaces), Some(ours)) = (local.keyspaces_if_made(), local.ours_if_made()) else {
        return Ok(());
    };
    let mut recovered = Vec::new();
    for guard in ours.cas_pending.iter() {
        let (key, bytes) = guard.into_inner().map_err(StoreError::fjall)?;
        let hash = String::from_utf8_lossy(&key).to_string();
        let Ok(sri) = hash.parse::<Integrity>() else {
            recovered.push(key.to_vec());
            continue;
        };
        if !local.cas.verify(&sri)? {
            local.cas.write_bytes(&bytes)?;
        }
        recovered.push(key.to_vec());
    }
    if recovered.is_empty() {
        return Ok(());
    }
    local.cas.sync_all()?;
    let mut batch = spaces.db.batch();
    for key in recovered {
        batch.remove(&ours.cas_pending, key);
    }
    batch.commit().map_err(StoreError::fjall)?;
    spaces
        .db
        .persist(fjall::PersistMode::SyncData)
        .map_err(StoreError::fjall)
}
