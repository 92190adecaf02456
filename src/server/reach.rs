//! Where `--expose` and `--ui` listen, and who may reach them: a Unix
//! socket path, or a TCP address (`:port` is loopback); beyond loopback
//! only with credentials.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use crate::api::auth::Credentials;

/// An `--expose` target.
pub enum Expose {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// An `--expose` (or `--ui`: `flag` names it in errors) address.
pub fn parse_expose(flag: &str, addr: &str) -> Result<Expose, String> {
    if addr.starts_with('/') || addr.starts_with("./") || addr.starts_with("../") {
        return Ok(Expose::Unix(PathBuf::from(addr)));
    }
    if addr.starts_with("iroh://") || addr.starts_with("https://") {
        return Err(format!(
            "{flag} {addr}: only TCP and Unix addresses are supported"
        ));
    }
    let bare = addr.strip_prefix("http://").unwrap_or(addr);
    let full = if bare.starts_with(':') {
        format!("127.0.0.1{bare}")
    } else {
        bare.to_string()
    };
    full.to_socket_addrs()
        .map_err(|e| format!("{flag} {addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("{flag} {addr}: no address"))
        .map(Expose::Tcp)
}

/// A TCP listener (`flag`: `--expose` or `--ui`) beyond loopback needs
/// credentials.
pub fn check_reach(
    flag: &str,
    addr: SocketAddr,
    credentials: Option<&Credentials>,
) -> Result<(), String> {
    if !addr.ip().is_loopback() && credentials.is_none() {
        return Err(format!(
            "{flag} {addr} is not a loopback address: give --auth-file <file> with a user:password line"
        ));
    }
    Ok(())
}
