//! The command table: every `xs` command with its group, one-line summary,
//! positional arguments and flags (value kind, fixed choices, one line of
//! help). Shell completions (`completions.rs`) and the man page (`man.rs`)
//! are generated from it.
//!
//! Source of truth: the table holds the *structure* of the command line;
//! the usage texts in `help.rs` (and serve.rs, check.rs) hold the prose,
//! which says more than one line per flag can. The two cannot drift: the
//! tests below check that every flag in the table is one its parser
//! accepts (each client parser is run on it) and one its usage text lists,
//! that every flag a parser accepts or a usage text lists is in the table,
//! and that `xs --help` lists exactly the table's commands. `-h/--help` is
//! implied for every command and left out of the table.

/// What a positional argument or a flag's value is, for completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A store address: a store folder, its socket, `:port`, a URL.
    Addr,
    /// A folder (`serve <dir>`, `export <folder>`).
    Dir,
    /// A file.
    File,
    /// Topics, or a topic filter (`a,b`, `user.*`): the store's topics.
    Topics,
    /// One of these words; `<…>` marks a part the user fills in
    /// (`interval:<ms>` completes as `interval:`).
    Choice(&'static [&'static str]),
    /// A command name of this table.
    Command,
    /// Anything else (an id, a number, JSON, a name): no completion.
    Text,
}

/// A positional argument.
#[derive(Debug)]
pub struct Positional {
    pub name: &'static str,
    pub kind: Kind,
    pub optional: bool,
}

/// A flag: `--long`, maybe `-s`, maybe a value.
#[derive(Debug)]
pub struct Flag {
    pub long: &'static str,
    pub short: Option<char>,
    /// The value's placeholder (`ms`, `topics`) and kind; `None` for a
    /// switch.
    pub value: Option<(&'static str, Kind)>,
    pub help: &'static str,
}

/// One command.
#[derive(Debug)]
pub struct Spec {
    pub name: &'static str,
    /// The heading `xs --help` lists it under.
    pub group: &'static str,
    pub summary: &'static str,
    pub positionals: &'static [Positional],
    pub flags: &'static [Flag],
}

impl Spec {
    /// The index of the store address among the positionals, if any.
    pub fn addr_index(&self) -> Option<usize> {
        self.positionals.iter().position(|p| p.kind == Kind::Addr)
    }
}

/// The words a completion offers for a choice: the text before any `<`.
pub fn choice_words(choices: &[&str]) -> Vec<String> {
    choices
        .iter()
        .map(|c| c.split('<').next().unwrap_or(c).to_string())
        .collect()
}

/// The shells `xs completions` writes for.
pub const SHELLS: &[&str] = &["bash", "zsh", "fish", "nushell"];

const TTLS: &[&str] = &["forever", "ephemeral", "time:<ms>", "last:<n>"];

const fn req(name: &'static str, kind: Kind) -> Positional {
    Positional {
        name,
        kind,
        optional: false,
    }
}

const fn opt(name: &'static str, kind: Kind) -> Positional {
    Positional {
        name,
        kind,
        optional: true,
    }
}

const fn switch(long: &'static str, short: Option<char>, help: &'static str) -> Flag {
    Flag {
        long,
        short,
        value: None,
        help,
    }
}

const fn valued(
    long: &'static str,
    short: Option<char>,
    placeholder: &'static str,
    kind: Kind,
    help: &'static str,
) -> Flag {
    Flag {
        long,
        short,
        value: Some((placeholder, kind)),
        help,
    }
}

const ADDR: Positional = req("addr", Kind::Addr);
const WITH_TIMESTAMP: Flag = switch(
    "with-timestamp",
    None,
    "add each frame's time as `timestamp`",
);
const TOPIC: Flag = valued(
    "topic",
    Some('T'),
    "topics",
    Kind::Topics,
    "only these topics: a,b,user.*",
);

/// Every command, in the order `xs --help` lists them.
pub const COMMANDS: &[Spec] = &[
    Spec {
        name: "serve",
        group: "server",
        summary: "run a store in <dir>",
        positionals: &[req("dir", Kind::Dir)],
        flags: &[
            valued(
                "fsync",
                None,
                "policy",
                Kind::Choice(&["always", "never", "interval:<ms>"]),
                "when an append reaches the disk (default always)",
            ),
            valued(
                "expose",
                None,
                "addr",
                Kind::Text,
                "also serve the API on :port, host:port or a Unix path",
            ),
            valued(
                "auth-file",
                None,
                "file",
                Kind::File,
                "one user:password line; Basic auth for a TCP --expose or --ui",
            ),
            valued(
                "http",
                None,
                "addr",
                Kind::Text,
                "also run the HTTP gateway on :port or host:port",
            ),
            valued(
                "http-timeout",
                None,
                "ms",
                Kind::Text,
                "how long a gateway request waits for its answer",
            ),
            valued(
                "http-ttl",
                None,
                "ttl",
                Kind::Choice(TTLS),
                "ttl of http.request frames (default ephemeral)",
            ),
            valued(
                "max-payload",
                None,
                "bytes",
                Kind::Text,
                "largest payload accepted",
            ),
            valued(
                "ephemeral-frames",
                None,
                "n",
                Kind::Text,
                "ephemeral frames kept in memory",
            ),
            valued(
                "ephemeral-bytes",
                None,
                "bytes",
                Kind::Text,
                "memory for ephemeral frames and payloads",
            ),
            valued(
                "backend",
                None,
                "url",
                Kind::Text,
                "keep everything in Redis: redis://host:port/db?ns=<name>",
            ),
            valued(
                "redis-replicas",
                None,
                "n",
                Kind::Text,
                "with --backend: answer once <n> replicas have an append",
            ),
            valued(
                "ttl-sweep",
                None,
                "ms",
                Kind::Text,
                "how often expired frames are removed (0: never)",
            ),
            valued(
                "dedup-window",
                None,
                "duration",
                Kind::Text,
                "how long an idempotency key is remembered (0: off)",
            ),
            valued(
                "retain",
                None,
                "pattern=rules",
                Kind::Text,
                "keep at most an age, size and/or count of a pattern, repeatable",
            ),
            valued(
                "eval-timeout",
                None,
                "secs",
                Kind::Text,
                "stop a script after this long (0: no limit)",
            ),
            valued(
                "eval-memory",
                None,
                "bytes",
                Kind::Text,
                "memory one script may build (0: no limit)",
            ),
            valued(
                "max-connections",
                None,
                "n",
                Kind::Text,
                "connections open at once on each listener",
            ),
            valued(
                "idle-timeout",
                None,
                "secs",
                Kind::Text,
                "close a connection idle this long (0: never)",
            ),
            valued(
                "ui",
                None,
                "addr",
                Kind::Text,
                "also serve the live viewer page on :port or host:port",
            ),
            valued(
                "plugin",
                None,
                "path",
                Kind::File,
                "a Nushell plugin (nu_plugin_*), repeatable",
            ),
        ],
    },
    Spec {
        name: "check",
        group: "server",
        summary: "verify a stopped store's folder",
        positionals: &[req("dir", Kind::Dir)],
        flags: &[
            switch("repair", None, "rebuild the topic index from the stream"),
            switch(
                "mark-schema",
                None,
                "write the schema version newer cross.stream looks for",
            ),
        ],
    },
    Spec {
        name: "cat",
        group: "read",
        summary: "print frames, oldest first; -f to follow",
        positionals: &[ADDR],
        flags: &[
            switch(
                "follow",
                Some('f'),
                "keep going: print new frames as they are appended",
            ),
            valued(
                "pulse",
                Some('p'),
                "ms",
                Kind::Text,
                "follow, with an xs.pulse frame every <ms>",
            ),
            switch(
                "new",
                Some('n'),
                "skip history: only frames appended from now on",
            ),
            valued(
                "after",
                Some('a'),
                "id",
                Kind::Text,
                "start after this id (exclusive)",
            ),
            valued(
                "from",
                None,
                "id",
                Kind::Text,
                "start at this id (inclusive)",
            ),
            valued(
                "since",
                None,
                "when",
                Kind::Text,
                "start at a time: RFC 3339 or 90s / 10m / 2h / 3d ago",
            ),
            valued("limit", None, "n", Kind::Text, "stop after <n> frames"),
            valued(
                "last",
                None,
                "n",
                Kind::Text,
                "start with the newest <n> frames",
            ),
            TOPIC,
            WITH_TIMESTAMP,
            switch("sse", None, "ask for Server-Sent Events instead of NDJSON"),
            valued(
                "cursor",
                None,
                "name",
                Kind::Text,
                "resume after, and save progress to, k/v cursor.<name>",
            ),
        ],
    },
    Spec {
        name: "tac",
        group: "read",
        summary: "print frames, newest first",
        positionals: &[ADDR],
        flags: &[
            valued(
                "before",
                None,
                "id",
                Kind::Text,
                "start below this id (exclusive)",
            ),
            valued(
                "until",
                None,
                "when",
                Kind::Text,
                "start at a time: RFC 3339 or 90s / 10m / 2h / 3d ago",
            ),
            valued("limit", None, "n", Kind::Text, "stop after <n> frames"),
            TOPIC,
            WITH_TIMESTAMP,
        ],
    },
    Spec {
        name: "last",
        group: "read",
        summary: "the newest frame(s)",
        positionals: &[ADDR, opt("topics", Kind::Topics), opt("n", Kind::Text)],
        flags: &[
            switch(
                "follow",
                Some('f'),
                "then keep printing new matching frames",
            ),
            WITH_TIMESTAMP,
        ],
    },
    Spec {
        name: "first",
        group: "read",
        summary: "the oldest frame(s)",
        positionals: &[ADDR, opt("topics", Kind::Topics), opt("n", Kind::Text)],
        flags: &[WITH_TIMESTAMP],
    },
    Spec {
        name: "get",
        group: "read",
        summary: "one frame",
        positionals: &[ADDR, req("id", Kind::Text)],
        flags: &[WITH_TIMESTAMP],
    },
    Spec {
        name: "next",
        group: "read",
        summary: "the frame after <id>",
        positionals: &[ADDR, req("id", Kind::Text)],
        flags: &[TOPIC, WITH_TIMESTAMP],
    },
    Spec {
        name: "prev",
        group: "read",
        summary: "the frame before <id>",
        positionals: &[ADDR, req("id", Kind::Text)],
        flags: &[TOPIC, WITH_TIMESTAMP],
    },
    Spec {
        name: "cas",
        group: "read",
        summary: "a payload's bytes",
        positionals: &[ADDR, req("hash", Kind::Text)],
        flags: &[],
    },
    Spec {
        name: "append",
        group: "write",
        summary: "append a frame; the payload is read from stdin",
        positionals: &[ADDR, req("topic", Kind::Topics)],
        flags: &[
            switch("no-stdin", None, "no payload: leave stdin alone"),
            valued(
                "meta",
                None,
                "json",
                Kind::Text,
                "attach this JSON as the frame's meta",
            ),
            valued(
                "ttl",
                None,
                "ttl",
                Kind::Choice(TTLS),
                "how long the frame is kept",
            ),
            WITH_TIMESTAMP,
            valued(
                "expect-last",
                None,
                "id|none",
                Kind::Text,
                "append only if the topic's newest frame is this",
            ),
            valued(
                "idempotency-key",
                None,
                "key",
                Kind::Text,
                "append once per key within the dedup window",
            ),
        ],
    },
    Spec {
        name: "cas-post",
        group: "write",
        summary: "store stdin as content; prints its hash",
        positionals: &[ADDR],
        flags: &[],
    },
    Spec {
        name: "remove",
        group: "write",
        summary: "remove a frame",
        positionals: &[ADDR, req("id", Kind::Text)],
        flags: &[],
    },
    Spec {
        name: "import",
        group: "write",
        summary: "one frame JSON from stdin, or a folder written by export",
        positionals: &[ADDR, opt("folder", Kind::Dir)],
        flags: &[],
    },
    Spec {
        name: "export",
        group: "write",
        summary: "the whole store to a folder (frames.jsonl, cas/)",
        positionals: &[ADDR, req("folder", Kind::Dir)],
        flags: &[],
    },
    Spec {
        name: "kv",
        group: "k/v",
        summary: "get, set, delete, list or watch JSON values",
        positionals: &[
            req(
                "action",
                Kind::Choice(&["get", "set", "del", "ls", "watch"]),
            ),
            ADDR,
            opt("key", Kind::Text),
            opt("json", Kind::Text),
        ],
        flags: &[],
    },
    Spec {
        name: "consume",
        group: "groups",
        summary: "receive a consumer group's frames, each to one consumer",
        positionals: &[ADDR, req("group", Kind::Text)],
        flags: &[
            TOPIC,
            valued(
                "ack-wait",
                None,
                "duration",
                Kind::Text,
                "redeliver an unacked frame after this (30s)",
            ),
            valued(
                "max-inflight",
                None,
                "n",
                Kind::Text,
                "at most n unacked frames at this consumer (1000)",
            ),
            valued(
                "max-deliver",
                None,
                "n",
                Kind::Text,
                "after n deliveries, to <group>.dead",
            ),
            valued(
                "start",
                None,
                "where",
                Kind::Choice(&["new", "first", "<id>"]),
                "a new group starts here (new)",
            ),
            valued("name", None, "name", Kind::Text, "this consumer's name"),
            switch(
                "ack-stdin",
                None,
                "ack the ids read from stdin, one per line",
            ),
        ],
    },
    Spec {
        name: "ack",
        group: "groups",
        summary: "acknowledge frames of a group: done, never redelivered",
        positionals: &[ADDR, req("group", Kind::Text), opt("id", Kind::Text)],
        flags: &[],
    },
    Spec {
        name: "nack",
        group: "groups",
        summary: "give frames back to a group: redelivered now",
        positionals: &[ADDR, req("group", Kind::Text), opt("id", Kind::Text)],
        flags: &[],
    },
    Spec {
        name: "groups",
        group: "groups",
        summary: "every consumer group: position, pending frames, consumers",
        positionals: &[ADDR],
        flags: &[valued(
            "delete",
            None,
            "group",
            Kind::Text,
            "delete the group: its position and pending frames",
        )],
    },
    Spec {
        name: "eval",
        group: "nushell",
        summary: "run a Nushell script on the server",
        positionals: &[ADDR, opt("file", Kind::File)],
        flags: &[valued(
            "commands",
            Some('c'),
            "script",
            Kind::Text,
            "the script itself",
        )],
    },
    Spec {
        name: "ps",
        group: "nushell",
        summary: "actors, services, actions: state, pid, restarts",
        positionals: &[ADDR],
        flags: &[switch("json", None, "NDJSON, also on a terminal")],
    },
    Spec {
        name: "nu",
        group: "nushell",
        summary: "print, install or remove the xs.nu client module",
        positionals: &[],
        flags: &[
            switch("install", None, "write xs.nu and the xs-use.nu stub"),
            switch("clean", None, "remove them"),
            valued("lib-path", None, "dir", Kind::Dir, "put xs.nu here"),
            valued(
                "autoload-path",
                None,
                "dir",
                Kind::Dir,
                "put xs-use.nu here",
            ),
            switch("yes", Some('y'), "do not ask"),
        ],
    },
    Spec {
        name: "metrics",
        group: "other",
        summary: "the server's counters (JSON, or Prometheus text)",
        positionals: &[ADDR],
        flags: &[switch(
            "prometheus",
            None,
            "the Prometheus text format instead of JSON",
        )],
    },
    Spec {
        name: "retain",
        group: "other",
        summary: "retention rules: what each pattern holds, last sweep",
        positionals: &[ADDR],
        flags: &[switch("json", None, "NDJSON, also on a terminal")],
    },
    Spec {
        name: "version",
        group: "other",
        summary: "the server's version",
        positionals: &[ADDR],
        flags: &[],
    },
    Spec {
        name: "scru128",
        group: "other",
        summary: "make, unpack or pack SCRU128 ids",
        positionals: &[
            opt("subcommand", Kind::Choice(&["unpack", "pack"])),
            opt("id", Kind::Text),
        ],
        flags: &[],
    },
    Spec {
        name: "completions",
        group: "other",
        summary: "a completion script for bash, zsh, fish or nushell",
        positionals: &[req("shell", Kind::Choice(SHELLS))],
        flags: &[],
    },
    Spec {
        name: "man",
        group: "other",
        summary: "the xs(1) man page, in roff",
        positionals: &[],
        flags: &[],
    },
    Spec {
        name: "help",
        group: "other",
        summary: "a command's usage",
        positionals: &[opt("command", Kind::Command)],
        flags: &[],
    },
];

/// The command called `name`.
#[cfg(test)]
pub fn find(name: &str) -> Option<&'static Spec> {
    COMMANDS.iter().find(|c| c.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::args::Stop;
    use std::collections::BTreeSet;
    use std::ffi::OsString;

    /// Parser sources, for the flags they match on: `Long("x")`, `Short('x')`.
    const SOURCES: &[&str] = &[
        include_str!("cat.rs"),
        include_str!("read.rs"),
        include_str!("write.rs"),
        include_str!("kv.rs"),
        include_str!("eval.rs"),
        include_str!("ps.rs"),
        include_str!("retain.rs"),
        include_str!("groups.rs"),
        include_str!("nu.rs"),
        include_str!("metrics.rs"),
        include_str!("scru128.rs"),
        include_str!("cas.rs"),
        include_str!("dump.rs"),
        include_str!("args.rs"),
        include_str!("completions.rs"),
        include_str!("man.rs"),
    ];
    /// serve and check parse in their own files, one command each.
    const SERVE: &str = include_str!("serve.rs");
    const CHECK: &str = include_str!("check.rs");

    /// `--long` and `-s` spellings of every flag matched in `source`.
    fn matched_flags(source: &str) -> BTreeSet<String> {
        let mut flags = BTreeSet::new();
        for piece in source.split("Long(\"").skip(1) {
            if let Some(end) = piece.find('"') {
                flags.insert(format!("--{}", &piece[..end]));
            }
        }
        for piece in source.split("Short('").skip(1) {
            if let Some(c) = piece.chars().next() {
                flags.insert(format!("-{c}"));
            }
        }
        flags.remove("--help");
        flags.remove("-h");
        flags
    }

    /// The spellings of a command's flags in the table.
    fn table_flags(spec: &Spec) -> BTreeSet<String> {
        let mut flags = BTreeSet::new();
        for flag in spec.flags {
            flags.insert(format!("--{}", flag.long));
            if let Some(c) = flag.short {
                flags.insert(format!("-{c}"));
            }
        }
        flags
    }

    /// The flags an options list in a usage text names: lines starting
    /// with `-`, `--` after indentation.
    fn listed_flags(usage: &str) -> BTreeSet<String> {
        let mut flags = BTreeSet::new();
        for line in usage.lines() {
            let line = line.trim_start();
            if !line.starts_with('-') {
                continue;
            }
            let words = line.split([' ', ',']).filter(|w| !w.is_empty());
            for word in words.take_while(|w| w.starts_with('-')) {
                let word = word.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
                let short = word.len() == 2 && word[1..].chars().all(|c| c.is_ascii_alphabetic());
                if word.starts_with("--") && word.len() > 2 || short {
                    flags.insert(word.to_string());
                }
            }
        }
        flags.remove("--help");
        flags.remove("-h");
        flags
    }

    /// Whether `command`'s parser refuses `flag` as an unknown option. The
    /// flag is followed by a value and `--help`, so an accepted flag ends
    /// in `Stop::Help` (or a complaint about the value) before any I/O.
    fn parser_refuses(command: &str, flag: &str) -> bool {
        let mut args: Vec<OsString> = Vec::new();
        if command == "kv" {
            args.push("get".into());
        }
        args.extend([flag, "v", "--help"].map(OsString::from));
        let run = crate::cli::client_command(command).expect(command);
        match run(args) {
            Err(Stop::Usage(message)) => message == format!("invalid option '{flag}'"),
            _ => false,
        }
    }

    #[test]
    fn names_are_unique_and_every_client_command_is_in_the_table() {
        let names: BTreeSet<_> = COMMANDS.iter().map(|c| c.name).collect();
        assert_eq!(names.len(), COMMANDS.len());
        for name in crate::cli::client_command_names() {
            assert!(names.contains(name), "{name} is missing from the table");
        }
    }

    #[test]
    fn top_help_lists_exactly_the_table() {
        let top = super::super::help::TOP;
        let mut listed = BTreeSet::new();
        for line in top.lines() {
            if let Some(rest) = line.strip_prefix("  ") {
                if let Some(word) = rest.split([' ', '|']).next() {
                    if !word.is_empty() && !word.starts_with(['/', '.', ':', '-']) {
                        listed.insert(word);
                    }
                }
            }
        }
        // The address forms are listed at the end too.
        listed.remove("name");
        listed.remove("host:port,");
        let names: BTreeSet<_> = COMMANDS.iter().map(|c| c.name).collect();
        assert_eq!(listed, names);
        for spec in COMMANDS {
            assert!(
                top.contains(&format!("{}:\n", spec.group)),
                "{}",
                spec.group
            );
        }
    }

    #[test]
    fn client_parsers_accept_exactly_the_table_flags() {
        let mut candidates = BTreeSet::new();
        for source in SOURCES.iter().chain([&SERVE, &CHECK]) {
            candidates.extend(matched_flags(source));
        }
        for spec in COMMANDS {
            candidates.extend(table_flags(spec));
        }
        for name in crate::cli::client_command_names() {
            let spec = find(name).expect(name);
            let accepted: BTreeSet<String> = candidates
                .iter()
                .filter(|flag| !parser_refuses(name, flag))
                .cloned()
                .collect();
            assert_eq!(accepted, table_flags(spec), "xs {name}");
        }
    }

    #[test]
    fn serve_and_check_parse_exactly_the_table_flags() {
        for (name, source) in [("serve", SERVE), ("check", CHECK)] {
            let spec = find(name).expect(name);
            assert_eq!(matched_flags(source), table_flags(spec), "xs {name}");
            assert_eq!(listed_flags(source), table_flags(spec), "xs {name} --help");
        }
    }

    #[test]
    fn usage_texts_list_exactly_the_table_flags() {
        for name in crate::cli::client_command_names() {
            let spec = find(name).expect(name);
            let usage = crate::cli::usage_of(name).expect(name);
            assert_eq!(listed_flags(usage), table_flags(spec), "xs {name} --help");
            // Short forms are listed beside their long ones.
            for flag in spec.flags {
                if let Some(c) = flag.short {
                    assert!(usage.contains(&format!("-{c}, --{}", flag.long)), "{name}");
                }
            }
        }
    }

    #[test]
    fn choices_complete_to_their_fixed_part() {
        assert_eq!(
            choice_words(&["always", "never", "interval:<ms>"]),
            ["always", "never", "interval:"]
        );
    }
}
