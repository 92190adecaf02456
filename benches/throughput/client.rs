//! The bench's side of the wire. `Server` runs `xs serve` on a temporary
//! store (output to /dev/null) and stops it on drop (SIGTERM, then SIGKILL
//! after 5 s), keeping the store until the run ends (`KEPT`, see main.rs).
//! `Conn` is a keep-alive HTTP/1.1 client over `<dir>/sock` (or TCP, for
//! the gateway): a request with `Content-Length`, the head parsed with
//! `httparse`, the body read by `Content-Length` or de-chunked, one buffer
//! reused across requests so a timed request costs a write and a read.
//!
//! Not shared with tests/common's client: that one opens a connection per
//! request (`Connection: close`), reads against a deadline, accepts a write
//! the server cut short and panics on failure, which is right for tests
//! and wrong for timing keep-alive requests.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::*;

/// A running `xs serve` on a temporary store; stopped on drop.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) sock: PathBuf,
    pub(crate) store: PathBuf,
    /// Just before the process was spawned.
    pub(crate) spawned_at: Instant,
    /// Moved to `KEPT` once `Drop::drop` has stopped the child.
    pub(crate) tmp: Option<tempfile::TempDir>,
}

/// Stores of finished dimensions, deleted when the run ends (see the
/// header: deleting them between dimensions would slow the next one).
pub(crate) static KEPT: std::sync::Mutex<Vec<tempfile::TempDir>> =
    std::sync::Mutex::new(Vec::new());

/// Deletes the kept stores.
pub(crate) fn delete_kept() {
    let kept = std::mem::take(&mut *KEPT.lock().unwrap_or_else(|e| e.into_inner()));
    drop(kept);
}

impl Server {
    /// Starts a server and waits until it answers `GET /version`.
    pub(crate) fn start(bin: &Path, fsync: &str) -> Res<Server> {
        let server = Server::spawn(bin, fsync)?;
        server.wait_ready(START_TIMEOUT)?;
        Ok(server)
    }

    /// Spawns a server without waiting for it.
    pub(crate) fn spawn(bin: &Path, fsync: &str) -> Res<Server> {
        Server::spawn_with(bin, &["--fsync", fsync])
    }

    /// Starts a server with these `xs serve` options.
    pub(crate) fn start_with(bin: &Path, args: &[&str]) -> Res<Server> {
        let server = Server::spawn_with(bin, args)?;
        server.wait_ready(START_TIMEOUT)?;
        Ok(server)
    }

    /// Spawns `xs serve <fresh store> <args>` without waiting for it.
    pub(crate) fn spawn_with(bin: &Path, args: &[&str]) -> Res<Server> {
        let tmp = tempfile::Builder::new()
            .prefix("xs-bench")
            .tempdir()
            .map_err(|e| format!("tempdir: {e}"))?;
        let store = tmp.path().join("store");
        let mut server = Server::spawn_in(bin, &store, args)?;
        server.tmp = Some(tmp);
        Ok(server)
    }

    /// Spawns `xs serve <store> <args>` without waiting for it; the store
    /// folder is the caller's to delete.
    pub(crate) fn spawn_in(bin: &Path, store: &Path, args: &[&str]) -> Res<Server> {
        let spawned_at = Instant::now();
        let child = Command::new(bin)
            .arg("serve")
            .arg(store)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawning {}: {e}", bin.display()))?;
        Ok(Server {
            child,
            sock: store.join("sock"),
            store: store.to_path_buf(),
            spawned_at,
            tmp: None,
        })
    }

    /// Polls the socket every 100 µs until `GET /version` answers 200.
    pub(crate) fn wait_ready(&self, timeout: Duration) -> Res<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(mut conn) = Conn::connect(&self.sock) {
                if let Ok((200, _)) = conn.request("GET", "/version", &[]) {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(format!("server did not answer within {timeout:?}"));
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }

    /// Polls the socket every 100 µs until a `GET /` answers 200 with
    /// `xs.start` in its body.
    pub(crate) fn wait_started(&self, timeout: Duration) -> Res<()> {
        self.wait_starts(1, timeout)
    }

    /// Polls the socket every 100 µs until a `GET /` answers 200 with
    /// `starts` `xs.start` frames in its body.
    pub(crate) fn wait_starts(&self, starts: usize, timeout: Duration) -> Res<()> {
        const START: &[u8] = b"\"topic\":\"xs.start\"";
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(mut conn) = Conn::connect(&self.sock) {
                if let Ok((200, body)) = conn.request("GET", "/", &[]) {
                    if body.windows(START.len()).filter(|w| *w == START).count() >= starts {
                        return Ok(());
                    }
                }
            }
            if Instant::now() > deadline {
                return Err(format!("no GET / with xs.start within {timeout:?}"));
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn connect(&self) -> Res<Conn> {
        Conn::connect(&self.sock).map_err(|e| format!("connect {}: {e}", self.sock.display()))
    }

    /// Opens `n` connections one at a time, each answering `GET /version`
    /// before the next is opened, so every client is known to be served
    /// before timing starts: a connection the server left without a thread
    /// (queued behind busy keep-alive ones) fails here, within
    /// `HANDSHAKE_TIMEOUT`, instead of skewing the figures.
    pub(crate) fn connect_served(&self, n: usize) -> Res<Vec<Conn>> {
        let mut conns = Vec::with_capacity(n);
        for at in 0..n {
            let mut conn = self.connect()?;
            let _ = conn.stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT));
            match conn.request("GET", "/version", &[]) {
                Ok((200, _)) => {}
                Ok((status, _)) => return Err(format!("GET /version answered {status}")),
                Err(e) => {
                    return Err(format!(
                        "connection {} of {n} was not served within {HANDSHAKE_TIMEOUT:?} \
                         ({e}): the server gave it no thread",
                        at + 1
                    ))
                }
            }
            let _ = conn.stream.set_read_timeout(Some(IO_TIMEOUT));
            conns.push(conn);
        }
        Ok(conns)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        if let Some(tmp) = self.tmp.take() {
            KEPT.lock().unwrap_or_else(|e| e.into_inner()).push(tmp);
        }
    }
}

impl Server {
    /// SIGTERM, then SIGKILL after 5 s.
    pub(crate) fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // SAFETY: signalling our own child by pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        eprintln!(
            "xs serve (pid {}) ignored SIGTERM for 5 s; killing it",
            self.child.id()
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------- client

/// A keep-alive HTTP/1.1 connection: over the Unix socket, or over TCP to
/// the gateway (`Conn<TcpStream>`).
pub(crate) struct Conn<S = UnixStream> {
    pub(crate) stream: S,
    pub(crate) buf: Vec<u8>,
    pub(crate) pos: usize,
    pub(crate) len: usize,
}

/// What a response head says about its body.
pub(crate) struct Head {
    pub(crate) status: u16,
    pub(crate) content_length: Option<usize>,
    pub(crate) chunked: bool,
}

impl Conn {
    pub(crate) fn connect(path: &Path) -> io::Result<Conn> {
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(Conn::over(stream))
    }
}

impl Conn<TcpStream> {
    /// A TCP connection (`TCP_NODELAY`: each request goes out at once).
    pub(crate) fn connect_tcp(addr: SocketAddr) -> io::Result<Conn<TcpStream>> {
        let stream = TcpStream::connect_timeout(&addr, HANDSHAKE_TIMEOUT)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(Conn::over(stream))
    }
}

impl<S: Read + Write> Conn<S> {
    pub(crate) fn over(stream: S) -> Conn<S> {
        Conn {
            stream,
            buf: vec![0; 256 * 1024],
            pos: 0,
            len: 0,
        }
    }

    /// Sends one request (with `Content-Length` when it has a body).
    pub(crate) fn send(&mut self, method: &str, path: &str, body: &[u8]) -> io::Result<()> {
        let mut out = Vec::with_capacity(128 + body.len());
        write!(out, "{method} {path} HTTP/1.1\r\nHost: localhost\r\n")?;
        if !body.is_empty() || method == "POST" {
            write!(out, "Content-Length: {}\r\n", body.len())?;
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
        self.stream.write_all(&out)
    }

    /// One request with extra headers and its whole (non-streamed)
    /// response: status, the headers asked for in `wanted` (their values,
    /// `None` when absent), body.
    pub(crate) fn request_with(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<(u16, Vec<u8>)> {
        let mut out = Vec::with_capacity(192 + body.len());
        write!(out, "{method} {path} HTTP/1.1\r\nHost: localhost\r\n")?;
        for (name, value) in headers {
            write!(out, "{name}: {value}\r\n")?;
        }
        write!(out, "Content-Length: {}\r\n\r\n", body.len())?;
        out.extend_from_slice(body);
        self.stream.write_all(&out)?;
        let head = self.read_head()?;
        let mut answer = Vec::new();
        match head.content_length {
            Some(n) => self.read_body(n, &mut answer)?,
            None => return Err(other("response without Content-Length")),
        }
        Ok((head.status, answer))
    }

    /// Sends one request with a `Content-Type`.
    pub(crate) fn send_typed(
        &mut self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> io::Result<()> {
        let mut out = Vec::with_capacity(160);
        write!(
            out,
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: {content_type}\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        )?;
        self.stream.write_all(&out)?;
        self.stream.write_all(body)
    }

    /// One request and its whole (non-streamed) response.
    pub(crate) fn request(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> io::Result<(u16, Vec<u8>)> {
        self.send(method, path, body)?;
        let head = self.read_head()?;
        let mut body = Vec::new();
        if head.chunked {
            self.read_chunked(|data| {
                body.extend_from_slice(data);
                true
            })?;
        } else if let Some(n) = head.content_length {
            self.read_body(n, &mut body)?;
        } else if head.status != 204 && head.status != 304 {
            // 204 and 304 have no body, with or without Content-Length.
            return Err(other("response without Content-Length"));
        }
        Ok((head.status, body))
    }

    /// Reads more bytes into the buffer; an error at end of stream.
    pub(crate) fn fill(&mut self) -> io::Result<()> {
        if self.pos == self.len {
            self.pos = 0;
            self.len = 0;
        } else if self.len == self.buf.len() {
            if self.pos > 0 {
                self.buf.copy_within(self.pos..self.len, 0);
                self.len -= self.pos;
                self.pos = 0;
            } else {
                let grown = self.buf.len() * 2;
                self.buf.resize(grown, 0);
            }
        }
        let n = self.stream.read(&mut self.buf[self.len..])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        self.len += n;
        Ok(())
    }

    pub(crate) fn read_head(&mut self) -> io::Result<Head> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut response = httparse::Response::new(&mut headers);
            let parsed = response
                .parse(&self.buf[self.pos..self.len])
                .map_err(|e| other(&format!("bad response head: {e}")))?;
            if let httparse::Status::Complete(n) = parsed {
                let mut head = Head {
                    status: response.code.unwrap_or(0),
                    content_length: None,
                    chunked: false,
                };
                for h in response.headers.iter() {
                    if h.name.eq_ignore_ascii_case("content-length") {
                        head.content_length = std::str::from_utf8(h.value)
                            .ok()
                            .and_then(|v| v.trim().parse().ok());
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                        head.chunked = h.value.eq_ignore_ascii_case(b"chunked");
                    }
                }
                self.pos += n;
                return Ok(head);
            }
            self.fill()?;
        }
    }

    pub(crate) fn read_body(&mut self, n: usize, out: &mut Vec<u8>) -> io::Result<()> {
        while out.len() < n {
            if self.pos == self.len {
                self.fill()?;
            }
            let take = (n - out.len()).min(self.len - self.pos);
            out.extend_from_slice(&self.buf[self.pos..self.pos + take]);
            self.pos += take;
        }
        Ok(())
    }

    /// A CRLF-terminated line (without the CRLF).
    pub(crate) fn read_line(&mut self) -> io::Result<String> {
        loop {
            let window = &self.buf[self.pos..self.len];
            if let Some(at) = window.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&window[..at]).into_owned();
                self.pos += at + 2;
                return Ok(line);
            }
            self.fill()?;
        }
    }

    /// De-chunks a body, handing each piece of data to `on_data` as it
    /// arrives; stops early when `on_data` returns false.
    pub(crate) fn read_chunked(
        &mut self,
        mut on_data: impl FnMut(&[u8]) -> bool,
    ) -> io::Result<()> {
        loop {
            let line = self.read_line()?;
            let hex = line.split(';').next().unwrap_or("").trim();
            let mut left = usize::from_str_radix(hex, 16)
                .map_err(|_| other(&format!("bad chunk size line {line:?}")))?;
            if left == 0 {
                // Trailers, then the blank line.
                while !self.read_line()?.is_empty() {}
                return Ok(());
            }
            while left > 0 {
                if self.pos == self.len {
                    self.fill()?;
                }
                let take = left.min(self.len - self.pos);
                let keep_going = on_data(&self.buf[self.pos..self.pos + take]);
                self.pos += take;
                left -= take;
                if !keep_going {
                    return Ok(());
                }
            }
            if !self.read_line()?.is_empty() {
                return Err(other("chunk not followed by CRLF"));
            }
        }
    }
}

/// A loopback port free a moment ago.
pub(crate) fn free_port() -> Res<u16> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

pub(crate) fn other(text: &str) -> io::Error {
    io::Error::other(text.to_string())
}

/// A distinct 64-byte payload for client `client`, append `seq`.
pub(crate) fn payload(client: usize, seq: u64) -> [u8; PAYLOAD] {
    let mut p = [b'.'; PAYLOAD];
    let text = format!("client {client:04} seq {seq:016} ");
    p[..text.len()].copy_from_slice(text.as_bytes());
    p[PAYLOAD - 1] = b'\n';
    p
}

/// One append to topic `bench`; the frame JSON on success.
pub(crate) fn append_one(conn: &mut Conn, client: usize, seq: u64) -> Res<Vec<u8>> {
    append_to(conn, "bench", &payload(client, seq))
}

/// One append of `body` to `topic`; the frame JSON on success.
pub(crate) fn append_to(conn: &mut Conn, topic: &str, body: &[u8]) -> Res<Vec<u8>> {
    expect_200(conn, "POST", &format!("/append/{topic}"), body)
}

/// A request that must answer 200; its body.
pub(crate) fn expect_200(conn: &mut Conn, method: &str, path: &str, body: &[u8]) -> Res<Vec<u8>> {
    let (status, answer) = conn
        .request(method, path, body)
        .map_err(|e| format!("{method} {path}: {e}"))?;
    if status != 200 {
        return Err(format!(
            "{method} {path} answered {status}: {}",
            String::from_utf8_lossy(&answer).trim()
        ));
    }
    Ok(answer)
}

/// `GET path` answering 200 (`Some(body)`) or 404 (`None`).
pub(crate) fn get_optional(conn: &mut Conn, path: &str) -> Res<Option<Vec<u8>>> {
    let (status, body) = conn
        .request("GET", path, &[])
        .map_err(|e| format!("GET {path}: {e}"))?;
    match status {
        200 => Ok(Some(body)),
        404 => Ok(None),
        other => Err(format!(
            "GET {path} answered {other}: {}",
            String::from_utf8_lossy(&body).trim()
        )),
    }
}

/// The NDJSON lines of a `GET` (a finite read).
pub(crate) fn count_lines(conn: &mut Conn, path: &str) -> Res<u64> {
    let body = expect_200(conn, "GET", path, &[])?;
    Ok(body.iter().filter(|&&b| b == b'\n').count() as u64)
}

/// A JSON body parsed.
pub(crate) fn json(body: &[u8]) -> Res<serde_json::Value> {
    serde_json::from_slice(body).map_err(|e| {
        format!(
            "not JSON ({e}): {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        )
    })
}

/// The millisecond time inside a frame JSON's SCRU128 id.
pub(crate) fn id_ms(frame: &[u8]) -> Res<u64> {
    let id = frame_id(frame).ok_or("frame without id")?;
    let id: scru128::Id = std::str::from_utf8(id)
        .map_err(|_| "id is not UTF-8".to_string())?
        .parse()
        .map_err(|e| format!("bad id: {e}"))?;
    Ok(id.timestamp())
}

/// Calls `check` every `every` until it yields a value; an error after
/// `limit` (or as soon as `check` fails).
pub(crate) fn poll<T>(
    limit: Duration,
    every: Duration,
    mut check: impl FnMut() -> Res<Option<T>>,
) -> Res<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check()? {
            return Ok(value);
        }
        if Instant::now() > deadline {
            return Err(format!("gave up after {limit:?}"));
        }
        std::thread::sleep(every);
    }
}

/// The `"id"` of a frame JSON line.
pub(crate) fn frame_id(json: &[u8]) -> Option<&[u8]> {
    pub(crate) const KEY: &[u8] = b"\"id\":\"";
    let at = json.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    json.get(at..at + 25)
}
