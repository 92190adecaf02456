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
//! `append-16-always-stored`, `append-1-never-stored`, `append-cond-16`,
//! `append-16-retain`, `replay`,
//! `follow-rtt`, `startup`, `startup-existing`, `idle-rss`,
//! `oneshot-append`, `eval-trivial`, `actor-state`, `actor-emit`, `view-fold`, `kv-set-16`, `group-16`, `seek-cost`,
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
//! - `append-cond-16`: `append-16-always` again, then on a fresh store 16
//!   clients each appending to a topic of its own (`cond-<client>`) with
//!   `xs-expect-last` = the id its previous append returned (the first
//!   reads it with `GET /last/<topic>`): an aggregate's command handler
//!   that keeps its version. Conditional appends/s, the plain rate of the
//!   same run and their ratio; target: within 15% of plain.
//! - `append-16-always-stored`, `append-1-never-stored`: the same, each
//!   client sending one fixed payload, so the content is stored once and
//!   no append makes a payload file: the append path without the file
//!   system's price of a new file. Diagnostic, no target.
//! - `append-16-retain`: as `append-16-always`, with `--retain
//!   bench=5000,1MiB`, a rule the run exceeds within its first second, so
//!   the retention sweeper removes frames (in batches through the writer)
//!   while the clients append; reports the frames it removed. Compare with
//!   `append-16-always` run next to it: within noise is the goal.
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
//!
//! Files: this one holds the dimension table, the tunables and the run;
//! `client.rs` the server under test and the HTTP client, `report.rs` the
//! outcome type and the statistics; one file per group of dimensions:
//! `appends.rs` (appends, k/v, payload files), `groups.rs` (`group-16`:
//! a consumer group's deliveries and acks, described there), `reads.rs` (replay,
//! follow), `startup.rs` (start-up, memory, CLI), `processors.rs`,
//! `gateway.rs`, `redis.rs`, `seek.rs` (seek cost, export/import).

mod appends;
mod client;
mod gateway;
mod groups;
mod processors;
mod reads;
mod redis;
mod report;
mod seek;
mod startup;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use appends::{append, append_cond, append_retain, append_stored, kv_set, payload_file_cost};
use client::delete_kept;
use gateway::gateway;
use groups::group;
use processors::{actor, view_fold};
use reads::{follow_rtt, replay};
use redis::{redis_append, redis_follow_rtt};
use report::Outcome;
use seek::{export_import, seek_cost};
use startup::{eval_trivial, idle_rss, oneshot_append, startup, startup_existing};

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
    "append-cond-16",
    "append-16-retain",
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
    "group-16",
    "seek-cost",
    "export-import-100k",
    "gateway",
    "redis-append-16",
    "redis-append-16-2nodes",
    "redis-follow-rtt",
    "payload-file-cost",
];

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
        "append-cond-16" => append_cond(bin),
        "append-1-never-stored" => append_stored(bin, 1, "never"),
        "append-16-retain" => append_retain(bin, 16),
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
        "group-16" => group(bin),
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

/// Writes back whatever is dirty in the page cache (files an earlier
/// dimension or another program wrote), so no dimension runs while the
/// kernel writes them back; how long that took.
fn write_back_earlier() -> Duration {
    let started = Instant::now();
    // SAFETY: `sync` takes no arguments and cannot fail.
    unsafe { libc::sync() };
    started.elapsed()
}
