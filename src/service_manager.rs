//! Telling a service manager (systemd, `Type=notify`) how the server is
//! doing: `READY=1` once the store is started (its first read sees
//! `xs.start`), `STOPPING=1` when it begins to stop.
//!
//! The protocol is one datagram per message to the Unix socket named by
//! `$NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace), so no
//! crate is needed. The variable is taken out of the environment when the
//! server starts: services and scripts the server runs must not speak for
//! it.

use std::os::unix::net::UnixDatagram;

/// Where to send the messages, if a service manager asked for them.
pub struct Notifier {
    socket: Option<(UnixDatagram, String)>,
}

impl Notifier {
    /// Reads and removes `$NOTIFY_SOCKET`. Call before any thread starts:
    /// it changes the process environment.
    pub fn from_env() -> Notifier {
        let Some(name) = std::env::var_os("NOTIFY_SOCKET") else {
            return Notifier { socket: None };
        };
        std::env::remove_var("NOTIFY_SOCKET");
        let name = name.to_string_lossy().into_owned();
        match UnixDatagram::unbound() {
            Ok(socket) => Notifier {
                socket: Some((socket, name)),
            },
            Err(e) => {
                eprintln!("xs: cannot notify the service manager at {name}: {e}");
                Notifier { socket: None }
            }
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
        let Some((socket, name)) = &self.socket else {
            return;
        };
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
