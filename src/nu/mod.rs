//! Nushell inside xs: the engine (language core plus our builtins), value
//! conversion, and one file per builtin under `commands/`.

pub mod commands;
pub mod engine;
pub mod value;

pub use engine::{Engine, ScriptError};
