//! Changing the stream: `append`, `import`, `remove`, and `cas-post`
//! (content without a frame).

use std::ffi::OsString;

use base64::Engine as _;

use super::address::Address;
use super::args::{
    exactly, id_named, only_positionals, parser, positionals, text, text_value, usage, Stop,
};
use super::client::{call, Request, RequestBody};
use super::output::{body_to_stdout, Lines};
use super::query::Query;
use crate::store::topic::validate_topic;
use crate::store::{validate_idempotency_key, ExpectLast, Ttl};

/// `xs append`'s command line.
#[derive(Debug, PartialEq, Eq)]
pub struct AppendOptions {
    pub addr: String,
    pub topic: String,
    /// The `xs-meta` header value: Base64 of the meta JSON.
    pub meta_header: Option<String>,
    pub ttl: Option<String>,
    pub with_timestamp: bool,
    /// `--no-stdin`: a frame without a payload, stdin left alone (inside a
    /// `while read` loop, stdin is the loop's input).
    pub no_stdin: bool,
    /// `--expect-last <id|none>`: the `xs-expect-last` header.
    pub expect_last: Option<String>,
    /// `--idempotency-key <key>`: the `xs-idempotency-key` header.
    pub idempotency_key: Option<String>,
}

impl AppendOptions {
    /// Everything the server would refuse is refused here first, as a usage
    /// error: the topic, the meta JSON, the ttl.
    pub fn parse(args: Vec<OsString>) -> Result<AppendOptions, Stop> {
        use lexopt::prelude::*;
        let mut meta_header = None;
        let mut ttl = None;
        let mut with_timestamp = false;
        let mut no_stdin = false;
        let mut expect_last = None;
        let mut idempotency_key = None;
        let mut positionals = Vec::new();
        let mut p = parser(args);
        while let Some(arg) = p.next()? {
            match arg {
                Short('h') | Long("help") => return Err(Stop::Help),
                Long("no-stdin") => no_stdin = true,
                Long("meta") => meta_header = Some(meta_header_value(&text_value(&mut p)?)?),
                Long("ttl") => {
                    let value = text_value(&mut p)?;
                    Ttl::parse(&value).map_err(Stop::Usage)?;
                    ttl = Some(value);
                }
                Long("with-timestamp") => with_timestamp = true,
                Long("expect-last") => {
                    let value = text_value(&mut p)?;
                    ExpectLast::parse(&value).map_err(|e| usage(format!("--expect-last: {e}")))?;
                    expect_last = Some(value);
                }
                Long("idempotency-key") => {
                    let value = text_value(&mut p)?;
                    validate_idempotency_key(&value)
                        .map_err(|e| usage(format!("--idempotency-key: {e}")))?;
                    idempotency_key = Some(value);
                }
                Value(value) => positionals.push(text(value)?),
                _ => return Err(arg.unexpected().into()),
            }
        }
        let [addr, topic] = exactly(positionals, ["addr", "topic"])?;
        validate_topic(&topic).map_err(Stop::Usage)?;
        Ok(AppendOptions {
            addr,
            topic,
            meta_header,
            ttl,
            with_timestamp,
            no_stdin,
            expect_last,
            idempotency_key,
        })
    }

    /// `POST /append/<topic>?ttl=…&with-timestamp`.
    pub fn target(&self) -> String {
        Query::new()
            .maybe("ttl", self.ttl.as_ref())
            .flag("with-timestamp", self.with_timestamp)
            .target(&format!("/append/{}", self.topic))
    }
}

/// The meta must be JSON; it travels compact and Base64-encoded so any
/// JSON (newlines, non-ASCII) fits in a header.
fn meta_header_value(meta: &str) -> Result<String, Stop> {
    let value: serde_json::Value =
        serde_json::from_str(meta).map_err(|e| usage(format!("--meta is not valid JSON: {e}")))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(value.to_string()))
}

/// `xs append <addr> <topic>`: prints the new frame and a newline (with
/// `--idempotency-key`, a repeat prints the original frame; with
/// `--expect-last`, a refusal fails with the server's one-line error).
pub fn append(args: Vec<OsString>) -> Result<(), Stop> {
    let options = AppendOptions::parse(args)?;
    let address = Address::parse(&options.addr)?;
    let mut request = Request::new("POST", options.target());
    if let Some(meta) = &options.meta_header {
        request.headers.push(("xs-meta", meta.clone()));
    }
    if let Some(expect) = &options.expect_last {
        request.headers.push(("xs-expect-last", expect.clone()));
    }
    if let Some(key) = &options.idempotency_key {
        request.headers.push(("xs-idempotency-key", key.clone()));
    }
    if !options.no_stdin {
        request.body = RequestBody::stdin();
    }
    let mut response = call(&address, request)?;
    body_to_stdout(&mut response.body, Lines::Document)
}

/// `xs import <addr>`: stdin is one frame, stored as is; prints the frame.
pub fn import(args: Vec<OsString>) -> Result<(), Stop> {
    match positionals(args)?.as_slice() {
        [addr] => post_stdin(addr, "/import"),
        [addr, folder] => super::dump::import_folder(addr, std::path::Path::new(folder)),
        _ => Err(usage("expected <addr> [folder]")),
    }
}

/// `xs cas-post <addr>`: stdin becomes content; prints its hash.
pub fn cas_post(args: Vec<OsString>) -> Result<(), Stop> {
    let [addr] = only_positionals(args, ["addr"])?;
    post_stdin(&addr, "/cas")
}

/// `xs remove <addr> <id>`: prints nothing.
pub fn remove(args: Vec<OsString>) -> Result<(), Stop> {
    let [addr, id] = only_positionals(args, ["addr", "id"])?;
    let id = id_named("id", &id)?;
    let address = Address::parse(&addr)?;
    call(&address, Request::new("DELETE", format!("/{id}")))?;
    Ok(())
}

/// POSTs stdin to `path` and prints the answer (a frame, a hash) as one
/// line.
fn post_stdin(addr: &str, path: &str) -> Result<(), Stop> {
    let address = Address::parse(addr)?;
    let mut request = Request::new("POST", path.to_string());
    request.body = RequestBody::stdin();
    let mut response = call(&address, request)?;
    body_to_stdout(&mut response.body, Lines::Document)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn append_builds_its_request() {
        let options = AppendOptions::parse(args(&[
            "s",
            "note",
            "--meta",
            "{ \"a\": [1, 2] }",
            "--ttl",
            "time:500",
            "--with-timestamp",
        ]))
        .unwrap();
        assert_eq!(options.target(), "/append/note?ttl=time:500&with-timestamp");
        assert_eq!(
            options.meta_header.as_deref(),
            Some(
                base64::engine::general_purpose::STANDARD
                    .encode("{\"a\":[1,2]}")
                    .as_str()
            )
        );
        let plain = AppendOptions::parse(args(&["s", "note"])).unwrap();
        assert_eq!(plain.target(), "/append/note");
        assert_eq!(plain.meta_header, None);
        assert!(!plain.no_stdin);
        let no_stdin = AppendOptions::parse(args(&["s", "note", "--no-stdin"])).unwrap();
        assert!(no_stdin.no_stdin);
        assert_eq!(no_stdin.target(), "/append/note");
    }

    #[test]
    fn append_refuses_what_the_server_would() {
        let expect = |list: &[&str], message: &str| match AppendOptions::parse(args(list)) {
            Err(Stop::Usage(got)) => assert!(got.contains(message), "{got}"),
            other => panic!("{list:?}: {other:?}"),
        };
        expect(&["s", "1note"], "Topic must start with a-z, A-Z, or _");
        expect(&["s", "a,b"], "Topic contains invalid character: ','");
        expect(
            &["s", "note", "--meta", "{nope"],
            "--meta is not valid JSON",
        );
        expect(
            &["s", "note", "--ttl", "last:0"],
            "'n' must be >= 1 for 'last' TTL",
        );
        expect(&["s", "note", "--ttl", "head:3"], "Invalid TTL format");
        expect(&["s"], "missing <topic>");
    }
}
