//! Nushell inside xs: the engine (language core plus our builtins), value
//! conversion, and one file per builtin under `commands/`.

// Nushell's `ShellError` is large by design, and every command returns it.
#![allow(clippy::result_large_err)]

pub mod commands;
pub mod engine;
pub mod value;

pub use engine::{Engine, ScriptError};
