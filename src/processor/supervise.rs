//! Restart policies for supervised work: when a finished run is followed
//! by another, how long quick failures back off, and waiting for a stop
//! with a deadline.
//!
//! Spawning the children themselves (process groups, the parent-death
//! signal, the record of groups a crashed server left) is OS plumbing and
//! lives in `sys/process.rs`; this file holds only the policy that the
//! service and dispatch loops apply to it.

use std::time::{Duration, Instant};

/// When a finished run is followed by another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    Always,
    OnFailure,
    /// cross.stream 0.14's name for (and default) rerun after a clean
    /// finish, stop on an error; here with `exited` frames and back-off
    /// like the other policies.
    OnSuccess,
    Never,
    /// A `run` service without `restart:`: cross.stream's behaviour (rerun
    /// a second after a clean finish, stop on an error).
    CrossStream,
}

impl Restart {
    pub fn parse(text: &str) -> Result<Restart, String> {
        match text {
            "always" => Ok(Restart::Always),
            "on-failure" => Ok(Restart::OnFailure),
            "on-success" => Ok(Restart::OnSuccess),
            "never" => Ok(Restart::Never),
            other => Err(format!(
                "'restart' must be \"always\", \"on-failure\", \"on-success\" or \"never\": got \"{other}\""
            )),
        }
    }

    /// Whether a run that ended so is followed by another.
    pub fn reruns(self, clean: bool) -> bool {
        match self {
            Restart::Always => true,
            Restart::OnFailure => !clean,
            Restart::Never => false,
            Restart::OnSuccess | Restart::CrossStream => clean,
        }
    }
}

/// The first delay after a quick exit, and the longest.
const FIRST_DELAY: Duration = Duration::from_secs(1);
const MAX_DELAY: Duration = Duration::from_secs(30);

/// Quick failures back off: 1 s, doubling for each consecutive run
/// shorter than `healthy`, up to 30 s.
#[derive(Debug, Clone)]
pub struct Backoff {
    healthy: Duration,
    quick_runs: u32,
}

impl Backoff {
    pub fn new(healthy: Duration) -> Backoff {
        Backoff {
            healthy,
            quick_runs: 0,
        }
    }

    /// The delay before the next run, given how long the last one ran.
    pub fn next_delay(&mut self, ran_for: Duration) -> Duration {
        if ran_for < self.healthy {
            self.quick_runs += 1;
        } else {
            self.quick_runs = 0;
        }
        let doublings = self.quick_runs.saturating_sub(1).min(16);
        (FIRST_DELAY * 2u32.pow(doublings)).min(MAX_DELAY)
    }
}

/// Waits until `done()` or `deadline`; true when done.
pub fn wait_until(deadline: Instant, mut done: impl FnMut() -> bool) -> bool {
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_for_quick_runs_and_resets_after_a_healthy_one() {
        let mut backoff = Backoff::new(Duration::from_secs(60));
        let quick = Duration::from_millis(10);
        let delays: Vec<u64> = (0..7)
            .map(|_| backoff.next_delay(quick).as_secs())
            .collect();
        assert_eq!(delays, vec![1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(backoff.next_delay(Duration::from_secs(61)).as_secs(), 1);
    }

    #[test]
    fn policies() {
        assert!(Restart::Always.reruns(true) && Restart::Always.reruns(false));
        assert!(!Restart::OnFailure.reruns(true) && Restart::OnFailure.reruns(false));
        assert!(!Restart::Never.reruns(true) && !Restart::Never.reruns(false));
        assert_eq!(Restart::parse("on-success"), Ok(Restart::OnSuccess));
        assert!(Restart::OnSuccess.reruns(true) && !Restart::OnSuccess.reruns(false));
        assert!(Restart::CrossStream.reruns(true) && !Restart::CrossStream.reruns(false));
        assert!(Restart::parse("sometimes").is_err());
    }
}
