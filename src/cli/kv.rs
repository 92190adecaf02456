//! `xs kv get|set|del|ls|watch`: the k/v store (SPEC §7.3).

use std::ffi::OsString;
use std::io::Read;

use super::address::Address;
use super::args::{exactly, positionals, text, usage, Stop};
use super::client::{call, Request, RequestBody};
use super::output::{body_to_stdout, to_stdout, Lines};
use super::query::Query;
use crate::store::topic::validate_topic;

/// `xs kv <action> <addr> …`
pub fn kv(args: Vec<OsString>) -> Result<(), Stop> {
    let mut args = args.into_iter();
    let action = match args.next() {
        Some(action) => text(action)?,
        None => return Err(usage("missing <action>: get, set, del, ls or watch")),
    };
    let rest: Vec<OsString> = args.collect();
    match action.as_str() {
        "-h" | "--help" => Err(Stop::Help),
        "get" => get(rest),
        "set" => set(rest),
        "del" => del(rest),
        "ls" => ls(rest),
        "watch" => watch(rest),
        other => Err(usage(format!(
            "unknown kv action '{other}': expected get, set, del, ls or watch"
        ))),
    }
}

fn key_checked(key: String) -> Result<String, Stop> {
    validate_topic(&key)
        .map_err(|e| usage(format!("invalid key: {}", e.replace("Topic", "Key"))))?;
    Ok(key)
}

fn get(args: Vec<OsString>) -> Result<(), Stop> {
    let [addr, key] = exactly(positionals(args)?, ["addr", "key"])?;
    let key = key_checked(key)?;
    let address = Address::parse(&addr)?;
    let mut response = call(&address, Request::get(format!("/kv/{key}")))?;
    body_to_stdout(&mut response.body, Lines::Verbatim)?;
    to_stdout(b"\n")
}

fn set(args: Vec<OsString>) -> Result<(), Stop> {
    let values = positionals(args)?;
    let (addr, key, value) = match values.len() {
        2 | 3 => {
            let mut values = values.into_iter();
            let addr = values.next().unwrap_or_default();
            let key = values.next().unwrap_or_default();
            (addr, key, values.next())
        }
        _ => return Err(usage("expected <addr> <key> [<json>]")),
    };
    let key = key_checked(key)?;
    let json = match value {
        Some(json) => json,
        None => {
            let mut json = String::new();
            std::io::stdin()
                .read_to_string(&mut json)
                .map_err(|e| Stop::Failed(format!("reading the value from stdin: {e}")))?;
            json
        }
    };
    serde_json::from_str::<serde_json::Value>(&json)
        .map_err(|e| usage(format!("the value is not JSON: {e}")))?;
    let address = Address::parse(&addr)?;
    let mut request = Request::new("PUT", format!("/kv/{key}"));
    let len = json.len() as u64;
    request.body = RequestBody::Stream {
        reader: Box::new(std::io::Cursor::new(json.into_bytes())),
        len: Some(len),
    };
    call(&address, request).map(|_| ())
}

fn del(args: Vec<OsString>) -> Result<(), Stop> {
    let [addr, key] = exactly(positionals(args)?, ["addr", "key"])?;
    let key = key_checked(key)?;
    let address = Address::parse(&addr)?;
    call(&address, Request::new("DELETE", format!("/kv/{key}"))).map(|_| ())
}

fn ls(args: Vec<OsString>) -> Result<(), Stop> {
    let mut values = positionals(args)?.into_iter();
    let addr = values.next().ok_or_else(|| usage("missing <addr>"))?;
    let prefix = values.next();
    if values.next().is_some() {
        return Err(usage("expected <addr> [prefix]"));
    }
    let address = Address::parse(&addr)?;
    let target = Query::new().maybe("prefix", prefix.as_ref()).target("/kv");
    let mut response = call(&address, Request::get(target))?;
    body_to_stdout(&mut response.body, Lines::DropBlank)
}

fn watch(args: Vec<OsString>) -> Result<(), Stop> {
    let [addr, key] = exactly(positionals(args)?, ["addr", "key"])?;
    let key = key_checked(key)?;
    let address = Address::parse(&addr)?;
    let mut response = call(&address, Request::get(format!("/kv/{key}?follow")))?;
    body_to_stdout(&mut response.body, Lines::DropBlank)
}
