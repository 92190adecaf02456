//! Connections and their limits (SPEC 9): every listener kind — the store's
//! Unix socket, `--expose` on TCP, the `--http` gateway — keeps serving
//! when clients hold connections open without a word, or when the process
//! runs out of descriptors; `--max-connections` answers 503 beyond the
//! cap; `--idle-timeout` closes a connection that sends no whole request
//! head in time, or pauses that long in a request body (a 408; a slow body
//! that keeps coming is never cut), never a follower; limits too large to
//! count mean none; the soft descriptor limit is raised at start. And a store is started when its first answer can see `xs.start`.
//!
//! Servers run under a low `ulimit -n` (through `sh -c 'ulimit …; exec xs
//! serve …'`) with a small cap and a 1 s idle timeout, so each test takes
//! a few seconds. Clients talk to 127.0.0.1 and the store's socket only.

mod common;

use std::fs;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::backend::{free_port, serve_args};
use common::*;

/// How long the server under test may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The cap and idle timeout the attack tests run with.
const CAP: usize = 8;
const IDLE_SECS: u64 = 1;

// ---------------------------------------------------------------------------
// A server under a descriptor limit

/// `xs serve` started through `sh` (to set its `ulimit -n` first); killed
/// on drop.
struct Limited {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    stderr_path: PathBuf,
    child: Child,
}

impl Limited {
    /// Spawns `xs serve <fresh store> <args>` after `ulimit <limit>` (e.g.
    /// `-n 64`), without waiting for it.
    fn spawn(limit: Option<&str>, args: &[&str]) -> Limited {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("store");
        let stderr_path = tmp.path().join("server.stderr");
        let stderr = fs::File::create(&stderr_path).expect("stderr file");
        let script = match limit {
            Some(limit) => format!("ulimit {limit} || exit 99; exec \"$0\" serve \"$@\""),
            None => "exec \"$0\" serve \"$@\"".to_string(),
        };
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(XS)
            .arg(&dir)
            .args(args)
            .args(serve_args())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn sh -c xs serve");
        Limited {
            _tmp: tmp,
            dir,
            stderr_path,
            child,
        }
    }

    /// Spawns, then waits until `GET /` answers.
    fn start(limit: Option<&str>, args: &[&str]) -> Limited {
        let mut server = Limited::spawn(limit, args);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = server.child.try_wait().expect("try_wait") {
                panic!("xs serve exited with {status}:\n{}", server.stderr());
            }
            let answered = try_request(&server.sock(), "GET", "/", &[], b"", ms(500));
            if answered.is_ok_and(|r| r.status == 200) {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "xs serve did not come up:\n{}",
                server.stderr()
            );
            std::thread::sleep(ms(5));
        }
    }

    fn sock(&self) -> PathBuf {
        self.dir.join("sock")
    }

    fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }
}

impl Drop for Limited {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// Raw clients on any listener

/// Where a listener is.
#[derive(Clone)]
enum Endpoint {
    Unix(PathBuf),
    Tcp(u16),
}

/// A client connection to either kind.
enum Sock {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Endpoint {
    fn connect(&self) -> io::Result<Sock> {
        match self {
            Endpoint::Unix(path) => UnixStream::connect(path).map(Sock::Unix),
            Endpoint::Tcp(port) => {
                let addr = std::net::SocketAddr::from(([127, 0, 0, 1], *port));
                TcpStream::connect_timeout(&addr, ms(2000)).map(Sock::Tcp)
            }
        }
    }

    /// One `GET path` with `Connection: close`: the status and body
    /// bytes, whatever the server sent until it closed.
    fn get(&self, path: &str, timeout: Duration) -> io::Result<(u16, Vec<u8>)> {
        let mut sock = self.connect()?;
        sock.write_all(&request_bytes("GET", path, &[], b""))?;
        let bytes = sock.read_to_close(timeout)?;
        let status = Raw {
            bytes: bytes.clone(),
            closed: true,
        }
        .status()
        .ok_or_else(|| io::Error::other(format!("no status line in {bytes:?}")))?;
        Ok((status, bytes))
    }
}

/// What a connection did within a wait.
#[derive(Debug, PartialEq)]
enum Heard {
    /// Bytes came (the first read's).
    Bytes(Vec<u8>),
    /// The server closed it without a byte.
    Closed,
    /// Nothing at all.
    Silence,
}

impl Sock {
    fn set_read_timeout(&self, timeout: Duration) {
        let timeout = Some(timeout.max(ms(1)));
        match self {
            Sock::Unix(s) => s.set_read_timeout(timeout),
            Sock::Tcp(s) => s.set_read_timeout(timeout),
        }
        .expect("set_read_timeout");
    }

    /// The first thing the server does on this connection within `wait`.
    fn listen(&mut self, wait: Duration) -> Heard {
        self.set_read_timeout(wait);
        let mut buf = [0u8; 4096];
        match self.read(&mut buf) {
            Ok(0) => Heard::Closed,
            Ok(n) => Heard::Bytes(buf[..n].to_vec()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Heard::Silence
            }
            // A reset is a close too.
            Err(_) => Heard::Closed,
        }
    }

    /// Everything until the server closes; an error if it has not within
    /// `timeout`.
    fn read_to_close(&mut self, timeout: Duration) -> io::Result<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "no close in time"));
            }
            self.set_read_timeout(left);
            match self.read(&mut buf) {
                Ok(0) => return Ok(out),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(out),
                Err(e) => return Err(e),
            }
        }
    }
}

impl Read for Sock {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Sock::Unix(s) => s.read(buf),
            Sock::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Sock {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sock::Unix(s) => s.write(buf),
            Sock::Tcp(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The listener kinds, each on a server of its own.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Socket,
    Expose,
    Http,
}

impl Kind {
    /// The `xs serve` arguments that open this kind of listener, the
    /// endpoint once `dir` is known, and its name in the server's log.
    fn args(self, port: u16) -> Vec<String> {
        match self {
            Kind::Socket => vec![],
            Kind::Expose => vec!["--expose".into(), format!("127.0.0.1:{port}")],
            // A gateway request nobody answers gets its 504 at once.
            Kind::Http => vec![
                "--http".into(),
                format!("127.0.0.1:{port}"),
                "--http-timeout".into(),
                "100".into(),
            ],
        }
    }

    fn endpoint(self, server: &Limited, port: u16) -> Endpoint {
        match self {
            Kind::Socket => Endpoint::Unix(server.sock()),
            Kind::Expose | Kind::Http => Endpoint::Tcp(port),
        }
    }

    fn log_name(self, server: &Limited, port: u16) -> String {
        match self {
            Kind::Socket => server.sock().display().to_string(),
            Kind::Expose => format!("--expose 127.0.0.1:{port}"),
            Kind::Http => format!("--http 127.0.0.1:{port}"),
        }
    }

    /// The answer a normal client gets: the API's `GET /` is 200, a
    /// gateway request nobody handles is 504.
    fn normal_status(self) -> u16 {
        match self {
            Kind::Http => 504,
            Kind::Socket | Kind::Expose => 200,
        }
    }
}

/// Retries `GET /` until it gets the listener's normal answer; how long
/// that took. Fails after `within`.
fn served_within(endpoint: &Endpoint, kind: Kind, within: Duration, server: &Limited) -> Duration {
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < within {
        match endpoint.get("/", ms(2000)) {
            Ok((status, _)) if status == kind.normal_status() => return started.elapsed(),
            Ok((status, _)) => last = format!("status {status}"),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(ms(20));
    }
    panic!(
        "{kind:?}: no normal answer within {within:?} (last: {last}); server log:\n{}",
        server.stderr()
    );
}

/// The lines of the server's log that mention `what` on listener `name`.
fn log_lines(server: &Limited, name: &str, what: &str) -> usize {
    server
        .stderr()
        .lines()
        .filter(|l| l.contains(&format!("xs: {name}: ")) && l.contains(what))
        .count()
}

// ---------------------------------------------------------------------------
// The connection cap

/// 2 × `CAP` connections that never send a byte: the first `CAP` are held
/// (then closed by the idle timeout, without a byte), the rest get a 503
/// at once; a normal client is served once the idle ones are gone; the log
/// says the cap was hit, once for the burst; after the attackers leave
/// everything works.
fn cap_holds(kind: Kind) {
    let port = free_port();
    let mut args = vec![
        "--max-connections".to_string(),
        CAP.to_string(),
        "--idle-timeout".into(),
        IDLE_SECS.to_string(),
    ];
    args.extend(kind.args(port));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut server = Limited::start(Some("-n 64"), &args);
    let endpoint = kind.endpoint(&server, port);

    let attackers: Vec<Sock> = (0..2 * CAP)
        .map(|i| {
            endpoint
                .connect()
                .unwrap_or_else(|e| panic!("{kind:?}: attacker {i}: {e}"))
        })
        .collect();
    let opened = Instant::now();
    // Those beyond the cap get a 503 at once; the others hear nothing.
    let mut refused = 0;
    let is_503 = |heard: &Heard| matches!(heard, Heard::Bytes(b) if b.starts_with(b"HTTP/1.1 503"));
    let mut silent = attackers;
    while refused < CAP && opened.elapsed() < ms(IDLE_SECS * 1000 / 2) {
        let mut still = Vec::new();
        for mut sock in silent {
            match sock.listen(ms(1)) {
                Heard::Silence => still.push(sock),
                heard if is_503(&heard) => refused += 1,
                other => panic!("{kind:?}: an attacker heard {other:?}"),
            }
        }
        silent = still;
    }
    assert!(refused >= CAP, "{kind:?}: {refused} of {} refused", 2 * CAP);

    // The idle timeout closes the held ones, without a byte. (A readiness
    // probe on the socket may have counted for a moment: one more may
    // have been refused.)
    let mut held = Vec::new();
    for mut sock in silent {
        match sock.listen(Duration::from_secs(IDLE_SECS + 5)) {
            Heard::Closed => held.push(sock),
            heard if is_503(&heard) => refused += 1,
            other => panic!("{kind:?}: an idle connection heard {other:?}"),
        }
    }
    assert!(
        refused <= CAP + 1 && refused + held.len() == 2 * CAP,
        "{kind:?}: {refused} refused, {} held of {}",
        held.len(),
        2 * CAP
    );
    let closed_after = opened.elapsed();
    assert!(
        closed_after >= ms(IDLE_SECS * 1000 * 8 / 10),
        "{kind:?}: idle connections closed after {closed_after:?}, before the idle timeout"
    );

    served_within(&endpoint, kind, Duration::from_secs(5), &server);
    let name = kind.log_name(&server, port);
    assert_eq!(
        log_lines(&server, &name, "connections open (--max-connections)"),
        1,
        "{kind:?}: one log line for the burst; log:\n{}",
        server.stderr()
    );

    // The attackers leave: everything works, the store's API included.
    drop(held);
    for _ in 0..3 {
        served_within(&endpoint, kind, Duration::from_secs(5), &server);
    }
    let appended = request(&server.sock(), "POST", "/append/after", &[], b"x");
    assert_eq!(appended.status, 200, "{}", appended.text());
    assert!(server.is_running());
}

#[test]
fn the_socket_holds_its_cap_and_serves_again() {
    cap_holds(Kind::Socket);
}

#[test]
fn expose_holds_its_cap_and_serves_again() {
    cap_holds(Kind::Expose);
}

#[test]
fn the_gateway_holds_its_cap_and_serves_again() {
    cap_holds(Kind::Http);
}

/// Without `--max-connections`, the cap comes from the descriptor limit:
/// 2 × that many idle connections do not run the server out of
/// descriptors (no failed accept), and a normal client is served.
#[test]
fn the_default_cap_keeps_descriptors_for_everyone() {
    let mut server = Limited::start(Some("-n 256"), &["--idle-timeout", "30"]);
    let endpoint = Endpoint::Unix(server.sock());
    // (256 - 128 reserved) / 2 per connection, one listener.
    let cap = 64;
    let mut attackers = Vec::new();
    let mut refused = 0;
    for i in 0..2 * cap {
        let mut sock = endpoint
            .connect()
            .unwrap_or_else(|e| panic!("attacker {i}: {e}"));
        if i >= cap {
            // Past the cap the 503 comes at once.
            match sock.listen(ms(2000)) {
                Heard::Bytes(bytes) if bytes.starts_with(b"HTTP/1.1 503") => refused += 1,
                other => panic!("attacker {i}: {other:?}"),
            }
        }
        attackers.push(sock);
    }
    assert_eq!(refused, cap);
    let name = server.sock().display().to_string();
    assert_eq!(log_lines(&server, &name, "cannot accept"), 0);
    assert_eq!(
        log_lines(&server, &name, &format!("{cap} connections open")),
        1,
        "{}",
        server.stderr()
    );
    drop(attackers);
    served_within(&endpoint, Kind::Socket, Duration::from_secs(5), &server);
    assert!(server.is_running());
}

// ---------------------------------------------------------------------------
// Out of descriptors

/// With a cap above what the descriptors allow, idle connections run the
/// process out of them: accept fails, is logged, and is retried; once the
/// idle ones are closed a normal client is served and the process lives.
fn accept_errors_are_survived(kind: Kind) {
    let port = free_port();
    let mut args = vec![
        "--max-connections".to_string(),
        "1000".into(),
        "--idle-timeout".into(),
        IDLE_SECS.to_string(),
    ];
    args.extend(kind.args(port));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut server = Limited::start(Some("-n 64"), &args);
    let endpoint = kind.endpoint(&server, port);
    let name = kind.log_name(&server, port);

    // 80 connections are more than 64 descriptors hold (and fewer than a
    // listen backlog, so connecting never blocks).
    let attackers: Vec<Sock> = (0..80)
        .map(|i| {
            endpoint
                .connect()
                .unwrap_or_else(|e| panic!("{kind:?}: attacker {i}: {e}"))
        })
        .collect();
    assert!(
        wait_until(Duration::from_secs(10), || log_lines(
            &server,
            &name,
            "cannot accept"
        ) > 0),
        "{kind:?}: no failed accept logged:\n{}",
        server.stderr()
    );
    drop(attackers);
    served_within(&endpoint, kind, Duration::from_secs(10), &server);
    served_within(&endpoint, kind, Duration::from_secs(5), &server);
    assert_eq!(
        log_lines(&server, &name, "cannot accept"),
        1,
        "{kind:?}: one log line for the burst:\n{}",
        server.stderr()
    );
    let appended = request(&server.sock(), "POST", "/append/after", &[], b"x");
    assert_eq!(appended.status, 200, "{}", appended.text());
    assert!(server.is_running());
}

#[test]
fn the_socket_survives_running_out_of_descriptors() {
    accept_errors_are_survived(Kind::Socket);
}

#[test]
fn expose_survives_running_out_of_descriptors() {
    accept_errors_are_survived(Kind::Expose);
}

#[test]
fn the_gateway_survives_running_out_of_descriptors() {
    accept_errors_are_survived(Kind::Http);
}

/// The soft limit is raised to the hard one at start.
#[test]
fn the_soft_descriptor_limit_is_raised_to_the_hard_one() {
    let server = Limited::start(Some("-S -n 100"), &[]);
    let limits = fs::read_to_string(format!("/proc/{}/limits", server.pid())).expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("Max open files line");
    let numbers: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    let (soft, hard) = (numbers[0], numbers[1]);
    if hard == "100" {
        eprintln!("the hard limit is 100 here: nothing to raise");
        return;
    }
    assert_eq!(soft, hard, "{line}");
}

// ---------------------------------------------------------------------------
// The idle timeout

/// A connection that sends nothing, and a kept-alive one once answered,
/// are closed after the idle timeout without a byte; one whose head
/// arrives a byte at a time is closed too; a follower is not.
#[test]
fn idle_connections_are_closed_but_followers_are_not() {
    let server = Server::start(&["--idle-timeout", &IDLE_SECS.to_string()]);
    let sock = server.sock();
    let endpoint = Endpoint::Unix(sock.clone());
    let within = Duration::from_secs(IDLE_SECS + 4);

    let mut silent = endpoint.connect().expect("connect");
    let mut kept = endpoint.connect().expect("connect");
    let mut follower = server.follow("/?follow=true&new=true");
    let opened = Instant::now();

    // Kept alive: one request, answered whole, then nothing.
    kept.write_all(b"GET /version HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("send");
    let mut answer = Vec::new();
    while !answer.ends_with(b"}") {
        match kept.listen(ms(5000)) {
            Heard::Bytes(bytes) => answer.extend_from_slice(&bytes),
            other => panic!("kept-alive request: {other:?} after {answer:?}"),
        }
    }
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");

    // A head sent a byte every 50 ms never completes in time.
    let mut slow = endpoint.connect().expect("connect");
    let slow_opened = Instant::now();
    let mut slow_closed = None;
    for byte in b"GET /version HTTP/1.1\r\nX-Slow: "
        .iter()
        .chain([b'a'; 400].iter())
    {
        if slow.write_all(&[*byte]).is_err() {
            slow_closed = Some(slow_opened.elapsed());
            break;
        }
        std::thread::sleep(ms(50));
    }
    let slow_closed = slow_closed.expect("a head sent a byte at a time was never closed");
    assert!(
        slow_closed < within,
        "slow head closed after {slow_closed:?}"
    );

    for (what, conn) in [("silent", &mut silent), ("kept-alive", &mut kept)] {
        match conn.listen(within) {
            Heard::Closed => {}
            other => panic!("{what} connection: {other:?}"),
        }
    }
    assert!(opened.elapsed() >= ms(IDLE_SECS * 1000 * 8 / 10));

    // The follower outlived them all: it still gets what is appended.
    let frame = server.append("after.idle", b"");
    loop {
        let got = follower.next_frame(ms(5000));
        if got["id"] == frame["id"] {
            break;
        }
    }
}

// ---------------------------------------------------------------------------
// Request bodies that stop coming

/// The head of a request with a body on `kind`'s listener, and the part of
/// the body a stalling client sends before it falls silent: `i` picks a
/// small body (read before any handler runs), a large one (read by the
/// handler) or a chunked one.
fn stalled_request(kind: Kind, i: usize) -> Vec<u8> {
    let path = match kind {
        Kind::Http => "/upload",
        Kind::Socket | Kind::Expose => "/append/stalled",
    };
    let head = format!("POST {path} HTTP/1.1\r\nHost: localhost\r\n");
    let mut bytes = match i % 3 {
        0 => format!("{head}Content-Length: 10\r\n\r\n").into_bytes(),
        1 => format!("{head}Content-Length: 100000\r\n\r\n").into_bytes(),
        _ => format!("{head}Transfer-Encoding: chunked\r\n\r\n1000\r\nabc").into_bytes(),
    };
    if i % 3 == 1 {
        bytes.extend_from_slice(&[b'x'; 2000]);
    }
    bytes
}

/// 2 × `CAP` connections that send a head declaring a body and then stall:
/// those within the cap get a 408 after the idle timeout and are closed
/// (before, a silent body held its connection for ever, so the cap was
/// full for good), the rest a 503 at once; a normal client is then served.
fn stalled_bodies_are_closed(kind: Kind) {
    let port = free_port();
    let mut args = vec![
        "--max-connections".to_string(),
        CAP.to_string(),
        "--idle-timeout".into(),
        IDLE_SECS.to_string(),
    ];
    args.extend(kind.args(port));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Limited::start(Some("-n 64"), &args);
    let endpoint = kind.endpoint(&server, port);

    // Connect them all first: the ones past the cap answer 503 at once
    // (writing to them could reset the connection before it is read).
    let attackers: Vec<Sock> = (0..2 * CAP)
        .map(|i| {
            endpoint
                .connect()
                .unwrap_or_else(|e| panic!("{kind:?}: attacker {i}: {e}"))
        })
        .collect();
    let opened = Instant::now();
    let is_503 = |bytes: &[u8]| bytes.starts_with(b"HTTP/1.1 503");
    let mut refused = 0;
    let mut silent = attackers;
    while refused < CAP && opened.elapsed() < ms(IDLE_SECS * 1000 / 2) {
        let mut still = Vec::new();
        for mut sock in silent {
            match sock.listen(ms(1)) {
                Heard::Silence => still.push(sock),
                Heard::Bytes(bytes) if is_503(&bytes) => refused += 1,
                other => panic!("{kind:?}: an attacker heard {other:?}"),
            }
        }
        silent = still;
    }
    assert!(refused >= CAP, "{kind:?}: {refused} of {} refused", 2 * CAP);

    // The held ones send a head and part of a body, then nothing.
    for (i, sock) in silent.iter_mut().enumerate() {
        sock.write_all(&stalled_request(kind, i))
            .unwrap_or_else(|e| panic!("{kind:?}: stalling client {i}: {e}"));
    }
    let stalled = Instant::now();
    let mut timed_out = 0;
    for (i, mut sock) in silent.into_iter().enumerate() {
        let answer = sock
            .read_to_close(Duration::from_secs(IDLE_SECS + 5))
            .unwrap_or_else(|e| panic!("{kind:?}: stalled body {i} was never closed: {e}"));
        if is_503(&answer) {
            // A readiness probe may have counted for a moment.
            refused += 1;
            continue;
        }
        assert!(
            answer.starts_with(b"HTTP/1.1 408"),
            "{kind:?}: stalled body {i}: {:?}",
            String::from_utf8_lossy(&answer)
        );
        timed_out += 1;
    }
    let closed_after = stalled.elapsed();
    assert!(
        refused <= CAP + 1 && refused + timed_out == 2 * CAP,
        "{kind:?}: {refused} refused, {timed_out} timed out of {}",
        2 * CAP
    );
    assert!(
        closed_after >= ms(IDLE_SECS * 1000 * 8 / 10),
        "{kind:?}: stalled bodies closed after {closed_after:?}, before the idle timeout"
    );
    served_within(&endpoint, kind, Duration::from_secs(5), &server);
    let appended = request(&server.sock(), "POST", "/append/after", &[], b"x");
    assert_eq!(appended.status, 200, "{}", appended.text());
}

#[test]
fn the_socket_closes_stalled_bodies() {
    stalled_bodies_are_closed(Kind::Socket);
}

#[test]
fn expose_closes_stalled_bodies() {
    stalled_bodies_are_closed(Kind::Expose);
}

#[test]
fn the_gateway_closes_stalled_bodies() {
    stalled_bodies_are_closed(Kind::Http);
}

/// The idle timeout bounds a pause in a body, not the whole body: uploads
/// that send a byte every 300 ms for 3 s with `--idle-timeout 1` (a small
/// body, a large one, a chunked one, at once) are stored whole.
#[test]
fn slow_uploads_that_keep_sending_are_stored() {
    let server = Server::start(&["--idle-timeout", &IDLE_SECS.to_string()]);
    let endpoint = Endpoint::Unix(server.sock());
    let slow_part = b"slow bytes";
    let uploads: Vec<_> = (0..3)
        .map(|i| {
            let endpoint = endpoint.clone();
            std::thread::spawn(move || {
                let fast_part = if i == 1 { vec![b'x'; 4000] } else { Vec::new() };
                let body = [fast_part.as_slice(), slow_part].concat();
                let mut sock = endpoint.connect().expect("connect");
                let chunked = i == 2;
                let framing = if chunked {
                    "Transfer-Encoding: chunked".to_string()
                } else {
                    format!("Content-Length: {}", body.len())
                };
                let head = format!(
                    "POST /append/slow{i} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
                     {framing}\r\n\r\n"
                );
                sock.write_all(head.as_bytes()).expect("head");
                sock.write_all(&fast_part).expect("fast part");
                for byte in slow_part {
                    std::thread::sleep(ms(300));
                    if chunked {
                        sock.write_all(b"1\r\n").expect("chunk size");
                    }
                    sock.write_all(&[*byte]).expect("a slow byte");
                    if chunked {
                        sock.write_all(b"\r\n").expect("chunk end");
                    }
                }
                if chunked {
                    sock.write_all(b"0\r\n\r\n").expect("last chunk");
                }
                let answer = sock.read_to_close(ms(5000)).expect("answer");
                (i, body, answer)
            })
        })
        .collect();
    for upload in uploads {
        let (i, body, answer) = upload.join().expect("upload thread");
        let text = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with(b"HTTP/1.1 200"), "upload {i}: {text}");
        let frames = server.frames(&format!("/?topic=slow{i}"));
        let hash = frames[0]["hash"].as_str().expect("a payload hash");
        let stored = server.get(&format!("/cas/{hash}"));
        assert_eq!(stored.body, body, "upload {i}");
    }
}

/// A slow upload to the gateway is read whole too: its request reaches
/// the store (nobody answers it: 504), not a 408.
#[test]
fn a_slow_upload_to_the_gateway_is_read_whole() {
    let port = free_port();
    // Kept (not ephemeral), so its payload can be read back.
    let mut args = vec![
        "--idle-timeout".to_string(),
        IDLE_SECS.to_string(),
        "--http-ttl".into(),
        "forever".into(),
    ];
    args.extend(Kind::Http.args(port));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Limited::start(None, &args);
    let mut sock = Endpoint::Tcp(port).connect().expect("connect");
    let body = b"slow bytes";
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    sock.write_all(head.as_bytes()).expect("head");
    for byte in body {
        std::thread::sleep(ms(300));
        sock.write_all(&[*byte]).expect("a slow byte");
    }
    let answer = sock.read_to_close(ms(5000)).expect("answer");
    assert!(
        answer.starts_with(b"HTTP/1.1 504"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    let frames = request(&server.sock(), "GET", "/?topic=http.request", &[], b"").frames();
    assert_eq!(frames.len(), 1, "{frames:?}");
    let hash = frames[0]["hash"].as_str().expect("a payload hash");
    let stored = request(&server.sock(), "GET", &format!("/cas/{hash}"), &[], b"");
    assert_eq!(stored.body, body);
}

// ---------------------------------------------------------------------------
// Limits too large to count

/// `--idle-timeout` and `--max-connections` at u64::MAX mean no limit:
/// requests, with and without a body, are served (an idle timeout that
/// large once overflowed the clock and panicked every connection).
#[test]
fn the_largest_limits_mean_none() {
    let max = u64::MAX.to_string();
    let server = Server::start(&["--idle-timeout", &max, "--max-connections", &max]);
    for _ in 0..3 {
        assert_eq!(server.get("/version").status, 200);
    }
    let big = vec![b'y'; 100_000];
    let frame = server.append("large.limits", &big);
    let stored = server.get(&format!("/cas/{}", frame["hash"].as_str().expect("hash")));
    assert_eq!(stored.body, big);
    assert!(!server.stderr().contains("panicked"), "{}", server.stderr());
}

// ---------------------------------------------------------------------------
// Start-up

/// From the moment the socket appears, `GET /` is sent again and again:
/// the first answer already holds `xs.start`.
#[test]
fn the_first_answer_sees_xs_start() {
    for run in 0..3 {
        let mut server = Limited::spawn(None, &[]);
        let sock = server.sock();
        let deadline = Instant::now() + START_TIMEOUT;
        let first = loop {
            assert!(server.is_running(), "xs serve exited:\n{}", server.stderr());
            assert!(Instant::now() < deadline, "no answer:\n{}", server.stderr());
            if let Ok(response) = try_request(&sock, "GET", "/", &[], b"", START_TIMEOUT) {
                break response;
            }
            std::thread::sleep(Duration::from_micros(100));
        };
        assert_eq!(first.status, 200, "run {run}: {}", first.text());
        assert!(
            first.text().contains("\"topic\":\"xs.start\""),
            "run {run}: the first answer has no xs.start: {:?}",
            first.text()
        );
    }
}

/// A follow sent the moment the socket takes connections gets `xs.start`
/// before `xs.threshold`.
#[test]
fn a_follow_from_the_first_moment_sees_xs_start_before_the_threshold() {
    let mut server = Limited::spawn(None, &[]);
    let sock = server.sock();
    let deadline = Instant::now() + START_TIMEOUT;
    let mut conn = loop {
        assert!(server.is_running(), "xs serve exited:\n{}", server.stderr());
        assert!(
            Instant::now() < deadline,
            "no connection:\n{}",
            server.stderr()
        );
        if let Ok(conn) = UnixStream::connect(&sock) {
            break conn;
        }
        std::thread::sleep(Duration::from_micros(100));
    };
    conn.write_all(&request_bytes("GET", "/?follow=true", &[], b""))
        .expect("send");
    conn.set_read_timeout(Some(START_TIMEOUT)).unwrap();
    let mut seen = Vec::new();
    let threshold = b"\"topic\":\"xs.threshold\"";
    while find(&seen, threshold).is_none() {
        let mut buf = [0u8; 4096];
        let n = conn.read(&mut buf).expect("read the follow");
        assert!(
            n > 0,
            "the follow ended: {:?}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    let start = find(&seen, b"\"topic\":\"xs.start\"");
    assert!(
        start.is_some_and(|at| Some(at) < find(&seen, threshold)),
        "xs.start not before xs.threshold: {:?}",
        String::from_utf8_lossy(&seen)
    );
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
