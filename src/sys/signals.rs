//! SIGINT and SIGTERM taken synchronously: blocked in every thread (the
//! mask is set before other threads start, so they inherit it), then
//! received by one thread with sigwait(2). Both the server (shutdown) and
//! `xs cat --cursor` (a last save) end this way.

/// The shutdown signals, blocked in this thread and every thread it starts
/// from now on.
pub struct ShutdownSignals {
    set: libc::sigset_t,
}

impl ShutdownSignals {
    pub fn block() -> ShutdownSignals {
        // SAFETY: plain signal-set manipulation on a local set.
        let set = unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            set
        };
        ShutdownSignals { set }
    }

    /// Asks this process to shut down as a signal would (SIGTERM to
    /// itself): for a part that must stop the server from another thread.
    pub fn raise() {
        // SAFETY: signalling our own process; SIGTERM is blocked in every
        // thread, so it waits for `wait`.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGTERM);
        }
    }

    /// Waits for one of them; returns its number.
    pub fn wait(&self) -> i32 {
        let mut signal: libc::c_int = 0;
        // SAFETY: `set` is initialised and blocked in every thread.
        unsafe { libc::sigwait(&self.set, &mut signal) };
        signal
    }
}
