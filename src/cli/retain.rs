//! `xs retain <addr> [--json]`: the server's retention rules and what each
//! pattern holds (GET /retain) — aligned columns on a terminal (the byte
//! counts of removals only in the NDJSON), NDJSON with `--json` or when
//! piped.

use std::ffi::OsString;
use std::io::IsTerminal;

use super::address::Address;
use super::args::{exactly, parser, text, Stop};
use super::client::{call, Request};
use super::output::to_stdout;

const COLUMNS: [&str; 9] = [
    "pattern",
    "rules",
    "frames",
    "bytes",
    "oldest",
    "oldest_age_ms",
    "swept_at",
    "removed_frames",
    "removed_total_frames",
];

pub fn retain(args: Vec<OsString>) -> Result<(), Stop> {
    use lexopt::prelude::*;
    let mut json = false;
    let mut positionals = Vec::new();
    let mut p = parser(args);
    while let Some(arg) = p.next()? {
        match arg {
            Short('h') | Long("help") => return Err(Stop::Help),
            Long("json") => json = true,
            Value(value) => positionals.push(text(value)?),
            _ => return Err(arg.unexpected().into()),
        }
    }
    let [addr] = exactly(positionals, ["addr"])?;
    let address = Address::parse(&addr)?;
    let mut response = call(&address, Request::get("/retain".to_string()))?;
    let body = response
        .body
        .text(16 * 1024 * 1024)
        .map_err(|e| Stop::Failed(format!("reading the retention rules: {e}")))?;
    if json || !std::io::stdout().is_terminal() {
        return to_stdout(body.as_bytes());
    }
    to_stdout(super::ps::columns(&COLUMNS, &body).as_bytes())
}
