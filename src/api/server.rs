//! Listeners and connection threads.
//!
//! Each listener (the store's Unix socket, `--expose` addresses) is a
//! tiny_http server; each connection's thread answers its own requests, so
//! a long follow never holds up anyone else.
//!
//! Connections cost a descriptor and a thread each, so every listener has
//! limits (`Limits`, from `--max-connections` and `--idle-timeout`): past
//! its cap a new connection gets a 503 and is closed; one that sends no
//! whole request head in time is closed, and one whose request body stops
//! coming for that long gets a 408 and is closed (a follow is never timed
//! out); and
//! a failed accept (out of descriptors) is retried after a short back-off,
//! never ending the listener. Each kind of trouble is logged once per
//! burst, among the frame log's lines on stderr.
//!
//! A `--ui` listener is a TCP one that also serves the viewer page
//! (`super::ui`); every other path there goes to the same route table.
//!
//! The socket is bound before the store's `xs.start` frame is written, but
//! requests wait at the `Ready` gate until it is: the first answer a
//! client gets already sees the server started.

use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tiny_http::{Event, Request, Server};

use super::auth::Credentials;
use super::routes::{self, Context};

/// `--idle-timeout` when not given, in seconds.
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 30;

/// Descriptors kept back from the connection caps' share for the store's
/// own files, the processors' pipes and a Redis connection.
const RESERVED_FDS: u64 = 128;

/// The fewest and the most connections a listener allows by default.
const DEFAULT_MAX_CONNECTIONS: (u64, u64) = (16, 10_000);

/// What one listener allows its clients.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once (`--max-connections`).
    pub max_connections: usize,
    /// How long a connection may take to send a whole request head, and
    /// the longest pause in a request body (`--idle-timeout`); `None`: no
    /// limit.
    pub idle_timeout: Option<Duration>,
}

/// The default `--max-connections` of each of `listeners` listeners under
/// the descriptor limit `fd_limit`: what is left after `RESERVED_FDS`,
/// shared out at two descriptors a connection (its socket, and a file a
/// request may open), within `DEFAULT_MAX_CONNECTIONS`.
pub fn default_max_connections(fd_limit: u64, listeners: usize) -> usize {
    let share = fd_limit.saturating_sub(RESERVED_FDS) / 2 / listeners.max(1) as u64;
    let (low, high) = DEFAULT_MAX_CONNECTIONS;
    share.clamp(low, high) as usize
}

/// tiny_http's limits for a listener; `name` says which in the log.
pub(crate) fn tiny_limits(limits: Limits, name: String) -> tiny_http::Limits {
    tiny_http::Limits {
        max_connections: Some(limits.max_connections),
        idle_timeout: limits.idle_timeout,
        on_event: Some(Arc::new(move |event: &Event| {
            let what = match event {
                Event::AtCapacity(max) => {
                    format!("{max} connections open (--max-connections): new ones get 503")
                }
                Event::AcceptFailed(e) => format!("cannot accept a connection ({e}): retrying"),
                Event::SpawnFailed(e) => {
                    format!("cannot start a connection thread ({e}): connection closed")
                }
            };
            log_event(&format!("{name}: {what}"));
        })),
    }
}

/// One line on stderr among the frame log's, in its layout (time of day in
/// UTC, then where the id would be, blank).
pub fn log_event(text: &str) {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    eprintln!("{}       xs: {text}", time_of_day(now_ms));
}

/// `hh:mm:ss.mmm` in UTC of a Unix time in ms: the frame log's first
/// column.
pub fn time_of_day(unix_ms: u64) -> String {
    let day_ms = unix_ms % 86_400_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        day_ms / 3_600_000,
        (day_ms / 60_000) % 60,
        (day_ms / 1000) % 60,
        day_ms % 1000,
    )
}

/// Holds requests until the server has started (its `xs.start` written).
#[derive(Clone, Default)]
pub struct Ready {
    inner: Arc<ReadyInner>,
}

#[derive(Default)]
struct ReadyInner {
    open: AtomicBool,
    lock: Mutex<()>,
    opened: Condvar,
}

impl Ready {
    /// Lets every waiting and later request through.
    pub fn open(&self) {
        let _guard = self.inner.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.inner.open.store(true, Ordering::Release);
        self.inner.opened.notify_all();
    }

    /// Returns once `open` has been called (at once after that).
    pub fn wait(&self) {
        if self.inner.open.load(Ordering::Acquire) {
            return;
        }
        let mut guard = self.inner.lock.lock().unwrap_or_else(|e| e.into_inner());
        while !self.inner.open.load(Ordering::Acquire) {
            guard = self
                .inner
                .opened
                .wait(guard)
                .unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// One listening endpoint and its access rule.
pub struct Listener {
    server: Server,
    /// The `Basic` credentials required on this listener (`--auth-file`).
    credentials: Option<Credentials>,
    /// Set on a `--ui` listener: its address; it serves the viewer page.
    ui: Option<SocketAddr>,
}

impl Listener {
    /// Binds the store's socket: any stale file is replaced, mode 0600.
    pub fn unix(path: &Path, limits: Limits) -> Result<Listener, String> {
        if path.exists() {
            std::fs::remove_file(path)
                .map_err(|e| format!("cannot replace {}: {e}", path.display()))?;
        }
        let listener =
            UnixListener::bind(path).map_err(|e| format!("cannot bind {}: {e}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("cannot set mode of {}: {e}", path.display()))?;
        Listener::unix_from(listener, path, limits)
    }

    /// Serves a Unix socket bound already (by a service manager, which
    /// also set its mode); `path` names it in messages.
    pub fn unix_from(
        listener: UnixListener,
        path: &Path,
        limits: Limits,
    ) -> Result<Listener, String> {
        let limits = tiny_limits(limits, path.display().to_string());
        let server = Server::from_listener_with(listener, None, limits)
            .map_err(|e| format!("cannot serve {}: {e}", path.display()))?;
        Ok(Listener {
            server,
            credentials: None,
            ui: None,
        })
    }

    /// Binds a TCP address; `credentials`, when given, are then required
    /// on it, loopback or not.
    pub fn tcp(
        addr: SocketAddr,
        credentials: Option<Credentials>,
        limits: Limits,
    ) -> Result<Listener, String> {
        let listener = TcpListener::bind(addr).map_err(|e| format!("cannot bind {addr}: {e}"))?;
        Listener::tcp_from(listener, credentials, limits)
    }

    /// Serves a TCP socket bound already (by a service manager).
    pub fn tcp_from(
        listener: TcpListener,
        credentials: Option<Credentials>,
        limits: Limits,
    ) -> Result<Listener, String> {
        Listener::tcp_named(listener, credentials, limits, "--expose")
    }

    /// Serves a TCP socket; `flag` names it in messages and the log.
    fn tcp_named(
        listener: TcpListener,
        credentials: Option<Credentials>,
        limits: Limits,
        flag: &str,
    ) -> Result<Listener, String> {
        let addr = listener
            .local_addr()
            .map_err(|e| format!("a {flag} socket without an address: {e}"))?;
        let limits = tiny_limits(limits, format!("{flag} {addr}"));
        let server = Server::from_listener_with(listener, None, limits)
            .map_err(|e| format!("cannot serve {addr}: {e}"))?;
        Ok(Listener {
            server,
            credentials,
            ui: None,
        })
    }

    /// Binds a `--ui` address: a TCP listener that also serves the viewer.
    pub fn ui(
        addr: SocketAddr,
        credentials: Option<Credentials>,
        limits: Limits,
    ) -> Result<Listener, String> {
        let bound = TcpListener::bind(addr).map_err(|e| format!("cannot bind {addr}: {e}"))?;
        // The port bound, when `:0` asked for any.
        let addr = bound.local_addr().unwrap_or(addr);
        let mut listener = Listener::tcp_named(bound, credentials, limits, "--ui")?;
        listener.ui = Some(addr);
        Ok(listener)
    }

    /// The address of a `--ui` listener; `None` on any other.
    pub fn ui_addr(&self) -> Option<SocketAddr> {
        self.ui
    }

    /// Whether the request carries the credentials this listener needs.
    pub fn authorized(&self, request: &Request) -> bool {
        let Some(credentials) = &self.credentials else {
            return true;
        };
        request
            .headers()
            .iter()
            .any(|h| h.field.equiv("Authorization") && credentials.accepts(h.value.as_str()))
    }

    /// Stops accepting.
    pub fn unblock(&self) {
        self.server.unblock();
    }
}

/// Serves a listener. tiny_http reads each connection on a thread of its
/// own; that thread now answers the connection's requests itself, a
/// follow or a script included (it blocks only its own connection, whose
/// next request waits for this answer anyway). Handing each request to a
/// worker thread cost a futex wake and a context switch per request, a
/// good part of an append's server CPU. One worker remains for requests
/// read before the handler was installed. No request is answered before
/// `ready` opens.
pub fn spawn(listener: Arc<Listener>, context: Context, ready: Ready) -> Result<(), String> {
    {
        let listener_in_handler = listener.clone();
        let context = context.clone();
        let ready = ready.clone();
        listener
            .server
            .set_handler(Arc::new(move |request: Request| {
                ready.wait();
                routes::handle(&context, &listener_in_handler, request)
            }));
    }
    std::thread::Builder::new()
        .name("worker".into())
        .spawn(move || work(&listener, &context, &ready))
        .map_err(|e| format!("cannot start a worker thread: {e}"))?;
    Ok(())
}

fn work(listener: &Arc<Listener>, context: &Context, ready: &Ready) {
    while let Ok(request) = listener.server.recv() {
        ready.wait();
        if !lasts(&request) {
            routes::handle(context, listener, request);
            continue;
        }
        let listener = listener.clone();
        let context = context.clone();
        let spawned = std::thread::Builder::new()
            .name("stream".into())
            .spawn(move || routes::handle(&context, &listener, request));
        if let Err(e) = spawned {
            eprintln!("xs: cannot start a stream thread: {e}");
        }
    }
}

/// Whether a request may stay open: a follow or watch, or a script.
fn lasts(request: &Request) -> bool {
    let url = request.url();
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    query.split('&').any(|pair| pair.starts_with("follow")) || url.starts_with("/eval")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_caps_share_the_descriptors_out() {
        // A login shell's 1024: (1024 - 128) / 2 for the socket alone.
        assert_eq!(default_max_connections(1024, 1), 448);
        assert_eq!(default_max_connections(1024, 3), 149);
        // Never below the floor, never above the ceiling.
        assert_eq!(default_max_connections(64, 1), 16);
        assert_eq!(default_max_connections(1 << 20, 1), 10_000);
        assert_eq!(default_max_connections(u64::MAX, 1), 10_000);
    }

    #[test]
    fn ready_lets_waiters_through_once_open() {
        let ready = Ready::default();
        let waiter = {
            let ready = ready.clone();
            std::thread::spawn(move || ready.wait())
        };
        ready.open();
        waiter.join().unwrap();
        ready.wait();
    }
}
