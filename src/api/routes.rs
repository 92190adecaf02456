//! The route table, in one place.
//!
//! Requests come here already framed by the vendored tiny_http
//! (vendor/tiny_http/src/util/framing.rs): an absolute-form target
//! (`GET http://localhost/x`, what cross.stream's client sends) reads as
//! `/x`, and a head whose body framing is ambiguous (a `Content-Length`
//! that is no u64, two that differ, one beside `Transfer-Encoding`) never
//! arrives: it is answered 400 and its connection closed.

use tiny_http::{Method, Request};

use super::query::split_url;
use super::read::{self, End};
use super::respond::Reply;
use super::write::{self, WriteLimits};
use super::{cas, kv, server::Listener};
use crate::store::Store;

/// Everything a request handler needs.
#[derive(Clone)]
pub struct Context {
    pub store: Store,
    pub limits: WriteLimits,
    /// The base Nushell engine `/eval` forks from.
    #[cfg(feature = "nushell")]
    pub engine: crate::nu::LazyEngine,
    /// The processors' status, for `/ps`.
    pub processes: crate::processor::ps::ProcessTable,
}

/// Dispatches one request to its handler.
pub fn handle(context: &Context, listener: &Listener, request: Request) {
    if !listener.authorized(&request) {
        let mut reply = Reply::error(401, "unauthorized");
        reply
            .extra_headers
            .push(("WWW-Authenticate", "Basic realm=\"xs\"".into()));
        return reply.send(request);
    }
    let request = match listener.ui_addr() {
        Some(addr) => match super::ui::handle(addr, request) {
            Some(request) => request,
            None => return,
        },
        None => request,
    };
    let store = &context.store;
    let url = request.url().to_string();
    let (path, pairs) = split_url(&url);
    let method = request.method().clone();
    let segments: Vec<&str> = path.trim_start_matches('/').splitn(2, '/').collect();
    match (&method, segments.as_slice()) {
        (Method::Get, ["version"]) => {
            Reply::json(format!("{{\"version\":\"{}\"}}", env!("CARGO_PKG_VERSION"))).send(request)
        }
        (Method::Get, [""]) => read::cat(store, request, &pairs),
        (Method::Get, ["metrics"]) => super::metrics::metrics(store, &context.processes, request),
        (Method::Get, ["ps"]) => {
            let mut body = Vec::new();
            for row in context.processes.rows() {
                body.extend_from_slice(row.to_string().as_bytes());
                body.push(b'\n');
            }
            Reply::with_type(200, "application/x-ndjson", body).send(request)
        }
        (Method::Get, ["last"]) => read::ends(store, request, "", &pairs, End::Last),
        (Method::Get, ["last", spec]) => read::ends(store, request, spec, &pairs, End::Last),
        (Method::Get, ["first"]) => read::ends(store, request, "", &pairs, End::First),
        (Method::Get, ["first", spec]) => read::ends(store, request, spec, &pairs, End::First),
        (Method::Get, ["cas", sri]) => cas::get(store, request, sri),
        (Method::Post, ["cas"]) => cas::post(store, request, context.limits),
        (Method::Post, ["import"]) => write::import(store, request, context.limits),
        #[cfg(feature = "nushell")]
        (Method::Post, ["eval"]) => super::eval::eval(context.engine.get(), store, request),
        #[cfg(not(feature = "nushell"))]
        (Method::Post, ["eval"]) => Reply::error(
            501,
            "this xs was built without Nushell (cargo feature `nushell`)",
        )
        .send(request),
        (Method::Get, ["kv"]) => kv::list(store, request, &pairs),
        (Method::Get, ["kv", key]) => kv::get(store, request, key, &pairs),
        (Method::Put, ["kv", key]) => kv::put(store, request, key),
        (Method::Delete, ["kv", key]) => kv::delete(store, request, key),
        (Method::Post, ["append", topic]) => {
            write::append(store, request, topic, &pairs, context.limits)
        }
        (Method::Get, ["groups"]) => super::groups::list(store, request),
        (Method::Get, ["consume", group]) => super::groups::consume(store, request, group, &pairs),
        (Method::Post, ["ack", group]) => super::groups::settle(store, request, group, false),
        (Method::Post, ["nack", group]) => super::groups::settle(store, request, group, true),
        (Method::Get, [id, "next"]) => read::neighbour(store, request, id, &pairs, true),
        (Method::Get, [id, "prev"]) => read::neighbour(store, request, id, &pairs, false),
        (Method::Get, [id]) => read::get(store, request, id, &pairs),
        (Method::Delete, [id]) => write::remove(store, request, id),
        _ => Reply::not_found().send(request),
    }
}
