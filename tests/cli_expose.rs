//! `xs serve --expose`: the same API on TCP (and a second Unix socket),
//! and the rule that a non-loopback address needs `--auth-file`, whose
//! Basic auth every request there must then carry (SPEC 10). Clients talk
//! to 127.0.0.1 only: nothing leaves this machine.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use common::cli::*;
use common::*;

/// A TCP port nobody listens on right now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().unwrap().port()
}

/// `GET /` over TCP to 127.0.0.1:`port`, with optional `Authorization`;
/// the status code.
fn tcp_status(port: u16, authorization: Option<&str>) -> u16 {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut head = format!("GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    if let Some(value) = authorization {
        head.push_str(&format!("Authorization: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    let status_line = answer.lines().next().unwrap_or("");
    status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {answer:?}"))
}

/// Whether something accepts connections on 127.0.0.1:`port`.
fn listening(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[test]
fn expose_on_a_local_port_serves_the_same_api() {
    let port = free_port();
    let expose = format!(":{port}");
    let server = Server::start(&["--expose", &expose]);
    let dir = addr(&server);

    // The start frame says where it is exposed.
    let start = json(&ok(&xs(&["first", &dir])));
    assert_eq!(start["meta"], serde_json::json!({ "expose": expose }));

    // Reads over TCP match reads over the socket, in every address form.
    let local = ok(&xs(&["cat", &dir]));
    assert_eq!(ok(&xs(&["cat", &expose])), local);
    assert_eq!(ok(&xs(&["cat", &format!("127.0.0.1:{port}")])), local);
    assert_eq!(
        ok(&xs(&["cat", &format!("http://127.0.0.1:{port}")])),
        local
    );

    // Writes over TCP land in the same store.
    let printed = ok(&xs_stdin(&["append", &expose, "note"], b"over tcp"));
    let frame = json(&printed);
    assert_eq!(ok(&xs(&["get", &dir, id(&frame)])), printed);
    let content = xs(&["cas", &expose, frame["hash"].as_str().unwrap()]);
    assert_eq!(content.stdout, b"over tcp");
    assert_eq!(ok(&xs(&["kv", "set", &expose, "via.tcp", "1"])), "");
    assert_eq!(ok(&xs(&["kv", "get", &dir, "via.tcp"])), "1\n");
    assert_eq!(json(&ok(&xs(&["last", &expose, "note"]))), frame);
    assert_eq!(tcp_status(port, None), 200, "loopback needs no auth");
}

#[test]
fn expose_on_a_second_unix_socket() {
    let tmp = tempfile::tempdir().unwrap();
    let alt = tmp.path().join("alt.sock");
    let alt_arg = alt.to_str().unwrap().to_string();
    let mut server = Server::start(&["--expose", &alt_arg]);
    let dir = addr(&server);
    let printed = ok(&xs(&["append", &alt_arg, "note"]));
    assert_eq!(ok(&xs(&["cat", &alt_arg])), ok(&xs(&["cat", &dir])));
    assert_eq!(ok(&xs(&["get", &dir, id(&json(&printed))])), printed);
    server.stop();
    assert!(!alt.exists(), "the exposed socket goes with the server");
}

#[test]
fn expose_beyond_loopback_without_an_auth_file_refuses_to_start() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let port = free_port();
    let expose = format!("0.0.0.0:{port}");
    let out = xs(&["serve", store.to_str().unwrap(), "--expose", &expose]);
    assert!(!out.status.success(), "refused: {:?}", out.status);
    assert_eq!(stdout(&out), "");
    let err = stderr(&out);
    assert!(err.contains("--auth-file"), "says what is missing: {err:?}");
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(!listening(port), "nothing listens on {port}");
}

#[test]
fn an_unusable_auth_file_refuses_to_start() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let no_colon = tmp.path().join("no-colon");
    fs::write(&no_colon, "justauser\n").unwrap();
    let missing = tmp.path().join("missing");
    for auth in [&no_colon, &missing] {
        let port = free_port();
        let out = xs(&[
            "serve",
            store.to_str().unwrap(),
            "--expose",
            &format!("0.0.0.0:{port}"),
            "--auth-file",
            auth.to_str().unwrap(),
        ]);
        assert!(!out.status.success(), "{auth:?}: {:?}", out.status);
        assert!(stderr(&out).contains("auth-file"), "{}", stderr(&out));
        assert!(!listening(port));
    }
}

#[test]
fn expose_beyond_loopback_needs_basic_auth() {
    let tmp = tempfile::tempdir().unwrap();
    let auth = tmp.path().join("auth");
    fs::write(&auth, "user:pass\n").unwrap();
    let port = free_port();
    let server = Server::start(&[
        "--expose",
        &format!("0.0.0.0:{port}"),
        "--auth-file",
        auth.to_str().unwrap(),
    ]);
    let dir = addr(&server);

    // Raw requests: none or the wrong credentials are 401.
    assert_eq!(tcp_status(port, None), 401);
    let wrong = format!("Basic {}", b64(b"user:wrong"));
    assert_eq!(tcp_status(port, Some(&wrong)), 401);
    let right = format!("Basic {}", b64(b"user:pass"));
    assert_eq!(tcp_status(port, Some(&right)), 200);

    // The CLI with credentials in the address.
    let with_auth = format!("http://user:pass@127.0.0.1:{port}");
    let local = ok(&xs(&["cat", &dir]));
    assert_eq!(ok(&xs(&["cat", &with_auth])), local);
    let printed = ok(&xs_stdin(&["append", &with_auth, "note"], b"authed"));
    assert_eq!(ok(&xs(&["get", &dir, id(&json(&printed))])), printed);

    // Without them, or with wrong ones: exit 1, a reason, nothing stored.
    for address in [
        format!("127.0.0.1:{port}"),
        format!("http://user:wrong@127.0.0.1:{port}"),
    ] {
        let out = xs(&["cat", &address]);
        assert_eq!(out.status.code(), Some(1), "{address}");
        assert_eq!(stdout(&out), "", "{address}");
        assert!(
            stderr(&out).to_lowercase().contains("unauthorized"),
            "{address}: {}",
            stderr(&out)
        );
        let out = xs_stdin(&["append", &address, "sneaky"], b"no");
        assert_eq!(out.status.code(), Some(1), "{address}");
    }
    let frames = lines(&ok(&xs(&["cat", &dir])));
    assert!(frames.iter().all(|f| topic(f) != "sneaky"), "{frames:?}");

    // The store's own socket needs no credentials.
    assert!(xs(&["cat", &dir]).status.success());
}
