//! The `dedup` keyspace: idempotency keys seen within the dedup window
//! (`--dedup-window`), each with the frame its append made, and the same
//! keys by the time they were seen, so the oldest go first (when the
//! window passes, or beyond `DEDUP_MAX_KEYS`). The writer decides and
//! records keys inside its batch (`writer/batch.rs`).

/// The most idempotency keys kept: beyond it, the oldest are forgotten
/// before their window ends (a retry is recognised among the newest
/// `DEDUP_MAX_KEYS` keys whatever the window).
pub const DEDUP_MAX_KEYS: u64 = 100_000;

/// Keys and values of the `dedup` keyspace.
pub(in crate::store) struct DedupKey;

impl DedupKey {
    /// `k<key>`: when it was seen and the frame it appended.
    pub fn seen(key: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(key.len() + 1);
        out.push(b'k');
        out.extend_from_slice(key.as_bytes());
        out
    }

    /// `t<ms, 8 bytes big-endian><key>`: the keys oldest first.
    pub fn by_time(at: u64, key: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(key.len() + 9);
        out.push(b't');
        out.extend_from_slice(&at.to_be_bytes());
        out.extend_from_slice(key.as_bytes());
        out
    }

    pub fn split_by_time(by_time: &[u8]) -> Option<(u64, &str)> {
        let rest = by_time.strip_prefix(b"t")?;
        let at = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
        Some((at, std::str::from_utf8(&rest[8..]).ok()?))
    }

    pub fn split_value(value: &[u8]) -> Option<(u64, &[u8])> {
        let at = u64::from_be_bytes(value.get(..8)?.try_into().ok()?);
        Some((at, &value[8..]))
    }

    /// When the oldest key was seen (ms), if any key is kept.
    pub fn oldest(dedup: &fjall::Keyspace) -> Option<u64> {
        let guard = dedup.prefix(b"t").next()?;
        let key = guard.key().ok()?;
        Some(Self::split_by_time(&key)?.0)
    }
}
