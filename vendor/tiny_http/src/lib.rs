#![allow(warnings)] // xs: vendored as-is; see PATCHES.md
//! # Simple usage
//!
//! ## Creating the server
//!
//! The easiest way to create a server is to call `Server::http()`.
//!
//! The `http()` function returns an `IoResult<Server>` which will return an error
//! in the case where the server creation fails (for example if the listening port is already
//! occupied).
//!
//! ```no_run
//! let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! ```
//!
//! A newly-created `Server` will immediately start listening for incoming connections and HTTP
//! requests.
//!
//! ## Receiving requests
//!
//! Calling `server.recv()` will block until the next request is available.
//! This function returns an `IoResult<Request>`, so you need to handle the possible errors.
//!
//! ```no_run
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//!
//! loop {
//!     // blocks until the next request is received
//!     let request = match server.recv() {
//!         Ok(rq) => rq,
//!         Err(e) => { println!("error: {}", e); break }
//!     };
//!
//!     // do something with the request
//!     // ...
//! }
//! ```
//!
//! In a real-case scenario, you will probably want to spawn multiple worker tasks and call
//! `server.recv()` on all of them. Like this:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use std::thread;
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! let server = Arc::new(server);
//! let mut guards = Vec::with_capacity(4);
//!
//! for _ in (0 .. 4) {
//!     let server = server.clone();
//!
//!     let guard = thread::spawn(move || {
//!         loop {
//!             let rq = server.recv().unwrap();
//!
//!             // ...
//!         }
//!     });
//!
//!     guards.push(guard);
//! }
//! ```
//!
//! If you don't want to block, you can call `server.try_recv()` instead.
//!
//! ## Handling requests
//!
//! The `Request` object returned by `server.recv()` contains informations about the client's request.
//! The most useful methods are probably `request.method()` and `request.url()` which return
//! the requested method (`GET`, `POST`, etc.) and url.
//!
//! To handle a request, you need to create a `Response` object. See the docs of this object for
//! more infos. Here is an example of creating a `Response` from a file:
//!
//! ```no_run
//! # use std::fs::File;
//! # use std::path::Path;
//! let response = tiny_http::Response::from_file(File::open(&Path::new("image.png")).unwrap());
//! ```
//!
//! All that remains to do is call `request.respond()`:
//!
//! ```no_run
//! # use std::fs::File;
//! # use std::path::Path;
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! # let request = server.recv().unwrap();
//! # let response = tiny_http::Response::from_file(File::open(&Path::new("image.png")).unwrap());
//! let _ = request.respond(response);
//! ```
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]
#![allow(clippy::match_like_matches_macro)]

#[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
use zeroize::Zeroizing;

use std::error::Error;
use std::io::Error as IoError;
use std::io::ErrorKind as IoErrorKind;
use std::io::Result as IoResult;
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use client::ClientConnection;
use connection::Connection;
use util::MessagesQueue;

pub use common::{HTTPVersion, Header, HeaderField, Method, StatusCode};
pub use connection::{ConfigListenAddr, ListenAddr, Listener};
pub use request::{ReadWrite, Request};
pub use response::{Response, ResponseBox};
pub use test::TestRequest;

mod client;
mod common;
mod connection;
mod request;
mod response;
mod ssl;
mod test;
mod util;

/// The main class of this library.
///
/// Destroying this object will immediately close the listening socket and the reading
///  part of all the client's connections. Requests that have already been returned by
///  the `recv()` function will not close and the responses will be transferred to the client.
pub struct Server {
    // should be false as long as the server exists
    // when set to true, all the subtasks will close within a few hundreds ms
    close: Arc<AtomicBool>,

    // queue for messages received by child threads
    messages: Arc<MessagesQueue<Message>>,

    // result of TcpListener::local_addr()
    listening_addr: ListenAddr,

    // xs patch: once set, connection threads answer their requests in
    // place through it instead of queueing them for `recv()`.
    handler: Arc<std::sync::OnceLock<Handler>>,
}

/// xs patch: answers one request on the thread that read it.
pub type Handler = Arc<dyn Fn(Request) + Send + Sync>;

/// xs patch: what a server allows its clients, and whom it tells when it
/// has to refuse one. The accept loop never ends on an error: it backs off
/// (`BACKOFF_MIN`, doubling to `BACKOFF_MAX`) and accepts again, so a
/// listener survives running out of descriptors or threads.
#[derive(Clone, Default)]
pub struct Limits {
    /// Connections open at once; a new one beyond gets a 503 and is closed.
    pub max_connections: Option<usize>,
    /// How long a connection may take to send a whole request head (its
    /// first, or its next when kept alive; it is then closed), and the
    /// longest pause in a request body (its read fails, the request is
    /// answered `408` and the connection closes). A response being written
    /// (a follow) is never timed out. Too large to add to the clock: none.
    pub idle_timeout: Option<Duration>,
    /// Told of trouble once per burst: when nothing of that kind was told
    /// in the last `BURST_GAP`.
    pub on_event: Option<Arc<dyn Fn(&Event) + Send + Sync>>,
}

/// xs patch: trouble the accept loop met (see `Limits::on_event`).
#[derive(Debug)]
pub enum Event {
    /// `accept` failed (out of descriptors, say); retrying.
    AcceptFailed(IoError),
    /// This many connections are open: new ones get a 503.
    AtCapacity(usize),
    /// No thread could be started for a connection; it was closed.
    SpawnFailed(IoError),
}

/// xs patch: the first wait after a failed accept.
const BACKOFF_MIN: Duration = Duration::from_millis(5);
/// xs patch: the longest wait between accepts that fail.
const BACKOFF_MAX: Duration = Duration::from_millis(100);
/// xs patch: trouble this long after the last of its kind is a new burst.
const BURST_GAP: Duration = Duration::from_secs(5);

/// xs patch: tells `Limits::on_event`, once per burst of each kind.
struct Reports {
    on_event: Option<Arc<dyn Fn(&Event) + Send + Sync>>,
    /// When each kind was last met: accept failed, at capacity, spawn failed.
    last: [Option<Instant>; 3],
}

impl Reports {
    fn new(on_event: Option<Arc<dyn Fn(&Event) + Send + Sync>>) -> Reports {
        Reports {
            on_event,
            last: [None; 3],
        }
    }

    fn accept_failed(&mut self, e: IoError) {
        self.report(0, Event::AcceptFailed(e));
    }

    fn at_capacity(&mut self, max: usize) {
        self.report(1, Event::AtCapacity(max));
    }

    fn spawn_failed(&mut self, e: IoError) {
        self.report(2, Event::SpawnFailed(e));
    }

    fn report(&mut self, kind: usize, event: Event) {
        let now = Instant::now();
        let new_burst = self.last[kind].map_or(true, |at| now.duration_since(at) >= BURST_GAP);
        self.last[kind] = Some(now);
        if new_burst {
            log::error!("{:?}", event);
            if let Some(on_event) = &self.on_event {
                on_event(&event);
            }
        }
    }
}

/// xs patch: one open connection, counted while it lives.
struct Open(Arc<AtomicUsize>);

impl Open {
    fn count(active: &Arc<AtomicUsize>) -> Open {
        active.fetch_add(1, AcqRel);
        Open(active.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, AcqRel);
    }
}

/// xs patch: the answer to a connection beyond `max_connections`, written
/// from the accept thread without blocking it (a new socket's send buffer
/// is empty), then the connection is closed.
fn refuse(sock: Connection) {
    const ANSWER: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Length: 21\r\n\
Retry-After: 1\r\n\
Connection: close\r\n\r\n\
too many connections\n";
    use std::io::{Read, Write};
    if sock.set_nonblocking(true).is_err() {
        return;
    }
    let _ = (&sock).write(ANSWER);
    let _ = sock.shutdown(Shutdown::Write);
    // Whatever the client sent already is read, so that closing does not
    // reset the connection (which can lose the answer on its way).
    let mut sink = [0u8; 4096];
    for _ in 0..16 {
        match (&sock).read(&mut sink) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
}

enum Message {
    Error(IoError),
    NewRequest(Request),
}

impl From<IoError> for Message {
    fn from(e: IoError) -> Message {
        Message::Error(e)
    }
}

impl From<Request> for Message {
    fn from(rq: Request) -> Message {
        Message::NewRequest(rq)
    }
}

// this trait is to make sure that Server implements Share and Send
#[doc(hidden)]
trait MustBeShareDummy: Sync + Send {}
#[doc(hidden)]
impl MustBeShareDummy for Server {}

pub struct IncomingRequests<'a> {
    server: &'a Server,
}

/// Represents the parameters required to create a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The addresses to try to listen to.
    pub addr: ConfigListenAddr,

    /// If `Some`, then the server will use SSL to encode the communications.
    pub ssl: Option<SslConfig>,
}

/// Configuration of the server for SSL.
#[derive(Debug, Clone)]
pub struct SslConfig {
    /// Contains the public certificate to send to clients.
    pub certificate: Vec<u8>,
    /// Contains the ultra-secret private key used to decode communications.
    pub private_key: Vec<u8>,
}

impl Server {
    /// Shortcut for a simple server on a specific address.
    #[inline]
    pub fn http<A>(addr: A) -> Result<Server, Box<dyn Error + Send + Sync + 'static>>
    where
        A: ToSocketAddrs,
    {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::from_socket_addrs(addr)?,
            ssl: None,
        })
    }

    /// Shortcut for an HTTPS server on a specific address.
    #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
    #[inline]
    pub fn https<A>(
        addr: A,
        config: SslConfig,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>>
    where
        A: ToSocketAddrs,
    {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::from_socket_addrs(addr)?,
            ssl: Some(config),
        })
    }

    #[cfg(unix)]
    #[inline]
    /// Shortcut for a UNIX socket server at a specific path
    pub fn http_unix(
        path: &std::path::Path,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::unix_from_path(path),
            ssl: None,
        })
    }

    /// Builds a new server that listens on the specified address.
    pub fn new(config: ServerConfig) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        let listener = config.addr.bind()?;
        Self::from_listener(listener, config.ssl)
    }

    /// Builds a new server using the specified TCP listener.
    ///
    /// This is useful if you've constructed TcpListener using some less usual method
    /// such as from systemd. For other cases, you probably want the `new()` function.
    pub fn from_listener<L: Into<Listener>>(
        listener: L,
        ssl_config: Option<SslConfig>,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        Self::from_listener_with(listener, ssl_config, Limits::default())
    }

    /// xs patch: `from_listener` with connection limits.
    pub fn from_listener_with<L: Into<Listener>>(
        listener: L,
        ssl_config: Option<SslConfig>,
        limits: Limits,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        let listener = listener.into();
        // building the "close" variable
        let close_trigger = Arc::new(AtomicBool::new(false));

        // building the TcpListener
        let (server, local_addr) = {
            let local_addr = listener.local_addr()?;
            log::debug!("Server listening on {}", local_addr);
            (listener, local_addr)
        };

        // building the SSL capabilities
        #[cfg(all(feature = "ssl-openssl", feature = "ssl-rustls"))]
        compile_error!(
            "Features 'ssl-openssl' and 'ssl-rustls' must not be enabled at the same time"
        );
        #[cfg(not(any(feature = "ssl-openssl", feature = "ssl-rustls")))]
        type SslContext = ();
        #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
        type SslContext = crate::ssl::SslContextImpl;
        let ssl: Option<SslContext> = {
            match ssl_config {
                #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
                Some(config) => Some(SslContext::from_pem(
                    config.certificate,
                    Zeroizing::new(config.private_key),
                )?),
                #[cfg(not(any(feature = "ssl-openssl", feature = "ssl-rustls")))]
                Some(_) => return Err(
                    "Building a server with SSL requires enabling the `ssl` feature in tiny-http"
                        .into(),
                ),
                None => None,
            }
        };

        // creating a task where server.accept() is continuously called
        // and ClientConnection objects are pushed in the messages queue
        let messages = MessagesQueue::with_capacity(8);

        let inside_close_trigger = close_trigger.clone();
        let inside_messages = messages.clone();
        let handler: Arc<std::sync::OnceLock<Handler>> = Arc::new(std::sync::OnceLock::new());
        let inside_handler = handler.clone();
        // xs patch: the accept loop never ends on an error (see `Limits`).
        thread::Builder::new()
            .name("accept".into())
            .spawn(move || {
                let mut reports = Reports::new(limits.on_event.clone());
                let active = Arc::new(AtomicUsize::new(0));
                let mut backoff = BACKOFF_MIN;

                log::debug!("Running accept thread");
                while !inside_close_trigger.load(Relaxed) {
                    let sock = match server.accept() {
                        Ok((sock, _)) => sock,
                        Err(e) => {
                            if inside_close_trigger.load(Relaxed) {
                                break;
                            }
                            // Out of descriptors, say: the connection waits
                            // in the backlog until one is free again.
                            reports.accept_failed(e);
                            thread::sleep(backoff);
                            backoff = (backoff * 2).min(BACKOFF_MAX);
                            continue;
                        }
                    };
                    backoff = BACKOFF_MIN;
                    if let Some(max) = limits.max_connections {
                        if active.load(Acquire) >= max {
                            refuse(sock);
                            reports.at_capacity(max);
                            continue;
                        }
                    }
                    use util::RefinedTcpStream;
                    let (read_closable, write_closable) = match ssl {
                        None => RefinedTcpStream::new(sock, limits.idle_timeout),
                        #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
                        Some(ref ssl) => {
                            // trying to apply SSL over the connection
                            // if an error occurs, we just close the socket and resume listening
                            let sock = match ssl.accept(sock) {
                                Ok(s) => s,
                                Err(_) => continue,
                            };

                            RefinedTcpStream::new(sock, limits.idle_timeout)
                        }
                        #[cfg(not(any(feature = "ssl-openssl", feature = "ssl-rustls")))]
                        Some(ref _ssl) => unreachable!(),
                    };
                    let client = ClientConnection::new(write_closable, read_closable);

                    let messages = inside_messages.clone();
                    let handler = inside_handler.clone();
                    let open = Open::count(&active);
                    // A thread per connection (see PATCHES.md).
                    let spawned = thread::Builder::new().name("conn".into()).spawn(move || {
                        let _open = open;
                        // Synchronization is needed for HTTPS requests to avoid a deadlock
                        if client.secure() {
                            let (sender, receiver) = mpsc::channel();
                            for rq in client {
                                messages.push(rq.with_notify_sender(sender.clone()).into());
                                if receiver.recv().is_err() {
                                    break;
                                }
                            }
                        } else {
                            for rq in client {
                                match handler.get() {
                                    Some(handle) => handle(rq),
                                    None => messages.push(rq.into()),
                                }
                            }
                        }
                    });
                    if let Err(e) = spawned {
                        // The connection (moved into the closure) is closed.
                        reports.spawn_failed(e);
                        thread::sleep(backoff);
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                    }
                }
                log::debug!("Terminating accept thread");
            })?;

        // result
        Ok(Server {
            messages,
            close: close_trigger,
            listening_addr: local_addr,
            handler,
        })
    }

    /// xs patch: from now on, each request is answered by `handler` on the
    /// connection thread that read it (no hand-off to a `recv()` caller).
    /// Requests queued before this still wait for `recv()`. Only the
    /// first call has an effect; returns whether it was that one.
    pub fn set_handler(&self, handler: Handler) -> bool {
        self.handler.set(handler).is_ok()
    }

    /// Returns an iterator for all the incoming requests.
    ///
    /// The iterator will return `None` if the server socket is shutdown.
    #[inline]
    pub fn incoming_requests(&self) -> IncomingRequests<'_> {
        IncomingRequests { server: self }
    }

    /// Returns the address the server is listening to.
    #[inline]
    pub fn server_addr(&self) -> ListenAddr {
        self.listening_addr.clone()
    }

    /// Returns the number of clients currently connected to the server.
    pub fn num_connections(&self) -> usize {
        unimplemented!()
        //self.requests_receiver.lock().len()
    }

    /// Blocks until an HTTP request has been submitted and returns it.
    pub fn recv(&self) -> IoResult<Request> {
        match self.messages.pop() {
            Some(Message::Error(err)) => Err(err),
            Some(Message::NewRequest(rq)) => Ok(rq),
            None => Err(IoError::new(IoErrorKind::Other, "thread unblocked")),
        }
    }

    /// Same as `recv()` but doesn't block longer than timeout
    pub fn recv_timeout(&self, timeout: Duration) -> IoResult<Option<Request>> {
        match self.messages.pop_timeout(timeout) {
            Some(Message::Error(err)) => Err(err),
            Some(Message::NewRequest(rq)) => Ok(Some(rq)),
            None => Ok(None),
        }
    }

    /// Same as `recv()` but doesn't block.
    pub fn try_recv(&self) -> IoResult<Option<Request>> {
        match self.messages.try_pop() {
            Some(Message::Error(err)) => Err(err),
            Some(Message::NewRequest(rq)) => Ok(Some(rq)),
            None => Ok(None),
        }
    }

    /// Unblock thread stuck in recv() or incoming_requests().
    /// If there are several such threads, only one is unblocked.
    /// This method allows graceful shutdown of server.
    pub fn unblock(&self) {
        self.messages.unblock();
    }
}

impl Iterator for IncomingRequests<'_> {
    type Item = Request;
    fn next(&mut self) -> Option<Request> {
        self.server.recv().ok()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.close.store(true, Relaxed);
        // Connect briefly to ourselves to unblock the accept thread
        let maybe_stream = match &self.listening_addr {
            ListenAddr::IP(addr) => TcpStream::connect(addr).map(Connection::from),
            #[cfg(unix)]
            ListenAddr::Unix(addr) => {
                // TODO: use connect_addr when its stabilized.
                let path = addr.as_pathname().unwrap();
                std::os::unix::net::UnixStream::connect(path).map(Connection::from)
            }
        };
        if let Ok(stream) = maybe_stream {
            let _ = stream.shutdown(Shutdown::Both);
        }

        #[cfg(unix)]
        if let ListenAddr::Unix(addr) = &self.listening_addr {
            if let Some(path) = addr.as_pathname() {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}
