//! `xs ps <addr> [--json]`: the process table — aligned columns on a
//! terminal, NDJSON with `--json` or when piped. `listing` is that shape
//! for any NDJSON route (`xs retain` uses it too).

use std::ffi::OsString;
use std::io::IsTerminal;

use super::address::Address;
use super::args::{exactly, parser, text, Stop};
use super::client::{call, Request};
use super::output::to_stdout;

const COLUMNS: [&str; 8] = [
    "name",
    "kind",
    "state",
    "pid",
    "since",
    "restarts",
    "last_exit",
    "last_error",
];

pub fn ps(args: Vec<OsString>) -> Result<(), Stop> {
    listing(args, "/ps", "the process table", &COLUMNS)
}

/// `xs <command> <addr> [--json]` for a route that answers NDJSON rows
/// (`/ps`, `/retain`): aligned `columns` on a terminal; the NDJSON itself
/// with `--json` or when piped.
pub fn listing(
    args: Vec<OsString>,
    route: &str,
    what: &str,
    columns_shown: &[&str],
) -> Result<(), Stop> {
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
    let mut response = call(&address, Request::get(route.to_string()))?;
    let body = response
        .body
        .text(16 * 1024 * 1024)
        .map_err(|e| Stop::Failed(format!("reading {what}: {e}")))?;
    if json || !std::io::stdout().is_terminal() {
        return to_stdout(body.as_bytes());
    }
    to_stdout(columns(columns_shown, &body).as_bytes())
}

/// The NDJSON rows' `names` fields as aligned columns under a header
/// (`-` for a missing or null field).
pub fn columns(names: &[&str], ndjson: &str) -> String {
    let mut rows: Vec<Vec<String>> = vec![names.iter().map(|c| c.to_uppercase()).collect()];
    for line in ndjson.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(row) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        rows.push(
            names
                .iter()
                .map(|column| match row.get(*column) {
                    None | Some(serde_json::Value::Null) => "-".to_string(),
                    Some(serde_json::Value::String(s)) => {
                        s.lines().next().unwrap_or("").to_string()
                    }
                    Some(other) => other.to_string(),
                })
                .collect(),
        );
    }
    let widths: Vec<usize> = (0..names.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_line_up() {
        let text = columns(
            &COLUMNS,
            r#"{"name":"web","kind":"service","state":"running","pid":42,"since":"2026-01-01T00:00:00+00:00","restarts":0,"last_exit":null,"last_error":null}"#,
        );
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("NAME  KIND"));
        assert!(lines[1].starts_with("web   service  running  42"));
    }
}
