//! The HTTP gateway (`xs serve <dir> --http <addr>`): plain HTTP/1.1
//! requests become `http.request` frames, and handlers — any actor,
//! action or client that can append — answer with `http.response` frames.
//! The gateway serves only what handlers answer, never the store's API.
//!
//! How a request goes:
//!
//! 1. tiny_http parses the head (a head it cannot parse never gets here);
//!    the connection's own thread takes the request (the listener's limits
//!    are the API's: `--max-connections`, `--idle-timeout`, see
//!    `server.rs`), once the server has started.
//! 2. The body is stored like an append's (`--max-payload`, `413` beyond),
//!    in memory when the request ttl is `ephemeral`.
//! 3. The `http.request` frame is appended (ttl `--http-ttl`) and the
//!    request registers its id with the router (`router.rs`), the one
//!    follower of `http.response` for the whole gateway.
//! 4. The thread waits on its channel for the first answer, at most
//!    `--http-timeout` (then `504`). Every `CHECK_EVERY` of waiting it
//!    looks whether the client is still there (`peer.rs`); a client that
//!    left yields an `http.disconnect` frame, as does a failed write.
//! 5. An answer without `more` is written whole; one with `more: true`
//!    starts a chunked body, each further answer adds a chunk the moment
//!    it lands, and one without `more` ends it (`reply.rs`). A stream that
//!    has started has no time limit: it lasts until its last answer, its
//!    client leaves, or the server stops.

mod peer;
mod reply;
mod request_meta;
mod router;

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cacache::Integrity;
use crossbeam_channel::{Receiver, RecvTimeoutError};
use serde_json::json;
use tiny_http::{Header, Request, Response, Server};

use super::respond::status_of;
use super::server::{self, Limits, Ready};
use crate::store::{Draft, Frame, Id, Store, StoreError, StoredPayload, Ttl};
use peer::Peer;
use reply::{Chunked, ResponseMeta, Shape};
use router::Router;

/// The topic of each request's frame.
pub const REQUEST_TOPIC: &str = "http.request";

/// The topic of the frame that tells handlers a client has gone.
pub const DISCONNECT_TOPIC: &str = "http.disconnect";

/// `--http-timeout` when not given, in milliseconds.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;

/// How often a waiting request looks whether its client is still there.
const CHECK_EVERY: Duration = Duration::from_millis(500);

/// How the gateway is set up (`--http`, `--http-timeout`, `--http-ttl`,
/// and `--max-payload` for request bodies).
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    pub addr: SocketAddr,
    /// How long a request waits for its first answer.
    pub timeout: Duration,
    /// The ttl of `http.request` and `http.disconnect` frames.
    pub ttl: Ttl,
    pub max_payload: u64,
}

/// Resolves `--http <addr>`: `:port` is loopback (127.0.0.1), a host must
/// be named to listen elsewhere; an `http://` prefix is allowed.
pub fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    let bare = text.strip_prefix("http://").unwrap_or(text);
    let bare = bare.strip_suffix('/').unwrap_or(bare);
    let full = match bare.strip_prefix(':') {
        Some(port) => format!("127.0.0.1:{port}"),
        None => bare.to_string(),
    };
    full.to_socket_addrs()
        .map_err(|e| format!("--http {text}: expected :port or host:port ({e})"))?
        .next()
        .ok_or_else(|| format!("--http {text}: no address"))
}

/// A running gateway.
pub struct Gateway {
    server: Arc<Server>,
    addr: SocketAddr,
}

/// What every request's thread shares.
struct Context {
    store: Store,
    router: Arc<Router>,
    options: GatewayOptions,
    /// The listening port, to find a client's socket by.
    port: u16,
}

impl Gateway {
    /// Binds the address (or serves `bound`, a socket a service manager
    /// passed), starts the response router and the accept thread;
    /// requests wait for `ready`.
    pub fn start(
        store: Store,
        options: GatewayOptions,
        bound: Option<TcpListener>,
        limits: Limits,
        ready: Ready,
    ) -> Result<Gateway, String> {
        let listener = match bound {
            Some(listener) => listener,
            None => TcpListener::bind(options.addr)
                .map_err(|e| format!("cannot bind --http {}: {e}", options.addr))?,
        };
        let addr = listener
            .local_addr()
            .map_err(|e| format!("cannot bind --http {}: {e}", options.addr))?;
        let limits = server::tiny_limits(limits, format!("--http {addr}"));
        let server = Arc::new(
            Server::from_listener_with(listener, None, limits)
                .map_err(|e| format!("cannot serve --http {addr}: {e}"))?,
        );
        let router = Router::start(store.clone())?;
        let shared = Arc::new(Context {
            store,
            router,
            options,
            port: addr.port(),
        });
        // Each connection's thread serves its requests one after another:
        // the next head is read only once an answer is complete, so a
        // stream is never cut by the idle timeout.
        {
            let shared = shared.clone();
            let ready = ready.clone();
            server.set_handler(Arc::new(move |request: Request| {
                ready.wait();
                serve(&shared, request)
            }));
        }
        // Requests read before the handler was set.
        let accepting = server.clone();
        std::thread::Builder::new()
            .name("http-accept".into())
            .spawn(move || {
                for request in accepting.incoming_requests() {
                    let shared = shared.clone();
                    let ready = ready.clone();
                    let spawned =
                        std::thread::Builder::new()
                            .name("http-conn".into())
                            .spawn(move || {
                                ready.wait();
                                serve(&shared, request)
                            });
                    if let Err(e) = spawned {
                        eprintln!("xs: http gateway: cannot start a connection thread: {e}");
                    }
                }
            })
            .map_err(|e| format!("cannot start the HTTP accept thread: {e}"))?;
        Ok(Gateway { server, addr })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting requests.
    pub fn stop(&self) {
        self.server.unblock();
    }
}

/// One request, from its head to its last byte.
fn serve(shared: &Context, mut request: Request) {
    let shape = Shape::of(&request);
    let meta = request_meta::request_meta(&request);
    let body = match store_body(shared, &mut request) {
        Ok(body) => body,
        Err(e) => return answer_plain(request, status_of(&e), &e.to_string()),
    };
    let draft = Draft::new(REQUEST_TOPIC)
        .meta(Some(meta))
        .ttl(Some(shared.options.ttl));
    // A refused append leaves no payload file behind (`PayloadPin`).
    let appended = shared.store.append_with_payload(draft, body);
    let request_id = match appended {
        Ok(frame) => frame.id,
        Err(e) => return answer_plain(request, status_of(&e), &e.to_string()),
    };
    let Some(responses) = shared.router.wait_for(request_id) else {
        return answer_plain(request, 503, "the server is stopping");
    };
    let exchange = Exchange {
        shared,
        request_id,
        responses,
        peer: request
            .remote_addr()
            .map(|remote| Peer::new(shared.port, *remote, request.connection_fd())),
    };
    exchange.run(request, shape);
    // Any later answer to this request is dropped by the router.
    shared.router.forget(request_id);
}

/// Stores the request body (none for an empty one); the size limit is the
/// appends' own, checked against `Content-Length` before a byte is read.
/// An ephemeral body must also fit the in-memory window
/// (`--ephemeral-bytes`), or no handler could read it.
fn store_body(
    shared: &Context,
    request: &mut Request,
) -> Result<Option<StoredPayload>, StoreError> {
    let ephemeral = shared.options.ttl == Ttl::Ephemeral;
    let max = if ephemeral {
        let window = shared.store.options().ephemeral.max_bytes as u64;
        shared.options.max_payload.min(window)
    } else {
        shared.options.max_payload
    };
    let declared = request.body_length().map(|n| n as u64);
    let chunked = request
        .headers()
        .iter()
        .any(|h| h.field.equiv("Transfer-Encoding"));
    if declared == Some(0) || (declared.is_none() && !chunked) {
        return Ok(None);
    }
    if declared.is_some_and(|n| n > max) {
        return Err(StoreError::TooLarge(max));
    }
    let stored = shared
        .store
        .put_payload(request.as_reader(), declared, max, ephemeral)?;
    if let Some(declared) = declared {
        if stored.size != declared {
            return Err(StoreError::BadBody(format!(
                "expected {declared} bytes, got {}",
                stored.size
            )));
        }
    }
    Ok((stored.size > 0).then_some(stored))
}

/// The gateway's own answer (an error, a timeout), plain text, through
/// tiny_http: it writes the answer before it drains a body left unread
/// (a refused upload), where `into_writer` would drain first.
fn answer_plain(request: Request, status: u16, text: &str) {
    let mut response = Response::from_string(format!("{text}\n")).with_status_code(status);
    if let Ok(content_type) = Header::from_bytes("Content-Type", "text/plain; charset=utf-8") {
        response = response.with_header(content_type);
    }
    // A client that went away is not an error of ours.
    let _ = request.respond(response);
}

/// What waiting for an answer came to.
enum Waited {
    Answer(Frame),
    TimedOut,
    ClientGone,
    ServerStopping,
}

/// A registered request waiting for, then relaying, its answers.
struct Exchange<'a> {
    shared: &'a Context,
    request_id: Id,
    responses: Receiver<Frame>,
    /// The client's connection, looked up once the request has waited a
    /// while.
    peer: Option<Peer>,
}

impl Exchange<'_> {
    fn run(mut self, request: Request, shape: Shape) {
        let deadline = Instant::now() + self.shared.options.timeout;
        let first = match self.next_answer(Some(deadline)) {
            Waited::Answer(frame) => frame,
            Waited::TimedOut if !self.client_gone() => {
                let text = format!(
                    "no http.response for request {} within {} ms",
                    self.request_id,
                    self.shared.options.timeout.as_millis()
                );
                return answer_plain(request, 504, &text);
            }
            Waited::TimedOut | Waited::ClientGone => return self.disconnected(),
            Waited::ServerStopping => return answer_plain(request, 503, "the server is stopping"),
        };
        let (answer, body) = match self.read_answer(&first) {
            Ok(read) => read,
            Err(text) => return answer_plain(request, 500, &text),
        };
        let mut out = request.into_writer();
        if !answer.more {
            if reply::write_whole(&mut out, &shape, &answer, &body).is_err() {
                self.disconnected();
            }
            return;
        }
        if shape.http10 {
            // No chunked bodies for HTTP/1.0: the stream is sent whole.
            return self.relay_collected(out, &shape, &answer, body);
        }
        match Chunked::start(out, &shape, &answer, &body) {
            Ok(stream) => self.relay_stream(stream),
            Err(_) => self.disconnected(),
        }
    }

    /// Adds each further answer to the chunked body as it lands.
    fn relay_stream(mut self, mut stream: Chunked) {
        loop {
            let frame = match self.next_answer(None) {
                Waited::Answer(frame) => frame,
                Waited::ClientGone => return self.disconnected(),
                // Cut short: the body ends without its last chunk, so the
                // client can tell it is incomplete.
                Waited::TimedOut | Waited::ServerStopping => return self.cut(),
            };
            let body = match self.payload(&frame) {
                Ok(body) => body,
                Err(text) => {
                    eprintln!("xs: http gateway: {text}");
                    return self.cut();
                }
            };
            let known_gone = self
                .peer
                .as_mut()
                .is_some_and(|peer| peer.is_located() && peer.is_gone());
            if known_gone || stream.chunk(&body).is_err() {
                return self.disconnected();
            }
            if !more(&frame) {
                if stream.finish().is_err() {
                    self.disconnected();
                }
                return;
            }
        }
    }

    /// A stream for an HTTP/1.0 client: gathered, then written whole.
    fn relay_collected(
        mut self,
        mut out: Box<dyn std::io::Write + Send>,
        shape: &Shape,
        answer: &ResponseMeta,
        mut body: Vec<u8>,
    ) {
        loop {
            let frame = match self.next_answer(None) {
                Waited::Answer(frame) => frame,
                Waited::ClientGone => return self.disconnected(),
                Waited::TimedOut | Waited::ServerStopping => return self.cut(),
            };
            match self.payload(&frame) {
                Ok(chunk) => body.extend_from_slice(&chunk),
                Err(text) => {
                    eprintln!("xs: http gateway: {text}");
                    return self.cut();
                }
            }
            if !more(&frame) {
                break;
            }
        }
        if reply::write_whole(&mut out, shape, answer, &body).is_err() {
            self.disconnected();
        }
    }

    /// The next answer, waiting until `deadline` (or without limit), and
    /// every `CHECK_EVERY` looking whether the client is still there.
    fn next_answer(&mut self, deadline: Option<Instant>) -> Waited {
        loop {
            let now = Instant::now();
            let wait = match deadline {
                Some(deadline) if deadline <= now => return Waited::TimedOut,
                Some(deadline) => (deadline - now).min(CHECK_EVERY),
                None => CHECK_EVERY,
            };
            match self.responses.recv_timeout(wait) {
                Ok(frame) => return Waited::Answer(frame),
                Err(RecvTimeoutError::Disconnected) => return Waited::ServerStopping,
                Err(RecvTimeoutError::Timeout) if self.client_gone() => return Waited::ClientGone,
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }

    fn client_gone(&mut self) -> bool {
        self.peer.as_mut().is_some_and(Peer::is_gone)
    }

    /// An answer's meta and its whole body.
    fn read_answer(&self, frame: &Frame) -> Result<(ResponseMeta, Vec<u8>), String> {
        let answer = ResponseMeta::from_meta(frame.meta.as_ref()).map_err(|e| {
            format!(
                "invalid http.response {} for request {}: {e}",
                frame.id, self.request_id
            )
        })?;
        Ok((answer, self.payload(frame)?))
    }

    /// An answer's body: its payload, empty without one.
    fn payload(&self, frame: &Frame) -> Result<Vec<u8>, String> {
        let Some(hash) = &frame.hash else {
            return Ok(Vec::new());
        };
        let missing = || format!("the payload of http.response {} is gone", frame.id);
        let sri: Integrity = hash.parse().map_err(|_| missing())?;
        match self.shared.store.read_payload(&sri) {
            Ok(Some(bytes)) => Ok(bytes),
            Ok(None) => Err(missing()),
            Err(e) => Err(format!("reading http.response {}: {e}", frame.id)),
        }
    }

    /// Closes the connection mid-answer.
    fn cut(mut self) {
        if let Some(peer) = &mut self.peer {
            peer.shut_down();
        }
    }

    /// The client has gone: tell the handlers.
    fn disconnected(mut self) {
        if let Some(peer) = &mut self.peer {
            peer.shut_down();
        }
        let draft = Draft::new(DISCONNECT_TOPIC)
            .meta(Some(json!({ "request_id": self.request_id.to_string() })))
            .ttl(Some(self.shared.options.ttl));
        if let Err(e) = self.shared.store.append(draft) {
            eprintln!("xs: http gateway: cannot append {DISCONNECT_TOPIC}: {e}");
        }
    }
}

/// Whether more answers follow this one.
fn more(frame: &Frame) -> bool {
    frame
        .meta
        .as_ref()
        .and_then(|m| m.get("more"))
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            parse_addr(":8080").unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(
            parse_addr("http://0.0.0.0:80/").unwrap(),
            "0.0.0.0:80".parse().unwrap()
        );
        assert_eq!(parse_addr("[::1]:9").unwrap(), "[::1]:9".parse().unwrap());
        assert!(parse_addr("8080").is_err());
        assert!(parse_addr(":port").is_err());
    }
}
