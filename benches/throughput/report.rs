//! What a dimension hands back (`Outcome`: the keys of its printed line, a
//! headline for the summary, its target) and the arithmetic behind the
//! figures: percentiles, a process's CPU time from /proc (10 ms ticks),
//! waiting for a server to go idle.

use std::time::{Duration, Instant};

/// The outcome of one dimension.
pub(crate) enum Outcome {
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

// ---------------------------------------------------------------- stats

pub(crate) fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// A process's CPU time (user + system, all threads) from /proc; clock
/// ticks, so 10 ms resolution.
pub(crate) fn cpu_time(pid: u32) -> Duration {
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
pub(crate) fn wait_idle(pid: u32, limit: Duration) -> (Duration, bool) {
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

pub(crate) fn sleep_until(when: Instant) {
    let now = Instant::now();
    if when > now {
        std::thread::sleep(when - now);
    }
}

pub(crate) fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}
