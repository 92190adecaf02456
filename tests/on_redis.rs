//! The black-box suites again — core API and CLI, Nushell, processors,
//! views, supervision, the gateway — every server on `--backend redis://`
//! (see tests/common/backend.rs): the same tests, not a copy.

// Each suite declares `mod common;` as it does in its own test binary, so
// the helpers are compiled once per suite here: intended.
#![allow(clippy::duplicate_mod)]

#[path = "api_badinput.rs"]
mod api_badinput;
#[path = "api_concurrency.rs"]
mod api_concurrency;
#[path = "api_read.rs"]
mod api_read;
#[path = "api_store.rs"]
mod api_store;
#[path = "api_write.rs"]
mod api_write;
#[path = "cli_expose.rs"]
mod cli_expose;
#[path = "cli_kv.rs"]
mod cli_kv;
#[path = "cli_read.rs"]
mod cli_read;
#[path = "cli_write.rs"]
mod cli_write;
#[path = "connections.rs"]
mod connections;
#[path = "consumer_groups.rs"]
mod consumer_groups;
#[path = "es_append.rs"]
mod es_append;
#[path = "gateway.rs"]
mod gateway;
#[path = "nu_eval.rs"]
mod nu_eval;
#[path = "nu_processors.rs"]
mod nu_processors;
#[path = "retention.rs"]
mod retention;
#[path = "store_faults.rs"]
mod store_faults;
#[path = "supervise.rs"]
mod supervise;
#[path = "views.rs"]
mod views;
