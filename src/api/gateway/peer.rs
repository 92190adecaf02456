//! Is the client still there? The gateway's answer, found behind tiny_http.
//!
//! tiny_http owns each connection's socket and hands out only a request
//! and a writer, and its writes swallow "broken pipe". A request that waits
//! for its handler would therefore never learn that its client left. So,
//! for a request that has waited a while (never on the fast path), the
//! gateway looks at the socket itself, by the descriptor number the request
//! came on (`Request::connection_fd`, a patch of ours to tiny_http). Each
//! look duplicates that number and checks the copy is still the TCP socket
//! whose local port is the gateway's and whose peer is the request's remote
//! address (a number tiny_http closed may have been reused), uses the copy,
//! and closes it: no descriptor is held between looks. The socket's TCP
//! state then tells: `ESTABLISHED` is a client still there; anything else
//! means it closed its side (`CLOSE_WAIT`) or reset the connection
//! (`CLOSE`).
//!
//! A client that half-closes (shuts down its sending side and waits for
//! the answer) looks gone; HTTP clients do not do this, `nc -N` does.

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use crate::sys;

/// One client's connection to the gateway.
pub struct Peer {
    local_port: u16,
    remote: SocketAddr,
    /// The descriptor number the request came on.
    fd: Option<RawFd>,
    /// Whether a look has found the connection there.
    located: bool,
}

impl Peer {
    /// The connection from `remote` to the gateway's `local_port`, which
    /// came on descriptor number `fd`; nothing is looked at yet.
    pub fn new(local_port: u16, remote: SocketAddr, fd: Option<RawFd>) -> Peer {
        Peer {
            local_port,
            remote,
            fd,
            located: false,
        }
    }

    /// Whether the socket has been found already.
    pub fn is_located(&self) -> bool {
        self.located
    }

    /// Whether the client closed or reset the connection. A connection
    /// that cannot be found counts as still there.
    pub fn is_gone(&mut self) -> bool {
        self.socket()
            .is_some_and(|socket| !sys::net::is_established(socket.as_fd()).unwrap_or(false))
    }

    /// Ends the connection both ways: the client sees it close, and
    /// tiny_http's reader of it wakes up and lets go.
    pub fn shut_down(&mut self) {
        if let Some(socket) = self.socket() {
            let _ = sys::fd::shutdown(socket.as_raw_fd());
        }
    }

    /// A fresh copy of the connection's descriptor, while the number the
    /// request came on still holds it.
    fn socket(&mut self) -> Option<OwnedFd> {
        let socket = self.fd.and_then(|fd| self.copy_if_ours(fd));
        self.located |= socket.is_some();
        socket
    }

    /// A copy of `fd` if it is this connection. The copy is checked too:
    /// `fd` may have been closed and reused in between.
    fn copy_if_ours(&self, fd: RawFd) -> Option<OwnedFd> {
        if !is_connection(fd, self.local_port, self.remote) {
            return None;
        }
        let socket = sys::fd::duplicate(fd).ok()?;
        is_connection(socket.as_raw_fd(), self.local_port, self.remote).then_some(socket)
    }
}

/// Whether `fd` is a TCP socket on `local_port` connected to `remote`.
fn is_connection(fd: RawFd, local_port: u16, remote: SocketAddr) -> bool {
    sys::net::local_addr(fd).is_ok_and(|local| local.port() == local_port)
        && sys::net::peer_addr(fd).is_ok_and(|peer| peer == remote)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::time::{Duration, Instant};

    #[test]
    fn finds_a_connection_and_sees_its_client_leave() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server_side, remote) = listener.accept().unwrap();
        let mut peer = Peer::new(port, remote, Some(server_side.as_raw_fd()));
        assert!(!peer.is_gone());
        assert!(peer.is_located());
        client.write_all(b"x").unwrap();
        drop(client);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !peer.is_gone() {
            assert!(Instant::now() < deadline, "the close was not seen");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_number_that_holds_another_connection_is_not_it_and_not_gone() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server_side, _) = listener.accept().unwrap();
        let elsewhere = "127.0.0.1:9".parse().unwrap();
        let mut peer = Peer::new(port, elsewhere, Some(server_side.as_raw_fd()));
        assert!(!peer.is_gone());
        assert!(!peer.is_located());
        let mut unknown = Peer::new(port, elsewhere, None);
        assert!(!unknown.is_gone());
        assert!(!unknown.is_located());
    }
}
