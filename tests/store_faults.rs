//! What the store refuses and how it guards what it holds: imports that
//! would replace a frame or leave no room for later ids, NDJSON imports
//! with a bad line, damaged payload files, hashes no file could have, and
//! the permissions of the store folder and its payloads.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::{backend, request, Server};
use serde_json::{json, Value};

/// The largest SCRU128 id there is.
const LARGEST_ID: &str = "f5lxx1zz5pnorynqglhzmsp33";

fn ndjson(server: &Server, lines: &[Value]) -> common::Response {
    let mut body = String::new();
    for line in lines {
        body.push_str(&line.to_string());
        body.push('\n');
    }
    request(
        &server.sock(),
        "POST",
        "/import",
        &[("Content-Type", "application/x-ndjson")],
        body.as_bytes(),
    )
}

/// An id `ahead_ms` milliseconds in the future.
fn future_id(ahead_ms: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    scru128::Scru128Id::try_from_fields(now + ahead_ms, 0, 0, 0)
        .unwrap()
        .to_string()
}

#[test]
fn an_import_that_leaves_no_room_for_later_ids_is_refused() {
    let server = Server::start(&[]);
    let before = server.append("a", b"");

    let r = server.post(
        "/import",
        json!({"topic": "far", "id": LARGEST_ID})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("no room"), "{}", r.text());
    assert_eq!(
        ndjson(&server, &[json!({"topic": "far", "id": LARGEST_ID})]).status,
        400
    );
    assert_eq!(server.get("/last").json(), before);

    // A far-future id that leaves room: later appends sort above it.
    let future = future_id(3_600_000);
    let r = server.post(
        "/import",
        json!({"topic": "far", "id": future}).to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let next = server.append("a", b"");
    let after = server.append("a", b"");
    assert!(
        next["id"].as_str() > Some(future.as_str()),
        "{next} <= {future}"
    );
    assert!(after["id"].as_str() > next["id"].as_str());
    assert_eq!(server.get("/last").json(), after);
}

#[test]
fn an_import_never_replaces_a_stored_frame() {
    let server = Server::start(&[]);
    let start = server.get("/last/xs.start").json();
    let id = start["id"].as_str().unwrap().to_string();

    // Other bytes under the id of xs.start: refused, the frame stays.
    let other = json!({"topic": "xs.start", "id": id, "meta": {"forged": true}});
    let r = server.post("/import", other.to_string().as_bytes());
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.text().contains(&id), "{}", r.text());
    assert_eq!(ndjson(&server, &[other]).status, 409);
    assert_eq!(server.get(&format!("/{id}")).json(), start);

    // The same bytes again: accepted, nothing added.
    let r = server.post("/import", start.to_string().as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    let r = ndjson(&server, std::slice::from_ref(&start));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(server.frames("/").len(), 1);
}

#[test]
fn an_ndjson_import_with_a_bad_line_stores_nothing() {
    let server = Server::start(&[]);
    let count = server.frames("/").len();
    let a =
        json!({"topic": "imp", "id": future_id(1_000), "hash": null, "meta": null, "ttl": null});
    let b =
        json!({"topic": "imp", "id": future_id(2_000), "hash": null, "meta": null, "ttl": null});

    let mut body = format!("{a}\n{b}\n");
    body.push_str("{not json\n");
    let r = request(
        &server.sock(),
        "POST",
        "/import",
        &[("Content-Type", "application/x-ndjson")],
        body.as_bytes(),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("line 3"), "{}", r.text());
    assert_eq!(
        server.frames("/").len(),
        count,
        "lines before the bad one were stored"
    );

    // One id twice with different bytes: refused, nothing stored.
    let mut twin = a.clone();
    twin["topic"] = json!("imp.twin");
    let r = ndjson(&server, &[a.clone(), twin]);
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(server.frames("/").len(), count);

    // The whole body, good: stored.
    let r = ndjson(&server, &[a.clone(), b.clone(), a.clone()]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(server.frames("/?topic=imp"), vec![a, b]);
}

#[test]
fn an_import_line_without_an_end_is_bounded() {
    let server = Server::start(&[]);
    // 17 MiB of one line that never ends: held whole, it would grow
    // without bound.
    let mut body =
        br#"{"topic":"big","id":"03hdgr0won3o2bps7r9grrf08","hash":null,"ttl":null,"meta":{"x":""#
            .to_vec();
    body.resize(17 * 1024 * 1024, b'a');
    let r = common::request(
        &server.sock(),
        "POST",
        "/import",
        &[("Content-Type", "application/x-ndjson")],
        &body,
    );
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(r.text().contains("line 1"), "{}", r.text());
    let r = common::request(&server.sock(), "POST", "/import", &[], &body);
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(server.frames("/?topic=big").is_empty());
    server.append("after", b"still here");
}

#[test]
fn an_overlong_cas_hash_is_bad_input() {
    let server = Server::start(&[]);
    for hash in [
        format!("sha256-{}", "A".repeat(100_000)),
        format!("sha256-{}=", "A".repeat(63)),
        "sha512-AAAA".to_string(),
    ] {
        let r = server.get(&format!("/cas/{hash}"));
        assert_eq!(r.status, 400, "{}", r.text());
        assert!(r.text().starts_with("Invalid CAS hash"), "{}", r.text());
        assert!(r.text().len() < 300, "{}", r.text());
    }
}

/// The file of a payload in a local store.
fn payload_file(server: &Server, hash: &str) -> std::path::PathBuf {
    use base64::Engine;
    let (algo, digest) = hash.split_once('-').unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(digest)
        .unwrap();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    server
        .dir()
        .join("cacache/content-v2")
        .join(algo)
        .join(&hex[0..2])
        .join(&hex[2..4])
        .join(&hex[4..])
}

/// Replaces a payload file's content (it is 0600, owned by us).
fn damage(path: &std::path::Path, bytes: &[u8]) {
    std::fs::write(path, bytes).expect("overwrite payload");
}

/// `GET path` as raw bytes, read until the chunked body's last chunk or
/// the connection's end, whichever comes first.
fn raw_get(server: &Server, path: &str) -> Vec<u8> {
    let mut stream = std::os::unix::net::UnixStream::connect(server.sock()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // Keep-alive: only the server can end the connection early.
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    while !out.ends_with(b"\r\n0\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => panic!("reading the answer: {e}"),
        }
    }
    out
}

#[test]
fn a_damaged_payload_is_never_served_as_its_content() {
    if backend::local_only("payload files") {
        return;
    }
    let server = Server::start(&[]);
    // Small: refused whole, with the reason.
    let small = server.append("p", b"small payload");
    let small_hash = small["hash"].as_str().unwrap();
    damage(&payload_file(&server, small_hash), b"small pAyload");
    let r = server.get(&format!("/cas/{small_hash}"));
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(r.text().contains("does not match its hash"), "{}", r.text());

    // Large (streamed): the response is cut, never ended as complete.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let large = server.append("p", &big);
    let large_hash = large["hash"].as_str().unwrap();
    let path = payload_file(&server, large_hash);
    let mut truncated = big.clone();
    truncated.truncate(2_000_000);
    damage(&path, &truncated);
    let answer = raw_get(&server, &format!("/cas/{large_hash}"));
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{:?}", &answer[..40]);
    assert!(
        !answer.ends_with(b"0\r\n\r\n"),
        "a truncated payload was answered as complete"
    );
    let mut flipped = big.clone();
    flipped[2_500_000] ^= 1;
    damage(&path, &flipped);
    let answer = raw_get(&server, &format!("/cas/{large_hash}"));
    assert!(
        !answer.ends_with(b"0\r\n\r\n"),
        "a damaged payload was answered as complete"
    );

    // An intact one ends as it should.
    let whole = raw_get(
        &server,
        &format!(
            "/cas/{}",
            server.append("p", &big[1..])["hash"].as_str().unwrap()
        ),
    );
    assert!(whole.ends_with(b"0\r\n\r\n"));
    assert!(
        server.stderr().contains("does not match its hash"),
        "{}",
        server.stderr()
    );
}

#[test]
fn the_store_folder_is_owner_only_and_payloads_are_0600() {
    if backend::local_only("the store folder's payload files") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let server = Server::start_in(tmp, dir.clone(), &[]);
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o700);
    assert!(server.stderr().contains("0755"), "{}", server.stderr());

    let small = server.append("p", b"small");
    let large = server.append("p", &vec![3u8; 200_000]);
    let cas = server.post("/cas", &[4u8; 100]).text();
    for hash in [
        small["hash"].as_str().unwrap(),
        large["hash"].as_str().unwrap(),
        &cas,
    ] {
        let mode = std::fs::metadata(payload_file(&server, hash))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{hash}");
    }
}

/// A new store writes its first frame before it makes its own keyspaces
/// (payload references, expiries, k/v); killed at once after it started,
/// whichever of the two it had done, it reopens with its start frame and
/// takes a payload, an expiry and a k/v value, and keeps them.
#[test]
fn a_new_store_killed_as_it_starts_reopens_whole() {
    if backend::local_only("the local database's keyspaces") {
        return;
    }
    for _ in 0..3 {
        let mut server = Server::start_local(&[]);
        server.kill();
        server.restart();
        let starts = server.frames("/");
        assert_eq!(starts.len(), 2, "{starts:?}");
        assert!(starts.iter().all(|f| f["topic"] == "xs.start"));

        let note = server.append("note", b"kept");
        let brief = server.append_q("brief", "ttl=time:60000", b"");
        assert_eq!(brief["ttl"], "time:60000");
        let put = request(
            &server.sock(),
            "PUT",
            "/kv/app.config",
            &[],
            br#"{"theme":"dark"}"#,
        );
        assert_eq!(put.status, 204, "{}", put.text());

        server.restart();
        let hash = note["hash"].as_str().expect("a hash");
        assert_eq!(server.get(&format!("/cas/{hash}")).text(), "kept");
        let frames = server.frames("/");
        assert!(frames.iter().any(|f| f["id"] == brief["id"]), "{frames:?}");
        assert_eq!(
            server.get("/kv/app.config").json(),
            json!({"theme": "dark"})
        );
    }
}
