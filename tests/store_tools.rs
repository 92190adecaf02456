//! `xs check` on broken stores, `xs export` / `xs import` round trips,
//! `GET /metrics`, ephemeral content never reaching the disk, and
//! `--ttl-sweep` (expired frames on disk or not).

mod common;

use std::path::Path;
use std::process::Command;

use common::{Server, XS};
use serde_json::Value;

fn xs(args: &[&str]) -> std::process::Output {
    Command::new(XS).args(args).output().expect("run xs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A stopped store with a few frames and payloads.
fn stopped_store() -> (Server, Vec<Value>) {
    let mut server = Server::start(&[]);
    let frames = vec![
        server.append("note", b"one"),
        server.append("user.alice.login", b""),
        server.append("note", b"two"),
    ];
    server.stop();
    (server, frames)
}

fn check(dir: &Path, repair: bool) -> (i32, String) {
    let dir = dir.to_str().expect("utf-8 path");
    let mut args = vec!["check", dir];
    if repair {
        args.push("--repair");
    }
    let out = xs(&args);
    (out.status.code().unwrap_or(-1), text(&out.stdout))
}

fn id_bytes(frame: &Value) -> [u8; 16] {
    let id: xs::store::Id = frame["id"].as_str().expect("id").parse().expect("scru128");
    id.to_bytes()
}

#[test]
fn check_finds_and_repairs_index_damage() {
    let (server, frames) = stopped_store();
    assert_eq!(check(server.dir(), false).0, 0);
    {
        let spaces = Fjall::open(server.dir());
        let index = &spaces.idx_topic;
        // A missing index entry: the first note is no longer filed under `note`.
        let mut missing = b"note\0".to_vec();
        missing.extend_from_slice(&id_bytes(&frames[0]));
        index.remove(missing).expect("remove");
        // A dangling one: an index entry for a frame that does not exist.
        let mut dangling = b"ghost\0".to_vec();
        dangling.extend_from_slice(&[7u8; 16]);
        index.insert(dangling, []).expect("insert");
        spaces
            .db
            .persist(fjall::PersistMode::SyncAll)
            .expect("persist");
    }
    let (code, out) = check(server.dir(), false);
    assert_eq!(code, 1, "{out}");
    let first = frames[0]["id"].as_str().unwrap();
    assert!(
        out.contains(&format!("frame {first}: not indexed under note")),
        "{out}"
    );
    assert!(out.contains("index entry ghost"), "{out}");
    assert!(out.starts_with("") && out.contains("damaged:"), "{out}");

    assert!(out.contains("xs check <dir> --repair"), "{out}");

    let (code, out) = check(server.dir(), true);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("fixed: rebuilt the topic index (2 index problems)"),
        "{out}"
    );
    assert!(out.contains("repaired:"), "{out}");
    let (code, out) = check(server.dir(), false);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("ok:"), "{out}");
}

#[test]
fn check_reports_missing_and_corrupt_payloads() {
    let (server, frames) = stopped_store();
    let cas = server.dir().join("cacache/content-v2/sha256");
    let sri = |frame: &Value| -> cacache::Integrity {
        frame["hash"].as_str().expect("hash").parse().expect("sri")
    };
    let path_of = |frame: &Value| {
        let (_, hex) = sri(frame).to_hex();
        cas.join(&hex[0..2]).join(&hex[2..4]).join(&hex[4..])
    };
    std::fs::remove_file(path_of(&frames[0])).expect("remove payload");
    std::fs::write(path_of(&frames[2]), b"tampered").expect("corrupt payload");
    let (code, out) = check(server.dir(), false);
    assert_eq!(code, 1, "{out}");
    let one = frames[0]["id"].as_str().unwrap();
    let two = frames[2]["id"].as_str().unwrap();
    assert!(
        out.contains(&format!("frame {one}: payload missing (sha256-")),
        "{out}"
    );
    assert!(
        out.contains(&format!("frame {two}: payload does not match")),
        "{out}"
    );
    // Each line says what would fix it.
    assert!(out.contains(&format!("xs remove <addr> {one}")), "{out}");
    assert!(out.contains("xs cas-post <addr>"), "{out}");
    assert!(out.contains("damaged: 5 frames, 9 index entries"), "{out}");
    assert!(out.contains("2 problems"), "{out}");
    // Missing content cannot be repaired: --repair fixes the index damage it
    // can, says so, and fails for what is left.
    {
        let spaces = Fjall::open(server.dir());
        let mut dangling = b"ghost\0".to_vec();
        dangling.extend_from_slice(&[7u8; 16]);
        spaces.idx_topic.insert(dangling, []).expect("insert");
        spaces
            .db
            .persist(fjall::PersistMode::SyncAll)
            .expect("persist");
    }
    let (code, out) = check(server.dir(), true);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("fixed: rebuilt the topic index (1 index problems)"),
        "{out}"
    );
    assert!(out.contains("damaged:"), "{out}");
    assert!(out.contains("2 problems left"), "{out}");
    let (code, out) = check(server.dir(), false);
    assert_eq!(code, 1, "{out}");
    assert!(!out.contains("ghost"), "{out}");
    assert!(out.contains("2 problems"), "{out}");
}

#[test]
fn export_then_import_round_trips_ids_hashes_and_payloads() {
    let source = Server::start(&[]);
    let mut appended = Vec::new();
    for n in 0..300 {
        let body = format!("payload {}", n % 37);
        appended.push(source.append(&format!("t{}", n % 5), body.as_bytes()));
    }
    source.append("empty", b"");
    let dump = tempfile::tempdir().expect("tempdir");
    let folder = dump.path().join("dump");
    let out = xs(&[
        "export",
        source.dir().to_str().unwrap(),
        folder.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("exported 302 frames and 37 payloads"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(std::fs::read_dir(folder.join("cas")).unwrap().count(), 37);
    // Exporting over an existing folder is refused.
    let again = xs(&[
        "export",
        source.dir().to_str().unwrap(),
        folder.to_str().unwrap(),
    ]);
    assert_eq!(again.status.code(), Some(1));

    let target = Server::start(&[]);
    for _ in 0..2 {
        let out = xs(&[
            "import",
            target.dir().to_str().unwrap(),
            folder.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    // The source's frames all predate the target's own xs.start: the copy
    // is exactly them, then that one frame (importing twice added nothing).
    let originals = source.frames("/");
    let copies = target.frames("/");
    assert_eq!(copies.len(), originals.len() + 1);
    assert_eq!(&copies[..originals.len()], &originals[..]);
    assert_eq!(copies[originals.len()]["topic"], "xs.start");
    for frame in &originals {
        if let Some(hash) = frame["hash"].as_str() {
            let path = format!("/cas/{hash}");
            assert_eq!(target.get(&path).body, source.get(&path).body);
        }
    }
    assert_eq!(appended.len(), 300);
}

#[test]
fn metrics_count_appends_syncs_and_followers() {
    let server = Server::start(&[]);
    for _ in 0..3 {
        server.append("m", b"payload");
    }
    let _follower = server.follow("/?follow&new");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let metrics = loop {
        let metrics = common::request(
            &server.sock(),
            "GET",
            "/metrics",
            &[("Accept", "text/plain")],
            b"",
        )
        .text();
        if metrics.contains("xs_followers 1") || std::time::Instant::now() > deadline {
            break metrics;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing in\n{metrics}"))
    };
    assert!(value("xs_frames_appended_total") >= 4.0, "{metrics}");
    assert!(value("xs_payload_bytes_appended_total") >= 21.0);
    assert_eq!(value("xs_followers"), 1.0);
    assert!(value("xs_appends_total{outcome=\"ok\"}") >= 4.0);
    assert!(value("xs_sync_seconds_count") >= 1.0);
    assert!(value("xs_store_bytes") > 0.0);
    assert!(
        metrics.contains("xs_processors{state=\"running\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("# TYPE xs_sync_seconds histogram"));
}

#[test]
fn ephemeral_frames_and_payloads_never_reach_the_disk() {
    let mut server = Server::start(&[]);
    let marker = b"ephemeral-marker-3f9c1b7e-never-on-disk";
    let frame = server.append_q("secret", "ttl=ephemeral", marker);
    let hash = frame["hash"].as_str().expect("hash").to_string();
    assert_eq!(server.get(&format!("/cas/{hash}")).body, marker);
    server.stop();
    let mut found = Vec::new();
    for entry in walk(server.dir()) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        if bytes.windows(marker.len()).any(|w| w == marker)
            || bytes.windows(6).any(|w| w == b"secret")
        {
            found.push(entry);
        }
    }
    assert!(found.is_empty(), "ephemeral content on disk: {found:?}");
    server.restart();
    assert_eq!(server.get(&format!("/cas/{hash}")).status, 404);
    assert_eq!(
        server
            .get(&format!("/{}", frame["id"].as_str().unwrap()))
            .status,
        404
    );
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// Whether the stopped store's `stream` keyspace holds `frame`.
fn on_disk(dir: &Path, frame: &Value) -> bool {
    let spaces = Fjall::open(dir);
    spaces.stream.contains_key(id_bytes(frame)).expect("read")
}

#[test]
fn ttl_sweep_zero_keeps_expired_frames_on_disk_but_never_serves_them() {
    let mut server = Server::start(&["--ttl-sweep", "0"]);
    let kept = server.append("kept", b"");
    let brief = server.append_q("brief", "ttl=time:50", b"");
    // Nothing shows a sweep that does not happen: wait out its expiry and
    // a default sweep interval (1 s).
    let swept_by = common::id_ms(common::id(&brief)) + 50 + 1200;
    std::thread::sleep(std::time::Duration::from_millis(
        swept_by.saturating_sub(common::now_ms()),
    ));
    let brief_id = common::id(&brief);
    for _ in 0..2 {
        let frames = server.frames("/");
        assert_eq!(common::topics(&frames), ["xs.start", "kept"]);
        assert_eq!(server.get("/last").json()["id"], kept["id"]);
        assert_eq!(server.get("/last/brief").status, 404);
        assert_eq!(server.get(&format!("/{brief_id}")).status, 404);
    }
    server.stop();
    assert!(on_disk(server.dir(), &brief), "the expired frame was swept");
    assert!(on_disk(server.dir(), &kept));
}

#[test]
fn expired_frames_are_swept_from_disk_by_default() {
    let mut server = Server::start(&[]);
    let brief = server.append_q("brief", "ttl=time:50", b"");
    // No read meets it: the background sweep alone removes it.
    let removed = common::wait_until(std::time::Duration::from_secs(5), || {
        server.get("/metrics").json()["store"]["removed_frames"] == 1
    });
    assert!(removed, "not swept: {}", server.get("/metrics").text());
    server.stop();
    assert!(!on_disk(server.dir(), &brief));
}

/// A stopped store's fjall database, opened as any tool would open it, to
/// damage or inspect what `xs check` reads.
struct Fjall {
    db: fjall::Database,
    stream: fjall::Keyspace,
    idx_topic: fjall::Keyspace,
}

impl Fjall {
    fn open(dir: &Path) -> Fjall {
        let db = fjall::Database::builder(dir.join("fjall"))
            .open()
            .expect("open fjall");
        let keyspace = |name: &str| {
            db.keyspace(name, fjall::KeyspaceCreateOptions::default)
                .expect("keyspace")
        };
        Fjall {
            stream: keyspace("stream"),
            idx_topic: keyspace("idx_topic"),
            db,
        }
    }
}
