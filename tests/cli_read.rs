//! The `xs` read commands as a user types them: `cat`, `cat -f`, `--sse`,
//! `last`, `first`, `tac`, `get`, `next`, `prev`, `--since/--until`, and
//! how the binary behaves at the edges (no store, closed stdout, usage
//! errors, `--help`, `--version`). Mirrors cross.stream's
//! `tests/integration.rs` (reference 10.1) where it overlaps.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::time::Duration;

use common::cli::*;
use common::*;
use serde_json::Value;

/// `xs append <dir> <topic>` with an empty stdin; the printed frame.
fn append(server: &Server, topic: &str) -> Value {
    json(&ok(&xs(&["append", &addr(server), topic])))
}

// ---------------------------------------------------------------------------
// cat

#[test]
fn cat_of_a_fresh_store_is_one_start_frame() {
    let server = Server::start(&[]);
    let out = ok(&xs(&["cat", &addr(&server)]));
    assert!(
        out.ends_with('\n'),
        "NDJSON lines end in a newline: {out:?}"
    );
    let frames = lines(&out);
    assert_eq!(topics(&frames), ["xs.start"], "{out}");
    assert_eq!(keys(&frames[0]), ["topic", "id", "hash", "meta", "ttl"]);
    assert_eq!(frames[0]["hash"], Value::Null);
    assert_eq!(frames[0]["ttl"], Value::Null);
}

#[test]
fn cat_follow_prints_history_threshold_then_live_frames() {
    let server = Server::start(&[]);
    let dir = addr(&server);
    let follower = Follower::spawn(&["cat", &dir, "-f"]);
    assert_eq!(topic(&follower.frame()), "xs.start");
    let threshold = follower.frame();
    assert_eq!(topic(&threshold), "xs.threshold");
    assert_eq!(threshold["ttl"], "ephemeral");
    follower.silent(ms(200));

    let printed = ok(&xs_stdin(&["append", &dir, "note"], b"a live note"));
    let live = follower.line();
    assert_eq!(
        live,
        printed.trim_end(),
        "the follower prints the frame `append` printed"
    );
    assert_eq!(topic(&json(&live)), "note");
    follower.silent(ms(100));

    // Once the note is in, a plain cat lists both frames in order.
    let frames = lines(&ok(&xs(&["cat", &dir])));
    assert_eq!(topics(&frames), ["xs.start", "note"]);
    assert_eq!(id(&frames[1]), id(&json(&printed)));
}

#[test]
fn cat_sse_prints_event_stream_records() {
    let server = Server::start(&[]);
    let dir = addr(&server);
    let note = append(&server, "note");
    let out = ok(&xs(&["cat", &dir, "--sse"]));
    assert!(!out.starts_with('{'), "SSE, not NDJSON: {out:?}");
    assert!(out.contains("id: "), "{out:?}");
    assert!(out.contains("data: "), "{out:?}");
    assert!(out.contains(&format!("id: {}\n", id(&note))), "{out:?}");
    // Each record's data line is the frame JSON.
    let data: Vec<Value> = out
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(json)
        .collect();
    assert_eq!(topics(&data), ["xs.start", "note"]);
}

#[test]
fn cat_to_a_file_writes_the_same_lines() {
    let server = Server::start(&[]);
    let dir = addr(&server);
    append(&server, "one");
    append(&server, "two");
    let expected = ok(&xs(&["cat", &dir]));

    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("out.ndjson");
    let file = fs::File::create(&path).unwrap();
    let mut child = cmd(&["cat", &dir])
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_for(&mut child, COMMAND_TIMEOUT).expect("xs cat > file finishes");
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "{status:?}: {err}");
    assert_eq!(err, "");
    assert_eq!(fs::read_to_string(&path).unwrap(), expected);
    assert_eq!(
        topics(&lines(&expected)),
        ["xs.start", "one", "two"],
        "{expected}"
    );
}

#[test]
fn cat_follow_into_a_reader_that_goes_away_exits_quietly() {
    // `xs cat <dir> -f | head -1`: once head has its line and leaves, the
    // next frame cat writes hits the closed pipe and cat ends, exit 0,
    // nothing on stderr.
    let server = Server::start(&[]);
    let dir = addr(&server);
    let mut child = cmd(&["cat", &dir, "-f"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = drain(child.stderr.take().unwrap());
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert_eq!(topic(&json(&first)), "xs.start");
    drop(out); // head -1 is done

    append(&server, "poke");
    let status = wait_for(&mut child, Duration::from_secs(10))
        .expect("xs cat -f exits once its stdout is closed");
    let err = String::from_utf8_lossy(&err.join().unwrap()).into_owned();
    assert_eq!(status.code(), Some(0), "stderr: {err}");
    assert_eq!(err, "", "a closed stdout is not an error");
}

#[test]
fn cat_into_a_reader_that_goes_away_early_exits_quietly() {
    // `xs cat <dir> | head -c 10` on more output than a pipe holds.
    let server = Server::start(&[]);
    let dir = addr(&server);
    let meta = format!("{{\"pad\":\"{}\"}}", "x".repeat(40_000));
    for _ in 0..4 {
        let r = request(
            &server.sock(),
            "POST",
            "/append/big",
            &[("xs-meta", &b64(meta.as_bytes()))],
            b"",
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let mut child = cmd(&["cat", &dir])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = drain(child.stderr.take().unwrap());
    let mut out = child.stdout.take().unwrap();
    let mut ten = [0u8; 10];
    out.read_exact(&mut ten).unwrap();
    assert_eq!(&ten, b"{\"topic\":\"");
    drop(out);
    let status = wait_for(&mut child, Duration::from_secs(10))
        .expect("xs cat exits once its stdout is closed");
    let err = String::from_utf8_lossy(&err.join().unwrap()).into_owned();
    assert_eq!(status.code(), Some(0), "stderr: {err}");
    assert_eq!(err, "");
}

// ---------------------------------------------------------------------------
// last, first, tac, get, next, prev

/// alpha, beta, alpha, single after xs.start.
fn four_frames(server: &Server) -> (Value, Value, Value, Value) {
    let a1 = append(server, "alpha");
    let b1 = append(server, "beta");
    let a2 = append(server, "alpha");
    let s1 = append(server, "single");
    (a1, b1, a2, s1)
}

#[test]
fn last_picks_topics_and_counts_like_cross_stream() {
    let server = Server::start(&[]);
    let dir = addr(&server);
    let (a1, b1, a2, s1) = four_frames(&server);

    // One frame: the JSON object and a newline (cross.stream leaves it off).
    let out = ok(&xs(&["last", &dir, "alpha"]));
    assert_eq!(out, format!("{}\n", serde_json::to_string(&a2).unwrap()));

    // No topic: the newest overall.
    assert_eq!(json(&ok(&xs(&["last", &dir]))), s1);

    // A topic and a count: NDJSON, oldest first.
    let out = ok(&xs(&["last", &dir, "alpha", "2"]));
    assert_eq!(out.lines().count(), 2, "{out}");
    assert_eq!(lines(&out), [a1.clone(), a2.clone()]);

    // A bare number is a count.
    let out = ok(&xs(&["last", &dir, "3"]));
    assert_eq!(out.lines().count(), 3, "{out}");
    assert_eq!(lines(&out), [b1, a2, s1.clone()]);

    // `*` is every topic.
    assert_eq!(json(&ok(&xs(&["last", &dir, "*"]))), s1);

    // Asking for 3 of a topic that has one: NDJSON all the same.
    let out = ok(&xs(&["last", &dir, "single", "3"]));
    assert!(out.ends_with('\n'), "{out:?}");
    assert_eq!(out, format!("{}\n", serde_json::to_string(&s1).unwrap()));

    // Nothing there: exit 1, no output.
    not_found(&xs(&["last", &dir, "nothing.here"]));
}

#[test]
fn first_and_tac_read_from_the_other_end() {
    let server = Server::start(&[]);
    let dir = addr(&server);
    let (a1, b1, a2, s1) = four_frames(&server);

    assert_eq!(topic(&json(&ok(&xs(&["first", &dir])))), "xs.start");
    assert_eq!(json(&ok(&xs(&["first", &dir, "alpha"]))), a1);
    assert_eq!(
        lines(&ok(&xs(&["first", &dir, "alpha", "2"]))),
        [a1.clone(), a2.clone()]
    );
    not_found(&xs(&["first", &dir, "nothing.here"]));

    assert_eq!(
        lines(&ok(&xs(&["tac", &dir, "--limit", "2"]))),
        [s1.clone(), a2.clone()]
    );
    assert_eq!(
        lines(&ok(&xs(&["tac", &dir, "-T", "alpha"]))),
        [a2.clone(), a1.clone()]
    );
    let all = lines(&ok(&xs(&["tac", &dir])));
    assert_eq!(
        topics(&all),
        ["single", "alpha", "beta", "alpha", "xs.start"]
    );
    assert_eq!(
        lines(&ok(&xs(&[
            "tac",
            &dir,
            "--before",
            id(&a2),
            "--limit",
            "1"
        ]))),
        [b1]
    );
}

#[test]
fn get_next_and_prev_find_single_frames() {
    let server = Server::start(&[]);
    let dir = addr(&server);
    let start = json(&ok(&xs(&["first", &dir])));
    let (a1, b1, a2, s1) = four_frames(&server);

    let out = ok(&xs(&["get", &dir, id(&b1)]));
    assert_eq!(json(&out), b1);
    let stamped = json(&ok(&xs(&["get", &dir, id(&b1), "--with-timestamp"])));
    assert_eq!(
        keys(&stamped),
        ["topic", "id", "hash", "meta", "ttl", "timestamp"]
    );
    assert_eq!(stamped["timestamp"], rfc3339(id_ms(id(&b1))));

    assert_eq!(json(&ok(&xs(&["next", &dir, id(&a1)]))), b1);
    assert_eq!(json(&ok(&xs(&["next", &dir, id(&a1), "-T", "alpha"]))), a2);
    assert_eq!(json(&ok(&xs(&["prev", &dir, id(&b1)]))), a1);
    assert_eq!(json(&ok(&xs(&["prev", &dir, id(&s1), "-T", "beta"]))), b1);

    // The ends: exit 1, nothing printed.
    not_found(&xs(&["next", &dir, id(&s1)]));
    not_found(&xs(&["prev", &dir, id(&start)]));
    not_found(&xs(&["next", &dir, id(&a2), "-T", "alpha"]));
}

#[test]
fn get_of_a_missing_id_exits_1_silently() {
    let server = Server::start(&[]);
    let dir = addr(&server);
    let missing = scru128::new_string();
    not_found(&xs(&["get", &dir, &missing]));
}

#[test]
fn since_and_until_seek_by_time() {
    let server = Server::start(&[]);
    let dir = addr(&server);
    let early = append(&server, "early");
    let early_ms = id_ms(id(&early));
    assert!(wait_until(ms(1000), || now_ms() > early_ms + 1));
    let late = append(&server, "late");
    assert!(id_ms(id(&late)) > early_ms);

    // Durations back from now.
    let recent = lines(&ok(&xs(&["cat", &dir, "--since", "1h"])));
    assert_eq!(topics(&recent), ["xs.start", "early", "late"]);
    let none = ok(&xs(&["cat", &dir, "--since", "2030-01-01T00:00:00Z"]));
    assert_eq!(none, "", "nothing after 2030");

    // An RFC 3339 time between the two frames.
    let since_late = rfc3339(id_ms(id(&late)));
    assert_eq!(
        lines(&ok(&xs(&["cat", &dir, "--since", &since_late]))),
        [late]
    );
    let until_early = rfc3339(early_ms);
    let out = lines(&ok(&xs(&["tac", &dir, "--until", &until_early])));
    assert_eq!(topics(&out), ["early", "xs.start"], "late is after --until");
    assert_eq!(out[0], early);
    assert_eq!(
        ok(&xs(&["tac", &dir, "--until", "2020-01-01T00:00:00Z"])),
        "",
        "nothing before 2020"
    );
    assert_eq!(
        ok(&xs(&["tac", &dir, "--until", "1h"])),
        "",
        "nothing older than an hour"
    );
}

// ---------------------------------------------------------------------------
// No store, usage, help, version

fn no_store_message(addr: &str) -> String {
    format!("no store at: {addr}\nto start one:\n  xs serve {addr}\n")
}

#[test]
fn cat_on_a_folder_without_a_server_says_how_to_start_one() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp.path().join("store");
    fs::create_dir(&folder).unwrap();
    let folder = folder.to_str().unwrap();
    let out = xs(&["cat", folder]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "");
    assert_eq!(stderr(&out), no_store_message(folder));

    // A relative path, as typed, in a folder that does not exist at all.
    let mut relative = cmd(&["cat", "./nothing"]);
    relative.current_dir(tmp.path());
    let out = run(relative, None);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "");
    assert_eq!(stderr(&out), no_store_message("./nothing"));
}

#[test]
fn cat_after_the_server_stopped_says_no_store() {
    let mut server = Server::start(&[]);
    let dir = addr(&server);
    server.stop();
    let out = xs(&["cat", &dir]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "");
    assert_eq!(stderr(&out), no_store_message(&dir));
}

/// Every command and what its usage line starts with.
const COMMANDS: &[(&[&str], &str)] = &[
    (&["serve"], "usage: xs serve"),
    (&["check"], "usage: xs check"),
    (&["cat"], "usage: xs cat"),
    (&["tac"], "usage: xs tac"),
    (&["last"], "usage: xs last"),
    (&["first"], "usage: xs first"),
    (&["get"], "usage: xs get"),
    (&["next"], "usage: xs next"),
    (&["prev"], "usage: xs prev"),
    (&["cas"], "usage: xs cas"),
    (&["append"], "usage: xs append"),
    (&["cas-post"], "usage: xs cas-post"),
    (&["remove"], "usage: xs remove"),
    (&["import"], "usage: xs import"),
    (&["version"], "usage: xs version"),
    (&["metrics"], "usage: xs metrics"),
    (&["scru128"], "usage: xs scru128"),
    (&["kv"], "usage: xs kv"),
    (&["kv", "get"], "usage: xs kv"),
    (&["kv", "set"], "usage: xs kv"),
    (&["kv", "del"], "usage: xs kv"),
    (&["kv", "ls"], "usage: xs kv"),
    (&["kv", "watch"], "usage: xs kv"),
];

#[test]
fn every_command_has_help() {
    for (command, usage) in COMMANDS {
        for flag in ["--help", "-h"] {
            let mut args = command.to_vec();
            args.push(flag);
            let out = xs(&args);
            assert_eq!(
                out.status.code(),
                Some(0),
                "xs {}: {}",
                args.join(" "),
                stderr(&out)
            );
            let text = stdout(&out);
            assert!(
                text.starts_with(usage),
                "xs {} prints its usage: {text:?}",
                args.join(" ")
            );
            assert_eq!(stderr(&out), "", "xs {}", args.join(" "));
        }
    }
    // And the binary itself.
    for args in [&["--help"][..], &["-h"], &["help"]] {
        let out = xs(args);
        assert_eq!(out.status.code(), Some(0), "xs {args:?}");
        assert!(stdout(&out).contains("usage: xs <command>"), "xs {args:?}");
    }
    // `xs help <command>` is the command's help.
    let out = xs(&["help", "cat"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stdout(&out).starts_with("usage: xs cat"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn the_help_command_has_help_too() {
    // `help <command>` is listed among the commands; like every other
    // command it answers --help.
    let out = xs(&["help", "--help"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "xs help --help: stderr {:?}",
        stderr(&out)
    );
    assert!(stdout(&out).contains("usage: xs"), "{}", stdout(&out));
}

#[test]
fn an_unknown_flag_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    for args in [
        &["cat", dir, "--bogus"][..],
        &["tac", dir, "--bogus"],
        &["last", dir, "--bogus"],
        &["get", dir, "--bogus"],
        &["append", dir, "note", "--bogus"],
        &["kv", "get", dir, "k", "--bogus"],
        &["serve", dir, "--bogus"],
        &["check", dir, "--bogus"],
    ] {
        let out = xs(args);
        assert_eq!(out.status.code(), Some(2), "xs {args:?}: {}", stderr(&out));
        assert_eq!(stdout(&out), "", "xs {args:?}");
        let err = stderr(&out);
        let first = err.lines().next().unwrap_or("");
        assert!(first.starts_with("error: "), "xs {args:?}: {err:?}");
        assert!(first.contains("--bogus"), "xs {args:?}: {err:?}");
        assert!(err.contains("usage: xs "), "the usage follows: {err:?}");
    }
    // An unknown command too.
    let out = xs(&["bogus"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).starts_with("error: "), "{}", stderr(&out));
    // A missing address.
    let out = xs(&["cat"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).starts_with("error: "), "{}", stderr(&out));
}

#[test]
fn version_flag_prints_the_binary_version() {
    let out = xs(&["--version"]);
    assert_eq!(ok(&out), format!("xs {}\n", env!("CARGO_PKG_VERSION")));
    assert_eq!(stderr(&out), "");
}

#[test]
fn metrics_print_one_json_line_or_prometheus_text() {
    let server = Server::start(&[]);
    append(&server, "m");
    let out = ok(&xs(&["metrics", &addr(&server)]));
    assert!(out.ends_with('\n') && out.lines().count() == 1, "{out:?}");
    let doc = json(&out);
    assert!(doc["store"]["appends"].as_u64() >= Some(2), "{doc}");
    assert!(doc["keyspaces"].is_array(), "{doc}");
    assert!(doc["xs"]["followers"].is_u64(), "{doc}");

    let out = ok(&xs(&["metrics", &addr(&server), "--prometheus"]));
    assert!(out.starts_with("# HELP xs_frames_appended_total "), "{out}");
    assert!(out.ends_with('\n'), "{out:?}");
    assert!(
        out.contains("\n# TYPE xs_sync_seconds histogram\n"),
        "{out}"
    );
}
