//! The HTTP/1.1 API: listeners, the route table, one file per route group.

pub mod auth;
pub mod cas;
#[cfg(feature = "nushell")]
pub mod eval;
pub mod gateway;
pub mod groups;
pub mod kv;
pub mod metrics;
pub mod query;
pub mod read;
pub mod respond;
pub mod routes;
pub mod server;
pub mod ui;
pub mod write;
