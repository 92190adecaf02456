//! A script cannot hurt the server (SPEC §9): `--eval-timeout` stops a
//! script with an error, a client that hangs up stops its `/eval`, and a
//! script that builds more than `--eval-memory` fails alone. The same cap
//! holds for actors, services and views, the timeout for action calls and
//! for the evaluation of a processor's script; their failure is their own
//! `*.error` / `fin.error` / `invalid` frame.

mod common;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::waits::*;
use common::*;
use serde_json::Value;

/// The memory cap the tests give: 64 MiB.
const CAP: &str = "67108864";

/// POST /eval, with how long the answer took.
fn eval(server: &Server, script: &str) -> (Response, Duration) {
    let started = Instant::now();
    let r = server.post("/eval", script.as_bytes());
    (r, started.elapsed())
}

/// Asserts the script was stopped with a 500 whose one-line reason names
/// `flag`, within `within`.
fn assert_stopped(server: &Server, script: &str, flag: &str, within: Duration) {
    let (r, took) = eval(server, script);
    let text = r.text();
    assert_eq!(r.status, 500, "{script}: {text}");
    assert!(text.contains(flag), "{script}: {text}");
    assert_eq!(text.trim_end().lines().count(), 1, "{script}: {text}");
    assert!(took < within, "{script} took {took:?}");
}

/// Sends `POST /eval` of `script` on a connection of its own, without
/// waiting for the answer.
fn send_eval(server: &Server, script: &str) -> UnixStream {
    let mut conn = UnixStream::connect(server.sock()).unwrap();
    write!(
        conn,
        "POST /eval HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{script}",
        script.len()
    )
    .unwrap();
    conn
}

/// The server still answers a script.
fn assert_alive(server: &Server) {
    let (r, _) = eval(server, "1 + 1");
    assert_eq!(
        (r.status, r.text().trim()),
        (200, "2"),
        "{}",
        server.stderr()
    );
}

#[test]
fn eval_timeout_stops_loops_sleeps_and_programs() {
    let server = Server::start(&["--eval-timeout", "1"]);
    let scripts = [
        "loop {}",
        "while true {}",
        "for i in 1..inf {}",
        "1..inf | each {|i| $i } | collect",
        "sleep 100sec",
        "^sleep 100",
        "^sleep 100; 'after'",
        // The interruption caught by `try` is renewed.
        "loop { try { loop {} } catch {} }",
    ];
    std::thread::scope(|scope| {
        for script in scripts {
            let server = &server;
            scope.spawn(move || {
                assert_stopped(server, script, "--eval-timeout", Duration::from_secs(8))
            });
        }
    });
    assert_alive(&server);
    // A script within the limit is untouched.
    let (r, _) = eval(&server, "sleep 10ms; 'done'");
    assert_eq!((r.status, r.text().trim()), (200, "done"));
}

#[test]
fn eval_timeout_zero_is_no_limit() {
    let server = Server::start(&["--eval-timeout", "0"]);
    let (r, took) = eval(&server, "sleep 1200ms; 'done'");
    assert_eq!((r.status, r.text().trim()), (200, "done"));
    assert!(took >= Duration::from_millis(1200));
    // A timeout past what the clock can hold is no limit either.
    let huge = Server::start(&["--eval-timeout", &u64::MAX.to_string()]);
    assert_alive(&huge);
    let short = Server::start(&["--eval-timeout", "1"]);
    assert_stopped(
        &short,
        "sleep 1200ms; 'done'",
        "--eval-timeout",
        Duration::from_secs(8),
    );
}

#[test]
fn a_streamed_answer_is_not_timed_out() {
    // The timeout counts until the answer starts; a follower then runs
    // while its client stays.
    let server = Server::start(&["--eval-timeout", "1"]);
    let mut conn = send_eval(&server, ".cat --follow --topic later");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // Past the timeout, the frame still arrives on the open stream.
    std::thread::sleep(Duration::from_millis(1500));
    server.append("later", b"");
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("\"later\"") {
        let n = std::io::Read::read(&mut conn, &mut buf).unwrap();
        assert!(
            n > 0,
            "the stream ended: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 200"));
}

/// The number of `tick` frames.
fn ticks(server: &Server) -> usize {
    server.frames("/?topic=tick").len()
}

#[test]
fn a_client_that_hangs_up_stops_its_script() {
    let server = Server::start(&["--eval-timeout", "0"]);
    // Busy work that shows it is alive with a frame now and then.
    let scripts = [
        "mut i = 0; loop { $i += 1; if $i mod 20000 == 0 { .append tick } }",
        "loop { .append tick; sleep 20ms }",
        "loop { .append tick; ^sleep 0.05 }",
        "1..1_000_000_000 | each {|i| if $i mod 20000 == 0 { .append tick }; $i } | collect",
    ];
    for script in scripts {
        let before = ticks(&server);
        let conn = send_eval(&server, script);
        let deadline = Instant::now() + Duration::from_secs(10);
        while ticks(&server) < before + 2 {
            assert!(Instant::now() < deadline, "{script}: no ticks");
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(conn);
        // The ticks stop: the count holds still for a while.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut last = ticks(&server);
        let mut still_since = Instant::now();
        while still_since.elapsed() < Duration::from_millis(500) {
            assert!(
                Instant::now() < deadline,
                "{script}: still running after its client left"
            );
            std::thread::sleep(Duration::from_millis(50));
            let now = ticks(&server);
            if now != last {
                last = now;
                still_since = Instant::now();
            }
        }
    }
    assert_alive(&server);
}

#[test]
fn a_script_over_its_memory_cap_fails_alone() {
    let server = Server::start(&["--eval-timeout", "0", "--eval-memory", CAP]);
    let scripts = [
        r#"mut s = "x"; loop { $s = $s + $s }"#,
        "mut l = [0]; loop { $l = $l ++ $l }",
        "mut l = [0]; loop { $l ++= $l }",
        r#"mut r = {a: "x"}; loop { $r = {a: ($r.a + $r.a), b: $r} }"#,
        // Catching the interruption does not help.
        r#"mut s = "x"; loop { try { $s = $s + $s } catch {} }"#,
    ];
    for script in scripts {
        assert_stopped(&server, script, "memory cap", Duration::from_secs(20));
    }
    // 20 MB of bytes are under the cap, their JSON (a number a byte) is
    // not: the conversion stops, and nothing half-made is appended.
    let bytes = "(^head -c 20000000 /dev/urandom)";
    assert_stopped(
        &server,
        &format!("{{b: {bytes}}}"),
        "memory cap",
        Duration::from_secs(20),
    );
    assert_stopped(
        &server,
        &format!("{{b: {bytes}}} | .append big; 'appended'"),
        "memory cap",
        Duration::from_secs(20),
    );
    assert!(server.frames("/?topic=big").is_empty());
    assert_alive(&server);
    // What a script keeps under the cap is fine, and the cap is per script.
    let (r, _) = eval(
        &server,
        r#"mut s = "x"; for i in 1..20 { $s = $s + $s }; "ok""#,
    );
    assert_eq!((r.status, r.text().trim()), (200, "ok"));
}

fn create(server: &Server, kind: &str, name: &str, script: &str) -> Value {
    server.append(&format!("xs.{kind}.{name}.create"), script.as_bytes())
}

/// The memory-blowing body every processor kind gets.
const BLOW_UP: &str = r#"mut s = "x"; loop { $s = $s + $s }"#;

#[test]
fn processors_over_the_cap_fail_with_their_own_frames() {
    let server = Server::start(&["--eval-memory", CAP]);
    create(
        &server,
        "actor",
        "hog",
        &format!(
            r#"{{run: {{|frame, state = null| if $frame.topic == "go" {{ {BLOW_UP} }} else {{ {{next: $state}} }} }}}}"#
        ),
    );
    create(
        &server,
        "view",
        "hog",
        &format!(
            r#"{{run: {{|frame, state = null| if $frame.topic == "go" {{ {BLOW_UP} }} else {{ $state }} }}}}"#
        ),
    );
    create(
        &server,
        "action",
        "hog",
        &format!("{{run: {{|frame| {BLOW_UP} }}}}"),
    );
    wait_topic(&server, "xs.actor.hog.active");
    wait_topic(&server, "xs.view.hog.active");
    wait_topic(&server, "xs.action.hog.active");
    server.append("go", b"");
    server.append("hog.call", b"");
    create(
        &server,
        "service",
        "hog",
        &format!("{{run: {{|| {BLOW_UP} }}, restart: \"never\"}}"),
    );
    for topic in [
        "xs.actor.hog.fin.error",
        "xs.view.hog.fin.error",
        "hog.error",
        "xs.service.hog.fin.error",
    ] {
        let frame = wait_topic(&server, topic);
        let text = frame["meta"].to_string();
        assert!(text.contains("memory cap"), "{topic}: {text}");
    }
    assert_alive(&server);
}

#[test]
fn an_action_call_and_a_script_load_have_the_eval_timeout() {
    let server = Server::start(&["--eval-timeout", "1"]);
    create(&server, "action", "spin", "{run: {|frame| loop {} }}");
    wait_topic(&server, "xs.action.spin.active");
    server.append("spin.call", b"");
    let error = wait_topic(&server, "spin.error");
    assert!(
        error["meta"]["error"]
            .as_str()
            .unwrap_or("")
            .contains("--eval-timeout"),
        "{error}"
    );
    // A script whose top level never ends is invalid, and the dispatcher
    // goes on to the next.
    create(&server, "actor", "stuck", "loop {}; {run: {|f, s| null}}");
    create(&server, "action", "ok", "{run: {|frame| 'fine'}}");
    let invalid = wait_topic(&server, "xs.actor.stuck.invalid");
    assert!(
        invalid["meta"]["error"]
            .as_str()
            .unwrap_or("")
            .contains("--eval-timeout"),
        "{invalid}"
    );
    wait_topic(&server, "xs.action.ok.active");
    // An actor runs as long as it is meant to: a step longer than the
    // timeout completes.
    create(
        &server,
        "actor",
        "slow",
        "{run: {|frame, state = null| if $frame.topic == 'tick' { sleep 1300ms; {out: {seen: true}, next: null} } else { {next: null} } }}",
    );
    wait_topic(&server, "xs.actor.slow.active");
    server.append("tick", b"");
    let out = wait_topic(&server, "slow.out");
    assert_eq!(out["meta"]["seen"], true, "{out}");
}

#[test]
fn a_streamed_answer_over_the_cap_is_cut_off() {
    let server = Server::start(&["--eval-memory", CAP]);
    // One item, then one that doubles a string until the cap stops it.
    let body =
        "1..2 | each {|i| if $i == 1 { 'one' } else { mut s = 'x'; loop { $s = $s ++ $s } } }";
    let mut conn = send_eval(&server, body);
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // The connection closes (a read timeout here would fail the test)...
    let mut seen = Vec::new();
    std::io::Read::read_to_end(&mut conn, &mut seen).unwrap();
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"one\""), "{text}");
    // ...without the last chunk: the client knows the answer is cut.
    assert!(!text.ends_with("0\r\n\r\n"), "{text}");
    assert!(
        server.stderr().contains("memory cap"),
        "{}",
        server.stderr()
    );
    assert_alive(&server);
}

#[test]
fn a_shutdown_stops_a_running_script() {
    let mut server = Server::start(&["--eval-timeout", "0"]);
    let script =
        "1..1_000_000_000 | each {|i| if $i mod 20000 == 0 { .append tick }; $i } | collect";
    // Kept open: a client that leaves would stop the script itself.
    let _client = send_eval(&server, script);
    let deadline = Instant::now() + Duration::from_secs(10);
    while ticks(&server) < 2 {
        assert!(Instant::now() < deadline, "no ticks");
        std::thread::sleep(Duration::from_millis(10));
    }
    let asked = Instant::now();
    let status = server.stop();
    assert!(status.success(), "{status:?}");
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "shutdown waited {:?} for the script",
        asked.elapsed()
    );
}

/// Asserts the script failed with the memory-cap error (a Nushell error
/// naming the command, or the bounds' one-line reason).
fn assert_over_cap(server: &Server, script: &str) {
    let (r, _) = eval(server, script);
    assert_eq!(r.status, 500, "{script}: {}", r.text());
    assert!(r.text().contains("memory cap"), "{script}: {}", r.text());
}

#[test]
fn conversions_that_would_build_past_the_cap_fail_alone() {
    let server = Server::start(&["--eval-memory", CAP]);
    // 20 MB of bytes, well under the cap; their JSON would be far over.
    assert_over_cap(
        &server,
        "^head -c 20000000 /dev/zero | to json | str length",
    );
    // A long string of small numbers parses to far more than its size.
    assert_over_cap(
        &server,
        "let text = ('[' + ('' | fill --character '1,' --width 8000000) + '1]'); $text | from json | length",
    );
    // Small conversions are as ever.
    let (r, _) = eval(&server, "[1 2 3] | to json -r");
    assert_eq!(r.text(), "[1,2,3]");
    assert_alive(&server);
}

#[test]
fn par_each_runs_in_order_under_the_cap() {
    let server = Server::start(&["--eval-memory", CAP]);
    let (r, _) = eval(
        &server,
        "1..100 | par-each --threads 7 {|x| $x * 2 } | math sum",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "10100");
    assert_over_cap(
        &server,
        "1..4 | par-each {|x| mut s = 'x'; loop { $s = $s ++ $s } } | collect",
    );
    assert_alive(&server);
}
