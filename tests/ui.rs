//! `xs serve --ui`: the live viewer page and the API under the same
//! origin, its address rules (those of `--expose`), and the page itself in
//! a real browser.
//!
//! The browser tests drive Debian's headless Chromium over the Chrome
//! DevTools Protocol on its pipe (`--remote-debugging-pipe`: commands on
//! fd 3, answers on fd 4, each a JSON text ending in a NUL byte): open the
//! page, evaluate JavaScript in it until a condition holds, click, take a
//! screenshot. A missing chromium fails them (scripts/install-chromium.sh
//! installs it) unless `XS_SKIP_BROWSER_TESTS=1`. With
//! `XS_UPDATE_SCREENSHOT=1` the first one also writes docs/viewer.png.

mod common;

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::fd::FromRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::backend::free_port;
use common::cli::*;
use common::*;
use serde_json::{json, Value};

/// One request over TCP to 127.0.0.1:`port`: status, headers (lowercase
/// names) and body.
fn tcp_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(REQUEST_TIMEOUT)).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: 127.0.0.1:{port}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no head: {:?}", String::from_utf8_lossy(&answer)));
    let head = String::from_utf8_lossy(&answer[..split]).to_lowercase();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    let body = answer[split + 4..].to_vec();
    let body = if head.contains("transfer-encoding: chunked") {
        dechunk(&body)
    } else {
        body
    };
    (status, head, body)
}

/// A chunked body's bytes.
fn dechunk(mut bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = bytes
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size");
        let size = std::str::from_utf8(&bytes[..line_end]).unwrap();
        let size = usize::from_str_radix(size.trim(), 16).expect("hex chunk size");
        if size == 0 {
            return out;
        }
        let start = line_end + 2;
        out.extend_from_slice(&bytes[start..start + size]);
        bytes = &bytes[start + size + 2..];
    }
}

fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> (u16, String, Vec<u8>) {
    tcp_request(port, "GET", path, headers, b"")
}

const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml,*/*;q=0.8";

#[test]
fn the_ui_listener_serves_the_page_and_the_api() {
    let port = free_port();
    let server = Server::start(&["--ui", &format!(":{port}")]);
    let frame = server.append("note", b"hello");

    // A browser asking for `/` gets the page; its files are built in.
    let (status, head, body) = get(port, "/", &[("Accept", BROWSER_ACCEPT)]);
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(head.contains("content-security-policy: default-src 'none'"));
    let page = String::from_utf8(body).unwrap();
    assert!(page.contains("<title>xs viewer</title>"), "{page}");
    assert_eq!(get(port, "/ui/", &[]).2, page.as_bytes());
    let (status, head, script) = get(port, "/ui/app.js", &[]);
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/javascript"));
    assert!(String::from_utf8(script).unwrap().contains("EventSource"));
    assert_eq!(get(port, "/ui/app.css", &[]).0, 200);
    assert_eq!(get(port, "/ui/nothing", &[]).0, 404);

    // Everything else is the API, as on the socket: `GET /` without HTML
    // is the stream, in both encodings.
    let (status, _, body) = get(port, "/", &[]);
    assert_eq!(status, 200);
    assert_eq!(body, server.get("/").body);
    let (status, head, body) = get(port, "/?topic=note", &[("Accept", "text/event-stream")]);
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    let id = frame["id"].as_str().unwrap();
    assert!(String::from_utf8(body)
        .unwrap()
        .starts_with(&format!("id: {id}\ndata: {{")));
    let hash = frame["hash"].as_str().unwrap();
    assert_eq!(get(port, &format!("/cas/{hash}"), &[]).2, b"hello");
    // A payload is never a page of this origin: an HTML payload opened
    // from a link is not sniffed into HTML, and runs no script if shown.
    let html = server.append("page", b"<script>fetch('/eval')</script>");
    let (status, head, _) = get(
        port,
        &format!("/cas/{}", html["hash"].as_str().unwrap()),
        &[("Accept", BROWSER_ACCEPT)],
    );
    assert_eq!(status, 200);
    assert!(head.contains("x-content-type-options: nosniff"), "{head}");
    assert!(head.contains("content-security-policy: sandbox"), "{head}");
    assert_eq!(
        get(port, &format!("/{id}"), &[]).2,
        server.get(&format!("/{id}")).body
    );
    let ui = format!(":{port}");
    assert_eq!(ok(&xs(&["cat", &ui])), ok(&xs(&["cat", &addr(&server)])));
    assert_eq!(get(port, "/ps", &[]).0, 200);
    assert_eq!(get(port, "/kv", &[]).0, 200);
    // A write from the page's own origin (or a client without one) works.
    let origin = format!("http://127.0.0.1:{port}");
    let (status, _, _) = tcp_request(port, "POST", "/append/here", &[("Origin", &origin)], b"x");
    assert_eq!(status, 200);
    let (status, _, _) = tcp_request(port, "POST", "/append/here", &[], b"x");
    assert_eq!(status, 200);

    // What a browser can be made to send by another site is refused: a
    // write from another origin, any request for a foreign host name (DNS
    // rebinding).
    let (status, _, body) = tcp_request(
        port,
        "POST",
        "/append/there",
        &[("Origin", "http://evil.example")],
        b"x",
    );
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    let (status, _, body) = get(port, "/", &[("Host", "evil.example:80")]);
    assert_eq!(status, 403);
    assert!(String::from_utf8_lossy(&body).contains("not a loopback name"));
    assert_eq!(
        get(port, "/version", &[("Host", &format!("localhost:{port}"))]).0,
        200
    );
    assert_eq!(server.frames("/?topic=there").len(), 0);
    assert_eq!(server.frames("/?topic=here").len(), 2);
}

/// `xs serve` that must refuse to start: its one stderr line.
fn refused(args: &[&str]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let mut all = vec!["serve", store.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = xs(&all);
    assert_eq!(out.status.code(), Some(1), "{args:?}: refused");
    assert!(!store.exists(), "{args:?}: refused before the store opens");
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    err
}

#[test]
fn a_ui_beyond_loopback_needs_an_auth_file_as_expose_does() {
    // TEST-NET-1 (RFC 5737): not this machine, so nothing listens even if
    // the refusal were broken.
    for addr in ["192.0.2.1:7357", "http://192.0.2.1:7357"] {
        let ui = refused(&["--ui", addr]);
        let expose = refused(&["--expose", addr]);
        assert!(ui.contains("--auth-file"), "{ui}");
        assert_eq!(ui, expose.replace("--expose", "--ui"));
    }
    let err = refused(&["--ui", "./ui.sock"]);
    assert!(
        err.contains("--ui ./ui.sock: the viewer needs a TCP address"),
        "{err}"
    );
    assert_eq!(
        refused(&["--ui", "https://127.0.0.1:1"]),
        refused(&["--expose", "https://127.0.0.1:1"]).replace("--expose", "--ui")
    );
}

#[test]
fn an_auth_file_guards_the_ui_listener() {
    let tmp = tempfile::tempdir().unwrap();
    let auth = tmp.path().join("auth");
    std::fs::write(&auth, "viewer:a-long:secret\n").unwrap();
    std::fs::set_permissions(&auth, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let port = free_port();
    let _server = Server::start(&[
        "--ui",
        &format!("127.0.0.1:{port}"),
        "--auth-file",
        auth.to_str().unwrap(),
    ]);
    let (status, head, _) = get(port, "/", &[("Accept", BROWSER_ACCEPT)]);
    assert_eq!(status, 401, "the page too needs the password");
    assert!(head.contains("www-authenticate: basic"), "{head}");
    let token = base64::engine::general_purpose::STANDARD.encode("viewer:a-long:secret");
    let basic = format!("Basic {token}");
    let (status, _, body) = get(
        port,
        "/",
        &[("Accept", BROWSER_ACCEPT), ("Authorization", &basic)],
    );
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("xs viewer"));
}

// ---------------------------------------------------------------------------
// A real browser

/// Headless Chromium on a DevTools pipe.
struct Browser {
    child: Child,
    commands: File,
    answers: mpsc::Receiver<Value>,
    next_id: u64,
    _profile: tempfile::TempDir,
}

/// One tab of the browser.
struct Tab {
    target: Value,
    session: String,
}

impl Browser {
    /// Starts chromium; `None` when it is missing and the environment
    /// allows skipping.
    fn start() -> Option<Browser> {
        let found = Command::new("chromium")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            if std::env::var("XS_SKIP_BROWSER_TESTS").as_deref() == Ok("1") {
                eprintln!("chromium not found: browser test skipped (XS_SKIP_BROWSER_TESTS=1)");
                return None;
            }
            panic!(
                "chromium not found: run scripts/install-chromium.sh, \
                 or set XS_SKIP_BROWSER_TESTS=1 to skip the browser tests"
            );
        }
        let profile = tempfile::tempdir().unwrap();
        let (to_read, to_write) = pipe();
        let (from_read, from_write) = pipe();
        let mut command = Command::new("chromium");
        command
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-extensions",
                "--hide-scrollbars",
                "--remote-debugging-pipe",
                "--window-size=1200,800",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: only async-signal-safe calls (fcntl, dup2) between fork
        // and exec. The pipe ends go to fds 3 and 4 by way of fresh
        // numbers, so a pipe end that already is 3 or 4 is not lost.
        unsafe {
            command.pre_exec(move || {
                let read = libc::fcntl(to_read, libc::F_DUPFD, 10);
                let write = libc::fcntl(from_write, libc::F_DUPFD, 10);
                if read < 0 || write < 0 || libc::dup2(read, 3) < 0 || libc::dup2(write, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("start chromium");
        // SAFETY: each fd is ours alone, from pipe() below.
        let commands = unsafe {
            libc::close(to_read);
            libc::close(from_write);
            File::from_raw_fd(to_write)
        };
        let answers_file = unsafe { File::from_raw_fd(from_read) };
        let (sender, answers) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(answers_file);
            loop {
                let mut message = Vec::new();
                match reader.read_until(0, &mut message) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                message.pop();
                let Ok(value) = serde_json::from_slice::<Value>(&message) else {
                    continue;
                };
                if sender.send(value).is_err() {
                    return;
                }
            }
        });
        Some(Browser {
            child,
            commands,
            answers,
            next_id: 0,
            _profile: profile,
        })
    }

    /// Sends a command (to a tab when `session` is given), returns its
    /// result.
    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        self.commands.write_all(&bytes).expect("write to chromium");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let answer = self
                .answers
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("chromium did not answer {method}"));
            if answer["id"] == json!(id) {
                if let Some(error) = answer.get("error") {
                    panic!("{method}: {error}");
                }
                return answer["result"].clone();
            }
        }
    }

    /// Opens `url` in a new tab.
    fn open(&mut self, url: &str) -> Tab {
        let target = self.call(None, "Target.createTarget", json!({ "url": url }));
        let target_id = target["targetId"].clone();
        let attached = self.call(
            None,
            "Target.attachToTarget",
            json!({ "targetId": target_id, "flatten": true }),
        );
        Tab {
            target: target_id,
            session: attached["sessionId"]
                .as_str()
                .expect("a session")
                .to_string(),
        }
    }

    /// Closes a tab, and with it its connections: a browser opens at most
    /// 6 at a time to one host, and each tab of the page holds one or two.
    fn close(&mut self, tab: Tab) {
        self.call(
            None,
            "Target.closeTarget",
            json!({ "targetId": tab.target }),
        );
    }

    /// The value of a JavaScript expression in the tab.
    fn eval(&mut self, tab: &Tab, expression: &str) -> Value {
        let result = self.call(
            Some(&tab.session),
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
        );
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("{expression}: {exception}");
        }
        result["result"]["value"].clone()
    }

    /// Waits until `expression` is true in the tab; how long that took.
    fn wait_until(&mut self, tab: &Tab, expression: &str, timeout: Duration) -> Duration {
        let start = Instant::now();
        // Until the page's script has run, its names are not defined yet.
        let guarded =
            format!("(() => {{ try {{ return {expression} }} catch {{ return false }} }})()");
        loop {
            if self.eval(tab, &guarded) == json!(true) {
                return start.elapsed();
            }
            if start.elapsed() > timeout {
                let dump = self.eval(tab, "document.body.innerText");
                panic!("not within {timeout:?}: {expression}\npage text:\n{dump}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A PNG of the tab.
    fn screenshot(&mut self, tab: &Tab) -> Vec<u8> {
        let shot = self.call(
            Some(&tab.session),
            "Page.captureScreenshot",
            json!({ "format": "png" }),
        );
        base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("png data"))
            .expect("base64")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A pipe's (read, write) ends, close-on-exec.
fn pipe() -> (i32, i32) {
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors.
    let done = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(done, 0, "pipe: {}", std::io::Error::last_os_error());
    (fds[0], fds[1])
}

/// The topics of the rows the page has drawn, the server's own `xs.*`
/// left out, as a JS expression.
const ROW_TOPICS: &str = "[...document.querySelectorAll('#rows .row .topic')]\
    .map(e => e.textContent).filter(t => !t.startsWith('xs.'))";

/// A 1x1 PNG.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0xf0,
    0x1f, 0x00, 0x05, 0x00, 0x01, 0xff, 0x89, 0x99, 0x3d, 0x1d, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

#[test]
fn the_page_in_a_real_browser_tails_filters_and_opens_payloads() {
    let Some(mut browser) = Browser::start() else {
        return;
    };
    let port = free_port();
    let server = Server::start(&["--ui", &format!(":{port}")]);
    let meta = base64::engine::general_purpose::STANDARD.encode(r#"{"plan":"pro"}"#);
    let signup = request(
        &server.sock(),
        "POST",
        "/append/user.signup",
        &[("xs-meta", &meta)],
        br#"{"name":"Ada","langs":["en","fr"]}"#,
    );
    assert_eq!(signup.status, 200, "{}", signup.text());
    let json_frame = signup.json();
    let png_frame = server.append("user.avatar", PNG);
    let binary_frame = server.append("blob.raw", &[0u8, 1, 2, 0xff, 0xfe, 7, 8]);
    server.append("order.placed", b"order 1");
    let put = request(&server.sock(), "PUT", "/kv/counter", &[], b"{\"n\":1}");
    assert_eq!(put.status, 204, "{}", put.text());
    // A service, for the process table.
    if cfg!(feature = "nushell") {
        server.append(
            "xs.service.ticker.create",
            br#"{ command: ["sleep", "60"] restart: "never" }"#,
        );
    }

    // History, then live: the page shows what is there...
    let base = format!("http://127.0.0.1:{port}/");
    let tab = browser.open(&base);
    browser.wait_until(
        &tab,
        &format!("{ROW_TOPICS}.join() == 'user.signup,user.avatar,blob.raw,order.placed'"),
        Duration::from_secs(10),
    );
    // ...then what is appended, within a second.
    let appended = Instant::now();
    server.append("live.one", b"1");
    server.append("live.two", b"2");
    let took = browser.wait_until(
        &tab,
        &format!("{ROW_TOPICS}.slice(-2).join() == 'live.one,live.two'"),
        Duration::from_secs(5),
    );
    assert!(
        appended.elapsed() < Duration::from_secs(1),
        "live frames took {took:?} to show"
    );
    // The process table and the k/v keys are there.
    browser.wait_until(
        &tab,
        "document.querySelector('#kv').innerText.includes('counter')",
        Duration::from_secs(5),
    );
    if cfg!(feature = "nushell") {
        browser.wait_until(
            &tab,
            "document.querySelector('#ps').innerText.includes('ticker\\tservice\\trunning')",
            Duration::from_secs(5),
        );
    }
    // A key clicked is watched live.
    browser.eval(
        &tab,
        "document.querySelector('#kv tr:nth-child(2)').click()",
    );
    browser.wait_until(
        &tab,
        "document.querySelector('#kv-watch pre').textContent == '{\\n  \"n\": 1\\n}'",
        Duration::from_secs(5),
    );
    let put = request(&server.sock(), "PUT", "/kv/counter", &[], b"{\"n\":2}");
    assert_eq!(put.status, 204);
    browser.wait_until(
        &tab,
        "document.querySelector('#kv-watch pre').textContent == '{\\n  \"n\": 2\\n}' && \
         document.querySelector('#kv').innerText.includes('{\"n\":2}')",
        Duration::from_secs(2),
    );

    // A click opens a frame: its meta, and its JSON payload pretty-printed.
    let click =
        |id: &str| format!("document.querySelector('#rows .row[data-id=\"{id}\"]').click()");
    browser.eval(&tab, &click(json_frame["id"].as_str().unwrap()));
    browser.wait_until(
        &tab,
        "document.querySelector('#payload .payload-text')?.textContent == \
         '{\\n  \"name\": \"Ada\",\\n  \"langs\": [\\n    \"en\",\\n    \"fr\"\\n  ]\\n}'",
        Duration::from_secs(5),
    );
    let meta = browser.eval(
        &tab,
        "document.querySelector('#detail .frame-json').textContent",
    );
    assert!(
        meta.as_str().unwrap().contains("\"plan\": \"pro\""),
        "{meta}"
    );
    let hash = browser.eval(&tab, "location.hash");
    assert_eq!(
        hash,
        json!(format!("#frame={}", json_frame["id"].as_str().unwrap()))
    );
    // An image is shown as one; binary as hex, with a download link.
    browser.eval(&tab, &click(png_frame["id"].as_str().unwrap()));
    browser.wait_until(
        &tab,
        "document.querySelector('#payload img')?.naturalWidth == 1",
        Duration::from_secs(5),
    );
    browser.eval(&tab, &click(binary_frame["id"].as_str().unwrap()));
    browser.wait_until(
        &tab,
        "document.querySelector('#payload .payload-hex')?.textContent.startsWith('00000000  00 01 02 ff fe 07 08')",
        Duration::from_secs(5),
    );
    let link = browser.eval(
        &tab,
        "document.querySelector('#payload a[download]').getAttribute('href')",
    );
    assert_eq!(
        link,
        json!(format!("/cas/{}", binary_frame["hash"].as_str().unwrap()))
    );

    // A filter in the URL shows only the matching topics.
    let filtered = browser.open(&format!("{base}#topic=user.*,live.one"));
    browser.wait_until(
        &filtered,
        &format!("{ROW_TOPICS}.join() == 'user.signup,user.avatar,live.one'"),
        Duration::from_secs(10),
    );
    server.append("user.login", b"");
    server.append("order.shipped", b"");
    browser.wait_until(
        &filtered,
        &format!("{ROW_TOPICS}.join() == 'user.signup,user.avatar,live.one,user.login'"),
        Duration::from_secs(5),
    );
    browser.close(filtered);
    // Since an id: only what follows it.
    let since = browser.open(&format!(
        "{base}#since={}",
        png_frame["id"].as_str().unwrap()
    ));
    browser.wait_until(
        &since,
        &format!("{ROW_TOPICS}[0] == 'blob.raw' && {ROW_TOPICS}.includes('order.shipped')"),
        Duration::from_secs(10),
    );
    browser.close(since);

    // Since a time: the id made from it in the page reads from there.
    let recent = browser.open(&format!("{base}#since=10m&topic=user.*"));
    browser.wait_until(
        &recent,
        &format!("{ROW_TOPICS}.join() == 'user.signup,user.avatar,user.login'"),
        Duration::from_secs(10),
    );
    browser.close(recent);
    // Since a date: the frames from that millisecond on.
    let at_ms = |id: &str| id.parse::<scru128::Scru128Id>().unwrap().timestamp();
    let from_ms = at_ms(binary_frame["id"].as_str().unwrap());
    let expected: Vec<String> = server
        .frames("/")
        .iter()
        .filter(|f| at_ms(f["id"].as_str().unwrap()) >= from_ms)
        .map(|f| f["topic"].as_str().unwrap().to_string())
        .filter(|topic| !topic.starts_with("xs."))
        .collect();
    let date = browser.eval(&tab, &format!("new Date({from_ms}).toISOString()"));
    let dated = browser.open(&format!("{base}#since={}", date.as_str().unwrap()));
    browser.wait_until(
        &dated,
        &format!("{ROW_TOPICS}.join() == '{}'", expected.join(",")),
        Duration::from_secs(10),
    );
    browser.close(dated);

    if std::env::var("XS_UPDATE_SCREENSHOT").as_deref() == Ok("1") {
        browser.eval(&tab, &click(json_frame["id"].as_str().unwrap()));
        browser.wait_until(
            &tab,
            "!!document.querySelector('#payload .payload-text')",
            Duration::from_secs(5),
        );
        let png = browser.screenshot(&tab);
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/viewer.png");
        std::fs::write(path, png).unwrap();
    }
}

#[test]
fn the_page_keeps_up_with_a_thousand_frames_a_second_over_a_long_history() {
    let Some(mut browser) = Browser::start() else {
        return;
    };
    let port = free_port();
    let server = Server::start(&["--ui", &format!(":{port}")]);
    // Some history from the store...
    append_many(&server, "old", 1000, Duration::ZERO);
    let tab = browser.open(&format!("http://127.0.0.1:{port}/"));
    browser.wait_until(
        &tab,
        "frameList.filter(f => f.topic == 'old').length == 1000",
        Duration::from_secs(10),
    );
    // ...and 100,000 more frames handed to the page at once, as a long
    // history arrives: one batch, drawn in a few dozen rows.
    let start = Instant::now();
    browser.eval(
        &tab,
        "for (let i = 0; i < 100000; i++) \
           pending.push({topic: 'many.' + i, id: idAt(Date.now()), hash: null, meta: {i}, ttl: null}); \
         schedule(); true",
    );
    browser.wait_until(
        &tab,
        "frameList.length >= 101000 && document.querySelector('#rows .row:last-child .topic').textContent == 'many.99999'",
        Duration::from_secs(5),
    );
    // Scrolling into the middle draws that slice, and only it.
    browser.eval(&tab, "list.scrollTop = 50000 * ROW; true");
    browser.wait_until(
        &tab,
        "[...document.querySelectorAll('#rows .topic')].some(e => e.textContent == 'many.49000')",
        Duration::from_secs(5),
    );
    let rows = browser.eval(&tab, "document.querySelectorAll('#rows .row').length");
    assert!(rows.as_u64().unwrap() <= 300, "{rows} rows in the DOM");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "100,000 frames took {:?}",
        start.elapsed()
    );
    browser.eval(&tab, "list.scrollTop = list.scrollHeight; true");
    // 1,000 frames/s for 2 s while the page stays responsive: no call
    // into it waits long, and the DOM holds only the rows in view.
    let writer = {
        let sock = server.sock();
        std::thread::spawn(move || append_many_to(&sock, "fast", 2000, Duration::from_millis(1)))
    };
    let mut slowest = Duration::ZERO;
    while !writer.is_finished() {
        let start = Instant::now();
        let rows = browser.eval(&tab, "document.querySelectorAll('#rows .row').length");
        slowest = slowest.max(start.elapsed());
        assert!(rows.as_u64().unwrap() <= 300, "{rows} rows in the DOM");
        std::thread::sleep(Duration::from_millis(50));
    }
    writer.join().unwrap();
    browser.wait_until(
        &tab,
        "frameList.filter(f => f.topic == 'fast').length == 2000",
        Duration::from_secs(10),
    );
    assert!(
        slowest < Duration::from_millis(500),
        "the tab froze for {slowest:?}"
    );
    // Still at the bottom: the newest frame is drawn.
    browser.wait_until(
        &tab,
        &format!("{ROW_TOPICS}.at(-1) == 'fast'"),
        Duration::from_secs(5),
    );
}

fn append_many(server: &Server, topic: &str, count: usize, pause: Duration) {
    append_many_to(&server.sock(), topic, count, pause)
}

/// `count` appends over one keep-alive connection, one each `pause` (as
/// fast as the server answers when it falls behind).
fn append_many_to(sock: &std::path::Path, topic: &str, count: usize, pause: Duration) {
    let stream = std::os::unix::net::UnixStream::connect(sock).expect("connect");
    stream.set_read_timeout(Some(REQUEST_TIMEOUT)).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let request = format!("POST /append/{topic} HTTP/1.1\r\nHost: xs\r\nContent-Length: 0\r\n\r\n");
    let start = Instant::now();
    for i in 0..count {
        if let Some(wait) = (start + pause * i as u32).checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        writer.write_all(request.as_bytes()).expect("send");
        let mut length = 0;
        let mut line = String::new();
        loop {
            line.clear();
            reader.read_line(&mut line).expect("answer");
            if line.starts_with("HTTP/1.1 ") {
                assert!(line.starts_with("HTTP/1.1 200"), "{line}");
            }
            if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse().unwrap();
            }
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).expect("body");
    }
}
