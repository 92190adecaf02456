//! Consumer groups on Redis: the state in keys of the namespace, changed
//! only by `groups.lua` (see its header for the keys), so every node
//! sharing the namespace sees one group and a frame is pending at one
//! consumer at a time.
//!
//! How a claim works across nodes: the node reads the frames after the
//! group's position itself (the index streams, as any read), then asks the
//! script to hand them out only if the position is still the one it read
//! from; if another node moved it first, the script says so with the new
//! position and the node reads again from there. Ack, nack and leave are
//! one script call each.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use redis::Value;

use super::Redis;
use crate::store::groups::{Claimed, GroupInfo, Member, PendingEntry, CLAIM_BATCH, LIVE_MS};
use crate::store::id::{now_ms, Id};
use crate::store::{Store, StoreError};

const SOURCE: &str = include_str!("groups.lua");

/// How many times a claim reads again after other nodes moved the
/// position under it, before it hands out what it has.
const CLAIM_TRIES: usize = 16;

/// The script's SHA1 once loaded, and the position each group was last
/// seen at (a guess the script checks).
#[derive(Default)]
pub struct GroupScript {
    sha: Mutex<Option<String>>,
    positions: Mutex<HashMap<String, String>>,
}

impl GroupScript {
    fn run(&self, redis: &Redis, group: &str, args: &[&[u8]]) -> Result<Value, StoreError> {
        let meta = redis.key(&format!("g:{group}:m"));
        let prefix = redis.key("");
        redis.with(|con| {
            let known = self.sha.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let sha = match known {
                Some(sha) => sha,
                None => self.load(con)?,
            };
            let invoke = |con: &mut redis::Connection, sha: &str| {
                let mut cmd = redis::cmd("EVALSHA");
                cmd.arg(sha).arg(1).arg(&meta).arg(&prefix);
                for arg in args {
                    cmd.arg(*arg);
                }
                cmd.query::<Value>(con)
            };
            match invoke(con, &sha) {
                Err(e) if e.code() == Some("NOSCRIPT") => {
                    let sha = self.load(con)?;
                    invoke(con, &sha)
                }
                other => other,
            }
        })
    }

    fn load(&self, con: &mut redis::Connection) -> redis::RedisResult<String> {
        let sha: String = redis::cmd("SCRIPT").arg("LOAD").arg(SOURCE).query(con)?;
        *self.sha.lock().unwrap_or_else(|e| e.into_inner()) = Some(sha.clone());
        Ok(sha)
    }
}

fn texts(value: Value) -> Vec<String> {
    match value {
        Value::Array(items) => items.into_iter().filter_map(super::text).collect(),
        _ => Vec::new(),
    }
}

impl Redis {
    pub fn group_join(&self, member: &Member, position: Option<Id>) -> Result<(), StoreError> {
        let position = position.map(|id| id.to_string()).unwrap_or_default();
        let now = now_ms().to_string();
        let start = member.start.text();
        let answer = texts(self.groups.run(
            self,
            &member.group,
            &[
                b"join",
                member.group.as_bytes(),
                member.consumer.as_bytes(),
                member.topics.as_bytes(),
                start.as_bytes(),
                position.as_bytes(),
                now.as_bytes(),
            ],
        )?);
        match answer.first().map(String::as_str) {
            Some("ok") => Ok(()),
            Some("conflict") => Err(StoreError::Conflict(format!(
                "group {} consumes topics '{}', not '{}'",
                member.group,
                answer.get(1).map(String::as_str).unwrap_or(""),
                member.topics
            ))),
            _ => Err(StoreError::Storage(
                "unexpected answer joining a group".into(),
            )),
        }
    }

    pub fn group_leave(&self, member: &Member) -> Result<(), StoreError> {
        self.groups
            .run(
                self,
                &member.group,
                &[
                    b"leave",
                    member.group.as_bytes(),
                    member.consumer.as_bytes(),
                ],
            )
            .map(|_| ())
    }

    pub fn group_claim(
        &self,
        store: &Store,
        member: &Member,
        now: u64,
    ) -> Result<(Vec<Claimed>, bool), StoreError> {
        let deadline = now
            .saturating_add(member.ack_wait.as_millis() as u64)
            .to_string();
        let now_text = now.to_string();
        let max_inflight = member.max_inflight.to_string();
        let batch = member.max_inflight.min(CLAIM_BATCH);
        let batch_text = batch.to_string();
        let mut expected = self
            .groups
            .positions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&member.group)
            .cloned()
            // Not seen yet: a guess that never matches, so the script
            // says where the group is.
            .unwrap_or_else(|| "?".into());
        let mut claimed = Vec::new();
        let mut full = false;
        for _ in 0..CLAIM_TRIES {
            let position = if expected.is_empty() || expected == "?" {
                None
            } else {
                Some(expected.parse::<Id>().map_err(|_| {
                    StoreError::Storage(format!(
                        "group {} has an unreadable position",
                        member.group
                    ))
                })?)
            };
            let mut frames = if expected == "?" {
                Vec::new()
            } else {
                store.group_candidates(member, position, batch)?
            };
            let candidates: Vec<String> = if expected == "?" {
                // Any candidate makes the script check the position.
                vec![String::new()]
            } else {
                frames.iter().map(|frame| frame.id.to_string()).collect()
            };
            let mut args: Vec<&[u8]> = vec![
                b"claim",
                member.group.as_bytes(),
                member.consumer.as_bytes(),
                now_text.as_bytes(),
                deadline.as_bytes(),
                max_inflight.as_bytes(),
                batch_text.as_bytes(),
                expected.as_bytes(),
            ];
            args.extend(candidates.iter().map(|c| c.as_bytes()));
            let answer = texts(self.groups.run(self, &member.group, &args)?);
            if answer.first().map(String::as_str) == Some("gone") {
                return Err(StoreError::NoGroup(member.group.clone()));
            }
            if answer.len() < 3 {
                return Err(StoreError::Storage(
                    "unexpected answer claiming frames".into(),
                ));
            }
            full = answer[2] == "1";
            for pair in answer[3..].chunks(2) {
                if let [id, deliveries] = pair {
                    if let Ok(id) = id.parse::<Id>() {
                        let deliveries = deliveries.parse().unwrap_or(1);
                        // A new frame's JSON is here from the scan.
                        let frame = match deliveries {
                            1 => frames
                                .iter()
                                .position(|f| f.id == id)
                                .map(|at| frames.swap_remove(at)),
                            _ => None,
                        };
                        claimed.push((id, deliveries, frame));
                    }
                }
            }
            let stale = answer[0] == "1";
            if stale {
                expected = answer[1].clone();
            } else if let Some((id, 1, _)) = claimed.last() {
                expected = id.to_string();
            }
            self.groups
                .positions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(member.group.clone(), expected.clone());
            if !stale || full {
                break;
            }
        }
        Ok((claimed, full))
    }

    /// Acks or nacks; returns the ids that were pending and the
    /// consumers they were pending at.
    pub fn group_settle(
        &self,
        group: &str,
        ids: &[Id],
        nack: bool,
    ) -> Result<(Vec<Id>, BTreeSet<String>), StoreError> {
        let ids: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
        let mut args: Vec<&[u8]> =
            vec![b"settle", group.as_bytes(), if nack { b"1" } else { b"0" }];
        args.extend(ids.iter().map(|id| id.as_bytes()));
        let answer = texts(self.groups.run(self, group, &args)?);
        let mut settled = Vec::new();
        let mut holders = BTreeSet::new();
        for pair in answer.chunks(2) {
            if let [id, consumer] = pair {
                if let Ok(id) = id.parse() {
                    settled.push(id);
                    holders.insert(consumer.clone());
                }
            }
        }
        Ok((settled, holders))
    }

    /// Deletes a group with its pending entries, for every node: their
    /// consumers find it gone at their next claim.
    pub fn group_delete(&self, group: &str) -> Result<(), StoreError> {
        let answer = self
            .groups
            .run(self, group, &[b"delete", group.as_bytes()])?;
        self.groups
            .positions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(group);
        match answer {
            Value::Int(1) => Ok(()),
            _ => Err(StoreError::NoGroup(group.to_string())),
        }
    }

    pub fn groups(&self) -> Result<Vec<GroupInfo>, StoreError> {
        let mut names: Vec<String> =
            self.with(|con| redis::cmd("SMEMBERS").arg(self.key("groups")).query(con))?;
        names.sort();
        let live_since = now_ms().saturating_sub(LIVE_MS);
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let g = |suffix: &str| self.key(&format!("g:{name}:{suffix}"));
            let meta: HashMap<String, String> =
                self.with(|con| redis::cmd("HGETALL").arg(g("m")).query(con))?;
            if meta.is_empty() {
                // Deleted since the names were read.
                continue;
            }
            let pending: Vec<(String, String)> =
                self.with(|con| redis::cmd("HGETALL").arg(g("p")).query(con))?;
            let live: Vec<String> = self.with(|con| {
                redis::cmd("ZRANGEBYSCORE")
                    .arg(g("l"))
                    .arg(live_since)
                    .arg("+inf")
                    .query(con)
            })?;
            let mut pending: Vec<PendingEntry> = pending
                .into_iter()
                .filter_map(|(id, entry)| {
                    let mut parts = entry.rsplitn(3, '|');
                    let deadline_ms = parts.next()?.parse().ok()?;
                    let deliveries = parts.next()?.parse().ok()?;
                    let consumer = parts.next()?.to_string();
                    Some(PendingEntry {
                        id: id.parse().ok()?,
                        consumer,
                        deliveries,
                        deadline_ms,
                    })
                })
                .collect();
            pending.sort_by_key(|e| e.id);
            let mut live = live;
            live.sort();
            out.push(GroupInfo {
                topics: meta.get("topics").cloned().unwrap_or_default(),
                start: meta.get("start").cloned().unwrap_or_default(),
                position: meta.get("position").and_then(|p| p.parse().ok()),
                name,
                pending,
                live,
            });
        }
        Ok(out)
    }
}
