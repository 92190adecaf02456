//! What can go wrong in the store, and which HTTP status each failure is.

use std::fmt;
use std::io;

/// A store failure, carrying what failed and on which input.
#[derive(Debug)]
pub enum StoreError {
    /// The client sent something invalid (bad topic, ttl, id, hash...).
    BadInput(String),
    /// The request body could not be read to its end.
    BadBody(String),
    /// A payload larger than the configured maximum (bytes).
    TooLarge(u64),
    /// The write would collide with existing state.
    Conflict(String),
    /// The disk has no room for the write; nothing was acknowledged.
    NoSpace(String),
    /// The store is open in another process.
    Locked(String),
    /// The storage backend cannot be reached right now.
    Unavailable(String),
    /// The server is shutting down and takes no more writes.
    Closed,
    /// An I/O failure, with what was being done.
    Io {
        context: &'static str,
        error: io::Error,
    },
    /// The index database reported a failure.
    Storage(String),
    /// A failure already reported once, passed on to another requester of
    /// the same batch: its status and text.
    Relayed { status: u16, text: String },
}

impl StoreError {
    pub fn io(context: &'static str, error: io::Error) -> StoreError {
        if is_no_space(&error) {
            return StoreError::NoSpace(format!("{context}: {error}"));
        }
        StoreError::Io { context, error }
    }

    pub fn cas(error: cacache::Error) -> StoreError {
        let text = error.to_string();
        let no_space = match &error {
            cacache::Error::IoError(e, _) => is_no_space(e),
            _ => false,
        };
        if no_space {
            StoreError::NoSpace(format!("writing payload: {text}"))
        } else {
            StoreError::Storage(format!("payload store: {text}"))
        }
    }

    pub fn fjall(error: fjall::Error) -> StoreError {
        match error {
            fjall::Error::Locked => StoreError::Locked("fjall".into()),
            fjall::Error::Io(e) | fjall::Error::Storage(fjall::LsmError::Io(e)) => {
                StoreError::io("index database", e)
            }
            other => StoreError::Storage(format!("index database: {other}")),
        }
    }

    /// The HTTP status this failure maps to.
    pub fn status(&self) -> u16 {
        match self {
            StoreError::BadInput(_) | StoreError::BadBody(_) => 400,
            StoreError::TooLarge(_) => 413,
            StoreError::Conflict(_) => 409,
            StoreError::NoSpace(_) => 507,
            StoreError::Unavailable(_) | StoreError::Closed => 503,
            StoreError::Locked(_) | StoreError::Io { .. } | StoreError::Storage(_) => 500,
            StoreError::Relayed { status, .. } => *status,
        }
    }
}

/// A full disk (`ENOSPC`) or an exhausted quota (`EDQUOT`): std names
/// both, so no error number is compared here.
fn is_no_space(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::BadInput(text) | StoreError::Conflict(text) => f.write_str(text),
            StoreError::BadBody(text) => write!(f, "could not read the request body: {text}"),
            StoreError::TooLarge(max) => write!(f, "payload too large: the limit is {max} bytes"),
            StoreError::NoSpace(text) => write!(f, "insufficient storage: {text}"),
            StoreError::Locked(what) => write!(f, "store locked ({what})"),
            StoreError::Unavailable(text) => write!(f, "store unavailable: {text}"),
            StoreError::Closed => f.write_str("the server is shutting down"),
            StoreError::Io { context, error } => write!(f, "{context}: {error}"),
            StoreError::Storage(text) | StoreError::Relayed { text, .. } => f.write_str(text),
        }
    }
}

impl std::error::Error for StoreError {}

#[cfg(test)]
mod no_space_tests {
    use super::*;

    #[test]
    fn a_full_disk_and_an_exhausted_quota_are_no_space_and_others_are_not() {
        // Linux's ENOSPC and EDQUOT, as the kernel reports them.
        assert!(is_no_space(&io::Error::from_raw_os_error(28)));
        assert!(is_no_space(&io::Error::from_raw_os_error(122)));
        assert!(is_no_space(&io::Error::from(io::ErrorKind::StorageFull)));
        // EACCES and EIO are other failures.
        assert!(!is_no_space(&io::Error::from_raw_os_error(13)));
        assert!(!is_no_space(&io::Error::from_raw_os_error(5)));
        let error = StoreError::io("writing payload", io::Error::from_raw_os_error(122));
        assert_eq!(error.status(), 507);
    }
}
