//! Reading back: `replay` (one `GET /` over a 100k-frame store, after the
//! server has gone idle) and `follow-rtt` (append to the follower's line,
//! matched by id; `follow_rtt_between` also serves the Redis two-node
//! variant).

use std::path::Path;
use std::time::{Duration, Instant};

use crate::appends::*;
use crate::client::*;
use crate::report::*;
use crate::*;

/// Fills a store with `REPLAY_FRAMES` appends (16 clients, fsync never),
/// then times one `GET /`.
pub(crate) fn replay(bin: &Path) -> Res<Outcome> {
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
pub(crate) fn follow_rtt(bin: &Path) -> Res<Outcome> {
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
pub(crate) fn follow_rtt_between(
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
