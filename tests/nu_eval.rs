//! The embedded Nushell as a user meets it through `xs eval` and
//! `POST /eval` (reference 4.7, 6.1 and the eval tests of 10.1), adapted to
//! our engine: Nushell with its standard commands plus the xs builtins
//! (`.cat`, `.last`, `.append`, `.cas`, `.cas-post`, `.get`,
//! `.remove`/`.rm`, `.import`, `.id`, `.cas --json`); tests/nu_standard.rs
//! compares the standard commands with `nu` itself.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use common::cli::{addr, cmd, run};
use common::*;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------
// Running `xs eval`

/// How long a streamed line may take to arrive.
const LINE_TIMEOUT: Duration = Duration::from_secs(5);

/// `xs <args>`, `input` on stdin (closed when `None`), to its end.
fn xs(args: &[&str], input: Option<&[u8]>) -> Output {
    run(cmd(args), input)
}

/// `xs eval <dir> -c <script>`.
fn eval(server: &Server, script: &str) -> Output {
    xs(&["eval", &addr(server), "-c", script], None)
}

/// `xs eval <dir> -c <script>`, asserting success; stdout.
fn eval_ok(server: &Server, script: &str) -> String {
    let out = eval(server, script);
    assert!(
        out.status.success(),
        "script {script:?} failed with {:?}; stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("stdout is UTF-8")
}

/// The result of a script as one JSON value.
fn eval_json(server: &Server, script: &str) -> Value {
    let text = eval_ok(server, script);
    serde_json::from_str(text.trim_end())
        .unwrap_or_else(|e| panic!("script {script:?}: not JSON ({e}): {text:?}"))
}

/// The result of a script as NDJSON lines.
fn eval_lines(server: &Server, script: &str) -> Vec<Value> {
    eval_ok(server, script)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
        .collect()
}

/// The result of a script as bare text, without the trailing newline.
fn eval_text(server: &Server, script: &str) -> String {
    let text = eval_ok(server, script);
    text.strip_suffix('\n').unwrap_or(&text).to_string()
}

/// A `xs eval` that keeps streaming; its stdout read line by line.
struct Follower {
    child: Child,
    lines: Receiver<String>,
}

impl Follower {
    fn spawn(server: &Server, script: &str) -> Follower {
        let mut child = Command::new(XS)
            .args(["eval", &addr(server), "-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn xs eval");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            loop {
                let mut line = Vec::new();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        if line.last() == Some(&b'\n') {
                            line.pop();
                        }
                        if line.is_empty() {
                            continue;
                        }
                        if tx
                            .send(String::from_utf8_lossy(&line).into_owned())
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            }
        });
        Follower { child, lines: rx }
    }

    fn frame(&self) -> Value {
        match self.lines.recv_timeout(LINE_TIMEOUT) {
            Ok(line) => serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}")),
            Err(RecvTimeoutError::Timeout) => panic!("no line within {LINE_TIMEOUT:?}"),
            Err(RecvTimeoutError::Disconnected) => panic!("the output ended"),
        }
    }

    fn silent(&self, wait: Duration) {
        match self.lines.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(line) => panic!("expected silence, got {line:?}"),
            Err(RecvTimeoutError::Disconnected) => panic!("expected silence, the output ended"),
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// POST /eval, read as it streams

/// A `POST /eval` response read incrementally (chunked or not).
struct EvalStream {
    sock: UnixStream,
    raw: Vec<u8>,
    body: Vec<u8>,
    status: u16,
    content_type: String,
    chunked: bool,
    /// Bytes left in the current chunk; `None` when a size line is next.
    chunk_left: Option<usize>,
    ended: bool,
}

impl EvalStream {
    fn open(server: &Server, script: &str) -> EvalStream {
        let mut sock = UnixStream::connect(server.sock()).expect("connect");
        sock.write_all(&request_bytes("POST", "/eval", &[], script.as_bytes()))
            .expect("send");
        let mut stream = EvalStream {
            sock,
            raw: Vec::new(),
            body: Vec::new(),
            status: 0,
            content_type: String::new(),
            chunked: false,
            chunk_left: None,
            ended: false,
        };
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        let end = loop {
            if let Some(at) = stream.raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
            assert!(stream.fill(deadline), "no response head");
        };
        let head = String::from_utf8_lossy(&stream.raw[..end]).into_owned();
        stream.raw.drain(..end + 4);
        let mut lines = head.split("\r\n");
        stream.status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .expect("status line");
        for line in lines {
            if let Some((k, v)) = line.split_once(':') {
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
                if k == "content-type" {
                    stream.content_type = v;
                } else if k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked") {
                    stream.chunked = true;
                }
            }
        }
        stream
    }

    /// Reads more raw bytes; false at EOF or timeout.
    fn fill(&mut self, deadline: Instant) -> bool {
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        self.sock.set_read_timeout(Some(deadline - now)).unwrap();
        let mut buf = [0u8; 16 * 1024];
        match self.sock.read(&mut buf) {
            Ok(0) => {
                self.ended = true;
                false
            }
            Ok(n) => {
                self.raw.extend_from_slice(&buf[..n]);
                true
            }
            Err(_) => false,
        }
    }

    /// Moves decoded bytes from `raw` to `body`.
    fn decode(&mut self) {
        if !self.chunked {
            self.body.append(&mut self.raw);
            return;
        }
        loop {
            match self.chunk_left {
                None => {
                    let Some(at) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                        return;
                    };
                    let line = String::from_utf8_lossy(&self.raw[..at]).into_owned();
                    self.raw.drain(..at + 2);
                    if line.is_empty() {
                        continue; // the CRLF after a chunk's data
                    }
                    let size = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16)
                        .unwrap_or_else(|_| panic!("bad chunk size {line:?}"));
                    if size == 0 {
                        self.ended = true;
                        return;
                    }
                    self.chunk_left = Some(size);
                }
                Some(left) => {
                    if self.raw.is_empty() {
                        return;
                    }
                    let take = left.min(self.raw.len());
                    self.body.extend(self.raw.drain(..take));
                    self.chunk_left = if take == left {
                        None
                    } else {
                        Some(left - take)
                    };
                }
            }
        }
    }

    /// The next body line, if one arrives within `timeout`.
    fn line(&mut self, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            self.decode();
            if let Some(at) = self.body.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.body.drain(..=at).collect();
                return Some(String::from_utf8_lossy(&line[..at]).into_owned());
            }
            if self.ended || !self.fill(deadline) {
                return None;
            }
        }
    }

    fn frame(&mut self) -> Value {
        let line = self
            .line(LINE_TIMEOUT)
            .unwrap_or_else(|| panic!("no line within {LINE_TIMEOUT:?} (ended: {})", self.ended));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
    }
}

/// `POST /eval` to its end.
fn post_eval(server: &Server, script: &str) -> Response {
    server.post("/eval", script.as_bytes())
}

fn content_type(r: &Response) -> String {
    r.content_type().unwrap_or("").to_string()
}

// ---------------------------------------------------------------------------
// Results and errors (10.1 test_eval_integration)

#[test]
fn eval_prints_strings_numbers_and_records() {
    let server = Server::start(&[]);
    assert_eq!(eval_text(&server, r#""hello world""#), "hello world");
    assert_eq!(eval_text(&server, "2 + 3"), "5");
    // A record is one JSON object, its keys in the order written.
    let text = eval_text(&server, r#"{zeta: 1, alpha: "two", mid: [1 2 3], n: null}"#);
    assert_eq!(text, r#"{"zeta":1,"alpha":"two","mid":[1,2,3],"n":null}"#);
    let record = eval_json(&server, "{b: {c: true}, a: 1.5}");
    assert_eq!(keys(&record), ["b", "a"]);
    assert_eq!(record, json!({"b": {"c": true}, "a": 1.5}));
}

#[test]
fn eval_reads_the_script_from_stdin_with_a_dash() {
    let server = Server::start(&[]);
    let out = xs(
        &["eval", &addr(&server), "-"],
        Some(b"let greeting = \"from stdin\"\n$greeting\n"),
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim_end(),
        "from stdin"
    );
}

#[test]
fn eval_append_then_cas_of_last_returns_the_content() {
    let server = Server::start(&[]);
    let frame = eval_json(&server, r#""test note" | .append note"#);
    assert_eq!(frame["topic"], "note");
    assert!(frame["hash"].as_str().unwrap().starts_with("sha256-"));
    assert_eq!(eval_text(&server, ".cas (.last note).hash"), "test note");
    // The frame is a real one: the HTTP API sees it.
    let last = server.frames("/?topic=note");
    assert_eq!(last.len(), 1);
    assert_eq!(last[0]["id"], frame["id"]);
}

/// A word that is neither a command nor a program fails the script. (Not
/// `ls`: as in Nushell, an unknown word is looked up as a program.)
#[test]
fn eval_of_an_unknown_command_fails_naming_it() {
    let server = Server::start(&[]);
    let out = eval(&server, "no-such-command-anywhere");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Script evaluation failed"),
        "stderr: {stderr}"
    );
    assert!(
        stderr.contains("no-such-command-anywhere"),
        "stderr does not name the word: {stderr}"
    );
    assert!(out.stdout.is_empty(), "stdout: {:?}", out.stdout);

    // A word deeper in a pipeline is named too.
    let out = eval(&server, r#""x" | frobnicate-the-thing"#);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Script evaluation failed"), "{stderr}");
    assert!(stderr.contains("frobnicate-the-thing"), "{stderr}");

    // Over HTTP: 500 with the same text.
    let r = post_eval(&server, "no-such-command-anywhere");
    assert_eq!(r.status, 500);
    assert!(
        r.text().starts_with("Script evaluation failed:\n"),
        "{:?}",
        r.text()
    );
    assert!(r.text().contains("no-such-command-anywhere"));
}

#[test]
fn eval_of_a_syntax_error_fails() {
    let server = Server::start(&[]);
    let out = eval(&server, "{ a: ");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Script evaluation failed"), "{stderr}");
    let out = eval(&server, "let = 5");
    assert!(!out.status.success());

    let r = post_eval(&server, "if true {");
    assert_eq!(r.status, 500);
    assert!(r.text().starts_with("Script evaluation failed:\n"));
    // A runtime error is a failure as well.
    let r = post_eval(&server, r#"error make {msg: "it broke"}"#);
    assert_eq!(r.status, 500);
    assert!(r.text().contains("it broke"), "{}", r.text());
    // And the server is fine afterwards.
    assert_eq!(eval_text(&server, "1 + 1"), "2");
}

// ---------------------------------------------------------------------------
// Response shapes of POST /eval (4.7)

#[test]
fn eval_response_shapes_follow_the_result() {
    let server = Server::start(&[]);

    // Nothing → 204.
    for script in ["", "null", "let x = 1", r#""x" | ignore"#] {
        let r = post_eval(&server, script);
        assert_eq!(r.status, 204, "{script:?}: {}", r.text());
        assert!(r.body.is_empty(), "{script:?}");
    }

    // Scalars → text/plain, bare.
    for (script, text) in [
        (r#""plain text""#, "plain text"),
        ("40 + 2", "42"),
        ("1.5", "1.5"),
        ("true", "true"),
        ("1 > 2", "false"),
    ] {
        let r = post_eval(&server, script);
        assert_eq!(r.status, 200, "{script:?}");
        assert!(
            content_type(&r).starts_with("text/plain"),
            "{script:?}: {:?}",
            r.content_type()
        );
        assert_eq!(r.text(), text, "{script:?}");
    }

    // A record or a list value → application/json.
    let r = post_eval(&server, "{b: 2, a: [1 {c: null}]}");
    assert_eq!(r.status, 200);
    assert!(content_type(&r).starts_with("application/json"), "{r:?}");
    assert_eq!(r.text(), r#"{"b":2,"a":[1,{"c":null}]}"#);
    let r = post_eval(&server, "[1 2 3]");
    assert!(content_type(&r).starts_with("application/json"), "{r:?}");
    assert_eq!(r.json(), json!([1, 2, 3]));

    // A list stream → NDJSON, one value per line.
    server.append("shape.a", b"1");
    server.append("shape.b", b"2");
    let r = post_eval(&server, ".cat -T [shape.a shape.b]");
    assert_eq!(r.status, 200);
    assert!(
        content_type(&r).starts_with("application/x-ndjson"),
        "{:?}",
        r.content_type()
    );
    assert!(r.text().ends_with('\n'));
    assert_eq!(topics(&r.frames()), ["shape.a", "shape.b"]);
}

#[test]
fn eval_list_stream_is_streamed_while_the_script_still_runs() {
    let server = Server::start(&[]);
    let first = server.append("x", b"before");
    let mut stream = EvalStream::open(&server, ".cat --follow --topic x");
    assert_eq!(stream.status, 200);
    assert!(
        stream.content_type.starts_with("application/x-ndjson"),
        "{:?}",
        stream.content_type
    );
    // The first line arrives though the script never ends.
    let started = Instant::now();
    let frame = stream.frame();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(frame["id"], first["id"]);
    assert_eq!(stream.frame()["topic"], "xs.threshold");
    assert!(!stream.ended, "the stream must stay open");
    // A live frame follows.
    let live = server.append("x", b"after");
    server.append("other", b"");
    let frame = stream.frame();
    assert_eq!(frame["id"], live["id"]);
    assert!(stream.line(ms(200)).is_none(), "only topic x is followed");
    assert!(!stream.ended);
}

#[test]
fn eval_binary_result_is_raw_octet_stream() {
    let server = Server::start(&[]);
    let bytes: &[u8] = &[0x00, 0x01, 0x02, 0xff, 0xfe, 0x80, 0x7f, 0x0a, 0x0d, 0xc3];
    let r = server.post("/cas", bytes);
    assert_eq!(r.status, 200, "{}", r.text());
    let hash = r.text().trim().to_string();

    let r = post_eval(&server, &format!(r#".cas "{hash}""#));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        content_type(&r).starts_with("application/octet-stream"),
        "content type {:?}, body {:?}",
        r.content_type(),
        r.text()
    );
    assert_eq!(r.body, bytes);

    // The CLI prints the same raw bytes.
    let out = eval(&server, &format!(r#".cas "{hash}""#));
    assert!(out.status.success());
    assert_eq!(out.stdout, bytes);
}

// ---------------------------------------------------------------------------
// .cat (10.1 test_eval_cat_streaming, 10.2 topic lists)

#[test]
fn eval_cat_reads_frames_like_the_api() {
    let server = Server::start(&[]);
    let appended = server.append("stream.test", b"payload");

    let lines = eval_lines(&server, ".cat --topic stream.test");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["id"], appended["id"]);
    assert_eq!(lines[0]["hash"], appended["hash"]);
    // No meta and no ttl by default: id, topic, hash in that order.
    assert_eq!(keys(&lines[0]), ["id", "topic", "hash"]);

    let detailed = eval_lines(&server, ".cat --topic stream.test --detail");
    assert_eq!(detailed.len(), 1);
    assert_eq!(detailed[0]["ttl"], "forever");
    assert_eq!(keys(&detailed[0]), ["id", "topic", "hash", "ttl"]);

    // --limit counts across all topics.
    let limited = eval_lines(&server, ".cat --limit 1");
    assert_eq!(limited.len(), 1);
    assert_eq!(limited[0]["topic"], "xs.start");
    assert_eq!(eval_lines(&server, ".cat").len(), 2);

    // --last and --after.
    let second = server.append("stream.test", b"two");
    let last = eval_lines(&server, ".cat --last 1");
    assert_eq!(last.len(), 1);
    assert_eq!(last[0]["id"], second["id"]);
    let after = eval_lines(
        &server,
        &format!(".cat --after {} --topic stream.test", id(&appended)),
    );
    assert_eq!(after.len(), 1);
    assert_eq!(after[0]["id"], second["id"]);

    // Cell paths over the stream's records work in the core language.
    let n = eval_text(
        &server,
        "mut n = 0; for f in (.cat --topic stream.test) { if $f.hash != null { $n += 1 } }; $n",
    );
    assert_eq!(n, "2");
}

#[test]
fn eval_cat_follow_gives_history_threshold_then_live_frames() {
    let server = Server::start(&[]);
    let first = server.append("stream.test", b"one");
    let follower = Follower::spawn(&server, ".cat --follow --topic stream.test");
    let frame = follower.frame();
    assert_eq!(frame["id"], first["id"]);
    assert!(frame.get("ttl").is_none(), "{frame}");
    let threshold = follower.frame();
    assert_eq!(threshold["topic"], "xs.threshold");
    follower.silent(ms(100));
    let live = server.append("stream.test", b"two");
    server.append("unrelated", b"");
    assert_eq!(follower.frame()["id"], live["id"]);
    follower.silent(ms(150));
}

#[test]
fn eval_cat_topic_accepts_a_list_or_a_comma_string() {
    let server = Server::start(&[]);
    for topic in ["filt.one", "filt.two", "filt.three", "filt.one", "other"] {
        server.append(topic, b"");
    }
    let expected = ["filt.one", "filt.two", "filt.one"];
    let by_list = eval_lines(&server, ".cat -T [filt.one filt.two]");
    assert_eq!(topics(&by_list), expected);
    let by_string = eval_lines(&server, r#".cat -T "filt.one,filt.two""#);
    assert_eq!(topics(&by_string), expected);
    let long = eval_lines(&server, r#".cat --topic ["filt.two"]"#);
    assert_eq!(topics(&long), ["filt.two"]);
    let wildcard = eval_lines(&server, r#".cat -T "filt.*""#);
    assert_eq!(wildcard.len(), 4);
}

// ---------------------------------------------------------------------------
// .last (10.1 test_eval_last_follow, test_last_wildcard_topic; 10.2)

#[test]
fn eval_last_follow_gives_the_last_then_threshold_then_live() {
    let server = Server::start(&[]);
    server.append("last.test", b"a");
    let current = server.append("last.test", b"b");
    let follower = Follower::spawn(&server, ".last last.test --follow");
    assert_eq!(follower.frame()["id"], current["id"]);
    assert_eq!(follower.frame()["topic"], "xs.threshold");
    let live = server.append("last.test", b"c");
    assert_eq!(follower.frame()["id"], live["id"]);
}

#[test]
fn eval_last_shapes_and_wildcards() {
    let server = Server::start(&[]);
    server.append("W.bar", b"");
    let newest_w = server.append("W.foo", b"");
    server.append("Wx", b"");
    assert_eq!(eval_json(&server, ".last W.*")["id"], newest_w["id"]);

    // One frame: a record, even when more were asked for.
    let one = server.append("one.t", b"only");
    let record = eval_json(&server, ".last one.t");
    assert!(record.is_object(), "{record}");
    assert_eq!(record["id"], one["id"]);
    assert_eq!(record["ttl"], "forever");
    let record = eval_json(&server, ".last one.t 3");
    assert!(record.is_object(), "{record}");

    // Several: a list, oldest first.
    let three: Vec<Value> = (0..3).map(|_| server.append("three.t", b"")).collect();
    let list = eval_json(&server, ".last three.t 3");
    let list = list.as_array().unwrap_or_else(|| panic!("a list: {list}"));
    assert_eq!(list.len(), 3);
    for (got, want) in list.iter().zip(&three) {
        assert_eq!(got["id"], want["id"]);
    }
    assert_eq!(
        eval_json(&server, ".last three.t 2")
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(eval_json(&server, ".last three.t")["id"], three[2]["id"]);

    // No topic: the newest of all; a number alone is the count.
    assert_eq!(eval_json(&server, ".last")["id"], three[2]["id"]);
    assert_eq!(eval_json(&server, ".last 2").as_array().unwrap().len(), 2);
    // A list of topics.
    let both = eval_json(&server, ".last [one.t W.foo] 5");
    assert_eq!(topics(both.as_array().unwrap()), ["W.foo", "one.t"]);

    // Nothing found: nothing.
    assert_eq!(post_eval(&server, ".last missing.t").status, 204);
    assert_eq!(eval_text(&server, ".last missing.t | describe"), "nothing");
}

// ---------------------------------------------------------------------------
// .append, .get, .remove, .import, .cas-post, .id (6.1, 10.2)

#[test]
fn eval_append_meta_and_ttl() {
    let server = Server::start(&[]);
    let frame = eval_json(
        &server,
        r#""x" | .append meta.test --meta {k: "v", n: 1, deep: {list: [1 2]}}"#,
    );
    assert_eq!(
        frame["meta"],
        json!({"k": "v", "n": 1, "deep": {"list": [1, 2]}})
    );
    assert_eq!(eval_text(&server, "(.last meta.test).meta.k"), "v");
    assert_eq!(
        eval_text(&server, "(.last meta.test).meta.deep.list.1"),
        "2"
    );

    // Without --meta the meta is an empty record; without input no hash.
    let bare = eval_json(&server, ".append bare.t");
    assert_eq!(bare["meta"], json!({}));
    assert!(bare.get("hash").is_none(), "{bare}");
    assert_eq!(keys(&bare)[..3], ["id", "topic", "meta"]);

    // A record input is stored as its JSON text.
    let rec = eval_json(&server, "{a: 1, b: [true]} | .append rec.t");
    let hash = rec["hash"].as_str().unwrap();
    let r = server.get(&format!("/cas/{hash}"));
    assert_eq!(r.text(), r#"{"a":1,"b":[true]}"#);

    // --ttl last:1 keeps only the newest.
    for n in 0..3 {
        eval_ok(&server, &format!(r#""{n}" | .append kv.a --ttl last:1"#));
    }
    // Pruning runs off the append path: it lands shortly after.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let kept = loop {
        let kept = eval_lines(&server, ".cat --topic kv.a --detail");
        if kept.len() == 1 || std::time::Instant::now() > deadline {
            break kept;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0]["ttl"], "last:1");
    assert_eq!(eval_text(&server, ".cas (.last kv.a).hash"), "2");

    // A bad topic or ttl is an error.
    assert!(!eval(&server, r#""x" | .append "bad." "#).status.success());
    assert!(!eval(&server, r#""x" | .append ok.t --ttl soon"#)
        .status
        .success());
}

#[test]
fn eval_get_remove_import_and_cas_post() {
    let server = Server::start(&[]);
    // .get
    let got = eval_json(&server, r#"let f = ("a" | .append g.t); .get $f.id"#);
    assert_eq!(got["topic"], "g.t");
    let missing = eval(&server, &format!(".get {}", "03d4q4h3vtzv9mb7ynxk8ysdx"));
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("Frame not found"),
        "{missing:?}"
    );

    // .remove and .rm
    let f = server.append("rm.t", b"x");
    let g = server.append("rm.t", b"y");
    assert_eq!(
        post_eval(&server, &format!(".remove {}", id(&f))).status,
        204
    );
    assert_eq!(eval_json(&server, ".last rm.t")["id"], g["id"]);
    eval_ok(&server, &format!(".rm {}", id(&g)));
    assert_eq!(post_eval(&server, ".last rm.t").status, 204);
    assert_eq!(server.get(&format!("/{}", id(&g))).status, 404);

    // .import a record, and a JSON string, verbatim (id and ttl kept).
    let imported = eval_json(
        &server,
        r#"let id = (.id); {id: $id, topic: "imp.t", meta: {a: 1}, ttl: "last:5"} | .import"#,
    );
    assert_eq!(imported["topic"], "imp.t");
    let stored = server.get(&format!("/{}", id(&imported)));
    assert_eq!(stored.status, 200);
    assert_eq!(stored.json()["meta"], json!({"a": 1}));
    assert_eq!(stored.json()["ttl"], "last:5");
    let text_import = eval_json(
        &server,
        r#"let id = (.id); $'{"id":"($id)","topic":"imp.s"}' | .import"#,
    );
    assert_eq!(text_import["topic"], "imp.s");
    assert_eq!(server.get(&format!("/{}", id(&text_import))).status, 200);

    // .cas-post then .cas
    let hash = eval_text(&server, r#""stored text" | .cas-post"#);
    assert!(hash.starts_with("sha256-"), "{hash}");
    assert_eq!(server.get(&format!("/cas/{hash}")).text(), "stored text");
    assert_eq!(eval_text(&server, &format!(".cas {hash}")), "stored text");
    let empty = eval(&server, "null | .cas-post");
    assert!(!empty.status.success());
    assert!(String::from_utf8_lossy(&empty.stderr).contains("Empty input"));
}

#[test]
fn eval_id_unpack_and_pack_round_trip() {
    let server = Server::start(&[]);
    assert_eq!(
        eval_text(
            &server,
            "let id = (.id); (.id unpack $id | .id pack) == $id"
        ),
        "true"
    );
    assert_eq!(
        eval_text(
            &server,
            "let id = (.id); (.id pack (.id unpack $id)) == $id"
        ),
        "true"
    );
    let parts = eval_json(&server, ".id | .id unpack");
    assert_eq!(
        keys(&parts),
        ["ts_ms", "when", "counter_hi", "counter_lo", "node"]
    );
    assert!(parts["ts_ms"].as_u64().unwrap() >= now_ms() - 60_000);
    // Pinned ids survive the round trip, many fresh ones too.
    for pinned in [
        "03d4q4h3vtzv9mb7ynxk8ysdx",
        "03bidjuw5cbrnizhm7n1s6k1i",
        "0000000000000000000000000",
    ] {
        assert_eq!(
            eval_text(&server, &format!(".id unpack {pinned} | .id pack")),
            pinned
        );
    }
    let all_equal = eval_text(
        &server,
        "mut ok = true; for i in 1..500 { let id = (.id); if (.id unpack $id | .id pack) != $id { $ok = false } }; $ok",
    );
    assert_eq!(all_equal, "true");
}

#[test]
fn eval_json_lines_and_sleep() {
    let server = Server::start(&[]);
    // The older stopgap names are gone: one dialect.
    for gone in [".from-json", ".to-json", ".lines", ".split /", ".sleep 1ms"] {
        assert!(
            !eval(&server, &format!("'x' | {gone}")).status.success(),
            "{gone}"
        );
    }
    assert_eq!(
        eval_text(&server, r#"('{"a":[1,{"b":"deep"}]}' | from json).a.1.b"#),
        "deep"
    );
    assert_eq!(
        eval_text(&server, r#"{z: 1, a: [true null "s"]} | to json -r"#),
        r#"{"z":1,"a":[true,null,"s"]}"#
    );
    assert!(!eval(&server, r#""{not json" | from json"#).status.success());
    assert_eq!(
        eval_json(&server, "\"one\\ntwo\\nthree\" | lines | collect"),
        json!(["one", "two", "three"])
    );
    // sleep: ours, interruptible, with Nushell's signature.
    let started = Instant::now();
    assert_eq!(post_eval(&server, "sleep 10ms").status, 204);
    assert_eq!(eval_text(&server, "sleep 20ms 30ms; \"woke\""), "woke");
    assert!(started.elapsed() >= ms(60));
    // .cas --json
    server.append("j.t", br#"{"x": {"y": [10, 20]}}"#);
    assert_eq!(
        eval_text(&server, "(.cas --json (.last j.t).hash).x.y.1"),
        "20"
    );
    assert_eq!(
        eval_json(&server, ".cas --json (.last j.t).hash"),
        json!({"x": {"y": [10, 20]}})
    );
    // .cas of a record uses its hash.
    assert_eq!(
        eval_text(&server, ".last j.t | .cas"),
        r#"{"x": {"y": [10, 20]}}"#
    );
}

#[test]
fn eval_sees_registered_modules() {
    let server = Server::start(&[]);
    server.append(
        "xs.module.mymod",
        br#"export def add_nums [x, y] { $"sum is ($x + $y)" }"#,
    );
    assert_eq!(
        eval_text(&server, "use mymod; mymod add_nums 40 2"),
        "sum is 42"
    );
    // A module can call the builtins.
    server.append(
        "xs.module.emitter",
        br#"export def emit [] { {} | .append out.t --meta {via: "module"} }"#,
    );
    let frame = eval_json(&server, "use emitter; emitter emit");
    assert_eq!(frame["topic"], "out.t");
    assert_eq!(frame["meta"]["via"], "module");
}

#[test]
fn kv_builtins_set_get_list_delete() {
    let server = Server::start(&[]);
    eval_ok(&server, "{theme: dark, n: 3} | .kv set app.config");
    assert_eq!(
        eval_json(&server, ".kv get app.config"),
        json!({"theme": "dark", "n": 3})
    );
    // What Nushell wrote, HTTP reads, and the other way round.
    assert_eq!(
        server.get("/kv/app.config").json(),
        json!({"theme": "dark", "n": 3})
    );
    let r = common::request(&server.sock(), "PUT", "/kv/app.other", &[], b"[1,2]");
    assert_eq!(r.status, 204);
    assert_eq!(
        eval_json(&server, ".kv ls app."),
        json!([
            {"key": "app.config", "value": {"theme": "dark", "n": 3}},
            {"key": "app.other", "value": [1, 2]}
        ])
    );
    eval_ok(&server, ".kv del app.config");
    assert_eq!(server.get("/kv/app.config").status, 404);
    let refused = eval(&server, "1 | .kv set view.mine");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("belongs to a view"));
}

#[test]
fn split_row_divides_text() {
    let server = Server::start(&[]);
    assert_eq!(
        eval_json(&server, r#""/hello/ann" | split row "/" | collect"#),
        json!(["", "hello", "ann"])
    );
}
