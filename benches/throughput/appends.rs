//! The append dimensions (`append-*`, `kv-set-16`): N keep-alive clients
//! send requests back to back for a window after an uncounted warm-up
//! (`hammer`), latency per request and the server's CPU per request. Also
//! `fill`, the 16-client fill the read and processor dimensions start
//! from, and `payload-file-cost`, the file system's price of the new
//! payload file behind each distinct append.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use crate::client::*;
use crate::report::*;
use crate::*;

/// What `hammer` measured: each counted request's latency, and the
/// server's CPU time over the counted window.
pub(crate) struct Hammered {
    pub(crate) latencies: Vec<Duration>,
    pub(crate) cpu_used: Duration,
}

impl Hammered {
    /// The rate over `APPEND_WINDOW`, and the printed keys: `names` are
    /// those of the rate, the count and the server's CPU per request.
    pub(crate) fn report(
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
pub(crate) fn hammer(
    server: &Server,
    clients: usize,
    op: fn(&mut Conn, usize, u64) -> Res<()>,
) -> Res<Hammered> {
    hammer_spread(&[server], &[server.pid()], clients, op)
}

/// As `hammer`, the clients spread over `servers` in turn; the CPU time
/// is that of the processes `pids`.
pub(crate) fn hammer_spread(
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
pub(crate) fn append(
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

/// `append-cond-16`: plain appends (as `append-16-always`), then
/// conditional ones on a fresh store: 16 clients, each the command handler
/// of its own aggregate (topic `cond-<client>`), each append carrying
/// `xs-expect-last` = the id its previous append returned (the first reads
/// it, `GET /last`). Both are measured in the same run, so the ratio is
/// not skewed by the machine's load moving between runs; the target is
/// conditional appends within 15% of plain ones.
pub(crate) fn append_cond(bin: &Path) -> Res<Outcome> {
    let (plain, _) = append_run(bin, 16, "always", |conn, client, seq| {
        append_one(conn, client, seq).map(drop)
    })?;
    let (cond, mut keys) = append_run(bin, 16, "always", cond_append)?;
    let ratio = cond / plain.max(1.0);
    keys.push(("plain_appends_per_s", format!("{plain:.0}")));
    keys.push(("cond_over_plain", format!("{ratio:.2}")));
    Ok(Outcome::Measured {
        keys,
        headline: format!("{cond:.0} conditional appends/s ({plain:.0} plain, {ratio:.2}x)"),
        met: ratio >= 0.85,
        target: ">=0.85x plain",
    })
}

/// One conditional append of the client's aggregate: expects the id its
/// previous append returned (per client thread), else reads it first.
fn cond_append(conn: &mut Conn, client: usize, seq: u64) -> Res<()> {
    use std::cell::RefCell;
    thread_local! {
        static LAST: RefCell<Option<String>> = const { RefCell::new(None) };
    }
    let topic = format!("cond-{client}");
    let expected = match LAST.with(|l| l.borrow().clone()) {
        Some(id) => id,
        None => match get_optional(conn, &format!("/last/{topic}"))? {
            Some(frame) => String::from_utf8_lossy(frame_id(&frame).unwrap_or_default()).into(),
            None => "none".into(),
        },
    };
    let path = format!("/append/{topic}");
    let (status, answer) = conn
        .request_with(
            "POST",
            &path,
            &[("xs-expect-last", &expected)],
            &payload(client, seq),
        )
        .map_err(|e| format!("POST {path}: {e}"))?;
    if status != 200 {
        return Err(format!(
            "POST {path} (expecting {expected}) answered {status}: {}",
            String::from_utf8_lossy(&answer).trim()
        ));
    }
    let id = frame_id(&answer).ok_or("an append answered no id")?;
    let id = String::from_utf8_lossy(id).into_owned();
    LAST.with(|l| *l.borrow_mut() = Some(id));
    Ok(())
}

/// Appends whose content is already stored (each client sends one fixed
/// payload), so no payload file is made: the append path without the
/// file system's price of a new file. Diagnostic, no target.
pub(crate) fn append_stored(bin: &Path, clients: usize, fsync: &str) -> Res<Outcome> {
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

/// `append-16-always` with a retention rule on the appended topic that
/// binds within the run (`bench=5000,1MiB`: about 5,000 frames of ~210
/// bytes), so the sweeper removes while the clients append. To compare
/// with `append-16-always` run side by side; target: within 10% of it.
pub(crate) fn append_retain(bin: &Path, clients: usize) -> Res<Outcome> {
    let server = Server::start_with(bin, &["--fsync", "always", "--retain", "bench=5000,1MiB"])?;
    let hammered = hammer(&server, clients, |conn, client, seq| {
        append_one(conn, client, seq).map(drop)
    })?;
    let mut conn = server.connect()?;
    let retained = expect_200(&mut conn, "GET", "/retain", b"")?;
    let retained = String::from_utf8_lossy(&retained).into_owned();
    drop(server);
    let (rate, mut keys) = hammered.report(
        clients,
        ["appends_per_s", "appends", "server_cpu_us_per_append"],
    );
    let removed = retained
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|row| row["removed_total_frames"].as_u64())
        .sum::<u64>();
    keys.push(("retain_removed_frames", removed.to_string()));
    Ok(Outcome::Measured {
        keys,
        headline: format!("{rate:.0} appends/s ({removed} removed by retention)"),
        met: removed > 0,
        target: "frames removed; compare with append-16-always",
    })
}

/// N clients appending with `op`: the rate and the printed keys.
pub(crate) fn append_run(
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

/// What a fill by appends did.
pub(crate) struct Fill {
    /// Appends answered (short of the goal only at `FILL_LIMIT`).
    pub(crate) filled: u64,
    pub(crate) elapsed: Duration,
    /// The slowest single append.
    pub(crate) slowest: Duration,
}

impl Fill {
    pub(crate) fn rate(&self) -> f64 {
        self.filled as f64 / self.elapsed.as_secs_f64()
    }
}

/// `FILL_CLIENTS` clients append `frames` distinct 64-byte payloads to
/// `topic` between them; stops at `FILL_LIMIT`.
pub(crate) fn fill(server: &Server, topic: &str, frames: u64) -> Res<Fill> {
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

// ---------------------------------------------------------------- k/v

/// 16 clients `PUT /kv/k<client>` back to back under `--fsync always`.
pub(crate) fn kv_set(bin: &Path) -> Res<Outcome> {
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

/// The file system's price of one new payload file (see the top).
pub(crate) fn payload_file_cost() -> Res<Outcome> {
    use std::os::unix::fs::DirBuilderExt;
    pub(crate) const FILES: usize = 12_000;
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
