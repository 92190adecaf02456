//! How a store is opened: its durability policy and the options of
//! `xs serve` that reach the store.

use std::time::Duration;

use super::follow::head::EphemeralLimits;
use super::redis::RedisAddress;
use super::retain::RetainRule;

/// When an acknowledged append is on stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Before the append is answered (the default).
    Always,
    /// At most this long after the answer.
    Interval(Duration),
    /// Whenever the OS writes it back.
    Never,
}

impl FsyncPolicy {
    pub fn parse(text: &str) -> Result<FsyncPolicy, String> {
        match text {
            "always" => Ok(FsyncPolicy::Always),
            "never" => Ok(FsyncPolicy::Never),
            _ => text
                .strip_prefix("interval:")
                .and_then(|ms| ms.parse::<u64>().ok())
                .filter(|ms| *ms > 0)
                .map(|ms| FsyncPolicy::Interval(Duration::from_millis(ms)))
                .ok_or_else(|| {
                    format!("invalid --fsync '{text}': expected always, interval:<ms> or never")
                }),
        }
    }
}

/// How a store is opened.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub fsync: FsyncPolicy,
    pub ephemeral: EphemeralLimits,
    /// `--backend redis://...`: frames, payloads and k/v live there; the
    /// folder only holds the socket.
    pub redis: Option<RedisAddress>,
    /// `--redis-replicas N`: replicas that must acknowledge each write.
    pub redis_replicas: u32,
    /// `--ttl-sweep <ms>`: how often expired `time:` frames are removed;
    /// `None` (`0`): never by this server (reads still skip them).
    pub ttl_sweep: Option<Duration>,
    /// `--dedup-window`: how long an idempotency key is remembered;
    /// `None` (`0`): keys are ignored.
    pub dedup_window: Option<Duration>,
    /// `--retain`: retention rules, enforced every `ttl_sweep`.
    pub retain: Vec<RetainRule>,
    /// Which topics steer the caller's watchers of `wait_control_past`
    /// (the processor dispatcher): a batch holding one wakes them. The
    /// caller's rule, not the store's; by default none.
    pub control_topic: fn(&str) -> bool,
}

/// How long an idempotency key is remembered unless told otherwise.
pub const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_secs(120);

/// How often expired `time:` frames are removed unless told otherwise.
pub const DEFAULT_TTL_SWEEP: Duration = Duration::from_millis(1000);

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            fsync: FsyncPolicy::Always,
            ephemeral: EphemeralLimits::default(),
            redis: None,
            redis_replicas: 0,
            ttl_sweep: Some(DEFAULT_TTL_SWEEP),
            dedup_window: Some(DEFAULT_DEDUP_WINDOW),
            retain: Vec::new(),
            control_topic: |_| false,
        }
    }
}
