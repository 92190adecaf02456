//! What every command shares about its command line: the ways a command can
//! stop early, and small lexopt helpers for the values commands take.
//!
//! Commands return `Result<(), Stop>`; `cli::run` alone turns a `Stop` into
//! text and an exit code, so every command reports failures the same way.

use std::ffi::OsString;

use crate::store::id::{parse_id, Id};

/// Why a command ended before (or instead of) doing its job.
#[derive(Debug, PartialEq, Eq)]
pub enum Stop {
    /// `--help` was given: print the command's usage to stdout, exit 0.
    Help,
    /// The command line is wrong: one `error: …` line and the usage on
    /// stderr, exit 2.
    Usage(String),
    /// Nothing listens at this local address: the reference's three-line
    /// "no store at" hint, exit 1. Holds the address as the user typed it.
    NoStore(String),
    /// The server answered 404: no output at all, exit 1.
    NotFound,
    /// Anything else that went wrong: `command error: …`, exit 1.
    Failed(String),
    /// Stdout was closed under us (`xs cat … | head`): exit 0, quietly.
    OutputClosed,
}

impl From<lexopt::Error> for Stop {
    fn from(error: lexopt::Error) -> Stop {
        Stop::Usage(error.to_string())
    }
}

/// Shorthand for a usage error.
pub fn usage(message: impl Into<String>) -> Stop {
    Stop::Usage(message.into())
}

/// A new lexopt parser over a command's arguments (program and command
/// name already removed).
pub fn parser(args: Vec<OsString>) -> lexopt::Parser {
    lexopt::Parser::from_args(args)
}

/// The next option value as UTF-8 text.
pub fn text_value(parser: &mut lexopt::Parser) -> Result<String, Stop> {
    text(parser.value()?)
}

/// A positional argument as UTF-8 text.
pub fn text(raw: OsString) -> Result<String, Stop> {
    raw.into_string()
        .map_err(|raw| Stop::Usage(format!("argument is invalid unicode: {raw:?}")))
}

/// The next option value as an unsigned count, naming the option on error.
pub fn count_value(parser: &mut lexopt::Parser, option: &str) -> Result<u64, Stop> {
    let value = text_value(parser)?;
    value.parse::<u64>().map_err(|_| {
        usage(format!(
            "{option} expects an unsigned number, got '{value}'"
        ))
    })
}

/// Parses an id given for `what` (`after`, `from`, `id`, …); ids are checked
/// locally so a typo is a usage error rather than a confusing server reply
/// (and so `xs get <addr> version` can never reach the `/version` route).
pub fn id_named(what: &str, text: &str) -> Result<Id, Stop> {
    parse_id(text).map_err(|reason| usage(format!("Invalid {what}: {reason}")))
}

/// Takes the required positionals off `values`, in order, naming the first
/// missing one; anything left over is an unexpected argument.
pub fn exactly<const N: usize>(values: Vec<String>, names: [&str; N]) -> Result<[String; N], Stop> {
    if let Some(extra) = values.get(N) {
        return Err(usage(format!("unexpected argument '{extra}'")));
    }
    if let Some(missing) = names.get(values.len()) {
        return Err(usage(format!("missing <{missing}>")));
    }
    values
        .try_into()
        .map_err(|_| usage("wrong number of arguments"))
}

/// For commands whose only options are `--help`: their positionals.
pub fn only_positionals<const N: usize>(
    args: Vec<OsString>,
    names: [&str; N],
) -> Result<[String; N], Stop> {
    exactly(positionals(args)?, names)
}

/// For commands whose only option is `--help`: their positionals, however
/// many.
pub fn positionals(args: Vec<OsString>) -> Result<Vec<String>, Stop> {
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
    Ok(positionals)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| v.to_string()).collect()
    }

    #[test]
    fn positionals_are_counted_and_named() {
        assert_eq!(
            exactly(strings(&["a", "b"]), ["addr", "id"]).unwrap(),
            ["a".to_string(), "b".to_string()]
        );
        assert_eq!(
            exactly(strings(&["a"]), ["addr", "id"]),
            Err(usage("missing <id>"))
        );
        assert_eq!(
            exactly(strings(&["a", "b", "c"]), ["addr", "id"]),
            Err(usage("unexpected argument 'c'"))
        );
    }

    #[test]
    fn positional_only_commands() {
        let args = |list: &[&str]| list.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            only_positionals(args(&["s", "x"]), ["addr", "id"]),
            Ok(["s".to_string(), "x".to_string()])
        );
        assert_eq!(
            only_positionals(args(&["--help"]), ["addr"]),
            Err(Stop::Help)
        );
        assert!(matches!(
            only_positionals(args(&["s", "--nope"]), ["addr"]),
            Err(Stop::Usage(_))
        ));
    }

    #[test]
    fn bad_ids_name_the_option() {
        match id_named("after", "nope") {
            Err(Stop::Usage(message)) => assert!(message.starts_with("Invalid after: ")),
            other => panic!("unexpected {other:?}"),
        }
        assert!(id_named("id", "03gmmrhqljv8bnulus79wipck").is_ok());
    }

    #[test]
    fn counts_must_be_numbers() {
        let mut p = parser(vec!["--limit".into(), "x".into()]);
        let _ = p.next();
        assert_eq!(
            count_value(&mut p, "--limit"),
            Err(usage("--limit expects an unsigned number, got 'x'"))
        );
    }
}
