//! The HTTP gateway (`xs serve --http`, SPEC 7.5), through the real binary:
//! a plain TCP client speaks HTTP/1.1 to the gateway, and the test plays
//! the handler on the store's socket — it follows `http.request` frames and
//! appends `http.response` frames, as any actor or script would.

mod common;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// How long any one step may take before the test fails.
const STEP: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// The server and the handler

/// A server with the gateway on a free loopback port.
fn start(extra: &[&str]) -> (Server, SocketAddr) {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let http = addr.to_string();
    let mut args = vec!["--http", http.as_str()];
    args.extend_from_slice(extra);
    (Server::start(&args), addr)
}

/// Follows `topics` from the start of the stream, returning once it is
/// live (after `xs.threshold`): nothing appended later can be missed.
fn follow_live(server: &Server, topics: &str) -> Stream {
    let mut stream = server.follow(&format!("/?follow&topic={topics},xs.threshold"));
    loop {
        let frame = stream.next_frame(STEP);
        if topic(&frame) == "xs.threshold" {
            return stream;
        }
    }
}

/// Appends an `http.response` for `request` (ephemeral, as a handler would).
fn respond(sock: &Path, request: &Value, meta: Value, body: &[u8]) {
    let mut meta = meta;
    meta["request_id"] = json!(id(request));
    let encoded = b64(meta.to_string().as_bytes());
    let r = common::request(
        sock,
        "POST",
        "/append/http.response?ttl=ephemeral",
        &[("xs-meta", encoded.as_str())],
        body,
    );
    assert_eq!(r.status, 200, "append http.response: {}", r.text());
}

/// A request frame's body, from CAS (ephemeral payloads are served from
/// memory).
fn request_body(sock: &Path, request: &Value) -> Vec<u8> {
    match request["hash"].as_str() {
        None => Vec::new(),
        Some(hash) => {
            let r = common::request(sock, "GET", &format!("/cas/{hash}"), &[], b"");
            assert_eq!(r.status, 200, "GET /cas/{hash}");
            r.body
        }
    }
}

/// A handler on its own thread: answers each `http.request` with what
/// `answer` returns (meta, body), until dropped.
struct Handler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Handler {
    fn start<F>(server: &Server, answer: F) -> Handler
    where
        F: Fn(&Path, &Value) -> (Value, Vec<u8>) + Send + 'static,
    {
        let mut requests = follow_live(server, "http.request");
        let sock = server.sock();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match requests.next_line(ms(100)) {
                    Next::Line(line) => {
                        let request: Value = serde_json::from_str(&line).unwrap();
                        let (meta, body) = answer(&sock, &request);
                        respond(&sock, &request, meta, &body);
                    }
                    Next::Timeout => {}
                    Next::Closed => break,
                }
            }
        });
        Handler {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Handler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

// ---------------------------------------------------------------------------
// An HTTP/1.1 client on plain TCP

/// One whole response.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        Client {
            stream: TcpStream::connect(addr).expect("connect to the gateway"),
            buf: Vec::new(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// Sends a request (keep-alive: no `Connection: close`).
    fn send_request(&mut self, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) {
        let mut head = format!("{method} {target} HTTP/1.1\r\nHost: gateway.test\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if !body.is_empty() || method == "POST" {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body);
        self.send(&bytes);
    }

    /// Reads more bytes; `Ok(0)` when the server closed.
    fn fill(&mut self, deadline: Instant) -> io::Result<usize> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(left))?;
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(io::ErrorKind::TimedOut.into()),
            Err(e) => Err(e),
        }
    }

    /// Waits until `n` bytes are buffered, then takes them.
    fn take(&mut self, n: usize, deadline: Instant) -> io::Result<Vec<u8>> {
        while self.buf.len() < n {
            if self.fill(deadline)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// Takes one CRLF-terminated line (without its CRLF).
    fn line(&mut self, deadline: Instant) -> io::Result<String> {
        loop {
            if let Some(at) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..at + 2).collect();
                return Ok(String::from_utf8_lossy(&line[..at]).into_owned());
            }
            if self.fill(deadline)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    fn head(&mut self, timeout: Duration) -> (u16, Vec<(String, String)>) {
        let deadline = Instant::now() + timeout;
        let status_line = self.line(deadline).expect("a status line");
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let line = self.line(deadline).expect("a header line");
            if line.is_empty() {
                return (status, headers);
            }
            let (name, value) = line.split_once(':').expect("name: value");
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
    }

    /// The next chunk of a chunked body: `Ok(None)` after the last one.
    fn next_chunk(&mut self, timeout: Duration) -> io::Result<Option<Vec<u8>>> {
        let deadline = Instant::now() + timeout;
        let size_line = self.line(deadline)?;
        let size = usize::from_str_radix(size_line.trim(), 16)
            .unwrap_or_else(|_| panic!("bad chunk size {size_line:?}"));
        if size == 0 {
            assert_eq!(self.line(deadline)?, "", "no trailers expected");
            return Ok(None);
        }
        let data = self.take(size, deadline)?;
        assert_eq!(self.take(2, deadline)?, b"\r\n");
        Ok(Some(data))
    }

    /// Reads one whole response.
    fn response(&mut self, timeout: Duration) -> Reply {
        let (status, headers) = self.head(timeout);
        let mut reply = Reply {
            status,
            headers,
            body: Vec::new(),
        };
        let deadline = Instant::now() + timeout;
        if matches!(status, 204 | 304) {
            assert!(reply.header("content-length").is_none());
        } else if reply.header("transfer-encoding") == Some("chunked") {
            while let Some(chunk) = self.next_chunk(timeout).expect("a chunk") {
                reply.body.extend_from_slice(&chunk);
            }
        } else {
            let length: usize = reply
                .header("content-length")
                .expect("a Content-Length")
                .parse()
                .unwrap();
            reply.body = self.take(length, deadline).expect("the body");
        }
        reply
    }

    /// Asserts the server refuses the request within `timeout`: a `4xx`
    /// head, or the connection closed without one.
    fn refused_within(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.buf.windows(4).any(|w| w == b"\r\n\r\n") {
            match self.fill(deadline) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    panic!("neither refused nor closed")
                }
                Err(_) => break,
            }
        }
        let head = String::from_utf8_lossy(&self.buf);
        assert!(head.is_empty() || head.starts_with("HTTP/1.1 4"), "{head}");
    }
}

/// One request on a fresh connection, its whole response.
fn call(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut client = Client::connect(addr);
    client.send_request(method, target, headers, body);
    client.response(STEP)
}

// ---------------------------------------------------------------------------
// Requests and answers

#[test]
fn a_handler_answers_with_what_the_request_carried() {
    let (server, addr) = start(&[]);
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen_by_handler = seen.clone();
    let _handler = Handler::start(&server, move |sock, request| {
        seen_by_handler.lock().unwrap().push(request.clone());
        let meta = &request["meta"];
        let body = request_body(sock, request);
        let text = format!(
            "{} {} got {}",
            meta["method"].as_str().unwrap(),
            meta["path"].as_str().unwrap(),
            String::from_utf8_lossy(&body)
        );
        (json!({}), text.into_bytes())
    });

    let mut client = Client::connect(addr);
    let local = client.stream.local_addr().unwrap();
    client.send_request(
        "POST",
        "/greet/ann?lang=en&tag=a&tag=b%20c&flag",
        &[
            ("X-Repeat", "one"),
            ("X-Repeat", "two"),
            ("Content-Type", "text/plain"),
        ],
        b"hello",
    );
    let reply = client.response(STEP);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "POST /greet/ann got hello");
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; charset=utf-8")
    );

    // The same connection serves a second request (keep-alive).
    client.send_request("GET", "/again", &[], b"");
    let again = client.response(STEP);
    assert_eq!(
        (again.status, again.text().as_str()),
        (200, "GET /again got ")
    );

    let seen = seen.lock().unwrap();
    let first = &seen[0];
    assert_eq!(topic(first), "http.request");
    assert_eq!(first["ttl"], "ephemeral");
    let meta = &first["meta"];
    assert_eq!(meta["method"], "POST");
    assert_eq!(meta["uri"], "/greet/ann?lang=en&tag=a&tag=b%20c&flag");
    assert_eq!(meta["path"], "/greet/ann");
    assert_eq!(
        meta["query"],
        json!({"lang": "en", "tag": ["a", "b c"], "flag": ""})
    );
    assert_eq!(meta["headers"]["x-repeat"], "one, two");
    assert_eq!(meta["headers"]["host"], "gateway.test");
    assert_eq!(meta["headers"]["content-length"], "5");
    assert!(
        meta["headers"].get("X-Repeat").is_none(),
        "names are lower case"
    );
    assert_eq!(meta["remote_ip"], "127.0.0.1");
    assert_eq!(meta["remote_port"], json!(local.port()));
    assert_eq!(seen[1]["hash"], Value::Null, "no body, no payload");
}

#[test]
fn status_and_headers_pass_through() {
    let (server, addr) = start(&[]);
    let _handler = Handler::start(&server, |_, _| {
        let meta = json!({
            "status": 201,
            "headers": {
                "set-cookie": ["session=abc; Path=/; HttpOnly", "theme=dark"],
                "Content-Type": "application/json",
                "x-answered-by": "test",
                "content-length": "999"
            }
        });
        (meta, br#"{"ok":true}"#.to_vec())
    });
    let reply = call(addr, "GET", "/thing", &[], b"");
    assert_eq!(reply.status, 201);
    assert_eq!(
        reply.all("set-cookie"),
        ["session=abc; Path=/; HttpOnly", "theme=dark"]
    );
    assert_eq!(reply.all("content-type"), ["application/json"]);
    assert_eq!(reply.header("x-answered-by"), Some("test"));
    assert_eq!(
        reply.all("content-length"),
        ["11"],
        "the framing is the gateway's"
    );
    assert_eq!(reply.body, br#"{"ok":true}"#);
}

#[test]
fn a_binary_body_round_trips() {
    let (server, addr) = start(&[]);
    // The handler echoes the request body; no content-type given.
    let _handler = Handler::start(&server, |sock, request| {
        (json!({}), request_body(sock, request))
    });
    let body: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 256) as u8).collect();
    let reply = call(addr, "PUT", "/blob", &[], &body);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, body);
    assert_eq!(
        reply.header("content-type"),
        Some("application/octet-stream")
    );
}

#[test]
fn an_invalid_answer_is_a_500_with_the_reason() {
    let (server, addr) = start(&[]);
    let _handler = Handler::start(&server, |_, _| {
        (
            json!({"headers": {"x-bad": "a\r\nInjected: yes"}}),
            b"no".to_vec(),
        )
    });
    let reply = call(addr, "GET", "/", &[], b"");
    assert_eq!(reply.status, 500);
    assert!(reply.header("injected").is_none());
    assert!(reply.text().contains("line break"), "{}", reply.text());
}

#[test]
fn no_handler_is_a_504_after_the_timeout() {
    let (_server, addr) = start(&["--http-timeout", "300"]);
    let started = Instant::now();
    let reply = call(addr, "GET", "/nobody-home", &[], b"");
    let took = started.elapsed();
    assert_eq!(reply.status, 504);
    assert!(reply.text().contains("300 ms"), "{}", reply.text());
    assert!(took >= ms(300), "answered after {took:?}");
    assert!(took < ms(3000), "answered after {took:?}");
}

// ---------------------------------------------------------------------------
// Streaming and disconnects

#[test]
fn streamed_chunks_arrive_as_they_are_appended() {
    let (server, addr) = start(&[]);
    let mut requests = follow_live(&server, "http.request");
    let mut client = Client::connect(addr);
    client.send_request("GET", "/events", &[], b"");
    let request = requests.next_frame(STEP);
    let sock = server.sock();

    respond(
        &sock,
        &request,
        json!({"more": true, "headers": {"x-stream": "yes"}}),
        b"one\n",
    );
    let (status, headers) = client.head(STEP);
    assert_eq!(status, 200);
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    assert_eq!(header("transfer-encoding").as_deref(), Some("chunked"));
    assert_eq!(header("x-stream").as_deref(), Some("yes"));
    assert_eq!(
        header("content-type").as_deref(),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(client.next_chunk(STEP).unwrap().unwrap(), b"one\n");

    // Nothing more arrives until the handler appends it.
    let quiet = client.next_chunk(ms(300));
    assert_eq!(quiet.unwrap_err().kind(), io::ErrorKind::TimedOut);
    respond(&sock, &request, json!({"more": true}), b"two\n");
    assert_eq!(client.next_chunk(STEP).unwrap().unwrap(), b"two\n");

    // The answer without `more` ends the body.
    respond(&sock, &request, json!({}), b"three\n");
    assert_eq!(client.next_chunk(STEP).unwrap().unwrap(), b"three\n");
    assert_eq!(client.next_chunk(STEP).unwrap(), None);
}

#[test]
fn a_client_that_leaves_yields_http_disconnect() {
    let (server, addr) = start(&[]);
    let mut requests = follow_live(&server, "http.request");
    let mut disconnects = follow_live(&server, "http.disconnect");
    let sock = server.sock();

    // Gone while waiting for its first answer (the timeout is 30 s).
    let mut waiting = Client::connect(addr);
    waiting.send_request("GET", "/waiting", &[], b"");
    let request = requests.next_frame(STEP);
    drop(waiting);
    let disconnect = disconnects.next_frame(STEP);
    assert_eq!(topic(&disconnect), "http.disconnect");
    assert_eq!(disconnect["meta"], json!({"request_id": id(&request)}));
    assert_eq!(disconnect["ttl"], "ephemeral");

    // Gone in the middle of a stream.
    let mut streaming = Client::connect(addr);
    streaming.send_request("GET", "/streaming", &[], b"");
    let request = requests.next_frame(STEP);
    respond(&sock, &request, json!({"more": true}), b"first");
    streaming.head(STEP);
    assert_eq!(streaming.next_chunk(STEP).unwrap().unwrap(), b"first");
    streaming.stream.shutdown(Shutdown::Both).unwrap();
    drop(streaming);
    for n in 0..3 {
        respond(
            &sock,
            &request,
            json!({"more": true}),
            format!("more {n}").as_bytes(),
        );
    }
    let disconnect = disconnects.next_frame(STEP);
    assert_eq!(disconnect["meta"], json!({"request_id": id(&request)}));
    disconnects.expect_silence(ms(300));
}

// ---------------------------------------------------------------------------
// Load, bad input, disk

#[test]
fn concurrent_requests_each_get_their_own_answer() {
    const CLIENTS: usize = 200;
    let (server, addr) = start(&[]);
    let _handler = Handler::start(&server, |sock, request| {
        let meta = &request["meta"];
        let token = meta["headers"]["x-token"].as_str().unwrap().to_string();
        let body = request_body(sock, request);
        let text = format!(
            "{} {token} {}",
            meta["path"].as_str().unwrap(),
            String::from_utf8_lossy(&body)
        );
        (json!({"headers": {"x-token": token}}), text.into_bytes())
    });
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|n| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let token = format!("t{n}-{}", now_ms());
                let mut client = Client::connect(addr);
                barrier.wait();
                client.send_request(
                    "POST",
                    &format!("/n/{n}"),
                    &[("X-Token", &token)],
                    format!("body {n}").as_bytes(),
                );
                let reply = client.response(Duration::from_secs(20));
                assert_eq!(reply.status, 200);
                assert_eq!(reply.header("x-token"), Some(token.as_str()));
                assert_eq!(reply.text(), format!("/n/{n} {token} body {n}"));
            })
        })
        .collect();
    for client in clients {
        client.join().expect("a client saw the wrong answer");
    }
}

#[test]
fn malformed_requests_never_touch_the_stream() {
    let (server, addr) = start(&["--max-payload", "2000"]);
    let mut http = follow_live(&server, "http.*");

    let raw: [&[u8]; 5] = [
        b"this is not http\r\n\r\n",
        b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
        b"GET / HTTP/7.0\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nX-Bin: \xff\xfe\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 9999999999999\r\n\r\nabc",
    ];
    for bytes in raw {
        let mut client = Client::connect(addr);
        client.send(bytes);
        client.refused_within(STEP);
    }
    // Too large by its Content-Length: 413 before reading.
    let mut client = Client::connect(addr);
    client.send_request("POST", "/big", &[], &vec![b'x'; 2001]);
    assert_eq!(client.response(STEP).status, 413);
    // Too large as it streams in (chunked).
    let mut client = Client::connect(addr);
    let mut chunked =
        b"POST /big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        chunked.extend_from_slice(b"3e8\r\n");
        chunked.extend_from_slice(&[b'y'; 1000]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    client.send(&chunked);
    assert_eq!(client.response(STEP).status, 413);
    // A body shorter than its Content-Length: the client gives up.
    let mut client = Client::connect(addr);
    client.send(b"POST /short HTTP/1.1\r\nHost: x\r\nContent-Length: 1500\r\n\r\nonly this");
    client.stream.shutdown(Shutdown::Write).unwrap();
    client.refused_within(STEP);

    // The first frame the stream sees is the one good request.
    let mut good = Client::connect(addr);
    good.send_request("GET", "/good", &[], b"");
    let frame = http.next_frame(STEP);
    assert_eq!(topic(&frame), "http.request");
    assert_eq!(frame["meta"]["path"], "/good");
    drop(good);
}

#[test]
fn an_ephemeral_request_leaves_nothing_on_disk() {
    let (server, addr) = start(&[]);
    let marker = format!("marker{}", now_ms());
    let _handler = Handler::start(&server, |sock, request| {
        (json!({}), request_body(sock, request))
    });
    let cas_files = count_files(&server.dir().join("cacache"));
    let body = format!("{marker} ").repeat(20_000).into_bytes();
    let reply = call(
        addr,
        "POST",
        &format!("/{marker}"),
        &[("x-marker", &marker)],
        &body,
    );
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, body);

    assert_eq!(count_files(&server.dir().join("cacache")), cas_files);
    assert!(server.frames("/?topic=http.*").is_empty());
    let holders = files_containing(server.dir(), &marker);
    assert!(holders.is_empty(), "{marker} was written to {holders:?}");
}

#[test]
fn an_ephemeral_body_must_fit_the_memory_window() {
    let (server, addr) = start(&["--ephemeral-bytes", "4096"]);
    let mut http = follow_live(&server, "http.*");
    let reply = call(addr, "POST", "/too-big", &[], &[b'z'; 5000]);
    assert_eq!(reply.status, 413);
    http.expect_silence(ms(200));
}

#[test]
fn a_kept_request_ttl_logs_requests() {
    let (server, addr) = start(&["--http-ttl", "forever"]);
    let _handler = Handler::start(&server, |_, _| (json!({"status": 204}), Vec::new()));
    let reply = call(addr, "POST", "/logged", &[], b"kept body");
    assert_eq!(reply.status, 204);
    let frames = server.frames("/?topic=http.request");
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0]["ttl"], "forever");
    assert_eq!(frames[0]["meta"]["path"], "/logged");
    assert_eq!(request_body(&server.sock(), &frames[0]), b"kept body");
}

#[test]
fn gateway_flags_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let dir = dir.to_str().unwrap();
    for args in [
        vec!["--http-timeout", "100"],
        vec!["--http", ":0", "--http-ttl", "sometimes"],
        vec!["--http", ":0", "--http-timeout", "soon"],
    ] {
        let output = Command::new(XS)
            .arg("serve")
            .arg(dir)
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.lines().count(), 2, "{args:?}: {stderr}");
    }
}

/// Files below `dir` whose bytes contain `needle` (searched with std's
/// optimized string search: fjall's journal is a 64 MiB sparse file).
fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if let Ok(bytes) = std::fs::read(&path) {
            if String::from_utf8_lossy(&bytes).contains(needle) {
                found.push(path);
            }
        }
    }
    found
}
