//! Who runs a processor when several nodes share one stream (the Redis
//! backend): each actor, service, view and action is run by exactly one
//! node at a time, the holder of its lease in Redis.
//!
//! A lease expires `LEASE` after its last renewal. A renewer thread of its
//! own (its own connection, short timeouts, so nothing the dispatcher does
//! can hold it up) renews every held lease every `RENEW_EVERY`. If it has
//! not renewed for `GIVE_UP` (Redis away, a partition), or a lease turns
//! out to be another node's, it stops those processors at once: their
//! scripts are interrupted and their programs get SIGTERM, then SIGKILL at
//! `KILL_AT`, all before the lease can run out and another node take it. So
//! a processor never runs on two nodes. The dispatcher then forgets them
//! (`take_lost`) and keeps them in standby with every processor this node
//! knows of but does not hold; when a holder dies (its lease expires), a
//! node takes the lease and starts the processor as a restart would.
//!
//! On the local backend there is one node: every lease is granted.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::lifecycle::Kind;
use super::StopHandle;
use crate::store::Store;

/// How long a lease lasts without renewal.
pub const LEASE: Duration = Duration::from_millis(5000);
/// How often the holder renews (and the dispatcher looks at standby).
pub const RENEW_EVERY: Duration = Duration::from_millis(1000);
/// Without a renewal sent for this long, the holder stops its processors.
const GIVE_UP: Duration = Duration::from_millis(2000);
/// After giving up, programs still running get SIGKILL this long after the
/// last renewal: well before `LEASE`.
const KILL_AT: Duration = Duration::from_millis(3500);
/// The renewer's timeouts: dialing and each command.
const RENEW_TIMEOUT: Duration = Duration::from_millis(500);

pub type Name = (Kind, String);

/// What the dispatcher and the renewer share.
#[derive(Default)]
struct Held {
    /// Leases this node holds, with how to stop what runs under them.
    leases: HashMap<Name, Option<StopHandle>>,
    /// Leases the renewer let go: the dispatcher forgets their processors.
    lost: Vec<Name>,
}

pub struct Leases {
    store: Store,
    held: Arc<Mutex<Held>>,
    /// Known processors some other node runs (or nobody, for now).
    standby: BTreeSet<Name>,
    tended: Instant,
}

fn key((kind, name): &Name) -> String {
    format!("{}:{name}", kind.word())
}

impl Leases {
    pub fn new(store: Store) -> Leases {
        let held: Arc<Mutex<Held>> = Arc::default();
        if store.redis().is_some() {
            let (store, held) = (store.clone(), held.clone());
            let spawned = std::thread::Builder::new()
                .name("lease-renewer".into())
                .spawn(move || renew_forever(store, held));
            if let Err(e) = spawned {
                eprintln!("xs: cannot start the lease renewer: {e}");
            }
        }
        Leases {
            store,
            held,
            standby: BTreeSet::new(),
            tended: Instant::now(),
        }
    }

    fn held(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes (or keeps) the lease on a processor; false when another node
    /// holds it, which puts the processor in standby.
    pub fn acquire(&mut self, kind: Kind, name: &str) -> bool {
        let processor = (kind, name.to_string());
        let Some(redis) = self.store.redis() else {
            return true;
        };
        let holding = self.held().leases.contains_key(&processor);
        match redis.lease(&key(&processor), LEASE.as_millis() as u64) {
            Ok(true) => {
                self.standby.remove(&processor);
                self.held().leases.entry(processor).or_insert(None);
                true
            }
            // Redis did not answer: a lease we hold stays ours until the
            // renewer gives up on it; one we do not hold waits in standby.
            Err(_) if holding => true,
            Ok(false) | Err(_) => {
                self.held().leases.remove(&processor);
                self.standby.insert(processor);
                false
            }
        }
    }

    /// Tells the renewer how to stop what now runs under a lease.
    pub fn attach(&mut self, kind: Kind, name: &str, stop: StopHandle) {
        if let Some(slot) = self.held().leases.get_mut(&(kind, name.to_string())) {
            *slot = Some(stop);
        }
    }

    /// Forgets a processor (terminated, or nothing of it can run): lets go
    /// of its lease.
    pub fn release(&mut self, kind: Kind, name: &str) {
        let processor = (kind, name.to_string());
        self.standby.remove(&processor);
        if self.held().leases.remove(&processor).is_some() {
            if let Some(redis) = self.store.redis() {
                let _ = redis.unlease(&key(&processor));
            }
        }
    }

    /// Lets go of every lease (shutdown): other nodes take over at once.
    pub fn release_all(&mut self) {
        let held: Vec<Name> = self.held().leases.keys().cloned().collect();
        for (kind, name) in held {
            self.release(kind, &name);
        }
    }

    /// Whether it is time to look at lost leases and standby.
    pub fn due(&self) -> bool {
        self.store.redis().is_some() && self.tended.elapsed() >= RENEW_EVERY
    }

    /// Processors whose lease the renewer let go (it has stopped them
    /// already); they wait in standby now.
    pub fn take_lost(&mut self) -> Vec<Name> {
        self.tended = Instant::now();
        let lost = std::mem::take(&mut self.held().lost);
        self.standby.extend(lost.iter().cloned());
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

/// The renewer: every `RENEW_EVERY`, renews every held lease on its own
/// connection; stops what it can no longer vouch for.
fn renew_forever(store: Store, held: Arc<Mutex<Held>>) {
    let Some(redis) = store.redis() else { return };
    let mut con = None;
    let mut renewed = Instant::now();
    while !store.head().view().closed {
        std::thread::sleep(RENEW_EVERY);
        let names: Vec<Name> = held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .leases
            .keys()
            .cloned()
            .collect();
        let sent = Instant::now();
        if names.is_empty() {
            renewed = sent;
            continue;
        }
        let mut taken = Vec::new();
        let mut failed = false;
        for name in names {
            if con.is_none() {
                con = redis.connect_within(RENEW_TIMEOUT, RENEW_TIMEOUT).ok();
            }
            let Some(c) = con.as_mut() else {
                failed = true;
                break;
            };
            match redis.lease_on(c, &key(&name), LEASE.as_millis() as u64) {
                Ok(true) => {}
                Ok(false) => taken.push(name),
                Err(_) => {
                    con = None;
                    failed = true;
                    break;
                }
            }
        }
        if !failed {
            renewed = sent;
        }
        let mut held = held.lock().unwrap_or_else(|e| e.into_inner());
        let gone: Vec<Name> = if failed && renewed.elapsed() >= GIVE_UP {
            held.leases.keys().cloned().collect()
        } else {
            taken
        };
        for name in gone {
            eprintln!(
                "xs: lost the lease on {} {}: stopping it here",
                name.0.word(),
                name.1
            );
            if let Some(Some(stop)) = held.leases.remove(&name) {
                stop.signal_stop();
                let kill_in = KILL_AT.saturating_sub(renewed.elapsed());
                std::thread::spawn(move || {
                    std::thread::sleep(kill_in);
                    stop.kill();
                });
            }
            held.lost.push(name);
        }
    }
}
