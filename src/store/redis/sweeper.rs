//! The Redis backend's housekeeping: `time:` frames whose ttl ran out are
//! removed by the sweep script every `--ttl-sweep` ms (every node may run
//! it: it is atomic and idempotent), and so is an expired frame a reader
//! met; with `--ttl-sweep 0` neither happens on this node. `last:<n>`
//! pruning and payload collection happen inside the append and remove
//! scripts themselves.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Receiver;
use redis::Value;

use super::{stream_id, Redis};
use crate::store::housekeeping::Chore;
use crate::store::id::now_ms;
use crate::store::metrics::Metrics;
use crate::store::StoreError;

pub fn start(
    redis: Arc<Redis>,
    chores: Receiver<Chore>,
    every: Option<Duration>,
    metrics: Arc<Metrics>,
) -> Result<(), StoreError> {
    let sweeps = match every {
        Some(every) => crossbeam_channel::tick(every),
        None => crossbeam_channel::never(),
    };
    std::thread::Builder::new()
        .name("redis-sweep".into())
        .spawn(move || loop {
            crossbeam_channel::select! {
                recv(chores) -> chore => match chore {
                    Ok(Chore::Expired(id)) => {
                        let sid = stream_id(id);
                        if let Ok(removed) = redis.run_script(&[b"remove", sid.as_bytes()]) {
                            count_removed(&metrics, &removed);
                        }
                    }
                    Ok(Chore::Stop) | Err(_) => return,
                },
                recv(sweeps) -> _ => sweep(&redis, &metrics),
            }
        })
        .map(|_| ())
        .map_err(|e| StoreError::io("starting the redis sweeper", e))
}

/// The most frames one run of the sweep script removes.
const SWEEP_BATCH: i64 = 500;

/// Runs the sweep script until a run removes less than a full batch, so a
/// backlog clears within one sweep rather than 500 frames per interval.
fn sweep(redis: &Redis, metrics: &Metrics) {
    loop {
        let now = now_ms().to_string();
        let Ok(removed) = redis.run_script(&[b"sweep", now.as_bytes()]) else {
            return;
        };
        count_removed(metrics, &removed);
        if !matches!(removed, Value::Int(n) if n >= SWEEP_BATCH) {
            return;
        }
    }
}

/// Counts what a `remove` or `sweep` script run removed (it answers how
/// many frames).
pub fn count_removed(metrics: &Metrics, removed: &Value) {
    if let Value::Int(n @ 1..) = *removed {
        Metrics::add(&metrics.removed_frames, n as u64);
        Metrics::add(&metrics.remove_commits, 1);
    }
}
