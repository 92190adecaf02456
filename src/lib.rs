//! xs: a local-first event stream store, wire-compatible with cross.stream
//! 0.13. `store` holds the stream; `api` serves it over HTTP/1.1; `cli` is
//! the client side of the `xs` binary.

pub mod cli;
pub mod store;
