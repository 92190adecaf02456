//! End-to-end benchmark of `xs serve`: appends, replay, follow latency,
//! start-up, idle memory, the one-shot CLI, the Nushell processors (actors,
//! views), the k/v store, seek cost against store size, export/import, and
//! the HTTP gateway answered by a Nushell actor.
//!
//! Usage:
//!
//! ```text
//! cargo bench --bench throughput
//! cargo bench --bench throughput -- replay follow-rtt
//! ```
//!
//! Names after `--` select dimensions (default: all, in this order):
//! `append-16-always`, `append-1-always`, `append-1-never`,
//! `append-16-always-stored`, `append-1-never-stored`, `replay`,
//! `follow-rtt`, `startup`, `startup-existing`, `idle-rss`,
//! `oneshot-append`, `eval-trivial`, `actor-state`, `actor-emit`, `view-fold`, `kv-set-16`, `seek-cost`,
//! `export-import-100k`, `gateway`, `redis-append-16`,
//! `redis-append-16-2nodes`, `redis-follow-rtt`.
//!
//! The `xs` binary: `cargo bench` builds the package's `xs` binary in the
//! bench profile (which inherits `[profile.release]`) and hands its path to
//! this file as `env!("CARGO_BIN_EXE_xs")`; nothing needs building first.
//! To measure some other build, set `XS_BIN=/path/to/xs` at run time.
//!
//! Method. Every dimension runs `xs serve` on a fresh temporary store
//! (`tempfile`, so `TMPDIR` picks the file system — keep it on a real disk,
//! not tmpfs, or `--fsync always` measures nothing) with its stdout and
//! stderr sent to /dev/null. A dimension's store is kept until the whole
//! run ends and all are deleted at exit (`KEPT`), so no dimension measures
//! the previous one's cleanup: on an ext4 file system without a journal
//! (these machines' root), creating a file skips every free inode of its
//! block group deleted in the last minutes, one lookup each, so right after
//! a store of thousands of payload files is deleted every file created
//! near it costs about a millisecond of CPU instead of tens of
//! microseconds. Deletions by other programs (test suites, builds) still
//! show, as they would for a user. Before each dimension the bench calls
//! `sync` (printed as `presync_ms`), so none runs while the kernel writes
//! back files an earlier one left dirty. Clients are plain threads speaking
//! HTTP/1.1 keep-alive over `<dir>/sock`: one connection per client thread, a request
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
//! - `append-16-always-stored`, `append-1-never-stored`: the same, each
//!   client sending one fixed payload, so the content is stored once and
//!   no append makes a payload file: the append path without the file
//!   system's price of a new file. Diagnostic, no target.
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
//!   until a `GET /` answers 200 with `xs.start` in its body (a store is
//!   started when its first read can see `xs.start`); median (and
//!   min/max) of 10 runs. On a fresh store that includes making its
//!   database (fjall's keyspaces, about a hundred fsyncs) before
//!   `xs.start` can be written.
//! - `startup-existing`: the same on a store made by a first start and
//!   stopped: each of 10 starts until a `GET /` shows its own `xs.start`.
//! - `idle-rss`: VmRSS from /proc/<pid>/status after 10 appends and 1 s
//!   idle (also the CPU time used in that idle second).
//! - `oneshot-append`: `xs append <dir> bench` against a `--fsync never`
//!   server, stdin a pipe holding 64 bytes, wall time from spawn to exit;
//!   median of 30. If the command exits non-zero it is reported as skipped.
//!
//! Processors. The stores below are filled the way `replay`'s is (16
//! clients, distinct 64-byte payloads, then up to `SETTLE_LIMIT` for the
//! server to go idle), but with topic `ev`. Then the processor's script is
//! appended as the payload of its `create` frame, and the clock runs from
//! sending that append until the processor's result is seen, polled every
//! `POLL_EVERY` (20 ms, so a figure is late by up to that much) on a
//! keep-alive connection; a `fin.*` or `invalid` lifecycle frame of the
//! processor fails the dimension, and so does `PROCESSOR_LIMIT` (300 s).
//! The server's CPU time over that window (polls included: a few dozen
//! small GETs a second) divided by the frames gives `server_cpu_us_per_frame`.
//! `load_ms` is the create frame's id time to the `active` frame's (SCRU128
//! ids carry milliseconds): loading the script, before any frame is read.
//!
//! - `actor-state`: 20,000 `ev` frames (`--fsync never`), then an actor
//!   with `start: "first"` counting the `ev` frames in its state; on the
//!   last one it `.append`s `bench.done` (buffered: written after the
//!   closure returns). Done when `GET /last/bench.done` answers 200;
//!   frames/s = 20,000 / elapsed. `server_ms` is the create frame's id time
//!   to `bench.done`'s, free of the polling interval.
//! - `actor-emit`: the same with `--fsync always`, 5,000 frames, and each
//!   counted frame also `.append`s `bench.out` with the count as payload
//!   (`$"($n)"`); the number of `bench.out` frames is checked afterwards.
//! - `view-fold`: 100,000 `ev` frames (`--fsync never`), then a view
//!   counting them; done when `GET /kv/view.bench` holds
//!   `{"state":100000,...}`.
//! - `kv-set-16`: as `append-16-always`, but each request is
//!   `PUT /kv/k<client>` with a small JSON body (answered 204).
//! - `seek-cost`: two servers at once (`--fsync never`), one holding
//!   10,000 frames and one 1,000,000, both filled by the NDJSON form of
//!   `POST /import` (batches of `IMPORT_BATCH` frames with increasing
//!   SCRU128 ids made here, all sharing one 64-byte payload posted to
//!   `/cas` first, so the frames are the size of appended ones; 10 of them,
//!   evenly spread, on topic `rare`). After both go idle (`SEEK_SETTLE`),
//!   each query is timed from sending it to the end of its answer, 200
//!   times per store on one keep-alive connection each, in rounds of 10
//!   alternating between the stores so both see the same machine load;
//!   medians side by side (`<10k>/<1M>`, microseconds), the ratio, and
//!   each server's CPU per request. The queries: `GET /?rev&limit=1`,
//!   `GET /first`, `GET /last`, `GET /<mid>/next`, `GET /<mid>/prev`,
//!   `GET /?from=<mid>&limit=10`, `GET /?rev&topic=rare&limit=1` (`<mid>`
//!   the middle imported frame). Met when no 1M median is over twice its
//!   10k one.
//! - `export-import-100k`: a `--fsync never` store of 100,000 `ev` frames
//!   whose payloads cycle through 1,000 distinct ones (posted to `/cas`,
//!   frames imported as for `seek-cost`); `xs export <store> <folder>` is
//!   timed, then `xs import <fresh store> <folder>` against a fresh server
//!   (`--fsync always`, the default); the fresh store must gain exactly the
//!   frames export reported, and export must report every frame of the
//!   source (counted by `GET /`). The CLI runs are bounded by
//!   `CLI_LIMIT`.
//!
//! - `gateway`: `xs serve <fresh store> --http 127.0.0.1:<free port>`,
//!   otherwise default settings (`--fsync always`, requests and answers
//!   `ephemeral`). An actor (`GATEWAY_ACTOR`, registered as
//!   `xs.actor.bench.create` like the processors above, waited for until
//!   its `active` frame) answers each `http.request` with an ephemeral
//!   `http.response` whose body is the request's path. One request is
//!   retried until the gateway answers it (`first_ms`), then
//!   `GATEWAY_CLIENTS` (16) keep-alive TCP connections (`TCP_NODELAY`) are
//!   opened one at a time, each answered once before the next opens, and
//!   send `GET /c<client>/<seq>` back to back for `GATEWAY_WINDOW` (5 s)
//!   after a `GATEWAY_WARMUP` (1 s) that is not counted. requests/s counts
//!   the 200 answers carrying the right path sent and received inside the
//!   window; `errors` counts any other answer and broken connections over
//!   the whole run (a broken connection stops its client; `first_error`
//!   shows one). Latency p50/p99/max per request, the server's CPU per
//!   request and its thread count at the end of the window. Met at
//!   3,000 requests/s with no errors; the actor must still be running.
//! - `redis-append-16`, `redis-append-16-2nodes`: as `append-16-always`,
//!   but the servers run on `--backend redis://` against a `redis-server`
//!   this bench starts (a free loopback port, a temp folder,
//!   `appendonly yes`, `appendfsync always`: acknowledged = on Redis's
//!   disk); with two nodes each takes 8 of the 16 clients. CPU is the
//!   servers' plus Redis's. Skipped when `redis-server` is not on PATH.
//! - `redis-follow-rtt`: as `follow-rtt`, but the follower is on one node
//!   and the appends go to the other (the cross-node round trip).
//! - `payload-file-cost`: no server. One thread does, 12,000 times, what
//!   an append with new content asks of the file system: in cacache's
//!   two-level fan-out under a fresh temp folder, `mkdir` when the folder
//!   is new, create a temporary file, write 64 bytes, close, rename. The
//!   time per file bounds what one client can append here (`report`).
//!
//! Output: one line per dimension, `<name> <key>=<value> ... load=<a>..<b>
//! status=<ok|MISS> target=<target>`, then a summary. The figures are
//! wall-clock: on a shared machine they move with its load, so each line
//! carries the 1-minute load average at the dimension's start and end, and
//! `/proc/loadavg` is printed before and after the run. A `report` target
//! has no threshold (always `ok`). The exit status is non-zero when a
//! dimension fails to run (a missed target is not a failure). Every wait is
//! bounded: sockets have 30 s timeouts, a fill by appends stops after 300 s
//! (the replay then reads what is there, and `filled=` shows the shortfall;
//! the processor dimensions fail), follow-rtt stops sampling after 120 s,
//! processors get 300 s, child processes are waited with deadlines (killed
//! after them), and servers are stopped (SIGTERM, then SIGKILL after 5 s) by
//! a drop guard, so also when a dimension panics.
//!
//! Run without `--bench` (as `cargo test --all-targets` does) the binary
//! only prints a note and exits, so test runs stay fast.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
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
/// A fill by appends stops here even if short of its goal.
const FILL_LIMIT: Duration = Duration::from_secs(300);
/// Clients filling a store by appends.
const FILL_CLIENTS: usize = 16;
const FOLLOW_SAMPLES: usize = 2_000;
/// The most the replay waits for the server to go idle after the fill.
const SETTLE_LIMIT: Duration = Duration::from_secs(10);
/// follow-rtt stops sampling here even if short of `FOLLOW_SAMPLES`.
const FOLLOW_LIMIT: Duration = Duration::from_secs(120);
const STARTUP_RUNS: usize = 10;
const ONESHOT_RUNS: usize = 30;
/// How often a processor's result is polled for.
const POLL_EVERY: Duration = Duration::from_millis(20);
/// The most a processor may take to produce its result.
const PROCESSOR_LIMIT: Duration = Duration::from_secs(300);
const ACTOR_STATE_FRAMES: u64 = 20_000;
const ACTOR_EMIT_FRAMES: u64 = 5_000;
const VIEW_FRAMES: u64 = 100_000;
/// Frames per `POST /import` request of a bulk fill.
const IMPORT_BATCH: u64 = 50_000;
const SEEK_SMALL: u64 = 10_000;
const SEEK_LARGE: u64 = 1_000_000;
/// Timed requests per query and store, and how many in a row per store.
const SEEK_SAMPLES: usize = 200;
const SEEK_ROUND: usize = 10;
/// The most `seek-cost` waits for a freshly imported store to go idle
/// (fjall flushes and compacts after a bulk import).
const SEEK_SETTLE: Duration = Duration::from_secs(60);
const EXPORT_FRAMES: u64 = 100_000;
const EXPORT_PAYLOADS: u64 = 1_000;
/// The most one `xs export` / `xs import` run may take.
const CLI_LIMIT: Duration = Duration::from_secs(600);
/// Keep-alive TCP clients of the gateway, its counted window and warm-up.
const GATEWAY_CLIENTS: usize = 16;
const GATEWAY_WINDOW: Duration = Duration::from_secs(5);
const GATEWAY_WARMUP: Duration = Duration::from_secs(1);

type Res<T> = Result<T, String>;

const DIMENSIONS: &[&str] = &[
    "append-16-always",
    "append-1-always",
    "append-1-never",
    "append-16-always-stored",
    "append-1-never-stored",
    "replay",
    "follow-rtt",
    "startup",
    "startup-existing",
    "idle-rss",
    "oneshot-append",
    "eval-trivial",
    "actor-state",
    "actor-emit",
    "view-fold",
    "kv-set-16",
    "seek-cost",
    "export-import-100k",
    "gateway",
    "redis-append-16",
    "redis-append-16-2nodes",
    "redis-follow-rtt",
    "payload-file-cost",
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
        let synced = write_back_earlier();
        let load_from = load_1min();
        let run = std::panic::catch_unwind(|| run_dimension(name, &bin));
        let load = format!("{load_from}..{}", load_1min());
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
                println!(
                    "{line} load={load} presync_ms={} status={status} target={target}",
                    synced.as_millis()
                );
                format!("{name:<18} {headline:<28} {status:<5} load {load:<11} target {target}")
            }
            Ok(Outcome::Skipped(reason)) => {
                println!("{name} skipped: {reason}");
                format!("{name:<18} {:<28} skipped", "-")
            }
            Err(e) => {
                failed = true;
                println!("{name} failed: {e}");
                format!("{name:<18} {:<28} FAILED", "-")
            }
        };
        summary.push(row);
    }
    print_load("after");
    delete_kept();
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

/// The 1-minute load average, as `/proc/loadavg` prints it.
fn load_1min() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
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
        "append-16-always-stored" => append_stored(bin, 16, "always"),
        "append-1-never-stored" => append_stored(bin, 1, "never"),
        "replay" => replay(bin),
        "follow-rtt" => follow_rtt(bin),
        "startup" => startup(bin),
        "startup-existing" => startup_existing(bin),
        "idle-rss" => idle_rss(bin),
        "eval-trivial" => eval_trivial(bin),
        "oneshot-append" => oneshot_append(bin),
        "actor-state" => actor(
            bin,
            "never",
            ACTOR_STATE_FRAMES,
            false,
            100_000.0,
            ">=100000/s",
        ),
        "actor-emit" => actor(bin, "always", ACTOR_EMIT_FRAMES, true, 5_000.0, ">=5000/s"),
        "view-fold" => view_fold(bin),
        "kv-set-16" => kv_set(bin),
        "seek-cost" => seek_cost(bin),
        "export-import-100k" => export_import(bin),
        "gateway" => gateway(bin),
        "redis-append-16" => redis_append(bin, 1),
        "redis-append-16-2nodes" => redis_append(bin, 2),
        "redis-follow-rtt" => redis_follow_rtt(bin),
        "payload-file-cost" => payload_file_cost(),
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
    /// Moved to `KEPT` once `Drop::drop` has stopped the child.
    tmp: Option<tempfile::TempDir>,
}

/// Stores of finished dimensions, deleted when the run ends (see the
/// header: deleting them between dimensions would slow the next one).
static KEPT: std::sync::Mutex<Vec<tempfile::TempDir>> = std::sync::Mutex::new(Vec::new());

/// Deletes the kept stores.
fn delete_kept() {
    let kept = std::mem::take(&mut *KEPT.lock().unwrap_or_else(|e| e.into_inner()));
    drop(kept);
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
        Server::spawn_with(bin, &["--fsync", fsync])
    }

    /// Starts a server with these `xs serve` options.
    fn start_with(bin: &Path, args: &[&str]) -> Res<Server> {
        let server = Server::spawn_with(bin, args)?;
        server.wait_ready(START_TIMEOUT)?;
        Ok(server)
    }

    /// Spawns `xs serve <fresh store> <args>` without waiting for it.
    fn spawn_with(bin: &Path, args: &[&str]) -> Res<Server> {
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
    fn spawn_in(bin: &Path, store: &Path, args: &[&str]) -> Res<Server> {
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

    /// Polls the socket every 100 µs until a `GET /` answers 200 with
    /// `xs.start` in its body.
    fn wait_started(&self, timeout: Duration) -> Res<()> {
        self.wait_starts(1, timeout)
    }

    /// Polls the socket every 100 µs until a `GET /` answers 200 with
    /// `starts` `xs.start` frames in its body.
    fn wait_starts(&self, starts: usize, timeout: Duration) -> Res<()> {
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
        self.stop();
        if let Some(tmp) = self.tmp.take() {
            KEPT.lock().unwrap_or_else(|e| e.into_inner()).push(tmp);
        }
    }
}

impl Server {
    /// SIGTERM, then SIGKILL after 5 s.
    fn stop(&mut self) {
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
struct Conn<S = UnixStream> {
    stream: S,
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
        Ok(Conn::over(stream))
    }
}

impl Conn<TcpStream> {
    /// A TCP connection (`TCP_NODELAY`: each request goes out at once).
    fn connect_tcp(addr: SocketAddr) -> io::Result<Conn<TcpStream>> {
        let stream = TcpStream::connect_timeout(&addr, HANDSHAKE_TIMEOUT)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(Conn::over(stream))
    }
}

impl<S: Read + Write> Conn<S> {
    fn over(stream: S) -> Conn<S> {
        Conn {
            stream,
            buf: vec![0; 256 * 1024],
            pos: 0,
            len: 0,
        }
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

    /// Sends one request with a `Content-Type`.
    fn send_typed(
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
    fn request(&mut self, method: &str, path: &str, body: &[u8]) -> io::Result<(u16, Vec<u8>)> {
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

/// One append to topic `bench`; the frame JSON on success.
fn append_one(conn: &mut Conn, client: usize, seq: u64) -> Res<Vec<u8>> {
    append_to(conn, "bench", &payload(client, seq))
}

/// One append of `body` to `topic`; the frame JSON on success.
fn append_to(conn: &mut Conn, topic: &str, body: &[u8]) -> Res<Vec<u8>> {
    expect_200(conn, "POST", &format!("/append/{topic}"), body)
}

/// A request that must answer 200; its body.
fn expect_200(conn: &mut Conn, method: &str, path: &str, body: &[u8]) -> Res<Vec<u8>> {
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
fn get_optional(conn: &mut Conn, path: &str) -> Res<Option<Vec<u8>>> {
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
fn count_lines(conn: &mut Conn, path: &str) -> Res<u64> {
    let body = expect_200(conn, "GET", path, &[])?;
    Ok(body.iter().filter(|&&b| b == b'\n').count() as u64)
}

/// A JSON body parsed.
fn json(body: &[u8]) -> Res<serde_json::Value> {
    serde_json::from_slice(body).map_err(|e| {
        format!(
            "not JSON ({e}): {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        )
    })
}

/// The millisecond time inside a frame JSON's SCRU128 id.
fn id_ms(frame: &[u8]) -> Res<u64> {
    let id = frame_id(frame).ok_or("frame without id")?;
    let id: scru128::Id = std::str::from_utf8(id)
        .map_err(|_| "id is not UTF-8".to_string())?
        .parse()
        .map_err(|e| format!("bad id: {e}"))?;
    Ok(id.timestamp())
}

/// Calls `check` every `every` until it yields a value; an error after
/// `limit` (or as soon as `check` fails).
fn poll<T>(limit: Duration, every: Duration, mut check: impl FnMut() -> Res<Option<T>>) -> Res<T> {
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

/// What `hammer` measured: each counted request's latency, and the
/// server's CPU time over the counted window.
struct Hammered {
    latencies: Vec<Duration>,
    cpu_used: Duration,
}

impl Hammered {
    /// The rate over `APPEND_WINDOW`, and the printed keys: `names` are
    /// those of the rate, the count and the server's CPU per request.
    fn report(
        &self,
        clients: usize,
        names: [&'static str; 3],
    ) -> (f64, Vec<(&'static str, String)>) {
        let count = self.latencies.len();
        let rate = count as f64 / APPEND_WINDOW.as_secs_f64();
        let cpu_per_request = self.cpu_used.as_secs_f64() * 1e6 / count.max(1) as f64;
        let [rate_name, count_name, cpu_name] = names;
        let keys = vec![
            (rate_name, format!("{rate:.0}")),
            (count_name, count.to_string()),
            ("clients", clients.to_string()),
            ("secs", format!("{:.1}", APPEND_WINDOW.as_secs_f64())),
            ("p50_ms", ms(percentile(&self.latencies, 0.50))),
            ("p99_ms", ms(percentile(&self.latencies, 0.99))),
            (cpu_name, format!("{cpu_per_request:.0}")),
        ];
        (rate, keys)
    }
}

/// `clients` threads send requests back to back (`op(conn, client, seq)`);
/// counted over `APPEND_WINDOW` after `APPEND_WARMUP`.
fn hammer(
    server: &Server,
    clients: usize,
    op: fn(&mut Conn, usize, u64) -> Res<()>,
) -> Res<Hammered> {
    hammer_spread(&[server], &[server.pid()], clients, op)
}

/// As `hammer`, the clients spread over `servers` in turn; the CPU time
/// is that of the processes `pids`.
fn hammer_spread(
    servers: &[&Server],
    pids: &[u32],
    clients: usize,
    op: fn(&mut Conn, usize, u64) -> Res<()>,
) -> Res<Hammered> {
    let mut conns = Vec::with_capacity(clients);
    for (at, server) in servers.iter().enumerate() {
        let share = clients / servers.len() + usize::from(at < clients % servers.len());
        conns.extend(server.connect_served(share)?);
    }
    let processes_cpu = || pids.iter().map(|pid| cpu_time(*pid)).sum::<Duration>();
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
                op(&mut conn, client, seq)?;
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
    let cpu_from = processes_cpu();
    sleep_until(begin + APPEND_WARMUP + APPEND_WINDOW);
    let cpu_used = processes_cpu().saturating_sub(cpu_from);
    let mut latencies = Vec::new();
    let mut errors = Vec::new();
    for handle in handles {
        match handle.join() {
            Ok(Ok(l)) => latencies.extend(l),
            Ok(Err(e)) => errors.push(e),
            Err(p) => errors.push(format!("client panicked: {}", panic_text(&p))),
        }
    }
    if let Some(e) = errors.into_iter().next() {
        return Err(e);
    }
    latencies.sort();
    Ok(Hammered {
        latencies,
        cpu_used,
    })
}

/// `clients` threads append back to back; counted over `APPEND_WINDOW`.
fn append(
    bin: &Path,
    clients: usize,
    fsync: &str,
    target: f64,
    target_text: &'static str,
) -> Res<Outcome> {
    let (rate, keys) = append_run(bin, clients, fsync, |conn, client, seq| {
        append_one(conn, client, seq).map(drop)
    })?;
    Ok(Outcome::Measured {
        keys,
        headline: format!("{rate:.0} appends/s"),
        met: rate >= target,
        target: target_text,
    })
}

/// Appends whose content is already stored (each client sends one fixed
/// payload), so no payload file is made: the append path without the
/// file system's price of a new file. Diagnostic, no target.
fn append_stored(bin: &Path, clients: usize, fsync: &str) -> Res<Outcome> {
    let (rate, keys) = append_run(bin, clients, fsync, |conn, client, _| {
        append_one(conn, client, 0).map(drop)
    })?;
    Ok(Outcome::Measured {
        keys,
        headline: format!("{rate:.0} appends/s"),
        met: true,
        target: "diagnostic",
    })
}

/// N clients appending with `op`: the rate and the printed keys.
fn append_run(
    bin: &Path,
    clients: usize,
    fsync: &str,
    op: fn(&mut Conn, usize, u64) -> Res<()>,
) -> Res<(f64, Vec<(&'static str, String)>)> {
    let server = Server::start(bin, fsync)?;
    let hammered = hammer(&server, clients, op)?;
    drop(server);
    Ok(hammered.report(
        clients,
        ["appends_per_s", "appends", "server_cpu_us_per_append"],
    ))
}

/// Writes back whatever is dirty in the page cache (files an earlier
/// dimension or another program wrote), so no dimension runs while the
/// kernel writes them back; how long that took.
fn write_back_earlier() -> Duration {
    let started = Instant::now();
    // SAFETY: `sync` takes no arguments and cannot fail.
    unsafe { libc::sync() };
    started.elapsed()
}

/// What a fill by appends did.
struct Fill {
    /// Appends answered (short of the goal only at `FILL_LIMIT`).
    filled: u64,
    elapsed: Duration,
    /// The slowest single append.
    slowest: Duration,
}

impl Fill {
    fn rate(&self) -> f64 {
        self.filled as f64 / self.elapsed.as_secs_f64()
    }
}

/// `FILL_CLIENTS` clients append `frames` distinct 64-byte payloads to
/// `topic` between them; stops at `FILL_LIMIT`.
fn fill(server: &Server, topic: &str, frames: u64) -> Res<Fill> {
    let next = Arc::new(AtomicU64::new(0));
    let filled = Arc::new(AtomicU64::new(0));
    let conns = server.connect_served(FILL_CLIENTS)?;
    let fill_start = Instant::now();
    let fill_deadline = fill_start + FILL_LIMIT;
    let mut handles = Vec::new();
    for (client, mut conn) in conns.into_iter().enumerate() {
        let next = next.clone();
        let filled = filled.clone();
        let topic = topic.to_string();
        handles.push(std::thread::spawn(move || -> Res<Duration> {
            let mut slowest = Duration::ZERO;
            while Instant::now() < fill_deadline {
                let seq = next.fetch_add(1, Ordering::Relaxed);
                if seq >= frames {
                    break;
                }
                let sent = Instant::now();
                append_to(&mut conn, &topic, &payload(client, seq))?;
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
    Ok(Fill {
        filled: filled.load(Ordering::Relaxed),
        elapsed: fill_start.elapsed(),
        slowest: fill_max,
    })
}

/// Fills a store with `REPLAY_FRAMES` appends (16 clients, fsync never),
/// then times one `GET /`.
fn replay(bin: &Path) -> Res<Outcome> {
    let server = Server::start(bin, "never")?;
    let fill = fill(&server, "bench", REPLAY_FRAMES)?;
    // Short of the goal only when the fill hit its time limit: the replay
    // is then measured on what is there, and `filled` says so.
    let filled = fill.filled;
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
            ("fill_s", format!("{:.1}", fill.elapsed.as_secs_f64())),
            ("fill_appends_per_s", format!("{:.0}", fill.rate())),
            ("fill_max_ms", ms(fill.slowest)),
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
    let (rtts, outcome_keys) = follow_rtt_between(&server, &server)?;
    drop(server);
    let p99 = percentile(&rtts, 0.99);
    Ok(Outcome::Measured {
        keys: outcome_keys,
        headline: format!("p99 {} ms", ms(p99)),
        met: p99 <= Duration::from_millis(1),
        target: "p99<=1ms",
    })
}

/// Round trips from an append on `writer` until a follower on `reader`
/// has the frame; sorted, with their report keys.
#[allow(clippy::type_complexity)]
fn follow_rtt_between(
    writer: &Server,
    reader_server: &Server,
) -> Res<(Vec<Duration>, Vec<(&'static str, String)>)> {
    let mut follower = reader_server.connect()?;
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
        let mut conn = writer.connect_served(1)?.remove(0);
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
    let reader_result = reader
        .join()
        .map_err(|p| format!("follower panicked: {}", panic_text(&p)))?;
    let mut rtts = result?;
    reader_result?;
    rtts.sort();
    let keys = vec![
        ("samples", rtts.len().to_string()),
        ("p50_ms", ms(percentile(&rtts, 0.50))),
        ("p99_ms", ms(percentile(&rtts, 0.99))),
        ("max_ms", ms(*rtts.last().unwrap_or(&Duration::ZERO))),
    ];
    Ok((rtts, keys))
}

/// Spawn to the first `GET /` answer that holds `xs.start`, median of
/// `STARTUP_RUNS`.
fn startup(bin: &Path) -> Res<Outcome> {
    let mut times = Vec::with_capacity(STARTUP_RUNS);
    for _ in 0..STARTUP_RUNS {
        let server = Server::spawn(bin, "always")?;
        server.wait_started(START_TIMEOUT)?;
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

/// Like `startup`, on a store that exists: made by a first start and
/// stopped, then started `STARTUP_RUNS` times, each until a `GET /` shows
/// its own `xs.start`.
fn startup_existing(bin: &Path) -> Res<Outcome> {
    let mut first = Server::spawn(bin, "always")?;
    first.wait_started(START_TIMEOUT)?;
    first.stop();
    let store = first.store.clone();
    let mut times = Vec::with_capacity(STARTUP_RUNS);
    for run in 0..STARTUP_RUNS {
        let server = Server::spawn_in(bin, &store, &["--fsync", "always"])?;
        server.wait_starts(run + 2, START_TIMEOUT)?;
        times.push(server.spawned_at.elapsed());
        drop(server);
    }
    drop(first);
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

/// VmRSS of a server idle for 1 s after a few appends, then again after
/// one script (`xs eval`), which makes the Nushell engine's first copy.
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
    let before = proc_status(server.pid())?;
    if let Err(reason) = eval_once(bin, &server.store)? {
        return Ok(Outcome::Skipped(reason));
    }
    std::thread::sleep(Duration::from_secs(1));
    let after = proc_status(server.pid())?;
    drop(server);
    let mb = |kb: u64| kb as f64 / 1024.0;
    Ok(Outcome::Measured {
        keys: vec![
            ("rss_kb", before.rss_kb.to_string()),
            ("rss_mb", format!("{:.1}", mb(before.rss_kb))),
            ("hwm_mb", format!("{:.1}", mb(before.hwm_kb))),
            ("threads", before.threads),
            ("idle_cpu_ms_per_s", ms(idle_cpu)),
            ("rss_after_eval_mb", format!("{:.1}", mb(after.rss_kb))),
        ],
        headline: format!(
            "{:.1} MB, {:.1} MB after one script",
            mb(before.rss_kb),
            mb(after.rss_kb)
        ),
        met: before.rss_kb <= 16 * 1024 && after.rss_kb <= 24 * 1024,
        target: "<=16MB, <=24MB after one script",
    })
}

/// What /proc/<pid>/status says of a process's memory and threads.
struct ProcStatus {
    rss_kb: u64,
    hwm_kb: u64,
    threads: String,
}

fn proc_status(pid: u32) -> Res<ProcStatus> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("reading /proc status: {e}"))?;
    let field = |name: &str| -> Option<String> {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .map(str::to_string)
    };
    Ok(ProcStatus {
        rss_kb: field("VmRSS:")
            .and_then(|v| v.parse().ok())
            .ok_or("no VmRSS in /proc status")?,
        hwm_kb: field("VmHWM:").and_then(|v| v.parse().ok()).unwrap_or(0),
        threads: field("Threads:").unwrap_or_else(|| "?".into()),
    })
}

/// Runs `xs eval <dir> -c '1 + 1'`; its wall time, or why it failed.
fn eval_once(bin: &Path, store: &Path) -> Res<Result<Duration, String>> {
    let (elapsed, output) = run_cli(
        bin,
        &[
            "eval".as_ref(),
            store.as_os_str(),
            "-c".as_ref(),
            "1 + 1".as_ref(),
        ],
        b"",
        Duration::from_secs(10),
    )?;
    if output.status.success() && output.stdout == b"2" {
        return Ok(Ok(elapsed));
    }
    Ok(Err(cli_failure("xs eval", &output)))
}

/// `xs eval <dir> -c '1 + 1'` end to end, the CLI's process included.
fn eval_trivial(bin: &Path) -> Res<Outcome> {
    let server = Server::start(bin, "never")?;
    let mut times = Vec::with_capacity(ONESHOT_RUNS);
    for _ in 0..ONESHOT_RUNS {
        match eval_once(bin, &server.store)? {
            Ok(elapsed) => times.push(elapsed),
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
        met: median <= Duration::from_millis(5),
        target: "median<=5ms",
    })
}

/// Runs `xs <args>` with `input` on stdin, killing it after `limit`; its
/// wall time from spawn to exit, and its output.
fn run_cli(
    bin: &Path,
    args: &[&std::ffi::OsStr],
    input: &[u8],
    limit: Duration,
) -> Res<(Duration, std::process::Output)> {
    let started = Instant::now();
    let mut child = Command::new(bin)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawning xs {:?}: {e}", args.first()))?;
    let pid = child.id();
    let mut stdin = child.stdin.take().ok_or("no stdin pipe")?;
    // A CLI that never reads stdin must not block us: ignore EPIPE.
    let _ = stdin.write_all(input);
    drop(stdin);
    // Bound the wait: kill the child if it hangs.
    let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(1);
    let watchdog = std::thread::spawn(move || {
        if done_rx.recv_timeout(limit).is_err() {
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
    let output = output.map_err(|e| format!("waiting for xs: {e}"))?;
    Ok((elapsed, output))
}

/// The first line of a failed CLI run's stderr, for the report.
fn cli_failure(what: &str, output: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let first = stderr.lines().next().unwrap_or("").trim();
    let detail = if first.is_empty() { "no stderr" } else { first };
    format!("`{what}` exited with {} ({detail})", output.status)
}

/// Runs `xs append <dir> bench` with 64 bytes on stdin; its wall time.
fn oneshot_once(bin: &Path, store: &Path, seq: u64) -> Res<Result<Duration, String>> {
    let (elapsed, output) = run_cli(
        bin,
        &["append".as_ref(), store.as_os_str(), "bench".as_ref()],
        &payload(0, seq),
        Duration::from_secs(10),
    )?;
    if output.status.success() {
        return Ok(Ok(elapsed));
    }
    Ok(Err(cli_failure("xs append", &output)))
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

// ---------------------------------------------------------------- processors

/// What one processor run took.
struct ProcessorRun {
    /// From sending the create append until the result was seen.
    elapsed: Duration,
    /// The server's CPU time over `elapsed`.
    cpu: Duration,
    /// The create frame's JSON.
    create: Vec<u8>,
    /// The create frame's id time to the `active` frame's.
    load_ms: u64,
}

/// Appends `script` as `xs.<kind>.bench.create` and polls every
/// `POLL_EVERY` until `done` yields; a `fin.*` or `invalid` frame of the
/// processor, or `PROCESSOR_LIMIT`, is an error.
fn run_processor(
    server: &Server,
    kind: &str,
    script: &str,
    mut done: impl FnMut(&mut Conn) -> Res<bool>,
) -> Res<ProcessorRun> {
    let mut conn = server.connect_served(1)?.remove(0);
    let prefix = format!("xs.{kind}.bench");
    let failures = format!("/last/{prefix}.fin.*,{prefix}.invalid");
    let cpu_from = cpu_time(server.pid());
    let started = Instant::now();
    let create = append_to(&mut conn, &format!("{prefix}.create"), script.as_bytes())?;
    let seen = poll(PROCESSOR_LIMIT, POLL_EVERY, || {
        if done(&mut conn)? {
            return Ok(Some(Instant::now()));
        }
        match get_optional(&mut conn, &failures)? {
            Some(frame) => Err(format!(
                "the {kind} stopped: {}",
                String::from_utf8_lossy(&frame).trim()
            )),
            None => Ok(None),
        }
    })
    .map_err(|e| format!("waiting for the {kind}: {e}"))?;
    let elapsed = seen - started;
    let cpu = cpu_time(server.pid()).saturating_sub(cpu_from);
    let active = get_optional(&mut conn, &format!("/last/{prefix}.active"))?
        .ok_or_else(|| format!("no {prefix}.active frame"))?;
    let load_ms = id_ms(&active)?.saturating_sub(id_ms(&create)?);
    Ok(ProcessorRun {
        elapsed,
        cpu,
        create,
        load_ms,
    })
}

/// Fills `topic` with `frames` appends and waits for the server to go
/// idle; an error when the fill fell short.
fn fill_and_settle(server: &Server, topic: &str, frames: u64) -> Res<(Fill, Duration, bool)> {
    let fill = fill(server, topic, frames)?;
    if fill.filled < frames {
        return Err(format!(
            "the fill stored {} of {frames} frames within {FILL_LIMIT:?}",
            fill.filled
        ));
    }
    let (settle, settled) = wait_idle(server.pid(), SETTLE_LIMIT);
    Ok((fill, settle, settled))
}

/// An actor counting `ev` frames from the first; on the `frames`th it
/// appends `bench.done`, and with `emit` each count also goes to
/// `bench.out` as the payload.
fn actor_script(frames: u64, emit: bool) -> String {
    let emit = if emit {
        r#"$"($n)" | .append bench.out; "#
    } else {
        ""
    };
    format!(
        r#"{{initial: 0, start: "first", run: {{|frame, state| if $frame.topic == "ev" {{ let n = $state + 1; {emit}if $n == {frames} {{ .append bench.done }}; {{next: $n}} }} else {{ {{next: $state}} }} }}}}"#
    )
}

/// An actor folding `frames` pre-appended frames; see the header.
fn actor(
    bin: &Path,
    fsync: &str,
    frames: u64,
    emit: bool,
    target: f64,
    target_text: &'static str,
) -> Res<Outcome> {
    let server = Server::start(bin, fsync)?;
    let (fill, settle, settled) = fill_and_settle(&server, "ev", frames)?;
    let mut done_frame = Vec::new();
    let run =
        run_processor(
            &server,
            "actor",
            &actor_script(frames, emit),
            |conn| match get_optional(conn, "/last/bench.done")? {
                Some(frame) => {
                    done_frame = frame;
                    Ok(true)
                }
                None => Ok(false),
            },
        )?;
    let server_ms = id_ms(&done_frame)?.saturating_sub(id_ms(&run.create)?);
    let mut conn = server.connect()?;
    let outs = if emit {
        let outs = count_lines(&mut conn, "/?topic=bench.out")?;
        if outs != frames {
            return Err(format!("{outs} bench.out frames, expected {frames}"));
        }
        Some(outs)
    } else {
        None
    };
    drop(conn);
    drop(server);
    let rate = frames as f64 / run.elapsed.as_secs_f64();
    let mut keys = vec![
        ("frames_per_s", format!("{rate:.0}")),
        ("frames", frames.to_string()),
        ("fsync", fsync.to_string()),
        ("ms", ms(run.elapsed)),
        ("server_ms", server_ms.to_string()),
        ("load_ms", run.load_ms.to_string()),
        (
            "server_cpu_us_per_frame",
            format!("{:.1}", run.cpu.as_secs_f64() * 1e6 / frames as f64),
        ),
    ];
    if let Some(outs) = outs {
        keys.push(("out_frames", outs.to_string()));
    }
    keys.extend([
        ("fill_s", format!("{:.1}", fill.elapsed.as_secs_f64())),
        ("settle_s", format!("{:.1}", settle.as_secs_f64())),
        ("settled", settled.to_string()),
    ]);
    Ok(Outcome::Measured {
        keys,
        headline: format!("{rate:.0} frames/s"),
        met: rate >= target,
        target: target_text,
    })
}

/// A view counting `VIEW_FRAMES` pre-appended frames.
fn view_fold(bin: &Path) -> Res<Outcome> {
    let server = Server::start(bin, "never")?;
    let (fill, settle, settled) = fill_and_settle(&server, "ev", VIEW_FRAMES)?;
    let script = r#"{initial: 0, topics: ["ev"], run: {|frame, state| $state + 1}}"#;
    let mut saves_seen = 0u64;
    let run = run_processor(&server, "view", script, |conn| {
        let Some(body) = get_optional(conn, "/kv/view.bench")? else {
            return Ok(false);
        };
        saves_seen += 1;
        let state = json(&body)?;
        Ok(state.get("state").and_then(|s| s.as_u64()) == Some(VIEW_FRAMES))
    })?;
    drop(server);
    let rate = VIEW_FRAMES as f64 / run.elapsed.as_secs_f64();
    Ok(Outcome::Measured {
        keys: vec![
            ("frames_per_s", format!("{rate:.0}")),
            ("frames", VIEW_FRAMES.to_string()),
            ("ms", ms(run.elapsed)),
            ("load_ms", run.load_ms.to_string()),
            (
                "server_cpu_us_per_frame",
                format!("{:.1}", run.cpu.as_secs_f64() * 1e6 / VIEW_FRAMES as f64),
            ),
            ("saves_seen", saves_seen.to_string()),
            ("fill_s", format!("{:.1}", fill.elapsed.as_secs_f64())),
            ("settle_s", format!("{:.1}", settle.as_secs_f64())),
            ("settled", settled.to_string()),
        ],
        headline: format!("{rate:.0} frames/s"),
        met: rate >= 100_000.0,
        target: ">=100000/s",
    })
}

// ---------------------------------------------------------------- k/v

/// 16 clients `PUT /kv/k<client>` back to back under `--fsync always`.
fn kv_set(bin: &Path) -> Res<Outcome> {
    let clients = 16;
    let server = Server::start(bin, "always")?;
    let hammered = hammer(&server, clients, |conn, client, seq| {
        let path = format!("/kv/k{client}");
        let body = format!("{{\"client\":{client},\"seq\":{seq},\"note\":\"bench\"}}");
        let (status, answer) = conn
            .request("PUT", &path, body.as_bytes())
            .map_err(|e| format!("PUT {path}: {e}"))?;
        if status != 204 {
            return Err(format!(
                "PUT {path} answered {status}: {}",
                String::from_utf8_lossy(&answer).trim()
            ));
        }
        Ok(())
    })?;
    // The last value written is readable.
    let mut conn = server.connect()?;
    let value = json(&expect_200(&mut conn, "GET", "/kv/k0", &[])?)?;
    if value.get("client").and_then(|c| c.as_u64()) != Some(0) {
        return Err(format!("GET /kv/k0 answered {value}"));
    }
    drop(conn);
    drop(server);
    let (rate, keys) = hammered.report(clients, ["sets_per_s", "sets", "server_cpu_us_per_set"]);
    Ok(Outcome::Measured {
        keys,
        headline: format!("{rate:.0} sets/s"),
        met: true,
        target: "report",
    })
}

// ---------------------------------------------------------------- gateway

/// The actor answering every gateway request with its path as the body.
const GATEWAY_ACTOR: &str = r#"{topics: ["http.request"], run: {|frame, state| $frame.meta.path | .append http.response --ttl ephemeral --meta {request_id: $frame.id}; {next: $state}}}"#;

/// What one gateway client saw.
#[derive(Default)]
struct GatewayClient {
    /// Latencies of the requests answered right within the counted window.
    latencies: Vec<Duration>,
    /// Wrong answers (status, body) or broken connections, whole run.
    errors: u64,
    first_error: Option<String>,
    /// Whether the connection broke (the client then stopped).
    broken: bool,
}

impl GatewayClient {
    fn error(&mut self, text: String) {
        self.errors += 1;
        self.first_error.get_or_insert(text);
    }
}

/// One gateway request for `path`: `Ok(None)` when answered 200 with the
/// path as the body, `Ok(Some(reason))` for a wrong answer, `Err` when the
/// connection failed.
fn gateway_get(conn: &mut Conn<TcpStream>, path: &str) -> io::Result<Option<String>> {
    let (status, body) = conn.request("GET", path, &[])?;
    if status == 200 && body == path.as_bytes() {
        return Ok(None);
    }
    let body = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
    Ok(Some(format!(
        "GET {path} answered {status}: {:?}",
        body.trim()
    )))
}

/// A loopback port free a moment ago.
fn free_port() -> Res<u16> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// Requests per second through the gateway (`--http`, default settings
/// otherwise) with `GATEWAY_ACTOR` answering; see the header.
fn gateway(bin: &Path) -> Res<Outcome> {
    let port = free_port()?;
    let addr: SocketAddr = format!("127.0.0.1:{port}")
        .parse()
        .map_err(|e| format!("address: {e}"))?;
    let server = Server::spawn_with(bin, &["--http", &addr.to_string()])?;
    server.wait_ready(START_TIMEOUT)?;
    let mut conn = server.connect()?;
    let run = run_processor(&server, "actor", GATEWAY_ACTOR, |conn| {
        Ok(get_optional(conn, "/last/xs.actor.bench.active")?.is_some())
    })?;

    // The first request through the gateway, retried until it listens.
    let deadline = Instant::now() + START_TIMEOUT;
    let first_started = Instant::now();
    loop {
        let answered = Conn::connect_tcp(addr).and_then(|mut c| gateway_get(&mut c, "/first"));
        match answered {
            Ok(None) => break,
            Ok(Some(wrong)) => return Err(format!("the first request: {wrong}")),
            Err(e) if Instant::now() > deadline => {
                return Err(format!("the gateway on {addr} did not answer: {e}"))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    let first_ms = first_started.elapsed();

    // Connections opened one at a time, each answered once before the next.
    let mut conns = Vec::with_capacity(GATEWAY_CLIENTS);
    for client in 0..GATEWAY_CLIENTS {
        let mut c = Conn::connect_tcp(addr).map_err(|e| format!("connect {addr}: {e}"))?;
        let _ = c.stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT));
        match gateway_get(&mut c, &format!("/c{client}/hello")) {
            Ok(None) => {}
            Ok(Some(wrong)) => return Err(wrong),
            Err(e) => {
                return Err(format!(
                    "gateway connection {} of {GATEWAY_CLIENTS} was not served within \
                     {HANDSHAKE_TIMEOUT:?}: {e}",
                    client + 1
                ))
            }
        }
        let _ = c.stream.set_read_timeout(Some(IO_TIMEOUT));
        conns.push(c);
    }

    let barrier = Arc::new(Barrier::new(GATEWAY_CLIENTS + 1));
    let start = Arc::new(std::sync::OnceLock::<Instant>::new());
    let mut handles = Vec::new();
    for (client, mut c) in conns.into_iter().enumerate() {
        let barrier = barrier.clone();
        let start = start.clone();
        handles.push(std::thread::spawn(move || {
            barrier.wait();
            let begin = *start.get().expect("start set before the barrier");
            let from = begin + GATEWAY_WARMUP;
            let until = from + GATEWAY_WINDOW;
            let mut seen = GatewayClient::default();
            for seq in 0u64.. {
                let sent = Instant::now();
                if sent >= until {
                    break;
                }
                let path = format!("/c{client}/{seq}");
                match gateway_get(&mut c, &path) {
                    Ok(None) => {
                        let done = Instant::now();
                        if sent >= from && done <= until {
                            seen.latencies.push(done - sent);
                        }
                    }
                    Ok(Some(wrong)) => seen.error(wrong),
                    Err(e) => {
                        seen.error(format!("GET {path}: {e}"));
                        seen.broken = true;
                        break;
                    }
                }
            }
            seen
        }));
    }
    let begin = Instant::now();
    start.set(begin).expect("set once");
    barrier.wait();
    sleep_until(begin + GATEWAY_WARMUP);
    let cpu_from = cpu_time(server.pid());
    sleep_until(begin + GATEWAY_WARMUP + GATEWAY_WINDOW);
    let cpu_used = cpu_time(server.pid()).saturating_sub(cpu_from);
    let threads = std::fs::read_to_string(format!("/proc/{}/status", server.pid()))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Threads:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .unwrap_or_else(|| "?".into());
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut broken = 0;
    let mut first_error = None;
    for handle in handles {
        let seen = handle
            .join()
            .map_err(|p| format!("client panicked: {}", panic_text(&p)))?;
        latencies.extend(seen.latencies);
        errors += seen.errors;
        broken += u64::from(seen.broken);
        if first_error.is_none() {
            first_error = seen.first_error;
        }
    }
    // The actor must still be running.
    if let Some(frame) = get_optional(&mut conn, "/last/xs.actor.bench.fin.*")? {
        return Err(format!(
            "the actor stopped: {}",
            String::from_utf8_lossy(&frame).trim()
        ));
    }
    drop(conn);
    drop(server);
    latencies.sort();
    let rate = latencies.len() as f64 / GATEWAY_WINDOW.as_secs_f64();
    let cpu_per_request = cpu_used.as_secs_f64() * 1e6 / latencies.len().max(1) as f64;
    let mut keys = vec![
        ("requests_per_s", format!("{rate:.0}")),
        ("requests", latencies.len().to_string()),
        ("clients", GATEWAY_CLIENTS.to_string()),
        ("secs", format!("{:.1}", GATEWAY_WINDOW.as_secs_f64())),
        ("p50_ms", ms(percentile(&latencies, 0.50))),
        ("p99_ms", ms(percentile(&latencies, 0.99))),
        ("max_ms", ms(*latencies.last().unwrap_or(&Duration::ZERO))),
        ("errors", errors.to_string()),
        ("broken", broken.to_string()),
        ("server_cpu_us_per_request", format!("{cpu_per_request:.0}")),
        ("server_threads", threads),
        ("load_ms", run.load_ms.to_string()),
        ("first_ms", ms(first_ms)),
    ];
    if let Some(first_error) = first_error {
        keys.push(("first_error", format!("{first_error:?}")));
    }
    Ok(Outcome::Measured {
        keys,
        headline: format!("{rate:.0} req/s, {errors} errors"),
        met: rate >= 3_000.0 && errors == 0,
        target: ">=3000/s,0 errors",
    })
}

// ---------------------------------------------------------------- bulk stores

/// Posts `count` distinct small payloads to `/cas`; their SRIs.
fn post_payloads(conn: &mut Conn, count: u64) -> Res<Vec<String>> {
    (0..count)
        .map(|seq| {
            let sri = expect_200(conn, "POST", "/cas", &payload(9999, seq))?;
            Ok(String::from_utf8_lossy(&sri).trim().to_string())
        })
        .collect()
}

/// What a bulk import did.
struct Imported {
    elapsed: Duration,
    /// The id of frame `frames / 2`.
    mid: String,
}

/// Imports `frames` frames with increasing fresh ids by NDJSON
/// `POST /import` in batches of `IMPORT_BATCH`; frame `i` gets
/// `topic(i)` and `hashes[i % hashes.len()]`.
fn import_frames(
    conn: &mut Conn,
    frames: u64,
    topic: impl Fn(u64) -> &'static str,
    hashes: &[String],
) -> Res<Imported> {
    let started = Instant::now();
    let mut mid = String::new();
    let mut at = 0;
    while at < frames {
        let end = (at + IMPORT_BATCH).min(frames);
        let mut body = Vec::with_capacity(((end - at) * 160) as usize);
        for i in at..end {
            let id = scru128::new().to_string();
            if i == frames / 2 {
                mid = id.clone();
            }
            let hash = &hashes[(i % hashes.len() as u64) as usize];
            writeln!(
                body,
                r#"{{"topic":"{}","id":"{id}","hash":"{hash}","meta":null,"ttl":"forever"}}"#,
                topic(i)
            )
            .map_err(|e| e.to_string())?;
        }
        conn.send_typed("POST", "/import", "application/x-ndjson", &body)
            .map_err(|e| format!("POST /import: {e}"))?;
        let head = conn.read_head().map_err(|e| format!("POST /import: {e}"))?;
        let mut answer = Vec::new();
        conn.read_body(head.content_length.unwrap_or(0), &mut answer)
            .map_err(|e| format!("POST /import: {e}"))?;
        let expected = format!("{{\"imported\":{}}}", end - at);
        if head.status != 200 || String::from_utf8_lossy(&answer).trim() != expected {
            return Err(format!(
                "POST /import answered {}: {}",
                head.status,
                String::from_utf8_lossy(&answer).trim()
            ));
        }
        at = end;
    }
    Ok(Imported {
        elapsed: started.elapsed(),
        mid,
    })
}

/// One store of `seek-cost`.
struct SeekStore {
    server: Server,
    conn: Conn,
    frames: u64,
    imported: Imported,
    settle: Duration,
    settled: bool,
}

/// The topic of frame `i` of `frames`: `rare` for 10 evenly spread ones,
/// else `ev`.
fn rare_topic(frames: u64) -> impl Fn(u64) -> &'static str {
    let every = frames / 10;
    move |i| if i % every == every / 2 { "rare" } else { "ev" }
}

fn seek_store(bin: &Path, frames: u64) -> Res<SeekStore> {
    let server = Server::start(bin, "never")?;
    let mut conn = server.connect_served(1)?.remove(0);
    let hashes = post_payloads(&mut conn, 1)?;
    let imported = import_frames(&mut conn, frames, rare_topic(frames), &hashes)?;
    Ok(SeekStore {
        server,
        conn,
        frames,
        imported,
        settle: Duration::ZERO,
        settled: false,
    })
}

/// Seek latency on a 10k and a 1M store, side by side.
fn seek_cost(bin: &Path) -> Res<Outcome> {
    let mut stores = [seek_store(bin, SEEK_SMALL)?, seek_store(bin, SEEK_LARGE)?];
    for store in stores.iter_mut() {
        (store.settle, store.settled) = wait_idle(store.server.pid(), SEEK_SETTLE);
    }
    // (key, path on each store, lines the answer must hold)
    let queries: Vec<(&str, [String; 2], u64)> = {
        let per =
            |f: &dyn Fn(&str) -> String| [f(&stores[0].imported.mid), f(&stores[1].imported.mid)];
        vec![
            ("rev1", per(&|_| "/?rev&limit=1".into()), 1),
            ("first", per(&|_| "/first".into()), 1),
            ("last", per(&|_| "/last".into()), 1),
            ("next", per(&|mid| format!("/{mid}/next")), 1),
            ("prev", per(&|mid| format!("/{mid}/prev")), 1),
            ("from10", per(&|mid| format!("/?from={mid}&limit=10")), 10),
            ("rare_rev1", per(&|_| "/?rev&topic=rare&limit=1".into()), 1),
        ]
    };
    // Check every answer once (and warm up).
    for (key, paths, lines) in &queries {
        for (store, path) in stores.iter_mut().zip(paths) {
            let body = expect_200(&mut store.conn, "GET", path, &[])?;
            let got = body.iter().filter(|&&b| b == b'\n').count() as u64;
            // Single frames come without a trailing newline.
            let got = if *lines == 1 && got == 0 && !body.is_empty() {
                1
            } else {
                got
            };
            if got != *lines {
                return Err(format!(
                    "{key}: GET {path} on the {}-frame store gave {got} lines, expected {lines}",
                    store.frames
                ));
            }
            if *key == "rare_rev1" && !body.windows(14).any(|w| w == b"\"topic\":\"rare\"") {
                return Err(format!("GET {path} did not answer a rare frame"));
            }
        }
    }
    let cpu_from = [
        cpu_time(stores[0].server.pid()),
        cpu_time(stores[1].server.pid()),
    ];
    let mut medians = Vec::new();
    for (key, paths, _) in &queries {
        let mut samples = [Vec::new(), Vec::new()];
        while samples[1].len() < SEEK_SAMPLES {
            for (at, store) in stores.iter_mut().enumerate() {
                for _ in 0..SEEK_ROUND {
                    let sent = Instant::now();
                    expect_200(&mut store.conn, "GET", &paths[at], &[])?;
                    samples[at].push(sent.elapsed());
                }
            }
        }
        for s in samples.iter_mut() {
            s.sort();
        }
        medians.push((
            *key,
            percentile(&samples[0], 0.5),
            percentile(&samples[1], 0.5),
        ));
    }
    let requests = (queries.len() * SEEK_SAMPLES) as f64;
    let cpu_per_request: Vec<f64> = stores
        .iter()
        .zip(cpu_from)
        .map(|(store, from)| {
            cpu_time(store.server.pid())
                .saturating_sub(from)
                .as_secs_f64()
                * 1e6
                / requests
        })
        .collect();
    let us = |d: Duration| format!("{:.0}", d.as_secs_f64() * 1e6);
    let mut keys = vec![(
        "frames",
        format!("{}/{}", stores[0].frames, stores[1].frames),
    )];
    let mut worst: f64 = 0.0;
    let mut worst_key = "";
    for (key, small, large) in &medians {
        let ratio = large.as_secs_f64() / small.as_secs_f64().max(1e-9);
        if ratio > worst {
            worst = ratio;
            worst_key = key;
        }
        keys.push((key, format!("{}/{}us", us(*small), us(*large))));
    }
    keys.extend([
        ("worst_ratio", format!("{worst:.2}({worst_key})")),
        (
            "server_cpu_us_per_req",
            format!("{:.0}/{:.0}", cpu_per_request[0], cpu_per_request[1]),
        ),
        (
            "import_s",
            format!(
                "{:.1}/{:.1}",
                stores[0].imported.elapsed.as_secs_f64(),
                stores[1].imported.elapsed.as_secs_f64()
            ),
        ),
        (
            "settle_s",
            format!(
                "{:.1}/{:.1}",
                stores[0].settle.as_secs_f64(),
                stores[1].settle.as_secs_f64()
            ),
        ),
        (
            "settled",
            format!("{}/{}", stores[0].settled, stores[1].settled),
        ),
    ]);
    drop(stores);
    Ok(Outcome::Measured {
        keys,
        headline: format!("worst 1M/10k {worst:.2}x"),
        met: worst <= 2.0,
        target: "1M<=2x10k",
    })
}

/// The file system's price of one new payload file (see the top).
fn payload_file_cost() -> Res<Outcome> {
    use std::os::unix::fs::DirBuilderExt;
    const FILES: usize = 12_000;
    let tmp = tempfile::Builder::new()
        .prefix("xs-bench-files")
        .tempdir()
        .map_err(|e| format!("tempdir: {e}"))?;
    let root = tmp.path().join("sha256");
    let made = |path: &Path| -> Res<()> {
        match std::fs::DirBuilder::new().mode(0o777).create(path) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                Err(format!("mkdir {}: {e}", path.display()))
            }
            _ => Ok(()),
        }
    };
    made(&root)?;
    let mut known = std::collections::HashSet::new();
    let mut seed: u64 = 42;
    let started = Instant::now();
    for n in 0..FILES {
        // xorshift: spread over the 65,536 second-level folders.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let (top, second) = (seed as u8, (seed >> 8) as u8);
        let folder = root
            .join(format!("{top:02x}"))
            .join(format!("{second:02x}"));
        if known.insert((top, second)) {
            made(folder.parent().unwrap_or(&root))?;
            made(&folder)?;
        }
        let temp = folder.join(format!(".tmp-{n}"));
        std::fs::write(&temp, [b'x'; 64]).map_err(|e| format!("write: {e}"))?;
        std::fs::rename(&temp, folder.join(format!("{seed:016x}")))
            .map_err(|e| format!("rename: {e}"))?;
    }
    let per_file = started.elapsed() / FILES as u32;
    // Kept until the run ends, as the stores are (deleting thousands of
    // files slows the next dimension's file creation on this ext4).
    KEPT.lock().unwrap_or_else(|e| e.into_inner()).push(tmp);
    let us = per_file.as_secs_f64() * 1e6;
    Ok(Outcome::Measured {
        keys: vec![
            ("us_per_file", format!("{us:.1}")),
            ("files", FILES.to_string()),
            ("one_client_ceiling_per_s", format!("{:.0}", 1e6 / us)),
        ],
        headline: format!("{us:.1} us per payload file"),
        met: true,
        target: "report",
    })
}

/// `xs export` of a 100k-frame store, `xs import` into a fresh one.
fn export_import(bin: &Path) -> Res<Outcome> {
    let source = Server::start(bin, "never")?;
    let mut conn = source.connect_served(1)?.remove(0);
    let hashes = post_payloads(&mut conn, EXPORT_PAYLOADS)?;
    let imported = import_frames(&mut conn, EXPORT_FRAMES, |_| "ev", &hashes)?;
    let source_frames = count_lines(&mut conn, "/")?;
    drop(conn);
    let (settle, settled) = wait_idle(source.pid(), SEEK_SETTLE);

    let dump_tmp = tempfile::Builder::new()
        .prefix("xs-bench-dump")
        .tempdir()
        .map_err(|e| format!("tempdir: {e}"))?;
    let dump = dump_tmp.path().join("dump");
    let cpu_from = cpu_time(source.pid());
    let (export_time, output) = run_cli(
        bin,
        &[
            "export".as_ref(),
            source.store.as_os_str(),
            dump.as_os_str(),
        ],
        &[],
        CLI_LIMIT,
    )?;
    let export_cpu = cpu_time(source.pid()).saturating_sub(cpu_from);
    if !output.status.success() {
        return Err(cli_failure("xs export", &output));
    }
    let said = String::from_utf8_lossy(&output.stdout).trim().to_string();
    // "exported <n> frames and <m> payloads to <folder>"
    let words: Vec<&str> = said.split_whitespace().collect();
    let number = |at: usize| -> Res<u64> {
        words
            .get(at)
            .and_then(|w| w.parse().ok())
            .ok_or_else(|| format!("unexpected xs export output: {said}"))
    };
    let (exported, payloads) = (number(1)?, number(4)?);
    if exported != source_frames {
        return Err(format!(
            "xs export wrote {exported} frames; the store holds {source_frames}"
        ));
    }
    let dump_bytes = dir_bytes(&dump);
    drop(source);

    let target = Server::start(bin, "always")?;
    let mut conn = target.connect_served(1)?.remove(0);
    // The server appends `xs.start` just after its socket opens (on a new
    // store once the writer has made its keyspaces): count from there.
    let before = poll(START_TIMEOUT, Duration::from_millis(2), || {
        let frames = count_lines(&mut conn, "/")?;
        Ok((frames > 0).then_some(frames))
    })?;
    let cpu_from = cpu_time(target.pid());
    let (import_time, output) = run_cli(
        bin,
        &[
            "import".as_ref(),
            target.store.as_os_str(),
            dump.as_os_str(),
        ],
        &[],
        CLI_LIMIT,
    )?;
    let import_cpu = cpu_time(target.pid()).saturating_sub(cpu_from);
    if !output.status.success() {
        return Err(cli_failure("xs import", &output));
    }
    let after = count_lines(&mut conn, "/")?;
    if after - before != exported {
        return Err(format!(
            "the fresh store gained {} frames; export wrote {exported}",
            after - before
        ));
    }
    drop(conn);
    drop(target);
    let per_frame = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1e6 / exported as f64);
    Ok(Outcome::Measured {
        keys: vec![
            ("frames", exported.to_string()),
            ("payloads", payloads.to_string()),
            ("export_s", format!("{:.2}", export_time.as_secs_f64())),
            ("import_s", format!("{:.2}", import_time.as_secs_f64())),
            (
                "export_frames_per_s",
                format!("{:.0}", exported as f64 / export_time.as_secs_f64()),
            ),
            (
                "import_frames_per_s",
                format!("{:.0}", exported as f64 / import_time.as_secs_f64()),
            ),
            ("export_server_cpu_us_per_frame", per_frame(export_cpu)),
            ("import_server_cpu_us_per_frame", per_frame(import_cpu)),
            ("import_fsync", "always".into()),
            ("dump_mb", format!("{:.1}", dump_bytes as f64 / 1e6)),
            ("fill_s", format!("{:.1}", imported.elapsed.as_secs_f64())),
            ("settle_s", format!("{:.1}", settle.as_secs_f64())),
            ("settled", settled.to_string()),
        ],
        headline: format!(
            "export {:.1} s, import {:.1} s",
            export_time.as_secs_f64(),
            import_time.as_secs_f64()
        ),
        met: true,
        target: "report",
    })
}

/// The bytes of the files under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&entry.path()),
            _ => entry.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

// ---------------------------------------------------------------- redis

/// A `redis-server` for the Redis dimensions: a free loopback port, a temp
/// folder, every write on disk before it is acknowledged. Killed on drop.
struct RedisServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    fn start() -> Res<RedisServer> {
        let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
        let port = free_port()?;
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("redis-server (scripts/install-redis.sh installs it): {e}"))?;
        let redis = RedisServer {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err("redis-server did not come up".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(redis)
    }

    fn backend(&self, ns: &str) -> String {
        format!("redis://127.0.0.1:{}/0?ns={ns}", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// 16 clients appending through `nodes` servers on one Redis.
fn redis_append(bin: &Path, nodes: usize) -> Res<Outcome> {
    let redis = RedisServer::start()?;
    let backend = redis.backend("bench");
    let servers = (0..nodes)
        .map(|_| Server::start_with(bin, &["--backend", &backend]))
        .collect::<Res<Vec<_>>>()?;
    let mut pids: Vec<u32> = servers.iter().map(Server::pid).collect();
    pids.push(redis.child.id());
    let refs: Vec<&Server> = servers.iter().collect();
    let Hammered {
        latencies,
        cpu_used,
    } = hammer_spread(&refs, &pids, 16, |conn, client, seq| {
        append_one(conn, client, seq).map(drop)
    })?;
    drop(servers);
    let rate = latencies.len() as f64 / APPEND_WINDOW.as_secs_f64();
    let cpu_per_append = cpu_used.as_secs_f64() * 1e6 / latencies.len().max(1) as f64;
    Ok(Outcome::Measured {
        keys: vec![
            ("appends_per_s", format!("{rate:.0}")),
            ("nodes", nodes.to_string()),
            ("clients", "16".into()),
            ("p50_ms", ms(percentile(&latencies, 0.50))),
            ("p99_ms", ms(percentile(&latencies, 0.99))),
            ("cpu_us_per_append", format!("{cpu_per_append:.0}")),
        ],
        headline: format!("{rate:.0} appends/s"),
        met: true,
        target: "report",
    })
}

/// Append on one node, follow on another, both on one Redis.
fn redis_follow_rtt(bin: &Path) -> Res<Outcome> {
    let redis = RedisServer::start()?;
    let backend = redis.backend("bench");
    let writer = Server::start_with(bin, &["--backend", &backend])?;
    let reader = Server::start_with(bin, &["--backend", &backend])?;
    let (rtts, keys) = follow_rtt_between(&writer, &reader)?;
    Ok(Outcome::Measured {
        keys,
        headline: format!(
            "p50 {} ms, p99 {} ms",
            ms(percentile(&rtts, 0.50)),
            ms(percentile(&rtts, 0.99))
        ),
        met: true,
        target: "report",
    })
}
