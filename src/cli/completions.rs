//! `xs completions bash|zsh|fish|nushell`: a completion script generated
//! from the command table (table.rs), and the hidden `xs __complete topics
//! <addr>` the scripts call back into for a store's topics.
//!
//! Each generator is one function that writes the table out in its shell's
//! own terms; the shell-side logic is a short fixed prelude. Topic
//! completion lists the topics of the store's newest frames (there is no
//! topics route; the newest `TOPIC_SCAN` frames are a bounded, fast read
//! that covers the topics in use) and gives up quietly after
//! `TOPIC_DEADLINE`, so a TAB never hangs and never prints an error.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::BufRead;
use std::time::Duration;

use super::address::Address;
use super::args::{only_positionals, usage, Stop};
use super::client::{call, Request};
use super::output::to_stdout;
use super::table::{choice_words, Kind, Spec, COMMANDS, SHELLS};

/// How many of the newest frames `__complete topics` reads.
const TOPIC_SCAN: u64 = 10_000;
/// How long `__complete topics` may take before it gives up, silently.
const TOPIC_DEADLINE: Duration = Duration::from_secs(2);

/// `xs completions <shell>`
pub fn completions(args: Vec<OsString>) -> Result<(), Stop> {
    let [shell] = only_positionals(args, ["shell"])?;
    let script = script(&shell).ok_or_else(|| {
        usage(format!(
            "unknown shell '{shell}': expected {}",
            SHELLS.join(", ")
        ))
    })?;
    to_stdout(script.as_bytes())
}

/// The completion script for `shell`, if it is one of `SHELLS`.
pub fn script(shell: &str) -> Option<String> {
    match shell {
        "bash" => Some(bash()),
        "zsh" => Some(zsh()),
        "fish" => Some(fish()),
        "nushell" | "nu" => Some(nushell()),
        _ => None,
    }
}

/// `xs __complete topics <addr>`: the store's topics, one a line. Prints
/// nothing and exits 0 on any error: its output goes straight into a
/// shell's completion list.
pub fn complete(args: Vec<OsString>) -> i32 {
    let args: Vec<String> = args
        .into_iter()
        .filter_map(|a| a.into_string().ok())
        .collect();
    let [what, addr] = args.as_slice() else {
        return 0;
    };
    if what != "topics" {
        return 0;
    }
    let addr = addr.clone();
    let (send, receive) = std::sync::mpsc::channel();
    // The read runs on its own thread so a stuck server cannot hold the
    // shell: past the deadline, the process exits without it.
    std::thread::spawn(move || {
        let _ = send.send(topics(&addr));
    });
    if let Ok(Some(topics)) = receive.recv_timeout(TOPIC_DEADLINE) {
        let mut out = String::new();
        for topic in topics {
            out.push_str(&topic);
            out.push('\n');
        }
        let _ = to_stdout(out.as_bytes());
    }
    0
}

/// The distinct topics of the newest `TOPIC_SCAN` frames, sorted.
fn topics(addr: &str) -> Option<BTreeSet<String>> {
    let address = Address::parse(addr).ok()?;
    let target = format!("/?rev&limit={TOPIC_SCAN}");
    let response = call(&address, Request::get(target)).ok()?;
    let mut topics = BTreeSet::new();
    for line in std::io::BufReader::new(response.body).lines() {
        let line = line.ok()?;
        let Ok(frame) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        // Only what a topic may be: the words go into a shell's
        // completion list, where `$(…)` from a server would run.
        if let Some(topic) = frame.get("topic").and_then(|t| t.as_str()) {
            if crate::store::topic::validate_topic(topic).is_ok() {
                topics.insert(topic.to_string());
            }
        }
    }
    Some(topics)
}

/// Every command name, space-separated.
fn command_names() -> String {
    COMMANDS
        .iter()
        .map(|c| c.name)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A flag's spellings: `-s --long` or `--long`.
fn spellings(long: &str, short: Option<char>) -> Vec<String> {
    let mut all: Vec<String> = short.map(|c| format!("-{c}")).into_iter().collect();
    all.push(format!("--{long}"));
    all
}

/// Single-quotes `text` for bash.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// What bash completes for a kind: `@addr`-style markers or the words.
fn bash_want(kind: Kind) -> String {
    match kind {
        Kind::Addr | Kind::File => "@file".into(),
        Kind::Dir => "@dir".into(),
        Kind::Topics => "@topics".into(),
        Kind::Command => command_names(),
        Kind::Choice(choices) => choice_words(choices).join(" "),
        Kind::Text => "@none".into(),
    }
}

fn bash() -> String {
    let mut values = String::new();
    let mut positions = String::new();
    let mut commands = String::new();
    for spec in COMMANDS {
        for flag in spec.flags {
            if let Some((_, kind)) = flag.value {
                let keys: Vec<String> = spellings(flag.long, flag.short)
                    .iter()
                    .map(|s| quote(&format!("{} {s}", spec.name)))
                    .collect();
                let want = quote(&bash_want(kind));
                let _ = writeln!(values, "    {}) REPLY={want};;", keys.join("|"));
            }
        }
        for (i, positional) in spec.positionals.iter().enumerate() {
            let key = quote(&format!("{} {i}", spec.name));
            let want = quote(&bash_want(positional.kind));
            let _ = writeln!(positions, "    {key}) REPLY={want};;");
        }
        let flags: Vec<String> = spec
            .flags
            .iter()
            .flat_map(|f| spellings(f.long, f.short))
            .chain(["-h".into(), "--help".into()])
            .collect();
        let addr_at = spec.addr_index().map_or(-1, |i| i as i64);
        let _ = writeln!(
            commands,
            "    {}) flags={}; addr_at={addr_at};;",
            quote(spec.name),
            quote(&flags.join(" "))
        );
    }
    format!(
        r#"# bash completion for xs, generated by `xs completions bash`.
# Load it with: source <(xs completions bash)

# _xs_value <command> <flag>: REPLY is what the flag's value completes to;
# fails when the flag takes no value.
_xs_value() {{
  case "$1 $2" in
{values}    *) return 1;;
  esac
}}

# _xs_positional <command> <index>: REPLY is what that positional completes to.
_xs_positional() {{
  REPLY=@none
  case "$1 $2" in
{positions}  esac
}}

_xs() {{
  local cur=${{COMP_WORDS[COMP_CWORD]}} cmd=${{COMP_WORDS[1]}} flags='' addr_at=-1
  local addr='' want='' n=0 i word REPLY
  COMPREPLY=()
  if (( COMP_CWORD == 1 )); then
    mapfile -t COMPREPLY < <(compgen -W '{names} -h --help -V --version' -- "$cur")
    return
  fi
  case "$cmd" in
{commands}    *) return;;
  esac
  # Count the positionals before the cursor, skipping flags' values.
  for (( i = 2; i < COMP_CWORD; i++ )); do
    word=${{COMP_WORDS[i]}}
    if [[ $word == -* ]]; then
      _xs_value "$cmd" "$word" && i=$((i + 1))
    else
      [[ $n == "$addr_at" ]] && addr=$word
      n=$((n + 1))
    fi
  done
  word=${{COMP_WORDS[COMP_CWORD-1]}}
  if (( COMP_CWORD > 2 )) && [[ $word == -* ]] && _xs_value "$cmd" "$word"; then
    want=$REPLY
  elif [[ $cur == -* ]]; then
    mapfile -t COMPREPLY < <(compgen -W "$flags" -- "$cur")
    return
  else
    _xs_positional "$cmd" "$n"
    want=$REPLY
  fi
  case "$want" in
    @file) compopt -o filenames 2>/dev/null; mapfile -t COMPREPLY < <(compgen -f -- "$cur");;
    @dir) compopt -o filenames 2>/dev/null; mapfile -t COMPREPLY < <(compgen -d -- "$cur");;
    @topics)
      [[ -n $addr ]] || return
      addr=${{addr/#\~/$HOME}}
      mapfile -t COMPREPLY < <(compgen -W "$("${{COMP_WORDS[0]}}" __complete topics "$addr" 2>/dev/null)" -- "$cur");;
    @none) ;;
    *) mapfile -t COMPREPLY < <(compgen -W "$want" -- "$cur");;
  esac
}}
complete -F _xs xs
"#,
        names = command_names()
    )
}

/// Text for inside a zsh `_arguments` description: no brackets, colons
/// escaped.
fn zsh_text(text: &str) -> String {
    text.replace('[', "(")
        .replace(']', ")")
        .replace(':', r"\:")
        .replace('\'', "'\\''")
}

/// A zsh `_arguments` action for a kind.
fn zsh_action(kind: Kind, spec: &Spec) -> String {
    match kind {
        Kind::Addr | Kind::File => "_files".into(),
        Kind::Dir => "_files -/".into(),
        Kind::Topics => match spec.addr_index() {
            Some(i) => format!("_xs_topics {}", i + 1),
            None => " ".into(),
        },
        Kind::Command => format!("({})", command_names()),
        Kind::Choice(choices) => format!("({})", zsh_text(&choice_words(choices).join(" "))),
        Kind::Text => " ".into(),
    }
}

fn zsh() -> String {
    let mut described = String::new();
    let mut cases = String::new();
    for spec in COMMANDS {
        let _ = writeln!(described, "    '{}:{}'", spec.name, zsh_text(spec.summary));
        let mut specs = Vec::new();
        for flag in spec.flags {
            for spelling in spellings(flag.long, flag.short) {
                let value = match flag.value {
                    Some((placeholder, kind)) => {
                        format!(":{placeholder}:{}", zsh_action(kind, spec))
                    }
                    None => String::new(),
                };
                specs.push(format!("'{spelling}[{}]{value}'", zsh_text(flag.help)));
            }
        }
        for (i, positional) in spec.positionals.iter().enumerate() {
            let optional = if positional.optional { ":" } else { "" };
            specs.push(format!(
                "'{}:{optional}{}:{}'",
                i + 1,
                positional.name,
                zsh_action(positional.kind, spec)
            ));
        }
        specs.push("'(- *)'{-h,--help}'[print help]'".into());
        let _ = writeln!(
            cases,
            "        {}) _arguments \\\n          {} ;;",
            spec.name,
            specs.join(" \\\n          ")
        );
    }
    format!(
        r#"#compdef xs
# zsh completion for xs, generated by `xs completions zsh`.
# Load it with: source <(xs completions zsh), after compinit.

# _xs_topics <compadd options> <n>: the topics of the store named by the
# <n>th argument (_arguments puts its options before ours).
_xs_topics() {{
  local addr=${{line[${{@[-1]}}]}}
  [[ -n $addr ]] || return 1
  addr=${{addr/#\~/$HOME}}
  local -a topics
  topics=(${{(f)"$($_xs_bin __complete topics $addr 2>/dev/null)"}})
  compadd "${{@[1,-2]}}" -a topics
}}

_xs() {{
  local _xs_bin=$words[1] curcontext=$curcontext state line
  typeset -A opt_args
  local -a commands
  commands=(
{described}  )
  _arguments -C \
    '(- *)'{{-h,--help}}'[print help]' \
    '(- *)'{{-V,--version}}'[print the version]' \
    '1:command:->command' \
    '*::arg:->args' && return
  case $state in
    command) _describe -t commands command commands ;;
    args)
      case $words[1] in
{cases}      esac ;;
  esac
}}

if [[ $funcstack[1] == _xs ]]; then
  _xs "$@"
else
  compdef _xs xs
fi
"#
    )
}

/// Text for inside a fish single-quoted string.
fn fish_text(text: &str) -> String {
    text.replace('\\', r"\\").replace('\'', r"\'")
}

/// The `complete` arguments that make fish offer a kind.
fn fish_offer(kind: Kind, spec: &Spec) -> String {
    match kind {
        Kind::Addr | Kind::File => "-F".into(),
        Kind::Dir => "-x -a '(__fish_complete_directories)'".into(),
        Kind::Topics => match spec.addr_index() {
            Some(i) => format!("-x -a '(__xs_topics {i})'"),
            None => "-x".into(),
        },
        Kind::Command => format!("-x -a '{}'", command_names()),
        Kind::Choice(choices) => format!("-x -a '{}'", fish_text(&choice_words(choices).join(" "))),
        Kind::Text => "-x".into(),
    }
}

fn fish() -> String {
    let mut lines = String::new();
    for spec in COMMANDS {
        let _ = writeln!(
            lines,
            "complete -c xs -n __fish_use_subcommand -a {} -d '{}'",
            spec.name,
            fish_text(spec.summary)
        );
        let seen = format!("-n '__fish_seen_subcommand_from {}'", spec.name);
        for flag in spec.flags {
            let short = flag.short.map(|c| format!(" -s {c}")).unwrap_or_default();
            let value = match flag.value {
                Some((_, kind)) => format!(" {}", fish_offer(kind, spec)),
                None => String::new(),
            };
            let _ = writeln!(
                lines,
                "complete -c xs {seen}{short} -l {}{value} -d '{}'",
                flag.long,
                fish_text(flag.help)
            );
        }
        for (i, positional) in spec.positionals.iter().enumerate() {
            let _ = writeln!(
                lines,
                "complete -c xs -n '__xs_at {} {i}' {} -d '{}'",
                spec.name,
                fish_offer(positional.kind, spec),
                positional.name
            );
        }
    }
    format!(
        r#"# fish completion for xs, generated by `xs completions fish`.
# Load it with: xs completions fish | source

# The positionals typed after the command (words not starting with -).
function __xs_positionals
    set -l words (commandline -opc)
    for word in $words[3..-1]
        string match -q -- '-*' $word; or echo $word
    end
end

# __xs_at <command> <n>: the cursor is at the command's <n>th positional.
function __xs_at --argument-names command n
    set -l words (commandline -opc)
    test (count $words) -ge 2; and test "$words[2]" = $command; or return 1
    test (count (__xs_positionals)) -eq $n
end

# __xs_topics <n>: the topics of the store named by the <n>th positional.
function __xs_topics --argument-names n
    set -l words (commandline -opc)
    set -l positionals (__xs_positionals)
    set -l at (math $n + 1)
    test (count $positionals) -ge $at; or return
    set -l addr (string replace -r '^~' -- $HOME $positionals[$at])
    $words[1] __complete topics $addr 2>/dev/null
end

complete -c xs -f
complete -c xs -n __fish_use_subcommand -s h -l help -d 'print help'
complete -c xs -n __fish_use_subcommand -s V -l version -d 'print the version'
{lines}"#
    )
}

/// A Nushell type for a kind: `path` gets path completion.
fn nu_type(kind: Kind, completer: &str) -> String {
    match kind {
        Kind::Addr | Kind::File | Kind::Dir => "path".into(),
        Kind::Topics | Kind::Command | Kind::Choice(_) => format!("string@\"{completer}\""),
        Kind::Text => "string".into(),
    }
}

/// The completer a kind needs: its name and, for fixed words, its
/// definition.
fn nu_completer(kind: Kind, name: &str, defs: &mut String) -> String {
    match kind {
        Kind::Topics => "nu-complete xs topics".into(),
        Kind::Command => "nu-complete xs commands".into(),
        Kind::Choice(choices) => {
            let completer = format!("nu-complete xs {name}");
            let words: Vec<String> = choice_words(choices)
                .iter()
                .map(|w| format!("\"{w}\""))
                .collect();
            let _ = writeln!(defs, "def \"{completer}\" [] {{ [{}] }}", words.join(" "));
            completer
        }
        _ => String::new(),
    }
}

fn nushell() -> String {
    let mut defs = String::new();
    let mut externs = String::new();
    for spec in COMMANDS {
        let mut params = Vec::new();
        for positional in spec.positionals {
            let name = format!("{} {}", spec.name, positional.name);
            let completer = nu_completer(positional.kind, &name, &mut defs);
            let optional = if positional.optional { "?" } else { "" };
            params.push(format!(
                "  {}{optional}: {}  # {}",
                positional.name,
                nu_type(positional.kind, &completer),
                positional.name
            ));
        }
        for flag in spec.flags {
            let short = flag.short.map(|c| format!("(-{c})")).unwrap_or_default();
            let value = match flag.value {
                Some((_, kind)) => {
                    let name = format!("{} {}", spec.name, flag.long);
                    let completer = nu_completer(kind, &name, &mut defs);
                    format!(": {}", nu_type(kind, &completer))
                }
                None => String::new(),
            };
            params.push(format!("  --{}{short}{value}  # {}", flag.long, flag.help));
        }
        let _ = writeln!(
            externs,
            "# {}\nexport extern \"xs {}\" [\n{}\n]\n",
            spec.summary,
            spec.name,
            params.join("\n")
        );
    }
    let names: Vec<String> = COMMANDS.iter().map(|c| format!("\"{}\"", c.name)).collect();
    format!(
        r#"# Nushell completion for xs, generated by `xs completions nushell`.
# Load it with: xs completions nushell | save -f ~/.xs-completions.nu
# and `source ~/.xs-completions.nu` in your config.nu.

def "nu-complete xs commands" [] {{ [{names}] }}

# The topics of the store named by the first positional after the command.
def "nu-complete xs topics" [context: string] {{
  let words = ($context | split row ' ' | where {{|w| $w != '' }})
  let addr = ($words | skip 2 | where {{|w| not ($w | str starts-with '-') }})
  if ($addr | is-empty) {{ return [] }}
  ^($words | first) __complete topics ($addr | first) | lines
}}
{defs}
# a local-first event stream store
export extern "xs" [
  command?: string@"nu-complete xs commands"  # the command
  --version(-V)  # print the version
]

{externs}"#,
        names = names.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shell_has_a_script_naming_every_command() {
        for shell in SHELLS {
            let script = script(shell).expect(shell);
            for spec in COMMANDS {
                assert!(script.contains(spec.name), "{shell}: {}", spec.name);
            }
        }
        assert!(script("tcsh").is_none());
    }

    #[test]
    fn topics_of_a_bad_address_print_nothing() {
        assert!(topics("./no/such/store").is_none());
        assert_eq!(complete(vec!["topics".into()]), 0);
        assert_eq!(complete(vec!["frobs".into(), "./s".into()]), 0);
    }
}
