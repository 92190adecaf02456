//! Consumer groups: competing consumers with acknowledgement (SPEC §7.6).
//!
//! How it works. A group has a name, a topic filter, a start (`new`,
//! `first` or an id), a position (the newest frame handed out) and pending
//! entries: frame id → consumer, delivery count, deadline. A consumer
//! claims frames (`Store::group_claim`): first pending entries whose
//! deadline passed (ack-wait ran out, nacked, or released when their
//! consumer left), then frames after the position, as many as its
//! `max_inflight` leaves room for; each claim moves the entry to the
//! claimer, so a frame is pending at one consumer at a time. An ack removes
//! the entry; a frame claimed more than `max_deliver` times is appended to
//! `<group>.dead` (meta: the original id, topic, deliveries, reason) and
//! acked instead of delivered. Deleting a group drops its position and
//! pending entries; its consumers' next claim finds it gone.
//!
//! Where the state lives is the backend's business, with one rule: it
//! survives a restart. Local (`local.rs`): in memory behind one mutex,
//! written through the writer's batches into reserved keys of the `kv`
//! keyspace (`\0g\0…`, which no k/v key can spell), so a burst of claims
//! and acks shares one sync; a frame goes out once its claim is durable,
//! an ack is answered once durable. Redis (`redis/groups.rs`):
//! keys of the namespace changed by one Lua script per claim, ack or nack,
//! so several nodes share a group without handing a frame to two
//! consumers.

pub(in crate::store) mod local;

use std::ops::Bound;
use std::time::Duration;

use serde_json::{json, Value};

use super::id::{self, parse_id, Id};
use super::topic::{validate_topic, validate_topic_query, TopicFilter};
use super::{Backend, Draft, RawFrame, Store, StoreError};

/// The most frames one claim hands out (a consumer with a large
/// `max_inflight` gets them over several claims).
pub const CLAIM_BATCH: usize = 64;

/// Defaults of a consumer's settings.
pub const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_INFLIGHT: usize = 1000;

/// Where a new group starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// After the newest frame when the group is made.
    New,
    /// At the oldest frame.
    First,
    /// After this id (as Redis's `XGROUP CREATE <id>`).
    After(Id),
}

impl Start {
    pub fn parse(text: &str) -> Result<Start, String> {
        match text {
            "new" | "$" => Ok(Start::New),
            "first" | "0" => Ok(Start::First),
            _ => parse_id(text).map(Start::After).map_err(|e| {
                format!("invalid start '{text}': expected new, first or a frame id ({e})")
            }),
        }
    }

    pub fn text(&self) -> String {
        match self {
            Start::New => "new".into(),
            Start::First => "first".into(),
            Start::After(id) => id.to_string(),
        }
    }
}

/// One consumer of a group, with its settings.
#[derive(Debug, Clone)]
pub struct Member {
    pub group: String,
    pub consumer: String,
    /// The topic filter as written (`-T`): the group's, fixed when it is
    /// made.
    pub topics: String,
    pub start: Start,
    pub ack_wait: Duration,
    pub max_inflight: usize,
    pub max_deliver: Option<u32>,
}

impl Member {
    /// Checks what a client sent: the group is a valid topic (its dead
    /// letters go to `<group>.dead`), the topics a valid filter.
    pub fn check(&self) -> Result<(), StoreError> {
        validate_group(&self.group)?;
        validate_topic(&self.consumer)
            .map_err(|e| StoreError::BadInput(format!("invalid consumer name: {e}")))?;
        validate_topic_query(&self.topics)
            .map_err(|e| StoreError::BadInput(format!("invalid topics: {e}")))?;
        if self.max_inflight == 0 {
            return Err(StoreError::BadInput(
                "max-inflight must be at least 1".into(),
            ));
        }
        if self.ack_wait.is_zero() {
            return Err(StoreError::BadInput("ack-wait must be more than 0".into()));
        }
        Ok(())
    }

    pub fn filter(&self) -> TopicFilter {
        TopicFilter::parse(&self.topics)
    }

    fn dead_topic(&self) -> String {
        format!("{}.dead", self.group)
    }
}

/// A group name: a valid topic, so `<group>.dead` is one too.
pub fn validate_group(group: &str) -> Result<(), StoreError> {
    validate_topic(group).map_err(|e| {
        StoreError::BadInput(format!(
            "invalid group name: {}",
            e.replace("Topic", "Group")
        ))
    })
}

/// A duration as the CLI and the query take it: `500ms`, `30s`, `2m`,
/// `1h`, or a number of milliseconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let unit_ms: u64 = match unit {
        "" | "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => 0,
    };
    match digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit_ms))
    {
        Some(ms) if unit_ms > 0 && !digits.is_empty() => Ok(Duration::from_millis(ms)),
        _ => Err(format!(
            "invalid duration '{text}': expected e.g. 500ms, 30s, 2m or 1h"
        )),
    }
}

/// A frame handed to a consumer, and how many times it has been.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub frame: RawFrame,
    pub deliveries: u32,
}

impl Delivery {
    /// The frame's JSON with `"deliveries":n` added last: an `xs cat`
    /// line a consumer can also tell a redelivery by.
    pub fn render(&self) -> Vec<u8> {
        let json = &self.frame.json;
        let mut out = Vec::with_capacity(json.len() + 24);
        match json.iter().rposition(|b| *b == b'}') {
            Some(end) => {
                out.extend_from_slice(&json[..end]);
                out.extend_from_slice(format!(",\"deliveries\":{}}}", self.deliveries).as_bytes());
            }
            None => out.extend_from_slice(json),
        }
        out
    }
}

/// A claimed frame from a backend: its id, delivery count, and the frame
/// itself when the backend read it already (a new one, from the scan).
pub type Claimed = (Id, u32, Option<RawFrame>);

/// One pending entry, for `xs groups`.
#[derive(Debug, Clone)]
pub struct PendingEntry {
    pub id: Id,
    /// Empty when released (nacked, or its consumer left).
    pub consumer: String,
    pub deliveries: u32,
    pub deadline_ms: u64,
}

/// A group as `xs groups` shows it.
#[derive(Debug, Clone)]
pub struct GroupInfo {
    pub name: String,
    pub topics: String,
    pub start: String,
    pub position: Option<Id>,
    pub pending: Vec<PendingEntry>,
    /// Consumers connected now (on Redis: seen within `LIVE_MS`).
    pub live: Vec<String>,
}

/// How long a Redis consumer counts as live after its last claim.
pub const LIVE_MS: u64 = 5_000;

impl GroupInfo {
    pub fn to_json(&self) -> Value {
        let mut consumers: std::collections::BTreeMap<String, (usize, bool)> = self
            .live
            .iter()
            .map(|name| (name.clone(), (0, true)))
            .collect();
        for entry in &self.pending {
            if !entry.consumer.is_empty() {
                consumers
                    .entry(entry.consumer.clone())
                    .or_insert((0, false))
                    .0 += 1;
            }
        }
        let consumers: Vec<Value> = consumers
            .into_iter()
            .map(|(name, (pending, live))| json!({"name": name, "pending": pending, "live": live}))
            .collect();
        let pending: Vec<Value> = self
            .pending
            .iter()
            .map(|entry| {
                json!({
                    "id": entry.id.to_string(),
                    "consumer": (!entry.consumer.is_empty()).then(|| entry.consumer.clone()),
                    "deliveries": entry.deliveries,
                    "deadline": id::rfc3339_from_ms(entry.deadline_ms),
                })
            })
            .collect();
        json!({
            "group": self.name,
            "topics": self.topics,
            "start": self.start,
            "position": self.position.map(|id| id.to_string()),
            "pending": self.pending.len(),
            "consumers": consumers,
            "frames": pending,
        })
    }
}

/// What a claim found: frames to hand out, and when the next pending
/// entry falls due (to wait no longer than that).
#[derive(Debug, Default)]
pub struct Claim {
    pub deliveries: Vec<Delivery>,
    /// Whether the consumer is at its `max_inflight`.
    pub full: bool,
}

impl Store {
    /// Joins `member` to its group, making the group when it is new; a
    /// group that exists with other topics is a conflict.
    pub fn group_join(&self, member: &Member) -> Result<(), StoreError> {
        member.check()?;
        let position = match member.start {
            Start::New => self.newest_id(self.head().view().last_id),
            Start::First => None,
            Start::After(id) => Some(id),
        };
        match &self.inner.backend {
            Backend::Local(_) => self.inner.groups.join(self, member, position)?,
            Backend::Redis(redis) => redis.group_join(member, position)?,
        }
        self.inner
            .groups
            .register(&member.group, &member.consumer, true);
        Ok(())
    }

    /// The consumer has gone: its pending frames may go to any consumer
    /// now.
    pub fn group_leave(&self, member: &Member) {
        self.inner
            .groups
            .register(&member.group, &member.consumer, false);
        let left = match &self.inner.backend {
            Backend::Local(_) => self.inner.groups.leave(self, member),
            Backend::Redis(redis) => redis.group_leave(member),
        };
        if let Err(e) = left {
            eprintln!(
                "xs: releasing the frames of consumer {}: {e}",
                member.consumer
            );
        }
    }

    /// Hands `member` the frames it has room for: due pending entries
    /// first, then frames after the group's position.
    pub fn group_claim(&self, member: &Member) -> Result<Claim, StoreError> {
        let now = id::now_ms();
        let (claimed, full) = match &self.inner.backend {
            Backend::Local(_) => self.inner.groups.claim(self, member, now)?,
            Backend::Redis(redis) => redis.group_claim(self, member, now)?,
        };
        let mut claim = Claim {
            deliveries: Vec::with_capacity(claimed.len()),
            full,
        };
        let mut settled = Vec::new();
        for (id, deliveries, frame) in claimed {
            let frame = match frame {
                Some(frame) => Some(frame),
                None => self.get(id)?,
            };
            let Some(frame) = frame else {
                // Removed or expired since: nothing left to hand out.
                settled.push(id);
                continue;
            };
            if member.max_deliver.is_some_and(|max| deliveries > max) {
                self.dead_letter(member, &frame, deliveries - 1)?;
                settled.push(id);
                continue;
            }
            claim.deliveries.push(Delivery { frame, deliveries });
        }
        if !settled.is_empty() {
            self.group_ack(&member.group, &settled)?;
        }
        Ok(claim)
    }

    /// Appends a frame that was delivered too often to `<group>.dead`,
    /// with its payload and what happened in meta.
    fn dead_letter(
        &self,
        member: &Member,
        raw: &RawFrame,
        deliveries: u32,
    ) -> Result<(), StoreError> {
        let frame = raw.parse()?;
        let meta = json!({
            "group": member.group,
            "id": frame.id.to_string(),
            "topic": frame.topic,
            "deliveries": deliveries,
            "reason": format!("delivered {deliveries} times without an ack (max-deliver {})",
                member.max_deliver.unwrap_or(0)),
        });
        self.append(
            Draft::new(member.dead_topic())
                .hash(frame.hash)
                .meta(Some(meta)),
        )
        .map(|_| ())
    }

    /// Acks frames of `group`; returns those that were pending (an id
    /// acked twice, or never delivered, is left out). Answered once
    /// durable.
    pub fn group_ack(&self, group: &str, ids: &[Id]) -> Result<Vec<Id>, StoreError> {
        validate_group(group)?;
        match &self.inner.backend {
            Backend::Local(_) => self.inner.groups.settle(self, group, ids, false),
            Backend::Redis(redis) => {
                let (settled, holders) = redis.group_settle(group, ids, false)?;
                self.inner.groups.made_room(group, &holders);
                Ok(settled)
            }
        }
    }

    /// Nacks frames of `group`: due again now, for any consumer.
    pub fn group_nack(&self, group: &str, ids: &[Id]) -> Result<Vec<Id>, StoreError> {
        validate_group(group)?;
        match &self.inner.backend {
            Backend::Local(_) => self.inner.groups.settle(self, group, ids, true),
            Backend::Redis(redis) => {
                let (settled, holders) = redis.group_settle(group, ids, true)?;
                self.inner.groups.made_room(group, &holders);
                Ok(settled)
            }
        }
    }

    /// Deletes a group: its position and pending entries go (its frames
    /// and its `<group>.dead` letters stay); its connected consumers' next
    /// claim finds it gone and their streams end. A consumer joining
    /// afterwards makes the group anew. `NoGroup` when there is none.
    pub fn group_delete(&self, group: &str) -> Result<(), StoreError> {
        validate_group(group)?;
        match &self.inner.backend {
            Backend::Local(_) => self.inner.groups.delete(self, group),
            Backend::Redis(redis) => redis.group_delete(group),
        }
    }

    /// Every group, by name.
    pub fn groups(&self) -> Result<Vec<GroupInfo>, StoreError> {
        match &self.inner.backend {
            Backend::Local(_) => self.inner.groups.list(self),
            Backend::Redis(redis) => redis.groups(),
        }
    }

    /// Waits (at most `timeout`) for something that may let a claim find
    /// more: a consumer at its `max_inflight` for an ack or nack of one of
    /// its frames on this node; any other for new frames. (Frames another
    /// consumer let go of, or acks on other nodes, are found by the next
    /// claim after `timeout`.)
    pub fn group_wait(&self, member: &Member, seen_head: u64, full: bool, timeout: Duration) {
        if full {
            self.inner.groups.wait_for_room(member, timeout);
        } else {
            self.head().wait_past(seen_head, timeout);
        }
    }

    /// Frames after `position` a group may hand out, oldest first: the
    /// group's topics, never its own dead letters.
    pub(in crate::store) fn group_candidates(
        &self,
        member: &Member,
        position: Option<Id>,
        limit: usize,
    ) -> Result<Vec<RawFrame>, StoreError> {
        let lower = match position {
            Some(id) => Bound::Excluded(id),
            None => Bound::Unbounded,
        };
        let dead = member.dead_topic();
        let mut frames = Vec::new();
        for frame in self.scan(&member.filter(), lower, Bound::Unbounded, false) {
            let frame = frame?;
            let topic = match frame.quick_topic() {
                Some(topic) => topic.to_string(),
                None => frame.parse()?.topic,
            };
            if topic == dead {
                continue;
            }
            frames.push(frame);
            if frames.len() >= limit {
                break;
            }
        }
        Ok(frames)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_starts_parse() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("3x").is_err());
        assert_eq!(Start::parse("new"), Ok(Start::New));
        assert_eq!(Start::parse("first"), Ok(Start::First));
        assert!(Start::parse("bogus").is_err());
    }

    #[test]
    fn a_delivery_carries_its_count_last() {
        let delivery = Delivery {
            frame: RawFrame {
                id: id::fresh_id(),
                json: br#"{"topic":"a","id":"x"}"#.to_vec(),
            },
            deliveries: 2,
        };
        assert_eq!(
            delivery.render(),
            br#"{"topic":"a","id":"x","deliveries":2}"#.to_vec()
        );
    }
}
