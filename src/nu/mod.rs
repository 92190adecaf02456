//! Nushell inside xs: the base state (Nushell with its standard commands),
//! the engine (that plus our builtins), value conversion, and one file per
//! builtin under `commands/`.

// Nushell's `ShellError` is large by design, and every command returns it.
#![allow(clippy::result_large_err)]

mod base;
pub mod commands;
pub mod engine;
pub mod value;

pub use base::prewarm;
pub use engine::{Engine, LazyEngine, ScriptError};
