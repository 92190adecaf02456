//! Everyday Nushell inside xs: the standard commands answer as in `nu`.
//!
//! Each one-liner runs as `<line> | to json -r` in the real `nu` 0.115.1
//! (scripts/install-nushell.sh puts it in .tools/bin) and through
//! `POST /eval`; the two outputs must be byte-identical. Then the xs
//! builtins mixed with the standard commands, `$env`, the std library,
//! and errors as plain text.

#![cfg(feature = "nushell")]

mod common;

use std::path::Path;
use std::process::Command;

use common::{nu_binary, Server};

/// Everyday one-liners over the standard commands, deterministic ones.
const ONE_LINERS: &[&str] = &[
    "[1 2 3] | each {|x| $x * 2}",
    "[1 2 3 4] | where {|x| $x > 2}",
    "[[a b]; [1 2] [3 4]] | where a > 1",
    "{a: {b: 5}} | get a.b",
    "[[name age]; [ann 30] [bob 25]] | select name",
    "{a: 1} | update a {|r| $r.a + 1}",
    "{a: 1} | upsert b 2",
    "{a: 1} | insert c 3",
    "[1 2 3 4] | reduce {|x, acc| $acc + $x}",
    "[[n]; [3] [1] [2]] | sort-by n",
    "[[k v]; [a 1] [b 2] [a 3]] | group-by k --to-table",
    "[1 1 2 3 3] | uniq",
    "[1 2 3] | length",
    "[1 2 3] | first",
    "[1 2 3] | last 2",
    "[1 2 3 4] | skip 1",
    "[1 2 3 4] | take 2",
    "'hello' | str upcase",
    "'Hello' | str downcase",
    "'  pad  ' | str trim",
    "'a,b,c' | split row ','",
    "'abc' | str length",
    "'hello world' | str replace 'world' 'there'",
    "['a' 'b' 'c'] | str join '-'",
    "'hello' | str starts-with 'he'",
    "'hello' | str contains 'ell'",
    "'hello' | str reverse",
    "'hello' | str substring 1..3",
    "'a b  c' | split words",
    "\"one\\ntwo\\nthree\" | lines",
    "'abc' | split chars",
    "'name=ann age=30' | parse 'name={name} age={age}'",
    "[1 2 3 4] | math sum",
    "[1 2 3 4] | math avg",
    "[3 1 2] | math max",
    "[3 1 2] | math min",
    "[1 2 3 4] | math median",
    "2 | math sqrt",
    "-5 | math abs",
    "10 / 4 | math round",
    "'42' | into int",
    "'3.5' | into float",
    "42 | into string",
    "'true' | into bool",
    "1kb | into int",
    "'{\"a\": [1, 2]}' | from json",
    "{a: 1, b: [true null]} | to json",
    "{a: 1, b: [1 2]} | to nuon",
    "\"a,b\\n1,2\\n3,4\" | from csv",
    "[[a b]; [1 2]] | to csv",
    "\"a\\tb\\n1\\t2\" | from tsv",
    "'x = 1' | from toml",
    "\"a: 1\\nb: [2, 3]\" | from yaml",
    "'2024-03-01T12:00:00Z' | into datetime | format date '%Y-%m-%d %H:%M'",
    "'2024-03-01T12:00:00Z' | into datetime | date to-timezone UTC | format date '%s'",
    "'hello' | encode base64",
    "'aGVsbG8=' | decode base64 | decode utf-8",
    "'hello' | hash sha256",
    "'hello' | hash md5",
    "try { error make {msg: 'boom'} } catch {|e| $e.msg }",
    "do { let f = {|x| $x + 1}; do $f 41 }",
    "1..5 | each {|i| $i * $i}",
    "0..<3 | into string",
    "seq 1 4",
    "[1 2 3] | zip [a b c]",
    "[[a]; [1] [2]] | transpose",
    "{a: 1, b: 2} | items {|k, v| $'($k)=($v)'}",
    "[1 [2 [3]]] | flatten",
    "{a: 1, b: 2} | columns",
    "{a: 1, b: 2} | values",
    "[1 2 3] | enumerate",
    "[3 1 2] | sort --reverse",
    "[1 2 3] | any {|x| $x > 2}",
    "[1 2 3] | all {|x| $x > 0}",
    "'a-b_c d' | str replace --all --regex '[-_ ]' '.'",
    "100 | into filesize | format filesize kB",
    "'/a/b/c.txt' | path basename",
    "'/a/b/c.txt' | path parse",
    "['a' 'b'] | path join",
    "{name: ann} | to yaml",
    "[1 2 3] | wrap n",
    "[{a: 1} {a: 2}] | get a",
    "[1 2 3] | chunks 2",
    "'abc' | fill --alignment right --width 6 --character '.'",
    "if (1 > 2) { 'yes' } else { 'no' }",
    "match 3 { 1 => 'one', 3 => 'three', _ => 'other' }",
    "mut n = 0; for i in 1..3 { $n += $i }; $n",
    "def add [a: int, b: int] { $a + $b }; add 2 3",
    "[a b c] | window 2",
    "'hello' | url encode",
    "{a: 1} | merge {b: 2}",
];

/// What `nu` prints for `script`, without its final newline; its error
/// text when it fails.
fn in_nu(script: &str) -> Result<String, String> {
    let out = Command::new(nu_binary())
        .args(["--no-config-file", "-c", script])
        .output()
        .expect("run nu");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8(out.stdout).expect("utf-8");
    Ok(text.strip_suffix('\n').unwrap_or(&text).to_string())
}

/// What `POST /eval` answers for `script`; its error text on a failure.
fn eval(server: &Server, script: &str) -> Result<String, String> {
    let r = server.post("/eval", script.as_bytes());
    if r.status == 200 {
        Ok(r.text())
    } else {
        Err(format!("{}: {}", r.status, r.text()))
    }
}

/// What `POST /eval` answers for `script` (asserting 200).
fn in_xs(server: &Server, script: &str) -> String {
    match eval(server, script) {
        Ok(text) => text,
        Err(e) => panic!("xs eval {script}: {e}"),
    }
}

#[test]
fn everyday_one_liners_answer_as_in_nu() {
    assert!(ONE_LINERS.len() >= 60);
    let server = Server::start(&[]);
    let mut differ = Vec::new();
    for line in ONE_LINERS {
        let script = format!("{line} | to json -r");
        let (nu, xs) = (in_nu(&script), eval(&server, &script));
        if nu.is_err() || nu != xs {
            differ.push(format!("{line}\n  nu: {nu:?}\n  xs: {xs:?}"));
        }
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
}

/// A program that fails: the commands that read its output piece by
/// piece (`lines`, `each`, `bytes split`, `chunks`) give what it printed,
/// and the ones that collect it (`str trim`, `split row`, a variable)
/// fail with it, as in `nu`.
#[test]
fn a_failing_program_reaches_its_readers_as_in_nu() {
    let server = Server::start(&[]);
    let failing = r#"^sh -c "echo a,b; exit 3""#;
    for reader in [
        "lines",
        "lines | each {|l| $l + '!'}",
        "bytes split ',' | each {|b| $b | decode}",
        "chunks 1 | length",
        "each {|chunk| $chunk | describe}",
    ] {
        let script = format!("let x = ({failing} | {reader}); $x | to json -r");
        let nu = in_nu(&script);
        assert!(nu.is_ok(), "{script}: {nu:?}");
        assert_eq!(eval(&server, &script), nu, "{script}");
    }
    for collector in ["str trim", "split row ','", "into string"] {
        let script = format!("let x = ({failing} | {collector}); $x | to json -r");
        assert!(in_nu(&script).is_err(), "{script}");
        let xs = eval(&server, &script);
        assert!(
            xs.as_ref().is_err_and(|e| e.contains("non-zero exit code")),
            "{script}: {xs:?}"
        );
    }
}

#[test]
fn the_xs_builtins_mix_with_the_standard_commands() {
    let server = Server::start(&[]);
    server.append("note", b"one");
    server.append("note", b"two");
    server.append("other", b"x");
    server.append("j", br#"{"k": 7}"#);
    let cases = [
        (r#".cat | where topic == "note" | length"#, "2"),
        (
            r#".cat -T note | each {|f| .cas $f.hash } | str join ",""#,
            "one,two",
        ),
        (".last j | .cas $in.hash | from json | get k", "7"),
        (
            r#".cat | get topic | uniq | sort | to json -r"#,
            r#"["j","note","other","xs.start"]"#,
        ),
    ];
    for (script, want) in cases {
        assert_eq!(in_xs(&server, script), want, "{script}");
    }
}

#[test]
fn scripts_see_the_servers_environment_and_with_env_stays_in_its_script() {
    let server = Server::start(&[]);
    let home = std::env::var("HOME").unwrap_or_default();
    assert_eq!(in_xs(&server, "$env.HOME"), home);
    let path_len: usize = in_xs(&server, "$env.PATH | length")
        .parse()
        .expect("a count");
    let want = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).count();
    assert_eq!(path_len, want);
    assert_eq!(in_xs(&server, "with-env {X: 1} { $env.X }"), "1");
    assert_eq!(in_xs(&server, "load-env {Y: 2}; $env.Y"), "2");
    let r = server.post("/eval", b"$env.Y");
    assert_eq!(r.status, 500, "load-env leaked: {}", r.text());
    // Nushell 0.115 names them home-dir and temp-dir.
    assert_eq!(in_xs(&server, "$nu.home-dir"), home);
    assert_eq!(
        in_xs(&server, "$nu.temp-dir"),
        std::env::temp_dir().to_string_lossy()
    );
}

#[test]
fn the_std_library_is_there() {
    let server = Server::start(&[]);
    assert_eq!(
        server
            .post("/eval", b"use std/assert; assert equal 1 1")
            .status,
        204
    );
    let r = server.post("/eval", b"use std/assert; assert equal 1 2");
    assert_eq!(r.status, 500, "{}", r.text());
    let r = server.post("/eval", b"use std/log; log info 'from a script'; 'logged'");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        in_xs(&server, "use std/iter; [1 2 3] | iter find {|x| $x > 1}"),
        "2"
    );
}

#[test]
fn errors_are_plain_text() {
    let server = Server::start(&[]);
    let r = server.post("/eval", b"[1 2] | get 5");
    assert_eq!(r.status, 500);
    let text = r.text();
    assert!(text.contains("get 5"), "names the script line: {text}");
    assert!(!text.contains('\u{1b}'), "colour codes: {text}");
    assert!(
        !text.chars().any(|c| ('\u{2500}'..='\u{257f}').contains(&c)),
        "box drawing: {text}"
    );
}

#[cfg(not(feature = "nushell-os"))]
#[test]
fn a_filesystem_command_names_the_feature_that_brings_it() {
    let server = Server::start(&[]);
    let r = server.post("/eval", b"ls");
    assert_eq!(r.status, 500);
    assert!(r.text().contains("nushell-os"), "{}", r.text());
    // Written `^ls`, it is the program.
    let r = server.post("/eval", b"^ls / | lines | length");
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn a_sqlite_command_says_it_is_left_out() {
    let server = Server::start(&[]);
    let r = server.post("/eval", b"stor open");
    assert_eq!(r.status, 500);
    assert!(r.text().contains("SQLite commands"), "{}", r.text());
}

/// A one-request-at-a-time HTTP server on loopback: each request's method,
/// path and body come back as JSON.
fn echo_server() -> u16 {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut head = String::new();
            let mut length = 0usize;
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                if head.is_empty() {
                    head = line.trim_end().to_string();
                }
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let mut words = head.split(' ');
            let answer = serde_json::json!({
                "method": words.next(),
                "path": words.next(),
                "body": String::from_utf8_lossy(&body),
            })
            .to_string();
            let mut stream = reader.into_inner();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    port
}

#[cfg(feature = "nushell-http")]
#[test]
fn http_get_and_post_reach_a_server() {
    let port = echo_server();
    let server = Server::start(&[]);
    assert_eq!(
        in_xs(
            &server,
            &format!("http get http://127.0.0.1:{port}/hello | get path")
        ),
        "/hello"
    );
    assert_eq!(
        in_xs(
            &server,
            &format!("http post http://127.0.0.1:{port}/hook 'payload' | values | str join ' '")
        ),
        "POST /hook payload"
    );
}

// ---------------------------------------------------------------------------
// Actors, services, actions, views and gateway handlers use them too

use common::waits::{now_of, wait_count, wait_topic};
use serde_json::{json, Value};

/// A payload as text.
fn payload_text(server: &Server, frame: &Value) -> String {
    let hash = frame["hash"]
        .as_str()
        .unwrap_or_else(|| panic!("no hash: {frame}"));
    let r = server.get(&format!("/cas/{hash}"));
    assert_eq!(r.status, 200, "GET /cas/{hash}");
    String::from_utf8(r.body).expect("UTF-8")
}

#[test]
fn an_actor_written_with_from_json_update_and_where() {
    let server = Server::start(&[]);
    server.append(
        "xs.actor.big.create",
        br#"{run: {|frame, state = null|
            if $frame.topic != "order" { return {next: $state} }
            let order = .cas $frame.hash | from json | update qty {|o| $o.qty * 10}
            let big = [$order] | where qty > 20
            if ($big | is-empty) { {next: $state} } else { {out: ($big | first), next: $state} }
        }}"#,
    );
    wait_topic(&server, "xs.actor.big.active");
    server.append("order", br#"{"item": "pen", "qty": 1}"#);
    server.append("order", br#"{"item": "box", "qty": 3}"#);
    let out = wait_count(&server, "big.out", 1);
    assert_eq!(out[0]["meta"]["item"], "box");
    assert_eq!(out[0]["meta"]["qty"], 30);
}

#[test]
fn a_service_using_lines_and_each() {
    let server = Server::start(&[]);
    server.append(
        "xs.service.words.create",
        br#"{run: {|| "a b\nc d\n" | lines | each {|l| {words: ($l | split row ' ' | length)}} }, restart: "never"}"#,
    );
    let out = wait_count(&server, "words.recv", 2);
    assert_eq!(out[0]["meta"]["words"], 2);
    assert_eq!(out[1]["meta"]["words"], 2);
}

#[test]
fn an_action_returning_a_table_built_with_group_by() {
    let server = Server::start(&[]);
    server.append(
        "xs.action.tally.create",
        br#"{
            run: {|frame| .cas $frame.hash | from json | group-by kind --to-table | each {|g| {kind: $g.kind, n: ($g.items | length)}} }
            return_options: {target: "cas"}
        }"#,
    );
    wait_topic(&server, "xs.action.tally.active");
    server.append(
        "tally.call",
        br#"[{"kind": "a"}, {"kind": "b"}, {"kind": "a"}]"#,
    );
    let response = wait_topic(&server, "tally.response");
    let table: Value = serde_json::from_str(&payload_text(&server, &response)).expect("JSON");
    assert_eq!(table, json!([{"kind": "a", "n": 2}, {"kind": "b", "n": 1}]));
}

#[test]
fn a_view_folding_with_upsert() {
    let server = Server::start(&[]);
    server.append(
        "xs.view.counts.create",
        br#"{initial: {}, topics: ["hit"], run: {|frame, state|
            let page = .cas $frame.hash
            $state | upsert $page {|s| ($s | get -o $page | default 0) + 1}
        }}"#,
    );
    for page in ["home", "about", "home"] {
        server.append("hit", page.as_bytes());
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = server.get("/kv/view.counts");
        if r.status == 200 && r.json()["state"] == json!({"home": 2, "about": 1}) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "view.counts: {}",
            r.text()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_sleeping_actor_stops_on_term_at_once() {
    let server = Server::start(&[]);
    server.append(
        "xs.actor.nap.create",
        br#"{run: {|frame, state = null| if $frame.topic == "go" { true | .kv set nap.started; sleep 1hr }; {next: $state}}}"#,
    );
    wait_topic(&server, "xs.actor.nap.active");
    server.append("go", b"");
    // An actor's .append waits for its closure to return; a k/v set does
    // not: the actor is inside `sleep` once the key is there.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while server.get("/kv/nap.started").status != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "the actor never started its nap"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let asked = std::time::Instant::now();
    server.append("xs.actor.nap.term", b"");
    wait_topic(&server, "xs.actor.nap.fin.term");
    assert!(
        asked.elapsed() < std::time::Duration::from_secs(2),
        "term took {:?}",
        asked.elapsed()
    );
    assert!(now_of(&server, "nap.out").is_empty());
}

#[test]
fn a_gateway_handler_answering_with_to_json() {
    use std::io::{Read, Write};
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let http = format!("127.0.0.1:{port}");
    let server = Server::start(&["--http", &http]);
    server.append(
        "xs.actor.web.create",
        br#"{run: {|frame, state = null|
            if $frame.topic == "http.request" {
                {path: $frame.meta.path, query: $frame.meta.query} | to json -r
                | .append http.response --ttl ephemeral --meta {request_id: $frame.id, headers: {content-type: "application/json"}}
            }
            {next: $state}
        }, start: "new"}"#,
    );
    wait_topic(&server, "xs.actor.web.active");
    let mut stream = std::net::TcpStream::connect(&http).expect("connect");
    stream
        .write_all(b"GET /hello?name=ann HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("application/json"), "{answer}");
    assert!(
        answer.ends_with(r#"{"path":"/hello","query":{"name":"ann"}}"#),
        "{answer}"
    );
}

/// `script` from util-linux, which gives a command a terminal.
fn script_binary() -> Option<&'static str> {
    ["/usr/bin/script", "/bin/script"]
        .into_iter()
        .find(|path| Path::new(path).is_file())
}

#[test]
fn errors_stay_plain_when_the_servers_stderr_is_a_terminal() {
    let Some(script) = script_binary() else {
        eprintln!("skipped: no `script` (util-linux) to give the server a terminal");
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("store");
    let command = format!("exec {} serve {}", common::XS, dir.display());
    let mut child = Command::new(script)
        .args(["-qfec", &command, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run script");
    let sock = dir.join("sock");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let r = loop {
        if let Ok(r) = common::try_request(
            &sock,
            "POST",
            "/eval",
            &[],
            b"[1 2] | get 5",
            common::REQUEST_TIMEOUT,
        ) {
            break r;
        }
        assert!(std::time::Instant::now() < deadline, "no server");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(r.status, 500);
    let text = r.text();
    assert!(text.contains("get 5"), "{text}");
    assert!(!text.contains('\u{1b}'), "colour codes: {text}");
    assert!(
        !text.chars().any(|c| ('\u{2500}'..='\u{257f}').contains(&c)),
        "box drawing: {text}"
    );
}

#[test]
fn an_actor_sees_the_environment_and_its_with_env_stays_inside() {
    let server = Server::start(&[]);
    server.append(
        "xs.actor.envy.create",
        br#"{run: {|frame, state = null|
            if $frame.topic != "go" { return {next: $state} }
            {out: {home: $env.HOME, x: (with-env {X: "inside"} { $env.X }), after: ($env.X? | default "gone")}, next: $state}
        }}"#,
    );
    wait_topic(&server, "xs.actor.envy.active");
    server.append("go", b"");
    let out = wait_count(&server, "envy.out", 1);
    let home = std::env::var("HOME").unwrap_or_default();
    assert_eq!(out[0]["meta"]["home"], json!(home));
    assert_eq!(out[0]["meta"]["x"], "inside");
    assert_eq!(out[0]["meta"]["after"], "gone");
    assert_eq!(in_xs(&server, "$env.X? | default 'unset'"), "unset");
}
