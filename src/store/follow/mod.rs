//! Following the stream: how a reader learns that the stream moved, and
//! what it reads then.
//!
//! - `head.rs`: the wake-up state (newest id, version, closed) under its
//!   own lock, with the condvars followers sleep on. The writer publishes
//!   every committed batch there.
//! - `window.rs`: beside it, what a batch leaves in memory (ephemeral
//!   frames and payloads, recently stored frames, imported ids to skip),
//!   each part bounded, filled before the batch is announced.
//! - `reader.rs`: a read (`GET /`, `.cat`, a processor): history from the
//!   store in chunks, `xs.threshold`, then live frames, each wake-up
//!   reading from its last delivered id (the window when it holds them,
//!   else the store), so a slow follower holds no backlog.
//!
//! The store re-exports `head` and `reader` (as `store::read`), the paths
//! the rest of xs uses.

pub(in crate::store) mod head;
pub(in crate::store) mod reader;
mod window;
