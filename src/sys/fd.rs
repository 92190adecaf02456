//! Descriptor helpers: poll one descriptor for what a caller waits on,
//! duplicate one, mark one close-on-exec, shut a socket down, and size up
//! what is left of a regular file.
//!
//! Each poll helper answers one question (readable? hung up? did the peer
//! close its side?), so a caller never handles `pollfd` or event bits. A
//! descriptor the caller owns or borrows is passed as `BorrowedFd`; a bare
//! number (a socket tiny_http owns, one a service manager passed) as
//! `RawFd`: the calls taking one only ask the kernel about that number and
//! touch no memory of ours, so a stale number is an error, never unsound.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// Polls `fd` once for `events`, waiting up to `timeout_ms` (-1: no
/// limit); the events that came (0 when the wait ran out).
fn poll_once(
    fd: BorrowedFd<'_>,
    events: libc::c_short,
    timeout_ms: libc::c_int,
) -> io::Result<libc::c_short> {
    let mut poll = libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    };
    // SAFETY: one valid pollfd; poll only writes its `revents`.
    let ready = unsafe { libc::poll(&mut poll, 1, timeout_ms) };
    if ready < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(if ready > 0 { poll.revents } else { 0 })
}

/// Waits up to `timeout` for `fd` to have something to read (or to be at
/// its end): true when it has, false when the wait ran out.
#[cfg_attr(not(feature = "nushell"), allow(dead_code))]
pub fn wait_readable(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<bool> {
    let ms = timeout.as_millis().min(libc::c_int::MAX as u128) as libc::c_int;
    Ok(poll_once(fd, libc::POLLIN, ms)? != 0)
}

/// Whether the reader at the other end of `fd` (a pipe, a terminal) has
/// gone, asked without waiting: an error, a hang-up, or a descriptor that
/// is not open. A regular file never reports one.
pub fn is_hung_up(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let events = poll_once(fd, 0, 0)?;
    Ok(events & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0)
}

/// Sleeps until the reader at the other end of `fd` goes away: true when
/// it did (an error or hang-up), false when poll reports something else
/// (the descriptor is not open). Interruptions by a signal are waited out.
pub fn wait_hung_up(fd: BorrowedFd<'_>) -> io::Result<bool> {
    loop {
        match poll_once(fd, 0, -1) {
            Ok(events) => return Ok(events & (libc::POLLERR | libc::POLLHUP) != 0),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        }
    }
}

/// Whether the client on socket `fd` has closed or shut down its side, or
/// reset the connection; asked without waiting.
#[cfg_attr(not(feature = "nushell"), allow(dead_code))]
pub fn peer_hung_up(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let events = poll_once(fd, libc::POLLRDHUP, 0)?;
    Ok(events & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0)
}

/// Whether a failed write met a descriptor that is not open (`EBADF`):
/// like a closed pipe, nobody is reading.
pub fn is_bad_descriptor(error: &io::Error) -> bool {
    error.raw_os_error() == Some(libc::EBADF)
}

/// A copy of descriptor number `fd`, close-on-exec, owned by the caller:
/// the number may be closed (and reused) by its owner meanwhile, the copy
/// stays what it was.
pub fn duplicate(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: fcntl on a descriptor number; a bad one fails.
    let copy = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if copy < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `copy` is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(copy) })
}

/// Marks descriptor number `fd` close-on-exec, so programs the server
/// runs do not inherit it; a number that is not open is an error.
pub fn set_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor number; a bad one fails.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Shuts socket `fd` down both ways: its peer sees the connection end, and
/// a reader of it blocked in this process wakes up.
pub fn shutdown(fd: RawFd) -> io::Result<()> {
    // SAFETY: shutdown on a descriptor number touches no memory; a bad one
    // fails.
    if unsafe { libc::shutdown(fd, libc::SHUT_RDWR) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The bytes left to read in `fd` when it is a regular file (its size
/// past the current offset); `None` for a pipe, a terminal or a socket.
pub fn regular_file_remaining(fd: BorrowedFd<'_>) -> io::Result<Option<u64>> {
    // SAFETY: a plain C struct, all zeroes is a valid value.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes into the struct we own.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut stat) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if (stat.st_mode & libc::S_IFMT) != libc::S_IFREG {
        return Ok(None);
    }
    // SAFETY: lseek with SEEK_CUR and offset 0 only reports the offset.
    let offset = unsafe { libc::lseek(fd.as_raw_fd(), 0, libc::SEEK_CUR) };
    if offset < 0 {
        return Err(io::Error::last_os_error());
    }
    let remaining = stat.st_size.checked_sub(offset);
    Ok(remaining.and_then(|bytes| u64::try_from(bytes).ok()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn a_socket_is_readable_once_written_and_hung_up_once_its_peer_goes() {
        let (mut ours, theirs) = UnixStream::pair().unwrap();
        let wait = Duration::from_millis(1);
        assert!(!wait_readable(theirs.as_fd(), wait).unwrap());
        ours.write_all(b"x").unwrap();
        assert!(wait_readable(theirs.as_fd(), wait).unwrap());
        assert!(!peer_hung_up(ours.as_fd()).unwrap());
        assert!(!is_hung_up(ours.as_fd()).unwrap());
        drop(theirs);
        assert!(peer_hung_up(ours.as_fd()).unwrap());
        assert!(is_hung_up(ours.as_fd()).unwrap());
        assert!(wait_hung_up(ours.as_fd()).unwrap());
    }

    #[test]
    fn a_duplicate_outlives_its_original_and_shutdown_ends_the_peer() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let copy = duplicate(ours.as_raw_fd()).unwrap();
        set_cloexec(copy.as_raw_fd()).unwrap();
        drop(ours);
        shutdown(copy.as_raw_fd()).unwrap();
        assert!(peer_hung_up(theirs.as_fd()).unwrap());
        assert!(duplicate(-1).is_err());
        assert!(set_cloexec(-1).is_err());
    }

    #[test]
    fn a_regular_file_reports_what_is_left_past_its_offset() {
        use std::io::{Seek, SeekFrom};
        let path = std::env::temp_dir().join(format!("xs-sys-fd-{}", std::process::id()));
        std::fs::write(&path, b"0123456789").unwrap();
        let mut file = std::fs::File::open(&path).unwrap();
        file.seek(SeekFrom::Start(4)).unwrap();
        assert_eq!(regular_file_remaining(file.as_fd()).unwrap(), Some(6));
        let (pipe, _other) = UnixStream::pair().unwrap();
        assert_eq!(regular_file_remaining(pipe.as_fd()).unwrap(), None);
        std::fs::remove_file(&path).unwrap();
    }
}
