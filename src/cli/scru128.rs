//! `xs scru128`: make, unpack and pack SCRU128 ids, offline.

use std::ffi::OsString;
use std::io::Read;

use serde_json::{json, Value};

use super::args::{exactly, parser, text, usage, Stop};
use super::output::to_stdout;
use crate::store::id::{fresh_id, parse_id, Id};

/// `xs scru128 [unpack <id|-> | pack]`
pub fn scru128(args: Vec<OsString>) -> Result<(), Stop> {
    use lexopt::prelude::*;
    let mut positionals = Vec::new();
    let mut p = parser(args);
    while let Some(arg) = p.next()? {
        match arg {
            Short('h') | Long("help") => return Err(Stop::Help),
            Value(value) => positionals.push(text(value)?),
            _ => return Err(arg.unexpected().into()),
        }
    }
    let line = match positionals.first().map(String::as_str) {
        None => fresh_id().to_string(),
        Some("unpack") => {
            let [_, source] = exactly(positionals, ["subcommand", "id|-"])?;
            let id = if source == "-" {
                let input = read_stdin()?;
                parse_id(input.trim()).map_err(|e| Stop::Failed(format!("Invalid id: {e}")))?
            } else {
                parse_id(&source).map_err(|e| usage(format!("Invalid id: {e}")))?
            };
            unpack(id)
        }
        Some("pack") => {
            exactly(positionals, ["subcommand"])?;
            pack(&read_stdin()?).map_err(Stop::Failed)?.to_string()
        }
        Some(other) => return Err(usage(format!("unknown subcommand '{other}'"))),
    };
    to_stdout(format!("{line}\n").as_bytes())
}

/// An id's fields as pretty JSON; `node` is the 32-bit entropy in hex.
fn unpack(id: Id) -> String {
    let fields = json!({
        "ts_ms": id.timestamp(),
        "counter_hi": id.counter_hi(),
        "counter_lo": id.counter_lo(),
        "node": format!("{:08x}", id.entropy()),
    });
    serde_json::to_string_pretty(&fields).unwrap_or_default()
}

/// The id whose fields `unpack` printed.
fn pack(input: &str) -> Result<Id, String> {
    let fields: Value = serde_json::from_str(input)
        .map_err(|e| format!("expected the JSON of `xs scru128 unpack`: {e}"))?;
    let number = |key: &str| {
        fields
            .get(key)
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("missing or invalid \"{key}\""))
    };
    let counter = |key: &str| {
        number(key).and_then(|n| u32::try_from(n).map_err(|_| format!("\"{key}\" out of range")))
    };
    let node = fields
        .get("node")
        .and_then(Value::as_str)
        .filter(|hex| (1..=8).contains(&hex.len()) && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .and_then(|hex| u32::from_str_radix(hex, 16).ok())
        .ok_or("missing or invalid \"node\" (8 hex digits)")?;
    Id::try_from_fields(
        number("ts_ms")?,
        counter("counter_hi")?,
        counter("counter_lo")?,
        node,
    )
    .map_err(|_| "a field is out of range for a SCRU128 id".to_string())
}

fn read_stdin() -> Result<String, Stop> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .map_err(|e| Stop::Failed(format!("reading stdin: {e}")))?;
    Ok(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpack_then_pack_round_trips() {
        let id = parse_id("03gmmrhqljv8bnulus79wipck").unwrap();
        let text = unpack(id);
        let fields: Value = serde_json::from_str(&text).unwrap();
        let keys: Vec<&str> = fields
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["ts_ms", "counter_hi", "counter_lo", "node"]);
        assert!(text.contains('\n'), "pretty printed");
        assert_eq!(pack(&text), Ok(id));
    }

    #[test]
    fn pack_refuses_bad_fields() {
        assert!(pack("nope").is_err());
        assert!(
            pack(r#"{"ts_ms":1,"counter_hi":16777216,"counter_lo":0,"node":"00000000"}"#).is_err()
        );
        assert!(pack(r#"{"ts_ms":1,"counter_hi":0,"counter_lo":0,"node":"xyz"}"#).is_err());
        assert!(pack(r#"{"ts_ms":1,"counter_hi":0,"counter_lo":0}"#).is_err());
        assert!(pack(r#"{"ts_ms":1,"counter_hi":0,"counter_lo":0,"node":"ff"}"#).is_ok());
    }
}
