//! The Redis backend's housekeeping: `time:` frames whose ttl ran out are
//! removed by the sweep script (every node may run it: it is atomic and
//! idempotent), and so is an expired frame a reader met. `last:<n>`
//! pruning and payload collection happen inside the append and remove
//! scripts themselves.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Receiver;

use super::{stream_id, Redis};
use crate::store::housekeeping::Chore;
use crate::store::id::now_ms;
use crate::store::StoreError;

const TICK: Duration = Duration::from_millis(500);

pub fn start(redis: Arc<Redis>, chores: Receiver<Chore>) -> Result<(), StoreError> {
    std::thread::Builder::new()
        .name("redis-sweep".into())
        .spawn(move || loop {
            match chores.recv_timeout(TICK) {
                Ok(Chore::Expired(id)) => {
                    let sid = stream_id(id);
                    let _ = redis.run_script(&[b"remove", sid.as_bytes()]);
                }
                Ok(Chore::Stop) | Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    let now = now_ms().to_string();
                    let _ = redis.run_script(&[b"sweep", now.as_bytes()]);
                }
            }
        })
        .map(|_| ())
        .map_err(|e| StoreError::io("starting the redis sweeper", e))
}
