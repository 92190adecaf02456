//! `xs serve --expose`: the same API on TCP (and a second Unix socket),
//! and the rule that a non-loopback address needs `--auth-file`, whose
//! Basic auth every request there must then carry (SPEC 10). Nothing here
//! listens beyond loopback: refusals are checked with an address this
//! machine does not have, the auth file on 127.0.0.1.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
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

/// A non-loopback address that is not this machine's (TEST-NET-1, RFC
/// 5737): a server that wrongly went ahead could not bind it, so a refusal
/// test never listens beyond loopback even when the refusal is broken.
const NOT_LOOPBACK: &str = "192.0.2.1:7357";

/// The password the auth tests use: 12 characters or more, with a `:`.
const PASSWORD: &str = "a-long:secret";

/// An auth file holding `text`, mode 0600.
fn auth_file(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// `xs serve` that must refuse to start: its one-line reason. Nothing was
/// made: the refusal comes before the store folder or any listener.
fn refused(args: &[&str]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let mut all = vec!["serve", store.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = xs(&all);
    assert_eq!(out.status.code(), Some(1), "{args:?}: refused");
    assert_eq!(stdout(&out), "");
    assert!(
        !store.exists(),
        "{args:?}: refused before the store is opened"
    );
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(
        !err.contains("cannot bind"),
        "refused before binding: {err}"
    );
    err
}

#[test]
fn expose_beyond_loopback_without_an_auth_file_refuses_to_start() {
    for expose in [NOT_LOOPBACK, "http://192.0.2.1:7357"] {
        let err = refused(&["--expose", expose]);
        assert!(err.contains("--auth-file"), "says what is missing: {err:?}");
    }
}

#[test]
fn an_unusable_auth_file_refuses_to_start() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let cases = [
        (auth_file(dir, "empty-pair", ":\n"), "user is empty"),
        (
            auth_file(dir, "no-user", ":a-long-secret\n"),
            "user is empty",
        ),
        (auth_file(dir, "no-password", "user:\n"), "at least 12"),
        (auth_file(dir, "short", "user:eleven-char\n"), "at least 12"),
        (auth_file(dir, "no-colon", "justauser\n"), "user:password"),
        (auth_file(dir, "empty", ""), "user:password"),
        (
            auth_file(dir, "two-lines", "a:a-long-secret\nb:a-long-secret\n"),
            "one user:password line",
        ),
        (dir.join("missing"), "cannot read"),
    ];
    for (path, why) in &cases {
        let err = refused(&[
            "--expose",
            NOT_LOOPBACK,
            "--auth-file",
            path.to_str().unwrap(),
        ]);
        assert!(err.contains("auth-file"), "{path:?}: {err}");
        assert!(err.contains(why), "{path:?}: {why:?} in {err}");
    }

    // A good line in a file others can read: refused, with the fix.
    let open = auth_file(dir, "open", &format!("user:{PASSWORD}\n"));
    for mode in [0o644, 0o640, 0o604] {
        fs::set_permissions(&open, fs::Permissions::from_mode(mode)).unwrap();
        let err = refused(&[
            "--expose",
            NOT_LOOPBACK,
            "--auth-file",
            open.to_str().unwrap(),
        ]);
        let fix = format!("chmod 600 {}", open.display());
        assert!(err.contains(&fix), "{mode:o}: {err}");
    }

    // Checked whatever the address: loopback too, and never unused.
    let err = refused(&[
        "--expose",
        ":7357",
        "--auth-file",
        cases[0].0.to_str().unwrap(),
    ]);
    assert!(err.contains("user is empty"), "{err}");
    let good = auth_file(dir, "good", &format!("user:{PASSWORD}\n"));
    let err = refused(&["--auth-file", good.to_str().unwrap()]);
    assert!(err.contains("TCP --expose"), "{err}");
}

#[test]
fn an_auth_file_is_enforced_on_any_address() {
    // On 127.0.0.1: the same check a non-loopback address gets, without
    // listening beyond this machine.
    let tmp = tempfile::tempdir().unwrap();
    let auth = auth_file(tmp.path(), "auth", &format!("user:{PASSWORD}\n"));
    let port = free_port();
    let server = Server::start(&[
        "--expose",
        &format!("127.0.0.1:{port}"),
        "--auth-file",
        auth.to_str().unwrap(),
    ]);
    let dir = addr(&server);

    // Raw requests: none or the wrong credentials are 401.
    assert_eq!(tcp_status(port, None), 401);
    let wrong = format!("Basic {}", b64(b"user:a-long:secreT"));
    assert_eq!(tcp_status(port, Some(&wrong)), 401);
    let empty = format!("Basic {}", b64(b":"));
    assert_eq!(tcp_status(port, Some(&empty)), 401);
    let right = b64(format!("user:{PASSWORD}").as_bytes());
    assert_eq!(tcp_status(port, Some(&format!("Bearer {right}"))), 401);
    // The scheme name is case-insensitive.
    for scheme in ["Basic", "basic", "BASIC"] {
        let given = format!("{scheme} {right}");
        assert_eq!(tcp_status(port, Some(&given)), 200, "{given}");
    }

    // The CLI with credentials in the address.
    let with_auth = format!("http://user:{PASSWORD}@127.0.0.1:{port}");
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
