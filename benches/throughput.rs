//! End-to-end benchmark of `xs serve`: appends, replay, follow latency,
//! start-up, idle memory and the one-shot CLI.
//!
//! Usage (always with the shared bench target dir):
//!
//! ```text
//! CARGO_TARGET_DIR=/work/target-bench cargo bench --bench throughput
//! CARGO_TARGET_DIR=/work/target-bench cargo bench --bench throughput -- replay follow-rtt
//! ```
//!
//! Names after `--` select dimensions (default: all, in this order):
//! `append-16-always`, `append-1-always`, `append-1-never`, `replay`,
//! `follow-rtt`, `startup`, `idle-rss`, `oneshot-append`.
//!
//! The `xs` binary: `cargo bench` builds the package's `xs` binary in the
//! bench profile (which inherits `[profile.release]`) and hands its path to
//! this file as `env!("CARGO_BIN_EXE_xs")`; nothing needs building first.
//! To measure some other build, set `XS_BIN=/path/to/xs` at run time.
//!
//! Method. Every dimension runs `xs serve` on a fresh temporary store
//! (`tempfile`, so `TMPDIR` picks the file system — keep it on a real disk,
//! not tmpfs, or `--fsync always` measures nothing) with its stdout and
//! stderr sent to /dev/null. Clients are plain threads speaking HTTP/1.1
//! keep-alive over `<dir>/sock`: one connection per client thread, a request
//! with `Content-Length`, the response head parsed with `httparse`, the body
//! read by `Content-Length` (or de-chunked for streams). Client connections
//! are opened one at a time, each answering `GET /version` before the next
//! opens (see `Server::connect_served`). Payloads are 64 bytes and
//! distinct (client and sequence number inside), so every append stores a
//! new payload. Appends go to topic `bench`.
//!
//! - `append-16-always`, `append-1-always`, `append-1-never`: N clients
//!   append back to back for 3 s after a 0.3 s warm-up that is not counted;
//!   appends/s, plus latency p50/p99 per request and the server's CPU time
//!   per append (from /proc/<pid>/stat, all threads; 10 ms ticks), which
//!   says more than the rate when other work shares the CPUs.
//! - `replay`: 16 clients fill a `--fsync never` store with 100,000 appends;
//!   it waits for the server to go idle (2 s with next to no CPU use: its
//!   housekeeper works off the fill's pending payloads; at most 10 s,
//!   `settle_s` and `settled`), measures the server's own CPU use over 1 s
//!   (`bg_cpu_pct`), then times one `GET /` on a new connection from
//!   sending the request to the final chunk; frames/s counts the lines
//!   received (the fill's rate and slowest append, and the server's CPU
//!   time during the read, are reported too).
//! - `follow-rtt`: a follower on `GET /?follow=true&new=true`; one client
//!   appends 2,000 frames one at a time (after a warm-up the follower has
//!   seen); each is timed from sending the append until the follower thread
//!   has read that frame's line (matched by id).
//! - `startup`: spawn `xs serve <fresh dir>`, poll the socket every 100 µs
//!   until `GET /version` answers 200; median (and min/max) of 10 runs.
//! - `idle-rss`: VmRSS from /proc/<pid>/status after 10 appends and 1 s
//!   idle (also the CPU time used in that idle second).
//! - `oneshot-append`: `xs append <dir> bench` against a `--fsync never`
//!   server, stdin a pipe holding 64 bytes, wall time from spawn to exit;
//!   median of 30. If the command exits non-zero it is reported as skipped.
//!
//! Output: one line per dimension, `<name> <key>=<value> ... status=<ok|MISS>
//! target=<target>`, then a summary. The figures are wall-clock: on a
//! shared machine they move with its load, so `/proc/loadavg` is printed
//! before and after. The exit status is non-zero when a
//! dimension fails to run (a missed target is not a failure). Every wait is
//! bounded: sockets have 30 s timeouts, the replay fill stops after 300 s
//! (the replay then reads what is there, and `filled=` shows the shortfall),
//! follow-rtt stops sampling after 120 s, child processes are waited with
//! deadlines, and servers are stopped (SIGTERM, then SIGKILL after 5 s) by a
//! drop guard, so also when a dimension panics.
//!
//! Run without `--bench` (as `cargo test --all-targets` does) the binary
//! only prints a note and exits, so test runs stay fast.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// Payload size of every append.
const PAYLOAD: usize = 64;
/// Socket read/write timeout: no wait on the server is unbounded.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a new client connection may take to answer `GET /version`.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a server may take to answer its first `GET /version`.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Counted window of the append dimensions, and the warm-up before it.
const APPEND_WINDOW: Duration = Duration::from_secs(3);
const APPEND_WARMUP: Duration = Duration::from_millis(300);
const REPLAY_FRAMES: u64 = 100_000;
/// The replay fill stops here even if short of `REPLAY_FRAMES`.
const REPLAY_FILL_LIMIT: Duration = Duration::from_secs(300);
const FOLLOW_SAMPLES: usize = 2_000;
/// The most the replay waits for the server to go idle after the fill.
const SETTLE_LIMIT: Duration = Duration::from_secs(10);
/// follow-rtt stops sampling here even if short of `FOLLOW_SAMPLES`.
const FOLLOW_LIMIT: Duration = Duration::from_secs(120);
const STARTUP_RUNS: usize = 10;
const ONESHOT_RUNS: usize = 30;

type Res<T> = Result<T, String>;

const DIMENSIONS: &[&str] = &[
    "append-16-always",
    "append-1-always",
    "append-1-never",
    "replay",
    "follow-rtt",
    "startup",
    "idle-rss",
    "oneshot-append",
];

/// The outcome of one dimension.
enum Outcome {
    /// The printed line's keys, the headline for the summary, and whether
    /// the target was met.
    Measured {
        keys: Vec<(&'static str, String)>,
        headline: String,
        met: bool,
        target: &'static str,
    },
    Skipped(String),
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        println!("throughput: not a bench run; use `cargo bench --bench throughput`");
        return;
    }
    let names: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with("--"))
        .map(String::as_str)
        .collect();
    for name in &names {
        if !DIMENSIONS.contains(name) {
            eprintln!(
                "unknown dimension '{name}'; known: {}",
                DIMENSIONS.join(" ")
            );
            std::process::exit(2);
        }
    }
    let selected: Vec<&str> = DIMENSIONS
        .iter()
        .copied()
        .filter(|d| names.is_empty() || names.contains(d))
        .collect();

    let bin = xs_bin();
    if !bin.exists() {
        eprintln!("xs binary not found at {}", bin.display());
        std::process::exit(2);
    }
    println!("xs binary: {}", bin.display());
    print_load("before");

    let mut summary = Vec::new();
    let mut failed = false;
    for name in selected {
        let run = std::panic::catch_unwind(|| run_dimension(name, &bin));
        let result = match run {
            Ok(result) => result,
            Err(panic) => Err(format!("panicked: {}", panic_text(&panic))),
        };
        let row = match result {
            Ok(Outcome::Measured {
                keys,
                headline,
                met,
                target,
            }) => {
                let mut line = name.to_string();
                for (key, value) in &keys {
                    line.push_str(&format!(" {key}={value}"));
                }
                let status = if met { "ok" } else { "MISS" };
                println!("{line} status={status} target={target}");
                format!("{name:<17} {headline:<24} {status:<8} target {target}")
            }
            Ok(Outcome::Skipped(reason)) => {
                println!("{name} skipped: {reason}");
                format!("{name:<17} {:<24} skipped", "-")
            }
            Err(e) => {
                failed = true;
                println!("{name} failed: {e}");
                format!("{name:<17} {:<24} FAILED", "-")
            }
        };
        summary.push(row);
    }
    print_load("after");
    println!("\nsummary");
    for row in summary {
        println!("  {row}");
    }
    if failed {
        std::process::exit(1);
    }
}

/// The machine's load, for reading the figures (other builds skew them).
fn print_load(when: &str) {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("load {when}: {} (cpus {cpus})", load.trim());
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".into()
    }
}

fn xs_bin() -> PathBuf {
    match std::env::var_os("XS_BIN") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_BIN_EXE_xs")),
    }
}

fn run_dimension(name: &str, bin: &Path) -> Res<Outcome> {
    match name {
        "append-16-always" => append(bin, 16, "always", 8_000.0, ">=8000/s"),
        "append-1-always" => append(bin, 1, "always", 1_200.0, ">=1200/s"),
        "append-1-never" => append(bin, 1, "never", 20_000.0, ">=20000/s"),
        "replay" => replay(bin),
        "follow-rtt" => follow_rtt(bin),
        "startup" => startup(bin),
        "idle-rss" => idle_rss(bin),
        "oneshot-append" => oneshot_append(bin),
        other => Err(format!("no such dimension {other}")),
    }
}

// ---------------------------------------------------------------- server

/// A running `xs serve` on a temporary store; stopped on drop.
struct Server {
    child: Child,
    sock: PathBuf,
    store: PathBuf,
    /// Just before the process was spawned.
    spawned_at: Instant,
    // Dropped after `Drop::drop` has stopped the child.
    _tmp: tempfile::TempDir,
}

impl Server {
    /// Starts a server and waits until it answers `GET /version`.
    fn start(bin: &Path, fsync: &str) -> Res<Server> {
        let server = Server::spawn(bin, fsync)?;
        server.wait_ready(START_TIMEOUT)?;
        Ok(server)
    }

    /// Spawns a server without waiting for it.
    fn spawn(bin: &Path, fsync: &str) -> Res<Server> {
        let tmp = tempfile::Builder::new()
            .prefix("xs-bench")
            .tempdir()
            .map_err(|e| format!("tempdir: {e}"))?;
        let store = tmp.path().join("store");
        let spawned_at = Instant::now();
        let child = Command::new(bin)
            .arg("serve")
            .arg(&store)
            .arg("--fsync")
            .arg(fsync)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawning {}: {e}", bin.display()))?;
        Ok(Server {
            child,
            sock: store.join("sock"),
            store,
            spawned_at,
            _tmp: tmp,
        })
    }

    /// Polls the socket every 100 µs until `GET /version` answers 200.
    fn wait_ready(&self, timeout: Duration) -> Res<()> {
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

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn connect(&self) -> Res<Conn> {
        Conn::connect(&self.sock).map_err(|e| format!("connect {}: {e}", self.sock.display()))
    }

    /// Opens `n` connections one at a time, each answering `GET /version`
    /// before the next is opened, so every client is known to be served
    /// before timing starts. Until c4e8722 a burst was not safe: tiny_http's
    /// task pool queued connections opened together behind busy keep-alive
    /// connections (typically 4 of 16 got a thread, the rest waited until
    /// one of those closed); a connection left unserved now fails here,
    /// within `HANDSHAKE_TIMEOUT`, instead of skewing the figures.
    fn connect_served(&self, n: usize) -> Res<Vec<Conn>> {
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

/// A keep-alive HTTP/1.1 connection over the Unix socket.
struct Conn {
    stream: UnixStream,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
}

/// What a response head says about its body.
struct Head {
    status: u16,
    content_length: Option<usize>,
    chunked: bool,
}

impl Conn {
    fn connect(path: &Path) -> io::Result<Conn> {
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(Conn {
            stream,
            buf: vec![0; 256 * 1024],
            pos: 0,
            len: 0,
        })
    }

    /// Sends one request (with `Content-Length` when it has a body).
    fn send(&mut self, method: &str, path: &str, body: &[u8]) -> io::Result<()> {
        let mut out = Vec::with_capacity(128 + body.len());
        write!(out, "{method} {path} HTTP/1.1\r\nHost: localhost\r\n")?;
        if !body.is_empty() || method == "POST" {
            write!(out, "Content-Length: {}\r\n", body.len())?;
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
        self.stream.write_all(&out)
    }

    /// One request and its whole (non-streamed) response.
    fn request(&mut self, method: &str, path: &str, body: &[u8]) -> io::Result<(u16, Vec<u8>)> {
        self.send(method, path, body)?;
        let head = self.read_head()?;
        let mut body = Vec::new();
        if head.chunked {
            self.read_chunked(|data| {
                body.extend_from_slice(data);
                true
            })?;
        } else {
            let n = head
                .content_length
                .ok_or_else(|| other("response without Content-Length"))?;
            self.read_body(n, &mut body)?;
        }
        Ok((head.status, body))
    }

    /// Reads more bytes into the buffer; an error at end of stream.
    fn fill(&mut self) -> io::Result<()> {
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

    fn read_head(&mut self) -> io::Result<Head> {
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

    fn read_body(&mut self, n: usize, out: &mut Vec<u8>) -> io::Result<()> {
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
    fn read_line(&mut self) -> io::Result<String> {
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
    fn read_chunked(&mut self, mut on_data: impl FnMut(&[u8]) -> bool) -> io::Result<()> {
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

fn other(text: &str) -> io::Error {
    io::Error::other(text.to_string())
}

/// A distinct 64-byte payload for client `client`, append `seq`.
fn payload(client: usize, seq: u64) -> [u8; PAYLOAD] {
    let mut p = [b'.'; PAYLOAD];
    let text = format!("client {client:04} seq {seq:016} ");
    p[..text.len()].copy_from_slice(text.as_bytes());
    p[PAYLOAD - 1] = b'\n';
    p
}

/// One append; the frame JSON on success.
fn append_one(conn: &mut Conn, client: usize, seq: u64) -> Res<Vec<u8>> {
    let (status, body) = conn
        .request("POST", "/append/bench", &payload(client, seq))
        .map_err(|e| format!("append: {e}"))?;
    if status != 200 {
        return Err(format!(
            "append answered {status}: {}",
            String::from_utf8_lossy(&body)
        ));
    }
    Ok(body)
}

/// The `"id"` of a frame JSON line.
fn frame_id(json: &[u8]) -> Option<&[u8]> {
    const KEY: &[u8] = b"\"id\":\"";
    let at = json.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    json.get(at..at + 25)
}

// ---------------------------------------------------------------- stats

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// A process's CPU time (user + system, all threads) from /proc; clock
/// ticks, so 10 ms resolution.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are
    // fields 14 and 15 of the whole line.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|v| v.parse::<u64>().ok()))
        .sum();
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_nanos(ticks * 1_000_000_000 / per_second)
}

/// Waits until the process has used at most 10 ms of CPU in each of eight
/// 250 ms intervals in a row (a syncfs waits without using CPU, so one
/// quiet interval proves little), or `limit` passes; returns the time
/// waited and whether it went quiet.
fn wait_idle(pid: u32, limit: Duration) -> (Duration, bool) {
    let started = Instant::now();
    let mut quiet = 0;
    while quiet < 8 && started.elapsed() < limit {
        let before = cpu_time(pid);
        std::thread::sleep(Duration::from_millis(250));
        if cpu_time(pid).saturating_sub(before) <= Duration::from_millis(10) {
            quiet += 1;
        } else {
            quiet = 0;
        }
    }
    (started.elapsed(), quiet >= 8)
}

fn sleep_until(when: Instant) {
    let now = Instant::now();
    if when > now {
        std::thread::sleep(when - now);
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

// ---------------------------------------------------------------- dimensions

/// `clients` threads append back to back; counted over `APPEND_WINDOW`.
fn append(
    bin: &Path,
    clients: usize,
    fsync: &str,
    target: f64,
    target_text: &'static str,
) -> Res<Outcome> {
    let server = Server::start(bin, fsync)?;
    let conns = server.connect_served(clients)?;
    let barrier = Arc::new(Barrier::new(clients + 1));
    let start = Arc::new(std::sync::OnceLock::<Instant>::new());
    let mut handles = Vec::new();
    for (client, mut conn) in conns.into_iter().enumerate() {
        let barrier = barrier.clone();
        let start = start.clone();
        handles.push(std::thread::spawn(move || -> Res<Vec<Duration>> {
            barrier.wait();
            let begin = *start.get().expect("start set before the barrier");
            let from = begin + APPEND_WARMUP;
            let until = from + APPEND_WINDOW;
            let mut latencies = Vec::new();
            let mut seq = 0;
            loop {
                let sent = Instant::now();
                if sent >= until {
                    break;
                }
                append_one(&mut conn, client, seq)?;
                seq += 1;
                let done = Instant::now();
                if sent >= from && done <= until {
                    latencies.push(done - sent);
                }
            }
            Ok(latencies)
        }));
    }
    let begin = Instant::now();
    start.set(begin).expect("set once");
    barrier.wait();
    // The server's CPU time over the counted window.
    sleep_until(begin + APPEND_WARMUP);
    let cpu_from = cpu_time(server.pid());
    sleep_until(begin + APPEND_WARMUP + APPEND_WINDOW);
    let cpu_used = cpu_time(server.pid()).saturating_sub(cpu_from);
    let mut latencies = Vec::new();
    let mut errors = Vec::new();
    for handle in handles {
        match handle.join() {
            Ok(Ok(l)) => latencies.extend(l),
            Ok(Err(e)) => errors.push(e),
            Err(p) => errors.push(format!("client panicked: {}", panic_text(&p))),
        }
    }
    drop(server);
    if let Some(e) = errors.into_iter().next() {
        return Err(e);
    }
    latencies.sort();
    let rate = latencies.len() as f64 / APPEND_WINDOW.as_secs_f64();
    let cpu_per_append = cpu_used.as_secs_f64() * 1e6 / latencies.len().max(1) as f64;
    Ok(Outcome::Measured {
        keys: vec![
            ("appends_per_s", format!("{rate:.0}")),
            ("appends", latencies.len().to_string()),
            ("clients", clients.to_string()),
            ("secs", format!("{:.1}", APPEND_WINDOW.as_secs_f64())),
            ("p50_ms", ms(percentile(&latencies, 0.50))),
            ("p99_ms", ms(percentile(&latencies, 0.99))),
            ("server_cpu_us_per_append", format!("{cpu_per_append:.0}")),
        ],
        headline: format!("{rate:.0} appends/s"),
        met: rate >= target,
        target: target_text,
    })
}

/// Fills a store with `REPLAY_FRAMES` appends (16 clients, fsync never),
/// then times one `GET /`.
fn replay(bin: &Path) -> Res<Outcome> {
    let server = Server::start(bin, "never")?;
    let next = Arc::new(AtomicU64::new(0));
    let filled = Arc::new(AtomicU64::new(0));
    let conns = server.connect_served(16)?;
    let fill_start = Instant::now();
    let fill_deadline = fill_start + REPLAY_FILL_LIMIT;
    let mut handles = Vec::new();
    for (client, mut conn) in conns.into_iter().enumerate() {
        let next = next.clone();
        let filled = filled.clone();
        handles.push(std::thread::spawn(move || -> Res<Duration> {
            let mut slowest = Duration::ZERO;
            while Instant::now() < fill_deadline {
                let seq = next.fetch_add(1, Ordering::Relaxed);
                if seq >= REPLAY_FRAMES {
                    break;
                }
                let sent = Instant::now();
                append_one(&mut conn, client, seq)?;
                slowest = slowest.max(sent.elapsed());
                filled.fetch_add(1, Ordering::Relaxed);
            }
            Ok(slowest)
        }));
    }
    let mut fill_max = Duration::ZERO;
    for handle in handles {
        let slowest = handle
            .join()
            .map_err(|p| format!("filler panicked: {}", panic_text(&p)))??;
        fill_max = fill_max.max(slowest);
    }
    let fill = fill_start.elapsed();
    // Short of the goal only when the fill hit its time limit: the replay
    // is then measured on what is there, and `filled` says so.
    let filled = filled.load(Ordering::Relaxed);
    // Let the housekeeper work off the fill (pending payloads: syncfs,
    // then forgetting their journaled copies) so the replay is timed alone.
    let (settle, settled) = wait_idle(server.pid(), SETTLE_LIMIT);
    // What the server burns by itself just before the read.
    let bg_from = cpu_time(server.pid());
    std::thread::sleep(Duration::from_secs(1));
    let bg_cpu = cpu_time(server.pid()).saturating_sub(bg_from);

    let mut conn = server.connect()?;
    let cpu_from = cpu_time(server.pid());
    let started = Instant::now();
    conn.send("GET", "/", &[])
        .map_err(|e| format!("GET /: {e}"))?;
    let head = conn.read_head().map_err(|e| format!("GET /: {e}"))?;
    if head.status != 200 || !head.chunked {
        return Err(format!(
            "GET / answered {} (chunked: {})",
            head.status, head.chunked
        ));
    }
    let mut lines: u64 = 0;
    let mut bytes: u64 = 0;
    conn.read_chunked(|data| {
        bytes += data.len() as u64;
        lines += data.iter().filter(|&&b| b == b'\n').count() as u64;
        true
    })
    .map_err(|e| format!("reading GET /: {e}"))?;
    let elapsed = started.elapsed();
    let cpu_used = cpu_time(server.pid()).saturating_sub(cpu_from);
    drop(server);
    if lines < filled {
        return Err(format!(
            "GET / returned {lines} lines, expected at least {filled}"
        ));
    }
    let rate = lines as f64 / elapsed.as_secs_f64();
    Ok(Outcome::Measured {
        keys: vec![
            ("frames_per_s", format!("{rate:.0}")),
            ("frames", lines.to_string()),
            ("ms", ms(elapsed)),
            ("mb", format!("{:.1}", bytes as f64 / 1e6)),
            ("server_cpu_ms", ms(cpu_used)),
            ("filled", filled.to_string()),
            ("fill_s", format!("{:.1}", fill.as_secs_f64())),
            (
                "fill_appends_per_s",
                format!("{:.0}", filled as f64 / fill.as_secs_f64()),
            ),
            ("fill_max_ms", ms(fill_max)),
            ("settle_s", format!("{:.1}", settle.as_secs_f64())),
            ("settled", settled.to_string()),
            ("bg_cpu_pct", format!("{:.0}", bg_cpu.as_secs_f64() * 100.0)),
        ],
        headline: format!("{rate:.0} frames/s"),
        met: rate >= 1_000_000.0,
        target: ">=1000000/s",
    })
}

/// Append-to-follower latency, one frame at a time.
fn follow_rtt(bin: &Path) -> Res<Outcome> {
    let server = Server::start(bin, "never")?;
    let mut follower = server.connect()?;
    let closer = follower
        .stream
        .try_clone()
        .map_err(|e| format!("clone: {e}"))?;
    let (lines_tx, lines_rx) = crossbeam_channel::unbounded::<(Vec<u8>, Instant)>();
    let reader = std::thread::spawn(move || -> Res<()> {
        follower
            .send("GET", "/?follow=true&new=true", &[])
            .map_err(|e| format!("follow: {e}"))?;
        let head = follower.read_head().map_err(|e| format!("follow: {e}"))?;
        if head.status != 200 || !head.chunked {
            return Err(format!("follow answered {}", head.status));
        }
        let mut line = Vec::new();
        // Ends when the main thread shuts the socket down.
        let _ = follower.read_chunked(|data| {
            for &b in data {
                if b == b'\n' {
                    let seen = Instant::now();
                    if !line.is_empty() && lines_tx.send((std::mem::take(&mut line), seen)).is_err()
                    {
                        return false;
                    }
                    line.clear();
                } else {
                    line.push(b);
                }
            }
            true
        });
        Ok(())
    });

    let result = (|| -> Res<Vec<Duration>> {
        let mut conn = server.connect_served(1)?.remove(0);
        // Warm up until the follower is live and has seen one of ours.
        let warm_deadline = Instant::now() + Duration::from_secs(10);
        let mut seq = 0;
        'warm: loop {
            let frame = append_one(&mut conn, 0, seq)?;
            seq += 1;
            let id = frame_id(&frame).ok_or("append answer without id")?.to_vec();
            while let Ok((line, _)) = lines_rx.recv_timeout(Duration::from_millis(100)) {
                if frame_id(&line) == Some(&id[..]) {
                    break 'warm;
                }
            }
            if Instant::now() > warm_deadline {
                return Err("the follower saw no appended frame within 10 s".into());
            }
        }
        for _ in 0..100 {
            append_one(&mut conn, 0, seq)?;
            seq += 1;
        }
        // Drain the warm-up lines.
        while lines_rx.recv_timeout(Duration::from_millis(200)).is_ok() {}

        let mut rtts = Vec::with_capacity(FOLLOW_SAMPLES);
        let deadline = Instant::now() + FOLLOW_LIMIT;
        while rtts.len() < FOLLOW_SAMPLES && Instant::now() < deadline {
            let sent = Instant::now();
            let frame = append_one(&mut conn, 0, seq)?;
            seq += 1;
            let id = frame_id(&frame).ok_or("append answer without id")?.to_vec();
            loop {
                let (line, seen) = lines_rx.recv_timeout(IO_TIMEOUT).map_err(|_| {
                    format!("the follower did not deliver an appended frame within {IO_TIMEOUT:?}")
                })?;
                if frame_id(&line) == Some(&id[..]) {
                    rtts.push(seen.saturating_duration_since(sent));
                    break;
                }
            }
        }
        Ok(rtts)
    })();
    let _ = closer.shutdown(std::net::Shutdown::Both);
    drop(server);
    let reader_result = reader
        .join()
        .map_err(|p| format!("follower panicked: {}", panic_text(&p)))?;
    let mut rtts = result?;
    reader_result?;
    rtts.sort();
    let p99 = percentile(&rtts, 0.99);
    Ok(Outcome::Measured {
        keys: vec![
            ("samples", rtts.len().to_string()),
            ("p50_ms", ms(percentile(&rtts, 0.50))),
            ("p99_ms", ms(p99)),
            ("max_ms", ms(*rtts.last().unwrap_or(&Duration::ZERO))),
        ],
        headline: format!("p99 {} ms", ms(p99)),
        met: p99 <= Duration::from_millis(1),
        target: "p99<=1ms",
    })
}

/// Spawn to first `GET /version` answer, median of `STARTUP_RUNS`.
fn startup(bin: &Path) -> Res<Outcome> {
    let mut times = Vec::with_capacity(STARTUP_RUNS);
    for _ in 0..STARTUP_RUNS {
        let server = Server::spawn(bin, "always")?;
        server.wait_ready(START_TIMEOUT)?;
        times.push(server.spawned_at.elapsed());
        drop(server);
    }
    times.sort();
    let median = percentile(&times, 0.5);
    Ok(Outcome::Measured {
        keys: vec![
            ("runs", times.len().to_string()),
            ("median_ms", ms(median)),
            ("min_ms", ms(times[0])),
            ("max_ms", ms(times[times.len() - 1])),
        ],
        headline: format!("median {} ms", ms(median)),
        met: median <= Duration::from_millis(10),
        target: "median<=10ms",
    })
}

/// VmRSS of a server idle for 1 s after a few appends.
fn idle_rss(bin: &Path) -> Res<Outcome> {
    let server = Server::start(bin, "always")?;
    let mut conn = server.connect()?;
    for seq in 0..10 {
        append_one(&mut conn, 0, seq)?;
    }
    drop(conn);
    let cpu_from = cpu_time(server.pid());
    std::thread::sleep(Duration::from_secs(1));
    let idle_cpu = cpu_time(server.pid()).saturating_sub(cpu_from);
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid()))
        .map_err(|e| format!("reading /proc status: {e}"))?;
    let field = |name: &str| -> Option<String> {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .map(str::to_string)
    };
    let rss_kb: u64 = field("VmRSS:")
        .and_then(|v| v.parse().ok())
        .ok_or("no VmRSS in /proc status")?;
    let hwm_kb: u64 = field("VmHWM:").and_then(|v| v.parse().ok()).unwrap_or(0);
    let threads = field("Threads:").unwrap_or_else(|| "?".into());
    drop(server);
    let rss_mb = rss_kb as f64 / 1024.0;
    Ok(Outcome::Measured {
        keys: vec![
            ("rss_kb", rss_kb.to_string()),
            ("rss_mb", format!("{rss_mb:.1}")),
            ("hwm_mb", format!("{:.1}", hwm_kb as f64 / 1024.0)),
            ("threads", threads),
            ("idle_cpu_ms_per_s", ms(idle_cpu)),
        ],
        headline: format!("{rss_mb:.1} MB"),
        met: rss_kb <= 10 * 1024,
        target: "<=10MB",
    })
}

/// Runs `xs append <dir> bench` with 64 bytes on stdin; its wall time.
fn oneshot_once(bin: &Path, store: &Path, seq: u64) -> Res<Result<Duration, String>> {
    let started = Instant::now();
    let mut child = Command::new(bin)
        .arg("append")
        .arg(store)
        .arg("bench")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawning xs append: {e}"))?;
    let pid = child.id();
    let mut stdin = child.stdin.take().ok_or("no stdin pipe")?;
    // A CLI that never reads stdin must not block us: ignore EPIPE.
    let _ = stdin.write_all(&payload(0, seq));
    drop(stdin);
    // Bound the wait: kill the child if it hangs.
    let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(1);
    let watchdog = std::thread::spawn(move || {
        if done_rx.recv_timeout(Duration::from_secs(10)).is_err() {
            // SAFETY: signalling our own child by pid.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
        }
    });
    let output = child.wait_with_output();
    let elapsed = started.elapsed();
    let _ = done_tx.send(());
    let _ = watchdog.join();
    let output = output.map_err(|e| format!("waiting for xs append: {e}"))?;
    if output.status.success() {
        return Ok(Ok(elapsed));
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let first = stderr.lines().next().unwrap_or("").trim();
    let detail = if first.is_empty() { "no stderr" } else { first };
    Ok(Err(format!(
        "`xs append` exited with {} ({detail})",
        output.status
    )))
}

fn oneshot_append(bin: &Path) -> Res<Outcome> {
    let server = Server::start(bin, "never")?;
    let mut times = Vec::with_capacity(ONESHOT_RUNS);
    for seq in 0..ONESHOT_RUNS as u64 {
        match oneshot_once(bin, &server.store, seq)? {
            Ok(t) => times.push(t),
            Err(reason) => return Ok(Outcome::Skipped(reason)),
        }
    }
    drop(server);
    times.sort();
    let median = percentile(&times, 0.5);
    Ok(Outcome::Measured {
        keys: vec![
            ("runs", times.len().to_string()),
            ("median_ms", ms(median)),
            ("min_ms", ms(times[0])),
            ("max_ms", ms(times[times.len() - 1])),
        ],
        headline: format!("median {} ms", ms(median)),
        met: median <= Duration::from_millis(3),
        target: "median<=3ms",
    })
}
