//! The schema version newer cross.stream keeps in a store folder.
//!
//! cross.stream 0.14 and later keep a version under the reserved key
//! `\0schema_version` in `idx_topic` (a u32, little-endian; 1 today) and
//! migrate a store that has none: version 0 → 1 renames what it takes for
//! lifecycle topics of cross.stream 0.12 and older (`<name>.spawn`,
//! `<name>.ready`, `<name>.active`, …) into the `xs.<kind>.<name>.<event>`
//! names. In a folder written by xs such topics are the user's own
//! (`order.ready`, `worker.active`), so a store without the key would have
//! them renamed by the first newer cross.stream that opens it.
//!
//! So xs writes version 1 into every store it makes and into every store
//! it opens that holds no topic the migration would rename. A store that
//! does hold such topics is left unmarked, because they may be genuine old
//! lifecycle frames that cross.stream should migrate; `xs serve` says so
//! and `xs check --mark-schema` marks it on the owner's word.
//!
//! The key starts with a NUL byte, which no topic can (topics start with a
//! letter or `_`), so topic scans never meet it.

use fjall::{Keyspace, OwnedWriteBatch as WriteBatch};

use crate::store::StoreError;

/// The reserved `idx_topic` key that holds the version.
pub const SCHEMA_VERSION_KEY: &[u8] = b"\0schema_version";

/// The version whose layout and topic names xs writes.
pub const SCHEMA_VERSION: u32 = 1;

/// Whether `key` in `idx_topic` is reserved (not a topic entry).
pub fn is_reserved_key(key: &[u8]) -> bool {
    key.first() == Some(&0)
}

/// What a store's schema version is after `ensure`.
#[derive(Debug, PartialEq, Eq)]
pub enum Schema {
    /// The key is there (now or already) with this version.
    Marked(u32),
    /// No key, because these topics (a few examples, sorted) would be
    /// renamed by newer cross.stream's migration.
    Unmarked { renamable: Vec<String> },
}

/// The stored version, if any. A value that is not four bytes counts as
/// none, as in cross.stream.
pub fn read(idx_topic: &Keyspace) -> Result<Option<u32>, StoreError> {
    let value = idx_topic
        .get(SCHEMA_VERSION_KEY)
        .map_err(StoreError::fjall)?;
    Ok(value
        .and_then(|v| <[u8; 4]>::try_from(v.as_ref()).ok())
        .map(u32::from_le_bytes))
}

/// Marks the store (in `batch`) unless it is marked already or holds
/// topics the migration would rename. The caller commits and persists.
pub fn ensure(idx_topic: &Keyspace, batch: &mut WriteBatch) -> Result<Schema, StoreError> {
    if let Some(version) = read(idx_topic)? {
        return Ok(Schema::Marked(version));
    }
    let renamable = renamable_topics(idx_topic, 5)?;
    if !renamable.is_empty() {
        return Ok(Schema::Unmarked { renamable });
    }
    mark(idx_topic, batch);
    Ok(Schema::Marked(SCHEMA_VERSION))
}

/// Writes the current version (in `batch`), whatever the topics.
pub fn mark(idx_topic: &Keyspace, batch: &mut WriteBatch) {
    batch.insert(idx_topic, SCHEMA_VERSION_KEY, SCHEMA_VERSION.to_le_bytes());
}

/// Up to `limit` distinct topics that newer cross.stream's migration to
/// version 1 would rename. Seeks from one topic to the next in the index,
/// so it costs a seek per distinct topic and prefix, not a read per frame.
pub fn renamable_topics(idx_topic: &Keyspace, limit: usize) -> Result<Vec<String>, StoreError> {
    let mut found = Vec::new();
    // Past every reserved key: they start with NUL.
    let mut from: Vec<u8> = vec![1];
    while found.len() < limit {
        let Some(guard) = idx_topic.range(from.as_slice()..).next() else {
            break;
        };
        let key = guard.key().map_err(StoreError::fjall)?;
        // `topic 0x00 id`: the topic ends 17 bytes before the key does.
        let Some(topic) = key
            .len()
            .checked_sub(17)
            .filter(|&end| key[end] == 0)
            .map(|end| &key[..end])
        else {
            // Not an entry of ours or cross.stream's: step past it.
            from = key.to_vec();
            from.push(0);
            continue;
        };
        if let Ok(topic) = std::str::from_utf8(topic) {
            if !topic.ends_with('.') && renamed_by_migration(topic) {
                found.push(topic.to_string());
            }
        }
        // The next key past every `topic 0x00 …` entry.
        from = topic.to_vec();
        from.push(1);
    }
    Ok(found)
}

/// The topic endings newer cross.stream reads as lifecycle topics of 0.12
/// and older (outside the `xs.` namespace).
const OLD_LIFECYCLE_SUFFIXES: &[&str] = &[
    ".nu",
    ".parse.error",
    ".spawn",
    ".terminate",
    ".running",
    ".shutdown",
    ".stopped",
    ".define",
    ".ready",
    ".register",
    ".unregister",
    ".active",
    ".unregistered",
];

/// Whether the migration to version 1 would rename `topic`.
fn renamed_by_migration(topic: &str) -> bool {
    !topic.starts_with("xs.")
        && OLD_LIFECYCLE_SUFFIXES
            .iter()
            .any(|suffix| topic.len() > suffix.len() && topic.ends_with(suffix))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fjall::{Database, KeyspaceCreateOptions};

    fn index_with(topics: &[&str]) -> (tempfile::TempDir, Database, Keyspace) {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::builder(dir.path().join("fjall")).open().unwrap();
        let idx = db
            .keyspace("idx_topic", KeyspaceCreateOptions::default)
            .unwrap();
        for (n, topic) in topics.iter().enumerate() {
            for i in 0..3u8 {
                let mut key = topic.as_bytes().to_vec();
                key.push(0);
                key.extend_from_slice(&[n as u8, i, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
                idx.insert(key, []).unwrap();
            }
        }
        (dir, db, idx)
    }

    fn ensure_now(db: &Database, idx: &Keyspace) -> Schema {
        let mut batch = db.batch();
        let schema = ensure(idx, &mut batch).unwrap();
        batch.commit().unwrap();
        schema
    }

    #[test]
    fn the_migrations_old_names_are_recognised_and_ours_are_not() {
        for topic in [
            "order.ready",
            "worker.active",
            "api.spawn",
            "game.nu",
            "x.parse.error",
        ] {
            assert!(renamed_by_migration(topic), "{topic}");
        }
        for topic in [
            "xs.actor.a.active",
            "xs.service.api.stopped",
            "note",
            "api.recv",
            "readiness",
            "greet.call",
        ] {
            assert!(!renamed_by_migration(topic), "{topic}");
        }
    }

    #[test]
    fn a_store_with_current_topics_only_is_marked() {
        let (_dir, db, idx) = index_with(&["note", "xs.start", "xs.actor.a.create", "user.msg"]);
        assert_eq!(read(&idx).unwrap(), None);
        assert_eq!(ensure_now(&db, &idx), Schema::Marked(1));
        assert_eq!(read(&idx).unwrap(), Some(1));
        assert_eq!(
            idx.get(SCHEMA_VERSION_KEY).unwrap().unwrap().as_ref(),
            &[1, 0, 0, 0]
        );
    }

    #[test]
    fn a_store_with_topics_the_migration_renames_is_left_unmarked() {
        let (_dir, db, idx) = index_with(&["note", "order.ready", "worker.active", "order.paid"]);
        assert_eq!(
            ensure_now(&db, &idx),
            Schema::Unmarked {
                renamable: vec!["order.ready".into(), "worker.active".into()]
            }
        );
        assert_eq!(read(&idx).unwrap(), None);
        let mut batch = db.batch();
        mark(&idx, &mut batch);
        batch.commit().unwrap();
        assert_eq!(ensure_now(&db, &idx), Schema::Marked(1));
    }

    #[test]
    fn a_marked_store_keeps_its_version() {
        let (_dir, db, idx) = index_with(&["order.ready"]);
        idx.insert(SCHEMA_VERSION_KEY, 7u32.to_le_bytes()).unwrap();
        assert_eq!(ensure_now(&db, &idx), Schema::Marked(7));
        assert!(is_reserved_key(SCHEMA_VERSION_KEY));
        assert!(!is_reserved_key(b"note\0"));
    }
}
