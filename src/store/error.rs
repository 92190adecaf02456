//! What can go wrong in the store.
//!
//! How it works: every store operation fails with a `StoreError`, one
//! variant per kind of failure, with the text that says what failed and on
//! which input. The store knows nothing of how a failure is shown to a
//! client: the API decides that for each variant (src/api/respond.rs).
//! A writer that fails a whole batch gives every requester its own copy of
//! the failure (`relay`), of the same variant, so callers can still match on
//! it.

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
    /// No consumer group of this name (never made, or deleted).
    NoGroup(String),
    /// A conditional append (`xs-expect-last`) whose topic's newest frame
    /// is not the one expected (`None`: no frame).
    NotLast {
        topic: String,
        expected: Option<crate::store::Id>,
        last: Option<crate::store::Id>,
    },
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

    /// The same failure again, for another requester of a failed batch:
    /// same variant, same text. A copy rather than a shared `Arc`, so that
    /// every requester owns a plain `StoreError` it can match on and pass
    /// along; a batch fails rarely and its text is short, so the copies cost
    /// nothing that matters. An `io::Error` cannot be cloned: the copy is a
    /// new one of the same kind whose message is the original's text, so it
    /// displays the same (the OS error code survives only in that text).
    pub fn relay(&self) -> StoreError {
        match self {
            StoreError::BadInput(text) => StoreError::BadInput(text.clone()),
            StoreError::BadBody(text) => StoreError::BadBody(text.clone()),
            StoreError::TooLarge(max) => StoreError::TooLarge(*max),
            StoreError::Conflict(text) => StoreError::Conflict(text.clone()),
            StoreError::NoGroup(group) => StoreError::NoGroup(group.clone()),
            StoreError::NotLast {
                topic,
                expected,
                last,
            } => StoreError::NotLast {
                topic: topic.clone(),
                expected: *expected,
                last: *last,
            },
            StoreError::NoSpace(text) => StoreError::NoSpace(text.clone()),
            StoreError::Locked(text) => StoreError::Locked(text.clone()),
            StoreError::Unavailable(text) => StoreError::Unavailable(text.clone()),
            StoreError::Closed => StoreError::Closed,
            StoreError::Io { context, error } => StoreError::Io {
                context,
                error: io::Error::new(error.kind(), error.to_string()),
            },
            StoreError::Storage(text) => StoreError::Storage(text.clone()),
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
            StoreError::NotLast {
                topic,
                expected,
                last,
            } => {
                let name = |id: &Option<crate::store::Id>| match id {
                    Some(id) => id.to_string(),
                    None => "none".to_string(),
                };
                write!(
                    f,
                    "not appended: expected the last frame of {topic} to be {}, it is {}",
                    name(expected),
                    name(last)
                )
            }
            StoreError::BadBody(text) => write!(f, "could not read the request body: {text}"),
            StoreError::TooLarge(max) => write!(f, "payload too large: the limit is {max} bytes"),
            StoreError::NoSpace(text) => write!(f, "insufficient storage: {text}"),
            StoreError::Locked(what) => write!(f, "store locked ({what})"),
            StoreError::Unavailable(text) => write!(f, "store unavailable: {text}"),
            StoreError::Closed => f.write_str("the server is shutting down"),
            StoreError::NoGroup(group) => write!(f, "no consumer group {group}"),
            StoreError::Io { context, error } => write!(f, "{context}: {error}"),
            StoreError::Storage(text) => f.write_str(text),
        }
    }
}

impl std::error::Error for StoreError {
    /// The I/O failure underneath an `Io`; the other variants carry only
    /// text (their sources were turned into it where they were caught).
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Io { error, .. } => Some(error),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error;

    fn every_variant() -> Vec<StoreError> {
        vec![
            StoreError::BadInput("bad topic".into()),
            StoreError::BadBody("cut short".into()),
            StoreError::TooLarge(10),
            StoreError::Conflict("id taken".into()),
            StoreError::NotLast {
                topic: "t".into(),
                expected: None,
                last: None,
            },
            StoreError::NoSpace("disk full".into()),
            StoreError::Locked("fjall".into()),
            StoreError::Unavailable("redis away".into()),
            StoreError::Closed,
            StoreError::Io {
                context: "syncing",
                error: io::Error::new(io::ErrorKind::PermissionDenied, "denied"),
            },
            StoreError::Storage("index database: broken".into()),
        ]
    }

    #[test]
    fn a_relayed_failure_is_the_same_variant_with_the_same_text() {
        for error in every_variant() {
            let relayed = error.relay();
            assert_eq!(
                std::mem::discriminant(&relayed),
                std::mem::discriminant(&error),
                "{error:?}"
            );
            assert_eq!(relayed.to_string(), error.to_string());
        }
        let relayed = StoreError::Io {
            context: "syncing",
            error: io::Error::new(io::ErrorKind::PermissionDenied, "denied"),
        }
        .relay();
        match relayed {
            StoreError::Io { context, error } => {
                assert_eq!(context, "syncing");
                assert_eq!(error.kind(), io::ErrorKind::PermissionDenied);
                assert_eq!(error.to_string(), "denied");
            }
            other => panic!("relayed as {other:?}"),
        }
    }

    #[test]
    fn the_source_of_an_io_failure_is_its_io_error() {
        let error = StoreError::Io {
            context: "reading payload",
            error: io::Error::new(io::ErrorKind::NotFound, "gone"),
        };
        let source = error.source().expect("an Io failure has a source");
        let io = source
            .downcast_ref::<io::Error>()
            .expect("the source is the io::Error");
        assert_eq!(io.kind(), io::ErrorKind::NotFound);
        assert_eq!(io.to_string(), "gone");
        assert!(error.relay().source().is_some());
        for error in every_variant() {
            let is_io = matches!(error, StoreError::Io { .. });
            assert_eq!(error.source().is_some(), is_io, "{error:?}");
        }
    }

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
        assert!(matches!(error, StoreError::NoSpace(_)), "{error:?}");
    }
}
