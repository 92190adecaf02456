//! Counters the store keeps for `GET /metrics`: plain atomics, bumped by
//! the writer, the readers and the housekeeper, read when scraped. All are
//! cumulative since the server started except `followers` (a gauge).
//! A scan counts its frames locally and adds them once when it ends, so
//! readers do not contend on a shared counter per frame.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the sync latency histogram's buckets.
pub const SYNC_BUCKETS: [f64; 10] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0,
];

#[derive(Debug, Default)]
pub struct Metrics {
    pub frames_appended: AtomicU64,
    pub payload_bytes_appended: AtomicU64,
    pub appends_ok: AtomicU64,
    pub appends_failed: AtomicU64,
    pub syncs: AtomicU64,
    sync_micros_total: AtomicU64,
    sync_buckets: [AtomicU64; SYNC_BUCKETS.len()],
    pub followers: AtomicU64,
    /// Scans of the stream opened (history reads, follower catch-ups,
    /// `last`/`first`).
    pub stream_reads: AtomicU64,
    /// Frames those scans read from the backend, expired ones included.
    pub frames_scanned: AtomicU64,
    /// Frames removed (by `DELETE`, `last:<n>` pruning or expiry).
    pub removed_frames: AtomicU64,
    /// Commits (local batches, Redis script runs) that removed frames.
    pub remove_commits: AtomicU64,
    /// Payload garbage collections run (one per payload no frame
    /// references any more), and the time they took.
    pub gc_drains: AtomicU64,
    pub gc_nanos: AtomicU64,
    /// Local backend: frames removed under each index (`t:<topic>`,
    /// `p:<prefix.>`, `*`), as Redis keeps them in `P.removed`: what the
    /// retention sweeper checks (one entry per topic and prefix removed
    /// from; only the writer adds).
    removed_under: std::sync::Mutex<std::collections::HashMap<String, u64>>,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Counts removed frames of these topics under their indexes.
    pub fn count_removed_topics(&self, topics: &[String]) {
        if topics.is_empty() {
            return;
        }
        let mut counts = self.removed_under.lock().unwrap_or_else(|e| e.into_inner());
        for topic in topics {
            *counts.entry("*".into()).or_default() += 1;
            *counts.entry(format!("t:{topic}")).or_default() += 1;
            for (at, byte) in topic.bytes().enumerate() {
                if byte == b'.' {
                    *counts.entry(format!("p:{}", &topic[..=at])).or_default() += 1;
                }
            }
        }
    }

    /// Whether a removed frame of `topic` counts under `index` (the keys
    /// `count_removed_topics` adds to).
    pub fn counts_under(index: &str, topic: &str) -> bool {
        if index == "*" {
            return true;
        }
        if let Some(exact) = index.strip_prefix("t:") {
            return topic == exact;
        }
        index
            .strip_prefix("p:")
            .is_some_and(|prefix| topic.starts_with(prefix))
    }

    /// Frames removed so far under an index (`t:<topic>`, `p:<prefix.>`,
    /// `*`).
    pub fn removed_under(&self, index: &str) -> u64 {
        let counts = self.removed_under.lock().unwrap_or_else(|e| e.into_inner());
        counts.get(index).copied().unwrap_or(0)
    }

    /// Records one sync and how long it took.
    pub fn observe_sync(&self, took: Duration) {
        Metrics::add(&self.syncs, 1);
        Metrics::add(&self.sync_micros_total, took.as_micros() as u64);
        let seconds = took.as_secs_f64();
        for (bound, bucket) in SYNC_BUCKETS.iter().zip(&self.sync_buckets) {
            if seconds <= *bound {
                Metrics::add(bucket, 1);
            }
        }
    }

    /// Cumulative bucket counts (Prometheus `le` semantics), and the sum in
    /// seconds.
    pub fn sync_histogram(&self) -> (Vec<(f64, u64)>, f64) {
        let buckets = SYNC_BUCKETS
            .iter()
            .zip(&self.sync_buckets)
            .map(|(bound, count)| (*bound, Metrics::get(count)))
            .collect();
        let sum = Metrics::get(&self.sync_micros_total) as f64 / 1_000_000.0;
        (buckets, sum)
    }
}

/// Counts the frames one scan reads; adds them to `frames_scanned` when
/// the scan is dropped.
pub struct ScanCounter {
    metrics: std::sync::Arc<Metrics>,
    frames: u64,
}

impl ScanCounter {
    /// Starts counting a scan (and counts it as a stream read).
    pub fn new(metrics: std::sync::Arc<Metrics>) -> ScanCounter {
        Metrics::add(&metrics.stream_reads, 1);
        ScanCounter { metrics, frames: 0 }
    }

    /// One more frame read. (A method, so a closure calling it owns the
    /// whole counter and its `Drop`, not just the field.)
    pub fn saw_frame(&mut self) {
        self.frames += 1;
    }
}

impl Drop for ScanCounter {
    fn drop(&mut self) {
        Metrics::add(&self.metrics.frames_scanned, self.frames);
    }
}

/// Counts a follower while it lives.
pub struct FollowerGuard<'a>(&'a Metrics);

impl<'a> FollowerGuard<'a> {
    pub fn new(metrics: &'a Metrics) -> FollowerGuard<'a> {
        Metrics::add(&metrics.followers, 1);
        FollowerGuard(metrics)
    }
}

impl Drop for FollowerGuard<'_> {
    fn drop(&mut self) {
        self.0.followers.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::Metrics;

    #[test]
    fn a_topic_counts_under_the_indexes_its_removal_adds_to() {
        let topics = ["log", "log.app", "log.app.err", "logs", "metrics"];
        let indexes = ["*", "t:log", "t:log.app", "p:log.", "p:log.app.", "p:logs."];
        for topic in topics {
            let metrics = Metrics::default();
            metrics.count_removed_topics(&[topic.to_string()]);
            for index in indexes {
                assert_eq!(
                    Metrics::counts_under(index, topic),
                    metrics.removed_under(index) == 1,
                    "{topic} under {index}"
                );
            }
        }
    }
}
