//! The writer's request queue: many senders, one receiver that takes
//! everything queued at once.
//!
//! Why not a crossbeam channel: its blocking `recv` spins and calls
//! `sched_yield` several times before it sleeps, on every batch; on a
//! 2-core machine that is CPU taken from the connection threads whose
//! requests the writer is waiting for (8% of the server's CPU with one
//! client appending). Here the writer sleeps on a condvar at once, and a
//! sender wakes it only when it sleeps. Taking the whole queue in one
//! lock is also what group commit wants.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

struct State<T> {
    items: VecDeque<T>,
    /// The receiver is asleep on the condvar.
    sleeping: bool,
    /// Every sender is gone: the receiver drains what is left, then ends.
    closed: bool,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
    senders: AtomicUsize,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Pushing and draining a VecDeque leaves it whole even if a holder
        // panicked.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct QueueSender<T> {
    shared: Arc<Shared<T>>,
}

pub struct QueueReceiver<T> {
    shared: Arc<Shared<T>>,
}

/// Why `recv_batch_timeout` returned nothing.
#[derive(Debug, PartialEq, Eq)]
pub enum Empty {
    Timeout,
    Closed,
}

pub fn queue<T>() -> (QueueSender<T>, QueueReceiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            sleeping: false,
            closed: false,
        }),
        ready: Condvar::new(),
        senders: AtomicUsize::new(1),
    });
    (
        QueueSender {
            shared: shared.clone(),
        },
        QueueReceiver { shared },
    )
}

impl<T> QueueSender<T> {
    /// Queues `item`; gives it back when the receiver is gone.
    pub fn send(&self, item: T) -> Result<(), T> {
        let mut state = self.shared.lock();
        if state.closed {
            return Err(item);
        }
        state.items.push_back(item);
        let wake = std::mem::take(&mut state.sleeping);
        drop(state);
        if wake {
            self.shared.ready.notify_one();
        }
        Ok(())
    }
}

impl<T> Clone for QueueSender<T> {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, Ordering::Relaxed);
        QueueSender {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for QueueSender<T> {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.lock().closed = true;
            self.shared.ready.notify_one();
        }
    }
}

impl<T> QueueReceiver<T> {
    /// Waits for at least one item, then takes up to `max`; `None` once
    /// every sender is gone and the queue is empty.
    pub fn recv_batch(&self, max: usize) -> Option<Vec<T>> {
        self.recv_batch_until(max, None).ok()
    }

    /// As `recv_batch`, waiting at most `timeout`.
    pub fn recv_batch_timeout(&self, max: usize, timeout: Duration) -> Result<Vec<T>, Empty> {
        self.recv_batch_until(max, Some(Instant::now() + timeout))
    }

    fn recv_batch_until(&self, max: usize, deadline: Option<Instant>) -> Result<Vec<T>, Empty> {
        let mut state = self.shared.lock();
        loop {
            if !state.items.is_empty() {
                let take = state.items.len().min(max.max(1));
                return Ok(state.items.drain(..take).collect());
            }
            if state.closed {
                return Err(Empty::Closed);
            }
            state.sleeping = true;
            state = match deadline {
                None => self
                    .shared
                    .ready
                    .wait(state)
                    .unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        state.sleeping = false;
                        return Err(Empty::Timeout);
                    }
                    self.shared
                        .ready
                        .wait_timeout(state, deadline - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
            state.sleeping = false;
        }
    }
}

impl<T> Drop for QueueReceiver<T> {
    fn drop(&mut self) {
        // Senders learn at once that nobody will answer, and what is still
        // queued is dropped now (a request's reply, dropped, says the
        // store closed), not when the last sender goes: a requester that
        // waits holds a sender.
        let mut state = self.shared.lock();
        state.closed = true;
        let left = std::mem::take(&mut state.items);
        drop(state);
        drop(left);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_everything_queued_in_order_up_to_max() {
        let (tx, rx) = queue();
        for n in 0..5 {
            tx.send(n).unwrap();
        }
        assert_eq!(rx.recv_batch(3), Some(vec![0, 1, 2]));
        assert_eq!(rx.recv_batch(10), Some(vec![3, 4]));
    }

    #[test]
    fn a_sleeping_receiver_is_woken_and_ends_after_the_last_sender() {
        let (tx, rx) = queue();
        let tx2 = tx.clone();
        let got = std::thread::spawn(move || {
            let mut all = Vec::new();
            while let Some(batch) = rx.recv_batch(100) {
                all.extend(batch);
            }
            all
        });
        std::thread::sleep(Duration::from_millis(20));
        tx.send(1).unwrap();
        drop(tx);
        std::thread::sleep(Duration::from_millis(20));
        tx2.send(2).unwrap();
        drop(tx2);
        assert_eq!(got.join().unwrap(), vec![1, 2]);
    }

    #[test]
    fn what_is_queued_is_dropped_with_the_receiver() {
        let (tx, rx) = queue();
        let item = std::sync::Arc::new(());
        tx.send(item.clone()).unwrap();
        drop(rx);
        assert_eq!(std::sync::Arc::strong_count(&item), 1);
    }

    #[test]
    fn times_out_when_nothing_comes_and_refuses_after_the_receiver() {
        let (tx, rx) = queue::<u8>();
        assert_eq!(
            rx.recv_batch_timeout(1, Duration::from_millis(10)),
            Err(Empty::Timeout)
        );
        drop(rx);
        assert_eq!(tx.send(7), Err(7));
    }
}
