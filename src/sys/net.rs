//! A TCP socket's addresses and state, asked by descriptor number: what
//! the gateway needs to find a connection tiny_http owns and to tell
//! whether its client is still there (`api/gateway/peer.rs`).
//!
//! The numbers come from a scan of the process's open descriptors, so any
//! of them may be no socket at all, or not a TCP one: each call then fails
//! with an error, and none touches memory but its own locals.

use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

/// Whether TCP socket `fd` is in the `ESTABLISHED` state: both sides still
/// open. An error when the state cannot be read (not a TCP socket).
pub fn is_established(fd: BorrowedFd<'_>) -> io::Result<bool> {
    /// Linux's `TCP_ESTABLISHED` state number (`tcp_info.tcpi_state`).
    const TCP_ESTABLISHED: u8 = 1;
    // SAFETY: `tcp_info` is plain old data; all zeroes is a valid value.
    let mut info: libc::tcp_info = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: the kernel fills at most `len` bytes of `info`, a local.
    let status = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            &mut info as *mut libc::tcp_info as *mut libc::c_void,
            &mut len,
        )
    };
    if status != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(info.tcpi_state == TCP_ESTABLISHED)
}

/// The local address of socket number `fd` (IPv4 or IPv6).
pub fn local_addr(fd: RawFd) -> io::Result<SocketAddr> {
    socket_addr(fd, libc::getsockname)
}

/// The peer address of socket number `fd` (IPv4 or IPv6).
pub fn peer_addr(fd: RawFd) -> io::Result<SocketAddr> {
    socket_addr(fd, libc::getpeername)
}

type NameFn =
    unsafe extern "C" fn(libc::c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> libc::c_int;

/// A socket's own or peer address, for IPv4 and IPv6 sockets; another
/// kind of socket is an `InvalidInput` error.
fn socket_addr(fd: RawFd, name: NameFn) -> io::Result<SocketAddr> {
    // SAFETY: `sockaddr_storage` is large enough for any address; the
    // family tells which layout the kernel wrote.
    unsafe {
        let mut storage: libc::sockaddr_storage = mem::zeroed();
        let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        if name(fd, &mut storage as *mut _ as *mut libc::sockaddr, &mut len) != 0 {
            return Err(io::Error::last_os_error());
        }
        match storage.ss_family as libc::c_int {
            libc::AF_INET => {
                let addr = &*(&storage as *const _ as *const libc::sockaddr_in);
                Ok(SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr)),
                    u16::from_be(addr.sin_port),
                )))
            }
            libc::AF_INET6 => {
                let addr = &*(&storage as *const _ as *const libc::sockaddr_in6);
                Ok(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(addr.sin6_addr.s6_addr),
                    u16::from_be(addr.sin6_port),
                    addr.sin6_flowinfo,
                    addr.sin6_scope_id,
                )))
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not an IP socket",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsFd;

    #[test]
    fn a_tcp_connection_reports_its_addresses_and_state() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server_side, remote) = listener.accept().unwrap();
        let fd = server_side.as_raw_fd();
        assert_eq!(local_addr(fd).unwrap(), listener.local_addr().unwrap());
        assert_eq!(peer_addr(fd).unwrap(), remote);
        assert!(is_established(server_side.as_fd()).unwrap());
        drop(client);
        assert!(local_addr(-1).is_err());
        let (unix, _other) = std::os::unix::net::UnixStream::pair().unwrap();
        let refused = peer_addr(unix.as_raw_fd()).unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::InvalidInput);
    }
}
