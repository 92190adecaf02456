//! `xs check <dir> [--repair]`: verify a stopped store, like sqlite's
//! `integrity_check`.
//!
//! Checked: every index entry points at a stored frame whose topic files
//! it there; every frame parses, and is indexed under each of its keys;
//! every referenced payload exists and matches its hash. `--repair`
//! rebuilds the topic index from the stream and lists frames whose payload
//! is missing (those cannot be rebuilt).

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::store::frame::Frame;
use crate::store::local::cas::parse_sri;
use crate::store::local::{id_from_key, Keyspaces, Local};
use crate::store::topic::index_prefixes;
use crate::store::StoreError;

const USAGE: &str = "usage: xs check <dir> [--repair]";

/// What a check found.
#[derive(Debug, Default)]
pub struct Report {
    pub frames: u64,
    pub index_entries: u64,
    pub problems: Vec<String>,
    pub missing_payloads: Vec<String>,
}

pub fn main(args: Vec<OsString>) -> i32 {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(args);
    let mut dir: Option<PathBuf> = None;
    let mut repair = false;
    loop {
        let arg = match parser.next() {
            Ok(Some(arg)) => arg,
            Ok(None) => break,
            Err(e) => return usage_error(e),
        };
        match arg {
            Short('h') | Long("help") => {
                println!("{USAGE}\n\nVerify a stopped store; --repair rebuilds its topic index.");
                return 0;
            }
            Long("repair") => repair = true,
            Value(value) if dir.is_none() => dir = Some(PathBuf::from(value)),
            other => return usage_error(other.unexpected()),
        }
    }
    let Some(dir) = dir else {
        return usage_error("missing <dir>");
    };
    match run(&dir, repair) {
        Ok(report) => print_report(&report, repair),
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

fn print_report(report: &Report, repaired: bool) -> i32 {
    for problem in &report.problems {
        println!("{problem}");
    }
    for id in &report.missing_payloads {
        println!("frame {id}: payload missing (cannot be repaired)");
    }
    let verdict = if repaired {
        "repaired"
    } else if report.problems.is_empty() && report.missing_payloads.is_empty() {
        "ok"
    } else {
        "damaged"
    };
    println!(
        "{verdict}: {} frames, {} index entries, {} problems",
        report.frames,
        report.index_entries,
        report.problems.len() + report.missing_payloads.len()
    );
    let clean = report.missing_payloads.is_empty() && (repaired || report.problems.is_empty());
    if clean {
        0
    } else {
        1
    }
}

/// Checks (and with `repair`, rebuilds the index of) the store in `dir`.
pub fn run(dir: &Path, repair: bool) -> Result<Report, StoreError> {
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
    let mut payload_present: std::collections::HashMap<String, bool> = Default::default();

    for guard in spaces.stream.iter() {
        let (key, value) = guard.into_inner().map_err(StoreError::fjall)?;
        report.frames += 1;
        let Some(id) = id_from_key(&key) else {
            report
                .problems
                .push(format!("stream key {key:?} is not a 16-byte id"));
            continue;
        };
        let frame = match Frame::from_json(&value) {
            Ok(frame) => frame,
            Err(e) => {
                report
                    .problems
                    .push(format!("frame {id}: unreadable JSON: {e}"));
                continue;
            }
        };
        if frame.id != id {
            report
                .problems
                .push(format!("frame {id}: its JSON carries id {}", frame.id));
        }
        for mut index_key in index_prefixes(&frame.topic) {
            index_key.extend_from_slice(&key);
            expected_index.insert(index_key);
        }
        if let Some(hash) = &frame.hash {
            let present = match payload_present.get(hash) {
                Some(present) => *present,
                None => {
                    let present = check_payload(&local, &frame, hash, &mut report)?;
                    payload_present.insert(hash.clone(), present);
                    present
                }
            };
            if !present {
                report
                    .missing_payloads
                    .push(format!("{} ({hash})", frame.id));
            }
        }
    }

    let mut seen_index = HashSet::new();
    for guard in spaces.idx_topic.iter() {
        let key = guard.key().map_err(StoreError::fjall)?.to_vec();
        report.index_entries += 1;
        if !expected_index.contains(&key) {
            let id = key
                .len()
                .checked_sub(16)
                .and_then(|at| id_from_key(&key[at..]))
                .map(|id| id.to_string())
                .unwrap_or_else(|| "?".into());
            report.problems.push(format!(
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
        report.problems.push(format!(
            "frame {id}: not indexed under {}",
            String::from_utf8_lossy(&missing[..at.saturating_sub(1)])
        ));
    }

    if repair && !report.problems.is_empty() {
        rebuild_index(spaces, &expected_index)?;
    }
    Ok(report)
}

/// Whether the payload exists; a corrupt one or a bad hash is a problem.
fn check_payload(
    local: &Local,
    frame: &Frame,
    hash: &str,
    report: &mut Report,
) -> Result<bool, StoreError> {
    let sri = match parse_sri(hash) {
        Ok(sri) => sri,
        Err(e) => {
            report.problems.push(format!("frame {}: {e}", frame.id));
            return Ok(true);
        }
    };
    match local.cas.read(&sri)? {
        None => Ok(false),
        Some(bytes) => {
            if sri.check(&bytes).is_err() {
                report
                    .problems
                    .push(format!("frame {}: payload does not match {hash}", frame.id));
            }
            Ok(true)
        }
    }
}

/// Replaces the whole topic index with the keys the stream implies.
fn rebuild_index(spaces: &Keyspaces, expected: &HashSet<Vec<u8>>) -> Result<(), StoreError> {
    let idx_topic = &spaces.idx_topic;
    let mut batch = spaces.db.batch();
    for guard in idx_topic.iter() {
        let key = guard.key().map_err(StoreError::fjall)?;
        if !expected.contains(key.as_ref()) {
            batch.remove(idx_topic, key.to_vec());
        }
    }
    for key in expected {
        batch.insert(idx_topic, key.clone(), []);
    }
    batch.commit().map_err(StoreError::fjall)?;
    spaces
        .db
        .persist(fjall::PersistMode::SyncAll)
        .map_err(StoreError::fjall)
}
