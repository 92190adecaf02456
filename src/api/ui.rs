//! The `--ui` listener's own routes: the live viewer page.
//!
//! How it works: the page (`src/ui/`: HTML, CSS and plain JavaScript,
//! compiled into the binary) is served at `GET /` when a browser asks for
//! HTML with no query, and at `/ui/`; its script and style sheet under
//! `/ui/`. Every other request (the page's own reads: `GET /?follow` as
//! server-sent events, `/cas/<hash>`, `/ps`, `/kv`) goes on to the API's
//! route table unchanged, so the page reads exactly what the CLI reads and
//! needs no proxy. The page itself only ever sends GETs.
//!
//! A browser is a client other web sites can borrow, so this listener
//! guards what a plain API listener need not: on a loopback address the
//! `Host` must name loopback (a DNS-rebinding site cannot read the store
//! through the user's browser), and a request that is no GET or HEAD is
//! refused when its `Origin` is another site's (a form posted from a web
//! page cannot append). Beyond loopback the listener needs `--auth-file`
//! (checked before this), which covers both.

use std::net::SocketAddr;

use tiny_http::{Method, Request};

use super::respond::{Handled, Reply};

const PAGE: &str = include_str!("../ui/index.html");
const SCRIPT: &str = include_str!("../ui/app.js");
const STYLE: &str = include_str!("../ui/app.css");

/// What the page may load: its own files, its own API, payload images
/// (blob URLs); nothing from elsewhere, and no framing by other pages.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self' blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
frame-ancestors 'none'";

/// The viewer's answer when the request is the viewer's (or refused);
/// `None`: it is the API's.
pub fn answer(addr: SocketAddr, request: &Request) -> Option<Handled<Reply>> {
    if let Err(reply) = check_origin(addr, request) {
        return Some(Err(reply));
    }
    let (content_type, body) = match (request.method(), request.url()) {
        (Method::Get, "/ui" | "/ui/") => ("text/html; charset=utf-8", PAGE),
        (Method::Get, "/") if wants_html(request) => ("text/html; charset=utf-8", PAGE),
        (Method::Get, "/ui/app.js") => ("text/javascript; charset=utf-8", SCRIPT),
        (Method::Get, "/ui/app.css") => ("text/css; charset=utf-8", STYLE),
        (_, path) if path.starts_with("/ui/") => return Some(Err(Reply::not_found())),
        _ => return None,
    };
    let mut reply = Reply::with_type(200, content_type, body);
    reply.extra_headers.extend([
        ("Content-Security-Policy", CSP.to_string()),
        ("X-Content-Type-Options", "nosniff".to_string()),
        ("Cache-Control", "no-cache".to_string()),
    ]);
    Some(Ok(reply))
}

/// A browser navigating to the page: `Accept` names HTML. The API's
/// clients (the CLI, curl, `EventSource`, `fetch`) do not, so `GET /`
/// stays the stream for them.
fn wants_html(request: &Request) -> bool {
    header(request, "Accept").is_some_and(|accept| accept.contains("text/html"))
}

fn header<'a>(request: &'a Request, name: &'static str) -> Option<&'a str> {
    request
        .headers()
        .iter()
        .find(|h| h.field.equiv(name))
        .map(|h| h.value.as_str())
}

/// The DNS-rebinding and cross-site-write guards (see the header).
fn check_origin(addr: SocketAddr, request: &Request) -> Result<(), Reply> {
    let host = header(request, "Host").unwrap_or("");
    if addr.ip().is_loopback() && !names_loopback(host) {
        return Err(Reply::error(
            403,
            format!("Host '{host}' is not a loopback name: open the viewer as http://{addr}/"),
        ));
    }
    let reads = matches!(request.method(), Method::Get | Method::Head);
    if let Some(origin) = header(request, "Origin") {
        let ours = origin
            .strip_prefix("http://")
            .is_some_and(|rest| rest.eq_ignore_ascii_case(host));
        if !reads && !ours {
            return Err(Reply::error(
                403,
                format!("a write from another site ({origin}) is refused"),
            ));
        }
    }
    Ok(())
}

/// Whether a `Host` header (`name[:port]`) names this machine's loopback.
fn names_loopback(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        // `[::1]:port`
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_host_names() {
        for host in [
            "127.0.0.1:8080",
            "localhost:1",
            "LOCALHOST",
            "[::1]:9",
            "127.1.2.3",
        ] {
            assert!(names_loopback(host), "{host}");
        }
        for host in [
            "",
            "evil.example:8080",
            "192.0.2.1:80",
            "[::2]:1",
            "localhost.evil",
        ] {
            assert!(!names_loopback(host), "{host}");
        }
    }

    #[test]
    fn the_page_loads_only_its_own_files() {
        assert!(PAGE.contains("/ui/app.js") && PAGE.contains("/ui/app.css"));
        assert!(!PAGE.contains("http://") && !PAGE.contains("https://"));
        assert!(!SCRIPT.contains("innerHTML"), "payloads are shown as text");
    }
}
