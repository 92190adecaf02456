//! The Redis backend: frames, payloads and k/v of one namespace in Redis
//! (or Valkey), shared by every `xs serve` pointed at it.
//!
//! Frames live in a Redis stream whose entry ids are the frames' SCRU128
//! ids (the 128 bits split into the two u64 halves of a stream id), so the
//! stream's order is the id order and Redis itself refuses an id that is
//! not above the last. Every change goes through one Lua script
//! (`scripts.lua`) so it is atomic. Reads are plain XRANGE/XREVRANGE pages
//! on the stream or on a topic's index stream. One watcher thread per node
//! blocks on the streams (XREAD BLOCK) and moves the node's `Head`, so
//! followers wait exactly as they do on the local backend.
//!
//! Connections: a small pool of synchronous connections (the `redis`
//! crate's blocking API; no async runtime). A connection that fails is
//! dropped; the next call dials again, so Redis coming back heals by
//! itself. While Redis is unreachable every call fails fast with
//! `StoreError::Unavailable`.

pub(in crate::store) mod address;
pub(in crate::store) mod groups;
pub(in crate::store) mod scripts;
pub(in crate::store) mod sweeper;
pub(in crate::store) mod watcher;
pub(in crate::store) mod writer;

use std::ops::Bound;
use std::sync::Mutex;
use std::time::Duration;

use redis::Value;

pub use address::RedisAddress;

use super::id::Id;
use super::merge::MergeFrames;
use super::topic::{TopicFilter, TopicPattern};
use super::{FrameIter, RawFrame, StoreError};

/// How long dialing Redis may take before the call fails.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);
/// How long one command may take (a blocking read sets its own).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `--redis-replicas` waits for replicas: well inside the
/// connection's read timeout, so the answer always arrives.
const REPLICA_WAIT: Duration = Duration::from_secs(5);
/// Server errors that mean "not now" rather than "never": a busy or
/// loading Redis, a replica during failover, a cluster in flux.
const TRANSIENT: &[&str] = &[
    "LOADING",
    "BUSY",
    "READONLY",
    "MASTERDOWN",
    "TRYAGAIN",
    "CLUSTERDOWN",
    "NOREPLICAS",
];
/// Idle connections kept for reuse.
const POOL_KEEP: usize = 16;
/// Frames fetched per XRANGE page.
const PAGE: usize = 512;

/// The largest payload one Redis string holds.
pub const MAX_PAYLOAD: u64 = 512 * 1024 * 1024;

/// One namespace of one Redis.
pub struct Redis {
    address: RedisAddress,
    client: redis::Client,
    idle: Mutex<Vec<redis::Connection>>,
    prefix: String,
    script: scripts::Script,
    /// `--redis-replicas`: replicas that must acknowledge each write.
    replicas: u32,
    /// This process among the nodes sharing the namespace.
    node: String,
    /// Consumer groups' script (`groups.rs`).
    groups: groups::GroupScript,
}

impl Redis {
    /// Connects and checks that Redis answers and can run the scripts.
    pub fn open(address: RedisAddress, replicas: u32) -> Result<Redis, StoreError> {
        let client = redis::Client::open(address.url.as_str())
            .map_err(|e| StoreError::BadInput(format!("invalid --backend address: {e}")))?;
        let prefix = address.key_prefix();
        let redis = Redis {
            address,
            client,
            idle: Mutex::new(Vec::new()),
            prefix,
            script: scripts::Script::default(),
            replicas,
            node: crate::store::id::fresh_id().to_string(),
            groups: Default::default(),
        };
        redis.with(|con| redis::cmd("PING").query::<Value>(con))?;
        Ok(redis)
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn address(&self) -> &RedisAddress {
        &self.address
    }

    /// The key named `name` in this namespace.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// A fresh connection (for a thread that blocks on it).
    pub fn connect(&self) -> Result<redis::Connection, StoreError> {
        self.connect_within(CONNECT_TIMEOUT, COMMAND_TIMEOUT)
    }

    /// A fresh connection whose dialing and commands time out as given.
    pub fn connect_within(
        &self,
        dial: Duration,
        command: Duration,
    ) -> Result<redis::Connection, StoreError> {
        let con = self
            .client
            .get_connection_with_timeout(dial)
            .map_err(|e| self.unavailable(&e))?;
        con.set_read_timeout(Some(command))
            .and_then(|_| con.set_write_timeout(Some(command)))
            .map_err(|e| self.unavailable(&e))?;
        Ok(con)
    }

    /// Runs `f` on a pooled connection; a connection that failed is not
    /// put back.
    pub fn with<T>(
        &self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, StoreError> {
        let pooled = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut con = match pooled {
            Some(con) => con,
            None => self.connect()?,
        };
        match f(&mut con) {
            Ok(value) => {
                let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
                if idle.len() < POOL_KEEP {
                    idle.push(con);
                }
                Ok(value)
            }
            Err(e) => {
                // A broken connection means the others are likely broken
                // too (Redis restarted): dial afresh next time.
                if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
                    self.idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
                }
                Err(self.error(&e))
            }
        }
    }

    /// A Redis error as a store error: a server's answer is a storage
    /// error; anything about reaching it means "unavailable".
    pub fn error(&self, e: &redis::RedisError) -> StoreError {
        if e.is_io_error()
            || e.is_timeout()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.code().is_some_and(|code| TRANSIENT.contains(&code))
        {
            self.unavailable(e)
        } else {
            StoreError::Storage(format!("redis at {}: {e}", self.address.shown))
        }
    }

    fn unavailable(&self, e: &redis::RedisError) -> StoreError {
        StoreError::Unavailable(format!("redis at {} unreachable: {e}", self.address.shown))
    }

    /// Runs one script operation.
    pub fn run_script(&self, args: &[&[u8]]) -> Result<Value, StoreError> {
        let stream = self.key("s");
        let prefix = self.prefix.as_bytes();
        let (value, replicas) = self.with(|con| {
            let value = self.script.run(con, &stream, prefix, args)?;
            Ok((value, self.wait_replicas(con)?))
        })?;
        self.check_replicas(replicas)?;
        Ok(value)
    }

    /// With `--redis-replicas N`: how many replicas have this connection's
    /// writes so far (WAIT covers the writes of the connection it runs on,
    /// so it runs on the writing one).
    fn wait_replicas(&self, con: &mut redis::Connection) -> redis::RedisResult<i64> {
        if self.replicas == 0 {
            return Ok(0);
        }
        redis::cmd("WAIT")
            .arg(self.replicas)
            .arg(REPLICA_WAIT.as_millis() as u64)
            .query(con)
    }

    fn check_replicas(&self, got: i64) -> Result<(), StoreError> {
        if self.replicas > 0 && got < self.replicas as i64 {
            return Err(StoreError::Unavailable(format!(
                "only {got} of {} replicas acknowledged the write in {REPLICA_WAIT:?}",
                self.replicas
            )));
        }
        Ok(())
    }

    // ------------------------------------------------------------ frames

    /// The newest id handed out in this namespace (stored or ephemeral).
    pub fn last_id(&self) -> Result<Option<Id>, StoreError> {
        let last: Option<String> =
            self.with(|con| redis::cmd("GET").arg(self.key("last")).query(con))?;
        Ok(last
            .and_then(|hex| u128::from_str_radix(&hex, 16).ok())
            .map(Id::from_u128))
    }

    pub fn get(&self, id: Id) -> Result<Option<RawFrame>, StoreError> {
        let sid = stream_id(id);
        let entries: Value = self.with(|con| {
            redis::cmd("XRANGE")
                .arg(self.key("s"))
                .arg(&sid)
                .arg(&sid)
                .query(con)
        })?;
        Ok(parse_entries(entries)?.into_iter().next())
    }

    /// Frames matching `filter` within the bounds, in id order (or
    /// reverse), fetched page by page.
    pub fn scan(
        self: &std::sync::Arc<Self>,
        filter: &TopicFilter,
        lower: Bound<Id>,
        upper: Bound<Id>,
        reverse: bool,
    ) -> FrameIter {
        let keys: Vec<String> = match filter {
            TopicFilter::All => vec![self.key("s")],
            TopicFilter::Patterns(patterns) => patterns
                .iter()
                .map(|p| match p {
                    TopicPattern::Exact(topic) => self.key(&format!("t:{topic}")),
                    TopicPattern::Prefix(prefix) => self.key(&format!("p:{prefix}")),
                })
                .collect(),
        };
        let mut pages: Vec<FrameIter> = keys
            .into_iter()
            .map(|key| {
                Box::new(Pages {
                    redis: self.clone(),
                    key,
                    lower,
                    upper,
                    reverse,
                    buffered: std::collections::VecDeque::new(),
                    done: false,
                }) as FrameIter
            })
            .collect();
        if pages.len() == 1 {
            return pages.remove(0);
        }
        Box::new(MergeFrames::new(pages, reverse))
    }

    // ---------------------------------------------------------- payloads

    /// Stores a payload under its hash. Plain SET (not NX): it also lifts
    /// the grace expiry of a payload whose last frame just went.
    pub fn put_payload(&self, hash: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let replicas = self.with(|con| {
            redis::cmd("SET")
                .arg(self.key(&format!("cas:{hash}")))
                .arg(bytes)
                .query::<Value>(con)?;
            self.wait_replicas(con)
        })?;
        self.check_replicas(replicas)
    }

    pub fn read_payload(&self, hash: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.with(|con| {
            redis::cmd("GET")
                .arg(self.key(&format!("cas:{hash}")))
                .query(con)
        })
    }

    /// Removes `ids` (retention) unless frames under `index` were removed
    /// since their removal count was `seen`: then `None`, nothing removed.
    pub fn remove_if_unchanged(
        &self,
        index: &str,
        ids: &[Id],
        seen: u64,
    ) -> Result<Option<u64>, StoreError> {
        let seen = seen.to_string();
        let sids: Vec<String> = ids.iter().map(|id| stream_id(*id)).collect();
        let mut args: Vec<&[u8]> = vec![b"retain", index.as_bytes(), seen.as_bytes()];
        args.extend(sids.iter().map(|sid| sid.as_bytes()));
        match self.run_script(&args)? {
            Value::Int(n) if n >= 0 => Ok(Some(n as u64)),
            _ => Ok(None),
        }
    }

    /// A payload's size in bytes (0 when it is gone).
    pub fn payload_size(&self, hash: &str) -> Result<u64, StoreError> {
        self.with(|con| {
            redis::cmd("STRLEN")
                .arg(self.key(&format!("cas:{hash}")))
                .query(con)
        })
    }

    /// Frames removed so far under `index` (`t:<topic>`, `p:<prefix.>` or
    /// `*`), by any node (`P.removed`, counted by the scripts' `remove`):
    /// the retention sweeper's sign that someone else removed frames.
    pub fn removal_count(&self, index: &str) -> Result<u64, StoreError> {
        let count: Option<u64> = self.with(|con| {
            redis::cmd("HGET")
                .arg(self.key("removed"))
                .arg(index)
                .query(con)
        })?;
        Ok(count.unwrap_or(0))
    }

    // ------------------------------------------------------------- leases

    /// Takes the lease on `processor` for `ms`, or renews ours; whether
    /// this node holds it now.
    pub fn lease(&self, processor: &str, ms: u64) -> Result<bool, StoreError> {
        let ms = ms.to_string();
        let held = self.run_script(&[
            b"lease",
            processor.as_bytes(),
            self.node.as_bytes(),
            ms.as_bytes(),
        ])?;
        Ok(matches!(held, Value::Int(1)))
    }

    /// Renews (or takes) a lease on the caller's own connection: the
    /// renewer's, with short timeouts, never waiting behind other work.
    pub fn lease_on(
        &self,
        con: &mut redis::Connection,
        processor: &str,
        ms: u64,
    ) -> redis::RedisResult<bool> {
        let ms = ms.to_string();
        let stream = self.key("s");
        let args: [&[u8]; 4] = [
            b"lease",
            processor.as_bytes(),
            self.node.as_bytes(),
            ms.as_bytes(),
        ];
        let held = self
            .script
            .run(con, &stream, self.prefix.as_bytes(), &args)?;
        Ok(matches!(held, Value::Int(1)))
    }

    /// Lets go of our lease on `processor` (another node may take it).
    pub fn unlease(&self, processor: &str) -> Result<(), StoreError> {
        self.run_script(&[b"unlease", processor.as_bytes(), self.node.as_bytes()])
            .map(|_| ())
    }

    // ---------------------------------------------------------------- k/v

    pub fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.with(|con| redis::cmd("HGET").arg(self.key("kv")).arg(key).query(con))
    }

    pub fn kv_list(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let all: Vec<(String, Vec<u8>)> =
            self.with(|con| redis::cmd("HGETALL").arg(self.key("kv")).query(con))?;
        let mut found: Vec<(String, Vec<u8>)> = all
            .into_iter()
            .filter(|(key, _)| key.starts_with(prefix))
            .collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(found)
    }
}

/// Reads one key's entries a page at a time.
struct Pages {
    redis: std::sync::Arc<Redis>,
    key: String,
    lower: Bound<Id>,
    upper: Bound<Id>,
    reverse: bool,
    buffered: std::collections::VecDeque<RawFrame>,
    done: bool,
}

impl Pages {
    fn fetch(&mut self) -> Result<(), StoreError> {
        let start = match self.lower {
            Bound::Included(id) => stream_id(id),
            Bound::Excluded(id) => format!("({}", stream_id(id)),
            Bound::Unbounded => "-".into(),
        };
        let end = match self.upper {
            Bound::Included(id) => stream_id(id),
            Bound::Excluded(id) => format!("({}", stream_id(id)),
            Bound::Unbounded => "+".into(),
        };
        let (command, first, second) = if self.reverse {
            ("XREVRANGE", end, start)
        } else {
            ("XRANGE", start, end)
        };
        let entries: Value = self.redis.with(|con| {
            redis::cmd(command)
                .arg(&self.key)
                .arg(first)
                .arg(second)
                .arg("COUNT")
                .arg(PAGE)
                .query(con)
        })?;
        let frames = parse_entries(entries)?;
        if frames.len() < PAGE {
            self.done = true;
        }
        if let Some(last) = frames.last() {
            if self.reverse {
                self.upper = Bound::Excluded(last.id);
            } else {
                self.lower = Bound::Excluded(last.id);
            }
        }
        self.buffered.extend(frames);
        Ok(())
    }
}

impl Iterator for Pages {
    type Item = Result<RawFrame, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buffered.is_empty() && !self.done {
            if let Err(e) = self.fetch() {
                self.done = true;
                return Some(Err(e));
            }
        }
        self.buffered.pop_front().map(Ok)
    }
}

/// A frame id as a Redis stream id: its high and low 64 bits.
pub fn stream_id(id: Id) -> String {
    let n = id.to_u128();
    format!("{}-{}", (n >> 64) as u64, n as u64)
}

/// A Redis stream id back to a frame id.
pub fn id_from_stream_id(text: &str) -> Option<Id> {
    let (high, low) = text.split_once('-')?;
    let high: u64 = high.parse().ok()?;
    let low: u64 = low.parse().ok()?;
    Some(Id::from_u128(((high as u128) << 64) | low as u128))
}

/// An id as the fixed-width hex the scripts compare.
pub fn hex_id(id: Id) -> String {
    format!("{:032x}", id.to_u128())
}

/// XRANGE's answer: `[[id, [field, value, ...]], ...]`.
pub fn parse_entries(value: Value) -> Result<Vec<RawFrame>, StoreError> {
    let mut frames = Vec::new();
    for (sid, fields) in entries(value)? {
        let id = id_from_stream_id(&sid).ok_or_else(|| {
            StoreError::Storage(format!("redis stream id {sid} is not a frame id"))
        })?;
        let json = field(&fields, "j")
            .ok_or_else(|| StoreError::Storage(format!("redis entry {sid} has no frame")))?;
        frames.push(RawFrame { id, json });
    }
    Ok(frames)
}

/// An entry's fields, by name.
pub type Fields = Vec<(String, Vec<u8>)>;

/// A stream's entries as (id, fields).
pub fn entries(value: Value) -> Result<Vec<(String, Fields)>, StoreError> {
    let bad = || StoreError::Storage("unexpected answer from redis to a stream read".into());
    let Value::Array(items) = value else {
        return match value {
            Value::Nil => Ok(Vec::new()),
            _ => Err(bad()),
        };
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let Value::Array(mut pair) = item else {
            return Err(bad());
        };
        if pair.len() != 2 {
            return Err(bad());
        }
        let fields = pair.pop().ok_or_else(bad)?;
        let sid = text(pair.pop().ok_or_else(bad)?).ok_or_else(bad)?;
        let fields = match fields {
            Value::Array(flat) => {
                let mut named = Vec::with_capacity(flat.len() / 2);
                let mut flat = flat.into_iter();
                while let (Some(name), Some(value)) = (flat.next(), flat.next()) {
                    let name = text(name).ok_or_else(bad)?;
                    named.push((name, bytes(value).unwrap_or_default()));
                }
                named
            }
            Value::Map(pairs) => pairs
                .into_iter()
                .filter_map(|(k, v)| Some((text(k)?, bytes(v).unwrap_or_default())))
                .collect(),
            Value::Nil => Vec::new(),
            _ => return Err(bad()),
        };
        out.push((sid, fields));
    }
    Ok(out)
}

pub fn field(fields: &[(String, Vec<u8>)], name: &str) -> Option<Vec<u8>> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
}

pub fn bytes(value: Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        Value::Okay => Some(b"OK".to_vec()),
        Value::Int(n) => Some(n.to_string().into_bytes()),
        _ => None,
    }
}

pub fn text(value: Value) -> Option<String> {
    bytes(value).and_then(|b| String::from_utf8(b).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_keep_the_id_order() {
        let a = Id::from_u128(5);
        let b = Id::from_u128((1u128 << 64) + 1);
        let c = Id::from_u128(u128::MAX >> 1);
        for id in [a, b, c, crate::store::id::fresh_id()] {
            assert_eq!(id_from_stream_id(&stream_id(id)), Some(id));
            assert_eq!(hex_id(id).len(), 32);
        }
        assert_eq!(stream_id(b), "1-1");
        assert!(hex_id(a) < hex_id(b) && hex_id(b) < hex_id(c));
        assert_eq!(id_from_stream_id("x-1"), None);
    }
}
