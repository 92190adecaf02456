//! Shared helpers for the black-box API tests: a server under test and a
//! tiny HTTP/1.1 client over the store's Unix socket.
//!
//! Each test binary compiles this module on its own and uses a part of it.
#![allow(dead_code)]

pub mod backend;
pub mod cli;
pub mod redis;
pub mod waits;

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// The binary under test.
pub const XS: &str = env!("CARGO_BIN_EXE_xs");

/// How long a plain request may take before the test fails.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a server may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// The server under test

/// An `xs serve <dir>` process on a temp store; SIGKILLed on drop.
pub struct Server {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    args: Vec<String>,
    stderr_path: PathBuf,
    child: Option<Child>,
}

impl Server {
    /// Starts a server on a fresh store (`<tmp>/store`, created by the
    /// server itself) with extra `args`.
    pub fn start(args: &[&str]) -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("store");
        Server::start_in(tmp, dir, args)
    }

    /// Starts a server on the local backend, whatever the suite runs on.
    pub fn start_local(args: &[&str]) -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("store");
        let mut server = Server::new(tmp, dir, args);
        server.spawn();
        server
    }

    /// Starts a server on `dir`, which lives somewhere inside `tmp` (kept
    /// alive as long as the server).
    /// On the Redis suite the server gets a namespace of its own, kept
    /// across restarts.
    pub fn start_in(tmp: tempfile::TempDir, dir: PathBuf, args: &[&str]) -> Server {
        let mut server = Server::new(tmp, dir, args);
        server.args.extend(backend::serve_args());
        server.spawn();
        server
    }

    fn new(tmp: tempfile::TempDir, dir: PathBuf, args: &[&str]) -> Server {
        let stderr_path = tmp.path().join("server.stderr");
        Server {
            _tmp: tmp,
            dir,
            args: args.iter().map(|a| a.to_string()).collect(),
            stderr_path,
            child: None,
        }
    }

    /// The `xs serve` arguments (with the backend's).
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// The store folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The store's socket.
    pub fn sock(&self) -> PathBuf {
        self.dir.join("sock")
    }

    /// Everything the server (all its runs) wrote to stderr.
    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// The process id of the running server.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server not running").id()
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "server already running");
        let stderr = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stderr_path)
            .expect("stderr file");
        let spawned_ms = now_ms();
        let child = Command::new(XS)
            .arg("serve")
            .arg(&self.dir)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn xs serve");
        self.child = Some(child);
        self.wait_ready(spawned_ms);
    }

    /// Polls every 5 ms until the socket accepts and `GET /` answers with
    /// this run's `xs.start` (the socket is bound just before `xs.start`
    /// is appended, so a bare answer could come from an empty store).
    fn wait_ready(&mut self, spawned_ms: u64) {
        let deadline = Instant::now() + START_TIMEOUT;
        let sock = self.sock();
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                panic!(
                    "xs serve exited early with {status}; stderr:\n{}",
                    self.stderr()
                );
            }
            if UnixStream::connect(&sock).is_ok() {
                if let Ok(r) = try_request(
                    &sock,
                    "GET",
                    "/?topic=xs.start&last=1",
                    &[],
                    b"",
                    Duration::from_secs(2),
                ) {
                    if r.status == 200 {
                        let started = r
                            .frames()
                            .last()
                            .map(|f| id_ms(f["id"].as_str().unwrap()) >= spawned_ms)
                            .unwrap_or(false);
                        if started {
                            return;
                        }
                    }
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "xs serve did not come up within {START_TIMEOUT:?}; stderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn signal_and_wait(&mut self, signal: libc::c_int) -> ExitStatus {
        let mut child = self.child.take().expect("server not running");
        // SAFETY: signalling our own child by its pid.
        unsafe {
            libc::kill(child.id() as libc::pid_t, signal);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("xs serve did not exit after signal {signal}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGTERM, then waits for the exit.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal_and_wait(libc::SIGTERM)
    }

    /// SIGKILL, then waits for the exit.
    pub fn kill(&mut self) -> ExitStatus {
        self.signal_and_wait(libc::SIGKILL)
    }

    /// Stops the server if it runs (SIGTERM), then starts it again on the
    /// same store with the same arguments.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        self.spawn();
    }

    /// Whether the process is still alive.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => child.try_wait().expect("try_wait").is_none(),
            None => false,
        }
    }

    // Shortcuts on this server's socket.

    pub fn get(&self, path: &str) -> Response {
        request(&self.sock(), "GET", path, &[], b"")
    }

    pub fn post(&self, path: &str, body: &[u8]) -> Response {
        request(&self.sock(), "POST", path, &[], body)
    }

    pub fn delete(&self, path: &str) -> Response {
        request(&self.sock(), "DELETE", path, &[], b"")
    }

    /// `GET path` as NDJSON frames (asserts 200).
    pub fn frames(&self, path: &str) -> Vec<Value> {
        let r = self.get(path);
        assert_eq!(r.status, 200, "GET {path}: {}", r.text());
        r.frames()
    }

    /// Appends (asserts 200) and returns the frame.
    pub fn append(&self, topic: &str, body: &[u8]) -> Value {
        self.append_q(topic, "", body)
    }

    /// Appends with a query string (without `?`), asserts 200.
    pub fn append_q(&self, topic: &str, query: &str, body: &[u8]) -> Value {
        let path = if query.is_empty() {
            format!("/append/{topic}")
        } else {
            format!("/append/{topic}?{query}")
        };
        let r = self.post(&path, body);
        assert_eq!(r.status, 200, "POST {path}: {}", r.text());
        r.json()
    }

    /// Opens a streaming read of `path`.
    pub fn follow(&self, path: &str) -> Stream {
        Stream::open(&self.sock(), path, &[])
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ---------------------------------------------------------------------------
// HTTP client

/// A complete response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn content_type(&self) -> Option<&str> {
        self.header("content-type")
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text()))
    }

    /// The body as NDJSON, empty lines skipped.
    pub fn frames(&self) -> Vec<Value> {
        self.text()
            .split('\n')
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
            .collect()
    }
}

/// One request on a fresh connection; panics on a transport error.
pub fn request(
    sock: &Path,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    try_request(sock, method, path, headers, body, REQUEST_TIMEOUT)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// One request on a fresh connection (`Connection: close`).
pub fn try_request(
    sock: &Path,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> io::Result<Response> {
    let mut conn = Conn::open(sock)?;
    conn.send_request(method, path, headers, body)?;
    let deadline = Instant::now() + timeout;
    let (status, headers) = conn.read_head(deadline)?;
    let mut decoder = Decoder::for_response(method, status, &headers)?;
    let mut out = Vec::new();
    loop {
        if decoder.decode(&mut conn.buf, &mut out)? {
            break;
        }
        if conn.fill(deadline)? == 0 {
            if decoder.ends_at_eof() {
                break;
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed inside the body",
            ));
        }
    }
    Ok(Response {
        status,
        headers,
        body: out,
    })
}

/// The raw bytes of a request (with `Host` and `Connection: close`).
pub fn request_bytes(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    let mut has_length = false;
    for (k, v) in headers {
        if k.eq_ignore_ascii_case("content-length") {
            has_length = true;
        }
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !has_length && (!body.is_empty() || method == "POST" || method == "PUT") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// What came back on a raw connection.
#[derive(Debug)]
pub struct Raw {
    pub bytes: Vec<u8>,
    /// The server closed (or reset) the connection.
    pub closed: bool,
}

impl Raw {
    /// The status code, when the bytes start with a status line.
    pub fn status(&self) -> Option<u16> {
        let text = String::from_utf8_lossy(&self.bytes);
        let line = text.lines().next()?;
        let rest = line.strip_prefix("HTTP/1.")?;
        rest.get(2..5)?.parse().ok()
    }
}

/// Sends raw bytes on a fresh connection (write errors ignored: the server
/// may close early), optionally closes the write side, and collects what
/// comes back until the server closes or `timeout` passes.
pub fn send_raw(sock: &Path, bytes: &[u8], close_write: bool, timeout: Duration) -> Raw {
    let mut conn = Conn::open(sock).expect("connect");
    let _ = conn.stream.write_all(bytes);
    if close_write {
        let _ = conn.stream.shutdown(std::net::Shutdown::Write);
    }
    let deadline = Instant::now() + timeout;
    loop {
        match conn.fill(deadline) {
            Ok(0) => {
                break Raw {
                    bytes: conn.buf,
                    closed: true,
                }
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                break Raw {
                    bytes: conn.buf,
                    closed: false,
                }
            }
            Err(_) => {
                break Raw {
                    bytes: conn.buf,
                    closed: true,
                }
            }
        }
    }
}

/// A client connection with its receive buffer.
pub struct Conn {
    pub stream: UnixStream,
    buf: Vec<u8>,
}

impl Conn {
    pub fn open(sock: &Path) -> io::Result<Conn> {
        Ok(Conn {
            stream: UnixStream::connect(sock)?,
            buf: Vec::new(),
        })
    }

    /// Writes a whole request; a write the server refused midway (it
    /// answered early and closed) is not an error here: the answer is
    /// still read.
    pub fn send_request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<()> {
        let bytes = request_bytes(method, path, headers, body);
        match self.stream.write_all(&bytes) {
            Ok(()) => Ok(()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Reads more bytes, waiting until `deadline`; `Ok(0)` at EOF.
    fn fill(&mut self, deadline: Instant) -> io::Result<usize> {
        let now = Instant::now();
        if now >= deadline {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "read timed out"));
        }
        self.stream.set_read_timeout(Some(deadline - now))?;
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(n)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(io::Error::new(io::ErrorKind::TimedOut, "read timed out"))
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => self.fill(deadline),
            Err(e) => Err(e),
        }
    }

    /// Reads the status line and headers.
    pub fn read_head(&mut self, deadline: Instant) -> io::Result<(u16, Vec<(String, String)>)> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 4);
                return parse_head(&head);
            }
            if self.fill(deadline)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "connection closed before a response head ({} bytes received)",
                        self.buf.len()
                    ),
                ));
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn parse_head(head: &str) -> io::Result<(u16, Vec<(String, String)>)> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("{what}: {head:?}"));
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or_else(|| bad("empty head"))?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(bad("bad status line"));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| bad("bad status code"))?;
    let mut headers = Vec::new();
    for line in lines {
        let (k, v) = line.split_once(':').ok_or_else(|| bad("bad header line"))?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    Ok((status, headers))
}

/// How a response body is delimited, and how far its decoding got.
enum Decoder {
    Length(u64),
    UntilEof,
    Chunked(ChunkState),
}

enum ChunkState {
    Size,
    Data(usize),
    DataEnd,
    Trailer,
    Done,
}

impl Decoder {
    fn for_response(
        method: &str,
        status: u16,
        headers: &[(String, String)],
    ) -> io::Result<Decoder> {
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        if method == "HEAD" || status == 204 || status == 304 || (100..200).contains(&status) {
            return Ok(Decoder::Length(0));
        }
        if header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
            return Ok(Decoder::Chunked(ChunkState::Size));
        }
        match header("content-length") {
            Some(n) => n
                .parse::<u64>()
                .map(Decoder::Length)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad Content-Length")),
            None => Ok(Decoder::UntilEof),
        }
    }

    fn ends_at_eof(&self) -> bool {
        matches!(self, Decoder::UntilEof)
    }

    /// Moves decoded body bytes from `buf` to `out`; true when the body is
    /// complete.
    fn decode(&mut self, buf: &mut Vec<u8>, out: &mut Vec<u8>) -> io::Result<bool> {
        match self {
            Decoder::Length(left) => {
                let take = (*left).min(buf.len() as u64) as usize;
                out.extend(buf.drain(..take));
                *left -= take as u64;
                Ok(*left == 0)
            }
            Decoder::UntilEof => {
                out.append(buf);
                Ok(false)
            }
            Decoder::Chunked(state) => loop {
                match state {
                    ChunkState::Size => {
                        let Some(end) = find(buf, b"\r\n") else {
                            return Ok(false);
                        };
                        let line = String::from_utf8_lossy(&buf[..end]).into_owned();
                        buf.drain(..end + 2);
                        let hex = line.split(';').next().unwrap_or("").trim();
                        let size = usize::from_str_radix(hex, 16).map_err(|_| {
                            io::Error::new(
                                io::ErrorKind::InvalidData,
                                format!("bad chunk size line {line:?}"),
                            )
                        })?;
                        *state = if size == 0 {
                            ChunkState::Trailer
                        } else {
                            ChunkState::Data(size)
                        };
                    }
                    ChunkState::Data(left) => {
                        if buf.is_empty() {
                            return Ok(false);
                        }
                        let take = (*left).min(buf.len());
                        out.extend(buf.drain(..take));
                        *left -= take;
                        if *left == 0 {
                            *state = ChunkState::DataEnd;
                        }
                    }
                    ChunkState::DataEnd => {
                        if buf.len() < 2 {
                            return Ok(false);
                        }
                        if &buf[..2] != b"\r\n" {
                            return Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                "chunk not followed by CRLF",
                            ));
                        }
                        buf.drain(..2);
                        *state = ChunkState::Size;
                    }
                    ChunkState::Trailer => {
                        let Some(end) = find(buf, b"\r\n") else {
                            return Ok(false);
                        };
                        buf.drain(..end + 2);
                        if end == 0 {
                            *state = ChunkState::Done;
                        }
                    }
                    ChunkState::Done => return Ok(true),
                }
            },
        }
    }
}

/// What a streaming read produced next.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    Line(String),
    /// The response ended (final chunk or connection closed).
    Closed,
    /// Nothing arrived in time.
    Timeout,
}

/// A streaming response (follow), read line by line as it arrives.
pub struct Stream {
    conn: Conn,
    decoder: Decoder,
    body: Vec<u8>,
    ended: bool,
    /// Skip lone `\n` keepalive lines (on by default).
    pub skip_empty: bool,
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

impl Stream {
    /// Sends a GET and reads the response head.
    pub fn open(sock: &Path, path: &str, headers: &[(&str, &str)]) -> Stream {
        let mut conn = Conn::open(sock).expect("connect");
        conn.send_request("GET", path, headers, b"")
            .expect("send request");
        let (status, headers) = conn
            .read_head(Instant::now() + REQUEST_TIMEOUT)
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let decoder = Decoder::for_response("GET", status, &headers).expect("body framing");
        Stream {
            conn,
            decoder,
            body: Vec::new(),
            ended: false,
            skip_empty: true,
            status,
            headers,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The next line (without its `\n`), waiting at most `timeout`.
    pub fn next_line(&mut self, timeout: Duration) -> Next {
        let deadline = Instant::now() + timeout;
        loop {
            while let Some(at) = self.body.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.body.drain(..=at).collect();
                let line = String::from_utf8_lossy(&line[..at]).into_owned();
                if self.skip_empty && line.is_empty() {
                    continue;
                }
                return Next::Line(line);
            }
            if self.ended {
                return Next::Closed;
            }
            let before = self.body.len();
            match self.decoder.decode(&mut self.conn.buf, &mut self.body) {
                Ok(true) => {
                    self.ended = true;
                    continue;
                }
                Ok(false) if self.body.len() > before => continue,
                Ok(false) => {}
                Err(e) => panic!("bad stream framing: {e}"),
            }
            match self.conn.fill(deadline) {
                Ok(0) => {
                    self.ended = true;
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut => return Next::Timeout,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    self.ended = true;
                }
                Err(e) => panic!("stream read failed: {e}"),
            }
        }
    }

    /// The next NDJSON frame; panics on close or timeout.
    pub fn next_frame(&mut self, timeout: Duration) -> Value {
        match self.next_line(timeout) {
            Next::Line(line) => serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}")),
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    /// The next frame's topic (convenience).
    pub fn next_topic(&mut self, timeout: Duration) -> String {
        self.next_frame(timeout)["topic"]
            .as_str()
            .expect("topic")
            .to_string()
    }

    /// Asserts nothing arrives within `wait` and the stream stays open.
    pub fn expect_silence(&mut self, wait: Duration) {
        match self.next_line(wait) {
            Next::Timeout => {}
            other => panic!("expected silence, got {other:?}"),
        }
    }

    /// Asserts the stream ends within `timeout` with no further line.
    pub fn expect_closed(&mut self, timeout: Duration) {
        match self.next_line(timeout) {
            Next::Closed => {}
            other => panic!("expected the stream to close, got {other:?}"),
        }
    }

    /// The underlying socket (to shut it down, say).
    pub fn socket(&self) -> &UnixStream {
        &self.conn.stream
    }
}

// ---------------------------------------------------------------------------
// Small utilities

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The millisecond timestamp inside a SCRU128 id.
pub fn id_ms(id: &str) -> u64 {
    let id: scru128::Scru128Id = id.parse().unwrap_or_else(|e| panic!("bad id {id:?}: {e}"));
    id.timestamp()
}

/// A frame's topic.
pub fn topic(frame: &Value) -> &str {
    frame["topic"].as_str().expect("topic")
}

/// A frame's id.
pub fn id(frame: &Value) -> &str {
    frame["id"].as_str().expect("id")
}

/// The topics of some frames.
pub fn topics(frames: &[Value]) -> Vec<String> {
    frames.iter().map(|f| topic(f).to_string()).collect()
}

/// The keys of a JSON object, in order.
pub fn keys(frame: &Value) -> Vec<String> {
    frame.as_object().expect("object").keys().cloned().collect()
}

/// Base64 (standard, padded) of a JSON text, as `xs-meta` wants it.
pub fn b64(text: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Polls `check` every 5 ms until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Regular files below `dir` (0 when it does not exist).
pub fn count_files(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let path = e.path();
            if path.is_dir() {
                count_files(&path)
            } else {
                1
            }
        })
        .sum()
}

/// Copies a folder tree, making everything writable by its owner.
pub fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("create dir");
    fs::set_permissions(to, fs::Permissions::from_mode(0o700)).expect("chmod dir");
    for entry in fs::read_dir(from).expect("read dir").flatten() {
        let target = to.join(entry.file_name());
        let kind = entry.file_type().expect("file type");
        if kind.is_dir() {
            copy_tree(&entry.path(), &target);
        } else if kind.is_file() {
            fs::copy(entry.path(), &target).expect("copy file");
            fs::set_permissions(&target, fs::Permissions::from_mode(0o600)).expect("chmod file");
        }
    }
}

/// The RFC 3339 form cross.stream gives `timestamp`: UTC, `+00:00`, the
/// millisecond fraction only when it is not zero.
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let frac = ms % 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    let time = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    );
    if frac == 0 {
        format!("{time}+00:00")
    } else {
        format!("{time}.{frac:03}+00:00")
    }
}

/// `Duration::from_millis`, shorter.
pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// ---------------------------------------------------------------------------
// The real Nushell

/// The `nu` to run: the project's own (.tools/bin/nu, installed on first
/// use by scripts/install-nushell.sh, so `cargo test` alone sets a fresh
/// machine up), else one on PATH.
pub fn nu_binary() -> PathBuf {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let local = root.join(".tools/bin/nu");
    INSTALL.call_once(|| {
        if !local.is_file() {
            let status = std::process::Command::new("bash")
                .arg(root.join("scripts/install-nushell.sh"))
                .status();
            eprintln!("installing nushell for the xs.nu tests: {status:?}");
        }
    });
    if local.is_file() {
        return local;
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join("nu");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "no Nushell: neither .tools/bin/nu nor a `nu` on PATH. \
         Run scripts/install-nushell.sh (it installs nushell 0.115.1 from npm into .tools/)"
    );
}
