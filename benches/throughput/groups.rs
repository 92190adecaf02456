//! `group-16`: a consumer group's deliveries and acks. A `--fsync always`
//! store is filled with `GROUP_FRAMES` frames (topic `bench`, 16 clients,
//! as `fill`); then 16 consumer threads each open `GET
//! /consume/bench?topics=bench&start=first&max-inflight=64` on one
//! connection and, on a second, `POST /ack/bench` each frame's id as its
//! line arrives (one ack per frame, answered once durable). The clock runs
//! from opening the first stream until the last frame is acked; frames/s =
//! frames / that. `redelivered` counts lines with `"deliveries"` above 1
//! (0 expected: acks come long before the 30 s ack-wait). Met at 5,000
//! frames/s.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use crate::appends::fill;
use crate::client::*;
use crate::report::*;
use crate::*;

const GROUP_FRAMES: u64 = 30_000;
const GROUP_CONSUMERS: usize = 16;

pub(crate) fn group(bin: &Path) -> Res<Outcome> {
    let server = Server::start(bin, "always")?;
    let filled = fill(&server, "bench", GROUP_FRAMES)?;
    if filled.filled < GROUP_FRAMES {
        return Err(format!("filled only {} frames", filled.filled));
    }
    let acked = Arc::new(AtomicU64::new(0));
    let redelivered = Arc::new(AtomicU64::new(0));
    let barrier = Arc::new(Barrier::new(GROUP_CONSUMERS + 1));
    let mut handles = Vec::new();
    for _ in 0..GROUP_CONSUMERS {
        let mut acks = server.connect()?;
        let mut stream = server.connect()?;
        let (acked, redelivered, barrier) = (acked.clone(), redelivered.clone(), barrier.clone());
        handles.push(std::thread::spawn(move || -> Res<Duration> {
            barrier.wait();
            let path = "/consume/bench?topics=bench&start=first&max-inflight=64";
            stream
                .send("GET", path, b"")
                .map_err(|e| format!("GET {path}: {e}"))?;
            let head = stream.read_head().map_err(|e| format!("GET {path}: {e}"))?;
            if head.status != 200 {
                return Err(format!("GET {path} answered {}", head.status));
            }
            let mut line = Vec::new();
            let mut failure = None;
            let mut slowest = Duration::ZERO;
            stream
                .read_chunked(|data| {
                    for byte in data {
                        if *byte != b'\n' {
                            line.push(*byte);
                            continue;
                        }
                        if line.is_empty() {
                            continue;
                        }
                        let Some(id) = frame_id(&line) else {
                            failure = Some(format!(
                                "a line without an id: {}",
                                String::from_utf8_lossy(&line)
                            ));
                            return false;
                        };
                        if !line.ends_with(b"\"deliveries\":1}") {
                            redelivered.fetch_add(1, Ordering::Relaxed);
                        }
                        let sent = Instant::now();
                        if let Err(e) = expect_200(&mut acks, "POST", "/ack/bench", id) {
                            failure = Some(e);
                            return false;
                        }
                        slowest = slowest.max(sent.elapsed());
                        acked.fetch_add(1, Ordering::Relaxed);
                        line.clear();
                    }
                    acked.load(Ordering::Relaxed) < GROUP_FRAMES
                })
                .map_err(|e| format!("reading the consumer stream: {e}"))?;
            match failure {
                Some(e) => Err(e),
                None => Ok(slowest),
            }
        }));
    }
    let cpu_from = cpu_time(server.pid());
    let began = Instant::now();
    barrier.wait();
    let mut done_at = None;
    while done_at.is_none() {
        if acked.load(Ordering::Relaxed) >= GROUP_FRAMES {
            done_at = Some(began.elapsed());
        } else if began.elapsed() > Duration::from_secs(120) {
            return Err(format!(
                "acked only {} frames in 120 s",
                acked.load(Ordering::Relaxed)
            ));
        } else {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let elapsed = done_at.unwrap_or_default();
    let cpu = cpu_time(server.pid()).saturating_sub(cpu_from);
    let mut slowest_ack = Duration::ZERO;
    for handle in handles {
        let slowest = handle
            .join()
            .map_err(|p| format!("consumer panicked: {}", panic_text(&p)))??;
        slowest_ack = slowest_ack.max(slowest);
    }
    let rate = GROUP_FRAMES as f64 / elapsed.as_secs_f64();
    let keys = vec![
        ("frames_per_s", format!("{rate:.0}")),
        ("frames", GROUP_FRAMES.to_string()),
        ("consumers", GROUP_CONSUMERS.to_string()),
        ("secs", format!("{:.2}", elapsed.as_secs_f64())),
        ("slowest_ack_ms", ms(slowest_ack)),
        (
            "redelivered",
            redelivered.load(Ordering::Relaxed).to_string(),
        ),
        (
            "server_cpu_us_per_frame",
            format!("{:.0}", cpu.as_secs_f64() * 1e6 / GROUP_FRAMES as f64),
        ),
        ("fill_per_s", format!("{:.0}", filled.rate())),
    ];
    Ok(Outcome::Measured {
        keys,
        headline: format!("{rate:.0} frames/s"),
        met: rate >= 5_000.0,
        target: ">=5000/s",
    })
}
