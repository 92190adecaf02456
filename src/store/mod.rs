//! The stream store: frames, topics, ids, and the storage interface every
//! caller uses.

pub mod frame;
pub mod id;
pub mod topic;
pub mod ttl;
