//! Reading single frames and the ends of the stream: `last`, `first`,
//! `get`, `next`, `prev`, and the server's `version`.

use std::ffi::OsString;

use super::address::Address;
use super::args::{exactly, id_named, only_positionals, parser, text, usage, Stop};
use super::cat::topic_filter;
use super::client::{call, send, success, Request};
use super::output::{body_to_stdout, to_stdout, Lines};
use super::query::Query;
use crate::store::id::Id;
use crate::store::topic::validate_topic_query;

/// Which end of the stream `last` / `first` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Last,
    First,
}

impl End {
    /// The route and its count key: `/last` + `last=`, `/first` + `first=`.
    fn name(self) -> &'static str {
        match self {
            End::Last => "last",
            End::First => "first",
        }
    }
}

/// The command line of `last` and `first`.
#[derive(Debug, PartialEq, Eq)]
pub struct EndOptions {
    pub addr: String,
    pub end: End,
    pub topic: Option<String>,
    pub count: u64,
    pub follow: bool,
    pub with_timestamp: bool,
}

impl EndOptions {
    /// Each positional after `<addr>` that is an unsigned number is the
    /// count, anything else the topic filter; `--follow` only for `last`.
    pub fn parse(args: Vec<OsString>, end: End) -> Result<EndOptions, Stop> {
        use lexopt::prelude::*;
        let mut follow = false;
        let mut with_timestamp = false;
        let mut positionals = Vec::new();
        let mut p = parser(args);
        while let Some(arg) = p.next()? {
            match arg {
                Short('h') | Long("help") => return Err(Stop::Help),
                Short('f') | Long("follow") if end == End::Last => follow = true,
                Long("with-timestamp") => with_timestamp = true,
                Value(value) => positionals.push(text(value)?),
                _ => return Err(arg.unexpected().into()),
            }
        }
        let mut rest = positionals.into_iter();
        let addr = rest.next().ok_or_else(|| usage("missing <addr>"))?;
        let mut topic = None;
        let mut count = None;
        for value in rest {
            match value.parse::<u64>() {
                Ok(n) if count.is_none() => count = Some(n),
                Err(_) if topic.is_none() => {
                    validate_topic_query(&value).map_err(Stop::Usage)?;
                    topic = Some(value);
                }
                _ => return Err(usage(format!("unexpected argument '{value}'"))),
            }
        }
        Ok(EndOptions {
            addr,
            end,
            topic,
            count: count.unwrap_or(1),
            follow,
            with_timestamp,
        })
    }

    /// `/last[/<topics>]?last=<n>&follow=true&with-timestamp`, the count
    /// only when it is not the default 1.
    pub fn target(&self) -> String {
        let name = self.end.name();
        let path = match &self.topic {
            Some(topic) => format!("/{name}/{topic}"),
            None => format!("/{name}"),
        };
        Query::new()
            .maybe(name, (self.count != 1).then_some(self.count))
            .maybe("follow", self.follow.then_some("true"))
            .flag("with-timestamp", self.with_timestamp)
            .target(&path)
    }
}

/// `xs last <addr> [topics] [count] [-f]`
pub fn last(args: Vec<OsString>) -> Result<(), Stop> {
    run_end(EndOptions::parse(args, End::Last)?)
}

/// `xs first <addr> [topics] [count]`
pub fn first(args: Vec<OsString>) -> Result<(), Stop> {
    run_end(EndOptions::parse(args, End::First)?)
}

fn run_end(options: EndOptions) -> Result<(), Stop> {
    let address = Address::parse(&options.addr)?;
    let mut response = call(&address, Request::get(options.target()))?;
    body_to_stdout(&mut response.body, Lines::DropBlank)
}

/// Which frame relative to an id: itself, or a neighbour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Itself,
    Next,
    Prev,
}

/// The command line of `get`, `next` and `prev`.
#[derive(Debug, PartialEq, Eq)]
pub struct FrameOptions {
    pub addr: String,
    pub id: Id,
    pub step: Step,
    pub topic: Option<String>,
    pub with_timestamp: bool,
}

impl FrameOptions {
    /// `<addr> <id>`, `--with-timestamp`, and `-T` for the neighbours.
    pub fn parse(args: Vec<OsString>, step: Step) -> Result<FrameOptions, Stop> {
        use lexopt::prelude::*;
        let mut topic = None;
        let mut with_timestamp = false;
        let mut positionals = Vec::new();
        let mut p = parser(args);
        while let Some(arg) = p.next()? {
            match arg {
                Short('h') | Long("help") => return Err(Stop::Help),
                Short('T') | Long("topic") if step != Step::Itself => {
                    topic = Some(topic_filter(&mut p)?)
                }
                Long("with-timestamp") => with_timestamp = true,
                Value(value) => positionals.push(text(value)?),
                _ => return Err(arg.unexpected().into()),
            }
        }
        let [addr, id] = exactly(positionals, ["addr", "id"])?;
        Ok(FrameOptions {
            addr,
            id: id_named("id", &id)?,
            step,
            topic,
            with_timestamp,
        })
    }

    /// `/<id>`, `/<id>/next` or `/<id>/prev`.
    pub fn target(&self) -> String {
        let path = match self.step {
            Step::Itself => format!("/{}", self.id),
            Step::Next => format!("/{}/next", self.id),
            Step::Prev => format!("/{}/prev", self.id),
        };
        Query::new()
            .maybe("topic", self.topic.as_ref())
            .flag("with-timestamp", self.with_timestamp)
            .target(&path)
    }
}

/// `xs get <addr> <id>`
pub fn get(args: Vec<OsString>) -> Result<(), Stop> {
    run_frame(FrameOptions::parse(args, Step::Itself)?)
}

/// `xs next <addr> <id>`
pub fn next(args: Vec<OsString>) -> Result<(), Stop> {
    run_frame(FrameOptions::parse(args, Step::Next)?)
}

/// `xs prev <addr> <id>`
pub fn prev(args: Vec<OsString>) -> Result<(), Stop> {
    run_frame(FrameOptions::parse(args, Step::Prev)?)
}

/// Prints the frame as the server sent it, and a newline.
fn run_frame(options: FrameOptions) -> Result<(), Stop> {
    let address = Address::parse(&options.addr)?;
    let mut response = call(&address, Request::get(options.target()))?;
    body_to_stdout(&mut response.body, Lines::Document)
}

/// What cross.stream's client prints when a server has no `/version`.
const PRE_VERSION_SERVER: &str = "{\"version\":\"0.0.9\"}";

/// `xs version <addr>`: the server's version JSON and a newline.
pub fn version(args: Vec<OsString>) -> Result<(), Stop> {
    let [addr] = only_positionals(args, ["addr"])?;
    let address = Address::parse(&addr)?;
    let response = send(&address, Request::get("/version".into()))?;
    let text = if response.status == 404 {
        PRE_VERSION_SERVER.to_string()
    } else {
        success(response)?
            .body
            .text(64 * 1024)
            .map_err(|e| Stop::Failed(format!("reading response: {e}")))?
    };
    to_stdout(format!("{text}\n").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "03gmmrhqljv8bnulus79wipck";

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    fn end_target(list: &[&str], end: End) -> String {
        EndOptions::parse(args(list), end).unwrap().target()
    }

    #[test]
    fn last_positionals_are_topic_or_count() {
        assert_eq!(end_target(&["s"], End::Last), "/last");
        assert_eq!(end_target(&["s", "1"], End::Last), "/last");
        assert_eq!(end_target(&["s", "3"], End::Last), "/last?last=3");
        assert_eq!(end_target(&["s", "note"], End::Last), "/last/note");
        assert_eq!(
            end_target(&["s", "5", "a,b.*", "-f", "--with-timestamp"], End::Last),
            "/last/a,b.*?last=5&follow=true&with-timestamp"
        );
        assert_eq!(
            end_target(&["s", "note", "2"], End::First),
            "/first/note?first=2"
        );
    }

    #[test]
    fn last_usage_errors() {
        for (case, end) in [
            (&["s", "1bad"][..], End::Last),
            (&["s", "a", "b"][..], End::Last),
            (&["s", "1", "2"][..], End::Last),
            (&[][..], End::Last),
            (&["s", "-f"][..], End::First),
        ] {
            assert!(
                matches!(EndOptions::parse(args(case), end), Err(Stop::Usage(_))),
                "{case:?}"
            );
        }
    }

    #[test]
    fn frame_targets() {
        let parse = |list: &[&str], step| FrameOptions::parse(args(list), step);
        assert_eq!(
            parse(&["s", ID], Step::Itself).unwrap().target(),
            format!("/{ID}")
        );
        assert_eq!(
            parse(&["s", ID, "--with-timestamp"], Step::Itself)
                .unwrap()
                .target(),
            format!("/{ID}?with-timestamp")
        );
        assert_eq!(
            parse(&["s", ID, "-T", "a.*"], Step::Next).unwrap().target(),
            format!("/{ID}/next?topic=a.*")
        );
        assert_eq!(
            parse(&["s", ID], Step::Prev).unwrap().target(),
            format!("/{ID}/prev")
        );
        // Ids are normalised to lowercase, as the server prints them.
        assert_eq!(
            parse(&["s", &ID.to_uppercase()], Step::Itself)
                .unwrap()
                .target(),
            format!("/{ID}")
        );
        assert!(matches!(
            parse(&["s", "version"], Step::Itself),
            Err(Stop::Usage(_))
        ));
        assert!(matches!(
            parse(&["s", ID, "-T", "a"], Step::Itself),
            Err(Stop::Usage(_))
        ));
        assert!(matches!(parse(&["s"], Step::Next), Err(Stop::Usage(_))));
    }
}
