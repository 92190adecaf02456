//! `xs check <dir> [--repair] [--mark-schema]`: verify a stopped store,
//! like sqlite's `integrity_check`.
//!
//! Checked: every index entry points at a stored frame whose topic files
//! it there; every frame parses, and is indexed under each of its keys;
//! every referenced payload exists and matches its hash. Index damage is
//! what `--repair` can fix (it rebuilds the topic index from the stream);
//! the rest is listed with the command that would fix it, and keeps the
//! exit status 1 until it is fixed.
//!
//! Entries newer cross.stream writes are left alone: reserved `idx_topic`
//! keys (the schema version) are not index entries, and the values some
//! entries carry are neither checked nor rewritten.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::store::frame::Frame;
use crate::store::local::cas::parse_sri;
use crate::store::local::schema::{self, is_reserved_key};
use crate::store::local::{id_from_key, Keyspaces, Local};
use crate::store::topic::index_prefixes;
use crate::store::StoreError;

const USAGE: &str = "usage: xs check <dir> [--repair] [--mark-schema]";

const HELP: &str = "Verify a stopped store.

Options:
  --repair       rebuild the topic index from the stream
  --mark-schema  write the schema version newer cross.stream looks for, so
                 that it leaves topics such as order.ready as they are";

/// What a check found.
#[derive(Debug, Default)]
pub struct Report {
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

/// What `run` was asked to do besides checking.
#[derive(Debug, Default, Clone, Copy)]
pub struct Fixes {
    pub repair: bool,
    pub mark_schema: bool,
}

pub fn main(args: Vec<OsString>) -> i32 {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(args);
    let mut dir: Option<PathBuf> = None;
    let mut fixes = Fixes::default();
    loop {
        let arg = match parser.next() {
            Ok(Some(arg)) => arg,
            Ok(None) => break,
            Err(e) => return usage_error(e),
        };
        match arg {
            Short('h') | Long("help") => {
                println!("{USAGE}\n\n{HELP}");
                return 0;
            }
            Long("repair") => fixes.repair = true,
            Long("mark-schema") => fixes.mark_schema = true,
            Value(value) if dir.is_none() => dir = Some(PathBuf::from(value)),
            other => return usage_error(other.unexpected()),
        }
    }
    let Some(dir) = dir else {
        return usage_error("missing <dir>");
    };
    match run(&dir, fixes) {
        Ok(report) => print_report(&report, fixes),
        Err(StoreError::Locked(_)) => {
            eprintln!(
                "store locked: {} (already running): stop the server first",
                dir.display()
            );
            1
        }
        Err(e) => {
            eprintln!("xs check: {e}");
            1
        }
    }
}

fn usage_error(text: impl std::fmt::Display) -> i32 {
    eprintln!("error: {text}");
    eprintln!("{USAGE}");
    2
}

fn print_report(report: &Report, fixes: Fixes) -> i32 {
    for problem in report.index_problems.iter().chain(&report.frame_problems) {
        println!("{problem}");
    }
    let index_fixed = fixes.repair && !report.index_problems.is_empty();
    if index_fixed {
        println!(
            "fixed: rebuilt the topic index ({} index problems)",
            report.index_problems.len()
        );
    } else if !report.index_problems.is_empty() {
        println!("to fix the index problems: xs check <dir> --repair (server stopped)");
    }
    let unfixed = report.frame_problems.len()
        + if index_fixed {
            0
        } else {
            report.index_problems.len()
        };
    let verdict = match (unfixed, index_fixed) {
        (0, false) => "ok",
        (0, true) => "repaired",
        (_, _) => "damaged",
    };
    let schema = match report.schema_version {
        Some(version) => format!("schema version {version}"),
        None => "no schema version".to_string(),
    };
    println!(
        "{verdict}: {} frames, {} index entries, {schema}, {unfixed} problems{}",
        report.frames,
        report.index_entries,
        if fixes.repair && unfixed > 0 {
            " left (xs check cannot fix them: see each line)"
        } else {
            ""
        }
    );
    if unfixed == 0 {
        0
    } else {
        1
    }
}

/// Checks the store in `dir`; with `fixes.repair` rebuilds its index, with
/// `fixes.mark_schema` writes its schema version.
pub fn run(dir: &Path, fixes: Fixes) -> Result<Report, StoreError> {
    if !dir.join("fjall").exists() {
        return Err(StoreError::BadInput(format!(
            "no store at: {}",
            dir.display()
        )));
    }
    let local = Local::open(dir)?;
    let mut report = Report::default();
    // It has a database (checked above), so `open` made the keyspaces.
    let spaces = local.keyspaces()?;
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
    for guard in spaces.idx_topic.iter() {
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
        schema::mark(&spaces.idx_topic, &mut batch);
    }
    if !batch.is_empty() {
        batch.commit().map_err(StoreError::fjall)?;
        spaces
            .db
            .persist(fjall::PersistMode::SyncAll)
            .map_err(StoreError::fjall)?;
    }
    report.schema_version = schema::read(&spaces.idx_topic)?;
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
    let idx_topic = &spaces.idx_topic;
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
