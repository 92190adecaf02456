//! `xs serve` under a service manager (systemd `Type=notify`): `READY=1`
//! on `$NOTIFY_SOCKET` once the store is started, `STOPPING=1` when it
//! begins to stop; the variable does not reach the scripts it runs.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{request, XS};

fn serve(dir: &Path, notify_socket: &str) -> Child {
    serve_with(dir, notify_socket, &[])
}

fn serve_with(dir: &Path, notify_socket: &str, env: &[(&str, &str)]) -> Child {
    Command::new(XS)
        .arg("serve")
        .arg(dir)
        .env("NOTIFY_SOCKET", notify_socket)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn xs serve")
}

fn receive(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 512];
    let n = socket
        .recv(&mut buf)
        .expect("a datagram within the timeout");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Checks the messages of one server's life on `socket`.
fn ready_then_stopping(socket: &UnixDatagram, notify_socket: &str) {
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("store");
    let mut child = serve(&dir, notify_socket);
    assert_eq!(receive(socket), "READY=1");
    // Ready means started: the first read already sees `xs.start`.
    let first = request(&dir.join("sock"), "GET", "/", &[], b"");
    assert_eq!(first.status, 200);
    assert!(first.text().contains("\"xs.start\""), "{}", first.text());
    #[cfg(feature = "nushell")]
    {
        let r = request(
            &dir.join("sock"),
            "POST",
            "/eval",
            &[],
            b"$env.NOTIFY_SOCKET? | default 'unset'",
        );
        assert_eq!(r.text(), "unset", "scripts must not speak for the server");
    }
    // SAFETY: signalling our own child by pid.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    assert_eq!(receive(socket), "STOPPING=1");
    let status = child.wait().expect("exit");
    assert!(status.success(), "{status:?}");
}

#[test]
fn ready_and_stopping_reach_a_notify_socket_path() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("notify");
    let socket = UnixDatagram::bind(&path).expect("bind");
    ready_then_stopping(&socket, path.to_str().expect("utf-8 path"));
}

#[cfg(target_os = "linux")]
#[test]
fn ready_and_stopping_reach_an_abstract_notify_socket() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("xs-test-notify-{}", std::process::id());
    let address =
        std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).expect("address");
    let socket = UnixDatagram::bind_addr(&address).expect("bind");
    ready_then_stopping(&socket, &format!("@{name}"));
}

/// A server started with a notify socket and `env`, once it said
/// `READY=1`; the socket, the server, and the folder both live in.
fn ready_with(env: &[(&str, &str)]) -> (UnixDatagram, Child, tempfile::TempDir) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("notify");
    let socket = UnixDatagram::bind(&path).expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let child = serve_with(
        &tmp.path().join("store"),
        path.to_str().expect("utf-8"),
        env,
    );
    assert_eq!(receive(&socket), "READY=1");
    (socket, child, tmp)
}

#[test]
fn the_watchdog_is_pinged_every_half_period() {
    let (socket, mut child, _tmp) = ready_with(&[("WATCHDOG_USEC", "200000")]);
    let started = std::time::Instant::now();
    for _ in 0..3 {
        assert_eq!(receive(&socket), "WATCHDOG=1");
    }
    // Three pings, one every 100 ms.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_watchdog_meant_for_another_process_is_not_pinged() {
    let (socket, mut child, _tmp) =
        ready_with(&[("WATCHDOG_USEC", "200000"), ("WATCHDOG_PID", "1")]);
    socket
        .set_read_timeout(Some(Duration::from_millis(600)))
        .expect("timeout");
    let mut buf = [0u8; 64];
    assert!(socket.recv(&mut buf).is_err(), "a ping for another pid");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn the_shipped_systemd_units_verify() {
    let Some(analyze) = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .into_iter()
        .find(|path| Path::new(path).is_file())
    else {
        eprintln!("skipped: no systemd-analyze to verify contrib/systemd/xs@.service");
        return;
    };
    let unit = |name: &str| {
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("contrib/systemd")
                .join(name),
        )
        .expect("the unit")
    };
    let service = unit("xs@.service");
    let socket = unit("xs@.socket");
    assert!(service.contains("Type=notify"), "{service}");
    assert!(socket.contains("FileDescriptorName=sock"), "{socket}");
    // The units name the installed binary; verify them with this one, as
    // one instance, the socket beside its service.
    let tmp = tempfile::tempdir().expect("tempdir");
    let service_file = tmp.path().join("xs@demo.service");
    let socket_file = tmp.path().join("xs@demo.socket");
    std::fs::write(&service_file, service.replace("/usr/local/bin/xs", XS)).expect("write");
    std::fs::write(&socket_file, socket).expect("write");
    let out = Command::new(analyze)
        .arg("verify")
        .arg(&socket_file)
        .arg(&service_file)
        .output()
        .expect("run systemd-analyze");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(!said.contains("xs@demo"), "warnings: {said}");
}

/// Runs `xs serve` with `sockets` passed as descriptors 3, 4, … the way a
/// service manager does (`LISTEN_FDS`, `LISTEN_FDNAMES`, and `LISTEN_PID`
/// set by the shell that then becomes `xs`).
fn serve_activated(dir: &Path, sockets: &[(&str, std::os::fd::RawFd)], args: &[&str]) -> Child {
    use std::os::unix::process::CommandExt;
    assert!(sockets.len() <= 8);
    let names: Vec<&str> = sockets.iter().map(|(name, _)| *name).collect();
    let fds: Vec<std::os::fd::RawFd> = sockets.iter().map(|(_, fd)| *fd).collect();
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(r#"export LISTEN_PID=$$; exec "$0" serve "$@""#)
        .arg(XS)
        .arg(dir)
        .args(args)
        .env("LISTEN_FDS", sockets.len().to_string())
        .env("LISTEN_FDNAMES", names.join(":"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: only fcntl and dup2 between fork and exec, on descriptors
    // this test owns. Each is first copied out of the way (its number may
    // be one of 3, 4, …), then into place; neither copy is close-on-exec.
    unsafe {
        command.pre_exec(move || {
            // No allocation after fork: a fixed array.
            let mut moved = [0; 8];
            for (at, fd) in fds.iter().enumerate() {
                moved[at] = libc::fcntl(*fd, libc::F_DUPFD, 100);
                if moved[at] < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (at, copy) in moved[..fds.len()].iter().enumerate() {
                if libc::dup2(*copy, 3 + at as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    command.spawn().expect("spawn xs serve")
}

#[test]
fn listeners_passed_by_a_service_manager_are_served() {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("store");
    // Not `<dir>/sock`: an answer here can only come through the passed
    // descriptor.
    let api_path = tmp.path().join("activated.sock");
    let api = std::os::unix::net::UnixListener::bind(&api_path).expect("bind");
    let expose = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let http = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let expose_addr = expose.local_addr().expect("addr").to_string();
    let http_addr = http.local_addr().expect("addr").to_string();
    let mut child = serve_activated(
        &dir,
        &[
            ("sock", api.as_raw_fd()),
            ("expose", expose.as_raw_fd()),
            ("http", http.as_raw_fd()),
        ],
        &[
            "--expose",
            &expose_addr,
            "--http",
            &http_addr,
            "--http-timeout",
            "100",
        ],
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let first = loop {
        match common::try_request(&api_path, "GET", "/", &[], b"", common::REQUEST_TIMEOUT) {
            Ok(r) => break r,
            Err(_) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "no answer on the passed socket"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    assert_eq!(first.status, 200);
    assert!(first.text().contains("\"xs.start\""), "{}", first.text());
    assert!(!dir.join("sock").exists(), "bound a socket of its own");

    let exchange = |addr: &str, head: &str| -> String {
        let mut stream = std::net::TcpStream::connect(addr).expect("connect");
        stream.write_all(head.as_bytes()).expect("send");
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    };
    let answer = exchange(
        &expose_addr,
        "GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let answer = exchange(
        &http_addr,
        "GET /nobody HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 504"), "{answer}");

    // SAFETY: signalling our own child by pid.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    assert!(child.wait().expect("exit").success());
    assert!(api_path.exists(), "removed the service manager's socket");
}
