//! The writer's request queue: a crossbeam channel, as the contract has
//! it, with a doorbell instead of crossbeam's blocking `recv`.
//!
//! Why the doorbell: a crossbeam receiver spins and calls `sched_yield`
//! several times before it sleeps, on every batch; on a 2-core machine
//! that is CPU taken from the connection threads whose requests the
//! writer is waiting for (8% of the server's CPU with one client
//! appending). Here the writer takes what is queued with `try_recv` and,
//! when nothing is, sleeps on a condvar at once; a sender rings only when
//! it sleeps.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};

struct Doorbell {
    /// The receiver is asleep (or about to be) on `ring`.
    sleeping: Mutex<bool>,
    ring: Condvar,
    senders: AtomicUsize,
}

impl Doorbell {
    fn lock(&self) -> MutexGuard<'_, bool> {
        // A bool cannot be left half-written by a panicking holder.
        self.sleeping.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn ring_if_sleeping(&self) {
        let mut sleeping = self.lock();
        if std::mem::take(&mut *sleeping) {
            drop(sleeping);
            self.ring.notify_one();
        }
    }
}

pub struct QueueSender<T> {
    tx: Sender<T>,
    bell: Arc<Doorbell>,
}

pub struct QueueReceiver<T> {
    rx: Receiver<T>,
    bell: Arc<Doorbell>,
}

/// Why `recv_batch_timeout` returned nothing.
#[derive(Debug, PartialEq, Eq)]
pub enum Empty {
    Timeout,
    Closed,
}

pub fn queue<T>() -> (QueueSender<T>, QueueReceiver<T>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let bell = Arc::new(Doorbell {
        sleeping: Mutex::new(false),
        ring: Condvar::new(),
        senders: AtomicUsize::new(1),
    });
    (
        QueueSender {
            tx,
            bell: bell.clone(),
        },
        QueueReceiver { rx, bell },
    )
}

impl<T> QueueSender<T> {
    /// Queues `item`; gives it back when the receiver is gone.
    pub fn send(&self, item: T) -> Result<(), T> {
        self.tx.send(item).map_err(|e| e.0)?;
        self.bell.ring_if_sleeping();
        Ok(())
    }
}

impl<T> Clone for QueueSender<T> {
    fn clone(&self) -> Self {
        self.bell.senders.fetch_add(1, Ordering::Relaxed);
        QueueSender {
            tx: self.tx.clone(),
            bell: self.bell.clone(),
        }
    }
}

impl<T> Drop for QueueSender<T> {
    fn drop(&mut self) {
        // The last sender wakes the receiver, which then finds the channel
        // disconnected once it is empty.
        if self.bell.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            let mut sleeping = self.bell.lock();
            *sleeping = false;
            drop(sleeping);
            self.bell.ring.notify_one();
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
        loop {
            let mut batch = Vec::new();
            while batch.len() < max.max(1) {
                match self.rx.try_recv() {
                    Ok(item) => batch.push(item),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) if batch.is_empty() => {
                        return Err(Empty::Closed)
                    }
                    Err(TryRecvError::Disconnected) => break,
                }
            }
            if !batch.is_empty() {
                return Ok(batch);
            }
            let mut sleeping = self.bell.lock();
            *sleeping = true;
            // Looked at again under the lock: a sender that queued after
            // the drain above rings once this thread waits.
            if !self.rx.is_empty() || self.bell.senders.load(Ordering::Acquire) == 0 {
                *sleeping = false;
                continue;
            }
            sleeping = match deadline {
                None => self
                    .bell
                    .ring
                    .wait(sleeping)
                    .unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        *sleeping = false;
                        return Err(Empty::Timeout);
                    }
                    self.bell
                        .ring
                        .wait_timeout(sleeping, deadline - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
            *sleeping = false;
        }
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
