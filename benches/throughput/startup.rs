//! Start-up, memory and the one-shot CLI: time from spawn to a `GET /`
//! showing `xs.start` (fresh and existing stores), idle RSS, and the wall
//! time of `xs append` / `xs eval` runs, each child waited for with a
//! deadline (`run_cli`).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::client::*;
use crate::report::*;
use crate::*;

/// Spawn to the first `GET /` answer that holds `xs.start`, median of
/// `STARTUP_RUNS`.
pub(crate) fn startup(bin: &Path) -> Res<Outcome> {
    let mut times = Vec::with_capacity(STARTUP_RUNS);
    for _ in 0..STARTUP_RUNS {
        let server = Server::spawn(bin, "always")?;
        server.wait_started(START_TIMEOUT)?;
        times.push(server.spawned_at.elapsed());
        drop(server);
    }
    Ok(median_times(
        times,
        Duration::from_millis(10),
        "median<=10ms",
    ))
}

/// Like `startup`, on a store that exists: made by a first start and
/// stopped, then started `STARTUP_RUNS` times, each until a `GET /` shows
/// its own `xs.start`.
pub(crate) fn startup_existing(bin: &Path) -> Res<Outcome> {
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
    Ok(median_times(
        times,
        Duration::from_millis(10),
        "median<=10ms",
    ))
}

/// The median (and min/max) of `times`, met when the median is within
/// `target` (`target_text` says it in the report).
fn median_times(mut times: Vec<Duration>, target: Duration, target_text: &'static str) -> Outcome {
    times.sort();
    let median = percentile(&times, 0.5);
    Outcome::Measured {
        keys: vec![
            ("runs", times.len().to_string()),
            ("median_ms", ms(median)),
            ("min_ms", ms(times[0])),
            ("max_ms", ms(times[times.len() - 1])),
        ],
        headline: format!("median {} ms", ms(median)),
        met: median <= target,
        target: target_text,
    }
}

/// VmRSS of a server idle for 1 s after a few appends, then again after
/// one script (`xs eval`), which makes the Nushell engine's first copy.
pub(crate) fn idle_rss(bin: &Path) -> Res<Outcome> {
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
pub(crate) struct ProcStatus {
    pub(crate) rss_kb: u64,
    pub(crate) hwm_kb: u64,
    pub(crate) threads: String,
}

pub(crate) fn proc_status(pid: u32) -> Res<ProcStatus> {
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
pub(crate) fn eval_once(bin: &Path, store: &Path) -> Res<Result<Duration, String>> {
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
pub(crate) fn eval_trivial(bin: &Path) -> Res<Outcome> {
    let server = Server::start(bin, "never")?;
    let mut times = Vec::with_capacity(ONESHOT_RUNS);
    for _ in 0..ONESHOT_RUNS {
        match eval_once(bin, &server.store)? {
            Ok(elapsed) => times.push(elapsed),
            Err(reason) => return Ok(Outcome::Skipped(reason)),
        }
    }
    drop(server);
    Ok(median_times(times, Duration::from_millis(5), "median<=5ms"))
}

/// Runs `xs <args>` with `input` on stdin, killing it after `limit`; its
/// wall time from spawn to exit, and its output.
pub(crate) fn run_cli(
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
pub(crate) fn cli_failure(what: &str, output: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let first = stderr.lines().next().unwrap_or("").trim();
    let detail = if first.is_empty() { "no stderr" } else { first };
    format!("`{what}` exited with {} ({detail})", output.status)
}

/// Runs `xs append <dir> bench` with 64 bytes on stdin; its wall time.
pub(crate) fn oneshot_once(bin: &Path, store: &Path, seq: u64) -> Res<Result<Duration, String>> {
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

pub(crate) fn oneshot_append(bin: &Path) -> Res<Outcome> {
    let server = Server::start(bin, "never")?;
    let mut times = Vec::with_capacity(ONESHOT_RUNS);
    for seq in 0..ONESHOT_RUNS as u64 {
        match oneshot_once(bin, &server.store, seq)? {
            Ok(t) => times.push(t),
            Err(reason) => return Ok(Outcome::Skipped(reason)),
        }
    }
    drop(server);
    Ok(median_times(times, Duration::from_millis(3), "median<=3ms"))
}
