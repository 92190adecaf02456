//! Verifies a stopped local store (`xs check`), like sqlite's
//! `integrity_check`.
//!
//! Checked: every index entry points at a stored frame whose topic files
//! it there; every frame parses, and is indexed under each of its keys;
//! every referenced payload exists and matches its hash. Index damage is
//! what a repair can fix (it rebuilds the topic index from the stream);
//! the rest is reported with the command that would fix it.
//!
//! Entries newer cross.stream writes are left alone: reserved `idx_topic`
//! keys (the schema version) are not index entries, and the values some
//! entries carry are neither checked nor rewritten.

use std::collections::HashSet;
use std::path::Path;

use super::cas::parse_sri;
use super::schema::{self, is_reserved_key};
use super::{id_from_key, Keyspaces, Local};
use crate::store::frame::Frame;
use crate::store::topic::index_prefixes;
use crate::store::StoreError;

/// What a check found.
#[derive(Debug, Default)]
pub struct CheckReport {
    pub frames: u64,
    pub index_entries: u64,
    /// Wrong or missing topic index entries: rebuilding the index fixes
    /// them.
    pub index_problems: Vec<String>,
    /// Everything else, each with what would fix it.
    pub frame_problems: Vec<String>,
    /// The schema version the store carries, if any.
    pub schema_version: Option<u32>,
}

/// What `check` is asked to do besides checking.
#[derive(Debug, Default, Clone, Copy)]
pub struct CheckFixes {
    pub repair: bool,
    pub mark_schema: bool,
}

/// Checks the store in `dir`; with `fixes.repair` rebuilds its index, with
/// `fixes.mark_schema` writes its schema version.
pub fn check(dir: &Path, fixes: CheckFixes) -> Result<CheckReport, StoreError> {
    if !dir.join("fjall").exists() {
        return Err(StoreError::BadInput(format!(
            "no store at: {}",
            dir.display()
        )));
    }
    let local = Local::open(dir)?;
    let mut report = CheckReport::default();
    // It has a database (checked above), so `open` made the keyspaces.
    let spaces = local.keyspaces()?;
    let index = spaces.index()?;
    let mut expected_index: HashSet<Vec<u8>> = HashSet::new();
    // Each distinct payload is read once; its verdict applies to every
    // frame that references it.
    let mut payload_verdicts: std::collections::HashMap<String, Option<String>> =
        Default::default();

    for guard in spaces.stream.iter() {
        let (key, value) = guard.into_inner().map_err(StoreError::fjall)?;
        report.frames += 1;
        let Some(id) = id_from_key(&key) else {
            report.frame_problems.push(format!(
                "stream key {key:?} is not a 16-byte id (cannot be repaired: no reader of the \
                 store can reach it)"
            ));
            continue;
        };
        let frame = match Frame::from_json(&value) {
            Ok(frame) => frame,
            Err(e) => {
                report.frame_problems.push(format!(
                    "frame {id}: unreadable JSON: {e} (remove it: xs remove <addr> {id})"
                ));
                continue;
            }
        };
        if frame.id != id {
            report.frame_problems.push(format!(
                "frame {id}: its JSON carries id {} (remove it: xs remove <addr> {id})",
                frame.id
            ));
        }
        for mut index_key in index_prefixes(&frame.topic) {
            index_key.extend_from_slice(&key);
            expected_index.insert(index_key);
        }
        if let Some(hash) = &frame.hash {
            let verdict = match payload_verdicts.get(hash) {
                Some(verdict) => verdict.clone(),
                None => {
                    let verdict = payload_problem(&local, hash)?;
                    payload_verdicts.insert(hash.clone(), verdict.clone());
                    verdict
                }
            };
            if let Some(problem) = verdict {
                report.frame_problems.push(format!(
                    "frame {id}: {problem} (store the original bytes again: xs cas-post <addr> \
                     < file; or remove the frame: xs remove <addr> {id})"
                ));
            }
        }
    }

    let mut seen_index = HashSet::new();
    for guard in index.iter() {
        let key = guard.key().map_err(StoreError::fjall)?.to_vec();
        if is_reserved_key(&key) {
            continue;
        }
        report.index_entries += 1;
        if !expected_index.contains(&key) {
            let id = key
                .len()
                .checked_sub(16)
                .and_then(|at| id_from_key(&key[at..]))
                .map(|id| id.to_string())
                .unwrap_or_else(|| "?".into());
            report.index_problems.push(format!(
                "index entry {} -> {id}: no such frame under that topic",
                String::from_utf8_lossy(&key[..key.len().saturating_sub(17)])
            ));
        }
        seen_index.insert(key);
    }
    for missing in expected_index.difference(&seen_index) {
        let at = missing.len().saturating_sub(16);
        let id = id_from_key(&missing[at..])
            .map(|id| id.to_string())
            .unwrap_or_default();
        report.index_problems.push(format!(
            "frame {id}: not indexed under {}",
            String::from_utf8_lossy(&missing[..at.saturating_sub(1)])
        ));
    }
    report.index_problems.sort();

    let mut batch = spaces.db.batch();
    if fixes.repair && !report.index_problems.is_empty() {
        rebuild_index(spaces, &expected_index, &mut batch)?;
    }
    if fixes.mark_schema {
        schema::mark(index, &mut batch);
    }
    if !batch.is_empty() {
        batch.commit().map_err(StoreError::fjall)?;
        spaces
            .db
            .persist(fjall::PersistMode::SyncAll)
            .map_err(StoreError::fjall)?;
    }
    report.schema_version = schema::read(index)?;
    Ok(report)
}

/// What is wrong with the payload `hash` names, if anything.
fn payload_problem(local: &Local, hash: &str) -> Result<Option<String>, StoreError> {
    let sri = match parse_sri(hash) {
        Ok(sri) => sri,
        Err(e) => return Ok(Some(e.to_string())),
    };
    Ok(match local.cas.read(&sri)? {
        None => Some(format!("payload missing ({hash})")),
        Some(bytes) if sri.check(&bytes).is_err() => Some(format!(
            "payload does not match {hash}: its file {} is damaged; delete it",
            local.cas.path_of(&sri).display()
        )),
        Some(_) => None,
    })
}

/// Makes the topic index (in `batch`) hold exactly the keys the stream
/// implies. Reserved keys stay, and so do the values of entries that are
/// right (newer cross.stream keeps a frame's expiry there).
fn rebuild_index(
    spaces: &Keyspaces,
    expected: &HashSet<Vec<u8>>,
    batch: &mut fjall::OwnedWriteBatch,
) -> Result<(), StoreError> {
    let idx_topic = spaces.index()?;
    let mut present = HashSet::new();
    for guard in idx_topic.iter() {
        let key = guard.key().map_err(StoreError::fjall)?;
        if is_reserved_key(&key) {
            continue;
        }
        if expected.contains(key.as_ref()) {
            present.insert(key.to_vec());
        } else {
            batch.remove(idx_topic, key.to_vec());
        }
    }
    for key in expected.difference(&present) {
        batch.insert(idx_topic, key.clone(), []);
    }
    Ok(())
}
