//! Listeners and connection threads.
//!
//! Each listener (the store's Unix socket, `--expose` addresses) is a
//! tiny_http server; each connection's thread answers its own requests, so
//! a long follow never holds up anyone else.

use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::Arc;

use tiny_http::{Request, Server};

use super::auth::Credentials;
use super::routes::{self, Context};

/// One listening endpoint and its access rule.
pub struct Listener {
    server: Server,
    /// The `Basic` credentials required on this listener (`--auth-file`).
    credentials: Option<Credentials>,
}

impl Listener {
    /// Binds the store's socket: any stale file is replaced, mode 0600.
    pub fn unix(path: &Path) -> Result<Listener, String> {
        if path.exists() {
            std::fs::remove_file(path)
                .map_err(|e| format!("cannot replace {}: {e}", path.display()))?;
        }
        let listener =
            UnixListener::bind(path).map_err(|e| format!("cannot bind {}: {e}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("cannot set mode of {}: {e}", path.display()))?;
        let server = Server::from_listener(listener, None)
            .map_err(|e| format!("cannot serve {}: {e}", path.display()))?;
        Ok(Listener {
            server,
            credentials: None,
        })
    }

    /// Binds a TCP address; `credentials`, when given, are then required
    /// on it, loopback or not.
    pub fn tcp(addr: SocketAddr, credentials: Option<Credentials>) -> Result<Listener, String> {
        let listener = TcpListener::bind(addr).map_err(|e| format!("cannot bind {addr}: {e}"))?;
        let server = Server::from_listener(listener, None)
            .map_err(|e| format!("cannot serve {addr}: {e}"))?;
        Ok(Listener {
            server,
            credentials,
        })
    }

    /// Whether the request carries the credentials this listener needs.
    pub fn authorized(&self, request: &Request) -> bool {
        let Some(credentials) = &self.credentials else {
            return true;
        };
        request
            .headers()
            .iter()
            .any(|h| h.field.equiv("Authorization") && credentials.accepts(h.value.as_str()))
    }

    /// Stops accepting.
    pub fn unblock(&self) {
        self.server.unblock();
    }
}

/// Serves a listener. tiny_http reads each connection on a thread of its
/// own; that thread now answers the connection's requests itself, a
/// follow or a script included (it blocks only its own connection, whose
/// next request waits for this answer anyway). Handing each request to a
/// worker thread cost a futex wake and a context switch per request, a
/// good part of an append's server CPU. One worker remains for requests
/// read before the handler was installed.
pub fn spawn(listener: Arc<Listener>, context: Context) -> Result<(), String> {
    {
        let listener_in_handler = listener.clone();
        let context = context.clone();
        listener
            .server
            .set_handler(Arc::new(move |request: Request| {
                routes::handle(&context, &listener_in_handler, request)
            }));
    }
    std::thread::Builder::new()
        .name("worker".into())
        .spawn(move || work(&listener, &context))
        .map_err(|e| format!("cannot start a worker thread: {e}"))?;
    Ok(())
}

fn work(listener: &Arc<Listener>, context: &Context) {
    while let Ok(request) = listener.server.recv() {
        if !lasts(&request) {
            routes::handle(context, listener, request);
            continue;
        }
        let listener = listener.clone();
        let context = context.clone();
        let spawned = std::thread::Builder::new()
            .name("stream".into())
            .spawn(move || routes::handle(&context, &listener, request));
        if let Err(e) = spawned {
            eprintln!("xs: cannot start a stream thread: {e}");
        }
    }
}

/// Whether a request may stay open: a follow or watch, or a script.
fn lasts(request: &Request) -> bool {
    let url = request.url();
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    query.split('&').any(|pair| pair.starts_with("follow")) || url.starts_with("/eval")
}
