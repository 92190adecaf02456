//! `xs eval <addr> [file] [-c <script>]`: run a Nushell script on the
//! server and stream its result to stdout.

use std::ffi::OsString;
use std::io::Read;

use super::address::Address;
use super::args::{parser, text, text_value, usage, Stop};
use super::client::{call, Request, RequestBody};
use super::output::{body_to_stdout, Lines};

/// `xs eval <addr> [file|-] [-c <script>]`
pub fn eval(args: Vec<OsString>) -> Result<(), Stop> {
    use lexopt::prelude::*;
    let mut commands: Option<String> = None;
    let mut positionals = Vec::new();
    let mut p = parser(args);
    while let Some(arg) = p.next()? {
        match arg {
            Short('h') | Long("help") => return Err(Stop::Help),
            Short('c') | Long("commands") => commands = Some(text_value(&mut p)?),
            Value(value) => positionals.push(text(value)?),
            _ => return Err(arg.unexpected().into()),
        }
    }
    let mut positionals = positionals.into_iter();
    let addr = positionals.next().ok_or_else(|| usage("missing <addr>"))?;
    let file = positionals.next();
    if let Some(extra) = positionals.next() {
        return Err(usage(format!("unexpected argument '{extra}'")));
    }
    let script = match (file, commands) {
        (Some(_), Some(_)) => return Err(usage("cannot specify both file and -c")),
        (None, None) => return Err(usage("provide a script file or use -c")),
        (None, Some(script)) => script,
        (Some(path), None) if path == "-" => {
            let mut script = String::new();
            std::io::stdin()
                .read_to_string(&mut script)
                .map_err(|e| Stop::Failed(format!("reading the script from stdin: {e}")))?;
            script
        }
        (Some(path), None) => std::fs::read_to_string(&path).map_err(|_| {
            Stop::Failed(format!(
                "file not found: {path:?}\nto run a script given inline, use: xs eval <addr> -c '<script>'"
            ))
        })?,
    };
    let address = Address::parse(&addr)?;
    let mut request = Request::new("POST", "/eval".to_string());
    let len = script.len() as u64;
    request.body = RequestBody::Stream {
        reader: Box::new(std::io::Cursor::new(script.into_bytes())),
        len: Some(len),
    };
    let mut response = call(&address, request)?;
    body_to_stdout(
        &mut response.body,
        lines_for(response.content_type.as_deref()),
    )
}

/// A JSON value (a record, a list) is a line like any JSON we print; a
/// string, number or bool (`text/plain`), bytes, or NDJSON (its lines
/// already end) go out byte for byte.
fn lines_for(content_type: Option<&str>) -> Lines {
    match content_type {
        Some("application/json") => Lines::Document,
        _ => Lines::Verbatim,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_json_value_gets_a_newline() {
        assert_eq!(lines_for(Some("application/json")), Lines::Document);
        for raw in [
            "text/plain",
            "application/octet-stream",
            "application/x-ndjson",
        ] {
            assert_eq!(lines_for(Some(raw)), Lines::Verbatim, "{raw}");
        }
        assert_eq!(lines_for(None), Lines::Verbatim);
    }
}
