//! Consumer groups on the local backend: the state in memory, written
//! through the writer.
//!
//! How it works. Every group's state sits behind one mutex (`LocalGroups`),
//! read from disk on first use (a store that never uses groups pays
//! nothing at start). Each change is applied in memory and sent to the
//! writer as `WriteOp::Groups` (puts and deletes of reserved keys in the
//! `kv` keyspace), under the same lock, so the writer sees them in the
//! order they happened; claims, acks and nacks then wait for the writer
//! without the lock, which folds concurrent ones into one batch and one
//! sync. A frame is handed out only once it is durably pending, and an
//! ack answered only once durable. (A consumer leaving releases its frames
//! without waiting: lost in a crash, they are due after their ack-wait.)
//!
//! Keys (`\0` cannot start a k/v key, which is a valid topic):
//! - `\0g\0<group>\0m` → `{"topics","start","position"}`;
//! - `\0g\0<group>\0p<16-byte id>` → `{"consumer","deliveries","deadline"}`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{json, Value};

use super::{Claimed, GroupInfo, Member, PendingEntry, CLAIM_BATCH};
use crate::store::id::Id;
use crate::store::write::WriteOp;
use crate::store::{Store, StoreError};

/// The prefix of every group key.
pub const KEY_PREFIX: &[u8] = b"\0g\0";

/// A change to the stored group state: a key and its new value, or `None`
/// to delete it.
pub type GroupWrite = (Vec<u8>, Option<Vec<u8>>);

#[derive(Default)]
pub struct LocalGroups {
    /// `None` until read from disk.
    state: Mutex<Option<HashMap<String, Group>>>,
    /// Per consumer on this node (`group\0consumer`): woken when one of
    /// its frames is acked or nacked here, so a consumer at its
    /// `max_inflight` waits for room without waking all the others (used
    /// on both backends).
    rooms: Mutex<HashMap<String, Arc<Room>>>,
    /// Acks and nacks decided under the lock and not yet sent to the
    /// writer (`delete` waits for them).
    settling: AtomicUsize,
}

/// A consumer's "room was made" signal.
#[derive(Default)]
struct Room {
    version: Mutex<u64>,
    changed: Condvar,
    /// Connections of this consumer on this node.
    users: Mutex<usize>,
}

fn room_key(group: &str, consumer: &str) -> String {
    format!("{group}\0{consumer}")
}

struct Group {
    topics: String,
    start: String,
    position: Option<Id>,
    pending: BTreeMap<Id, Entry>,
    /// Pending entries by deadline (released ones at 0).
    due: BTreeSet<(u64, Id)>,
    /// Pending entries per consumer.
    inflight: HashMap<String, usize>,
    /// Consumers connected now, with their connection count.
    live: HashMap<String, usize>,
}

#[derive(Clone)]
struct Entry {
    consumer: String,
    deliveries: u32,
    deadline: u64,
}

impl Group {
    fn new(topics: String, start: String, position: Option<Id>) -> Group {
        Group {
            topics,
            start,
            position,
            pending: BTreeMap::new(),
            due: BTreeSet::new(),
            inflight: HashMap::new(),
            live: HashMap::new(),
        }
    }

    fn inflight(&self, consumer: &str) -> usize {
        self.inflight.get(consumer).copied().unwrap_or(0)
    }

    fn put(&mut self, id: Id, entry: Entry) {
        if let Some(old) = self.pending.remove(&id) {
            self.forget(id, &old);
        }
        if !entry.consumer.is_empty() {
            *self.inflight.entry(entry.consumer.clone()).or_default() += 1;
        }
        self.due.insert((entry.deadline, id));
        self.pending.insert(id, entry);
    }

    fn remove(&mut self, id: Id) -> Option<Entry> {
        let old = self.pending.remove(&id)?;
        self.forget(id, &old);
        Some(old)
    }

    /// Takes a removed entry out of the indexes.
    fn forget(&mut self, id: Id, old: &Entry) {
        self.due.remove(&(old.deadline, id));
        if let Some(count) = self.inflight.get_mut(&old.consumer) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.inflight.remove(&old.consumer);
            }
        }
    }
}

fn meta_key(group: &str) -> Vec<u8> {
    let mut key = KEY_PREFIX.to_vec();
    key.extend_from_slice(group.as_bytes());
    key.extend_from_slice(b"\0m");
    key
}

fn pending_key(group: &str, id: Id) -> Vec<u8> {
    let mut key = KEY_PREFIX.to_vec();
    key.extend_from_slice(group.as_bytes());
    key.extend_from_slice(b"\0p");
    key.extend_from_slice(&id.to_bytes());
    key
}

fn meta_write(name: &str, group: &Group) -> GroupWrite {
    let value = json!({
        "topics": group.topics,
        "start": group.start,
        "position": group.position.map(|id| id.to_string()),
    });
    (meta_key(name), Some(value.to_string().into_bytes()))
}

fn entry_write(name: &str, id: Id, entry: &Entry) -> GroupWrite {
    let value = json!({
        "consumer": entry.consumer,
        "deliveries": entry.deliveries,
        "deadline": entry.deadline,
    });
    (pending_key(name, id), Some(value.to_string().into_bytes()))
}

impl LocalGroups {
    /// The state, read from disk the first time.
    fn lock(&self, store: &Store) -> Result<StateGuard<'_>, StoreError> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.is_none() {
            *state = Some(load(store)?);
        }
        Ok(StateGuard(state))
    }

    /// The room signal of a consumer on this node, made when missing.
    fn room(&self, group: &str, consumer: &str) -> Arc<Room> {
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        rooms.entry(room_key(group, consumer)).or_default().clone()
    }

    /// Counts a connection of a consumer in (`true`) or out; the signal
    /// goes with its last connection.
    pub fn register(&self, group: &str, consumer: &str, joined: bool) {
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        let key = room_key(group, consumer);
        let room = rooms.entry(key.clone()).or_default().clone();
        let mut users = room.users.lock().unwrap_or_else(|e| e.into_inner());
        if joined {
            *users += 1;
        } else {
            *users = users.saturating_sub(1);
            if *users == 0 {
                rooms.remove(&key);
            }
        }
    }

    /// Waits until one of the consumer's frames is acked or nacked on
    /// this node, at most `timeout`.
    pub fn wait_for_room(&self, member: &Member, timeout: Duration) {
        let room = self.room(&member.group, &member.consumer);
        let version = room.version.lock().unwrap_or_else(|e| e.into_inner());
        let seen = *version;
        drop(
            room.changed
                .wait_timeout_while(version, timeout, |v| *v == seen)
                .unwrap_or_else(|e| e.into_inner()),
        );
    }

    /// Wakes the consumers of `group` on this node whose frames were
    /// settled.
    pub fn made_room(&self, group: &str, consumers: &BTreeSet<String>) {
        let rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        for consumer in consumers {
            if let Some(room) = rooms.get(&room_key(group, consumer)) {
                *room.version.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                room.changed.notify_all();
            }
        }
    }

    pub fn join(
        &self,
        store: &Store,
        member: &Member,
        position: Option<Id>,
    ) -> Result<(), StoreError> {
        let mut guard = self.lock(store)?;
        let groups = guard.groups();
        if let Some(group) = groups.get_mut(&member.group) {
            if group.topics != member.topics {
                return Err(StoreError::Conflict(format!(
                    "group {} consumes topics '{}', not '{}'",
                    member.group, group.topics, member.topics
                )));
            }
            *group.live.entry(member.consumer.clone()).or_default() += 1;
            return Ok(());
        }
        let mut group = Group::new(member.topics.clone(), member.start.text(), position);
        let write = meta_write(&member.group, &group);
        // The group exists once durable: a consumer that joined and saw
        // nothing yet must find it after a restart. Refused, nothing of it
        // is kept (its consumer never joined).
        store.write(WriteOp::Groups(vec![write]))?;
        group.live.insert(member.consumer.clone(), 1);
        groups.insert(member.group.clone(), group);
        Ok(())
    }

    pub fn leave(&self, store: &Store, member: &Member) -> Result<(), StoreError> {
        let mut guard = self.lock(store)?;
        let Some(group) = guard.groups().get_mut(&member.group) else {
            return Ok(());
        };
        match group.live.get_mut(&member.consumer) {
            Some(count) if *count > 1 => {
                // Another connection of the same name is still there.
                *count -= 1;
                return Ok(());
            }
            _ => {
                group.live.remove(&member.consumer);
            }
        }
        let mine: Vec<Id> = group
            .pending
            .iter()
            .filter(|(_, e)| e.consumer == member.consumer)
            .map(|(id, _)| *id)
            .collect();
        let mut writes = Vec::with_capacity(mine.len());
        for id in mine {
            if let Some(mut entry) = group.remove(id) {
                entry.consumer.clear();
                entry.deadline = 0;
                writes.push(entry_write(&member.group, id, &entry));
                group.put(id, entry);
            }
        }
        if !writes.is_empty() {
            drop(store.submit(WriteOp::Groups(writes)));
        }
        Ok(())
    }

    /// Claims due entries, then new frames, for `member`; returns them and
    /// whether it is now at its `max_inflight`.
    pub fn claim(
        &self,
        store: &Store,
        member: &Member,
        now: u64,
    ) -> Result<(Vec<Claimed>, bool), StoreError> {
        let mut guard = self.lock(store)?;
        let Some(group) = guard.groups().get_mut(&member.group) else {
            return Err(StoreError::NoGroup(member.group.clone()));
        };
        let deadline = now.saturating_add(member.ack_wait.as_millis() as u64);
        let inflight = group.inflight(&member.consumer);
        let room = member
            .max_inflight
            .saturating_sub(inflight)
            .min(CLAIM_BATCH);
        let mut claimed = Vec::new();
        let mut writes = Vec::new();
        let due: Vec<Id> = group
            .due
            .iter()
            .take_while(|(at, _)| *at <= now)
            .take(room)
            .map(|(_, id)| *id)
            .collect();
        for id in due {
            if let Some(mut entry) = group.remove(id) {
                entry.consumer = member.consumer.clone();
                entry.deliveries = entry.deliveries.saturating_add(1);
                entry.deadline = deadline;
                writes.push(entry_write(&member.group, id, &entry));
                claimed.push((id, entry.deliveries, None));
                group.put(id, entry);
            }
        }
        let left = room - claimed.len();
        if left > 0 {
            let fresh = store.group_candidates(member, group.position, left)?;
            if let Some(last) = fresh.last() {
                group.position = Some(last.id);
                for frame in fresh {
                    let entry = Entry {
                        consumer: member.consumer.clone(),
                        deliveries: 1,
                        deadline,
                    };
                    writes.push(entry_write(&member.group, frame.id, &entry));
                    group.put(frame.id, entry);
                    claimed.push((frame.id, 1, Some(frame)));
                }
                writes.push(meta_write(&member.group, group));
            }
        }
        let full = inflight + claimed.len() >= member.max_inflight;
        if writes.is_empty() {
            return Ok((claimed, full));
        }
        // Queued under the lock (the writer sees changes in the order they
        // happened), waited for without it: the frames go out only once
        // they are durably pending here, while other consumers' claims
        // and acks share the batch.
        let written = store.submit(WriteOp::Groups(writes));
        drop(guard);
        match written.recv() {
            Ok(Ok(_)) => Ok((claimed, full)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(StoreError::Closed),
        }
    }

    /// Acks (`nack` false) or nacks ids; returns those that were pending.
    pub fn settle(
        &self,
        store: &Store,
        group_name: &str,
        ids: &[Id],
        nack: bool,
    ) -> Result<Vec<Id>, StoreError> {
        let mut guard = self.lock(store)?;
        let Some(group) = guard.groups().get_mut(group_name) else {
            return Ok(Vec::new());
        };
        let mut settled = Vec::new();
        let mut writes = Vec::new();
        let mut holders = BTreeSet::new();
        for id in ids {
            let Some(mut entry) = group.remove(*id) else {
                continue;
            };
            settled.push(*id);
            holders.insert(entry.consumer.clone());
            if nack {
                entry.consumer.clear();
                entry.deadline = 0;
                writes.push(entry_write(group_name, *id, &entry));
                group.put(*id, entry);
            } else {
                writes.push((pending_key(group_name, *id), None));
            }
        }
        if writes.is_empty() {
            return Ok(settled);
        }
        // Sent under no lock: the writer has every claim sent before, so
        // order holds; waiting here lets acks of many consumers share a
        // batch, and the lock is free for the other consumers (sending
        // under it costs them: docs/design.md). Counted as sending until
        // sent, so a deletion can wait for it.
        self.settling.fetch_add(1, Ordering::SeqCst);
        drop(guard);
        let written = store.queue(WriteOp::Groups(writes));
        self.settling.fetch_sub(1, Ordering::SeqCst);
        let reply = written.wait();
        self.made_room(group_name, &holders);
        reply.map(|_| settled)
    }

    /// Deletes a group with its pending entries; answered once durable.
    /// Its connected consumers find it gone at their next claim.
    pub fn delete(&self, store: &Store, name: &str) -> Result<(), StoreError> {
        let mut guard = self.lock(store)?;
        let Some(group) = guard.groups().remove(name) else {
            return Err(StoreError::NoGroup(name.to_string()));
        };
        let mut writes = Vec::with_capacity(group.pending.len() + 1);
        writes.push((meta_key(name), None));
        writes.extend(
            group
                .pending
                .keys()
                .map(|id| (pending_key(name, *id), None)),
        );
        // Queued after every change to the group: claims and leaves send
        // under the lock, which this holds; acks and nacks decided before
        // it took the lock may still be sending (a nack landing after
        // this would leave an entry behind for a group made later under
        // the same name). No new one can start while the lock is held.
        while self.settling.load(Ordering::SeqCst) > 0 {
            std::thread::yield_now();
        }
        let written = store.queue(WriteOp::Groups(writes));
        drop(guard);
        // Consumers waiting for room look again now and find it gone.
        self.made_room(name, &group.live.into_keys().collect());
        written.wait().map(|_| ())
    }

    pub fn list(&self, store: &Store) -> Result<Vec<GroupInfo>, StoreError> {
        let mut guard = self.lock(store)?;
        let mut out: Vec<GroupInfo> = guard
            .groups()
            .iter()
            .map(|(name, group)| {
                let mut live: Vec<String> = group.live.keys().cloned().collect();
                live.sort();
                GroupInfo {
                    name: name.clone(),
                    topics: group.topics.clone(),
                    start: group.start.clone(),
                    position: group.position,
                    pending: group
                        .pending
                        .iter()
                        .map(|(id, e)| PendingEntry {
                            id: *id,
                            consumer: e.consumer.clone(),
                            deliveries: e.deliveries,
                            deadline_ms: e.deadline,
                        })
                        .collect(),
                    live,
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

struct StateGuard<'a>(MutexGuard<'a, Option<HashMap<String, Group>>>);

impl StateGuard<'_> {
    fn groups(&mut self) -> &mut HashMap<String, Group> {
        self.0.get_or_insert_with(HashMap::new)
    }
}

/// Reads every group from the reserved keys.
fn load(store: &Store) -> Result<HashMap<String, Group>, StoreError> {
    let mut groups: HashMap<String, Group> = HashMap::new();
    let Some(ours) = store.local().and_then(|local| local.ours_if_made()) else {
        return Ok(groups);
    };
    let unreadable = |key: &[u8]| {
        StoreError::Storage(format!(
            "unreadable consumer group record {}",
            String::from_utf8_lossy(key).replace('\0', "/")
        ))
    };
    let mut entries = Vec::new();
    for guard in ours.kv.prefix(KEY_PREFIX) {
        let (key, value) = guard.into_inner().map_err(StoreError::fjall)?;
        let rest = &key[KEY_PREFIX.len()..];
        let Some(split) = rest.iter().position(|b| *b == 0) else {
            return Err(unreadable(&key));
        };
        let name = String::from_utf8_lossy(&rest[..split]).into_owned();
        let kind = &rest[split + 1..];
        let value: Value = serde_json::from_slice(&value).map_err(|_| unreadable(&key))?;
        if kind == b"m" {
            groups.insert(
                name,
                Group::new(
                    value["topics"].as_str().unwrap_or("*").to_string(),
                    value["start"].as_str().unwrap_or("first").to_string(),
                    value["position"].as_str().and_then(|s| s.parse().ok()),
                ),
            );
        } else if let Some(id) = kind
            .strip_prefix(b"p")
            .and_then(|b| <[u8; 16]>::try_from(b).ok())
        {
            let entry = Entry {
                consumer: value["consumer"].as_str().unwrap_or("").to_string(),
                deliveries: value["deliveries"].as_u64().unwrap_or(1) as u32,
                deadline: value["deadline"].as_u64().unwrap_or(0),
            };
            entries.push((name, Id::from_u128(u128::from_be_bytes(id)), entry));
        } else {
            return Err(unreadable(&key));
        }
    }
    for (name, id, entry) in entries {
        if let Some(group) = groups.get_mut(&name) {
            group.put(id, entry);
        }
    }
    Ok(groups)
}
