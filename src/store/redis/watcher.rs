//! One thread per node blocks on the namespace's streams (XREAD BLOCK) and
//! moves this node's `Head` and `KvSignal`: followers here then wait and
//! read exactly as they do on the local backend, whichever node appended.
//!
//! It keeps a cursor per stream (the last entry id it saw), so when Redis
//! goes away it dials again and goes on from the cursors: nothing is
//! skipped and nothing is delivered twice.

use std::sync::Arc;
use std::time::Duration;

use redis::Value;

use super::{entries, field, id_from_stream_id, stream_id, text, Fields, Redis};
use crate::store::head::{Head, TopicFrame};
use crate::store::id::Id;
use crate::store::kv::KvSignal;
use crate::store::{RawFrame, StoreError};

/// How long one XREAD blocks; also how soon a closing head is noticed.
const BLOCK: Duration = Duration::from_millis(500);
/// Entries one XREAD takes from each stream.
const READ_COUNT: usize = 1000;
/// Pause before dialing again after Redis failed.
const RETRY: Duration = Duration::from_millis(200);

/// Where the side streams end now: read before the namespace's last id
/// (which the head starts from), so nothing lands in between unseen.
pub struct StartCursors {
    ephemeral: String,
    kvlog: String,
}

pub fn start_cursors(redis: &Redis) -> Result<StartCursors, StoreError> {
    Ok(StartCursors {
        ephemeral: top(redis, "e")?,
        kvlog: top(redis, "kvlog")?,
    })
}

pub fn start(
    redis: Arc<Redis>,
    head: Arc<Head>,
    kv: Arc<KvSignal>,
    from: StartCursors,
) -> Result<(), StoreError> {
    let mut cursors = vec![
        (
            "s",
            head.view()
                .last_id
                .map(stream_id)
                .unwrap_or_else(|| "0-0".into()),
        ),
        ("e", from.ephemeral),
        ("kvlog", from.kvlog),
    ];
    std::thread::Builder::new()
        .name("redis-watch".into())
        .spawn(move || {
            let mut con = None;
            while !head.view().closed {
                if con.is_none() {
                    match redis.connect() {
                        Ok(c) => con = Some(c),
                        Err(_) => {
                            std::thread::sleep(RETRY);
                            continue;
                        }
                    }
                }
                let Some(c) = con.as_mut() else { continue };
                match read(&redis, c, &cursors) {
                    Ok(news) => deliver(&head, &kv, news, &mut cursors),
                    Err(_) => {
                        con = None;
                        std::thread::sleep(RETRY);
                    }
                }
            }
        })
        .map(|_| ())
        .map_err(|e| StoreError::io("starting the redis watcher", e))
}

/// The id of a stream's newest entry, or `0-0`.
fn top(redis: &Redis, name: &str) -> Result<String, StoreError> {
    let value: Value = redis.with(|con| {
        redis::cmd("XREVRANGE")
            .arg(redis.key(name))
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query(con)
    })?;
    Ok(entries(value)?
        .into_iter()
        .next()
        .map(|(sid, _)| sid)
        .unwrap_or_else(|| "0-0".into()))
}

/// What one XREAD brought: per stream name, its new entries.
type News = Vec<(String, Vec<(String, Fields)>)>;

fn read(
    redis: &Redis,
    con: &mut redis::Connection,
    cursors: &[(&str, String)],
) -> redis::RedisResult<News> {
    let mut cmd = redis::cmd("XREAD");
    cmd.arg("COUNT")
        .arg(READ_COUNT)
        .arg("BLOCK")
        .arg(BLOCK.as_millis() as u64);
    cmd.arg("STREAMS");
    for (name, _) in cursors {
        cmd.arg(redis.key(name));
    }
    for (_, cursor) in cursors {
        cmd.arg(cursor);
    }
    let answer: Value = cmd.query(con)?;
    let pairs: Vec<(Value, Value)> = match answer {
        Value::Nil => Vec::new(),
        Value::Array(items) => items
            .into_iter()
            .filter_map(|item| match item {
                Value::Array(mut pair) if pair.len() == 2 => {
                    let entries = pair.pop()?;
                    Some((pair.pop()?, entries))
                }
                _ => None,
            })
            .collect(),
        Value::Map(pairs) => pairs,
        _ => Vec::new(),
    };
    let mut news = Vec::new();
    for (key, value) in pairs {
        let Some(key) = text(key) else { continue };
        let name = key.rsplit(':').next().unwrap_or("").to_string();
        let parsed = entries(value).map_err(|e| {
            redis::RedisError::from((redis::ErrorKind::Parse, "stream entries", e.to_string()))
        })?;
        news.push((name, parsed));
    }
    Ok(news)
}

/// The frame id an entry of `s` or `e` carries.
fn frame_id_of(stream: &str, sid: &str, fields: &Fields) -> Option<Id> {
    match stream {
        "s" => id_from_stream_id(sid),
        "e" => field(fields, "x")
            .and_then(|hex| String::from_utf8(hex).ok())
            .and_then(|hex| u128::from_str_radix(&hex, 16).ok())
            .map(Id::from_u128),
        _ => None,
    }
}

/// Publishes one XREAD answer as one head move, so that an ephemeral
/// frame and a stored one appended after it arrive together, in order.
/// (XREAD reads every stream at one instant, and one script writes both
/// streams in id order, so the answer is a consistent cut, except where a
/// stream filled its COUNT: there may be more of it below the others'
/// newest. Everything above the lowest such stream's last frame waits for
/// the next read, cursors included.)
fn deliver(head: &Head, kv: &KvSignal, news: News, cursors: &mut [(&str, String)]) {
    let cap = news
        .iter()
        .filter(|(name, found)| name != "kvlog" && found.len() >= READ_COUNT)
        .filter_map(|(name, found)| {
            let (sid, fields) = found.last()?;
            frame_id_of(name, sid, fields)
        })
        .min();
    let mut last: Option<Id> = None;
    let mut imported = Vec::new();
    let mut ephemeral = Vec::new();
    let mut kv_changes = Vec::new();
    for (name, found) in news {
        let Some(cursor) = cursors.iter_mut().find(|(n, _)| *n == name) else {
            continue;
        };
        for (sid, fields) in found {
            if name == "kvlog" {
                if let Some(key) = field(&fields, "k") {
                    kv_changes.push((String::from_utf8_lossy(&key).into(), field(&fields, "v")));
                }
                cursor.1 = sid;
                continue;
            }
            let Some(id) = frame_id_of(&name, &sid, &fields) else {
                cursor.1 = sid;
                continue;
            };
            if cap.is_some_and(|cap| id > cap) {
                break;
            }
            cursor.1 = sid;
            last = last.max(Some(id));
            if name == "s" {
                // An imported frame is history, not news, but the head
                // still covers it: reads on this node must find it.
                if field(&fields, "i").as_deref() == Some(b"1") {
                    imported.push(id);
                }
                continue;
            }
            // Ephemeral (this node's own too: the head drops repeats).
            let (Some(json), Some(topic)) = (field(&fields, "j"), field(&fields, "t")) else {
                continue;
            };
            let hash = field(&fields, "h").unwrap_or_default();
            if !hash.is_empty() {
                let bytes = field(&fields, "b").unwrap_or_default();
                head.keep_ephemeral_payload(String::from_utf8_lossy(&hash).into(), bytes);
            }
            ephemeral.push(TopicFrame {
                topic: String::from_utf8_lossy(&topic).into(),
                frame: RawFrame { id, json },
            });
        }
    }
    if last.is_some() || !ephemeral.is_empty() || !imported.is_empty() {
        head.publish(last, ephemeral, &imported);
    }
    if !kv_changes.is_empty() {
        kv.publish(kv_changes);
    }
}
