//! `xs check <dir> [--repair] [--mark-schema]`: verify a stopped store
//! (`store::check`) and report what it found, like sqlite's
//! `integrity_check`: index damage `--repair` can fix; the rest is listed
//! with the command that would fix it, and keeps the exit status 1 until
//! it is fixed.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::store::{check, CheckFixes, CheckReport, StoreError};

const USAGE: &str = "usage: xs check <dir> [--repair] [--mark-schema]";

const HELP: &str = "Verify a stopped store.

Options:
  --repair       rebuild the topic index from the stream
  --mark-schema  write the schema version newer cross.stream looks for, so
                 that it leaves topics such as order.ready as they are";

pub fn main(args: Vec<OsString>) -> i32 {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(args);
    let mut dir: Option<PathBuf> = None;
    let mut fixes = CheckFixes::default();
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
    match check(&dir, fixes) {
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

fn print_report(report: &CheckReport, fixes: CheckFixes) -> i32 {
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
