//! Who runs a processor when several nodes share one stream (the Redis
//! backend): each actor, service, view and action is run by exactly one
//! node at a time, the holder of its lease in Redis.
//!
//! A lease expires `LEASE` after its last renewal; the holder renews every
//! `RENEW_EVERY`. A node that cannot renew for `GIVE_UP` (Redis away, a
//! partition) stops those processors itself, before the lease can run out
//! and another node take it: a processor never runs on two nodes. The
//! processors this node knows of but does not hold wait in `standby`; when
//! their holder dies (its lease expires), a node takes the lease and starts
//! the processor as a server restart would.
//!
//! On the local backend there is one node: every lease is granted.

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

use super::lifecycle::Kind;
use crate::store::Store;

/// How long a lease lasts without renewal.
pub const LEASE: Duration = Duration::from_millis(3000);
/// How often the holder renews.
pub const RENEW_EVERY: Duration = Duration::from_millis(1000);
/// Without a renewal for this long, the holder stops its processors.
const GIVE_UP: Duration = Duration::from_millis(2000);

pub type Name = (Kind, String);

pub struct Leases {
    store: Store,
    held: HashSet<Name>,
    /// Known processors some other node runs (or nobody, for now).
    pub standby: BTreeSet<Name>,
    renewed: Instant,
    tended: Instant,
}

impl Leases {
    pub fn new(store: Store) -> Leases {
        Leases {
            store,
            held: HashSet::new(),
            standby: BTreeSet::new(),
            renewed: Instant::now(),
            tended: Instant::now(),
        }
    }

    fn key((kind, name): &Name) -> String {
        format!("{}:{name}", kind.word())
    }

    /// Takes (or keeps) the lease on a processor; false when another node
    /// holds it, which puts the processor in standby.
    pub fn acquire(&mut self, kind: Kind, name: &str) -> bool {
        let processor = (kind, name.to_string());
        let Some(redis) = self.store.redis() else {
            return true;
        };
        match redis.lease(&Leases::key(&processor), LEASE.as_millis() as u64) {
            Ok(true) => {
                self.standby.remove(&processor);
                self.held.insert(processor);
                true
            }
            // Redis did not answer: a lease we hold stays ours until
            // `renew` gives up on it; one we do not hold waits in standby.
            Err(_) if self.held.contains(&processor) => true,
            Ok(false) | Err(_) => {
                self.held.remove(&processor);
                self.standby.insert(processor);
                false
            }
        }
    }

    /// Forgets a processor (terminated, or nothing of it can run): lets go
    /// of its lease.
    pub fn release(&mut self, kind: Kind, name: &str) {
        let processor = (kind, name.to_string());
        self.standby.remove(&processor);
        if self.held.remove(&processor) {
            if let Some(redis) = self.store.redis() {
                let _ = redis.unlease(&Leases::key(&processor));
            }
        }
    }

    /// Lets go of every lease (shutdown): other nodes take over at once.
    pub fn release_all(&mut self) {
        let held: Vec<Name> = self.held.iter().cloned().collect();
        for (kind, name) in held {
            self.release(kind, &name);
        }
    }

    /// Whether it is time to renew and look at standby.
    pub fn due(&self) -> bool {
        self.store.redis().is_some() && self.tended.elapsed() >= RENEW_EVERY
    }

    /// Renews every held lease. Returns the processors this node must stop:
    /// leases another node took, or all of them when renewals have failed
    /// for `GIVE_UP`.
    pub fn renew(&mut self) -> Vec<Name> {
        self.tended = Instant::now();
        let Some(redis) = self.store.redis() else {
            return Vec::new();
        };
        let mut lost = Vec::new();
        let mut failed = false;
        for processor in &self.held {
            match redis.lease(&Leases::key(processor), LEASE.as_millis() as u64) {
                Ok(true) => {}
                Ok(false) => lost.push(processor.clone()),
                Err(_) => failed = true,
            }
        }
        if !failed {
            self.renewed = Instant::now();
        } else if self.renewed.elapsed() >= GIVE_UP {
            lost = self.held.iter().cloned().collect();
        }
        for processor in &lost {
            self.held.remove(processor);
            self.standby.insert(processor.clone());
        }
        lost
    }

    /// Standby processors whose lease this node could take now.
    pub fn adoptable(&mut self) -> Vec<Name> {
        let waiting: Vec<Name> = self.standby.iter().cloned().collect();
        waiting
            .into_iter()
            .filter(|(kind, name)| self.acquire(*kind, name))
            .collect()
    }
}
