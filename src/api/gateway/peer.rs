//! Is the client still there? The gateway's answer, found behind tiny_http.
//!
//! tiny_http owns each connection's socket and hands out only a request
//! and a writer, and its writes swallow "broken pipe". A request that waits
//! for its handler would therefore never learn that its client left. So,
//! for a request that has waited a while (never on the fast path), the
//! gateway looks the socket up itself: the process's open descriptors are
//! scanned once for the TCP socket whose local port is the gateway's and
//! whose peer is the request's remote address. Each later look duplicates
//! that descriptor and checks the copy is still that connection (a number
//! tiny_http closed may have been reused), uses the copy, and closes it: no
//! descriptor is held between looks. The socket's TCP state then tells:
//! `ESTABLISHED` is a client still there; anything else means it closed its
//! side (`CLOSE_WAIT`) or reset the connection (`CLOSE`).
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
    /// The descriptor number the connection was last found at.
    found_at: Option<RawFd>,
}

impl Peer {
    /// The connection from `remote` to the gateway's `local_port`; nothing
    /// is looked up yet.
    pub fn new(local_port: u16, remote: SocketAddr) -> Peer {
        Peer {
            local_port,
            remote,
            found_at: None,
        }
    }

    /// Whether the socket has been found already (a look is then cheap).
    pub fn is_located(&self) -> bool {
        self.found_at.is_some()
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

    /// A fresh copy of the connection's descriptor, found again by a scan
    /// when the number it was last at no longer holds it.
    fn socket(&mut self) -> Option<OwnedFd> {
        if let Some(socket) = self.found_at.and_then(|fd| self.copy_if_ours(fd)) {
            return Some(socket);
        }
        self.found_at = None;
        let entries = std::fs::read_dir("/proc/self/fd").ok()?;
        for entry in entries.flatten() {
            let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            if let Some(socket) = self.copy_if_ours(fd) {
                self.found_at = Some(fd);
                return Some(socket);
            }
        }
        None
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
        let (_server_side, remote) = listener.accept().unwrap();
        let mut peer = Peer::new(port, remote);
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
    fn an_unknown_client_is_not_found_and_not_gone() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut peer = Peer::new(port, "127.0.0.1:9".parse().unwrap());
        assert!(!peer.is_gone());
        assert!(!peer.is_located());
    }
}
