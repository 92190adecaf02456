//! `xs metrics <addr> [--prometheus]`: `GET /metrics`, asking for JSON
//! (one line, cross.stream 0.14's shape plus ours under `xs`) or, with
//! `--prometheus`, the Prometheus text format. The server picks the format
//! by `Accept`, so the flag only changes that header.

use std::ffi::OsString;

use super::address::Address;
use super::args::{exactly, parser, text, Stop};
use super::client::{call, Request};
use super::output::{body_to_stdout, Lines};

pub fn metrics(args: Vec<OsString>) -> Result<(), Stop> {
    use lexopt::prelude::*;
    let mut prometheus = false;
    let mut positionals = Vec::new();
    let mut p = parser(args);
    while let Some(arg) = p.next()? {
        match arg {
            Short('h') | Long("help") => return Err(Stop::Help),
            Long("prometheus") => prometheus = true,
            Value(value) => positionals.push(text(value)?),
            _ => return Err(arg.unexpected().into()),
        }
    }
    let [addr] = exactly(positionals, ["addr"])?;
    let address = Address::parse(&addr)?;
    let accept = if prometheus {
        "text/plain"
    } else {
        "application/json"
    };
    let mut request = Request::get("/metrics".to_string());
    request.headers.push(("Accept", accept.to_string()));
    let mut response = call(&address, request)?;
    body_to_stdout(&mut response.body, Lines::Document)
}
