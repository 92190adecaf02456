//! `xs retain <addr> [--json]`: the server's retention rules and what each
//! pattern holds (GET /retain) — aligned columns on a terminal (the byte
//! counts of removals only in the NDJSON), NDJSON with `--json` or when
//! piped.

use std::ffi::OsString;

use super::args::Stop;

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
    super::ps::listing(args, "/retain", "the retention rules", &COLUMNS)
}
