//! `xs man`: the xs(1) man page in roff (`xs man | man -l -`).
//!
//! Generated, never written by hand: each command's section is its
//! synopsis, the prose of its usage text (help.rs) and its flags from the
//! command table (table.rs); the address forms come from `xs --help`; the
//! HTTP API from the routes table of docs/http-api.md (read at build
//! time); ENVIRONMENT and FILES are listed here, checked by the tests
//! against the variables the sources read.

use std::ffi::OsString;
use std::fmt::Write as _;

use super::args::{only_positionals, Stop};
use super::help;
use super::output::to_stdout;
use super::table::{Spec, COMMANDS};

const HTTP_API: &str = include_str!("../../docs/http-api.md");

/// The variables xs reads, and what for.
const ENVIRONMENT: &[(&str, &str)] = &[
    (
        "XS_ADDR",
        "Read by the xs.nu Nushell module (see xs nu), not by xs itself: the store its commands talk to.",
    ),
    (
        "NOTIFY_SOCKET",
        "xs serve sends READY=1 there once the store is started, and STOPPING=1 when it begins to stop (systemd Type=notify).",
    ),
    (
        "WATCHDOG_USEC",
        "With WATCHDOG_PID naming this process: xs serve sends WATCHDOG=1 at half this period while its writer answers.",
    ),
    ("WATCHDOG_PID", "The process WATCHDOG_USEC is meant for."),
    (
        "LISTEN_FDS",
        "Socket activation: xs serve takes its listening sockets from descriptor 3 on instead of binding them.",
    ),
    ("LISTEN_PID", "The process LISTEN_FDS is meant for."),
    (
        "LISTEN_FDNAMES",
        "Which passed socket is which: sock (the store's API), expose (--expose) and http (--http).",
    ),
    (
        "NU_LIB_DIRS",
        "xs nu --install puts xs.nu into the first of these directories.",
    ),
    (
        "XDG_CONFIG_HOME",
        "Otherwise xs nu --install uses <config dir>/nushell/scripts, under this (or HOME/.config).",
    ),
    ("HOME", "The home directory, for the paths above."),
];

/// The store folder's layout.
const FILES: &[(&str, &str)] = &[
    (
        "<dir>/sock",
        "The Unix socket the store's API listens on; what an <addr> naming the folder connects to.",
    ),
    (
        "<dir>/lock",
        "Held while a server (or xs check) has the store open: one at a time.",
    ),
    (
        "<dir>/fjall/",
        "The frames, the topic index and the k/v: fjall keyspaces and their journal.",
    ),
    (
        "<dir>/cacache/",
        "Payloads by content hash, in cacache's layout (as cross.stream keeps them).",
    ),
];

/// `xs man`
pub fn man(args: Vec<OsString>) -> Result<(), Stop> {
    only_positionals(args, [])?;
    to_stdout(page().as_bytes())
}

/// The whole page.
pub fn page() -> String {
    let mut out = String::new();
    let version = env!("CARGO_PKG_VERSION");
    let _ = writeln!(out, ".TH XS 1 \"\" \"xs {version}\" \"User Commands\"");
    out.push_str(".SH NAME\nxs \\- a local-first event stream store\n");
    out.push_str(".SH SYNOPSIS\n.B xs\n.I command\n.RI [ args ]\n");
    out.push_str(concat!(
        ".SH DESCRIPTION\n",
        "One binary is both the server and every client command.\n",
        ".B xs serve\n",
        "runs a store in a folder; the other commands speak its HTTP API over\n",
        "the folder's socket (or TCP); xs check and xs scru128 work offline.\n",
        ".PP\n",
        "Exit status: 0 done, 1 failed (or not found), 2 a bad command line.\n",
        ".B xs help\n",
        ".I command\n",
        "and\n",
        ".B xs\n",
        ".I command\n",
        ".B \\-\\-help\n",
        "print a command's usage.\n",
    ));
    out.push_str(".SH COMMANDS\n");
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    for spec in COMMANDS {
        match groups.iter_mut().find(|(group, _)| *group == spec.group) {
            Some((_, names)) => names.push(spec.name),
            None => groups.push((spec.group, vec![spec.name])),
        }
    }
    for (group, names) in groups {
        let _ = writeln!(out, ".TP\n.B {group}\n{}", roff(&names.join(", ")));
    }
    for spec in COMMANDS {
        command(&mut out, spec);
    }
    out.push_str(".SH ADDRESSES\n");
    addresses(&mut out);
    out.push_str(".SH \"HTTP API\"\n");
    out.push_str("Every client command is one of these requests; see docs/http-api.md.\n");
    for (route, what) in routes(HTTP_API) {
        let _ = writeln!(out, ".TP\n.B {}\n{}", roff_arg(&route), roff(&what));
    }
    out.push_str(".SH ENVIRONMENT\n");
    for (name, what) in ENVIRONMENT {
        let _ = writeln!(out, ".TP\n.B {name}\n{}", roff(what));
    }
    out.push_str(".SH FILES\n");
    for (path, what) in FILES {
        let _ = writeln!(out, ".TP\n.I {}\n{}", roff_arg(path), roff(what));
    }
    out.push_str(".SH \"SEE ALSO\"\n.BR nu (1),\n.BR systemd.socket (5)\n");
    out
}

/// One command's subsection.
fn command(out: &mut String, spec: &Spec) {
    let _ = writeln!(out, ".SS {}\n{}", spec.name, roff(spec.summary));
    let usage = super::usage_of(spec.name);
    out.push_str(".PP\n.nf\n");
    match usage {
        Some(text) => {
            for line in text
                .lines()
                .take_while(|l| l.starts_with("usage:") || l.starts_with("       xs"))
            {
                let _ = writeln!(
                    out,
                    "{}",
                    roff(line.trim_start_matches("usage: ").trim_start())
                );
            }
        }
        None => {
            let _ = writeln!(out, "{}", roff(&synopsis(spec)));
        }
    }
    out.push_str(".fi\n");
    if let Some(text) = usage {
        prose(out, text);
    }
    for flag in spec.flags {
        let short = flag
            .short
            .map(|c| format!("\\fB\\-{c}\\fR, "))
            .unwrap_or_default();
        let value = flag
            .value
            .map(|(placeholder, _)| format!(" \\fI{}\\fR", roff(placeholder)))
            .unwrap_or_default();
        let long = flag.long.replace('-', "\\-");
        let _ = writeln!(
            out,
            ".TP\n{short}\\fB\\-\\-{long}\\fR{value}\n{}",
            roff(flag.help)
        );
    }
}

/// `xs <name> <positionals> [options]`, for commands without a usage text.
fn synopsis(spec: &Spec) -> String {
    let mut line = format!("xs {}", spec.name);
    for positional in spec.positionals {
        let _ = match positional.optional {
            true => write!(line, " [<{}>]", positional.name),
            false => write!(line, " <{}>", positional.name),
        };
    }
    if !spec.flags.is_empty() {
        line.push_str(" [options]");
    }
    line
}

/// The usage text after its usage lines: paragraphs as paragraphs,
/// `name:` sections as they are laid out, `options:` left to the table.
fn prose(out: &mut String, text: &str) {
    let body = text
        .lines()
        .skip_while(|l| l.starts_with("usage:") || l.starts_with("       xs"));
    // What the lines being read belong to.
    enum In {
        Nothing,
        Paragraph,
        Section,
        Options,
    }
    let mut now = In::Nothing;
    for line in body {
        let header = !line.starts_with(' ') && line.ends_with(':');
        if line.trim().is_empty() {
            if let In::Section = now {
                out.push_str(".fi\n");
            }
            now = In::Nothing;
        } else if header {
            if let In::Section = now {
                out.push_str(".fi\n");
            }
            if line == "options:" {
                now = In::Options;
            } else {
                let _ = writeln!(out, ".PP\n{}\n.nf", roff(line));
                now = In::Section;
            }
        } else {
            match now {
                In::Options => {}
                In::Section => {
                    let _ = writeln!(out, "{}", roff(line));
                }
                In::Paragraph => {
                    let _ = writeln!(out, "{}", roff(line.trim()));
                }
                In::Nothing => {
                    let _ = writeln!(out, ".PP\n{}", roff(line.trim()));
                    now = In::Paragraph;
                }
            }
        }
    }
    if let In::Section = now {
        out.push_str(".fi\n");
    }
}

/// The address forms, from the end of `xs --help`.
fn addresses(out: &mut String) {
    let forms = help::TOP
        .split_once("<addr> is where the store listens:\n")
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    out.push_str("An\n.I addr\nnames where a store listens:\n.PP\n.nf\n");
    for line in forms.lines().take_while(|l| !l.trim().is_empty()) {
        let _ = writeln!(out, "{}", roff(line));
    }
    out.push_str(".fi\n");
}

/// The rows of the `## Routes` table: the route and what it does, with
/// the Markdown (backticks, links) taken out.
fn routes(markdown: &str) -> Vec<(String, String)> {
    let Some((_, section)) = markdown.split_once("## Routes") else {
        return Vec::new();
    };
    let section = section.split("\n## ").next().unwrap_or_default();
    section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .filter_map(|line| {
            let mut cells = line.trim_matches('|').splitn(2, " | ");
            let route = plain(cells.next()?.trim());
            let what = plain(cells.next()?.trim().trim_end_matches('|').trim());
            Some((route, what))
        })
        .collect()
}

/// Markdown to plain text: `code` unquoted, [text](link) to text.
fn plain(markdown: &str) -> String {
    let mut text = String::new();
    let mut rest = markdown;
    while let Some(start) = rest.find('[') {
        let (before, after) = rest.split_at(start);
        text.push_str(before);
        match after
            .find("](")
            .and_then(|mid| Some((mid, after[mid..].find(')')? + mid)))
        {
            Some((mid, end)) => {
                text.push_str(&after[1..mid]);
                rest = &after[end + 1..];
            }
            None => {
                text.push('[');
                rest = &after[1..];
            }
        }
    }
    text.push_str(rest);
    text.replace('`', "")
}

/// Text for a roff line: backslashes escaped, non-ASCII characters named,
/// a leading `.` or `'` defused.
fn roff(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\e"),
            '-' => out.push_str("\\-"),
            c if c.is_ascii() => out.push(c),
            c => {
                let _ = write!(out, "\\[u{:04X}]", c as u32);
            }
        }
    }
    if out.starts_with(['.', '\'']) {
        out.insert_str(0, "\\&");
    }
    out
}

/// `roff`, quoted as a macro's one argument.
fn roff_arg(text: &str) -> String {
    format!("\"{}\"", roff(text).replace('"', "\\(dq"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_come_from_the_api_doc() {
        let routes = routes(HTTP_API);
        assert!(routes.len() >= 10, "{routes:?}");
        assert!(routes.iter().any(|(r, _)| r == "GET /"));
        assert!(routes.iter().any(|(r, _)| r.contains("/kv")));
        assert!(routes
            .iter()
            .all(|(_, what)| !what.is_empty() && !what.contains('`')));
    }

    #[test]
    fn every_variable_the_sources_read_is_documented() {
        let sources = [
            include_str!("../service_manager.rs"),
            include_str!("nu.rs"),
            include_str!("../nu/base.rs"),
        ];
        let names: Vec<&str> = ENVIRONMENT.iter().map(|(n, _)| *n).collect();
        for source in sources {
            for piece in source.split("env::var").skip(1) {
                let piece = piece.trim_start_matches("_os");
                if let Some(name) = piece.strip_prefix("(\"").and_then(|p| p.split('"').next()) {
                    assert!(names.contains(&name), "{name} is not in ENVIRONMENT");
                }
            }
        }
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(roff(".x a\\b -c …"), "\\&.x a\\eb \\-c \\[u2026]");
        assert_eq!(
            plain("see [nushell.md](nushell.md#x) and `q`"),
            "see nushell.md and q"
        );
    }

    #[test]
    fn every_command_has_a_section() {
        let page = page();
        for spec in COMMANDS {
            assert!(
                page.contains(&format!(".SS {}\n", spec.name)),
                "{}",
                spec.name
            );
        }
    }
}
