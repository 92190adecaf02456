//! Nushell inside xs: the base state (Nushell with its standard commands),
//! the engine (that plus our builtins), value conversion, one file per
//! builtin under `commands/`, and the bounds of a running script
//! (`bounds.rs`: its memory meter and its watchdog).

// Nushell's `ShellError` is large by design, and every command returns it.
#![allow(clippy::result_large_err)]

mod base;
pub mod bounds;
pub mod commands;
pub mod engine;
pub mod memory;
#[cfg(feature = "nushell-plugins")]
mod plugins;
pub mod value;
pub mod watch;

#[cfg(feature = "nushell-plugins")]
pub use base::{load_plugins, stop_plugins};
pub use engine::{Engine, LazyEngine};
