//! Telling a service manager (systemd, `Type=notify`) how the server is
//! doing: `READY=1` once the store is started (its first read sees
//! `xs.start`), `STOPPING=1` when it begins to stop, and, when the unit
//! sets `WatchdogSec=`, `WATCHDOG=1` every half period while the writer
//! answers: a stuck writer stops the pings and systemd restarts the
//! service.
//!
//! The protocol is one datagram per message to the Unix socket named by
//! `$NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace), so no
//! crate is needed. The variables are taken out of the environment when
//! the server starts: services and scripts the server runs must not speak
//! for it.
//!
//! Socket activation (`Activated`) is the other half: the manager binds
//! the listening sockets and passes them from descriptor 3 on
//! (`$LISTEN_FDS`, for `$LISTEN_PID`), named by the socket unit's
//! `FileDescriptorName=` (`$LISTEN_FDNAMES`): `sock` for the store's API,
//! `expose` and `http` for the TCP listeners of `--expose` and `--http`.

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::time::Duration;

use crate::sys;

/// Where to send the messages, if a service manager asked for them.
#[derive(Clone)]
pub struct Notifier {
    socket: Option<Arc<(UnixDatagram, String)>>,
    /// `$WATCHDOG_USEC`, when it is meant for this process.
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Reads and removes `$NOTIFY_SOCKET`. Call before any thread starts:
    /// it changes the process environment.
    pub fn from_env() -> Notifier {
        let watchdog = watchdog_from_env();
        let Some(name) = std::env::var_os("NOTIFY_SOCKET") else {
            return Notifier {
                socket: None,
                watchdog: None,
            };
        };
        std::env::remove_var("NOTIFY_SOCKET");
        let name = name.to_string_lossy().into_owned();
        match UnixDatagram::unbound() {
            Ok(socket) => Notifier {
                socket: Some(Arc::new((socket, name))),
                watchdog,
            },
            Err(e) => {
                eprintln!("xs: cannot notify the service manager at {name}: {e}");
                Notifier {
                    socket: None,
                    watchdog: None,
                }
            }
        }
    }

    /// With a watchdog asked for, sends `WATCHDOG=1` every half period
    /// while `alive` (given that half period to answer) says yes.
    pub fn keep_watchdog(&self, alive: impl Fn(Duration) -> bool + Send + 'static) {
        let Some(period) = self.watchdog else {
            return;
        };
        // A period of a few µs must not make a busy loop.
        let half = (period / 2).max(Duration::from_millis(10));
        let notifier = self.clone();
        let spawned = std::thread::Builder::new()
            .name("watchdog".into())
            .spawn(move || loop {
                let started = std::time::Instant::now();
                if alive(half) {
                    notifier.send("WATCHDOG=1");
                }
                std::thread::sleep(half.saturating_sub(started.elapsed()));
            });
        if let Err(e) = spawned {
            eprintln!("xs: cannot start the watchdog pings: {e}");
        }
    }

    /// The store is started.
    pub fn ready(&self) {
        self.send("READY=1");
    }

    /// The server begins to stop.
    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    fn send(&self, message: &str) {
        let Some(target) = &self.socket else {
            return;
        };
        let (socket, name) = &**target;
        let sent = match name.strip_prefix('@') {
            Some(abstract_name) => send_abstract(socket, abstract_name, message),
            None => socket.send_to(message.as_bytes(), name).map(|_| ()),
        };
        // The manager may be gone or the socket full: the server goes on.
        if let Err(e) = sent {
            eprintln!("xs: cannot notify the service manager at {name}: {e}");
        }
    }
}

/// `$WATCHDOG_USEC` if `$WATCHDOG_PID` is unset or this process's, taken
/// out of the environment either way.
fn watchdog_from_env() -> Option<Duration> {
    let usec = std::env::var("WATCHDOG_USEC").ok();
    let pid = std::env::var("WATCHDOG_PID").ok();
    std::env::remove_var("WATCHDOG_USEC");
    std::env::remove_var("WATCHDOG_PID");
    if pid.is_some_and(|pid| pid != std::process::id().to_string()) {
        return None;
    }
    usec?
        .parse::<u64>()
        .ok()
        .filter(|&usec| usec > 0)
        .map(Duration::from_micros)
}

#[cfg(target_os = "linux")]
fn send_abstract(socket: &UnixDatagram, name: &str, message: &str) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    let address = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    socket
        .send_to_addr(message.as_bytes(), &address)
        .map(|_| ())
}

#[cfg(not(target_os = "linux"))]
fn send_abstract(_: &UnixDatagram, name: &str, _: &str) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        format!("abstract socket @{name} exists only on Linux"),
    ))
}

/// The first descriptor a service manager passes.
const LISTEN_FDS_START: i32 = 3;

/// Listening sockets a service manager passed, by name.
pub struct Activated {
    sockets: Vec<(String, OwnedFd)>,
}

impl Activated {
    /// Takes the passed sockets meant for this process and removes the
    /// variables. Call before any thread starts: it changes the process
    /// environment and takes ownership of descriptors 3 and on.
    pub fn from_env() -> Activated {
        let pid = std::env::var("LISTEN_PID").ok();
        let count = std::env::var("LISTEN_FDS").ok();
        let names = std::env::var("LISTEN_FDNAMES").ok();
        for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
            std::env::remove_var(name);
        }
        let ours = pid.is_some_and(|pid| pid == std::process::id().to_string());
        let count = count.and_then(|n| n.parse::<i32>().ok()).unwrap_or(0);
        if !ours || count <= 0 {
            return Activated {
                sockets: Vec::new(),
            };
        }
        let mut names = names
            .map(|names| names.split(':').map(str::to_string).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter();
        let sockets = (LISTEN_FDS_START..LISTEN_FDS_START.saturating_add(count))
            .filter_map(|fd| {
                let name = names.next().unwrap_or_default();
                // Not to be inherited by the programs the server runs; a
                // number that is not open is skipped, never owned.
                if sys::fd::set_cloexec(fd).is_err() {
                    eprintln!("xs: passed socket {name:?} (descriptor {fd}) is not open");
                    return None;
                }
                // SAFETY: the service manager passed this open descriptor
                // to this process (`$LISTEN_PID` is ours; being open since
                // exec, its number was never handed to anything else), and
                // it is taken once, here.
                Some((name, unsafe { OwnedFd::from_raw_fd(fd) }))
            })
            .collect();
        Activated { sockets }
    }

    /// The socket named `name`.
    pub fn take(&mut self, name: &str) -> Option<OwnedFd> {
        let at = self.sockets.iter().position(|(n, _)| n == name)?;
        Some(self.sockets.remove(at).1)
    }

    /// The store's API socket: the one named `sock`, else the only one
    /// passed with another name than `expose` or `http` (a socket unit
    /// without `FileDescriptorName=` names it after itself).
    pub fn take_api(&mut self) -> Option<OwnedFd> {
        if let Some(fd) = self.take("sock") {
            return Some(fd);
        }
        let others: Vec<usize> = (0..self.sockets.len())
            .filter(|&at| !matches!(self.sockets[at].0.as_str(), "expose" | "http"))
            .collect();
        match others.as_slice() {
            [at] => Some(self.sockets.remove(*at).1),
            _ => None,
        }
    }

    /// Names of passed sockets nothing took.
    pub fn unused(&self) -> Vec<&str> {
        self.sockets.iter().map(|(name, _)| name.as_str()).collect()
    }
}
