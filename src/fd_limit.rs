//! The open-file limit of `xs serve`.
//!
//! Every connection holds a descriptor, so the server starts by raising
//! its soft `RLIMIT_NOFILE` to the hard one: a login shell's soft default
//! (often 1024) would otherwise cap the connections far below what the
//! system allows. Child processes (Nushell's externals) inherit the raised
//! limit, as they would under a service manager that sets it.

/// What the limit came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    /// The soft limit before.
    pub was: u64,
    /// The soft limit in force now.
    pub now: u64,
}

/// Linux refuses a soft limit above `fs.nr_open` (1048576 by default), so
/// an unlimited hard limit is met at that.
const UNLIMITED_TARGET: u64 = 1 << 20;

/// Raises the soft descriptor limit to the hard one. When that fails the
/// limit stays as it was (the server still runs).
pub fn raise() -> FdLimit {
    // SAFETY: getrlimit/setrlimit on a local struct.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return FdLimit {
                was: UNLIMITED_TARGET,
                now: UNLIMITED_TARGET,
            };
        }
        let was = limit.rlim_cur as u64;
        let target = if limit.rlim_max == libc::RLIM_INFINITY {
            UNLIMITED_TARGET.max(was)
        } else {
            limit.rlim_max as u64
        };
        if target <= was {
            return FdLimit { was, now: was };
        }
        let raised = libc::rlimit {
            rlim_cur: target as libc::rlim_t,
            rlim_max: limit.rlim_max,
        };
        let now = if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
            target
        } else {
            was
        };
        FdLimit { was, now }
    }
}
