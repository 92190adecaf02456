//! Processors: actors, services and actions, registered through the
//! stream and run by one dispatcher thread.
//!
//! At start the dispatcher reads the lifecycle history (`xs.*`, an index
//! seek) and applies boot compaction (`lifecycle::Slots`) to find which
//! processors should run; it starts them in the order of their create
//! frames. Then it follows the stream live: a `create` starts or replaces a
//! processor, a `term` stops it, `<name>.call` runs an action. At
//! shutdown the server asks it to stop every service (`Processors::shut_down`).
//!
//! When several nodes share the stream (Redis), a node runs a processor
//! only while it holds its lease (`lease.rs`); the others keep it in
//! standby and take it over, as a restart would, when its node dies.

//! Without the `nushell` cargo feature only the vocabulary (`lifecycle`)
//! and the status table (`ps`) are built: the server stores lifecycle
//! frames and runs nothing.

// Scripts hand back Nushell values, whose accessors return the large
// `ShellError`.
#![allow(clippy::result_large_err)]
// Without Nushell nothing runs, so nothing writes the status table or
// reads the lifecycle vocabulary: they stay for `/ps` and the stored
// frames' shape.
#![cfg_attr(not(feature = "nushell"), allow(dead_code))]

#[cfg(feature = "nushell")]
pub mod action;
#[cfg(feature = "nushell")]
pub mod actor;
#[cfg(feature = "nushell")]
mod dispatch;
#[cfg(feature = "nushell")]
pub mod lease;
pub mod lifecycle;
#[cfg(feature = "nushell")]
pub mod output;
pub mod ps;
#[cfg(feature = "nushell")]
pub mod script;
#[cfg(feature = "nushell")]
pub mod service;
#[cfg(feature = "nushell")]
pub mod supervise;
#[cfg(feature = "nushell")]
pub mod view;

#[cfg(feature = "nushell")]
pub use dispatch::{start, Running, StopHandle, DEFAULT_GRACE};

/// Whether a frame on `topic` may steer processors: lifecycle frames
/// (`xs.*`) and action calls (`<name>.call`). The store wakes the
/// dispatcher only for batches that hold one (the server passes this as
/// `StoreOptions::control_topic`); a batch of ordinary frames does not.
pub fn wakes_dispatcher(topic: &str) -> bool {
    topic.starts_with("xs.") || topic.ends_with(".call")
}
