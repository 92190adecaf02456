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
use crate::store::head::{EphemeralFrame, Head};
use crate::store::id::Id;
use crate::store::kv::KvSignal;
use crate::store::{RawFrame, StoreError};

/// How long one XREAD blocks; also how soon a closing head is noticed.
const BLOCK: Duration = Duration::from_millis(500);
/// Pause before dialing again after Redis failed.
const RETRY: Duration = Duration::from_millis(200);

pub fn start(redis: Arc<Redis>, head: Arc<Head>, kv: Arc<KvSignal>) -> Result<(), StoreError> {
    let mut cursors = vec![
        (
            "s",
            head.view()
                .last_id
                .map(stream_id)
                .unwrap_or_else(|| "0-0".into()),
        ),
        ("e", top(&redis, "e")?),
        ("kvlog", top(&redis, "kvlog")?),
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
                    Ok(news) => deliver(redis.node(), &head, &kv, news, &mut cursors),
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
        .arg(1000)
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

/// Publishes one XREAD answer as one head move, so that an ephemeral
/// frame and a stored one appended after it arrive together, in order.
fn deliver(node: &str, head: &Head, kv: &KvSignal, news: News, cursors: &mut [(&str, String)]) {
    let mut last: Option<Id> = None;
    let mut imported = Vec::new();
    let mut ephemeral = Vec::new();
    let mut kv_changes = Vec::new();
    for (name, found) in news {
        if let (Some((sid, _)), Some(cursor)) =
            (found.last(), cursors.iter_mut().find(|(n, _)| *n == name))
        {
            cursor.1 = sid.clone();
        }
        for (sid, fields) in found {
            match name.as_str() {
                "s" => {
                    let Some(id) = id_from_stream_id(&sid) else {
                        continue;
                    };
                    if field(&fields, "i").as_deref() == Some(b"1") {
                        imported.push(id);
                    } else {
                        last = last.max(Some(id));
                    }
                }
                // This node's own ephemeral frames are in its head already.
                "e" if field(&fields, "n").as_deref() == Some(node.as_bytes()) => {}
                "e" => {
                    let id = field(&fields, "x")
                        .and_then(|hex| String::from_utf8(hex).ok())
                        .and_then(|hex| u128::from_str_radix(&hex, 16).ok())
                        .map(Id::from_u128);
                    let (Some(id), Some(json), Some(topic)) =
                        (id, field(&fields, "j"), field(&fields, "t"))
                    else {
                        continue;
                    };
                    let hash = field(&fields, "h").unwrap_or_default();
                    if !hash.is_empty() {
                        let bytes = field(&fields, "b").unwrap_or_default();
                        head.keep_ephemeral_payload(String::from_utf8_lossy(&hash).into(), bytes);
                    }
                    last = last.max(Some(id));
                    ephemeral.push(EphemeralFrame {
                        topic: String::from_utf8_lossy(&topic).into(),
                        frame: RawFrame { id, json },
                    });
                }
                _ => {
                    if let Some(key) = field(&fields, "k") {
                        kv_changes
                            .push((String::from_utf8_lossy(&key).into(), field(&fields, "v")));
                    }
                }
            }
        }
    }
    if last.is_some() || !ephemeral.is_empty() || !imported.is_empty() {
        head.publish(last, ephemeral, &imported);
    }
    if !kv_changes.is_empty() {
        kv.publish(kv_changes);
    }
}
