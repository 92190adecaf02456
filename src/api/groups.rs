//! Consumer group routes: `GET /consume/<group>` (a consumer's stream of
//! frames), `POST /ack/<group>`, `POST /nack/<group>`, `GET /groups`,
//! `DELETE /groups/<group>`.
//!
//! How a consumer's stream works: the connection joins the group, then
//! claims frames (`Store::group_claim`) and writes each as an NDJSON line
//! (the frame's JSON plus `"deliveries"`); with nothing to hand out it
//! waits for new frames, an ack or nack, or a short poll (a pending frame
//! falling due), and sends a lone newline about once a second so a client
//! that went away is noticed. When the stream ends for any reason the
//! consumer leaves: its pending frames are due at once for the others. A
//! deleted group ends its consumers' streams at their next claim.

use std::time::{Duration, Instant};

use serde_json::json;
use tiny_http::Request;

use super::query;
use super::respond::{Answer, ChunkedStream, Handled, Reply};
use super::write::read_small_body;
use crate::store::groups::{parse_duration, Member, Start, DEFAULT_ACK_WAIT, DEFAULT_MAX_INFLIGHT};
use crate::store::id::{fresh_id, parse_id};
use crate::store::{Id, Store, StoreError};

/// How often an idle consumer's stream checks its client is there.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// The longest a consumer waits before it looks again (a pending frame
/// may have fallen due; on Redis another node may have acked).
const POLL: Duration = Duration::from_millis(200);

/// The largest ack or nack body, in bytes (about 35,000 ids).
const MAX_IDS_BODY: u64 = 1024 * 1024;

/// A consumer's settings from the query.
fn member(group: &str, pairs: &[(String, String)]) -> Result<Member, String> {
    let topics = query::get(pairs, "topics")
        .or_else(|| query::get(pairs, "topic"))
        .ok_or("topics is required (e.g. ?topics=job.*)")?;
    let count = |key: &str| -> Result<Option<u64>, String> {
        query::get(pairs, key)
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    format!("invalid {key}: expected a non-negative integer, got '{v}'")
                })
            })
            .transpose()
    };
    let consumer = match query::get(pairs, "consumer") {
        Some(name) => name.to_string(),
        None => format!("c-{}", fresh_id()),
    };
    Ok(Member {
        group: group.to_string(),
        consumer,
        topics: topics.to_string(),
        start: query::get(pairs, "start")
            .map(Start::parse)
            .transpose()?
            .unwrap_or(Start::New),
        ack_wait: query::get(pairs, "ack-wait")
            .map(parse_duration)
            .transpose()?
            .unwrap_or(DEFAULT_ACK_WAIT),
        max_inflight: count("max-inflight")?
            .map(|n| n.min(usize::MAX as u64) as usize)
            .unwrap_or(DEFAULT_MAX_INFLIGHT),
        max_deliver: count("max-deliver")?.map(|n| n.min(u32::MAX as u64) as u32),
    })
}

/// Leaves the group when the stream ends, however it ends.
struct Leave {
    store: Store,
    member: Member,
}

impl Drop for Leave {
    fn drop(&mut self) {
        self.store.group_leave(&self.member);
    }
}

/// `GET /consume/<group>?topics=…`: this consumer's frames, as NDJSON.
pub fn consume(store: &Store, group: &str, pairs: &[(String, String)]) -> Handled {
    let member = member(group, pairs).map_err(|e| Reply::error(400, e))?;
    store.group_join(&member)?;
    let joined = Leave {
        store: store.clone(),
        member,
    };
    Ok(Answer::stream(move |request| stream(joined, request)))
}

/// Writes the member's frames until the client leaves or the server
/// stops; then it leaves the group.
fn stream(joined: Leave, request: Request) {
    let (store, member) = (&joined.store, &joined.member);
    let Ok(mut out) = ChunkedStream::start(request, "application/x-ndjson") else {
        return;
    };
    let mut last_write = Instant::now();
    let mut buf = Vec::with_capacity(64 * 1024);
    loop {
        let head = store.head().view();
        if head.closed {
            break;
        }
        let claim = match store.group_claim(member) {
            Ok(claim) => claim,
            // Deleted: the stream ends as when the server stops.
            Err(StoreError::NoGroup(_)) => break,
            Err(e) => {
                // Headers are gone already: end the stream, say why on
                // stderr; the client reconnects.
                eprintln!("xs: consumer {} of {}: {e}", member.consumer, member.group);
                break;
            }
        };
        if !claim.deliveries.is_empty() {
            buf.clear();
            for delivery in &claim.deliveries {
                buf.extend_from_slice(&delivery.render());
                buf.push(b'\n');
            }
            if out.chunk(&buf).and_then(|_| out.flush()).is_err() {
                return;
            }
            last_write = Instant::now();
            continue;
        }
        if last_write.elapsed() >= PROBE_EVERY {
            if out.chunk(b"\n").and_then(|_| out.flush()).is_err() {
                return;
            }
            last_write = Instant::now();
        }
        store.group_wait(member, head.version, claim.full, POLL);
    }
    let _ = out.finish();
}

/// The ids of an ack or nack body: separated by whitespace or commas.
fn ids_of(body: &[u8]) -> Result<Vec<Id>, String> {
    let text = std::str::from_utf8(body).map_err(|_| "ids must be UTF-8 text".to_string())?;
    let ids = text
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|t| !t.is_empty())
        .map(|t| parse_id(t).map_err(|e| format!("invalid id '{t}': {e}")))
        .collect::<Result<Vec<Id>, String>>()?;
    if ids.is_empty() {
        return Err("no ids in the body (one or more frame ids, by whitespace or commas)".into());
    }
    Ok(ids)
}

/// `POST /ack/<group>` and `POST /nack/<group>` with frame ids in the
/// body: `{"acked":[…],"unknown":[…]}` (or `nacked`); unknown ids were
/// not pending (acked already, or never handed out).
pub fn settle(store: &Store, request: &mut Request, group: &str, nack: bool) -> Handled<Reply> {
    let body = read_small_body(request, MAX_IDS_BODY)?;
    let ids = ids_of(&body).map_err(|e| Reply::error(400, e))?;
    let settled = if nack {
        store.group_nack(group, &ids)?
    } else {
        store.group_ack(group, &ids)?
    };
    let unknown: Vec<String> = ids
        .iter()
        .filter(|id| !settled.contains(id))
        .map(|id| id.to_string())
        .collect();
    let settled: Vec<String> = settled.iter().map(|id| id.to_string()).collect();
    let key = if nack { "nacked" } else { "acked" };
    Ok(Reply::json(format!(
        "{}\n",
        json!({ key: settled, "unknown": unknown })
    )))
}

/// `DELETE /groups/<group>`: `204`, or `404` when there is no such group.
pub fn delete(store: &Store, group: &str) -> Handled<Reply> {
    store.group_delete(group)?;
    Ok(Reply::status(204))
}

/// `GET /groups`: every group as a JSON array.
pub fn list(store: &Store) -> Handled<Reply> {
    let all: Vec<serde_json::Value> = store.groups()?.iter().map(|g| g.to_json()).collect();
    Ok(Reply::json(format!("{}\n", serde_json::Value::Array(all))))
}
