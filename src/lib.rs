//! xs: a local-first event stream store, wire-compatible with cross.stream
//! 0.13. `store` holds the stream; `api` serves it over HTTP/1.1; `serve`
//! runs the server; `cli` is the client side of the `xs` binary.

pub mod api;
pub mod check;
pub mod cli;
pub mod fd_limit;
#[cfg(feature = "nushell")]
pub mod nu;
pub mod processor;
pub mod serve;
pub mod signals;
pub mod store;
