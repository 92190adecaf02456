//! xs: a local-first event stream store, wire-compatible with cross.stream
//! 0.13. `store` holds the stream; `api` serves it over HTTP/1.1; `serve`
//! runs the server; `cli` is the client side of the `xs` binary.
//!
//! Private by default: the binary needs `run`, the black-box tests reach
//! into `store` to build and inspect store folders.

mod api;
mod cli;
#[cfg(feature = "nushell")]
mod nu;
mod processor;
mod server;
mod service_manager;
pub mod store;
mod sys;

pub use cli::run;
