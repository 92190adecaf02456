//! The read and write halves of a connection.
//!
//! xs patch: both halves share one socket through an `Arc` (upstream gave
//! each a `try_clone`: two descriptors per connection, and a panic when
//! the clone failed at the descriptor limit). The read half also keeps the
//! time limits on request heads and bodies (`ReadClock`).

use std::io::Result as IoResult;
use std::io::{Error as IoError, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::connection::Connection;
#[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
use crate::ssl::SslStream;

pub(crate) enum Stream {
    Http(Arc<Connection>),
    #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
    Https(SslStream),
}

impl Clone for Stream {
    fn clone(&self) -> Self {
        match self {
            Stream::Http(tcp_stream) => Stream::Http(tcp_stream.clone()),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => Stream::Https(ssl_stream.clone()),
        }
    }
}

impl From<Connection> for Stream {
    fn from(tcp_stream: Connection) -> Self {
        Stream::Http(Arc::new(tcp_stream))
    }
}

impl Stream {
    fn secure(&self) -> bool {
        match self {
            Stream::Http(_) => false,
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(_) => true,
        }
    }

    fn peer_addr(&mut self) -> IoResult<Option<SocketAddr>> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.peer_addr(),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.peer_addr(),
        }
    }

    /// xs patch: the socket's receive timeout (none over TLS).
    fn set_read_timeout(&self, timeout: Option<Duration>) -> IoResult<()> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.set_read_timeout(timeout),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(_) => Ok(()),
        }
    }

    fn shutdown(&mut self, how: Shutdown) -> IoResult<()> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.shutdown(how),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.shutdown(how),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        match self {
            Stream::Http(tcp_stream) => (&**tcp_stream).read(buf),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> IoResult<usize> {
        match self {
            Stream::Http(tcp_stream) => (&**tcp_stream).write(buf),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.write(buf),
        }
    }

    fn flush(&mut self) -> IoResult<()> {
        match self {
            Stream::Http(tcp_stream) => (&**tcp_stream).flush(),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.flush(),
        }
    }
}

pub struct RefinedTcpStream {
    stream: Stream,
    close_read: bool,
    close_write: bool,
    /// xs patch: the read time limits (read half only).
    clock: Option<ReadClock>,
}

impl RefinedTcpStream {
    /// The read and write halves of `stream`; with `idle_limit`, a request
    /// head must arrive whole within it and a body must not pause longer
    /// (see `ReadClock`).
    pub(crate) fn new<S>(
        stream: S,
        idle_limit: Option<Duration>,
    ) -> (RefinedTcpStream, RefinedTcpStream)
    where
        S: Into<Stream>,
    {
        let stream: Stream = stream.into();

        let (read, write) = (stream.clone(), stream);

        let read = RefinedTcpStream {
            stream: read,
            close_read: true,
            close_write: false,
            clock: idle_limit.and_then(ReadClock::new),
        };

        let write = RefinedTcpStream {
            stream: write,
            close_read: false,
            close_write: true,
            clock: None,
        };

        (read, write)
    }

    /// xs patch: the read half's clock, for the connection to start and
    /// stop around each request head.
    pub(crate) fn clock(&self) -> Option<ReadClock> {
        self.clock.clone()
    }

    /// Returns true if this struct wraps around a secure connection.
    #[inline]
    pub(crate) fn secure(&self) -> bool {
        self.stream.secure()
    }

    pub(crate) fn peer_addr(&mut self) -> IoResult<Option<SocketAddr>> {
        self.stream.peer_addr()
    }

    /// xs patch: the socket's descriptor (plain connections only).
    #[cfg(unix)]
    pub(crate) fn raw_fd(&self) -> Option<std::os::unix::io::RawFd> {
        use std::os::unix::io::AsRawFd;
        match &self.stream {
            Stream::Http(connection) => match &**connection {
                Connection::Tcp(s) => Some(s.as_raw_fd()),
                Connection::Unix(s) => Some(s.as_raw_fd()),
            },
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }
}

impl Drop for RefinedTcpStream {
    fn drop(&mut self) {
        if self.close_read {
            self.stream.shutdown(Shutdown::Read).ok();
        }

        if self.close_write {
            self.stream.shutdown(Shutdown::Write).ok();
        }
    }
}

impl Read for RefinedTcpStream {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        match &self.clock {
            None => self.stream.read(buf),
            Some(clock) => clock.read(&mut self.stream, buf),
        }
    }
}

/// xs patch: the time limits on a connection's reads; `limit` is the
/// idle timeout.
///
/// - A request head must arrive whole within `limit`, counted from the
///   first socket read for it (for a kept-alive connection, from when it is
///   free for its next request: a response still being written, a follow
///   say, is never timed out: no read happens then).
/// - Every other read is a body read (the handler's, or a drain of an
///   unread body on drop): it waits at most `limit` for a byte, then fails
///   with `TimedOut`. That is an inactivity limit, not a total one: a large
///   upload that keeps sending is never cut.
///
/// The socket's receive timeout wakes a blocked read; a head read sets it
/// to the time left, but only when that differs much from what is set, and
/// a body read sets it back to `limit` only if it is not already, so a
/// request whose head arrives in one read costs no extra system call. A
/// limit too large to add to the clock is no limit.
#[derive(Clone)]
pub(crate) struct ReadClock {
    limit: Duration,
    state: Arc<Mutex<ClockState>>,
}

#[derive(Default)]
struct ClockState {
    /// A request head is being read.
    in_head: bool,
    /// When it must be complete; set by its first socket read.
    deadline: Option<Instant>,
    /// The socket's receive timeout as last set.
    socket_timeout: Option<Duration>,
}

/// How far the socket's timeout may be above the time left before it is
/// lowered (a head may thus be closed this much late).
const SLACK: Duration = Duration::from_millis(10);

impl ReadClock {
    /// A clock for `limit`; `None` when no instant is that far off (no
    /// limit then, rather than an overflow).
    fn new(limit: Duration) -> Option<ReadClock> {
        Instant::now().checked_add(limit)?;
        Some(ReadClock {
            limit,
            state: Arc::new(Mutex::new(ClockState::default())),
        })
    }

    /// A request head starts (its clock starts at its first socket read).
    pub(crate) fn begin_head(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.in_head = true;
        state.deadline = None;
    }

    /// The head is complete: reads are body reads until the next head.
    pub(crate) fn end_head(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.in_head = false;
        state.deadline = None;
    }

    /// Sets the socket's receive timeout to `wait` unless it is already.
    fn set_timeout(
        &self,
        state: &mut ClockState,
        stream: &Stream,
        wait: Option<Duration>,
    ) -> IoResult<()> {
        if state.socket_timeout != wait {
            stream.set_read_timeout(wait)?;
            state.socket_timeout = wait;
        }
        Ok(())
    }

    fn read(&self, stream: &mut Stream, buf: &mut [u8]) -> IoResult<usize> {
        loop {
            let in_head = {
                let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                if state.in_head {
                    let now = Instant::now();
                    let deadline = match state.deadline {
                        Some(deadline) => Some(deadline),
                        None => {
                            state.deadline = now.checked_add(self.limit);
                            state.deadline
                        }
                    };
                    match deadline {
                        // Too far off to count: no limit.
                        None => self.set_timeout(&mut state, stream, None)?,
                        Some(deadline) => {
                            let left = deadline.saturating_duration_since(now);
                            if left.is_zero() {
                                return Err(IoError::new(
                                    ErrorKind::TimedOut,
                                    "no complete request head in time",
                                ));
                            }
                            let reset = match state.socket_timeout {
                                None => true,
                                Some(set) => set > left.saturating_add(SLACK) || set < left / 2,
                            };
                            if reset {
                                // Zero would mean "no timeout": at least 1 ms.
                                let wait = left.max(Duration::from_millis(1));
                                stream.set_read_timeout(Some(wait))?;
                                state.socket_timeout = Some(wait);
                            }
                        }
                    }
                } else {
                    let limit = self.limit.max(Duration::from_millis(1));
                    self.set_timeout(&mut state, stream, Some(limit))?;
                }
                state.in_head
            };
            match stream.read(buf) {
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if !in_head {
                        // A whole `limit` without a byte of the body.
                        return Err(IoError::new(
                            ErrorKind::TimedOut,
                            format!(
                                "the client sent no more of the request body for {} s",
                                self.limit.as_secs_f64()
                            ),
                        ));
                    }
                    // Around again: the deadline is looked at above.
                }
                other => return other,
            }
        }
    }
}

impl Write for RefinedTcpStream {
    fn write(&mut self, buf: &[u8]) -> IoResult<usize> {
        self.stream.write(buf)
    }

    fn flush(&mut self) -> IoResult<()> {
        self.stream.flush()
    }
}
