//! A small, blocking HTTP/1.1 client over a Unix socket or TCP.
//!
//! One request per connection (`Connection: close`), which is all the CLI
//! needs and keeps the framing simple: the response body ends at its
//! `Content-Length`, at its last chunk, or when the server closes. Request
//! bodies are streamed from their source: with `Content-Length` when the
//! size is known up front (a regular file on stdin), chunked otherwise, so
//! `tail -f log | xs append` and a 10 GiB file both work in constant memory.

use std::io::{self, BufRead, BufReader, BufWriter, IsTerminal, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;

use super::address::{Address, Endpoint};
use super::args::Stop;
use super::body::{Body, Framing};
use crate::sys;

/// What every request says about us.
const USER_AGENT: &str = concat!("xs/", env!("CARGO_PKG_VERSION"));
/// A response head larger than this is not from an xs server.
const MAX_HEAD: usize = 64 * 1024;
/// How much of an error body we read to report it.
const MAX_ERROR_BODY: u64 = 64 * 1024;
/// Request bodies are sent in pieces of this size.
const BODY_PIECE: usize = 64 * 1024;

/// A request body.
pub enum RequestBody {
    /// No body at all.
    Empty,
    /// Bytes read from `reader`; `len` when known in advance.
    Stream {
        reader: Box<dyn Read>,
        len: Option<u64>,
    },
}

impl RequestBody {
    /// Stdin as a body, or no body when stdin is a terminal (so a bare
    /// `xs append <addr> topic` does not sit waiting for typing). A regular
    /// file's remaining size is known, so it goes with `Content-Length`.
    pub fn stdin() -> RequestBody {
        let stdin = io::stdin();
        if stdin.is_terminal() {
            return RequestBody::Empty;
        }
        let len = sys::fd::regular_file_remaining(stdin.as_fd())
            .ok()
            .flatten();
        RequestBody::Stream {
            reader: Box::new(stdin.lock()),
            len,
        }
    }
}

/// One request.
pub struct Request {
    pub method: &'static str,
    /// Path and query, e.g. `/last/note?last=3`.
    pub target: String,
    /// Extra headers, e.g. `xs-meta`.
    pub headers: Vec<(&'static str, String)>,
    pub body: RequestBody,
    /// Ask for Server-Sent Events instead of NDJSON.
    pub sse: bool,
}

impl Request {
    /// A bodiless request.
    pub fn new(method: &'static str, target: String) -> Request {
        Request {
            method,
            target,
            headers: Vec::new(),
            body: RequestBody::Empty,
            sse: false,
        }
    }

    pub fn get(target: String) -> Request {
        Request::new("GET", target)
    }
}

/// A response whose head has been read; the body is read on demand.
pub struct Response {
    pub status: u16,
    /// The reason phrase, for errors that come without a body.
    pub reason: String,
    /// The `Content-Type`, lower-cased, without parameters: `xs eval`
    /// prints a JSON value differently from a raw string.
    pub content_type: Option<String>,
    pub body: Body<BufReader<Connection>>,
}

/// Sends `request` and reads the response head; any status is returned.
pub fn send(address: &Address, request: Request) -> Result<Response, Stop> {
    let mut connection = Connection::open(address)?;
    let sent = write_request(&mut connection, address, request);
    let mut reader = BufReader::with_capacity(BODY_PIECE, connection);
    match (sent, read_head(&mut reader)) {
        (_, Ok(head)) => Ok(Response {
            status: head.status,
            reason: head.reason,
            content_type: head.content_type,
            body: Body::new(reader, head.framing),
        }),
        // A server may answer early (413) and close while we still send:
        // its answer is the better report, so the write error comes second.
        (Err(write_error), Err(_)) => Err(Stop::Failed(format!(
            "sending request to {}: {write_error}",
            address.shown
        ))),
        (Ok(()), Err(read_error)) => Err(Stop::Failed(format!(
            "reading response from {}: {read_error}",
            address.shown
        ))),
    }
}

/// Sends `request` and accepts only 200 and 204, as cross.stream's client
/// does: 404 is a silent "not found", anything else an error carrying the
/// server's text.
pub fn call(address: &Address, request: Request) -> Result<Response, Stop> {
    let response = send(address, request)?;
    success(response)
}

/// Turns a non-success status into its `Stop`.
pub fn success(mut response: Response) -> Result<Response, Stop> {
    match response.status {
        200 | 204 => Ok(response),
        404 => Err(Stop::NotFound),
        status => {
            let text = response.body.text(MAX_ERROR_BODY).unwrap_or_default();
            let text = text.trim_end();
            Err(Stop::Failed(if text.is_empty() {
                format!("HTTP {status} {}", response.reason)
            } else {
                text.to_string()
            }))
        }
    }
}

/// A connected socket of either kind.
pub enum Connection {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Connection {
    /// Connects; a local socket that is missing or has nobody listening
    /// means there is no store there, which gets the reference's hint.
    fn open(address: &Address) -> Result<Connection, Stop> {
        match &address.endpoint {
            Endpoint::Unix(path) => match UnixStream::connect(path) {
                Ok(stream) => Ok(Connection::Unix(stream)),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                    ) =>
                {
                    Err(Stop::NoStore(address.shown.clone()))
                }
                Err(e) => Err(Stop::Failed(format!(
                    "connecting to {}: {e}",
                    path.display()
                ))),
            },
            Endpoint::Tcp { host, port, .. } => match TcpStream::connect((host.as_str(), *port)) {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    Ok(Connection::Tcp(stream))
                }
                Err(e) => Err(Stop::Failed(format!(
                    "connecting to {}: {e}",
                    address.shown
                ))),
            },
        }
    }
}

impl Read for Connection {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Connection::Unix(s) => s.read(buf),
            Connection::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Connection {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Connection::Unix(s) => s.write(buf),
            Connection::Tcp(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Connection::Unix(s) => s.flush(),
            Connection::Tcp(s) => s.flush(),
        }
    }
}

/// Writes the request head, then the body in pieces.
fn write_request(out: &mut impl Write, address: &Address, request: Request) -> io::Result<()> {
    let mut out = BufWriter::with_capacity(BODY_PIECE + 32, out);
    let head = request_head(address, &request);
    out.write_all(head.as_bytes())?;
    match request.body {
        RequestBody::Empty => {}
        RequestBody::Stream {
            reader,
            len: Some(len),
        } => send_exactly(&mut out, reader, len)?,
        RequestBody::Stream { reader, len: None } => send_chunked(&mut out, reader)?,
    }
    out.flush()
}

/// The request line and headers, up to and including the blank line.
fn request_head(address: &Address, request: &Request) -> String {
    let (host, authorization) = match &address.endpoint {
        Endpoint::Unix(_) => ("localhost", None),
        Endpoint::Tcp {
            host_header,
            authorization,
            ..
        } => (host_header.as_str(), authorization.as_deref()),
    };
    let accept = if request.sse {
        "text/event-stream"
    } else {
        "*/*"
    };
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {USER_AGENT}\r\nConnection: close\r\n",
        request.method, request.target
    );
    // A command that negotiates (`xs metrics`) sends its own.
    if !request
        .headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("accept"))
    {
        head.push_str(&format!("Accept: {accept}\r\n"));
    }
    if let Some(authorization) = authorization {
        head.push_str(&format!("Authorization: {authorization}\r\n"));
    }
    for (name, value) in &request.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    match &request.body {
        RequestBody::Empty if matches!(request.method, "POST" | "PUT") => {
            head.push_str("Content-Length: 0\r\n")
        }
        RequestBody::Empty => {}
        RequestBody::Stream { len: Some(len), .. } => {
            head.push_str(&format!("Content-Length: {len}\r\n"))
        }
        RequestBody::Stream { len: None, .. } => head.push_str("Transfer-Encoding: chunked\r\n"),
    }
    head.push_str("\r\n");
    head
}

/// Sends exactly `len` bytes; a source that runs short would leave the
/// server waiting, so that is an error.
fn send_exactly(out: &mut impl Write, reader: Box<dyn Read>, len: u64) -> io::Result<()> {
    let copied = io::copy(&mut reader.take(len), out)?;
    if copied < len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("input ended after {copied} of {len} bytes"),
        ));
    }
    Ok(())
}

/// Sends the source as chunks, as it becomes available, then the last chunk.
fn send_chunked(out: &mut impl Write, mut reader: Box<dyn Read>) -> io::Result<()> {
    let mut piece = vec![0u8; BODY_PIECE];
    loop {
        let n = match reader.read(&mut piece) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        write!(out, "{n:x}\r\n")?;
        out.write_all(&piece[..n])?;
        out.write_all(b"\r\n")?;
        // Each piece goes out now: a slow producer's bytes reach the server
        // as they come rather than when a buffer fills.
        out.flush()?;
    }
    out.write_all(b"0\r\n\r\n")
}

/// What the response head says.
struct Head {
    status: u16,
    reason: String,
    framing: Framing,
    content_type: Option<String>,
}

/// Reads the response head with httparse, skipping interim 1xx responses,
/// and decides how the body is framed.
fn read_head(reader: &mut impl BufRead) -> io::Result<Head> {
    loop {
        let head = read_head_bytes(reader)?;
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        response
            .parse(&head)
            .map_err(|e| invalid(format!("malformed response head: {e}")))?;
        let status = response.code.unwrap_or(0);
        if (100..200).contains(&status) && status != 101 {
            continue;
        }
        let reason = response.reason.unwrap_or_default().to_string();
        let framing = framing(status, response.headers)?;
        let content_type = response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("Content-Type"))
            .map(|h| {
                let value = String::from_utf8_lossy(h.value);
                let bare = value.split(';').next().unwrap_or_default();
                bare.trim().to_ascii_lowercase()
            });
        return Ok(Head {
            status,
            reason,
            framing,
            content_type,
        });
    }
}

/// Collects bytes until httparse says the head is complete, leaving the
/// body's first bytes unread in `reader`.
fn read_head_bytes(reader: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut head: Vec<u8> = Vec::new();
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection without answering",
            ));
        }
        let before = head.len();
        let taken = available.len().min(MAX_HEAD + 1 - before);
        head.extend_from_slice(&available[..taken]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        match httparse::Response::new(&mut headers).parse(&head) {
            Ok(httparse::Status::Complete(len)) => {
                reader.consume(len.saturating_sub(before));
                head.truncate(len);
                return Ok(head);
            }
            Ok(httparse::Status::Partial) if head.len() <= MAX_HEAD => reader.consume(taken),
            Ok(httparse::Status::Partial) => return Err(invalid("response head too large".into())),
            Err(e) => return Err(invalid(format!("malformed response head: {e}"))),
        }
    }
}

/// RFC 9112's body-length rules, for the cases an xs server produces.
fn framing(status: u16, headers: &[httparse::Header]) -> io::Result<Framing> {
    if status == 204 || status == 304 {
        return Ok(Framing::Empty);
    }
    let values = |name: &'static str| {
        headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
    };
    if values("transfer-encoding").any(|v| v.rsplit(',').next().map(str::trim) == Some("chunked")) {
        return Ok(Framing::Chunked);
    }
    let mut lengths = values("content-length");
    match lengths.next() {
        None => Ok(Framing::UntilClose),
        Some(first) => {
            let len = first
                .parse::<u64>()
                .map_err(|_| invalid(format!("bad Content-Length {first:?}")))?;
            if lengths.any(|other| other != first) {
                return Err(invalid("conflicting Content-Length headers".into()));
            }
            Ok(Framing::Length(len))
        }
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::thread::{self, JoinHandle};
    use std::time::Duration;

    /// A fresh, unique socket path in the temp dir.
    fn socket_path() -> PathBuf {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        std::env::temp_dir().join(format!("xs-cli-test-{}-{n}.sock", std::process::id()))
    }

    /// Reads one request from a fake-server connection: the head, then a
    /// body framed by Content-Length or chunked encoding (kept raw).
    fn read_request(stream: &mut UnixStream) -> Vec<u8> {
        let mut raw = Vec::new();
        let mut byte = [0u8; 1];
        while !raw.ends_with(b"\r\n\r\n") {
            if stream.read(&mut byte).unwrap_or(0) == 0 {
                return raw;
            }
            raw.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&raw).to_ascii_lowercase();
        if let Some(len) = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|v| v.trim().parse::<usize>().ok())
        {
            let mut body = vec![0u8; len];
            stream.read_exact(&mut body).unwrap();
            raw.extend_from_slice(&body);
        } else if head.contains("transfer-encoding: chunked") {
            while !raw.ends_with(b"\r\n0\r\n\r\n") {
                if stream.read(&mut byte).unwrap_or(0) == 0 {
                    break;
                }
                raw.push(byte[0]);
            }
        }
        raw
    }

    /// A server that accepts one connection, records the request, then
    /// lets `respond` write the answer.
    fn fake_server_with(
        respond: impl FnOnce(&mut UnixStream) + Send + 'static,
    ) -> (Address, JoinHandle<Vec<u8>>) {
        let path = socket_path();
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let address = Address {
            endpoint: Endpoint::Unix(path.clone()),
            shown: path.display().to_string(),
        };
        let handle = thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let request = read_request(&mut stream);
            respond(&mut stream);
            let _ = std::fs::remove_file(&path);
            request
        });
        (address, handle)
    }

    /// A server that answers with `pieces`, pausing between them so the
    /// client sees the response split at those points.
    fn fake_server(pieces: Vec<&'static [u8]>) -> (Address, JoinHandle<Vec<u8>>) {
        fake_server_with(move |stream| {
            for piece in pieces {
                let _ = stream.write_all(piece);
                let _ = stream.flush();
                thread::sleep(Duration::from_millis(5));
            }
        })
    }

    fn body_of(response: Response) -> Vec<u8> {
        let mut body = response.body;
        let mut out = Vec::new();
        body.read_to_end(&mut out).unwrap();
        out
    }

    fn request_text(handle: JoinHandle<Vec<u8>>) -> String {
        String::from_utf8(handle.join().unwrap()).unwrap()
    }

    #[test]
    fn get_sends_the_conventional_head() {
        let (address, server) =
            fake_server(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"]);
        let response = call(&address, Request::get("/last?last=2".into())).unwrap();
        assert_eq!(body_of(response), b"{}");
        let request = request_text(server);
        assert!(
            request.starts_with("GET /last?last=2 HTTP/1.1\r\n"),
            "{request}"
        );
        for header in [
            "Host: localhost\r\n",
            &format!("User-Agent: xs/{}\r\n", env!("CARGO_PKG_VERSION")),
            "Accept: */*\r\n",
            "Connection: close\r\n",
        ] {
            assert!(request.contains(header), "{header} in {request}");
        }
        assert!(!request.contains("Content-Length"), "{request}");
    }

    #[test]
    fn chunked_responses_split_anywhere_decode() {
        let (address, server) = fake_server(vec![
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r",
            b"\n\r\n4\r\n{}\n",
            b"\n\r\n3\r\n[]\n\r\n0\r",
            b"\n\r\n",
        ]);
        let response = call(&address, Request::get("/".into())).unwrap();
        assert_eq!(body_of(response), b"{}\n\n[]\n");
        server.join().unwrap();
    }

    #[test]
    fn interim_responses_are_skipped() {
        let (address, server) = fake_server(vec![
            b"HTTP/1.1 100 Continue\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\n\r\n",
        ]);
        let response = call(&address, Request::new("DELETE", "/x".into())).unwrap();
        assert_eq!(response.status, 204);
        assert_eq!(body_of(response), b"");
        server.join().unwrap();
    }

    #[test]
    fn a_followed_stream_arrives_piece_by_piece() {
        let (go_on, wait) = std::sync::mpsc::channel::<()>();
        let (address, server) = fake_server_with(move |stream| {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{}\n\r\n");
            let _ = wait.recv();
            let _ = stream.write_all(b"3\r\n[]\n\r\n0\r\n\r\n");
        });
        let mut response = call(&address, Request::get("/?follow=true".into())).unwrap();
        let mut buf = [0u8; 1024];
        // The server holds back the rest until we have the first frame.
        let n = response.body.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"{}\n");
        go_on.send(()).unwrap();
        assert_eq!(body_of(response), b"[]\n");
        server.join().unwrap();
    }

    #[test]
    fn unknown_length_bodies_go_chunked() {
        let (address, server) = fake_server(vec![b"HTTP/1.1 200 OK\r\n\r\nsha256-x"]);
        let mut request = Request::new("POST", "/cas".into());
        request.body = RequestBody::Stream {
            reader: Box::new(&b"hello"[..]),
            len: None,
        };
        let response = call(&address, request).unwrap();
        // No framing header: the body runs until the server closes.
        assert_eq!(body_of(response), b"sha256-x");
        let request = request_text(server);
        assert!(
            request.contains("Transfer-Encoding: chunked\r\n"),
            "{request}"
        );
        assert!(
            request.ends_with("\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
            "{request:?}"
        );
    }

    #[test]
    fn known_length_bodies_use_content_length() {
        let (address, server) = fake_server(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"]);
        let mut request = Request::new("POST", "/append/a".into());
        request.headers.push(("xs-meta", "e30=".into()));
        request.body = RequestBody::Stream {
            reader: Box::new(&b"hello"[..]),
            len: Some(5),
        };
        call(&address, request).unwrap();
        let request = request_text(server);
        assert!(request.contains("xs-meta: e30=\r\n"), "{request}");
        assert!(request.contains("Content-Length: 5\r\n"), "{request}");
        assert!(request.ends_with("\r\n\r\nhello"), "{request:?}");
    }

    #[test]
    fn statuses_map_to_stops() {
        let (address, server) =
            fake_server(vec![b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"]);
        assert!(matches!(
            call(&address, Request::get("/x".into())),
            Err(Stop::NotFound)
        ));
        server.join().unwrap();
        let (address, server) = fake_server(vec![
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 22\r\n\r\nTopic cannot be empty\n",
        ]);
        assert!(matches!(
            call(&address, Request::get("/x".into())),
            Err(Stop::Failed(text)) if text == "Topic cannot be empty"
        ));
        server.join().unwrap();
        let (address, server) = fake_server(vec![
            b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n",
        ]);
        assert!(matches!(
            call(&address, Request::get("/x".into())),
            Err(Stop::Failed(text)) if text == "HTTP 413 Payload Too Large"
        ));
        server.join().unwrap();
    }

    #[test]
    fn a_missing_socket_means_no_store() {
        let path = socket_path();
        let address = Address::parse(&path.display().to_string()).unwrap();
        assert!(matches!(
            send(&address, Request::get("/".into())),
            Err(Stop::NoStore(shown)) if shown == path.display().to_string()
        ));
    }

    #[test]
    fn a_server_that_hangs_up_is_an_error() {
        let (address, server) = fake_server(vec![b"HTTP/1.1 200 OK\r\nContent-"]);
        assert!(matches!(
            send(&address, Request::get("/".into())),
            Err(Stop::Failed(_))
        ));
        server.join().unwrap();
    }

    #[test]
    fn tcp_requests_carry_host_and_basic_auth() {
        let address = Address::parse("http://user:pass@example.com:400").unwrap();
        let head = request_head(&address, &Request::get("/".into()));
        assert!(head.contains("Host: example.com:400\r\n"), "{head}");
        assert!(
            head.contains("Authorization: Basic dXNlcjpwYXNz\r\n"),
            "{head}"
        );
        let mut sse = Request::get("/".into());
        sse.sse = true;
        assert!(request_head(&address, &sse).contains("Accept: text/event-stream\r\n"));
        let post = Request::new("POST", "/import".into());
        assert!(request_head(&address, &post).contains("Content-Length: 0\r\n"));
    }
}
