//! `xs cat` (the stream, oldest first, optionally followed) and `xs tac`
//! (newest first). Both stream the response to stdout as it arrives.

use std::ffi::OsString;

use super::address::Address;
use super::args::{count_value, id_named, parser, text, text_value, usage, Stop};
use super::client::{call, Request};
use super::output::{body_to_stdout, Lines};
use super::query::Query;
use super::when::{since_id, until_id};
use crate::store::id::{now_ms, Id};
use crate::store::topic::validate_topic_query;

/// `xs cat`'s command line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CatOptions {
    pub addr: String,
    /// The `follow` value: `true`, or a pulse interval in ms.
    pub follow: Option<String>,
    pub new: bool,
    pub after: Option<Id>,
    pub from: Option<Id>,
    pub limit: Option<u64>,
    pub last: Option<u64>,
    pub topic: Option<String>,
    pub with_timestamp: bool,
    pub sse: bool,
    /// Resume from and save progress to k/v `cursor.<name>`.
    pub cursor: Option<String>,
}

impl CatOptions {
    /// Parses the arguments after `cat`; `now_ms` anchors `--since 10m`.
    pub fn parse(args: Vec<OsString>, now_ms: u64) -> Result<CatOptions, Stop> {
        use lexopt::prelude::*;
        let mut options = CatOptions::default();
        let mut follow = false;
        let mut pulse: Option<u64> = None;
        let mut since: Option<String> = None;
        let mut positionals = Vec::new();
        let mut p = parser(args);
        while let Some(arg) = p.next()? {
            match arg {
                Short('h') | Long("help") => return Err(Stop::Help),
                Short('f') | Long("follow") => follow = true,
                Short('p') | Long("pulse") => pulse = Some(count_value(&mut p, "--pulse")?),
                Short('n') | Long("new") => options.new = true,
                Short('a') | Long("after") => {
                    options.after = Some(id_named("after", &text_value(&mut p)?)?)
                }
                Long("from") => options.from = Some(id_named("from", &text_value(&mut p)?)?),
                Long("since") => since = Some(text_value(&mut p)?),
                Long("limit") => options.limit = Some(count_value(&mut p, "--limit")?),
                Long("last") => options.last = Some(count_value(&mut p, "--last")?),
                Short('T') | Long("topic") => options.topic = Some(topic_filter(&mut p)?),
                Long("with-timestamp") => options.with_timestamp = true,
                Long("sse") => options.sse = true,
                Long("cursor") => options.cursor = Some(text_value(&mut p)?),
                Value(value) => positionals.push(text(value)?),
                _ => return Err(arg.unexpected().into()),
            }
        }
        options.addr = single_addr(positionals)?;
        options.follow = match (pulse, follow) {
            (Some(ms), _) => Some(ms.to_string()),
            (None, true) => Some("true".to_string()),
            (None, false) => None,
        };
        if let Some(when) = since {
            if options.from.is_some() || options.after.is_some() {
                return Err(usage("--since cannot be combined with --from or --after"));
            }
            let id = since_id(&when, now_ms).map_err(|e| usage(format!("Invalid since: {e}")))?;
            options.from = Some(id);
        }
        Ok(options)
    }

    /// `GET /` with the query keys in cross.stream's order.
    pub fn target(&self) -> String {
        Query::new()
            .maybe("follow", self.follow.as_ref())
            .maybe("new", self.new.then_some("true"))
            .maybe("after", self.after)
            .maybe("from", self.from)
            .maybe("limit", self.limit)
            .maybe("last", self.last)
            .maybe("topic", self.topic.as_ref())
            .flag("with-timestamp", self.with_timestamp)
            .target("/")
    }
}

/// `xs tac`'s command line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TacOptions {
    pub addr: String,
    pub before: Option<Id>,
    pub limit: Option<u64>,
    pub topic: Option<String>,
    pub with_timestamp: bool,
}

impl TacOptions {
    /// Parses the arguments after `tac`; `now_ms` anchors `--until 10m`.
    pub fn parse(args: Vec<OsString>, now_ms: u64) -> Result<TacOptions, Stop> {
        use lexopt::prelude::*;
        let mut options = TacOptions::default();
        let mut until: Option<String> = None;
        let mut positionals = Vec::new();
        let mut p = parser(args);
        while let Some(arg) = p.next()? {
            match arg {
                Short('h') | Long("help") => return Err(Stop::Help),
                Long("before") => options.before = Some(id_named("before", &text_value(&mut p)?)?),
                Long("until") => until = Some(text_value(&mut p)?),
                Long("limit") => options.limit = Some(count_value(&mut p, "--limit")?),
                Short('T') | Long("topic") => options.topic = Some(topic_filter(&mut p)?),
                Long("with-timestamp") => options.with_timestamp = true,
                Value(value) => positionals.push(text(value)?),
                _ => return Err(arg.unexpected().into()),
            }
        }
        options.addr = single_addr(positionals)?;
        if let Some(when) = until {
            if options.before.is_some() {
                return Err(usage("--until cannot be combined with --before"));
            }
            let id = until_id(&when, now_ms).map_err(|e| usage(format!("Invalid until: {e}")))?;
            options.before = Some(id);
        }
        Ok(options)
    }

    /// `GET /?rev…`: history newest first.
    pub fn target(&self) -> String {
        Query::new()
            .flag("rev", true)
            .maybe("before", self.before)
            .maybe("limit", self.limit)
            .maybe("topic", self.topic.as_ref())
            .flag("with-timestamp", self.with_timestamp)
            .target("/")
    }
}

/// `xs cat <addr> …`
pub fn cat(args: Vec<OsString>) -> Result<(), Stop> {
    let options = CatOptions::parse(args, now_ms())?;
    let address = Address::parse(&options.addr)?;
    if let Some(name) = options.cursor.clone() {
        return super::cursor::cat(options, &name, address);
    }
    let mut request = Request::get(options.target());
    request.sse = options.sse;
    let mut response = call(&address, request)?;
    // SSE's blank lines end events; only NDJSON loses its keepalives.
    let lines = if options.sse {
        Lines::Verbatim
    } else {
        Lines::DropBlank
    };
    body_to_stdout(&mut response.body, lines)
}

/// `xs tac <addr> …`
pub fn tac(args: Vec<OsString>) -> Result<(), Stop> {
    let options = TacOptions::parse(args, now_ms())?;
    let address = Address::parse(&options.addr)?;
    let mut response = call(&address, Request::get(options.target()))?;
    body_to_stdout(&mut response.body, Lines::DropBlank)
}

/// A `-T` value, checked the way cross.stream's CLI checks it.
pub fn topic_filter(p: &mut lexopt::Parser) -> Result<String, Stop> {
    let spec = text_value(p)?;
    validate_topic_query(&spec).map_err(Stop::Usage)?;
    Ok(spec)
}

/// The one positional these commands take.
fn single_addr(positionals: Vec<String>) -> Result<String, Stop> {
    let [addr] = super::args::exactly(positionals, ["addr"])?;
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_740_830_400_123;
    const ID: &str = "03gmmrhqljv8bnulus79wipck";

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    fn cat_target(list: &[&str]) -> String {
        CatOptions::parse(args(list), NOW).unwrap().target()
    }

    #[test]
    fn bare_cat_has_no_query() {
        assert_eq!(cat_target(&["./store"]), "/");
    }

    #[test]
    fn cat_query_follows_reference_order() {
        assert_eq!(
            cat_target(&[
                "--with-timestamp",
                "-T",
                "a,b.*",
                "--last",
                "3",
                "--limit",
                "5",
                "--from",
                ID,
                "-a",
                ID,
                "-n",
                "-f",
                "./store",
            ]),
            format!("/?follow=true&new=true&after={ID}&from={ID}&limit=5&last=3&topic=a,b.*&with-timestamp")
        );
    }

    #[test]
    fn pulse_implies_follow_with_its_interval() {
        assert_eq!(cat_target(&["s", "-p", "250"]), "/?follow=250");
        assert_eq!(cat_target(&["s", "-f", "--pulse=10"]), "/?follow=10");
    }

    #[test]
    fn since_seeks_by_id() {
        let target = cat_target(&["s", "--since", "2025-03-01T12:00:00Z"]);
        let from = crate::store::id::min_id_at(1_740_830_400_000);
        assert_eq!(target, format!("/?from={from}"));
        let target = cat_target(&["s", "--since", "123ms"]);
        assert_eq!(
            target,
            format!("/?from={}", crate::store::id::min_id_at(NOW - 123))
        );
    }

    #[test]
    fn cat_usage_errors() {
        let cases: &[&[&str]] = &[
            &[],
            &["a", "b"],
            &["s", "--bogus"],
            &["s", "--limit"],
            &["s", "--limit", "x"],
            &["s", "-T", "1bad"],
            &["s", "-T", ""],
            &["s", "--after", "nope"],
            &["s", "--since", "yesterday"],
            &["s", "--since", "1h", "--from", ID],
        ];
        for case in cases {
            assert!(
                matches!(CatOptions::parse(args(case), NOW), Err(Stop::Usage(_))),
                "{case:?}"
            );
        }
        match CatOptions::parse(args(&["s", "--after", "nope"]), NOW) {
            Err(Stop::Usage(message)) => assert!(message.starts_with("Invalid after: ")),
            other => panic!("{other:?}"),
        }
        assert_eq!(CatOptions::parse(args(&["s", "-h"]), NOW), Err(Stop::Help));
    }

    #[test]
    fn tac_query() {
        let options = TacOptions::parse(
            args(&[
                "s",
                "-T",
                "a",
                "--limit",
                "2",
                "--before",
                ID,
                "--with-timestamp",
            ]),
            NOW,
        )
        .unwrap();
        assert_eq!(
            options.target(),
            format!("/?rev&before={ID}&limit=2&topic=a&with-timestamp")
        );
        assert_eq!(
            TacOptions::parse(args(&["s"]), NOW).unwrap().target(),
            "/?rev"
        );
    }

    #[test]
    fn until_is_an_exclusive_bound_after_that_millisecond() {
        let options =
            TacOptions::parse(args(&["s", "--until", "1970-01-01T00:00:01Z"]), NOW).unwrap();
        assert_eq!(options.before, Some(crate::store::id::min_id_at(1001)));
        assert!(matches!(
            TacOptions::parse(args(&["s", "--until", "1h", "--before", ID]), NOW),
            Err(Stop::Usage(_))
        ));
    }
}
