//! `xs consume`, `xs ack`, `xs nack`, `xs groups`: consumer groups from the
//! command line (the routes of src/api/groups.rs).
//!
//! `xs consume` prints the frames handed to this consumer, one JSON line
//! each (as `xs cat`, plus `"deliveries"`), until interrupted; leaving (the
//! process ends, the connection closes) makes its unacked frames due for
//! the group's other consumers. A worker acks each frame it finished with
//! `xs ack <addr> <group> <id>`.

use std::ffi::OsString;
use std::io::{IsTerminal, Read};

use super::address::Address;
use super::args::{count_value, exactly, id_named, parser, text, text_value, usage, Stop};
use super::cat::topic_filter;
use super::client::{call, Request, RequestBody};
use super::output::{body_to_stdout, to_stdout, Lines};
use super::query::Query;

/// `xs consume <addr> <group> -T <topics> [options]`
pub fn consume(args: Vec<OsString>) -> Result<(), Stop> {
    use lexopt::prelude::*;
    let mut positionals = Vec::new();
    let mut query = Query::new();
    let mut topics = None;
    let mut ack_stdin = false;
    let mut p = parser(args);
    while let Some(arg) = p.next()? {
        match arg {
            Short('h') | Long("help") => return Err(Stop::Help),
            Short('T') | Long("topic") => topics = Some(topic_filter(&mut p)?),
            Long("ack-wait") => {
                let value = text_value(&mut p)?;
                crate::store::groups::parse_duration(&value).map_err(usage)?;
                query.pair("ack-wait", value);
            }
            Long("max-inflight") => {
                let n = count_value(&mut p, "--max-inflight")?;
                if n == 0 {
                    return Err(usage("--max-inflight must be at least 1"));
                }
                query.pair("max-inflight", n);
            }
            Long("max-deliver") => {
                query.pair("max-deliver", count_value(&mut p, "--max-deliver")?);
            }
            Long("start") => {
                let value = text_value(&mut p)?;
                crate::store::groups::Start::parse(&value).map_err(usage)?;
                query.pair("start", value);
            }
            Long("name") => {
                query.pair("consumer", text_value(&mut p)?);
            }
            Long("ack-stdin") => ack_stdin = true,
            Value(value) => positionals.push(text(value)?),
            _ => return Err(arg.unexpected().into()),
        }
    }
    let [addr, group] = exactly(positionals, ["addr", "group"])?;
    let topics = topics.ok_or_else(|| usage("missing -T <topics>"))?;
    let address = Address::parse(&addr)?;
    query.pair("topics", topics);
    let target = query.target(&format!("/consume/{group}"));
    let mut response = call(&address, Request::get(target))?;
    if ack_stdin {
        ack_from_stdin(address.clone(), group);
    }
    body_to_stdout(&mut response.body, Lines::DropBlank)
}

/// `--ack-stdin`: acks the ids read from stdin, a line each, as they come
/// (a worker running `xs consume` as a coprocess writes back the id of
/// each frame it finished). Ends with stdin; a failed ack is said on
/// stderr and the rest go on.
fn ack_from_stdin(address: super::address::Address, group: String) {
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { return };
            let id = line.trim();
            if id.is_empty() {
                continue;
            }
            if let Err(e) = crate::store::id::parse_id(id) {
                eprintln!("xs consume: not a frame id on stdin, '{id}': {e}");
                continue;
            }
            let mut request = Request::new("POST", format!("/ack/{group}"));
            let body = id.as_bytes().to_vec();
            let len = body.len() as u64;
            request.body = RequestBody::Stream {
                reader: Box::new(std::io::Cursor::new(body)),
                len: Some(len),
            };
            let acked = call(&address, request).and_then(|mut response| {
                response
                    .body
                    .text(64 * 1024)
                    .map_err(|e| Stop::Failed(format!("reading the ack's answer: {e}")))
            });
            match acked {
                Ok(answer) if answer.contains("\"acked\":[]") => {
                    eprintln!("xs consume: {id} was not pending in {group}");
                }
                Ok(_) => {}
                Err(Stop::Failed(e)) => eprintln!("xs consume: acking {id}: {e}"),
                Err(other) => eprintln!("xs consume: acking {id}: {other:?}"),
            }
        }
    });
}

/// `xs ack <addr> <group> [<id>...]`
pub fn ack(args: Vec<OsString>) -> Result<(), Stop> {
    settle(args, "ack")
}

/// `xs nack <addr> <group> [<id>...]`
pub fn nack(args: Vec<OsString>) -> Result<(), Stop> {
    settle(args, "nack")
}

fn settle(args: Vec<OsString>, route: &str) -> Result<(), Stop> {
    let mut positionals = super::args::positionals(args)?;
    if positionals.len() < 2 {
        let missing = if positionals.is_empty() {
            "addr"
        } else {
            "group"
        };
        return Err(usage(format!("missing <{missing}>")));
    }
    let ids_given = positionals.split_off(2);
    let [addr, group] = exactly(positionals, ["addr", "group"])?;
    let mut ids = Vec::new();
    for id in &ids_given {
        ids.push(id_named("id", id)?.to_string());
    }
    if ids.is_empty() {
        // No ids on the command line: one or more on stdin.
        let stdin = std::io::stdin();
        if stdin.is_terminal() {
            return Err(usage("missing <id> (give ids as arguments or on stdin)"));
        }
        let mut text = String::new();
        stdin
            .lock()
            .read_to_string(&mut text)
            .map_err(|e| Stop::Failed(format!("reading ids from stdin: {e}")))?;
        for id in text.split_whitespace() {
            ids.push(id_named("id", id)?.to_string());
        }
        if ids.is_empty() {
            return Err(usage("missing <id>: stdin held none"));
        }
    }
    let address = Address::parse(&addr)?;
    let mut request = Request::new("POST", format!("/{route}/{group}"));
    let body = ids.join("\n").into_bytes();
    let len = body.len() as u64;
    request.body = RequestBody::Stream {
        reader: Box::new(std::io::Cursor::new(body)),
        len: Some(len),
    };
    let mut response = call(&address, request)?;
    body_to_stdout(&mut response.body, Lines::DropBlank)
}

/// `xs groups <addr>`: one JSON line per group; `--delete <group>`
/// deletes one instead.
pub fn groups(args: Vec<OsString>) -> Result<(), Stop> {
    use lexopt::prelude::*;
    let mut positionals = Vec::new();
    let mut delete = None;
    let mut p = parser(args);
    while let Some(arg) = p.next()? {
        match arg {
            Short('h') | Long("help") => return Err(Stop::Help),
            Long("delete") => delete = Some(text_value(&mut p)?),
            Value(value) => positionals.push(text(value)?),
            _ => return Err(arg.unexpected().into()),
        }
    }
    let [addr] = exactly(positionals, ["addr"])?;
    let address = Address::parse(&addr)?;
    if let Some(group) = delete {
        // Unlike a read's silent 404, a delete says what it did not find.
        return match call(&address, Request::new("DELETE", format!("/groups/{group}"))) {
            Ok(_) => Ok(()),
            Err(Stop::NotFound) => Err(Stop::Failed(format!("no consumer group {group}"))),
            Err(other) => Err(other),
        };
    }
    let mut response = call(&address, Request::get("/groups".to_string()))?;
    let body = response
        .body
        .text(64 * 1024 * 1024)
        .map_err(|e| Stop::Failed(format!("reading the groups: {e}")))?;
    let groups: serde_json::Value = serde_json::from_str(&body)
        .map_err(|e| Stop::Failed(format!("the server's groups are not JSON: {e}")))?;
    let mut out = Vec::new();
    for group in groups.as_array().into_iter().flatten() {
        out.extend_from_slice(group.to_string().as_bytes());
        out.push(b'\n');
    }
    to_stdout(&out)
}
