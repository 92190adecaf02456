//! `xs completions <shell>` and `xs man`, checked in the real programs: each
//! completion script loads in its shell (bash, zsh, fish, Nushell), and
//! bash's, fish's and Nushell's completers give the expected words for a
//! few command lines, a running store's topics included (through the
//! hidden `xs __complete topics <addr>`); the man page renders in groff
//! without a warning.
//!
//! A missing shell fails its test, unless `XS_SKIP_SHELL_TESTS=1`: then the
//! test says why and passes (scripts/install-shells.sh installs them).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::cli::*;
use common::*;

/// The folder of the binary under test, first on PATH: the scripts call
/// `xs` by name.
fn path_with_xs() -> std::ffi::OsString {
    let dir = Path::new(XS).parent().expect("binary folder").to_path_buf();
    let mut paths = vec![dir];
    if let Some(path) = std::env::var_os("PATH") {
        paths.extend(std::env::split_paths(&path));
    }
    std::env::join_paths(paths).expect("PATH")
}

/// `program` on PATH; `None` (the test then returns early) only when the
/// shell tests may be skipped, otherwise the test fails saying what to
/// install.
fn program(name: &str) -> Option<PathBuf> {
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    if std::env::var("XS_SKIP_SHELL_TESTS").as_deref() == Ok("1") {
        eprintln!("skipped: no `{name}` on PATH (XS_SKIP_SHELL_TESTS=1)");
        return None;
    }
    panic!("no `{name}` on PATH: run scripts/install-shells.sh (or set XS_SKIP_SHELL_TESTS=1)");
}

/// The repository's Nushell (as tests/xs_nu.rs finds it), or `None` when
/// there is none and the shell tests may be skipped.
fn nu() -> Option<PathBuf> {
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/bin/nu");
    if !local.is_file()
        && std::env::var("XS_SKIP_SHELL_TESTS").as_deref() == Ok("1")
        && program("nu").is_none()
    {
        return None;
    }
    Some(nu_binary())
}

/// `xs completions <shell>` saved into `dir`.
fn script(dir: &Path, shell: &str) -> PathBuf {
    let text = ok(&xs(&["completions", shell]));
    let path = dir.join(format!("xs.{shell}"));
    std::fs::write(&path, text).expect("write the script");
    path
}

/// Runs `program args…` with the binary on PATH; fails on a non-zero exit
/// or anything on stderr.
fn clean_run(program: &Path, args: &[&str]) -> String {
    let mut cmd = Command::new(program);
    cmd.args(args).env("PATH", path_with_xs());
    let out: Output = run(cmd, None);
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{} {args:?}: {:?}\n{}",
        program.display(),
        out.status,
        stderr(&out)
    );
    stdout(&out)
}

/// A store with frames on two topics besides `xs.start`.
fn store_with_topics() -> Server {
    let server = Server::start_local(&[]);
    server.append("note", b"a");
    server.append("user.login", b"b");
    server
}

#[test]
fn complete_topics_lists_a_stores_topics_and_is_quiet_on_errors() {
    let server = store_with_topics();
    let out = ok(&xs(&["__complete", "topics", &addr(&server)]));
    assert_eq!(out, "note\nuser.login\nxs.start\n");
    let tmp = tempfile::tempdir().expect("tempdir");
    let nowhere = tmp.path().join("no-store");
    for args in [
        vec!["__complete", "topics", nowhere.to_str().expect("path")],
        vec!["__complete", "topics"],
        vec!["__complete", "frobs", &addr(&server)],
        vec!["__complete"],
    ] {
        let out = xs(&args);
        assert!(out.status.success(), "{args:?}");
        assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{args:?}");
    }
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let out = xs(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).starts_with("error: unknown shell 'tcsh'"));
}

#[test]
fn bash_script_loads_and_completes_commands_flags_values_and_topics() {
    let Some(bash) = program("bash") else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = script(tmp.path(), "bash");
    let file = file.to_str().expect("path");
    clean_run(&bash, &["-n", file]);
    let server = store_with_topics();
    let store = addr(&server);
    // `comp word…` runs the completion function as bash does on TAB
    // after the last word, and prints what it offers on one line.
    let test = format!(
        r#"set -u
source {file}
comp() {{ COMP_WORDS=("$@"); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 )); _xs; echo "${{COMPREPLY[*]}}"; }}
complete -p xs
comp xs ca
comp xs serve ./s --fsync ''
comp xs cat {store} -T ''
comp xs last {store} us
comp xs append {store} note --ttl ''
comp xs kv ''
comp xs tac {store} --w
comp xs completions ''
"#
    );
    let out = clean_run(&bash, &["-c", &test]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "complete -F _xs xs",
            "cat cas cas-post",
            "always never interval:",
            "note user.login xs.start",
            "user.login",
            "forever ephemeral time: last:",
            "get set del ls watch",
            "--with-timestamp",
            "bash zsh fish nushell",
        ]
    );
}

#[test]
fn zsh_script_loads_after_compinit() {
    let Some(zsh) = program("zsh") else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = script(tmp.path(), "zsh");
    let test = format!(
        "autoload -U compinit; compinit -u -d {dump}; source {file}; print -r -- $_comps[xs]",
        dump = tmp.path().join("zcompdump").display(),
        file = file.display()
    );
    assert_eq!(clean_run(&zsh, &["-f", "-c", &test]), "_xs\n");
}

#[test]
fn zsh_completes_flag_values_and_topics_on_a_terminal() {
    let Some(zsh) = program("zsh") else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = script(tmp.path(), "zsh");
    let server = store_with_topics();
    // An interactive zsh on a pseudo-terminal (zpty): type a command line
    // and TAB twice, then read until the listing shows the expected words
    // (a missing word leaves the read waiting, and `run` kills it).
    let test = format!(
        r#"zmodload zsh/zpty
zpty z zsh -f -i
zpty -w z 'PS1="> "; autoload -U compinit; compinit -u -d {dump}; source {file}; print RE""ADY'
zpty -r z out '*READY*'
zpty -wn z 'xs serve ./s --fsync '$'\t\t'
zpty -r z out '*always*interval:*never*'
zpty -wn z $'\C-u''xs cat {store} -T '$'\t\t'
zpty -r z out '*note*user.login*xs.start*'
zpty -d z
print -r -- done"#,
        dump = tmp.path().join("zcompdump").display(),
        file = file.display(),
        store = addr(&server),
    );
    assert_eq!(clean_run(&zsh, &["-f", "-c", &test]), "done\n");
}

#[test]
fn fish_script_loads_and_completes() {
    let Some(fish) = program("fish") else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = script(tmp.path(), "fish");
    let file = file.to_str().expect("path");
    clean_run(&fish, &["--no-config", "-n", file]);
    let server = store_with_topics();
    let store = addr(&server);
    // `complete -C` prints what fish would offer, a word and its
    // description per line.
    let words = |line: &str| -> Vec<String> {
        let test = format!("source {file}; complete -C '{line}'");
        clean_run(&fish, &["--no-config", "-c", &test])
            .lines()
            .map(|l| l.split('\t').next().unwrap_or_default().to_string())
            .collect()
    };
    assert_eq!(words("xs ca"), ["cas", "cas-post", "cat"]);
    assert_eq!(
        words("xs serve ./s --fsync "),
        ["always", "interval:", "never"]
    );
    assert_eq!(
        words(&format!("xs cat {store} -T ")),
        ["note", "user.login", "xs.start"]
    );
}

#[test]
fn nushell_script_loads_and_completes() {
    let Some(nu) = nu() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = script(tmp.path(), "nushell");
    let file = file.to_str().expect("path");
    clean_run(&nu, &["-n", "-c", &format!("source {file}")]);
    let server = store_with_topics();
    let store = addr(&server);
    // `nu --ide-complete <offset> <file>`: what Nushell offers at the end
    // of a file that sources the script and then types a command line.
    let completions = |line: &str| -> String {
        let typed = tmp.path().join("typed.nu");
        let text = format!("source {file}\n{line}");
        std::fs::write(&typed, &text).expect("write");
        let offset = text.len().to_string();
        let typed = typed.to_str().expect("path");
        clean_run(&nu, &["-n", "--ide-complete", &offset, typed])
    };
    let values =
        |line: &str| -> serde_json::Value { json(&completions(line))["completions"].clone() };
    assert_eq!(
        values("xs serve ./s --fsync "),
        serde_json::json!(["always", "interval:", "never"])
    );
    assert_eq!(
        values(&format!("xs cat {store} -T ")),
        serde_json::json!(["note", "user.login", "xs.start"])
    );
    // A command line still runs as typed with the script loaded.
    let run = format!("source {file}; xs last {store} note | from json | get topic");
    assert_eq!(clean_run(&nu, &["-n", "-c", &run]).trim(), "note");
}

#[test]
fn man_page_renders_without_warnings_and_names_every_command() {
    let Some(groff) = program("groff") else {
        return;
    };
    let page = ok(&xs(&["man"]));
    let mut cmd = Command::new(groff);
    cmd.args(["-man", "-Tutf8", "-ww"]);
    let out = run(cmd, Some(page.as_bytes()));
    assert!(out.status.success(), "{:?}", out.status);
    assert_eq!(stderr(&out), "", "groff warned");
    // Bold text is overstruck in groff's tty output; strip that first.
    let text = stdout(&out);
    let mut plain = String::new();
    for c in text.chars() {
        if c == '\u{8}' {
            plain.pop();
        } else {
            plain.push(c);
        }
    }
    let help = ok(&xs(&["--help"]));
    let commands: Vec<&str> = help
        .lines()
        .filter_map(|l| l.strip_prefix("  "))
        .filter_map(|l| l.split([' ', '|']).next())
        .filter(|w| w.chars().next().is_some_and(|c| c.is_ascii_lowercase()))
        .filter(|w| *w != "name" && !w.contains(':'))
        .collect();
    assert!(commands.len() >= 20, "{commands:?}");
    for command in commands {
        assert!(
            plain.contains(&format!("\n   {command}\n")),
            "no section for {command}"
        );
    }
    for section in ["ADDRESSES", "HTTP API", "ENVIRONMENT", "FILES"] {
        assert!(plain.contains(&format!("\n{section}\n")), "{section}");
    }
    assert!(plain.contains("POST /append/<topic>"));
    assert!(plain.contains("NOTIFY_SOCKET"));
}
