//! Conditional and idempotent appends (issue 18, items 1 and 2) through the
//! real binary: `xs-expect-last` (one winner per expected id, 409 with
//! `xs-last-id` otherwise), `xs-idempotency-key` (a repeat within the dedup
//! window answers the original frame with `xs-duplicate: true`, across a
//! restart too), bad values, and the CLI and Nushell flags. Runs on the
//! local backend here and on Redis in tests/on_redis.rs.

mod common;

use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::cli::{addr, cmd, run, stderr, xs};
use common::*;
use serde_json::{json, Value};

/// `POST /append/<topic>` with these headers.
fn append_with(server: &Server, topic: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    request(
        &server.sock(),
        "POST",
        &format!("/append/{topic}"),
        headers,
        body,
    )
}

/// The id of the newest frame of `topic`, `None` when it has none.
fn last_id(server: &Server, topic: &str) -> Option<String> {
    let r = server.get(&format!("/last/{topic}"));
    match r.status {
        200 => Some(id(&r.json()).to_string()),
        404 => None,
        other => panic!("GET /last/{topic}: {other} {}", r.text()),
    }
}

fn expect(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or("none")
}

#[test]
fn racing_conditional_appends_build_one_chain_with_one_winner_per_expected_id() {
    let server = Server::start(&[]);
    race(&[server.sock()], &server);
}

#[test]
fn conditional_appends_racing_on_two_redis_nodes_build_one_chain() {
    if !common::backend::ON_REDIS {
        eprintln!("two nodes share a stream on Redis only");
        return;
    }
    let nanos = now_ms();
    let url = format!(
        "{}?ns=es2-{}-{nanos}",
        common::backend::redis_url(),
        std::process::id()
    );
    let a = Server::start_local(&["--backend", &url]);
    let b = Server::start_local(&["--backend", &url]);
    race(&[a.sock(), b.sock()], &b);
}

/// 16 clients (spread over the nodes' sockets) each append 5 frames to
/// `acct`, each expecting the last frame it knows of and, refused, taking
/// the actual one from `xs-last-id`; each frame names the one it expected
/// in its meta.
fn race(socks: &[std::path::PathBuf], server: &Server) {
    const CLIENTS: usize = 16;
    const EACH: usize = 5;
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let workers: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let sock = socks[client % socks.len()].clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let mut expected = "none".to_string();
                let (mut won, mut lost) = (0, 0);
                while won < EACH {
                    let meta = b64(json!({ "prev": expected, "client": client })
                        .to_string()
                        .as_bytes());
                    let headers = [("xs-expect-last", expected.as_str()), ("xs-meta", &meta)];
                    let r = request(&sock, "POST", "/append/acct", &headers, b"");
                    match r.status {
                        200 => {
                            won += 1;
                            expected = id(&r.json()).to_string();
                        }
                        409 => {
                            lost += 1;
                            let actual = r.header("xs-last-id").expect("xs-last-id").to_string();
                            let body = r.text();
                            assert!(
                                body.contains(&expected) && body.contains(&actual),
                                "the refusal names both ids: {body}"
                            );
                            assert_ne!(actual, expected);
                            expected = actual;
                        }
                        other => panic!("unexpected {other}: {}", r.text()),
                    }
                }
                lost
            })
        })
        .collect();
    let lost: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
    let frames = server.frames("/?topic=acct");
    assert_eq!(frames.len(), CLIENTS * EACH, "no lost or doubled frames");
    // Each frame names the one before it: two winners for one expected id
    // would fork the chain.
    let mut prev = "none".to_string();
    for frame in &frames {
        assert_eq!(frame["meta"]["prev"], json!(prev), "{frame}");
        prev = id(frame).to_string();
    }
    assert!(lost > 0, "16 clients never collided: the race was not run");
}

#[test]
fn none_is_met_by_an_empty_topic_only() {
    let server = Server::start(&[]);
    // Frames of other topics, `acct.x` among them, are not `acct`'s.
    server.append("acct.x", b"");
    server.append("other", b"");
    let first = append_with(&server, "acct", &[("xs-expect-last", "none")], b"1");
    assert_eq!(first.status, 200, "{}", first.text());
    let first_id = id(&first.json()).to_string();

    let again = append_with(&server, "acct", &[("xs-expect-last", "none")], b"2");
    assert_eq!(again.status, 409);
    assert_eq!(again.header("xs-last-id"), Some(first_id.as_str()));
    assert_eq!(
        again.text(),
        format!("not appended: expected the last frame of acct to be none, it is {first_id}")
    );

    // A stale id is refused the same way; the right one passes.
    let stale = server.append("other", b"").get("id").cloned().unwrap();
    let r = append_with(
        &server,
        "acct",
        &[("xs-expect-last", stale.as_str().unwrap())],
        b"",
    );
    assert_eq!(r.status, 409);
    assert_eq!(r.header("xs-last-id"), Some(first_id.as_str()));
    let r = append_with(&server, "acct", &[("xs-expect-last", &first_id)], b"3");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(server.frames("/?topic=acct").len(), 2);
}

#[test]
fn removed_expired_and_ephemeral_frames_are_not_the_topics_last() {
    let server = Server::start(&[]);
    let kept = id(&server.append("acct", b"kept")).to_string();

    // A removed frame: the one before it is the last again.
    let gone = id(&server.append("acct", b"gone")).to_string();
    assert_eq!(server.delete(&format!("/{gone}")).status, 204);
    let r = append_with(&server, "acct", &[("xs-expect-last", &gone)], b"");
    assert_eq!(r.status, 409);
    assert_eq!(r.header("xs-last-id"), Some(kept.as_str()));

    // An expired `time:` frame, swept or not, is not the last: what a
    // read of the topic shows is.
    let brief = server.append_q("acct", "ttl=time:200", b"brief");
    let last = last_id(&server, "acct");
    // (Only while it lives: a slow machine may take longer than that.)
    if now_ms() < id_ms(id(&brief)) + 200 {
        assert_eq!(last.as_deref(), Some(id(&brief)));
    }
    assert!(
        wait_until(Duration::from_secs(5), || last_id(&server, "acct")
            .as_deref()
            == Some(kept.as_str())),
        "the time:200 frame never expired"
    );
    // An ephemeral frame is checked but never becomes the last.
    let ephemeral = |expected: &str| {
        request(
            &server.sock(),
            "POST",
            "/append/acct?ttl=ephemeral",
            &[("xs-expect-last", expected)],
            b"",
        )
    };
    assert_eq!(
        ephemeral("none").status,
        409,
        "an ephemeral append is checked too"
    );
    let r = ephemeral(&kept);
    assert_eq!(r.status, 200, "{}", r.text());
    let last = last_id(&server, "acct");
    assert_eq!(last.as_deref(), Some(kept.as_str()));
    let r = append_with(&server, "acct", &[("xs-expect-last", expect(&last))], b"");
    assert_eq!(r.status, 200, "the ephemeral frame did not move the last");
}

#[test]
fn bad_condition_headers_are_refused_with_400_and_write_nothing() {
    let server = Server::start(&[]);
    let long = "k".repeat(257);
    let cases: [(&str, &str); 5] = [
        ("xs-expect-last", "not-an-id"),
        ("xs-expect-last", ""),
        ("xs-idempotency-key", ""),
        ("xs-idempotency-key", "has space"),
        ("xs-idempotency-key", &long),
    ];
    for (name, value) in cases {
        let r = append_with(&server, "acct", &[(name, value)], b"payload");
        assert_eq!(r.status, 400, "{name}: {value:?}: {}", r.text());
        let text = r.text();
        assert!(text.starts_with(name) && !text.contains('\n'), "{text}");
    }
    let longest = "k".repeat(256);
    let r = append_with(&server, "acct", &[("xs-idempotency-key", &longest)], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(server.frames("/?topic=acct").len(), 1);
}

#[test]
fn a_retry_storm_with_idempotency_keys_writes_each_frame_once_across_a_restart() {
    const CLIENTS: usize = 16;
    const KEYS: usize = 10;
    let mut server = Server::start(&[]);
    let sock = server.sock();
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let workers: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let sock = sock.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                (0..KEYS)
                    .map(|k| {
                        let key = format!("order-{k}");
                        let r = request(
                            &sock,
                            "POST",
                            "/append/orders",
                            &[("xs-idempotency-key", &key)],
                            key.as_bytes(),
                        );
                        assert_eq!(r.status, 200, "{}", r.text());
                        let duplicate = r.header("xs-duplicate") == Some("true");
                        (id(&r.json()).to_string(), duplicate)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let answers: Vec<Vec<(String, bool)>> =
        workers.into_iter().map(|w| w.join().unwrap()).collect();
    let frames = server.frames("/?topic=orders");
    assert_eq!(frames.len(), KEYS, "one frame per key");
    for k in 0..KEYS {
        let original = id(&frames[k]).to_string();
        let per_key: Vec<&(String, bool)> = answers.iter().map(|a| &a[k]).collect();
        assert!(per_key.iter().all(|(id, _)| *id == original), "key {k}");
        let firsts = per_key.iter().filter(|(_, duplicate)| !duplicate).count();
        assert_eq!(firsts, 1, "key {k}: exactly one answer is the first");
    }
    // Sequential retries, then the same after a restart.
    let retry = |server: &Server| {
        for (k, frame) in frames.iter().enumerate() {
            let key = format!("order-{k}");
            let r = append_with(server, "orders", &[("xs-idempotency-key", &key)], b"again");
            assert_eq!(r.status, 200, "{}", r.text());
            assert_eq!(r.header("xs-duplicate"), Some("true"));
            assert_eq!(r.json(), *frame, "the original frame, payload hash and all");
        }
    };
    retry(&server);
    server.restart();
    retry(&server);
    assert_eq!(server.frames("/?topic=orders").len(), KEYS);
    // A key is not tied to its topic: the original frame comes back.
    let r = append_with(
        &server,
        "elsewhere",
        &[("xs-idempotency-key", "order-0")],
        b"",
    );
    assert_eq!(r.header("xs-duplicate"), Some("true"));
    assert_eq!(r.json(), frames[0]);
    assert!(server.frames("/?topic=elsewhere").is_empty());
}

#[test]
fn a_key_is_forgotten_after_the_window_and_ignored_with_a_window_of_0() {
    let server = Server::start(&["--dedup-window", "300ms"]);
    let key = [("xs-idempotency-key", "job-1")];
    let first = append_with(&server, "jobs", &key, b"");
    assert_eq!(first.header("xs-duplicate"), None);
    let first = first.json();
    // A duplicate wins over a condition the topic no longer meets.
    let moved = server.append("jobs", b"");
    let r = append_with(&server, "jobs", &[key[0], ("xs-expect-last", "none")], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("xs-duplicate"), Some("true"));
    assert_eq!(r.json(), first);
    // A refused conditional append records no key.
    let r = append_with(
        &server,
        "jobs",
        &[("xs-idempotency-key", "job-2"), ("xs-expect-last", "none")],
        b"",
    );
    assert_eq!(r.status, 409);
    let r = append_with(
        &server,
        "jobs",
        &[
            ("xs-idempotency-key", "job-2"),
            ("xs-expect-last", id(&moved)),
        ],
        b"",
    );
    assert_eq!((r.status, r.header("xs-duplicate")), (200, None));

    // Once the window has passed, the key appends again.
    let mut second = None;
    assert!(
        wait_until(Duration::from_secs(5), || {
            let r = append_with(&server, "jobs", &key, b"");
            assert_eq!(r.status, 200);
            if r.header("xs-duplicate").is_none() {
                second = Some(r.json());
            }
            second.is_some()
        }),
        "the key was never forgotten"
    );
    let second = second.unwrap();
    assert_ne!(id(&second), id(&first));
    let r = append_with(&server, "jobs", &key, b"");
    assert_eq!(r.header("xs-duplicate"), Some("true"));
    assert_eq!(r.json(), second);

    let off = Server::start(&["--dedup-window", "0"]);
    for _ in 0..2 {
        let r = append_with(&off, "jobs", &key, b"");
        assert_eq!((r.status, r.header("xs-duplicate")), (200, None));
    }
    assert_eq!(off.frames("/?topic=jobs").len(), 2);
}

#[test]
fn a_bad_dedup_window_stops_the_server_with_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let out = xs(&[
        "serve",
        store.to_str().unwrap(),
        "--dedup-window",
        "2 minutes",
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--dedup-window"), "{}", stderr(&out));
}

#[test]
fn the_cli_takes_expect_last_and_idempotency_key() {
    let server = Server::start(&[]);
    let store = addr(&server);
    let append = |extra: &[&str]| {
        let mut args = vec!["append", store.as_str(), "acct", "--no-stdin"];
        args.extend_from_slice(extra);
        run(cmd(&args), None)
    };
    let out = append(&["--expect-last", "none"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let first: Value = serde_json::from_slice(&out.stdout).unwrap();

    let out = append(&["--expect-last", "none"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    let said = stderr(&out);
    assert!(
        said.contains(&format!(
            "expected the last frame of acct to be none, it is {}",
            id(&first)
        )),
        "{said}"
    );
    let out = append(&["--expect-last", id(&first)]);
    assert!(out.status.success(), "{}", stderr(&out));

    let out = append(&["--expect-last", "yesterday"]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert!(stderr(&out).contains("--expect-last"), "{}", stderr(&out));
    let out = append(&["--idempotency-key", "a b"]);
    assert_eq!(out.status.code(), Some(2), "a usage error");

    let once = append(&["--idempotency-key", "cli-1"]);
    let twice = append(&["--idempotency-key", "cli-1"]);
    assert!(once.status.success() && twice.status.success());
    assert_eq!(
        once.stdout, twice.stdout,
        "a repeat prints the original frame"
    );
    assert_eq!(server.frames("/?topic=acct").len(), 3);
}

#[test]
fn nushell_append_takes_expect_last_and_idempotency_key() {
    let server = Server::start(&[]);
    let store = addr(&server);
    let eval = |script: &str| run(cmd(&["eval", store.as_str(), "-c", script]), None);
    let out = eval(".append acct --expect-last none | get id");
    assert!(out.status.success(), "{}", stderr(&out));
    let first = String::from_utf8(out.stdout).unwrap().trim().to_string();

    let out = eval(".append acct --expect-last none");
    assert!(!out.status.success());
    let said = stderr(&out);
    assert!(
        said.contains(&format!(
            "expected the last frame of acct to be none, it is {first}"
        )),
        "{said}"
    );
    let out = eval(&format!(".append acct --expect-last {first} | get id"));
    assert!(out.status.success(), "{}", stderr(&out));
    let out = eval(".append acct --expect-last nope");
    assert!(
        stderr(&out).contains("invalid --expect-last"),
        "{}",
        stderr(&out)
    );

    let script = "[(.append jobs --idempotency-key nu-1 | get id) (.append jobs --idempotency-key nu-1 | get id)] | to json --raw";
    let out = eval(script);
    assert!(out.status.success(), "{}", stderr(&out));
    let ids: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ids[0], ids[1]);
    assert_eq!(server.frames("/?topic=jobs").len(), 1);
}

#[test]
fn the_xs_nu_module_append_takes_both_flags() {
    let server = Server::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let printed = xs(&["nu"]);
    assert!(printed.status.success());
    let module = tmp.path().join("xs.nu");
    std::fs::write(&module, &printed.stdout).unwrap();
    let xs_dir = std::path::Path::new(XS).parent().unwrap().to_path_buf();
    let path = std::env::join_paths(std::iter::once(xs_dir).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .unwrap();
    let script = format!(
        "use '{}' *\n$env.XS_ADDR = '{}'\n\
         let first = (.append acct --expect-last none | get id)\n\
         let refused = (try {{ .append acct --expect-last none; 'appended' }} catch {{|e| $e.msg }})\n\
         let k1 = (.append jobs --idempotency-key nu-1 | get id)\n\
         let k2 = (.append jobs --idempotency-key nu-1 | get id)\n\
         {{first: $first, refused: $refused, same: ($k1 == $k2)}} | to json --raw\n",
        module.display(),
        addr(&server)
    );
    let mut nu = std::process::Command::new(nu_binary());
    nu.args(["-n", "-c", &script]).env("PATH", path);
    let out = run(nu, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    let first = got["first"].as_str().unwrap();
    let refused = got["refused"].as_str().unwrap();
    assert!(
        refused.starts_with("xs append: ")
            && refused.ends_with(&format!(
                "not appended: expected the last frame of acct to be none, it is {first}"
            )),
        "{refused}"
    );
    assert_eq!(got["same"], json!(true));
    assert_eq!(server.frames("/?topic=jobs").len(), 1);
}
