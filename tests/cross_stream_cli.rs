//! cross.stream's own CLI against our server: `xs append`, `xs last` and
//! `xs cat` of cross.stream 0.13 (its hyper client sends every request in
//! the absolute form, `POST http://localhost/append/note`).
//!
//! cross.stream's binary is also called `xs`, so it is found through
//! `XS_CROSS_STREAM` (the path to it, e.g. from `cargo install
//! cross-stream --version 0.13.4 --root <dir>`); without it the test says
//! so and passes. tests/api_wire.rs sends the same requests by hand.

mod common;

use std::process::{Command, Stdio};

use common::Server;

fn cross_stream() -> Option<String> {
    let path = std::env::var("XS_CROSS_STREAM").ok()?;
    std::path::Path::new(&path).is_file().then_some(path)
}

#[test]
fn cross_streams_cli_appends_and_reads_through_our_server() {
    let Some(theirs) = cross_stream() else {
        eprintln!("skipped: set XS_CROSS_STREAM to cross.stream's `xs` binary to run this test");
        return;
    };
    let server = Server::start(&[]);
    let dir = server.dir().to_str().expect("utf-8 path").to_string();
    let mut append = Command::new(&theirs)
        .args(["append", &dir, "note"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run cross.stream's xs");
    {
        use std::io::Write;
        let mut stdin = append.stdin.take().expect("stdin");
        stdin.write_all(b"from cross.stream").expect("write");
    }
    let out = append.wait_with_output().expect("append");
    assert!(
        out.status.success(),
        "append: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let appended: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a frame");
    assert_eq!(appended["topic"], "note");

    let out = Command::new(&theirs)
        .args(["last", &dir, "note"])
        .output()
        .expect("last");
    assert!(
        out.status.success(),
        "last: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a frame");
    assert_eq!(last["id"], appended["id"]);

    let out = Command::new(&theirs)
        .args(["cat", &dir])
        .output()
        .expect("cat");
    assert!(
        out.status.success(),
        "cat: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(appended["id"].as_str().expect("id")),
        "{text}"
    );

    let body = server.get(&format!(
        "/cas/{}",
        appended["hash"].as_str().expect("hash")
    ));
    assert_eq!(body.body, b"from cross.stream");
}
