//! The client side of the `xs` binary: every command but `serve` and
//! `check` talks to a store's HTTP API.
//!
//! Each command is a function from its arguments to `Result<(), Stop>`;
//! `run` is the one place that turns a `Stop` into output and an exit code
//! (0 done, 1 failed, 2 bad command line), so every command fails alike.

mod address;
mod args;
mod body;
mod cas;
mod cat;
mod check;
mod client;
mod completions;
mod cursor;
mod dump;
mod eval;
mod groups;
mod help;
mod kv;
mod man;
mod metrics;
mod nu;
mod output;
mod ps;
mod query;
mod read;
mod retain;
mod scru128;
mod serve;
mod table;
pub(crate) mod when;
mod write;

use std::ffi::OsString;

use args::Stop;
use output::{to_stderr, to_stdout};

/// A client command: its name, its usage text and what runs it.
struct Command {
    name: &'static str,
    usage: &'static str,
    run: Run,
}

/// What runs a client command: its arguments (after the command name) to
/// how it ended.
type Run = fn(Vec<OsString>) -> Result<(), Stop>;

/// Every client command, in the order `xs --help` lists them.
const COMMANDS: &[Command] = &[
    Command {
        name: "cat",
        usage: help::CAT,
        run: cat::cat,
    },
    Command {
        name: "tac",
        usage: help::TAC,
        run: cat::tac,
    },
    Command {
        name: "last",
        usage: help::LAST,
        run: read::last,
    },
    Command {
        name: "first",
        usage: help::FIRST,
        run: read::first,
    },
    Command {
        name: "get",
        usage: help::GET,
        run: read::get,
    },
    Command {
        name: "next",
        usage: help::NEXT,
        run: read::next,
    },
    Command {
        name: "prev",
        usage: help::PREV,
        run: read::prev,
    },
    Command {
        name: "cas",
        usage: help::CAS,
        run: cas::cas,
    },
    Command {
        name: "append",
        usage: help::APPEND,
        run: write::append,
    },
    Command {
        name: "cas-post",
        usage: help::CAS_POST,
        run: write::cas_post,
    },
    Command {
        name: "remove",
        usage: help::REMOVE,
        run: write::remove,
    },
    Command {
        name: "import",
        usage: help::IMPORT,
        run: write::import,
    },
    Command {
        name: "eval",
        usage: help::EVAL,
        run: eval::eval,
    },
    Command {
        name: "nu",
        usage: help::NU,
        run: nu::nu,
    },
    Command {
        name: "kv",
        usage: help::KV,
        run: kv::kv,
    },
    Command {
        name: "ps",
        usage: help::PS,
        run: ps::ps,
    },
    Command {
        name: "consume",
        usage: help::CONSUME,
        run: groups::consume,
    },
    Command {
        name: "ack",
        usage: help::ACK,
        run: groups::ack,
    },
    Command {
        name: "nack",
        usage: help::NACK,
        run: groups::nack,
    },
    Command {
        name: "groups",
        usage: help::GROUPS,
        run: groups::groups,
    },
    Command {
        name: "export",
        usage: help::EXPORT,
        run: dump::export,
    },
    Command {
        name: "metrics",
        usage: help::METRICS,
        run: metrics::metrics,
    },
    Command {
        name: "retain",
        usage: help::RETAIN,
        run: retain::retain,
    },
    Command {
        name: "version",
        usage: help::VERSION,
        run: read::version,
    },
    Command {
        name: "scru128",
        usage: help::SCRU128,
        run: scru128::scru128,
    },
    Command {
        name: "completions",
        usage: help::COMPLETIONS,
        run: completions::completions,
    },
    Command {
        name: "man",
        usage: help::MAN,
        run: man::man,
    },
];

/// The client command called `name`: what runs it.
#[cfg(test)]
fn client_command(name: &str) -> Option<Run> {
    COMMANDS.iter().find(|c| c.name == name).map(|c| c.run)
}

/// The client commands' names (all but `serve`, `check` and `help`).
#[cfg(test)]
fn client_command_names() -> impl Iterator<Item = &'static str> {
    COMMANDS.iter().map(|c| c.name)
}

/// A client command's usage text.
fn usage_of(name: &str) -> Option<&'static str> {
    COMMANDS.iter().find(|c| c.name == name).map(|c| c.usage)
}

/// Runs one `xs` command line (without the program name); returns the exit code.
pub fn run(args: Vec<OsString>) -> i32 {
    let mut args = args.into_iter();
    let Some(first) = args.next() else {
        to_stderr(help::TOP);
        return 2;
    };
    let rest: Vec<OsString> = args.collect();
    let name = first.to_string_lossy();
    match name.as_ref() {
        "-h" | "--help" => finish(help::TOP, Err(Stop::Help)),
        "-V" | "--version" => {
            let line = format!("xs {}\n", env!("CARGO_PKG_VERSION"));
            finish(help::TOP, to_stdout(line.as_bytes()))
        }
        "help" => help_for(rest),
        // Hidden: what completion scripts call back into.
        "__complete" => completions::complete(rest),
        name => match COMMANDS.iter().find(|c| c.name == name) {
            Some(command) => finish(command.usage, (command.run)(rest)),
            None => server_command(name, rest).unwrap_or_else(|| {
                finish(
                    help::TOP,
                    Err(Stop::Usage(format!("unknown command '{name}'"))),
                )
            }),
        },
    }
}

/// `serve` and `check` belong to the server half of the crate; `None` for
/// any other name.
fn server_command(name: &str, args: Vec<OsString>) -> Option<i32> {
    match name {
        "serve" => Some(serve::main(args)),
        "check" => Some(check::main(args)),
        _ => None,
    }
}

/// `xs help [command]`.
fn help_for(args: Vec<OsString>) -> i32 {
    let wanted = args.first().map(|a| a.to_string_lossy().into_owned());
    match wanted.as_deref() {
        None | Some("-h" | "--help" | "help") => finish(help::TOP, Err(Stop::Help)),
        Some(name) => match COMMANDS.iter().find(|c| c.name == name) {
            Some(command) => finish(command.usage, Err(Stop::Help)),
            // Their usage lives beside their parsers.
            None if matches!(name, "serve" | "check") => {
                server_command(name, vec![OsString::from("--help")]).unwrap_or(2)
            }
            None => finish(
                help::TOP,
                Err(Stop::Usage(format!("unknown command '{name}'"))),
            ),
        },
    }
}

/// Reports how a command ended and picks the exit code.
fn finish(usage: &str, outcome: Result<(), Stop>) -> i32 {
    match outcome {
        Ok(()) | Err(Stop::OutputClosed) => 0,
        Err(Stop::Help) => match to_stdout(usage.as_bytes()) {
            Ok(()) | Err(Stop::OutputClosed) => 0,
            Err(_) => 1,
        },
        Err(Stop::Usage(message)) => {
            to_stderr(&format!("error: {}\n{usage}", one_line(&message)));
            2
        }
        Err(Stop::NoStore(addr)) => {
            to_stderr(&format!(
                "no store at: {addr}\nto start one:\n  xs serve {addr}\n"
            ));
            1
        }
        Err(Stop::NotFound) => 1,
        Err(Stop::Failed(message)) => {
            to_stderr(&format!("command error: {message}\n"));
            1
        }
    }
}

/// Usage errors are one line even when a message (a JSON parser's, say)
/// would wrap.
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit_code(list: &[&str]) -> i32 {
        run(list.iter().map(OsString::from).collect())
    }

    #[test]
    fn usage_errors_exit_2() {
        for case in [
            &[][..],
            &["bogus"],
            &["cat"],
            &["cat", "s", "--nope"],
            &["append", "./s", "1bad"],
            &["append", "./s", "note", "--meta", "{"],
            &["last", "./s", "a", "b"],
            &["get", "./s", "not-an-id"],
            &["tac", "./s", "--until", "later"],
            &["help", "bogus"],
            &["scru128", "unpack", "nope"],
            &["scru128", "frobnicate"],
        ] {
            assert_eq!(exit_code(case), 2, "{case:?}");
        }
    }

    #[test]
    fn help_and_version_exit_0() {
        for case in [
            &["--help"][..],
            &["-h"],
            &["--version"],
            &["help"],
            &["help", "cat"],
            &["help", "serve"],
            &["help", "check"],
            &["cat", "--help"],
            &["append", "-h"],
            &["scru128", "--help"],
            &["scru128"],
        ] {
            assert_eq!(exit_code(case), 0, "{case:?}");
        }
    }

    #[test]
    fn every_command_has_help() {
        for command in COMMANDS {
            assert_eq!(exit_code(&[command.name, "--help"]), 0, "{}", command.name);
            assert!(command.usage.starts_with("usage: xs "), "{}", command.name);
            assert!(help::TOP.contains(&format!("  {} ", command.name)));
        }
    }

    #[test]
    fn failures_exit_1() {
        assert_eq!(exit_code(&["cat", "./no/such/store"]), 1);
        assert_eq!(exit_code(&["cat", "https://example.com"]), 1);
    }

    #[test]
    fn usage_messages_stay_on_one_line() {
        assert_eq!(one_line("a\n  b\tc"), "a b c");
    }
}
