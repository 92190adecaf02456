//! The schema version newer cross.stream looks for, and store folders laid
//! out the way newer cross.stream writes them.
//!
//! cross.stream 0.14 and later migrate a store whose `idx_topic` has no
//! `\0schema_version`, renaming topics such as `order.ready` that it takes
//! for old lifecycle topics. xs writes the key into the stores it makes
//! and into those it opens that hold no such topic; it leaves the entries
//! newer cross.stream adds (values in `idx_topic`, the `idx_expiry` and
//! `meta` keyspaces) as they are.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use common::Server;
use fjall::{Database, KeyspaceCreateOptions};

const KEY: &[u8] = b"\0schema_version";

fn xs(args: &[&str]) -> Output {
    Command::new(common::XS)
        .args(args)
        .output()
        .expect("run xs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn open_db(dir: &Path) -> Database {
    Database::builder(dir.join("fjall"))
        .open()
        .expect("open fjall")
}

/// The schema key's raw value in the stopped store at `dir`.
fn schema_value(dir: &Path) -> Option<Vec<u8>> {
    let db = open_db(dir);
    let idx = db
        .keyspace("idx_topic", KeyspaceCreateOptions::default)
        .expect("idx_topic");
    idx.get(KEY).expect("get").map(|v| v.to_vec())
}

fn remove_schema_key(dir: &Path) {
    let db = open_db(dir);
    let idx = db
        .keyspace("idx_topic", KeyspaceCreateOptions::default)
        .expect("idx_topic");
    idx.remove(KEY).expect("remove");
    db.persist(fjall::PersistMode::SyncAll).expect("persist");
}

fn check(dir: &Path, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["check", dir.to_str().expect("utf-8 path")];
    args.extend_from_slice(extra);
    let out = xs(&args);
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout) + &text(&out.stderr),
    )
}

#[test]
fn a_store_xs_makes_carries_schema_version_1() {
    let mut server = Server::start_local(&[]);
    server.append("order.ready", b"");
    server.stop();
    assert_eq!(schema_value(server.dir()), Some(vec![1, 0, 0, 0]));
    let (code, out) = check(server.dir(), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("schema version 1"), "{out}");
}

#[test]
fn an_unmarked_store_with_current_topics_only_gets_the_key_when_opened() {
    let mut server = Server::start_local(&[]);
    server.append("note", b"one");
    server.append("user.msg", b"two");
    server.stop();
    remove_schema_key(server.dir());
    assert_eq!(schema_value(server.dir()), None);

    server.restart();
    server.stop();
    assert_eq!(schema_value(server.dir()), Some(vec![1, 0, 0, 0]));
    assert!(
        !server.stderr().contains("schema version"),
        "{}",
        server.stderr()
    );
}

#[test]
fn an_unmarked_store_with_topics_that_look_old_is_left_for_its_owner_to_mark() {
    let mut server = Server::start_local(&[]);
    server.append("order.ready", b"");
    server.append("worker.active", b"");
    server.stop();
    remove_schema_key(server.dir());

    server.restart();
    assert_eq!(server.frames("/?topic=order.ready").len(), 1);
    server.stop();
    let said = server.stderr();
    assert!(said.contains("no schema version"), "{said}");
    assert!(said.contains("order.ready, worker.active"), "{said}");
    assert!(said.contains("--mark-schema"), "{said}");
    assert_eq!(schema_value(server.dir()), None, "marked without asking");

    let (code, out) = check(server.dir(), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("no schema version"), "{out}");
    let (code, out) = check(server.dir(), &["--mark-schema"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("schema version 1"), "{out}");
    assert_eq!(schema_value(server.dir()), Some(vec![1, 0, 0, 0]));
}

// ---------------------------------------------------------------------------
// A folder as newer cross.stream lays it out

/// One frame of the folder: its topic and, for `time:` frames, its ttl.
struct Written {
    id: scru128::Scru128Id,
    topic: &'static str,
    ttl_ms: Option<u64>,
}

/// Every key and value of the named keyspaces.
type Snapshot = BTreeMap<(String, Vec<u8>), Vec<u8>>;

fn snapshot(dir: &Path, names: &[&str]) -> Snapshot {
    let db = open_db(dir);
    let mut all = Snapshot::new();
    for name in names {
        let keyspace = db
            .keyspace(name, KeyspaceCreateOptions::default)
            .expect("keyspace");
        for guard in keyspace.iter() {
            let (key, value) = guard.into_inner().expect("entry");
            all.insert((name.to_string(), key.to_vec()), value.to_vec());
        }
    }
    all
}

/// Writes `frames` into a new folder the way cross.stream 0.14–0.16 does:
/// `idx_topic` entries carry the frame's expiry (u64 big-endian ms,
/// `u64::MAX` for none), `time:` frames get an `idx_expiry` entry (expiry
/// then id → topic), `meta` holds a format version and a `last:n` count,
/// and `idx_topic` holds the schema version.
fn newer_cross_stream_folder(dir: &Path, frames: &[Written]) {
    let db = open_db(dir);
    let open = |name: &str| {
        db.keyspace(name, KeyspaceCreateOptions::default)
            .expect("keyspace")
    };
    let (meta, stream, idx_topic, idx_expiry) = (
        open("meta"),
        open("stream"),
        open("idx_topic"),
        open("idx_expiry"),
    );
    meta.insert("version", 1u32.to_be_bytes()).expect("meta");
    let mut count_key = b"count\0".to_vec();
    count_key.extend_from_slice(b"presence");
    meta.insert(count_key, 1u64.to_be_bytes()).expect("meta");
    idx_topic.insert(KEY, 1u32.to_le_bytes()).expect("schema");
    for frame in frames {
        let ttl = match frame.ttl_ms {
            Some(ms) => format!("\"time:{ms}\""),
            None => "\"forever\"".into(),
        };
        let json = format!(
            r#"{{"topic":"{}","id":"{}","hash":null,"meta":null,"ttl":{ttl}}}"#,
            frame.topic, frame.id
        );
        let id = frame.id.to_bytes();
        stream.insert(id, json).expect("stream");
        let expires = frame
            .ttl_ms
            .map(|ms| frame.id.timestamp() + ms)
            .unwrap_or(u64::MAX);
        let mut keys = vec![frame.topic.as_bytes().to_vec()];
        for (at, _) in frame.topic.match_indices('.') {
            keys.push(frame.topic.as_bytes()[..=at].to_vec());
        }
        for mut key in keys {
            key.push(0);
            key.extend_from_slice(&id);
            idx_topic.insert(key, expires.to_be_bytes()).expect("index");
        }
        if frame.ttl_ms.is_some() {
            let mut key = expires.to_be_bytes().to_vec();
            key.extend_from_slice(&id);
            idx_expiry
                .insert(key, frame.topic.as_bytes())
                .expect("expiry");
        }
    }
    db.persist(fjall::PersistMode::SyncAll).expect("persist");
}

#[test]
fn a_folder_laid_out_by_newer_cross_stream_reads_back_and_is_not_rewritten() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("store");
    std::fs::create_dir(&dir).expect("mkdir");
    let day = 24 * 3600 * 1000;
    let frames = [
        ("note", None),
        ("user.alice.login", Some(day)),
        ("order.ready", None),
        ("presence", Some(day)),
        ("user.bob.login", None),
    ]
    .map(|(topic, ttl_ms)| Written {
        id: scru128::new(),
        topic,
        ttl_ms,
    });
    newer_cross_stream_folder(&dir, &frames);
    let spaces = ["stream", "idx_topic", "idx_expiry", "meta"];
    let before = snapshot(&dir, &spaces);

    let (code, out) = check(&dir, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("ok: 5 frames, 10 index entries, schema version 1"),
        "{out}"
    );
    let (code, out) = check(&dir, &["--repair"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        snapshot(&dir, &spaces),
        before,
        "check --repair rewrote entries"
    );

    let mut server = Server::start_in(tmp, dir.clone(), &[]);
    let ids = |got: Vec<serde_json::Value>| -> Vec<String> {
        got.iter()
            .filter(|f| !f["topic"].as_str().unwrap_or("").starts_with("xs."))
            .map(|f| f["id"].as_str().expect("id").to_string())
            .collect()
    };
    let all: Vec<String> = frames.iter().map(|f| f.id.to_string()).collect();
    assert_eq!(ids(server.frames("/")), all);
    assert_eq!(
        ids(server.frames("/?topic=user.*")),
        vec![all[1].clone(), all[4].clone()]
    );
    assert_eq!(
        ids(server.frames("/?topic=order.ready")),
        vec![all[2].clone()]
    );
    let last = server.get("/last/presence");
    assert_eq!(last.status, 200, "{}", last.text());
    assert_eq!(last.json()["ttl"], "time:86400000");
    server.append("note", b"from xs");
    server.stop();
    assert!(
        !server.stderr().contains("schema version"),
        "{}",
        server.stderr()
    );

    let after = snapshot(&dir, &spaces);
    for (entry, value) in &before {
        assert_eq!(after.get(entry), Some(value), "{entry:?} changed");
    }
    let (code, out) = check(&dir, &[]);
    assert_eq!(code, 0, "{out}");
}
