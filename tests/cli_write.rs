//! The `xs` write commands as a user types them: `append` (unicode meta
//! and payloads, usage errors caught before the server is contacted),
//! `cas-post`/`cas`, `remove`, `import`, `version`, `scru128`
//! (`unpack`/`pack` round trips) and `check` on a stopped, a broken and a
//! running store.

mod common;

use std::fs;

use base64::Engine;
use common::cli::*;
use common::*;
use serde_json::Value;

// ---------------------------------------------------------------------------
// append, get, cas

#[test]
fn unicode_meta_and_payload_survive_append_get_and_cas() {
    let server = Server::start(&[]);
    let dir = addr(&server);
    let meta = r#"{"名前":"José 🎉","tags":["✓","日本語","Ελληνικά"],"n":1}"#;
    let body = "héllo wörld ✓ 日本語 🎉\n";
    let out = ok(&xs_stdin(
        &["append", &dir, "note", "--meta", meta],
        body.as_bytes(),
    ));
    assert!(
        out.ends_with("}\n") && out.lines().count() == 1,
        "append prints the frame as one line: {out:?}"
    );
    let frame = json(&out);
    assert_eq!(topic(&frame), "note");
    assert_eq!(frame["meta"], json(meta));
    assert_eq!(frame["ttl"], "forever");
    let hash = frame["hash"].as_str().expect("a payload has a hash");
    assert!(hash.starts_with("sha256-"), "{hash}");

    // get answers the very same bytes.
    assert_eq!(ok(&xs(&["get", &dir, id(&frame)])), out);
    // cas answers the payload, byte for byte.
    let content = xs(&["cas", &dir, hash]);
    assert!(content.status.success(), "{}", stderr(&content));
    assert_eq!(content.stdout, body.as_bytes());
    // cat shows the meta too.
    let listed = lines(&ok(&xs(&["cat", &dir, "-T", "note"])));
    assert_eq!(listed, [frame]);
}

#[test]
fn append_options_ttl_and_timestamp() {
    let server = Server::start(&[]);
    let dir = addr(&server);
    let frame = json(&ok(&xs(&["append", &dir, "cfg", "--ttl", "last:1"])));
    assert_eq!(frame["ttl"], "last:1");
    assert_eq!(frame["hash"], Value::Null, "an empty stdin is no payload");
    let stamped = json(&ok(&xs(&["append", &dir, "cfg", "--with-timestamp"])));
    assert_eq!(
        keys(&stamped),
        ["topic", "id", "hash", "meta", "ttl", "timestamp"]
    );
    assert_eq!(stamped["timestamp"], rfc3339(id_ms(id(&stamped))));
}

#[test]
fn append_with_an_empty_stdin_stores_no_content() {
    // Reference 1.4: a zero-length append body is no CAS write.
    let server = Server::start(&[]);
    let dir = addr(&server);
    let frame = json(&ok(&xs_stdin(&["append", &dir, "empty"], b"")));
    assert_eq!(frame["hash"], Value::Null);
    let content = server.dir().join("cacache").join("content-v2");
    assert_eq!(
        count_files(&content),
        0,
        "no payload, no file under {}",
        content.display()
    );
}

#[test]
fn append_with_a_bad_topic_is_a_usage_error_before_any_request() {
    // No server at all: a usage error (2), not "no store at" (1).
    let tmp = tempfile::tempdir().unwrap();
    let nowhere = tmp.path().to_str().unwrap();
    for (topic, message) in [
        ("a.", "Topic cannot end with '.'"),
        ("a..b", "Topic cannot contain consecutive dots"),
        ("1abc", "Topic must start with a-z, A-Z, or _"),
        ("a b", "Topic contains invalid character: ' '"),
    ] {
        let out = xs_stdin(&["append", nowhere, topic], b"payload");
        assert_eq!(out.status.code(), Some(2), "{topic:?}: {}", stderr(&out));
        assert_eq!(stdout(&out), "");
        let err = stderr(&out);
        assert!(err.starts_with("error: "), "{err:?}");
        assert!(err.contains(message), "{topic:?}: {err:?}");
        assert!(!err.contains("no store at"), "{err:?}");
    }

    // With a server: refused all the same, and nothing stored.
    let server = Server::start(&[]);
    let dir = addr(&server);
    let out = xs_stdin(&["append", &dir, "a."], b"payload");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    assert_eq!(topics(&lines(&ok(&xs(&["cat", &dir])))), ["xs.start"]);
}

#[test]
fn append_with_a_bad_ttl_or_meta_is_a_usage_error() {
    let server = Server::start(&[]);
    let dir = addr(&server);
    for args in [
        &["append", &dir, "note", "--ttl", "bogus"][..],
        &["append", &dir, "note", "--ttl", "last:0"],
        &["append", &dir, "note", "--ttl", "time:soon"],
        &["append", &dir, "note", "--meta", "{not json"],
    ] {
        let out = xs_stdin(args, b"payload");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert_eq!(stdout(&out), "", "{args:?}");
        assert!(stderr(&out).starts_with("error: "), "{}", stderr(&out));
    }
    assert_eq!(topics(&lines(&ok(&xs(&["cat", &dir])))), ["xs.start"]);
}

#[test]
fn cas_post_prints_a_hash_that_cas_returns() {
    let server = Server::start(&[]);
    let dir = addr(&server);
    let bytes: Vec<u8> = (0u8..=255)
        .chain(b"binary \x00 and text".iter().copied())
        .collect();
    let printed = ok(&xs_stdin(&["cas-post", &dir], &bytes));
    let hash = printed.strip_suffix('\n').expect("the hash is a line");
    assert!(!hash.contains('\n'), "the hash alone: {printed:?}");
    assert!(hash.starts_with("sha256-"), "{hash}");
    let back = xs(&["cas", &dir, hash]);
    assert!(back.status.success(), "{}", stderr(&back));
    assert_eq!(back.stdout, bytes);

    // The same bytes appended have the same hash.
    let frame = json(&ok(&xs_stdin(&["append", &dir, "blob"], &bytes)));
    assert_eq!(frame["hash"], hash);

    // A hash nobody stored: exit 1, nothing printed.
    let other = ok(&xs_stdin(&["cas-post", &dir], b"elsewhere"));
    assert_ne!(other, printed);
    let absent = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
    not_found(&xs(&["cas", &dir, absent]));
}

#[test]
fn remove_then_get_finds_nothing() {
    let server = Server::start(&[]);
    let dir = addr(&server);
    let frame = json(&ok(&xs_stdin(&["append", &dir, "doomed"], b"bye")));
    let out = xs(&["remove", &dir, id(&frame)]);
    assert_eq!(ok(&out), "", "remove prints nothing");
    assert_eq!(stderr(&out), "");
    not_found(&xs(&["get", &dir, id(&frame)]));
    not_found(&xs(&["last", &dir, "doomed"]));
    assert_eq!(topics(&lines(&ok(&xs(&["cat", &dir])))), ["xs.start"]);
}

#[test]
fn import_stores_a_frame_verbatim() {
    if backend::local_only(
        "imports below the last id, which Redis refuses (409; tests/redis_nodes.rs)",
    ) {
        return;
    }
    let server = Server::start(&[]);
    let dir = addr(&server);
    let hash = ok(&xs_stdin(&["cas-post", &dir], b"imported payload"));
    let hash = hash.trim_end();
    let text = format!(
        r#"{{"topic":"imported","id":"03hb7x0xirhhc9clynoe0k7aa","hash":"{hash}","meta":{{"from":"elsewhere","ü":"✓"}},"ttl":"forever"}}"#
    );
    let out = ok(&xs_stdin(&["import", &dir], text.as_bytes()));
    assert_eq!(out, format!("{text}\n"));
    assert_eq!(
        ok(&xs(&["get", &dir, "03hb7x0xirhhc9clynoe0k7aa"])),
        format!("{text}\n")
    );
    let content = xs(&["cas", &dir, hash]);
    assert_eq!(content.stdout, b"imported payload");
    // An older id lands in history, before xs.start.
    let listed = lines(&ok(&xs(&["cat", &dir])));
    assert_eq!(topics(&listed), ["imported", "xs.start"]);
}

#[test]
fn version_prints_the_server_version() {
    let server = Server::start(&[]);
    let out = ok(&xs(&["version", &addr(&server)]));
    assert!(out.ends_with('\n'), "{out:?}");
    let version = json(&out);
    assert_eq!(keys(&version), ["version"]);
    assert_eq!(version["version"], env!("CARGO_PKG_VERSION"));
}

// ---------------------------------------------------------------------------
// every JSON line ends with a newline (SPEC 6); shell loops

/// `out` is exactly one line, `\n`-terminated; its JSON.
fn one_line(what: &str, out: &str) -> Value {
    assert!(
        out.ends_with('\n') && out.lines().count() == 1,
        "{what}: one line ending in a newline: {out:?}"
    );
    json(out)
}

/// `sh -c <script>` with `$1` the xs binary and `$2`… the `args`.
fn sh(script: &str, args: &[&str]) -> String {
    let mut command = std::process::Command::new("sh");
    command.args(["-c", script, "sh", XS]).args(args);
    let out = run(command, None);
    assert!(out.status.success(), "{script}: {}", stderr(&out));
    stdout(&out)
}

#[test]
fn every_single_json_object_ends_with_a_newline() {
    let server = Server::start(&[]);
    let dir = addr(&server);
    let a = one_line("append", &ok(&xs_stdin(&["append", &dir, "note"], b"a")));
    let b = one_line("append", &ok(&xs(&["append", &dir, "note"])));
    assert_eq!(one_line("last", &ok(&xs(&["last", &dir, "note"]))), b);
    assert_eq!(
        topic(&one_line("first", &ok(&xs(&["first", &dir])))),
        "xs.start"
    );
    assert_eq!(one_line("get", &ok(&xs(&["get", &dir, id(&a)]))), a);
    assert_eq!(one_line("next", &ok(&xs(&["next", &dir, id(&a)]))), b);
    assert_eq!(one_line("prev", &ok(&xs(&["prev", &dir, id(&b)]))), a);
    let hash = ok(&xs_stdin(&["cas-post", &dir], b"a"));
    assert_eq!(hash, format!("{}\n", a["hash"].as_str().unwrap()));
    // (`import`'s frame: import_stores_a_frame_verbatim, local backend.)
    // Raw content stays byte for byte: no newline added.
    assert_eq!(xs(&["cas", &dir, hash.trim_end()]).stdout, b"a");
}

#[test]
fn appends_to_a_log_file_and_while_read_loops_see_whole_lines() {
    let server = Server::start(&[]);
    let dir = addr(&server);
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("log.jsonl");
    let log = log.to_str().unwrap();
    let script = r#"
        "$1" append "$2" note --no-stdin >> "$3"
        "$1" append "$2" note --no-stdin >> "$3"
        "$1" last "$2" note | while read -r f; do echo "read: $f"; done
    "#;
    let out = sh(script, &[&dir, log]);
    let logged = lines(&fs::read_to_string(log).unwrap());
    assert_eq!(logged.len(), 2, "two frames, two lines");
    let read: Vec<&str> = out.lines().collect();
    assert_eq!(read.len(), 1, "the loop ran once: {out:?}");
    let frame = json(read[0].strip_prefix("read: ").unwrap());
    assert_eq!(frame, logged[1]);
}

#[test]
fn append_no_stdin_leaves_a_while_read_loop_its_input() {
    let server = Server::start(&[]);
    let dir = addr(&server);
    let script = r#"
        printf 'a\nb\nc\n' | while read -r t; do "$1" append "$2" "$t" --no-stdin; done
    "#;
    let frames = lines(&sh(script, &[&dir]));
    assert_eq!(topics(&frames), ["a", "b", "c"]);
    assert!(frames.iter().all(|f| f["hash"].is_null()), "{frames:?}");

    // Without it, the first append takes the rest of the loop's input
    // as its payload: the pitfall `--no-stdin` is for.
    let script = r#"
        printf 'd\ne\n' | while read -r t; do "$1" append "$2" "$t"; done
    "#;
    let frames = lines(&sh(script, &[&dir]));
    assert_eq!(topics(&frames), ["d"]);
    let hash = frames[0]["hash"].as_str().unwrap();
    assert_eq!(xs(&["cas", &dir, hash]).stdout, b"e\n");
}

#[cfg(feature = "nushell")]
#[test]
fn eval_ends_a_json_value_with_a_newline_and_leaves_raw_output_alone() {
    let server = Server::start(&[]);
    let dir = addr(&server);
    let eval = |script: &str| ok(&xs(&["eval", &dir, "-c", script]));
    assert_eq!(eval("{a: 1}"), "{\"a\":1}\n");
    assert_eq!(eval("[1 2]"), "[1,2]\n");
    // A string or number is printed as the bare text, byte for byte.
    assert_eq!(eval("'raw'"), "raw");
    assert_eq!(eval("\"two\\nlines\""), "two\nlines");
    assert_eq!(eval("42"), "42");
}

// ---------------------------------------------------------------------------
// scru128

#[test]
fn scru128_prints_fresh_increasing_ids() {
    let first = ok(&xs(&["scru128"]));
    let second = ok(&xs(&["scru128"]));
    for out in [&first, &second] {
        assert!(out.ends_with('\n'), "{out:?}");
        let id = out.trim_end();
        assert_eq!(id.len(), 25, "{id:?}");
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()),
            "{id:?}"
        );
        let parsed: scru128::Scru128Id = id.parse().expect("a SCRU128 id");
        assert!(parsed.timestamp().abs_diff(now_ms()) < 60_000);
    }
    assert!(first.trim_end() < second.trim_end(), "{first} {second}");
}

/// `xs scru128 unpack <id> | xs scru128 pack`.
fn round_trip(id: &str) -> (Value, String) {
    let unpacked = ok(&xs(&["scru128", "unpack", id]));
    let fields = json(&unpacked);
    let packed = ok(&xs_stdin(&["scru128", "pack"], unpacked.as_bytes()));
    (fields, packed)
}

#[test]
fn scru128_unpack_and_pack_round_trip() {
    // Pinned: the fields of a known id.
    let (fields, packed) = round_trip("03hb7ob4f89a6rwghzgwu0myh");
    assert_eq!(packed, "03hb7ob4f89a6rwghzgwu0myh\n");
    assert_eq!(keys(&fields), ["ts_ms", "counter_hi", "counter_lo", "node"]);
    let parsed: scru128::Scru128Id = "03hb7ob4f89a6rwghzgwu0myh".parse().unwrap();
    assert_eq!(fields["ts_ms"], parsed.timestamp());
    assert_eq!(fields["counter_hi"], parsed.counter_hi());
    assert_eq!(fields["counter_lo"], parsed.counter_lo());
    assert_eq!(fields["node"], format!("{:08x}", parsed.entropy()));

    // The extremes and a few hand-picked ones.
    for id in [
        "0000000000000000000000000",
        "f5lxx1zz5pnorynqglhzmsp33",
        "03hb7x0xirhhc9clynoe0k7ci",
        "036z951mhjikzik2gsl81gr7l",
    ] {
        let (_, packed) = round_trip(id);
        assert_eq!(packed.trim_end(), id);
    }

    // `-` reads the id from stdin.
    let unpacked = ok(&xs_stdin(
        &["scru128", "unpack", "-"],
        b"03hb7ob4f89a6rwghzgwu0myh\n",
    ));
    assert_eq!(json(&unpacked), fields);

    // And 200 fresh ones, four at a time.
    let workers: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(|| {
                for _ in 0..50 {
                    let id = scru128::new_string();
                    let (fields, packed) = round_trip(&id);
                    assert_eq!(packed.trim_end(), id, "{fields}");
                    assert_eq!(fields["ts_ms"], id_ms(&id));
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("round trips");
    }
}

#[test]
fn scru128_unpack_of_a_bad_id_fails() {
    let out = xs(&["scru128", "unpack", "not-an-id"]);
    assert_ne!(out.status.code(), Some(0));
    assert_eq!(stdout(&out), "");
    assert!(!stderr(&out).is_empty());
}

// ---------------------------------------------------------------------------
// check

/// The cacache file holding the content of `sri` under `store`.
fn content_file(store: &std::path::Path, sri: &str) -> std::path::PathBuf {
    let digest = sri.strip_prefix("sha256-").expect("a sha256 SRI");
    let digest = base64::engine::general_purpose::STANDARD
        .decode(digest)
        .expect("base64 digest");
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    store
        .join("cacache")
        .join("content-v2")
        .join("sha256")
        .join(&hex[..2])
        .join(&hex[2..4])
        .join(&hex[4..])
}

#[test]
fn check_a_stopped_store_then_a_broken_copy() {
    if backend::local_only("xs check reads the local folder") {
        return;
    }
    let mut server = Server::start(&[]);
    let dir = addr(&server);
    let kept = json(&ok(&xs_stdin(&["append", &dir, "kept"], b"kept payload")));
    let lost = json(&ok(&xs_stdin(&["append", &dir, "lost"], b"lost payload")));
    json(&ok(&xs(&["append", &dir, "bare"])));

    // A running store is locked.
    let out = xs(&["check", &dir]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains("store locked"), "{}", stderr(&out));

    server.stop();
    let out = xs(&["check", &dir]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{} {}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).starts_with("ok:"), "{}", stdout(&out));

    // Break a copy: one payload file gone.
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("copy");
    copy_tree(server.dir(), &copy);
    let file = content_file(&copy, lost["hash"].as_str().unwrap());
    assert!(file.is_file(), "{} exists", file.display());
    fs::remove_file(&file).unwrap();

    let out = xs(&["check", copy.to_str().unwrap()]);
    let report = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(report.contains(id(&lost)), "names the frame: {report}");
    assert!(!report.contains(id(&kept)), "only that frame: {report}");
    assert!(!report.starts_with("ok:"), "{report}");

    // The original is untouched.
    let out = xs(&["check", &dir]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

#[test]
fn check_of_a_folder_that_is_no_store_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing");
    let out = xs(&["check", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(!stderr(&out).is_empty());
    assert!(!missing.exists(), "check does not create a store");
}
