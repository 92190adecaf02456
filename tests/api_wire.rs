//! How requests are framed on the wire, on every listener (the store's
//! socket, `--expose` TCP, the `--http` gateway), with raw bytes:
//! - the absolute form of a request target (`GET http://localhost/ HTTP/1.1`,
//!   what cross.stream's own client sends) routes like the origin form;
//! - a body that ends before its `Content-Length` or its last chunk stores
//!   nothing, not even a payload file;
//! - a `Content-Length` that is no u64, two that differ, or one beside
//!   `Transfer-Encoding` is 400 and the connection closes: the bytes after
//!   the head never run as a request of their own.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(5);

/// A TCP port nobody listens on right now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().unwrap().port()
}

/// Writes `bytes` on a fresh TCP connection (optionally closing the write
/// side) and collects the answer until the server closes or `T` passes.
fn tcp_raw(addr: SocketAddr, bytes: &[u8], close_write: bool) -> Raw {
    let mut stream = TcpStream::connect(addr).expect("connect");
    let _ = stream.write_all(bytes);
    if close_write {
        let _ = stream.shutdown(Shutdown::Write);
    }
    let deadline = Instant::now() + T;
    let mut received = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break Raw {
                bytes: received,
                closed: false,
            };
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut chunk) {
            Ok(0) => {
                break Raw {
                    bytes: received,
                    closed: true,
                }
            }
            Ok(n) => received.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => {
                break Raw {
                    bytes: received,
                    closed: true,
                }
            }
        }
    }
}

/// The status codes of every response in a raw answer, in order.
fn statuses(raw: &Raw) -> Vec<u16> {
    let marker = b"HTTP/1.1 ";
    raw.bytes
        .windows(marker.len() + 3)
        .filter(|w| w.starts_with(marker))
        .filter_map(|w| std::str::from_utf8(&w[marker.len()..]).ok()?.parse().ok())
        .collect()
}

/// The body of a raw answer holding one response with a `Content-Length`.
fn body(raw: &Raw) -> Vec<u8> {
    let text = &raw.bytes;
    let end = text
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(text)));
    text[end + 4..].to_vec()
}

/// A chunked request in absolute form, split into two chunks.
fn chunked_append(target: &str, payload: &[u8]) -> Vec<u8> {
    let (first, second) = payload.split_at(payload.len() / 2);
    let mut bytes = format!(
        "POST {target} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n{:x}\r\n",
        first.len()
    )
    .into_bytes();
    bytes.extend_from_slice(first);
    bytes.extend_from_slice(format!("\r\n{:x}\r\n", second.len()).as_bytes());
    bytes.extend_from_slice(second);
    bytes.extend_from_slice(b"\r\n0\r\n\r\n");
    bytes
}

fn cacache_files(server: &Server) -> usize {
    count_files(&server.dir().join("cacache"))
}

// ---------------------------------------------------------------------------
// The absolute form

#[test]
fn absolute_form_works_on_the_socket() {
    let server = Server::start(&[]);
    let sock = server.sock();

    // cross.stream's `xs append`: a chunked POST in absolute form.
    let raw = send_raw(
        &sock,
        &chunked_append("http://localhost/append/note?ttl=forever", b"hello world"),
        false,
        T,
    );
    assert_eq!(
        statuses(&raw),
        [200],
        "{:?}",
        String::from_utf8_lossy(&raw.bytes)
    );
    let frame: Value = serde_json::from_slice(&body(&raw)).expect("the appended frame");
    assert_eq!(topic(&frame), "note");
    let hash = frame["hash"].as_str().expect("a hash");
    assert_eq!(server.get(&format!("/cas/{hash}")).body, b"hello world");

    // `xs last`, `xs cat`, and a target without a path at all.
    let last = request(&sock, "GET", "http://localhost/last/note", &[], b"");
    assert_eq!(last.status, 200);
    assert_eq!(last.json(), frame);
    let cat = request(&sock, "GET", "http://localhost/?topic=note", &[], b"");
    assert_eq!(cat.frames(), std::slice::from_ref(&frame));
    let bare = request(&sock, "GET", "HTTP://LOCALHOST?topic=note", &[], b"");
    assert_eq!(bare.frames(), std::slice::from_ref(&frame));
    assert_eq!(
        request(&sock, "GET", "http://localhost/version", &[], b"").status,
        200
    );

    // `xs cat --follow`: a live stream.
    let mut follow = Stream::open(&sock, "http://localhost/?follow&topic=note", &[]);
    assert_eq!(follow.status, 200);
    assert_eq!(follow.next_frame(T), frame);
    assert_eq!(follow.next_topic(T), "xs.threshold");
    let live = server.append("note", b"live");
    assert_eq!(follow.next_frame(T), live);
}

#[test]
fn absolute_form_works_on_expose() {
    let port = free_port();
    let server = Server::start(&["--expose", &format!("127.0.0.1:{port}")]);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let target = format!("http://127.0.0.1:{port}/append/over.tcp");
    let raw = tcp_raw(addr, &chunked_append(&target, b"via expose"), false);
    assert_eq!(
        statuses(&raw),
        [200],
        "{:?}",
        String::from_utf8_lossy(&raw.bytes)
    );
    let frame: Value = serde_json::from_slice(&body(&raw)).expect("the appended frame");
    assert_eq!(topic(&frame), "over.tcp");
    assert_eq!(server.get("/last/over.tcp").json(), frame);

    let get = format!(
        "GET http://127.0.0.1:{port}/last/over.tcp HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Connection: close\r\n\r\n"
    );
    let raw = tcp_raw(addr, get.as_bytes(), false);
    assert_eq!(statuses(&raw), [200]);
    let last: Value = serde_json::from_slice(&body(&raw)).expect("a frame");
    assert_eq!(last, frame);
}

#[test]
fn absolute_form_on_the_gateway_gives_path_and_query() {
    let port = free_port();
    let http = format!("127.0.0.1:{port}");
    let server = Server::start(&["--http", &http, "--http-timeout", "300"]);
    let addr: SocketAddr = http.parse().unwrap();
    let mut requests = server.follow("/?follow&topic=http.request,xs.threshold");
    // Live once `xs.threshold` has passed: no later request is missed.
    while topic(&requests.next_frame(T)) != "xs.threshold" {}

    let head = format!(
        "GET http://gateway.test:{port}/some/path?a=1&a=2&b=x%20y HTTP/1.1\r\n\
         Host: elsewhere\r\nConnection: close\r\n\r\n"
    );
    let raw = tcp_raw(addr, head.as_bytes(), false);
    assert_eq!(statuses(&raw), [504], "nobody answers");
    let frame = requests.next_frame(T);
    let meta = &frame["meta"];
    assert_eq!(meta["uri"], "/some/path?a=1&a=2&b=x%20y");
    assert_eq!(meta["path"], "/some/path");
    assert_eq!(meta["query"], json!({"a": ["1", "2"], "b": "x y"}));
    // RFC 9112 3.2.2: the target's host wins over a `Host` header.
    assert_eq!(meta["authority"], format!("gateway.test:{port}"));
    assert_eq!(meta["headers"]["host"], format!("gateway.test:{port}"));
}

// ---------------------------------------------------------------------------
// Bodies that end early

/// Sends `bytes`, closes the write side as a vanishing client would, and
/// waits until the server has finished with the connection (it closes it).
fn cut_short(sock: &std::path::Path, bytes: &[u8]) {
    let raw = send_raw(sock, bytes, true, T);
    assert!(raw.closed, "the server kept the connection");
    assert!(
        !statuses(&raw).contains(&200),
        "a cut body was accepted: {:?}",
        String::from_utf8_lossy(&raw.bytes)
    );
}

#[test]
fn a_body_that_ends_early_stores_nothing() {
    let server = Server::start_local(&[]);
    let sock = server.sock();
    let files = cacache_files(&server);
    let frame_json = json!({
        "topic": "imported",
        "id": scru128::new_string(),
        "hash": null,
        "meta": null,
        "ttl": "forever",
    })
    .to_string();
    let chunk_of = |n: usize| vec![b'p'; n];
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    for target in ["/append/cut", "/cas"] {
        // A 1024-byte chunk declared, 100 bytes sent.
        let mut bytes =
            format!("POST {target} HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n")
                .into_bytes();
        bytes.extend(chunk_of(100));
        cases.push(("a short chunk", bytes));
        // Whole chunks, but no last chunk.
        let mut bytes =
            format!("POST {target} HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
                .into_bytes();
        bytes.extend_from_slice(b"1000\r\n");
        bytes.extend(chunk_of(4096));
        bytes.extend_from_slice(b"\r\n");
        cases.push(("no last chunk", bytes));
        // A Content-Length body that ends early (larger than the bodies
        // tiny_http reads before the handler runs).
        let mut bytes =
            format!("POST {target} HTTP/1.1\r\nContent-Length: 100000\r\n\r\n").into_bytes();
        bytes.extend(chunk_of(70_000));
        cases.push(("a short Content-Length body", bytes));
    }
    // A complete frame in a body that promised more.
    let mut bytes = b"POST /import HTTP/1.1\r\nContent-Length: 5000\r\n\r\n".to_vec();
    bytes.extend_from_slice(frame_json.as_bytes());
    cases.push(("a short import", bytes));
    let mut bytes = b"POST /import HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    bytes.extend_from_slice(format!("{:x}\r\n{frame_json}\r\n", frame_json.len()).as_bytes());
    cases.push(("an import without its last chunk", bytes));

    for (what, bytes) in &cases {
        cut_short(&sock, bytes);
        assert_eq!(
            topics(&server.frames("/")),
            ["xs.start"],
            "{what}: a frame was stored"
        );
        assert_eq!(
            cacache_files(&server),
            files,
            "{what}: a payload file remains"
        );
    }
    // The server is fine.
    server.append("after", b"ok");
}

#[test]
fn a_gateway_body_that_ends_early_stores_nothing() {
    let port = free_port();
    let http = format!("127.0.0.1:{port}");
    let server = Server::start_local(&[
        "--http",
        &http,
        "--http-ttl",
        "forever",
        "--http-timeout",
        "300",
    ]);
    let addr: SocketAddr = http.parse().unwrap();
    let files = cacache_files(&server);
    let mut short_chunk =
        b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n".to_vec();
    short_chunk.extend(vec![b'g'; 100]);
    let mut short_length =
        b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n".to_vec();
    short_length.extend(vec![b'g'; 70_000]);
    for (what, bytes) in [
        ("a short chunk", short_chunk),
        ("a short body", short_length),
    ] {
        let raw = tcp_raw(addr, &bytes, true);
        assert!(raw.closed, "{what}: the gateway kept the connection");
        assert_eq!(
            topics(&server.frames("/")),
            ["xs.start"],
            "{what}: a request frame was stored"
        );
        assert_eq!(
            cacache_files(&server),
            files,
            "{what}: a payload file remains"
        );
    }
}

// ---------------------------------------------------------------------------
// Smuggling

/// A request whose body, if the head's framing were misread, would run as
/// a request of its own.
const SMUGGLED: &str = "POST /append/smuggled HTTP/1.1\r\nContent-Length: 0\r\n\r\n";

/// Heads whose framing is ambiguous, each followed by `SMUGGLED`.
fn ambiguous_heads(host_line: &str) -> Vec<(&'static str, String)> {
    let head = |what, fields: &str| {
        (
            what,
            format!("POST /append/front HTTP/1.1\r\n{host_line}{fields}\r\n{SMUGGLED}"),
        )
    };
    vec![
        head(
            "Content-Length above u64",
            "Content-Length: 99999999999999999999999\r\n",
        ),
        head(
            "Content-Length and Transfer-Encoding",
            &format!(
                "Content-Length: {}\r\nTransfer-Encoding: chunked\r\n",
                SMUGGLED.len() + 5
            ),
        ),
        head(
            "Transfer-Encoding and Content-Length",
            "Transfer-Encoding: chunked\r\nContent-Length: 0\r\n",
        ),
        head(
            "two different Content-Lengths",
            "Content-Length: 0\r\nContent-Length: 5\r\n",
        ),
        head(
            "Content-Length as a list of different values",
            "Content-Length: 0, 5\r\n",
        ),
        head(
            "a Transfer-Encoding that does not end in chunked",
            "Transfer-Encoding: chunked, identity\r\n",
        ),
    ]
}

/// Each head gets one 400 and a closed connection; nothing is stored.
fn assert_refused_and_closed(what: &str, raw: &Raw) {
    let shown = String::from_utf8_lossy(&raw.bytes);
    assert_eq!(statuses(raw), [400], "{what}: {shown:?}");
    assert!(raw.closed, "{what}: the connection stayed open: {shown:?}");
}

#[test]
fn ambiguous_framing_is_400_and_closes_on_the_socket() {
    let server = Server::start(&[]);
    for (what, bytes) in ambiguous_heads("") {
        let raw = send_raw(&server.sock(), bytes.as_bytes(), false, T);
        assert_refused_and_closed(what, &raw);
        // Clients that send the final chunk after the smuggled text, too.
        let raw = send_raw(
            &server.sock(),
            format!("{bytes}0\r\n\r\n").as_bytes(),
            false,
            T,
        );
        assert_refused_and_closed(what, &raw);
    }
    assert_eq!(topics(&server.frames("/")), ["xs.start"]);
}

#[test]
fn ambiguous_framing_is_400_and_closes_on_expose_and_the_gateway() {
    let expose_port = free_port();
    let http_port = free_port();
    let server = Server::start(&[
        "--expose",
        &format!("127.0.0.1:{expose_port}"),
        "--http",
        &format!("127.0.0.1:{http_port}"),
        "--http-ttl",
        "forever",
        "--http-timeout",
        "300",
    ]);
    for port in [expose_port, http_port] {
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        for (what, bytes) in ambiguous_heads("Host: x\r\n") {
            let raw = tcp_raw(addr, bytes.as_bytes(), false);
            assert_refused_and_closed(&format!("{what} on port {port}"), &raw);
        }
    }
    assert_eq!(topics(&server.frames("/")), ["xs.start"]);
}

#[test]
fn an_unread_body_never_runs_as_a_request() {
    let server = Server::start(&["--max-payload", "1000"]);
    // Refused before its body is read (bad topic; too large): a big body
    // is not drained, so the connection closes rather than reading the
    // body as requests.
    let mut padding = SMUGGLED.as_bytes().to_vec();
    padding.resize(2_000_000, b' ');
    for (target, status) in [("/append/bad!topic", 400), ("/append/big", 413)] {
        let mut bytes =
            format!("POST {target} HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n").into_bytes();
        bytes.extend_from_slice(&padding);
        let mut conn = Conn::open(&server.sock()).unwrap();
        // The server may stop reading (and close) before all is written.
        let _ = conn.stream.write_all(&bytes);
        let (answer, _) = conn.read_head(Instant::now() + T).expect("an answer");
        assert_eq!(answer, status, "{target}");
        let mut chunked = format!(
            "POST {target} HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
            padding.len()
        )
        .into_bytes();
        chunked.extend_from_slice(&padding);
        chunked.extend_from_slice(b"\r\n0\r\n\r\n");
        let mut conn = Conn::open(&server.sock()).unwrap();
        let _ = conn.stream.write_all(&chunked);
        let (answer, _) = conn.read_head(Instant::now() + T).expect("an answer");
        assert_eq!(answer, status, "{target}, chunked");
    }
    assert_eq!(topics(&server.frames("/")), ["xs.start"]);

    // A small refused chunked body is read to its end: the connection
    // goes on with the next request.
    let bytes = b"POST /append/bad!topic HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
                  5;ext=1\r\nhello\r\n0\r\nX-Trailer: yes\r\n\r\n\
                  GET /version HTTP/1.1\r\nConnection: close\r\n\r\n";
    let raw = send_raw(&server.sock(), bytes, false, T);
    assert_eq!(
        statuses(&raw),
        [400, 200],
        "{:?}",
        String::from_utf8_lossy(&raw.bytes)
    );
}
