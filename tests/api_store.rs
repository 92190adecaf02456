//! The store folder: a store written by cross.stream 0.13 opens and is served
//! byte for byte, ids keep increasing across restarts, modes, the lock, a
//! stale socket, and `xs.stopping` on SIGTERM.

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// In the repository (a clone has nothing beside it); read-only here:
/// each test copies the store to a temp dir before opening it.
const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/cross-stream-0.13");

/// A server on a writable copy of the fixture store.
fn fixture_server() -> Server {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("store");
    copy_tree(&PathBuf::from(FIXTURE).join("store"), &dir);
    Server::start_in(tmp, dir, &[])
}

fn fixture_lines() -> Vec<String> {
    let text =
        fs::read_to_string(PathBuf::from(FIXTURE).join("frames.jsonl")).expect("frames.jsonl");
    text.lines().map(str::to_string).collect()
}

#[test]
fn fixture_store_is_served_byte_for_byte() {
    if backend::local_only("the cross.stream 0.13 fixture is a local store folder") {
        return;
    }
    let server = fixture_server();
    let expected = fixture_lines();
    assert_eq!(expected.len(), 14);
    let r = server.get("/");
    assert_eq!(r.status, 200);
    let text = r.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 15, "14 old frames and our xs.start:\n{text}");
    for (at, (got, want)) in lines.iter().zip(&expected).enumerate() {
        assert_eq!(got, want, "line {}", at + 1);
    }
    let start: Value = serde_json::from_str(lines[14]).unwrap();
    assert_eq!(topic(&start), "xs.start");
    let newest_old: Value = serde_json::from_str(&expected[13]).unwrap();
    assert!(id(&start) > id(&newest_old), "new ids above the old ones");

    // Every hash resolves through /cas to the payload cross.stream stored.
    let blob = fs::read(PathBuf::from(FIXTURE).join("blob.binary.bin")).unwrap();
    let payloads: Vec<(&str, Vec<u8>)> = vec![
        ("note", b"hello world".to_vec()),
        ("note.unicode", "ünïcödé ✓".as_bytes().to_vec()),
        ("blob.binary", blob),
        ("cache.entry", b"long lived".to_vec()),
        ("dup.a", b"same content".to_vec()),
        ("dup.b", b"same content".to_vec()),
    ];
    for (t, bytes) in &payloads {
        let frame = server.get(&format!("/last/{t}")).json();
        let hash = frame["hash"].as_str().expect("hash");
        let r = server.get(&format!("/cas/{hash}"));
        assert_eq!(r.status, 200, "{t}");
        assert_eq!(&r.body, bytes, "{t}");
    }
    let counters = server.get("/last/counter?last=5").frames();
    let values: Vec<Vec<u8>> = counters
        .iter()
        .map(|f| {
            server
                .get(&format!("/cas/{}", f["hash"].as_str().unwrap()))
                .body
        })
        .collect();
    assert_eq!(values, [b"v3".to_vec(), b"v4".to_vec()]);
    for line in &expected {
        let frame: Value = serde_json::from_str(line).unwrap();
        if let Some(hash) = frame["hash"].as_str() {
            assert_eq!(server.get(&format!("/cas/{hash}")).status, 200, "{line}");
        }
        // And every frame by id, exactly as stored.
        let r = server.get(&format!("/{}", id(&frame)));
        assert_eq!(r.text(), *line);
    }

    // cross.stream's topic index is used as is.
    assert_eq!(
        topics(&server.frames("/?topic=user.*")),
        ["user.alice.login", "user.bob.login"]
    );
    assert_eq!(topics(&server.frames("/?topic=dup.*&last=1")), ["dup.b"]);
    assert_eq!(
        topics(&server.frames("/?topic=note,counter")),
        ["note", "counter", "counter"]
    );
}

#[test]
fn ids_stay_above_old_ones_across_restarts() {
    if backend::local_only("starts from the cross.stream fixture folder") {
        return;
    }
    let mut server = fixture_server();
    let newest_old: Value = serde_json::from_str(&fixture_lines()[13]).unwrap();
    let first = server.append("after.open", b"one");
    assert!(id(&first) > id(&newest_old));
    server.restart();
    let second = server.append("after.restart", b"two");
    assert!(id(&second) > id(&first));
    let all = server.frames("/");
    let ids: Vec<&str> = all.iter().map(id).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(ids, sorted, "history strictly increasing");
    assert_eq!(
        topics(&all[14..]),
        [
            "xs.start",
            "after.open",
            "xs.stopping",
            "xs.start",
            "after.restart"
        ]
    );
    // What was written before the restart is still there, payload too.
    assert_eq!(server.get(&format!("/{}", id(&first))).json(), first);
    let hash = first["hash"].as_str().unwrap();
    assert_eq!(server.get(&format!("/cas/{hash}")).body, b"one");
}

#[test]
fn store_dir_and_socket_modes() {
    let server = Server::start(&[]);
    let dir_mode = fs::metadata(server.dir()).unwrap().permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700, "store dir {dir_mode:o}");
    let sock = fs::metadata(server.sock()).unwrap();
    assert!(sock.file_type().is_socket());
    let sock_mode = sock.permissions().mode() & 0o777;
    assert_eq!(sock_mode, 0o600, "socket {sock_mode:o}");
}

#[test]
fn second_server_on_same_store_is_refused() {
    let server = Server::start(&[]);
    let mut child = Command::new(XS)
        .arg("serve")
        .arg(server.dir())
        .args(server.args())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("second xs serve did not exit");
        }
        std::thread::sleep(ms(5));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.starts_with("store locked:"), "{stderr}");
    assert!(
        stderr.contains(&format!("{}", server.dir().display())),
        "{stderr}"
    );
    assert!(stderr.contains("curl --unix-socket"), "{stderr}");
    // The running server is unharmed.
    assert_eq!(topics(&server.frames("/")), ["xs.start"]);
    assert!(server.sock().exists());
    server.append("still.fine", b"");
}

#[test]
fn stale_socket_is_replaced() {
    let mut server = Server::start(&[]);
    let before = server.append("before", b"x");
    server.kill();
    assert!(server.sock().exists(), "SIGKILL leaves the socket file");
    assert!(
        std::os::unix::net::UnixStream::connect(server.sock()).is_err(),
        "nobody listens"
    );
    server.restart();
    assert_eq!(
        topics(&server.frames("/")),
        ["xs.start", "before", "xs.start"]
    );
    assert_eq!(server.get(&format!("/{}", id(&before))).json(), before);
    let mode = fs::metadata(server.sock()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn sigterm_appends_stopping() {
    let mut server = Server::start(&[]);
    let mut follow = server.follow("/?follow&new");
    follow.expect_silence(ms(50));
    let status = server.stop();
    assert!(status.success(), "clean exit: {status}");
    // A follower sees xs.stopping, then its stream ends.
    let stopping = follow.next_frame(Duration::from_secs(5));
    assert_eq!(topic(&stopping), "xs.stopping");
    follow.expect_closed(Duration::from_secs(5));
    assert!(!server.sock().exists(), "socket removed on a clean stop");

    server.restart();
    let all = server.frames("/");
    assert_eq!(topics(&all), ["xs.start", "xs.stopping", "xs.start"]);
    assert_eq!(all[1], stopping);
    assert_eq!(all[1]["ttl"], Value::Null);
    assert_eq!(all[1]["meta"], Value::Null);
}

/// `GET /metrics` with `headers`: status 200, its content type and body.
fn metrics_with(server: &Server, headers: &[(&str, &str)]) -> (String, Response) {
    let r = request(&server.sock(), "GET", "/metrics", headers, b"");
    assert_eq!(r.status, 200, "{headers:?}: {}", r.text());
    (r.content_type().unwrap_or_default().to_string(), r)
}

#[test]
fn metrics_answer_json_by_default_and_prometheus_text_when_asked() {
    let server = Server::start(&[]);
    let frame = server.append("m", b"payload");
    assert_eq!(server.frames("/").len(), 2);
    let r = server.delete(&format!("/{}", id(&frame)));
    assert_eq!(r.status, 204, "{}", r.text());

    // cross.stream 0.14's JSON: no Accept, a wildcard, or JSON asked for.
    for headers in [
        &[][..],
        &[("Accept", "*/*")][..],
        &[("Accept", "application/json")][..],
    ] {
        let (content_type, r) = metrics_with(&server, headers);
        assert_eq!(content_type, "application/json", "{headers:?}");
        let doc = r.json();
        let keys = |v: &Value| -> Vec<String> {
            v.as_object()
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default()
        };
        assert_eq!(keys(&doc), ["store", "keyspaces", "xs"], "{doc}");
        let store = &doc["store"];
        assert_eq!(
            keys(store),
            [
                "appends",
                "frames_scanned",
                "stream_reads",
                "removed_frames",
                "remove_commits",
                "gc_drains",
                "gc_nanos"
            ]
        );
        let n = |v: &Value| v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"));
        assert!(n(&store["appends"]) >= 2, "{store}");
        assert!(n(&store["stream_reads"]) >= 1, "{store}");
        assert!(n(&store["frames_scanned"]) >= 2, "{store}");
        assert_eq!(n(&store["removed_frames"]), 1, "{store}");
        assert_eq!(n(&store["remove_commits"]), 1, "{store}");
        n(&store["gc_drains"]);
        n(&store["gc_nanos"]);
        // fjall's cache and filter counters are not built in: the
        // keyspaces are named with zero counters and null rates; Redis
        // has none.
        let keyspaces = doc["keyspaces"].as_array().expect("keyspaces list");
        let names: Vec<&str> = keyspaces
            .iter()
            .map(|k| k["keyspace"].as_str().unwrap_or_default())
            .collect();
        if backend::ON_REDIS {
            assert!(names.is_empty(), "{doc}");
        } else {
            assert_eq!(names, ["stream", "idx_topic", "idx_expiry"]);
        }
        for keyspace in keyspaces {
            let rates = keyspace["rates"].as_object().expect("rates");
            assert_eq!(rates.len(), 6, "{keyspace}");
            assert!(rates.values().all(Value::is_null), "{keyspace}");
            assert_eq!(n(&keyspace["block_loads"]), 0, "{keyspace}");
            assert_eq!(keys(keyspace).len(), 9, "{keyspace}");
        }
        // Ours, as in the Prometheus text.
        assert!(n(&doc["xs"]["frames_appended_total"]) >= 2, "{doc}");
        assert!(n(&doc["xs"]["appends_total"]["ok"]) >= 2, "{doc}");
        assert!(doc["xs"]["processors"]["running"].is_u64(), "{doc}");
    }

    // Prometheus text: asked for plainly, or as Prometheus asks.
    for accept in [
        "text/plain",
        "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
    ] {
        let (content_type, r) = metrics_with(&server, &[("Accept", accept)]);
        assert_eq!(content_type, "text/plain; version=0.0.4", "{accept}");
        let text = r.text();
        assert!(
            text.starts_with("# HELP xs_frames_appended_total "),
            "{text}"
        );
        assert!(text.contains("\nxs_appends_total{outcome=\"ok\"} "), "{text}");
    }
}

#[test]
fn ttl_sweep_sets_how_often_expired_frames_are_removed() {
    let removed =
        |server: &Server| server.get("/metrics").json()["store"]["removed_frames"].clone();
    let never = Server::start(&["--ttl-sweep", "0"]);
    let swept = Server::start(&[]);
    let brief = never.append_q("brief", "ttl=time:50", b"");
    swept.append_q("brief", "ttl=time:50", b"");

    // By default the background sweep removes it, no read meeting it.
    assert!(
        wait_until(Duration::from_secs(5), || removed(&swept) == 1),
        "not swept: {}",
        removed(&swept)
    );

    // With 0, nothing removes it (wait out a default interval past its
    // expiry), and no read returns it.
    let swept_by = id_ms(id(&brief)) + 50 + 1200;
    std::thread::sleep(Duration::from_millis(swept_by.saturating_sub(now_ms())));
    assert_eq!(topics(&never.frames("/")), ["xs.start"]);
    assert_eq!(never.get("/last/brief").status, 404);
    assert_eq!(never.get(&format!("/{}", id(&brief))).status, 404);
    assert_eq!(removed(&never), 0);
}
