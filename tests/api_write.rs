//! Writing: `POST /append/<topic>` (payload, `xs-meta`, ttl, validation,
//! size limits), `DELETE /<id>`, `POST /import`, `POST /cas`, `GET /cas`,
//! TTL behaviour, and the small routes (`/version`, `/eval`, 404).

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(5);

/// cross.stream's hash of `hello world` (from the fixture store).
const HELLO_WORLD_SRI: &str = "sha256-uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek=";

fn cacache_files(server: &Server) -> usize {
    count_files(&server.dir().join("cacache"))
}

fn stored_count(server: &Server) -> usize {
    server.frames("/").len()
}

#[test]
fn append_with_payload_and_unicode_meta() {
    let server = Server::start(&[]);
    let meta = json!({"author": "ünïcödé ✓", "n": 1, "nested": {"list": [1, "二"]}});
    let meta_b64 = b64(meta.to_string().as_bytes());
    let body = "hello ünïcödé ✓".as_bytes();
    let r = request(
        &server.sock(),
        "POST",
        "/append/note",
        &[("xs-meta", &meta_b64)],
        body,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.content_type(), Some("application/json"));
    assert!(!r.text().ends_with('\n'));
    let frame = r.json();
    assert_eq!(keys(&frame), ["topic", "id", "hash", "meta", "ttl"]);
    assert_eq!(topic(&frame), "note");
    assert_eq!(frame["meta"], meta);
    assert_eq!(frame["ttl"], "forever");
    let hash = frame["hash"].as_str().expect("hash").to_string();
    assert!(hash.starts_with("sha256-"), "{hash}");

    let got = server.get(&format!("/{}", id(&frame)));
    assert_eq!(got.status, 200);
    assert_eq!(got.content_type(), Some("application/json"));
    assert_eq!(got.json(), frame);

    let cas = server.get(&format!("/cas/{hash}"));
    assert_eq!(cas.status, 200);
    assert_eq!(cas.body, body);

    // Same algorithm and encoding as cross.stream.
    let hello = server.append("hello", b"hello world");
    assert_eq!(hello["hash"], HELLO_WORLD_SRI);
    // Identical bytes dedupe to one hash.
    assert_eq!(
        server.append("hello2", b"hello world")["hash"],
        HELLO_WORLD_SRI
    );
    // The header name is case-insensitive; any JSON value is meta.
    let r = request(
        &server.sock(),
        "POST",
        "/append/list",
        &[("XS-Meta", &b64(b"[1,2]"))],
        b"",
    );
    assert_eq!(r.json()["meta"], json!([1, 2]));
}

#[test]
fn empty_body_has_no_hash() {
    let server = Server::start(&[]);
    let frame = server.append("empty", b"");
    assert_eq!(frame["hash"], Value::Null);
    assert_eq!(frame["meta"], Value::Null);
    assert_eq!(cacache_files(&server), 0, "nothing written to cacache");
    assert_eq!(server.get(&format!("/{}", id(&frame))).json(), frame);
}

#[test]
fn ttl_values_and_parse_errors() {
    let server = Server::start(&[]);
    for ttl in ["forever", "time:5000", "last:3"] {
        let frame = server.append_q("ttl.ok", &format!("ttl={ttl}"), b"");
        assert_eq!(frame["ttl"], ttl);
    }
    let before = stored_count(&server);
    for (ttl, text) in [
        ("time:abc", "Invalid duration for 'time' TTL"),
        ("last:0", "'n' must be >= 1 for 'last' TTL"),
        ("last:x", "Invalid 'n' value for 'last' TTL"),
        ("head:1", "Invalid TTL format"),
        ("unknown", "Invalid TTL format"),
        ("time", "Invalid TTL format"),
    ] {
        let r = server.post(&format!("/append/ttl.bad?ttl={ttl}"), b"payload");
        assert_eq!(r.status, 400, "{ttl}");
        assert_eq!(r.text(), text, "{ttl}");
    }
    assert_eq!(stored_count(&server), before, "nothing stored");
    assert_eq!(cacache_files(&server), 0, "no payload stored");
}

#[test]
fn bad_topic_is_400_and_stores_nothing() {
    let server = Server::start(&[]);
    let long = "a".repeat(256);
    let cases = [
        ("a.", "Topic cannot end with '.'".to_string()),
        ("a..b", "Topic cannot contain consecutive dots".to_string()),
        ("1abc", "Topic must start with a-z, A-Z, or _".to_string()),
        (".a", "Topic must start with a-z, A-Z, or _".to_string()),
        (
            "a*b",
            "Topic contains invalid character: '*'. Allowed: a-z A-Z 0-9 _ - .".to_string(),
        ),
        (
            "a,b",
            "Topic contains invalid character: ','. Allowed: a-z A-Z 0-9 _ - .".to_string(),
        ),
        (
            "a%20b",
            "Topic contains invalid character: '%'. Allowed: a-z A-Z 0-9 _ - .".to_string(),
        ),
        ("", "Topic cannot be empty".to_string()),
        (&long, "Topic exceeds max length of 255 bytes".to_string()),
    ];
    for (topic, text) in &cases {
        let r = server.post(&format!("/append/{topic}"), b"some payload");
        assert_eq!(r.status, 400, "{topic:?}: {}", r.text());
        assert_eq!(&r.text(), text, "{topic:?}");
    }
    assert_eq!(topics(&server.frames("/")), ["xs.start"]);
    assert_eq!(
        cacache_files(&server),
        0,
        "checked before any payload is stored"
    );
    // The longest topic is fine.
    let ok = "a".repeat(255);
    assert_eq!(topic(&server.append(&ok, b"")), ok);
}

#[test]
fn bad_meta_is_400() {
    let server = Server::start(&[]);
    let cases = [
        ("!!!not base64", "xs-meta isn't valid Base64"),
        (
            &b64(&[0xff, 0xfe, 0x7b]) as &str,
            "xs-meta isn't valid UTF-8",
        ),
        (&b64(b"{not json"), "xs-meta isn't valid JSON"),
    ];
    for (header, prefix) in cases {
        let r = request(
            &server.sock(),
            "POST",
            "/append/meta",
            &[("xs-meta", header)],
            b"payload",
        );
        assert_eq!(r.status, 400, "{header}: {}", r.text());
        assert!(r.text().starts_with(prefix), "{header}: {}", r.text());
        assert!(!r.text().contains('\n'), "one line: {:?}", r.text());
    }
    assert_eq!(topics(&server.frames("/")), ["xs.start"]);
    assert_eq!(cacache_files(&server), 0);
}

#[test]
fn meta_header_over_64k_is_413() {
    let server = Server::start(&[]);
    let big = json!({ "blob": "x".repeat(70 * 1024) }).to_string();
    let header = b64(big.as_bytes());
    assert!(header.len() > 64 * 1024);
    let r = request(
        &server.sock(),
        "POST",
        "/append/big",
        &[("xs-meta", &header)],
        b"x",
    );
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(topics(&server.frames("/")), ["xs.start"]);
    // Just under the limit is fine.
    let ok = json!({ "blob": "x".repeat(40 * 1024) }).to_string();
    let r = request(
        &server.sock(),
        "POST",
        "/append/big",
        &[("xs-meta", &b64(ok.as_bytes()))],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn max_payload_is_enforced_from_content_length() {
    let server = Server::start(&["--max-payload", "1000"]);
    let r = server.post("/append/big", &[b'x'; 2000]);
    assert_eq!(r.status, 413, "{}", r.text());
    let r = server.post("/cas", &[b'y'; 2000]);
    assert_eq!(r.status, 413, "{}", r.text());
    // Refused from the header alone: no body sent at all.
    let mut conn = Conn::open(&server.sock()).unwrap();
    conn.stream
        .write_all(b"POST /append/big HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n")
        .unwrap();
    let (status, _) = conn
        .read_head(std::time::Instant::now() + T)
        .expect("an answer before the body");
    assert_eq!(status, 413);
    drop(conn);
    assert_eq!(topics(&server.frames("/")), ["xs.start"]);
    assert_eq!(cacache_files(&server), 0);
    // At the limit: accepted.
    let frame = server.append("fits", &[b'z'; 1000]);
    let hash = frame["hash"].as_str().unwrap();
    assert_eq!(server.get(&format!("/cas/{hash}")).body.len(), 1000);
}

#[test]
fn truncated_body_stores_nothing() {
    let server = Server::start(&[]);
    {
        let mut conn = Conn::open(&server.sock()).unwrap();
        conn.stream
            .write_all(
                b"POST /append/cut HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789",
            )
            .unwrap();
        // Closed here, 90 bytes short.
    }
    // The server still serves, and the cut request left nothing behind.
    let after = server.append("after", b"");
    std::thread::sleep(ms(200));
    assert_eq!(topics(&server.frames("/")), ["xs.start", "after"]);
    assert_eq!(server.get("/last").json(), after);
    assert_eq!(
        cacache_files(&server),
        0,
        "no payload kept for the cut body"
    );
    // Same for POST /cas.
    {
        let mut conn = Conn::open(&server.sock()).unwrap();
        conn.stream
            .write_all(b"POST /cas HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
            .unwrap();
    }
    std::thread::sleep(ms(200));
    assert_eq!(cacache_files(&server), 0);
    assert_eq!(server.get("/version").status, 200);
}

#[test]
fn delete_and_invalid_ids() {
    let server = Server::start(&[]);
    let frame = server.append("doomed", b"bye");
    let path = format!("/{}", id(&frame));
    let r = server.delete(&path);
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    let r = server.get(&path);
    assert_eq!(r.status, 404);
    assert!(r.body.is_empty(), "404 has an empty body");
    assert_eq!(topics(&server.frames("/")), ["xs.start"]);
    // Unknown (but valid) id: still 204.
    let unknown = scru128::new_string();
    assert_eq!(server.delete(&format!("/{unknown}")).status, 204);
    assert_eq!(server.get(&format!("/{unknown}")).status, 404);
    // Ids are case-insensitive on input.
    let other = server.append("other", b"");
    let upper = id(&other).to_uppercase();
    assert_eq!(server.get(&format!("/{upper}")).json(), other);
    // Invalid ids: 400 with the reference text.
    for bad in ["/nonsense", "/03hb7ob4f89a6rwghzgwu0my", "/!!!"] {
        for method in ["GET", "DELETE"] {
            let r = request(&server.sock(), method, bad, &[], b"");
            assert_eq!(r.status, 400, "{method} {bad}");
            assert!(
                r.text().starts_with("Invalid frame ID"),
                "{method} {bad}: {}",
                r.text()
            );
        }
    }
}

#[test]
fn import_stores_verbatim_and_is_not_live() {
    if backend::local_only(
        "imports below the last id, which Redis refuses (409; tests/redis_nodes.rs)",
    ) {
        return;
    }
    let server = Server::start(&[]);
    let start = server.frames("/").remove(0);
    let mut follow = server.follow("/?follow&new");
    follow.expect_silence(ms(50));

    // An id from an hour ago lands before xs.start, exactly as given.
    let old = scru128::Scru128Id::try_from_fields(now_ms() - 3_600_000, 1, 2, 3)
        .unwrap()
        .to_string();
    let hash = server.post("/cas", b"imported payload").text();
    let body = json!({
        "topic": "imp", "id": old, "hash": hash, "meta": {"k": "ü"}, "ttl": "last:5",
        "unknown": "ignored"
    });
    let r = server.post("/import", body.to_string().as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.content_type(), Some("application/json"));
    let expected =
        json!({"topic": "imp", "id": old, "hash": hash, "meta": {"k": "ü"}, "ttl": "last:5"});
    assert_eq!(r.json(), expected);
    assert_eq!(keys(&r.json()), ["topic", "id", "hash", "meta", "ttl"]);

    // Optional keys are filled in with nulls.
    let minimal_id = scru128::new_string();
    let r = server.post(
        "/import",
        json!({"topic": "imp.min", "id": minimal_id})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let minimal = r.json();
    assert_eq!(
        minimal,
        json!({"topic": "imp.min", "id": minimal_id, "hash": null, "meta": null, "ttl": null})
    );

    // Not delivered to a live follower: the next live frame is the marker.
    let marker = server.append("marker", b"");
    assert_eq!(follow.next_frame(T), marker);
    follow.expect_silence(ms(100));

    assert_eq!(server.get(&format!("/{old}")).json(), expected);
    let all = server.frames("/");
    assert_eq!(all, [expected.clone(), start, minimal, marker]);

    // Invalid JSON and frames without an id or topic.
    for body in [
        "{not json",
        "",
        "{\"topic\":\"x\"}",
        "{\"id\":\"03hb7ob4f89a6rwghzgwu0myh\"}",
    ] {
        let r = server.post("/import", body.as_bytes());
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert!(
            r.text().starts_with("Invalid frame JSON"),
            "{body}: {}",
            r.text()
        );
    }
    // A bad topic is refused too.
    let r = server.post(
        "/import",
        json!({"topic": "bad.", "id": scru128::new_string()})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(server.frames("/").len(), 4);
}

#[test]
fn cas_post_and_get() {
    let server = Server::start(&[]);
    let r = server.post("/cas", b"hello world");
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type(), Some("text/plain"));
    assert_eq!(r.text(), HELLO_WORLD_SRI, "SRI, no newline");
    let got = server.get(&format!("/cas/{HELLO_WORLD_SRI}"));
    assert_eq!(got.status, 200);
    assert_eq!(got.body, b"hello world");
    assert_eq!(got.content_type(), None, "raw bytes, no content type");

    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let sri = server.post("/cas", &binary).text();
    assert_eq!(server.get(&format!("/cas/{sri}")).body, binary);

    let r = server.post("/cas", b"");
    assert_eq!(r.status, 400);
    assert_eq!(r.text(), "Empty body");

    // A well-formed hash of content never stored: 404.
    let missing = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
    assert_eq!(server.get(&format!("/cas/{missing}")).status, 404);
    // Malformed hashes: 400.
    let r = server.get("/cas/not-a-hash");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().starts_with("Invalid CAS hash"), "{}", r.text());
    let r = server.get("/cas/sha256-!!!notbase64!!!");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().starts_with("Invalid CAS hash"), "{}", r.text());
}

#[test]
fn ephemeral_frames_reach_followers_only() {
    let server = Server::start(&[]);
    let mut follow = server.follow("/?follow&new");
    follow.expect_silence(ms(50));
    let frame = server.append_q("eph", "ttl=ephemeral", b"fleeting");
    assert_eq!(frame["ttl"], "ephemeral");
    let hash = frame["hash"].as_str().expect("hash").to_string();
    assert_eq!(follow.next_frame(T), frame);

    assert_eq!(server.get(&format!("/{}", id(&frame))).status, 404);
    assert_eq!(topics(&server.frames("/")), ["xs.start"]);
    assert_eq!(server.get("/last/eph").status, 404);
    let cas = server.get(&format!("/cas/{hash}"));
    assert_eq!(cas.status, 200, "payload kept in memory");
    assert_eq!(cas.body, b"fleeting");
    assert_eq!(cacache_files(&server), 0, "never written to disk");
}

#[test]
fn last_n_ttl_keeps_newest() {
    let server = Server::start(&[]);
    let others: Vec<Value> = (0..3)
        .map(|i| server.append("other", format!("o{i}").as_bytes()))
        .collect();
    let kept: Vec<Value> = (1..=4)
        .map(|i| server.append_q("keep", "ttl=last:2", format!("v{i}").as_bytes()))
        .collect();
    let pruned = wait_until(T, || server.frames("/?topic=keep").len() == 2);
    assert!(pruned, "pruned to 2: {:?}", server.frames("/?topic=keep"));
    assert_eq!(server.frames("/?topic=keep"), kept[2..].to_vec());
    assert_eq!(server.frames("/?topic=other"), others);
    for gone in &kept[..2] {
        assert_eq!(server.get(&format!("/{}", id(gone))).status, 404);
    }
}

#[test]
fn time_ttl_expires() {
    let server = Server::start(&[]);
    let frame = server.append_q("brief", "ttl=time:100", b"short lived");
    let created = id_ms(id(&frame));
    let r = server.get(&format!("/{}", id(&frame)));
    if now_ms() < created + 100 {
        assert_eq!(r.status, 200, "visible before it expires");
        assert_eq!(r.json(), frame);
    }
    let wait = (created + 200).saturating_sub(now_ms());
    std::thread::sleep(ms(wait));
    assert_eq!(server.get(&format!("/{}", id(&frame))).status, 404);
    assert_eq!(topics(&server.frames("/")), ["xs.start"]);
    assert_eq!(server.get("/last/brief").status, 404);
}

fn cas_status(server: &Server, frame: &Value) -> u16 {
    let hash = frame["hash"].as_str().expect("hash");
    server.get(&format!("/cas/{hash}")).status
}

// Payload garbage collection (SPEC section 2): content no stored frame
// references any more is deleted; content still referenced stays.

#[test]
fn gc_removed_frame_payload_is_collected() {
    if backend::local_only("looks for payload files in cacache") {
        return;
    }
    let server = Server::start(&[]);
    let shared_a = server.append("shared", b"shared bytes");
    let shared_b = server.append("shared", b"shared bytes");
    let alone = server.append("alone", b"only mine");
    assert_eq!(server.delete(&format!("/{}", id(&alone))).status, 204);
    assert_eq!(server.delete(&format!("/{}", id(&shared_a))).status, 204);
    let collected = wait_until(T, || cas_status(&server, &alone) == 404);
    assert!(collected, "payload of a removed frame is deleted");
    assert_eq!(
        cas_status(&server, &shared_b),
        200,
        "still referenced: kept"
    );
    assert_eq!(cacache_files(&server), 1);
}

#[test]
fn gc_pruned_payloads_are_collected() {
    if backend::local_only("looks for payload files in cacache") {
        return;
    }
    let server = Server::start(&[]);
    let kept: Vec<Value> = (1..=4)
        .map(|i| server.append_q("keep", "ttl=last:2", format!("v{i}").as_bytes()))
        .collect();
    let collected = wait_until(T, || {
        kept[..2].iter().all(|f| cas_status(&server, f) == 404)
    });
    assert!(collected, "payloads of pruned frames are deleted");
    for f in &kept[2..] {
        assert_eq!(cas_status(&server, f), 200);
    }
}

#[test]
fn gc_expired_payload_is_collected() {
    if backend::local_only("looks for payload files in cacache") {
        return;
    }
    let server = Server::start(&[]);
    let frame = server.append_q("brief", "ttl=time:100", b"short lived");
    let collected = wait_until(T, || {
        cas_status(&server, &frame) == 404 && cacache_files(&server) == 0
    });
    assert!(collected, "expired payload deleted");
}

#[test]
fn small_routes() {
    let server = Server::start(&[]);
    let r = server.get("/version");
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type(), Some("application/json"));
    let v = r.json();
    assert_eq!(keys(&v), ["version"]);
    assert!(v["version"].as_str().is_some_and(|s| !s.is_empty()));

    let r = server.post("/eval", b"1 + 1");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "2");

    for (method, path) in [
        ("POST", "/nope"),
        ("GET", "/append/x"),
        ("PUT", "/"),
        ("GET", "/a/b/c"),
        ("PATCH", "/version"),
    ] {
        let r = request(&server.sock(), method, path, &[], b"");
        assert_eq!(r.status, 404, "{method} {path}: {}", r.text());
        assert!(r.body.is_empty(), "{method} {path}");
    }
}
