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
use super::respond::{Answer, Handled, Reply};
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

/// Dispatches one request to its handler, and sends what it answers.
pub fn handle(context: &Context, listener: &Listener, mut request: Request) {
    let handled = route(context, listener, &mut request);
    Answer::send(handled, request);
}

/// The handler's answer to `request`.
fn route(context: &Context, listener: &Listener, request: &mut Request) -> Handled {
    if !listener.authorized(request) {
        let mut reply = Reply::error(401, "unauthorized");
        reply
            .extra_headers
            .push(("WWW-Authenticate", "Basic realm=\"xs\"".into()));
        return Err(reply);
    }
    if let Some(addr) = listener.ui_addr() {
        if let Some(answer) = super::ui::answer(addr, request) {
            return answer.map(Answer::from);
        }
    }
    let store = &context.store;
    let url = request.url().to_string();
    let (path, pairs) = split_url(&url);
    let method = request.method().clone();
    let segments: Vec<&str> = path.trim_start_matches('/').splitn(2, '/').collect();
    let limits = context.limits;
    match (&method, segments.as_slice()) {
        (Method::Get, ["version"]) => {
            Ok(Reply::json(format!("{{\"version\":\"{}\"}}", env!("CARGO_PKG_VERSION"))).into())
        }
        (Method::Get, [""]) => read::cat(store, request, &pairs),
        (Method::Get, ["metrics"]) => {
            Ok(super::metrics::metrics(store, &context.processes, request).into())
        }
        (Method::Get, ["ps"]) => {
            let mut body = Vec::new();
            for row in context.processes.rows() {
                body.extend_from_slice(row.to_string().as_bytes());
                body.push(b'\n');
            }
            Ok(Reply::with_type(200, "application/x-ndjson", body).into())
        }
        (Method::Get, ["retain"]) => {
            let mut body = Vec::new();
            for row in store.retention().status() {
                body.extend_from_slice(row.to_string().as_bytes());
                body.push(b'\n');
            }
            Ok(Reply::with_type(200, "application/x-ndjson", body).into())
        }
        (Method::Get, ["last"]) => read::ends(store, request, "", &pairs, End::Last),
        (Method::Get, ["last", spec]) => read::ends(store, request, spec, &pairs, End::Last),
        (Method::Get, ["first"]) => read::ends(store, request, "", &pairs, End::First),
        (Method::Get, ["first", spec]) => read::ends(store, request, spec, &pairs, End::First),
        (Method::Get, ["cas", sri]) => cas::get(store, sri),
        (Method::Post, ["cas"]) => cas::post(store, request, limits).map(Answer::from),
        (Method::Post, ["import"]) => write::import(store, request, limits).map(Answer::from),
        #[cfg(feature = "nushell")]
        (Method::Post, ["eval"]) => super::eval::eval(context.engine.get(), store, request),
        #[cfg(not(feature = "nushell"))]
        (Method::Post, ["eval"]) => Err(Reply::error(
            501,
            "this xs was built without Nushell (cargo feature `nushell`)",
        )),
        (Method::Get, ["kv"]) => kv::list(store, &pairs).map(Answer::from),
        (Method::Get, ["kv", key]) => kv::get(store, key, &pairs),
        (Method::Put, ["kv", key]) => kv::put(store, request, key).map(Answer::from),
        (Method::Delete, ["kv", key]) => kv::delete(store, key).map(Answer::from),
        (Method::Post, ["append", topic]) => {
            write::append(store, request, topic, &pairs, limits).map(Answer::from)
        }
        (Method::Get, ["groups"]) => super::groups::list(store).map(Answer::from),
        (Method::Delete, ["groups", group]) => {
            super::groups::delete(store, group).map(Answer::from)
        }
        (Method::Get, ["consume", group]) => super::groups::consume(store, group, &pairs),
        (Method::Post, ["ack", group]) => {
            super::groups::settle(store, request, group, false).map(Answer::from)
        }
        (Method::Post, ["nack", group]) => {
            super::groups::settle(store, request, group, true).map(Answer::from)
        }
        (Method::Get, [id, "next"]) => read::neighbour(store, id, &pairs, true).map(Answer::from),
        (Method::Get, [id, "prev"]) => read::neighbour(store, id, &pairs, false).map(Answer::from),
        (Method::Get, [id]) => read::get(store, id, &pairs).map(Answer::from),
        (Method::Delete, [id]) => write::remove(store, id).map(Answer::from),
        _ => Err(Reply::not_found()),
    }
}
